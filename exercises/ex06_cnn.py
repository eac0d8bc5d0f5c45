"""Lesson 6's exercises: the convolutional network (06_convolutional_network.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 06
Stuck? exercises/solutions/ex06_cnn.py has one way to do each (try first!).
"""

import torch  # noqa: F401  (you will need it)
import torch.nn.functional as F  # noqa: F401, N812  (F.pad may help)


# ---- 06.1 code: a convolution with loops ---------------------------------------------
def conv2d_loops(x, w, b, padding):
    """What nn.Conv2d computes (stride 1), with Python loops over the output positions:
    x [N, C_in, H, W], w [C_out, C_in, k, k], b [C_out], `padding` zeros on every side.
    out[n, o, i, j] = b[o] + sum over c, di, dj of
                      x[n, c, i + di, j + dj] * w[o, c, di, dj]
    (on the padded x). Return [N, C_out, H + 2 padding - k + 1, W + 2 padding - k + 1].
    Not F.conv2d, of course; the check compares with it.
    """
    raise NotImplementedError("TODO")


# ---- 06.2 code: output sizes ---------------------------------------------------------
def conv_output_size(n, kernel, stride, padding):
    """The output width of a convolution (or a pooling) over an input n pixels wide, as
    an int. Lesson 6's shapes go 28 -> 28 -> 14 -> 14 -> 7: check your formula on them.
    """
    raise NotImplementedError("TODO")


# ---- 06.3 predict --------------------------------------------------------------------
# Lesson 6's SmallCNN (two convolutions, 16 and 32 filters, then a small classifier)
# against lesson 3's SimpleNN (784-128-10). The CNN has...
#   "A": fewer parameters (under 0.8x SimpleNN's count)
#   "B": about as many (within 25%: 0.8x to 1.25x SimpleNN's count)
#   "C": more parameters (over 1.25x SimpleNN's count)
PREDICT_CNN_SIZE = None  # TODO: "A", "B" or "C"


# ---- 06.4 explore: 95% in one epoch --------------------------------------------------
# Run python 06_convolutional_network.py --epochs 1 --subset 5000 (lesson 6's CNN on
# 5,000 images, one epoch) and note its best validation accuracy.
# Find flags among --lr, --batch-size and --max-shift with which the same command
# reaches at least 95%, then write them here.
FLAGS_06 = None  # TODO: e.g. ["--lr", "0.003"]
