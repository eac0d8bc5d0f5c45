"""The one shared module of the course: the ideas every lesson uses, written once.

Every numbered lesson imports this module and nothing else of the course: a lesson never
imports another lesson, so an edit a learner makes in one lesson changes no other. The
lesson that teaches an idea keeps its own copy in view (03's training loop, 06's CNN);
the copy here, which later lessons use, names that lesson, and tests/test_sync.py checks
that the two stay equal (the pattern of d2l's `d2l` library).

This file holds what the lessons teach, in lesson order. The plumbing they also need
(paths and files, command lines and printing, figures without a screen, statistics
machinery, image files from strangers, checks of a saved state, hand-written code
compared with PyTorch's, torchrun, the web server) lives in the package _course/,
which no lesson teaches and you need not read; the block at the end of this file
re-exports it, so lessons still write dl_utils.X.

Contents, in lesson order:
    Device and seeds (03) ... get_device, set_seed
    Data (02) ............... load_mnist_data (train / validation / test), TensorLoader,
                              normalize, train_val_split, flip_labels
    Augmentation (06) ....... random_shift, ShiftedLoader
    Shared models ........... SimpleNN (03), SmallCNN and conv_block (06),
                              SequenceRNN (11), layer_sizes
    The training loop (03) .. train_steps, train_epoch, fit, keep_if_best,
                              DivergenceError
    Evaluation (03-07) ...... evaluate_model, predict_all, confusion_matrix,
                              honest_score;
                              how sure a number is: accuracy_se, mean_se,
                              paired_difference, paired_against, summarize_runs
    Inspecting a model (03) . print_shapes, count_parameters, model_size_kb
    Figures (03, 04) ........ plot_training_history, plot_confident_mistakes
    A training script (03) .. setup, introduce, report, save_kept_model
    Resuming (03b) .......... save_training_state, resume_training, resumable
    Your own digit (04, 08) . digit_from_gray, center_by_mass, looks_like_mnist,
                              export_mnist_pngs
    Other writers (06b) ..... writer_stand_ins
    Checkpoints (03, 04) .... save_checkpoint, load_checkpoint (weights only, never
                              code), build_model
    The plumbing ............ re-exported from _course (the last block of this file)

Run the tests of this module with:  python -m pytest tests/test_dl_utils.py
"""

from __future__ import annotations

import copy
import importlib
import math
import os
import random
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from tqdm import tqdm

# The plumbing the code below calls (lessons get all of it through the last block)
from _course.checkpoints import (
    MAY_DIFFER,
    TRAINING_STATE,
    CheckpointError,
    InputsAsTrained,
    first_detail,
    input_scaling,
    inputs_as_trained,
    model_class,
    read_checkpoint,
    read_training_state,
    restore_rng_states,
    rng_states,
    training_state_path,
    unwrapped,
)
from _course.cli import GracefulStop, print_table, prose, script_defaults, section
from _course.figures import setup_figures
from _course.files import (DATA_DIR, MNIST_FILES, ROOT, FriendlyError, atomic_path,
                           display_path, prepare_mnist, read_idx)
from _course.images import (counts_to_image, draw_like_a_canvas, uci_8x8,
                            write_digit_pngs)
from _course.stats import format_accuracy, t_975


# --------------------------------------------------------------------------------------
# Device and seeds
# --------------------------------------------------------------------------------------
def get_device(requested: str | None = None) -> torch.device:
    """Pick where tensors live: CUDA, then Apple's MPS, then the CPU; print the choice.

    A GPU runs thousands of multiply-adds in parallel, which pays off for big models and
    big batches. For the small networks of this course it may not: every operation on a
    GPU is a "kernel" (a small program) that the CPU must launch, and each launch and
    each line of Python costs a few microseconds however little arithmetic it does. A
    784-128-10 MLP has so little arithmetic per batch that those fixed costs dominate.
    Measure before you assume.
    """
    requested = (requested or os.environ.get("DL_DEVICE") or "auto").lower()
    if requested not in ("auto", "cpu", "cuda", "mps"):
        raise FriendlyError(f"unknown device '{requested}': use auto, cpu, cuda or mps")
    cuda_ok = torch.cuda.is_available()
    mps_ok = torch.backends.mps.is_available()
    if requested == "cuda" and not cuda_ok:
        raise FriendlyError(
            "--device cuda asked for, but PyTorch sees no CUDA GPU here"
        )
    if requested == "mps" and not mps_ok:
        raise FriendlyError(
            "--device mps asked for, but Apple's MPS is not available here"
        )
    if requested == "auto":
        requested = "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
        why = {
            "cuda": "a CUDA GPU is available",
            "mps": "Apple's Metal GPU is available",
            "cpu": "no CUDA or MPS GPU found",
        }[requested]
    else:
        why = "asked for with --device or DL_DEVICE"
    device = torch.device(requested)
    name = f" ({torch.cuda.get_device_name(device)})" if requested == "cuda" else ""
    threads = f", {torch.get_num_threads()} threads" if requested == "cpu" else ""
    print(f"Device: {device}{name}{threads}: {why}")
    return device


