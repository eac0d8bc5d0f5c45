"""03_train_mnist.py and 04_load_model.py, run in subprocesses as a learner runs them.
(What lesson 3b adds, resuming, divergence and Ctrl-C, is tested in test_resume.py.)"""

import re

import numpy as np
import pytest
import torch
from conftest import OUTPUT_DIR, ROOT, benchmark_reads, lesson, run_script
from PIL import Image

import dl_utils

QUICK = ("--epochs", "1", "--subset", "2000")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One quick training run of 03; its checkpoint is shared by the tests below."""
    path = tmp_path_factory.mktemp("models") / "simple_nn.pt"
    result = run_script("03_train_mnist.py", *QUICK, "--checkpoint", path)
    assert result.returncode == 0, result.stderr
    return path, result.stdout


def test_03_trains_reports_and_saves(trained):
    path, out = trained
    assert "101,770 trainable parameters = 407 KB" in out
    assert "[64, 1, 28, 28]" in out and "[64, 784]" in out  # shapes of the first batch
    assert "epoch  train loss  train acc  val loss  val acc  seconds" in out
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hparams"]["subset"] == 2000
    assert checkpoint["hparams"]["lr"] == 0.001
    assert 0.80 < checkpoint["metrics"]["test_acc"] < 1.0  # 2,000 images, one epoch
    assert path.with_name("simple_nn_whole.pt").exists()
    assert (OUTPUT_DIR / "figures" / "03_training_history.png").exists()
    benchmark_reads("03_train_mnist.py", out)


def test_03_shows_its_plain_loop_in_its_first_half():
    """Issue 47: the settings, the model and a plain epoch loop with the five steps are
    in view in the first half of lesson 3, each step once."""
    lines = (ROOT / "03_train_mnist.py").read_text().splitlines()

    def first(text):
        found = [i for i, line in enumerate(lines) if text in line]
        assert len(found) == 1, (text, found)
        return found[0]
    order = [first(text) for text in (
        "BATCH_SIZE = ", "class SimpleNN", "for epoch in range(1, num_epochs + 1):",
        "for X, y in train_loader:", "optimizer.zero_grad()  # 1.", "y_hat = model(X)",
        "loss = loss_fn(y_hat, y)", "loss.backward()", "optimizer.step()",
        "dl_utils.evaluate_model(model, val_loader", "improved = keep_if_best(")]
    assert order == sorted(order) and order[-1] < len(lines) / 2


def test_04_reproduces_the_accuracy_03_reported(trained):
    path, _ = trained
    result = run_script("04_load_model.py", "--checkpoint", path, inline=True)
    assert result.returncode == 0, result.stderr
    benchmark_reads("04_load_model.py", result.stdout)
    saved = torch.load(path, weights_only=True)["metrics"]["test_acc"]
    assert f"reported at training  {round(saved * 10000):,} / 10,000" in result.stdout
    assert "Same weights, same data, eval mode: identical." in result.stdout
    assert "Trained on: MNIST's training split (never its validation or test images)" \
        in result.stdout
    # the idea first (outputs, accuracy, mistakes), saving and loading safely last
    sections = [line for line in result.stdout.splitlines() if line.startswith("=== ")]
    assert [s.split()[1] for s in sections] == [
        "The", "From", "All", "Where", "model.eval()", "Saving", "The"]
    assert "Saving and loading safely" in sections[-2]
    # the whole-model route fails for the two reasons the lesson explains, each error
    # introduced as expected
    assert "__main__.SimpleNN" in result.stdout  # read from 03's file, never unpickled
    lines = result.stdout.splitlines()  # the classes it lists, in a fixed order
    at = lines.index("  __main__.SimpleNN")
    first, last = at, at
    while lines[first - 1].startswith("  ") and " " not in lines[first - 1].strip():
        first -= 1
    while lines[last + 1].startswith("  ") and " " not in lines[last + 1].strip():
        last += 1
    listed = [line.strip() for line in lines[first:last + 1]]
    assert len(listed) > 1 and listed == sorted(listed)
    assert "Unsupported global: GLOBAL 03_train_mnist.SimpleNN" in result.stdout
    prose = " ".join(result.stdout.split())  # lesson text is re-wrapped to the terminal
    assert "Can't get attribute 'SimpleNN' on <module '__main__'" in prose
    expected = "(expected: this error is the point) "
    assert f"{expected}refused, UnpicklingError" in result.stdout
    assert f"{expected}fails, ModuleNotFoundError" in result.stdout
    for name in ("04_predictions.png", "04_confusion_matrix.png",
                 "04_confident_mistakes.png"):
        assert (OUTPUT_DIR / "figures" / name).exists()


@pytest.mark.parametrize("name, says", [
    ("simple_nn.pt", "run `python 03_train_mnist.py` first"),
    ("cnn.pt", "run `python 06_convolutional_network.py` first"),
    ("cnn_writers.pt", "run `python 06b_other_writers.py` first"),
    ("mine.pt", "run the lesson that trains it first")])
def test_04_without_checkpoint_names_the_lesson_that_saves_it(tmp_path, name, says):
    result = run_script("04_load_model.py", "--checkpoint", tmp_path / name,
                        inline=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert says in result.stderr


def test_04_knows_which_lesson_saves_each_default_checkpoint():
    """Every lesson's default CHECKPOINT file name leads 04's error to that lesson."""
    m04 = lesson("04_load_model")
    for script in sorted(ROOT.glob("[0-9][0-9]*_*.py")):
        found = re.search(r'^CHECKPOINT = dl_utils\.MODELS_DIR / "([^"]+)"',
                          script.read_text(), re.MULTILINE)
        if found and not script.name.startswith("04_"):
            assert f"python {script.name}" in m04.lesson_that_saves(found.group(1)), \
                script.name


def test_04_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a model")
    result = run_script("04_load_model.py", "--checkpoint", junk, inline=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "not a readable checkpoint" in result.stderr


@pytest.mark.parametrize("args, message", [
    (("--epochs", "0"), "must be a positive integer"),
    (("--batch-size", "-5"), "must be a positive integer"),
    (("--lr", "0"), "must be a positive number"),
    (("--lr", "nan"), "must be a positive number"),
    (("--device", "tpu"), "invalid choice"),
])
def test_03_rejects_invalid_settings(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        lesson("03_train_mnist").parse_args(list(args))
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_invalid_setting_on_the_command_line_is_one_clear_error():
    result = run_script("03_train_mnist.py", "--epochs", "0", inline=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "03_train_mnist.py: error: argument --epochs: must be a positive integer, "
        "got 0")


def test_03_help_lists_every_setting_with_its_default():
    help_text = run_script("03_train_mnist.py", "-h", inline=True).stdout
    out = " ".join(help_text.split("options:")[1].split())
    for flag, default in [("--batch-size", "64"), ("--lr", "0.001"), ("--epochs", "10"),
                          ("--hidden-size", "128"), ("--seed", "0"),
                          ("--device", "cpu")]:
        after = out.split(flag, 1)[1].split("--")[0]
        assert flag in out and f"(default: {default})" in after
    for gone in ("--resume", "--stop-after-epoch", "--check-resume"):  # lesson 3b's
        assert gone not in out


# ---------------------------------------------------------------------------- --image

def mnist_digit_as_photo(tmp_path, index=0, scale=10, dark_ink=True):
    """A real test digit, enlarged, off-centre on a grey page (dark or light ink)."""
    _, _, X_test, _ = dl_utils.load_mnist_tensors()
    digit = X_test[index].numpy()
    page = np.full((28 * scale + 120, 28 * scale + 60), 235 if dark_ink else 20,
                   np.float32)
    big = np.asarray(Image.fromarray(digit).resize((28 * scale, 28 * scale),
                                                   Image.BILINEAR))
    ink = big * (200 / 255) * (-1 if dark_ink else 1)
    page[100:100 + 28 * scale, 10:10 + 28 * scale] += ink
    path = tmp_path / f"photo_{dark_ink}.png"
    Image.fromarray(page.astype(np.uint8)).save(path)
    return path, digit


def test_mnist_digits_are_centred_by_mass_at_14_14():
    X = dl_utils.load_mnist_tensors()[2].double()  # the 10,000 test images
    mass = X.sum(dim=(1, 2))
    rows = (X.sum(dim=2) * torch.arange(28)).sum(dim=1) / mass
    cols = (X.sum(dim=1) * torch.arange(28)).sum(dim=1) / mass
    assert abs(rows.mean().item() - 14) < 0.05 and abs(cols.mean().item() - 14) < 0.05


@pytest.mark.parametrize("dark_ink", [True, False])
def test_prepare_digit_recovers_an_mnist_image(tmp_path, dark_ink):
    prepare = lesson("04_load_model").digit_from_gray
    path, original = mnist_digit_as_photo(tmp_path, dark_ink=dark_ink)
    pixels = prepare(dl_utils.read_grayscale(path))  # what 04 --image does
    assert pixels.shape == (28, 28) and pixels.dtype == np.uint8
    rows, cols = np.nonzero(pixels > 30)
    assert max(np.ptp(rows), np.ptp(cols)) + 1 <= 20  # fitted into a 20x20 box
    mass = pixels.astype(float) / pixels.sum()
    cy, cx = (mass.sum(1) * np.arange(28)).sum(), (mass.sum(0) * np.arange(28)).sum()
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5  # centred by mass, as MNIST
    corr = np.corrcoef(pixels.ravel().astype(float),
                       original.ravel().astype(float))[0, 1]
    assert corr > 0.95  # the same digit, where MNIST would have put it


def test_04_classifies_an_image(trained, tmp_path):
    path, _ = mnist_digit_as_photo(tmp_path)
    result = run_script("04_load_model.py", "--checkpoint", trained[0], "--image", path,
                        inline=True)
    assert result.returncode == 0, result.stderr
    assert f"Prediction for {path}:" in result.stdout
    rows = [line.split() for line in result.stdout.split("probability")[1].splitlines()]
    probs = [float(r[1].rstrip("%")) for r in rows if len(r) == 2 and r[0].isdigit()]
    assert len(probs) == 10 and sum(probs) == pytest.approx(100, abs=0.1)


def test_04_image_errors_are_one_line(trained, tmp_path):
    for bad in (tmp_path / "missing.png", tmp_path / "notes.txt"):
        if bad.suffix == ".txt":
            bad.write_text("hello")
        result = run_script("04_load_model.py", "--checkpoint", trained[0], "--image",
                            bad, inline=True)
        assert result.returncode == 1 and "cannot read image" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("acc, loss, says, never", [
    # the review's default run: loss best at 8, accuracy at 5, 0.10 apart (SE 0.20)
    ([0.9786, 0.9776], [0.0792, 0.0790], "within noise", "confidently wrong"),
    ([0.95, 0.98], [0.09, 0.12], "confidently wrong", "within noise"),  # loss best 1st
    ([0.98, 0.95], [0.10, 0.08], "kept falling after accuracy peaked",
     "confidently wrong"),
])
def test_the_loss_and_accuracy_sentence_follows_the_numbers(acc, loss, says, never):
    text = lesson("03_train_mnist").best_epochs_explained(
        {"val_acc": acc, "val_loss": loss}, 5000)
    assert says in text and never not in text


def test_04_feeds_a_model_trained_on_raw_pixels_what_it_was_trained_on(tmp_path):
    """03 --inputs raw records its scaling; 04 (like 8, 9, 13 and the benchmarks, via
    load_checkpoint) feeds the model standardized batches, converted back by
    InputsAsTrained: the accuracy it recomputes is the one 03 measured on raw bytes."""
    path = tmp_path / "raw.pt"
    result = run_script("03_train_mnist.py", *QUICK, "--inputs", "raw", "--checkpoint",
                        path, inline=True)
    assert result.returncode == 0, result.stderr
    result = run_script("04_load_model.py", "--checkpoint", path, inline=True)
    assert result.returncode == 0, result.stderr
    saved = torch.load(path, weights_only=True)["metrics"]["test_acc"]
    assert f"reported at training  {round(saved * 10000):,} / 10,000" in result.stdout
    assert "Same weights, same data, eval mode: identical." in result.stdout
    assert "Inputs: raw;" in result.stdout
