"""Tests of the shared helpers, each checked against an independent computation."""

import gzip
import hashlib
import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import lesson

import dl_utils
from _course import files

# --------------------------------------------------------------------------- data files


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> bytes:
    """An IDX file written independently of dl_utils: magic, big-endian dims, raw
    bytes."""
    magic = magic if magic is not None else 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(data)
    return data


@pytest.fixture
def tiny_mnist(tmp_path):
    """A fake MNIST root with 20 training and 10 test images, shipped as .gz only."""
    rng = np.random.default_rng(0)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 20),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 10),
    }
    files = {}
    for name, array in arrays.items():
        data = write_idx(raw / name, array)
        (raw / f"{name}.gz").write_bytes(gzip.compress(data))
        (raw / name).unlink()  # only the .gz, as shipped
        files[name] = (len(data), hashlib.md5(data).hexdigest())
    return tmp_path, raw, arrays, files


def test_shipped_files_match_the_official_md5():
    raw = dl_utils.prepare_mnist()
    assert raw == dl_utils.ROOT / "data" / "MNIST" / "raw"
    for name, (size, md5) in dl_utils.MNIST_FILES.items():
        assert (raw / f"{name}.gz").exists(), f"{name}.gz must ship in data/"
        data = (raw / name).read_bytes()
        assert len(data) == size
        assert hashlib.md5(data).hexdigest() == md5


def test_our_reader_agrees_with_torchvision():
    from torchvision import datasets

    X, y, X_test, y_test = dl_utils.load_mnist_tensors()
    for train, (images, labels) in ((True, (X, y)), (False, (X_test, y_test))):
        theirs = datasets.MNIST(dl_utils.DATA_DIR, train=train, download=False)
        assert torch.equal(images, theirs.data) and torch.equal(labels, theirs.targets)
    assert X.shape == (60_000, 28, 28) and X_test.shape == (10_000, 28, 28)


def test_tiny_files_are_extracted_checked_and_read(tiny_mnist):
    root, raw, arrays, files = tiny_mnist
    X, y, Xt, yt = dl_utils.load_mnist_tensors(root, files)
    assert all((raw / name).exists() for name in files)  # extracted next to the .gz
    assert torch.equal(
        X, torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.uint8))
    )
    assert torch.equal(y, torch.from_numpy(arrays["train-labels-idx1-ubyte"]).long())
    assert Xt.shape == (10, 28, 28) and yt.shape == (10,)


def test_truncated_file_is_named_with_the_fix(tiny_mnist):
    root, raw, _, files = tiny_mnist
    dl_utils.prepare_mnist(root, files)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(
        dl_utils.FriendlyError, match="images-idx3-ubyte is truncated.*delete it"
    ):
        dl_utils.prepare_mnist(root, files)


def test_wrong_magic_number_is_rejected(tiny_mnist):
    root, raw, arrays, files = tiny_mnist
    dl_utils.prepare_mnist(root, files)
    write_idx(
        raw / "t10k-labels-idx1-ubyte", arrays["t10k-labels-idx1-ubyte"], magic=2051
    )
    with pytest.raises(
        dl_utils.FriendlyError, match="t10k-labels-idx1-ubyte is not an MNIST"
    ):
        dl_utils.prepare_mnist(root, files)


def test_altered_content_fails_the_md5_check(tiny_mnist):
    root, raw, _, files = tiny_mnist
    dl_utils.prepare_mnist(root, files)
    path = raw / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[-1] = (data[-1] + 1) % 10  # same size, valid header, one label changed
    path.write_bytes(bytes(data))
    with pytest.raises(
        dl_utils.FriendlyError, match="train-labels-idx1-ubyte fails its md5"
    ):
        dl_utils.prepare_mnist(root, files)


def test_damaged_gz_gives_a_clear_error(tiny_mnist):
    root, raw, _, files = tiny_mnist
    gz = raw / "t10k-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:50])
    with pytest.raises(dl_utils.FriendlyError, match="cannot decompress .*t10k-images"):
        dl_utils.prepare_mnist(root, files)
    assert not (raw / "t10k-images-idx3-ubyte").exists()  # no half-written file left


