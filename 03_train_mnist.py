"""Lesson 3: the training loop, the heart of deep learning.

A 784-128-10 network learns to read handwritten digits. Every step of the loop is
spelled out in train_steps() below, with nothing else in it: zero the gradients,
forward pass, loss, backward pass (backpropagation), optimizer step. The epoch with the
best validation accuracy is kept, tested once on the test set, and saved to
models/simple_nn.pt for 04_load_model.py.

Run it (from any folder):
    python 03_train_mnist.py                 # the defaults: the README's expected results
    python 03_train_mnist.py --lr 0.01       # change one thing, run again, compare
    python 03_train_mnist.py --epochs 1 --subset 5000   # a quick look
    python 03_train_mnist.py -h              # every setting with its default

Try: --lr 10 (training diverges; the script stops at the first exploding batch and keeps
your saved model), Ctrl-C in the middle of training (it stops after the batch and keeps
the best epoch), --inputs raw (no normalization), --optimizer sgd --lr 0.01,
--label-noise 0.2 (a fifth of the training labels wrong).

Resume a stopped run where it stopped (the training state is saved after every epoch):
    python 03_train_mnist.py --epochs 3 --subset 5000 --stop-after-epoch 1
    python 03_train_mnist.py --epochs 3 --subset 5000 --resume models/simple_nn_training.pt
    python 03_train_mnist.py --epochs 3 --subset 5000 --check-resume   # the proof
Exercises: exercises/ex03_training.py, checked by python exercises/check.py 03
"""

import copy
import functools
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a command-line flag (-h) ----
BATCH_SIZE = 64  # images per step: smaller = noisier gradients, more steps per epoch
LR = 1e-3  # Adam's step size: `make tables` measures 1e-2 and 1e-4 next to it
NUM_EPOCHS = 10  # passes over 55,000 images; the curves show what more would do
HIDDEN_SIZE = 128  # hidden units: more = more capacity, slower, more room to overfit
OPTIMIZER = "adam"  # or "sgd": plain stochastic gradient descent with momentum
MOMENTUM = 0.9  # SGD only: how much of the previous step each step keeps
INPUTS = "standardized"  # how pixels are scaled; "unit" and "raw" measure why it matters
LABEL_NOISE = 0.0  # fraction of training labels replaced by a wrong digit (bad data)
SEED = 0  # same seed, same initial weights and batch order, same result (same machine)
CHECKPOINT = dl_utils.MODELS_DIR / "simple_nn.pt"  # where the kept model is saved
SCRIPT = Path(__file__).name  # training states name the script that wrote them

# Divergence: an untrained network guesses about uniformly, a loss near ln(10) = 2.30 per
# image, and training lowers it. A loss that is NaN or infinite, or whose average over the
# epoch so far reaches 10 times where the epoch started (and at least 10 times ln(10)),
# means the steps were so large that the weights flew off: with Adam, --lr 1 does it.
# "Where it started", because badly scaled inputs (--inputs raw) start far above 2.30;
# "average", judged once 64 images have been seen, because one image alone can be
# confidently wrong and cost 25 (--batch-size 1 shows it).
DIVERGED_LOSS = 10 * math.log(10)
MIN_IMAGES_TO_JUDGE = 64


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
        # nn.Linear stores its weight as [out, in] = [128, 784] and computes x @ W.T + b:
        # the transpose of lesson 1's W [in, out], the same numbers laid out the other way.
        self.fc1 = nn.Linear(input_size, hidden_size)  # 784*128 weights + 128 biases
        self.activation = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_classes)  # 128*10 weights + 10 biases

    def forward(self, x):
        # Returns raw scores (logits), no softmax: the loss function applies it itself.
        return self.fc2(self.activation(self.fc1(self.flatten(x))))


def train_steps(model, loader, loss_fn, optimizer, device):
    """The training loop itself: five steps per batch, for every batch of one epoch.

    `yield` makes this a generator: after each step it hands the batch's loss and
    outputs to whoever loops over it (train_epoch, below), which keeps the books.
    So the loop here stays exactly the five steps, with nothing else in it.
    """
    model.train()  # training mode: matters for dropout and batch norm (lesson 7)
    for X, y in loader:
        X, y = X.to(device), y.to(device)  # no-op here: our loaders already live there
        optimizer.zero_grad()  # 1. clear old gradients: backward() ADDS to .grad
        y_hat = model(X)  # 2. forward pass: [64, 1, 28, 28] -> logits [64, 10]
        loss = loss_fn(y_hat, y)  # 3. one number: how wrong the batch's predictions are
        loss.backward()  # 4. backpropagation: d(loss)/d(weight) for every weight
        optimizer.step()  # 5. move every weight a small step against its gradient
        yield loss, y_hat, y


