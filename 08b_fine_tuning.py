"""Lesson 8b: fine-tuning: teach a trained network a new kind of digit, count the cost.

Lesson 8 showed lesson 6's CNN a folder of digits unlike MNIST's and counted its
mistakes. This lesson fixes them the cheapest way there is: keep training the trained
network, briefly, on some images of the new kind ("fine-tuning"), then test it on
images of the folder it never saw. Three questions, each measured:

    did it adapt?       held-out images of the folder, before and after, paired
    could it be luck?   McNemar's exact test on the predictions that changed
    what did it cost?   the same two questions on digits as MNIST stores them
                        (forgetting)

The step is not small: Adam's usual 1e-3, a third of lesson 6's peak, with a fresh
Adam, whose first steps move every weight by about the learning rate (fine_tune says
why). Part of what "forgetting" measures may be that first jolt: --lr 1e-4 separates it
from the new data.

The folder is lesson 8's (one subfolder per digit), decoded once into memory as
lessons 2-7 hold MNIST: lesson 8's DataLoader pipeline is the standard road for large
data; a few hundred small images are faster as two tensors. By default it is lesson
8's export: MNIST validation digits drawn on lesson 9's pad and turned 30 degrees.

Your own hand: on lesson 9's page, draw a digit, press its "save as" button, and repeat
(10 of each digit is enough to see a change). The drawings go to data/my_drawings/, one
subfolder per digit; then run this lesson with --folder data/my_drawings.

Run it (after 06, whose CNN it fine-tunes):
    python 08b_fine_tuning.py                          # lesson 8's turned MNIST sample
    python 08b_fine_tuning.py --lr 1e-4                # a tenth of the step: less?
    python 08b_fine_tuning.py --lr 1e-2                # a bigger step: more forgetting?
    python 08b_fine_tuning.py --optimizer sgd --lr 0.01  # steps sized by the gradient
    python 08b_fine_tuning.py --train-only classifier  # convolutions frozen: less?
    python 08b_fine_tuning.py --rotate 0               # upright drawings: less to fix
    python 08b_fine_tuning.py --folder data/my_drawings  # your drawings (lesson 9)
Then: python 04_load_model.py --checkpoint models/cnn_finetuned.pt
Exercises: exercises/ex08b_fine_tuning.py, checked by python exercises/check.py 08b
"""

import copy
import inspect
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
EXPORT_DIR = dl_utils.OUTPUT_DIR / "data" / "mnist_png"  # lesson 8's default folder
PER_CLASS = 50  # images per digit in the export, as in lesson 8: 500 images
ROTATE = 30  # degrees the exported digits are turned, as in lesson 8
SHARE = 0.5  # share of each digit used to fine-tune; the rest is held out to judge it
NUM_EPOCHS = 3  # fixed in advance: the held-out images must choose nothing
# The learning rate: Adam's usual step, a third of lesson 6's peak (3e-3), not a small
# one. Chosen among 1e-4, 3e-4, 1e-3 and 3e-3 on another export (images 50-99 of each
# digit), with lesson 6's CNN of 32 and 64 filters: 1e-4 barely moved; 1e-3, not the
# best there, forgot less.
LR = 1e-3
# Or "sgd": SGD with momentum 0.9, whose first step is lr x the gradient, so a weight
# with a small gradient moves little (a fresh Adam's first steps move every weight by
# about lr). Try --optimizer sgd --lr 0.01 to separate "new data" from "a large first
# step".
OPTIMIZER = "adam"
BATCH_SIZE = 32  # 250 images: 8 steps an epoch
MAX_SHIFT = 2  # augmentation while fine-tuning: lesson 6's random shifts
TRAIN_ONLY = "all"  # which weights move: "all", or "classifier" (convolutions frozen)
FORGET_IMAGES = 1000  # MNIST validation images (none in the folder): forgetting
SEED = 0
CNN_CHECKPOINT = dl_utils.MODELS_DIR / "cnn.pt"  # what lesson 6 saves
FINETUNED = dl_utils.MODELS_DIR / "cnn_finetuned.pt"


