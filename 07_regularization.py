"""Lesson 7: overfitting on purpose, then the remedies for it, measured.

Every lesson so far has warned about overfitting; this one provokes it and fights it.
A wide network (784-256-256-10, 269,322 parameters) trained on only 2,000 images
memorizes them: its training accuracy reaches 100% while validation accuracy stalls
several points lower. Then each remedy is tried alone, under identical conditions (the
same images, epochs and seeds, lesson 3's training loop), and those that help are
combined:

    dropout         silence a random share of the hidden units at every training step
    weight decay    shrink every weight a little towards zero at every step (AdamW)
    batch norm      standardize each hidden unit over the batch, then rescale
    augmentation    train on randomly shifted copies of the images (lesson 6's shifts)
    smaller model   fewer parameters: less room to memorize (and to learn)
    early stopping  keep the epoch with the best validation accuracy (every lesson does)

Remedies are judged on validation, over several seeds; the chosen configuration meets
the test set once. Then model.eval() for real: dropout and batch norm are the layers
that behave differently in training, and this lesson's models have them.

Run it:
    python 07_regularization.py                        # the README's table (about a minute)
    python 07_regularization.py --subset 10000         # five times the data: less to fix?
    python 07_regularization.py --remedies dropout --dropout 0.5   # one remedy, stronger
Then: python 04_load_model.py --checkpoint models/regularized_mlp.pt      # the chosen model
      python 04_load_model.py --checkpoint models/regularized_mlp_dropout_batchnorm.pt
                                                # a model where eval() matters
"""

import copy
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
SUBSET = 2000  # training images: few, so that a wide network can learn them by heart
HIDDEN_SIZES = (256, 256)  # 269,322 parameters for 2,000 images: plenty to memorize with
NUM_EPOCHS = 20  # the baseline reaches 100% training accuracy well before the end
BATCH_SIZE = 64  # as in lessons 3 to 6
LR = 1e-3  # Adam's usual step size, as in lesson 3
NUM_SEEDS = 4  # runs per configuration; 4 seeds give a usable interval (t = 3.18)
DROPOUT = 0.5  # share of hidden units zeroed at each training step; the strengths here
# are those with the best validation mean in `make tables`' sweep (README, lesson 7)
WEIGHT_DECAY = 1.0  # AdamW: each step multiplies every weight by 1 - LR * 1.0 (see below)
MAX_SHIFT = 1  # augmentation: lesson 6's random shifts, here of at most 1 pixel (the
# sweep measured 1 > 2 > 3 for this MLP; lesson 6's CNN, with pooling, takes 2)
SMALL_HIDDEN = (64,)  # the smaller model: one hidden layer of 64 units, 50,890 parameters
REMEDIES = ["dropout", "weight_decay", "batch_norm", "augmentation", "smaller"]
SEED = 0  # seeds SEED, SEED+1, ...: the same seed gives every configuration the same batches
CHECKPOINT = dl_utils.MODELS_DIR / "regularized_mlp.pt"  # the chosen configuration, seed 0
EVAL_DEMO_FILE = "dropout_batchnorm.pt"  # beside it: <name>_dropout_batchnorm.pt, for 04
RESULTS_FILE = dl_utils.RESULTS_DIR / "regularization.json"
LABELS = {"baseline": "baseline (none)", "dropout": "dropout", "weight_decay": "weight decay",
          "batch_norm": "batch norm", "augmentation": "augmentation",
          "smaller": "smaller model", "early_stopping": "early stopping"}


