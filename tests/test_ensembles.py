"""Lesson 13: an ensemble's output is the log of its members' averaged probabilities
(checked against a computation of its own), the three combinations and the choice of
members behave as the lesson says, and the saved ensemble is one weights-only checkpoint
that lessons 4 and 9 use; a missing or unsuitable member is one line."""

import re

import torch
from conftest import benchmark_reads, lesson, lessons_4_and_9_use, run_script

import dl_utils


def m13():
    return lesson("13_ensembles")


def recipe(model, kwargs):
    return {"model_module": "dl_utils", "model_class": type(model).__name__,
            "model_kwargs": kwargs}


def test_the_ensemble_outputs_the_log_of_its_members_averaged_probabilities():
    torch.manual_seed(0)
    recipes = [recipe(dl_utils.SimpleNN(), {"hidden_size": 16}),
               recipe(dl_utils.SmallCNN(), {"channels": [4, 8], "hidden_size": 0})]
    ensemble = m13().Ensemble(recipes).double().eval()
    X = torch.randn(7, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        for member in ensemble.members:  # confident members: logits of tens
            for p in member.parameters():
                p.mul_(8)
        logits = [member(X) for member in ensemble.members]
        out = ensemble(X)
    # independently: exp of log-softmax, averaged by hand
    expected = sum(torch.exp(z - z.logsumexp(dim=1, keepdim=True)) for z in logits) / 2
    assert torch.allclose(out.softmax(dim=1), expected, atol=1e-12)
    assert torch.allclose(out.exp().sum(dim=1), torch.ones(7, dtype=torch.float64))
    assert torch.allclose(m13().combine(torch.stack(logits), "probabilities"), out, atol=1e-9)
    assert not torch.allclose(m13().combine(torch.stack(logits), "logits").softmax(dim=1),
                              expected, atol=1e-3)  # averaged logits: another ensemble


def test_a_member_trained_on_raw_pixels_sees_raw_pixels_in_the_ensemble(tmp_path):
    """13 records each member's input scaling (03 --inputs) in its recipe; the ensemble,
    fed standardized inputs, gives that member the bytes it was trained on."""
    torch.manual_seed(0)
    raw = dl_utils.SimpleNN(hidden_size=8)
    path = dl_utils.save_checkpoint(tmp_path / "raw.pt", raw, {"hidden_size": 8},
                                    hparams={"inputs": "raw"})
    members = m13().load_members([path], "cpu")
    assert members[0]["recipe"]["inputs"] == "raw"
    ensemble = m13().Ensemble([members[0]["recipe"]]).eval()
    ensemble.load_state_dict({f"members.0.{k}": v for k, v in raw.state_dict().items()})
    X = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        expected = raw(dl_utils.normalize(X, "raw")).log_softmax(dim=1)
        assert torch.allclose(ensemble(dl_utils.normalize(X)), expected, atol=1e-5)
        assert torch.allclose(members[0]["model"](dl_utils.normalize(X)).log_softmax(dim=1),
                              expected, atol=1e-5)


def test_a_vote_counts_members_and_a_tie_goes_to_the_probabilities():
    # three members, one digit: two say 3 (barely), one says 5 (very sure)
    logits = torch.full((3, 1, 10), -10.0)
    logits[0, 0, 3], logits[0, 0, 5] = 1.0, 0.9
    logits[1, 0, 3], logits[1, 0, 5] = 1.0, 0.9
    logits[2, 0, 5] = 20.0
    assert m13().combine(logits, "vote").argmax().item() == 3  # two votes beat one
    assert m13().combine(logits, "probabilities").argmax().item() == 5  # sure beats many
    tie = logits[1:]  # one vote each: the averaged probabilities decide
    assert m13().combine(tie, "vote").argmax().item() == 5


def test_the_choice_maximizes_the_criterion_and_prefers_fewer_members_on_a_tie():
    y = torch.tensor([0, 1, 2, 3])
    right = torch.eye(10)[y] * 10  # logits that read every digit right
    wrong = torch.eye(10)[(y + 1) % 10] * 10
    members = [{"logits": {name: z for name in ("validation", "re-drawn", "8x8")}}
               for z in (right, right, wrong)]
    sets = {name: (None, y) for name in ("validation", "re-drawn", "8x8")}
    found = m13().every_subset(members, sets, "all")
    assert len(found) == 7 and found[0][2] == (0,) and found[0][0] == 1.0
    assert [f[2] for f in found[:3]] == [(0,), (1,), (0, 1)]  # ties: fewer members first
    assert m13().criterion({"validation": 1.0, "re-drawn": 0.4, "8x8": 0.6}, "writers") == 0.5


def test_13_saves_an_ensemble_that_lessons_4_and_9_use(tmp_path, served_models_dir):
    """End to end: a trained MLP (lesson 3's quick run) and a fresh CNN as members."""
    cnn = dl_utils.save_checkpoint(tmp_path / "cnn.pt", dl_utils.SmallCNN((4, 8)),
                                   {"channels": [4, 8]})
    out = tmp_path / "served" / "ensemble.pt"
    result = run_script("13_ensembles.py", "--members", served_models_dir / "mlp.pt", cnn,
                        "--writer-check", "50", "--checkpoint", out, inline=True)
    assert result.returncode == 0, result.stderr
    assert "Logits per member and set, e.g. validation [5000, 10]" in result.stdout
    # The reloaded ensemble computes what the saved one did (to float rounding). The prose
    # is wrapped to the terminal, so a line may break between any two words.
    said = r"differ\s+from\s+the\s+ensemble's\s+by\s+at\s+most\s+(\S+?)\.?\s"
    gap = re.search(said, result.stdout)
    assert gap and float(gap.group(1)) <= 1e-5, result.stdout[-600:]
    benchmark_reads("13_ensembles.py", result.stdout)
    saved = torch.load(out, weights_only=True)  # plain containers and tensors only
    members = len(saved["model_kwargs"]["members"])
    assert saved["model_class"] == "Ensemble" and members in (1, 2)
    assert members == 1 or "members.1.block1.0.weight" in saved["model_state_dict"]
    lessons_4_and_9_use(out, "Ensemble(members=", "Ensemble")


def test_13_refuses_missing_repeated_and_ensemble_members_in_one_line(tmp_path):
    ensemble = m13().Ensemble([recipe(dl_utils.SimpleNN(), {"hidden_size": 8})])
    path = dl_utils.save_checkpoint(tmp_path / "e.pt", ensemble,
                                    {"members": [recipe(dl_utils.SimpleNN(), {"hidden_size": 8})]})
    for members, said in (([tmp_path / "missing.pt"], "no checkpoint at"),
                          ([path, path], "different checkpoints"),
                          ([path], "is an ensemble already")):
        result = run_script("13_ensembles.py", "--members", *members, inline=True)
        assert result.returncode != 0 and said in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


def test_the_test_set_pairing_counts_what_the_ensemble_fixed_and_broke(capsys):
    torch.manual_seed(0)
    members = [{"name": f"m{i}.pt", "model": dl_utils.SimpleNN(hidden_size=8).eval()}
               for i in range(2)]
    found = m13().test_once(members, (0, 1), 0, "cpu")
    said = capsys.readouterr().out
    fixed, broken = (int(w) for w in re.search(
        r"reads (\d+) digits right that m0.pt misreads, and misreads (\d+)", " ".join(
            said.split())).groups())
    assert abs(found["test_acc"] - found["best_member_test_acc"]
               - (fixed - broken) / 10_000) < 1e-9  # the counts are the difference
    assert "the chosen ensemble" in said and benchmark_reads("13_ensembles.py", said)
    alone = m13().test_once(members, (0,), 0, "cpu")
    said = capsys.readouterr().out
    assert "No ensemble beat" in said and alone["test_acc"] == found["best_member_test_acc"]
    assert benchmark_reads("13_ensembles.py", said) == f"m0.pt alone {100 * alone['test_acc']:.2f}%"
