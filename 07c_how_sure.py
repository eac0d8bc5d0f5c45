"""Lesson 7c: how sure are we? Three traps between a table of verdicts and the truth.

Lesson 7 trained six configurations on four seeds each and printed a verdict per
remedy. Between such a table and what is true lie three traps. This lesson measures
each one, on lesson 7's own numbers (its results file) and by simulation, where the
truth is known because we chose it:

    selection bias   the best of 20 epochs, scored on the images that chose it,
                     flatters
    many verdicts    six 95% intervals: a false "better" somewhere in up to a quarter
                     of runs
    replication      a real effect just past the line is found again 60% of the time
                     with 4 seeds, half the time with many

Words used below:
    the line         the smallest difference a verdict accepts: t x SE (the t factor
                     times the standard error over seeds)
    t statistic      a measured difference divided by its SE: past the line when it
                     exceeds t
    power            the chance that a real effect is detected
    cross-scoring    choose on one half of the images, score on the other

No network is trained here: every number comes from lesson 7's runs or from random
draws, so the lesson takes seconds. (Simulated scores are normal with a standard
deviation of 1: a t statistic does not depend on the scale, so neither does any
result.)

Run it (after 07, whose results it reads):
    python 07c_how_sure.py
    python 07c_how_sure.py --verdicts 20     # twenty remedies judged at once
    python 07c_how_sure.py --seeds 8         # what more seeds buy
Exercises: exercises/ex07c_how_sure.py, checked by python exercises/check.py 07c
"""

import json
import math
from pathlib import Path

import torch

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
RESULTS_07 = dl_utils.RESULTS_DIR / "regularization.json"  # what lesson 7 writes
TRIALS = 100_000  # simulated experiments per number: its own error is about 0.15 points
VERDICTS = None  # remedies judged at once (default: as many as lesson 7 judged, 6)
SEEDS = None  # seeds per configuration (default: lesson 7's, 4)
LEVEL = 0.95  # the confidence asked of the verdicts, together or each
SEED = 0  # seeds the simulations


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--results-07", type=Path, default=RESULTS_07,
                        help="lesson 7's results file (default: "
                             f"{dl_utils.display_path(RESULTS_07)})")
    parser.add_argument("--trials", type=dl_utils.positive_int, default=TRIALS,
                        help="simulated experiments per number (default: %(default)s)")
    parser.add_argument("--verdicts", type=dl_utils.positive_int, default=VERDICTS,
                        help="remedies judged at once (default: lesson 7's count)")
    parser.add_argument("--seeds", type=int, choices=range(2, 51), default=SEEDS,
                        metavar="{2..50}",
                        help="seeds per configuration (default: lesson 7's)")
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


# ---- Trap 1: the best epoch flatters ---------------------------------------------
def cross_scored(val_a, val_b):
    """Early stopping's accuracy on images that did not choose the epoch (07 uses
    dl_utils.honest_score, this function's twin). The validation images are split in
    halves A and B: the epoch chosen on A is scored on B, the one chosen on B is scored
    on A, and the two scores are averaged ("two-fold cross-fitting", or cross-scoring).
    Each half-score is honest, since its images played no part in the choice."""
    by_a = val_a.index(max(val_a))  # the first best epoch, as fit keeps
    by_b = val_b.index(max(val_b))
    return (val_b[by_a] + val_a[by_b]) / 2


def flattery_rows(record):
    """Per configuration of lesson 7: the best epoch's own score, cross-scored, the
    gap."""
    rows = []
    for name, label in record["labels"].items():
        runs = [r for r in record["runs"] if r["name"] == name]
        if not runs:
            continue
        own = sum(max(r["history"]["val_acc"]) for r in runs) / len(runs)
        honest = 0.0
        for r in runs:
            honest += cross_scored(r["history"]["val_a_acc"], r["history"]["val_b_acc"])
        honest /= len(runs)
        rows.append([label, f"{100 * own:.2f}", f"{100 * honest:.2f}",
                     f"{100 * (own - honest):+.2f}"])
    return rows


def noise_flattery(epochs, accuracy, images, trials, generator):
    """The best of `epochs` scores that differ by noise alone (every epoch truly at
    `accuracy`, each scored on `images` images, errors independent): how far above the
    truth it lands on average, in points."""
    se = math.sqrt(accuracy * (1 - accuracy) / images)
    scores = accuracy + se * torch.randn(trials, epochs, generator=generator)
    return 100 * (scores.max(dim=1).values - accuracy).mean().item()


