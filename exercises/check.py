"""Check your exercises: passed, or not yet with a hint that says where to look.

    python exercises/check.py 03            # lesson 3's exercises (exercises/ex03_training.py)
    python exercises/check.py 01 02         # several lessons
    python exercises/check.py               # all of them (what `make exercises` runs)
    python exercises/check.py 03 --answers  # also show the measured answers of "predict" ones
    python exercises/check.py --solutions   # the reference solutions (exercises/solutions/)

Three kinds of exercise, each checked against something you cannot copy from a printout:
- predict: write what you expect in the file, then check; the answer is measured now,
  by running the course's code, and shown only with --answers (or once you are right);
- explore: find flags that reach a target; the check runs the lesson with your flags and
  reads its --results file;
- code: write a function where the TODO is; it is compared with an independent
  computation (PyTorch's own layer, finite differences, a sampler), within a stated
  tolerance.
The exit code is 0 when every exercise checked has passed, 1 otherwise.

Your code runs in a separate process with a time limit per exercise, so a syntax error,
an exception or an endless loop becomes a line of this report, never a traceback. The
lessons that explore exercises run write their models and figures to a temporary folder:
your own models/ and figures/ are never touched.
"""

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIME_LIMIT = 90  # seconds per exercise (an explore run takes ~10 s on a laptop CPU)
LESSONS = ["01", "02", "03", "04", "05", "06", "07", "07b", "08", "09", "10"]  # checks.py's


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("lessons", nargs="*", metavar="LESSON",
                        help="lesson numbers such as 03 or 07b (default: all)")
    parser.add_argument("--solutions", action="store_true",
                        help="check exercises/solutions/ instead of your files")
    parser.add_argument("--answers", action="store_true",
                        help="show the measured answer of each predict exercise")
    parser.add_argument("--folder", type=Path, default=None,
                        help="check the exercise files in this folder (default: exercises/, "
                             "or exercises/solutions/ with --solutions)")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT,
                        help="seconds an exercise may take (default: %(default)s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ids", nargs="*", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def reader(stream, lines: queue.Queue):
    for line in stream:
        lines.put(line)
    lines.put(None)  # the child is gone


def run_child(lessons, ids, folder, answers, limit):
    """Check the exercises of `lessons` (or just `ids`) in a child process: (the catalogue
    it sent, {id: (passed, message)}). An exercise that runs past the limit is stopped
    there (the child is killed) and reported as such."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--folder", str(folder),
           *lessons, *(["--ids", *ids] if ids else []), *(["--answers"] if answers else [])]
    with tempfile.TemporaryDirectory(prefix="dl-exercises-") as outputs:
        env = {**os.environ, "DL_OUTPUT_DIR": outputs, "MPLBACKEND": "agg"}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True, env=env, cwd=outputs)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=reader, args=(proc.stdout, lines), daemon=True).start()
        results, current, started, catalogue = {}, None, time.monotonic(), None
        while True:
            try:
                line = lines.get(timeout=max(0.1, limit - (time.monotonic() - started)))
            except queue.Empty:  # the current exercise ran out of time
                proc.kill()
                results[current] = (False, f"did not finish within {limit:g} s: an endless "
                                           "loop? (--time-limit changes the limit)")
                break
            if line is None:
                break
            record = json.loads(line)
            if "catalogue" in record:
                catalogue = record["catalogue"]
            elif "start" in record:
                current, started = record["start"], time.monotonic()
            else:
                results[record["id"]] = (record["passed"], record["message"])
        proc.wait()
        if current and current not in results:  # the child died inside an exercise
            results[current] = (False, "the check's process ended inside this exercise "
                                       f"(exit code {proc.returncode}): a crash in your code?")
    return catalogue, results


def child(args, folder):
    """The child process: the catalogue, then one JSON line per start and per result.
    (Only the child imports the checks, and with them torch: the parent stays light.)"""
    sys.path.insert(0, str(HERE))
    import checks

    catalogue = checks.catalogue(args.lessons)
    print(json.dumps({"catalogue": catalogue}), flush=True)
    ids = args.ids or [ex_id for exercises in (catalogue or {}).values()
                       for ex_id, _, _ in exercises]
    for ex_id in ids:
        print(json.dumps({"start": ex_id}), flush=True)
        passed, message = checks.run(ex_id, folder, args.answers)
        print(json.dumps({"id": ex_id, "passed": passed, "message": message}), flush=True)


def report(catalogue, results) -> int:
    """The table of results; how many have passed."""
    done = 0
    for lesson, exercises in catalogue.items():
        print(f"\nLesson {lesson}")
        for ex_id, kind, title in exercises:
            passed, message = results[ex_id]
            done += passed
            print(f"  {ex_id:<6} {'passed ' if passed else 'not yet'}  {kind:<8} {title}")
            for line in message.splitlines():
                print(f"{'':17}{line}")
    return done


def main(argv=None):
    args = parse_args(argv)
    folder = args.folder or (HERE / "solutions" if args.solutions else HERE)
    if args.child:
        return child(args, folder)
    unknown = [lesson for lesson in args.lessons if lesson not in LESSONS]
    if unknown:
        print(f"error: unknown lesson(s) {' '.join(unknown)}; the lessons are "
              f"{' '.join(LESSONS)}", file=sys.stderr)
        return 2
    catalogue, results = run_child(args.lessons, None, folder, args.answers, args.time_limit)
    if not catalogue:
        print("error: the checker could not start: is the course's .venv active? (make "
              "exercises sets it up)", file=sys.stderr)
        return 1
    pending = [ex_id for exercises in catalogue.values() for ex_id, _, _ in exercises
               if ex_id not in results]
    while pending:  # a killed child leaves the rest for a new one
        found = run_child(args.lessons, pending, folder, args.answers, args.time_limit)[1]
        results.update(found or {ex_id: (False, "not checked: the checker's process did "
                                                "not start again") for ex_id in pending})
        pending = [ex_id for ex_id in pending if ex_id not in results]
    total, done = len(results), report(catalogue, results)
    print(f"\n{done} of {total} passed" + ("" if done == total else
          f"; {total - done} not yet. Each hint says what was expected and where to look."))
    return 0 if done == total else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
