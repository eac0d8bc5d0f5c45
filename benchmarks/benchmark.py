"""Measure the speed of the learning path, and the accuracy each lesson reaches.

Measurements in one run:
1. Data pipelines: the same model (784-128-10, batch 64, Adam) trained with lesson 3's
   train_epoch over (a) the pipeline most tutorials use, torchvision's MNIST with
   per-sample ToTensor and Normalize transforms in a DataLoader, and (b) this
   repository's loaders (decoded and normalized once, batches sliced from memory).
2. `make run` end to end: the wall time of every numbered lesson with its default
   settings, and the accuracy it reached; where lesson 3's time goes.
3. Lesson 8's DataLoader with 0 and 2 worker processes (small PNGs, larger JPEGs),
   lesson 10 with 1 and 2 processes: seconds per epoch; lesson 6's training step with
   its feature maps stored contiguous and channels_last, with pooling before the ReLU
   (exercise 6's reorder), and with batch norm right after each convolution (its usual
   place) and after the pooling.
4. The test suite's time, beside make run's (its budget: no longer than make run).
It prints markdown tables (docs/results.md's speed block and the README's learning-path
times come from them) and writes results/benchmarks.json with the hardware.

Run it:
    make bench                                  # or: python benchmarks/benchmark.py
    python benchmarks/benchmark.py --quick      # tiny runs, part of an epoch (tests)
    python benchmarks/benchmark.py --from-results results/benchmarks.json --update-docs
"""

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tempfile  # noqa: E402  (after the path set-up above)

import torch  # noqa: E402

import dl_utils  # noqa: E402
from benchmarks import writer_shift  # noqa: E402

# ---- Settings (each has a command-line flag; -h lists them) ----
PIPELINE_EPOCHS = 1  # epochs per data pipeline; more = steadier numbers, slower
RESULTS_FILE = dl_utils.RESULTS_DIR / "benchmarks.json"
# --quick: tiny settings per lesson, so that the whole benchmark runs in the test suite
QUICK_ARGS = {
    "03_train_mnist.py": ["--epochs", "1", "--subset", "2000"],
    "03b_training_that_survives.py": ["--epochs", "1", "--subset", "2000"],
    "05_experiment_architectures.py": [
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--subset",
        "1000",
    ],
    "06_convolutional_network.py": ["--epochs", "1", "--subset", "1000"],
    "06b_other_writers.py": [
        "--epochs",
        "1",
        "--subset",
        "1000",
        "--writer-check",
        "100",
    ],
    "07_regularization.py": ["--epochs", "1", "--seeds", "2", "--subset", "300"],
    "07b_inside_the_remedies.py": ["--epochs", "1", "--subset", "300"],
    "07c_how_sure.py": ["--trials", "2000"],
    "08_your_own_images.py": ["--per-class", "5"],
    "08b_fine_tuning.py": ["--per-class", "5", "--epochs", "1"],
    "09_serve_digits.py": ["--self-check", "--requests", "5", "--drawn", "50"],
    "10_distributed_training.py": [
        "--epochs",
        "1",
        "--subset",
        "2000",
        "--proof-steps",
        "10",
    ],
    "11_sequences_and_rnns.py": ["--epochs", "1", "--subset", "1000"],
    "12_attention_and_transformers.py": ["--epochs", "1", "--subset", "1000"],
    "12b_inductive_bias.py": ["--small-steps", "8"],
    "13_ensembles.py": ["--writer-check", "100"],
}
QUICK_BATCHES = 50  # --quick: batches per pipeline instead of whole epochs


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--epochs", type=dl_utils.positive_int, default=PIPELINE_EPOCHS,
                        help="epochs per data pipeline (default: %(default)s)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_BATCHES} batches per pipeline and tiny lesson runs, "
        "to check that the benchmark works (numbers mean little)",
    )
    parser.add_argument(
        "--lessons",
        nargs="+",
        metavar="SCRIPT",
        default=None,
        help="--quick only: run just these lessons (default: all of them)",
    )
    parser.add_argument("--update-docs", "--update-readme", action="store_true",
                        dest="update_docs",
                        help="write the tables into docs/results.md's measured blocks "
                             "and the learning path's times into README.md "
                             "(--update-readme: its former name)")
    parser.add_argument(
        "--from-results",
        metavar="JSON",
        default=None,
        help="measure nothing: render (and with --update-readme, write) the "
        "tables of an earlier run's JSON",
    )
    parser.add_argument(
        "--results",
        type=dl_utils.output_file,
        default=str(RESULTS_FILE),
        help="where to write the JSON results (default: "
        f"{dl_utils.display_path(RESULTS_FILE)})",
    )
    args = parser.parse_args(argv)
    if args.lessons and not args.quick:
        parser.error("--lessons needs --quick: make bench times all of `make run`")
    known = sorted(p.name for p in ROOT.glob("[0-9][0-9]*_*.py"))
    if args.lessons and set(args.lessons) - set(known):
        parser.error(f"unknown lesson(s) {sorted(set(args.lessons) - set(known))}: "
                     f"choose from {known}")
    return args


