"""Lesson 10: beyond one process: data-parallel training with torchrun and DDP.

When one process is not enough (a bigger model, more data, several GPUs or machines),
PyTorch's answer is DistributedDataParallel (DDP): several processes, each with a full
copy of the model, each training on its own share of every batch; during backward()
they average their gradients, so every copy takes exactly the same step. This lesson
runs it on a laptop CPU with two processes, and proves, the way lesson 1 proved
backpropagation, that it computes what one process computes: same weights after the
same steps, to floating-point rounding.

Run it:
    torchrun --standalone --nproc-per-node=2 10_distributed_training.py  # the usual way
    python 10_distributed_training.py          # the same: starts torchrun for you
    python 10_distributed_training.py --nproc 4 --epochs 1   # 4 processes x 16 images
On several machines (see the README): the same script, started by torchrun on each
with --nnodes, --node-rank and a --rdzv-endpoint they can all reach.
Then: python 04_load_model.py --checkpoint models/ddp_simple_nn.pt (speed: `make bench`)
Stopped? python 10_distributed_training.py --resume models/ddp_simple_nn_training.pt
Exercises: exercises/ex10_distributed.py, checked by python exercises/check.py 10
"""

import copy
import itertools
import math
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817 (as the docs)
from torch.utils.data import BatchSampler, DistributedSampler

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
NPROC = 2  # processes on this machine: one per core here, one per GPU on a GPU machine
# Images per step, ALL processes together: lesson 3's. (Most DDP code sets it per
# process, and then raises the lr with the batch: for SGD by the same factor, the
# "linear scaling rule" of Goyal et al. 2017; for Adam the usual heuristic is its square
# root.)
GLOBAL_BATCH = 64
LR = 1e-3  # lesson 3's Adam learning rate
NUM_EPOCHS = 2  # enough to time an epoch twice; lesson 3 trains the same model for 10
PROOF_STEPS = 50  # steps compared against single-process training
# The proof (plain SGD) accepts this as rounding: sums in another order differ by
# ~1e-7. Adam is shown apart, unjudged: it divides by the root of tiny squared
# gradients, which magnifies rounding by an amount that varies by machine.
TOLERANCE = 1e-6
SEED = 0
CHECKPOINT = dl_utils.MODELS_DIR / "ddp_simple_nn.pt"
MODEL_KWARGS = {"hidden_size": 128}  # dl_utils.SimpleNN: lesson 3's 784-128-10 MLP
TIMEOUT = timedelta(seconds=60)  # a collective that waits longer than this fails loudly
# One process's peak memory, torch and MNIST as floats (measured: 1.14 GB, reported
# with --results): a count the machine cannot hold is refused (--force-nproc)
WORKER_GB = 1.2


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--nproc", type=dl_utils.positive_int, default=NPROC,
                        help="processes to launch; each takes --batch-size / nproc "
                             "images of every step (default: %(default)s)")
    dl_utils.add_training_args(parser, batch_size=GLOBAL_BATCH, lr=LR,
                               num_epochs=NUM_EPOCHS)
    parser.add_argument("--proof-steps", type=int, default=PROOF_STEPS,
                        help="steps checked against one process, 0 to skip "
                             "(default: %(default)s)")
    # rank 0's numbers; make bench times 1 vs 2 processes
    dl_utils.add_results_arg(parser)
    dl_utils.add_resume_args(parser)  # as in lesson 03b: rank 0 saves, all ranks load
    # --master-port, --crash-rank, --force-nproc
    dl_utils.add_launch_args(parser, WORKER_GB)
    parser.add_argument("--checkpoint", type=dl_utils.output_file,
                        default=str(CHECKPOINT),
                        help="where rank 0 saves the model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


# ---- 1. The process group: who am I, how many are we ---------------------------------
def join_process_group(args):
    """Join the others. Returns (rank, world size, device, backend).

    rank: this process's number, 0 to world_size - 1; rank 0 is the one that prints and
    saves. The backend moves the tensors between processes: gloo on CPUs (and the only
    choice on Windows and macOS), NCCL between NVIDIA GPUs, where it is much faster.
    init_process_group blocks until every process has arrived: the "rendezvous".
    """
    # the process's number on its machine
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    on_this_machine = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    gpus = torch.cuda.device_count() if args.device in ("auto", "cuda") else 0
    # NCCL wants one GPU per process: with fewer GPUs than processes (one GPU, a laptop,
    # Colab), rank 1 would ask for a cuda:1 that does not exist. Then gloo on the CPU.
    use_cuda = gpus >= on_this_machine
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(device)  # one GPU per process
    dist.init_process_group(backend, timeout=TIMEOUT)
    if gpus and not use_cuda and dist.get_rank() == 0:
        print(f"{gpus} GPU(s) for {on_this_machine} processes: NCCL needs one GPU per "
              "process, so this run uses gloo on the CPU.", flush=True)
    return dist.get_rank(), dist.get_world_size(), device, backend


def check_world(args, world):
    """The global batch must split evenly over the processes torchrun actually
    started."""
    if args.batch_size % world:
        raise dl_utils.FriendlyError(
            f"--batch-size {args.batch_size} does not split evenly over {world} "
            "processes: "
            f"use a multiple of {world}, e.g. {world * (args.batch_size // world + 1)}"
        )


def say(*parts, **kwargs):
    """print() on rank 0 only: otherwise every line would appear once per process."""
    if dist.get_rank() == 0:
        print(*parts, **kwargs, flush=True)


def gather_numbers(value: float, device) -> list[float]:
    """One number from every rank, in rank order (all_gather: everyone gets the
    list)."""
    mine = torch.tensor([float(value)], device=device)
    everyone = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine)
    return [t.item() for t in everyone]


