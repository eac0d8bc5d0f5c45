"""Lesson 6: a small convolutional network, past 99% where the MLP stops near 98%.

The MLPs of lessons 3 and 5 flatten the image into 784 unrelated numbers: they would
learn just as well if every image's pixels were shuffled the same way. A convolutional
network (CNN) instead slides small filters over the image, so it knows which pixels are
neighbours and reuses what it learned about a stroke wherever the stroke appears. This
script trains one with lesson 3's training loop, compares it with lesson 3's MLP, and
shows what its filters and feature maps look like.

Run it:
    python 06_convolutional_network.py                # the README's expected results
    python 06_convolutional_network.py --max-shift 0 --augment  # no augmentation at all
    python 06_convolutional_network.py --channels 16 32 --augment  # until 2026-12: faster
Then: python 04_load_model.py --checkpoint models/cnn.pt
Exercises: exercises/ex06_cnn.py, checked by python exercises/check.py 06
"""

import argparse
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
BATCH_SIZE = 64  # as in lesson 3
LR = 3e-3  # the PEAK learning rate of the one-cycle schedule (it starts 25x lower)
NUM_EPOCHS = 10  # with the schedule, the last epochs fine-tune at a tiny learning rate
CHANNELS = (32, 64)  # filters in blocks 1 and 2: more = more features, slower
CNN_HIDDEN = 32  # hidden units of the classifier (0 = none): cheap extra capacity
BATCH_NORM = False  # batch norm in each block (conv_block); --batch-norm turns it on
MAX_SHIFT = 2  # augmentation: shift each training image by up to 2 pixels (0 = off)
AUGMENT = ["blur"]  # other writers' variations on the shifts (WRITER_AUGMENTS); [] = none
WRITER_CHECK = 2000  # validation digits re-drawn and cut to 8x8 to judge them (writer_check)
SCHEDULE = "onecycle"  # the lr rises, then falls to ~0 (make_optimizer); or "constant"
MEMORY_FORMAT = "channels_last"  # how a batch lies in memory on the CPU (main); or "contiguous"
SEED = 0
ARCH = "cnn"  # or "mlp": lesson 3's MLP trained with this lesson's recipe (a fair match)
CHECKPOINT = dl_utils.MODELS_DIR / "cnn.pt"
MLP_CHECKPOINT = dl_utils.MODELS_DIR / "mlp_cnn_recipe.pt"  # --arch mlp: never over 03's
MLP_KWARGS = {"hidden_size": 128}  # --arch mlp: lesson 3's default SimpleNN
MLP_FROM_03 = dl_utils.MODELS_DIR / "simple_nn.pt"  # what 03 saved, to compare with
BACKGROUND = (0 - dl_utils.MNIST_MEAN) / dl_utils.MNIST_STD  # a black pixel, normalized


def conv_block(c_in, c_out, batch_norm):
    """A 3x3 convolution (padding=1 keeps the size), 2x2 max pooling, [batch norm], ReLU.

    ReLU usually comes before the pooling. After it, the numbers are the same (the largest of
    four values, then ReLU, equals ReLU, then the largest: both are increasing; a test checks
    outputs and gradients), and ReLU and its gradient touch a quarter as many values. Batch
    norm (lesson 7 takes it apart, on an MLP) standardizes each feature map over the batch and
    all positions, then scales and shifts it by two learned numbers per map: the next layer
    sees inputs on a steady scale whatever the weights before it do, which makes large learning
    rates safer; its shift makes the convolution's bias redundant. Training uses the batch's
    statistics, eval() running averages (lesson 4). Its usual place is right after the
    convolution; after the pooling it too works on a quarter of the values (`make bench` times
    a training step with it in each place). What it gains: the README's lesson 6 table
    (--batch-norm)."""
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batch_norm)
    norm = [nn.BatchNorm2d(c_out)] if batch_norm else []
    return nn.Sequential(conv, nn.MaxPool2d(2), *norm, nn.ReLU())


