"""Lesson 6: a small convolutional network, past 99% where the MLP stops near 98%.

The MLPs of lessons 3 and 5 flatten the image into 784 unrelated numbers: they would
learn just as well if every image's pixels were shuffled the same way. A convolutional
network (CNN) instead slides small filters over the image, so it knows which pixels are
neighbours and reuses what it learned about a stroke wherever the stroke appears. This
script trains one with lesson 3's training loop, on randomly shifted copies of the
training images and with a one-cycle learning-rate schedule; compares it with lesson 3's
MLP; and shows what its filters and feature maps look like.

Run it:
    python 06_convolutional_network.py                   # the README's expected results
    python 06_convolutional_network.py --max-shift 0     # no augmentation at all
    python 06_convolutional_network.py --channels 16 32  # half the filters: faster
    python 06_convolutional_network.py --arch mlp        # lesson 3's MLP, this recipe
Then: python 04_load_model.py --checkpoint models/cnn.pt
      python 06b_other_writers.py   # the same CNN, for other people's handwriting
Exercises: exercises/ex06_cnn.py, checked by python exercises/check.py 06
"""

import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
BATCH_SIZE = 64  # as in lesson 3
LR = 3e-3  # the PEAK learning rate of the one-cycle schedule (it starts 25x lower)
NUM_EPOCHS = 10  # with the schedule, the last epochs fine-tune at a tiny learning rate
# filters in blocks 1 and 2: more = more features, slower. (32, 64), pytorch/examples'
# width, scored no clearly higher on validation and took about twice as long
# (docs/decisions.md)
CHANNELS = (16, 32)
CNN_HIDDEN = 32  # hidden units of the classifier (0 = none): cheap extra capacity
MAX_SHIFT = 2  # augmentation: shift each training image by up to 2 pixels (0 = off)
SCHEDULE = "onecycle"  # the lr rises, then falls to ~0 (make_optimizer); or "constant"
MEMORY_FORMAT = "channels_last"  # the maps' layout in memory (main); or "contiguous"
SEED = 0
ARCH = "cnn"  # or "mlp": lesson 3's MLP trained with this lesson's recipe (fair match)
CHECKPOINT = dl_utils.MODELS_DIR / "cnn.pt"
MLP_CHECKPOINT = dl_utils.MODELS_DIR / "mlp_cnn_recipe.pt"  # --arch mlp: not over 03's
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
    its output, a "feature map", says where in the image that feature is. ReLU keeps the
    positive responses. Max pooling keeps the strongest response in each 2x2 patch: the
    map halves in size, and a feature moved by a pixel mostly gives the same output (a
    little translation invariance). The second block combines the first block's
    features into larger ones (loops, crossings) over a wider area. The classifier reads
    the 32 maps of 7x7 positions through a small hidden layer, which lets it combine
    features non-linearly ("a loop on top AND a stroke below"); hidden_size=0 removes
    it.

    Each block is written in the order every textbook uses: convolution, ReLU, pooling
    (LeNet in d2l, PyTorch's "Training a classifier"). Variations to try: pool before
    the ReLU (max and ReLU commute: the same numbers, with ReLU on a quarter of the
    values); batch norm after each convolution, nn.BatchNorm2d(c1), which lesson 7
    takes apart on an MLP.
    """

    def __init__(self, channels=CHANNELS, hidden_size=CNN_HIDDEN, num_classes=10):
        super().__init__()
        c1, c2 = channels
        self.block1 = nn.Sequential(
            # padding=1: a 1-pixel border of background around the image, so that the
            # 3x3 filter fits at every pixel and the map stays 28x28 (kernel_size=5
            # would need padding=2; without padding the map shrinks to 26x26)
            nn.Conv2d(1, c1, kernel_size=3, padding=1),  # [N, c1, 28, 28]
            nn.ReLU(),  # [N, c1, 28, 28]: negative responses become 0
            nn.MaxPool2d(2),  # [N, c1, 14, 14]: the largest of each 2x2 patch
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(c1, c2, kernel_size=3, padding=1),  # [N, c2, 14, 14]
            nn.ReLU(),  # [N, c2, 14, 14]
            nn.MaxPool2d(2),  # [N, c2, 7, 7]
        )
        if hidden_size > 0:
            self.classifier = nn.Sequential(
                # 7 = 28 halved by two poolings (true while each convolution keeps the
                # size; change a kernel or a padding and print_shapes shows the new one)
                nn.Flatten(),  # [N, c2 * 7 * 7]: the maps side by side in one row
                nn.Linear(c2 * 7 * 7, hidden_size),  # [N, hidden_size]
                nn.ReLU(),  # [N, hidden_size]
                nn.Linear(hidden_size, num_classes),  # [N, 10]: one score per digit
            )
        else:  # no hidden layer: the maps straight to the ten scores
            self.classifier = nn.Sequential(
                nn.Flatten(),  # [N, c2 * 7 * 7]
                nn.Linear(c2 * 7 * 7, num_classes),  # [N, 10]
            )

    def forward(self, x):  # x: [N, 1, 28, 28]
        x = self.block1(x)
        x = self.block2(x)
        return self.classifier(x)


def random_shift(X, max_shift, generator=None):
    """Move each image by its own random offset of up to max_shift pixels in x and y.

    Data augmentation: new, plausible training images for free. A digit moved by two
    pixels is the same digit, and seeing such copies teaches the network to ignore the
    position. How: surround each image with a black border max_shift pixels wide, then
    cut a 28x28 window out of it at a random offset. The offsets come from `generator`
    (the seeded one that also shuffles the batches), drawn on the CPU: the same on every
    device, run after run.
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
        self.loader = loader
        self.max_shift = max_shift
        self.dataset = loader.dataset

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for X, y in self.loader:
            if self.max_shift:
                X = random_shift(X, self.max_shift, self.loader.generator)
            yield X, y


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR,
                               num_epochs=NUM_EPOCHS)
    parser.add_argument("--channels", type=dl_utils.positive_int, nargs=2,
                        default=CHANNELS, metavar=("C1", "C2"),
                        help=f"filters in the two blocks (default: {CHANNELS[0]} "
                             f"{CHANNELS[1]})")
    parser.add_argument("--hidden-size", type=dl_utils.count, default=CNN_HIDDEN,
                        help="hidden units in the classifier, 0 for none "
                             "(default: %(default)s)")
    parser.add_argument("--max-shift", type=int, choices=range(0, 5), default=MAX_SHIFT,
                        help="augmentation: random shift of training images in pixels, "
                             "0 to turn it off (default: %(default)s)")
    parser.add_argument("--schedule", choices=["onecycle", "constant"],
                        default=SCHEDULE,
                        help="the lr schedule; constant: --lr throughout "
                             "(default: %(default)s)")
    parser.add_argument("--memory-format", choices=["channels_last", "contiguous"],
                        default=MEMORY_FORMAT,
                        help="how the CPU stores the feature maps: the same numbers, "
                             "another speed (default: %(default)s)")
    parser.add_argument("--arch", choices=["cnn", "mlp"], default=ARCH,
                        help="cnn, or mlp: lesson 3's SimpleNN with this lesson's "
                             "recipe, to see what the structure alone is worth "
                             "(default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file, default=None,
                        help="where to save the kept model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)}, or "
                             f"{dl_utils.display_path(MLP_CHECKPOINT)} with --arch "
                             "mlp)")
    dl_utils.add_resume_args(parser)  # taught in lesson 03b
    dl_utils.add_results_arg(parser)
    dl_utils.add_common_args(parser, seed=SEED)
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        args.checkpoint = str(MLP_CHECKPOINT if args.arch == "mlp" else CHECKPOINT)
    return args


