"""The exercises' checks can fail and can pass: every untouched template is unfinished
with a hint, every reference solution passes, plausible wrong answers are caught, and a
learner's syntax error, exception or endless loop is a line of the report."""

import json
import re
import subprocess
import sys

import pytest
from conftest import OUTPUT_DIR, ROOT, lesson

sys.path.insert(0, str(ROOT / "exercises"))
import checks  # noqa: E402

LESSONS = ["01", "02", "03", "04", "05", "06", "07", "07b", "07c", "08", "08b", "09",
           "10", "11", "12", "13"]


def check(*args, timeout=600):
    command = [sys.executable, str(ROOT / "exercises" / "check.py"), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          cwd=OUTPUT_DIR)


def test_every_lesson_has_three_to_five_exercises_of_the_three_kinds():
    found = checks.catalogue()
    assert list(found) == LESSONS == list(checks.LESSON_FILES)
    assert lesson("exercises.check").LESSONS == LESSONS  # the checker's own list
    assert all(3 <= len(exercises) <= 5 for exercises in found.values())
    kinds = {kind for exercises in found.values() for _, kind, _ in exercises}
    assert kinds == {"predict", "explore", "code"}
    total = sum(map(len, found.values()))
    assert total >= 30 and f"{total} in all" in (ROOT / "README.md").read_text()
    for number in LESSONS:  # each lesson's docstring points at its exercises
        script = next(ROOT.glob(f"{number}_*.py"))
        docstring = script.read_text().split('"""')[1]
        assert f"exercises/check.py {number}" in docstring, script


def test_the_untouched_templates_are_all_unfinished_with_a_hint():
    result = check()
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    total = int(re.search(r"0 of (\d+) passed", result.stdout).group(1))
    assert total == sum(map(len, checks.catalogue().values()))
    assert result.stdout.count("not yet ") == total
    assert "check itself" not in result.stdout
    assert "is still a TODO" in result.stdout and "is still None" in result.stdout


def test_every_reference_solution_passes():
    result = check("--solutions")
    assert result.returncode == 0, result.stdout[-3000:]
    total = sum(map(len, checks.catalogue().values()))
    assert f"{total} of {total} passed" in result.stdout