class SmallCNN(nn.Module):
    """Two convolution blocks and a small classifier (the script prints its size).

    A convolution slides a small filter (3x3 here) over the image and computes at every
    position the same weighted sum of the 9 pixels under it. The same 9 weights serve every
    position (weight sharing): 16 filters on a 28x28 image cost 16*9+16 = 160 parameters,
    where a fully connected layer to the same 16x28x28 outputs would need about 10 million.
    Each filter becomes a detector (an edge, a stroke end, a curve); its output, a "feature
    map", says where in the image that feature is. Max pooling keeps the strongest response
    in each 2x2 patch: the map halves in size, and a feature moved by a pixel mostly gives
    the same output (a little translation invariance). The second block combines the first
    block's features into larger ones (loops, crossings) over a wider area. The classifier
    reads the 64 maps of 7x7 positions through a small hidden layer, which lets it combine
    features non-linearly ("a loop on top AND a stroke below"); hidden_size=0 removes it.
    """

    def __init__(self, channels=CHANNELS, hidden_size=CNN_HIDDEN, batch_norm=False,
                 num_classes=10):
        super().__init__()
        c1, c2 = channels
        self.block1 = conv_block(1, c1, batch_norm)  # [N, 1, 28, 28] -> [N, c1, 14, 14]
        self.block2 = conv_block(c1, c2, batch_norm)  # [N, c1, 14, 14] -> [N, c2, 7, 7]
        hidden = [nn.Linear(c2 * 7 * 7, hidden_size), nn.ReLU()] if hidden_size else []
        self.classifier = nn.Sequential(  # [N, c2, 7, 7] -> [N, c2*49] -> [N, hidden] -> [N, 10]
            nn.Flatten(), *hidden, nn.Linear(hidden_size or c2 * 7 * 7, num_classes))

    def forward(self, x):
        return self.classifier(self.block2(self.block1(x)))


def random_shift(X, max_shift, generator=None):
    """Move each image by its own random offset of up to max_shift pixels in x and y.

    Data augmentation: new, plausible training images for free. A digit moved by two pixels is
    the same digit, and seeing such copies teaches the network to ignore the position. How:
    surround each image with a black border max_shift pixels wide, then cut a 28x28 window out
    of it at a random offset. The offsets come from `generator` (the seeded one that also
    shuffles the batches), drawn on the CPU: the same on every device, run after run.
    """
    n, _, h, w = X.shape
    padded = F.pad(X, (max_shift,) * 4, value=BACKGROUND)  # [n, 1, h + 2s, w + 2s]
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    shifted = torch.empty_like(X)
    for i, (dy, dx) in enumerate(offsets):  # dy = dx = max_shift: the image unmoved
        shifted[i] = padded[i, :, dy:dy + h, dx:dx + w]
    return shifted


class ShiftedLoader:
    """Wraps a training loader: the same batches, each image randomly shifted."""

    def __init__(self, loader, max_shift):
        self.loader, self.max_shift, self.dataset = loader, max_shift, loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for X, y in self.loader:
            if self.max_shift:
                X = random_shift(X, self.max_shift, self.loader.generator)
            yield X, y


# ---- Augmentation that models other writers ---------------------------------------------
# Writers also turn, slant and stretch their digits, wobble their strokes and use other
# pens; scanners blur. Each function draws one such variation per image, in pixel space
# (0 black, 1 ink), from the loader's seeded generator on the CPU (the same draws on every
# device). Which help is measured: `make tables` trains with each alone and all together,
# judged on validation digits as stored, re-drawn and cut to 8x8 (writer_check).
def warp(x, grid):
    """Images x read at `grid` (where each output pixel comes from); outside is black."""
    return F.grid_sample(x, grid.to(x.device), padding_mode="zeros", align_corners=False)


def random_affine(x, g, degrees=12, scale=0.1, shear=0.25):
    """Turned by up to `degrees`, scaled by up to +-10%, slanted (a shear) by up to 0.25."""
    n = len(x)
    u = torch.rand(n, 3, generator=g) * 2 - 1  # three draws in [-1, 1] per image
    angle, s, k = u[:, 0] * math.radians(degrees), 1 + scale * u[:, 1], shear * u[:, 2]
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin + k * cos, torch.zeros(n)], 1),
                         torch.stack([sin, cos + k * sin, torch.zeros(n)], 1)], 1)
    return warp(x, F.affine_grid(theta, list(x.shape), align_corners=False))


