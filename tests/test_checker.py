"""The exercise checker under real use (issue 28): start-up is not timed as an
exercise, learner output cannot break the results channel, whatever the learner's code
starts is ended on every way out, memory is limited, and a busy machine does not change
a verdict. And wrong answers learners really write fail (issue 48)."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import OUTPUT_DIR, ROOT

sys.path.insert(0, str(ROOT / "exercises"))
import checks  # noqa: E402

CHECK = [sys.executable, str(ROOT / "exercises" / "check.py")]
posix_only = pytest.mark.skipif(os.name != "posix",
                                reason="process groups and signals: POSIX")


def check(*args, timeout=300):
    return subprocess.run([*CHECK, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=OUTPUT_DIR)


def left_running(marker: str, wait=10.0) -> list[str]:
    """Command lines of processes that still contain `marker` (waiting up to `wait` s
    for killed ones to go)."""
    deadline = time.monotonic() + wait
    while True:
        found = subprocess.run(["pgrep", "-af", marker], capture_output=True, text=True)
        lines = [line for line in found.stdout.splitlines() if "pgrep" not in line]
        if not lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_start_up_has_its_own_limit_and_a_stale_folder_is_removed():
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid no process has now: its folder is stale
    stale = Path(tempfile.gettempdir()) / f"dl-exercises-{dead.pid}-test"
    stale.mkdir(exist_ok=True)
    # torch's import alone takes longer than 1.5 s: it must not count as an exercise
    result = check("--solutions", "01", "--time-limit", "1.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 3 passed" in result.stdout
    assert not stale.exists()
    result = check("--solutions", "01", "--startup-limit", "0.01")
    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert result.stderr.count("\n") == 1
    assert "did not start within 0.01 s" in result.stderr
    assert "--startup-limit" in result.stderr


def test_learner_output_is_shown_under_its_exercise_and_breaks_nothing(learner):
    learner("ex05_architectures.py", "    def forward(self, X):\n",
            "    def forward(self, X):\n"
            "        print('debug: X has shape', tuple(X.shape))\n")
    folder = learner("ex05_architectures.py", "import torch.nn as nn\n",
                     "import os\n\nimport torch.nn as nn\n\n"
                     "os.system('echo from a shell')\n")
    result = check("--folder", folder, "05")
    out = result.stdout
    assert result.returncode == 0, out[-2000:]
    assert "Traceback" not in out + result.stderr, out[-2000:]
    assert "3 of 3 passed" in out
    assert "from a shell" in out and "debug: X has shape (64, 1, 28, 28)" in out, out
    assert "earlier lines not shown" in out  # trimmed: a print per batch is hundreds


@posix_only
def test_children_and_threads_the_learner_started_end_with_the_check(learner):
    marker = f"{os.getpid()}.{time.monotonic_ns() % 10**6}"
    folder = learner("ex10_distributed.py", "import math\n",
                     "import math\nimport subprocess\nimport threading\nimport time\n\n"
                     f"children = [subprocess.Popen(['sleep', '{marker}'])\n"
                     "            for _ in range(50)]\n"
                     "threading.Thread(target=time.sleep, args=(600,)).start()\n")
    result = check("--folder", folder, "10", "--time-limit", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 of 3 passed" in result.stdout  # the thread left running overwrote nothing
    assert left_running(f"sleep {marker}") == []


def looping_learner(learner, ignore_sigint=False):
    """Lesson 1's first exercise loops for ever, after saying so in a file."""
    folder = learner.folder
    ignore = ""
    if ignore_sigint:
        ignore = "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    learner("ex01_tensors.py", "def cross_entropy(logits, y):\n",
            "def cross_entropy(logits, y):\n    import pathlib, signal\n" + ignore
            + f"    pathlib.Path({str(folder / 'looping')!r}).touch()\n"
            + "    while True:\n        pass\n")
    return folder


def sigint_as_in_a_terminal():
    """Ctrl-C's default action: a suite started in the background inherits SIGINT
    ignored, and so would the checker."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_wait_for_loop(folder):
    command = [*CHECK, "--folder", str(folder), "01", "--time-limit", "600"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=OUTPUT_DIR, start_new_session=True,
                            preexec_fn=sigint_as_in_a_terminal)
    deadline = time.monotonic() + 120
    while not (folder / "looping").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    return proc


@posix_only
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_stopping_the_checker_ends_the_learner_code_and_its_folder(learner, how):
    folder = looping_learner(learner, ignore_sigint=how == "Ctrl-C")
    proc = start_and_wait_for_loop(folder)
    if how == "SIGTERM":  # what an IDE's stop button and `timeout` send, to the checker
        proc.send_signal(signal.SIGTERM)
    else:  # Ctrl-C in a terminal: SIGINT to the foreground process group
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == (143 if how == "SIGTERM" else 130), err
    assert "Traceback" not in out + err
    assert left_running(str(folder)) == []  # the child's command line names the folder
    assert not list(Path(tempfile.gettempdir()).glob(f"dl-exercises-{proc.pid}-*"))


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="RLIMIT_AS: Linux only")
def test_learner_code_that_takes_too_much_memory_is_one_line(learner):
    folder = learner("ex05_architectures.py", "def count_parameters(layer_sizes):\n",
                     "def count_parameters(layer_sizes):\n    import torch\n"
                     "    torch.ones(2**31)  # 8 GB\n")
    result = check("--folder", folder, "05", "--memory-limit", "1")
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "used more than 1 GB of memory" in result.stdout
    assert "2 of 3 passed" in result.stdout  # the other two still ran, with the limit


def test_the_batching_answer_holds_on_a_busy_machine():
    """09.3's answer is a measured speed ratio: two processes spinning on every core
    must not change it (it takes the fastest of interleaved tries, on one thread)."""
    spinners = []
    for _ in range(2):
        spinners.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
    try:
        passed, message = checks.run("09.3", ROOT / "exercises" / "solutions")
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    assert passed, message


# ---- Wrong answers learners really write (issue 48, 6) -------------------------------
SOLUTIONS = ROOT / "exercises" / "solutions"
WRONG = [  # (exercise, file, the solution's lines, a learner's wrong ones, hint words)
    ("02.2", "ex02_data.py",  # the same split, but every later random number changes
     "    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))",
     "    torch.manual_seed(seed)\n    order = torch.randperm(n)",
     "global random state"),
    ("03.1", "ex03_training.py", "    model.train()\n", "", "model.train() first"),
]


@pytest.mark.parametrize("ex_id, file, right, wrong, hint", WRONG,
                         ids=[w[0] for w in WRONG])
def test_a_wrong_answer_learners_write_fails_and_the_solution_passes(
        learner, ex_id, file, right, wrong, hint):
    passed, message = checks.run(ex_id, SOLUTIONS)
    assert passed, message
    passed, message = checks.run(ex_id, learner(file, right, wrong))
    assert not passed and hint in message, message
