"""Running a script: its command line, its printed tables, one-line errors, Ctrl-C.

Plumbing, not a lesson: every numbered lesson relies on it through dl_utils. The
argparse types refuse a bad value before any work starts; run_main turns a FriendlyError
into one line and exit code 1, and Ctrl-C into exit code 130; GracefulStop lets the
training loop (03b) finish its batch on Ctrl-C; section, prose and print_table print
what the lessons say; hardware_info and save_results record what produced a measurement.
"""

import argparse
import datetime
import difflib
import json
import math
import os
import platform
import re
import signal
import socket
import sys
import textwrap
import threading
from pathlib import Path

import torch

from _course.files import OUTPUT_DIR, FriendlyError, atomic_path, display_path

__all__ = [  # what dl_utils re-exports
    "hardware_info",
    "section",
    "prose",
    "format_table",
    "print_table",
    "kept_model_path",
    "save_results",
    "add_resume_args",
    "positive_int",
    "count",
    "positive_float",
    "fraction",
    "port_number",
    "check_port_free",
    "output_file",
    "make_parser",
    "CourseParser",
    "script_defaults",
    "did_you_mean",
    "add_common_args",
    "add_training_args",
    "add_results_arg",
    "run_main",
    "GracefulStop",
    "train_over_seeds",
    "save_run_results",
    "COURSE_MODELS",
    "compare_with_course",
    "changed_settings_note",
]


def hardware_info(device) -> dict:
    """What produced a measurement: numbers without their hardware mean little."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
    # the instruction set torch's CPU kernels use (AVX2, AVX512...): another set rounds
    # some sums differently, so results then differ in the last bits, as across machines
    return {"cpu": cpu, "cpu_capability": capability, "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(device), "torch": str(torch.__version__),
            "python": platform.python_version(), "platform": platform.platform()}


def section(title: str) -> None:
    """A printed header, so the output reads like the lesson's table of contents."""
    print(f"\n=== {title} " + "=" * max(3, 76 - len(title)))


def prose(text: str, width: int = 88) -> None:
    """Print a block of lesson text, written in the code as an indented triple-quoted
    string.

    Each paragraph (separated by a blank line) is re-wrapped to `width` columns, so that
    numbers filled into an f-string do not leave ragged lines.
    """
    paragraphs = textwrap.dedent(text).strip("\n").split("\n\n")
    print("\n\n".join(textwrap.fill(" ".join(p.split()), width) for p in paragraphs))


