"""Lesson 3: the training loop, the heart of deep learning.

A 784-128-10 network learns to read handwritten digits. Every step of the loop is
spelled out: zero the gradients, forward pass, loss, backward pass (backpropagation),
optimizer step. The epoch with the best validation accuracy is kept, tested once on the
test set, and saved to models/simple_nn.pt for 04_load_model.py.

Run it (from any folder):
    python 03_train_mnist.py                 # the defaults: the README's expected results
    python 03_train_mnist.py --lr 0.01       # change one thing, run again, compare
    python 03_train_mnist.py --epochs 1 --subset 5000   # a quick look
    python 03_train_mnist.py -h              # every setting with its default

Try: --lr 10 (training diverges; the script stops and keeps your saved model), and
Ctrl-C in the middle of training (it stops after the batch and keeps the best epoch).
"""

import copy
import math
import signal
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a command-line flag (-h) ----
BATCH_SIZE = 64  # images per step: smaller = noisier gradients, more steps per epoch
LR = 1e-3  # Adam's step size: 1e-2 bounces around 95%, 1e-4 is still climbing at epoch 10
NUM_EPOCHS = 10  # passes over 55,000 images; validation loss bottoms out around epoch 5
HIDDEN_SIZE = 128  # hidden units: more = more capacity, slower, more room to overfit
SEED = 0  # same seed, same initial weights and batch order, same result on the CPU
CHECKPOINT = dl_utils.MODELS_DIR / "simple_nn.pt"  # where the kept model is saved

# Divergence: an untrained network guesses uniformly, a loss of ln(10) = 2.30 per image.
# Training lowers it. An epoch that averages 10 times that (or NaN, or infinity) means the
# steps were so large that the weights flew off: with Adam, --lr 1 or more does it here.
DIVERGED_LOSS = 10 * math.log(10)


class SimpleNN(nn.Module):
    """784 -> 128 -> ReLU -> 10: one hidden layer, 101,770 parameters.

    784 inputs: a 28x28 image flattened into one vector (this network ignores which pixel
    is next to which; 06's convolutional network does not). 128 hidden units: enough
    capacity to fit MNIST well, small enough to train in seconds; try 32 or 512. 10
    outputs: one score (logit) per digit. Without the non-linearity between the layers,
    two linear layers would collapse into one linear map (W2 @ W1 is just a matrix), and
    the model could only draw straight boundaries between digits. ReLU, max(0, x), is the
    cheapest non-linearity, and its gradient is 1 for every active unit, so it does not
    fade as tanh and sigmoid do for large inputs.
    """

    def __init__(self, input_size=784, hidden_size=HIDDEN_SIZE, num_classes=10):
        super().__init__()
        self.flatten = nn.Flatten()  # [N, 1, 28, 28] -> [N, 784]
        self.fc1 = nn.Linear(input_size, hidden_size)  # 784*128 weights + 128 biases
        self.activation = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_classes)  # 128*10 weights + 10 biases

    def forward(self, x):
        # Returns raw scores (logits), no softmax: the loss function applies it itself.
        return self.fc2(self.activation(self.fc1(self.flatten(x))))


def train_epoch(model, loader, loss_fn, optimizer, device, stop=None, desc="train",
                scheduler=None):
    """One pass over the training data; returns (average loss, accuracy) of that pass."""
    model.train()  # training mode: changes dropout and batch norm; SimpleNN has neither,
    #                so here it changes nothing, but the habit prevents a silent bug later.
    loss_sum = torch.zeros((), device=device)  # summed on the device: no sync per batch
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = 0
    for X, y in tqdm(loader, desc=desc, leave=False, disable=None):  # bar only in a terminal
        X, y = X.to(device), y.to(device)  # no-op: our loaders already live on `device`
        optimizer.zero_grad()  # 1. clear old gradients: backward() ADDS to .grad
        y_hat = model(X)  # 2. forward pass: [64, 1, 28, 28] -> logits [64, 10]
        loss = loss_fn(y_hat, y)  # 3. one number: how wrong the batch's predictions are
        loss.backward()  # 4. backpropagation: d(loss)/d(weight) for every weight, by
        #                     the chain rule, from the loss back through every layer
        optimizer.step()  # 5. move every weight a small step against its gradient
        if scheduler is not None:  # (06 only: a learning rate that changes every step)
            scheduler.step()
        loss_sum += loss.detach() * len(y)  # detach: bookkeeping, not part of the graph
        correct += (y_hat.argmax(dim=1) == y).sum()
        n += len(y)
        if stop is not None and stop.requested:  # Ctrl-C: finish this batch, then stop
            break
    # Measured while the weights were still changing: a slightly pessimistic estimate.
    return loss_sum.item() / n, correct.item() / n