def max_over_ranks(value: float, device) -> float:
    """The largest of one number over all ranks (all_reduce with MAX)."""
    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.item()


def weight_checksum(model) -> float:
    return sum(p.double().sum().item() for p in model.parameters())


# ---- 2. The model: one copy per process, kept identical by DDP -----------------------
def wrap_in_ddp(rank, device, seed):
    """A SimpleNN per process, deliberately initialized differently, then wrapped in
    DDP.

    DDP's constructor broadcasts rank 0's weights to every process: whatever each
    process initialized, all start from the same weights. From then on they stay equal
    because every process applies the same averaged gradient with the same optimizer.
    """
    dl_utils.set_seed(seed + rank)  # a different seed per rank, on purpose
    model = dl_utils.SimpleNN(**MODEL_KWARGS).to(device)
    before = gather_numbers(weight_checksum(model), device)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    after = gather_numbers(weight_checksum(model), device)
    return ddp, before, after


# ---- 3. The data: every process loads it, each trains on its own shard ---------------
def shard_batches(sampler, X, y, per_rank):
    """This rank's batches: the indices its DistributedSampler gives, per_rank at a
    time.

    DistributedSampler shuffles all the indices with the same seed on every rank (seed +
    epoch), then gives rank r every world_size-th one starting at r. So in each step the
    ranks together cover one global batch of consecutive shuffled images, and, when the
    image count divides by the world size, no image is seen by two ranks in the same
    epoch (otherwise the sampler pads by repeating a few: see evaluate_sharded). (With a
    Dataset: DataLoader(dataset,
    batch_size=per_rank, sampler=DistributedSampler(dataset)).)
    """
    for idx in BatchSampler(sampler, per_rank, drop_last=False):
        idx = torch.tensor(idx, device=X.device)
        yield X[idx], y[idx]


def set_epoch_demo(n, world, seed) -> str:
    """Rank 0's first images in epochs 1 and 2, without and with set_epoch (no
    collectives)."""
    sampler = DistributedSampler(range(n), num_replicas=world, rank=0, shuffle=True,
                                 seed=seed)
    first = list(sampler)[:4]
    forgot = list(sampler)[:4]  # epoch 2 without set_epoch: the same shuffle again
    sampler.set_epoch(1)
    return (
        f"Rank 0's first images: epoch 1 {first}; epoch 2 without set_epoch {forgot} "
        f"(the same order again); with set_epoch(1) {list(sampler)[:4]}."
    )


