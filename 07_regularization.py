"""Lesson 7: overfitting on purpose, then the remedies for it, measured.

Every lesson so far has warned about overfitting; this one provokes it and fights it.
A wide network trained on only 2,000 images memorizes them: its training accuracy
reaches 100% while validation accuracy stalls several points lower. Then each remedy is
tried alone, under identical conditions (the same images, epochs and seeds, lesson 3's
training loop), and those that help are combined:

    dropout         silence a random share of the hidden units at every training step
    weight decay    shrink every weight a little towards zero at every step (AdamW)
    batch norm      standardize each hidden unit over the batch, then rescale
    augmentation    train on randomly shifted copies of the images (lesson 6's shifts)
    smaller model   fewer parameters: less room to memorize (and to learn)
    early stopping  keep the epoch with the best validation accuracy (every lesson does)

Remedies are judged on validation, over several seeds; the chosen configuration meets
the test set once. Lesson 7b opens the remedies up; 7c asks how sure the verdicts are.

Run it:
    python 07_regularization.py                   # the README's table (about a minute)
    python 07_regularization.py --subset 10000    # five times the data: less to fix?
    python 07_regularization.py --remedies dropout --dropout 0.2   # one remedy, milder
Then: python 04_load_model.py --checkpoint models/regularized_mlp.pt, lessons 7b and 7c.
Exercises: exercises/ex07_regularization.py, checked by python exercises/check.py 07
"""


import torch
import torch.nn as nn

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
SUBSET = 2000  # training images: few, so that a wide network can learn them by heart
HIDDEN_SIZES = (256, 256)  # over 100 parameters per training image: plenty to memorize
NUM_EPOCHS = 20  # the baseline reaches 100% training accuracy well before the end
BATCH_SIZE = 64  # as in lessons 3 to 6
LR = 1e-3  # Adam's usual step size, as in lesson 3
# Runs per configuration: six verdicts held to 95% together need t = 6.2 with 4 seeds
# (lesson 7c); make tables reruns the defaults from other seeds
NUM_SEEDS = 4
# The strengths are fixed before measuring, not chosen on these runs (a best-of-N
# pick would flatter itself: lesson 7c's selection bias). Dropout: the share of hidden
# units zeroed at each training step, 0.5, Srivastava et al.'s choice (2014)
DROPOUT = 0.5
WEIGHT_DECAY = 1.0  # AdamW: each step multiplies every weight by 1 - LR * 1.0
# Augmentation: lesson 6's random shifts, here of at most 1 pixel (this MLP has no
# pooling to absorb a shift; lesson 6's CNN, which has, takes 2)
MAX_SHIFT = 1
SMALL_HIDDEN = (64,)  # the smaller model: one hidden layer of 64 units
REMEDIES = ["dropout", "weight_decay", "batch_norm", "augmentation", "smaller"]
SEED = 0  # seeds SEED, SEED+1, ...: every configuration is trained with the same seeds
CHECKPOINT = dl_utils.MODELS_DIR / "regularized_mlp.pt"  # the chosen one, first seed
RESULTS_FILE = dl_utils.RESULTS_DIR / "regularization.json"
LABELS = {"baseline": "baseline (none)", "dropout": "dropout",
          "weight_decay": "weight decay", "batch_norm": "batch norm",
          "augmentation": "augmentation", "smaller": "smaller model",
          "early_stopping": "early stopping"}


