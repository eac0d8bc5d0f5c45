"""Lesson 1: tensors, and backpropagation by hand, checked by autograd.

Before the training loop calls loss.backward() thousands of times, we open the box once.
A tiny network (3 inputs, 5 hidden ReLU units, 3 classes) sees a batch of 4 examples.
We write its forward pass step by step, derive every gradient by hand with the chain
rule, and check them against PyTorch's autograd and against a finite-difference
estimate. Then we take one gradient-descent step by hand and watch the loss go down,
and see why optimizer.zero_grad() exists. No dataset needed; runs in a few seconds.

Run it:
    python 01_tensors_and_autograd.py
    python 01_tensors_and_autograd.py --seed 3 --lr 1.0    # other numbers, same lesson
Exercises: exercises/ex01_tensors.py, checked by python exercises/check.py 01
"""

import torch

import dl_utils

# ---- Settings (each has a command-line flag; -h lists them) ----
SEED = 0  # picks the random batch and initial weights
LR = 0.5  # step size of the hand-made gradient-descent step (big: a tiny, easy problem)
EPS = 1e-6  # finite-difference step: small enough to be local, large enough for float64
DTYPE = torch.float64  # 64-bit, not PyTorch's usual float32: why, at finite_difference


def tensor_basics(device):
    """Creation, shape, dtype, broadcasting, matrix multiply, and moving to a device."""
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    print(f"torch.tensor(...)     shape {list(x.shape)}, dtype {x.dtype}: "
          "2 rows, 3 columns")
    print(f"x.to(torch.int64)     dtype {x.to(torch.int64).dtype}: "
          "integer labels use this")
    print(f"torch.zeros(2, 3)     {torch.zeros(2, 3).tolist()}")
    col = torch.tensor([[10.0], [20.0]])  # shape [2, 1]
    print(f"x + col               {(x + col).tolist()}")
    print("   broadcasting: [2, 3] + [2, 1] stretches the column across the 3 columns")
    W = torch.ones(3, 4)
    print(f"x @ W                 {list(x.shape)} @ {list(W.shape)} -> "
          f"{list((x @ W).shape)}: inner sizes must match")
    image = torch.rand(28, 28)
    print(f"image.flatten()       {list(image.shape)} -> "
          f"{list(image.flatten().shape)}: what an MLP's first layer sees")
    on_device = x.to(device)
    print(f"x.to(device)          now on '{on_device.device}': "
          "operations between tensors need them on the same device")


def make_problem(seed):
    """A batch X [4, 3] with labels y [4], and weights of a 3-5-3 network.

    W1 is [in, out] = [3, 5], so that X @ W1 reads left to right:
    [4, 3] @ [3, 5] -> [4, 5]. nn.Linear stores the same numbers the other way round,
    [out, in], and computes X @ W.T (04 prints fc1.weight as [128, 784]): one
    convention, transposed.
    """
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(4, 3, generator=g, dtype=DTYPE)
    y = torch.tensor([0, 2, 1, 2])
    params = {
        "W1": torch.randn(3, 5, generator=g, dtype=DTYPE) * 0.8,
        "b1": torch.randn(5, generator=g, dtype=DTYPE) * 0.1,
        "W2": torch.randn(5, 3, generator=g, dtype=DTYPE) * 0.8,
        "b2": torch.randn(3, generator=g, dtype=DTYPE) * 0.1,
    }
    return X, y, params


def forward(X, y, p):
    """The forward pass, one named step at a time; returns the loss and what backward
    needs."""
    Z1 = X @ p["W1"] + p["b1"]  # [4, 5] weighted sums ("pre-activations": before ReLU)
    H = torch.relu(Z1)  # [4, 5] ReLU: max(0, z) element-wise
    Z2 = H @ p["W2"] + p["b2"]  # [4, 3] logits, one score per class
    Z2_shifted = Z2 - Z2.max(dim=1, keepdim=True).values  # same softmax, no overflow
    P = Z2_shifted.exp() / Z2_shifted.exp().sum(dim=1, keepdim=True)  # [4, 3] softmax
    N = len(y)
    loss = -P[torch.arange(N), y].log().mean()  # cross-entropy: -log p(true class),
    # averaged
    return loss, {"X": X, "Z1": Z1, "H": H, "P": P}