def test_missing_files_and_failed_download_say_where_to_put_them(tmp_path, monkeypatch):
    def offline(root):
        raise urllib.error.URLError("no network")

    # (prepare_mnist's own module)
    monkeypatch.setattr(files, "download_mnist", offline)
    with pytest.raises(
        dl_utils.FriendlyError, match="download failed.*train-images-idx3-ubyte.gz"
    ):
        dl_utils.prepare_mnist(tmp_path)


# ------------------------------------------------------------------------------ loaders


@pytest.fixture(scope="module")
def mnist():
    return dl_utils.load_mnist_data(
        batch_size=64, generator=torch.Generator().manual_seed(0)
    )


def test_split_sizes_shapes_and_normalization(mnist):
    train, val, test = mnist
    assert [len(d.dataset) for d in (train, val, test)] == [55_000, 5_000, 10_000]
    assert len(train) == math.ceil(55_000 / 64)
    X, y = next(iter(train))
    assert (
        X.shape == (64, 1, 28, 28)
        and X.dtype == torch.float32
        and y.dtype == torch.int64
    )
    # Normalized with the training statistics: mean ~0, std ~1, range ~[-0.42, 2.82]
    assert abs(train.X.mean().item()) < 0.01 and abs(train.X.std().item() - 1) < 0.01
    assert train.X.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    assert train.X.max().item() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)


def test_validation_is_disjoint_from_training(mnist):
    train, val, _ = mnist
    # Compare images by their bytes: MNIST has no duplicate images across these splits.
    train_keys = {
        bytes(x.numpy()) for x in (train.X[:, 0] * 1000).round().to(torch.int32)
    }
    val_keys = [
        bytes(x.numpy()) for x in (val.X[:200, 0] * 1000).round().to(torch.int32)
    ]
    assert not any(k in train_keys for k in val_keys)


def test_shuffling_covers_every_image_once_and_is_seeded():
    X, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    loader = dl_utils.TensorLoader(X, y, batch_size=3, shuffle=True,
                                   generator=torch.Generator().manual_seed(1))
    epoch1 = torch.cat([b for _, b in loader])
    epoch2 = torch.cat([b for _, b in loader])
    assert sorted(epoch1.tolist()) == list(range(10)) and not torch.equal(
        epoch1, epoch2
    )
    again = dl_utils.TensorLoader(
        X, y, 3, shuffle=True, generator=torch.Generator().manual_seed(1)
    )
    assert torch.equal(torch.cat([b for _, b in again]), epoch1)
    assert [len(b) for _, b in loader] == [3, 3, 3, 1]


def test_subset_limits_training_only():
    train, val, test = dl_utils.load_mnist_data(subset=1000)
    assert [len(d.dataset) for d in (train, val, test)] == [1000, 5000, 10000]


# ------------------------------------------------------------------------ device, seeds


def test_get_device():
    assert dl_utils.get_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert dl_utils.get_device("auto").type == expected
    with pytest.raises(dl_utils.FriendlyError, match="unknown device"):
        dl_utils.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(dl_utils.FriendlyError, match="no CUDA GPU"):
            dl_utils.get_device("cuda")


def test_same_seed_gives_identical_weights():
    train03 = lesson("03_train_mnist")

    def short_run(seed):
        generator = dl_utils.set_seed(seed)
        train, val, _ = dl_utils.load_mnist_data(subset=2000, generator=generator)
        model = train03.SimpleNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        train03.fit(model, train, val, optimizer, 2, "cpu", verbose=False)
        return model.state_dict()

    a, b, c = short_run(0), short_run(0), short_run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


# --------------------------------------------------------------------------- evaluation


def test_evaluate_model_matches_a_direct_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5))
    X, y = torch.randn(25, 1, 2, 2), torch.randint(0, 3, (25,))
    loader = dl_utils.TensorLoader(X, y, batch_size=7)
    model.train()
    loss, acc = dl_utils.evaluate_model(model, loader)
    assert model.training  # left in the mode it was found in
    with torch.no_grad():
        logits = model[1](X.flatten(1)).numpy().astype(np.float64)  # dropout off = eval
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-log_probs[np.arange(25), y.numpy()].mean(), rel=1e-5)
    assert acc == pytest.approx((logits.argmax(axis=1) == y.numpy()).mean())
    model.eval()
    dl_utils.evaluate_model(model, loader)
    assert not model.training


