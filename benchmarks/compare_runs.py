"""Did a change of code change what the lessons compute? Compare two `make run` outputs.

Run `make run` twice with DL_OUTPUT_DIR pointing at two folders (before and after a
change, with the same thread count: results are bit-identical only then, see the
README's Reproducibility), then:
    python benchmarks/compare_runs.py /tmp/before /tmp/after
It compares every results/*.json, leaving out what cannot repeat (times, dates, the
hardware record, peak memory, the s/run column and time ratios in sentences), and the
weights of every models/*.pt bit for bit (the *_whole.pt pickles are skipped: they are
never loaded with weights_only=False). Exit code 0 when everything is identical.
Used for the move of dl_utils' plumbing into _course/ (issue 29): identical.
"""

import argparse
import json
import re
import sys
from pathlib import Path

import torch

SKIPPED = ("date", "hardware", "threads", "peak_memory_mb")


def strip(value, folders):
    """A results record without what cannot repeat from one run to the next."""
    if isinstance(value, dict) and {"headers", "rows"} <= set(value):  # a printed table
        keep = [i for i, h in enumerate(value["headers"]) if not h.startswith("s/")]
        return [[row[i] for i in keep] for row in value["rows"]]
    if isinstance(value, dict):
        return {k: strip(v, folders) for k, v in value.items()
                if "sec" not in k and "time" not in k and "latency" not in k
                and k not in SKIPPED}
    if isinstance(value, list):
        return [strip(v, folders) for v in value]
    if isinstance(value, str):
        value = re.sub(r"[\d.]+x the time per epoch", "Nx the time per epoch", value)
        for folder in folders:
            value = value.replace(str(folder), "OUT")
    return value


def same_results(a: Path, b: Path) -> bool:
    same = True
    for path in sorted((a / "results").glob("*.json")):
        other = b / "results" / path.name
        ok = other.exists() and (strip(json.loads(path.read_text()), (a, b))
                                 == strip(json.loads(other.read_text()), (a, b)))
        print(f"{path.name:40} {'identical' if ok else 'DIFFERENT'}")
        same &= ok
    return same


def same_weights(a: Path, b: Path) -> bool:
    same = True
    for path in sorted((a / "models").glob("*.pt")):
        if path.name.endswith("_whole.pt"):
            continue
        x = torch.load(path, weights_only=True)
        other = b / "models" / path.name
        y = torch.load(other, weights_only=True) if other.exists() else {}
        key = "model_state_dict" if "model_state_dict" in x else "model"
        ok = key in y and x[key].keys() == y[key].keys() and all(
            torch.equal(x[key][k], y[key][k]) for k in x[key])
        print(f"{path.name:40} {'same weights' if ok else 'DIFFERENT WEIGHTS'}")
        same &= ok
    return same


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("before", type=Path, help="DL_OUTPUT_DIR of the first make run")
    parser.add_argument("after", type=Path, help="DL_OUTPUT_DIR of the second make run")
    args = parser.parse_args(argv)
    for folder in (args.before, args.after):
        if not (folder / "results").is_dir() or not (folder / "models").is_dir():
            print(
                f"error: {folder} has no results/ and models/: give the DL_OUTPUT_DIR "
                "of "
                "a finished make run",
                file=sys.stderr,
            )
            return 2
    same = same_results(args.before, args.after) & same_weights(args.before, args.after)
    print("everything identical" if same else "SOMETHING DIFFERS")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
