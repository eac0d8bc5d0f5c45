"""Check your exercises: passed, or not yet with a hint that says where to look.

    python exercises/check.py 03            # lesson 3's (exercises/ex03_training.py)
    python exercises/check.py 01 02         # several lessons
    python exercises/check.py               # all of them (what `make exercises` runs)
    python exercises/check.py 03 --answers  # and the measured answers of "predict" ones
    python exercises/check.py --solutions   # the reference solutions (solutions/)

Three kinds of exercise, each checked against something you cannot copy from a printout:
- predict: write what you expect in the file, then check; the answer is measured now,
  by running the course's code, and shown only with --answers (or once you are right);
- explore: find flags that reach a target; the check runs the lesson with your flags and
  reads its --results file;
- code: write a function where the TODO is; it is compared with an independent
  computation (PyTorch's own layer, finite differences, a sampler), within a stated
  tolerance.
The exit code is 0 when every exercise checked has passed, 1 otherwise.

Where finding a formula is the exercise (05.1, 06.2), a first miss gets a hint that
says where to look, and a second miss the formula too. The checker remembers each
exercise's misses between runs in results/exercise_misses.json (under $DL_OUTPUT_DIR
when it is set); a pass forgets them, and deleting the file starts every count again.

Your code runs in a separate process, in a process group of its own, so a syntax error,
an exception, an endless loop or runaway memory becomes a line of this report, never a
traceback, and whatever your code started is ended with it. Each exercise has a time
limit (--time-limit) that counts only while that exercise runs: the child's start-up
(importing torch, slow on a busy machine) has its own, longer limit (--startup-limit).
On Linux the child may use --memory-limit GB beyond what it holds after start-up. What
your code prints (a debug print in forward(), say) is shown, trimmed, under the exercise
it belongs to: results travel through a file of the checker's, never through the output
your code writes to. The lessons that explore exercises run write their models and
figures to a temporary folder: your own models/ and figures/ are never touched.

This is a self-check: it runs your code on your own machine, with your rights, and your
code could patch the checks themselves. It is not a sandbox for grading other people's
code.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIME_LIMIT = 90  # seconds per exercise; every code or predict solution takes < 5 s here
EXPLORE_FACTOR = 3  # an explore exercise may take 3 x TIME_LIMIT: it trains through a
# whole lesson (06.4, the longest, 10 s of one core), runs none of the learner's code
# (so no endless loop), and on a busy machine torch's threads wait for each other: on 2
# cores shared with about 7 other busy processes, 06.4 took 187 s with 2 threads, 15 s
# with 1
STARTUP_LIMIT = 300  # seconds for the child to import torch and the checks (~3 s idle)
MEMORY_LIMIT = 4  # GB beyond start-up: the checks need well under 1 GB
OUTPUT_SHOWN = 12  # lines of an exercise's own output shown under it (the last ones)
LESSONS = ["01", "02", "03", "04", "05", "06", "07", "07b", "07c", "08", "08b", "09",
           "10", "11", "12", "13"]  # checks.py's
PREFIX = "dl-exercises-"  # temporary folders: PREFIX + the checker's pid + "-" + random
# where the misses are remembered: the course's results folder (_course/files.py's
# RESULTS_DIR, worked out here too: this process never imports the course, or torch)
OUTPUT_DIR = Path(os.environ.get("DL_OUTPUT_DIR") or HERE.parent).resolve()
MISSES_FILE = OUTPUT_DIR / "results" / "exercise_misses.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("lessons", nargs="*", metavar="LESSON",
                        help="lesson numbers such as 03 or 07b (default: all)")
    parser.add_argument("--solutions", action="store_true",
                        help="check exercises/solutions/ instead of your files")
    parser.add_argument("--answers", action="store_true",
                        help="show the measured answer of each predict exercise")
    parser.add_argument("--folder", type=Path, default=None,
                        help="check the exercise files in this folder (default: "
                             "exercises/, or exercises/solutions/ with --solutions)")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT,
                        help="seconds one exercise may take; an explore exercise, "
                             f"which trains through a lesson, {EXPLORE_FACTOR} times "
                             "as long (default: %(default)s)")
    parser.add_argument("--startup-limit", type=float, default=STARTUP_LIMIT,
                        help="seconds the checker's child may take to start, torch's "
                             "import included (default: %(default)s)")
    parser.add_argument("--memory-limit", type=float, default=MEMORY_LIMIT,
                        help="GB of memory your code may add, on Linux (default: "
                             "%(default)s)")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ids", nargs="*", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--misses", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---- the parent: start a child, read its results, end it and all it started ----------
class Child:
    """One child process checking exercises, with its own process group (POSIX), a file
    for its output and a file for its results. Reading the results never blocks: the
    file is polled, so nothing the learner's code does to stdout can stall or corrupt
    it."""

    def __init__(self, args, folder, ids, workdir: Path, misses: dict):
        self.results_file = workdir / "results.jsonl"
        self.output_file = workdir / "output.txt"
        self.results_file.touch()
        misses_file = workdir / "misses.json"  # this folder's counts, for the child
        misses_file.write_text(json.dumps({str(Path(folder).resolve()): misses}))
        cmd = [sys.executable, str(Path(__file__).resolve()),
               "--child", str(self.results_file), "--folder", str(folder),
               "--memory-limit", str(args.memory_limit), "--misses", str(misses_file),
               *args.lessons]
        if ids:
            cmd += ["--ids", *ids]
        if args.answers:
            cmd.append("--answers")
        env = {**os.environ, "DL_OUTPUT_DIR": str(workdir), "MPLBACKEND": "agg",
               "PYTHONUNBUFFERED": "1"}
        with open(self.output_file, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, env=env, cwd=workdir,
                                         start_new_session=os.name == "posix")
        self.read_to = 0

    def records(self):
        """The complete result lines written since the last call."""
        with open(self.results_file, "rb") as f:
            f.seek(self.read_to)
            data = f.read()
        done = data.rfind(b"\n") + 1
        self.read_to += done
        return [json.loads(line) for line in data[:done].splitlines() if line.strip()]

    def output(self, start, end=None) -> str:
        """What the child wrote between two offsets of its output file (to its end if
        end is None): the last lines, trimmed."""
        with open(self.output_file, "rb") as f:
            f.seek(start)
            size = -1 if end is None else max(0, end - start)
            text = f.read(size).decode(errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        shown = [line if len(line) <= 100 else line[:97] + "..."
                 for line in lines[-OUTPUT_SHOWN:]]
        hidden = len(lines) - len(shown)
        note = f"({hidden} earlier lines not shown)\n" if hidden else ""
        return note + "\n".join(shown)

    def end(self):
        """Stop the child and everything it started (its whole process group)."""
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, signal.SIGKILL)
            else:
                self.proc.kill()
        except (ProcessLookupError, PermissionError):
            pass  # already gone
        self.proc.wait()


def run_child(args, folder, ids, misses):
    """Check the exercises of args.lessons (or just `ids`) in one child: (the catalogue
    it sent or None, {id: (passed, message, output, missed)}, why it stopped early or
    None). missed: a real try that failed, counted towards the formula (not a TODO)."""
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-") as workdir:
        child = Child(args, folder, ids, Path(workdir), misses)
        try:
            return watch(child, args)
        finally:
            child.end()  # every way out: done, timed out, crashed, Ctrl-C, SIGTERM


def watch(child, args):
    """Follow one child's records; the start-up limit, then a limit per exercise."""
    catalogue, results, current = None, {}, None
    started, limit = time.monotonic(), args.startup_limit
    while True:
        exited = child.proc.poll() is not None  # read after this: nothing is missed
        for record in child.records():
            if "catalogue" in record:
                catalogue, limit = record["catalogue"], None
            elif "start" in record:
                current, started, limit = record, time.monotonic(), args.time_limit
                if record["start"] in explore_ids(catalogue):
                    limit = EXPLORE_FACTOR * args.time_limit
            elif "id" in record:
                out = child.output(current["offset"], record["offset"])
                results[record["id"]] = (record["passed"], record["message"], out,
                                         record["missed"])
                current, limit = None, None
            elif "done" in record:
                return catalogue, results, None
        if exited:
            return catalogue, results, died(child, catalogue, current, results)
        if limit is not None and time.monotonic() - started > limit:
            if catalogue is None:
                why = (f"the checker's process did not start within {limit:g} s "
                       "(importing torch is slow on a busy machine): --startup-limit "
                       "raises the limit")
                return None, results, why
            child.end()
            message = (f"did not finish within {limit:g} s: an endless loop? "
                       "(--time-limit changes the limit)")
            explored = current["start"] in explore_ids(catalogue)
            if explored:  # no code of the learner's ran: slow flags, or a busy machine
                message = (f"the lesson did not finish within {limit:g} s: flags that "
                           "make it slow, or a busy machine? (--time-limit changes the "
                           "limit)")
            output = child.output(current["offset"])
            results[current["start"]] = (False, message, output, not explored)
            return catalogue, results, None
        time.sleep(0.05)