# ---- 1. The folder, in memory ----------------------------------------------------
def prepare(image, name):
    """Lesson 8's "auto" preparation: an image already in MNIST's format as it is; any
    other (a photo, a drawing) cropped, scaled and centred as lesson 4 does."""
    if dl_utils.looks_like_mnist(image):
        return np.asarray(image.convert("L"))
    return dl_utils.digit_from_gray(image, name)


def stratified_split(labels, share, generator):
    """Indices (first, rest): about `share` of every class in first, the others in rest.

    Stratified: each class is split on its own, so both parts keep the folder's class
    balance (a plain random split of a small folder can leave a digit out of one part).
    Seeded: the same split on every run. Disjoint by construction: every index is put in
    exactly one of the two lists.
    """
    labels = torch.as_tensor(labels)
    first, rest = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        k = round(share * len(idx))
        first += idx[:k].tolist()
        rest += idx[k:].tolist()
    return sorted(first), sorted(rest)


# ---- 2. Fine-tuning: lesson 3's loop, continued from trained weights -------------
def fine_tune(model, loader, args, device):
    """Lesson 3's training loop (train_epoch), for a fixed number of epochs.

    Fine-tuning continues training a model that already works, on new data, so that
    it adapts rather than starts over. Adam starts fresh: the trained run's optimizer
    state belongs to its data. A fresh Adam divides each gradient by its own running
    size, which on the first steps is that gradient's size: so its first steps move
    every weight by about lr, whatever its gradient (Kingma & Ba 2015, sections 2-3;
    lesson 03b's --check-resume measures it). At lr 1e-3 that is a larger move than
    lesson 6's weights saw at the end of their schedule (near 1e-8). The usual
    remedies: a learning rate 10 to 100 times below training's peak (--lr 1e-4), a
    warm-up that grows lr over the first steps, or smaller rates for the early layers
    than for the classifier (ULMFiT's discriminative fine-tuning, Howard & Ruder 2018).
    """
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(trainable(model, args.train_only), lr=args.lr,
                                    momentum=0.9)
    else:
        optimizer = torch.optim.Adam(trainable(model, args.train_only), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, args.epochs + 1):
        try:
            loss, acc = dl_utils.train_epoch(model, loader, loss_fn, optimizer, device,
                                             desc=f"fine-tune {epoch}")
        except dl_utils.DivergenceError as err:
            raise dl_utils.FriendlyError(f"fine-tuning diverged ({err}) with lr "
                                         f"{args.lr}: try a smaller --lr; nothing was "
                                         "saved") from err
        print(f"  epoch {epoch}: loss {loss:.4f}, accuracy {100 * acc:.1f}% (on the "
              "fine-tuning images, shifted)")


class FrozenBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that always normalizes with its stored statistics and never updates
    them, in training mode too (torchvision.ops.FrozenBatchNorm2d, the tool of frozen
    detection backbones, does the same). requires_grad=False freezes a batch norm's
    scale and shift, but in training mode it would still normalize with each batch's
    statistics and overwrite its running averages (no gradient involved): a "frozen"
    block would drift to the new images. The same weights and state_dict as
    nn.BatchNorm2d, so the saved model loads as the CNN it was."""

    def forward(self, x):
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight,
                            self.bias, training=False, eps=self.eps)


def freeze_batch_norms(model):
    """Every nn.BatchNorm2d outside the classifier replaced by a FrozenBatchNorm2d
    holding its numbers. Lesson 6's CNN has none by default; a checkpoint trained with
    batch norm keeps MNIST's statistics this way."""
    for where, parent in list(model.named_modules()):
        if where.startswith("classifier"):
            continue
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d:
                frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
                frozen.load_state_dict(child.state_dict())
                frozen.requires_grad_(False)
                setattr(parent, name, frozen.to(child.running_mean.device))


