"""Lesson 2: look at the data before you train on it.

"Garbage in, garbage out": no architecture rescues wrong labels, a skewed class balance,
or inputs scaled differently at training and test time. Before any training, this script
answers the questions to ask of every dataset: what is in it (how many examples, what
shape, what range), is every class represented fairly, what does a typical example look
like, how should the inputs be normalized, and does anything look wrong.

Run it:
    python 02_load_mnist.py            # tables in the terminal, figures in
                                       # figures/02_*.png
    python 02_load_mnist.py --show     # also open the figures in windows
Exercises: exercises/ex02_data.py, checked by python exercises/check.py 02
"""

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import dl_utils

# ---- Settings (each has a command-line flag; -h lists them) ----
SAMPLES_PER_DIGIT = 6  # rows in the grid of example images (one column per digit)
NUM_SUSPECTS = 16  # images the nearest-class-mean baseline gets most wrong, to inspect
EMPTY_INK = 20  # images with fewer ink pixels than this are flagged as nearly empty


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--samples-per-digit", type=dl_utils.positive_int,
                        default=SAMPLES_PER_DIGIT,
                        help="example images per digit in the grid "
                             "(default: %(default)s)")
    parser.add_argument("--num-suspects", type=dl_utils.positive_int,
                        default=NUM_SUSPECTS,
                        help="worst-fitting images to display (default: %(default)s)")
    parser.add_argument("--empty-ink", type=dl_utils.positive_int, default=EMPTY_INK,
                        help="flag images with fewer ink pixels (> 127) than this "
                             "(default: %(default)s)")
    dl_utils.add_common_args(parser)
    return parser.parse_args(argv)


def load_splits():
    """Raw uint8 images and labels of the three splits, as the loaders split them, plus
    all 60,000 images of the official training file (for the normalization
    constants)."""
    X, y, X_test, y_test = dl_utils.load_mnist_tensors()
    train_idx, val_idx = dl_utils.train_val_split(len(y))
    splits = {"train": (X[train_idx], y[train_idx]),
              "validation": (X[val_idx], y[val_idx]),
              "test": (X_test, y_test)}
    return splits, X


def what_mnist_is():
    """What MNIST is, and why nearly every course starts with it."""
    dl_utils.prose("""
        MNIST (Modified National Institute of Standards and Technology database, 1998,
        by Yann LeCun, Corinna Cortes and Christopher Burges) holds 70,000 handwritten
        digits, 0 to 9, written by about 250 writers for the training images and
        a different set of writers for the test images, each scanned, scaled into
        a 20x20 box and centred in a 28x28 grey image. It is the "hello world" of
        computer vision because it is small (55 MB, trains in seconds on a laptop),
        clean (centred, labelled, balanced), and still a real task: a trivial method
        gets about 82% (below), a small network about 98% (lesson 3), a convolutional
        network over 99% (lesson 6). The same steps carry over to any image dataset;
        what does not carry over is how easy MNIST is. Real data is rarely this clean,
        which is why this lesson looks at it before training anything.""")