# ---- Trap 2: many verdicts at once -----------------------------------------------
def false_alarm_rate(verdicts, seeds, level, trials, generator):
    """Share of simulated experiments in which at least one of `verdicts` remedies that
    do NOTHING is called "better" or "worse", each judged as lesson 7 judges: paired by
    seed against one shared baseline, with a `level` t interval."""
    # a seed's luck, the same for every configuration: it cancels in the pairing (that
    # is what pairing buys), so it changes no number below; the verdicts are tied
    # together by the shared baseline's own noise instead
    luck = torch.randn(trials, 1, seeds, generator=generator)
    scores = luck + torch.randn(trials, verdicts + 1, seeds, generator=generator)
    d = scores[:, 1:] - scores[:, :1]  # each remedy minus the baseline, seed by seed
    t = d.mean(dim=-1) / (d.std(dim=-1) / math.sqrt(seeds))
    critical = dl_utils.t_quantile(1 - (1 - level) / 2, seeds - 1)
    return (t.abs() > critical).any(dim=1).float().mean().item()


def alarm_rows(verdicts, seeds, trials, generator):
    """Each verdict at 95%, and at Bonferroni's level: (level, simulated, the formula
    for independent verdicts)."""
    rows = []
    for each in (LEVEL, 1 - (1 - LEVEL) / verdicts):
        simulated = false_alarm_rate(verdicts, seeds, each, trials, generator)
        rows.append((each, simulated, 1 - each ** verdicts))
    return rows


def price_rows(verdicts):
    """The t factor that multiplies the SE: one verdict at 95%, or `verdicts`
    together."""
    rows = []
    for seeds in (2, 3, 4, 6, 8, 12, 20):
        one = dl_utils.t_975(seeds - 1)
        many = dl_utils.t_quantile(1 - (1 - LEVEL) / verdicts / 2, seeds - 1)
        rows.append([seeds, f"{one:.2f}", f"{many:.2f}", f"{many / one:.2f}x"])
    return rows


# ---- Trap 3: will it replicate? --------------------------------------------------
def replication_rate(effect, seeds, level, trials, generator):
    """Share of fresh experiments (new seeds) whose interval lies above 0 again, for a
    real effect of `effect` times the line: at 1.0 its expected estimate sits exactly
    on the line the verdict needs to cross."""
    critical = dl_utils.t_quantile(1 - (1 - level) / 2, seeds - 1)
    noise = torch.randn(trials, seeds, generator=generator)
    d = effect * critical / math.sqrt(seeds) + noise
    t = d.mean(dim=-1) / (d.std(dim=-1) / math.sqrt(seeds))
    return (t > critical).float().mean().item()


# ---- The lesson ------------------------------------------------------------------
def read_07(path):
    """Lesson 7's results, or one line saying how to make them."""
    path = Path(path)
    shown = dl_utils.display_path(path)
    if not path.exists():
        raise dl_utils.FriendlyError(f"no {shown}: run python 07_regularization.py "
                                     "first (it writes it)")
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise dl_utils.FriendlyError(f"cannot read {shown}: {err}") from err
    needed = {"runs", "found", "labels", "settings"}
    if not isinstance(record, dict) or not needed <= set(record):
        raise dl_utils.FriendlyError(f"{shown} is not lesson 7's results file")
    return record


def selection_bias(record, args, generator):
    """Trap 1: lesson 7's flattery per configuration, then the same with noise alone."""
    rows = flattery_rows(record)
    dl_utils.print_table(["configuration", "best epoch's own val acc %",
                          "cross-scored %", "flattery"], rows)
    s = record["settings"]
    base = next(r for r in record["runs"] if r["name"] == "baseline")
    noise = noise_flattery(s["epochs"], max(base["history"]["val_acc"]),
                           dl_utils.VAL_SIZE, args.trials, generator)
    gaps = [float(row[3]) for row in rows]
    half = dl_utils.VAL_SIZE // 2
    simulated = ""
    if s["epochs"] > 1:  # (with one epoch there is nothing to choose between)
        simulated = (f"With noise alone, {s['epochs']} epochs all truly as good as "
                     "the baseline's best, each scored on "
                     f"{dl_utils.VAL_SIZE:,} images with independent errors, the best "
                     f"would land {noise:.2f} points above the truth on average "
                     "(simulated). Real epochs' errors are not independent (the same "
                     "images, slowly changing weights), so the real flattery is "
                     "smaller, but it does not vanish.")
    dl_utils.prose(f"""
        Each row's first number is what lessons 3-6 quote: the best of {s['epochs']}
        epochs, scored on the images that picked it. It differs from the cross-scored
        number, whose images chose nothing, by {min(gaps):+.2f} to {max(gaps):+.2f}
        points. That column mixes two effects: the flattery, and a small cost of its
        own, since each cross-scored epoch was chosen on {half:,} images rather than
        {dl_utils.VAL_SIZE:,} (a slightly worse choice, scored honestly).
        {simulated}""")


