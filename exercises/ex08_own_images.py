"""Lesson 8's exercises: your own images (08_your_own_images.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 08
Stuck? exercises/solutions/ex08_own_images.py has one way to do each (try first!).
"""

import numpy as np  # noqa: F401  (you will need it)
import torch  # noqa: F401
from torch.utils.data import Dataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


# ---- 08.1 code: a Dataset for a new source -------------------------------------------
class CsvDigits(Dataset):
    """Digits stored in a CSV file: a header line, then one digit per line: its label,
    then its 784 pixels (0 to 255, row by row). CsvDigits(path)[i] is (X, y): X a float
    tensor [1, 28, 28] normalized as lesson 2 does ((x / 255 - mean) / std), y the label
    as an int or a 0-d tensor; len() is the number of digits. Then
    DataLoader(CsvDigits(path), batch_size=32) works as lesson 8's ImageFolder does.
    Hint: np.loadtxt(path, delimiter=",", skiprows=1) reads the numbers.
    """

    def __init__(self, path):
        raise NotImplementedError("TODO: read the file")

    def __len__(self):
        raise NotImplementedError("TODO")

    def __getitem__(self, i):
        raise NotImplementedError("TODO")


# ---- 08.2 code: paper to MNIST -------------------------------------------------------
def light_on_dark(gray):
    """gray: a 2-D numpy array of floats in 0..1 (0 black, 1 white). MNIST digits are
    light on black; a photo of ink on paper is dark on light. Return the image light on
    dark: inverted (1 - gray) when its border (the outermost rows and columns) is mostly
    light, unchanged otherwise. Lesson 4's dl_utils.digit_from_gray decides the same
    way.
    """
    raise NotImplementedError("TODO")


# ---- 08.3 predict --------------------------------------------------------------------
# Lesson 3's model, trained on MNIST (light on black), shown the same validation digits
# dark on white (inverted). Its accuracy is...
#   "A": about the same (at least 85% of it)   "B": clearly lower, but 30% or more
#   "C": below 30%
PREDICT_INVERTED = None  # TODO: "A", "B" or "C"