def describe(splits):
    """Sizes, shapes, dtypes and value ranges, then one image printed as text."""
    rows = [[name, f"{len(y):,}", str(list(X.shape)),
             str(X.dtype).replace("torch.", ""), f"{X.min()}..{X.max()}",
             str(y.dtype).replace("torch.", ""), f"{y.min()}..{y.max()}"]
            for name, (X, y) in splits.items()]
    dl_utils.print_table(["split", "images", "image tensor", "dtype", "pixels",
                          "labels", "values"], rows)
    X, y = splits["train"]
    print(f"\nOne training image (label {y[0]}), "
          "each pixel 0 (background) to 255 (ink):")
    shades = " .:-=+*#%@"
    for row in X[0]:
        print("   " + "".join(shades[int(v) * 10 // 256] * 2 for v in row))


def plot_samples(X, y, per_digit, show):
    """A grid: one column per digit, several random examples in each."""
    g = torch.Generator().manual_seed(0)
    fig, axes = plt.subplots(per_digit, 10, figsize=(10, 1.05 * per_digit))
    for digit in range(10):
        idx = (y == digit).nonzero().flatten()
        pick = idx[torch.randperm(len(idx), generator=g)[:per_digit]]
        for row, i in enumerate(pick):
            axes[row, digit].imshow(X[i].numpy(), cmap="gray")
            axes[row, digit].axis("off")
        axes[0, digit].set_title(str(digit))
    fig.suptitle("Random training examples of each digit: "
                 "same label, many handwritings")
    dl_utils.save_figure(fig, "02_samples.png", show)


def class_balance(splits, show):
    """Images per digit in each split; the largest-to-smallest ratio shows imbalance."""
    counts = {name: torch.bincount(y, minlength=10) for name, (_, y) in splits.items()}
    rows = [[d] + [f"{int(c[d]):,}" for c in counts.values()] for d in range(10)]
    rows.append(["max/min"]
                + [f"{(c.max() / c.min()).item():.2f}" for c in counts.values()])
    dl_utils.print_table(["digit"] + list(counts), rows)
    train = counts["train"]
    print(f"Most common training digit: {int(train.argmax())}, "
          f"rarest: {int(train.argmin())}.")
    dl_utils.prose("""
        A max/min ratio near 1 means balanced. Far from 1 (say 10, as with fraud or rare
        diseases), accuracy lies: always answering the big class scores high; then look
        at per-class accuracy, weight the loss or resample. MNIST's ratio, close to 1,
        is harmless.""")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.27
    for k, (name, c) in enumerate(counts.items()):
        # matplotlib takes NumPy arrays, not tensors
        share = (100 * c / c.sum()).numpy()
        ax.bar(np.arange(10) + (k - 1) * width, share, width, label=name)
    ax.set(xticks=range(10), xlabel="digit", ylabel="% of the split",
           title="Class balance: every digit is about 10% of every split")
    ax.legend()
    dl_utils.save_figure(fig, "02_class_balance.png", show)


def mean_digits_and_histogram(X, y, show):
    """The average image of each digit, and how the pixel values are distributed."""
    means = torch.stack([X[y == d].float().mean(dim=0) for d in range(10)])
    fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
    for d, ax in enumerate(axes):
        ax.imshow(means[d].numpy(), cmap="gray")
        ax.set_title(str(d))
        ax.axis("off")
    fig.suptitle("Mean image of each digit (training set)")
    dl_utils.save_figure(fig, "02_mean_digits.png", show)
    zero = (X == 0).float().mean().item()
    full = (X == 255).float().mean().item()
    print(f"{100 * zero:.1f}% of all training pixels are exactly 0 (background), "
          f"{100 * full:.1f}% are 255 (solid ink).")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(X.flatten().numpy(), bins=64, log=True)
    ax.set(xlabel="pixel value (0-255)", ylabel="count (log scale)",
           title="Pixel intensities: mostly background, a bump of solid ink at 255")
    dl_utils.save_figure(fig, "02_pixel_histogram.png", show)
    return means


def pixel_stats(X_uint8):
    """Mean and standard deviation of every pixel, scaled to [0, 1]. A byte takes only
    256 values, so counting each value (bincount) gives both exactly, in float64, from
    256 numbers: no float copy of 47 million pixels (376 MB) is made."""
    counts = torch.bincount(X_uint8.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    n = counts.sum()
    mean = (counts * values).sum() / n
    variance = (counts * (values - mean) ** 2).sum() / (n - 1)  # n - 1: as Tensor.std()
    return mean.item(), variance.sqrt().item()


def normalization(X_official_train, splits):
    """Compute the normalization constants from the training images, and show their
    effect."""
    mean, std = pixel_stats(X_official_train)
    ours_mean, ours_std = pixel_stats(splits["train"][0])
    dl_utils.print_table(["computed over", "mean", "std"], [
        ["the 60,000 official training images", f"{mean:.4f}", f"{std:.4f}"],
        ["our 55,000-image training split", f"{ours_mean:.4f}", f"{ours_std:.4f}"],
        ["constants used by dl_utils' loaders", f"{dl_utils.MNIST_MEAN:.4f}",
         f"{dl_utils.MNIST_STD:.4f}"]])
    largest = max(abs(mean - ours_mean), abs(std - ours_std))
    print(f"Computed: mean {mean:.4f}, std {std:.4f}: "
          "the constants of PyTorch's MNIST example.")
    dl_utils.prose(f"""
        Strictly, only the images we train on should go into them: the official training
        file also holds our 5,000 validation images, so their statistics leak (a little)
        into preprocessing. Our 55,000-image split gives values that differ by at most
        {largest:.5f}, far below anything that could change a result, so we keep the
        constants everyone uses. The test set never goes in: it stands for data we have
        not seen yet, and peeking at its statistics would leak information into the
        model.
        """)
    rows = []
    for name, (X, _) in splits.items():
        Xn = dl_utils.normalize(X)
        rows.append([name, f"{X.min()}..{X.max()}",
                     f"{Xn.min().item():.4f}..{Xn.max().item():.4f}",
                     f"{Xn.mean().item():+.4f}", f"{Xn.std().item():.4f}"])
    dl_utils.print_table(["split", "raw pixels", "normalized range", "mean", "std"],
                         rows)
    dl_utils.prose("""
        (x / 255 - 0.1307) / 0.3081 maps background 0 to -0.4242 and full ink 255 to
        2.8215: mean 0 and std 1, but NOT the range [-1, 1] that is often claimed.
        Centred, unit-scale inputs keep the first layer's weighted sums in a range where
        gradients are neither tiny nor huge. What that is worth in training is measured,
        not assumed: `python 03_train_mnist.py --inputs raw` trains on the bytes as
        stored, and the README's table of tutorial claims compares the three
        scalings.""")


def find_duplicates(splits):
    """Groups of byte-identical images, within a split and across splits
    (a test leak)."""
    seen = {}
    for name, (X, _) in splits.items():
        for i, image in enumerate(X.numpy()):
            seen.setdefault(image.tobytes(), []).append((name, i))
    groups = [g for g in seen.values() if len(g) > 1]
    across = [g for g in groups if len({name for name, _ in g}) > 1]
    print(f"Exact duplicate images: {len(groups)} groups, "
          f"{len(across)} of them spanning two splits.")
    print("(A duplicate across train and test would let a model score by memory.)")
    return groups


def nearest_mean_baseline(splits, means, num_suspects, show):
    """Classify by the closest mean digit; show the training images that fit their label
    worst."""
    X_test, y_test = splits["test"]
    dist_test = torch.cdist(X_test.flatten(1).float(), means.flatten(1))
    acc = (dist_test.argmin(dim=1) == y_test).float().mean().item()
    print("Nearest-class-mean baseline (no training, 10 mean images): "
          f"{100 * acc:.1f}% test accuracy.")
    print("Any network must beat this; if it does not, suspect a bug, not the model.")
    X, y = splits["train"]
    dist = torch.cdist(X.flatten(1).float(), means.flatten(1))  # [55000, 10]
    own = dist[torch.arange(len(y)), y]  # each image's distance to its own digit's mean
    to_others = dist.clone()
    to_others[torch.arange(len(y)), y] = float("inf")  # rule out its own digit...
    other = to_others.min(dim=1)  # ...and find the nearest of the other nine
    margin = own - other.values  # > 0: closer to another digit's mean than to its own
    worst = margin.argsort(descending=True)[:num_suspects]
    cols = min(8, num_suspects)
    fig, axes = dl_utils.image_grid(math.ceil(num_suspects / cols), cols, (1.6, 1.9))
    for ax, i in zip(axes.flat, worst):
        ax.imshow(X[i].numpy(), cmap="gray")
        ax.set_title(f"label {int(y[i])}\nlooks like {int(other.indices[i])}",
                     fontsize=8)
    fig.suptitle("Training images farthest from their own class mean: "
                 "are the labels right?")
    dl_utils.save_figure(fig, "02_suspects.png", show)
    print(f"The {num_suspects} images that fit their label worst are in "
          "figures/02_suspects.png.")
    dl_utils.prose("""
        With the defaults they are mostly unusual shapes (slanted or narrow 0s, bold 7s)
        with plausible labels, and one or two debatable ones. Only a human eye can
        judge.""")


def empty_images(splits, threshold):
    """Images with almost no ink: blank scans or cropping accidents?"""
    rows = []
    for name, (X, y) in splits.items():
        ink = (X > 127).flatten(1).sum(dim=1)
        i = int(ink.argmin())
        rows.append([name, int((ink < threshold).sum()), int(ink.min()), int(y[i]),
                     f"{ink.float().mean().item():.0f}"])
    dl_utils.print_table(["split", f"images < {threshold} ink px", "least ink",
                          "its label", "mean ink px"], rows)
    dl_utils.prose("""
        The emptiest images are thin 1s, not blank scans: a digit with little ink is
        legitimate. On your own data, blank or cropped inputs are a common fault worth
        this check.""")


def main(argv=None):
    args = parse_args(argv)
    dl_utils.setup_figures(args.show)
    dl_utils.section("MNIST, the hello world of computer vision")
    what_mnist_is()
    dl_utils.section("What is in the dataset")
    splits, X_official_train = load_splits()
    describe(splits)
    dl_utils.prose("""
        Images are uint8 (one byte per pixel, 0 = background, 255 = full ink); labels
        are int64, the type CrossEntropyLoss wants. The validation split is held out of
        the 60,000 training images (see dl_utils.train_val_split).""")

    dl_utils.section("A look at the images")
    X, y = splits["train"]
    plot_samples(X, y, args.samples_per_digit, args.show)

    dl_utils.section("Class balance")
    class_balance(splits, args.show)

    dl_utils.section("Mean digits and pixel intensities")
    means = mean_digits_and_histogram(X, y, args.show)

    dl_utils.section("Normalization")
    normalization(X_official_train, splits)

    dl_utils.section("Data quality")
    empty_images(splits, args.empty_ink)
    find_duplicates(splits)
    nearest_mean_baseline(splits, means, args.num_suspects, args.show)
    print("\nNext: python 03_train_mnist.py")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
