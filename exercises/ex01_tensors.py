"""Lesson 1's exercises: tensors and autograd (01_tensors_and_autograd.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 01
Stuck? exercises/solutions/ex01_tensors.py has one way to do each (try first!).
"""

import torch  # noqa: F401  (you will need it)


# ---- 01.1 code: softmax and cross-entropy by hand ------------------------------------
def cross_entropy(logits, y):
    """The mean cross-entropy of a batch: logits [N, 10] (any real numbers), y [N] (the
    right class of each row). It must equal F.cross_entropy(logits, y).

    softmax turns a row of logits into probabilities: exp(z_i) / sum_j exp(z_j); the
    loss of a row is -log(probability of its right class); the batch's loss is the mean.
    Careful: exp(1000) is inf in float32. Subtracting the row's largest logit first
    changes no probability (it cancels in the fraction) and keeps exp() at most 1: the
    "log-sum-exp trick". The check uses logits up to about 3,000.
    Allowed: torch operations (exp, log, sum, max, indexing); not F.cross_entropy,
    F.log_softmax or torch.logsumexp.
    """
    raise NotImplementedError("TODO")


# ---- 01.2 code: a gradient without autograd ------------------------------------------
def numerical_gradient(f, x, eps=1e-3):
    """The gradient of f (a function of a 1-D tensor x that returns a number) at x,
    estimated by central differences: for each element i,
        (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)
    where e_i is 1 at position i and 0 elsewhere. Return a tensor shaped like x.
    Lesson 1 checks backpropagation against autograd; this is how you would check
    autograd itself. (Why central? Its error shrinks like eps^2, a one-sided
    difference's only like eps: the check can tell them apart.)
    """
    raise NotImplementedError("TODO")


# ---- 01.3 predict --------------------------------------------------------------------
# w = torch.tensor([1., 2., 3.], requires_grad=True); loss = (w ** 2).sum()
# loss.backward(retain_graph=True), then loss.backward() again, with no zero_grad
# between.
# What is w.grad then?  "A": the same as after one call  "B": twice as large  "C": zero
PREDICT_BACKWARD_TWICE = None  # TODO: "A", "B" or "C"
