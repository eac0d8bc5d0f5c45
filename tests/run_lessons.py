"""Run several lessons of one copy of the course in one Python process, one after
another.

    python tests/run_lessons.py REPO OUT JSON

JSON maps a lesson file to its arguments. Each lesson's main() runs through
dl_utils.run_main, as `python REPO/lesson args` would, with the copy's own files first
on sys.path; its stdout goes to OUT/<lesson>.out and its exit code to OUT/<lesson>.code.
One process pays Python's and torch's start-up once instead of once per lesson (the
standalone test runs two copies of five lessons).
"""

import contextlib
import importlib
import json
import sys
from pathlib import Path

repo, out, runs = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
sys.path.insert(0, str(repo))
import dl_utils  # noqa: E402  (the copy's dl_utils, found first on sys.path)

for script, argv in runs.items():
    module = importlib.import_module(script.removesuffix(".py"))
    sys.argv = [str(repo / script), *argv]
    with open(out / f"{script}.out", "w") as stdout, contextlib.redirect_stdout(stdout):
        try:
            dl_utils.run_main(lambda m=module, a=argv: m.main(a))
        except SystemExit as exit_:
            code = (
                exit_.code
                if isinstance(exit_.code, int)
                else int(exit_.code is not None)
            )
    (out / f"{script}.code").write_text(str(code))