def backward_by_hand(y, p, cache):
    """Every gradient of the loss, from the last layer back to the first
    (the chain rule)."""
    X, Z1, H, P = cache["X"], cache["Z1"], cache["H"], cache["P"]
    N = len(y)
    # Softmax followed by cross-entropy has the simplest derivative in deep learning:
    # d loss / d logits = (probabilities - one_hot(true class)) / N. The /N comes from
    # the mean over the batch. Raising the true class's logit lowers the loss, hence the
    # -1.
    dZ2 = P.clone()
    dZ2[torch.arange(N), y] -= 1
    dZ2 /= N
    # Z2 = H @ W2 + b2. Each weight W2[j, k] multiplies H[:, j] on its way to Z2[:, k],
    # so its gradient sums H[:, j] * dZ2[:, k] over the batch: a matrix product
    # H^T @ dZ2.
    dW2 = H.T @ dZ2
    db2 = dZ2.sum(dim=0)  # a bias adds 1 * itself to every example: sum over the batch
    # The error flows back to the hidden units through the same weights, transposed.
    dH = dZ2 @ p["W2"].T
    # ReLU passes the gradient where it was active (z > 0) and blocks it where it was
    # not.
    dZ1 = dH * (Z1 > 0).to(dH.dtype)
    dW1 = X.T @ dZ1  # same pattern as W2: input transposed times gradient of the output
    db1 = dZ1.sum(dim=0)
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def backward_by_autograd(X, y, p):
    """The same gradients from PyTorch: mark the weights, compute the loss, call
    backward()."""
    # requires_grad_(True) asks autograd to record every operation that uses these
    # tensors (the "graph"). They are its "leaves": tensors we made ourselves, not
    # results of recorded operations, and the only ones whose .grad backward() fills in.
    leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    loss, _ = forward(X, y, leaves)
    loss.backward()  # autograd walks the recorded graph backwards, applying the chain
    # rule
    return {k: v.grad for k, v in leaves.items()}


# Why float64 (DTYPE) in this lesson: hand and autograd gradients then agree to ~1e-16
# (rounding of the last of float64's ~16 digits). The table checks them against 1e-6,
# far looser: a real mistake in a formula (a missing transpose, a forgotten /N) gives
# differences of 1e-2 or more, so 1e-6 cannot miss one. Switch DTYPE to float32 (about 7
# significant digits) and the autograd table still holds (~2e-8), but the finite
# difference breaks: EPS 1e-6 is below float32's resolution of the loss, so the nudge is
# lost in rounding (-0.358 against the hand value -0.408); EPS 1e-3 gives -0.40829
# again. That is why torch.autograd.gradcheck, PyTorch's own finite-difference check,
# insists on float64.
def finite_difference(X, y, p, name, index, eps=EPS):
    """A third opinion: nudge one weight up and down and watch the loss
    (no calculus)."""
    up = {k: v.clone() for k, v in p.items()}
    down = {k: v.clone() for k, v in p.items()}
    up[name][index] += eps
    down[name][index] -= eps
    return ((forward(X, y, up)[0] - forward(X, y, down)[0]) / (2 * eps)).item()


def compare_gradients(hand, auto):
    """A table of the largest difference per parameter; returns the overall maximum."""
    rows, worst = [], 0.0
    for name in hand:
        diff = (hand[name] - auto[name]).abs().max().item()
        worst = max(worst, diff)
        rows.append([name, str(list(hand[name].shape)), f"{diff:.1e}",
                     "yes" if diff < 1e-6 else "NO"])
    dl_utils.print_table(
        ["parameter", "shape", "max |hand - autograd|", "match (< 1e-6)"], rows)
    return worst


def sgd_step_by_hand(p, grads, lr):
    """Gradient descent: every weight moves a step of size lr against its gradient."""
    return {k: p[k] - lr * grads[k] for k in p}


