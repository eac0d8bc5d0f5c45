"""Lesson 5: is a deeper network, or tanh instead of ReLU, better at reading digits?

Opinions are cheap; this script measures. Three networks are trained under identical
conditions (same data, same settings, same epochs, the training loop of lesson 3):

    TwoLayerNN    one hidden layer, ReLU     (lesson 3's SimpleNN: the baseline)
    ThreeLayerNN  two hidden layers, ReLU    (deeper AND wider: two changes at once)
    TanhNN        one hidden layer, tanh     (the baseline with one change)

Each network is trained with 3 seeds (other initial weights, another batch order): how
much the seeds disagree shows how much of a difference is luck. The script prints the
answer first, in one sentence, then the numbers behind it; --details adds every verdict,
the caveats, sizes and timings. The networks are judged on the validation images; the
test set is looked at once, at the end, to report what they are worth.

Run it:
    python 05_experiment_architectures.py              # 3 networks x 3 seeds x 5 epochs
    python 05_experiment_architectures.py --details    # every verdict, and its caveats
    python 05_experiment_architectures.py --seeds 5    # narrower intervals, slower
    python 05_experiment_architectures.py --epochs 10  # lesson 3's budget: 2x as long
Results go to results/architectures.json, figures to figures/05_*.png.
Exercises: exercises/ex05_architectures.py, checked by python exercises/check.py 05
"""
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

import dl_utils

# ---- Settings: identical for every architecture; each has a flag (-h lists them) ----
BATCH_SIZE = 64  # the same as lesson 3, so its results can be compared with these
LR = 1e-3  # the same as lesson 3; a fair comparison would tune it per network
NUM_EPOCHS = 5  # half of lesson 3's 10: nine runs in about a minute on two CPU cores;
# every network still gains a little after epoch 5, so this compares them at equal,
# short training. A comparison answers for its budget: docs/results.md repeats it at
# --epochs 10.
NUM_SEEDS = 3  # runs per architecture: the spread across seeds is the noise level
HIDDEN = 128  # lesson 3's hidden width, for the baseline and the tanh network
DEEP_HIDDEN = (256, 128)  # the deeper network's two hidden layers
RESULTS_FILE = dl_utils.RESULTS_DIR / "architectures.json"