def trainable(model, train_only):
    """The parameters fine-tuning may move. "all": every weight. "classifier": the
    convolution blocks are frozen (requires_grad=False: autograd computes no gradient
    for them, and the optimizer is not given them), so they keep the strokes and
    shapes MNIST taught them and only the classifier learns: fewer numbers to fit from
    few images, and less to forget. Whether that is enough here is measured, not
    assumed: python 08b_fine_tuning.py --train-only classifier."""
    for name, p in model.named_parameters():
        p.requires_grad = train_only == "all" or name.startswith("classifier.")
    if train_only != "all":  # a frozen block's batch norm keeps MNIST's statistics too
        freeze_batch_norms(model)
    chosen = [p for p in model.parameters() if p.requires_grad]
    if not chosen:
        raise dl_utils.FriendlyError(f"--train-only {train_only}: this model has no "
                                     "layer named classifier (lesson 6's CNN has)")
    total = sum(p.numel() for p in model.parameters())
    print(f"Trainable: {sum(p.numel() for p in chosen):,} of {total:,} parameters "
          f"({train_only})")
    return chosen


# ---- 3. Judging it: the same images before and after, paired ---------------------
def changed_predictions(before, after, y):
    """On the same images: how many went wrong -> right ("fixed"), and right ->
    wrong ("broken")."""
    ok_before = before.argmax(dim=1) == y
    ok_after = after.argmax(dim=1) == y
    fixed = int((~ok_before & ok_after).sum())
    broken = int((ok_before & ~ok_after).sum())
    return fixed, broken


def coin_flip_p(fixed, broken) -> float:
    """McNemar's exact test. If fine-tuning changed nothing real, each changed
    prediction is a fair coin flip between "fixed" and "broken"; the p-value is the
    chance that fair coins split at least this unevenly (two-sided): 0 against 4 is
    0.125, not rare enough; 0 against 21 is 1e-6. (The normal approximation,
    |b - c| > 1.96 sqrt(b + c), calls 0 against 4 clear: with counts this small it is
    too eager.)"""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n  # as uneven, one side
    return min(1.0, 2 * tail)


def verdict(fixed, broken, better, worse):
    """One computed phrase: `better`, `worse`, or that the counts cannot tell."""
    if coin_flip_p(fixed, broken) >= 0.05:
        return "no clear difference"
    return better if fixed > broken else worse


def accuracy(probs, y) -> float:
    return (probs.argmax(dim=1) == y).float().mean().item()


def before_and_after(before, after, y, what):
    """Held-out accuracy before and after, and which predictions changed."""
    n = len(y)
    dl_utils.print_table(
        ["held-out images of the folder", "accuracy (95% interval)"],
        [[f"{what}, before", dl_utils.format_accuracy(accuracy(before, y), n)],
         ["after fine-tuning", dl_utils.format_accuracy(accuracy(after, y), n)]])
    fixed, broken = changed_predictions(before, after, y)
    p = coin_flip_p(fixed, broken)
    said = verdict(fixed, broken, "it adapted", "it got worse")
    dl_utils.prose(f"""
        The same {n} images before and after: {fixed} went from wrong to right,
        {broken} from right to wrong (McNemar's exact p = {p:.2g}): {said}. Those
        counts are the honest comparison (a paired one, like the seed-by-seed
        differences of lessons 5 and 7): each interval above ignores that both rows
        scored the same images, so overlapping intervals can still hide a real
        change.""")
    return fixed, broken


