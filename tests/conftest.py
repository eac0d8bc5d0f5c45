"""Shared test set-up: outputs go to a temporary folder, scripts run as learners run them."""

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Before dl_utils is imported anywhere: models, figures and results written by the tests
# (and by the scripts they start) go to a temporary folder, never over the learner's own.
OUTPUT_DIR = Path(tempfile.mkdtemp(prefix="dl-basics-tests-"))
os.environ["DL_OUTPUT_DIR"] = str(OUTPUT_DIR)
os.environ["DL_DEVICE"] = "cpu"  # tests and CI run on the CPU
os.environ.pop("DISPLAY", None)  # headless, as on CI
os.environ["MPLBACKEND"] = "agg"
atexit.register(shutil.rmtree, OUTPUT_DIR, ignore_errors=True)

ROOT = Path(__file__).resolve().parent.parent


def lesson(name: str):
    """Import a numbered lesson (e.g. '03_train_mnist') as a module: main() does not run."""
    return importlib.import_module(name)


def run_script(script: str, *args: str, timeout: float = 300, cwd=None, env=None):
    """Run a lesson as a learner would, from another folder; return the CompletedProcess."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=cwd or OUTPUT_DIR,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def served_models_dir(tmp_path_factory):
    """A folder with one trained MLP (a quick run of lesson 3), for lesson 9's server."""
    folder = tmp_path_factory.mktemp("served")
    result = run_script("03_train_mnist.py", "--subset", "20000", "--epochs", "2",
                        "--checkpoint", folder / "mlp.pt")
    assert result.returncode == 0, result.stderr
    return folder