def build_model(args):
    """The model --arch asks for, and the arguments that rebuild it from its file."""
    if args.arch == "mlp":
        return dl_utils.SimpleNN(**MLP_KWARGS), MLP_KWARGS  # dl_utils' copy of 03's MLP
    model_kwargs = {"channels": list(args.channels), "hidden_size": args.hidden_size}
    return SmallCNN(**model_kwargs), model_kwargs


def parameter_split(model):
    """One computed sentence: parameters in the convolutions and in the classifier."""
    convs = 0
    dense = 0
    for name, p in model.named_parameters():
        if name.startswith("classifier."):
            dense += p.numel()
        else:
            convs += p.numel()
    maps = model.block2[0].out_channels
    said = (f"The convolutions hold {convs:,} parameters, the classifier {dense:,} "
            f"({dense / (convs + dense):.0%} of the CNN): ")
    if dense > convs:
        return said + ("a convolution is cheap, since its filters are reused at every "
                       f"position; the dense layer that reads {maps} maps of 7x7 is "
                       "not.")
    return said + "here the convolutions hold the most."


def make_optimizer(params, args, steps_per_epoch):
    """Adam, by default with a one-cycle schedule of the learning rate.

    A schedule changes the learning rate as training goes. One-cycle does it in two
    phases: a "warm-up" that raises it from lr/25 to lr over the first 30% of the steps
    (large steps on random initial weights can throw them far off), then an "anneal"
    that lowers it smoothly to almost zero. The large middle rate makes fast progress;
    the tiny final one lets the weights settle into a minimum instead of bouncing around
    it. The scheduler's step() is called after every batch (dl_utils.train_epoch);
    06_learning_rate.png draws the result. cycle_momentum=False: by default OneCycleLR
    would also cycle Adam's beta1 (its momentum); we change one thing at a time, the
    learning rate. `make tables` measures what the schedule is worth against a constant
    learning rate.
    """
    optimizer = torch.optim.Adam(params, lr=args.lr)
    if args.schedule == "constant":
        return optimizer, None
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=args.epochs, steps_per_epoch=steps_per_epoch,
        cycle_momentum=False)
    return optimizer, scheduler