def set_seed(seed: int) -> torch.Generator:
    """Seed every random number generator we use; return a generator for the data's
    randomness.

    torch.manual_seed seeds the CPU and every GPU; random and NumPy are seeded too in
    case a learner's change uses them. The returned generator drives the loader's
    shuffling (and 06's augmentation) on its own, so that adding a random call elsewhere
    does not change the batch order.

    What "same seed, same result" really promises: bit-identical numbers with the same
    CPU instruction set (torch.backends.cpu.get_cpu_capability(): AVX2, AVX512...),
    PyTorch build, thread count and device. Another instruction set, another PyTorch
    version, another thread count (1 against 2 moved lesson 3's weights by 2e-7 after 2
    epochs on 5,000 images, here) or a GPU rounds some sums in another order; the last
    bits differ, and after thousands of training steps that grows into differences of a
    few tenths of a point in accuracy, as large as a change of seed. To compare with the
    README's numbers, run with --device cpu. On a CUDA GPU, bit-identical reruns also
    need torch.use_deterministic_algorithms(True) (slower), and that in turn needs the
    environment variable CUBLAS_WORKSPACE_CONFIG=:4096:8, or cuBLAS raises an error.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------
# Data: MNIST as normalized tensors in memory, split into train, validation and test
# --------------------------------------------------------------------------------------
# Mean and standard deviation of the pixels (scaled to [0, 1]) of the 60,000 images of
# MNIST's official training file; 02_load_mnist.py recomputes them. Strictly, they
# should come from our 55,000-image training split alone: the official file also holds
# the 5,000 images we hold out for validation. 02 measures the difference (below
# 0.0001), far too small to matter, and we keep the constants everyone uses. Normalizing
# with them gives the inputs mean 0 and std 1, which keeps the first layer's weighted
# sums in a range where gradients flow well. The range becomes about [-0.42, 2.82] (0 ->
# -0.4242, 1 -> 2.8215), NOT [-1, 1]: MNIST is mostly black background, so the mean sits
# close to 0.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
VAL_SIZE = 5000  # validation images held out of the 60,000 training images
SPLIT_SEED = 12345  # fixed: every script and every --seed sees the same validation set
# How the pixels reach the network. "standardized" is the course's default; the other
# two exist to measure what normalization is worth (03 --inputs, and `make tables`).
INPUT_SCALINGS = {
    "standardized": "(x / 255 - mean) / std: mean 0, std 1",
    "unit": "x / 255: in [0, 1], mean 0.13",
    "raw": "x: the stored bytes, 0 to 255",
}


def normalize(X_uint8: torch.Tensor, scaling: str = "standardized") -> torch.Tensor:
    """uint8 [N, 28, 28] pixels -> float32 [N, 1, 28, 28] network inputs (1 = grey
    channel)."""
    if scaling not in INPUT_SCALINGS:
        raise FriendlyError(
            f"unknown input scaling {scaling!r}: use one of {list(INPUT_SCALINGS)}"
        )
    X = X_uint8.float()
    if scaling != "raw":
        X = X / 255
    if scaling == "standardized":
        X = (X - MNIST_MEAN) / MNIST_STD
    return X.unsqueeze(1)


def load_mnist_tensors(root: Path = DATA_DIR, files: dict = MNIST_FILES):
    """The raw dataset as tensors: (train_X, train_y, test_X, test_y), X uint8 [N, 28,
    28].

    MNIST's files store each pixel as one byte, 0 for the background and up to 255 for
    the ink. (Shown with a grey colour map, that is light ink on black.)
    """
    raw = prepare_mnist(root, files)
    return (
        read_idx(raw / "train-images-idx3-ubyte"),
        read_idx(raw / "train-labels-idx1-ubyte").long(),  # int64: what the loss wants
        read_idx(raw / "t10k-images-idx3-ubyte"),
        read_idx(raw / "t10k-labels-idx1-ubyte").long(),
    )


def train_val_split(n: int, val_size: int = VAL_SIZE):
    """Indices (train, validation) of a fixed random split of the n training images.

    Random, because the file's order could hide a pattern (e.g. writers grouped
    together); fixed (SPLIT_SEED), so that every run and script is judged on the same
    validation images and results stay comparable."""
    if not 0 < val_size < n:
        raise FriendlyError(f"val_size must be between 1 and {n - 1}, got {val_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return order[val_size:], order[:val_size]


class TensorLoader:
    """Batches from tensors already in memory: what a DataLoader does, without its cost.

    torchvision's usual pipeline turns every image into a PIL image, then a tensor, then
    normalizes it, one sample at a time in Python, and collates 64 of them into a batch:
    several Python calls for each of 55,000 images, every epoch. All 70,000 MNIST images
    take about 220 MB as float32, which fits easily in memory, so we decode and
    normalize them once; a batch is then a single indexing operation X[idx]. num_workers
    (background loading processes) is irrelevant here, hence absent: there is no
    per-sample work left to parallelize, and on a 2-core machine workers would steal the
    cores that train the model. On a GPU the tensors are moved there once, so no batch
    ever has to cross the PCIe bus (the link between CPU memory and GPU memory).
    """

    def __init__(self, X, y, batch_size, shuffle=False, generator=None):
        self.X, self.y = X, y
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        # so len(loader.dataset) works
        self.dataset = torch.utils.data.TensorDataset(X, y)

    def __len__(self):  # number of batches, as for a DataLoader
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        n = len(self.y)
        if self.shuffle:  # a new order every epoch: batches never repeat in lockstep
            # (drawn on the CPU from our own generator: the same order on every device)
            order = torch.randperm(n, generator=self.generator).to(self.y.device)
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                yield self.X[idx], self.y[idx]
        else:  # evaluation: order does not matter, slices are views (no copy)
            for i in range(0, n, self.batch_size):
                yield self.X[i:i + self.batch_size], self.y[i:i + self.batch_size]


def flip_labels(
    y: torch.Tensor, share: float, generator: torch.Generator
) -> torch.Tensor:
    """A copy of y with a `share` of the labels replaced by a different, random digit.

    Bad data on purpose: to measure what label noise costs (`03 --label-noise`).
    """
    y = y.clone()
    flip = torch.randperm(len(y), generator=generator)[:round(share * len(y))]
    # 1-9: never the same
    shift = torch.randint(1, 10, (len(flip),), generator=generator)
    y[flip] = (y[flip] + shift) % 10
    return y


def load_mnist_data(batch_size=64, val_size=VAL_SIZE, subset=None, device="cpu",
                    generator=None, eval_batch_size=1000, scaling="standardized",
                    label_noise=0.0, root=DATA_DIR, files=MNIST_FILES):
    """Train, validation and test loaders over normalized MNIST.

    Three sets, three jobs:
    - train (55,000): the only images the weights are fitted to;
    - validation (5,000, held out of the training file): used to choose, e.g. which
      epoch to keep or which architecture wins. Choosing looks at its accuracy, so it
      slowly leaks into our decisions;
    - test (10,000): looked at once, at the end, for an honest estimate of accuracy on
      new images. Choose with it and it is no longer a test.
    Training batches are shuffled so that each gradient step sees a mix of digits;
    evaluation uses large batches (no gradients are stored, so memory is no issue).
    subset keeps the first `subset` images of the (random) training split; label_noise
    corrupts that fraction of the training labels (validation and test stay clean).
    """
    train_X, train_y, test_X, test_y = load_mnist_tensors(root, files)
    train_idx, val_idx = train_val_split(len(train_y), val_size)
    if subset is not None:
        train_idx = train_idx[:subset]
    X, X_test = normalize(train_X, scaling), normalize(test_X, scaling)
    y_train = train_y[train_idx]
    if label_noise:  # its own generator: the batch order stays that of a clean run
        y_train = flip_labels(
            y_train, label_noise, torch.Generator().manual_seed(SPLIT_SEED)
        )
    # .to(device) once, here: from now on every batch is already where the model is.
    return (
        TensorLoader(
            X[train_idx].to(device),
            y_train.to(device),
            batch_size,
            shuffle=True,
            generator=generator,
        ),
        TensorLoader(
            X[val_idx].to(device), train_y[val_idx].to(device), eval_batch_size
        ),
        TensorLoader(X_test.to(device), test_y.to(device), eval_batch_size),
    )


# --------------------------------------------------------------------------------------
# Augmentation: random shifts of the training images (taught in
# 06_convolutional_network.py)
# --------------------------------------------------------------------------------------
BACKGROUND = (0 - MNIST_MEAN) / MNIST_STD  # a black pixel, normalized


def random_shift(X, max_shift, generator=None):
    """Move each image by its own random offset of up to max_shift pixels in x and y.

    Taught in 06_convolutional_network.py (a test keeps this copy equal to 06's): pad
    with a black border, cut a 28x28 window at a random offset. The offsets come from
    `generator`, drawn on the CPU: the same shifts on every device and every rerun.
    """
    n, _, h, w = X.shape
    # [n, 1, h+2s, w+2s]
    padded = nn.functional.pad(X, (max_shift,) * 4, value=BACKGROUND)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    shifted = torch.empty_like(X)
    for i, (dy, dx) in enumerate(offsets):  # dy = dx = max_shift: the image unmoved
        shifted[i] = padded[i, :, dy:dy + h, dx:dx + w]
    return shifted


class ShiftedLoader:
    """Wraps a training loader: the same batches, each image randomly shifted (06)."""

    def __init__(self, loader, max_shift):
        self.loader, self.max_shift, self.dataset = loader, max_shift, loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for X, y in self.loader:
            if self.max_shift:
                X = random_shift(X, self.max_shift, self.loader.generator)
            yield X, y


# --------------------------------------------------------------------------------------
# Models that several lessons use (each taught in the lesson named in its docstring)
# --------------------------------------------------------------------------------------
class SimpleNN(nn.Module):
    """784 -> hidden -> ReLU -> 10, the MLP of 03_train_mnist.py, where it is explained.

    This is the copy that later lessons (06 --arch mlp, 10, the benchmark) use, so that
    an edit a learner makes in 03 changes 03 alone; tests/test_sync.py checks that both
    copies give the same weights and outputs.
    """

    def __init__(self, input_size=784, hidden_size=128, num_classes=10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.activation = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        return self.fc2(self.activation(self.fc1(self.flatten(x))))


def conv_block(c_in, c_out, batch_norm=False):
    """One block of lesson 6's CNN, in the textbook order: a 3x3 convolution (padding=1
    keeps the size), ReLU, 2x2 max pooling (halves it). batch_norm adds
    nn.BatchNorm2d after the convolution, its usual place (lesson 7 takes batch norm
    apart; 08b keeps its statistics frozen); with it the convolution needs no bias,
    since batch norm's own shift replaces it. Without it, the layers are numbered as in
    06's SmallCNN (0 conv, 1 ReLU, 2 pool), so its checkpoints load here."""
    layers = [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.ReLU())
    layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Two convolution blocks and a small classifier: the CNN of
    06_convolutional_network.py, where every layer is explained. Lessons 6b, 8b and 13
    use this copy (tests/test_sync.py keeps the two equal). batch_norm is off unless
    asked for: 06 has none."""

    def __init__(
        self, channels=(16, 32), hidden_size=32, batch_norm=False, num_classes=10
    ):
        super().__init__()
        c1, c2 = channels
        self.block1 = conv_block(1, c1, batch_norm)  # [N, 1, 28, 28] -> [N, c1, 14, 14]
        self.block2 = conv_block(c1, c2, batch_norm)  # -> [N, c2, 7, 7]
        if hidden_size > 0:
            self.classifier = nn.Sequential(
                nn.Flatten(),  # [N, c2 * 7 * 7]
                nn.Linear(c2 * 7 * 7, hidden_size),  # [N, hidden_size]
                nn.ReLU(),
                nn.Linear(hidden_size, num_classes),  # [N, 10]
            )
        else:  # no hidden layer: the maps straight to the 10 scores
            self.classifier = nn.Sequential(
                nn.Flatten(),
                nn.Linear(c2 * 7 * 7, num_classes),
            )

    def forward(self, x):
        return self.classifier(self.block2(self.block1(x)))


class SequenceRNN(nn.Module):
    """Reads a digit row by row: [N, 1, 28, 28] -> 28 steps of 28 pixels -> 10 scores.

    Taught in 11_sequences_and_rnns.py, where the recurrence is written out; this copy
    serves the scripts after it (benchmarks/row_order.py), and tests/test_sync.py keeps
    the two equal. `order` (a permutation of the rows) is a buffer, saved with the
    weights."""

    def __init__(self, cell="gru", hidden_size=80, order=None, num_classes=10):
        super().__init__()
        layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = layer(input_size=28, hidden_size=hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)
        if order is None:
            order = range(28)
        self.register_buffer("order", torch.as_tensor(order))

    def forward(self, x):
        rows = x.reshape(len(x), 28, 28)[:, self.order]  # [N, time = 28, features = 28]
        states, _ = self.rnn(rows)  # [N, 28, hidden]: h_1 ... h_28
        return self.head(states[:, -1])


def layer_sizes(model: nn.Module) -> str:
    """'784-128-10': the widths of a model's Linear layers, read from the model itself
    (so that a label can never disagree with the network it names)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return "-".join(
        str(n) for n in [linears[0].in_features, *(m.out_features for m in linears)]
    )