class RegularizedMLP(nn.Module):
    """An MLP whose hidden layers can have batch norm and dropout, in this order:
    Linear -> [BatchNorm1d] -> ReLU -> [Dropout], once per hidden layer, then Linear.

    Dropout(p) zeroes each hidden unit with probability p at every training step: each
    step trains another random sub-network, so no unit can rely on a particular other
    one, and the network memorizes less (cost: noisier, slower learning). BatchNorm1d
    standardizes each unit over the batch, then rescales it: faster, steadier training,
    and a little regularizing noise (cost: a behaviour that depends on the batch). Both
    act differently in eval mode: lesson 7b recomputes them by hand.
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
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR,
                               num_epochs=NUM_EPOCHS)
    parser.set_defaults(subset=SUBSET)
    parser.add_argument("--hidden-sizes", type=dl_utils.positive_int, nargs="+",
                        default=list(HIDDEN_SIZES),
                        help="the baseline's hidden layers (default: %(default)s)")
    parser.add_argument("--seeds", type=dl_utils.positive_int, default=NUM_SEEDS,
                        help="runs per configuration (default: %(default)s)")
    parser.add_argument("--remedies", nargs="+", choices=REMEDIES, default=REMEDIES,
                        help="which remedies to measure (default: all five; early "
                             "stopping is always measured, on the baseline)")
    parser.add_argument("--dropout", type=dl_utils.fraction, default=DROPOUT,
                        help="dropout probability, in [0, 1) (default: %(default)s)")
    parser.add_argument("--weight-decay", type=dl_utils.positive_float,
                        default=WEIGHT_DECAY,
                        help="AdamW's weight decay (default: %(default)s)")
    parser.add_argument("--max-shift", type=int, choices=range(1, 5), default=MAX_SHIFT,
                        help="augmentation: largest random shift in pixels "
                             "(default: %(default)s)")
    parser.add_argument("--small-hidden", type=dl_utils.positive_int, nargs="+",
                        default=list(SMALL_HIDDEN),
                        help="the smaller model's hidden layers (default: %(default)s)")
    parser.add_argument("--no-test", action="store_true",
                        help="validation only: never look at the test set, save no "
                             "model (for sweeps that compare settings, as make tables "
                             "does)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file,
                        default=str(CHECKPOINT),
                        help="where to save the chosen model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_results_arg(parser, RESULTS_FILE)
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


# ---- The configurations: the baseline, and each remedy as one change to it -------
def label(name):
    """A configuration's printed name; a combination is named after its parts, "a+b"."""
    return " + ".join(LABELS[part] for part in name.split("+"))


# Why each remedy should work, and what it costs (dropout and batch norm:
# RegularizedMLP; weight decay: make_optimizer; early stopping: dl_utils.honest_score):
# - augmentation: shifted copies are new, plausible images, so there is more to learn
#   from and less point in memorizing pixel positions. Costs: a shift per image per
#   epoch (the s/run column measures it), and the training curve is on harder images.
# - smaller model: fewer parameters memorize less, and learn less: it may simply be
#   worse.
# - early stopping: the weights of the epoch that did best on validation, before the
#   network specialized further on its training images. Costs: one evaluation per
#   epoch.
def configurations(args, remedies=None):
    """{name: settings}: the baseline, then each remedy alone (default: those of
    --remedies)."""
    base = {"hidden_sizes": list(args.hidden_sizes), "dropout": 0.0,
            "batch_norm": False, "weight_decay": 0.0, "max_shift": 0}
    change = {"dropout": {"dropout": args.dropout},
              "weight_decay": {"weight_decay": args.weight_decay},
              "batch_norm": {"batch_norm": True},
              "augmentation": {"max_shift": args.max_shift},
              "smaller": {"hidden_sizes": list(args.small_hidden)}}
    configs = {"baseline": base}
    for name in remedies or args.remedies:
        configs[name] = {**base, **change[name]}
    return configs


def combine(configs, names):
    """One configuration with every change that the named remedies make to the
    baseline."""
    base = configs["baseline"]
    combined = dict(base)
    for name in names:
        for key, value in configs[name].items():
            if value != base[key]:
                combined[key] = value
    return combined


def build_model(config):
    """The model a configuration asks for, and the arguments that rebuild it (04 uses
    them)."""
    kwargs = {"hidden_sizes": list(config["hidden_sizes"]),
              "dropout": config["dropout"],
              "batch_norm": config["batch_norm"]}
    return RegularizedMLP(**kwargs), kwargs


def make_optimizer(model, lr, weight_decay):
    """AdamW: Adam, plus weight decay applied to the weights directly ("decoupled").

    Weight decay shrinks every weight towards zero at each step, w <- w - lr * wd * w,
    so a weight stays large only while the data keeps pushing it: the network prefers
    small weights, which give smoother functions that memorize less. Cost: one more
    setting to tune; too much underfits. Only the weight matrices decay: biases and
    batch norm's scale and shift set offsets, not how much the network can memorize
    (nanoGPT does the same). Why AdamW and not Adam(weight_decay=...): lesson 7b
    measures it.
    """
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]  # biases, batch norm's
    return torch.optim.AdamW([{"params": matrices, "weight_decay": weight_decay},
                              {"params": others, "weight_decay": 0.0}], lr=lr)