def format_table(headers: list[str], rows: list[list]) -> str:
    """Rows as an aligned text table: text left-aligned, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def is_number(text):  # 1,234 or 97.73% or 0.15 s or 12 KB or 97.73% ± 0.15; a unit
        # of at most 3 letters, so that a phrase like "10 classes" stays text
        return bool(re.fullmatch(r"[-+]?[\d,.]+\s*[%a-zA-Z]{0,3}( ± [\d.]+)?", text))

    def line(row):
        return "  ".join(c.rjust(w) if is_number(c) else c.ljust(w)
                         for c, w in zip(row, widths)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def print_table(headers: list[str], rows: list[list]) -> None:
    print(format_table(headers, rows))


def lr_advice(lr: float) -> str:
    """What to try after a run diverged at learning rate `lr`: the script's default when
    that is smaller (it is known to work), else a tenth of `lr`. Dividing by ten from
    --lr 10 takes three failed runs to reach a rate that trains (the first-time
    learner's report); the default takes one."""
    default = script_defaults().get("lr")
    if isinstance(default, float) and default < lr:
        return f"try the default, --lr {default:g}, or leave --lr out"
    return f"try a smaller learning rate, e.g. --lr {lr / 10:g}"


def kept_model_path(args, result):
    """Where the kept model goes after fit(); None when there is nothing to keep.

    Divergence raises a FriendlyError and saves nothing. After Ctrl-C the best epoch
    so far goes to <name>_interrupted.pt: a cut-short run never overwrites a good model.
    """
    if result["status"] == "diverged":
        raise FriendlyError(
            f"training diverged with lr {args.lr}: {result['diverged']} "
            f"(a network that "
            f"guesses at random has loss {math.log(10):.2f}); {lr_advice(args.lr)}. "
            f"Nothing was saved; {display_path(args.checkpoint)} is unchanged"
        )
    if result["best_epoch"] == 0:
        print("Stopped before the first epoch ended: nothing to keep, nothing saved.")
        return None
    path = Path(args.checkpoint)
    if result["status"] == "interrupted":
        path = path.with_name(f"{path.stem}_interrupted.pt")
    return path


# --------------------------------------------------------------------------------------
# Tables that set a lesson's model beside the course's others
# --------------------------------------------------------------------------------------
COURSE_MODELS = {"MLP (03)": "simple_nn.pt", "CNN (06)": "cnn.pt",
                 "GRU (11)": "sequence_gru.pt", "ViT (12)": "vit.pt"}


def compare_with_course(models_dir, name, parameters, metrics, seconds, note):
    """Lessons 11 and 12: the course's saved models (as their checkpoints recorded them:
    parameters, validation and test accuracy, training seconds) beside the one just
    trained, `name`. A missing or unreadable checkpoint is left out of the table."""
    from _course.checkpoints import CheckpointError, read_checkpoint  # (it imports cli)
    rows = []
    for label, file in COURSE_MODELS.items():
        try:
            checkpoint = (
                read_checkpoint(Path(models_dir) / file) if label != name else None
            )
        except CheckpointError:
            continue
        if checkpoint is not None:
            m = checkpoint.get("metrics", {})
            size = sum(t.numel() for t in checkpoint["model_state_dict"].values()
                       # (weights; not a buffer like 11's order)
                       if t.is_floating_point())
            rows.append([label, size, m.get("validation_acc"), m.get("test_acc"),
                         m.get("train_seconds")])
    rows.append(
        [name, parameters, metrics["validation_acc"], metrics["test_acc"], seconds]
    )
    print_table(["model", "parameters", "val acc %", "test acc %", "training s"],
                [[r[0], f"{r[1]:,}", *(f"{100 * v:.2f}" if v is not None else "?"
                                       for v in r[2:4]),
                  f"{r[4]:.0f}" if r[4] is not None else "?"] for r in rows])
    print(note)


def changed_settings_note(changed, script="03_train_mnist.py"):
    """Lesson 6: which settings a saved model was trained with, where they differ
    from its script's defaults (03 records them in the checkpoint as
    "changed_settings")."""
    if changed is None:
        return f"(The saved model does not say how it was trained: run {script} again.)"
    changed = {k: v for k, v in changed.items() if k not in ("device", "seed")}
    flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in changed.items())
    return (
        f"(Careful: the saved model was trained with {flags}, not its defaults; run "
        f"`python {script}` for a fair comparison.)"
        if changed
        else f"(The saved model is the one {script} trains with its default settings.)"
    )


def save_results(path, script: str, args, device, **record) -> None:
    """A run's settings, hardware and numbers as JSON, written atomically (05, 07,
    tables)."""
    record = {
        "script": script,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "settings": {
            k: v
            for k, v in vars(args).items()
            if k not in ("show", "results", "checkpoint")
        },
        "hardware": hardware_info(device),
        **record,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2))
    print(f"Results written to {display_path(path)}")


def add_resume_args(parser) -> None:
    """--resume and --stop-after-epoch: the flags of a training script that can go
    on."""
    parser.add_argument(
        "--resume",
        default=None,
        metavar="PATH",
        help="continue the run whose training state is in PATH (written "
        "beside the checkpoint after every epoch), exactly where it "
        "stopped; the settings must be the same (default: none)",
    )
    parser.add_argument(
        "--stop-after-epoch",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop after epoch N as Ctrl-C would, keeping the training "
        "state to --resume from (default: never)",
    )


