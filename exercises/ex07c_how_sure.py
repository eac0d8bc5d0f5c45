"""Lesson 7c's exercises: how sure are we? (07c_how_sure.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 07c
Stuck? exercises/solutions/ex07c_how_sure.py has one way to do each (try first!).
"""


# ---- 07c.1 code: early stopping, scored honestly -------------------------------------------
def cross_scored(val_a, val_b):
    """val_a and val_b: lists of accuracies, one per epoch, on the two halves A and B of
    the validation images. Choose an epoch on A (its best; the first best on a tie, as fit
    keeps it) and score that epoch on B; choose one on B and score it on A; return the
    mean of the two scores. Neither score used the images that chose its epoch.
    """
    raise NotImplementedError("TODO")


# ---- 07c.2 predict -------------------------------------------------------------------------
# Ten remedies that do nothing at all, each judged with its own 95% interval (independent
# verdicts). The chance that at least one of the ten is still called "better" or
# "worse" is about...
#   "A": 5%   "B": 40%   "C": 90%
PREDICT_TEN_VERDICTS = None  # TODO: "A", "B" or "C"


# ---- 07c.3 code: Holm's step-down, the usual step after Bonferroni ---------------------------
def holm(p_values, alpha=0.05):
    """Which of several tests to call a discovery, all held together to `alpha`. Sort the
    m p-values from smallest to largest; compare the smallest with alpha / m, the next
    with alpha / (m - 1), and so on, up to alpha / 1 for the largest. Reject (True) each
    one that passes, and STOP at the first that fails: it and every larger p-value are
    kept (False). Return a list of booleans in the ORIGINAL order of p_values.
    (Bonferroni compares every p-value with alpha / m: Holm is never stricter.)
    """
    raise NotImplementedError("TODO")
