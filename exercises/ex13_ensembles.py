"""Lesson 13's exercises: several networks that vote (13_ensembles.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 13
Stuck? exercises/solutions/ex13_ensembles.py has one way to do each (try first!).
"""

import torch  # noqa: F401 (your answers will need it)


# ---- 13.1 code: averaged probabilities, as logits ------------------------------------
def average_probabilities(logits):
    """logits: [members, N, 10], each member's logits for the same N digits. Return
    [N, 10]: the LOG of the members' softmax probabilities averaged over the members, so
    that softmax of your result gives the averaged probabilities back (Ensemble.forward
    in lesson 13). Averaging the logits themselves is a different ensemble: not this
    one.
    """
    raise NotImplementedError("TODO")


# ---- 13.2 predict --------------------------------------------------------------------
# Three networks, each right on 99% of the digits, whose mistakes fall on digits chosen
# independently at random. A majority vote of the three is right on about...
#   "A": 99% (no better than one)   "B": 99.5%   "C": 99.97%
# (Lesson 13's table of shared errors says whether real networks' mistakes are
# independent.)
PREDICT_MAJORITY_OF_THREE = None  # TODO: "A", "B" or "C"


# ---- 13.3 code: the errors two members share -----------------------------------------
def shared_errors(wrong):
    """wrong: a bool tensor [members, N], True where a member misreads digit n. Return
    an integer tensor [members, members]: entry [i, j] counts the digits members i AND j
    both misread (so the diagonal holds each member's own errors). Broadcasting does it
    in one line, without a Python loop over the digits.
    """
    raise NotImplementedError("TODO")
