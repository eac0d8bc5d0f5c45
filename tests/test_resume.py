"""Lesson 3b, training that survives: a run stopped and resumed ends exactly where it
would have without the stop (03b, and 06 in the middle of its one-cycle schedule); a
training state that cannot continue a run is one clear line, and nothing is
overwritten; a diverging run stops at once; Ctrl-C keeps the best epoch."""

import copy
import os
import re
import signal
import subprocess
import sys
from argparse import Namespace

import pytest
import torch
from conftest import OUTPUT_DIR, ROOT, lesson, run_script

import dl_utils

SURVIVES = "03b_training_that_survives.py"
QUICK_03B = ["--epochs", "3", "--subset", "2000"]
QUICK_06 = ["--epochs", "2", "--subset", "500"]


def weights(path):
    return torch.load(path, weights_only=True)["model_state_dict"]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("script, flags, stop", [
    (SURVIVES, QUICK_03B, 1), ("06_convolutional_network.py", QUICK_06, 1)])
def test_stopped_and_resumed_equals_never_stopped(tmp_path, script, flags, stop):
    never, resumed = tmp_path / "never.pt", tmp_path / "resumed.pt"
    done = run_script(script, *flags, "--checkpoint", never, inline=True)
    assert done.returncode == 0, done.stderr
    first = run_script(script, *flags, "--checkpoint", resumed, "--stop-after-epoch",
                       stop, inline=True)
    assert first.returncode == 130  # as Ctrl-C would: the best epoch so far is kept...
    assert (tmp_path / "resumed_interrupted.pt").exists() and not resumed.exists()
    state = tmp_path / "resumed_training.pt"
    assert f"--resume {state}" in first.stdout  # ...and the lesson says how to go on
    # 03b resumes in a new process, as after a reboot (06 in this one: the same code)
    second = run_script(script, *flags, "--checkpoint", resumed, "--resume", state,
                        inline=script != SURVIVES)
    assert second.returncode == 0, second.stderr
    assert f"{stop} of {flags[1]} epochs done" in second.stdout
    assert same(weights(never), weights(resumed))  # bit for bit, on the CPU
    history = torch.load(resumed, weights_only=True)["history"]
    never_history = torch.load(never, weights_only=True)["history"]
    assert history["val_acc"] == never_history["val_acc"]


def resume_table(stdout):
    """{row: (weights differ by, optimizer by)} from 03b --check-resume's table."""
    rows = re.findall(r"^(\S.+?)\s{2,}([\d.e+-]+)\s+([\d.e+-]+)\s+[\d.]+%", stdout,
                      re.MULTILINE)
    return {row: (float(w), float(o)) for row, w, o in rows}


def keep_epoch_1_only(best, model, epoch, val_acc):
    """dl_utils.keep_if_best, planted: every run keeps epoch 1, whatever it scored."""
    if epoch != 1:
        return False
    best.update(epoch=1, val_acc=val_acc, state=copy.deepcopy(model.state_dict()))
    return True


@pytest.mark.parametrize("kept_epoch_1", [False, True], ids=["quick", "kept-epoch-1"])
def test_03b_checks_resuming_and_what_each_part_of_the_state_is_worth(monkeypatch,
                                                                      kept_epoch_1):
    """The review's case: when every run keeps epoch 1, a proof that compared the kept
    models printed 0 on every row, resumed or not. The proof compares the weights after
    the last epoch, so it must still tell the rows apart."""
    if kept_epoch_1:
        monkeypatch.setattr(dl_utils, "keep_if_best", keep_epoch_1_only)
    flags = ["--epochs", "2", "--subset", "300"] if kept_epoch_1 else QUICK_03B
    result = run_script(SURVIVES, *flags, "--check-resume", inline=True)
    assert result.returncode == 0, result.stderr
    found = resume_table(result.stdout)
    assert found["stopped after epoch 1, resumed from the whole state"] == (0, 0)
    fresh = "... but with a fresh optimizer (Adam's running averages lost)"
    assert min(found[fresh]) > 1e-4
    assert found["... but with the loader's generator seeded again"][0] > 1e-4
    assert found["never stopped, --seed 1 (for scale)"][0] > 1e-4
    text = " ".join(result.stdout.split())  # (prose wraps)
    assert "DIFFERENT" not in text and "moves every weight by about lr" in text