class RegularizedMLP(nn.Module):
    """An MLP whose hidden layers can have batch norm and dropout, in this order:
    Linear -> [BatchNorm1d] -> ReLU -> [Dropout], once per hidden layer, then Linear.

    Dropout(p) zeroes each hidden unit with probability p at every training step and
    multiplies the survivors by 1 / (1 - p), so that the layer's output keeps the same
    average; in eval mode it passes everything through unchanged. Each step trains a
    different random sub-network, so no unit can rely on a particular other one being
    there: the network has to spread what it knows, which memorizes less. Cost: noisier
    steps, so learning is slower; nothing at inference.
    BatchNorm1d standardizes each unit over the batch (mean 0, variance 1), then applies
    a learned scale and shift. Its main job is to make training fast and stable;
    because each image's output depends on which other images share its batch, it also
    adds noise, a mild regularizer. In eval mode it uses running averages of the
    training batches' statistics instead (section "model.eval() for real"). The Linear
    before it needs no bias: batch norm subtracts the mean (and with it any bias) and
    adds its own shift. Cost: a little computation per layer, and a behaviour that
    depends on the batch (a batch of one image cannot be standardized in train mode).
    """

    def __init__(self, hidden_sizes=HIDDEN_SIZES, dropout=0.0, batch_norm=False,
                 input_size=784, num_classes=10):
        super().__init__()
        layers, width = [nn.Flatten()], input_size  # [N, 1, 28, 28] -> [N, 784]
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR, num_epochs=NUM_EPOCHS)
    parser.set_defaults(subset=SUBSET)
    parser.add_argument("--hidden-sizes", type=dl_utils.positive_int, nargs="+",
                        default=list(HIDDEN_SIZES), help="the baseline's hidden layers "
                        "(default: 256 256)")
    parser.add_argument("--seeds", type=dl_utils.positive_int, default=NUM_SEEDS,
                        help="runs per configuration (default: %(default)s)")
    parser.add_argument("--remedies", nargs="+", choices=REMEDIES, default=REMEDIES,
                        help="which remedies to measure (default: all five; early stopping "
                             "is always measured, on the baseline)")
    parser.add_argument("--dropout", type=dl_utils.fraction, default=DROPOUT,
                        help="dropout probability, in [0, 1) (default: %(default)s)")
    parser.add_argument("--weight-decay", type=dl_utils.positive_float, default=WEIGHT_DECAY,
                        help="AdamW's weight decay (default: %(default)s)")
    parser.add_argument("--max-shift", type=int, choices=range(1, 5), default=MAX_SHIFT,
                        help="augmentation: largest random shift in pixels "
                             "(default: %(default)s)")
    parser.add_argument("--small-hidden", type=dl_utils.positive_int, nargs="+",
                        default=list(SMALL_HIDDEN),
                        help="the smaller model's hidden layers (default: 64)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file, default=str(CHECKPOINT),
                        help="where to save the chosen model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    parser.add_argument("--results", type=dl_utils.output_file, default=str(RESULTS_FILE),
                        help="where to write the measured results (default: "
                             f"{dl_utils.display_path(RESULTS_FILE)})")
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


# ---- The configurations: the baseline, and each remedy as one change to it ------------
def label(name):
    """A configuration's printed name; a combination is named after its parts, "a+b"."""
    return " + ".join(LABELS[part] for part in name.split("+"))


# Why each remedy should work, and what it costs (dropout and batch norm: RegularizedMLP;
# weight decay: make_optimizer; early stopping: honest_score):
# - augmentation: shifted copies are new, plausible images, so there is more to learn
#   from and less point in memorizing pixel positions. Costs: a shift per image per
#   epoch (the s/run column measures it), and the training curve is on harder images.
# - smaller model: fewer parameters cannot store 2,000 images as easily... but they also
#   learn less. Costs: nothing at training time; it may simply be worse (measured below).
# - early stopping: the weights of the epoch that did best on validation, before the
#   network specialized further on its training images. Costs: one evaluation per epoch.
def configurations(args, remedies=None):
    """{name: settings}: the baseline, then each remedy alone (default: those of --remedies)."""
    base = {"hidden_sizes": list(args.hidden_sizes), "dropout": 0.0, "batch_norm": False,
            "weight_decay": 0.0, "max_shift": 0}
    change = {"dropout": {"dropout": args.dropout},
              "weight_decay": {"weight_decay": args.weight_decay},
              "batch_norm": {"batch_norm": True},
              "augmentation": {"max_shift": args.max_shift},
              "smaller": {"hidden_sizes": list(args.small_hidden)}}
    return {"baseline": base, **{name: {**base, **change[name]}
                                 for name in remedies or args.remedies}}


def combine(configs, names):
    """One configuration with every change that the named remedies make to the baseline."""
    base = configs["baseline"]
    combined = dict(base)
    for name in names:
        combined.update({k: v for k, v in configs[name].items() if v != base[k]})
    return combined