# ---- Around the loop: bookkeeping, divergence, Ctrl-C, keeping the best epoch ----------
class DivergenceError(Exception):
    """A batch's loss exploded (or became NaN): the weights are garbage from here on."""

    def __init__(self, loss, batch):
        super().__init__(f"loss {loss:.4g} at batch {batch}")
        self.loss, self.batch = loss, batch


def train_epoch(model, loader, loss_fn, optimizer, device, stop=None, desc="train"):
    """One epoch of train_steps; returns the (average loss, accuracy) of that pass.

    Measured while the weights were still changing: a slightly pessimistic estimate of
    how well the model fits its training images at the end of the epoch.
    """
    loss_sum, correct, n = 0.0, 0, 0
    batches = tqdm(loader, desc=desc, leave=False, disable=None)  # a bar only in a terminal
    for batch, (loss, y_hat, y) in enumerate(train_steps(model, batches, loss_fn, optimizer,
                                                         device), start=1):
        # .item() copies the number to Python: on a GPU it waits for the batch to finish
        # (a "sync point", a small cost), the price of stopping at the first bad batch.
        batch_loss = loss.item()
        if batch == 1:
            limit = max(DIVERGED_LOSS, 10 * batch_loss)
        loss_sum += batch_loss * len(y)
        correct += (y_hat.argmax(dim=1) == y).sum().item()
        n += len(y)
        if not math.isfinite(batch_loss) or (n >= MIN_IMAGES_TO_JUDGE and loss_sum / n > limit):
            raise DivergenceError(batch_loss, batch)
        if stop is not None and stop.requested:  # Ctrl-C: finish this batch, then stop
            break
    return loss_sum / n, correct / n


EPOCH_HEADER = (f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'val loss':>8}  "
                f"{'val acc':>7}  {'seconds':>7}")


def epoch_row(epoch, h, best):
    """One aligned table row per epoch; '*' marks a new best validation accuracy."""
    return (f"{epoch:>5}  {h['train_loss'][-1]:>10.4f}  {100 * h['train_acc'][-1]:>8.2f}%  "
            f"{h['val_loss'][-1]:>8.4f}  {100 * h['val_acc'][-1]:>6.2f}%  "
            f"{h['seconds'][-1]:>7.2f}{'  *' if best else ''}")


def fit(model, train_loader, val_loader, optimizer, num_epochs, device, verbose=True,
        start=None, after_epoch=None, stop_after=None):
    """Train for num_epochs; keep the weights of the epoch with the best validation accuracy.

    Returns a dict: status ('completed', 'interrupted' or 'diverged'), history (per-epoch
    numbers), best_epoch, best_val_acc, train_seconds and diverged (what stopped a
    diverged run). On return the model holds the kept weights. Validation picks the
    epoch; the test set is never looked at here. Later lessons use dl_utils.fit, a copy
    of this function (tests/test_sync.py keeps the two equal) with two extra hooks: a
    learning-rate schedule (06) and extra numbers per epoch (07).
    To go on after a stop (see "Resuming" below): start continues from a saved epoch,
    after_epoch(epoch, best, history) saves the training state after each epoch, and
    stop_after stops after that epoch as Ctrl-C would.
    """
    # CrossEntropyLoss takes raw logits: it applies log-softmax and picks the log-probability
    # of the true class (negative log-likelihood), in one numerically stable step.
    loss_fn = nn.CrossEntropyLoss()
    history = {key: [] for key in ("train_loss", "train_acc", "val_loss", "val_acc", "seconds")}
    best = {"epoch": 0, "val_acc": -1.0, "state": None}
    if start:  # resuming: the history and best epoch of the epochs already done
        history, best = start["history"], start["best"]
    status, diverged = "completed", None
    if verbose:
        print(EPOCH_HEADER)
    with dl_utils.GracefulStop() as stop:
        for epoch in range(1 + (start["epoch"] if start else 0), num_epochs + 1):
            t0 = time.perf_counter()
            try:
                train_loss, train_acc = train_epoch(model, train_loader, loss_fn, optimizer,
                                                    device, stop, f"epoch {epoch}")
            except DivergenceError as err:
                status, diverged = "diverged", f"{err} of epoch {epoch}"
                break
            if stop.requested:  # a partial epoch is neither validated nor kept
                status = "interrupted"
                break
            val_loss, val_acc = dl_utils.evaluate_model(model, val_loader, device)
            history["train_loss"].append(train_loss)
            history["train_acc"].append(train_acc)
            history["val_loss"].append(val_loss)
            history["val_acc"].append(val_acc)
            history["seconds"].append(time.perf_counter() - t0)
            improved = keep_if_best(best, model, epoch, val_acc)
            if verbose:
                print(epoch_row(epoch, history, improved), flush=True)
            if after_epoch is not None:  # the training state, saved after every epoch
                after_epoch(epoch, best, history)
            if epoch == stop_after and epoch < num_epochs:  # as Ctrl-C would
                status = "interrupted"
                break
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return {"status": status, "history": history, "best_epoch": best["epoch"],
            "best_val_acc": best["val_acc"], "train_seconds": sum(history["seconds"]),
            "diverged": diverged}


