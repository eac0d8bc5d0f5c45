"""Lesson 3: the training loop, the heart of deep learning.

A network with 784 inputs, 128 hidden units and 10 outputs learns to read handwritten
digits. The loop that teaches it is written out in fit() below, in plain view: for each
epoch (one pass over the training images), for each batch of 64 images, five steps:
zero the gradients, forward pass, loss, backward pass (backpropagation), optimizer step.
After each epoch the network is scored on the validation images. The epoch that scored
best is kept, tested once on the test images, and saved to models/simple_nn.pt for
lesson 4.

Run it (from any folder):
    python 03_train_mnist.py                 # the defaults: the README's results
    python 03_train_mnist.py --lr 0.01       # change one thing, run again, compare
    python 03_train_mnist.py --epochs 1 --subset 5000   # a quick look
    python 03_train_mnist.py -h              # every setting, with its default

Then break it on purpose, in a copy: `cp 03_train_mnist.py broken_03.py`, delete the
line optimizer.zero_grad() in fit() of broken_03.py, and run
    python broken_03.py --checkpoint models/broken.pt
(without --checkpoint the broken model would replace models/simple_nn.pt, the one that
lesson 4 loads).
Ctrl-C stops this lesson at once and saves nothing. How a run survives Ctrl-C, goes on
after a stop, or is stopped when it diverges (--lr 10) is an optional lesson for after
the core path (01 to 06): python 03b_training_that_survives.py
Exercises: exercises/ex03_training.py, checked by python exercises/check.py 03
"""

import copy
import time
from pathlib import Path

import torch
import torch.nn as nn

import dl_utils

# ---- Settings: each has a command-line flag (-h lists them with their defaults) ----
BATCH_SIZE = 64  # images per step: smaller = noisier gradients, more steps per epoch
LR = 1e-3  # learning rate: the step size of Adam, the optimizer (what Adam does:
# make_optimizer below); docs/results.md measures 1e-2 and 1e-4 too
NUM_EPOCHS = 10  # passes over 55,000 images; the curves show what more would do
HIDDEN_SIZE = 128  # hidden units: more = more capacity, slower, more room to overfit
OPTIMIZER = "adam"  # or "sgd": plain stochastic gradient descent with momentum
MOMENTUM = 0.9  # SGD only: how much of the previous step each step keeps
INPUTS = "standardized"  # pixel scaling; "unit" and "raw" measure why it matters
LABEL_NOISE = 0.0  # fraction of training labels replaced by a wrong digit (bad data)
SEED = 0  # same seed, same initial weights and batch order, same result (same machine)
CHECKPOINT = dl_utils.MODELS_DIR / "simple_nn.pt"  # where the kept model is saved


class SimpleNN(nn.Module):
    """784 -> 128 -> ReLU -> 10: one hidden layer, 101,770 parameters.

    784 inputs: a 28x28 image flattened into one vector (this network ignores which
    pixel is next to which; lesson 6's convolutional network does not). 128 hidden
    units: enough capacity to fit MNIST well, small enough to train in seconds; try 32
    or 512. 10 outputs: one score (a "logit") per digit. Without the non-linearity
    between the layers, two linear layers would collapse into one linear map (W2 @ W1
    is just a matrix), and the model could only draw straight boundaries between
    digits. ReLU, max(0, x), is the cheapest non-linearity, and its gradient is 1 for
    every active unit, so it does not fade as tanh's and sigmoid's do for large inputs.
    """

    def __init__(self, input_size=784, hidden_size=HIDDEN_SIZE, num_classes=10):
        super().__init__()
        self.flatten = nn.Flatten()  # [N, 1, 28, 28] -> [N, 784]
        # nn.Linear stores its weight as [out, in] = [128, 784] and computes
        # x @ W.T + b: the transpose of lesson 1's W [in, out], the same numbers laid
        # out the other way
        self.fc1 = nn.Linear(input_size, hidden_size)  # 784*128 weights + 128 biases
        self.activation = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_classes)  # 128*10 weights + 10 biases

    def forward(self, x):
        # Returns raw scores (logits), no softmax: the loss function applies it itself.
        return self.fc2(self.activation(self.fc1(self.flatten(x))))


