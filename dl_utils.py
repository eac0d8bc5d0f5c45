"""The one shared module of the course: what every lesson needs, written once.

Every numbered lesson imports this module and nothing else of the course: a lesson never
imports another lesson, so an edit a learner makes in one lesson changes no other. The
lesson that teaches an idea keeps its own copy in view (03's training loop, 06's CNN);
the copy here, which later lessons use, names that lesson, and tests/test_sync.py checks
that the two stay equal (the pattern of d2l's `d2l` library).

Contents, concepts first, file plumbing last:
    Device and seeds ........ get_device, set_seed, hardware_info
    Data .................... load_mnist_data (train / validation / test), TensorLoader,
                              normalize, flip_labels
    Augmentation (06) ....... random_shift, ShiftedLoader
    Shared models ........... SimpleNN (03), SmallCNN (06), layer_sizes
    The training loop (03) .. train_steps, train_epoch, fit, keep_if_best, DivergenceError
    Evaluation .............. evaluate_model, predict_all, confusion_matrix; uncertainty:
                              accuracy_se, wilson_interval, mean_se, paired_difference,
                              t_quantile, bonferroni, interval_verdict, summarize_runs,
                              points, interval
    Inspecting a model ...... print_shapes, count_parameters, model_size_kb
    Printing, figures ....... section, prose, print_table; save_figure, plot_training_history
    A training script ....... setup, introduce, report, kept_model_path, save_kept_model,
                              save_results
    Images from files (04) .. read_grayscale, digit_from_gray, prepare_digit, to_pixels;
                              draw_like_a_canvas, export_mnist_pngs (08, 09)
    Checkpoints ............. save_checkpoint, load_checkpoint (weights only, never code)
    Settings, running ....... argparse types, add_training_args, run_main, GracefulStop
    File plumbing ........... MNIST's IDX files, checksums, atomic writes
    Serving (09) ............ dl_utils.serving: serving.py, imported on first use

Run the tests of this module with:  python -m pytest tests/test_dl_utils.py
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import functools
import glob
import gzip
import hashlib
import importlib
import json
import math
import os
import platform
import random
import re
import signal
import socket
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError
from tqdm import tqdm

# Paths are anchored to this file, not to the current directory, so every script works
# whether you start it as `python 03_train_mnist.py` or `python ~/dl/03_train_mnist.py`.
# Outputs go under the repository too, or under $DL_OUTPUT_DIR when it is set (the tests
# set it, so that they never overwrite the models and figures of your own runs).
ROOT = Path(__file__).resolve().parent
DATA_DIR = ROOT / "data"  # the shipped MNIST files live in data/MNIST/raw/
OUTPUT_DIR = Path(os.environ.get("DL_OUTPUT_DIR") or ROOT).resolve()
MODELS_DIR = OUTPUT_DIR / "models"  # checkpoints written by 03 and 06
FIGURES_DIR = OUTPUT_DIR / "figures"  # every plot is saved here as PNG
RESULTS_DIR = OUTPUT_DIR / "results"  # measured numbers (05's comparison, the benchmark)

# The four MNIST files: uncompressed size in bytes and md5 (see data/README.md).
MNIST_FILES = {
    "train-images-idx3-ubyte": (47_040_016, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60_008, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (7_840_016, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10_008, "27ae3e4e09519cfbb04c329615203637"),
}


class FriendlyError(Exception):
    """A problem the learner can fix; its message says what went wrong and what to do."""


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
        raise FriendlyError("--device cuda asked for, but PyTorch sees no CUDA GPU here")
    if requested == "mps" and not mps_ok:
        raise FriendlyError("--device mps asked for, but Apple's MPS is not available here")
    if requested == "auto":
        requested = "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
        why = {"cuda": "a CUDA GPU is available", "mps": "Apple's Metal GPU is available",
               "cpu": "no CUDA or MPS GPU found"}[requested]
    else:
        why = "asked for with --device or DL_DEVICE"
    device = torch.device(requested)
    name = f" ({torch.cuda.get_device_name(device)})" if requested == "cuda" else ""
    threads = f", {torch.get_num_threads()} threads" if requested == "cpu" else ""
    print(f"Device: {device}{name}{threads}: {why}")
    return device


def hardware_info(device) -> dict:
    """What produced a measurement: numbers without their hardware mean little."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    # the instruction set torch's CPU kernels use (AVX2, AVX512...): another set rounds
    # some sums differently, so results then differ in the last bits, as across machines
    return {"cpu": cpu, "cpu_capability": capability, "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(device), "torch": str(torch.__version__),
            "python": platform.python_version(), "platform": platform.platform()}


def set_seed(seed: int) -> torch.Generator:
    """Seed every random number generator we use; return a generator for the data's randomness.

    torch.manual_seed seeds the CPU and every GPU; random and NumPy are seeded too in case
    a learner's change uses them. The returned generator drives the loader's shuffling
    (and 06's augmentation) on its own, so that adding a random call elsewhere does not
    change the batch order.

    What "same seed, same result" really promises: bit-identical numbers with the same
    CPU instruction set (torch.backends.cpu.get_cpu_capability(): AVX2, AVX512...),
    PyTorch build, thread count and device. Another instruction set, another PyTorch
    version, another thread count (1 against 2 moved lesson 3's weights by 2e-7 after 2
    epochs on 5,000 images, here) or a GPU rounds some sums in another order; the last
    bits differ, and after thousands of training steps that grows into differences of a
    few tenths of a point in accuracy, as large as a change of seed. To compare with the
    README's numbers, run with --device cpu. On a CUDA GPU, bit-identical reruns also need
    torch.use_deterministic_algorithms(True) (slower), and that in turn needs the
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
# MNIST's official training file; 02_load_mnist.py recomputes them. Strictly, they should
# come from our 55,000-image training split alone: the official file also holds the
# 5,000 images we hold out for validation. 02 measures the difference (below 0.0001),
# far too small to matter, and we keep the constants everyone uses.
# Normalizing with them gives the inputs mean 0 and std 1, which keeps the first layer's
# weighted sums in a range where gradients flow well. The range becomes about
# [-0.42, 2.82] (0 -> -0.4242, 1 -> 2.8215), NOT [-1, 1]: MNIST is mostly black
# background, so the mean sits close to 0.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
VAL_SIZE = 5000  # validation images held out of the 60,000 training images
SPLIT_SEED = 12345  # fixed: every script and every --seed sees the same validation set
# How the pixels reach the network. "standardized" is the course's default; the other two
# exist to measure what normalization is worth (03 --inputs, and `make tables`).
INPUT_SCALINGS = {
    "standardized": "(x / 255 - mean) / std: mean 0, std 1",
    "unit": "x / 255: in [0, 1], mean 0.13",
    "raw": "x: the stored bytes, 0 to 255",
}


def normalize(X_uint8: torch.Tensor, scaling: str = "standardized") -> torch.Tensor:
    """uint8 [N, 28, 28] pixels -> float32 [N, 1, 28, 28] network inputs (1 = grey channel)."""
    if scaling not in INPUT_SCALINGS:
        raise FriendlyError(f"unknown input scaling {scaling!r}: use one of {list(INPUT_SCALINGS)}")
    X = X_uint8.float()
    if scaling != "raw":
        X = X / 255
    if scaling == "standardized":
        X = (X - MNIST_MEAN) / MNIST_STD
    return X.unsqueeze(1)


def load_mnist_tensors(root: Path = DATA_DIR, files: dict = MNIST_FILES):
    """The raw dataset as tensors: (train_X, train_y, test_X, test_y), X uint8 [N, 28, 28].

    MNIST's files store each pixel as one byte, 0 for the background and up to 255 for
    the ink. (Shown with a grey colour map, that is light ink on black.)
    """
    raw = prepare_mnist(root, files)
    return (read_idx(raw / "train-images-idx3-ubyte"),
            read_idx(raw / "train-labels-idx1-ubyte").long(),  # int64: what the loss wants
            read_idx(raw / "t10k-images-idx3-ubyte"),
            read_idx(raw / "t10k-labels-idx1-ubyte").long())


def train_val_split(n: int, val_size: int = VAL_SIZE):
    """Indices (train, validation) of a fixed random split of the n training images.

    Random, because the file's order could hide a pattern (e.g. writers grouped
    together); fixed (SPLIT_SEED), so that every run and every script is judged on the
    same validation images and results stay comparable.
    """
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
    normalize them once; a batch is then a single indexing operation X[idx].
    num_workers (background loading processes) is irrelevant here, hence absent: there
    is no per-sample work left to parallelize, and on a 2-core machine workers would
    steal the cores that train the model. On a GPU the tensors are moved there once, so
    no batch ever has to cross the PCIe bus (the link between CPU memory and GPU memory).
    """

    def __init__(self, X, y, batch_size, shuffle=False, generator=None):
        self.X, self.y = X, y
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.dataset = torch.utils.data.TensorDataset(X, y)  # so len(loader.dataset) works

    def __len__(self):  # number of batches, as for a DataLoader
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        n = len(self.y)
        if self.shuffle:  # a new order every epoch: batches never repeat in lockstep
            # Drawn on the CPU from our own generator, then moved: the same order on
            # every device.
            order = torch.randperm(n, generator=self.generator).to(self.y.device)
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                yield self.X[idx], self.y[idx]
        else:  # evaluation: order does not matter, slices are views (no copy)
            for i in range(0, n, self.batch_size):
                yield self.X[i:i + self.batch_size], self.y[i:i + self.batch_size]