def elastic(x, g, alpha=24.0, sigma=4.0):
    """Simard et al. (2003): a random displacement for every pixel, smoothed by a Gaussian
    of width sigma (neighbours move together: a wobble, not noise), scaled to alpha px
    (they used 34; 24 keeps more digits legible: 06_augmentations.png draws samples)."""
    n, size = len(x), int(4 * sigma) | 1
    field = torch.rand(n * 2, 1, 28, 28, generator=g) * 2 - 1
    r = torch.arange(size, dtype=torch.float32) - size // 2
    kernel = torch.exp(-r ** 2 / (2 * sigma ** 2))
    kernel = kernel / kernel.sum()  # a 2-D Gaussian is two 1-D ones: rows, then columns
    smooth = F.conv2d(field, kernel.view(1, 1, -1, 1), padding=(size // 2, 0))
    smooth = F.conv2d(smooth, kernel.view(1, 1, 1, -1), padding=(0, size // 2))
    identity = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), list(x.shape), align_corners=False)
    return warp(x, identity + alpha * smooth.view(n, 2, 28, 28).permute(0, 2, 3, 1) * (2 / 28))


def stroke_width(x, g, amount=0.5):
    """A third of the images bolder, a third thinner: halfway to their dilation (the max
    over each 3x3 patch: ink spreads by a pixel) or to their erosion (the min)."""
    pick = torch.randint(0, 3, (len(x),), generator=g).to(x.device)
    out = x.clone()
    for which, morph in ((pick == 1, lambda v: F.max_pool2d(v, 3, 1, 1)),
                         (pick == 2, lambda v: -F.max_pool2d(-v, 3, 1, 1))):
        out[which] = torch.lerp(x[which], morph(x[which]), amount)
    return out


def low_resolution(x, g, sizes=range(10, 17)):
    """Half the images blurred: shrunk to 10x10 ... 16x16 (averaging), then enlarged back,
    as a coarse scanner leaves them (10x10 puts MNIST's 20-pixel digit box into 7 pixels:
    about the 8 of the UCI digits' 8x8 grid)."""
    size = torch.tensor(list(sizes))[torch.randint(0, len(sizes), (len(x),), generator=g)]
    blur = torch.rand(len(x), generator=g) < 0.5
    out = x.clone()
    for s in size[blur].unique().tolist():
        idx = (blur & (size == s)).nonzero().flatten().to(x.device)
        small = F.interpolate(x[idx], size=(s, s), mode="area")
        out[idx] = F.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False)
    return out


WRITER_AUGMENTS = {"affine": random_affine, "elastic": elastic, "stroke": stroke_width,
                   "blur": low_resolution}


class AugmentedLoader(ShiftedLoader):
    """ShiftedLoader, then the chosen WRITER_AUGMENTS, in pixel space."""

    def __init__(self, loader, max_shift, augment=()):
        super().__init__(loader, max_shift)
        self.augment = list(augment)

    def __iter__(self):
        for X, y in super().__iter__():
            if self.augment:
                x = X * dl_utils.MNIST_STD + dl_utils.MNIST_MEAN  # back to 0 = black, 1 = ink
                for name in self.augment:
                    x = WRITER_AUGMENTS[name](x, self.loader.generator)
                X = (x - dl_utils.MNIST_MEAN) / dl_utils.MNIST_STD
            yield X, y


def writer_check(model, device, n=WRITER_CHECK):
    """The kept model on n validation digits as stored, re-drawn like lesson 9's pad and cut
    to 8x8 like the UCI digits (dl_utils.writer_stand_ins): augmentation is chosen here."""
    train_X, train_y, _, _ = dl_utils.load_mnist_tensors()
    idx = dl_utils.train_val_split(len(train_y))[1][:n]
    sets = dl_utils.writer_stand_ins(train_X[idx], train_y[idx], dl_utils.digit_from_gray)
    acc = {name: dl_utils.evaluate_model(model, dl_utils.TensorLoader(
        dl_utils.normalize(X).to(device), y.to(device), 1000), device)[1]
        for name, (X, y) in sets.items()}
    dl_utils.print_table([f"{n:,} validation digits", "accuracy (95% interval)"],
                         [[name, dl_utils.format_accuracy(a, n)] for name, a in acc.items()])
    return {"val_drawn_acc": acc["re-drawn like the pad"], "val_8x8_acc": acc["cut to 8x8"]}


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR, num_epochs=NUM_EPOCHS)
    parser.add_argument("--channels", type=dl_utils.positive_int, nargs=2, default=CHANNELS,
                        metavar=("C1", "C2"),
                        help=f"filters in the two blocks (default: {CHANNELS[0]} {CHANNELS[1]})")
    parser.add_argument("--hidden-size", type=dl_utils.count, default=CNN_HIDDEN,
                        help="hidden units in the classifier, 0 for none (default: %(default)s)")
    parser.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, default=BATCH_NORM,
                        help="batch norm in each block (conv_block) (default: %(default)s)")
    parser.add_argument("--max-shift", type=int, choices=range(0, 5), default=MAX_SHIFT,
                        help="augmentation: random shift of training images in pixels, "
                             "0 to turn it off (default: %(default)s)")
    parser.add_argument("--augment", nargs="*", choices=list(WRITER_AUGMENTS), default=AUGMENT,
                        help="other writers' variations added to the shifts; none: "
                             f"--augment with no name (default: {' '.join(AUGMENT) or 'none'})")
    parser.add_argument("--writer-check", type=dl_utils.positive_int, default=WRITER_CHECK,
                        help="validation digits writer_check uses (default: %(default)s)")
    parser.add_argument("--schedule", choices=["onecycle", "constant"], default=SCHEDULE,
                        help="the lr schedule; constant: --lr throughout (default: %(default)s)")
    parser.add_argument("--memory-format", choices=["channels_last", "contiguous"],
                        default=MEMORY_FORMAT, help="the CPU's layout of the feature maps: "
                        "the same numbers, another speed (default: %(default)s)")
    parser.add_argument("--arch", choices=["cnn", "mlp"], default=ARCH,
                        help="cnn, or mlp: lesson 3's SimpleNN with this lesson's recipe, to "
                             "see what the structure alone is worth (default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file, default=None,
                        help="where to save the kept model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)}, or "
                             f"{dl_utils.display_path(MLP_CHECKPOINT)} with --arch mlp)")
    dl_utils.add_resume_args(parser)  # taught in lesson 3
    dl_utils.add_results_arg(parser)
    dl_utils.add_common_args(parser, seed=SEED)
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        args.checkpoint = str(MLP_CHECKPOINT if args.arch == "mlp" else CHECKPOINT)
    return args


