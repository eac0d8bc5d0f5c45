"""Lessons 08 and 08b: files on disk to batches, bad files handled, the split honest,
the lessons run.

Three proofs that used to sit in the lessons live here: 08's hand-written Dataset gives
exactly torchvision's ImageFolder samples, the exported PNGs give exactly the in-memory
tensors of the other lessons, and 08b's folder in memory is 08's Dataset, image for
image.
"""

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import OUTPUT_DIR, benchmark_reads, lesson, run_script
from PIL import Image, ImageFilter
from torchvision.datasets import ImageFolder

import dl_utils


def m08():
    return lesson("08_your_own_images")


def m08b():
    return lesson("08b_fine_tuning")


def photo(digit_image: np.ndarray, size=(90, 70)) -> Image.Image:
    """An MNIST digit as a 'photo': dark ink on light paper, larger, off centre."""
    big = Image.fromarray(255 - digit_image).resize((56, 56), Image.Resampling.BILINEAR)
    canvas = Image.new("L", size, 230)
    canvas.paste(big, (20, 5))
    return canvas


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Classes 0, 1, 2 in mixed formats, a damaged file, a text file, an empty
    class 3."""
    root = tmp_path_factory.mktemp("digits")
    _, _, X, y = dl_utils.load_mnist_tensors()
    for digit in range(3):
        (root / str(digit)).mkdir()
        for k, i in enumerate((y == digit).nonzero().flatten()[:6].tolist()):
            pixels = X[i].numpy()
            if k % 3 == 0:  # MNIST's own format
                Image.fromarray(pixels).save(root / str(digit) / f"{k}.png")
            elif k % 3 == 1:  # an RGB photo
                photo(pixels).convert("RGB").save(root / str(digit) / f"{k}.jpg",
                                                  quality=95)
            else:  # a 16-bit grey photo
                a = np.asarray(photo(pixels), dtype=np.uint16) * 257
                Image.fromarray(a).save(root / str(digit) / f"{k}.png")
    (root / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (root / "2" / "notes.txt").write_text("my digits")
    (root / "3").mkdir()
    (root / ".ipynb_checkpoints").mkdir()  # hidden: not a class, for us or for
    # ImageFolder
    Image.fromarray(X[0].numpy()).save(root / ".ipynb_checkpoints" / "x.png")
    return root


def test_scan_skips_bad_files_by_name_and_keeps_empty_classes(folder, capsys):
    classes, samples = dl_utils.scan_image_folder(folder)
    out = capsys.readouterr().out
    assert classes == ["0", "1", "2", "3"]
    assert len(samples) == 18 and {c for _, c in samples} == {0, 1, 2}
    assert "broken.png" in out and "notes.txt" in out and "has no images" in out


class VisibleImageFolder(ImageFolder):
    """ImageFolder without hidden folders (.ipynb_checkpoints), as
    dl_utils.scan_image_folder. find_classes is one of ImageFolder's documented
    hooks."""

    def find_classes(self, directory):
        classes = sorted(e.name for e in os.scandir(directory)
                         if e.is_dir() and not e.name.startswith("."))
        return classes, {name: i for i, name in enumerate(classes)}


def same_as_imagefolder(folder, dataset, eval_t):
    """torchvision's ImageFolder on the same files: (identical samples, ours,
    theirs)."""
    good = {str(path) for path, _ in dataset.samples}
    reference = VisibleImageFolder(folder, transform=eval_t,
                                   loader=dl_utils.read_grayscale,
                                   is_valid_file=good.__contains__, allow_empty=True,
                                   target_transform=dataset.target_transform)
    position = {path: i for i, (path, _) in enumerate(reference.samples)}
    same = sum(torch.equal(dataset[i][0], reference[position[str(path)]][0])
               and dataset[i][1] == reference[position[str(path)]][1]
               for i, (path, _) in enumerate(dataset.samples))
    return same, len(dataset), len(reference)


def test_hand_written_dataset_equals_imagefolder(folder):
    m = m08()
    classes, samples = dl_utils.scan_image_folder(folder)
    eval_t, _ = m.make_transforms()
    dataset = m.hand_written_dataset(samples, classes, eval_t)
    same, ours, theirs = same_as_imagefolder(folder, dataset, eval_t)
    assert same == ours == theirs == 18
    X, y = dataset[0]
    assert X.shape == (1, 28, 28) and X.dtype == torch.float32 and isinstance(y, int)


def test_photos_and_16_bit_files_are_prepared_like_mnist(folder):
    """Every format becomes a light digit on black that lesson 6's preparation can
    read."""
    m = m08()
    classes, samples = dl_utils.scan_image_folder(folder)
    eval_t, _ = m.make_transforms()
    background = (0 - dl_utils.MNIST_MEAN) / dl_utils.MNIST_STD
    for path, _ in samples:
        X = eval_t(dl_utils.read_grayscale(path))
        assert X.shape == (1, 28, 28)
        assert (X[0, 0, 0].item()
                == pytest.approx(background, abs=1e-5)), path  # black corner
        assert X.max() > 2.0, path  # and some bright ink


def test_sixteen_bit_and_transparent_images_become_8_bit_grey():
    to_gray = dl_utils.to_grayscale
    sixteen = Image.fromarray(
        np.full((4, 4), 32896, dtype=np.uint16))  # mid-grey, 16-bit
    assert np.asarray(to_gray(sixteen)).max() == 128  # scaled, not clipped to 255
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # transparent: paper shows through
    rgba.putpixel((1, 1), (0, 0, 0, 255))
    grey = np.asarray(to_gray(rgba))
    assert grey[0, 0] == 255 and grey[1, 1] == 0


@pytest.mark.parametrize("width", [1, 3, 5, 9])
def test_thicken_equals_pillows_max_filter_even_where_ink_touches_the_edge(width):
    rng = np.random.default_rng(width)
    ink = ((rng.random((37, 53)) < 0.05) * 255).astype(np.uint8)
    ink[0, 0] = ink[-1, 10] = ink[20, -1] = 255  # strokes at the border and in a corner
    expected = np.asarray(Image.fromarray(ink).filter(ImageFilter.MaxFilter(width)))
    assert np.array_equal(dl_utils.thicken(ink, width), expected)


def test_digit_labels_follow_folder_names_when_digits_are_missing():
    label = m08().DigitLabel(["3", "5", "8"])
    assert [label(i) for i in range(3)] == [3, 5, 8]
    assert m08().digit_classes(["3", "5"]) and not m08().digit_classes(["cat", "dog"])


def test_stratified_split_is_disjoint_complete_and_balanced():
    labels = [0] * 10 + [1] * 6 + [2] * 4 + [3] * 1
    first, rest = m08b().stratified_split(labels, 0.5, torch.Generator().manual_seed(0))
    assert (not set(first) & set(rest)
            and sorted(first + rest) == list(range(len(labels))))
    for c, n in ((0, 10), (1, 6), (2, 4)):
        assert sum(labels[i] == c for i in first) == n // 2
    again = m08b().stratified_split(labels, 0.5, torch.Generator().manual_seed(0))
    assert again == (first, rest)  # seeded: the same split every run


def test_quick_runs_export_check_and_fine_tune_headless(tmp_path):
    cnn = dl_utils.save_checkpoint(tmp_path / "cnn.pt",
                                   dl_utils.SmallCNN((16, 32)),  # untrained
                                   {"channels": [16, 32]})
    result = run_script("08_your_own_images.py", "--per-class", "6", "--cnn", cnn,
                        inline=True)
    assert result.returncode == 0, result.stderr
    benchmark_reads("08_your_own_images.py", result.stdout)
    export = (
        OUTPUT_DIR / "data" / "mnist_png" / "validation_6_per_digit_drawn_rotated_30"
    )
    assert (export / "9").is_dir()
    assert (Image.open(next((export / "9").iterdir())).size
            == (280, 280))  # drawn on a pad
    assert (OUTPUT_DIR / "figures" / "08_batch.png").read_bytes()[:4] == b"\x89PNG"
    assert "python 08b_fine_tuning.py" in result.stdout
    ckpt = tmp_path / "tuned.pt"
    result = run_script("08b_fine_tuning.py", "--per-class", "6", "--epochs", "1",
                        "--checkpoint", ckpt, "--cnn", cnn, inline=True)
    assert result.returncode == 0, result.stderr
    benchmark_reads("08b_fine_tuning.py", result.stdout)
    checkpoint = torch.load(ckpt, weights_only=True)
    assert checkpoint["metrics"]["heldout_images"] == 30
    assert checkpoint["model_kwargs"]  # every constructor argument recorded, never {}
    trained_on = checkpoint["trained_on"]
    assert "then 30 images of" in trained_on and "mnist_png" in trained_on
    said = " ".join(result.stdout.split())  # (prose wraps where the numbers put it)
    sgd = run_script("08b_fine_tuning.py", "--per-class", "6", "--epochs", "1",
                     "--optimizer", "sgd", "--lr", "0.01", "--checkpoint",
                     tmp_path / "sgd.pt", "--cnn", cnn, inline=True)
    assert sgd.returncode == 0, sgd.stderr
    assert torch.load(tmp_path / "sgd.pt", weights_only=True)["hparams"]["optimizer"] \
        == "sgd"
    assert re.search(r"Digits as MNIST stores them \(1,000 validation images, none in "
                     r"the folder; .*?\):.* before,.* after; \d+ wrong to right, "
                     r"\d+ right to wrong \(p = [\d.e-]+\): "
                     r"(it forgot|it got better|no clear difference)", said)


def test_08b_holds_in_memory_exactly_what_08s_dataset_reads(folder):
    """08b decodes the folder once into tensors; 08 reads it file by file through its
    Dataset and transforms: the same images, labels and numbers (the twins agree)."""
    m = m08()
    classes, samples = dl_utils.scan_image_folder(folder)
    eval_t = m.make_transforms("auto")[0]
    dataset = m.ImageFolderDataset(dl_utils.keep_preparable(samples, eval_t), eval_t,
                                   m.DigitLabel(classes))
    X, y, paths = dl_utils.read_digit_folder(folder, m08b().prepare)
    assert len(dataset) == len(y) == 18 and [p for p, _ in dataset.samples] == paths
    for i in range(len(y)):
        image, label = dataset[i]
        assert label == y[i].item()
        assert (image - dl_utils.normalize(X[i][None])[0]).abs().max().item() < 1e-6
    for path, _ in samples:  # the two decide "already MNIST's format" alike
        image = dl_utils.read_grayscale(path)
        assert m.looks_like_mnist(image) == dl_utils.looks_like_mnist(image)


def test_08b_refuses_a_folder_that_is_not_digits(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        Image.new("L", (28, 28), 0).save(tmp_path / name / "a.png")
    result = run_script("08b_fine_tuning.py", "--folder", tmp_path, inline=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "subfolders named 0 to 9" in result.stderr


def test_the_rotated_drawings_are_validation_digits_turned_as_asked():
    """Each exported drawing is its validation digit, turned: turned back and prepared,
    it matches the digit as stored far better than the drawing of another digit does."""
    train_X, train_y, _, _ = dl_utils.load_mnist_tensors()
    rng = np.random.default_rng(0)
    digit = train_X[dl_utils.train_val_split(len(train_y))[1][0]].numpy()
    upright = dl_utils.draw_like_a_canvas(digit, rng, rotate=0).convert("L")
    turned = dl_utils.draw_like_a_canvas(digit, np.random.default_rng(0),
                                          rotate=30).convert("L")
    assert upright.size == turned.size == (280, 280)
    a = dl_utils.digit_from_gray(upright).astype(float)
    b = dl_utils.digit_from_gray(turned).astype(float)
    paper = turned.getpixel((0, 0))  # white, or black for light-on-dark drawings
    straightened = dl_utils.digit_from_gray(
        turned.rotate(-30, fillcolor=paper)).astype(float)
    assert (np.abs(a - straightened).mean()
            < np.abs(a - b).mean())  # it leaned, 30 degrees


def test_exported_folder_is_validation_images_equal_to_the_in_memory_tensors():
    """The PNG pipeline gives the in-memory lessons' numbers, and no exported image is a
    test image (lesson 8 fine-tunes on part of the folder)."""
    m = m08()
    folder = dl_utils.export_mnist_pngs(
        OUTPUT_DIR / "data" / "mnist_png" / "check_3", 3)
    classes, samples = dl_utils.scan_image_folder(folder)
    dataset = m.hand_written_dataset(samples, classes, m.make_transforms()[0])
    same, ours, theirs = same_as_imagefolder(folder, dataset, m.make_transforms()[0])
    assert same == ours == theirs == 30
    train_X, train_y, _, _ = dl_utils.load_mnist_tensors()
    val_idx = set(dl_utils.train_val_split(len(train_y))[1].tolist())
    worst = 0.0
    for i, (path, label) in enumerate(dataset.samples):
        index = int(Path(path).stem)  # the image's index in MNIST's training file
        assert index in val_idx and train_y[index] == label
        expected = dl_utils.normalize(train_X[index][None])[0]
        worst = max(worst, (dataset[i][0] - expected).abs().max().item())
    assert worst < 1e-6


def test_bad_folders_are_one_clear_line(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")  # images, but no class subfolders
    for target, message in ((tmp_path, "has no class subfolders"),
                            (tmp_path / "nowhere", "does not exist"),
                            (tmp_path / "a.png", "is a file, not a folder")):
        result = run_script("08_your_own_images.py", "--folder", target, inline=True)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_blank_photo_is_skipped_by_name_not_a_crash(tmp_path):
    """One blank photo among real ones: the run goes on without it, and says which."""
    _, _, X, y = dl_utils.load_mnist_tensors()
    for digit in (0, 1):
        (tmp_path / str(digit)).mkdir()
        for k, i in enumerate((y == digit).nonzero().flatten()[:4].tolist()):
            photo(X[i].numpy()).convert("RGB").save(tmp_path / str(digit) / f"{k}.jpg")
    Image.new("L", (90, 70), 230).save(tmp_path / "1" / "blank.png")  # paper, no ink
    for script, more in (("08_your_own_images.py", []),
                         ("08b_fine_tuning.py", ["--epochs", "1", "--checkpoint",
                                                 tmp_path / "tuned.pt"])):
        result = run_script(script, "--folder", tmp_path, *more, inline=True)
        assert result.returncode == 0, result.stderr
        assert "skipped" in result.stdout and "blank.png" in result.stdout
        assert "no digit found" in result.stdout


@pytest.mark.parametrize("fixed, broken, p", [
    (0, 4, 0.125), (1, 7, 0.0703), (3, 11, 0.0574),
    (0, 21, 9.5e-7), (5, 5, 1.0), (0, 0, 1.0),
])
def test_forgetting_is_judged_by_the_exact_coin_flip_test(fixed, broken, p):
    """Review 1.8: the normal approximation called 0 against 4 'clear'; the exact test,
    the sum of binomial(n, 1/2) probabilities as extreme, does not."""
    got = m08b().coin_flip_p(fixed, broken)
    assert got == pytest.approx(p, rel=0.01)
    assert got == m08b().coin_flip_p(broken, fixed)  # two-sided


@pytest.mark.parametrize("train_only", ["classifier", "all"])
def test_frozen_blocks_keep_their_batch_norm_statistics(train_only):
    """08b --train-only classifier: a frozen block's batch norm (06 --batch-norm) stays
    in eval mode while the model trains, so its running statistics stay MNIST's; with
    "all" they follow the new images, as training mode does."""
    m = lesson("08b_fine_tuning")
    torch.manual_seed(0)
    model = dl_utils.SmallCNN((4, 8), hidden_size=8, batch_norm=True)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    chosen = m.trainable(model, train_only)
    model.train()
    optimizer = torch.optim.SGD(chosen, lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(16, 1, 28, 28) * 3 + 1),
                                             torch.randint(0, 10, (16,)))
    loss.backward()
    optimizer.step()
    after = model.state_dict()
    same = [torch.equal(before[k], after[k]) for k in before]
    assert all(same) if train_only == "classifier" else not any(same)
    assert model.classifier[1].training  # the classifier still trains


def test_writer_stand_ins_are_validation_digits_redrawn_and_cut_to_8x8():
    """06's writer check and 13's choice read the same sets: the digits given
    (validation digits there), re-drawn and cut to 8x8 as the helpers make them, the
    same twice."""
    train_X, train_y, _, _ = dl_utils.load_mnist_tensors()
    idx = dl_utils.train_val_split(len(train_y))[1][:12]
    sets = dl_utils.writer_stand_ins(train_X[idx], train_y[idx])
    assert torch.equal(sets["as stored"][0], train_X[idx])
    for X, y in sets.values():
        assert (X.shape == (12, 28, 28) and X.dtype == torch.uint8
                and torch.equal(y, train_y[idx]))
    at_8x8 = dl_utils.digit_from_gray(dl_utils.counts_to_image(dl_utils.uci_8x8(
        train_X[idx[0]].numpy())))
    assert np.array_equal(sets["cut to 8x8"][0][0].numpy(), at_8x8)
    assert not torch.equal(sets["re-drawn like the pad"][0], sets["as stored"][0])
    again = dl_utils.writer_stand_ins(train_X[idx], train_y[idx])
    assert all(torch.equal(again[k][0], sets[k][0]) for k in sets)