# ---- Training and scoring one run ------------------------------------------------
def train_run(name, config, seed, data, args, device, verbose=False):
    """Train one configuration with one seed; its measurements and kept model (None:
    interrupted by Ctrl-C)."""
    train_loader, val_loader, train_eval = data
    dl_utils.set_seed(seed)  # the same initial randomness for every configuration...
    train_loader.generator.manual_seed(seed)  # ...and the same batch order
    # (augmentation draws its shifts from this generator too: from epoch 2 on, its
    # order differs)
    model = build_model(config)[0].to(device)
    optimizer = make_optimizer(model, args.lr, config["weight_decay"])
    shifted = dl_utils.ShiftedLoader(train_loader, config["max_shift"])  # 0: no shifts
    result = dl_utils.fit(model, shifted, val_loader, optimizer, args.epochs, device,
                          verbose=verbose, extra_eval=dl_utils.half_scorer(val_loader))
    if result["status"] == "diverged":
        raise dl_utils.FriendlyError(f"{name} diverged with lr {args.lr} (seed "
                                     f"{seed}): try a smaller learning rate")
    h = result["history"]
    if result["status"] == "interrupted":
        return None
    return {"name": name, "seed": seed, "config": config, "model": model,
            "params": dl_utils.count_parameters(model), "history": h,
            "stopped_val_acc": dl_utils.honest_score(h),
            "last_val_acc": h["val_acc"][-1],
            "best_val_acc": result["best_val_acc"], "best_epoch": result["best_epoch"],
            "train_acc": dl_utils.evaluate_model(model, train_eval, device)[1],
            "seconds": result["train_seconds"]}


def describe(run):
    """The line printed for each finished run."""
    return (f"{label(run['name']):<16} val {100 * run['stopped_val_acc']:6.2f}%  "
            f"train {100 * run['train_acc']:6.2f}%  ({run['seconds']:.1f} s)")


def train_all(configs, seeds, data, args, device, runs):
    """Every configuration with every seed, appended to `runs`; False after Ctrl-C."""
    def train_one(name, config, seed):
        return train_run(name, config, seed, data, args, device)
    return dl_utils.train_over_seeds(configs, seeds, train_one, runs, describe)


# ---- Judging on validation -------------------------------------------------------
def summarize(runs):
    """Per configuration: mean ± SE over seeds of each measurement."""
    keys = ("stopped_val_acc", "last_val_acc", "best_val_acc", "train_acc", "seconds")
    return dl_utils.summarize_runs(runs, "name", keys, constant=("params", "config"))


def comparisons(runs):
    """Each configuration minus the baseline, plus early stopping: kept epoch minus
    last. Six verdicts at once, so each interval is widened until the six are right
    together 95% of the time (Bonferroni: 99.2% each; lesson 7c measures why)."""
    found = dl_utils.paired_against(runs, "baseline", "stopped_val_acc")
    found["early_stopping"] = dl_utils.paired_against(
        runs, "baseline", "stopped_val_acc", ["baseline"], "last_val_acc")["baseline"]
    return {name: dl_utils.bonferroni(d, len(found)) for name, d in found.items()}


def table_rows(summary, found):
    """The verdict table's rows (the README's table is the same, via `make tables`)."""
    points = dl_utils.points
    rows = []
    for name, e in summary.items():
        d = found.get(name)
        if d is None and name != "baseline":
            continue  # the combination: its own table, its own question
        if d is None:
            difference = "(reference)"
            said = ""
        else:
            difference = dl_utils.interval(d)
            said = dl_utils.interval_verdict(d, same=UNCLEAR)
        rows.append([label(name), points(e["stopped_val_acc"], e["stopped_val_acc_se"]),
                     difference, points(e["train_acc"], e["train_acc_se"]), said])
    base = summary["baseline"]
    d = found["early_stopping"]
    rows.append(["early stopping", points(base["stopped_val_acc"]),
                 dl_utils.interval(d), "", dl_utils.interval_verdict(d, same=UNCLEAR)])
    return rows


def cost_rows(summary):
    """What each configuration costs, and what its last epoch scored (no early
    stopping)."""
    return [[label(name), f"{e['params']:,}", f"{e['seconds']:.1f}",
             dl_utils.points(e["last_val_acc"], e["last_val_acc_se"])]
            for name, e in summary.items()]