# --------------------------------------------------------------------------------------
# Command-line settings shared by the scripts
# --------------------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """argparse type: an integer > 0 (zero epochs or batches of 0 images make no
    sense)."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def count(text: str) -> int:
    """argparse type: an integer >= 0 (where 0 means "none", e.g. no hidden layer)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0 (a learning rate of 0 never moves the
    weights)."""
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1) (a probability, a share of the labels)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, got {text}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0: let the system pick a free one)."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port number from 0 to 65535, got {text}"
        )
    return value


def check_port_free(port: int, flag: str) -> None:
    """A TCP port given on the command line must be free: one clear line if it is not
    (0 means "let the system pick one", always fine)."""
    if not port:
        return
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as err:
            raise FriendlyError(
                f"port {port} is in use ({err.strerror}): choose another "
                f"{flag}, or 0 to let the system pick a free one"
            ) from err


def output_file(text: str) -> str:
    """argparse type: a path a script may write a file to, checked before any work
    starts.

    Refused at once (not after ten minutes of training): a folder, or a path below an
    existing file.
    """
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text} is a folder; give a file name inside it"
        )
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {parent} is a file, not a folder")
    return str(path)


class CourseParser(argparse.ArgumentParser):
    """argparse, with two things a beginner needs: a misspelled flag gets "did you
    mean"; and the defaults of the last parse are remembered (script_defaults), so
    that a run can say which settings it changed without the script passing them."""

    def parse_known_args(self, args=None, namespace=None):
        global _SCRIPT_DEFAULTS
        parsed, extras = super().parse_known_args(args, namespace)
        _SCRIPT_DEFAULTS = {a.dest: a.default for a in self._actions
                            if a.dest != "help" and a.default is not argparse.SUPPRESS}
        return parsed, extras

    def error(self, message):
        """Unknown flags: name the closest real ones (difflib), then argparse's usual
        error (usage and exit code 2)."""
        hints = []
        for word in re.findall(r"(?<![\w-])(--?[\w-]+)", message):
            if "unrecognized arguments" in message:
                hint = did_you_mean(word, self._option_string_actions)
                if hint:
                    hints.append(hint)
        if hints:
            message = f"{message} ({'; '.join(hints)})"
        super().error(message)


_SCRIPT_DEFAULTS: dict = {}


def script_defaults() -> dict:
    """The defaults of the script's last parsed command line ({dest: default})."""
    return dict(_SCRIPT_DEFAULTS)


def did_you_mean(flag: str, options) -> str | None:
    """'did you mean --lr?' for --learning-rate, --lr=0.1's cousins and typos, or None.

    Two ways to be close: the same letters give or take a few (difflib's ratio), or
    the same words in another order or shortened (--learning-rate: --lr is its
    initials)."""
    name = flag.split("=")[0]
    longs = [o for o in options if o.startswith("--")]
    close = difflib.get_close_matches(name, longs, n=2, cutoff=0.6)
    if not close:
        words = name.lstrip("-").split("-")
        initials = "--" + "".join(w[0] for w in words if w)
        close = [o for o in longs if o == initials]
    if not close:
        return None
    return f"did you mean {' or '.join(close)}?"


def make_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose -h shows the script's docstring and every default."""
    return CourseParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_common_args(parser: argparse.ArgumentParser, seed: int = 0) -> None:
    """--device, --seed and --show: the settings every script has."""
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                        default=os.environ.get("DL_DEVICE", "auto"),
                        help="where the tensors live; auto = CUDA, then MPS, then CPU. "
                             "Also settable with the DL_DEVICE environment variable "
                             "(default: %(default)s)")
    parser.add_argument(
        "--seed",
        type=int,
        default=seed,
        help="seeds the initial weights and the batch order: the same seed "
        "gives the same result on the same machine, PyTorch build and "
        "device (default: %(default)s)",
    )
    parser.add_argument("--show", action="store_true",
                        help="also open the figures in windows when a display exists; "
                             "they are always saved as PNG under figures/")