def test_count_parameters_and_size():
    model = lesson("03_train_mnist").SimpleNN()
    assert (
        dl_utils.count_parameters(model) == 784 * 128 + 128 + 128 * 10 + 10 == 101_770
    )
    assert dl_utils.model_size_kb(model) == pytest.approx(101_770 * 4 / 1000)
    model.fc1.weight.requires_grad_(False)  # frozen weights are not trainable
    assert dl_utils.count_parameters(model) == 101_770 - 784 * 128


def test_format_table_aligns_columns():
    rows = [["a", "97.50%"], ["long name", "9.1%"]]
    lines = dl_utils.format_table(["name", "acc"], rows).split("\n")
    assert lines[0] == "name       acc" and lines[1] == "---------  ------"
    assert lines[2] == "a          97.50%" and lines[3] == "long name    9.1%"


def test_plot_training_history_writes_a_png_headless():
    history = {"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7],
               "train_acc": [0.8, 0.9], "val_acc": [0.75, 0.85]}
    path = dl_utils.plot_training_history(history, "test_history.png")
    assert path.parent == dl_utils.FIGURES_DIR
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -------------------------------------------------------------------------- checkpoints


@pytest.fixture
def saved(tmp_path):
    model = lesson("03_train_mnist").SimpleNN(hidden_size=32)
    path = dl_utils.save_checkpoint(tmp_path / "m.pt", model, {"hidden_size": 32},
                                    metrics={"test_acc": 0.5}, hparams={"lr": 0.1})
    return path, model


def test_checkpoint_round_trip_rebuilds_the_model(saved):
    path, model = saved
    loaded, checkpoint = dl_utils.load_checkpoint(path)
    assert type(loaded).__name__ == "SimpleNN" and loaded.fc1.out_features == 32
    assert all(
        torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items()
    )
    assert checkpoint["metrics"] == {"test_acc": 0.5} and checkpoint["hparams"] == {
        "lr": 0.1
    }
    assert checkpoint["model_module"] == "03_train_mnist"
    assert checkpoint["torch_version"] == torch.__version__