def fit(model, train_loader, val_loader, optimizer, num_epochs, device, verbose=True):
    """Train for num_epochs; keep the weights of the epoch with the best validation
    accuracy.

    Returns a dict: history (the numbers of every epoch), best_epoch, best_val_acc,
    train_seconds and status. On return the model holds the kept weights. Validation
    picks the epoch; the test set is never looked at here. Later lessons use
    dl_utils.fit, a copy of this loop (tests/test_sync.py checks that both give the same
    weights) with the guards of lesson 3b added: Ctrl-C, divergence, resuming.
    """
    # The loss: CrossEntropyLoss takes the raw scores (logits), turns them into
    # probabilities (softmax, lesson 4) and returns -log(probability of the true digit),
    # averaged over the batch: 2.30 = ln(10) for a network that guesses at random,
    # 0 for one that is certain and right.
    loss_fn = nn.CrossEntropyLoss()
    history = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [],
               "seconds": []}
    best = {"epoch": 0, "val_acc": -1.0, "state": None}  # the best epoch so far
    if verbose:
        print(EPOCH_HEADER)
    for epoch in range(1, num_epochs + 1):  # counted from 1, as the table prints them
        start = time.perf_counter()
        model.train()  # training mode: matters for dropout and batch norm (lesson 7)
        loss_sum = 0.0
        correct = 0
        seen = 0
        for X, y in train_loader:  # X: 64 images [64, 1, 28, 28]; y: their 64 labels
            X, y = X.to(device), y.to(device)  # no-op here: the data is there already
            optimizer.zero_grad()  # 1. clear old gradients: backward() ADDS to .grad
            y_hat = model(X)  # 2. forward pass: [64, 1, 28, 28] -> logits [64, 10]
            loss = loss_fn(y_hat, y)  # 3. one number: how wrong the predictions are
            loss.backward()  # 4. backpropagation: d(loss)/d(weight) for every weight
            optimizer.step()  # 5. move every weight a small step against its gradient
            # The rest only keeps the books: it changes nothing in the training.
            # .item() copies a number to Python (on a GPU it waits for the step to end).
            loss_sum += loss.item() * len(y)
            correct += (y_hat.argmax(dim=1) == y).sum().item()
            seen += len(y)
        # After each epoch: how good is the network on images it never trains on?
        val_loss, val_acc = dl_utils.evaluate_model(model, val_loader, device)
        # (The training numbers were measured while the weights were still changing:
        # a slightly pessimistic estimate of how well the model fits them at the end.)
        history["train_loss"].append(loss_sum / seen)
        history["train_acc"].append(correct / seen)
        history["val_loss"].append(val_loss)
        history["val_acc"].append(val_acc)
        history["seconds"].append(time.perf_counter() - start)
        improved = keep_if_best(best, model, epoch, val_acc)
        if verbose:
            print(epoch_row(epoch, history, improved), flush=True)
    model.load_state_dict(best["state"])  # the kept epoch's weights, not the last ones
    return {"status": "completed", "history": history, "best_epoch": best["epoch"],
            "best_val_acc": best["val_acc"], "train_seconds": sum(history["seconds"]),
            "diverged": None}  # (dl_utils.fit's keys: its runs can also stop early)


def keep_if_best(best, model, epoch, val_acc):
    """Remember this epoch's weights if its validation accuracy beats every earlier one.

    Why accuracy and not validation loss: accuracy is the number we report, and the
    loss also punishes confident mistakes (a wrong answer given with 99% certainty costs
    far more than one given with 40%), so it can start rising while accuracy still
    improves. Keeping the best epoch is also "early stopping" after the fact.
    """
    if val_acc <= best["val_acc"]:
        return False
    best["epoch"] = epoch
    best["val_acc"] = val_acc
    # deepcopy: state_dict() returns references to the live weights, which keep changing
    best["state"] = copy.deepcopy(model.state_dict())
    return True


EPOCH_HEADER = (f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'val loss':>8}  "
                f"{'val acc':>7}  {'seconds':>7}")


def epoch_row(epoch, h, best):
    """One aligned table row per epoch; '*' marks a new best validation accuracy."""
    return (f"{epoch:>5}  {h['train_loss'][-1]:>10.4f}  "
            f"{100 * h['train_acc'][-1]:>8.2f}%  "
            f"{h['val_loss'][-1]:>8.4f}  {100 * h['val_acc'][-1]:>6.2f}%  "
            f"{h['seconds'][-1]:>7.2f}{'  *' if best else ''}")


def make_optimizer(model, args):
    """Adam (the default) or SGD with momentum.

    SGD moves every weight by lr times its gradient; momentum adds a fraction of the
    previous step, which smooths the zig-zag of noisy gradients. With momentum m, a
    gradient that keeps pointing the same way builds up steps of lr / (1 - m): 10 x lr
    at m = 0.9. So --lr 0.01 with momentum 0.9 moves about as fast as --lr 0.1 without
    (--momentum 0), and docs/results.md measures SGD best at 0.01 (0.1 already worse,
    0.3 diverging). Adam also divides each weight's step by a running average of its
    gradient's size, so every weight moves at a sensible speed with little tuning of
    lr; SGD's lr must be tuned (docs/results.md tries four).
    """
    if args.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    return torch.optim.Adam(model.parameters(), lr=args.lr)


def main(argv=None):
    args = parse_args(argv)
    # Device, seed, and the data: 55,000 training, 5,000 validation, 10,000 test images
    device, loaders = dl_utils.setup(args, args.inputs, args.label_noise)
    train_loader, val_loader, _ = loaders
    model_kwargs = {"hidden_size": args.hidden_size}
    model = SimpleNN(**model_kwargs).to(device)
    dl_utils.introduce(model, train_loader, "(4 bytes each)")  # its size and shapes
    dl_utils.section(f"Training: {args.epochs} epochs, {args.optimizer}, lr {args.lr}")
    optimizer = make_optimizer(model, args)
    result = fit(model, train_loader, val_loader, optimizer, args.epochs, device)
    return finish(args, model, model_kwargs, loaders, device, result)


