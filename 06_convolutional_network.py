"""Lesson 6: a small convolutional network, past 99% with fewer parameters than the MLP.

The MLPs of lessons 3 and 5 flatten the image into 784 unrelated numbers: they would
learn just as well if every image's pixels were shuffled the same way. A convolutional
network (CNN) instead slides small filters over the image, so it knows which pixels are
neighbours and reuses what it learned about a stroke wherever the stroke appears. This
script trains one with lesson 3's training loop, compares it with lesson 3's MLP, and
shows what its filters and feature maps look like.

Run it:
    python 06_convolutional_network.py                # the README's expected results
    python 06_convolutional_network.py --max-shift 0  # without data augmentation
    python 06_convolutional_network.py --channels 8 16 --epochs 5   # smaller and faster
Then: python 04_load_model.py --checkpoint models/cnn.pt
Exercises: exercises/ex06_cnn.py, checked by python exercises/check.py 06
"""

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
CHANNELS = (16, 32)  # filters in block 1 and block 2: more = more features, slower
CNN_HIDDEN = 32  # hidden units of the classifier (0 = none): cheap extra capacity
MAX_SHIFT = 2  # augmentation: shift each training image by up to 2 pixels (0 = off)
SCHEDULE = "onecycle"  # the lr rises, then falls to ~0 (make_optimizer); or "constant"
SEED = 0
ARCH = "cnn"  # or "mlp": lesson 3's MLP trained with this lesson's recipe (a fair match)
CHECKPOINT = dl_utils.MODELS_DIR / "cnn.pt"
MLP_CHECKPOINT = dl_utils.MODELS_DIR / "mlp_cnn_recipe.pt"  # --arch mlp: never over 03's
MLP_KWARGS = {"hidden_size": 128}  # --arch mlp: lesson 3's default SimpleNN
MLP_FROM_03 = dl_utils.MODELS_DIR / "simple_nn.pt"  # what 03 saved, to compare with
BACKGROUND = (0 - dl_utils.MNIST_MEAN) / dl_utils.MNIST_STD  # a black pixel, normalized


class SmallCNN(nn.Module):
    """Two convolution blocks and a small classifier (the script prints its size).

    A convolution slides a small filter (3x3 here) over the image and computes at every
    position the same weighted sum of the 9 pixels under it. The same 9 weights serve
    every position (weight sharing): 16 filters on a 28x28 image cost 16*9+16 = 160
    parameters, where a fully connected layer to the same 16x28x28 outputs would need
    about 10 million. Each filter becomes a detector (an edge, a stroke end, a curve);
    its output, a "feature map", says where in the image that feature is.
    Max pooling keeps the strongest response in each 2x2 patch: the map halves in size,
    and a feature moved by a pixel mostly gives the same output (a little translation
    invariance). The second block combines the first block's features into larger
    ones (loops, crossings) over a wider area. The classifier reads the 32 maps of 7x7
    positions through a small hidden layer, which lets it combine features
    non-linearly ("a loop on top AND a stroke below"); hidden_size=0 removes it.
    """

    def __init__(self, channels=CHANNELS, hidden_size=CNN_HIDDEN, num_classes=10):
        super().__init__()
        c1, c2 = channels
        self.block1 = nn.Sequential(  # [N, 1, 28, 28] -> [N, c1, 14, 14]
            nn.Conv2d(1, c1, kernel_size=3, padding=1),  # padding=1 keeps 28x28
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.block2 = nn.Sequential(  # [N, c1, 14, 14] -> [N, c2, 7, 7]
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        if hidden_size:  # [N, c2, 7, 7] -> [N, c2*49] -> [N, hidden] -> [N, 10]
            self.classifier = nn.Sequential(
                nn.Flatten(), nn.Linear(c2 * 7 * 7, hidden_size), nn.ReLU(),
                nn.Linear(hidden_size, num_classes))
        else:  # straight from the feature maps to the 10 scores
            self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 7 * 7, num_classes))

    def forward(self, x):
        return self.classifier(self.block2(self.block1(x)))