def test_missing_and_truncated_checkpoints(saved, tmp_path):
    path, _ = saved
    with pytest.raises(dl_utils.CheckpointError, match="no checkpoint at"):
        dl_utils.load_checkpoint(tmp_path / "nothing.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(dl_utils.CheckpointError, match="not a readable checkpoint"):
        dl_utils.load_checkpoint(broken)
    plain = tmp_path / "plain.pt"
    torch.save({"fc1.weight": torch.zeros(2)}, plain)  # a bare state_dict
    with pytest.raises(
        dl_utils.CheckpointError, match="not a checkpoint of this course"
    ):
        dl_utils.load_checkpoint(plain)


@pytest.mark.parametrize("scaling", list(dl_utils.INPUT_SCALINGS))
def test_a_model_trained_on_other_pixels_is_fed_standardized_ones_by_a_module(
        scaling, tmp_path):
    """03 --inputs unit or raw: the loaded model, given what every lesson feeds it
    (standardized pixels), computes what the trained one computed on its own pixels."""
    torch.manual_seed(0)
    model = dl_utils.SimpleNN(hidden_size=16)
    path = dl_utils.save_checkpoint(tmp_path / "m.pt", model, {"hidden_size": 16},
                                    hparams={"inputs": scaling})
    loaded = dl_utils.load_checkpoint(path)[0]
    X = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(loaded(dl_utils.normalize(X)),
                              model(dl_utils.normalize(X, scaling)), atol=1e-4)
        if scaling != "standardized":  # without the hook: another answer
            assert not torch.allclose(
                model(dl_utils.normalize(X)), loaded(dl_utils.normalize(X))
            )
    # the conversion is a module's forward(), not a hook
    assert isinstance(loaded, dl_utils.InputsAsTrained) == (scaling != "standardized")
    assert not loaded._forward_pre_hooks
    assert type(dl_utils.unwrapped(loaded)) is dl_utils.SimpleNN
    # given a model, the weights go into the model inside
    built = dl_utils.build_model(torch.load(path, weights_only=True))
    dl_utils.load_checkpoint(path, built)
    with torch.no_grad():
        assert torch.equal(built(dl_utils.normalize(X)), loaded(dl_utils.normalize(X)))
    # still picklable (04 pickles what it loads)
    torch.save(loaded, tmp_path / "whole.pt")
    torch.save({**torch.load(path, weights_only=True), "hparams": {"inputs": "cmyk"}},
               tmp_path / "odd.pt")
    with pytest.raises(dl_utils.CheckpointError, match="inputs scaled 'cmyk'"):
        dl_utils.load_checkpoint(tmp_path / "odd.pt")


def test_checkpoint_of_another_architecture_is_refused(saved):
    path, _ = saved
    train03 = lesson("03_train_mnist")
    with pytest.raises(dl_utils.CheckpointError, match="do not fit SimpleNN"):
        dl_utils.load_checkpoint(path, model=train03.SimpleNN(hidden_size=128))
    with pytest.raises(
        dl_utils.CheckpointError, match="holds a SimpleNN, not a Sequential"
    ):
        dl_utils.load_checkpoint(path, model=nn.Sequential(nn.Linear(2, 2)))


def test_checkpoint_cannot_choose_arbitrary_code(saved, tmp_path):
    path, _ = saved
    checkpoint = torch.load(path, weights_only=True)
    checkpoint.update(model_module="os", model_class="system")
    evil = tmp_path / "evil.pt"
    torch.save(checkpoint, evil)
    with pytest.raises(dl_utils.CheckpointError, match="unknown model module 'os'"):
        dl_utils.load_checkpoint(evil)


def test_interrupted_save_keeps_the_previous_file(saved, monkeypatch):
    path, model = saved
    before = path.read_bytes()

    def crash(obj, f):
        Path(f).write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        dl_utils.save_checkpoint(path, model, {"hidden_size": 32})
    assert path.read_bytes() == before
    # no temporary file left
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_show_without_a_display_says_so_and_returns(capsys):
    dl_utils.show_figures(True)  # the tests run with the file-only 'agg' backend
    assert "--show: no display available" in capsys.readouterr().out


def test_device_setting_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DL_DEVICE", "mps")
    parser = dl_utils.make_parser("test")
    dl_utils.add_common_args(parser)
    assert parser.parse_args([]).device == "mps"
    assert parser.parse_args(["--device", "cpu"]).device == "cpu"


# --------------------------------------------------------------------------- statistics


def test_accuracy_standard_error_by_hand():
    # sqrt(p (1 - p) / n), computed by hand for the two accuracies the course quotes
    assert dl_utils.accuracy_se(0.978, 10_000) == pytest.approx(0.0014668, abs=1e-7)
    assert dl_utils.accuracy_se(0.994, 10_000) == pytest.approx(0.00077227, abs=1e-8)
    # one kind of interval everywhere (review 1.7): Wilson's, even at 97.73% on 10,000
    assert dl_utils.format_accuracy(0.9773, 10_000) == "97.73% (95%: 97.42-98.00)"
    assert dl_utils.accuracy_se(1.0, 10_000) == 0


@pytest.mark.parametrize("acc, n", [(1.0, 250), (0.99, 100), (0.0, 50), (0.5, 20)])
def test_wilson_interval_solves_its_defining_equation(acc, n):
    """Wilson's bounds are the p where the observed accuracy lies exactly 1.96 standard
    errors (computed at p itself) away: (acc - p)^2 = 1.96^2 p (1 - p) / n."""
    low, high = dl_utils.wilson_interval(acc, n)
    for p in (low, high):
        assert (acc - p) ** 2 == pytest.approx(1.96 ** 2 * p * (1 - p) / n, abs=1e-12)
    assert low <= acc <= high


def test_extreme_accuracies_get_an_interval_not_plus_minus_zero():
    assert dl_utils.format_accuracy(1.0, 250) == "100.00% (95%: 98.49-100.00)"
    low = dl_utils.wilson_interval(1.0, 250)[0]
    # near the rule of three (at most 3/n wrong, one-sided 95%); two-sided, a bit wider
    assert 1 - 4 / 250 < low < 1 - 3 / 250
    assert dl_utils.format_accuracy(0.18, 100) == "18.00% (95%: 11.70-26.67)"
    assert dl_utils.points(0.9779, 0.00004) == "97.79 ± 0.004"  # never "± 0.00"
    assert dl_utils.points(1.0, 0.0) == "100.00 (every seed equal)"


def test_mean_and_standard_error_by_hand():
    mean, se = dl_utils.mean_se([0.97, 0.98, 0.99])
    assert mean == pytest.approx(0.98) and se == pytest.approx(0.01 / math.sqrt(3))
    mean, se = dl_utils.mean_se([0.5])
    assert mean == 0.5 and math.isnan(se)  # one run: no spread to measure


T_TABLE = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    15: 2.131,
    20: 2.086,
    30: 2.042,
    40: 2.021,
    120: 1.980,
}


