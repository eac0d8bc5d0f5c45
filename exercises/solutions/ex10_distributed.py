"""Reference solutions for lesson 10's exercises (exercises/ex10_distributed.py)."""

import math


def average_gradients(grads_per_rank):
    world = len(grads_per_rank)
    return [sum(grads) / world for grads in zip(*grads_per_rank)]


def shard(n, world, rank):
    total = math.ceil(n / world) * world
    indices = list(range(n))
    while len(indices) < total:  # repeat from the start until it divides evenly
        indices += indices[:total - len(indices)]
    return indices[rank:total:world]


PREDICT_SET_EPOCH = "A"