def flip_labels(y: torch.Tensor, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """A copy of y with `fraction` of the labels replaced by a different, random digit.

    Bad data on purpose: to measure what label noise costs (`03 --label-noise`).
    """
    y = y.clone()
    flip = torch.randperm(len(y), generator=generator)[:round(fraction * len(y))]
    shift = torch.randint(1, 10, (len(flip),), generator=generator)  # 1-9: never the same
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
        y_train = flip_labels(y_train, label_noise, torch.Generator().manual_seed(SPLIT_SEED))
    # .to(device) once, here: from now on every batch is already where the model is.
    return (
        TensorLoader(X[train_idx].to(device), y_train.to(device), batch_size, shuffle=True,
                     generator=generator),
        TensorLoader(X[val_idx].to(device), train_y[val_idx].to(device), eval_batch_size),
        TensorLoader(X_test.to(device), test_y.to(device), eval_batch_size),
    )


# --------------------------------------------------------------------------------------
# Augmentation: random shifts of the training images (taught in 06_convolutional_network.py)
# --------------------------------------------------------------------------------------
BACKGROUND = (0 - MNIST_MEAN) / MNIST_STD  # a black pixel, normalized


def random_shift(X, max_shift, generator=None):
    """Move each image by its own random offset of up to max_shift pixels in x and y.

    Taught in 06_convolutional_network.py (a test keeps this copy equal to 06's): pad
    with a black border, cut a 28x28 window at a random offset. The offsets come from
    `generator`, drawn on the CPU: the same shifts on every device and every rerun.
    """
    n, _, h, w = X.shape
    padded = nn.functional.pad(X, (max_shift,) * 4, value=BACKGROUND)  # [n, 1, h+2s, w+2s]
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


class SmallCNN(nn.Module):
    """Two convolution blocks and a small classifier: the CNN of 06_convolutional_network.py,
    where every layer is explained. Lesson 8 fine-tunes this copy (tests/test_sync.py)."""

    def __init__(self, channels=(16, 32), hidden_size=32, num_classes=10):
        super().__init__()
        c1, c2 = channels
        self.block1 = nn.Sequential(nn.Conv2d(1, c1, kernel_size=3, padding=1), nn.ReLU(),
                                    nn.MaxPool2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(c1, c2, kernel_size=3, padding=1), nn.ReLU(),
                                    nn.MaxPool2d(2))
        if hidden_size:
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden_size), nn.ReLU(),
                nn.Linear(hidden_size, num_classes))
        else:
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, num_classes))

    def forward(self, x):
        return self.classifier(self.block2(self.block1(x)))