def per_sample_loaders(batch_size, generator):
    """The usual tutorial pipeline: PIL image -> ToTensor -> Normalize, one sample at
    a time."""
    from torchvision import datasets, transforms

    normalize = transforms.Normalize((dl_utils.MNIST_MEAN,), (dl_utils.MNIST_STD,))
    transform = transforms.Compose([transforms.ToTensor(), normalize])
    full = datasets.MNIST(dl_utils.DATA_DIR, train=True, transform=transform)
    train_idx, _ = dl_utils.train_val_split(len(full))  # the same 55,000 images as ours
    subset = torch.utils.data.Subset(full, train_idx.tolist())
    return torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=True,
                                       num_workers=0, generator=generator)


class Limited:
    """The first `n` batches of a loader (for --quick)."""

    def __init__(self, loader, n):
        self.loader, self.n = loader, n

    def __iter__(self):
        for i, batch in enumerate(self.loader):
            if i == self.n:
                return
            yield batch

    def __len__(self):
        return min(self.n, len(self.loader))


def train_throughput(loader, epochs, max_batches=None, batch_size=64):
    """Images per second through lesson 3's training loop (dl_utils' copy), for one
    pipeline."""
    dl_utils.set_seed(0)
    model = dl_utils.SimpleNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    batches = Limited(loader, max_batches) if max_batches else loader
    images = epochs * (max_batches * batch_size if max_batches else len(loader.dataset))
    start = time.perf_counter()
    for _ in range(epochs):
        dl_utils.train_epoch(model, batches, loss_fn, optimizer, "cpu")
    return images / (time.perf_counter() - start)


def compare_pipelines(epochs, max_batches):
    """Training throughput of the per-sample pipeline vs the repository's loaders."""
    # a one-off import, not data preparation: outside the clocks
    import torchvision  # noqa: F401

    # extraction and checks happen once, outside the clocks too
    dl_utils.prepare_mnist()
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    ours = dl_utils.load_mnist_data(64, generator=generator)[0]
    prep_ours = time.perf_counter() - start
    start = time.perf_counter()
    theirs = per_sample_loaders(64, generator)
    prep_theirs = time.perf_counter() - start
    # preparation: ours decodes and normalizes all 70,000 images now; theirs defers the
    # work to every batch of every epoch, where it shows up in the training throughput.
    rows = [
        {
            "pipeline": (
                "torchvision MNIST + ToTensor + Normalize, DataLoader (num_workers=0)"
            ),
            "prepare_s": prep_theirs,
            "images_per_s": train_throughput(theirs, epochs, max_batches),
        },
        {
            "pipeline": "dl_utils.load_mnist_data (decoded once, batches from memory)",
            "prepare_s": prep_ours,
            "images_per_s": train_throughput(ours, epochs, max_batches),
        },
    ]
    return {"rows": rows, "ratio": rows[1]["images_per_s"] / rows[0]["images_per_s"],
            "epochs": epochs, "max_batches": max_batches}


