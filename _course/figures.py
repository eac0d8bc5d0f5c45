"""Figures without a screen: saved as PNG under figures/, shown only with --show.

Plumbing, not a lesson: every lesson that draws relies on it through dl_utils
(dl_utils.plot_training_history is the course's own plot). matplotlib's Agg backend
renders to files; a window opens only when --show is given and a display exists, so
nothing blocks or fails without a screen.
"""

import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch

from _course.cli import print_table
from _course.files import FIGURES_DIR, atomic_path, display_path

__all__ = [  # what dl_utils re-exports
    "setup_figures", "image_grid", "save_figure", "show_figures", "plot_curves_by_name",
    "plot_confident_mistakes", "plot_training_history",
]


# --------------------------------------------------------------------------------------
# Figures: saved as PNG, shown only when asked for and a display exists
# --------------------------------------------------------------------------------------
def setup_figures(show: bool) -> None:
    """Without --show, use Agg, matplotlib's file-only backend: it needs no screen and
    never opens a window, so a script can never block or crash on a headless machine."""
    if not show:
        plt.switch_backend("agg")


def image_grid(rows: int, cols: int, cell: tuple[float, float]):
    """A figure of rows x cols small image panels (cell = inches per panel), frames
    off."""
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")  # panels left empty stay blank; the images need no ticks
    return fig, axes


def save_figure(fig, name: str, show: bool = False) -> Path:
    """Save `fig` as figures/<name> (atomically); keep it open only if it will be
    shown."""
    path = FIGURES_DIR / name
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    if not show:
        plt.close(fig)  # figures hold memory until closed
    print(f"  saved {display_path(path)}")
    return path


def show_figures(show: bool) -> None:
    """With --show, open the saved figures in windows (blocks until they are closed)."""
    if not show:
        return
    from matplotlib.backends import BackendFilter, backend_registry  # matplotlib >= 3.9

    backend = matplotlib.get_backend().lower()
    if backend in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE):
        print(f"--show: no display available (matplotlib backend '{backend}'); "
              f"the figures are saved in {display_path(FIGURES_DIR)}/")
        return
    plt.show()


def plot_curves_by_name(runs, titles: dict, name: str, title: str, show=False) -> Path:
    """Training and validation accuracy per epoch, one panel per configuration (the mean
    over its seeds' runs); titles: {configuration name: panel title} (lesson 7)."""
    cols = min(4, len(titles))
    rows = -(-len(titles) // cols)  # ceiling division
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows),
                             squeeze=False, sharex=True, sharey=True,
                             layout="constrained")
    for ax, (config, panel) in zip(axes.flat, titles.items()):
        histories = [r["history"] for r in runs if r["name"] == config]
        for key, legend in (("train_acc", "training (as trained)"),
                            ("val_acc", "validation")):
            curve = torch.tensor([h[key] for h in histories]).mean(dim=0)
            ax.plot(range(1, len(curve) + 1), 100 * curve, label=legend)
        ax.set(title=panel, ylim=(80, 100.5))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(titles):]:
        ax.axis("off")
    fig.supxlabel("epoch")
    fig.supylabel("accuracy (%)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, name, show)


def plot_confident_mistakes(images, probs, y, num, show,
                            name="04_confident_mistakes.png", what="test"):
    """The wrong predictions the model was most sure of: bad labels or truly odd digits?
    (04 and 08 draw them.)"""
    confidence, pred = probs.max(dim=1)
    wrong = (pred != y).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:num]
    print(f"{len(wrong)} mistakes in {len(y):,} {what} images; "
          f"the {len(order)} most confident:")
    print_table([f"{what} index", "true", "predicted", "confidence"],
                [[int(i), int(y[i]), int(pred[i]), f"{100 * confidence[i]:.1f}%"]
                 for i in order])
    cols = min(6, max(1, len(order)))
    fig, axes = image_grid(max(1, math.ceil(len(order) / cols)), cols, (1.8, 2.1))
    for ax, i in zip(axes.flat, order):
        ax.imshow(images[i].cpu().numpy(), cmap="gray")  # matplotlib takes NumPy
        ax.set_title(f"true {int(y[i])}, said {int(pred[i])}\n"
                     f"{100 * confidence[i]:.0f}% sure",
                     fontsize=8)
    fig.suptitle("Most confident mistakes")
    return save_figure(fig, name, show)


def plot_training_history(history: dict, name: str, title: str = "", show=False,
                          train_label: str = "training") -> Path:
    """Loss and accuracy per epoch, training vs validation, saved as figures/<name>.

    How to read it: both losses falling = still learning. Training loss falling while
    validation loss rises = overfitting (memorizing the training images). Both flat and
    high = underfitting (too little capacity, too few epochs, or a bad learning rate).
    The training numbers are averaged over each epoch while the weights were changing
    (and, with augmentation, on altered images): compare their trend with validation's,
    not their exact values.
    """
    epochs = range(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train", train_label), ("val", "validation")):
        ax_loss.plot(epochs, history[f"{key}_loss"], marker="o", label=label)
        ax_acc.plot(epochs, [100 * a for a in history[f"{key}_acc"]], marker="o",
                    label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, name, show)