def test_03b_check_resume_fails_when_resuming_is_broken(monkeypatch):
    """A planted fault: the optimizer's state is not loaded. The proof must say so."""
    monkeypatch.setattr(torch.optim.Adam, "load_state_dict", lambda self, state: None)
    result = run_script(SURVIVES, "--epochs", "2", "--subset", "300", "--check-resume",
                        inline=True)
    assert result.returncode == 1 and "DIFFERENT" in result.stdout
    assert max(resume_table(result.stdout)[
        "stopped after epoch 1, resumed from the whole state"]) > 1e-4


def test_03b_check_resume_speaks_of_the_optimizer_in_use():
    result = run_script(SURVIVES, "--epochs", "2", "--subset", "500", "--optimizer",
                        "sgd", "--momentum", "0", "--lr", "0.1", "--check-resume",
                        inline=True)
    assert result.returncode == 0, result.stderr
    assert "Adam" not in result.stdout.split("=== Resuming")[1]
    assert "SGD without momentum keeps no state" in " ".join(result.stdout.split())


def test_03b_check_resume_when_epoch_1_diverges_says_so():
    result = run_script(SURVIVES, "--epochs", "2", "--subset", "2000", "--lr", "0.1",
                        "--check-resume", inline=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "diverged" in result.stderr and "nothing to resume" in result.stderr
    assert "not a readable" not in result.stderr


def test_03b_says_what_the_training_state_holds(tmp_path):
    """The table of entries counts what the file really holds: Adam keeps two numbers
    per weight, the best epoch one more copy of the weights."""
    path = tmp_path / "m.pt"
    result = run_script(SURVIVES, "--epochs", "2", "--subset", "500", "--checkpoint",
                        path, inline=True)
    assert result.returncode == 0, result.stderr
    rows = dict(re.findall(r"^(model|optimizer|best)\s.*?\s([\d,]+)$", result.stdout,
                           re.MULTILINE))
    weights = int(rows["model"].replace(",", ""))
    assert weights == 101_770 and int(rows["best"].replace(",", "")) >= weights
    assert 2 * weights <= int(rows["optimizer"].replace(",", "")) < 2 * weights + 100
    state = tmp_path / "m_training.pt"
    ratio = state.stat().st_size / path.stat().st_size
    assert f"({ratio:.1f}x)" in result.stdout and 3.5 < ratio < 4.5


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """A small training state of lesson 3b, saved after epoch 1 of 3."""
    m03b = lesson("03b_training_that_survives")
    args = m03b.parse_args(["--epochs", "3", "--subset", "500"])
    model = dl_utils.SimpleNN()
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path_factory.mktemp("state") / "simple_nn_training.pt"
    best = {"epoch": 1, "val_acc": 0.5, "state": model.state_dict()}
    dl_utils.save_training_state(path, SURVIVES, args, model, {"hidden_size": 128},
                                 optimizer, None, torch.Generator().manual_seed(0), 1,
                                 best, {"val_acc": [0.5]})
    return path, args, model


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 32}, "--batch-size 64 (now 32)"),
    ({"seed": 1}, "--seed 0 (now 1)"),
    ({"subset": 5000}, "--subset 500 (now 5000)"),
    ({"epochs": 5}, "--epochs 3 (now 5)"),
])
def test_a_state_from_other_settings_or_finished_is_refused(state, change, message):
    path, args, model = state
    other = Namespace(**{**vars(args), **change})
    with pytest.raises(dl_utils.FriendlyError, match=re.escape(message)):
        dl_utils.read_training_state(path, SURVIVES, other, model)
    args_ok = Namespace(**{**vars(args), "device": "cpu", "resume": str(path)})
    assert dl_utils.read_training_state(path, SURVIVES, args_ok, model)["epoch"] == 1