def python_seconds(code):
    """Wall time of a fresh interpreter running `code` (what every script pays
    first)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return time.perf_counter() - start


def where_time_goes(lesson_seconds):
    """Lesson 3's wall time split into imports, data preparation, training, plotting."""
    imports = python_seconds("import dl_utils, tqdm")  # torch, numpy, matplotlib, tqdm
    start = time.perf_counter()
    dl_utils.load_mnist_data()
    data = time.perf_counter() - start
    checkpoint = torch.load(dl_utils.MODELS_DIR / "simple_nn.pt", weights_only=True)
    training = checkpoint["metrics"]["train_seconds"]
    start = time.perf_counter()
    dl_utils.plot_training_history(checkpoint["history"], "benchmark_history.png")
    plotting = time.perf_counter() - start
    parts = {"Python start-up and imports": imports, "data preparation (decode, check, "
             "normalize)": data, "training (epochs + validation)": training,
             "one training-curve figure": plotting}
    parts["everything else (model, test, saving, printing)"] = max(
        0.0, lesson_seconds - sum(parts.values()))
    return parts


def loader_workers(per_class=50):
    """Lesson 8's question, measured: DataLoader with num_workers 0 vs 2, images per
    second.

    On MNIST-sized PNGs (cheap to decode) and on the same digits as 280x280 JPEG
    "photos" (costly to decode), read by torchvision's ImageFolder with
    dl_utils.read_grayscale.
    """
    from PIL import Image
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    pngs = dl_utils.export_mnist_pngs(dl_utils.OUTPUT_DIR / "data" / "mnist_png" /
                                      f"validation_{per_class}_per_digit", per_class)
    steps = v2.Compose([v2.Resize((28, 28), antialias=True), v2.ToImage(),
                        v2.ToDtype(torch.float32, scale=True)])
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for path in pngs.rglob("*.png"):
            big = Image.open(path).resize((280, 280), Image.Resampling.BILINEAR)
            (Path(folder) / path.parent.name).mkdir(exist_ok=True)
            big.save(Path(folder) / path.parent.name / f"{path.stem}.jpg", quality=90)
        for kind, root in (("28x28 PNG", pngs), ("280x280 JPEG", Path(folder))):
            data = ImageFolder(root, transform=steps, loader=dl_utils.read_grayscale)
            speed = {}
            for workers in (0, 2):
                loader = DataLoader(data, batch_size=32, num_workers=workers)
                start = time.perf_counter()
                n = sum(len(y) for _, y in loader)
                speed[workers] = n / (time.perf_counter() - start)
            rows.append({"images": kind, "workers_0": speed[0], "workers_2": speed[2],
                         "ratio": speed[2] / speed[0]})
    return rows


def distributed_timing(quick):
    """Lesson 10 with 1 and with 2 processes: seconds per epoch, side by side."""
    flags = ["--epochs", "1" if quick else "2", "--proof-steps", "0"]
    flags += ["--subset", "500"] if quick else []
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for nproc in (1, 2):
            out = Path(folder) / f"{nproc}.json"
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "10_distributed_training.py"),
                    *flags,
                    "--nproc",
                    str(nproc),
                    "--results",
                    str(out),
                    "--checkpoint",
                    str(Path(folder) / "ddp.pt"),
                ],
                check=True,
                capture_output=True,
            )
            r = json.loads(out.read_text())
            runs.append(
                {
                    "processes": nproc,
                    "threads": r["threads"],
                    "epoch_seconds": sum(r["epoch_seconds"]) / len(r["epoch_seconds"]),
                    "train_loss": r["train_loss"],
                }
            )
    return runs


def with_blocks(model, order):
    """Lesson 6's CNN with each block's layers in `order`, from "conv", "relu", "pool"
    and "norm" (batch norm, nn.BatchNorm2d, which makes the convolution's bias
    redundant: it is dropped). Built from each block's own convolution, whatever order
    the model came with."""
    for name in ("block1", "block2"):
        block = getattr(model, name)
        conv = next(layer for layer in block if isinstance(layer, torch.nn.Conv2d))
        if "norm" in order:
            conv.register_parameter("bias", None)
        layers = {"conv": conv, "relu": torch.nn.ReLU(), "pool": torch.nn.MaxPool2d(2),
                  "norm": torch.nn.BatchNorm2d(conv.out_channels)}
        setattr(model, name, torch.nn.Sequential(*(layers[part] for part in order)))
    return model


