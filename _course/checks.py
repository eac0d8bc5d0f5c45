"""Proofs for us: a computation written by hand, compared with PyTorch's own.

Plumbing, not a lesson: lessons 1, 11 and 12 teach a computation by writing it out and
then check it number for number against PyTorch (autograd, nn.RNN, attention). The
comparing and the table of matches live here, so that each lesson shows what it checks.
"""

import torch

from _course.cli import print_table

__all__ = ["output_and_gradient_gaps", "match_table"]


def output_and_gradient_gaps(ours, theirs, wrt_ours, wrt_theirs):
    """The largest |difference| of two outputs, and of their gradients with respect to
    matching tensors; the loss is one fixed random mix of all the outputs, so that every
    output's gradient takes part. A tensor the hand-written version never used has a
    gradient of 0 (a planted error is then reported, not raised)."""
    mix = torch.randn_like(ours)
    g_ours = torch.autograd.grad((ours * mix).sum(), wrt_ours, allow_unused=True)
    g_theirs = torch.autograd.grad((theirs * mix).sum(), wrt_theirs)
    return (ours - theirs).abs().max().item(), max(
        ((torch.zeros_like(b) if a is None else a) - b).abs().max().item()
        for a, b in zip(g_ours, g_theirs))


def match_table(diffs: dict, what: str, tolerance: float = 1e-10) -> bool:
    """Print {name: largest difference} with a yes/NO column; True if all match."""
    print_table([what, "largest difference", "match"],
                [[k, f"{v:.1e}", "yes" if v < tolerance else "NO"]
                 for k, v in diffs.items()])
    return all(v < tolerance for v in diffs.values())