def layer_sizes(model: nn.Module) -> str:
    """'784-128-10': the widths of a model's Linear layers, read from the model itself
    (so that a label can never disagree with the network it names)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return "-".join(str(n) for n in [linears[0].in_features, *(m.out_features for m in linears)])


# --------------------------------------------------------------------------------------
# The training loop (taught in 03_train_mnist.py; this copy serves lessons 5 to 10)
# --------------------------------------------------------------------------------------
# Divergence (03 explains it): NaN/inf, or the epoch's running average loss reaching 10x
# where the epoch started (and at least 10 ln 10), judged once 64 images have been seen.
DIVERGED_LOSS = 10 * math.log(10)
MIN_IMAGES_TO_JUDGE = 64


def train_steps(model, loader, loss_fn, optimizer, device):
    """The five steps per batch, for every batch of one epoch (03 explains each line)."""
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
    for batch, (loss, y_hat, y) in enumerate(train_steps(model, batches, loss_fn, optimizer,
                                                         device), start=1):
        if scheduler is not None:
            scheduler.step()
        batch_loss = loss.item()  # a CPU-GPU sync point: the price of stopping at once
        if batch == 1:
            limit = max(DIVERGED_LOSS, 10 * batch_loss)
        loss_sum += batch_loss * len(y)
        correct += (y_hat.argmax(dim=1) == y).sum().item()
        n += len(y)
        if not math.isfinite(batch_loss) or (n >= MIN_IMAGES_TO_JUDGE and loss_sum / n > limit):
            raise DivergenceError(batch_loss, batch)
        if stop is not None and stop.requested:
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
        scheduler=None, extra_eval=None, start=None, after_epoch=None, stop_after=None):
    """Train for num_epochs, keeping the epoch with the best validation accuracy (03's fit).

    Returns {status ('completed', 'interrupted' or 'diverged'), history, best_epoch,
    best_val_acc, train_seconds, diverged}; the model ends with the kept weights.
    Hooks that 03 explains: start (resume_training's), after_epoch(epoch, best, history)
    (saves the training state), stop_after (an epoch to stop after, as Ctrl-C would).
    Two that 03 does without: scheduler (06) is stepped after every batch; extra_eval
    (07), a function model -> {name: number}, adds numbers to the history.
    """
    loss_fn = nn.CrossEntropyLoss()
    history = {key: [] for key in ("train_loss", "train_acc", "val_loss", "val_acc", "seconds")}
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
                train_loss, train_acc = train_epoch(model, train_loader, loss_fn, optimizer,
                                                    device, stop, f"epoch {epoch}", scheduler)
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
    """Remember this epoch's weights if its validation accuracy beats every earlier one."""
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
            X, y = X.to(device), y.to(device)  # no-op when the loader already lives there
            y_hat = model(X)
            loss_sum += nn.functional.cross_entropy(y_hat, y, reduction="sum")
            correct += (y_hat.argmax(dim=1) == y).sum()
            n += len(y)
    model.train(was_training)
    # .item() copies a number from the device to Python: on a GPU that waits for all queued
    # work to finish (a "sync point"), so we do it once at the end, not once per batch.
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
    """10x10 counts: row = true digit, column = predicted digit; the diagonal is correct.

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
    halves = {name: TensorLoader(val_loader.X[s], val_loader.y[s], 1000)
              for name, s in (("val_a_acc", slice(None, half)), ("val_b_acc", slice(half, None)))}
    return lambda model: {name: evaluate_model(model, loader)[1]
                          for name, loader in halves.items()}


def honest_score(history):
    """Early stopping's accuracy, measured on images that did not choose the epoch.

    Keeping the epoch with the best validation accuracy, then quoting that accuracy, is
    optimistic: among 20 noisy epochs, the best one was partly lucky on exactly these
    images. So: choose the epoch on half A of the validation set and score it on half
    B, then the other way round, and average the two ("two-fold cross-fitting").
    """
    a, b = history["val_a_acc"], history["val_b_acc"]
    by_a, by_b = a.index(max(a)), b.index(max(b))  # the first best epoch, as fit() keeps
    return (b[by_a] + a[by_b]) / 2


def accuracy_se(acc: float, n: int) -> float:
    """Standard error of an accuracy measured on n images: sqrt(acc * (1 - acc) / n).

    Where it comes from: each test image is a coin flip that the model gets right with
    some probability p. Counting the successes among n independent flips gives a
    binomial count, whose standard deviation is sqrt(n p (1 - p)); divided by n, the
    accuracy's is sqrt(p (1 - p) / n). On 10,000 images that is 0.15 points at 97.8% and
    0.08 at 99.4%. Two caveats. The flips are independent only if the images are: MNIST's
    test digits come from writers the training set never saw, each writing many digits,
    and one writer's digits succeed or fail together, so for "new writers" this SE is a
    floor. And two independent test sets differ from each other by about sqrt(2) SE,
    not SE, since each has its own error. Differences smaller than a few SE are noise.
    """
    return math.sqrt(acc * (1 - acc) / n)


def wilson_interval(acc: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval for an accuracy measured on n images, right even at 0% or 100%.

    The standard error above is the normal approximation to the binomial count: fine
    when there are plenty of both mistakes and right answers, useless at the extremes
    (at 100% it says "± 0", as if 250 right answers proved the model never errs). Wilson's
    interval stays honest there: 250 right out of 250 gives [98.5%, 100%], close to the
    "rule of three" (at most about 3/n of all images wrong, with one-sided 95%
    confidence; this interval is two-sided, so a little wider).
    """
    centre = (acc + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(acc * (1 - acc) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def format_accuracy(acc: float, n: int) -> str:
    """'97.73% (95%: 97.43-98.01)': an accuracy with its 95% Wilson interval, one kind of
    interval for every accuracy the course prints. (acc ± 1.96 SE would do at 97.7% but
    is too narrow with few mistakes: '100.00% ± 0' on 250 images; Wilson stays honest.)"""
    low, high = wilson_interval(acc, n)
    return f"{100 * acc:.2f}% (95%: {100 * low:.2f}-{100 * high:.2f})"


# Student's t distribution: mean ± t * SE covers the true mean 95% of the time (t the
# 97.5th percentile) when the runs are independent and roughly normal. With few runs the
# SE itself is uncertain, hence a factor wider than the normal 1.96: 4.30 for 3 seeds.
def t_975(df: int) -> float:
    """The 97.5th percentile of t with df degrees of freedom (t_quantile below)."""
    return t_quantile(0.975, df)


@functools.cache  # (each costs ~0.02 s of Python; few df are ever asked for)
def t_quantile(q: float, df: int) -> float:
    """Student's t, the q-quantile for df degrees of freedom, computed rather than tabled
    (for any level, not just a printed table's): the density integrated by Simpson's rule
    from 0, and the point where the area reaches q - 0.5 found by bisection. Agrees with
    a printed t-table to its three decimals (tests/test_dl_utils.py)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)

    def area(x, steps=2000):  # from 0 to x under the density
        h = x / steps
        f = [c * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
        return h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))
    low, high = 0.0, 1000.0
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if area(mid) < q - 0.5 else (low, mid)
    return (low + high) / 2


def bonferroni(d: dict, comparisons: int, level: float = 0.95) -> dict:
    """A paired_difference whose interval is widened so that `comparisons` verdicts are
    right together with probability `level` (07 judges six at once).

    Bonferroni's rule: give each verdict 1 - (1 - level) / comparisons, e.g. 99.2% each
    for six at 95% together. Simple and safe; Holm's step-down version is a little less
    strict and the usual next step.
    """
    each = 1 - (1 - level) / comparisons
    half = t_quantile(1 - (1 - each) / 2, d["n"] - 1) * d["se"] if d["n"] > 1 else math.nan
    return {**d, "low": d["mean"] - half, "high": d["mean"] + half, "level": each}


def mean_se(values) -> tuple[float, float]:
    """Mean over runs (seeds) and its standard error: sample standard deviation / sqrt(k).

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
    return {"mean": mean, "se": se, "low": mean - half, "high": mean + half, "n": len(diffs)}


def paired_by_seed(runs_a, runs_b, key, key_b=None) -> dict:
    """paired_difference of run[key] (run[key_b] for runs_b) between two lists of runs,
    each run a dict with a "seed": the runs are matched by seed, and only seeds both have
    count."""
    a = {r["seed"]: r[key] for r in runs_a}
    b = {r["seed"]: r[key_b or key] for r in runs_b}
    seeds = sorted(set(a) & set(b))
    return paired_difference([a[s] for s in seeds], [b[s] for s in seeds])


def interval_verdict(d: dict, better="better", worse="worse",
                     same="no difference the seeds can see") -> str:  # (05, 07, tables)
    """The word for a paired_difference: its 95% interval lies above 0, below 0, or spans it."""
    if d["n"] < 2:
        return "one seed: no verdict"
    return better if d["low"] > 0 else worse if d["high"] < 0 else same


def points(value, se=None):
    """An accuracy (a fraction) in points, with its standard error over seeds when there
    is one: '97.79 ± 0.05'; a tiny one keeps a digit ('± 0.004', never '± 0.00'), and
    seeds that all measured the same say so rather than claim no uncertainty at all."""
    text = f"{100 * value:.2f}"
    if se is None or math.isnan(se):
        return text
    if se == 0:
        return f"{text} (every seed equal)"
    return f"{text} ± {100 * se:.2f}" if 100 * se >= 0.005 else f"{text} ± {100 * se:.1g}"


def interval(d):
    """A paired difference as '+0.12 [-0.05, +0.29]' (points, 95% interval)."""
    if d["n"] < 2:
        return f"{100 * d['mean']:+.2f} (one seed: no interval)"
    return f"{100 * d['mean']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"


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


def train_over_seeds(configs, seeds, train_one, runs: list, describe) -> bool:
    """Every configuration with every seed (05 and 07 compare this way); runs appended.

    train_one(name, config, seed) returns a run (a dict with "name" and "seed") or None
    after Ctrl-C; describe(run) is the line printed for it. Runs already in `runs` are
    not trained again. Returns False if interrupted.
    """
    done = {(r["name"], r["seed"]) for r in runs}
    for seed in seeds:
        for name, config in configs.items():
            if (name, seed) in done:
                continue
            run = train_one(name, config, seed)
            if run is None:
                return False
            runs.append(run)
            print(f"  seed {seed}  {describe(run)}", flush=True)
    return True


def paired_against(runs, reference, key, names=None, other_key=None) -> dict:
    """{name: paired_by_seed of run[key], name minus reference}, for every other name."""
    names = names or dict.fromkeys(r["name"] for r in runs if r["name"] != reference)
    ref = [r for r in runs if r["name"] == reference]
    return {name: paired_by_seed([r for r in runs if r["name"] == name], ref, key, other_key)
            for name in names}


def print_shapes(model: nn.Module, X: torch.Tensor) -> None:
    """Push one batch through `model` and print the shape after every layer.

    Forward hooks are functions PyTorch calls after a module runs; we use them to watch
    the data flow without changing the model. Most shape bugs become obvious here.
    """
    rows = [["input", "", str(list(X.shape))]]

    def record(module, inputs, output, name):
        rows.append([name, type(module).__name__, str(list(output.shape))])

    # The innermost modules (those with no children): the layers that compute something.
    layers = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: record(mod, i, o, n))
             for n, m in layers]
    was_training = model.training
    model.eval()  # so that batch norm does not update its statistics with this batch
    try:
        with torch.no_grad():
            model(X)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    print_table(["layer", "type", "output shape"], rows)


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
# Printing: section headers, aligned tables, blocks of lesson text
# --------------------------------------------------------------------------------------
def display_path(path: Path) -> str:
    """A path as the learner would type it: relative to the repository when inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def section(title: str) -> None:
    """A printed header, so the output reads like the lesson's table of contents."""
    print(f"\n=== {title} " + "=" * max(3, 76 - len(title)))


def prose(text: str, width: int = 88) -> None:
    """Print a block of lesson text, written in the code as an indented triple-quoted string.

    Each paragraph (separated by a blank line) is re-wrapped to `width` columns, so that
    numbers filled into an f-string do not leave ragged lines.
    """
    paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
    print("\n\n".join(textwrap.fill(" ".join(p.split()), width) for p in paragraphs))


def format_table(headers: list[str], rows: list[list]) -> str:
    """Rows as an aligned text table: text left-aligned, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def is_number(text):  # 1,234 or 97.73% or 0.15 s or 97.73% ± 0.15
        return bool(re.fullmatch(r"[-+]?[\d,.]+\s*[%a-zA-Z]*( ± [\d.]+)?", text))

    def line(row):
        return "  ".join(c.rjust(w) if is_number(c) else c.ljust(w)
                         for c, w in zip(row, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def print_table(headers: list[str], rows: list[list]) -> None:
    print(format_table(headers, rows))


# --------------------------------------------------------------------------------------
# Figures: saved as PNG, shown only when asked for and a display exists
# --------------------------------------------------------------------------------------
def setup_figures(show: bool) -> None:
    """Without --show, use Agg, matplotlib's file-only backend: it needs no screen and
    never opens a window, so a script can never block or crash on a headless machine."""
    if not show:
        plt.switch_backend("agg")


def image_grid(rows: int, cols: int, cell: tuple[float, float]):
    """A figure of rows x cols small image panels (cell = inches per panel), frames off."""
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")  # panels left empty stay blank; the images need no ticks
    return fig, axes


def save_figure(fig, name: str, show: bool = False) -> Path:
    """Save `fig` as figures/<name> (atomically); keep it open only if it will be shown."""
    path = FIGURES_DIR / name
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    if not show:
        plt.close(fig)  # figures hold memory until closed
    print(f"  saved {display_path(path)}")
    return path


def show_figures(show: bool) -> None:
    """With --show, open the saved figures in windows (blocks until they are closed)."""
    if not show:
        return
    from matplotlib.backends import BackendFilter, backend_registry  # matplotlib >= 3.9

    backend = matplotlib.get_backend().lower()
    if backend in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE):
        print(f"--show: no display available (matplotlib backend '{backend}'); "
              f"the figures are saved in {display_path(FIGURES_DIR)}/")
        return
    plt.show()


def plot_training_history(history: dict, name: str, title: str = "", show=False,
                          train_label: str = "training") -> Path:
    """Loss and accuracy per epoch, training vs validation, saved as figures/<name>.

    How to read it: both losses falling = still learning. Training loss falling while
    validation loss rises = overfitting (memorizing the training images). Both flat and
    high = underfitting (too little capacity, too few epochs, or a bad learning rate).
    The training numbers are averaged over each epoch while the weights were changing
    (and, with augmentation, on altered images): compare their trend with validation's,
    not their exact values.
    """
    epochs = range(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for key, label in (("train", train_label), ("val", "validation")):
        ax_loss.plot(epochs, history[f"{key}_loss"], marker="o", label=label)
        ax_acc.plot(epochs, [100 * a for a in history[f"{key}_acc"]], marker="o", label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, name, show)


def plot_curves_by_name(runs, titles: dict, name: str, title: str, show=False) -> Path:
    """Training and validation accuracy per epoch, one panel per configuration (the mean
    over its seeds' runs); titles: {configuration name: panel title} (lesson 7)."""
    cols = min(4, len(titles))
    rows = -(-len(titles) // cols)  # ceiling division
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for ax, (config, panel) in zip(axes.flat, titles.items()):
        histories = [r["history"] for r in runs if r["name"] == config]
        for key, legend in (("train_acc", "training (as trained)"), ("val_acc", "validation")):
            curve = torch.tensor([h[key] for h in histories]).mean(dim=0)
            ax.plot(range(1, len(curve) + 1), 100 * curve, label=legend)
        ax.set(title=panel, ylim=(80, 100.5))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(titles):]:
        ax.axis("off")
    fig.supxlabel("epoch")
    fig.supylabel("accuracy (%)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, name, show)


def plot_confident_mistakes(images, probs, y, num, show, name="04_confident_mistakes.png",
                            what="test"):
    """The wrong predictions the model was most sure of: bad labels or truly odd digits?
    (04 and 08 draw them.)"""
    confidence, pred = probs.max(dim=1)
    wrong = (pred != y).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)][:num]
    print(f"{len(wrong)} mistakes in {len(y):,} {what} images; the {len(order)} most confident:")
    print_table([f"{what} index", "true", "predicted", "confidence"],
                [[int(i), int(y[i]), int(pred[i]), f"{100 * confidence[i]:.1f}%"]
                 for i in order])
    cols = min(6, max(1, len(order)))
    fig, axes = image_grid(max(1, math.ceil(len(order) / cols)), cols, (1.8, 2.1))
    for ax, i in zip(axes.flat, order):
        ax.imshow(images[i], cmap="gray")
        ax.set_title(f"true {int(y[i])}, said {int(pred[i])}\n{100 * confidence[i]:.0f}% sure",
                     fontsize=8)
    fig.suptitle("Most confident mistakes")
    return save_figure(fig, name, show)


# --------------------------------------------------------------------------------------
# A training script's start and end (03 shows them first; 06 and 07 use the same)
# --------------------------------------------------------------------------------------
def setup(args, scaling="standardized", label_noise=0.0):
    """Device, seeds and data: the start of every training script."""
    setup_figures(args.show)
    section("Setup")
    device = get_device(args.device)
    generator = set_seed(args.seed)
    loaders = load_mnist_data(args.batch_size, subset=args.subset, device=device,
                              generator=generator, scaling=scaling, label_noise=label_noise)
    train_loader, val_loader, test_loader = loaders
    print(f"Images: {len(train_loader.dataset):,} train, {len(val_loader.dataset):,} "
          f"validation, {len(test_loader.dataset):,} test; {len(train_loader)} batches of "
          f"{args.batch_size} per epoch; inputs {scaling}"
          + (f"; {label_noise:.0%} of the training labels flipped" if label_noise else ""))
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
    gap = 100 * (metrics["train_acc"] - metrics["test_acc"])
    prose(f"""
        (The interval is each split's own sampling error: where the accuracy on all
        images like these would lie, 95% of the time; dl_utils.wilson_interval and
        accuracy_se say where it comes from.)
        Train minus test accuracy: {gap:.2f} points. A model fits the images it was
        trained on better than new ones; a large or growing gap is overfitting.""")
    return metrics


def kept_model_path(args, result):
    """Where the kept model goes after fit(); None when there is nothing to keep.

    Divergence raises a FriendlyError and saves nothing. After Ctrl-C the best epoch
    so far goes to <name>_interrupted.pt: a cut-short run never overwrites a good model.
    """
    if result["status"] == "diverged":
        raise FriendlyError(
            f"training diverged with lr {args.lr}: {result['diverged']} (guessing scores "
            f"{math.log(10):.2f}); try a smaller learning rate, e.g. --lr {args.lr / 10:g}. "
            f"Nothing was saved; {display_path(args.checkpoint)} is unchanged")
    if result["best_epoch"] == 0:
        print("Stopped before the first epoch ended: nothing to keep, nothing saved.")
        return None
    path = Path(args.checkpoint)
    if result["status"] == "interrupted":
        path = path.with_name(f"{path.stem}_interrupted.pt")
    return path


def save_kept_model(path, args, model, model_kwargs, result, metrics, device, defaults=None):
    """The weights (state_dict), with the settings, metrics and history that produced them.

    defaults: the script's default settings; the ones this run changed are recorded as
    "changed_settings", so that a later lesson can say how a model was trained without
    importing the script that trained it.
    """
    hparams = {k: v for k, v in vars(args).items() if k not in ("show", "checkpoint", "results")}
    changed = {k: v for k, v in hparams.items()
               if defaults is not None and k in defaults and v != defaults[k]}
    save_checkpoint(path, model, model_kwargs, device=str(device), hparams=hparams,
                    changed_settings=changed,
                    metrics={**metrics, "best_epoch": result["best_epoch"],
                             "train_seconds": result["train_seconds"]},
                    history=result["history"])
    print(f"Saved the kept model's weights (its state_dict, a dict of tensors: lesson 4) to "
          f"{display_path(path)} ({path.stat().st_size / 1000:.0f} KB on disk)")


def save_run_results(script, args, device, result, metrics=None) -> None:
    """--results FILE of a training script: what one run measured, as JSON (make tables
    reads it). Written for a diverged run too, which then has no test accuracy."""
    if getattr(args, "results", None):
        save_results(args.results, script, args, device, status=result["status"],
                     best_val_acc=result["best_val_acc"], best_epoch=result["best_epoch"],
                     train_seconds=result["train_seconds"], history=result["history"],
                     diverged=result["diverged"],
                     test_acc=metrics["test_acc"] if metrics else None)


def save_results(path, script: str, args, device, **record) -> None:
    """A run's settings, hardware and numbers as JSON, written atomically (05, 07, tables)."""
    record = {"script": script,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "settings": {k: v for k, v in vars(args).items()
                           if k not in ("show", "results", "checkpoint")},
              "hardware": hardware_info(device), **record}
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    print(f"Results written to {display_path(path)}")


# --------------------------------------------------------------------------------------
# Resuming training (taught in 03_train_mnist.py; 06 resumes the same way)
# --------------------------------------------------------------------------------------
# A checkpoint for inference holds the weights and how to rebuild the model: enough to use
# it. A training state holds everything needed to go on as if the run had never stopped:
# the weights, the optimizer's state (Adam's two running averages per weight, its step
# count), the schedule's position, the epoch, the best epoch so far (its number, score
# and weights), the history, the settings, and the state of every random generator
# set_seed seeds (the loader's shuffles and 06's shifts; torch's own; CUDA's; Python's
# `random` and NumPy's, which no lesson uses but a learner's change may). Only tensors,
# numbers, strings and containers: it loads with weights_only=True like any checkpoint.
TRAINING_STATE = "training state"  # its "kind", so that no one mistakes it for a model
# Settings a resumed run may change: where it runs and writes, how it is stopped, what it
# checks on the side (10's --proof-steps trains a separate copy of the model).
MAY_DIFFER = {"device", "show", "checkpoint", "results", "resume", "stop_after_epoch",
              "check_resume", "master_port", "crash_rank", "proof_steps",
              "force_nproc"}


def training_state_path(checkpoint) -> Path:
    """Where a run keeps its training state: beside its checkpoint, <name>_training.pt."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}_training.pt")


def save_training_state(path, script, args, model, model_kwargs, optimizer, scheduler,
                        generator, epoch, best, history) -> None:
    """Everything needed to continue after `epoch`, written atomically: a kill during the
    save leaves the previous state whole. (best None: a run that keeps its last epoch, as
    10 does; generator None: no loader generator, as in 10, whose DistributedSampler
    shuffles from the seed and the epoch alone.)"""
    best = best or {"epoch": epoch, "val_acc": None, "state": None}
    state = {
        "kind": TRAINING_STATE, "script": script, "epoch": epoch,
        "model_class": type(model).__name__, "model_kwargs": dict(model_kwargs),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "best": {"epoch": best["epoch"], "val_acc": best["val_acc"],
                 "state": {k: v.cpu() for k, v in (best["state"] or {}).items()}},
        "history": history,
        "settings": {k: v for k, v in vars(args).items() if k not in MAY_DIFFER},
        "rng": {"torch": torch.get_rng_state(),
                "loader": generator.get_state() if generator is not None else None,
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": random.getstate(), "numpy": numpy_rng_state()},
        "torch_version": str(torch.__version__)}
    with atomic_path(Path(path)) as tmp:
        torch.save(state, tmp)


def numpy_rng_state() -> tuple:
    """NumPy's global generator as plain values and a tensor (weights_only=True loads it;
    a NumPy array inside would be refused)."""
    name, keys, *rest = np.random.get_state()
    return (name, torch.from_numpy(keys.astype(np.int64)), *rest)


def read_training_state(path, script, args, model) -> dict:
    """A training state that can continue this very run, or one FriendlyError line."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # missing, truncated, not a torch file, unsafe pickle...
        raise FriendlyError(f"cannot resume from {display_path(path)}: not a readable "
                            f"training state ({type(err).__name__})") from err
    if not (isinstance(state, dict) and state.get("kind") == TRAINING_STATE):
        raise FriendlyError(f"{display_path(path)} is not a training state (a model checkpoint "
                            "cannot be resumed: give the <name>_training.pt beside it)")
    check_state_entries(state, path)
    if state["script"] != script or state["model_class"] != type(model).__name__:
        raise FriendlyError(f"{display_path(path)} was written by {state['script']} for a "
                            f"{state['model_class']}, not by {script} for a {type(model).__name__}")
    now = {k: v for k, v in vars(args).items() if k not in MAY_DIFFER}
    changed = sorted(k for k in set(now) | set(state["settings"])
                     if now.get(k) != state["settings"].get(k))
    if changed:
        raise FriendlyError(f"{display_path(path)} was trained with other settings: " + ", ".join(
            f"--{k.replace('_', '-')} {state['settings'].get(k)} (now {now.get(k)})"
            for k in changed) + "; resume with the same settings")
    if state["epoch"] >= args.epochs:
        raise FriendlyError(f"{display_path(path)} has finished all {args.epochs} epochs: "
                            "nothing left to resume")
    stop = getattr(args, "stop_after_epoch", None)
    if stop is not None and stop <= state["epoch"]:
        raise FriendlyError(f"--stop-after-epoch {stop}: {display_path(path)} has {state['epoch']} "
                            f"epochs done already; give a later epoch (or none)")
    return state


STATE_ENTRIES = {"script": str, "epoch": int, "model_class": str, "model_kwargs": dict,
                 "model": dict, "optimizer": dict, "best": dict, "history": dict,
                 "settings": dict, "rng": dict}  # what read and resume use, and its type


def check_state_entries(state: dict, path) -> None:
    """Every entry resuming reads is there with the right type, or one FriendlyError line
    (a state damaged by hand, or written by another version of the course)."""
    for key, kind in STATE_ENTRIES.items():
        if not isinstance(state.get(key), kind):
            raise FriendlyError(f"{display_path(path)} is not a usable training state: its "
                                f"'{key}' entry is {'missing' if key not in state else 'wrong'}")
    best, rng = state["best"], state["rng"]
    if not ({"epoch", "val_acc", "state"} <= set(best) and isinstance(rng.get("torch"),
                                                                     torch.Tensor)):
        raise FriendlyError(f"{display_path(path)} is not a usable training state: its "
                            "'best' or 'rng' entry is incomplete")


def resume_training(path, script, args, model, optimizer, scheduler, generator) -> dict:
    """Load a training state into the model, optimizer, schedule and generators built for
    this run; return fit's `start` (the epoch done, the best so far, the history)."""
    state = read_training_state(path, script, args, model)
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["rng"]["loader"])  # the next epoch's shuffle (and shifts)
        torch.set_rng_state(state["rng"]["torch"])
    except (RuntimeError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise FriendlyError(f"cannot resume from {display_path(path)}: {first_detail(err)}") \
            from err
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    if state["rng"].get("python"):  # (states written before these were saved lack them)
        random.setstate(state["rng"]["python"])
        name, keys, *rest = state["rng"]["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    best = dict(state["best"], state=state["best"]["state"] or None)
    print(f"Resuming {display_path(path)}: {state['epoch']} of {args.epochs} epochs done, "
          f"best so far epoch {best['epoch']} ({100 * best['val_acc']:.2f}% on validation)")
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
        save_training_state(path, script, args, model, model_kwargs, optimizer, scheduler,
                            generator, epoch, best, history)
    return start, after_epoch


def add_resume_args(parser) -> None:
    """--resume and --stop-after-epoch: the flags of a training script that can go on."""
    parser.add_argument("--resume", default=None, metavar="PATH",
                        help="continue the run whose training state is in PATH (written "
                             "beside the checkpoint after every epoch), exactly where it "
                             "stopped; the settings must be the same (default: none)")
    parser.add_argument("--stop-after-epoch", type=positive_int, default=None, metavar="N",
                        help="stop after epoch N as Ctrl-C would, keeping the training "
                             "state to --resume from (default: never)")


# --------------------------------------------------------------------------------------
# A learner's own image of a digit, made to look like MNIST (taught in 04_load_model.py;
# lessons 8 and 9 use it for folders of photos and for drawings sent to a server)
# --------------------------------------------------------------------------------------
MAX_IMAGE_PIXELS = 50_000_000  # a 48-megapixel phone photo fits; larger is refused
# Only these formats are ever decoded. Pillow can open dozens; some of them run other
# programs (an EPS file makes Pillow call Ghostscript), which a file from a stranger
# must never be able to do. Pillow's own security notes say to block such input.
IMAGE_FORMATS = ("PNG", "JPEG")


class ImageTooLarge(FriendlyError):  # noqa: N818 (the name says what happened)
    """An image with more pixels than we agree to decode (lesson 9 answers it with 413)."""


def read_grayscale(path, name=None, max_pixels=MAX_IMAGE_PIXELS) -> Image.Image:
    """Open a PNG or JPEG (a path or a file object) as 8-bit grey levels; one clear error
    for anything unusable. `name`: how errors call it (default: the path).

    The size is checked from the header, before the pixels are decoded: a 240-megapixel
    image would take gigabytes of memory (Pillow itself refuses such "decompression
    bombs"). formats= makes Pillow refuse every other format without trying to decode it.
    """
    name = name or f"image {path}"
    try:
        with Image.open(path, formats=IMAGE_FORMATS) as image:
            if image.width * image.height > max_pixels:
                raise ImageTooLarge(
                    f"{name} is too large ({image.width}x{image.height} pixels, over "
                    f"{max_pixels / 1e6:g} megapixels): scale it down first")
            return to_grayscale(ImageOps.exif_transpose(image))  # turned upright
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"{name} is too large: {err}") from err
    except UnidentifiedImageError as err:
        raise FriendlyError(f"cannot read {name}: not a PNG or JPEG image") from err
    except (OSError, ValueError, SyntaxError) as err:  # damaged, truncated...
        raise FriendlyError(f"cannot read {name}: {err}") from err


def to_grayscale(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit grey levels (mode "L"), whatever it was stored as.

    convert("L") alone gets two kinds of file wrong. 16-bit grey (mode "I;16", 0-65535)
    would be clipped at 255, turning almost every pixel white: we scale instead. A
    transparent background (RGBA, or a palette with a transparent colour) has arbitrary
    colours under the transparency: we lay the image on white paper first.
    """
    if image.mode.startswith("I"):  # 16- or 32-bit integer grey levels
        a = np.asarray(image, dtype=np.float64)
        top = 65535 if image.mode.startswith("I;16") or a.max() > 255 else 255
        return Image.fromarray((a * (255 / top)).round().clip(0, 255).astype(np.uint8))
    if image.mode == "F":  # 32-bit float grey levels, assumed in 0-255
        return Image.fromarray(np.asarray(image).round().clip(0, 255).astype(np.uint8))
    if "A" in image.mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("L")
    return image.convert("L")


def digit_from_gray(image: Image.Image, name="the image") -> np.ndarray:
    """A grey image of one digit as a 28x28 MNIST-style uint8 array (04 explains each step):
    ink light on black, cropped, scaled into a 20x20 box, centred by mass in 28x28."""
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
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # PIL wants (width, height)
    small = Image.fromarray(crop.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    return center_by_mass(np.asarray(small, dtype=np.float32))


def center_by_mass(small: np.ndarray) -> np.ndarray:
    """Paste a <=20x20 image into a 28x28 frame with its centre of mass at pixel (14, 14).

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


def prepare_digit(path) -> np.ndarray:
    """Any photo or drawing of one digit (a PNG or JPEG file) as MNIST's 28x28 uint8."""
    return digit_from_gray(read_grayscale(path), path)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}  # the files IMAGE_FORMATS can hold


def class_folders(root: Path, max_classes: int) -> list[Path]:
    """The class subfolders of `root`, sorted by name (as ImageFolder sorts them)."""
    if not root.is_dir():
        problem = "is a file, not a folder" if root.exists() else "does not exist"
        raise FriendlyError(f"{root} {problem}: give a folder of class subfolders")
    classes = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                     key=lambda p: p.name)
    if not classes:
        raise FriendlyError(
            f"{root} has no class subfolders: put each class's images in a subfolder named "
            "after the class (0/, 1/, ... 9/ for digits)")
    if len(classes) > max_classes:
        raise FriendlyError(f"{root} has {len(classes)} class subfolders; the "
                            f"course's models have {max_classes} outputs")
    return classes