def build_model(args):
    """The model --arch asks for, and the arguments that rebuild it from a checkpoint."""
    if args.arch == "mlp":
        return dl_utils.SimpleNN(**MLP_KWARGS), MLP_KWARGS  # dl_utils' copy of 03's MLP
    model_kwargs = {"channels": list(args.channels), "hidden_size": args.hidden_size,
                    "batch_norm": args.batch_norm}
    return SmallCNN(**model_kwargs), model_kwargs


def make_optimizer(model, args, steps_per_epoch):
    """Adam, by default with a one-cycle schedule of the learning rate.

    A schedule changes the learning rate as training goes. One-cycle does it in two phases: a
    "warm-up" that raises it from lr/25 to lr over the first 30% of the steps (large steps on
    random initial weights can throw them far off), then an "anneal" that lowers it smoothly to
    almost zero. The large middle rate makes fast progress; the tiny final one lets the weights
    settle into a minimum instead of bouncing around it. The scheduler's step() is called after
    every batch (see train_epoch). cycle_momentum=False: by default OneCycleLR would also cycle
    Adam's beta1 (its momentum); we change one thing at a time, the learning rate. `make
    tables` measures what the schedule is worth against a constant learning rate.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if args.schedule == "constant":
        return optimizer, None
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
        cycle_momentum=False)
    return optimizer, scheduler


def compare_with_mlp(metrics, result, n_params):
    """Lesson 3's MLP (from its saved checkpoint) beside this CNN, in one table."""
    mlp_path = Path(MLP_FROM_03)
    if not mlp_path.exists():
        print(f"(Run 03_train_mnist.py to compare with its MLP: no "
              f"{dl_utils.display_path(mlp_path)} yet.)")
        return
    mlp = dl_utils.load_checkpoint(mlp_path)[1]
    mlp_params = sum(t.numel() for t in mlp["model_state_dict"].values())
    mlp_acc, cnn_acc = mlp["metrics"]["test_acc"], metrics["test_acc"]
    mlp_sec, cnn_sec = mlp["metrics"]["train_seconds"], result["train_seconds"]
    rows = [["SimpleNN (03, MLP)", mlp_params, mlp_acc, mlp_sec, len(mlp["history"]["seconds"])],
            ["SmallCNN (06)", n_params, cnn_acc, cnn_sec, len(result["history"]["seconds"])]]
    dl_utils.print_table(["model", "parameters", "test accuracy (95% interval)",
                          "training time", "epochs"],
                         [[name, f"{p:,}", dl_utils.format_accuracy(acc, 10_000), f"{sec:.1f} s",
                           epochs] for name, p, acc, sec, epochs in rows])
    print(dl_utils.changed_settings_note(mlp.get("changed_settings")))
    dl_utils.prose(f"""
        Test errors: MLP {round((1 - mlp_acc) * 10000)}, CNN {round((1 - cnn_acc) * 10000)}
        per 10,000 images; the CNN has {n_params / mlp_params:.0%} of the MLP's parameters
        and took {cnn_sec / mlp_sec:.1f}x its training time. A convolution reuses each
        weight at every position of the image: few parameters, many multiply-adds.""")
    if cnn_acc <= mlp_acc:
        print("This time the CNN did not win: too few epochs or images for its structure?")
    else:
        dl_utils.prose("""
            The CNN also had augmentation and a learning-rate schedule, which the MLP did
            not: this table alone cannot say how much of the gap the structure earns. The
            README's CNN-vs-MLP table (`make tables`) gives the MLP the same recipe.""")


