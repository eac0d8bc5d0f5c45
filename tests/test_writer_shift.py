"""benchmarks/writer_shift.py: other writers' digits prepared as MNIST was, scored honestly."""

import numpy as np
import torch
from conftest import lesson

import dl_utils


def ws():
    return lesson("benchmarks.writer_shift")


def test_uci_pipeline_boxes_into_32x32_and_counts_4x4_blocks():
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[4:24, 12:16] = 255  # a bar 20 tall, 4 wide
    counts = ws().uci_pipeline(digit)
    assert counts.shape == (8, 8) and counts.max() <= 16 and counts.min() == 0
    assert counts.sum() == 32 * round(4 * 32 / 20)  # scaled to 32 tall, 6 wide, all ink
    square = np.zeros((28, 28), dtype=np.uint8)
    square[5:15, 5:15] = 200  # a filled square fills the whole 32x32 frame
    assert (ws().uci_pipeline(square) == 16).all()


def test_other_writers_are_prepared_like_mnist_digits():
    X, y = ws().other_writers()
    assert X.shape == (1797, 28, 28) and X.dtype == torch.uint8
    assert sorted(y.unique().tolist()) == list(range(10))
    ink = X.float()
    rows = (ink.sum(dim=2) * torch.arange(28)).sum(1) / ink.sum(dim=(1, 2))
    cols = (ink.sum(dim=1) * torch.arange(28)).sum(1) / ink.sum(dim=(1, 2))
    assert (rows - 13.5).abs().max() < 1.0 and (cols - 13.5).abs().max() < 1.0  # by mass
    for image in X[::50]:  # the digit's box scaled into 20x20, as MNIST's were
        rows_, cols_ = image.nonzero(as_tuple=True)
        assert max(rows_.max() - rows_.min(), cols_.max() - cols_.min()) + 1 <= 20


def test_the_table_scores_each_set_and_says_only_what_it_measured(tmp_path):
    torch.manual_seed(0)
    model = dl_utils.SimpleNN().eval()
    dl_utils.save_checkpoint(tmp_path / "simple_nn.pt", model, {})
    dl_utils.save_checkpoint(tmp_path / "simple_nn_training.pt", model, {})  # not a model
    _, _, X, y = dl_utils.load_mnist_tensors()
    sets = {"MNIST test": (X[:200], y[:200]), "first 5,000": (X[:100], y[:100]),
            "last 5,000": (X[5000:5100], y[5000:5100]), "MNIST at 8x8": (X[:50], y[:50]),
            "scikit-learn digits": (X[:50], y[:50])}
    models = ws().course_models(tmp_path)
    assert [m[0] for m in models] == ["simple_nn.pt"]
    headers, rows = ws().table(models, sets)
    with torch.inference_mode():
        expected = (model(dl_utils.normalize(X[:200])).argmax(1) == y[:200]).float().mean()
    assert rows[0][headers.index("MNIST test")].startswith(f"{100 * expected.item():.2f} (")
    text = ws().markdown(headers, rows, sets)
    assert "| simple_nn.pt | SimpleNN |" in text and "Test sets only" in text
    gap = rows[0][headers.index("last minus first [95%]")]
    low = float(gap.split("[")[1].split(",")[0])
    assert ("for 1 of 1 checkpoints here the first half was the harder" in text) == (low > 0)
