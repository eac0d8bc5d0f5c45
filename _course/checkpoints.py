"""Checking a saved file before using it: a model checkpoint (lessons 4, 8, 9) or a
training state to resume (lessons 3, 6, 10).

Plumbing, not a lesson: lessons 3 and 4 teach what a checkpoint and a training state
hold and how they are loaded (dl_utils.save_checkpoint, load_checkpoint,
save_training_state, resume_training). Here: every entry a load reads is checked, and
the class a checkpoint names is resolved safely, so that a damaged file, another
lesson's state, other settings or a learner's broken edit is one line, nothing is
overwritten, and a file never chooses which code runs. This package never imports a
lesson: dl_utils hands model_class the function that does.
"""

import copy
import random
import re
from pathlib import Path

import numpy as np
import torch

from _course.cli import print_table, prose
from _course.files import ROOT, FriendlyError, display_path

__all__ = [  # what dl_utils re-exports
    "InputsAsTrained",
    "TRAINING_STATE",
    "MAY_DIFFER",
    "training_state_path",
    "numpy_rng_state",
    "read_training_state",
    "STATE_ENTRIES",
    "check_state_entries",
    "CheckpointError",
    "first_detail",
    "read_checkpoint",
    "rng_states",
    "restore_rng_states",
    "LESSON_MODULE",
    "model_class",
    "input_scaling",
    "inputs_as_trained",
    "unwrapped",
    "largest_difference",
    "first_step_size",
    "print_resume_proof",
]

# --------------------------------------------------------------------------------------
# Training states (dl_utils.save_training_state says what one holds)
# --------------------------------------------------------------------------------------
TRAINING_STATE = "training state"  # its "kind", so that no one mistakes it for a model
# Settings a resumed run may change: where it runs and writes, how it is stopped, what
# it checks on the side (10's --proof-steps trains a separate copy of the model).
MAY_DIFFER = {"device", "show", "checkpoint", "results", "resume", "stop_after_epoch",
              "check_resume", "master_port", "crash_rank", "proof_steps",
              "force_nproc"}


def training_state_path(checkpoint) -> Path:
    """Where a run keeps its training state: beside its checkpoint,
    <name>_training.pt."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}_training.pt")


def numpy_rng_state() -> tuple:
    """NumPy's global generator as plain values and a tensor (weights_only=True loads
    it; a NumPy array inside would be refused)."""
    name, keys, *rest = np.random.get_state()
    return (name, torch.from_numpy(keys.astype(np.int64)), *rest)


def read_training_state(path, script, args, model) -> dict:
    """A training state that can continue this very run, or one FriendlyError line."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # missing, truncated, not a torch file, unsafe pickle...
        raise FriendlyError(f"cannot resume from {display_path(path)}: not a readable "
                            f"training state ({type(err).__name__})") from err
    if not (isinstance(state, dict) and state.get("kind") == TRAINING_STATE):
        raise FriendlyError(
            f"{display_path(path)} is not a training state (a model checkpoint "
            "cannot be resumed: give the <name>_training.pt beside it)"
        )
    check_state_entries(state, path)
    if state["script"] != script or state["model_class"] != type(model).__name__:
        raise FriendlyError(
            f"{display_path(path)} was written by {state['script']} for a "
            f"{state['model_class']}, not by {script} for a {type(model).__name__}"
        )
    now = {k: v for k, v in vars(args).items() if k not in MAY_DIFFER}
    changed = sorted(k for k in set(now) | set(state["settings"])
                     if now.get(k) != state["settings"].get(k))
    if changed:
        raise FriendlyError(
            f"{display_path(path)} was trained with other settings: "
            + ", ".join(
                f"--{k.replace('_', '-')} {state['settings'].get(k)} (now {now.get(k)})"
                for k in changed
            )
            + "; resume with the same settings"
        )
    if state["epoch"] >= args.epochs:
        raise FriendlyError(
            f"{display_path(path)} has finished all {args.epochs} epochs: "
            "nothing left to resume"
        )
    stop = getattr(args, "stop_after_epoch", None)
    if stop is not None and stop <= state["epoch"]:
        raise FriendlyError(
            f"--stop-after-epoch {stop}: {display_path(path)} has {state['epoch']} "
            f"epochs done already; give a later epoch (or none)"
        )
    return state


STATE_ENTRIES = {"script": str, "epoch": int, "model_class": str, "model_kwargs": dict,
                 "model": dict, "optimizer": dict, "best": dict, "history": dict,
                 # what read and resume use, and its type
                 "settings": dict, "rng": dict}