def plot_schedule(args, steps_per_epoch, show):
    """The learning rate at every step of training, as the scheduler sets it.

    A scheduler built like training's, on a parameter of its own (training's is not
    touched), stepped once per batch; get_last_lr() reads the rate after each step."""
    optimizer, scheduler = make_optimizer([torch.zeros(1, requires_grad=True)], args,
                                          steps_per_epoch)
    rates = [optimizer.param_groups[0]["lr"]]  # the rate of the first batch
    for _ in range(args.epochs * steps_per_epoch - 1):
        optimizer.step()  # (no gradient: nothing moves; the scheduler expects it first)
        scheduler.step()
        rates.append(scheduler.get_last_lr()[0])
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(range(1, len(rates) + 1), rates)
    for epoch in range(1, args.epochs):  # a faint line where each epoch ends
        ax.axvline(epoch * steps_per_epoch, color="grey", lw=0.5, alpha=0.5)
    ax.set(xlabel="training step (batch)", ylabel="learning rate",
           title=f"One-cycle schedule: {args.epochs} epochs of {steps_per_epoch} steps")
    dl_utils.save_figure(fig, "06_learning_rate.png", show)
    peak = rates.index(max(rates)) + 1
    print(f"The learning rate per step (06_learning_rate.png): {rates[0]:.2g} at the "
          f"first step, {max(rates):.2g} at step {peak:,}, {rates[-1]:.2g} at the last "
          f"({len(rates):,}).")


