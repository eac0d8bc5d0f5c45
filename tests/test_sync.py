"""Each idea lives twice: in the lesson that teaches it, and in dl_utils for later
lessons.

A lesson never imports another lesson, so that an edit a learner makes in one changes no
other (tests/test_standalone.py proves it). The price is a copy, as in d2l's library:
these tests keep every teaching copy and its dl_utils twin equal, by what they compute
(same weights and outputs after the same steps with the same seed), not by their text.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import lesson
from PIL import Image

import dl_utils


def toy_loaders(n=256, seed=0):
    """Random 'images' with learnable labels: enough to take a few real training
    steps."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 1, 28, 28, generator=g)
    y = (X[:, 0, 10:18, 10:18].mean(dim=(1, 2)) > 0).long() + 2 * (
        X[:, 0, 0, :].mean(1) > 0
    )
    train = dl_utils.TensorLoader(X[:192], y[:192], 32, shuffle=True,
                                  generator=torch.Generator().manual_seed(seed))
    return train, dl_utils.TensorLoader(X[192:], y[192:], 64)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def trained(make_model, fit, scheduler=None, epochs=3):
    """A model made with seed 0 and trained by `fit` on the toy data; (model,
    result)."""
    torch.manual_seed(0)
    model = make_model()
    train, val = toy_loaders()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    kwargs = {"scheduler": scheduler(optimizer)} if scheduler else {}
    result = fit(model, train, val, optimizer, epochs, "cpu", verbose=False, **kwargs)
    return model, result


@pytest.mark.parametrize("hidden", [128, 32])
def test_03_simple_nn_and_fit_equal_the_dl_utils_copies(hidden):
    m03 = lesson("03_train_mnist")
    ours, r1 = trained(lambda: m03.SimpleNN(hidden_size=hidden), m03.fit)
    theirs, r2 = trained(lambda: dl_utils.SimpleNN(hidden_size=hidden), dl_utils.fit)
    assert same_weights(ours, theirs)
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert r1["history"][key] == r2["history"][key], key
    assert (r1["best_epoch"], r1["status"]) == (r2["best_epoch"], r2["status"])
    X = torch.randn(5, 1, 28, 28)
    assert torch.equal(ours(X), theirs(X))


def test_05_baseline_is_lesson_3s_simple_nn():
    m05 = lesson("05_experiment_architectures")
    ours, _ = trained(m05.TwoLayerNN, dl_utils.fit, epochs=2)
    theirs, _ = trained(dl_utils.SimpleNN, dl_utils.fit, epochs=2)
    assert same_weights(ours, theirs)
    assert dl_utils.layer_sizes(m05.ThreeLayerNN()) == "784-256-128-10"


def test_06_cnn_and_its_augmentation_equal_the_dl_utils_copies():
    m06 = lesson("06_convolutional_network")
    for kwargs in ({}, {"channels": (8, 16), "hidden_size": 0}):
        torch.manual_seed(0)
        a = m06.SmallCNN(**kwargs)
        torch.manual_seed(0)
        b = dl_utils.SmallCNN(**kwargs)
        assert same_weights(a, b)
        X = torch.randn(4, 1, 28, 28)
        assert torch.equal(a(X), b(X))
    X = torch.randn(16, 1, 28, 28)
    shifted = [shift(X, 2, torch.Generator().manual_seed(3))
               for shift in (m06.random_shift, dl_utils.random_shift)]
    assert torch.equal(*shifted)
    assert m06.BACKGROUND == dl_utils.BACKGROUND


def test_06_training_with_shifts_and_schedule_equals_dl_utils():
    """06's recipe (its ShiftedLoader, a one-cycle schedule) through dl_utils.fit,
    against the same with dl_utils' ShiftedLoader: the lesson's copy is what later
    lessons use."""
    m06 = lesson("06_convolutional_network")
    results = []
    for loader_cls in (m06.ShiftedLoader, dl_utils.ShiftedLoader):
        torch.manual_seed(0)
        model = dl_utils.SmallCNN(channels=(4, 8), hidden_size=8)
        train, val = toy_loaders()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=3e-3, epochs=2, steps_per_epoch=len(train)
        )
        dl_utils.fit(
            model,
            loader_cls(train, 1),
            val,
            optimizer,
            2,
            "cpu",
            verbose=False,
            scheduler=scheduler,
        )
        results.append(model)
    assert same_weights(*results)


def test_04_digit_preparation_equals_the_dl_utils_copy():
    m04 = lesson("04_load_model")
    _, _, X, _ = dl_utils.load_mnist_tensors()
    rng = np.random.default_rng(0)
    for i in range(12):
        digit = X[i].numpy()
        size = int(rng.integers(40, 200))
        photo = Image.fromarray(255 - digit).resize((size, size + 13))  # dark on light
        assert np.array_equal(
            m04.digit_from_gray(photo), dl_utils.digit_from_gray(photo)
        )
        small = np.asarray(Image.fromarray(digit).resize((17, 20)), dtype=np.float32)
        assert np.array_equal(m04.center_by_mass(small), dl_utils.center_by_mass(small))


def test_08b_coin_flip_and_changed_predictions_are_dl_utils_copies():
    m08b = lesson("08b_fine_tuning")
    for fixed, broken in ((0, 0), (0, 4), (3, 9), (21, 0), (40, 37)):
        assert m08b.coin_flip_p(fixed, broken) == dl_utils.coin_flip_p(fixed, broken)
    g = torch.Generator().manual_seed(0)
    before, after = torch.randn(200, 10, generator=g), torch.randn(200, 10, generator=g)
    y = torch.randint(0, 10, (200,), generator=g)
    assert m08b.changed_predictions(before, after, y) == dl_utils.changed_predictions(
        before, after, y)
    assert dl_utils.coin_flip_p(0, 4) == 0.125  # 2 / 2**4, by hand


def test_06b_writer_stand_ins_equal_the_dl_utils_copy():
    """06b teaches the writer stand-ins; lesson 13 and the benchmarks use dl_utils'
    copy: the same digits, re-drawn and cut to 8x8 alike, pixel for pixel."""
    m06b = lesson("06b_other_writers")
    train_X, train_y, _, _ = dl_utils.load_mnist_tensors()
    idx = dl_utils.train_val_split(len(train_y))[1][:40]
    ours = m06b.writer_stand_ins(train_X[idx], train_y[idx])
    theirs = dl_utils.writer_stand_ins(train_X[idx], train_y[idx])
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name][0], theirs[name][0]), name
        assert torch.equal(ours[name][1], theirs[name][1]), name
    # and the sets differ from one another: a copy that skipped a step would show
    assert not torch.equal(ours["as stored"][0], ours["re-drawn like the pad"][0])


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_11_sequence_rnn_equals_the_dl_utils_copy(cell):
    """11 teaches SequenceRNN; benchmarks/row_order.py uses dl_utils' copy: the same
    initial weights from the same seed, the same rows in the same order, the same
    scores, and the same weights after the same training steps."""
    m11 = lesson("11_sequences_and_rnns")
    order = list(range(27, -1, -1))
    ours, _ = trained(lambda: m11.SequenceRNN(cell, 16, order), dl_utils.fit)
    theirs, _ = trained(lambda: dl_utils.SequenceRNN(cell, 16, order), dl_utils.fit)
    assert same_weights(ours, theirs)
    X = torch.randn(5, 1, 28, 28)
    assert torch.equal(ours(X), theirs(X))
    assert torch.equal(ours.order, torch.tensor(order))
