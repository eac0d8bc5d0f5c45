"""Reference solutions for lesson 7's exercises (exercises/ex07_regularization.py)."""

import torch


def dropout(x, p, training, generator):
    if not training:
        return x
    keep = torch.rand(x.shape, generator=generator) >= p
    return x * keep / (1 - p)


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum=0.1,
               eps=1e-5):
    if training:
        mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)
        n = x.shape[0]
        running_mean.mul_(1 - momentum).add_(momentum * mean)
        running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))
    else:
        mean, var = running_mean, running_var
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


NARROWEST_GAP_07 = "augmentation"
