"""Shared test set-up: outputs go to a temporary folder, scripts run as learners run
them."""

import atexit
import contextlib
import importlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Before dl_utils is imported anywhere: models, figures and results written by the tests
# (and by the scripts they start) go to a temporary folder, never over the learner's
# own.
OUTPUT_DIR = Path(tempfile.mkdtemp(prefix="dl-basics-tests-"))
os.environ["DL_OUTPUT_DIR"] = str(OUTPUT_DIR)
os.environ["DL_DEVICE"] = "cpu"  # tests and CI run on the CPU
os.environ.pop("DISPLAY", None)  # headless, as on CI
os.environ["MPLBACKEND"] = "agg"
# make test spreads the suite over every core (pytest -n auto): one torch thread per
# test worker (inherited by the lessons it starts) instead of every worker's torch using
# every core, which oversubscribes them (measured: about 10% longer in all). A lesson's
# results may differ in the last bits with another thread count, so a test compares runs
# made under the same count.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    os.environ.setdefault(
        "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers))
    )
atexit.register(shutil.rmtree, OUTPUT_DIR, ignore_errors=True)

ROOT = Path(__file__).resolve().parent.parent


def lesson(name: str):
    """Import a numbered lesson (e.g. '03_train_mnist') as a module: main() does not
    run."""
    return importlib.import_module(name)


def run_script(script: str, *args: str, timeout: float = 300, cwd=None, env=None,
               inline=False):
    """Run a lesson as a learner would, from another folder; return the
    CompletedProcess.

    inline=True runs the lesson's main() in this process instead, through the same
    dl_utils.run_main that `python script` uses (its one-line errors and exit codes),
    with stdout and stderr captured: the same behaviour without paying Python's and
    torch's start-up (about 2 s) again. Not for what needs a process of its own: Ctrl-C,
    another environment, or a pickle that must name __main__.
    """
    if inline:
        assert env is None, "inline runs share this process's environment"
        return run_inline(script, [str(a) for a in args], cwd or OUTPUT_DIR)
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or OUTPUT_DIR,
        env={**os.environ, **(env or {})},
    )


@contextlib.contextmanager
def working_folder(path):
    """contextlib.chdir, which needs Python 3.11."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_inline(script: str, argv: list[str], cwd) -> subprocess.CompletedProcess:
    """`python script argv` as a function call: dl_utils.run_main(main), exit code
    kept."""
    import dl_utils

    module = lesson(script.removesuffix(".py").replace("/", "."))
    out, err = io.StringIO(), io.StringIO()
    code, argv0 = 0, sys.argv
    sys.argv = [str(ROOT / script), *argv]  # what argparse names the program after
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        working_folder(cwd),
    ):
        try:
            dl_utils.run_main(lambda: module.main(argv))
        except SystemExit as exit_:
            code = (
                exit_.code
                if isinstance(exit_.code, int)
                else (0 if exit_.code is None else 1)
            )
        finally:
            sys.argv = argv0
    return subprocess.CompletedProcess(
        [script, *argv], code, out.getvalue(), err.getvalue()
    )


@pytest.fixture(scope="session")
def served_models_dir(tmp_path_factory):
    """A folder with one trained MLP (a quick run of lesson 3), for lesson 9's
    server."""
    folder = tmp_path_factory.mktemp("served")
    result = run_script("03_train_mnist.py", "--subset", "20000", "--epochs", "2",
                        "--checkpoint", folder / "mlp.pt", inline=True)
    assert result.returncode == 0, result.stderr
    return folder


def lessons_4_and_9_use(ckpt, described: str, class_name: str) -> None:
    """Lesson 4 loads a lesson's checkpoint (printing how it was built), and lesson 9
    serves it: loaded, asked in-process, and through its --self-check."""
    import dl_utils

    loaded = run_script("04_load_model.py", "--checkpoint", ckpt, inline=True)
    assert loaded.returncode == 0, loaded.stderr
    assert described in loaded.stdout
    served = lesson("09_serve_digits").load_models(ckpt.parent, "cpu")
    assert [m["name"] for m in served] == [class_name]
    _, _, X, _ = dl_utils.load_mnist_tensors()
    answer = lesson("09_serve_digits").predict(served, X[0].numpy())
    assert (
        0 <= answer[0]["prediction"] <= 9
        and abs(sum(answer[0]["probabilities"]) - 1) < 1e-4
    )
    checked = run_script(
        "09_serve_digits.py",
        "--self-check",
        "--requests",
        "3",
        "--drawn",
        "20",
        "--models-dir",
        ckpt.parent,
        inline=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert class_name in checked.stdout and ckpt.name in checked.stdout


def benchmark_reads(script: str, stdout: str) -> str:
    """What `make bench` reads from a lesson's output (its result column); never "?"."""
    found = lesson("benchmarks.benchmark").accuracy_of(script, stdout)
    assert found != "?", f"make bench cannot read the result of {script}"
    return found


SLOW_FIRST = ("test_every_lesson_on_another_seed_says_only_what_its_numbers_show",
              "test_editing_lesson_3_changes_no_other_lesson",
              "test_tables_run_lesson_command_lines_and_render_every_section",
              "test_benchmark_quick_mode",
              "test_a_syntax_error_in_lesson_3_breaks_lesson_3_alone",
              "test_two_processes_end_with_single_process_weights_and_04_loads_them",
              "test_stopped_and_resumed_equals_never_stopped",
              "test_every_reference_solution_passes")


def pytest_collection_modifyitems(items):
    """The longest tests first: with the suite spread over the cores (make test runs
    pytest -n auto --maxschedchunk 1, each worker taking the next test when it is
    free), a long test started last would leave the other cores idle."""
    items.sort(key=lambda item: item.originalname not in SLOW_FIRST)


@pytest.fixture
def learner(tmp_path):
    """The exercises' reference solutions in a folder of their own: edit(file, old, new)
    makes one of them a learner's answer (right or wrong) and returns the folder."""
    folder = tmp_path / "learner"
    shutil.copytree(ROOT / "exercises" / "solutions", folder)

    def edit(file, old, new):
        path = folder / file
        text = path.read_text()
        assert old in text, (file, old)
        path.write_text(text.replace(old, new))
        if "checks" in sys.modules:  # checks.run caches the files it loaded
            sys.modules["checks"]._LOADED.clear()
        return folder
    edit.folder = folder
    return edit
