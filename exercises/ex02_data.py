"""Lesson 2's exercises: the data (02_load_mnist.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 02
Stuck? exercises/solutions/ex02_data.py has one way to do each (try first!).
"""

import torch  # noqa: F401  (you will need it)


# ---- 02.1 code: the normalization constants ------------------------------------------
def normalization_constants(images):
    """(mean, std) of all the pixels of `images` (uint8 [N, 28, 28], 0 to 255) after
    scaling them to 0..1: two Python floats. Lesson 2 computes MNIST's 0.1307 and 0.3081
    this way; the check compares with a float64 computation on 20,000 training images.
    One mean and one std over ALL pixels together (not per image, not per position).
    Hint: uint8 cannot hold fractions; convert first (.double() is the most exact).
    """
    raise NotImplementedError("TODO")


# ---- 02.2 code: a train/validation split ---------------------------------------------
def split_indices(n, n_val, seed):
    """Split the indices 0..n-1 at random into (train_indices, val_indices), with n_val
    in validation: every index in exactly one part; the same seed gives the same split,
    another seed another one. Use a torch.Generator seeded with `seed` (not the global
    random state: then the split would depend on whatever ran before).
    Lesson 2 holds out 5,000 of the 60,000 training images this way
    (dl_utils.train_val_split).
    """
    raise NotImplementedError("TODO")


# ---- 02.3 predict --------------------------------------------------------------------
# A "model" that ignores the image and always answers the most common digit of the
# training set. Its accuracy on the 5,000 validation images is...
#   "A": about 10%   "B": about 30%   "C": about 50%
PREDICT_MAJORITY = None  # TODO: "A", "B" or "C"