def main(argv=None):
    args = parse_args(argv)
    device, loaders = dl_utils.setup(args)
    train_loader, val_loader, _ = loaders
    model, model_kwargs = build_model(args)
    model = model.to(device)
    # Skip on a first reading: a speed setting, not a concept. channels_last stores
    # each pixel's channels side by side in memory (the same numbers, another speed;
    # `make bench` measures it). On the CPU only (Apple's MPS has had bugs with it).
    if device.type == "cpu" and args.memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    mlp = dl_utils.SimpleNN(**MLP_KWARGS)
    dl_utils.introduce(model, train_loader, f"(lesson 3's MLP: "
                       f"{dl_utils.count_parameters(mlp):,} parameters)")
    if args.arch == "mlp":
        print("--arch mlp: lesson 3's MLP, trained below with this lesson's recipe.")
    else:
        print(parameter_split(model))
    shifts = f"shifts of up to {args.max_shift} px" if args.max_shift else "no shifts"
    dl_utils.section(f"Training: {args.epochs} epochs, Adam ({args.schedule} schedule, "
                     f"lr {args.lr}), {shifts}")
    optimizer, scheduler = make_optimizer(model.parameters(), args, len(train_loader))
    # Skip on a first reading (lesson 03b teaches it): a stopped run can resume; the
    # training state, saved after every epoch, holds the schedule's position and the
    # shifts' generator too.
    start, save_state = dl_utils.resumable(Path(__file__).name, args, model,
                                           model_kwargs, optimizer, scheduler,
                                           train_loader.generator)
    shifted = ShiftedLoader(train_loader, args.max_shift)
    result = dl_utils.fit(model, shifted, val_loader, optimizer, args.epochs, device,
                          scheduler=scheduler, start=start, after_epoch=save_state,
                          stop_after=args.stop_after_epoch)
    if result["status"] == "diverged":  # (--results: make tables counts diverged runs)
        dl_utils.save_run_results(Path(__file__).name, args, device, result)
    path = dl_utils.kept_model_path(args, result)
    if path is None:
        return 130
    explain_first_epoch(result["history"], args.max_shift)
    short_run_note(args)
    return finish(args, model, model_kwargs, loaders, device, result, path)


def explain_first_epoch(history, max_shift):
    """Training accuracy below validation accuracy looks wrong: say why, when it is."""
    train, val = history["train_acc"][0], history["val_acc"][0]
    if train >= val:
        return
    how = "on shifted images, " if max_shift else ""
    dl_utils.prose(f"""
        Epoch 1's training accuracy ({100 * train:.2f}%) is below its validation
        accuracy ({100 * val:.2f}%): it is measured {how}during the epoch, batch by
        batch, while the network is still learning (its first batches were read by
        random weights); validation is scored after the epoch, by the weights as they
        ended it, on unshifted images.""")


def short_run_note(args):
    """--epochs under 5 with shifts: a short run is no test of augmentation. The numbers
    were measured with this lesson: --subset 5000 --epochs 1 (or 10) --max-shift 2
    against --max-shift 0, seeds 0-2, paired by seed (make tables' method)."""
    if args.epochs >= 5 or not args.max_shift or args.arch != "cnn":
        return
    dl_utils.prose("""
        Shifts pay off over longer training, not in one short run: shifted images are
        harder to learn. Measured on 5,000 training images, seeds 0-2 (validation
        accuracy, shifts minus none, 95% interval): after 1 epoch -0.18 [-3.43, +3.07]
        points, no clear difference (one run can land on either side); after 10 epochs
        +0.51 [+0.00, +1.02], higher on all three seeds.""")


def training_curve_label(max_shift):
    """Augmented training images are harder than clean ones: their curve sits lower."""
    return "training (augmented images)" if max_shift else "training"


