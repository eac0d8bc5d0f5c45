"""Lesson 4's exercises: saving, loading, inference (04_load_model.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 04
Stuck? exercises/solutions/ex04_inference.py has one way to do each (try first!).
"""

import torch  # noqa: F401  (you will need it)


# ---- 04.1 code: load a checkpoint safely ---------------------------------------------
def load_weights(path):
    """What torch.load reads from `path` (a dict such as {"model_state_dict": ...}),
    read so that a file from a stranger can never run code on your machine. The check
    loads a real checkpoint, then a planted file that would write a file if unpickled.
    (Lesson 4 shows what a pickle can do; which argument of torch.load prevents it?)
    """
    raise NotImplementedError("TODO")


# ---- 04.2 code: predict --------------------------------------------------------------
def predict(model, X):
    """(digits, probabilities) for a batch X [N, 1, 28, 28]: digits [N] (the most likely
    class of each image), probabilities [N, 10] (softmax of the outputs, each row
    summing to 1). The model may contain dropout: inference must not use it. The
    probabilities must not carry gradients (nothing will call backward on them).
    """
    raise NotImplementedError("TODO")


# ---- 04.3 predict --------------------------------------------------------------------
# Lesson 3 writes two files: the model for inference (weights and configuration) and the
# training state (everything needed to go on: weights, Adam's state, the best epoch's
# weights, ...). The training state is, compared with the model file...
#   "A": about the same size (under 1.5x)   "B": about 2x (1.5x to 3x)
#   "C": about 4x (3x or more)
PREDICT_STATE_SIZE = None  # TODO: "A", "B" or "C"