def explore_ids(catalogue) -> set:
    """The ids of the explore exercises in a catalogue, {lesson: [(id, kind,
    title)]}."""
    found = set()
    for exercises in (catalogue or {}).values():
        for ex_id, kind, _ in exercises:
            if kind == "explore":
                found.add(ex_id)
    return found


def died(child, catalogue, current, results):
    """The child ended on its own before saying done: record why, in one line."""
    code = child.proc.returncode
    if current is not None:  # inside an exercise: a crash, or the learner's exit()
        message = (f"the check's process ended inside this exercise (exit code "
                   f"{code}): a crash, or exit() in your code?")
        output = child.output(current["offset"])
        results[current["start"]] = (False, message, output, True)
        return None
    last = child.output(0).splitlines()
    reason = f": {last[-1].strip()}" if last else ""
    if "ModuleNotFoundError" in "".join(last):
        reason += " (is the course's .venv active? make exercises sets it up)"
    return "the checker's process could not start" + reason


def check_all(args, folder, misses):
    """Every exercise, a new child after one is stopped: (catalogue, results, None), or
    (None, None, the reason)."""
    catalogue, results, problem = run_child(args, folder, None, misses)
    if catalogue is None:
        return None, None, problem or "the checker's process sent no list of exercises"
    pending = [ex_id for exercises in catalogue.values() for ex_id, _, _ in exercises
               if ex_id not in results]
    while pending:  # a stopped child leaves the rest to a new one, while they progress
        found, problem = run_child(args, folder, pending, misses)[1:]
        results.update(found)
        left = [ex_id for ex_id in pending if ex_id not in results]
        if len(left) == len(pending):  # no progress: say why instead of trying forever
            reason = problem or "the checker's process stopped before it"
            results.update({ex_id: (False, f"not checked: {reason}", "", False)
                            for ex_id in left})
            left = []
        pending = left
    return catalogue, results, None