# What memory_formats times: lesson 6's CNN (dl_utils' copy) in each of these forms
USUAL = ["conv", "relu", "pool"]  # 06's blocks, as every textbook writes them
LAST = torch.channels_last


def variant(order=USUAL, memory_format=LAST):
    return with_blocks(dl_utils.SmallCNN(), order).to(memory_format=memory_format)


VARIANTS = {"contiguous": partial(variant, USUAL, torch.contiguous_format),
            "channels_last": partial(variant, USUAL),
            "pool_first": partial(variant, ["conv", "pool", "relu"]),
            "norm_after_conv": partial(variant, ["conv", "norm", "relu", "pool"]),
            "norm_after_pool": partial(variant, ["conv", "pool", "norm", "relu"])}


def memory_formats(quick, rounds=5):
    """Lesson 6's CNN (06's defaults): milliseconds per training step (batch 64, Adam)
    with contiguous and with channels_last feature maps, with pooling before the ReLU,
    and with batch norm after each convolution (its usual place) and after the pooling
    (VARIANTS), alternated so that all see the same machine; the median round of
    each."""
    train_X, train_y, _, _ = dl_utils.load_mnist_tensors()
    X, y = dl_utils.normalize(train_X[:64]), train_y[:64]
    steps = 5 if quick else 60
    times = {name: [] for name in VARIANTS}
    for _ in range(1 if quick else rounds):
        for name, make in VARIANTS.items():
            torch.manual_seed(0)
            model = make()
            optimizer = torch.optim.Adam(model.parameters())
            # 10 warm-up steps: oneDNN prepares its kernels
            for step in range(steps + 10):
                if step == 10:
                    start = time.perf_counter()
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(X), y).backward()
                optimizer.step()
            times[name].append(1000 * (time.perf_counter() - start) / steps)
    ms = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
    last = ms["channels_last"]
    return {**ms, "ratio": ms["contiguous"] / last,
            "pool_first_ratio": ms["pool_first"] / last,
            "norm_after_conv_ratio": ms["norm_after_conv"] / last,
            "norm_after_pool_ratio": ms["norm_after_pool"] / last}


def test_suite_seconds():
    """`make test`'s suite (pytest -n auto), timed: its budget is make run's time."""
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "auto",
            "--maxschedchunk",
            "1",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        # as make test runs it
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        failed = [
            ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))
        ]
        raise dl_utils.FriendlyError(
            "the test suite failed, so it was not timed: "
            + ("; ".join(failed) or proc.stdout.strip()[-300:])
        )
    return time.perf_counter() - start


def torchvision_import_seconds():
    """What importing torchvision would add to every lesson (they read MNIST without
    it)."""
    return python_seconds("import torch, torchvision") - python_seconds("import torch")


LESSON_HEADER = re.compile(r"^#+ (\d\d[a-z]?_\w+\.py) #+$")


def run_make(env):
    """`make run` itself, each lesson timed from the header make prints before it."""
    proc = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lessons, current, start = {}, None, time.perf_counter()
    for line in proc.stdout:
        match = LESSON_HEADER.match(line.strip())
        if match:
            now = time.perf_counter()
            if current:
                lessons[current]["seconds"] = now - lessons[current]["seconds"]
            current = match.group(1)
            lessons[current] = {"seconds": now, "output": ""}
        elif current:
            lessons[current]["output"] += line
    if proc.wait() != 0:
        raise dl_utils.FriendlyError(
            f"`make run` failed in {current}:\n"
            f"{lessons.get(current, {}).get('output', '')[-2000:]}"
        )
    end = time.perf_counter()
    lessons[current]["seconds"] = end - lessons[current]["seconds"]
    return lessons, end - start