def check_state_entries(state: dict, path) -> None:
    """Every entry resuming reads is there with the right type, or one FriendlyError
    line (a state damaged by hand, or written by another version of the course)."""
    for key, kind in STATE_ENTRIES.items():
        if not isinstance(state.get(key), kind):
            raise FriendlyError(
                f"{display_path(path)} is not a usable training state: its "
                f"'{key}' entry is {'missing' if key not in state else 'wrong'}"
            )
    best, rng = state["best"], state["rng"]
    if not ({"epoch", "val_acc", "state"} <= set(best) and isinstance(rng.get("torch"),
                                                                     torch.Tensor)):
        raise FriendlyError(f"{display_path(path)} is not a usable training state: its "
                            "'best' or 'rng' entry is incomplete")


class CheckpointError(FriendlyError):
    """A checkpoint file is missing, unreadable, or does not fit the model."""


def first_detail(err: Exception) -> str:
    """The first informative line of a long PyTorch error message."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__)[
        :160
    ]


def read_checkpoint(path: Path) -> dict:
    """torch.load(path, weights_only=True), and the dict a course checkpoint is, or one
    CheckpointError line: missing, damaged, a training state, or another kind of
    file."""
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, not a torch file, unsafe pickle...
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(err).__name__}): "
            "damaged or not a PyTorch file; delete it and train again"
        ) from err
    if isinstance(checkpoint, dict) and checkpoint.get("kind") == TRAINING_STATE:
        raise CheckpointError(
            f"{path} is a training state, for --resume; the model it "
            "trains is saved beside it, without _training in its name"
        )
    if not (isinstance(checkpoint, dict) and "model_state_dict" in checkpoint):
        raise CheckpointError(
            f"{path} is not a checkpoint of this course (no model_state_dict)"
        )
    return checkpoint


def rng_states(generator) -> dict:
    """Every random generator's state, as a training state saves it: torch's, CUDA's,
    the loader's (None: no generator, as in lesson 10), Python's and NumPy's."""
    return {"torch": torch.get_rng_state(),
            "loader": generator.get_state() if generator is not None else None,
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "python": random.getstate(), "numpy": numpy_rng_state()}


def restore_rng_states(rng: dict, generator) -> None:
    """Put every generator back where rng_states found it."""
    # (lesson 10 has none: its sampler shuffles from the epoch)
    if generator is not None:
        generator.set_state(rng["loader"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if rng.get("python"):  # (states written before these were saved lack them)
        random.setstate(rng["python"])
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))


# A checkpoint names the class that rebuilds the model: one of dl_utils's (SimpleNN,
# SmallCNN) or one defined in a numbered lesson of this repository. A file must never
# choose which code runs, so nothing else can be named.
LESSON_MODULE = re.compile(r"\d\d[a-z]?_[a-z_]+")  # 03_train_mnist, 07b_inside_...


def model_class(checkpoint: dict, own, import_lesson) -> type:
    """The nn.Module class a checkpoint names: from `own` (the dl_utils module), or from
    the one lesson script that defines it, imported by `import_lesson(name)`.

    A lesson that cannot be imported (a learner's half-finished edit) is one line that
    names it: the checkpoints of every other lesson still load.
    """
    module_name, class_name = (
        checkpoint.get("model_module"),
        checkpoint.get("model_class"),
    )
    if module_name == own.__name__:
        module = own
    elif (isinstance(module_name, str) and LESSON_MODULE.fullmatch(module_name)
          and (ROOT / f"{module_name}.py").exists()):
        try:
            module = import_lesson(module_name)
        # SyntaxError, NameError... anything a learner's edit raises
        except Exception as err:
            raise CheckpointError(
                f"this checkpoint's model class {class_name} is defined in "
                f"{module_name}.py, which cannot be imported "
                f"({type(err).__name__}: {err}): fix that file "
                "(or undo your change to it)"
            ) from err
    else:
        raise CheckpointError(
            f"checkpoint names an unknown model module {module_name!r}"
        )
    cls = getattr(module, str(class_name), None)
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise CheckpointError(f"{module_name}.py defines no model class {class_name!r}")
    return cls


