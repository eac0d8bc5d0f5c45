"""Lesson 13's exercises, one way to solve each (exercises/ex13_ensembles.py asks)."""

import math

import torch


# ---- 13.1 code: averaged probabilities, as logits ------------------------------------
def average_probabilities(logits):
    # log(mean_m softmax) = logsumexp over the members of log_softmax, minus
    # log(members): no probability is ever rounded to 0 before its log is taken
    return torch.logsumexp(logits.log_softmax(dim=-1), dim=0) - math.log(len(logits))


# ---- 13.2 predict --------------------------------------------------------------------
# right when at most one of three is wrong: 0.99^3 + 3 * 0.99^2 * 0.01 = 0.9997
PREDICT_MAJORITY_OF_THREE = "C"


# ---- 13.3 code: the errors two members share -----------------------------------------
def shared_errors(wrong):
    return (wrong[:, None, :] & wrong[None, :, :]).sum(dim=-1)  # [m, 1, N] & [1, m, N]
