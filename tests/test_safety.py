"""Issue 12: no file runs code, bad input is one clear line, correctness habits hold."""

import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import OUTPUT_DIR, ROOT, lesson, run_script

import dl_utils

QUICK = ("--epochs", "1", "--subset", "2000")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real checkpoint of 03, saved by dl_utils without training (fast)."""
    path = tmp_path_factory.mktemp("ckpt") / "simple_nn.pt"
    torch.manual_seed(0)
    dl_utils.save_checkpoint(path, lesson("03_train_mnist").SimpleNN(),
                             {"hidden_size": 128})
    return path


class Payload:
    """A pickle that runs code when unpickled: it creates a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_a_planted_whole_model_file_is_never_unpickled(checkpoint, tmp_path):
    folder = tmp_path / "downloads"
    folder.mkdir()
    ckpt = folder / "model.pt"
    ckpt.write_bytes(checkpoint.read_bytes())
    marker = tmp_path / "code_ran.txt"
    torch.save(Payload(marker), folder / "model_whole.pt")  # a stranger's "whole model"
    result = run_script("04_load_model.py", "--checkpoint", ckpt, "--num-mistakes", "2")
    assert result.returncode == 0, result.stderr
    assert not marker.exists(), "04 unpickled a file it did not write: code ran"
    assert "builtins.exec" in result.stdout  # shown, read without running the pickle
    # the lesson's own demonstration still happens, on a file it wrote itself
    assert "refused, UnpicklingError" in result.stdout
    assert "No module named '03_train_mnist'" in result.stdout


def test_a_planted_plain_pickle_is_not_run_either(checkpoint, tmp_path):
    import pickle

    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(checkpoint.read_bytes())
    marker = tmp_path / "code_ran.txt"
    (tmp_path / "model_whole.pt").write_bytes(pickle.dumps(Payload(marker)))
    result = run_script("04_load_model.py", "--checkpoint", ckpt, "--num-mistakes", "2")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert "cannot be inspected" in result.stdout


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height pixels but holds almost no data."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width, height", [(20_000, 12_000), (8_000, 8_000)])
def test_a_huge_image_is_one_clear_line(checkpoint, tmp_path, width, height):
    # 240 megapixels trips PIL's decompression-bomb guard; 64 megapixels our own limit
    image = png_header_only(tmp_path / "huge.png", width, height)
    result = run_script("04_load_model.py", "--checkpoint", checkpoint,
                        "--image", image, inline=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "is too large" in result.stderr


def test_an_output_dir_that_is_a_file_is_one_clear_line(tmp_path):
    not_a_folder = tmp_path / "outputs"
    not_a_folder.write_text("I am a file")
    for script, args in (("03_train_mnist.py", QUICK), ("02_load_mnist.py", ())):
        result = run_script(script, *args, env={"DL_OUTPUT_DIR": str(not_a_folder)})
        assert result.returncode == 1 and "Traceback" not in result.stderr, script
        assert "is a file, not a folder" in result.stderr
        assert result.stderr.count("\n") == 1
    assert not_a_folder.read_text() == "I am a file"


@pytest.mark.parametrize("script, flag", [
    ("03_train_mnist.py", "--checkpoint"),
    ("06_convolutional_network.py", "--checkpoint"),
    ("05_experiment_architectures.py", "--results"),
])
def test_output_paths_are_checked_before_any_work(tmp_path, script, flag):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for bad, message in ((tmp_path, "is a folder"),
                         (blocker / "model.pt", "is a file")):
        result = run_script(script, flag, bad, inline=True)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert message in result.stderr.strip().splitlines()[-1]


def test_atomic_write_into_an_unusable_place_is_a_friendly_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    with pytest.raises(dl_utils.FriendlyError, match="cannot write"):
        with dl_utils.atomic_path(blocker / "sub" / "x.txt") as tmp:
            tmp.write_text("data")
    assert blocker.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir()] == ["file"]  # no temporary file left


def test_atomic_write_fsyncs_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace",
                        lambda a, b: calls.append("replace") or real_replace(a, b))
    with dl_utils.atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("data")
    assert (calls == ["fsync", "replace"]
            and (tmp_path / "out.txt").read_text() == "data")


def test_requirement_floors_cover_the_apis_used():
    floors = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.match(r"([a-z]+)>=([\d.]+)", line.strip())
        if match:
            floors[match.group(1)] = tuple(int(x) for x in match.group(2).split("."))
    assert floors["matplotlib"] >= (3, 9)  # matplotlib.backends.backend_registry
    assert floors["torch"] >= (2, 6)  # weights_only default, CVE-2025-32434 fixed
    assert floors["pillow"] >= (9, 1)  # Image.Resampling
    from matplotlib.backends import BackendFilter, backend_registry  # noqa: F401


# ---------------------------------------------------------------- correctness habits


