"""Other people's handwriting: lesson 6b's augmentations, writer check and comparison
with lesson 6, and benchmarks/writer_shift.py's test sets of other writers."""

import json

import numpy as np
import pytest
import torch
from conftest import OUTPUT_DIR, benchmark_reads, lesson, run_script

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
    # by mass
    assert (rows - 13.5).abs().max() < 1.0 and (cols - 13.5).abs().max() < 1.0
    for image in X[::50]:  # the digit's box scaled into 20x20, as MNIST's were
        rows_, cols_ = image.nonzero(as_tuple=True)
        assert max(rows_.max() - rows_.min(), cols_.max() - cols_.min()) + 1 <= 20


def test_the_table_scores_each_set_and_says_only_what_it_measured(tmp_path):
    torch.manual_seed(0)
    model = dl_utils.SimpleNN().eval()
    dl_utils.save_checkpoint(tmp_path / "simple_nn.pt", model, {})
    # not a model
    dl_utils.save_checkpoint(tmp_path / "simple_nn_training.pt", model, {})
    _, _, X, y = dl_utils.load_mnist_tensors()
    sets = {
        "MNIST test": (X[:200], y[:200]),
        "first 5,000": (X[:100], y[:100]),
        "last 5,000": (X[5000:5100], y[5000:5100]),
        "MNIST at 8x8": (X[:50], y[:50]),
        "scikit-learn digits": (X[:50], y[:50]),
    }
    models = ws().course_models(tmp_path)
    assert [m[0] for m in models] == ["simple_nn.pt"]
    headers, rows = ws().table(models, sets)
    with torch.inference_mode():
        expected = (
            (model(dl_utils.normalize(X[:200])).argmax(1) == y[:200]).float().mean()
        )
    assert rows[0][headers.index("MNIST test")].startswith(
        f"{100 * expected.item():.2f} ("
    )
    text = ws().markdown(headers, rows, sets)
    assert "| simple_nn.pt | SimpleNN |" in text and "Test sets only" in text
    gap = rows[0][headers.index("last minus first [95%]")]
    low = float(gap.split("[")[1].split(",")[0])
    assert ("for 1 of 1 checkpoints here the first half was the harder" in text) == (
        low > 0
    )


def test_the_writer_table_goes_into_docs_results(tmp_path):
    page = tmp_path / "results.md"
    start, end = ws().MARKERS
    page.write_text(f"top\n{start}\nold\n{end}\nbottom\n")
    ws().update_docs("| new |", page)
    assert page.read_text() == f"top\n{start}\n| new |\n{end}\nbottom\n"
    page.write_text("no markers")
    with pytest.raises(dl_utils.FriendlyError, match="no <!-- writers:start -->"):
        ws().update_docs("x", page)


# ---- 06b_other_writers.py ------------------------------------------------------------
def m06b():
    return lesson("06b_other_writers")


def pixels(n):
    """n validation digits in pixel space (0 black, 1 ink), as the augmentations see
    them."""
    _, val, _ = dl_utils.load_mnist_data()
    return val.X[:n] * dl_utils.MNIST_STD + dl_utils.MNIST_MEAN


def test_06b_augmentations_at_zero_strength_change_nothing():
    """Each augmentation reduces to the identity when its strength is 0: the warps
    sample where they should, the morphology and the blur do nothing extra."""
    m = m06b()
    x = pixels(32)
    g = torch.Generator().manual_seed(0)
    for name, out in (("affine", m.affine(x, g, degrees=0, scale=0, shear=0)),
                      ("elastic", m.elastic(x, g, alpha=0)),
                      ("stroke", m.stroke(x, g, amount=0)),
                      ("blur", m.blur(x, g, sizes=[28]))):
        assert (out - x).abs().max() < 1e-5, name