UNCLEAR = "no clear difference"  # the verdict when the interval spans 0
COMBINED_HEADERS = ["the combination", "difference, points [95% interval, each]",
                    "verdict"]
TABLE_HEADERS = ["remedy", "val acc %", "minus baseline [interval]", "train acc %",
                 "verdict"]
COST_HEADERS = ["configuration", "parameters", "s/run", "val acc % (last epoch)"]


# ---- Choosing, and the test set once ---------------------------------------------
def helpful(found, remedies):
    """The remedies whose paired interval against the baseline lies above zero."""
    return [name for name in remedies
            if name in found and dl_utils.interval_verdict(found[name]) == "better"]


def choose(summary, helped, versus_best=None):
    """The chosen configuration: the best single remedy, or the combination if its
    interval against that remedy lies above 0. A more complex recipe must earn its
    place: preferring it on a difference the seeds cannot see would be a coin flip,
    one that another machine could call the other way."""
    if not helped:
        return "baseline"
    best_single = max(helped, key=lambda n: summary[n]["stopped_val_acc"])
    if versus_best is None or dl_utils.interval_verdict(versus_best) != "better":
        return best_single
    return "+".join(helped)


def test_once(runs, chosen, test_loader, device):
    """The chosen configuration's kept models on the test set: the only look at it.
    Returns the mean ± SE over seeds."""
    mine = [r for r in runs if r["name"] == chosen]
    for r in mine:
        r["test_acc"] = dl_utils.evaluate_model(r["model"], test_loader, device)[1]
    mean_se = dl_utils.mean_se(r["test_acc"] for r in mine)
    first = mine[0]
    print(f"{label(chosen)}: test accuracy {dl_utils.points(*mean_se)}% (mean ± SE "
          f"over {len(mine)} seeds);")
    print(f"seed {first['seed']}'s model, the one saved: "
          f"{dl_utils.format_accuracy(first['test_acc'], len(test_loader.dataset))}")
    return mean_se


def save_model(args, runs, chosen, val_loader, device):
    """The chosen configuration's first seed, saved with its test accuracy (04 checks
    it reproduces it)."""
    run = [r for r in runs if r["name"] == chosen][0]
    unsaved = ("show", "checkpoint", "results")
    settings = {k: v for k, v in vars(args).items() if k not in unsaved}
    metrics = {"train_acc": run["train_acc"],
               "test_acc": run["test_acc"],
               "validation_acc": dl_utils.evaluate_model(run["model"], val_loader,
                                                         device)[1],
               "best_epoch": run["best_epoch"],
               "train_seconds": run["seconds"]}
    hparams = {**settings, **run["config"], "seed": run["seed"]}
    kwargs = build_model(run["config"])[1]
    dl_utils.save_checkpoint(args.checkpoint, run["model"], kwargs, device=str(device),
                             configuration=chosen, hparams=hparams, metrics=metrics,
                             history=run["history"])
    print(f"Saved the {label(chosen)} model (seed {run['seed']}) to "
          f"{dl_utils.display_path(args.checkpoint)}")


# ---- The lesson ------------------------------------------------------------------
def setup(args):
    """Device, data, and the baseline model shown layer by layer."""
    device, (train_loader, val_loader, test_loader) = dl_utils.setup(args)
    base = configurations(args)["baseline"]
    dl_utils.introduce(build_model(base)[0].to(device), train_loader,
                       f"for {len(train_loader.y):,} training images")
    both = build_model({**base, "dropout": args.dropout, "batch_norm": True})[0]
    print(f"\nWith batch norm and dropout (the order used here):\n{both.layers[1:6]}")
    # the training images unshuffled, for the kept model's accuracy (no draw from the
    # seeds)
    train_eval = dl_utils.TensorLoader(train_loader.X, train_loader.y, 1000)
    return device, (train_loader, val_loader, train_eval), test_loader