# ---- After training: test once, save, explain ---------------------------------------
def finish(args, model, model_kwargs, loaders, device, result):
    """After training: test the kept model once, save it, plot, summarize."""
    path = dl_utils.kept_model_path(args, result)
    kept = result["best_epoch"]
    dl_utils.section(f"Kept model: epoch {kept} (best validation accuracy)")
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.save_run_results(Path(__file__).name, args, device, result, metrics)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(path, args, model, model_kwargs, result, metrics, device,
                             defaults=vars(parse_args([])))
    save_whole_model(path, model)
    dl_utils.plot_training_history(result["history"], "03_training_history.png",
                                   "SimpleNN on MNIST", args.show)
    dl_utils.section("Summary")
    dl_utils.prose(best_epochs_explained(result["history"], len(loaders[1].dataset)))
    print(f"Test accuracy {dl_utils.format_accuracy(metrics['test_acc'], 10_000)} | "
          f"training time {result['train_seconds']:.1f} s (epochs + validation)")
    print("Next: python 04_load_model.py (later, optional: python "
          "03b_training_that_survives.py, how training survives a stop)")
    dl_utils.show_figures(args.show)
    return 0


def best_epochs_explained(history, n_val):
    """Which epoch had the lowest validation loss, which the best accuracy, and what
    that means: each sentence only where the numbers say so."""
    acc = history["val_acc"]
    loss = history["val_loss"]
    by_loss = 1 + loss.index(min(loss))  # the first epoch with the lowest loss
    by_acc = 1 + acc.index(max(acc))  # the first with the best accuracy: the kept one
    if by_loss == by_acc:
        return f"Validation loss and accuracy were both best at epoch {by_acc}."
    said = (f"Validation loss was lowest at epoch {by_loss}, validation accuracy "
            f"highest at epoch {by_acc} (the one kept).")
    gap = acc[by_acc - 1] - acc[by_loss - 1]
    # The standard error: how far an accuracy measured on n images typically lands from
    # the accuracy on all images like them, by the luck of which n were drawn.
    se = dl_utils.accuracy_se(acc[by_acc - 1], n_val)
    if gap < 2 * se:  # within noise: either epoch would do
        return (f"{said} Their accuracies differ by {100 * gap:.2f} points, less than "
                f"twice {100 * se:.2f}, the standard error of an accuracy measured on "
                f"{n_val:,} images (how far the luck of which images were drawn "
                "typically moves it): within noise, either epoch would do.")
    if by_loss < by_acc:
        return (f"{said} The loss grows when the model becomes confidently wrong on a "
                "few images, even while it gets more images right: see keep_if_best().")
    return (f"{said} The loss kept falling after accuracy peaked: the model grew more "
            "confident on images it got right while it lost a few others.")


def save_whole_model(path, model):
    """The whole-model route, for 04's lesson: pickles the object, its class's name
    included.

    The reference reads "__main__.SimpleNN" here, because this file runs as __main__.
    04 shows, without unpickling this file, why that breaks elsewhere.
    """
    whole = path.with_name(f"{path.stem}_whole.pt")
    with dl_utils.atomic_path(whole) as tmp:
        torch.save(copy.deepcopy(model).cpu(), tmp)
    print("Saved the whole model (pickle route, for 04's lesson) to "
          f"{dl_utils.display_path(whole)}")


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR,
                               num_epochs=NUM_EPOCHS)
    parser.add_argument("--hidden-size", type=dl_utils.positive_int,
                        default=HIDDEN_SIZE,
                        help="hidden units of SimpleNN (default: %(default)s)")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default=OPTIMIZER,
                        help="adam, or sgd with --momentum: try --lr 0.01 (with "
                             "momentum 0.9 its steps are 10x lr: see make_optimizer) "
                             "(default: %(default)s)")
    parser.add_argument("--momentum", type=dl_utils.fraction, default=MOMENTUM,
                        help="SGD's momentum, in [0, 1) (default: %(default)s)")
    scalings = "; ".join(f"{k} = {v}" for k, v in dl_utils.INPUT_SCALINGS.items())
    parser.add_argument("--inputs", choices=list(dl_utils.INPUT_SCALINGS),
                        default=INPUTS,
                        help=f"pixel scaling: {scalings} (default: %(default)s)")
    parser.add_argument("--label-noise", type=dl_utils.fraction, default=LABEL_NOISE,
                        help="fraction of training labels replaced by a wrong digit "
                             "(default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file,
                        default=str(CHECKPOINT),
                        help="where to save the kept model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_results_arg(parser)
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


if __name__ == "__main__":
    dl_utils.run_main(main)