def test_paired_difference_and_interval_by_hand():
    d = dl_utils.paired_difference([0.5, 0.6, 0.7], [0.4, 0.55, 0.6])
    # differences 0.10, 0.05, 0.10: mean 0.083333, sd 0.028868, se 0.016667, t(2) =
    # 4.303
    assert d["mean"] == pytest.approx(0.0833333, abs=1e-6)
    assert d["se"] == pytest.approx(0.0166667, abs=1e-6)
    assert (d["low"], d["high"]) == (pytest.approx(0.011617, abs=1e-5),
                                     pytest.approx(0.155050, abs=1e-5))
    # a printed t-table, recomputed; df 30-120 was once tabled as 2.0 (below the truth)
    for df, value in T_TABLE.items():
        assert dl_utils.t_975(df) == pytest.approx(value, abs=6e-4)
    # 99% two-sided
    assert dl_utils.t_quantile(0.995, 3) == pytest.approx(5.841, abs=6e-4)


def test_input_scalings_and_label_noise():
    X = torch.tensor([[[0, 255]]], dtype=torch.uint8)
    assert dl_utils.normalize(X, "raw").flatten().tolist() == [0.0, 255.0]
    assert dl_utils.normalize(X, "unit").flatten().tolist() == [0.0, 1.0]
    assert dl_utils.normalize(X).flatten().tolist() == pytest.approx(
        [-0.4242, 2.8215], abs=1e-4
    )
    y = torch.arange(10).repeat(100)
    noisy = dl_utils.flip_labels(y, 0.2, torch.Generator().manual_seed(0))
    assert (noisy != y).sum() == 200 and torch.equal(y, torch.arange(10).repeat(100))


def test_the_course_models_table_reads_checkpoints_and_skips_bad_ones(tmp_path, capsys):
    """Lessons 11 and 12 print the other lessons' saved models from their checkpoints:
    weights only (a buffer such as 11's row order is not a parameter), a damaged file
    left out, the model just trained last and never read from a file."""
    model = dl_utils.SmallCNN()
    dl_utils.save_checkpoint(tmp_path / "cnn.pt", model, {},
                             metrics={"validation_acc": 0.99, "test_acc": 0.985,
                                      "train_seconds": 60.0})
    (tmp_path / "simple_nn.pt").write_bytes(b"not a checkpoint")
    dl_utils.compare_with_course(
        tmp_path,
        "ViT (12)",
        1234,
        {"validation_acc": 0.9, "test_acc": 0.8},
        5.0,
        "(note)",
    )
    out = capsys.readouterr().out
    lines = [
        line for line in out.splitlines() if line.startswith(("CNN", "ViT", "MLP"))
    ]
    assert lines[0].split() == ["CNN", "(06)", "55,338", "99.00", "98.50", "60"]
    assert lines[1].split() == ["ViT", "(12)", "1,234", "90.00", "80.00", "5"]
    assert len(lines) == 2 and out.rstrip().endswith("(note)")