def run_quick(env, only=None):
    """Every lesson (or `only` these) with tiny settings, one subprocess each, as
    make run would: checks the machinery, not the speed."""
    lessons, start = {}, time.perf_counter()
    for script in sorted(p.name for p in ROOT.glob("[0-9][0-9]*_*.py")):
        if only and script not in only:
            continue
        t0 = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(ROOT / script), *QUICK_ARGS.get(script, [])],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise dl_utils.FriendlyError(f"{script} failed:\n{result.stderr[-2000:]}")
        lessons[script] = {"seconds": time.perf_counter() - t0, "output": result.stdout}
    return lessons, time.perf_counter() - start


# dl_utils.format_accuracy's two forms
ACCURACY_ERROR = r"(?: ± [\d.]+| \(95%: [\d.]+-[\d.]+\))"
SEED_ERROR = r"(?: ± [\d.]+| \(every seed equal\))"  # dl_utils.points' forms


def accuracy_of(script, output):
    """What the lesson reports: test accuracy, or the number it is about."""
    patterns = [
        r"^test\s+[\d,]+\s+[\d.]+\s+([\d.]+%)",  # 03 and 06: the kept model, test row
        r"now, in this script\s+[\d,]+ / [\d,]+\s+([\d.]+%)",  # 04
        r"baseline.*?: ([\d.]+%) test accuracy",  # 02
        rf"^(TwoLayerNN|ThreeLayerNN|TanhNN)\s+([\d.]+{SEED_ERROR}?)\s+± [\d.]+\s",
        rf"^(.+): test accuracy ([\d.]+{SEED_ERROR}?)% \(mean",
        r"^(lesson 6's CNN on the folder) \([^)]*\): ([\d.]+)%",
        r"^(after fine-tuning)\s+([\d.]+)%",  # 08b, on the folder's held-out half
        r"^(the chosen ensemble)\s+\d+\s+([\d.]+)%",  # 13, on the test set
        r"^No ensemble beat .*?: (\S+ alone), on the test set: ([\d.]+)%",
    ]
    # (05: the test table, mean ± SE over seeds per architecture; 07: its chosen
    # remedies; 08: the CNN on the exported folder)
    if script.startswith("07b"):
        found = re.search(
            r"^validation accuracy\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$",
            output,
            re.MULTILINE,
        )
        return (
            (
                f"validation: eval mode {found[1]}%, train mode {found[2]}% (batches "
                "of "
                f"1,000), {found[3]}% (batches of 8)"
            )
            if found
            else "?"
        )
    # no model: the false alarms of many verdicts, simulated
    if script.startswith("07c"):
        found = re.findall(
            r"^(95% each|Bonferroni)\s+[\d.]+%\s+([\d.]+%)", output, re.MULTILINE
        )
        return (
            "a false verdict somewhere: " + ", ".join(f"{v} ({k})" for k, v in found)
            if len(found) == 2
            else "?"
        )
    if script.startswith("12b"):  # the CNN and the ViT at each training-set size
        found = re.findall(r"^\s*([\d,]+)\s+([\d.]+)\s+([\d.]+)\s+[\d,]+\s+[\d,]+\s+\S",
                           output, re.MULTILINE)
        return ("; ".join(f"{n} images: CNN {c}%, ViT {v}%" for n, c, v in found)
                if found else "?")
    if script.startswith("09"):
        return serving_result(output)
    if script.startswith("10"):
        return distributed_result(output)
    if script.startswith("01"):
        return (
            "gradients match autograd"
            if "NO" not in output.split("match (< 1e-6)")[-1][:400]
            else "MISMATCH"
        )
    for pattern in patterns:
        found = re.findall(pattern, output, flags=re.MULTILINE)
        if found:
            if isinstance(found[0], tuple):
                return "; ".join(f"{name} {value}%" for name, value in found)
            label = "nearest-mean baseline " if script.startswith("02") else "test "
            return label + found[0]
    return "?"


