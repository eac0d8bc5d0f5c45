"""Starting lesson 10's processes: torchrun, the machine's limits, one-line failures.

Plumbing, not a lesson: lesson 10 teaches DDP; this module starts its processes.
torchrun runs in the launcher's own process (one Python and torch start-up fewer),
a count the machine cannot hold is refused before any process starts, workers leave when
their launcher is gone, and a failed job becomes one line naming the failing process's
error.
"""

import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from _course.cli import check_port_free, port_number
from _course.files import FriendlyError

__all__ = [  # what dl_utils re-exports
    "add_launch_args", "launch", "exit_now",
    "usable_cores", "available_memory_gb", "check_process_count", "peak_memory_mb",
    "ddp_bucket_count", "torchrun_command", "torchrun", "leave_when_gone",
    "torchrun_failure",
]


def usable_cores() -> int:
    """The cores this process may run on (a container or `taskset` can allow fewer than
    the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def available_memory_gb() -> float | None:
    """Memory a new program can take without pushing others out (Linux's MemAvailable);
    elsewhere the physical memory, an upper bound; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20  # kB -> GB
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def check_process_count(nproc: int, per_process_gb: float, on_cpu: bool,
                        force: bool) -> None:
    """Before starting nproc processes (lesson 10): refuse in one line a count whose
    memory would exceed what is available (unless `force`), and warn when processes on
    the CPU outnumber its cores."""
    available = available_memory_gb()
    needed = nproc * per_process_gb
    if available is not None and needed > available and not force:
        raise FriendlyError(
            f"--nproc {nproc} would need about {needed:.0f} GB "
            f"({nproc} x {per_process_gb:g} GB per process: torch and the data, each "
            f"in its own copy) and {available:.1f} GB is available: use fewer "
            "processes, or add --force-nproc to start them anyway")
    cores = usable_cores()
    if on_cpu and nproc > cores:
        print(f"WARNING: {nproc} processes on {cores} cores: they take turns on the "
              "cores, so each step waits for the slowest and an epoch takes longer "
              f"than with {cores}, not shorter.", flush=True)


def peak_memory_mb() -> float | None:
    """This process's peak resident memory in MB (10's workers report it); None on
    Windows."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on
    # macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def ddp_bucket_count(ddp) -> int:
    """How many gradient buckets a DistributedDataParallel model made (lesson 10), from
    the bucket sizes its logging data lists (a private API: 1 if it ever goes away)."""
    sizes = ddp._get_ddp_logging_data().get("bucket_sizes", "")
    return len(str(sizes).split(",")) if sizes else 1


def torchrun_command(script: Path, nproc: int, port: int, script_args) -> list[str]:
    """The torchrun command line for `script` (python -m torch.distributed.run is
    torchrun); port 0: --standalone, one machine and a free port."""
    meet = (["--standalone"] if not port else
            ["--nnodes=1", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}"])
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
            *meet, str(Path(script).resolve()), *script_args]


def torchrun(script: Path, nproc: int, port: int, script_args) -> None:
    """Run `script` under torchrun with nproc processes (lesson 10), printing the
    command; a failed job becomes one FriendlyError line that names the failing
    process's error."""
    command = torchrun_command(script, nproc, port, script_args)
    print("  torchrun "
          + " ".join(command[3:]).replace(str(Path(script).resolve()),
                                          Path(script).name),
          flush=True)
    # torchrun's own main() runs in this process (the same as the command, without a
    # second Python and torch to start); the workers inherit the environment, and their
    # error output (file descriptor 2) goes to a file, read if the job fails.
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    os.environ["DL_LAUNCHER_PID"] = str(os.getpid())  # watched by the workers
    if nproc > 1:  # what torchrun would set (with a warning): one thread per process
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    failed = None
    with tempfile.TemporaryFile("w+") as errors:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(errors.fileno(), 2)
        try:
            torchrun_main(command[3:])
        except ChildFailedError as err:
            failed = str(err)
        except SignalException as err:  # Ctrl-C (or a kill) while the job ran
            raise KeyboardInterrupt from err
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        errors.seek(0)
        if failed is not None:
            raise FriendlyError(torchrun_failure(errors.read() + "\n" + failed, nproc))


def leave_when_gone(pid: int, every: float = 1.0) -> None:
    """Exit this process at once when process `pid` is gone (lesson 10's workers watch
    their launcher): a worker must never outlive the command that started it, however
    that command ended (Ctrl-C, kill, a closed terminal). POSIX only: on Windows,
    os.kill(pid, 0) would not ask, it would terminate."""
    if os.name != "posix":
        return

    def watch():
        while True:
            time.sleep(every)
            try:
                os.kill(pid, 0)  # signal 0: "are you there?", nothing is sent
            except ProcessLookupError:
                os._exit(1)  # no cleanup to wait for: the job is over
            except PermissionError:  # exists, owned by someone else: still there
                pass

    threading.Thread(target=watch, daemon=True).start()


def torchrun_failure(stderr: str, nproc: int) -> str:
    """One line for a failed job: the failing process's own error line if it wrote one,
    else the last exception it raised, else what torchrun's report says of it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    ours = [ln[len("error: "):] for ln in lines if ln.startswith("error: ")]
    raised = [ln for ln in lines
              if re.match(r"^[\w.]+(Error|Exception|Interrupt): ", ln)]
    report = [re.sub(r"\s+", " ", ln) for ln in lines
              if re.match(r"^(rank|exitcode|traceback)\s*:", ln)]
    why = ours[0] if ours else raised[-1] if raised else (
        ", ".join(report) or (lines[-1] if lines else "no message"))
    return f"the {nproc}-process job stopped: {why}"


def add_launch_args(parser, per_process_gb: float) -> None:
    """Lesson 10's launch settings: where the processes meet, a rank to fail on purpose,
    and starting more processes than the machine's memory seems to hold."""
    parser.add_argument("--master-port", type=port_number, default=0,
                        help="TCP port for the processes to meet on; 0 lets torchrun "
                             "pick a free one (default: %(default)s)")
    parser.add_argument("--crash-rank", type=int, default=None,
                        help="make this rank fail after its first step, to watch the "
                             "whole job stop with one message (default: none)")
    parser.add_argument("--force-nproc", action="store_true",
                        help="start --nproc processes even if their estimated memory "
                             f"({per_process_gb:g} GB each) exceeds what is available")


def launch(script: Path, args, script_args, per_process_gb: float) -> None:
    """Run `script` under torchrun with args.nproc processes, after checking that the
    machine can hold them and that --master-port is free. Our --nproc is left out of the
    arguments passed on: torchrun would read it as an abbreviation of
    --nproc-per-node."""
    gpus = torch.cuda.device_count() if args.device in ("auto", "cuda") else 0
    check_process_count(args.nproc, per_process_gb, on_cpu=gpus < args.nproc,
                        force=args.force_nproc)
    check_port_free(args.master_port, "--master-port")
    script_args = [a for i, a in enumerate(script_args) if not (
        a.startswith("--nproc") or (i and script_args[i - 1] == "--nproc"))]
    torchrun(Path(script), args.nproc, args.master_port, script_args)


def exit_now() -> None:
    """A worker's last act, once everything is saved and printed: leave without Python's
    clean-up at exit, where gloo's threads can still free tensors and abort the process
    (seen here about once in 20 runs under load; see pytorch/pytorch#179291)."""
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)
