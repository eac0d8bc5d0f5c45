"""Lesson 7c's exercises: how sure are we? (07c_how_sure.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 07c
Stuck? exercises/solutions/ex07c_how_sure.py has one way to do each (try first!).
"""


# ---- 07c.1 predict: fewer epochs, less flattery? -------------------------------------
# Trap 1: the best of 20 epochs, scored on the images that chose it, lands above the
# truth even when every epoch is exactly as good as the others, since each epoch's score
# carries its own noise (the lesson's noise_flattery simulates it). Train 5 epochs
# instead of 20, every one as good, each scored on as many images: the best of the 5
# lands above the truth, compared with the best of 20, by...
#   "A": about a quarter as much (under 0.4x: 5 is a quarter of 20)
#   "B": in between (0.4x to 0.85x as much)
#   "C": about as much (0.85x or more)
# The lesson prints it for lesson 7's epochs only. After you answer, measure it:
# noise_flattery(epochs, accuracy, images, trials, generator) in 07c_how_sure.py
# (a lesson's name starts with a digit: importlib.import_module("07c_how_sure")).
PREDICT_FEWER_EPOCHS = None  # TODO: "A", "B" or "C"


# ---- 07c.2 predict -------------------------------------------------------------------
# Ten remedies that do nothing at all, each judged with its own 95% interval
# (independent verdicts). The chance that at least one of the ten is still called
# "better" or "worse" is about...
#   "A": 5%   "B": 40%   "C": 90%
PREDICT_TEN_VERDICTS = None  # TODO: "A", "B" or "C"


# ---- 07c.3 code: Holm's step-down, the usual step after Bonferroni -------------------
def holm(p_values, alpha=0.05):
    """Which of several tests to call a discovery, all held together to `alpha`. Sort
    the m p-values from smallest to largest; compare the smallest with alpha / m, the
    next with alpha / (m - 1), and so on, up to alpha / 1 for the largest. Reject (True)
    each one that passes, and STOP at the first that fails: it and every larger p-value
    are kept (False). Return a list of booleans in the ORIGINAL order of p_values.
    (Bonferroni compares every p-value with alpha / m: Holm is never stricter.)
    """
    raise NotImplementedError("TODO")
