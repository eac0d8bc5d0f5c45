"""Lesson 10: DDP computes what one process computes; failures stop the job with one
line."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, benchmark_reads, lesson, run_script
from torch.utils.data import DistributedSampler

import dl_utils
from _course import launch


def m10():
    return lesson("10_distributed_training")


def test_the_ranks_shards_together_are_the_single_process_batches():
    """What the proof relies on: step k's shards = images 64k..64k+63 of one shuffle."""
    n, per_rank, world, seed = 1000, 32, 2, 7
    order = torch.randperm(
        n, generator=torch.Generator().manual_seed(seed + 0)
    ).tolist()
    X, y = torch.arange(n).float()[:, None], torch.arange(n)
    shards = []
    for rank in range(world):
        sampler = DistributedSampler(
            range(n), num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
        sampler.set_epoch(0)
        shards.append(
            [b.tolist() for _, b in m10().shard_batches(sampler, X, y, per_rank)]
        )
    for k in range(n // (per_rank * world)):
        together = sorted(shards[0][k] + shards[1][k])
        assert together == sorted(order[k * 64:(k + 1) * 64])


def test_set_epoch_demo_shows_the_repeated_order():
    line = m10().set_epoch_demo(1000, 2, 0)
    first, forgot, new = re.findall(r"\[[\d, ]+\]", line)
    assert first == forgot and first != new


def test_failure_message_is_the_failing_process_line():
    stderr = ("noise\nerror: rank 1 failed on purpose at step 1 (--crash-rank)\n"
              "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n=====\n")
    assert dl_utils.torchrun_failure(stderr, 2).endswith(
        "rank 1 failed on purpose at step 1 (--crash-rank)"
    )
    traceback = "Traceback (most recent call last):\n  File x\nValueError: bad shape\n"
    assert dl_utils.torchrun_failure(traceback, 2).endswith("ValueError: bad shape")


def test_two_processes_end_with_single_process_weights_and_04_loads_them(tmp_path):
    ckpt = tmp_path / "ddp.pt"
    results = tmp_path / "ddp.json"
    result = run_script(
        "10_distributed_training.py",
        "--nproc",
        "2",
        *SETTINGS_10,
        "--proof-steps",
        "20",
        "--checkpoint",
        ckpt,
        "--results",
        results,
    )
    assert result.returncode == 0, result.stderr
    benchmark_reads("10_distributed_training.py", result.stdout)
    out = result.stdout
    assert "Largest weight difference across the 2 ranks: 0 " in out  # identical
    single = float(re.search(r"one process with batch 64: ([\d.e+-]+)", out).group(1))
    assert single <= m10().TOLERANCE <= 1e-6  # plain SGD: rounding only
    adam = float(re.search(r"with Adam \(lr [\d.e+-]+\), as in training: ([\d.e+-]+)",
                           out).group(1))
    after = re.search(r"after DDP\(model\).*?: ([\d., -]+)", out).group(1).split(", ")
    assert len(set(after)) == 1  # rank 0's weights broadcast to every rank
    assert "Gradient buckets: 1 " in out  # SimpleNN's gradients fit in one: no overlap
    record = json.loads(results.read_text())
    assert record["world"] == 2
    # the launcher's memory estimate per process (issue 32) is not below what one takes
    assert record["peak_memory_mb"] <= 1024 * m10().WORKER_GB
    assert record["proof"]["single_process"] == pytest.approx(single, rel=0.05)
    assert record["proof"]["adam"] == pytest.approx(adam, rel=0.05)
    assert len(record["epoch_seconds"]) == 2 and 0.5 < record["test_acc"] <= 1
    loaded = run_script("04_load_model.py", "--checkpoint", ckpt, inline=True)
    assert loaded.returncode == 0, loaded.stderr
    assert "Same weights, same data, eval mode: identical." in loaded.stdout
    assert_stopped_and_resumed_is_never_stopped(ckpt, tmp_path)


SETTINGS_10 = ["--subset", "2000", "--epochs", "2"]


def assert_stopped_and_resumed_is_never_stopped(never, tmp_path):
    """Rank 0 saves the training state; both ranks resume from it, the sampler's epoch
    restored: the model of a run never stopped, bit for bit (the proof is skipped: it
    trains a copy of the model and changes nothing)."""
    resumed = tmp_path / "resumed.pt"
    flags = [
        "--nproc",
        "2",
        *SETTINGS_10,
        "--proof-steps",
        "0",
        "--checkpoint",
        resumed,
    ]
    first = run_script("10_distributed_training.py", *flags, "--stop-after-epoch", "1")
    state = tmp_path / "resumed_training.pt"
    assert first.returncode == 130 and f"--resume {state}" in first.stdout, first.stderr
    assert not resumed.exists()
    second = run_script("10_distributed_training.py", *flags, "--resume", state)
    assert second.returncode == 0, second.stderr
    assert "1 of 2 epochs done" in second.stdout
    a, b = (
        torch.load(p, weights_only=True)["model_state_dict"] for p in (never, resumed)
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_failing_rank_stops_the_job_with_one_line():
    result = run_script("10_distributed_training.py", "--crash-rank", "1",
                        "--subset", "1000", "--proof-steps", "0", timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: the 2-process job stopped: rank 1 failed on purpose at step 1 "
        "(--crash-rank)"
    ]


def test_a_port_in_use_is_one_clear_line():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = run_script(
            "10_distributed_training.py", "--master-port", port, inline=True
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"port {port} is in use" in result.stderr


def test_a_port_out_of_range_is_refused_by_the_parser():
    result = run_script(
        "10_distributed_training.py", "--master-port", "70000", inline=True
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "must be a port number from 0 to 65535" in result.stderr


def test_uneven_batch_is_refused():
    result = run_script("10_distributed_training.py", "--nproc", "3", inline=True)
    assert result.returncode == 1 and "does not split evenly" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_world_size_that_does_not_divide_the_batch_is_refused():
    """torchrun --nproc-per-node=3 with the default batch of 64: refused, not 3 x 21
    = 63."""
    args = m10().parse_args([])
    m10().check_world(args, 2)  # 64 = 2 x 32: fine
    with pytest.raises(dl_utils.FriendlyError, match="does not split evenly over 3"):
        m10().check_world(args, 3)


def test_nproc_is_not_passed_on_to_torchrun(monkeypatch):
    """torchrun would read --nproc as its own (ambiguous) --nproc-per-node and
    refuse."""
    calls = []
    monkeypatch.setattr(launch, "torchrun", lambda *a: calls.append(a))
    monkeypatch.setattr(launch, "available_memory_gb", lambda: 20.0)  # 4 x 1.2 GB fit
    for given in (["--nproc", "4", "--epochs", "1"], ["--nproc=4", "--epochs", "1"]):
        m10().launcher(m10().parse_args(given), given)
    assert [(nproc, args) for _, nproc, _, args in calls] == [
        (4, ["--epochs", "1"])
    ] * 2
    command = dl_utils.torchrun_command(m10().__file__, 4, 0, ["--epochs", "1"])
    assert command[3:5] == ["--nproc-per-node=4", "--standalone"]
    assert command[-2:] == ["--epochs", "1"]


@pytest.mark.skipif(
    not Path("/proc/self/cmdline").exists(), reason="needs Linux's /proc"
)
def test_no_worker_outlives_its_launcher(tmp_path):
    """Kill the launcher mid-training (as a closed terminal would): its workers leave
    too."""
    marker = tmp_path / "orphans.pt"  # a path that only this job's processes carry
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "10_distributed_training.py"),
            "--epochs",
            "50",
            "--subset",
            "20000",
            "--proof-steps",
            "0",
            "--checkpoint",
            str(marker),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    deadline = time.time() + 120
    while "epoch  train loss" not in proc.stdout.readline() and time.time() < deadline:
        pass  # training has started in both workers
    # the launcher, torchrun's agent, the workers
    assert len(job_processes(marker)) >= 3
    proc.kill()  # SIGKILL: the launcher gets no chance to clean up
    proc.wait()
    deadline = time.time() + 30
    while job_processes(marker) and time.time() < deadline:
        time.sleep(0.5)
    left = job_processes(marker)
    for pid in left:  # (do not leave them running if the test fails)
        os.kill(pid, signal.SIGKILL)
    assert not left


def job_processes(marker) -> list[int]:
    """The processes whose command line names `marker` (Linux's /proc)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(marker).encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:  # gone meanwhile
            pass
    return found


@pytest.mark.parametrize(
    "gpus, processes, device_flag, expected",
    [
        (
            0,
            2,
            "auto",
            ("cpu", "gloo", False),
        ),  # a laptop: gloo on the CPU, nothing to say
        (
            1,
            2,
            "auto",
            ("cpu", "gloo", True),
        ),  # one GPU, two processes (Colab): said, gloo
        (
            2,
            2,
            "auto",
            ("cuda:1", "nccl", False),
        ),  # one GPU per process: NCCL, rank 1 on cuda:1
        (4, 2, "cuda", ("cuda:1", "nccl", False)),
        (
            2,
            2,
            "cpu",
            ("cpu", "gloo", False),
        ),  # asked for the CPU: the GPUs are left alone
    ],
)
def test_nccl_only_with_one_gpu_per_process(
    monkeypatch, capsys, gpus, processes, device_flag, expected
):
    """What 10 chooses on machines this one is not: GPUs counted, nothing
    initialized."""
    m = m10()
    calls = {}
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(
        torch.cuda, "set_device", lambda d: calls.setdefault("set", str(d))
    )
    monkeypatch.setattr(m.dist, "init_process_group",
                        lambda backend, **kw: calls.setdefault("backend", backend))
    monkeypatch.setattr(m.dist, "get_rank", lambda: 0)
    monkeypatch.setattr(m.dist, "get_world_size", lambda: processes)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    _, _, device, backend = m.join_process_group(
        m.parse_args(["--device", device_flag])
    )
    said = "NCCL needs one GPU per process" in capsys.readouterr().out
    assert (str(device), backend, said) == expected and calls["backend"] == backend
    assert calls.get("set") == (str(device) if backend == "nccl" else None)


def test_a_process_count_the_machine_cannot_hold_is_refused_before_any_starts(
    monkeypatch,
):
    """--nproc 64 (a typo for 4) on a 2-core machine with ~20 GB: one line, no
    process."""
    monkeypatch.setattr(
        launch, "torchrun", lambda *a: pytest.fail("a worker was started")
    )
    monkeypatch.setattr(launch, "available_memory_gb", lambda: 20.0)
    monkeypatch.setattr(launch, "usable_cores", lambda: 2)
    result = run_script("10_distributed_training.py", "--nproc", "64", "--epochs", "1",
                        "--subset", "640", inline=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "--nproc 64 would need about 77 GB" in result.stderr
    assert "20.0 GB is available" in result.stderr and "--force-nproc" in result.stderr


def test_more_processes_than_cores_warns_and_force_lets_a_big_count_through(monkeypatch,
                                                                           capsys):
    calls = []
    monkeypatch.setattr(launch, "torchrun", lambda *a: calls.append(a))
    monkeypatch.setattr(launch, "usable_cores", lambda: 2)
    monkeypatch.setattr(launch, "available_memory_gb", lambda: 20.0)
    m10().launcher(
        m10().parse_args(["--nproc", "4", "--epochs", "1"]), ["--nproc", "4"]
    )
    assert (
        "WARNING: 4 processes on 2 cores" in capsys.readouterr().out and len(calls) == 1
    )
    monkeypatch.setattr(launch, "available_memory_gb", lambda: 1.0)  # too little for 2
    with pytest.raises(dl_utils.FriendlyError, match="--nproc 2 would need about 2 GB"):
        m10().launcher(m10().parse_args(["--nproc", "2"]), ["--nproc", "2"])
    assert len(calls) == 1
    m10().launcher(m10().parse_args(["--nproc", "2", "--force-nproc"]),
                   ["--nproc", "2", "--force-nproc"])
    assert len(calls) == 2 and "WARNING" not in capsys.readouterr().out  # 2 on 2 cores