def overfit_on_purpose(args, data, device):
    """The baseline, first seed, epoch by epoch: watch training and validation part
    ways."""
    dl_utils.section(f"Overfitting on purpose: the baseline, seed {args.seed}")
    run = train_run("baseline", configurations(args)["baseline"], args.seed, data, args,
                    device, verbose=True)
    if run is None:
        return None
    h = run["history"]
    low = h["val_loss"].index(min(h["val_loss"]))
    gap = 100 * (h["train_acc"][-1] - h["val_acc"][-1])
    ending = "."
    if h["val_loss"][-1] > 1.1 * h["val_loss"][low]:  # said only when measured
        ending = (": the network grew more confident on images it memorized, and more "
                  "confidently wrong on new ones.")
    dl_utils.prose(f"""
        Training accuracy {100 * h['train_acc'][-1]:.2f}% in the last epoch,
        validation {100 * h['val_acc'][-1]:.2f}%: a gap of {gap:.1f} points. The
        validation loss was lowest at epoch {low + 1} ({h['val_loss'][low]:.3f}) and
        ended at {h['val_loss'][-1]:.3f}{ending}""")
    title = f"The baseline on {len(data[0].y):,} images: overfitting"
    dl_utils.plot_training_history(h, "07_overfitting.png", title, args.show)
    return run


def few_seeds(seeds, verdicts, level, unclear):
    """Why, with few seeds, verdicts read "no clear difference": the t factor that
    multiplies each standard error, computed for these seeds. unclear: how many of
    the verdicts read so."""
    if seeds < 2:
        return ("With one seed there is no spread between seeds to measure, and so no "
                "interval and no verdict: rerun with --seeds 4.")
    t = dl_utils.t_quantile(1 - (1 - level) / 2, seeds - 1)
    t4 = dl_utils.t_quantile(1 - (1 - level) / 2, 3)
    return (f"With only {seeds} seeds every interval is wide: to hold {verdicts} "
            f"verdicts to 95% together, each standard error is multiplied by t = "
            f"{t:.1f} (with 4 seeds, {t4:.1f}), and the standard error itself rests on "
            f"{seeds} numbers. {unclear} of the {verdicts} verdicts read "
            f"\"{UNCLEAR}\": with so few seeds that says the seeds are too few, not "
            "that the remedies do nothing.")


def judge(summary, found, args):
    """The verdicts on validation, and what each configuration costs."""
    dl_utils.print_table(TABLE_HEADERS, table_rows(summary, found))
    level = next(iter(found.values()))["level"]
    dl_utils.prose(f"""
        (val acc: early stopping's kept epoch, cross-scored, mean ± SE over
        {args.seeds} seeds; minus baseline: the seed-by-seed differences in points,
        with a {100 * level:.1f}% interval, so that all {len(found)} verdicts are right
        together 95% of the time; early stopping's row: the kept epoch minus the last.
        Why cross-scored, why {100 * level:.1f}%, and what a verdict promises: lesson
        7c.)""")
    if args.seeds < 4:
        unclear = 0
        for d in found.values():
            unclear += dl_utils.interval_verdict(d, same=UNCLEAR) == UNCLEAR
        dl_utils.prose(few_seeds(args.seeds, len(found), level, unclear))
    dl_utils.print_table(COST_HEADERS, cost_rows(summary))


def combine_helpers(runs, summary, found, args, data, device):
    """Train the remedies that helped alone, all together; return the chosen name."""
    helped = helpful(found, args.remedies)
    dl_utils.section("Combining the remedies that helped")
    if len(helped) < 2:
        names = ", ".join(label(n) for n in helped) or "none"
        print(f"Remedies that helped alone: {names}; nothing to combine.")
        return choose(summary, helped), True, None
    name = "+".join(helped)
    print(f"Helped alone (interval above 0): {label(name)}. Together:")
    seeds = range(args.seed, args.seed + args.seeds)
    together_config = {name: combine(configurations(args), helped)}
    completed = train_all(together_config, seeds, data, args, device, runs)
    summary.update(summarize([r for r in runs if r["name"] == name]))
    best = max(helped, key=lambda n: summary[n]["stopped_val_acc"])
    vs_base = dl_utils.paired_against(runs, "baseline", "stopped_val_acc", [name])[name]
    d = dl_utils.paired_against(runs, best, "stopped_val_acc", [name])[name]
    rows = []
    for against, c in (("baseline", vs_base), (best, d)):
        rows.append([f"{label(name)} minus {label(against)}", dl_utils.interval(c),
                     dl_utils.interval_verdict(c, same=UNCLEAR)])
    table = {"headers": COMBINED_HEADERS, "rows": rows}
    dl_utils.print_table(table["headers"], table["rows"])
    together = summary[name]
    alone = summary[best]
    print(f"(Validation accuracy together: "
          f"{dl_utils.points(together['stopped_val_acc'])}%. Kept only if better than "
          "the best single remedy; each interval at 95% on its own.)")
    if together["stopped_val_acc"] < alone["stopped_val_acc"]:
        dl_utils.prose(f"""
            Together they did no better than {label(best)} alone (training accuracy
            {100 * together['train_acc']:.2f}% together, {100 * alone['train_acc']:.2f}%
            alone): remedies overlap, each fighting the same memorizing. Combinations
            must be measured, not assumed.""")
    return choose(summary, helped, d), completed, table