def test_06b_augmentations_are_seeded_plausible_and_per_image():
    m = m06b()
    x = pixels(64)
    assert list(m.AUGMENTATIONS) == ["affine", "elastic", "stroke", "blur"]
    for name, augment in m.AUGMENTATIONS.items():
        a = augment(x, torch.Generator().manual_seed(1))
        b = augment(x, torch.Generator().manual_seed(1))
        c = augment(x, torch.Generator().manual_seed(2))
        assert torch.equal(a, b) and not torch.equal(a, c), name  # seeded: reproducible
        assert a.shape == x.shape and a.min() > -0.05 and a.max() < 1.05, name
        assert abs(a.mean() / x.mean() - 1) < 0.2, name  # the ink stays, roughly
        changed = (a - x).flatten(1).abs().amax(1) > 1e-3
        assert 0 < changed.sum() <= len(x), name
    pick = m.stroke(x, torch.Generator().manual_seed(3), amount=1)  # all the way
    dilated = torch.nn.functional.max_pool2d(x, 3, 1, 1)
    eroded = -torch.nn.functional.max_pool2d(-x, 3, 1, 1)
    bold = torch.isclose(pick, dilated).flatten(1).all(1)
    thin = torch.isclose(pick, eroded).flatten(1).all(1)
    assert 10 < bold.sum() < 35 and 10 < thin.sum() < 35  # about a third each


def test_06b_elastic_moves_a_pixel_about_one_pixel_at_alpha_24():
    """alpha scales the smoothed field, it is not a distance (the review's 1.9): at 24 a
    typical pixel moves about 1 pixel, and the movement grows in proportion to alpha."""
    field = m06b().elastic_field(500, torch.Generator().manual_seed(0))
    assert field.shape == (500, 28, 28, 2)
    moved = field.norm(dim=-1)
    assert 0.7 < moved.median() < 1.5 and moved.max() < 8
    double = m06b().elastic_field(500, torch.Generator().manual_seed(0), alpha=48)
    assert torch.allclose(double, 2 * field)


def test_06b_augment_none_is_lesson_6s_shifted_loader():
    """--augment none trains on what lesson 6's ShiftedLoader gives, batch for batch."""
    m = m06b()
    X, y = torch.randn(40, 1, 28, 28), torch.arange(40)
    batches = []
    for wrap in (lambda ld: dl_utils.ShiftedLoader(ld, 2),
                 lambda ld: m.AugmentedLoader(ld, 2, m.parse_args(["--augment",
                                                                  "none"]).augment)):
        loader = dl_utils.TensorLoader(X, y, 8, shuffle=True,
                                       generator=torch.Generator().manual_seed(0))
        batches.append([b for b, _ in wrap(loader)])
    assert len(batches[0]) == 5 and all(torch.equal(a, b) for a, b in zip(*batches))


@pytest.mark.parametrize("flags, augment", [([], ["blur"]), (["--augment", "none"], []),
                                            (["--augment", "affine", "blur"],
                                             ["affine", "blur"])])
def test_06b_augment_is_a_choice_of_names(flags, augment):
    assert m06b().parse_args(flags).augment == augment


@pytest.mark.parametrize("flags, message", [
    (["--augment", "none", "blur"], "give it alone"),
    (["--augment", "blurr"], "invalid choice"),
    (["--augment"], "expected at least one")])
def test_06b_refuses_a_wrong_augment_in_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as stop:
        m06b().parse_args(flags)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and "Traceback" not in err