def readable(path: Path) -> str | None:
    """None if `path` is an image we can read, else why not (one line that names the file)."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        kind = path.suffix or "no extension"
        return f"{display_path(path)} is not an image file ({kind})"
    try:  # decoded once in full: a truncated file fails here, not in the middle of an epoch
        read_grayscale(path)
    except FriendlyError as err:  # unreadable, damaged, or too large
        return str(err)
    return None


def scan_image_folder(root: Path, max_classes: int = 10):
    """(class names, [(path, class index)]) of every readable image, warnings printed (08).

    A file that is not an image, or is damaged, is skipped with a warning that names it:
    one bad file should not stop a run over hundreds of good ones. An empty class
    folder is kept as a class (so that the class indices do not shift), with a warning.
    """
    classes, samples = [], []
    for index, folder in enumerate(class_folders(Path(root), max_classes)):
        classes.append(folder.name)
        found = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            problem = readable(path)
            if problem:
                print(f"  warning, skipped: {problem}")
                continue
            samples.append((path, index))
            found += 1
        if not found:
            print(f"  warning: class folder {display_path(folder)} has no images")
    if not samples:
        raise FriendlyError(f"no readable images in the class folders of {root}")
    return classes, samples


def keep_preparable(samples, transform):
    """The (path, class) samples whose image `transform` can prepare (lesson 8): one it
    cannot, such as a blank photo with no digit to find, is skipped with a warning that
    names it, instead of stopping the run in the middle of an epoch."""
    kept = []
    for path, target in samples:
        try:
            transform(read_grayscale(path))
            kept.append((path, target))
        except FriendlyError as err:
            print(f"  warning, skipped: {display_path(path)}: {err}")
    if not kept:
        raise FriendlyError("no image of the folder could be prepared")
    return kept


CANVAS = 280  # lesson 9's drawing pad, in pixels (10x MNIST's 28)


def draw_like_a_canvas(digit: np.ndarray, rng, slant: float = 0) -> Image.Image:
    """An MNIST digit as someone would draw it on lesson 9's pad (08 and 09 use it).

    A pen draws solid strokes of one width, at any size, anywhere: so the digit is
    turned by `slant` degrees (anticlockwise), scaled to a random size, made solid (on or
    off, no soft grey), thickened by a random amount, pasted at a random place on a
    280x280 pad, dark on white (one in five light on black). An RGBA image, as a canvas
    gives it.
    """
    size = int(rng.integers(90, CANVAS + 1))  # the digit's 20x20 box becomes 64-200 px
    upright = Image.fromarray(digit)
    if slant:
        upright = upright.rotate(slant, resample=Image.Resampling.BILINEAR)
    big = upright.resize((size, size), Image.Resampling.BILINEAR)
    ink = Image.fromarray(((np.asarray(big) > 100) * 255).astype(np.uint8))
    width = int(rng.choice([1, 3, 5, 7, 9]))  # how much thicker than MNIST's own strokes
    if width > 1:
        ink = ink.filter(ImageFilter.MaxFilter(width))
    pad = Image.new("L", (CANVAS, CANVAS), 255)
    x, y = (int(v) for v in rng.integers(0, CANVAS - size + 1, size=2))
    pad.paste(0, (x, y, x + size, y + size), mask=ink)
    if rng.random() < 0.2:
        pad = Image.eval(pad, lambda v: 255 - v)
    return pad.convert("RGBA")


def export_mnist_pngs(folder: Path, per_class: int, slant: float | None = None) -> Path:
    """The first `per_class` validation images of each digit as <folder>/<digit>/<index>.png:
    as stored (28x28), or, with a `slant`, drawn on a pad turned by that many degrees.

    Lesson 8's default folder. Validation images, never test images: lesson 8 fine-tunes
    on part of the folder, and no image a lesson reports as test data may be trained on.
    A file's name is the image's index in MNIST's training file. Written to a temporary
    folder and renamed when complete (an interrupted export is never taken for a
    finished one); reused when present.
    """
    folder = Path(folder)
    if folder.is_dir():
        return folder
    train_X, train_y, _, _ = load_mnist_tensors()
    val_idx = train_val_split(len(train_y))[1]
    rng = np.random.default_rng(0)  # the same drawings every time
    tmp = folder.with_name(folder.name + ".tmp")
    for digit in range(10):
        (tmp / str(digit)).mkdir(parents=True, exist_ok=True)
        for i in val_idx[train_y[val_idx] == digit][:per_class].tolist():
            image = Image.fromarray(train_X[i].numpy())
            if slant is not None:
                image = draw_like_a_canvas(train_X[i].numpy(), rng, slant).convert("L")
            image.save(tmp / str(digit) / f"{i:05d}.png")
    tmp.rename(folder)
    print(f"Exported {10 * per_class} MNIST validation images as PNG files to "
          f"{display_path(folder)}" + (f", drawn on a pad, turned {slant:g} degrees"
                                      if slant is not None else ""))
    return folder


def to_pixels(X):
    """Undo the normalization for display: back to [0, 1] grey levels."""
    return (X.cpu() * MNIST_STD + MNIST_MEAN).clamp(0, 1).squeeze(1)


# --------------------------------------------------------------------------------------
# Checkpoints: one file, enough to rebuild the model, written atomically
# --------------------------------------------------------------------------------------
# A checkpoint names the class that rebuilds the model: one of this module's (SimpleNN,
# SmallCNN) or one defined in a numbered lesson of this repository. A file must never
# choose which code runs, so nothing else can be named.
LESSON_MODULE = re.compile(r"\d\d[a-z]?_[a-z_]+")  # 03_train_mnist, 07b_inside_...


class CheckpointError(FriendlyError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


def save_checkpoint(path: Path, model: nn.Module, model_kwargs: dict, **info) -> Path:
    """Save the weights plus what is needed to rebuild and judge the model.

    Saved: the state_dict (a dict of name -> tensor: weights only, no code), the class
    and the constructor arguments that rebuild it, the torch version, what it was trained
    on, and whatever the caller adds in `info` (hyperparameters, metrics, history).
    Atomic: an interrupted save leaves the previous file intact.
    """
    cls = type(model)
    module = cls.__module__
    if module == "__main__":  # the script that defines the class was run directly
        module = Path(sys.modules["__main__"].__file__).stem
    checkpoint = {
        "model_class": cls.__name__,
        "model_module": module,
        "model_kwargs": dict(model_kwargs),
        "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "torch_version": str(torch.__version__),  # a str subclass; plain str for weights_only
        "trained_on": "MNIST's training split (never its validation or test images)",
        **info,  # (lesson 8's fine-tuned CNN says what else it was trained on)
    }
    with atomic_path(Path(path)) as tmp:
        torch.save(checkpoint, tmp)
    return Path(path)


def model_class(checkpoint: dict) -> type:
    """The nn.Module class a checkpoint names: from this module, or from the one lesson
    script that defines it (importing that lesson, and through it only this module).

    A lesson that cannot be imported (a learner's half-finished edit) is one line that
    names it: the checkpoints of every other lesson still load.
    """
    module_name, class_name = checkpoint.get("model_module"), checkpoint.get("model_class")
    if module_name == __name__:
        module = sys.modules[__name__]
    elif (isinstance(module_name, str) and LESSON_MODULE.fullmatch(module_name)
          and (ROOT / f"{module_name}.py").exists()):
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # SyntaxError, NameError... anything a learner's edit raises
            raise CheckpointError(
                f"this checkpoint's model class {class_name} is defined in {module_name}.py, "
                f"which cannot be imported ({type(err).__name__}: {err}): fix that file "
                "(or undo your change to it)") from err
    else:
        raise CheckpointError(f"checkpoint names an unknown model module {module_name!r}")
    cls = getattr(module, str(class_name), None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise CheckpointError(f"{module_name}.py defines no model class {class_name!r}")
    return cls


def first_detail(err: Exception) -> str:
    """The first informative line of a long PyTorch error message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__)[:160]