# ---- 4. Training: lesson 3's five steps; DDP adds the gradient averaging -------------
def train_epoch(ddp, sampler, data, per_rank, optimizer, epoch, crash_rank=None):
    """One epoch on this rank's shard; loss and accuracy over ALL ranks' images.

    set_epoch(epoch) changes the shuffle every epoch (seed + epoch); forget it, and
    every epoch repeats the first one's order. Inside loss.backward(), DDP all-reduces
    the gradients (sums them over the ranks, divides by the world size), in buckets (the
    first of 1 MiB, then 25 MiB): a bucket's all-reduce starts as soon as its gradients
    are ready, while backward still computes earlier layers. That overlap needs several
    buckets; SimpleNN's 407 KB of gradients fit in one, so here the all-reduce waits for
    the whole backward pass. The metrics are summed over the ranks once, at the end.
    """
    X, y = data
    sampler.set_epoch(epoch)
    device = X.device
    # loss sum, correct, images
    totals = torch.zeros(3, device=device, dtype=torch.float64)
    loss_fn = nn.CrossEntropyLoss()
    steps = dl_utils.train_steps(ddp, shard_batches(sampler, X, y, per_rank), loss_fn,
                                 optimizer, device)
    for step, (loss, y_hat, yb) in enumerate(steps, start=1):
        totals += torch.stack(
            [
                loss.detach().double() * len(yb),
                (y_hat.argmax(dim=1) == yb).sum().double(),
                torch.tensor(len(yb), device=device, dtype=torch.float64),
            ]
        )
        if crash_rank == dist.get_rank():
            raise dl_utils.FriendlyError(
                f"rank {crash_rank} failed on purpose at step {step} (--crash-rank)"
            )
    dist.all_reduce(totals)  # SUM over ranks
    return (totals[0] / totals[2]).item(), (totals[1] / totals[2]).item()


def evaluate_sharded(model, loader, device):
    """Loss and accuracy over a whole evaluation set, each image counted exactly once.

    Rank r evaluates images r, r + world_size, ... (no padding, unlike
    DistributedSampler, which repeats a few images so that every rank gets the same
    number: fine for training, a small bias for a reported accuracy). The sums are then
    all-reduced.
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    shard = dl_utils.TensorLoader(loader.X[rank::world], loader.y[rank::world], 1000)
    n = len(shard.y)
    loss, acc = dl_utils.evaluate_model(model, shard, device) if n else (0.0, 0.0)
    totals = torch.tensor(
        [loss * n, round(acc * n), n],
        device=device,  # round: a count
        dtype=torch.float64,
    )
    dist.all_reduce(totals)  # sums over the ranks: loss sum, images right, images
    return (totals[0] / totals[2]).item(), (totals[1] / totals[2]).item()


# ---- 5. The proof: DDP computes what one process computes ----------------------------
def train_from(initial, batches, args, device, ddp=False, adam=False):
    """A SimpleNN from the `initial` weights, trained with SGD (or Adam) on `batches`
    (in DDP, or in one process): the trained SimpleNN."""
    model = dl_utils.SimpleNN(**MODEL_KWARGS).to(device)
    model.load_state_dict(initial)
    net = (
        DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ddp
        else model
    )
    optimizer = (torch.optim.Adam(net.parameters(), lr=args.lr) if adam
                 else torch.optim.SGD(net.parameters(), lr=0.1))
    for _ in dl_utils.train_steps(net, batches, nn.CrossEntropyLoss(), optimizer,
                                  device):
        pass
    return model


def ddp_steps(initial, data, args, per_rank, device, adam):
    """`--proof-steps` DDP steps: each rank's share of every global batch, epoch 0's
    shuffle."""
    sampler = DistributedSampler(range(len(data[1])), shuffle=True, seed=args.seed)
    batches = itertools.islice(shard_batches(sampler, *data, per_rank),
                               args.proof_steps)
    return train_from(initial, batches, args, device, ddp=True, adam=adam)


def single_process_steps(initial, data, args, device, adam):
    """The same steps in one process: the whole global batch, in the sampler's order."""
    X, y = data
    order = torch.randperm(len(y),
                           generator=torch.Generator().manual_seed(args.seed + 0))
    b = args.batch_size
    batches = ((X[order[i:i + b].to(device)], y[order[i:i + b].to(device)])
               for i in range(0, args.proof_steps * b, b))
    return train_from(initial, batches, args, device, adam=adam)


