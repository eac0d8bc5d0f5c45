"""Lesson 3b: training that survives (after lesson 3).

Lesson 3's loop assumes that nothing goes wrong. A real run can be cut short: you press
Ctrl-C, the laptop sleeps, the machine restarts. Or it can go wrong: with a learning
rate too large the loss explodes and the weights fly off. This lesson trains lesson 3's
network with lesson 3's loop (their copies in dl_utils: SimpleNN, and fit, which adds
the guards explained here) and makes four points, one command each:

1. A run that stops can go on exactly where it stopped. After every epoch the training
   state is saved (this lesson prints what it holds); --resume loads it, and the run
   ends with the very weights of a run that never stopped.
2. The proof: --check-resume trains with and without a stop and compares the weights,
   then leaves out one part of the state at a time to show what each part is worth.
3. A diverging run is stopped at its first exploding batch with one clear line, and
   nothing is saved over your model.
4. Ctrl-C finishes the batch in progress, then keeps the best epoch so far.

Run it, in this order (3 epochs by default; add --subset 5000 for a quicker run):
    python 03b_training_that_survives.py --stop-after-epoch 1   # stops as Ctrl-C would
    python 03b_training_that_survives.py --resume models/simple_nn_03b_training.pt
    python 03b_training_that_survives.py --check-resume         # the proof
    python 03b_training_that_survives.py --lr 10                # diverges: stopped
    python 03b_training_that_survives.py --epochs 100           # then press Ctrl-C
Its models are models/simple_nn_03b*.pt: lesson 3's models/simple_nn.pt stays as it is.
"""

import copy
import functools
import tempfile
from pathlib import Path

import torch

import dl_utils

# ---- Settings: lesson 3's, but fewer epochs; -h lists every flag -------------------
BATCH_SIZE = 64  # lesson 3's: a resumed run can be compared with lesson 3's own
LR = 1e-3  # Adam's step size; --lr 10 makes the loss explode
NUM_EPOCHS = 3  # fewer than lesson 3's 10: this lesson is about stopping, not accuracy
HIDDEN_SIZE = 128  # SimpleNN's hidden units, as in lesson 3
OPTIMIZER = "adam"  # or "sgd": what the optimizer keeps between steps differs
MOMENTUM = 0.9  # SGD only: with 0, SGD keeps nothing between steps (--check-resume)
SEED = 0  # same seed, same initial weights and batch order, same result (same machine)
CHECKPOINT = dl_utils.MODELS_DIR / "simple_nn_03b.pt"  # the kept model, state beside
SCRIPT = Path(__file__).name  # a training state names the script that wrote it

# ---- What dl_utils.fit adds to lesson 3's loop, and why ----------------------------
# Ctrl-C. Python raises KeyboardInterrupt wherever it happens to be, perhaps in the
# middle of optimizer.step(), and lesson 3 loses the whole run. fit runs its loop inside
# dl_utils.GracefulStop: the first Ctrl-C only sets a flag, which the loop checks after
# each batch; fit then stops, and the best epoch so far is saved as
# <name>_interrupted.pt (a run cut short never overwrites a finished one). A second
# Ctrl-C quits at once. A half-finished epoch is neither validated nor kept.
#
# Divergence. An untrained network guesses about uniformly: a loss near ln(10) = 2.30
# per image, which training lowers. fit stops at the first batch whose loss is NaN
# ("not a number") or infinite, or once the average loss of the epoch so far reaches
# 10 times the first batch's loss (and at least 10 x 2.30 = 23), judged once 64 images
# have been seen. "The first batch's", because badly scaled inputs (lesson 3's
# --inputs raw) start far above 2.30; "average", because one image alone can be
# confidently wrong and cost 25 (--batch-size 1 shows it). With Adam, --lr 10 trips it
# within a few batches, where lesson 3's plain loop trains every epoch on garbage.
#
# Resuming. After every epoch fit calls after_epoch(epoch, best, history); here that
# saves the training state beside the checkpoint (dl_utils.save_training_state).
# --resume loads it into a freshly built model and optimizer (dl_utils.resume_training)
# and fit goes on with the next epoch: a stop loses at most the epoch in progress.
# What must be saved is everything the next step depends on: the weights, and the
# optimizer's memory of earlier steps, and the random generator that shuffles the next
# epoch's batches. --check-resume measures what each one is worth.