def test_a_finished_run_has_nothing_to_resume(state, tmp_path):
    _, args, model = state
    finished = tmp_path / "done_training.pt"
    dl_utils.save_training_state(finished, SURVIVES, args, model, {},
                                 torch.optim.Adam(model.parameters()), None,
                                 torch.Generator(), 3, {"epoch": 3, "val_acc": 0.9,
                                                        "state": None}, {})
    with pytest.raises(dl_utils.FriendlyError, match="finished all 3 epochs"):
        dl_utils.read_training_state(finished, SURVIVES, args, model)


def test_another_lesson_model_or_a_damaged_file_is_one_line(state, tmp_path):
    path, args, model = state
    with pytest.raises(dl_utils.FriendlyError, match=f"written by {SURVIVES}"):
        dl_utils.read_training_state(path, "06_convolutional_network.py", args, model)
    with pytest.raises(dl_utils.FriendlyError,
                       match="for a SimpleNN, not .* a SmallCNN"):
        dl_utils.read_training_state(path, SURVIVES, args, dl_utils.SmallCNN())
    truncated = tmp_path / "cut_training.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(dl_utils.FriendlyError, match="not a readable training state"):
        dl_utils.read_training_state(truncated, SURVIVES, args, model)
    model_file = tmp_path / "model.pt"
    dl_utils.save_checkpoint(model_file, model, {})
    with pytest.raises(dl_utils.FriendlyError, match="is not a training state"):
        dl_utils.read_training_state(model_file, SURVIVES, args, model)
    with pytest.raises(dl_utils.CheckpointError,
                       match="is a training state, for --resume"):
        dl_utils.load_checkpoint(path)  # 04 and 09 never take it for a model


def test_a_bad_resume_on_the_command_line_overwrites_nothing(state, tmp_path):
    path, _, _ = state
    good = tmp_path / "good.pt"
    good.write_bytes(b"a model worth keeping")
    result = run_script(SURVIVES, "--epochs", "3", "--subset", "500", "--batch-size",
                        "32", "--checkpoint", good, "--resume", path, inline=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()] and "other settings" in result.stderr
    assert good.read_bytes() == b"a model worth keeping"
    assert not (tmp_path / "good_training.pt").exists()


def test_10_refuses_a_state_it_cannot_continue_before_starting_any_process(state):
    path, _, _ = state
    result = run_script("10_distributed_training.py", "--resume", path, inline=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"written by {SURVIVES}" in result.stderr and "torchrun" not in result.stderr


def test_09_does_not_serve_training_states(state, tmp_path):
    path, _, _ = state
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / path.name).write_bytes(path.read_bytes())
    assert lesson("09_serve_digits").load_models(folder, "cpu") == []
    assert OUTPUT_DIR.exists()


@pytest.mark.parametrize("damage", ["settings", "rng", "epoch", "best"])
def test_a_state_missing_an_entry_is_one_line(state, tmp_path, damage):
    path, args, model = state
    saved = torch.load(path, weights_only=True)
    del saved[damage]
    broken = tmp_path / "broken_training.pt"
    torch.save(saved, broken)
    with pytest.raises(dl_utils.FriendlyError, match=f"'{damage}' entry is missing"):
        dl_utils.read_training_state(broken, SURVIVES, args, model)


def test_stop_after_an_epoch_already_done_is_refused(state):
    path, args, model = state
    stop_at_1 = Namespace(**{**vars(args), "stop_after_epoch": 1})
    with pytest.raises(dl_utils.FriendlyError,
                       match="--stop-after-epoch 1: .* 1 epochs done"):
        dl_utils.read_training_state(path, SURVIVES, stop_at_1, model)
    stop_at_2 = Namespace(**{**vars(args), "stop_after_epoch": 2})
    assert dl_utils.read_training_state(path, SURVIVES, stop_at_2, model)