# --------------------------------------------------------------------------------------
# The training loop (taught in 03_train_mnist.py as a plain loop; this copy adds what
# 03b_training_that_survives.py teaches: divergence, Ctrl-C, resuming)
# --------------------------------------------------------------------------------------
# Divergence (03b explains it): NaN/inf, or the epoch's running average loss reaching
# 10x where the epoch started (and at least 10 ln 10), judged once 64 images have been
# seen.
DIVERGED_LOSS = 10 * math.log(10)
MIN_IMAGES_TO_JUDGE = 64


def train_steps(model, loader, loss_fn, optimizer, device):
    """The five steps per batch, for every batch of one epoch (03 explains each
    line)."""
    model.train()
    for X, y in loader:
        X, y = X.to(device), y.to(device)
        optimizer.zero_grad()
        y_hat = model(X)
        loss = loss_fn(y_hat, y)
        loss.backward()
        optimizer.step()
        yield loss, y_hat, y


class DivergenceError(Exception):
    """A batch's loss exploded (or became NaN): the weights are garbage from here on."""

    def __init__(self, loss, batch):
        super().__init__(f"loss {loss:.4g} at batch {batch}")
        self.loss, self.batch = loss, batch


def train_epoch(model, loader, loss_fn, optimizer, device, stop=None, desc="train",
                scheduler=None):
    """One epoch of train_steps; returns its (average loss, accuracy), as 03's does.

    scheduler (06): a learning-rate schedule stepped after every batch.
    """
    loss_sum, correct, n = 0.0, 0, 0
    batches = tqdm(loader, desc=desc, leave=False, disable=None)
    for batch, (loss, y_hat, y) in enumerate(
        train_steps(model, batches, loss_fn, optimizer, device), start=1
    ):
        if scheduler is not None:
            scheduler.step()
        batch_loss = loss.item()  # a CPU-GPU sync point: the price of stopping at once
        if batch == 1:
            limit = max(DIVERGED_LOSS, 10 * batch_loss)
        loss_sum += batch_loss * len(y)
        correct += (y_hat.argmax(dim=1) == y).sum().item()
        n += len(y)
        if not math.isfinite(batch_loss) or (
            n >= MIN_IMAGES_TO_JUDGE and loss_sum / n > limit
        ):
            raise DivergenceError(batch_loss, batch)
        if stop is not None and stop.requested:
            break
    return loss_sum / n, correct / n


EPOCH_HEADER = (f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'val loss':>8}  "
                f"{'val acc':>7}  {'seconds':>7}")


def epoch_row(epoch, h, best):
    """One aligned table row per epoch; '*' marks a new best validation accuracy."""
    return (
        f"{epoch:>5}  {h['train_loss'][-1]:>10.4f}  {100 * h['train_acc'][-1]:>8.2f}%  "
        f"{h['val_loss'][-1]:>8.4f}  {100 * h['val_acc'][-1]:>6.2f}%  "
        f"{h['seconds'][-1]:>7.2f}{'  *' if best else ''}"
    )


