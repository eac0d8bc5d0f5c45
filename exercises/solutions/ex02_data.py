"""Reference solutions for lesson 2's exercises (exercises/ex02_data.py)."""

import torch


def normalization_constants(images):
    pixels = images.double() / 255
    return pixels.mean().item(), pixels.std().item()


def split_indices(n, n_val, seed):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:], order[:n_val]


PREDICT_MAJORITY = "A"
