"""Lesson 7c's exercises, one way to solve each (exercises/ex07c_how_sure.py asks)."""


# ---- 07c.1 predict -------------------------------------------------------------------
# The best of n draws of noise: about 1.16 standard errors above the truth for 5, 1.87
# for 20, so 0.62x: it rises slowly with n (like sqrt(2 ln n) for large n)
PREDICT_FEWER_EPOCHS = "B"


# ---- 07c.2 predict -------------------------------------------------------------------
# 1 - 0.95^10 = 0.40
PREDICT_TEN_VERDICTS = "B"


# ---- 07c.3 code: Holm's step-down, the usual step after Bonferroni -------------------
def holm(p_values, alpha=0.05):
    m = len(p_values)
    reject = [False] * m
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        if p_values[i] > alpha / (m - rank):
            break  # this one fails: it and every larger p-value are kept
        reject[i] = True
    return reject