def serving_result(output):
    """09 --self-check: latency, and lessons 3 and 6 on drawn digits vs stored test
    digits."""
    parts = []
    latency = re.search(r"p50 ([\d.]+) ms, p95 ([\d.]+) ms", output)
    if latency:
        parts.append(f"latency p50 {latency[1]} ms, p95 {latency[2]} ms")
    for name in ("simple_nn", "cnn"):
        found = re.search(
            rf"models/{name}\.pt\s+([\d.]+%){ACCURACY_ERROR}\s+([\d.]+%)", output
        )
        if found:
            parts.append(f"{name}.pt {found[1]} on test digits, {found[2]} drawn")
    return "; ".join(parts) or "?"


def distributed_result(output):
    """10: the proof's weight difference."""
    proof = re.search(r"one process with batch \d+: (\S+) ", output)
    return f"DDP vs one process: weights within {proof[1]}" if proof else "?"


MAKE_RUN_BUDGET = 900  # seconds: the course's promise, every lesson within 15 minutes


def budget_sentence(seconds, quick=False):
    """make run's time against the course's budget, said either way."""
    if quick:
        return "(--quick: the budget of `make run` is not judged on tiny settings.)"
    verdict = "within" if seconds <= MAKE_RUN_BUDGET else "**over**"
    return (
        f"`make run` took {seconds:.0f} s, {seconds / MAKE_RUN_BUDGET:.0%} of the "
        f"course's {MAKE_RUN_BUDGET // 60}-minute budget: {verdict} it on this "
        "machine, "
        "this time."
    )


def markdown(headers, rows):
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(
        lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    )


def report(record):
    """The measurements as markdown: docs/results.md's speed block."""
    hw, pipelines, lessons = record["hardware"], record["pipelines"], record["lessons"]
    parts = [
        f"Measured by `make bench` on {record['date'][:10]}: {hw['cpu']} "
        f"({hw.get('cpu_capability', 'capability not recorded')}), "
        f"{hw['cpu_cores']} cores, torch {hw['torch']} ({hw['torch_threads']} "
        "threads), "
        f"device {hw['device']}"
        + (" (--quick: tiny settings)" if record["quick"] else "")
        + ".",
        "",
        markdown(
            ["lesson", "wall time (s)", "result"],
            [
                [name, f"{v['seconds']:.1f}", v["accuracy"]]
                for name, v in lessons.items()
            ]
            + [
                [
                    "**make run** (all, in order)",
                    f"**{record['make_run_seconds']:.0f}**",
                    "",
                ]
            ],
        ),
        "",
        markdown(
            [
                "data pipeline (lesson 3's model and loop)",
                "preparation (s)",
                "training images/s",
            ],
            [
                [r["pipeline"], f"{r['prepare_s']:.2f}", f"{r['images_per_s']:,.0f}"]
                for r in pipelines["rows"]
            ],
        ),
        "",
        budget_sentence(record["make_run_seconds"], record["quick"]),
        "",
        f"Training throughput: **{pipelines['ratio']:.1f}x** in favour of decoding "
        "once.",
    ]
    if record["lesson03_breakdown"]:
        parts += [
            "",
            markdown(
                ["where 03_train_mnist.py spends its time", "seconds"],
                [[k, f"{v:.1f}"] for k, v in record["lesson03_breakdown"].items()],
            ),
            "",
            "(The parts are timed separately from the lesson's run, so they need "
            "not add up exactly to its wall time.)",
        ]
    if record.get("loader_workers"):
        parts += [
            "",
            markdown(
                [
                    "lesson 8: DataLoader over",
                    "num_workers=0 images/s",
                    "num_workers=2 images/s",
                    "2 workers vs 0",
                ],
                [
                    [
                        r["images"],
                        f"{r['workers_0']:,.0f}",
                        f"{r['workers_2']:,.0f}",
                        f"{r['ratio']:.2f}x",
                    ]
                    for r in record["loader_workers"]
                ],
            ),
        ]
    if record.get("distributed"):
        one, two = record["distributed"]
        same = max(abs(a - b) for a, b in zip(one["train_loss"], two["train_loss"]))
        parts += [
            "",
            markdown(
                ["lesson 10: processes", "threads each", "seconds per epoch"],
                [
                    [r["processes"], r["threads"], f"{r['epoch_seconds']:.2f}"]
                    for r in record["distributed"]
                ],
            ),
            "",
            "Two processes took "
            f"**{two['epoch_seconds'] / one['epoch_seconds']:.1f}x** "
            f"the time of one per epoch on these {hw['cpu_cores']} cores (no extra "
            "hardware to gain, and every step waits for an all-reduce); their "
            "training "
            f"losses agree to {same:.1g}.",
        ]
    if record.get("memory_formats"):
        m = record["memory_formats"]
        parts += [
            "",
            f"Lesson 6's CNN, one training step (batch 64, Adam): "
            f"{m['contiguous']:.1f} ms with contiguous feature maps, "
            f"{m['channels_last']:.1f} ms with channels_last (06's default on the "
            "CPU): "
            f"**{m['ratio']:.2f}x** as fast, alternated in one run.",
        ]
        if "pool_first" in m:  # (older records timed other variants)
            parts[-1] += (
                f" With pooling before the ReLU (exercise 6's reorder: the same "
                f"numbers, ReLU on a quarter of the values), {m['pool_first']:.1f} ms, "
                f"{m['pool_first_ratio']:.2f}x the step of 06's order. With batch norm "
                f"(lesson 7) right after each convolution, its usual place: "
                f"{m['norm_after_conv']:.1f} ms, {m['norm_after_conv_ratio']:.2f}x; "
                f"after the pooling, on a quarter of the values: "
                f"{m['norm_after_pool']:.1f} ms, {m['norm_after_pool_ratio']:.2f}x.")
    if record.get("test_suite_seconds"):
        suite, run = record["test_suite_seconds"], record["make_run_seconds"]
        parts += [
            "",
            f"The test suite (`make test` without its install and lint): "
            f"**{suite:.0f} s**, {suite / run:.2f}x the time of `make run` measured "
            "in the same session.",
        ]
    if record.get("model_sizes"):
        parts += ["", sizes_sentence(record["model_sizes"])]
    return "\n".join(parts)