def add_training_args(parser, *, batch_size: int, lr: float, num_epochs: int) -> None:
    """--batch-size, --lr, --epochs, --subset: the knobs of every training script."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help="images per gradient step; smaller: noisier gradients but more "
        "updates per epoch (default: %(default)s)",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=lr,
        help="learning rate, the optimizer's step size; too large diverges "
        "(try 10), too small crawls (default: %(default)s)",
    )
    parser.add_argument("--epochs", type=positive_int, default=num_epochs,
                        help="passes over the training images (default: %(default)s)")
    parser.add_argument("--subset", type=positive_int, default=None,
                        help="train on only this many images, for quick experiments; "
                             "validation and test stay whole (default: all 55,000)")


def add_results_arg(parser, default=None) -> None:
    """--results FILE: where a script writes what it measured, as JSON."""
    shown = display_path(default) if default else "none"
    parser.add_argument(
        "--results",
        type=output_file,
        default=str(default) if default else None,
        help=f"write the measured numbers to this JSON file (default: {shown})",
    )


# --------------------------------------------------------------------------------------
# Running a script: one-line errors, Ctrl-C
# --------------------------------------------------------------------------------------
def run_main(main) -> None:
    """Run a script's main(): a FriendlyError becomes one line on stderr and exit
    code 1, Ctrl-C (outside the training loop, which handles it itself) exit code
    130."""
    try:
        if OUTPUT_DIR.exists() and not OUTPUT_DIR.is_dir():
            raise FriendlyError(
                f"DL_OUTPUT_DIR={OUTPUT_DIR} is a file, not a folder: point it "
                "at a folder (it is created if missing), or unset it"
            )
        sys.exit(main())
    except FriendlyError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `python lesson.py | head`: the reader left; stop quietly
        # (Python's docs'
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)  # recipe: no second error when Python flushes stdout at exit)


class GracefulStop:
    """Ctrl-C sets a flag that the training loop checks after each batch; a second
    aborts.

    Without it, Ctrl-C raises KeyboardInterrupt wherever Python happens to be, possibly
    in the middle of an optimizer step, and the run's best epoch is lost. Signals can
    only be caught in the main thread; elsewhere this does nothing.
    """

    requested = False

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: stopping after this batch (press again to quit at once)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def train_over_seeds(configs, seeds, train_one, runs: list, describe) -> bool:
    """Every configuration with every seed (05 and 07 compare this way); runs appended.

    train_one(name, config, seed) returns a run (a dict with "name" and "seed") or None
    after Ctrl-C; describe(run) is the line printed for it. Runs already in `runs` are
    not trained again. Returns False if interrupted.
    """
    done = {(r["name"], r["seed"]) for r in runs}
    for seed in seeds:
        for name, config in configs.items():
            if (name, seed) in done:
                continue
            run = train_one(name, config, seed)
            if run is None:
                return False
            runs.append(run)
            print(f"  seed {seed}  {describe(run)}", flush=True)
    return True


def save_run_results(script, args, device, result, metrics=None, **extra) -> None:
    """--results FILE of a training script: what one run measured, as JSON (make tables
    reads it). Written for a diverged run too, which then has no test accuracy. `extra`:
    more measurements (06: validation digits drawn and cut to 8x8)."""
    if getattr(args, "results", None):
        save_results(
            args.results,
            script,
            args,
            device,
            status=result["status"],
            best_val_acc=result["best_val_acc"],
            best_epoch=result["best_epoch"],
            train_seconds=result["train_seconds"],
            history=result["history"],
            diverged=result["diverged"],
            test_acc=metrics["test_acc"] if metrics else None,
            **extra,
        )