def conclusions(summary, found, chosen):
    """What the measured numbers support, in one computed paragraph."""
    said = {"helps": [], "hurts": [], UNCLEAR: []}
    for name, d in found.items():
        word = dl_utils.interval_verdict(d, "helps", "hurts", UNCLEAR)
        if word not in said:  # "one seed: no verdict" (--seeds 1): unclear too
            word = UNCLEAR
        said[word].append(label(name))
    gap = {}
    for name in ("baseline", chosen):
        e = summary[name]
        gap[name] = 100 * (e["train_acc"] - e["stopped_val_acc"])
    return (f"Helped on validation: {', '.join(said['helps']) or 'none'}; hurt: "
            f"{', '.join(said['hurts']) or 'none'}; {UNCLEAR}: "
            f"{', '.join(said[UNCLEAR]) or 'none'}. Chosen: {label(chosen)}. "
            f"Train-minus-validation gap: baseline {gap['baseline']:.1f} points, "
            f"chosen {gap[chosen]:.1f}.")


def main(argv=None):
    args = parse_args(argv)
    device, data, test_loader = setup(args)
    first = overfit_on_purpose(args, data, device)
    if first is None:
        return 130
    configs = configurations(args)
    dl_utils.section(f"Each remedy alone: {len(configs)} configurations x {args.seeds} "
                     f"seeds x {args.epochs} epochs")
    runs = [first]
    seeds = range(args.seed, args.seed + args.seeds)
    if not train_all(configs, seeds, data, args, device, runs):
        print("Interrupted: nothing is judged or saved.")
        return 130
    dl_utils.section("Results on validation: what we choose on")
    summary = summarize(runs)
    found = comparisons(runs)
    judge(summary, found, args)
    chosen, completed, combined = combine_helpers(runs, summary, found, args, data,
                                                  device)
    if not completed:
        print("Interrupted: nothing is judged or saved.")
        return 130
    return finish(args, runs, summary, found, (chosen, combined), data, test_loader,
                  device)


def finish(args, runs, summary, found, choice, data, test_loader, device):
    """Conclusions, the test set once, figures and files. choice: (the chosen name,
    the combination's table or None)."""
    chosen, combined = choice
    dl_utils.section("What the numbers support")
    dl_utils.prose(conclusions(summary, found, chosen))
    dl_utils.section("The test set, once: the chosen configuration")
    test = None
    if args.no_test:  # a sweep compares strengths on validation: the test set unseen
        print("--no-test: the test set stays unseen, and no model is saved.")
    else:
        test = test_once(runs, chosen, test_loader, device)
        save_model(args, runs, chosen, data[1], device)
    labels = {name: label(name) for name in [*LABELS, *summary]}
    dl_utils.plot_curves_by_name(runs, {n: label(n) for n in summary}, "07_curves.png",
                                 "Training vs validation accuracy (mean over seeds): "
                                 "the gap is overfitting", args.show)
    saved_runs = []
    for r in runs:  # every measurement, without the model itself
        saved_runs.append({k: v for k, v in r.items() if k != "model"})
    dl_utils.save_results(
        args.results, "07_regularization.py", args, device, chosen=chosen,
        summary=summary, found=found,
        table={"headers": TABLE_HEADERS, "rows": table_rows(summary, found)},
        combination=combined, test=test, remedies=REMEDIES, labels=labels,
        runs=saved_runs)
    dl_utils.prose(f"""
        Next: python 04_load_model.py --checkpoint
        {dl_utils.display_path(args.checkpoint)} (the chosen model), then python
        07b_inside_the_remedies.py: what dropout, batch norm and weight decay do
        inside, and why model.eval() matters.""")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