def forgetting(original, tuned, device, n=FORGET_IMAGES):
    """Did it forget? Both models on digits as MNIST stores them: the last n
    validation images (lesson 8's export takes the first of each digit), paired, as
    above."""
    val = dl_utils.load_mnist_data(device=device)[1]
    loader = dl_utils.TensorLoader(val.X[-n:], val.y[-n:], 250)
    before, y = dl_utils.predict_all(original, loader, device)
    after, _ = dl_utils.predict_all(tuned, loader, device)
    fixed, broken = changed_predictions(before, after, y)
    p = coin_flip_p(fixed, broken)
    said = verdict(fixed, broken, "it got better there too",
                   "it forgot some of what it knew")
    dl_utils.prose(f"""
        Digits as MNIST stores them ({n:,} validation images, none in the folder; they
        are among those that chose lesson 6's epoch, so "before" is a little
        flattered): {dl_utils.format_accuracy(accuracy(before, y), n)} before,
        {dl_utils.format_accuracy(accuracy(after, y), n)} after; {fixed} wrong to
        right, {broken} right to wrong (p = {p:.2g}): {said}.""")
    return accuracy(before, y), accuracy(after, y)


# ---- The lesson ------------------------------------------------------------------
def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--folder", default=None,
                        help="a folder with one subfolder of images per digit, 0 to 9 "
                             "(default: lesson 8's export in "
                             f"{dl_utils.display_path(EXPORT_DIR)})")
    parser.add_argument("--per-class", type=dl_utils.positive_int, default=PER_CLASS,
                        help="images per digit in the export (default: %(default)s)")
    parser.add_argument("--rotate", type=float, default=ROTATE,
                        help="degrees the exported digits are turned "
                             "(default: %(default)s)")
    parser.add_argument("--share", type=dl_utils.fraction, default=SHARE,
                        help="share of each digit to fine-tune on; the rest judges it "
                             "(default: %(default)s)")
    parser.add_argument("--epochs", type=dl_utils.positive_int, default=NUM_EPOCHS,
                        help="fine-tuning epochs (default: %(default)s)")
    parser.add_argument("--lr", type=dl_utils.positive_float, default=LR,
                        help="fine-tuning learning rate (default: %(default)s)")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default=OPTIMIZER,
                        help="a fresh Adam, or SGD with momentum 0.9 "
                             "(default: %(default)s)")
    parser.add_argument("--batch-size", type=dl_utils.positive_int, default=BATCH_SIZE,
                        help="images per step (default: %(default)s)")
    parser.add_argument("--max-shift", type=int, choices=range(0, 5), default=MAX_SHIFT,
                        help="augmentation: largest random shift in pixels "
                             "(default: %(default)s)")
    parser.add_argument("--train-only", choices=["all", "classifier"],
                        default=TRAIN_ONLY,
                        help="which weights fine-tuning moves (default: %(default)s)")
    parser.add_argument("--cnn", default=str(CNN_CHECKPOINT),
                        help="the CNN to fine-tune (default: "
                             f"{dl_utils.display_path(CNN_CHECKPOINT)})")
    parser.add_argument("--checkpoint", type=dl_utils.output_file,
                        default=str(FINETUNED),
                        help="where to save the fine-tuned CNN (default: "
                             f"{dl_utils.display_path(FINETUNED)})")
    dl_utils.add_common_args(parser, seed=SEED)
    args = parser.parse_args(argv)
    if not 0 < args.share < 1:
        parser.error("--share must be above 0 and below 1")
    if not -90 <= args.rotate <= 90:  # (also refuses nan)
        parser.error("--rotate must be between -90 and 90 degrees")
    return args


def the_folder(args):
    """The folder (lesson 8's export unless --folder), as uint8 tensors, with its
    counts."""
    if args.folder:
        folder = Path(args.folder).expanduser()
    else:
        name = f"validation_{args.per_class}_per_digit_drawn_rotated_{args.rotate:g}"
        folder = dl_utils.export_mnist_pngs(EXPORT_DIR / name, args.per_class,
                                            args.rotate)
    print(f"Folder: {dl_utils.display_path(folder)}")
    X, y, paths = dl_utils.read_digit_folder(folder, prepare)
    print(f"In memory: X {list(X.shape)} {X.dtype}, y {list(y.shape)} {y.dtype}")
    counts = []
    for digit in y.unique().tolist():
        counts.append(f"{digit}: {int((y == digit).sum())}")
    print(f"Images per digit: {', '.join(counts)}")
    return folder, X, y


