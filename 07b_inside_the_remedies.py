"""Lesson 7b: inside the remedies: dropout, batch norm and weight decay, by numbers.

Lesson 7 measured what dropout, batch norm and weight decay do for a network that
overfits. This short lesson opens them up, one small experiment each, and then shows
the habit they make necessary: model.eval().

    1. Dropout on a tensor of ones: train mode zeroes a share p and scales the rest
       by 1 / (1 - p); eval mode passes everything through.
    2. Batch norm by hand: the layer's train-mode output recomputed from the batch's
       own mean and variance; its running statistics; eval mode.
    3. Weight decay: Adam(weight_decay) against AdamW, on two weights, at two strengths.
    4. A network with dropout AND batch norm, trained as in lesson 7: its accuracy in
       eval mode and in train mode, and what a batch of one image does in train mode.
       Saved for lesson 4, whose eval() section then shows outputs that differ.

Run it:
    python 07b_inside_the_remedies.py                  # about half a minute
    python 07b_inside_the_remedies.py --dropout 0.2    # a milder dropout
Then: python 04_load_model.py --checkpoint models/regularized_mlp_dropout_batchnorm.pt
Exercises: exercises/ex07b_remedies.py, checked by python exercises/check.py 07b
"""

import copy

import torch
import torch.nn as nn

import dl_utils

# ---- Settings: each has a flag (-h lists them) ----
SUBSET = 2000  # training images: lesson 7's few, which a wide network memorizes
HIDDEN_SIZES = (256, 256)  # lesson 7's baseline width
NUM_EPOCHS = 20  # as in lesson 7
BATCH_SIZE = 64  # as in lessons 3 to 7
LR = 1e-3  # Adam's usual step size
DROPOUT = 0.5  # lesson 7's default strength
WEIGHT_DECAYS = (0.01, 1.0)  # AdamW's default, and lesson 7's (which make tables chose)
SMALL_BATCH = 8  # batch norm in train mode depends on the batch: how much, when small
SEED = 0
# for lesson 4
CHECKPOINT = dl_utils.MODELS_DIR / "regularized_mlp_dropout_batchnorm.pt"


class DropoutBatchNormMLP(nn.Module):
    """Linear -> BatchNorm1d -> ReLU -> Dropout per hidden layer, then Linear: lesson
    7's RegularizedMLP with both layers switched on.

    The Linear before batch norm needs no bias: batch norm subtracts the mean (and with
    it any bias) and adds its own learned shift.
    """

    def __init__(self, hidden_sizes=HIDDEN_SIZES, dropout=DROPOUT, input_size=784,
                 num_classes=10):
        super().__init__()
        layers = [nn.Flatten()]
        width = input_size
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size, bias=False))
            layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


# ---- 1. Dropout ------------------------------------------------------------------
def dropout_by_numbers(p, n=100_000):
    """nn.Dropout(p) on n ones, in train and in eval mode: what it keeps, what it
    outputs."""
    dropout = nn.Dropout(p)
    ones = torch.ones(n)
    train_out = dropout.train()(ones)
    eval_out = dropout.eval()(ones)
    kept = train_out[train_out != 0]
    headers = ["mode", "share zeroed", "value of the others", "mean output"]
    dl_utils.print_table(headers, [
        ["train", f"{(train_out == 0).float().mean():.4f}", f"{kept.unique().tolist()}",
         f"{train_out.mean():.4f}"],
        ["eval", f"{(eval_out == 0).float().mean():.4f}",
         f"{eval_out.unique().tolist()}", f"{eval_out.mean():.4f}"]])
    dl_utils.prose(f"""
        In train mode each value is zeroed with probability p = {p} and the survivors
        are multiplied by 1 / (1 - p) = {1 / (1 - p):g}, so that the average stays 1:
        the next layer sees inputs of the same size in training and in use. Each step
        trains another random sub-network, so no unit can count on a particular other
        one. In eval mode dropout does nothing at all: the prediction is
        deterministic.""")


