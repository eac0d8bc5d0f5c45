"""The writer shift: how the course's trained models read digits from writers they never
saw.

Every set here is a TEST set: nothing in the course is chosen on it. Per model:

    MNIST test        the 10,000 test digits, and their two halves: the first 5,000 and
                      the last 5,000 come from different populations of writers (MNIST's
                      documentation calls the first half the cleaner one: the table
                      measures which half the course's models find harder)
    MNIST at 8x8      the same test digits through the UCI pipeline below: what the 8x8
                      resolution alone costs, with MNIST's own writers
    other writers     scikit-learn's copy of the UCI handwritten digits (load_digits:
                      1,797 digits by 13 writers outside MNIST, shipped inside the
                      package, so offline). Each was a 32x32 binary bitmap counted in
                      4x4 blocks: an 8x8 grid of ink counts, 0 to 16. It is prepared the
                      way the course prepares any digit (dl_utils.digit_from_gray: the
                      digit's box scaled into 20x20, centred by mass in 28x28), as
                      lesson 9 serves it
    drawn             MNIST test digits re-drawn the way lesson 9's pad draws (the first
                      2,000), then prepared as served

Run it after `make run` (it scores the checkpoints in models/):
    python benchmarks/writer_shift.py                    # prints the table
    python benchmarks/writer_shift.py --update-docs      # and writes docs/results.md's
`make bench` runs it on the models its own `make run` trained.
"""

import argparse
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dl_utils  # noqa: E402

# ---- Settings (each has a command-line flag; -h lists them) ----
DRAWN = 2000  # test digits re-drawn like lesson 9's pad (drawing costs ~1 ms each)
SEED = 0  # the drawings' random pen
MARKERS = "<!-- writers:start -->", "<!-- writers:end -->"  # in RESULTS_DOC
RESULTS_DOC = ROOT / "docs" / "results.md"
HALF = 5000  # MNIST's test file: writers of the first 5,000 differ from the last 5,000


# ---- The sets, each as uint8 [N, 28, 28] digits prepared as the course prepares them
def prepare_8x8(counts: np.ndarray) -> np.ndarray:
    """8x8 ink counts (0-16) -> 28x28 uint8, through the course's own preparation."""
    return dl_utils.digit_from_gray(dl_utils.counts_to_image(counts), "an 8x8 digit")


uci_pipeline = dl_utils.uci_8x8  # MNIST's digits made the way UCI made its digits


def other_writers():
    """scikit-learn's digits, prepared: (X uint8 [1797, 28, 28], y)."""
    from sklearn.datasets import load_digits  # imported here: only this script needs it
    digits = load_digits()
    X = np.stack([prepare_8x8(image) for image in digits.images])
    return torch.from_numpy(X), torch.as_tensor(digits.target, dtype=torch.long)


def test_sets(drawn, seed):
    """{name: (X uint8 [N, 28, 28], y)}: every set of the table."""
    _, _, test_X, test_y = dl_utils.load_mnist_tensors()
    at_8x8 = np.stack([prepare_8x8(uci_pipeline(d)) for d in test_X.numpy()])
    rng = np.random.default_rng(seed)
    pads = [dl_utils.draw_like_a_canvas(test_X[i].numpy(), rng) for i in range(drawn)]
    drawings = np.stack([dl_utils.digit_from_gray(p.convert("L")) for p in pads])
    return {"MNIST test": (test_X, test_y),
            "first 5,000": (test_X[:HALF], test_y[:HALF]),
            "last 5,000": (test_X[HALF:], test_y[HALF:]),
            "MNIST at 8x8": (torch.from_numpy(at_8x8), test_y),
            "scikit-learn digits": other_writers(),
            "drawn": (torch.from_numpy(drawings), test_y[:drawn])}


# ---- Scoring -------------------------------------------------------------------------
def course_models(folder):
    """Every inference checkpoint in `folder` (as lesson 9 serves them), in eval
    mode."""
    found = []
    for path in sorted(Path(folder).glob("*.pt")):
        if path.stem.endswith(("_whole", "_interrupted", "_training")):
            continue
        try:
            model, checkpoint = dl_utils.load_checkpoint(path)
        except dl_utils.FriendlyError as err:
            print(f"  skipped {dl_utils.display_path(path)}: {err}")
            continue
        found.append((path.name, checkpoint["model_class"], model.eval()))
    return found


def accuracy(model, X, y) -> float:
    with torch.inference_mode():
        logits = torch.cat([model(dl_utils.normalize(b)) for b in X.split(1000)])
    return (logits.argmax(dim=1) == y).float().mean().item()


def half_gap(first, last, n=HALF):
    """last minus first, in points, with a 95% interval: two independent samples of
    writers, so the variances add (no pairing: they are different digits)."""
    se = math.sqrt(first * (1 - first) / n + last * (1 - last) / n)
    d = last - first
    return (
        f"{100 * d:+.2f} [{100 * (d - 1.96 * se):+.2f}, {100 * (d + 1.96 * se):+.2f}]"
    )