def largest_difference(a, b) -> float:
    return max((p - q).abs().max().item() for p,
               q in zip(a.parameters(), b.parameters()))


def prove(initial, data, args, per_rank, device, adam=False):
    """Weights after N steps: across ranks, and against one process with the whole
    batch.

    It holds because the loss is a mean and every rank has the same number of images:
    the average of the ranks' mean gradients is then the whole batch's mean gradient.
    """
    ddp_model = ddp_steps(initial, data, args, per_rank, device, adam)
    reference = copy.deepcopy(ddp_model)
    with torch.no_grad():  # rank 0's weights, sent to every rank (no autograd involved)
        for p in reference.parameters():
            dist.broadcast(p, src=0)
    across = max_over_ranks(largest_difference(ddp_model, reference), device)
    single = None
    if dist.get_rank() == 0:  # the others wait at the barrier meanwhile
        single = largest_difference(
            ddp_model, single_process_steps(initial, data, args, device, adam)
        )
    dist.barrier()
    return across, single


# ---- 6. One process of the job (what torchrun starts nproc times) --------------------
def report_start(args, world, backend, device, before, after, n):
    """Rank 0 says who is here and what DDP's broadcast did."""
    say(f"World size {world} ({backend} backend, {device}), {torch.get_num_threads()} "
        f"thread(s) per process; rank 0 speaks for all.")
    say(
        f"Global batch {args.batch_size} = {world} processes x "
        f"{args.batch_size // world} images; "
        f"{math.ceil(n / args.batch_size)} steps per epoch over {n:,} images."
    )
    say("Weight checksums per rank, initialized with different seeds: "
        + ", ".join(f"{v:.4f}" for v in before))
    say("...and after DDP(model), which broadcasts rank 0's weights: "
        + ", ".join(f"{v:.4f}" for v in after))


def resume(args, model, optimizer):
    """--resume: every rank loads the training state rank 0 saved (the same weights and
    Adam averages everywhere); the epoch restores the shuffle, through set_epoch."""
    if not args.resume:
        return 0, {"epoch_seconds": [], "train_loss": []}
    start = dl_utils.resume_training(args.resume, Path(__file__).name, args, model,
                                     optimizer, None, None, say=say)
    return start["epoch"], start["history"]


def run_epochs(ddp, data, args, device):
    """Train (from --resume's epoch), timing each epoch; after each, rank 0 saves the
    training state. The seconds and losses per epoch, or None if --stop-after-epoch."""
    world, state = dist.get_world_size(), dl_utils.training_state_path(args.checkpoint)
    sampler = DistributedSampler(range(len(data[1])), shuffle=True, seed=args.seed)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=args.lr)
    done, history = resume(args, ddp.module, optimizer)
    say(f"{'epoch':>5}  {'train loss':>10}  {'train acc':>9}  {'seconds':>7}")
    for epoch in range(done, args.epochs):
        t0 = time.perf_counter()
        loss, acc = train_epoch(ddp, sampler, data, args.batch_size // world, optimizer,
                                epoch, args.crash_rank)
        history["epoch_seconds"].append(time.perf_counter() - t0)
        history["train_loss"].append(loss)
        say(f"{epoch + 1:>5}  {loss:>10.4f}  {100 * acc:>8.2f}%  "
            f"{history['epoch_seconds'][-1]:>7.2f}")
        # one writer, as for the model: every rank's state is equal
        if dist.get_rank() == 0:
            dl_utils.save_training_state(state, Path(__file__).name, args, ddp.module,
                                         MODEL_KWARGS, optimizer, None, None, epoch + 1,
                                         None, history)
        if epoch + 1 == args.stop_after_epoch and epoch + 1 < args.epochs:
            say(
                f"Stopped after epoch {epoch + 1} (--stop-after-epoch), the training "
                "state "
                f"saved: continue with --resume {dl_utils.display_path(state)}"
            )
            return None
    return {**history, "steps_per_epoch": math.ceil(len(data[1]) / args.batch_size)}