MISTAKES = [  # (exercise, file, the right line, a plausible wrong one, hint words)
    ("01.1", "ex01_tensors.py",
     "    shifted = logits - logits.max(dim=1, keepdim=True).values",
     "    shifted = logits", "subtract each row's max"),
    ("01.2", "ex01_tensors.py", "(f(x + step) - f(x - step)) / (2 * eps)",
     "(f(x + step) - f(x)) / eps", "one-sided"),
    ("03.1", "ex03_training.py", "        optimizer.zero_grad()\n", "", "zero_grad"),
    ("04.1", "ex04_inference.py", "weights_only=True", "weights_only=False",
     "ran the code"),
    ("04.2", "ex04_inference.py", "    model.eval()\n", "", "model.eval()"),
    ("05.1", "ex05_architectures.py", "a * b + b", "a * b", "weights and biases"),
    ("06.1", "ex06_cnn.py", "(patch[:, None] * w[None])",
     "(patch[:, None] * w.flip(2, 3)[None])",
     "does not flip the kernel"),
    ("06.2", "ex06_cnn.py", "// stride + 1", "/ stride + 1", "round down"),
    ("07.1", "ex07_regularization.py", "x * keep / (1 - p)", "x * keep", "1 / (1 - p)"),
    ("07.2", "ex07_regularization.py", "momentum * var * n / (n - 1)", "momentum * var",
     "UNBIASED"),
    ("07b.1", "ex07b_remedies.py", "    w = w * (1 - lr * weight_decay)",
     "    grad = grad + weight_decay * w", "Adam's L2"),
    ("08.1", "ex08_own_images.py", "        self.X = (pixels - MNIST_MEAN) / MNIST_STD",
     "        self.X = pixels", "0.1307"),
    ("09.2", "ex09_serving.py",  # a JSON list: AttributeError, answered with 500
     'text = data.get("image") if isinstance(data, dict) else None',
     'text = data.get("image")', "500"),
    ("09.4", "ex09_serving.py",
     "            raise HTTPException(400, str(err)) from None",
     "            raise", "the server's fault"),  # RequestError escapes FastAPI: a 500
    ("10.1", "ex10_distributed.py", "sum(grads) / world", "sum(grads)",
     "divided by the world"),
    ("10.2", "ex10_distributed.py", "    while len(indices) < total:",
     "    while False:",
     "repeats the first"),
    ("01.3", "ex01_tensors.py", 'PREDICT_BACKWARD_TWICE = "B"',
     'PREDICT_BACKWARD_TWICE = "A"',
     "disagrees"),
    # found by answering as learners would (issue 28): each was accepted, or got the
    # wrong hint
    ("01.2-sign", "ex01_tensors.py", "(f(x + step) - f(x - step)) / (2 * eps)",
     "(f(x - step) - f(x + step)) / (2 * eps)", "the sign is flipped"),
    ("03.1-rescaled", "ex03_training.py", "        y_hat = model(X)\n",
     "        X /= 255\n        y_hat = model(X)\n", "no rescaling"),
    ("05.2-linear", "ex05_architectures.py", "nn.GELU()", "nn.Identity()",
     "FourthNN is linear"),
    ("05.2-softmax", "ex05_architectures.py", "nn.Linear(64, 10))",
     "nn.Linear(64, 10), nn.Softmax(dim=1))", "outputs probabilities"),
    ("06.2-round", "ex06_cnn.py", "(n + 2 * padding - kernel) // stride + 1",
     "round((n + 2 * padding - kernel) / stride) + 1", "round down"),
    ("07b.1-bias", "ex07b_remedies.py",
     'm_hat = state["m"] / (1 - betas[0] ** t)\n'
     '    v_hat = state["v"] / (1 - betas[1] ** t)',
     'm_hat = state["m"]\n    v_hat = state["v"]', "no bias correction"),
    ("08.2-corner", "ex08_own_images.py",
     "    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])\n"
     "    return 1.0 - gray if border.mean() > 0.5 else gray",
     "    return 1.0 - gray if gray[0, 0] > 0.5 else gray", "not one pixel"),
    ("10.2-once", "ex10_distributed.py", "    while len(indices) < total:",
     "    if len(indices) < total:", "repeats the first"),
    ("07c.1", "ex07c_how_sure.py", 'PREDICT_FEWER_EPOCHS = "B"',
     'PREDICT_FEWER_EPOCHS = "A"', "disagrees"),
    ("07c.3", "ex07c_how_sure.py", "            break  # this one fails",
     "            continue  # this one fails", "stop at the first"),
    ("07c.3-bonferroni", "ex07c_how_sure.py", "alpha / (m - rank)", "alpha / m",
     "Bonferroni would not"),
    ("07c.3-order", "ex07c_how_sure.py", "    return reject",
     "    return sorted(reject, reverse=True)", "ORIGINAL order"),
    ("11.1", "ex11_sequences.py", "return torch.tanh(x_t @ W_x + h @ W_h + b)",
     "return x_t @ W_x + h @ W_h + b", "apply tanh"),
    ("11.1-transpose", "ex11_sequences.py", "h @ W_h + b)", "h @ W_h.T + b)",
     "not its transpose"),
    ("11.2", "ex11_sequences.py", "grads = [g * (max_norm / total) for g in grads]",
     "grads = [g * (max_norm / g.norm()) for g in grads]", "not each tensor's own"),
    ("11.2-always", "ex11_sequences.py", "    if total > max_norm:", "    if True:",
     "under max_norm"),
    ("12.1", "ex12_attention.py", "scores.masked_fill(~mask, float(\"-inf\"))",
     "scores.masked_fill(mask, float(\"-inf\"))", "MAY look"),
    ("12.1-scale", "ex12_attention.py", " / math.sqrt(Q.shape[-1])", "", "sqrt(d)"),
    ("12.2", "ex12_attention.py", ".permute(0, 1, 3, 2, 4)", "",
     "permute before flattening"),
    ("12.2-columns", "ex12_attention.py", ".permute(0, 1, 3, 2, 4)",
     ".permute(0, 3, 1, 2, 4)",
     "left to right first"),
    ("08b.1", "ex08b_fine_tuning.py",
     "        p.requires_grad = name.startswith(prefix)",
     "        if not name.startswith(prefix):\n            p.requires_grad = False",
     "an earlier call froze it"),
    ("08b.1-count", "ex08b_fine_tuning.py", "p.numel() if p.requires_grad",
     "1 if p.requires_grad",
     "add p.numel()"),
    ("08b.2", "ex08b_fine_tuning.py",
     "torch.randperm(len(y_old), generator=generator)[:n_old]",
     "torch.randint(len(y_old), (n_old,), generator=generator)", "without repeats"),
    ("08b.2-labels", "ex08b_fine_tuning.py", "torch.cat([y_new, y_old[rows]])",
     "torch.cat([y_new, y_old[:n_old]])", "another image's label"),
    ("08b.2-seed", "ex08b_fine_tuning.py",
     "torch.randperm(len(y_old), generator=generator)[:n_old]",
     "torch.randperm(len(y_old))[:n_old]", "the generator you are given"),
    ("13.1", "ex13_ensembles.py",
     "    return torch.logsumexp(logits.log_softmax(dim=-1), dim=0)",
     "    return logits.mean(dim=0)\n"
     "    return torch.logsumexp(logits.log_softmax(dim=-1), dim=0)",
     "averages the logits"),
    ("13.3", "ex13_ensembles.py", "(wrong[:, None, :] & wrong[None, :, :])",
     "(wrong[:, None, :] | wrong[None, :, :])", "EITHER member"),
    ("09.1-answer", "ex09_serving.py", '["models"][0]["prediction"]', '["models"][0]',
     '{"image": "data:image/png;base64,..."} as JSON'),  # (once printed with a stray })
]