def load_checkpoint(path: Path, model: nn.Module | None = None, device="cpu"):
    """Load a checkpoint; return (model, checkpoint dict).

    weights_only=True restricts torch.load to tensors and plain containers (dicts, lists,
    numbers, strings): it is designed to refuse every other object, so that a file
    cannot make it run code, as a full unpickle would. "Designed": its unpickler has had
    bypasses (CVE-2025-32434, fixed in torch 2.6, the floor in requirements.txt), so keep
    torch up to date and still load only files from sources you trust.
    Given `model`, the weights are loaded into it (after checking it is the architecture
    the file holds); otherwise the model is rebuilt from the class and arguments the file
    records.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, unsafe pickle...
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}): "
                              "damaged or not a PyTorch file; delete it and train again") from err
    if isinstance(checkpoint, dict) and checkpoint.get("kind") == TRAINING_STATE:
        raise CheckpointError(f"{path} is a training state, for --resume; the model it "
                              "trains is saved beside it, without _training in its name")
    if not (isinstance(checkpoint, dict) and "model_state_dict" in checkpoint):
        raise CheckpointError(f"{path} is not a checkpoint of this course (no model_state_dict)")
    if model is None:
        cls, kwargs = model_class(checkpoint), checkpoint.get("model_kwargs", {})
        try:
            model = cls(**kwargs)
        except Exception as err:  # unknown or invalid constructor arguments
            raise CheckpointError(f"{path}: {cls.__name__}(**{kwargs}) cannot be built "
                                  f"({type(err).__name__}: {err})") from err
    elif type(model).__name__ != checkpoint.get("model_class"):
        raise CheckpointError(f"{path} holds a {checkpoint.get('model_class')}, "
                              f"not a {type(model).__name__}")
    try:
        model.load_state_dict(checkpoint["model_state_dict"])
    except RuntimeError as err:  # shapes or names differ from the class's
        raise CheckpointError(f"{path}: the saved weights do not fit {type(model).__name__} "
                              f"({first_detail(err)})") from err
    return model.to(device), checkpoint


# --------------------------------------------------------------------------------------
# Command-line settings shared by the scripts
# --------------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (zero epochs or batches of 0 images make no sense)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (a learning rate of 0 never moves the weights)."""
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (a probability, a share of the labels)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0: let the system pick a free one)."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 0 to 65535, got {text}")
    return value


