"""Lesson 12's exercises: attention and a small ViT (12_attention_and_transformers.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 12
Stuck? exercises/solutions/ex12_attention.py has one way to do each (try first!).
"""

import math  # noqa: F401  (you may need it)

import torch  # noqa: F401


# ---- 12.1 code: attention with a mask ------------------------------------------------
def masked_attention(Q, K, V, mask):
    """Scaled dot-product attention where a query may look only at some keys.

    Q [..., T_q, d], K [..., T_k, d], V [..., T_k, d_v]; mask [T_q, T_k] of booleans,
    True where query i MAY look at key j (as F.scaled_dot_product_attention's
    attn_mask). Return softmax(Q K^T / sqrt(d)) V, [..., T_q, d_v], where a forbidden
    key gets weight exactly 0 (hint: a score of -inf). A causal mask (torch.tril) is
    what a language model uses so that a word never sees the words after it.
    """
    raise NotImplementedError("TODO")


# ---- 12.2 code: a digit cut into tokens ----------------------------------------------
def patchify(X, patch):
    """X [N, 1, 28, 28] -> [N, (28 / patch)^2, patch * patch]: the image cut into
    patch x patch tiles, in reading order (the top row of tiles left to right, then the
    next row), each tile flattened row by row. Tile 0 is X[:, 0, :patch, :patch], tile 1
    is X[:, 0, :patch, patch:2 * patch]. Careful: X.reshape(N, 16, 49) alone does NOT
    cut tiles (it cuts runs of 49 consecutive pixels, across rows).
    """
    raise NotImplementedError("TODO")


# ---- 12.3 predict --------------------------------------------------------------------
# A Transformer with a class token but WITHOUT position embeddings (PyTorch's own
# nn.TransformerEncoder, random weights) reads 100 digits as 16 tiles each, then the
# same digits with their tiles put in a random order. Its 10 scores for each digit
# are...
#   "A": the same (up to rounding)   "B": close, but visibly different   "C": unrelated
PREDICT_SHUFFLED = None  # TODO: "A", "B" or "C"
