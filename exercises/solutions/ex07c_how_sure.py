"""Lesson 7c's exercises, one way to solve each (exercises/ex07c_how_sure.py asks)."""


# ---- 07c.1 code: early stopping, scored honestly -------------------------------------------
def cross_scored(val_a, val_b):
    by_a, by_b = val_a.index(max(val_a)), val_b.index(max(val_b))  # index(): the first best
    return (val_b[by_a] + val_a[by_b]) / 2


# ---- 07c.2 predict -------------------------------------------------------------------------
# 1 - 0.95^10 = 0.40
PREDICT_TEN_VERDICTS = "B"


# ---- 07c.3 code: Holm's step-down, the usual step after Bonferroni ---------------------------
def holm(p_values, alpha=0.05):
    m = len(p_values)
    reject = [False] * m
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        if p_values[i] > alpha / (m - rank):
            break  # this one fails: it and every larger p-value are kept
        reject[i] = True
    return reject