class GracefulStop:
    """Ctrl-C sets a flag that the loop checks after each batch; a second Ctrl-C aborts."""

    requested = False

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():  # signals: main only
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this batch (press again to quit at once)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


EPOCH_HEADER = (f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'val loss':>8}  "
                f"{'val acc':>7}  {'seconds':>7}")


def epoch_row(epoch, h, best):
    """One aligned table row per epoch; '*' marks a new best validation accuracy."""
    return (f"{epoch:>5}  {h['train_loss'][-1]:>10.4f}  {100 * h['train_acc'][-1]:>8.2f}%  "
            f"{h['val_loss'][-1]:>8.4f}  {100 * h['val_acc'][-1]:>6.2f}%  "
            f"{h['seconds'][-1]:>7.2f}{'  *' if best else ''}")


def fit(model, train_loader, val_loader, optimizer, num_epochs, device, verbose=True,
        scheduler=None):
    """Train for num_epochs; keep the weights of the epoch with the best validation accuracy.

    Returns a dict: status ('completed', 'interrupted' or 'diverged'), history (per-epoch
    numbers), best_epoch, best_val_acc, train_seconds and diverged_loss (the loss that
    stopped a diverged run). On return the model holds the kept weights. Validation
    picks the epoch; the test set is never looked at here.
    """
    # CrossEntropyLoss takes raw logits: it applies log-softmax and picks the log-probability
    # of the true class (negative log-likelihood), in one numerically stable step.
    loss_fn = nn.CrossEntropyLoss()
    history = {k: [] for k in ("train_loss", "train_acc", "val_loss", "val_acc", "seconds")}
    best = {"epoch": 0, "val_acc": -1.0, "state": None}
    status, diverged_loss = "completed", None
    if verbose:
        print(EPOCH_HEADER)
    with GracefulStop() as stop:
        for epoch in range(1, num_epochs + 1):
            t0 = time.perf_counter()
            train_loss, train_acc = train_epoch(model, train_loader, loss_fn, optimizer,
                                                device, stop, f"epoch {epoch}", scheduler)
            if stop.requested:  # a partial epoch is neither validated nor kept
                status = "interrupted"
                break
            if not train_loss < DIVERGED_LOSS:  # also True for NaN; the weights are garbage
                status, diverged_loss = "diverged", train_loss
                break
            val_loss, val_acc = dl_utils.evaluate_model(model, val_loader, device)
            for key, value in zip(history, (train_loss, train_acc, val_loss, val_acc,
                                            time.perf_counter() - t0)):
                history[key].append(value)
            improved = val_acc > best["val_acc"]
            if improved:  # copy: state_dict() returns references to the live weights
                best = {"epoch": epoch, "val_acc": val_acc,
                        "state": copy.deepcopy(model.state_dict())}
            if verbose:
                print(epoch_row(epoch, history, improved), flush=True)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return {"status": status, "history": history, "best_epoch": best["epoch"],
            "best_val_acc": best["val_acc"], "train_seconds": sum(history["seconds"]),
            "diverged_loss": diverged_loss}


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR, num_epochs=NUM_EPOCHS)
    parser.add_argument("--hidden-size", type=dl_utils.positive_int, default=HIDDEN_SIZE,
                        help="hidden units of SimpleNN (default: %(default)s)")
    parser.add_argument("--checkpoint", type=str, default=str(CHECKPOINT),
                        help="where to save the kept model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


def report(model, loaders, device):
    """Loss and accuracy of the kept model on all three splits, as a table."""
    rows, metrics = [], {}
    for split, loader in zip(("train", "validation", "test"), loaders):
        loss, acc = dl_utils.evaluate_model(model, loader, device)
        metrics[f"{split}_loss"], metrics[f"{split}_acc"] = loss, acc
        rows.append([split, f"{len(loader.dataset):,}", f"{loss:.4f}", f"{100 * acc:.2f}%"])
    dl_utils.print_table(["split", "images", "loss", "accuracy"], rows)
    gap = 100 * (metrics["train_acc"] - metrics["test_acc"])
    print(f"\nTrain minus test accuracy: {gap:.2f} points. " + (
        "The model fits the images it was trained on\nbetter than new ones: a large or "
        "growing gap is overfitting." if gap > 0 else "No gap: no sign of overfitting."))
    return metrics


def kept_model_path(args, result):
    """Where the kept model goes after fit(); None when there is nothing to keep.

    Divergence raises a FriendlyError and saves nothing. After Ctrl-C the best epoch
    so far goes to <name>_interrupted.pt: a cut-short run never overwrites a good model.
    """
    if result["status"] == "diverged":
        raise dl_utils.FriendlyError(
            f"training diverged with lr {args.lr}: an epoch's loss reached "
            f"{result['diverged_loss']:.4g} (guessing scores {math.log(10):.2f}); try a smaller "
            f"learning rate, e.g. --lr {args.lr / 10:g}. Nothing was saved; "
            f"{dl_utils.display_path(args.checkpoint)} is unchanged")
    if result["best_epoch"] == 0:
        print("Stopped before the first epoch ended: nothing to keep, nothing saved.")
        return None
    path = Path(args.checkpoint)
    if result["status"] == "interrupted":
        path = path.with_name(f"{path.stem}_interrupted.pt")
    return path


def save_kept_model(path, args, model, model_kwargs, result, metrics):
    """The state_dict checkpoint, with the settings, metrics and history that produced it."""
    dl_utils.save_checkpoint(
        path, model, model_kwargs,
        hparams={k: v for k, v in vars(args).items() if k not in ("show", "checkpoint")},
        metrics={**metrics, "best_epoch": result["best_epoch"],
                 "train_seconds": result["train_seconds"]},
        history=result["history"])
    print(f"Saved the kept model (state_dict route) to {dl_utils.display_path(path)} "
          f"({path.stat().st_size / 1000:.0f} KB on disk)")


def save_whole_model(path, model):
    """The whole-model route, for 04's lesson: pickles the object, class reference included.

    The reference reads "__main__.SimpleNN" here, because this file runs as __main__.
    04 shows what breaks when another script tries to load it.
    """
    whole = path.with_name(f"{path.stem}_whole.pt")
    with dl_utils.atomic_path(whole) as tmp:
        torch.save(copy.deepcopy(model).cpu(), tmp)
    print("Saved the whole model (pickle route, for 04's lesson) to "
          f"{dl_utils.display_path(whole)}")


def setup(args):
    """Device, seeds and data: the start of every training script (06 reuses it)."""
    dl_utils.setup_figures(args.show)
    dl_utils.section("Setup")
    device = dl_utils.get_device(args.device)
    generator = dl_utils.set_seed(args.seed)
    loaders = dl_utils.load_mnist_data(args.batch_size, subset=args.subset, device=device,
                                       generator=generator)
    train_loader, val_loader, test_loader = loaders
    print(f"Images: {len(train_loader.dataset):,} train, {len(val_loader.dataset):,} "
          f"validation, {len(test_loader.dataset):,} test; {len(train_loader)} batches of "
          f"{args.batch_size} per epoch")
    return device, loaders


def introduce(model, train_loader, note):
    """Print the model, its size, and the shapes of one batch flowing through it."""
    dl_utils.section("The model")
    print(model)
    print(f"{dl_utils.count_parameters(model):,} trainable parameters = "
          f"{dl_utils.model_size_kb(model):.0f} KB {note}")
    print("\nOne batch through the model, layer by layer:")
    # The first images of the training set, sliced directly: iterating the loader would
    # draw a shuffle from the seeded generator and change the batch order of training.
    dl_utils.print_shapes(model, train_loader.X[:train_loader.batch_size])


def main(argv=None):
    args = parse_args(argv)
    device, loaders = setup(args)
    train_loader, val_loader, _ = loaders
    model_kwargs = {"hidden_size": args.hidden_size}
    model = SimpleNN(**model_kwargs).to(device)
    introduce(model, train_loader, "as float32 (4 bytes each)")

    dl_utils.section(f"Training: {args.epochs} epochs, Adam, lr {args.lr}")
    # Adam adapts each weight's step size from running averages of its gradients, so it
    # works well with little tuning. Plain SGD (torch.optim.SGD(..., lr=0.1)) is simpler
    # and often generalizes as well, but wants its learning rate tuned (and momentum).
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    result = fit(model, train_loader, val_loader, optimizer, args.epochs, device)
    return finish(args, model, model_kwargs, loaders, device, result)


def finish(args, model, model_kwargs, loaders, device, result):
    """After training: test the kept model once, save it, plot, summarize."""
    path = kept_model_path(args, result)
    if path is None:
        return 130
    dl_utils.section(f"Kept model: epoch {result['best_epoch']} (best validation accuracy)")
    metrics = report(model, loaders, device)
    dl_utils.section("Saving")
    save_kept_model(path, args, model, model_kwargs, result, metrics)
    save_whole_model(path, model)
    dl_utils.plot_training_history(result["history"], "03_training_history.png",
                                   "SimpleNN on MNIST", args.show)
    dl_utils.section("Summary")
    print(f"Test accuracy {100 * metrics['test_acc']:.2f}% | training time "
          f"{result['train_seconds']:.1f} s (epochs + validation)")
    if result["status"] == "interrupted":
        print(f"Interrupted: the best epoch so far is in {dl_utils.display_path(path)}")
        return 130
    print("Next: python 04_load_model.py")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