def build_model(config):
    """The model a configuration asks for, and the arguments that rebuild it (04 uses them)."""
    kwargs = {"hidden_sizes": list(config["hidden_sizes"]), "dropout": config["dropout"],
              "batch_norm": config["batch_norm"]}
    return RegularizedMLP(**kwargs), kwargs


def make_optimizer(model, lr, weight_decay):
    """AdamW: Adam, plus weight decay applied to the weights directly ("decoupled").

    Weight decay shrinks every weight towards zero at each step, w <- w - lr * wd * w,
    so a weight stays large only while the data keeps pushing it: the network prefers
    small weights, which give smoother functions that memorize less. Cost: one more
    setting to tune, and too much of it underfits. Only the weight matrices decay:
    biases and batch norm's scale and shift set offsets and sizes, not how much the
    network can memorize, and shrinking them only gets in the way (nanoGPT does the same).
    Why not Adam(weight_decay=...)? That adds wd * w to the gradient (an "L2 penalty"
    in the loss), and Adam then divides the whole gradient by its running size: a
    weight with large gradients is hardly decayed at all, one with tiny gradients is
    decayed at full speed. decay_demo() measures it. AdamW keeps the decay out of that
    division: every weight shrinks by the same factor (Loshchilov & Hutter, 2019).
    With lr 1e-3 the factor per step is 1 - 1e-3 * wd: AdamW's default wd of 0.01 would
    shrink the weights by 0.6% over this lesson's 640 steps, which is nothing; wd = 1
    shrinks an unused weight to about half ("make tables" tries 0.1 and 5).
    """
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]  # biases, batch norm's scale/shift
    return torch.optim.AdamW([{"params": matrices, "weight_decay": weight_decay},
                              {"params": others, "weight_decay": 0.0}], lr=lr)


def decay_demo(lr, weight_decay, steps):
    """Two weights at 1.0 with the same weight decay: one gets large gradients, one none.

    The large gradient alternates +10, -10: it moves the weight back and forth but not
    away, so any drift is the decay's doing. Returns {optimizer: [weight 1, weight 2]}.
    """
    final = {}
    for name, cls in (("Adam(weight_decay): L2 added to the gradient", torch.optim.Adam),
                      ("AdamW(weight_decay): decoupled", torch.optim.AdamW)):
        w = torch.ones(2, requires_grad=True)
        optimizer = cls([w], lr=lr, weight_decay=weight_decay)
        for step in range(steps):
            w.grad = torch.tensor([10.0 if step % 2 else -10.0, 0.0])  # set by hand
            optimizer.step()
        final[name] = w.detach().tolist()
    return final


