"""Lesson 12's exercises, one way to solve each (exercises/ex12_attention.py asks)."""

import math


# ---- 12.1 code: attention with a mask ------------------------------------------------
def masked_attention(Q, K, V, mask):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0: no weight at all
    return scores.softmax(dim=-1) @ V


# ---- 12.2 code: a digit cut into tokens ----------------------------------------------
def patchify(X, patch):
    n = 28 // patch
    # [N, 1, 28, 28] -> [N, tile row, row in tile, tile column, column in tile], then
    # the two tile indices side by side before the two pixel indices, then flatten each
    # pair
    tiles = X.reshape(len(X), n, patch, n, patch).permute(0, 1, 3, 2, 4)
    return tiles.reshape(len(X), n * n, patch * patch)


# ---- 12.3 predict --------------------------------------------------------------------
# Attention without positions treats its tokens as a set: shuffle them and every
# token's output moves with it; the class token's own output, which the head reads, is
# unchanged.
PREDICT_SHUFFLED = "A"