def plot_filters(model, show):
    """The 3x3 filters of the first convolution: what pattern each one responds to."""
    weights = model.block1[0].weight.detach().cpu()[:, 0]  # [c1, 3, 3]
    fig, axes = dl_utils.image_grid(math.ceil(len(weights) / 8), 8, (1.3, 1.4))  # 8 a row
    limit = weights.abs().max()
    for i, (ax, w) in enumerate(zip(axes.flat, weights)):
        ax.imshow(w, cmap="bwr", vmin=-limit, vmax=limit)
        ax.set_title(str(i), fontsize=8)
    fig.suptitle("First-layer filters (red: positive weight, blue: negative)")
    dl_utils.save_figure(fig, "06_filters.png", show)


def plot_feature_maps(model, image, show):
    """One digit, and the feature maps after block 1 and block 2."""
    model.eval()
    with torch.no_grad():
        after1 = model.block1(image[None])  # [1, c1, 14, 14]
        after2 = model.block2(after1)  # [1, c2, 7, 7]
    maps1, maps2 = after1[0].cpu(), after2[0].cpu()
    cols = 16
    rows = 1 + math.ceil(len(maps1) / cols) + math.ceil(len(maps2) / cols)
    fig, axes = dl_utils.image_grid(rows, cols, (0.8, 6 / rows))
    axes[0, 0].imshow(image[0].cpu(), cmap="gray")
    axes[0, 0].set_title("input", fontsize=8)
    row = 1
    for maps, label in ((maps1, "block 1: 14x14"), (maps2, "block 2: 7x7")):
        for i, m in enumerate(maps):
            ax = axes[row + i // cols, i % cols]
            ax.imshow(m, cmap="viridis")
        axes[row, 0].set_title(label, fontsize=8, loc="left")
        row += math.ceil(len(maps) / cols)
    fig.suptitle("Feature maps of one test digit: where each filter fires")
    dl_utils.save_figure(fig, "06_feature_maps.png", show)


def main(argv=None):
    args = parse_args(argv)
    device, loaders = dl_utils.setup(args)
    train_loader, val_loader, _ = loaders
    model, model_kwargs = build_model(args)
    model = model.to(device)
    # A cost, not a concept: [N, C, H, W] feature maps are stored map by map ("contiguous")
    # unless told otherwise. channels_last stores each pixel's C channels side by side
    # instead: the same shapes and numbers, but the CPU's convolution kernels (oneDNN) run
    # faster on it; `make bench` measures by how much. On the CPU only: GPUs choose their own
    # layout, and Apple's MPS backend has had convolution bugs with this one.
    if device.type == "cpu" and args.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)  # the inputs follow the weights
    mlp = dl_utils.SimpleNN(**MLP_KWARGS)
    dl_utils.introduce(model, train_loader, f"(lesson 3's MLP: "
                       f"{dl_utils.count_parameters(mlp):,} parameters)")
    if args.arch == "mlp":
        print("--arch mlp: lesson 3's MLP, trained below with this lesson's recipe.")
    dl_utils.section(f"Training: {args.epochs} epochs, Adam ({args.schedule} schedule, lr "
                     f"{args.lr}), shifts of up to {args.max_shift} px, "
                     f"{' '.join(args.augment) or 'no other augmentation'}")
    optimizer, scheduler = make_optimizer(model, args, len(train_loader))
    # Resuming (lesson 3): the schedule's position and the shifts' generator are saved too
    start, save_state = dl_utils.resumable(Path(__file__).name, args, model, model_kwargs,
                                           optimizer, scheduler, train_loader.generator)
    result = dl_utils.fit(model, AugmentedLoader(train_loader, args.max_shift, args.augment),
                          val_loader, optimizer, args.epochs, device, scheduler=scheduler,
                          start=start, after_epoch=save_state, stop_after=args.stop_after_epoch)
    if result["status"] == "diverged":  # (--results: make tables counts diverged runs)
        dl_utils.save_run_results(Path(__file__).name, args, device, result)
    path = dl_utils.kept_model_path(args, result)
    if path is None:
        return 130
    return finish(args, model, model_kwargs, loaders, device, result, path)