def keep_if_best(best, model, epoch, val_acc):
    """Remember this epoch's weights if its validation accuracy beats every earlier one.

    Why accuracy and not validation loss: accuracy is the number we report, and the
    loss also punishes confident mistakes (a wrong answer given with 99% certainty costs
    far more than one given with 40%), so it can start rising while accuracy still
    improves. Keeping the best epoch is also "early stopping" after the fact.
    """
    if val_acc <= best["val_acc"]:
        return False
    # deepcopy: state_dict() returns references to the live weights, which keep changing
    best.update(epoch=epoch, val_acc=val_acc, state=copy.deepcopy(model.state_dict()))
    return True


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR, num_epochs=NUM_EPOCHS)
    parser.add_argument("--hidden-size", type=dl_utils.positive_int, default=HIDDEN_SIZE,
                        help="hidden units of SimpleNN (default: %(default)s)")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default=OPTIMIZER,
                        help="adam, or sgd with --momentum: try --lr 0.01 (with momentum "
                             "0.9 its steps are 10x lr: see make_optimizer) "
                             "(default: %(default)s)")
    parser.add_argument("--momentum", type=dl_utils.fraction, default=MOMENTUM,
                        help="SGD's momentum, in [0, 1) (default: %(default)s)")
    parser.add_argument("--inputs", choices=list(dl_utils.INPUT_SCALINGS), default=INPUTS,
                        help="pixel scaling: " + "; ".join(
                            f"{k} = {v}" for k, v in dl_utils.INPUT_SCALINGS.items())
                        + " (default: %(default)s)")
    parser.add_argument("--label-noise", type=dl_utils.fraction, default=LABEL_NOISE,
                        help="fraction of training labels replaced by a wrong digit "
                             "(default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file, default=str(CHECKPOINT),
                        help="where to save the kept model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_resume_args(parser)
    parser.add_argument("--check-resume", action="store_true",
                        help="the proof that resuming works: train with these settings "
                             "without stopping, and stopped after epoch 1 then resumed, and "
                             "compare the weights (needs --epochs 2 or more)")
    dl_utils.add_results_arg(parser)
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


def make_optimizer(model, args):
    """Adam (the default) or SGD with momentum.

    SGD moves every weight by lr times its gradient; momentum adds a fraction of the
    previous step, which smooths the zig-zag of noisy gradients. With momentum m, a
    gradient that keeps pointing the same way builds up steps of lr / (1 - m): 10 x lr
    at m = 0.9. So --lr 0.01 with momentum 0.9 moves about as fast as --lr 0.1 without
    (--momentum 0), and the claims table measures SGD best at 0.01 (0.1 already worse,
    0.3 diverging). Adam also divides each
    weight's step by a running average of its gradient's size, so every weight moves at
    a sensible speed with little tuning of lr; SGD's lr must be tuned (make tables does).
    """
    if args.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    return torch.optim.Adam(model.parameters(), lr=args.lr)


def save_whole_model(path, model):
    """The whole-model route, for 04's lesson: pickles the object, class reference included.

    The reference reads "__main__.SimpleNN" here, because this file runs as __main__.
    04 shows, without unpickling this file, why that breaks elsewhere.
    """
    whole = path.with_name(f"{path.stem}_whole.pt")
    with dl_utils.atomic_path(whole) as tmp:
        torch.save(copy.deepcopy(model).cpu(), tmp)
    print("Saved the whole model (pickle route, for 04's lesson) to "
          f"{dl_utils.display_path(whole)}")


def main(argv=None):
    args = parse_args(argv)
    device, loaders = dl_utils.setup(args, args.inputs, args.label_noise)
    train_loader, val_loader, _ = loaders
    model_kwargs = {"hidden_size": args.hidden_size}
    model = SimpleNN(**model_kwargs).to(device)
    dl_utils.introduce(model, train_loader, "(4 bytes each)")

    if args.check_resume:
        return check_resume(args, loaders, device, model_kwargs)
    dl_utils.section(f"Training: {args.epochs} epochs, {args.optimizer}, lr {args.lr}")
    optimizer = make_optimizer(model, args)
    start, save_state = dl_utils.resumable(SCRIPT, args, model, model_kwargs, optimizer, None,
                                           train_loader.generator)
    result = fit(model, train_loader, val_loader, optimizer, args.epochs, device, start=start,
                 after_epoch=save_state, stop_after=args.stop_after_epoch)
    return finish(args, model, model_kwargs, loaders, device, result)


# ---- Resuming: a run that stops (Ctrl-C, a laptop that sleeps) goes on where it stopped --
# After every epoch fit() calls after_epoch, which saves a training state beside the
# checkpoint (weights, optimizer, epoch, best epoch, history, settings, random generators:
# dl_utils.save_training_state). --resume loads it into a freshly built model and
# optimizer, and fit() goes on with the next epoch: a Ctrl-C loses at most one epoch.
def check_resume(args, loaders, device, model_kwargs):
    """--check-resume: stopped after epoch 1 and resumed, against never stopped, compared
    at the END of the last epoch (weights and optimizer), not on the kept epoch."""
    if args.epochs < 2:
        raise dl_utils.FriendlyError("--check-resume needs --epochs 2 or more")
    dl_utils.section(f"Resuming, checked: {args.epochs} epochs, stopped after epoch 1 or not")
    run = functools.partial(resume_run, args, loaders, device, model_kwargs)
    averages = ("Adam's running averages" if args.optimizer == "adam" else
                "SGD's momentum" if args.momentum > 0 else "plain SGD")
    lost = "plain SGD: no state" if averages == "plain SGD" else f"{averages} lost"
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "state.pt"
        never, stopped = run(), run(save_to=state, stop_after=1)
        if stopped["status"] != "interrupted":  # epoch 1 diverged: nothing was saved
            raise dl_utils.FriendlyError(f"--check-resume: training {stopped['status']} "
                                         f"({stopped['diverged']}): nothing to resume "
                                         "from; try a smaller --lr")
        rows = {"stopped after epoch 1, resumed from the whole state": run(resume=state),
                f"... but with a fresh optimizer ({lost})":
                    run(resume=state, keep="no optimizer"),
                "... but with the loader's generator seeded again":
                    run(resume=state, keep="no generator"),
                f"never stopped, --seed {args.seed + 1} (for scale)": run(seed=args.seed + 1)}
    gaps = dl_utils.print_resume_proof(never, rows)  # each row against never stopping
    explain_resume([max(g) for g in gaps.values()], list(rows.values()), averages)
    return 0 if max(list(gaps.values())[0]) == 0 else 1


def explain_resume(gaps, runs, averages):
    """What the table shows, sentence by sentence, each printed only if the numbers say so."""
    whole, no_opt, no_gen = gaps[:3]
    text = ("The whole state gives the very same weights and optimizer: every number that "
            "influences the next step was saved." if whole == 0 else
            "DIFFERENT: the whole state should give the very same weights on the CPU; "
            "something that influences the next step was not saved.")
    if no_opt > 0:
        text += f" Without the optimizer's state, {averages} restart at zero, so the run goes on"
        text += (" differently: a fresh Adam's first step moves every weight by about lr "
                 f"(m / sqrt(v) = g / |g| = 1), against {runs[0]['first_step']:.2f} x lr with "
                 "the state."
                 if averages.startswith("Adam") else " differently.")
    elif whole == 0:
        text += " A fresh optimizer changed nothing here: SGD without momentum keeps no state."
    if no_gen > 0:
        text += " Without the generator's state, epoch 2 shuffles as epoch 1 did."
    if min(no_opt, no_gen) > 0:
        text += " Both still train, just not the run you stopped (compare another seed's)."
    dl_utils.prose(text)


def resume_run(args, loaders, device, model_kwargs, save_to=None, stop_after=None,
               resume=None, keep="all", seed=None):
    """One training run of check_resume, built as a fresh process builds it: fit's result
    with the weights and optimizer state after its last epoch ("final"), that epoch's
    validation accuracy, and the mean size of the first step after resuming (in lr)."""
    train_loader, val_loader, _ = loaders
    seed = args.seed if seed is None else seed
    dl_utils.set_seed(seed)  # as at the start of main()
    train_loader.generator.manual_seed(seed)
    model = SimpleNN(**model_kwargs).to(device)
    optimizer = make_optimizer(model, args)
    start, first = None, None
    if resume:
        start = dl_utils.resume_training(resume, SCRIPT, args, model, optimizer, None,
                                         train_loader.generator)
        if keep == "no optimizer":
            optimizer = make_optimizer(model, args)
        if keep == "no generator":
            train_loader.generator.manual_seed(seed)
        first = dl_utils.first_step_size(model, optimizer, train_loader, args.lr,
                                         lambda m: make_optimizer(m, args))
    final = {}

    def after_epoch(epoch, best, history):  # the state after every epoch, the last kept
        final.update(model=copy.deepcopy(model.state_dict()),
                     optimizer=copy.deepcopy(optimizer.state_dict()["state"]))
        if save_to:
            dl_utils.save_training_state(save_to, SCRIPT, args, model, model_kwargs, optimizer,
                                         None, train_loader.generator, epoch, best, history)
    result = fit(model, train_loader, val_loader, optimizer, args.epochs, device, verbose=False,
                 start=start, after_epoch=after_epoch, stop_after=stop_after)
    return dict(result, final=final, first_step=first,
                val_acc=result["history"]["val_acc"][-1] if result["history"]["val_acc"] else 0)


def best_epochs_explained(history, n_val):
    """Which epoch had the lowest validation loss, which the best accuracy, and what that
    means: each sentence only where the numbers say so."""
    acc, loss = history["val_acc"], history["val_loss"]
    by_loss = 1 + min(range(len(loss)), key=loss.__getitem__)
    by_acc = 1 + max(range(len(acc)), key=acc.__getitem__)
    if by_loss == by_acc:
        return f"Validation loss and accuracy were both best at epoch {by_acc}."
    lines = [f"Validation loss was lowest at epoch {by_loss}, validation accuracy highest "
             f"at epoch {by_acc} (the one kept)."]
    gap, se = acc[by_acc - 1] - acc[by_loss - 1], dl_utils.accuracy_se(acc[by_acc - 1], n_val)
    if gap < 2 * se:  # within noise: either epoch would do
        lines.append(f"Their accuracies differ by {100 * gap:.2f} points, less than two "
                     f"standard errors ({100 * se:.2f} each on {n_val:,} images): within noise.")
    elif by_loss < by_acc:
        lines += ["The loss grows when the model becomes confidently wrong on a few images,",
                  "even while it gets more images right: see keep_if_best()."]
    else:
        lines += ["The loss kept falling after accuracy peaked: the model grew more confident",
                  "on images it got right while it lost a few others."]
    return "\n".join(lines)


def finish(args, model, model_kwargs, loaders, device, result):
    """After training: test the kept model once, save it, plot, summarize."""
    if result["status"] == "diverged":  # (--results: make tables counts diverged runs)
        dl_utils.save_run_results(Path(__file__).name, args, device, result)
    path = dl_utils.kept_model_path(args, result)
    if path is None:
        return 130
    dl_utils.section(f"Kept model: epoch {result['best_epoch']} (best validation accuracy)")
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.save_run_results(Path(__file__).name, args, device, result, metrics)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(path, args, model, model_kwargs, result, metrics, device,
                             defaults=vars(parse_args([])))
    save_whole_model(path, model)
    dl_utils.plot_training_history(result["history"], "03_training_history.png",
                                   "SimpleNN on MNIST", args.show)
    dl_utils.section("Summary")
    print(best_epochs_explained(result["history"], len(loaders[1].dataset)))
    print(f"Test accuracy {dl_utils.format_accuracy(metrics['test_acc'], 10_000)} | "
          f"training time {result['train_seconds']:.1f} s (epochs + validation)")
    if result["status"] == "interrupted":
        print(f"Interrupted: the best epoch so far is in {dl_utils.display_path(path)}; "
              f"go on with --resume "
              f"{dl_utils.display_path(dl_utils.training_state_path(args.checkpoint))}")
        return 130
    print("Next: python 04_load_model.py")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