def test_the_match_table_says_no_above_the_tolerance(capsys):
    assert dl_utils.match_table({"a": 1e-12, "b": 2e-11}, "compared")
    assert not dl_utils.match_table({"a": 1e-12, "b": 1e-3}, "compared")
    assert capsys.readouterr().out.count("NO") == 1


# ---------------------------------------------------- a beginner's edit meets a message
def test_a_misspelled_flag_gets_did_you_mean(capsys):
    parser = dl_utils.make_parser("doc")
    dl_utils.add_training_args(parser, batch_size=64, lr=1e-3, num_epochs=3)
    for typo, meant in (("--learning-rate", "--lr"), ("--batchsize", "--batch-size"),
                        ("--epohcs", "--epochs")):
        with pytest.raises(SystemExit) as stop:
            parser.parse_args([typo, "3"])
        assert stop.value.code == 2
        assert f"did you mean {meant}?" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parser.parse_args(["--zzz"])
    assert "did you mean" not in capsys.readouterr().err  # nothing close: no guess


def test_a_diverged_run_is_told_to_try_the_default_rate(tmp_path):
    parser = dl_utils.make_parser("doc")
    dl_utils.add_training_args(parser, batch_size=64, lr=1e-3, num_epochs=3)
    result = {"status": "diverged", "diverged": "loss nan at batch 3"}
    for lr, advice in (("10", "--lr 0.001"), ("0.0005", "--lr 5e-05")):
        args = parser.parse_args(["--lr", lr])
        args.checkpoint = tmp_path / "m.pt"
        with pytest.raises(dl_utils.FriendlyError) as err:
            dl_utils.kept_model_path(args, result)
        assert advice in str(err.value) and "guesses at random has loss 2.30" in str(
            err.value
        )


def test_print_shapes_names_the_layer_and_the_numbers_after_an_edit(capsys):
    edited = nn.Sequential(nn.Conv2d(1, 8, kernel_size=5, padding=1), nn.ReLU(),
                           nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 14 * 14, 10))
    with pytest.raises(dl_utils.FriendlyError) as err:
        dl_utils.print_shapes(edited, torch.zeros(2, 1, 28, 28))
    printed = capsys.readouterr().out
    assert "[2, 8, 13, 13]" in printed and "[2, 1352]" in printed  # the rows it reached
    assert "layer 4 (Linear) expects 1,568" in str(err.value) and "gets 1,352" in str(
        err.value
    )
    channels = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Conv2d(4, 8, 3))
    with pytest.raises(dl_utils.FriendlyError) as err:
        dl_utils.print_shapes(channels, torch.zeros(2, 1, 28, 28))
    assert "expects 4 input channels but gets 8" in str(err.value)
    dl_utils.print_shapes(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
                          # a model that works prints all rows
                          torch.zeros(2, 1, 28, 28))
    assert "[2, 10]" in capsys.readouterr().out


@pytest.mark.parametrize("train, test, says", [
    (0.99, 0.97, "overfitting (lesson 7)"), (0.981, 0.979, "no sign of overfitting"),
    (0.97, 0.99, "harder")])
def test_the_gap_sentence_follows_the_gap(train, test, says):
    assert says in dl_utils.gap_sentence(train, test)


def test_a_network_below_the_no_training_baseline_is_called_broken(
    capsys, monkeypatch
):
    g = torch.Generator().manual_seed(0)
    X = 0.1 * torch.randn(400, 1, 28, 28, generator=g)
    y = torch.arange(400) % 10
    X[:, 0, 0, :10] += 3 * nn.functional.one_hot(y, 10).float()  # easy for nearest mean
    train = dl_utils.TensorLoader(X[:300], y[:300], 50)
    val = dl_utils.TensorLoader(X[300:], y[300:], 50)
    baseline = dl_utils.nearest_mean_accuracy(dl_utils.ShiftedLoader(train, 0), val)
    assert baseline > 0.9
    dl_utils.warn_if_below_baseline(baseline + 0.01, train, val)
    assert capsys.readouterr().out == ""
    dl_utils.warn_if_below_baseline(0.48, train, val, train_loss=0.9)
    out = capsys.readouterr().out  # 300 training images: maybe too little training
    assert "is broken" not in out and "too little training" in out
    monkeypatch.setattr(dl_utils, "FEW_TRAINING_IMAGES", 100)
    dl_utils.warn_if_below_baseline(0.48, train, val, train_loss=0.9)
    out = capsys.readouterr().out
    assert "is broken" in out and "five steps" in out
    dl_utils.warn_if_below_baseline(0.16, train, val, train_loss=1e4)
    out = capsys.readouterr().out
    assert "is broken" in out and "rate is most\nlikely too large" in out