RESULTS_DOC = ROOT / "docs" / "results.md"  # the measured tables; the README links it
BENCH_MARKERS = "<!-- benchmark:start -->", "<!-- benchmark:end -->"  # in RESULTS_DOC
PATH_MARKERS = "<!-- path-times:start -->", "<!-- path-times:end -->"  # in README.md
WORDS_PER_MINUTE = 120  # a careful pace for code with comments (prose reads at ~250)


def path_times(record):
    """The learning path: each lesson's size, an estimated reading time, its measured
    run."""
    rows = []
    for name, lesson in record["lessons"].items():
        text = (ROOT / name).read_text()
        words = len(text.split())
        rows.append([f"`{name}`", f"{len(text.splitlines())}", f"{words:,}",
                     f"{words / WORDS_PER_MINUTE:.0f}", f"{lesson['seconds']:.0f}"])
    return "\n".join(
        [
            markdown(
                ["lesson", "lines", "words", "minutes to read", "seconds to run"], rows
            ),
            "",
            f"(Reading time: its words at {WORDS_PER_MINUTE} a minute, a careful pace "
            "for code "
            "with comments; then add the output. Run time: `make run` on "
            f"{record['date'][:10]}, "
            f"{record['hardware']['cpu']}, {record['make_run_seconds']:.0f} s for all "
            "of them.)",
        ]
    )


def model_sizes(models_dir):
    """Lesson 3's MLP and lesson 6's CNN as make run saved them: parameters, their
    bytes as float32, and the file on disk (the weights plus the metadata of lesson
    4's checkpoint)."""
    sizes = {}
    for name in ("simple_nn.pt", "cnn.pt"):
        path = Path(models_dir) / name
        if path.exists():
            count = dl_utils.count_parameters(dl_utils.load_checkpoint(path)[0])
            sizes[name] = {"parameters": count, "float32_kb": count * 4 / 1000,
                           "file_kb": path.stat().st_size / 1000}
    return sizes


