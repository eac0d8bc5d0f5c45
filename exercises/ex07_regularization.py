"""Lesson 7's exercises: regularization (07_regularization.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 07
Stuck? exercises/solutions/ex07_regularization.py has one way to do each (try first!).
"""

import torch  # noqa: F401  (you will need it)


# ---- 07.1 code: dropout's forward pass -----------------------------------------------
def dropout(x, p, training, generator):
    """nn.Dropout(p) by hand. In eval mode (training False): x unchanged. In train mode:
    each element is zeroed with probability p, and the others are divided by (1 - p), so
    that the mean stays what it was (then nothing needs to change at inference). Draw
    the random numbers with torch.rand(x.shape, generator=generator).
    The check counts the zeros (30% expected for p = 0.3, within 5 standard errors) and
    compares the kept values with x / (1 - p).
    """
    raise NotImplementedError("TODO")


# ---- 07.2 code: batch norm's forward pass --------------------------------------------
def batch_norm(x, running_mean, running_var, weight, bias, training, momentum=0.1,
               eps=1e-5):
    """nn.BatchNorm1d's forward pass for x [N, features], by hand.
    Train mode: normalize each feature with the batch's mean and (biased) variance:
        (x - mean) / sqrt(var + eps) * weight + bias
    and update the running statistics IN PLACE (running_mean.mul_(...).add_(...)):
        running = (1 - momentum) * running + momentum * batch statistic
    where the running variance takes the UNBIASED batch variance (n / (n - 1) times the
    biased one). Eval mode: normalize with running_mean and running_var instead; update
    nothing. The check compares with nn.BatchNorm1d over three batches, then in eval
    mode.
    """
    raise NotImplementedError("TODO")


# ---- 07.3 explore: read a gap from the results ---------------------------------------
# Run: python 07_regularization.py --epochs 4 --subset 1000 --seeds 1
# In its table, which remedy (the row's name) has the smallest gap between training
# accuracy and validation accuracy (its columns "train acc %" and "val acc %")? Is it
# also the best on validation?
NARROWEST_GAP_07 = None  # TODO: a row's name, as printed