def test_a_run_with_other_settings_keeps_the_defaults_model_and_compares(
    tmp_path, capsys
):
    parser = dl_utils.make_parser("doc")
    dl_utils.add_training_args(parser, batch_size=64, lr=1e-3, num_epochs=3)
    path = tmp_path / "m.pt"
    result = {"best_epoch": 1, "train_seconds": 1.0, "history": {}}

    def save(argv, val_acc, weight):
        args = parser.parse_args(argv)
        model = nn.Linear(2, 2)
        nn.init.constant_(model.weight, weight)
        dl_utils.save_kept_model(
            path, args, model, {}, result, {"validation_acc": val_acc}, "cpu"
        )
        return capsys.readouterr().out

    assert "last time" not in save([], 0.9772, 1.0)  # the first run: nothing to compare
    out = save(["--lr", "0.01"], 0.9523, 2.0)
    assert "with the defaults last time: 97.72%; this run (--lr 0.01): 95.23%" in out
    kept = dl_utils.defaults_copy_path(path)
    assert dl_utils.read_checkpoint(kept)["model_state_dict"]["weight"][0, 0] == 1.0
    assert dl_utils.read_checkpoint(path)["model_state_dict"]["weight"][0, 0] == 2.0
    out = save(["--lr", "0.1"], 0.90, 3.0)  # the kept copy still answers, unchanged
    assert "last time: 97.72%; this run (--lr 0.1): 90.00%" in out
    assert dl_utils.read_checkpoint(kept)["model_state_dict"]["weight"][0, 0] == 1.0
    out = save([], 0.9772, 1.0)
    assert "last time: 97.72%; this run (the defaults): 97.72%" in out


def test_every_dl_utils_name_the_course_uses_is_named_in_dl_utils():
    """A learner who greps dl_utils.py for dl_utils.X finds X: no star imports."""
    import ast
    import re
    root = Path(__file__).resolve().parent.parent
    source = (root / "dl_utils.py").read_text()
    assert "import *" not in source
    named = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            named.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                named.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            named.update((a.asname or a.name).split(".")[0] for a in node.names)
    named.add("serving")  # imported on first use by __getattr__
    used = {}
    for path in root.glob("**/*.py"):
        if (
            ".venv" in path.parts
            or path.name == "dl_utils.py"
            or "_course" in path.parts
        ):
            continue
        for name in re.findall(r"\bdl_utils\.([A-Za-z_]\w*)", path.read_text()):
            used.setdefault(name, path.name)
    used.pop("py", None)  # "dl_utils.py" in prose
    used.pop("X", None)  # "dl_utils.X" in prose
    missing = {name: file for name, file in used.items() if name not in named}
    assert not missing, f"used but not named in dl_utils.py: {missing}"


def test_seeds_with_the_same_difference_get_no_zero_width_interval():
    """Review 2026-12-07, 1.21: '+1.22 [+1.22, +1.22]' read as a bug; it is three seeds
    whose differences agree to the last 0.02-point step."""
    same = dl_utils.paired_difference([0.9900, 0.9800, 0.9700],
                                      [0.9778, 0.9678, 0.9578])
    said = "+1.22 (every seed the same difference: no interval)"
    assert dl_utils.interval(same) == said
    apart = dl_utils.paired_difference([0.99, 0.98, 0.97], [0.97, 0.97, 0.96])
    assert dl_utils.interval(apart).startswith("+1.33 [")