def random_shift(X, max_shift, generator=None):
    """Move each image by its own random offset of up to max_shift pixels in x and y.

    Data augmentation: new, plausible training images for free. A digit moved by two
    pixels is the same digit, and seeing such copies teaches the network to ignore the
    position. How: surround each image with a black border max_shift pixels wide, then
    cut a 28x28 window out of it at a random offset. The offsets come from `generator`
    (the seeded one that also shuffles the batches), drawn on the CPU: the same shifts
    on every device, and the same run twice gives the same result.
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


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR, num_epochs=NUM_EPOCHS)
    parser.add_argument("--channels", type=dl_utils.positive_int, nargs=2, default=CHANNELS,
                        metavar=("C1", "C2"),
                        help="filters in the two convolution blocks (default: 16 32)")
    parser.add_argument("--hidden-size", type=int, default=CNN_HIDDEN,
                        help="hidden units in the classifier, 0 for none (default: %(default)s)")
    parser.add_argument("--max-shift", type=int, choices=range(0, 5), default=MAX_SHIFT,
                        help="augmentation: random shift of training images in pixels, "
                             "0 to turn it off (default: %(default)s)")
    parser.add_argument("--schedule", choices=["onecycle", "constant"], default=SCHEDULE,
                        help="learning-rate schedule; constant keeps --lr all along "
                             "(default: %(default)s)")
    parser.add_argument("--arch", choices=["cnn", "mlp"], default=ARCH,
                        help="cnn, or mlp: lesson 3's SimpleNN trained with this lesson's "
                             "recipe (shifts, schedule, lr), to see what the structure alone "
                             "is worth (default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file, default=None,
                        help="where to save the kept model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)}, or "
                             f"{dl_utils.display_path(MLP_CHECKPOINT)} with --arch mlp)")
    dl_utils.add_resume_args(parser)  # taught in lesson 3
    dl_utils.add_results_arg(parser)
    dl_utils.add_common_args(parser, seed=SEED)
    args = parser.parse_args(argv)
    if args.hidden_size < 0:
        parser.error("--hidden-size must be 0 or more")
    if args.checkpoint is None:
        args.checkpoint = str(MLP_CHECKPOINT if args.arch == "mlp" else CHECKPOINT)
    return args


def build_model(args):
    """The model --arch asks for, and the arguments that rebuild it from a checkpoint."""
    if args.arch == "mlp":
        return dl_utils.SimpleNN(**MLP_KWARGS), MLP_KWARGS  # dl_utils' copy of 03's MLP
    model_kwargs = {"channels": list(args.channels), "hidden_size": args.hidden_size}
    return SmallCNN(**model_kwargs), model_kwargs


def make_optimizer(model, args, steps_per_epoch):
    """Adam, by default with a one-cycle schedule of the learning rate.

    A schedule changes the learning rate as training goes. One-cycle does it in two
    phases: a "warm-up" that raises it from lr/25 to lr over the first 30% of the steps
    (large steps on random initial weights can throw them far off), then an "anneal"
    that lowers it smoothly to almost zero. The large middle rate makes fast progress;
    the tiny final one lets the weights settle into a minimum instead of bouncing
    around it. The scheduler's step() is called after every batch (see train_epoch).
    cycle_momentum=False: by default OneCycleLR would also cycle Adam's beta1 (its
    momentum); we change one thing at a time, the learning rate. `make tables` measures
    what the schedule is worth against a constant learning rate.
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
    print(mlp_settings_note(mlp.get("changed_settings")))
    dl_utils.prose(f"""
        Test errors: MLP {round((1 - mlp_acc) * 10000)}, CNN {round((1 - cnn_acc) * 10000)}
        per 10,000 images; the CNN has {n_params / mlp_params:.0%} of the MLP's parameters
        and took {cnn_sec / mlp_sec:.1f}x its training time. A convolution reuses each
        weight at every position of the image: few parameters, many multiply-adds.""")
    if cnn_acc <= mlp_acc:
        print("This time the CNN did not win: with these settings (too few epochs or images?) "
              "its structure had no chance to pay off.")
    else:
        dl_utils.prose("""
            The CNN also had augmentation and a learning-rate schedule, which the MLP did
            not: this table alone cannot say how much of the gap the structure earns. The
            README's CNN-vs-MLP table (`make tables`) gives the MLP the same recipe.""")