@pytest.mark.parametrize("ex_id, file, right, mistake, hint", MISTAKES,
                         ids=[m[0] for m in MISTAKES])
def test_a_plausible_wrong_answer_is_caught_with_a_hint(learner, ex_id, file, right,
                                                         mistake, hint):
    folder = learner(file, right, mistake)
    passed, message = checks.run(ex_id.split("-")[0], folder)
    assert not passed and hint in message, message
    assert passed is False and "check itself" not in message and "e+308" not in message


RIGHT = [  # (exercise, file, the solution's line, another right answer a check refused)
    ("05.2", "ex05_architectures.py",  # the docstring's own suggestion: 77.9%, 1 epoch
     "nn.Linear(784, 128), nn.GELU(),\n"
     "                                 nn.Linear(128, 64), "
     "nn.GELU(), nn.Linear(64, 10)",
     "nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)"),
    ("03.3", "ex03_training.py",
     'FLAGS_03_FAST = ["--lr", "0.002", "--batch-size", "32"]',
     'FLAGS_03_FAST = "--lr 0.002 --batch-size 32"'),  # one string, as typed in a shell
    ("05.3", "ex05_architectures.py", 'LAST_05 = "ThreeLayerNN"',
     'LAST_05 = "ThreeLayerNN "'),
    ("02.1", "ex02_data.py", "    return pixels.mean().item(), pixels.std().item()",
     "    return [pixels.mean().item(), pixels.std().item()]"),
]


@pytest.mark.parametrize("ex_id, file, right, other", RIGHT, ids=[r[0] for r in RIGHT])
def test_another_right_answer_passes_too(learner, ex_id, file, right, other):
    passed, message = checks.run(ex_id, learner(file, right, other))
    assert passed, message