def check_port_free(port: int, flag: str) -> None:
    """A TCP port given on the command line must be free: one clear line if it is not
    (0 means "let the system pick one", always fine)."""
    if not port:
        return
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            raise FriendlyError(f"port {port} is in use ({err.strerror}): choose another "
                                f"{flag}, or 0 to let the system pick a free one") from err


def output_file(text: str) -> str:
    """argparse type: a path a script may write a file to, checked before any work starts.

    Refused at once (not after ten minutes of training): a folder, or a path below an
    existing file.
    """
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name inside it")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a folder")
    return str(path)


def make_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose -h shows the script's docstring and every default."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_common_args(parser: argparse.ArgumentParser, seed: int = 0) -> None:
    """--device, --seed and --show: the settings every script has."""
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                        default=os.environ.get("DL_DEVICE", "auto"),
                        help="where the tensors live; auto = CUDA, then MPS, then CPU. "
                             "Also settable with the DL_DEVICE environment variable "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=seed,
                        help="seeds the initial weights and the batch order: the same seed "
                             "gives the same result on the same machine, PyTorch build and "
                             "device (default: %(default)s)")
    parser.add_argument("--show", action="store_true",
                        help="also open the figures in windows when a display exists; "
                             "they are always saved as PNG under figures/")


def add_training_args(parser, *, batch_size: int, lr: float, num_epochs: int) -> None:
    """--batch-size, --lr, --epochs, --subset: the knobs of every training script."""
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help="images per gradient step; smaller: noisier gradients but more "
                             "updates per epoch (default: %(default)s)")
    parser.add_argument("--lr", type=positive_float, default=lr,
                        help="learning rate, the optimizer's step size; too large diverges "
                             "(try 10), too small crawls (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=num_epochs,
                        help="passes over the training images (default: %(default)s)")
    parser.add_argument("--subset", type=positive_int, default=None,
                        help="train on only this many images, for quick experiments; "
                             "validation and test stay whole (default: all 55,000)")