def save_and_check(ddp, args, device, metrics):
    """Rank 0 saves model.module; after a barrier, every rank reads the file back."""
    path = Path(args.checkpoint)
    # one writer: N processes writing one file would corrupt it
    if dist.get_rank() == 0:
        dl_utils.save_checkpoint(path, ddp.module, MODEL_KWARGS,
                                 device=str(device), metrics=metrics,
                                 hparams={"world_size": dist.get_world_size(),
                                          **{k: v for k, v in vars(args).items()
                                             if k not in ("show", "checkpoint")}})
    dist.barrier()  # nobody reads before rank 0 has finished writing
    saved = dl_utils.load_checkpoint(path, dl_utils.SimpleNN(**MODEL_KWARGS), device)[0]
    differ = max_over_ranks(largest_difference(saved, ddp.module), device)
    say(
        "Rank 0 saved model.module's state_dict (not the DDP wrapper's, whose names "
        "start "
        f"with 'module.') to {dl_utils.display_path(path)}; every rank read it back: "
        "largest "
        f"difference from its own weights {differ:g}."
    )


def worker(args):
    """What each process does: join, then the job; leave together."""
    # Leave at once if whoever started us is gone: our launcher, or torchrun itself.
    dl_utils.leave_when_gone(int(os.environ.get("DL_LAUNCHER_PID") or os.getppid()))
    rank, world, device, backend = join_process_group(args)
    try:
        job(args, rank, world, device,
            backend)  # DDP and its buckets are freed on return
        # Everyone finishes before anyone leaves: a process that closes its connections
        # while another still uses them can crash it (SIGABRT, 5 runs in 12 without it).
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # skips Python's clean-up, where gloo can abort (dl_utils says why)
    dl_utils.exit_now()


def job(args, rank, world, device, backend):
    """Build, prove, train, evaluate, save."""
    check_world(args, world)
    args.nproc = world  # what torchrun started (a training state records it)
    train, val, test = dl_utils.load_mnist_data(subset=args.subset, device=device)
    X, y = train.X, train.y  # the training tensors, in memory on every rank
    ddp, before, after = wrap_in_ddp(rank, device, args.seed)
    report_start(args, world, backend, device, before, after, len(y))
    say(f"Gradient buckets: {dl_utils.ddp_bucket_count(ddp)} (all-reduce can overlap "
        "backward only with more than one).")
    say(set_epoch_demo(len(y), world, args.seed))
    proof = prove_if_asked(ddp, (X, y), args, world, device)
    trained = run_epochs(ddp, (X, y), args, device)
    if trained is None:  # stopped early: the training state is saved, the model is not
        return
    val_loss, val_acc = evaluate_sharded(ddp.module, val, device)
    test_loss, test_acc = evaluate_sharded(ddp.module, test, device)
    say(f"Validation accuracy {100 * val_acc:.2f}%, test "
        f"{dl_utils.format_accuracy(test_acc, len(test.y))} (evaluated in {world} "
        "shard(s))")
    # DistributedSampler pads: it repeats images until the ranks have equal shares
    n = len(val.y)
    say(f"(DistributedSampler would split {n:,} images over {world} processes with "
        f"{math.ceil(n / world) * world - n} repeated; over 3, "
        f"{math.ceil(n / 3) * 3 - n}. The sharded evaluation here counts every image "
        "once.)")
    save_and_check(ddp, args, device, {"val_acc": val_acc, "test_acc": test_acc})
    if args.results and rank == 0:  # rank 0's numbers
        dl_utils.save_results(
            args.results,
            Path(__file__).name,
            args,
            device,
            world=world,
            threads=torch.get_num_threads(),
            images=len(y),
            proof=proof,
            test_acc=test_acc,
            peak_memory_mb=dl_utils.peak_memory_mb(),
            **trained,
        )