def mlp_settings_note(changed):
    """Which settings the saved MLP was trained with, where they differ from 03's defaults
    (03 records them in the checkpoint as "changed_settings")."""
    if changed is None:
        return "(The saved MLP does not say how it was trained: run 03 again to compare.)"
    changed = {k: v for k, v in changed.items() if k not in ("device", "seed")}
    if not changed:
        return "(The MLP is the one 03 trains with its default settings.)"
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in changed.items())
    return (f"(Careful: the saved MLP was trained with {flags}, not 03's defaults; run "
            "`python 03_train_mnist.py` for a fair comparison.)")


def plot_filters(model, show):
    """The 3x3 filters of the first convolution: what pattern each one responds to."""
    weights = model.block1[0].weight.detach().cpu()[:, 0]  # [c1, 3, 3]
    cols = 8
    fig, axes = dl_utils.image_grid(math.ceil(len(weights) / cols), cols, (1.3, 1.4))
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
    mlp = dl_utils.SimpleNN(**MLP_KWARGS)
    dl_utils.introduce(model, train_loader, f"(lesson 3's MLP: "
                       f"{dl_utils.count_parameters(mlp):,} parameters)")
    if args.arch == "mlp":
        print("--arch mlp: lesson 3's MLP, trained below with this lesson's recipe.")

    dl_utils.section(f"Training: {args.epochs} epochs, Adam ({args.schedule} schedule, lr "
                     f"{args.lr}), shifts of up to {args.max_shift} px")
    optimizer, scheduler = make_optimizer(model, args, len(train_loader))
    # Resuming (lesson 3): the schedule's position and the shifts' generator are saved too
    start, save_state = dl_utils.resumable(Path(__file__).name, args, model, model_kwargs,
                                           optimizer, scheduler, train_loader.generator)
    result = dl_utils.fit(model, ShiftedLoader(train_loader, args.max_shift), val_loader,
                          optimizer, args.epochs, device, scheduler=scheduler, start=start,
                          after_epoch=save_state, stop_after=args.stop_after_epoch)
    if result["status"] == "diverged":  # (--results: make tables counts diverged runs)
        dl_utils.save_run_results(Path(__file__).name, args, device, result)
    path = dl_utils.kept_model_path(args, result)
    if path is None:
        return 130
    return finish(args, model, model_kwargs, loaders, device, result, path)


def training_curve_label(max_shift):
    """The training curve is measured on shifted images when augmentation is on: say so.

    Shifted images are harder than clean ones, so the training curve sits lower than it
    would on clean images, and its gap to validation understates overfitting.
    """
    if not max_shift:
        return "training"
    return f"training (images shifted by up to {max_shift} px)"


def finish(args, model, model_kwargs, loaders, device, result, path):
    """Test once, save, compare with the MLP, draw filters and feature maps."""
    dl_utils.section(f"Kept model: epoch {result['best_epoch']} (best validation accuracy)")
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.save_run_results(Path(__file__).name, args, device, result, metrics)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(path, args, model, model_kwargs, result, metrics, device,
                             defaults=vars(parse_args([])))
    name = type(model).__name__
    dl_utils.plot_training_history(result["history"], f"06_training_history_{args.arch}.png",
                                   f"{name} on MNIST, lesson 6's recipe", args.show,
                                   train_label=training_curve_label(args.max_shift))
    if args.arch == "cnn":
        dl_utils.section("CNN vs MLP")
        compare_with_mlp(metrics, result, dl_utils.count_parameters(model))
        dl_utils.section("Inside the CNN")
        plot_filters(model, args.show)
        plot_feature_maps(model, loaders[2].X[0], args.show)
    if result["status"] == "interrupted":
        print(f"Interrupted: the best epoch so far is in {dl_utils.display_path(path)}; "
              f"go on with --resume "
              f"{dl_utils.display_path(dl_utils.training_state_path(args.checkpoint))}")
        return 130
    print(f"\nNext: python 04_load_model.py --checkpoint {dl_utils.display_path(path)}")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