def add_results_arg(parser, default=None) -> None:
    """--results FILE: where a script writes what it measured, as JSON."""
    shown = display_path(default) if default else "none"
    parser.add_argument("--results", type=output_file, default=str(default) if default else None,
                        help=f"write the measured numbers to this JSON file (default: {shown})")


# --------------------------------------------------------------------------------------
# Running a script: one-line errors, Ctrl-C
# --------------------------------------------------------------------------------------
def run_main(main) -> None:
    """Run a script's main(): a FriendlyError becomes one line on stderr and exit code 1,
    Ctrl-C (outside the training loop, which handles it itself) exit code 130."""
    try:
        if OUTPUT_DIR.exists() and not OUTPUT_DIR.is_dir():
            raise FriendlyError(f"DL_OUTPUT_DIR={OUTPUT_DIR} is a file, not a folder: point it "
                                "at a folder (it is created if missing), or unset it")
        sys.exit(main())
    except FriendlyError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `python lesson.py | head`: the reader left; stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python's docs'
        sys.exit(1)  # recipe: no second error when Python flushes stdout at exit)


def usable_cores() -> int:
    """The cores this process may run on (a container or `taskset` can allow fewer than
    the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_memory_gb() -> float | None:
    """Memory a new program can take without pushing others out (Linux's MemAvailable);
    elsewhere the physical memory, an upper bound; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20  # kB -> GB
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def check_process_count(nproc: int, per_process_gb: float, on_cpu: bool, force: bool) -> None:
    """Before starting nproc processes (lesson 10): refuse in one line a count whose memory
    would exceed what is available (unless `force`), and warn when processes on the CPU
    outnumber its cores."""
    available = available_memory_gb()
    needed = nproc * per_process_gb
    if available is not None and needed > available and not force:
        raise FriendlyError(
            f"--nproc {nproc} would need about {needed:.0f} GB ({nproc} x {per_process_gb:g} GB "
            f"per process: torch and the data, each in its own copy) and {available:.1f} GB "
            "is available: use fewer processes, or add --force-nproc to start them anyway")
    cores = usable_cores()
    if on_cpu and nproc > cores:
        print(f"WARNING: {nproc} processes on {cores} cores: they take turns on the cores, "
              f"so each step waits for the slowest and an epoch takes longer than with "
              f"{cores}, not shorter.", flush=True)


def peak_memory_mb() -> float | None:
    """This process's peak resident memory in MB (10's workers report it); None on Windows."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def ddp_bucket_count(ddp) -> int:
    """How many gradient buckets a DistributedDataParallel model made (lesson 10), from the
    bucket sizes its logging data lists (a private API: 1 if it ever goes away)."""
    sizes = ddp._get_ddp_logging_data().get("bucket_sizes", "")
    return len(str(sizes).split(",")) if sizes else 1


def torchrun_command(script: Path, nproc: int, port: int, script_args) -> list[str]:
    """The torchrun command line for `script` (python -m torch.distributed.run is torchrun);
    port 0: --standalone, one machine and a free port."""
    meet = (["--standalone"] if not port else
            ["--nnodes=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}"])
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", *meet,
            str(Path(script).resolve()), *script_args]


def torchrun(script: Path, nproc: int, port: int, script_args) -> None:
    """Run `script` under torchrun with nproc processes (lesson 10), printing the command;
    a failed job becomes one FriendlyError line that names the failing process's error."""
    command = torchrun_command(script, nproc, port, script_args)
    print("  torchrun " + " ".join(command[3:]).replace(str(Path(script).resolve()),
                                                          Path(script).name), flush=True)
    # torchrun's own main() runs in this process (the same as the command, without a
    # second Python and torch to start); the workers inherit the environment, and their
    # error output (file descriptor 2) goes to a file, read if the job fails.
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    os.environ["DL_LAUNCHER_PID"] = str(os.getpid())  # watched by the workers
    if nproc > 1:  # what torchrun would set (with a warning): one thread per process
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    failed = None
    with tempfile.TemporaryFile("w+") as errors:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(errors.fileno(), 2)
        try:
            torchrun_main(command[3:])
        except ChildFailedError as err:
            failed = str(err)
        except SignalException as err:  # Ctrl-C (or a kill) while the job ran
            raise KeyboardInterrupt from err
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        errors.seek(0)
        if failed is not None:
            raise FriendlyError(torchrun_failure(errors.read() + "\n" + failed, nproc))


def leave_when_gone(pid: int, every: float = 1.0) -> None:
    """Exit this process at once when process `pid` is gone (lesson 10's workers watch
    their launcher): a worker must never outlive the command that started it, however
    that command ended (Ctrl-C, kill, a closed terminal). POSIX only: on Windows,
    os.kill(pid, 0) would not ask, it would terminate."""
    if os.name != "posix":
        return

    def watch():
        while True:
            time.sleep(every)
            try:
                os.kill(pid, 0)  # signal 0: "are you there?", nothing is sent
            except ProcessLookupError:
                os._exit(1)  # no cleanup to wait for: the job is over
            except PermissionError:  # exists, owned by someone else: still there
                pass

    threading.Thread(target=watch, daemon=True).start()


def torchrun_failure(stderr: str, nproc: int) -> str:
    """One line for a failed job: the failing process's own error line if it wrote one,
    else the last exception it raised, else what torchrun's report says of it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    ours = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
    raised = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception|Interrupt): ", ln)]
    report = [re.sub(r"\s+", " ", ln) for ln in lines
              if re.match(r"^(rank|exitcode|traceback)\s*:", ln)]
    why = ours[0] if ours else raised[-1] if raised else (
        ", ".join(report) or (lines[-1] if lines else "no message"))
    return f"the {nproc}-process job stopped: {why}"


class GracefulStop:
    """Ctrl-C sets a flag that the training loop checks after each batch; a second aborts.

    Without it, Ctrl-C raises KeyboardInterrupt wherever Python happens to be, possibly
    in the middle of an optimizer step, and the run's best epoch is lost. Signals can
    only be caught in the main thread; elsewhere this does nothing.
    """

    requested = False

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
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


# --------------------------------------------------------------------------------------
# File plumbing: MNIST's IDX files, checked before use; atomic writes
# --------------------------------------------------------------------------------------
IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803: 3-D uint8 array; 0x0801: 1-D


def prepare_mnist(root: Path = DATA_DIR, files: dict = MNIST_FILES) -> Path:
    """Make sure root/MNIST/raw/ holds the four uncompressed files, intact; return that folder.

    Order of preference: the uncompressed files (checked), then the shipped .gz files
    (extracted once), then torchvision's download.
    """
    raw = Path(root) / "MNIST" / "raw"
    if any(not (raw / n).exists() and not (raw / f"{n}.gz").exists() for n in files):
        try:
            download_mnist(Path(root))
        except Exception as err:  # offline: URLError, RuntimeError, socket errors...
            raise FriendlyError(
                f"MNIST is missing from {raw} and the download failed ({type(err).__name__}); "
                f"put the four files {', '.join(n + '.gz' for n in files)} into {raw}"
            ) from err
    for name, (size, md5) in files.items():
        if not (raw / name).exists():
            extract_gz(raw / f"{name}.gz", raw / name)
        check_file(raw / name, size, md5)
    return raw


def download_mnist(root: Path) -> None:
    """Fall back on torchvision's download (needs a network connection)."""
    from torchvision import datasets

    for train in (True, False):
        datasets.MNIST(root, train=train, download=True)


def extract_gz(gz_path: Path, out_path: Path) -> None:
    try:
        with gzip.open(gz_path, "rb") as src, atomic_path(out_path) as tmp:
            tmp.write_bytes(src.read())
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise FriendlyError(f"cannot decompress {gz_path} ({err}); restore it with "
                            "`git checkout data/` or delete it to download MNIST again") from err


def idx_dims(header: bytes) -> list[int]:
    """The dimensions an IDX header declares: the magic number's 4th byte counts them."""
    return [int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(header[3])]


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file (checked by check_idx_file) as a uint8 tensor of the shape its header gives.

    torchvision's datasets.MNIST reads these same files, and the tests check that it gets
    identical tensors. We read them ourselves because importing torchvision costs over a
    second per script on a 2-core machine (make bench measures it), more than reading all
    the data.
    """
    data = path.read_bytes()
    dims = idx_dims(data)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8,
                            offset=4 + 4 * len(dims)).view(dims)


def check_idx_file(path: Path) -> None:
    """Check an IDX file's header: magic number, and a size that matches its dimensions.

    IDX is MNIST's format: 4 bytes of magic (0, 0, dtype 0x08 = uint8, number of dims),
    one big-endian uint32 per dimension, then the raw bytes (one per pixel or label).
    """
    kind = "images" if "images" in path.name else "labels"
    with open(path, "rb") as f:
        header = f.read(16)  # magic + up to 3 dimensions; the data is not needed here
    magic = int.from_bytes(header[:4], "big")
    if magic != IDX_MAGIC[kind]:
        raise FriendlyError(f"{path} is not an MNIST {kind} file (magic number {magic}, "
                            f"expected {IDX_MAGIC[kind]}); delete it and run again")
    dims = idx_dims(header)
    expected = 4 + 4 * len(dims) + math.prod(dims)
    if path.stat().st_size != expected:
        raise FriendlyError(f"{path} is truncated or damaged ({path.stat().st_size:,} bytes, "
                            f"its header promises {expected:,}); delete it and run again: "
                            "it will be re-extracted from the .gz or re-downloaded")


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, size: int | None, md5: str | None) -> None:
    """Header, size and md5 of one uncompressed file; a clear error names file and fix."""
    check_idx_file(path)
    fix = "delete it and run again: it will be re-extracted from the .gz or re-downloaded"
    if size is not None and path.stat().st_size != size:
        raise FriendlyError(f"{path} has {path.stat().st_size:,} bytes, expected {size:,}; {fix}")
    if md5 is not None and md5sum(path) != md5:
        raise FriendlyError(f"{path} fails its md5 check (altered or damaged); {fix}")


def remove_stale_temporaries(path: Path) -> None:
    """Temporaries of `path` left by a writer killed outright (SIGKILL, a power cut): those
    whose process is gone. (POSIX only: elsewhere there is no harmless liveness check.)"""
    if os.name != "posix":
        return
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:-4]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, OSError):
            pass  # not ours, or a live process of another user


@contextlib.contextmanager
def atomic_path(path: Path):
    """Context manager: write to a temporary file beside `path`, then rename it into place.

    os.replace is atomic on one file system, so a reader, a crash of the program or
    Ctrl-C sees either the old complete file or the new complete file, never half of
    one. os.fsync first forces the new bytes onto the disk: without it, a power cut
    just after the rename could leave the new name pointing at data the disk never
    received. (Making the rename itself survive a power cut would also need an fsync of
    the folder; we stop here.) A file that cannot be written becomes one clear error.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a folder that is a file, no permission, a full disk...
        raise FriendlyError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def __getattr__(name: str):
    """dl_utils.serving, lesson 9's web plumbing (serving.py), imported on first use
    (PEP 562): the other lessons never pay FastAPI's and uvicorn's import time."""
    if name == "serving":
        return importlib.import_module("serving")
    raise AttributeError(f"module 'dl_utils' has no attribute {name!r}")
