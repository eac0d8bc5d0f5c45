"""Lesson 5's exercises: architectures (05_experiment_architectures.py).

Write your answers where it says TODO, then check them:
    python exercises/check.py 05
Stuck? exercises/solutions/ex05_architectures.py has one way to do each (try first!).
"""

import torch.nn as nn


# ---- 05.1 code: count parameters without building the model --------------------------
def count_parameters(layer_sizes):
    """The number of weights and biases of an MLP of fully connected layers with these
    sizes, e.g. [784, 128, 10] (lesson 3's SimpleNN). By arithmetic, not by building
    it; the check compares with PyTorch's count for four networks.
    """
    raise NotImplementedError("TODO")


# ---- 05.2 code: a fourth architecture, compared fairly -------------------------------
class FourthNN(nn.Module):
    """Your own MLP for MNIST: input [N, 1, 28, 28], output [N, 10] (logits), at most
    110,000 parameters (TwoLayerNN has 101,770: a fair race is between similar sizes).
    Ideas: another activation (nn.GELU, nn.LeakyReLU), two narrower hidden layers, a
    bottleneck. The check makes sure it is not linear (an activation between the layers)
    and returns logits, then trains it and TwoLayerNN the same way (same images, seed,
    optimizer, 2 epochs on 5,000 images) and prints both; it passes when yours learns
    (85%).
    """

    def __init__(self):
        super().__init__()
        raise NotImplementedError("TODO: build the layers")

    def forward(self, X):
        raise NotImplementedError("TODO")


# ---- 05.3 explore: read the results --------------------------------------------------
# Run: python 05_experiment_architectures.py --epochs 1 --subset 2000 --seeds 2
# Which architecture has the lowest MEAN validation accuracy in that run? (Then ask
# yourself whether the other two differ at all: lesson 5's interval column.)
LAST_05 = None  # TODO: "TwoLayerNN", "ThreeLayerNN" or "TanhNN"