# ---- Training and scoring one run -------------------------------------------------------
def half_scorer(val_loader):
    """After each epoch, the accuracy on each half of the validation set (see honest_score)."""
    half = len(val_loader.y) // 2
    halves = {name: dl_utils.TensorLoader(val_loader.X[s], val_loader.y[s], 1000)
              for name, s in (("val_a_acc", slice(None, half)), ("val_b_acc", slice(half, None)))}
    return lambda model: {name: dl_utils.evaluate_model(model, loader)[1]
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


def train_run(name, config, seed, data, args, device, verbose=False):
    """Train one configuration with one seed; its measurements and kept model (None: ^C)."""
    train_loader, val_loader, train_eval = data
    dl_utils.set_seed(seed)  # the same initial randomness for every configuration...
    train_loader.generator.manual_seed(seed)  # ...and the same order of batches
    model, _ = build_model(config)
    model = model.to(device)
    optimizer = make_optimizer(model, args.lr, config["weight_decay"])
    shifted = dl_utils.ShiftedLoader(train_loader, config["max_shift"])  # 0: no shifts
    result = dl_utils.fit(model, shifted, val_loader, optimizer, args.epochs, device,
                          verbose=verbose, extra_eval=half_scorer(val_loader))
    if result["status"] == "diverged":
        raise dl_utils.FriendlyError(f"{name} diverged with lr {args.lr} (seed {seed}): "
                                     "try a smaller learning rate")
    if result["status"] == "interrupted":
        return None
    h = result["history"]
    return {"name": name, "seed": seed, "config": config, "model": model,
            "params": dl_utils.count_parameters(model), "history": h,
            "stopped_val_acc": honest_score(h), "last_val_acc": h["val_acc"][-1],
            "best_val_acc": result["best_val_acc"], "best_epoch": result["best_epoch"],
            "train_acc": dl_utils.evaluate_model(model, train_eval, device)[1],
            "seconds": result["train_seconds"]}


def train_all(configs, seeds, data, args, device, runs):
    """Every configuration with every seed, appended to `runs`; False after Ctrl-C."""
    done = {(r["name"], r["seed"]) for r in runs}
    for seed in seeds:
        for name, config in configs.items():
            if (name, seed) in done:  # e.g. the baseline run shown epoch by epoch
                continue
            run = train_run(name, config, seed, data, args, device)
            if run is None:
                return False
            runs.append(run)
            print(f"  seed {seed}  {label(name):<16} val {100 * run['stopped_val_acc']:6.2f}%"
                  f"  last epoch {100 * run['last_val_acc']:6.2f}%  train "
                  f"{100 * run['train_acc']:6.2f}%  ({run['seconds']:.1f} s)", flush=True)
    return True


# ---- Judging on validation ---------------------------------------------------------------
def summarize(runs):
    """Per configuration: mean ± SE over seeds of each measurement."""
    return dl_utils.summarize_runs(
        runs, "name", ("stopped_val_acc", "last_val_acc", "best_val_acc", "train_acc", "seconds"),
        constant=("params", "config"))


def paired(runs, name, key, other="baseline", other_key=None):
    """Seed-by-seed difference of `key` between two configurations (dl_utils.paired_by_seed)."""
    return dl_utils.paired_by_seed([r for r in runs if r["name"] == name],
                                   [r for r in runs if r["name"] == other], key, other_key)


def comparisons(runs):
    """Each configuration minus the baseline, plus early stopping: kept epoch minus last."""
    names = dict.fromkeys(r["name"] for r in runs if r["name"] != "baseline")
    found = {name: paired(runs, name, "stopped_val_acc") for name in names}
    found["early_stopping"] = paired(runs, "baseline", "stopped_val_acc",
                                     other_key="last_val_acc")
    return found


def table_rows(summary, found):
    """The validation table's rows (the README's table is the same, via `make tables`)."""
    points = dl_utils.points
    rows = []
    for name, e in summary.items():
        d = found.get(name)
        rows.append([label(name), f"{e['params']:,}",
                     points(e["stopped_val_acc"], e["stopped_val_acc_se"]),
                     "(reference)" if d is None else dl_utils.interval(d),
                     points(e["last_val_acc"], e["last_val_acc_se"]),
                     points(e["train_acc"], e["train_acc_se"]),
                     f"{e['seconds']:.1f}", "" if d is None else dl_utils.interval_verdict(d)])
    base, d = summary["baseline"], found["early_stopping"]
    rows.append(["early stopping", "", points(base["stopped_val_acc"]),
                 dl_utils.interval(d) + " vs last epoch", points(base["last_val_acc"]), "", "",
                 dl_utils.interval_verdict(d)])
    return rows


TABLE_HEADERS = ["remedy", "parameters", "val acc % (kept epoch)",
                 "minus baseline [95% interval]", "val acc % (last epoch)",
                 "train acc %", "s/run", "verdict (validation)"]


# ---- Choosing, and the test set once ---------------------------------------------------
def helpful(found, remedies):
    """The remedies whose paired interval against the baseline lies above zero."""
    return [name for name in remedies if name in found
            and dl_utils.interval_verdict(found[name], "better", "", "") == "better"]


def choose(summary, found, helped):
    """The chosen configuration: the combination if it beats the best single remedy."""
    if not helped:
        return "baseline"
    best_single = max(helped, key=lambda n: summary[n]["stopped_val_acc"])
    combined = "+".join(helped)
    if combined not in summary:
        return best_single
    better = summary[combined]["stopped_val_acc"] >= summary[best_single]["stopped_val_acc"]
    return combined if better else best_single


def test_once(runs, chosen, test_loader, device):
    """Test accuracy of the chosen configuration's kept models: the only look at the test set."""
    mine = [r for r in runs if r["name"] == chosen]
    for r in mine:
        r["test_acc"] = dl_utils.evaluate_model(r["model"], test_loader, device)[1]
    mean, se = dl_utils.mean_se(r["test_acc"] for r in mine)
    n = len(test_loader.dataset)
    print(f"{label(chosen)}: test accuracy {dl_utils.points(mean, se)}% (mean ± SE over "
          f"{len(mine)} seeds); seed {mine[0]['seed']}'s model, the one saved: "
          f"{dl_utils.format_accuracy(mine[0]['test_acc'], n)}")
    return mine[0]


# ---- model.eval() for real ----------------------------------------------------------------
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


SMALL_BATCH = 8  # batch norm in train mode depends on the batch: how much, with small ones


def mode_table(examples, val_loader):
    """Validation accuracy of models with dropout and batch norm, in eval vs train mode."""
    small = dl_utils.TensorLoader(val_loader.X, val_loader.y, SMALL_BATCH)
    rows = []
    for name, model in examples.items():
        accs = [accuracy_in_mode(model, val_loader, train_mode=False),
                accuracy_in_mode(model, val_loader, train_mode=True),
                accuracy_in_mode(model, small, train_mode=True)]
        rows.append([name, *(f"{100 * a:.2f}" for a in accs)])
    dl_utils.print_table(["model (first seed)", "eval mode %", "train mode %",
                          f"train mode, batches of {SMALL_BATCH} %"], rows)


def batch_norm_statistics(model, X):
    """What batch norm remembers: running averages of the batch statistics it saw."""
    linear, norm = model.layers[1], model.layers[2]  # the first hidden layer's pair
    with torch.no_grad():
        h = linear(model.layers[0](X))  # what the batch norm layer receives: [N, 256]
    rows = [[f"unit {i}", f"{norm.running_mean[i]:.3f}", f"{h[:, i].mean():.3f}",
             f"{norm.running_var[i]:.3f}", f"{h[:, i].var():.3f}"] for i in range(4)]
    dl_utils.print_table(["", "running mean", "mean over validation", "running variance",
                          "variance over validation"], rows)
    dl_utils.prose(f"""
        (momentum {norm.momentum}: each training batch moved the running numbers
        {norm.momentum:.0%} of the way to its own; {norm.num_batches_tracked.item()} batches
        were tracked. They match the validation set's statistics closely: in eval mode every
        image is standardized the same way, whatever else is in its batch.)""")
    try:
        copy.deepcopy(model).train()(X[:1])  # a copy: train mode would update the statistics
        one = "no error"
    except ValueError as err:  # BatchNorm1d cannot standardize a batch of one image
        one = f"ValueError: {err}"
    print(f"One image through a copy in train mode: {one}")


# ---- Figures and files -------------------------------------------------------------------
def plot_curves(runs, summary, show):
    """Training and validation accuracy per epoch, one panel per configuration (seed means)."""
    cols = min(4, len(summary))
    rows = -(-len(summary) // cols)  # ceiling division
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    for ax, name in zip(axes.flat, summary):
        histories = [r["history"] for r in runs if r["name"] == name]
        for key, legend in (("train_acc", "training (as trained)"), ("val_acc", "validation")):
            curve = torch.tensor([h[key] for h in histories]).mean(dim=0)
            ax.plot(range(1, len(curve) + 1), 100 * curve, label=legend)
        ax.set(title=label(name), ylim=(80, 100.5))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(summary):]:
        ax.axis("off")
    fig.supxlabel("epoch")
    fig.supylabel("accuracy (%)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Training vs validation accuracy (mean over seeds): the gap is overfitting")
    dl_utils.save_figure(fig, "07_curves.png", show)


def plot_summary(summary, show):
    """Validation accuracy (kept epoch, ± SE) and training accuracy per configuration."""
    names = list(summary)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    for i, name in enumerate(names):
        e = summary[name]
        se = 0 if e["stopped_val_acc_se"] != e["stopped_val_acc_se"] else e["stopped_val_acc_se"]
        ax.errorbar(100 * e["stopped_val_acc"], i, xerr=100 * se, fmt="o", color="C0",
                    capsize=4, label="validation (kept epoch) ± SE" if i == 0 else None)
        ax.plot(100 * e["train_acc"], i, "x", color="C1",
                label="training (kept model)" if i == 0 else None)
    ax.set_yticks(range(len(names)), [label(n) for n in names])
    ax.invert_yaxis()
    ax.set(xlabel="accuracy (%)", title="Each remedy: validation accuracy and training accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    dl_utils.save_figure(fig, "07_summary.png", show)


def save_model(path, args, run, val_loader, test_loader, device):
    """A first-seed model with its numbers, for 04 to load and check.

    Its test accuracy goes into the file so that 04 can check it reproduces it. For the
    chosen model it was measured once, above; the eval() model chooses nothing, and its
    test number is printed only by 04.
    """
    model, model_kwargs = run["model"], build_model(run["config"])[1]
    if "test_acc" not in run:
        run["test_acc"] = dl_utils.evaluate_model(model, test_loader, device)[1]
    metrics = {"train_acc": run["train_acc"], "test_acc": run["test_acc"],
               "validation_acc": dl_utils.evaluate_model(model, val_loader, device)[1]}
    dl_utils.save_checkpoint(
        path, model, model_kwargs, device=str(device), configuration=run["name"],
        hparams={**{k: v for k, v in vars(args).items()
                    if k not in ("show", "checkpoint", "results")}, **run["config"],
                 "seed": run["seed"]},
        metrics={**metrics, "best_epoch": run["best_epoch"], "train_seconds": run["seconds"]},
        history=run["history"])
    print(f"Saved the {label(run['name'])} model (seed {run['seed']}) to "
          f"{dl_utils.display_path(path)}")


# ---- The lesson ----------------------------------------------------------------------------
def with_train_eval(train_loader, val_loader):
    """(train, validation, train_eval): train_eval holds the training images again,
    unshuffled, to measure the kept model's training accuracy (iterating the shuffled
    loader would draw from the seeded generator and change the next run's batches)."""
    return train_loader, val_loader, dl_utils.TensorLoader(train_loader.X, train_loader.y, 1000)


def setup(args):
    """Device, data, and the baseline model shown layer by layer."""
    device, (train_loader, val_loader, test_loader) = dl_utils.setup(args)
    base = configurations(args)["baseline"]
    dl_utils.introduce(build_model(base)[0].to(device), train_loader,
                       f"for {len(train_loader.y):,} training images")
    both = build_model({**base, "dropout": args.dropout, "batch_norm": True})[0]
    print(f"\nWith batch norm and dropout (the order used here):\n{both.layers[1:6]}")
    return device, with_train_eval(train_loader, val_loader), test_loader


def overfit_on_purpose(args, data, device):
    """The baseline, first seed, epoch by epoch: watch training and validation part ways."""
    dl_utils.section(f"Overfitting on purpose: the baseline, seed {args.seed}")
    run = train_run("baseline", configurations(args)["baseline"], args.seed, data, args,
                    device, verbose=True)
    if run is None:
        return None
    h = run["history"]
    low = h["val_loss"].index(min(h["val_loss"]))
    dl_utils.prose(f"""
        Training accuracy {100 * h['train_acc'][-1]:.2f}% in the last epoch, validation
        {100 * h['val_acc'][-1]:.2f}%: a gap of {100 * (h['train_acc'][-1] - h['val_acc'][-1]):.1f}
        points. The validation loss was lowest at epoch {low + 1} ({h['val_loss'][low]:.3f})
        and ended at {h['val_loss'][-1]:.3f}: the network keeps growing more confident on
        images it has memorized, and more confidently wrong on new ones.""")
    dl_utils.plot_training_history(h, "07_overfitting.png", f"The baseline on "
                                   f"{len(data[0].y):,} images: overfitting", args.show)
    return run


def explain_decoupled_decay(args):
    """Measured: Adam's L2 penalty vs AdamW's decoupled decay on two weights."""
    steps = args.epochs * -(-args.subset // args.batch_size)  # this lesson's steps per run
    dl_utils.section("Weight decay: why AdamW and not Adam(weight_decay=...)")
    final = decay_demo(args.lr, args.weight_decay, steps)
    dl_utils.print_table(["optimizer", "weight with gradients ±10", "weight with no gradient"],
                         [[name, f"{w[0]:.3f}", f"{w[1]:.3f}"] for name, w in final.items()])
    dl_utils.prose(f"""
        Both weights start at 1.0, with weight decay {args.weight_decay} and lr {args.lr},
        for {steps} steps (one training run here). With the L2 term inside Adam, the decay
        is divided by each weight's gradient size: the busy weight barely shrinks, the idle
        one is pushed towards 0 at full speed. AdamW shrinks both by the same factor,
        (1 - lr * weight_decay) per step: the decay means the same for every weight.""")


def judge(summary, found, args):
    """The validation table, and what quoting the best epoch's own accuracy would hide."""
    dl_utils.print_table(TABLE_HEADERS, table_rows(summary, found))
    dl_utils.prose(f"""
        (mean ± standard error over {args.seeds} seeds. "kept epoch": early stopping, as
        every lesson does, scored honestly (honest_score: the epoch is chosen on one half
        of the validation set and scored on the other). The interval is that of the
        seed-by-seed differences; it excludes 0 = "better" or "worse". Training accuracy
        is the kept model's, on the clean training images.)""")
    base = summary["baseline"]
    flattery = [100 * (e["best_val_acc"] - e["stopped_val_acc"]) for e in summary.values()]
    dl_utils.prose(f"""
        Quoting the best epoch's own validation accuracy, as lessons 3-6 do, would say
        {100 * base['best_val_acc']:.2f}% for the baseline instead of the honest
        {100 * base['stopped_val_acc']:.2f}%: the best of {args.epochs} noisy epochs was
        partly lucky on exactly these images. Here that flatters the rows by
        {min(flattery):.2f} to {max(flattery):.2f} points: comparisons between rows flattered
        alike mostly stand, but every single number quoted that way is optimistic.""")


def combine_helpers(runs, summary, found, args, data, device):
    """Train the remedies that helped alone, all together; return the chosen name."""
    helped = helpful(found, args.remedies)
    dl_utils.section("Combining the remedies that helped")
    if len(helped) < 2:
        print(f"Remedies that helped alone: {', '.join(label(n) for n in helped) or 'none'}; "
              "nothing to combine.")
        return choose(summary, found, helped), True
    name = "+".join(helped)
    print(f"Helped alone (interval above 0): {label(name)}. Together:")
    seeds = range(args.seed, args.seed + args.seeds)
    completed = train_all({name: combine(configurations(args), helped)}, seeds, data, args,
                          device, runs)
    summary.update(summarize([r for r in runs if r["name"] == name]))
    found[name] = paired(runs, name, "stopped_val_acc")
    best = max(helped, key=lambda n: summary[n]["stopped_val_acc"])
    d = paired(runs, name, "stopped_val_acc", other=best)
    print(f"Combined minus the best single remedy ({label(best)}): {dl_utils.interval(d)} "
          f"points: {dl_utils.interval_verdict(d)}.")
    together, alone = summary[name], summary[best]
    if together["stopped_val_acc"] < alone["stopped_val_acc"]:
        dl_utils.prose(f"""
            Together they did no better than {label(best)} alone. Remedies overlap (each
            fights the same memorizing), and stacked they can over-regularize: training
            accuracy {100 * together['train_acc']:.2f}% together against
            {100 * alone['train_acc']:.2f}% for {label(best)} alone. Combinations must be
            measured, not assumed.""")
    return choose(summary, found, helped), completed


def conclusions(summary, found, chosen):
    """What the measured numbers support, one computed line per remedy."""
    lines = []
    for name, d in found.items():
        if d["n"] < 2:
            lines.append(f"{label(name)}: one seed, no verdict (run with --seeds 3 or more).")
            continue
        word = dl_utils.interval_verdict(d, "helps", "hurts", "no difference the seeds can see")
        lines.append(f"{label(name)}: {100 * d['mean']:+.2f} points on validation "
                     f"[{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]: {word}.")
    base, mine = summary["baseline"], summary[chosen]
    lines.append(f"Chosen: {label(chosen)}. Train-minus-validation gap: baseline "
                 f"{100 * (base['train_acc'] - base['stopped_val_acc']):.1f} points, chosen "
                 f"{100 * (mine['train_acc'] - mine['stopped_val_acc']):.1f}.")
    return lines


EVAL_DEMO = "dropout+batch_norm"  # the model with both layers that eval() switches


def eval_demo_run(runs, data, args, device):
    """A first-seed model with dropout AND batch norm: reused if trained, else trained now."""
    for r in runs:
        if r["name"] == EVAL_DEMO and r["seed"] == args.seed:
            return r
    print(f"Training one model with both, for this section ({label(EVAL_DEMO)}, seed "
          f"{args.seed}; it is not one of the configurations judged above):")
    config = combine(configurations(args, REMEDIES), EVAL_DEMO.split("+"))
    return train_run(EVAL_DEMO, config, args.seed, data, args, device)


def eval_for_real(runs, chosen, demo, val_loader, args):
    """Train mode vs eval mode, measured on models that have dropout and batch norm."""
    first = {r["name"]: r["model"] for r in [*runs, demo] if r["seed"] == args.seed}
    names = ("dropout", "batch_norm", EVAL_DEMO, chosen)
    examples = {label(n): first[n] for n in dict.fromkeys(names) if n in first}
    mode_table(examples, val_loader)
    dl_utils.prose("""
        Train mode: dropout silences random units (a different answer on every call), and
        batch norm standardizes each unit with the statistics of the current batch instead
        of the ones it learned, so an image's answer depends on which other images share
        its batch: with 1,000 images the batch's statistics are close to the learned
        ones, with 8 they are not. Eval mode: every unit, and the running statistics
        below. Forget model.eval() when you evaluate or serve a model, and you get the
        train-mode columns.""")
    if not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d)) for m in first[chosen].modules()):
        print(f"The chosen model ({label(chosen)}) has neither layer: one answer in every mode. "
              "Calling eval() anyway is the habit that protects you the day you add one.")
    if "batch_norm" in first:
        print("\nThe batch-norm model's first hidden layer, four of its 256 units:")
        batch_norm_statistics(first["batch_norm"], val_loader.X)