def test_06b_compares_with_lesson_6_by_mcnemars_test(capsys):
    """The same digits read by both models: the counts of changed predictions and
    McNemar's exact p (dl_utils.coin_flip_p), with the verdict they support."""
    y = torch.arange(100) % 10
    i = torch.arange(100)

    def reads(ok):  # probabilities that read digit k right where ok[k]
        right = torch.nn.functional.one_hot(y, 10).float()
        wrong = torch.nn.functional.one_hot((y + 1) % 10, 10).float()
        return torch.where(ok[:, None], right, wrong)
    before = reads(i >= 30)  # lesson 6 misreads the first 30
    after = {"as stored": reads((i < 25) | (i >= 30)),  # fixes 25, breaks none
             "cut to 8x8": reads((i < 2) | (i >= 32))}  # fixes 2, breaks 2
    sets = {"as stored": (None, y), "cut to 8x8": (None, y)}
    rows = m06b().compare_with_lesson6({name: before for name in sets}, after, sets,
                                       ["blur"])
    p = f"{dl_utils.coin_flip_p(25, 0):.2g}"
    assert rows[0][3:] == [25, 0, p, "this one better"] and float(p) < 1e-6
    assert rows[1][3:5] == [2, 2] and rows[1][-1] == "no clear difference"
    out = capsys.readouterr().out.replace("\n", " ")
    assert "--augment blur changed nothing" in out


def test_06b_without_lesson_6s_model_says_how_to_make_it(tmp_path, capsys):
    m = m06b()
    assert m.load_lesson6(tmp_path / "cnn.pt", "cpu") is None
    assert "run python 06_convolutional_network.py" in capsys.readouterr().out
    saved = dl_utils.save_checkpoint(tmp_path / "cnn.pt", dl_utils.SmallCNN((8, 16), 0),
                                     {"channels": [8, 16], "hidden_size": 0},
                                     changed_settings={})
    model = m.load_lesson6(saved, "cpu")
    assert dl_utils.count_parameters(model) == dl_utils.count_parameters(
        dl_utils.SmallCNN((8, 16), 0))
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert m.load_lesson6(tmp_path / "bad.pt", "cpu") is None
    assert "Cannot compare" in capsys.readouterr().out


QUICK = ["--epochs", "1", "--subset", "300", "--writer-check", "40"]


def test_06b_runs_every_augmentation_and_compares_with_lesson_6(tmp_path, monkeypatch):
    m = m06b()
    lesson6 = tmp_path / "cnn.pt"
    dl_utils.save_checkpoint(lesson6, dl_utils.SmallCNN(), {"channels": [16, 32],
                                                           "hidden_size": 32})
    monkeypatch.setattr(m, "LESSON6_CHECKPOINT", lesson6)
    path, results = tmp_path / "cnn_writers.pt", tmp_path / "r.json"
    result = run_script("06b_other_writers.py", *QUICK, "--augment", "affine",
                        "elastic", "stroke", "blur", "--checkpoint", path, "--results",
                        results, inline=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "re-drawn like the pad" in out and "cut to 8x8" in out
    assert "Writer score" in out
    assert "wrong -> right" in out and "McNemar" in out
    assert out.index("Lesson 6's CNN and this one") < out.index("\ntest ")  # test: last
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["model_class"] == "SmallCNN"
    assert checkpoint["model_module"] == "dl_utils"  # 06b defines no class of its own
    assert checkpoint["hparams"]["augment"] == ["affine", "elastic", "stroke", "blur"]
    record = json.loads(results.read_text())
    for key in ("val_drawn_acc", "val_8x8_acc", "best_val_acc", "test_acc"):
        assert 0 <= record[key] <= 1, key  # what `make tables` reads
    for name in ("06b_augmentations.png", "06b_training_history.png"):
        assert (OUTPUT_DIR / "figures" / name).exists()
    benchmark_reads("06b_other_writers.py", out)


def test_06b_with_augment_none_trains_lesson_6s_model_bit_for_bit(tmp_path):
    """06b's recipe is lesson 6's: with --augment none, the same weights as 06's run."""
    runs = {}
    for script, flags in (("06_convolutional_network.py", []),
                          ("06b_other_writers.py", ["--augment", "none",
                                                    "--writer-check", "20"])):
        path = tmp_path / f"{script}.pt"
        result = run_script(script, "--epochs", "1", "--subset", "300", *flags,
                            "--checkpoint", path, inline=True)
        assert result.returncode == 0, result.stderr
        runs[script] = torch.load(path, weights_only=True)["model_state_dict"]
    ours, theirs = runs.values()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