def test_divergence_stops_at_the_first_exploding_batch(tmp_path):
    result = run_script("03b_training_that_survives.py", *QUICK, "--lr", "10",
                        "--checkpoint", tmp_path / "m.pt", inline=True)
    assert result.returncode == 1
    batch = int(re.search(r"at batch (\d+) of epoch 1", result.stderr).group(1))
    assert batch < 32  # 2,000 images = 32 batches: it stopped before the epoch ended
    assert not (tmp_path / "m.pt").exists()


def test_eval_mode_difference_is_measured_not_guessed(capsys):
    demo = lesson("04_load_model").eval_mode_demo
    X = torch.randn(8, 1, 28, 28)
    for layer in (nn.Dropout1d(0.5), nn.AlphaDropout(0.5), nn.BatchNorm1d(784)):
        model = nn.Sequential(
            nn.Flatten(),
            nn.Unflatten(1, (1, 784)) if isinstance(layer, nn.Dropout1d)
            else nn.Identity(),
            layer,
            nn.Flatten(),
            nn.Linear(784, 10))
        demo(model, X)
        assert "differ" in capsys.readouterr().out.split("Where it matters")[0], layer
    demo(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), X)
    assert "identical" in capsys.readouterr().out.split("Where it matters")[0]


def test_a_cross_device_difference_is_not_called_a_changed_file():
    verdict = lesson("04_load_model").same_result_verdict
    assert "identical" in verdict(0.9773, 0.9773, 10_000, "cpu", "cpu")
    across = verdict(0.9772, 0.9773, 10_000, "cuda", torch.device("cpu"))
    assert ("Expected" in across and "1 of 10,000" in across
            and "DIFFERENT" not in across)
    assert "DIFFERENT" in verdict(0.9772, 0.9773, 10_000, "cpu", "cpu")


def test_augmentation_draws_from_the_seeded_generator():
    shift = lesson("06_convolutional_network").random_shift
    X = torch.randn(16, 1, 28, 28)
    first = shift(X, 2, torch.Generator().manual_seed(7))
    torch.manual_seed(123)  # the global generator must not matter
    torch.rand(5)
    assert torch.equal(shift(X, 2, torch.Generator().manual_seed(7)), first)
    assert not torch.equal(shift(X, 2, torch.Generator().manual_seed(8)), first)


def test_06_names_non_default_settings_of_the_mlp_it_compares_with(tmp_path):
    """03 records which settings it changed; 06 names them without importing 03."""
    note = dl_utils.changed_settings_note  # (06 prints it)
    assert "default settings" in note({})
    assert "does not say" in note(None)
    quick = note({"epochs": 1, "subset": 5000, "seed": 3})
    assert ("--epochs 1 --subset 5000" in quick and "Careful" in quick
            and "seed" not in quick)
    ckpt = tmp_path / "mlp.pt"
    result = run_script("03_train_mnist.py", "--epochs", "1", "--subset", "300",
                        "--checkpoint", ckpt, inline=True)
    assert result.returncode == 0, result.stderr
    changed = torch.load(ckpt, weights_only=True)["changed_settings"]
    assert changed == {"epochs": 1, "subset": 300}


def test_06_labels_its_training_curve_as_augmented():
    label = lesson("06_convolutional_network").training_curve_label
    assert "augmented" in label(2) and label(0) == "training"


def test_the_training_loop_is_five_plain_steps():
    """Lesson 3's loop in plain view in fit(): for each epoch, for each batch, the five
    steps and nothing else before the bookkeeping; and it trains."""
    import inspect
    train03 = lesson("03_train_mnist")
    source = inspect.getsource(train03.fit)
    assert "for epoch in range(" in source
    steps = source.split("for X, y in train_loader:")[1].split("loss_sum +=")[0]
    code = [ln.split("#")[0].strip() for ln in steps.splitlines()]
    code = [ln for ln in code if ln]
    assert code == ["X, y = X.to(device), y.to(device)", "optimizer.zero_grad()",
                    "y_hat = model(X)", "loss = loss_fn(y_hat, y)", "loss.backward()",
                    "optimizer.step()"]
    torch.manual_seed(0)
    model = train03.SimpleNN()
    X, y = torch.randn(40, 1, 28, 28), torch.randint(0, 10, (40,))
    loader = dl_utils.TensorLoader(X, y, 8)
    before = model.fc1.weight.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = train03.fit(model, loader, loader, optimizer, 1, "cpu", verbose=False)
    assert result["status"] == "completed"
    assert not torch.equal(before, model.fc1.weight)


def test_output_piped_into_head_stops_quietly():
    """`python 01_tensors_and_autograd.py | head -1`: the reader leaves; no
    traceback."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "01_tensors_and_autograd.py")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=OUTPUT_DIR)
    proc.stdout.readline()
    proc.stdout.close()  # as head does after its line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 1 and "Traceback" not in stderr, stderr