# ---- 2. Batch norm ---------------------------------------------------------------
def batch_norm_by_hand(generator):
    """BatchNorm1d's train-mode output and running statistics, recomputed by hand."""
    X = 5 + 2 * torch.randn(64, 3, generator=generator)  # a batch: 64 images, 3 units
    bn = nn.BatchNorm1d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))  # gamma, the learned scale
        bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))  # beta, the learned shift
        out = bn.train()(X)
    mean = X.mean(dim=0)  # the batch's own statistics
    var = X.var(dim=0, unbiased=False)
    hand = (X - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    running = 0.9 * torch.zeros(3) + 0.1 * mean  # momentum 0.1, from a start at 0
    running_var = 0.9 * torch.ones(3) + 0.1 * X.var(dim=0, unbiased=True)  # start at 1
    with torch.no_grad():
        eval_out = bn.eval()(X)
    eval_hand = ((X - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight
                 + bn.bias)
    differences = {"train output": hand - out,
                   "running mean": running - bn.running_mean,
                   "running variance (unbiased)": running_var - bn.running_var,
                   "eval output (running statistics)": eval_hand - eval_out}
    differences = {k: v.abs().max().item() for k, v in differences.items()}
    rows = [[k, f"{v:.2g}"] for k, v in differences.items()]
    dl_utils.print_table(["batch norm, 64 images x 3 units: by hand vs the layer",
                          "largest difference"], rows)
    dl_utils.prose("""
        Train mode: each unit is standardized with the mean and the (biased) variance of
        the batch it is in, then scaled by gamma and shifted by beta, both learned. The
        running mean and variance move 10% of the way (momentum 0.1) towards each
        batch's statistics; the running variance uses the unbiased estimate. Eval mode
        uses the running numbers instead: every image is standardized the same way,
        whatever else is in its batch.""")
    return differences


# ---- 3. Weight decay -------------------------------------------------------------
def decay_demo(lr, weight_decay, steps):
    """Two weights at 1.0 with the same weight decay: one gets large gradients, one
    none.

    The large gradient alternates +10, -10: it moves the weight back and forth but not
    away, so any drift is the decay's doing. Returns {optimizer: [weight 1, weight 2]}.
    """
    final = {}
    for name, cls in (("Adam(weight_decay)", torch.optim.Adam),
                      ("AdamW(weight_decay)", torch.optim.AdamW)):
        w = torch.ones(2, requires_grad=True)
        optimizer = cls([w], lr=lr, weight_decay=weight_decay)
        for step in range(steps):
            w.grad = torch.tensor([10.0 if step % 2 else -10.0, 0.0])  # set by hand
            optimizer.step()
        final[name] = w.detach().tolist()
    return final


def explain_decoupled_decay(args, steps):
    """Measured: Adam's L2 penalty vs AdamW's decoupled decay, at two strengths."""
    rows = []
    for wd in WEIGHT_DECAYS:
        for name, w in decay_demo(args.lr, wd, steps).items():
            rows.append([name, f"{wd:g}", f"{w[0]:.3f}", f"{w[1]:.3f}"])
    dl_utils.print_table(["optimizer", "weight decay", "weight with gradients ±10",
                          "weight with no gradient"], rows)
    dl_utils.prose(f"""
        Both weights start at 1.0, lr {args.lr}, {steps} steps (as many as the training
        below takes). Adam(weight_decay) adds wd * w to the gradient (an "L2 penalty")
        and then divides the whole gradient by its running size. The busy weight's large
        gradients drown the decay: it barely shrinks. The idle weight's only gradient is
        the decay itself, which Adam's division turns into a step of about lr whatever
        wd is: compare its two rows. AdamW keeps the decay out of that division and
        multiplies every weight by (1 - lr * wd) per step: the same pull for every
        weight, and a strength that means what it says (Loshchilov & Hutter, 2019).
        Lesson 7 uses AdamW.""")


# ---- 4. A trained network with both layers: eval mode for real -------------------
def accuracy_in_mode(model, loader, train_mode):
    """Accuracy with the layers in train or eval mode, measured on a copy of the model.

    A copy, because batch norm in train mode updates its running statistics with every
    batch it sees, even under torch.no_grad(): evaluating in train mode would change
    the model. (dl_utils.evaluate_model always switches to eval mode: not usable here.)
    """
    model = copy.deepcopy(model).train(train_mode)
    correct = n = 0
    with torch.no_grad():
        for X, y in loader:
            correct += (model(X).argmax(dim=1) == y).sum().item()
            n += len(y)
    return correct / n


def mode_table(model, val_loader):
    """Validation accuracy in eval mode, and in train mode with large and small
    batches."""
    small = dl_utils.TensorLoader(val_loader.X, val_loader.y, SMALL_BATCH)
    accs = [accuracy_in_mode(model, val_loader, train_mode=False),
            accuracy_in_mode(model, val_loader, train_mode=True),
            accuracy_in_mode(model, small, train_mode=True)]
    dl_utils.print_table(["", "eval mode %",
                          f"train mode, batches of {val_loader.batch_size:,} %",
                          f"train mode, batches of {SMALL_BATCH} %"],
                         [["validation accuracy", *(f"{100 * a:.2f}" for a in accs)]])
    dl_utils.prose(f"""
        Train mode: dropout silences random units (another answer on every call), and
        batch norm standardizes with the statistics of the current batch: with
        {val_loader.batch_size:,} images they are close to the learned ones, with
        {SMALL_BATCH} they are not. Forget model.eval() when you evaluate or serve a
        model, and you get the train-mode columns.""")


def batch_norm_statistics(model, X):
    """What the trained batch norm remembers, against the validation set's
    statistics."""
    linear = model.layers[1]  # the first hidden layer's pair
    norm = model.layers[2]
    with torch.no_grad():
        h = linear(model.layers[0](X))  # what the batch norm layer receives: [N, 256]
    rows = [[f"unit {i}", f"{norm.running_mean[i]:.3f}", f"{h[:, i].mean():.3f}",
             f"{norm.running_var[i]:.3f}", f"{h[:, i].var():.3f}"] for i in range(4)]
    dl_utils.print_table(["", "running mean", "mean over validation",
                          "running variance", "variance over validation"], rows)
    print(f"({norm.num_batches_tracked.item()} training batches were tracked.)")
    try:
        # a copy: train mode would update the statistics
        copy.deepcopy(model).train()(X[:1])
        one = "no error"
    except ValueError as err:  # BatchNorm1d cannot standardize a batch of one image
        one = f"ValueError: {err}"
    print(f"One image through a copy in train mode: {one}")
    variance_shift(model, X)


def variance_shift(model, X):
    """Each batch norm's running variance against the variance of what it receives in
    eval mode and with dropout on (median over units). The second sits after a
    Dropout."""
    rows = []
    ratios = []
    norms = [i for i, layer in enumerate(model.layers)
             if isinstance(layer, nn.BatchNorm1d)]
    for number, i in enumerate(norms, start=1):
        before = model.layers[:i]
        ratio = []
        for dropout_on in (False, True):
            before.eval()
            for layer in before:
                layer.train(dropout_on and isinstance(layer, nn.Dropout))
            with torch.no_grad():
                h = before(X)
            ratio.append((model.layers[i].running_var / h.var(dim=0)).median().item())
        model.eval()
        ratios.append(ratio)
        place = "before any dropout" if number == 1 else "after a Dropout"
        rows.append([f"batch norm {number} ({place})", f"{ratio[0]:.2f}",
                     f"{ratio[1]:.2f}"])
    dl_utils.print_table(["running variance / its input's variance (median over units)",
                          "eval mode", "dropout on"], rows)
    shifted = len(ratios) > 1 and ratios[1][0] > 1.1
    if shifted and abs(ratios[1][1] - 1) < abs(ratios[1][0] - 1):
        dl_utils.prose(f"""
            The second batch norm learned its statistics with dropout before it, which
            adds noise and so variance; in eval mode dropout is off, its input is
            calmer, and the running variance is {ratios[1][0]:.2f}x what it now sees:
            every unit is squeezed by 1/sqrt({ratios[1][0]:.2f}). A train/eval mismatch
            built into the architecture ("variance shift", Li et al. 2019): put dropout
            after the last batch norm only, or use less of it.""")


def train_model(args, loaders, device):
    """The network with both layers, trained with lesson 3's loop (dl_utils.fit)."""
    train_loader, val_loader, _ = loaders
    model_kwargs = {"hidden_sizes": list(args.hidden_sizes), "dropout": args.dropout}
    model = DropoutBatchNormMLP(**model_kwargs).to(device)
    dl_utils.introduce(model, train_loader,
                       f"for {len(train_loader.y):,} training images")
    dl_utils.section(f"Training: {args.epochs} epochs, Adam, lr {args.lr}")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    result = dl_utils.fit(model, train_loader, val_loader, optimizer, args.epochs,
                          device)
    return model, model_kwargs, result


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR,
                               num_epochs=NUM_EPOCHS)
    parser.set_defaults(subset=SUBSET)
    parser.add_argument("--hidden-sizes", type=dl_utils.positive_int, nargs="+",
                        default=list(HIDDEN_SIZES),
                        help="hidden layers (default: 256 256)")
    parser.add_argument("--dropout", type=dl_utils.fraction, default=DROPOUT,
                        help="dropout probability, in [0, 1) (default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file,
                        default=str(CHECKPOINT),
                        help="where to save the trained network (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device, loaders = dl_utils.setup(args)
    dl_utils.section(f"1. Dropout({args.dropout}) on ones")
    dropout_by_numbers(args.dropout)
    dl_utils.section("2. Batch norm, recomputed by hand")
    batch_norm_by_hand(torch.Generator().manual_seed(args.seed))
    dl_utils.section("3. Weight decay: why AdamW and not Adam(weight_decay=...)")
    explain_decoupled_decay(args, args.epochs * len(loaders[0]))
    model, model_kwargs, result = train_model(args, loaders, device)
    path = dl_utils.kept_model_path(args, result)
    if path is None:
        return 130
    dl_utils.section("4. model.eval() for real: the kept epoch in both modes")
    mode_table(model, loaders[1])
    batch_norm_statistics(model, loaders[1].X)
    dl_utils.section("The kept model on every split (the test set once: it chose "
                     "nothing)")
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(path, args, model, model_kwargs, result, metrics, device)
    print(f"Next: python 04_load_model.py --checkpoint {dl_utils.display_path(path)}")
    return 130 if result["status"] == "interrupted" else 0


if __name__ == "__main__":
    dl_utils.run_main(main)