def make_optimizer(model, args):
    """Adam (the default) or SGD with momentum (lesson 3's make_optimizer explains
    them).

    For resuming, what matters is what each keeps between steps: Adam two running
    averages per weight and a step count; SGD with momentum one running average per
    weight; plain SGD (--momentum 0) nothing at all.
    """
    if args.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    return torch.optim.Adam(model.parameters(), lr=args.lr)


def optimizer_memory(args):
    """What the optimizer keeps between steps, in words (what a resume must restore)."""
    if args.optimizer == "adam":
        return "Adam's running averages"
    if args.momentum > 0:
        return "SGD's momentum"
    return "plain SGD"


def main(argv=None):
    args = parse_args(argv)
    device, loaders = dl_utils.setup(args)
    train_loader, val_loader, _ = loaders
    model_kwargs = {"hidden_size": args.hidden_size}
    if args.check_resume:
        return check_resume(args, loaders, device, model_kwargs)
    model = dl_utils.SimpleNN(**model_kwargs).to(device)  # lesson 3's network
    dl_utils.section(f"Training: {args.epochs} epochs, {args.optimizer}, lr {args.lr}")
    optimizer = make_optimizer(model, args)
    # start: where --resume says the run stopped (None: from the beginning).
    # save_state: fit's after_epoch, which writes the training state after every epoch.
    # train_loader.generator is the generator that shuffles the batches.
    start, save_state = dl_utils.resumable(SCRIPT, args, model, model_kwargs, optimizer,
                                           None, train_loader.generator)
    result = dl_utils.fit(model, train_loader, val_loader, optimizer, args.epochs,
                          device, start=start, after_epoch=save_state,
                          stop_after=args.stop_after_epoch)
    return finish(args, model, model_kwargs, loaders, device, result)


def finish(args, model, model_kwargs, loaders, device, result):
    """After fit: completed, interrupted (Ctrl-C or --stop-after-epoch) or diverged."""
    if result["status"] == "diverged":
        explain_divergence(result)
    # kept_model_path: a diverged run stops here with one line and saves nothing; an
    # interrupted one keeps its best epoch in <name>_interrupted.pt; None: no epoch
    # ended, nothing to keep.
    path = dl_utils.kept_model_path(args, result)
    if path is None:
        return 130
    kept = result["best_epoch"]
    dl_utils.section(f"Kept model: epoch {kept} (best validation accuracy)")
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(path, args, model, model_kwargs, result, metrics, device,
                             defaults=vars(parse_args([])))
    state = dl_utils.training_state_path(args.checkpoint)
    dl_utils.section("What the training state holds")
    show_training_state(state, path, args)
    if result["status"] == "interrupted":
        print(f"Interrupted: the best epoch so far is in "
              f"{dl_utils.display_path(path)}; go on with --resume "
              f"{dl_utils.display_path(state)}")
        return 130  # the exit code of a program stopped by Ctrl-C
    print("Next: python 04_load_model.py")
    return 0


def explain_divergence(result):
    """What a diverged run saw, in words (the one-line error follows on stderr)."""
    where = result["diverged"]  # e.g. "loss 5.3e+04 at batch 3 of epoch 1"
    if "nan" in where or "inf" in where:
        happened = "became NaN or infinite: the numbers overflowed"
    else:
        happened = "reached more than 10 times where the epoch started"
    dl_utils.prose(f"""
        Stopped: {where}. The loss measures how wrong the predictions are; a network
        that guesses at random scores 2.30, and training lowers it. Here it {happened}.
        Each step moved the weights so far that the next batch was predicted worse, and
        the next step then moved them further still. Nothing more can be learnt from
        here, so fit stopped at once instead of training every epoch on garbage.""")