def many_verdicts(verdicts, seeds, args, generator):
    """Trap 2: the false alarms of many 95% verdicts, and what Bonferroni costs."""
    found = alarm_rows(verdicts, seeds, args.trials, generator)
    each = found[0][1]  # a false verdict somewhere, 95% each (simulated)
    formula = found[0][2]  # the same, if the verdicts were independent
    bonf = found[1][1]  # ... with Bonferroni's intervals
    rows = []
    for name, (level, got, f) in zip(("95% each", "Bonferroni"), found):
        rows.append([name, f"{100 * level:.2f}%", f"{100 * got:.1f}%",
                     f"{100 * f:.1f}%"])
    dl_utils.print_table(["intervals", "each at",
                          "a false verdict somewhere (simulated)", "if independent"],
                         rows)
    noise = 2 * math.sqrt(0.05 * 0.95 / args.trials)  # two simulation standard errors
    compared = "below" if each < formula - noise else "about"
    kept = "within" if bonf <= 0.05 + noise else "ABOVE"
    dl_utils.prose(f"""
        {verdicts} comparisons where nothing differs, {seeds} seeds each, one shared
        baseline: with 95% each, {100 * each:.1f}% of experiments still print at least
        one "better" or "worse" ({compared} the independent formula's
        {100 * formula:.1f}%: sharing the baseline's runs ties the verdicts together).
        Bonferroni's widened intervals bring it to {100 * bonf:.1f}%, {kept} the 5%
        promised. The cost, in the factor t that multiplies each standard error:""")
    dl_utils.print_table(["seeds", "t, one verdict at 95%", f"t, {verdicts} together",
                          "wider by"], price_rows(verdicts))
    print("More seeds are how the power is bought back: the factor and the SE both "
          "shrink.")


def replication(record, seeds, level, args, generator):
    """Trap 3: how often a verdict is found again, at the line and for lesson 7's
    own."""
    rates = {}
    for effect in (0.5, 1, 1.5, 2, 3):
        rates[effect] = replication_rate(effect, seeds, level, args.trials, generator)
    rows = [[f"{effect:g} x the line", f"{100 * rate:.0f}%"]
            for effect, rate in rates.items()]
    dl_utils.print_table(["true effect", "found again with new seeds (simulated)"],
                         rows)
    for name, d in record["found"].items():
        if d["n"] == seeds and d["low"] > 0:  # lesson 7's "better" verdicts
            critical = dl_utils.t_quantile(1 - (1 - d["level"]) / 2, d["n"] - 1)
            effect = d["mean"] / d["se"] / critical
            rate = replication_rate(effect, seeds, level, args.trials, generator)
            dl_utils.prose(f"""
                Lesson 7's {record['labels'].get(name, name)}: {effect:.1f} x the line;
                if that were its true size, found again {100 * rate:.0f}% of the
                time.""")
    dl_utils.prose(f"""
        An effect exactly at the line is found again {100 * rates[1]:.0f}% of the time
        here (with many seeds, half the time: Goodman 1992), however careful the first
        experiment was: crossing the line says the effect is unlikely to be zero, not
        that it is as large as measured. And the
        winners of a table are, on average, those whose luck ran high (trap 1 again),
        so their measured size is itself a little flattered.""")


def main(argv=None):
    args = parse_args(argv)
    dl_utils.section("Lesson 7's numbers")
    record = read_07(args.results_07)
    verdicts = args.verdicts or len(record["found"])
    seeds = args.seeds or record["settings"]["seeds"]
    if seeds < 2:
        raise dl_utils.FriendlyError("lesson 7 ran one seed: rerun it with --seeds 2 "
                                     "or more, or pass --seeds")
    level = 1 - (1 - LEVEL) / verdicts  # Bonferroni's, as lesson 7 judged
    settings = record["settings"]
    print(f"{dl_utils.display_path(args.results_07)}: {len(record['runs'])} runs, "
          f"{settings['seeds']} seeds, {settings['epochs']} epochs.")
    print(f"Simulations: {args.trials:,} experiments each, {verdicts} verdicts, "
          f"{seeds} seeds.")
    generator = torch.Generator().manual_seed(args.seed)
    dl_utils.section("Trap 1: the best epoch flatters")
    selection_bias(record, args, generator)
    dl_utils.section(f"Trap 2: {verdicts} verdicts at once")
    many_verdicts(verdicts, seeds, args, generator)
    dl_utils.section("Trap 3: will it replicate?")
    replication(record, seeds, level, args, generator)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