# ---- the misses, remembered between runs ---------------------------------------------
def read_misses(path=None) -> dict:
    """{folder: {exercise id: misses}} from the file; {} when it is missing or
    unreadable (a file cut short or edited by hand costs the counts, never the
    check)."""
    try:
        found = json.loads(Path(path or MISSES_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(found, dict):
        return {}
    clean = {}
    for folder, counts in found.items():
        if isinstance(counts, dict):
            clean[folder] = {ex_id: n for ex_id, n in counts.items()
                             if isinstance(n, int) and n > 0}
    return clean


def remember_misses(path, folder, results):
    """Count each real miss of this folder's exercises, forget the passed ones; written
    whole or not at all (a temporary file, then a rename). A folder that cannot be
    written (read-only) only costs the memory."""
    path = Path(path or MISSES_FILE)
    everything = read_misses(path)
    counts = everything.get(folder, {})
    for ex_id, (passed, _, _, missed) in results.items():
        if passed:
            counts.pop(ex_id, None)
        elif missed:
            counts[ex_id] = counts.get(ex_id, 0) + 1
    if counts:
        everything[folder] = counts
    else:
        everything.pop(folder, None)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(everything, indent=1, sort_keys=True) + "\n")
        os.replace(partial, path)
    except OSError:
        pass


def remove_stale_folders():
    """Temporary folders left by a checker that was killed outright (SIGKILL)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = folder.name.removeprefix(PREFIX).split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def alive(pid) -> bool:
    if os.name != "posix":
        return True  # (no cheap check: leave it)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- the child: run the checks, write one JSON line per event to the results file ----
def child(args, folder):
    """Import the checks (and torch) here, not in the parent; limit memory; then report
    each exercise's start and result with the offset of the output written so far."""
    sys.path.insert(0, str(HERE))
    import checks

    results = open(args.child, "a", buffering=1)  # line-buffered: each record is whole
    checks.MEMORY_LIMIT_GB = limit_memory(args.memory_limit)

    def send(**record):
        sys.stdout.flush(), sys.stderr.flush()
        record["offset"] = os.fstat(1).st_size  # where the output file stands now
        results.write(json.dumps(record) + "\n")

    catalogue = checks.catalogue(args.lessons)
    send(catalogue=catalogue)
    ids = args.ids or [ex_id for exercises in (catalogue or {}).values()
                       for ex_id, _, _ in exercises]
    misses = read_misses(args.misses).get(str(folder.resolve()), {})
    for ex_id in ids:
        send(start=ex_id)
        passed, message, missed = checks.attempt(ex_id, folder, args.answers,
                                                 misses.get(ex_id, 0))
        send(id=ex_id, passed=passed, message=message, missed=missed)
    send(done=True)
    results.close()
    os._exit(0)  # now, even if the learner's code left a thread running


def limit_memory(gb):
    """On Linux: at most `gb` GB of address space beyond what the child holds now
    (torch's libraries reserve ~3 GB of it without using it). None where no limit was
    set."""
    try:
        import resource
        with open("/proc/self/statm") as f:
            held = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = held + int(gb * 2**30)
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        return gb
    except (ImportError, OSError, ValueError):
        return None  # (macOS and Windows: no /proc, and no RLIMIT_AS enforced there)


def report(catalogue, results) -> int:
    """The table of results, each exercise's own output under it; how many passed."""
    done = 0
    for lesson, exercises in catalogue.items():
        print(f"\nLesson {lesson}")
        for ex_id, kind, title in exercises:
            passed, message, output, _ = results[ex_id]
            done += passed
            verdict = "passed " if passed else "not yet"
            print(f"  {ex_id:<6} {verdict}  {kind:<8} {title}")
            for line in message.splitlines():
                print(f"{'':17}{line}")
            if output:
                print(f"{'':17}your code printed:")
                for line in output.splitlines():
                    print(f"{'':19}| {line}")
    return done


def on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # through run_child's finally: the child ends too


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
    if min(args.time_limit, args.startup_limit, args.memory_limit) <= 0:
        print("error: --time-limit, --startup-limit and --memory-limit must be "
              "positive", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, on_sigterm)  # an IDE's stop button, `timeout`
    remove_stale_folders()
    key = str(folder.resolve())  # each folder its own counts (yours, a copy, a test's)
    misses = {} if args.solutions else read_misses().get(key, {})
    catalogue, results, problem = check_all(args, folder, misses)
    if catalogue is None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if not args.solutions:  # the reference solutions are no one's tries
        remember_misses(None, key, results)
    total, done = len(results), report(catalogue, results)
    rest = ""
    if done < total:
        rest = (f"; {total - done} not yet. Each hint says what was expected and where "
                "to look.")
    print(f"\n{done} of {total} passed{rest}")
    return 0 if done == total else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