def sizes_sentence(sizes):
    """The model sizes, as one sentence (nothing when make run saved neither model)."""
    said = {"simple_nn.pt": "the MLP of lesson 3", "cnn.pt": "the CNN of lesson 6"}
    parts = [
        f"{said[name]} has {s['parameters']:,} parameters, {s['float32_kb']:.0f} KB as "
        f"float32 (`models/{name}`: {s['file_kb']:.0f} KB on disk, metadata included)"
        for name, s in sizes.items()
    ]
    return f"Model sizes: {'; '.join(parts)}." if parts else ""


def update_block(text, path=RESULTS_DOC, start=BENCH_MARKERS[0], end=BENCH_MARKERS[1]):
    """Replace a measured block of a markdown file (between the two markers) with
    `text`; the rest of the file stays as it is."""
    content = path.read_text()
    if start not in content or end not in content:
        raise dl_utils.FriendlyError(f"{path} has no {start} ... {end} block")
    head, rest = content.split(start, 1)
    tail = rest.split(end, 1)[1]
    with dl_utils.atomic_path(path) as tmp:
        tmp.write_text(f"{head}{start}\n{text}\n{end}{tail}")
    print(f"Updated the measured block {start} of {dl_utils.display_path(path)}")


def measure(args):
    """Run every measurement; return the record that goes to JSON."""
    device = dl_utils.get_device("cpu")
    dl_utils.section("1. Data pipelines: per-sample transforms vs decoded once")
    pipelines = compare_pipelines(args.epochs, QUICK_BATCHES if args.quick else None)
    dl_utils.section(
        "2. The learning path" + (" (quick settings)" if args.quick else ": make run")
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "agg"}
    lessons, total = run_quick(env, args.lessons) if args.quick else run_make(env)
    for name, lesson in lessons.items():
        lesson["accuracy"] = accuracy_of(name, lesson.pop("output"))
    parts = (
        None if args.quick else where_time_goes(lessons["03_train_mnist.py"]["seconds"])
    )
    if parts:
        parts["(not paid) importing torchvision, which the lessons avoid"] = \
            torchvision_import_seconds()
    dl_utils.section("3. Lesson 8's DataLoader workers, lesson 10's processes")
    workers = loader_workers(5 if args.quick else 50)
    distributed = distributed_timing(args.quick)
    layouts = memory_formats(args.quick)
    writers = None
    if not args.quick:  # the models `make run` just trained, on other writers' digits
        dl_utils.section(
            "3b. Other writers: the trained models on test sets of other hands"
        )
        headers, rows, sets = writer_shift.measure(dl_utils.MODELS_DIR)
        dl_utils.print_table(headers, rows)
        writers = writer_shift.markdown(headers, rows, sets)
    suite = None
    if not args.quick:  # (the suite runs this script with --quick: no recursion)
        dl_utils.section("4. The test suite")
        suite = test_suite_seconds()
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "hardware": dl_utils.hardware_info(device),
        "pipelines": pipelines,
        "lessons": lessons,
        "make_run_seconds": total,
        "lesson03_breakdown": parts,
        "loader_workers": workers,
        "distributed": distributed,
        "memory_formats": layouts,
        "test_suite_seconds": suite,
        "writers_markdown": writers,
        "model_sizes": model_sizes(dl_utils.MODELS_DIR),
    }
    path = Path(args.results)
    with dl_utils.atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    print(f"Written to {dl_utils.display_path(path)}")
    return record


def main(argv=None):
    args = parse_args(argv)
    if args.from_results:
        record = json.loads(Path(args.from_results).read_text())
    else:
        record = measure(args)
    dl_utils.section("Results (markdown)")
    text = report(record)
    print(text)
    if args.update_docs:
        if record["quick"]:
            raise dl_utils.FriendlyError("--quick numbers do not belong in the docs or "
                                         "the README")
        update_block(text)
        update_block(path_times(record), ROOT / "README.md", *PATH_MARKERS)
        if record.get("writers_markdown"):
            update_block(record["writers_markdown"], RESULTS_DOC, *writer_shift.MARKERS)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