def training_curve_label(max_shift, augment=()):
    """Augmented training images are harder than clean ones: their curve sits lower."""
    return "training (augmented images)" if max_shift or augment else "training"


def plot_augmentations(X, generator, show):
    """Eight validation digits, and each writer augmentation drawn once on them."""
    x = X[:8].cpu() * dl_utils.MNIST_STD + dl_utils.MNIST_MEAN
    rows = {"as stored": x, **{n: f(x, generator) for n, f in WRITER_AUGMENTS.items()}}
    fig, axes = dl_utils.image_grid(len(rows), 8, (1.0, 1.1))
    for r, (name, images) in enumerate(rows.items()):
        for ax, image in zip(axes[r], images[:, 0]):
            ax.imshow(image.clamp(0, 1), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(name, fontsize=8, loc="left")
    fig.suptitle("Other writers' variations (--augment), drawn at random")
    dl_utils.save_figure(fig, "06_augmentations.png", show)


def finish(args, model, model_kwargs, loaders, device, result, path):
    """Test once, save, compare with the MLP, draw filters and feature maps."""
    dl_utils.section(f"Kept model: epoch {result['best_epoch']} (best validation accuracy)")
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.section("Other writers? Validation digits re-drawn, and cut to 8x8")
    writers = writer_check(model, device, args.writer_check)
    dl_utils.save_run_results(Path(__file__).name, args, device, result, metrics, **writers)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(path, args, model, model_kwargs, result, {**metrics, **writers},
                             device, defaults=vars(parse_args([])))
    dl_utils.plot_training_history(result["history"], f"06_training_history_{args.arch}.png",
                                   f"{type(model).__name__} on MNIST, lesson 6's recipe", args.show,
                                   train_label=training_curve_label(args.max_shift, args.augment))
    if args.arch == "cnn":
        dl_utils.section("CNN vs MLP")
        compare_with_mlp(metrics, result, dl_utils.count_parameters(model))
        dl_utils.section("Inside the CNN")
        plot_filters(model, args.show)
        plot_feature_maps(model, loaders[2].X[0], args.show)
        plot_augmentations(loaders[1].X, torch.Generator().manual_seed(args.seed), args.show)
    if result["status"] == "interrupted":
        state = dl_utils.display_path(dl_utils.training_state_path(args.checkpoint))
        print(f"Interrupted: the best epoch so far is in {dl_utils.display_path(path)}; go on "
              f"with --resume {state}")
        return 130
    print(f"\nNext: python 04_load_model.py --checkpoint {dl_utils.display_path(path)}")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
