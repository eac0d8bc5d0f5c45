"""Lesson 11's exercises: sequences and recurrent networks (11_sequences_and_rnns.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 11
Stuck? exercises/solutions/ex11_sequences.py has one way to do each (try first!).
"""

import torch  # noqa: F401  (you will need it)


# ---- 11.1 code: one step of a recurrent cell -----------------------------------------
def rnn_step(x_t, h, W_x, W_h, b):
    """One step of a tanh RNN: x_t [N, features] is this step's input, h [N, hidden] the
    previous hidden state; W_x [features, hidden], W_h [hidden, hidden], b [hidden].
    Return the new hidden state tanh(x_t W_x + h W_h + b), [N, hidden]. Run over 28 rows
    with h starting at zeros, it must give what nn.RNN gives.
    """
    raise NotImplementedError("TODO")


# ---- 11.2 code: gradient clipping by hand --------------------------------------------
def clip_by_total_norm(grads, max_norm):
    """grads: a list of gradient tensors (one per parameter). Their total norm is the
    square root of the sum of all their squared entries, all tensors together. If it is
    above max_norm, scale EVERY gradient by max_norm / total (one factor for all: the
    direction of the whole step is kept); otherwise leave them as they are. Return
    (the list of clipped gradients, the total norm before clipping), as
    torch.nn.utils.clip_grad_norm_ does in place.
    """
    raise NotImplementedError("TODO")


# ---- 11.3 predict --------------------------------------------------------------------
# A fresh tanh RNN (hidden size 64, PyTorch's own initialization) reads 256 validation
# digits row by row; the loss is computed after the last row. The gradient that reaches
# the hidden state of step 1, compared with the one at step 28, is...
#   "A": about the same (under 10 times smaller)   "B": 10 to 1,000 times smaller
#   "C": over 1,000 times smaller
PREDICT_FIRST_STEP = None  # TODO: "A", "B" or "C"
