"""Lesson 08: files on disk to batches, bad files handled, the split honest, the lesson runs."""

import numpy as np
import pytest
import torch
from conftest import OUTPUT_DIR, lesson, run_script
from PIL import Image

import dl_utils


def m08():
    return lesson("08_your_own_images")


def photo(digit_image: np.ndarray, size=(90, 70)) -> Image.Image:
    """An MNIST digit as a 'photo': dark ink on light paper, larger, off centre."""
    big = Image.fromarray(255 - digit_image).resize((56, 56), Image.Resampling.BILINEAR)
    canvas = Image.new("L", size, 230)
    canvas.paste(big, (20, 5))
    return canvas


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Classes 0, 1, 2 in mixed formats, a damaged file, a text file, an empty class 3."""
    root = tmp_path_factory.mktemp("digits")
    _, _, X, y = dl_utils.load_mnist_tensors()
    for digit in range(3):
        (root / str(digit)).mkdir()
        for k, i in enumerate((y == digit).nonzero().flatten()[:6].tolist()):
            pixels = X[i].numpy()
            if k % 3 == 0:  # MNIST's own format
                Image.fromarray(pixels).save(root / str(digit) / f"{k}.png")
            elif k % 3 == 1:  # an RGB photo
                photo(pixels).convert("RGB").save(root / str(digit) / f"{k}.jpg", quality=95)
            else:  # a 16-bit grey photo
                a = np.asarray(photo(pixels), dtype=np.uint16) * 257
                Image.fromarray(a).save(root / str(digit) / f"{k}.png")
    (root / "1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (root / "2" / "notes.txt").write_text("my digits")
    (root / "3").mkdir()
    (root / ".ipynb_checkpoints").mkdir()  # hidden: not a class, for us or for ImageFolder
    Image.fromarray(X[0].numpy()).save(root / ".ipynb_checkpoints" / "x.png")
    return root


def test_scan_skips_bad_files_by_name_and_keeps_empty_classes(folder, capsys):
    classes, samples = m08().scan_folder(folder)
    out = capsys.readouterr().out
    assert classes == ["0", "1", "2", "3"]
    assert len(samples) == 18 and {c for _, c in samples} == {0, 1, 2}
    assert "broken.png" in out and "notes.txt" in out and "has no images" in out


def test_hand_written_dataset_equals_imagefolder(folder):
    m = m08()
    classes, samples = m.scan_folder(folder)
    eval_t, _ = m.make_transforms()
    dataset = m.hand_written_dataset(samples, classes, eval_t)
    assert m.same_as_imagefolder(folder, dataset, classes, eval_t)
    X, y = dataset[0]
    assert X.shape == (1, 28, 28) and X.dtype == torch.float32 and isinstance(y, int)


def test_photos_and_16_bit_files_are_prepared_like_mnist(folder):
    """Every format becomes a light digit on black that lesson 6's preparation can read."""
    m = m08()
    classes, samples = m.scan_folder(folder)
    eval_t, _ = m.make_transforms()
    background = (0 - dl_utils.MNIST_MEAN) / dl_utils.MNIST_STD
    for path, _ in samples:
        X = eval_t(lesson("04_load_model").read_grayscale(path))
        assert X.shape == (1, 28, 28)
        assert X[0, 0, 0].item() == pytest.approx(background, abs=1e-5), path  # black corner
        assert X.max() > 2.0, path  # and some bright ink


def test_sixteen_bit_and_transparent_images_become_8_bit_grey():
    to_gray = lesson("04_load_model").to_grayscale
    sixteen = Image.fromarray(np.full((4, 4), 32896, dtype=np.uint16))  # mid-grey, 16-bit
    assert np.asarray(to_gray(sixteen)).max() == 128  # scaled, not clipped to 255
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))  # transparent: paper shows through
    rgba.putpixel((1, 1), (0, 0, 0, 255))
    grey = np.asarray(to_gray(rgba))
    assert grey[0, 0] == 255 and grey[1, 1] == 0


def test_digit_labels_follow_folder_names_when_digits_are_missing():
    label = m08().DigitLabel(["3", "5", "8"])
    assert [label(i) for i in range(3)] == [3, 5, 8]
    assert m08().digit_classes(["3", "5"]) and not m08().digit_classes(["cat", "dog"])


def test_stratified_split_is_disjoint_complete_and_balanced():
    labels = [0] * 10 + [1] * 6 + [2] * 4 + [3] * 1
    first, rest = m08().stratified_split(labels, 0.5, torch.Generator().manual_seed(0))
    assert not set(first) & set(rest) and sorted(first + rest) == list(range(len(labels)))
    for c, n in ((0, 10), (1, 6), (2, 4)):
        assert sum(labels[i] == c for i in first) == n // 2
    again = m08().stratified_split(labels, 0.5, torch.Generator().manual_seed(0))
    assert again == (first, rest)  # seeded: the same split every run


def test_quick_run_exports_checks_and_fine_tunes_headless(tmp_path):
    ckpt = tmp_path / "tuned.pt"
    result = run_script("08_your_own_images.py", "--per-class", "6", "--epochs", "1",
                        "--workers", "0", "1", "--checkpoint", ckpt)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "identical to ours: 60 of 60" in out
    worst = float(out.split("largest difference ")[1].split()[0])
    assert worst < 1e-6  # the PNG pipeline gives the in-memory lessons' numbers
    assert (OUTPUT_DIR / "data" / "mnist_png" / "6_per_digit" / "9").is_dir()
    assert (OUTPUT_DIR / "figures" / "08_batch.png").read_bytes()[:4] == b"\x89PNG"
    metrics = torch.load(ckpt, weights_only=True)["metrics"]
    assert metrics["heldout_images"] == 30


def test_bad_folders_are_one_clear_line(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")  # images, but no class subfolders
    for target, message in ((tmp_path, "has no class subfolders"),
                            (tmp_path / "nowhere", "does not exist"),
                            (tmp_path / "a.png", "is a file, not a folder")):
        result = run_script("08_your_own_images.py", "--folder", target)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