def fit(model, train_loader, val_loader, optimizer, num_epochs, device, verbose=True,
        scheduler=None, extra_eval=None, start=None, after_epoch=None, stop_after=None):
    """Train for num_epochs, keeping the epoch with the best validation accuracy (03's
    fit).

    Returns {status ('completed', 'interrupted' or 'diverged'), history, best_epoch,
    best_val_acc, train_seconds, diverged}; the model ends with the kept weights. Hooks
    that 03b explains: start (resume_training's), after_epoch(epoch, best, history)
    (saves the training state), stop_after (an epoch to stop after, as Ctrl-C would).
    Two that 03 does without: scheduler (06) is stepped after every batch; extra_eval
    (07), a function model -> {name: number}, adds numbers to the history.
    """
    loss_fn = nn.CrossEntropyLoss()
    history = {
        key: [] for key in ("train_loss", "train_acc", "val_loss", "val_acc", "seconds")
    }
    best = {"epoch": 0, "val_acc": -1.0, "state": None}
    if start:
        history, best = start["history"], start["best"]
    status, diverged = "completed", None
    if verbose:
        print(EPOCH_HEADER)
    with GracefulStop() as stop:
        for epoch in range(1 + (start["epoch"] if start else 0), num_epochs + 1):
            t0 = time.perf_counter()
            try:
                train_loss, train_acc = train_epoch(
                    model,
                    train_loader,
                    loss_fn,
                    optimizer,
                    device,
                    stop,
                    f"epoch {epoch}",
                    scheduler,
                )
            except DivergenceError as err:
                status, diverged = "diverged", f"{err} of epoch {epoch}"
                break
            if stop.requested:
                status = "interrupted"
                break
            val_loss, val_acc = evaluate_model(model, val_loader, device)
            for key, value in (("train_loss", train_loss), ("train_acc", train_acc),
                               ("val_loss", val_loss), ("val_acc", val_acc),
                               ("seconds", time.perf_counter() - t0)):
                history[key].append(value)
            for key, value in (extra_eval(model) if extra_eval else {}).items():
                history.setdefault(key, []).append(value)
            improved = keep_if_best(best, model, epoch, val_acc)
            if verbose:
                print(epoch_row(epoch, history, improved), flush=True)
            if after_epoch is not None:
                after_epoch(epoch, best, history)
            if epoch == stop_after and epoch < num_epochs:
                status = "interrupted"
                break
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return {"status": status, "history": history, "best_epoch": best["epoch"],
            "best_val_acc": best["val_acc"], "train_seconds": sum(history["seconds"]),
            "diverged": diverged}


def keep_if_best(best, model, epoch, val_acc):
    """Remember this epoch's weights if its validation accuracy beats every earlier
    one."""
    if val_acc <= best["val_acc"]:
        return False
    best.update(epoch=epoch, val_acc=val_acc, state=copy.deepcopy(model.state_dict()))
    return True