def compare_with_mlp(args, metrics, result, n_params):
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
    rows = [["SimpleNN (03, MLP)", mlp_params, mlp_acc, mlp_sec,
             len(mlp["history"]["seconds"])],
            ["SmallCNN (06)", n_params, cnn_acc, cnn_sec,
             len(result["history"]["seconds"])]]
    dl_utils.print_table(["model", "parameters", "test accuracy (95% interval)",
                          "training time", "epochs"],
                         [[name, f"{p:,}", dl_utils.format_accuracy(acc, 10_000),
                           f"{sec:.1f} s", epochs]
                          for name, p, acc, sec, epochs in rows])
    print(dl_utils.changed_settings_note(mlp.get("changed_settings")))
    dl_utils.prose(f"""
        Test errors: MLP {round((1 - mlp_acc) * 10000)}, CNN
        {round((1 - cnn_acc) * 10000)} per 10,000 images; the CNN has
        {n_params / mlp_params:.0%} of the MLP's parameters and took
        {cnn_sec / mlp_sec:.1f}x its training time: each weight of a filter is used at
        every position of the image, many multiply-adds per parameter.""")
    if cnn_acc <= mlp_acc:
        print("This time the CNN did not win: too few epochs or images for its "
              "structure?")
        return
    extras = [f"shifts of up to {args.max_shift} px"] if args.max_shift else []
    if args.schedule == "onecycle":
        extras.append("a one-cycle schedule")
    if extras:
        dl_utils.prose(f"""
            The CNN also had {' and '.join(extras)}, which the MLP did not: this table
            alone cannot say how much of the gap the structure earns. The CNN-vs-MLP
            table of docs/results.md (`make tables`) gives the MLP the same recipe.""")


def plot_filters(model, show):
    """The 3x3 filters of the first convolution: what pattern each one responds to."""
    weights = model.block1[0].weight.detach().cpu()[:, 0]  # [c1, 3, 3]
    rows = math.ceil(len(weights) / 8)  # 8 filters a row
    fig, axes = dl_utils.image_grid(rows, 8, (1.3, 1.4))
    limit = weights.abs().max()
    for i, (ax, w) in enumerate(zip(axes.flat, weights)):
        ax.imshow(w.numpy(), cmap="bwr", vmin=-limit.item(), vmax=limit.item())
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
    axes[0, 0].imshow(image[0].cpu().numpy(), cmap="gray")
    axes[0, 0].set_title("input", fontsize=8)
    row = 1
    for maps, label in ((maps1, "block 1: 14x14"), (maps2, "block 2: 7x7")):
        for i, m in enumerate(maps):
            ax = axes[row + i // cols, i % cols]
            ax.imshow(m.numpy(), cmap="viridis")
        axes[row, 0].set_title(label, fontsize=8, loc="left")
        row += math.ceil(len(maps) / cols)
    fig.suptitle("Feature maps of one test digit: where each filter fires")
    dl_utils.save_figure(fig, "06_feature_maps.png", show)


def finish(args, model, model_kwargs, loaders, device, result, path):
    """Test once, save, draw the schedule, compare with the MLP, look inside the CNN."""
    dl_utils.section(f"Kept model: epoch {result['best_epoch']} (best validation "
                     "accuracy)")
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.save_run_results(Path(__file__).name, args, device, result, metrics)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(path, args, model, model_kwargs, result, metrics, device,
                             defaults=vars(parse_args([])))
    dl_utils.plot_training_history(result["history"],
                                   f"06_training_history_{args.arch}.png",
                                   f"{type(model).__name__} on MNIST, lesson 6's "
                                   "recipe",
                                   args.show,
                                   train_label=training_curve_label(args.max_shift))
    if args.schedule == "onecycle":
        plot_schedule(args, len(loaders[0]), args.show)
    if args.arch == "cnn":
        dl_utils.section("CNN vs MLP")
        compare_with_mlp(args, metrics, result, dl_utils.count_parameters(model))
        dl_utils.section("Inside the CNN")
        plot_filters(model, args.show)
        plot_feature_maps(model, loaders[2].X[0], args.show)
    if result["status"] == "interrupted":
        state = dl_utils.display_path(dl_utils.training_state_path(args.checkpoint))
        print("Interrupted: the best epoch so far is in "
              f"{dl_utils.display_path(path)}; go on with --resume {state}")
        return 130
    print(f"\nNext: python 04_load_model.py --checkpoint {dl_utils.display_path(path)}"
          "\n      python 06b_other_writers.py (other people's handwriting)")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