def prove_if_asked(ddp, data, args, world, device):
    """The equivalence proof (2+ processes, --proof-steps > 0); its numbers or None."""
    per_rank = args.batch_size // world
    steps = min(args.proof_steps, len(data[1]) // args.batch_size)
    if world < 2 or steps <= 0:
        return None
    args.proof_steps = steps
    initial = copy.deepcopy(ddp.module.state_dict())
    if dist.get_rank() == 0:
        dl_utils.section(f"The proof: {steps} steps with DDP vs one process")
    across, single = prove(initial, data, args, per_rank, device)
    say(
        f"Plain SGD (lr 0.1). Largest weight difference across the {world} ranks: "
        f"{across:g} "
        "(identical: every rank applied the same averaged gradient)."
    )
    if single is not None:
        verdict = "the same, to rounding" if single <= TOLERANCE else "DIFFERENT"
        say(
            f"Largest difference from one process with batch {args.batch_size}: "
            f"{single:.2g} "
            f"(tolerance {TOLERANCE:g}): {verdict}."
        )
    adam = prove(initial, data, args, per_rank, device, adam=True)[1]
    # not judged: how much Adam magnifies rounding varies by machine
    if adam is not None:
        why = (f"{adam / single:.0f}x SGD's: Adam divides by the root of tiny squared "
               "gradients, which magnifies rounding" if adam > 2 * single else
               "no more than SGD's here")
        say(
            f"The same steps with Adam (lr {args.lr:g}), as in training: {adam:.2g} "
            "from one "
            f"process, {why}."
        )
    return {
        "steps": steps,
        "across_ranks": across,
        "single_process": single,
        "adam": adam,
    }


# ---- 7. The launcher: `python 10_distributed_training.py` starts torchrun for you ----
def launcher(args, script_args):
    """Run this script under torchrun, as you would from a terminal (dl_utils.torchrun).
    torchrun starts the processes, gives each its RANK, WORLD_SIZE and where to meet,
    and watches them: if one fails, it stops the others (none is left waiting forever
    for a partner that died) and exits with an error."""
    dl_utils.section(f"Launching {args.nproc} process{'es' if args.nproc > 1 else ''} "
                     "with torchrun")
    check_world(args, args.nproc)  # (and each worker checks the count torchrun started)
    # a state that cannot go on: one line now, before any process starts
    if args.resume:
        dl_utils.read_training_state(args.resume, Path(__file__).name, args,
                                     dl_utils.SimpleNN())
    # refused in one line if the machine cannot hold nproc x WORKER_GB; then torchrun
    dl_utils.launch(Path(__file__), args, script_args, WORKER_GB)
    if (args.stop_after_epoch or args.epochs) < args.epochs:
        return 130  # stopped as Ctrl-C would (the workers said how to go on)
    print(
        "\nNext: python 04_load_model.py --checkpoint "
        f"{dl_utils.display_path(args.checkpoint)}"
    )
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if (
        "RANK" in os.environ and "WORLD_SIZE" in os.environ
    ):  # set by torchrun (and where to
        # meet: MASTER_ADDR/PORT) in each process it starts
        return worker(args)
    return launcher(args, argv)


# required: each process (and on Windows, each import) runs this
if __name__ == "__main__":
    dl_utils.run_main(main)
