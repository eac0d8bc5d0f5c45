"""Lesson 8b's exercises: fine-tuning, and what it forgets (08b_fine_tuning.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 08b
Stuck? exercises/solutions/ex08b_fine_tuning.py has one way to do each (try first!).
"""

import torch  # noqa: F401  (you will need it)


# ---- 08b.1 code: freeze all but one part ---------------------------------------------
def freeze_except(model, prefix):
    """Let only the parameters whose name (model.named_parameters()) starts with
    `prefix` learn: set requires_grad to True for those and to False for every other
    one, whatever it was before. Return how many numbers (elements) remain trainable.
    Lesson 8b's --train-only classifier does this with the prefix "classifier.".
    """
    raise NotImplementedError("TODO")


# ---- 08b.2 code: rehearsal, the classic cure for forgetting --------------------------
def rehearsal_mix(X_new, y_new, X_old, y_old, n_old, generator):
    """Fine-tuning data that keeps reminding the model of what it knew: every new image
    (X_new, y_new, in order), then n_old images drawn at random from the old data
    (X_old, y_old) WITHOUT repeats, each with its own label. Draw with `generator` (a
    seeded torch.Generator: the same draw on every run). Return (X, y), concatenated.
    Hint: torch.randperm(len(y_old), generator=generator)[:n_old] picks the rows.
    """
    raise NotImplementedError("TODO")


# ---- 08b.3 predict -------------------------------------------------------------------
# Fine-tuning fixed 0 held-out predictions and broke 5. McNemar's exact test (lesson
# 8b's coin_flip_p) gives a p-value that is...
#   "A": below 0.05 (clear)   "B": between 0.05 and 0.1   "C": above 0.1
PREDICT_ZERO_AGAINST_FIVE = None  # TODO: "A", "B" or "C"