def table(models, sets):
    """Rows: per model, each set's accuracy % with its 95% Wilson interval, and the gap
    between MNIST's two halves of writers."""
    names = list(sets)
    headers = ["checkpoint", "model", *names[:3], "last minus first [95%]", *names[3:]]
    rows = []
    for file, name, model in models:
        acc = {s: accuracy(model, X, y) for s, (X, y) in sets.items()}
        cells = [short(acc[s], len(y)) for s, (_, y) in sets.items()]
        rows.append(
            [
                file,
                name,
                *cells[:3],
                half_gap(acc["first 5,000"], acc["last 5,000"]),
                *cells[3:],
            ]
        )
    return headers, rows


def short(acc, n):
    """'97.73 (97.4-98.0)': an accuracy in % with its 95% Wilson interval, one
    decimal."""
    low, high = dl_utils.wilson_interval(acc, n)
    return f"{100 * acc:.2f} ({100 * low:.1f}-{100 * high:.1f})"


def markdown(headers, rows, sets):
    counts = ", ".join(f"{name} {len(y):,}" for name, (_, y) in sets.items())
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(
        [
            *lines,
            "",
            f"Accuracy %, with its 95% interval. Digits per set: {counts}. "
            "Test sets only: nothing in the course is chosen on them. Written by "
            "`python benchmarks/writer_shift.py --update-docs` "
            "(`make bench`).",
            "",
            findings(headers, rows),
        ]
    )


def findings(headers, rows):
    """What the table says, computed from it (never a sentence the numbers
    contradict)."""
    col = {h: i for i, h in enumerate(headers)}
    def value(row, name):
        return float(row[col[name]].split()[0])

    def low(row):  # the interval's lower end, from "+0.40 [+0.13, +0.67]"
        return float(row[col["last minus first [95%]"]].split("[")[1].split(",")[0])

    def high(row):
        return float(row[col["last minus first [95%]"]].split(", ")[1].rstrip("]"))
    first = sum(low(r) > 0 for r in rows)
    last = sum(high(r) < 0 for r in rows)
    best = max(rows, key=lambda r: value(r, "MNIST test"))
    drop = value(best, "MNIST test") - value(best, "MNIST at 8x8")
    more = value(best, "MNIST at 8x8") - value(best, "scikit-learn digits")
    rest = len(rows) - first - last
    return (
        "MNIST's documentation calls the first 5,000 test digits the cleaner half; "
        "for "
        f"{first} of {len(rows)} checkpoints here the first half was the harder one "
        "(the "
        f"interval above 0), for {last} the last"
        + (f", and for {rest} the halves could not be told apart. " if rest else ". ")
        + f"The best on MNIST's test set, {best[0]}, is {drop + more:.2f} points less "
        "accurate on the UCI writers' digits than on MNIST's; cutting MNIST's own "
        "digits "
        f"down to 8x8 costs it {drop:.2f} of them: the rest, {more:.2f}, is the other "
        f"writers and how their digits were scanned."
    )


def update_docs(text, path=RESULTS_DOC):
    """Replace the writers block of docs/results.md with `text`."""
    old = path.read_text()
    start, end = MARKERS
    if start not in old or end not in old:
        raise dl_utils.FriendlyError(f"{dl_utils.display_path(path)} has no {start} "
                                     f"... {end} block")
    new = re.sub(re.escape(start) + ".*?" + re.escape(end),
                 lambda _: f"{start}\n{text}\n{end}", old, flags=re.DOTALL)
    with dl_utils.atomic_path(path) as tmp:
        tmp.write_text(new)
    print(f"{dl_utils.display_path(path)}: the writer-shift block rewritten")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=dl_utils.MODELS_DIR,
                        help="the checkpoints to score (default: %(default)s)")
    parser.add_argument(
        "--drawn",
        type=dl_utils.positive_int,
        default=DRAWN,
        help="test digits re-drawn like a canvas (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=SEED,
                        help="seeds the drawings' pen (default: %(default)s)")
    parser.add_argument("--update-docs", "--update-readme", action="store_true",
                        dest="update_docs",
                        help="write the table into docs/results.md's writers block "
                             "(--update-readme: its former name)")
    args = parser.parse_args(argv)
    headers, rows, sets = measure(args.models_dir, args.drawn, args.seed)
    dl_utils.print_table(headers, rows)
    if args.update_docs:
        update_docs(markdown(headers, rows, sets))
    return 0


def measure(models_dir, drawn=DRAWN, seed=SEED):
    """(headers, rows, sets): every checkpoint of `models_dir` on every set."""
    models = course_models(models_dir)
    if not models:
        raise dl_utils.FriendlyError(
            f"no checkpoint in {dl_utils.display_path(models_dir)}: "
            "run make run (or 03, 06 and 06b) first"
        )
    sets = test_sets(drawn, seed)
    return (*table(models, sets), sets)


if __name__ == "__main__":
    dl_utils.run_main(main)