def main(argv=None):
    args = parse_args(argv)
    device, data, test_loader = setup(args)
    first = overfit_on_purpose(args, data, device)
    if first is None:
        return 130
    explain_decoupled_decay(args)
    configs = configurations(args)
    dl_utils.section(f"Each remedy alone: {len(configs)} configurations x {args.seeds} seeds x "
                     f"{args.epochs} epochs")
    runs, seeds = [first], range(args.seed, args.seed + args.seeds)
    if not train_all(configs, seeds, data, args, device, runs):
        print("Interrupted: nothing is judged or saved.")
        return 130
    dl_utils.section("Results on validation: what we choose on")
    summary, found = summarize(runs), comparisons(runs)
    judge(summary, found, args)
    chosen, completed = combine_helpers(runs, summary, found, args, data, device)
    if not completed:
        print("Interrupted: nothing is judged or saved.")
        return 130
    return finish(args, runs, summary, found, chosen, data, test_loader, device)


def finish(args, runs, summary, found, chosen, data, test_loader, device):
    """Conclusions, the test set once, eval() for real, figures and files."""
    dl_utils.section("What the numbers support")
    print("\n".join(conclusions(summary, found, chosen)))
    dl_utils.section("The test set, once: the chosen configuration")
    saved = test_once(runs, chosen, test_loader, device)
    dl_utils.section("model.eval() for real")
    demo = eval_demo_run(runs, data, args, device)
    if demo is None:
        print("Interrupted: nothing saved.")
        return 130
    eval_for_real(runs, chosen, demo, data[1], args)
    dl_utils.section("Saving")
    plot_curves(runs, summary, args.show)
    plot_summary(summary, args.show)
    dl_utils.save_results(
        args.results, "07_regularization.py", args, device, chosen=chosen, summary=summary,
        found=found, table={"headers": TABLE_HEADERS, "rows": table_rows(summary, found)},
        test=dl_utils.mean_se(r["test_acc"] for r in runs if r["name"] == chosen),
        labels={name: label(name) for name in [*LABELS, *summary]}, remedies=REMEDIES,
        runs=[{k: v for k, v in r.items() if k != "model"} for r in runs])
    demo_path = Path(args.checkpoint).with_name(f"{Path(args.checkpoint).stem}_{EVAL_DEMO_FILE}")
    save_model(args.checkpoint, args, saved, data[1], test_loader, device)
    save_model(demo_path, args, demo, data[1], test_loader, device)
    dl_utils.prose(f"""
        Next: python 04_load_model.py --checkpoint {dl_utils.display_path(args.checkpoint)}
        (the chosen model), or --checkpoint {dl_utils.display_path(demo_path)}: a model whose
        train-mode and eval-mode outputs differ, in 04's eval() section.""")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