def sgd_step_with_optimizer(X, y, p, lr):
    """The same step with torch.optim.SGD, the way the training scripts do it."""
    leaves = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    optimizer = torch.optim.SGD(leaves.values(), lr=lr)
    optimizer.zero_grad()
    forward(X, y, leaves)[0].backward()
    optimizer.step()
    return {k: v.detach() for k, v in leaves.items()}


def zero_grad_demo(X, y, p):
    """Why zero_grad(): backward() ADDS to .grad, it does not overwrite it."""
    W2 = p["W2"].clone().requires_grad_(True)
    params = {**p, "W2": W2}
    forward(X, y, params)[0].backward()
    once = W2.grad.clone()
    forward(X, y, params)[0].backward()  # a second backward without zeroing
    twice = W2.grad.clone()
    print("W2.grad[0] after one backward():  "
          f"{[round(v, 4) for v in once[0].tolist()]}")
    print("W2.grad[0] after two backward():  "
          f"{[round(v, 4) for v in twice[0].tolist()]}")
    print(f"ratio: {(twice.norm() / once.norm()).item():.1f}")
    dl_utils.prose("""
        Gradients accumulate, which is useful to sum gradients over several small
        batches, and a bug when you forget: the step would use stale gradients. Hence
        optimizer.zero_grad() at the start of every training step.""")
    return once, twice


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--lr", type=dl_utils.positive_float, default=LR,
                        help="step size of the gradient-descent step "
                             "(default: %(default)s)")
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    dl_utils.section("1. Tensors in a few lines")
    tensor_basics(dl_utils.get_device(args.device))

    dl_utils.section("2. Forward pass of a 3-5-3 network on 4 examples")
    X, y, p = make_problem(args.seed)
    loss, cache = forward(X, y, p)
    for name, value in [("X (inputs)", X), ("Z1 = X @ W1 + b1", cache["Z1"]),
                        ("H = relu(Z1)", cache["H"]), ("P = softmax(Z2)", cache["P"])]:
        print(f"{name:<18} shape {list(value.shape)}  first row "
              f"{[round(v, 3) for v in value[0].tolist()]}")
    print(f"labels y = {y.tolist()};  loss = mean(-log P[i, y[i]]) = {loss.item():.6f}")

    dl_utils.section("3. Gradients: by hand vs autograd vs finite differences")
    hand = backward_by_hand(y, p, cache)
    auto = backward_by_autograd(X, y, p)
    compare_gradients(hand, auto)
    # The weight with the largest gradient: argmax() counts through the matrix row by
    # row as if it were flat, and unravel_index turns that count back into
    # (row, column).
    i, j = (int(k) for k in torch.unravel_index(hand["W1"].abs().argmax(),
                                                hand["W1"].shape))
    fd = finite_difference(X, y, p, "W1", (i, j))
    print(f"\nd loss / d W1[{i},{j}]:  by hand {hand['W1'][i, j].item():+.10f}   "
          f"autograd {auto['W1'][i, j].item():+.10f}   finite difference {fd:+.10f}")
    print("Three methods, one answer: the chain rule done by hand is what backward() "
          "automates.")
    return teach_steps(args, X, y, p, hand, loss)


def teach_steps(args, X, y, p, hand, loss):
    """Sections 4 and 5: one gradient-descent step, then zero_grad()."""
    dl_utils.section(f"4. One gradient-descent step, lr = {args.lr}")
    stepped = sgd_step_by_hand(p, hand, args.lr)
    new_loss = forward(X, y, stepped)[0]
    print(f"loss before {loss.item():.6f} -> after one step {new_loss.item():.6f}")
    with_optim = sgd_step_with_optimizer(X, y, p, args.lr)
    diff = max((stepped[k] - with_optim[k]).abs().max().item() for k in p)
    print(f"torch.optim.SGD makes the same step: max weight difference {diff:.1e}")

    dl_utils.section("5. Why optimizer.zero_grad()")
    zero_grad_demo(X, y, p)
    print("\nNext: python 02_load_mnist.py")
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