class TwoLayerNN(nn.Module):
    """One hidden layer with ReLU: lesson 3's SimpleNN, written again (the baseline).

    Written here rather than imported, so that this comparison stays what it is when you
    edit lesson 3 (tests/test_sync.py checks that it trains exactly like SimpleNN).
    """

    def __init__(self, input_size=784, hidden_size=HIDDEN, num_classes=10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.activation = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        return self.fc2(self.activation(self.fc1(self.flatten(x))))


class TanhNN(TwoLayerNN):
    """The baseline with one thing changed, the activation: tanh.

    tanh squashes its input into (-1, 1). For large |x| it is flat, so its gradient
    (1 - tanh(x)^2) nearly vanishes: a saturated unit learns slowly, and gradients
    shrink as they pass through several saturated layers. ReLU's gradient is exactly 1
    for every positive input (but a unit stuck below zero gets no gradient at all: a
    "dead" ReLU). That is the usual story for deep networks. With one hidden layer and
    normalized inputs it predicts little here, and the measurement disagrees with "tanh
    learns slowly": compare the train accuracy and validation columns that this script
    prints. Where tanh loses, it loses on new images, not on fitting the training set.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.activation = nn.Tanh()


class ThreeLayerNN(nn.Module):
    """Two hidden layers with ReLU, the first wider: deeper AND wider than the baseline.

    Depth lets later layers combine the features of earlier ones (strokes into loops
    into digits); width gives each layer more features. Both add parameters (the table
    of contenders counts them). More capacity can fit the training set better, and can
    also memorize it (overfitting): watch the train-test gap. Two things change at
    once, so a difference cannot be credited to depth alone.
    """

    def __init__(self, input_size=784, hidden_sizes=DEEP_HIDDEN, num_classes=10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(input_size, hidden_sizes[0])
        self.fc2 = nn.Linear(hidden_sizes[0], hidden_sizes[1])
        self.fc3 = nn.Linear(hidden_sizes[1], num_classes)
        self.activation = nn.ReLU()

    def forward(self, x):
        x = self.activation(self.fc1(self.flatten(x)))
        return self.fc3(self.activation(self.fc2(x)))


ARCHITECTURES = {"TwoLayerNN": TwoLayerNN, "ThreeLayerNN": ThreeLayerNN,
                 "TanhNN": TanhNN}


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR,
                               num_epochs=NUM_EPOCHS)
    parser.add_argument("--archs", nargs="+", choices=list(ARCHITECTURES),
                        default=list(ARCHITECTURES),
                        help="architectures to compare, the first one the baseline "
                             "(default: all three)")
    parser.add_argument("--seeds", type=dl_utils.positive_int, default=NUM_SEEDS,
                        help="runs per architecture, with seeds --seed, --seed+1, ... "
                             "(default: %(default)s)")
    parser.add_argument("--details", action="store_true",
                        help="also print every verdict, the caveats of the intervals, "
                             "sizes and timings")
    parser.add_argument("--results", type=dl_utils.output_file,
                        default=str(RESULTS_FILE),
                        help="where to write the measured results (default: "
                             f"{dl_utils.display_path(RESULTS_FILE)})")
    dl_utils.add_common_args(parser)
    return parser.parse_args(argv)


# ---- Training: every architecture with every seed ------------------------------------
def train_one(name, seed, loaders, generator, args, device):
    """Train one architecture with one seed; return its measurements (None if
    interrupted). Prints the validation accuracy after each epoch as it comes."""
    dl_utils.set_seed(seed)  # the same initial randomness for every architecture...
    generator.manual_seed(seed)  # ...and the same order of batches
    model = ARCHITECTURES[name]().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    train_loader, val_loader, test_loader = loaders
    print(f"  seed {seed}  {name:<12}", end="", flush=True)

    def progress(epoch, best, history):  # fit calls it after every epoch
        print(f"  {100 * history['val_acc'][-1]:.2f}", end="", flush=True)
    result = dl_utils.fit(model, train_loader, val_loader, optimizer, args.epochs,
                          device, verbose=False, after_epoch=progress)
    if result["status"] == "diverged":
        print()
        raise dl_utils.FriendlyError(f"{name} diverged with lr {args.lr} (seed "
                                     f"{seed}): try a smaller learning rate")
    if result["status"] == "interrupted":
        print()
        return None
    print(f"   best {100 * result['best_val_acc']:.2f}% (epoch {result['best_epoch']}, "
          f"{result['train_seconds']:.0f} s)", flush=True)
    train_acc = dl_utils.evaluate_model(model, train_loader, device)[1]  # kept model
    test_acc = dl_utils.evaluate_model(model, test_loader, device)[1]
    epochs_done = len(result["history"]["seconds"])
    return {"arch": name, "name": name, "seed": seed,
            "params": dl_utils.count_parameters(model),
            "seconds": result["train_seconds"],
            "size_kb": dl_utils.model_size_kb(model), "train_acc": train_acc,
            "best_val_acc": result["best_val_acc"], "best_epoch": result["best_epoch"],
            "test_acc": test_acc, "gap": train_acc - test_acc,
            "sec_per_epoch": result["train_seconds"] / epochs_done,
            "val_curve": result["history"]["val_acc"]}


def run_all(args, device):
    """Every seed, every architecture; stops cleanly after Ctrl-C."""
    generator = torch.Generator()
    loaders = dl_utils.load_mnist_data(args.batch_size, subset=args.subset,
                                       device=device, generator=generator)
    print("Validation accuracy (%) after each epoch; each run keeps its best epoch:")
    runs = []
    for seed in range(args.seed, args.seed + args.seeds):
        for name in args.archs:
            run = train_one(name, seed, loaders, generator, args, device)
            if run is None:  # Ctrl-C
                print("Interrupted: what follows covers the completed runs only.")
                return runs, True
            runs.append(run)
    return runs, False


# ---- Judging: the answer first, then the numbers behind it ---------------------------
def summarize(runs):
    """Per architecture: the mean over seeds of each measurement, with its standard
    error."""
    return dl_utils.summarize_runs(
        runs, "arch", ("train_acc", "best_val_acc", "test_acc", "gap", "sec_per_epoch"),
        constant=("params", "size_kb"))


def paired_comparisons(runs, baseline):
    """Each architecture minus the baseline, on best validation accuracy, seed by seed.

    Same seed = same batch order and the same random draws for both networks, so each
    seed gives one difference; their mean, standard error and 95% interval say whether
    the architectures differ by more than seed-to-seed luck.
    """
    return dl_utils.paired_against(runs, baseline, "best_val_acc")


points = dl_utils.points  # '97.79 ± 0.05': a mean over seeds ± its standard error
interval = dl_utils.interval  # '+0.12 [-0.05, +0.29]': a difference, its 95% interval
# What each network changes from the baseline, for the answer's sentence
CHANGES = {"ThreeLayerNN": "depth (a second, wider hidden layer)",
           "TanhNN": "tanh instead of ReLU"}


def answer(summary, comparisons, baseline, epochs):
    """The lesson's answer in one sentence, computed from the paired intervals."""
    seeds = min(e["runs"] for e in summary.values())
    if seeds < 2 or not comparisons:
        return ("With one seed only there is no answer yet: a second seed is what "
                "shows how much of a difference is luck; run with --seeds 3.")
    said = []
    unclear = []
    for name, d in comparisons.items():
        if baseline == "TwoLayerNN":
            what = CHANGES[name]
        else:
            what = f"{name} instead of {baseline}"
        found = dl_utils.interval_verdict(d, "better", "worse", None)
        if found:
            said.append(f"{what} is {found}, by {abs(100 * d['mean']):.2f} points")
        else:
            unclear.append(what)
    if unclear:
        verb = "makes" if len(unclear) == 1 else "make"
        said.append(f"{' and '.join(unclear)} {verb} no clear difference")
    accs = [100 * e["best_val_acc"] for e in summary.values()]
    text = "; ".join(said)
    return (f"{text[0].upper()}{text[1:]} (validation accuracy after {epochs} epochs, "
            f"{seeds} seeds each: all between {min(accs):.2f}% and {max(accs):.2f}%).")


def explain_numbers(summary, comparisons, baseline):
    """Mean ± standard error and the paired interval, once, in plain words, on the
    table's own first numbers."""
    seeds = min(e["runs"] for e in summary.values())
    if seeds < 2 or not comparisons:
        dl_utils.prose("""
            With one seed there is no ± and no interval: a second seed is what
            measures how much of a number is luck.""")
        return
    first = summary[baseline]
    mean = points(first["best_val_acc"], first["best_val_acc_se"])
    other, d = next(iter(comparisons.items()))
    dl_utils.prose(f"""
        How to read the table. "{mean}" is {baseline}'s mean over the {seeds} seeds ±
        its standard error: roughly how far this mean would move if you ran {seeds} new
        seeds. "{interval(d)}" compares {other} with {baseline} seed by seed (each seed
        trains both networks from the same start and the same batch order, so much of
        the luck is shared and cancels in the difference): the mean difference in
        points, and its 95% interval, a range built so that it holds the true
        difference 95 times out of 100. An interval that contains 0 means no clear
        difference.""")


def print_validation_table(summary, comparisons, baseline):
    """What we choose on: validation accuracy, mean ± SE over seeds, paired
    differences."""
    rows = []
    for name, e in summary.items():
        if name == baseline:
            difference = "(baseline)"
        else:
            difference = interval(comparisons[name])
        rows.append([name, f"{e['params']:,}",
                     points(e["best_val_acc"], e["best_val_acc_se"]), difference,
                     points(e["train_acc"], e["train_acc_se"])])
    dl_utils.print_table(["architecture", "parameters", "best val acc %",
                          f"minus {baseline} [95% interval]", "train acc %"], rows)


def print_test_table(summary):
    """The test set, looked at once: the honest estimate, which chose nothing."""
    rows = [[name, points(e["test_acc"], e["test_acc_se"]),
             f"± {100 * dl_utils.accuracy_se(e['test_acc'], 10_000):.2f}",
             points(e["gap"], e["gap_se"])] for name, e in summary.items()]
    dl_utils.print_table(["architecture", "test acc % (mean ± SE over seeds)",
                          "± from 10,000 images", "train-test gap"], rows)


def verdict(name, baseline, d):
    """One computed sentence: does the interval of the paired differences exclude
    zero?"""
    if d["n"] < 2:
        return (f"{name} vs {baseline}: one seed only, no verdict; run with --seeds 3 "
                "or more.")
    diff = f"{name} vs {baseline}: {100 * d['mean']:+.2f} points on validation"
    found = dl_utils.interval_verdict(d, "better", "worse", None)
    if found:
        return f"{diff}, interval excludes 0: {name} is {found} here."
    return f"{diff}, interval includes 0: no clear difference."


def conclusions(summary, comparisons, baseline):
    """What the measured numbers support: ranking and verdicts, all on validation;
    then sizes and timings (benchmarks/tables.py prints the first three lines)."""
    ranked = sorted(summary, key=lambda n: summary[n]["best_val_acc"], reverse=True)
    lines = [f"Ranking by mean best validation accuracy: {' > '.join(ranked)}."]
    for name, d in comparisons.items():
        lines.append(verdict(name, baseline, d))
    smallest = min(summary, key=lambda n: summary[n]["params"])
    fastest = min(summary, key=lambda n: summary[n]["sec_per_epoch"])
    for name, e in summary.items():
        size = e["params"] / summary[smallest]["params"]
        speed = e["sec_per_epoch"] / summary[fastest]["sec_per_epoch"]
        lines.append(f"{name}: {size:.1f}x the parameters of {smallest}, {speed:.1f}x "
                     f"the time per epoch of {fastest} (timings on this machine, "
                     f"noisy), train-test gap {100 * e['gap']:.2f} points.")
    return lines


def print_details(summary, comparisons, baseline):
    """--details: every verdict, sizes and timings, and what the intervals leave out."""
    dl_utils.section("Details: every verdict, sizes and timings")
    print("\n".join(conclusions(summary, comparisons, baseline)))
    seeds = min(e["runs"] for e in summary.values())
    dl_utils.prose(f"""
        Caveats. With {seeds} seeds the standard errors are themselves rough: a
        standard deviation estimated from so few runs is easily off by a factor of
        two. The interval covers seed-to-seed luck only: every seed is judged on the
        same 5,000 validation images, whose own sampling error (about ± 0.2 points per
        accuracy) it does not include, and "best epoch" picks the luckiest of several
        noisy epochs. Timings depend on the machine and on whatever else runs on it.""")


def plot_results(runs, summary, show):
    """Validation accuracy per epoch (mean over seeds), and best validation vs
    parameters."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for name in summary:
        curves = torch.tensor([r["val_curve"] for r in runs if r["arch"] == name])
        epochs = range(1, curves.shape[1] + 1)
        ax.plot(epochs, 100 * curves.mean(dim=0), marker="o", label=name)
        ax.fill_between(epochs, 100 * curves.min(dim=0).values,
                        100 * curves.max(dim=0).values, alpha=0.2)
    ax.set(xlabel="epoch", ylabel="validation accuracy (%)",
           title="Validation accuracy (line: mean over seeds, band: min to max)")
    ax.grid(alpha=0.3)
    ax.legend()
    dl_utils.save_figure(fig, "05_validation_curves.png", show)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, e in summary.items():
        se = 0 if math.isnan(e["best_val_acc_se"]) else 100 * e["best_val_acc_se"]
        ax.errorbar(e["params"], 100 * e["best_val_acc"], yerr=se, fmt="o", capsize=5,
                    label=name)
    ax.set(xscale="log", xlabel="trainable parameters (log scale)",
           ylabel="best validation accuracy (%)",
           title="Validation accuracy vs size (error bar: SE over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    dl_utils.save_figure(fig, "05_accuracy_vs_parameters.png", show)


def show_contenders(archs):
    """The architectures side by side: layer sizes and parameters, read from the
    models."""
    rows = []
    for name in archs:
        model = ARCHITECTURES[name]()
        rows.append([name, dl_utils.layer_sizes(model), type(model.activation).__name__,
                     f"{dl_utils.count_parameters(model):,}"])
    dl_utils.print_table(["architecture", "layers", "activation", "parameters"], rows)


def main(argv=None):
    args = parse_args(argv)
    dl_utils.setup_figures(args.show)
    dl_utils.section("The contenders")
    device = dl_utils.get_device(args.device)
    show_contenders(args.archs)
    dl_utils.section(f"Training: {len(args.archs)} architectures x {args.seeds} seeds "
                     f"x {args.epochs} epochs")
    start = time.perf_counter()
    runs, interrupted = run_all(args, device)
    if not runs:
        print("No run completed: nothing to compare.")
        return 130
    print(f"All runs: {time.perf_counter() - start:.0f} s")
    baseline = args.archs[0]
    summary = summarize(runs)
    comparisons = paired_comparisons(runs, baseline)
    found = answer(summary, comparisons, baseline, args.epochs)
    dl_utils.section("The answer")
    dl_utils.prose(found)
    dl_utils.section("The numbers behind it: validation, what we choose on")
    explain_numbers(summary, comparisons, baseline)
    print_validation_table(summary, comparisons, baseline)
    if args.details:
        print_details(summary, comparisons, baseline)
    else:
        print("(--details: every verdict, the intervals' caveats, sizes and timings)")
    dl_utils.section("The test set, once: the honest estimate that chose nothing")
    print_test_table(summary)
    dl_utils.prose("""
        Nothing above was chosen with these numbers: the epochs and the verdicts came
        from validation. On 10,000 test images each accuracy also carries the test
        set's own sampling error (third column), whatever the number of seeds.""")
    dl_utils.section("Saving")
    plot_results(runs, summary, args.show)
    if interrupted:
        return 130  # partial results are printed, never saved over complete ones
    dl_utils.save_results(args.results, "05_experiment_architectures.py", args, device,
                          summary=summary, runs=runs, baseline=baseline,
                          comparisons=comparisons, answer=found,
                          conclusions=conclusions(summary, comparisons, baseline))
    print("\nNext: python 06_convolutional_network.py")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