def test_a_save_killed_outright_leaves_no_temporary_behind_the_next_one(tmp_path):
    import subprocess
    target = tmp_path / "simple_nn_training.pt"
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has now
    stale = tmp_path / f".{target.name}.{gone.pid}.tmp"
    stale.write_bytes(b"half a state")
    live = tmp_path / f".{target.name}.1.tmp"  # pid 1 is alive: another writer's, kept
    live.write_bytes(b"someone else's")
    with dl_utils.atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and not stale.exists() and live.exists()


# ------------------------------------------------------------------------ divergence


def test_03b_divergence_stops_and_keeps_the_saved_model(tmp_path):
    good = tmp_path / "good.pt"
    good.write_bytes(b"a model worth keeping")
    result = run_script(SURVIVES, "--epochs", "1", "--subset", "2000", "--lr", "10",
                        "--checkpoint", good, inline=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "training diverged" in result.stderr and "Nothing was saved" in result.stderr
    said = " ".join(result.stdout.split())  # the lesson explains it on stdout
    assert "Stopped: loss" in said and "guesses at random scores 2.30" in said
    assert good.read_bytes() == b"a model worth keeping"
    assert not (tmp_path / "good_training.pt").exists()  # no epoch ended: no state


def test_nan_loss_is_divergence():
    class Broken(torch.nn.Module):  # a model whose outputs are NaN from the start
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(float("nan")))

        def forward(self, x):
            return x.flatten(1)[:, :10] * self.w

    X, y = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))
    loader = dl_utils.TensorLoader(X, y, 8)
    model = Broken()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = dl_utils.fit(model, loader, loader, optimizer, 3, "cpu", verbose=False)
    assert result["status"] == "diverged" and result["best_epoch"] == 0
    assert result["diverged"] == "loss nan at batch 1 of epoch 1"  # stopped at once


def test_a_high_but_steady_loss_is_not_divergence():
    """Badly scaled inputs start far above ln(10), and one image can cost 25 alone:
    neither is an explosion. Only a loss that grows 10x from where it started is."""

    class Steady(torch.nn.Module):  # confidently wrong on every image: loss about 30
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(30.0))

        def forward(self, x):
            first = torch.zeros(len(x), dtype=torch.long)
            return torch.nn.functional.one_hot(first, 10) * self.w

    X, y = torch.randn(128, 1, 28, 28), torch.ones(128, dtype=torch.long)
    loader = dl_utils.TensorLoader(X, y, 1)  # batch size 1
    model = Steady()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # the loss stays put
    loss, _ = dl_utils.train_epoch(model, loader, torch.nn.CrossEntropyLoss(),
                                   optimizer, "cpu")
    assert loss == pytest.approx(30, abs=0.1)


# ---------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_keeps_the_best_epoch_without_overwriting(tmp_path):
    path = tmp_path / "simple_nn.pt"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / SURVIVES), "--epochs", "100", "--subset", "3000",
         "--checkpoint", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in proc.stdout:  # wait until one epoch has been validated
        if line.strip().startswith("1 "):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopping after this batch" in err and "Traceback" not in err
    kept = tmp_path / "simple_nn_interrupted.pt"
    assert f"best epoch so far is in {kept}" in out
    assert f"--resume {tmp_path / 'simple_nn_training.pt'}" in out
    assert not path.exists()  # a cut-short run never writes the regular checkpoint
    model, checkpoint = dl_utils.load_checkpoint(kept)
    assert checkpoint["metrics"]["best_epoch"] >= 1


def test_03b_never_touches_lesson_3s_model():
    """Its default checkpoint is its own: 03b leaves models/simple_nn.pt alone."""
    m03b = lesson("03b_training_that_survives")
    assert m03b.CHECKPOINT.name == "simple_nn_03b.pt"
    assert m03b.parse_args([]).checkpoint == str(m03b.CHECKPOINT)