def test_a_syntax_error_an_exception_and_an_endless_loop_are_lines_of_the_report(
        learner):
    learner("ex01_tensors.py", "def cross_entropy(logits, y):",
            "def cross_entropy(logits, y:")
    learner("ex02_data.py", "    pixels = images.double() / 255",
            "    raise ValueError('oops')")
    folder = learner("ex10_distributed.py", "    total = math.ceil(n / world) * world",
                   "    while True:\n        pass")
    result = check("--folder", folder, "01", "02", "10", "--time-limit", "3")
    out = result.stdout
    assert result.returncode == 1 and "Traceback" not in out + result.stderr
    # every exercise of 01
    assert out.count("ex01_tensors.py, line 6: syntax error") == 3
    assert "raised ValueError: oops (ex02_data.py, line 7)" in out
    assert "did not finish within 3 s" in out
    assert re.search(r"10\.3\s+passed", out)  # the one after the endless loop still ran
    total = sum(len(checks.catalogue([n])[n]) for n in ("01", "02", "10"))
    assert f"4 of {total} passed" in out  # (no phantom result for a stopped child)


def test_unknown_lessons_are_one_line():
    result = check("14")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "unknown lesson" in result.stderr


FORMULAS = [  # (exercise, file, the right line, a wrong one, the formula of a 2nd miss)
    ("05.1", "ex05_architectures.py", "a * b + b", "a * b",
     "in x out weights plus out biases"),
    ("06.2", "ex06_cnn.py", "(n + 2 * padding - kernel) // stride + 1",
     "round((n + 2 * padding - kernel) / stride) + 1",
     "floor((n + 2 padding - kernel) / stride) + 1"),
]


@pytest.mark.parametrize("ex_id, file, right, mistake, formula", FORMULAS,
                         ids=[f[0] for f in FORMULAS])
def test_the_formula_comes_with_the_second_miss_not_the_first(learner, ex_id, file,
                                                              right, mistake, formula):
    folder = learner(file, right, mistake)
    passed, first = checks.run(ex_id, folder, misses=0)
    assert not passed and formula not in first and "miss once more" in first, first
    passed, second = checks.run(ex_id, folder, misses=1)
    assert not passed and formula in second, second


def test_misses_are_remembered_between_runs_and_a_pass_forgets_them(learner):
    """check.py counts real tries that failed, per folder and exercise, in the output
    folder's results/ (ignored by git); a TODO is no miss, and a broken file no
    crash."""
    misses = OUTPUT_DIR / "results" / "exercise_misses.json"
    misses.unlink(missing_ok=True)
    learner("ex06_cnn.py", 'FLAGS_06 = ["--batch-size", "16", "--max-shift", "0"]',
            "FLAGS_06 = None")  # 06.4: not tried, no miss
    folder = learner("ex06_cnn.py", "(n + 2 * padding - kernel) // stride + 1",
                     "(n + 2 * padding - kernel) // stride")
    outputs = [check("--folder", folder, "06").stdout for _ in range(2)]
    assert "miss once more" in outputs[0] and "floor(" not in outputs[0], outputs[0]
    assert "the formula: floor(" in outputs[1], outputs[1]
    assert json.loads(misses.read_text()) == {str(folder.resolve()): {"06.2": 2}}
    misses.write_text("{not json")  # broken: the counts start again, no traceback
    result = check("--folder", folder, "06")
    assert "miss once more" in result.stdout and "Traceback" not in result.stderr
    learner("ex06_cnn.py", "(n + 2 * padding - kernel) // stride\n",
            "(n + 2 * padding - kernel) // stride + 1\n")
    assert "3 of 4 passed" in check("--folder", folder, "06").stdout  # 06.4 still None
    assert json.loads(misses.read_text()) == {}
    check("--folder", ROOT / "exercises", "01")  # untouched templates: TODOs, no miss
    assert json.loads(misses.read_text()) == {}
    assert "results/" in (ROOT / ".gitignore").read_text().split()
