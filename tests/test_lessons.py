"""Lessons 01, 02 and 05: their numbers, their outputs, their command lines."""

import json

import pytest
import torch
from conftest import OUTPUT_DIR, benchmark_reads, lesson, run_script

# ---------------------------------------------------------------------------- 01


@pytest.mark.parametrize("seed", range(5))
def test_01_hand_gradients_equal_autograd(seed):
    m = lesson("01_tensors_and_autograd")
    X, y, p = m.make_problem(seed)
    loss, cache = m.forward(X, y, p)
    # the loss itself, against PyTorch's own cross-entropy
    logits = torch.relu(X @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]
    assert loss.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y).item(), abs=1e-12
    )
    hand = m.backward_by_hand(y, p, cache)
    auto = m.backward_by_autograd(X, y, p)
    for name in p:
        assert hand[name].shape == p[name].shape
        assert torch.allclose(hand[name], auto[name], atol=1e-12, rtol=0), name
    for index in [(0, 0), (2, 4), (1, 3)]:
        fd = m.finite_difference(X, y, p, "W1", index)
        assert fd == pytest.approx(hand["W1"][index].item(), abs=1e-8)


def test_01_gradient_step_lowers_the_loss_and_matches_sgd():
    m = lesson("01_tensors_and_autograd")
    X, y, p = m.make_problem(0)
    loss, cache = m.forward(X, y, p)
    stepped = m.sgd_step_by_hand(p, m.backward_by_hand(y, p, cache), lr=0.5)
    assert m.forward(X, y, stepped)[0] < loss
    with_optim = m.sgd_step_with_optimizer(X, y, p, lr=0.5)
    assert all(torch.allclose(stepped[k], with_optim[k], atol=1e-14) for k in p)
    once, twice = m.zero_grad_demo(X, y, p)
    assert torch.allclose(twice, 2 * once)


def test_01_runs_and_every_gradient_matches():
    result = run_script("01_tensors_and_autograd.py", inline=True)
    assert result.returncode == 0, result.stderr
    benchmark_reads("01_tensors_and_autograd.py", result.stdout)
    table = result.stdout.split("match (< 1e-6)")[1].split("d loss")[0]
    assert table.count("yes") == 4 and "NO" not in table


# ---------------------------------------------------------------------------- 02


def test_02_pixel_stats_by_counting_equal_the_direct_computation():
    X = torch.randint(0, 256, (50, 28, 28), generator=torch.Generator().manual_seed(0),
                      dtype=torch.uint8)
    X[:10] = 0  # MNIST-like: many background pixels
    pixels = X.double() / 255
    mean, std = lesson("02_load_mnist").pixel_stats(X)
    assert mean == pytest.approx(pixels.mean().item(), abs=1e-12)
    assert std == pytest.approx(pixels.std().item(), abs=1e-12)


def test_02_runs_headless_and_computes_the_normalization_constants():
    result = run_script("02_load_mnist.py", "--num-suspects", "2", inline=True)
    assert result.returncode == 0, result.stderr
    # what MNIST is
    assert "hello world" in result.stdout and "250 writers" in result.stdout
    benchmark_reads("02_load_mnist.py", result.stdout)
    assert "Computed: mean 0.1307, std 0.3081" in result.stdout
    assert "-0.4242..2.8215" in result.stdout
    for name in (
        "samples",
        "class_balance",
        "mean_digits",
        "pixel_histogram",
        "suspects",
    ):
        png = OUTPUT_DIR / "figures" / f"02_{name}.png"
        assert png.read_bytes()[:4] == b"\x89PNG", name


# ---------------------------------------------------------------------------- 05


def test_05_architectures_have_the_documented_sizes():
    m = lesson("05_experiment_architectures")
    sizes = {name: sum(p.numel() for p in cls().parameters())
             for name, cls in m.ARCHITECTURES.items()}
    assert sizes == {"TwoLayerNN": 101_770, "ThreeLayerNN": 235_146, "TanhNN": 101_770}
    # (test_sync: TwoLayerNN = 03's)
    assert isinstance(m.TanhNN().activation, torch.nn.Tanh)


def test_05_quick_run_writes_results_for_all_three(tmp_path):
    path = tmp_path / "architectures.json"
    result = run_script(
        "05_experiment_architectures.py",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--subset",
        "2000",
        "--results",
        path,
        inline=True,
    )
    assert result.returncode == 0, result.stderr
    benchmark_reads("05_experiment_architectures.py", result.stdout)
    record = json.loads(path.read_text())
    assert {r["arch"]: r["params"] for r in record["runs"]} == {
        "TwoLayerNN": 101_770, "ThreeLayerNN": 235_146, "TanhNN": 101_770}
    assert record["settings"]["epochs"] == 1 and record["settings"]["subset"] == 2000
    assert record["hardware"]["cpu_cores"] >= 1
    for entry in record["summary"].values():
        assert 0.5 < entry["test_acc"] <= 1 and entry["sec_per_epoch"] > 0
    assert "one seed only" in result.stdout  # no claims about noise from a single seed
    for name in ("05_validation_curves.png", "05_accuracy_vs_parameters.png"):
        assert (OUTPUT_DIR / "figures" / name).exists()


def test_05_rejects_unknown_architectures(capsys):
    with pytest.raises(SystemExit):
        lesson("05_experiment_architectures").parse_args(["--archs", "ResNet"])
    assert "invalid choice: 'ResNet'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name",
    [
        "01_tensors_and_autograd",
        "02_load_mnist",
        "04_load_model",
        "05_experiment_architectures",
        "06_convolutional_network",
        "06b_other_writers",
        "07_regularization",
        "07c_how_sure",
        "08_your_own_images",
        "08b_fine_tuning",
        "09_serve_digits",
        "10_distributed_training",
        "12b_inductive_bias",
        "13_ensembles",
    ],
)
def test_help_lists_defaults(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        lesson(name).parse_args(["-h"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "(default:" in out and "--device" in out


def test_01_threshold_also_holds_in_float32(monkeypatch):
    # The comment on DTYPE says the 1e-6 check still holds in float32: measure it.
    m = lesson("01_tensors_and_autograd")
    monkeypatch.setattr(m, "DTYPE", torch.float32)
    for seed in range(10):
        X, y, p = m.make_problem(seed)
        assert X.dtype == torch.float32
        hand = m.backward_by_hand(y, p, m.forward(X, y, p)[1])
        auto = m.backward_by_autograd(X, y, p)
        assert max((hand[k] - auto[k]).abs().max().item() for k in p) < 1e-6