def starting_cnn(args, device):
    """Lesson 6's trained CNN, or (if it is not trained yet) a fresh one, said so."""
    if Path(args.cnn).exists():
        model, checkpoint = dl_utils.load_checkpoint(args.cnn, device=device)
        return model, checkpoint.get("model_kwargs", {}), "lesson 6's trained CNN"
    print(f"No {dl_utils.display_path(args.cnn)}: fine-tuning a freshly initialized "
          "CNN instead (run 06_convolutional_network.py first for the real thing).")
    model = dl_utils.SmallCNN()  # lesson 6's defaults
    kwargs = {}  # every constructor argument at its default, recorded for lesson 4
    for name, parameter in inspect.signature(dl_utils.SmallCNN).parameters.items():
        kwargs[name] = parameter.default
    return model.to(device), kwargs, "a fresh CNN"


def loaders(X, y, args, device, generator):
    """(fine-tuning loader, held-out loader): a stratified split, normalized as MNIST
    is."""
    tune_idx, held_idx = stratified_split(y, args.share, generator)
    if not tune_idx or not held_idx:
        raise dl_utils.FriendlyError("too few images per digit to split into a "
                                     "fine-tuning part and a held-out part: add images "
                                     "or change --share")
    print(f"Split: {len(tune_idx)} images to fine-tune on, {len(held_idx)} held out "
          "(disjoint; every digit in both parts in the same proportion)")
    X = dl_utils.normalize(X).to(device)  # uint8 [N, 28, 28] -> float [N, 1, 28, 28]
    y = y.to(device)
    tune = dl_utils.TensorLoader(X[tune_idx], y[tune_idx], args.batch_size,
                                 shuffle=True, generator=generator)
    return (dl_utils.ShiftedLoader(tune, args.max_shift),
            dl_utils.TensorLoader(X[held_idx], y[held_idx], 256))


def main(argv=None):
    args = parse_args(argv)
    dl_utils.setup_figures(args.show)
    dl_utils.section("Setup")
    device = dl_utils.get_device(args.device)
    generator = dl_utils.set_seed(args.seed)
    dl_utils.section("The folder, decoded once into memory")
    folder, X, y = the_folder(args)
    tune, held = loaders(X, y, args, device, generator)
    dl_utils.section("Before: the CNN on the held-out images")
    model, kwargs, what = starting_cnn(args, device)
    original = copy.deepcopy(model)  # kept, to measure forgetting against
    before, held_y = dl_utils.predict_all(model, held, device)
    print(f"{what}: {dl_utils.format_accuracy(accuracy(before, held_y), len(held_y))}")
    dl_utils.section(f"Fine-tuning: {args.epochs} epochs on {len(tune.dataset)} "
                     f"images, lr {args.lr:g}")
    fine_tune(model, tune, args, device)
    dl_utils.section("After: did it adapt?")
    after, _ = dl_utils.predict_all(model, held, device)
    before_and_after(before, after, held_y, what)
    dl_utils.section("And what did it forget?")
    mnist_before, mnist_after = forgetting(original, model, device)
    dl_utils.section("Saving")
    metrics = {"heldout_acc_before": accuracy(before, held_y),
               "heldout_images": len(held_y),
               "heldout_acc_after": accuracy(after, held_y),
               "mnist_val_acc_before": mnist_before,
               "mnist_val_acc_after": mnist_after}
    trained_on = (f"MNIST's training split (lesson 6's CNN), then {len(tune.dataset)} "
                  f"images of {dl_utils.display_path(folder)}")
    hparams = {"lr": args.lr, "optimizer": args.optimizer, "epochs": args.epochs,
               "train_only": args.train_only}  # how it was fine-tuned, for lesson 4
    dl_utils.save_checkpoint(args.checkpoint, model, kwargs, device=str(device),
                             metrics=metrics, folder=str(folder), trained_on=trained_on,
                             hparams=hparams)
    print(f"Saved the fine-tuned CNN to {dl_utils.display_path(args.checkpoint)}")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
