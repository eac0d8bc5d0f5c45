"""Lesson 7b's exercises: inside the remedies (07b_inside_the_remedies.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 07b
Stuck? exercises/solutions/ex07b_remedies.py has one way to do each (try first!).
"""


# ---- 07b.1 code: one AdamW step ------------------------------------------------------
def adamw_step(w, grad, state, lr, weight_decay, betas=(0.9, 0.999), eps=1e-8):
    """One step of torch.optim.AdamW for weights w (a tensor) with gradient grad; return
    the new weights. state holds "m" and "v" (tensors like w, start at zero) and "step"
    (starts at 0): update them in the dict. Per step t (counting from 1):
        w <- w * (1 - lr * weight_decay)          (decoupled decay: first, on w itself)
        m <- b1 m + (1 - b1) grad;   v <- b2 v + (1 - b2) grad^2
        w <- w - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    Lesson 7b compares this with Adam's L2 (weight_decay * w added to the gradient).
    """
    raise NotImplementedError("TODO")


# ---- 07b.2 predict -------------------------------------------------------------------
# nn.Dropout(0.5) in train mode, applied to torch.ones(100_000). The mean of its output
# is...
#   "A": about 0.5   "B": about 1   "C": about 2
PREDICT_DROPOUT_MEAN = None  # TODO: "A", "B" or "C"


# ---- 07b.3 predict -------------------------------------------------------------------
# An MLP with a BatchNorm1d layer, trained for one epoch. Scored on validation images in
# TRAIN mode, in batches of 8, its accuracy is, compared with eval mode...
#   "A": higher   "B": about the same (within 2 points)
#   "C": lower by more than 2 points
PREDICT_BN_TRAIN_MODE = None  # TODO: "A", "B" or "C"