def show_training_state(state_path, model_path, args):
    """The entries of the training state just saved, and its size against the
    model's."""
    state = torch.load(state_path, weights_only=True)  # only tensors and plain values
    best = state["best"]["epoch"]
    memory = {"Adam's running averages": "Adam's two running averages per weight",
              "SGD's momentum": "SGD's momentum, one running average per weight",
              "plain SGD": "nothing: plain SGD keeps no memory"}
    kept = memory[optimizer_memory(args)]
    rows = [["model", f"the weights after epoch {state['epoch']}"],
            ["optimizer", f"its memory of earlier steps: {kept}"],
            ["best", f"epoch {best}'s weights (the best so far) and its accuracy"],
            ["epoch", f"{state['epoch']}: the epochs done"],
            ["history", "every epoch's losses and accuracies, for the curves"],
            ["settings", "the command line's settings: a resume must use the same"],
            ["rng", "random number generators (rng): the next epoch's shuffle and "
                    "more"]]
    table = [[name, what, f"{numbers_in(state[name]):,}"] for name, what in rows]
    dl_utils.print_table(["entry", "what it holds", "numbers"], table)
    size = state_path.stat().st_size
    model_size = Path(model_path).stat().st_size
    dl_utils.prose(f"""
        {dl_utils.display_path(state_path)}: {size / 1000:,.0f} KB, against
        {model_size / 1000:,.0f} KB for the kept model ({size / model_size:.1f}x). The
        model file holds what using the network needs (lesson 4); the training state
        holds what going on needs. --check-resume leaves out the optimizer's memory,
        then the generator's state, and measures what each one is worth.""")