# --------------------------------------------------------------------------------------
# Evaluation, and how much to trust a measured number
# --------------------------------------------------------------------------------------
def evaluate_model(model: nn.Module, loader, device=None) -> tuple[float, float]:
    """Average cross-entropy loss and accuracy of `model` over `loader`.

    model.eval() switches layers that behave differently in training (dropout stops
    dropping, batch norm uses its running statistics instead of the batch's). For a
    model without such layers it changes nothing, but calling it is the habit that
    prevents a silent bug the day you add one. torch.no_grad() stops autograd from
    recording the operations: no gradients are needed here, so this saves memory and
    time. The model is put back in the mode it came in.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = 0
    with torch.no_grad():
        for X, y in loader:
            # no-op when the loader already lives there
            X, y = X.to(device), y.to(device)
            y_hat = model(X)
            loss_sum += nn.functional.cross_entropy(y_hat, y, reduction="sum")
            correct += (y_hat.argmax(dim=1) == y).sum()
            n += len(y)
    model.train(was_training)
    # .item() copies a number from the device to Python: on a GPU that waits for all
    # queued work to finish (a "sync point"), so we do it once at the end, not once per
    # batch.
    return loss_sum.item() / n, correct.item() / n


def predict_all(model, loader, device):
    """Softmax probabilities [N, 10] and true labels [N] for every image in `loader`
    (taught in 04_load_model.py, used by 08)."""
    model.eval()
    probs, labels = [], []
    with torch.no_grad():
        for X, y in loader:
            probs.append(torch.softmax(model(X.to(device)), dim=1).cpu())
            labels.append(y.cpu())
    return torch.cat(probs), torch.cat(labels)


def confusion_matrix(probs, y):
    """10x10 counts: row = true digit, column = predicted digit; the diagonal is
    correct.

    For every image i, index_put_ with accumulate=True adds 1 at row y[i], column
    pred[i], for all images at once (a Python loop over them would do the same).
    """
    pred = probs.argmax(dim=1)
    cm = torch.zeros(10, 10, dtype=torch.long)
    cm.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    return cm


def half_scorer(val_loader):
    """fit's extra_eval for honest_score: after each epoch, the accuracy on each half of
    the validation set (taught in 07_regularization.py)."""
    half = len(val_loader.y) // 2
    halves = {
        name: TensorLoader(val_loader.X[s], val_loader.y[s], 1000)
        for name, s in (
            ("val_a_acc", slice(None, half)),
            ("val_b_acc", slice(half, None)),
        )
    }
    return lambda model: {name: evaluate_model(model, loader)[1]
                          for name, loader in halves.items()}


def honest_score(history):
    """Early stopping's accuracy, measured on images that did not choose the epoch (07
    uses it; 07c teaches it as cross_scored, this function's twin).

    Keeping the epoch with the best validation accuracy, then quoting that accuracy, is
    optimistic: among 20 noisy epochs, the best one was partly lucky on exactly these
    images. So: choose the epoch on half A of the validation set and score it on half
    B, then the other way round, and average the two ("two-fold cross-fitting").
    """
    a, b = history["val_a_acc"], history["val_b_acc"]
    # the first best epoch, as fit() keeps
    by_a, by_b = a.index(max(a)), b.index(max(b))
    return (b[by_a] + a[by_b]) / 2


def accuracy_se(acc: float, n: int) -> float:
    """Standard error of an accuracy measured on n images: sqrt(acc * (1 - acc) / n).

    Where it comes from: each test image is a coin flip that the model gets right with
    some probability p. Counting the successes among n independent flips gives a
    binomial count, whose standard deviation is sqrt(n p (1 - p)); divided by n, the
    accuracy's is sqrt(p (1 - p) / n). On 10,000 images that is 0.15 points at 97.8% and
    0.08 at 99.4%. Two caveats. The flips are independent only if the images are:
    MNIST's test digits come from writers the training set never saw, each writing many
    digits, and one writer's digits succeed or fail together, so for "new writers" this
    SE is a floor. And two independent test sets differ from each other by about sqrt(2)
    SE, not SE, since each has its own error. Differences smaller than a few SE are
    noise.
    """
    return math.sqrt(acc * (1 - acc) / n)


def mean_se(values) -> tuple[float, float]:
    """Mean over runs (seeds) and its standard error: sample standard deviation /
    sqrt(k).

    The standard deviation says how much one run varies; the standard error, how far the
    mean of k runs is likely to be from the mean of infinitely many. With 3 runs both
    are rough: the standard deviation itself could easily be off by a factor of two.
    """
    values = list(values)
    if len(values) < 2:
        return (values[0] if values else float("nan")), float("nan")
    return statistics.mean(values), statistics.stdev(values) / math.sqrt(len(values))


def paired_difference(a, b) -> dict:
    """Mean of the per-run differences a[i] - b[i], its SE and 95% interval.

    Paired: run i of both used the same seed (same initial randomness, same batch
    order), so much of the luck is shared, and the differences vary less than either
    list. The interval mean ± t * SE that excludes 0 is evidence of a real difference;
    one that includes 0 says the runs cannot tell the two apart.
    """
    diffs = [x - y for x, y in zip(a, b)]
    mean, se = mean_se(diffs)
    half = t_975(len(diffs) - 1) * se if len(diffs) > 1 else float("nan")
    return {
        "mean": mean,
        "se": se,
        "low": mean - half,
        "high": mean + half,
        "n": len(diffs),
    }


def paired_by_seed(runs_a, runs_b, key, key_b=None) -> dict:
    """paired_difference of run[key] (run[key_b] for runs_b) between two lists of runs,
    each run a dict with a "seed": the runs are matched by seed, and only seeds both
    have count."""
    a = {r["seed"]: r[key] for r in runs_a}
    b = {r["seed"]: r[key_b or key] for r in runs_b}
    seeds = sorted(set(a) & set(b))
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds])


def summarize_runs(runs, group: str, keys, constant=()) -> dict:
    """Runs (dicts) grouped by run[group]: per group, mean ± SE over seeds of each key.

    Lessons 5 and 7 both judge this way: every configuration trained with the same
    seeds, then each number averaged over the seeds with its standard error. `constant`
    names entries that are the same for every seed (a model's size), copied as they are.
    """
    summary = {}
    for name in dict.fromkeys(r[group] for r in runs):
        mine = [r for r in runs if r[group] == name]
        entry = {key: mine[0][key] for key in constant}
        entry["runs"] = len(mine)
        for key in keys:
            entry[key], entry[key + "_se"] = mean_se(r[key] for r in mine)
        summary[name] = entry
    return summary


def paired_against(runs, reference, key, names=None, other_key=None) -> dict:
    """{name: paired_by_seed of run[key], name minus reference}, for every other
    name."""
    names = names or dict.fromkeys(r["name"] for r in runs if r["name"] != reference)
    ref = [r for r in runs if r["name"] == reference]
    return {
        name: paired_by_seed(
            [r for r in runs if r["name"] == name], ref, key, other_key
        )
        for name in names
    }


def changed_predictions(before, after, y):
    """Two models on the same images (their probabilities or logits, [N, 10]): how many
    images went wrong -> right ("fixed") and right -> wrong ("broken"). Taught in
    08b."""
    ok_before = before.argmax(dim=1) == y
    ok_after = after.argmax(dim=1) == y
    fixed = int((~ok_before & ok_after).sum())
    broken = int((ok_before & ~ok_after).sum())
    return fixed, broken


def coin_flip_p(fixed, broken) -> float:
    """McNemar's exact test, the course's one test for two models on the same images
    (taught in 08b): if the two models were equally good, each image that only one of
    them reads right would be a fair coin flip between "fixed" and "broken"; the p-value
    is the chance that fair coins split at least this unevenly (two-sided)."""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


# --------------------------------------------------------------------------------------
# Inspecting a model (03): its shapes and its size
# --------------------------------------------------------------------------------------
def print_shapes(model: nn.Module, X: torch.Tensor) -> None:
    """Push one batch through `model` and print the shape after every layer.

    Forward hooks are functions PyTorch calls after a module runs; we use them to watch
    the data flow without changing the model. Most shape bugs become obvious here: when
    a layer fails (an edit changed a size that a later layer assumed), the rows it
    reached are printed, then one line naming the layer and the two numbers that
    disagree.
    """
    rows = [["input", "", str(list(X.shape))]]
    entered = []  # the layer now running, so that a failure can name it

    def before(module, inputs, name):
        entered.append((name, module, inputs))

    def record(module, inputs, output, name):
        entered.pop()
        rows.append([name, type(module).__name__, str(list(output.shape))])

    # The innermost modules (those with no children): the layers that compute something.
    layers = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    hooks = []
    for name, layer in layers:
        hooks.append(layer.register_forward_pre_hook(partial(_pre_hook, before, name)))
        hooks.append(layer.register_forward_hook(partial(_post_hook, record, name)))
    was_training = model.training
    model.eval()  # so that batch norm does not update its statistics with this batch
    try:
        with torch.no_grad():
            model(X)
    except RuntimeError as err:  # a shape mismatch, most often
        print_table(["layer", "type", "output shape"], rows)
        raise FriendlyError(shape_mismatch(entered, rows, err)) from err
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    print_table(["layer", "type", "output shape"], rows)


def _pre_hook(before, name, module, inputs):
    before(module, inputs, name)


def _post_hook(record, name, module, inputs, output):
    record(module, inputs, output, name)


def shape_mismatch(entered, rows, err) -> str:
    """One line for print_shapes: which layer failed, what it expected, what it got."""
    if not entered:
        return f"the model failed between its layers: {first_line(err)}"
    name, layer, inputs = entered[-1]
    got = list(inputs[0].shape) if inputs and torch.is_tensor(inputs[0]) else "?"
    came_from = f" (the output of {rows[-1][0]})" if len(rows) > 1 else ""
    if isinstance(layer, nn.Linear) and got != "?":
        return (
            f"layer {name} (Linear) expects {layer.in_features:,} numbers per image "
            f"but gets {got[-1]:,}, from a batch of shape {got}{came_from}: an "
            f"edit upstream changed that size; set in_features={got[-1]} or change "
            f"the edit back"
        )
    if isinstance(layer, nn.modules.conv._ConvNd) and got != "?" and len(got) > 1:
        return (
            f"layer {name} ({type(layer).__name__}) expects {layer.in_channels} input "
            f"channels but gets {got[1]}, shape {got}{came_from}: make in_channels "
            f"match the layer before it"
        )
    return (f"layer {name} ({type(layer).__name__}) failed on input of shape "
            f"{got}{came_from}: {first_line(err)}")


def first_line(err) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters: the numbers the optimizer adjusts.

    Each float32 parameter takes 4 bytes: 101,770 parameters is 407,080 bytes (about
    407 KB), tiny next to modern models with billions of parameters (gigabytes).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_size_kb(model: nn.Module) -> float:
    """Size of the parameters and buffers in kilobytes (1 KB = 1000 bytes)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 1000


# --------------------------------------------------------------------------------------
# A training script's start and end (03 shows them first; 06 and 07 use the same)
# --------------------------------------------------------------------------------------
def setup(args, scaling="standardized", label_noise=0.0):
    """Device, seeds and data: the start of every training script."""
    setup_figures(args.show)
    section("Setup")
    device = get_device(args.device)
    generator = set_seed(args.seed)
    loaders = load_mnist_data(
        args.batch_size,
        subset=args.subset,
        device=device,
        generator=generator,
        scaling=scaling,
        label_noise=label_noise,
    )
    train_loader, val_loader, test_loader = loaders
    print(
        f"Images: {len(train_loader.dataset):,} train, {len(val_loader.dataset):,} "
        f"validation, {len(test_loader.dataset):,} test; "
        f"{len(train_loader)} batches of "
        f"{args.batch_size} per epoch; inputs {scaling}"
        + (f"; {label_noise:.0%} of the training labels flipped" if label_noise else "")
    )
    return device, loaders


def introduce(model, train_loader, note=""):
    """Print the model, its size, and the shapes of one batch flowing through it."""
    section("The model")
    print(model)
    print(f"{count_parameters(model):,} trainable parameters = "
          f"{model_size_kb(model):.0f} KB as float32 {note}".rstrip())
    print("\nOne batch through the model, layer by layer:")
    # The first images, sliced directly: iterating the loader would draw a shuffle from
    # the seeded generator and change the batch order of training.
    print_shapes(model, train_loader.X[:train_loader.batch_size])


def report(model, loaders, device):
    """Loss and accuracy of the kept model on all three splits, as a table."""
    rows, metrics = [], {}
    for split, loader in zip(("train", "validation", "test"), loaders):
        loss, acc = evaluate_model(model, loader, device)
        metrics[f"{split}_loss"], metrics[f"{split}_acc"] = loss, acc
        n = len(loader.dataset)
        rows.append([split, f"{n:,}", f"{loss:.4f}", format_accuracy(acc, n)])
    print_table(["split", "images", "loss", "accuracy (95% interval)"], rows)
    prose("""
        (The interval is each split's own sampling error: where the accuracy on all
        images like these would lie, 95% of the time; dl_utils.wilson_interval and
        accuracy_se say where it comes from.)""")
    prose(gap_sentence(metrics["train_acc"], metrics["test_acc"]))
    warn_if_below_baseline(
        metrics["validation_acc"], loaders[0], loaders[1], metrics["train_loss"]
    )
    return metrics


def gap_sentence(train_acc: float, test_acc: float) -> str:
    """What the train-minus-test gap says, for the gap it is (overfitting shows as a
    positive gap; a negative one happens when training images are harder, e.g.
    augmented or with flipped labels, or by chance when the gap is small)."""
    gap = 100 * (train_acc - test_acc)
    head = f"Train minus test accuracy: {gap:+.2f} points."
    if gap >= 0.5:
        return (f"{head} The model fits the images it was trained on better than new "
                f"ones; a large or growing gap is overfitting (lesson 7).")
    if gap > -0.5:
        return f"{head} Within half a point: no sign of overfitting."
    return (f"{head} The training images read worse than new ones: they are harder "
            f"(augmented, or with flipped labels), not a sign of overfitting.")


def nearest_mean_accuracy(train_loader, val_loader) -> float | None:
    """Lesson 2's baseline, which never trains: each image is read as the digit whose
    mean training image is nearest. None when the loaders hold no tensors to average."""
    while hasattr(train_loader, "loader"):  # ShiftedLoader and the like wrap one
        train_loader = train_loader.loader
    if not all(hasattr(loader, "X") for loader in (train_loader, val_loader)):
        return None
    X = train_loader.X.flatten(1).float()
    y = train_loader.y
    means = torch.stack([X[y == digit].mean(dim=0) for digit in range(10)])
    distances = torch.cdist(val_loader.X.flatten(1).float(), means.to(X.device))
    return (distances.argmin(dim=1) == val_loader.y).float().mean().item()


# Fewer training images than this: a run below the baseline may simply be too short
FEW_TRAINING_IMAGES = 20_000


def warn_if_below_baseline(
    val_acc: float, train_loader, val_loader, train_loss: float | None = None
) -> None:
    """A trained network that reads fewer validation digits than a baseline with no
    training is not a weak model but a broken run: a broken loop (lesson 3's five steps:
    a missing zero_grad or step, a swapped argument), or a learning rate so large that
    the loss exploded, which shows as a training loss above guessing's: say which."""
    baseline = nearest_mean_accuracy(train_loader, val_loader)
    if baseline is None or val_acc >= baseline:
        return
    n_train = len(train_loader.dataset)
    if n_train < FEW_TRAINING_IMAGES:  # a quick look (--subset): maybe just too short
        prose(f"""
            (The network reads {100 * val_acc:.2f}% of the validation digits, fewer
            than lesson 2's baseline that never trains, {100 * baseline:.2f}%. With
            only {n_train:,} training images that can be too little training: train on
            more images or for more epochs before suspecting the loop.)""")
        return
    prose(f"""
        WARNING: the trained network reads {100 * val_acc:.2f}% of the validation
        digits, fewer than lesson 2's baseline that never trains ({100 * baseline:.2f}%,
        the nearest mean image). Something in this run is broken.""")
    guessing = math.log(10)  # the loss of a network that spreads 10% on every digit
    if train_loss is not None and not train_loss < guessing:
        prose(f"""
            Its training loss, {train_loss:.3g}, is no better than guessing's
            ({guessing:.2f}): the learning rate is most likely too large (try the
            default; lesson 3b stops such a run at the first exploding batch).""")
    else:
        prose("""
            Check the five steps of lesson 3's loop (zero_grad, forward, loss,
            backward, step).""")


def save_kept_model(
    path, args, model, model_kwargs, result, metrics, device, defaults=None
):
    """The weights (state_dict), with the settings, metrics and history that produced
    them.

    defaults: the script's default settings (by default those its command line was
    parsed with); the ones this run changed are recorded as "changed_settings", so that
    a later lesson can say how a model was trained without importing the script that
    trained it. "Change a setting and run again" then shows both results side by side
    (remember_defaults), and a run with other settings never silently replaces the model
    trained with the defaults.
    """
    if defaults is None:
        defaults = script_defaults()
    hparams = {k: v for k, v in vars(args).items()
               if k not in ("show", "checkpoint", "results")}
    changed = {}
    for key, value in hparams.items():
        if key in defaults and value != defaults[key]:
            changed[key] = value
    path = Path(path)
    remember_defaults(path, changed, metrics)
    save_checkpoint(path, model, model_kwargs, device=str(device), hparams=hparams,
                    changed_settings=changed,
                    metrics={**metrics, "best_epoch": result["best_epoch"],
                             "train_seconds": result["train_seconds"]},
                    history=result["history"])
    print(
        f"Saved the kept model's weights (its state_dict, a dict of tensors: lesson 4) "
        f"to {display_path(path)} ({path.stat().st_size / 1000:.0f} KB on disk)"
    )


def defaults_copy_path(path: Path) -> Path:
    """Where a run with other settings keeps the model trained with the defaults."""
    return path.with_name(f"{path.stem}_defaults.pt")


def flags_of(changed: dict) -> str:
    """{'lr': 0.01, 'max_shift': 0} -> '--lr 0.01 --max-shift 0' (what a run
    changed)."""
    parts = []
    for key, value in changed.items():
        if isinstance(value, (list, tuple)):
            value = " ".join(str(v) for v in value)
        parts.append(f"--{key.replace('_', '-')} {value}".rstrip())
    return " ".join(parts)


def remember_defaults(path: Path, changed: dict, metrics: dict) -> None:
    """Before `path` is written: print the last run with the defaults beside this one,
    and keep that run's model when this run changed a setting.

    Validation accuracy is what is compared: comparing settings is a choice, and
    choices are made on validation images (lesson 3), never on the test set.
    Where a run was made (device, output files) is not a setting of the model."""
    meant = {k: v for k, v in changed.items() if k not in MAY_DIFFER}
    keep = defaults_copy_path(path)
    last = None
    for candidate in (path, keep):
        try:
            checkpoint = read_checkpoint(candidate)
        except CheckpointError:
            continue
        was_changed = checkpoint.get("changed_settings")
        earlier = {k: v for k, v in (was_changed or {}).items() if k not in MAY_DIFFER}
        if was_changed is not None and not earlier and "metrics" in checkpoint:
            last = (candidate, checkpoint)
            break
    now = 100 * metrics["validation_acc"]
    if last is not None:
        before = 100 * last[1]["metrics"]["validation_acc"]
        this = f"this run ({flags_of(meant)})" if meant else "this run (the defaults)"
        print(f"Validation accuracy, with the defaults last time: {before:.2f}%; "
              f"{this}: {now:.2f}%")
    if meant and last is not None and last[0] == path:
        with atomic_path(keep) as tmp:
            tmp.write_bytes(path.read_bytes())
        prose(f"""
            {display_path(path)} held the model trained with the defaults; it is kept
            in {display_path(keep)} (copy it back to use it again, or run the lesson
            without flags), and {display_path(path)} now holds this run's model.""")


# --------------------------------------------------------------------------------------
# Resuming training (taught in 03b_training_that_survives.py; 06 and 10 resume the
# same way)
# --------------------------------------------------------------------------------------
# A checkpoint for inference holds the weights and how to rebuild the model: enough to
# use it. A training state holds everything needed to go on as if the run had never
# stopped: the weights, the optimizer's state (Adam's two running averages per weight,
# its step count), the schedule's position, the epoch, the best epoch so far (its
# number, score and weights), the history, the settings, and the state of every random
# generator set_seed seeds (the loader's shuffles and 06's shifts; torch's own; CUDA's;
# Python's `random` and NumPy's, which no lesson uses but a learner's change may). Only
# tensors, numbers, strings and containers: it loads with weights_only=True like any
# checkpoint.
def save_training_state(path, script, args, model, model_kwargs, optimizer, scheduler,
                        generator, epoch, best, history) -> None:
    """Everything needed to continue after `epoch`, written atomically: a kill during
    the save leaves the previous state whole. (best None: a run that keeps its last
    epoch, as 10 does; generator None: no loader generator, as in 10, whose
    DistributedSampler shuffles from the seed and the epoch alone.)"""
    best = best or {"epoch": epoch, "val_acc": None, "state": None}
    state = {
        "kind": TRAINING_STATE,
        "script": script,
        "epoch": epoch,
        "model_class": type(model).__name__,
        "model_kwargs": dict(model_kwargs),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "best": {
            "epoch": best["epoch"],
            "val_acc": best["val_acc"],
            "state": {k: v.cpu() for k, v in (best["state"] or {}).items()},
        },
        "history": history,
        "settings": {k: v for k, v in vars(args).items() if k not in MAY_DIFFER},
        "rng": rng_states(
            generator
        ),  # torch's, CUDA's, the loader's, Python's, NumPy's
        "torch_version": str(torch.__version__),
    }
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def resume_training(path, script, args, model, optimizer, scheduler, generator,
                    say=print) -> dict:
    """Load a training state into the model, optimizer, schedule and generators built
    for this run; return fit's `start` (the epoch done, the best so far, the
    history). (10: no generator, since its sampler shuffles from the epoch; `say`
    prints on rank 0.)"""
    state = read_training_state(path, script, args, model)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        # the next epoch's shuffle (and shifts)
        restore_rng_states(state["rng"], generator)
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise FriendlyError(
            f"cannot resume from {display_path(path)}: {first_detail(err)}"
        ) from err
    best = dict(state["best"], state=state["best"]["state"] or None)
    say(f"Resuming {display_path(path)}: {state['epoch']} of {args.epochs} epochs done"
        + (f", best so far epoch {best['epoch']} ({100 * best['val_acc']:.2f}% on "
           "validation)" if best["val_acc"] is not None else ""))
    return {"epoch": state["epoch"], "best": best, "history": state["history"]}


def resumable(script, args, model, model_kwargs, optimizer, scheduler, generator):
    """fit's start (from --resume, if given) and its after_epoch, which saves the
    training state beside the checkpoint after every epoch."""
    path = training_state_path(args.checkpoint)
    start = None
    if args.resume:
        start = resume_training(args.resume, script, args, model, optimizer, scheduler,
                                generator)
    print(f"The training state is saved after every epoch to {display_path(path)}: "
          f"continue a stopped run with --resume {display_path(path)}")

    def after_epoch(epoch, best, history):
        save_training_state(
            path,
            script,
            args,
            model,
            model_kwargs,
            optimizer,
            scheduler,
            generator,
            epoch,
            best,
            history,
        )
    return start, after_epoch


# --------------------------------------------------------------------------------------
# Your own digit, made to look like MNIST (taught in 04_load_model.py; 08 and 09 use it)
# --------------------------------------------------------------------------------------
def digit_from_gray(image: Image.Image, name="the image") -> np.ndarray:
    """A grey image of one digit as a 28x28 MNIST-style uint8 array (04 explains each
    step): ink light on black, cropped, scaled into a 20x20 box, centred by mass in
    28x28."""
    g = np.asarray(image, dtype=np.float32)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    if np.median(border) > 127:  # dark ink on light paper: invert to MNIST's convention
        g = 255 - g
        border = 255 - border
    g = np.clip(g - np.median(border), 0, None)  # the paper's grey level becomes black
    if g.max() < 32:
        raise FriendlyError(f"no digit found in {name}: the image is nearly uniform")
    rows, cols = np.nonzero(g > 0.25 * g.max())  # the ink, ignoring faint noise
    crop = g[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    crop = crop * (255 / crop.max())
    h, w = crop.shape
    scale = 20 / max(h, w)
    # PIL wants (width, height)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = Image.fromarray(crop.astype(np.uint8)).resize(
        size, Image.Resampling.LANCZOS
    )
    return center_by_mass(np.asarray(small, dtype=np.float32))


def center_by_mass(small: np.ndarray) -> np.ndarray:
    """Paste a <=20x20 image into a 28x28 frame with its centre of mass at pixel (14,
    14).

    (14, 14) is where MNIST's own digits have theirs, on average to within 0.05 pixels
    (tests/test_train_and_load.py measures it on the 10,000 test images).
    """
    h, w = small.shape
    total = small.sum() or 1.0
    cy = (small.sum(axis=1) * np.arange(h)).sum() / total
    cx = (small.sum(axis=0) * np.arange(w)).sum() / total
    top = int(np.clip(round(14 - cy), 0, 28 - h))  # clip: never push ink off the frame
    left = int(np.clip(round(14 - cx), 0, 28 - w))
    frame = np.zeros((28, 28), dtype=np.float32)
    frame[top:top + h, left:left + w] = small
    return frame.clip(0, 255).astype(np.uint8)


def looks_like_mnist(image: Image.Image) -> bool:
    """28x28 with a dark border (all four sides): already in MNIST's format (taught
    in 08, whose twin a test keeps equal; 08b decides with it which images to
    prepare)."""
    if image.size != (28, 28):
        return False
    g = torch.from_numpy(np.array(image.convert("L")))  # [28, 28] grey levels
    return bool(torch.cat([g[0], g[-1], g[:, 0], g[:, -1]]).median() < 128)


def export_mnist_pngs(
    folder: Path, per_class: int, rotate: float | None = None
) -> Path:
    """The first `per_class` validation images of each digit as
    <folder>/<digit>/<index>.png: as stored (28x28), or, with a `rotate`, drawn on a pad
    turned by that many degrees.

    Lesson 8's default folder. Validation images, never test images: lesson 8 fine-tunes
    on part of the folder, and no image a lesson reports as test data may be trained on.
    A file's name is the image's index in MNIST's training file. Written to a temporary
    folder and renamed when complete (an interrupted export is never taken for a
    finished one); reused when present.
    """
    if Path(folder).is_dir():
        return Path(folder)
    train_X, train_y, _, _ = load_mnist_tensors()
    val_idx = train_val_split(len(train_y))[1]
    picked = [(digit, i) for digit in range(10)
              for i in val_idx[train_y[val_idx] == digit][:per_class].tolist()]
    return write_digit_pngs(
        folder, [(d, i, train_X[i].numpy()) for d, i in picked], rotate
    )


def writer_stand_ins(digits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Other writers, stood in for by validation digits (taught in
    06b_other_writers.py, which chooses augmentation on them; lesson 13 chooses its
    ensemble on them; never on test digits): `digits` (uint8 [n, 28, 28]) as stored,
    re-drawn the way lesson 9's pad draws, and cut to 8x8 as the UCI digits were made
    (binarized, boxed in 32x32, ink counted in 4x4 blocks), the last two prepared by
    digit_from_gray. {"as stored", "re-drawn like the pad", "cut to 8x8"}: (uint8
    digits, labels) each. The pen is seeded: the same sets each time."""
    rng = np.random.default_rng(0)
    drawn = []
    for digit in digits.numpy():
        pad = draw_like_a_canvas(digit, rng).convert("L")
        drawn.append(digit_from_gray(pad))
    at_8x8 = []
    for digit in digits.numpy():
        counts = uci_8x8(digit)
        at_8x8.append(digit_from_gray(counts_to_image(counts), "an 8x8 digit"))
    return {"as stored": (digits, labels),
            "re-drawn like the pad": (torch.from_numpy(np.stack(drawn)), labels),
            "cut to 8x8": (torch.from_numpy(np.stack(at_8x8)), labels)}


def to_pixels(X):
    """Undo the normalization for display: back to [0, 1] grey levels."""
    return (X.cpu() * MNIST_STD + MNIST_MEAN).clamp(0, 1).squeeze(1)


# --------------------------------------------------------------------------------------
# Checkpoints: one file, enough to rebuild the model, written atomically
# --------------------------------------------------------------------------------------
def save_checkpoint(path: Path, model: nn.Module, model_kwargs: dict, **info) -> Path:
    """Save the weights plus what is needed to rebuild and judge the model.

    Saved: the state_dict (a dict of name -> tensor: weights only, no code), the class
    and the constructor arguments that rebuild it, the torch version, what it was
    trained on, and whatever the caller adds in `info` (hyperparameters, metrics,
    history). Atomic: an interrupted save leaves the previous file intact.
    """
    cls = type(model)
    module = cls.__module__
    if module == "__main__":  # the script that defines the class was run directly
        module = Path(sys.modules["__main__"].__file__).stem
    checkpoint = {
        "model_class": cls.__name__,
        "model_module": module,
        "model_kwargs": dict(model_kwargs),
        "model_state_dict": {
            k: v.detach().cpu() for k, v in model.state_dict().items()
        },
        "torch_version": str(
            torch.__version__
        ),  # a str subclass; plain str for weights_only
        "trained_on": "MNIST's training split (never its validation or test images)",
        **info,  # (lesson 8's fine-tuned CNN says what else it was trained on)
    }
    with atomic_path(Path(path)) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)


def import_lesson(name: str):
    """A numbered lesson as a module (a checkpoint's class may be defined in one): what
    _course.checkpoints.model_class is handed, so that the package imports no lesson."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module(name)


def build_model(recipe: dict) -> nn.Module:
    """A fresh, untrained model from a recipe: the class a checkpoint names (resolved
    safely: a file never chooses which code runs), its constructor arguments, and the
    pixel scaling it was trained on (03 --inputs: a model trained on unit or raw pixels
    comes wrapped in InputsAsTrained, whose forward() converts the course's
    standardized inputs back). Lesson 13 builds
    its members with it; load_checkpoint then fills in the weights."""
    cls = model_class(recipe, sys.modules[__name__], import_lesson)
    kwargs = recipe.get("model_kwargs", {})
    try:
        model = cls(**kwargs)
    except Exception as err:  # unknown or invalid constructor arguments
        raise CheckpointError(f"{cls.__name__}(**{kwargs}) cannot be built "
                              f"({type(err).__name__}: {err})") from err
    scaling = input_scaling(recipe, INPUT_SCALINGS)
    return inputs_as_trained(model, scaling, MNIST_MEAN, MNIST_STD)


def load_checkpoint(path: Path, model: nn.Module | None = None, device="cpu"):
    """Load a checkpoint; return (model, checkpoint dict).

    weights_only=True restricts torch.load to tensors and plain containers (dicts,
    lists, numbers, strings): it is designed to refuse every other object, so that a
    file cannot make it run code, as a full unpickle would. "Designed": its unpickler
    has had bypasses (CVE-2025-32434, fixed in torch 2.6, the floor in
    requirements.txt), so keep torch up to date and still load only files from sources
    you trust. Given `model`, the weights are loaded into it (after checking it is the
    architecture the file holds); otherwise the model is rebuilt from the class and
    arguments the file records (one trained on unit or raw pixels, 03 --inputs, comes
    wrapped in InputsAsTrained, which converts standardized inputs).
    """
    path = Path(path)
    checkpoint = read_checkpoint(path)  # torch.load(path, weights_only=True), checked
    given = model is not None
    if not given:
        try:
            model = build_model(checkpoint)
        except CheckpointError as err:
            raise CheckpointError(f"{path}: {err}") from err
    trained = unwrapped(model)  # the model itself (InputsAsTrained adds no weights)
    if given and type(trained).__name__ != checkpoint.get("model_class"):
        raise CheckpointError(f"{path} holds a {checkpoint.get('model_class')}, "
                              f"not a {type(trained).__name__}")
    try:
        trained.load_state_dict(checkpoint["model_state_dict"])
    except RuntimeError as err:  # shapes or names differ from the class's
        raise CheckpointError(
            f"{path}: the saved weights do not fit {type(trained).__name__} "
            f"({first_detail(err)})"
        ) from err
    return model.to(device), checkpoint


# --------------------------------------------------------------------------------------
# The plumbing, re-exported by name: lessons write dl_utils.X and import nothing else of
# the course. Each name below is used by a lesson, an exercise, a benchmark or a test
# (tests/test_dl_utils.py checks that every dl_utils.X they use is named in this file).
# What each module of _course/ is for: its first paragraph.
# --------------------------------------------------------------------------------------
# Checkpoints and training states, checked before use (lessons 3b, 4, 8, 9)
from _course.checkpoints import first_step_size, print_resume_proof

# Hand-written code compared with PyTorch's (lessons 11, 12)
from _course.checks import match_table, output_and_gradient_gaps

# The command line, printed tables, one-line errors, Ctrl-C (every lesson)
from _course.cli import (
    add_common_args,
    add_results_arg,
    add_resume_args,
    add_training_args,
    changed_settings_note,
    compare_with_course,
    count,
    did_you_mean,
    format_table,
    fraction,
    hardware_info,
    kept_model_path,
    make_parser,
    output_file,
    port_number,
    positive_float,
    positive_int,
    run_main,
    save_results,
    save_run_results,
    train_over_seeds,
)

# Figures without a screen (every lesson that draws)
from _course.figures import (
    image_grid,
    plot_confident_mistakes,
    plot_curves_by_name,
    plot_training_history,
    save_figure,
    show_figures,
)

# Where files go (models/, figures/, results/, or under $DL_OUTPUT_DIR)
from _course.files import FIGURES_DIR, MODELS_DIR, OUTPUT_DIR, RESULTS_DIR

# Image files from strangers, drawn digits, other writers (lessons 8, 8b, 9, 6b, 13)
from _course.images import (
    CANVAS,
    ImageTooLarge,
    keep_preparable,
    read_digit_folder,
    read_grayscale,
    scan_image_folder,
    thicken,
    to_grayscale,
)

# Several processes (lesson 10's torchrun)
from _course.launch import (
    add_launch_args,
    ddp_bucket_count,
    exit_now,
    launch,
    leave_when_gone,
    peak_memory_mb,
    torchrun,
    torchrun_command,
    torchrun_failure,
)

# Intervals and verdicts (lessons 5, 7, 7c)
from _course.stats import (
    bonferroni,
    interval,
    interval_verdict,
    points,
    t_quantile,
    wilson_interval,
)


def __getattr__(name: str):
    """dl_utils.serving, lesson 9's web plumbing (_course/serving.py), imported on first
    use (PEP 562): the other lessons never pay FastAPI's and uvicorn's import time."""
    if name == "serving":
        return importlib.import_module("_course.serving")
    raise AttributeError(f"module 'dl_utils' has no attribute {name!r}")