def input_scaling(recipe: dict, scalings) -> str:
    """The pixel scaling a model was trained on: what 03 --inputs recorded in a
    checkpoint's settings, or an ensemble's member recipe (13) as "inputs";
    standardized if neither."""
    scaling = recipe.get(
        "inputs", (recipe.get("hparams") or {}).get("inputs", "standardized")
    )
    if scaling not in scalings:
        raise CheckpointError(
            f"the model was trained on inputs scaled {scaling!r}, which "
            f"this course does not know (it knows {', '.join(scalings)})"
        )
    return scaling


class InputsAsTrained(torch.nn.Module):
    """A model trained on other pixels (03 --inputs: unit, x / 255; raw, the bytes),
    wrapped so that it takes what every lesson feeds it: the course's standardized
    batches. Its forward() undoes normalize() and calls the model on the pixels it was
    trained on; what runs is what forward() says (no hook hides a step). An nn.Module,
    so that .to(device), .eval() and pickling (04 pickles what it loads) reach the
    model inside; `unwrapped` gives that model back (its weights, its class)."""

    def __init__(self, model, scaling, mean, std):
        super().__init__()
        self.model = model
        self.scaling = scaling
        self.mean = mean
        self.std = std

    def forward(self, x):
        x = x * self.std + self.mean  # standardized -> unit: normalize() undone
        if self.scaling == "raw":
            x = x * 255  # unit -> the bytes 0-255
        return self.model(x)


def inputs_as_trained(model, scaling, mean, std):
    """The model, wrapped in InputsAsTrained unless it was trained on standardized
    inputs (the weights and the class inside stay as they are)."""
    if scaling == "standardized":
        return model
    return InputsAsTrained(model, scaling, mean, std)


def unwrapped(model):
    """The trained model itself: inside InputsAsTrained, or the model as given. Its
    class is the one a checkpoint names; its state_dict has the checkpoint's keys."""
    return model.model if isinstance(model, InputsAsTrained) else model


# ---- Measuring a resume (03b --check-resume) -----------------------------------------
def largest_difference(a: dict, b: dict) -> float:
    """The largest difference between two state dicts (weights, or the optimizer's state
    per parameter); a number one of them lacks counts as 0 there."""
    def tensors(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from tensors(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", torch.as_tensor(v, dtype=torch.float64)
    a, b = dict(tensors(a)), dict(tensors(b))
    return max([(a.get(k, 0) - b.get(k, 0)).abs().max().item() for k in a | b] or [0.0])


def first_step_size(model, optimizer, loader, lr, make_optimizer) -> float:
    """The mean |change| of a weight in the first step after resuming, divided by lr,
    over the weights that get a gradient: on copies of the model and optimizer (built
    by make_optimizer(model)), with the loader's generator put back: the run is
    untouched."""
    trial = copy.deepcopy(model)
    trial_opt = make_optimizer(trial)
    # (it shares tensors)
    trial_opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    rng = loader.generator.get_state()
    X, y = next(iter(loader))
    loader.generator.set_state(rng)
    before = torch.cat([p.detach().flatten().clone() for p in trial.parameters()])
    trial_opt.zero_grad()
    torch.nn.functional.cross_entropy(trial(X), y).backward()
    trial_opt.step()
    after = torch.cat([p.detach().flatten() for p in trial.parameters()])
    moved = torch.cat([p.grad.flatten() for p in trial.parameters()]) != 0
    return ((after - before)[moved].abs().mean() / lr).item()


def print_resume_proof(never: dict, rows: dict) -> dict:
    """03b --check-resume's table: each run's weights and optimizer state after the last
    epoch against the run never stopped, its validation accuracy and first step; returns
    {row: [weights' largest difference, optimizer's]}."""
    gaps = {what: [largest_difference(never["final"][part], r["final"][part])
                   for part in ("model", "optimizer")] for what, r in rows.items()}
    print_table(
        [
            "after the last epoch",
            "weights differ by",
            "optimizer by",
            "val acc",
            "1st step / lr",
        ],
        [
            [
                "never stopped (the reference)",
                "",
                "",
                f"{100 * never['val_acc']:.2f}%",
                "",
            ]
        ]
        + [
            [
                what,
                *(f"{gap:.3g}" for gap in gaps[what]),
                f"{100 * r['val_acc']:.2f}%",
                f"{r['first_step']:.3g}" if r["first_step"] is not None else "",
            ]
            for what, r in rows.items()
        ],
    )
    prose("""Each difference is the largest over every weight, or every number of the
        optimizer's state, from the run never stopped. 1st step / lr: how far a weight
        moved, on average, in the first step after resuming, in units of lr.""")
    return gaps
