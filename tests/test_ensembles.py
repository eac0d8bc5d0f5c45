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
    averaged = m13().combine(torch.stack(logits), "probabilities")
    assert torch.allclose(averaged, out, atol=1e-9)
    by_logits = m13().combine(torch.stack(logits), "logits").softmax(dim=1)
    assert not torch.allclose(by_logits, expected, atol=1e-3)  # another ensemble


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
    # the member sits inside InputsAsTrained, whose forward() converts the pixels: its
    # weights are under "members.0.model."
    assert isinstance(ensemble.members[0], dl_utils.InputsAsTrained)
    ensemble.load_state_dict({f"members.0.model.{k}": v
                              for k, v in raw.state_dict().items()})
    X = torch.randint(0, 256, (4, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        expected = raw(dl_utils.normalize(X, "raw")).log_softmax(dim=1)
        assert torch.allclose(ensemble(dl_utils.normalize(X)), expected, atol=1e-5)
        alone = members[0]["model"](dl_utils.normalize(X)).log_softmax(dim=1)
        assert torch.allclose(alone, expected, atol=1e-5)


def test_a_vote_counts_members_and_a_tie_goes_to_the_probabilities():
    # three members, one digit: two say 3 (barely), one says 5 (very sure)
    logits = torch.full((3, 1, 10), -10.0)
    logits[0, 0, 3], logits[0, 0, 5] = 1.0, 0.9
    logits[1, 0, 3], logits[1, 0, 5] = 1.0, 0.9
    logits[2, 0, 5] = 20.0
    assert m13().combine(logits, "vote").argmax().item() == 3  # two votes beat one
    assert m13().combine(logits, "probabilities").argmax().item() == 5  # sure wins
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
    assert [f[2] for f in found[:3]] == [(0,), (1,), (0, 1)]  # ties: fewer first
    scores = {"validation": 1.0, "re-drawn": 0.4, "8x8": 0.6}
    assert m13().criterion(scores, "writers") == 0.5


def test_13_saves_an_ensemble_that_lessons_4_and_9_use(tmp_path, served_models_dir):
    """End to end: a trained MLP (lesson 3's quick run) and a fresh CNN as members."""
    cnn = dl_utils.save_checkpoint(tmp_path / "cnn.pt", dl_utils.SmallCNN((4, 8)),
                                   {"channels": [4, 8]})
    out = tmp_path / "served" / "ensemble.pt"
    result = run_script("13_ensembles.py", "--members", served_models_dir / "mlp.pt",
                        cnn, "--writer-check", "50", "--checkpoint", out, inline=True)
    assert result.returncode == 0, result.stderr
    assert "Logits per member and set, e.g. validation [5000, 10]" in result.stdout
    # The reloaded ensemble computes what the saved one did (to float rounding). The
    # prose is wrapped to the terminal, so a line may break between any two words.
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
    recipes = [recipe(dl_utils.SimpleNN(), {"hidden_size": 8})]
    path = dl_utils.save_checkpoint(tmp_path / "e.pt", ensemble, {"members": recipes})
    for members, said in (([tmp_path / "missing.pt"], "no checkpoint at"),
                          ([path, path], "different checkpoints"),
                          ([path], "is an ensemble already")):
        result = run_script("13_ensembles.py", "--members", *members, inline=True)
        assert result.returncode != 0 and said in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0
        assert "Traceback" not in result.stderr


def test_the_test_set_pairing_counts_what_the_ensemble_fixed_and_broke(capsys):
    torch.manual_seed(0)
    members = []
    for i in range(2):
        model = dl_utils.SimpleNN(hidden_size=8).eval()
        members.append({"name": f"m{i}.pt", "model": model})
    found = m13().test_once(members, (0, 1), 0, "cpu")
    printed = capsys.readouterr().out
    said = " ".join(printed.split())  # (prose wraps where the numbers put it)
    counted = re.search(
        r"reads (\d+) digits right that m0.pt misreads, and misreads (\d+)", said)
    fixed, broken = int(counted[1]), int(counted[2])
    assert (fixed, broken) == (found["fixed"], found["broken"])
    assert abs(found["test_acc"] - found["best_member_test_acc"]
               - (fixed - broken) / 10_000) < 1e-9  # the counts are the difference
    assert f"p = {dl_utils.coin_flip_p(fixed, broken):.2g}" in said  # McNemar's, 08b's
    assert "the chosen ensemble" in said and benchmark_reads("13_ensembles.py", printed)
    alone = m13().test_once(members, (0,), 0, "cpu")
    said = capsys.readouterr().out
    assert "No ensemble beat" in said
    assert alone["test_acc"] == found["best_member_test_acc"]
    expected = f"m0.pt alone {100 * alone['test_acc']:.2f}%"
    assert benchmark_reads("13_ensembles.py", said) == expected
    assert max(len(line) for line in said.splitlines()) <= 88


def two_members_misread_a_5():
    """Review 1.1's case: member A reads 3 (0.45) over 5 (0.44), member B 7 (0.45)
    over 5 (0.44): both misread the 5; their average gives 5 0.44, 3 and 7 0.225 each.
    Digit 1 (a 1) both read as 2, sure of it; digit 2 (a 4) only B misreads."""
    probs = torch.full((2, 3, 10), 0.01)
    probs[0, 0, 3], probs[0, 0, 5], probs[0, 0, 1] = 0.45, 0.44, 0.04
    probs[1, 0, 7], probs[1, 0, 5], probs[1, 0, 1] = 0.45, 0.44, 0.04
    probs[:, 1, 2], probs[:, 1, 1] = 0.82, 0.10
    probs[0, 2, 4], probs[0, 2, 9] = 0.82, 0.10
    probs[1, 2, 9], probs[1, 2, 4] = 0.82, 0.10
    assert torch.allclose(probs.sum(dim=-1), torch.ones(2, 3))
    return probs.log(), torch.tensor([5, 1, 4])


def test_averaging_can_fix_a_digit_every_member_misreads_and_a_vote_cannot():
    logits, y = two_members_misread_a_5()
    every, rescued = m13().misread_by_every_member(logits, y)
    assert every.tolist() == [True, True, False]
    assert rescued.tolist() == [True, False, False]  # the 5, every member's runner-up
    assert m13().combine(logits, "vote")[0].argmax().item() != 5  # a vote cannot
    assert m13().combine(logits, "probabilities")[0].argmax().item() == 5


def test_the_count_printed_beside_the_bound_is_the_rescued_digits(capsys):
    logits, y = two_members_misread_a_5()
    members = []
    for i in range(2):
        members.append({"name": f"m{i}.pt", "logits": {"validation": logits[i]}})
    assert m13().shared_errors(members, y) == (2, 1)
    said = " ".join(capsys.readouterr().out.split())
    assert "A vote can fix none of those 2" in said
    assert "(the \"oracle\", right whenever one member is) is 33.33%" in said
    assert "here 1 of the 2" in said


def test_a_choice_that_does_not_beat_lessons_6_cnn_says_so_in_one_line(capsys):
    y = torch.tensor([0, 1, 2, 3])
    right = torch.eye(10)[y] * 10
    half = right.clone()
    half[:2] = torch.eye(10)[(y[:2] + 1) % 10] * 10  # misreads the first two
    members = [{"name": "cnn.pt"}, {"name": "vit.pt"}, {"name": "gru.pt"}]
    logits = {0: right, 1: half, 2: half}
    m13().against_the_cnn(members, (1, 2), 0.5, logits, y)
    said = capsys.readouterr().out
    assert said == ("On the test set the chosen ensemble does not beat cnn.pt alone: "
                    "50.00% against 100.00%.\n")
    m13().against_the_cnn(members, (0,), 1.0, logits, y)  # the choice is cnn.pt itself
    m13().against_the_cnn(members[1:], (0, 1), 0.5, logits, y)  # no cnn.pt to compare
    logits[0] = torch.eye(10)[(y + 1) % 10] * 10  # a cnn.pt that misreads all four
    m13().against_the_cnn(members, (1, 2), 0.5, logits, y)  # beaten: nothing said
    assert capsys.readouterr().out == ""