def numbers_in(value):
    """How many numbers an entry holds: every tensor's elements, every int and float."""
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, dict):
        return sum(numbers_in(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(numbers_in(v) for v in value)
    if isinstance(value, bool):
        return 0
    return 1 if isinstance(value, (int, float)) else 0


# ---- The proof: stopped and resumed, against never stopped ---------------------------
def check_resume(args, loaders, device, model_kwargs):
    """--check-resume: stopped after epoch 1 and resumed, against never stopped,
    compared at the END of the last epoch (weights and optimizer), not on the kept
    epoch."""
    if args.epochs < 2:
        raise dl_utils.FriendlyError("--check-resume needs --epochs 2 or more")
    dl_utils.section(f"Resuming, checked: {args.epochs} epochs, stopped after epoch 1 "
                     "or not")
    run = functools.partial(resume_run, args, loaders, device, model_kwargs)
    averages = optimizer_memory(args)
    if averages == "plain SGD":
        lost = "plain SGD: no state"
    else:
        lost = f"{averages} lost"
    with tempfile.TemporaryDirectory() as folder:
        state = Path(folder) / "state.pt"
        never = run()
        stopped = run(save_to=state, stop_after=1)
        if stopped["status"] != "interrupted":  # epoch 1 diverged: nothing was saved
            raise dl_utils.FriendlyError(
                f"--check-resume: training {stopped['status']} "
                f"({stopped['diverged']}): nothing to resume from; try a smaller --lr")
        rows = {}
        rows["stopped after epoch 1, resumed from the whole state"] = run(resume=state)
        rows[f"... but with a fresh optimizer ({lost})"] = run(resume=state,
                                                               keep="no optimizer")
        rows["... but with the loader's generator seeded again"] = run(
            resume=state, keep="no generator")
        rows[f"never stopped, --seed {args.seed + 1} (for scale)"] = run(
            seed=args.seed + 1)
    gaps = dl_utils.print_resume_proof(never, rows)  # each row against never stopping
    explain_resume([max(g) for g in gaps.values()], list(rows.values()), averages)
    whole_state_gap = max(list(gaps.values())[0])
    return 0 if whole_state_gap == 0 else 1


def explain_resume(gaps, runs, averages):
    """What the table shows, sentence by sentence, each printed only if the numbers
    say so."""
    whole, no_opt, no_gen = gaps[:3]
    if whole == 0:
        text = ("The whole state gives the very same weights and optimizer: every "
                "number that influences the next step was saved.")
    else:
        text = ("DIFFERENT: the whole state should give the very same weights on the "
                "CPU; something that influences the next step was not saved.")
    if no_opt > 0 and averages.startswith("Adam"):
        text += (f" Without the optimizer's state, {averages} restart at zero, so the "
                 "run goes on differently: a fresh Adam's first step moves every "
                 "weight by about lr, whatever the size of its gradient (its running "
                 "averages hold only this one gradient), against "
                 f"{runs[0]['first_step']:.2f} x lr with the saved state.")
    elif no_opt > 0:
        text += (f" Without the optimizer's state, {averages} restart at zero, so the "
                 "run goes on differently.")
    elif whole == 0:
        text += (" A fresh optimizer changed nothing here: SGD without momentum keeps "
                 "no state.")
    if no_gen > 0:
        text += " Without the generator's state, epoch 2 shuffles as epoch 1 did."
    if min(no_opt, no_gen) > 0:
        text += (" Both still train, just not the run you stopped (compare another "
                 "seed's).")
    dl_utils.prose(text)


def resume_run(args, loaders, device, model_kwargs, save_to=None, stop_after=None,
               resume=None, keep="all", seed=None):
    """One training run of check_resume, built as a fresh process builds it: fit's
    result with the weights and optimizer state after its last epoch ("final"), that
    epoch's validation accuracy, and the mean size of the first step after resuming
    (in units of lr)."""
    train_loader, val_loader, _ = loaders
    if seed is None:
        seed = args.seed
    dl_utils.set_seed(seed)  # as at the start of main()
    train_loader.generator.manual_seed(seed)
    model = dl_utils.SimpleNN(**model_kwargs).to(device)
    optimizer = make_optimizer(model, args)
    start = None
    first = None
    if resume:
        start = dl_utils.resume_training(resume, SCRIPT, args, model, optimizer, None,
                                         train_loader.generator)
        if keep == "no optimizer":
            optimizer = make_optimizer(model, args)
        if keep == "no generator":
            train_loader.generator.manual_seed(seed)
        first = dl_utils.first_step_size(model, optimizer, train_loader, args.lr,
                                         functools.partial(make_optimizer, args=args))
    final = {}

    def after_epoch(epoch, best, history):  # the state after every epoch, the last kept
        final["model"] = copy.deepcopy(model.state_dict())
        final["optimizer"] = copy.deepcopy(optimizer.state_dict()["state"])
        if save_to:
            dl_utils.save_training_state(save_to, SCRIPT, args, model, model_kwargs,
                                         optimizer, None, train_loader.generator, epoch,
                                         best, history)
    result = dl_utils.fit(model, train_loader, val_loader, optimizer, args.epochs,
                          device, verbose=False, start=start, after_epoch=after_epoch,
                          stop_after=stop_after)
    val_accs = result["history"]["val_acc"]
    last_val_acc = val_accs[-1] if val_accs else 0
    return dict(result, final=final, first_step=first, val_acc=last_val_acc)


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR,
                               num_epochs=NUM_EPOCHS)
    parser.add_argument("--hidden-size", type=dl_utils.positive_int,
                        default=HIDDEN_SIZE,
                        help="hidden units of SimpleNN (default: %(default)s)")
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default=OPTIMIZER,
                        help="adam, or sgd with --momentum (default: %(default)s)")
    parser.add_argument("--momentum", type=dl_utils.fraction, default=MOMENTUM,
                        help="SGD's momentum, in [0, 1) (default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file,
                        default=str(CHECKPOINT),
                        help="where to save the kept model; its training state goes "
                             "beside it as <name>_training.pt (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_resume_args(parser)  # --resume PATH and --stop-after-epoch N
    parser.add_argument("--check-resume", action="store_true",
                        help="the proof that resuming works: train with these settings "
                             "without stopping, and stopped after epoch 1 then "
                             "resumed, and compare the weights (needs --epochs 2 or "
                             "more)")
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


if __name__ == "__main__":
    dl_utils.run_main(main)
