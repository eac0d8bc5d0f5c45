"""Lesson 11: sequences and recurrent networks, on the digits you already know.

Every network so far saw a digit all at once. A recurrent network reads it the way you
read a sentence: one piece at a time, carrying a memory from each piece to the next
(the hidden state h_t). Here the pieces are the image's 28 rows, top to bottom: MNIST
read as a sequence of 28 time steps of 28 pixels each. Same data; one new idea.

    1. shapes: [N, 1, 28, 28] read as [batch, time, features] = [N, 28, 28]
    2. a recurrent cell by hand, h_t = tanh(x_t W_x + h_{t-1} W_h + b), checked number
       for number against nn.RNN with the same weights: outputs and gradients
    3. why plain RNNs struggle: the gradient that reaches each time step, measured for
       a tanh RNN and a GRU; gradient clipping, measured
    4. a GRU trained to the course's standard: validation keeps the epoch, test once
    5. what order means: the same network fed the rows in a fixed random order

Run it:
    python 11_sequences_and_rnns.py                   # the README's results
    python 11_sequences_and_rnns.py --cell lstm       # an LSTM instead of the GRU
    python 11_sequences_and_rnns.py --cell rnn        # a plain tanh RNN: watch it struggle
Then: python 04_load_model.py --checkpoint models/sequence_gru.pt
Exercises: exercises/ex11_sequences.py, checked by python exercises/check.py 11
"""

import copy
import math
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
CELL = "gru"  # "gru", "lstm" or "rnn" (tanh): which recurrent layer reads the rows
HIDDEN = 80  # hidden state size: a GRU of 80 has 27,210 parameters (the goal: <= 30k)
NUM_EPOCHS = 6  # with the one-cycle schedule (lesson 6), enough to pass 98.5% on test
BATCH_SIZE = 128  # a recurrent step is a small matrix product: larger batches use the CPU better
LR = 3e-3  # the schedule's peak, as in lesson 6
CLIP = 1.0  # gradient clipping's threshold in the demonstration (section 3)
ORDER_SUBSET, ORDER_EPOCHS = 10_000, 1  # section 5: a short run per order, same seed
SEED = 0
CHECKPOINT = dl_utils.MODELS_DIR / "sequence_gru.pt"


class SequenceRNN(nn.Module):
    """Reads a digit row by row: [N, 1, 28, 28] -> 28 steps of 28 pixels -> 10 scores.

    The recurrent layer runs one cell over the 28 rows, with the same weights at every
    step (weight sharing again, across time as a CNN's is across space), and returns
    every hidden state; the last one has read the whole digit, so the classifier reads
    it. `order` (a permutation of the rows) is a buffer: it is saved with the weights,
    so a loaded model reads rows in the order it was trained on.
    """

    def __init__(self, cell=CELL, hidden_size=HIDDEN, order=None, num_classes=10):
        super().__init__()
        layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = layer(input_size=28, hidden_size=hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, num_classes)
        self.register_buffer("order", torch.as_tensor(range(28) if order is None else order))

    def forward(self, x):
        rows = x.reshape(len(x), 28, 28)[:, self.order]  # [N, time = 28, features = 28]
        states, _ = self.rnn(rows)  # [N, 28, hidden]: h_1 ... h_28
        return self.head(states[:, -1])


# ---- 2. A recurrent cell by hand ------------------------------------------------------------
def rnn_by_hand(X, W_x, W_h, b):
    """Every hidden state of a tanh RNN over X [N, T, features]: h_0 = 0, then for each t
    h_t = tanh(x_t W_x + h_{t-1} W_h + b). A plain loop: step t needs h_{t-1}, so the
    steps cannot run side by side (why RNNs are slow on long sequences, and one reason
    lesson 12's attention replaced them). Returns [N, T, hidden]."""
    h = torch.zeros(X.shape[0], W_h.shape[0], dtype=X.dtype)
    states = []
    for t in range(X.shape[1]):
        h = torch.tanh(X[:, t] @ W_x + h @ W_h + b)
        states.append(h)
    return torch.stack(states, dim=1)


def check_against_torch(by_hand=rnn_by_hand, hidden=8, seed=0):
    """By hand vs nn.RNN with the same weights, in float64: the largest differences of
    the outputs and of every gradient (a loss that mixes all outputs at random)."""
    torch.manual_seed(seed)
    rnn = nn.RNN(28, hidden, batch_first=True, dtype=torch.float64)
    X = torch.randn(5, 28, 28, dtype=torch.float64, requires_grad=True)
    mix = torch.randn(5, 28, hidden, dtype=torch.float64)
    ours = by_hand(X, rnn.weight_ih_l0.T, rnn.weight_hh_l0.T, rnn.bias_ih_l0 + rnn.bias_hh_l0)
    theirs = rnn(X)[0]  # (torch keeps two biases, b_ih and b_hh: only their sum matters)
    params = [X, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0]
    g_ours = [torch.zeros_like(p) if g is None else g for p, g in zip(params, torch.autograd.grad(
        (ours * mix).sum(), params, allow_unused=True))]  # (a hand cell may skip a weight)
    g_theirs = torch.autograd.grad((theirs * mix).sum(), params)
    names = ["outputs h_1..h_28", "d/d inputs", "d/d W_x", "d/d W_h", "d/d b"]
    return dict(zip(names, [(ours - theirs).abs().max().item()] +
                    [(a - b).abs().max().item() for a, b in zip(g_ours, g_theirs)]))


# ---- 3. Why plain RNNs struggle: the gradient through time ----------------------------------
def cell_of(rnn_layer):
    """The one-step cell (nn.RNNCell, nn.GRUCell, nn.LSTMCell) with a layer's weights."""
    cell = getattr(nn, f"{type(rnn_layer).__name__}Cell")(28, rnn_layer.hidden_size)
    cell.load_state_dict({k.removesuffix("_l0"): v for k, v in rnn_layer.state_dict().items()})
    return cell


def gradient_through_time(rnn_layer, head, X, y):
    """||d loss / d h_t|| for t = 1..28 (mean over the batch), for a trained or fresh
    layer: its cell run step by step (nn.RNNCell, nn.GRUCell, nn.LSTMCell share the
    layer's weights), so that every h_t is a tensor autograd can report on."""
    kind, cell = type(rnn_layer).__name__, cell_of(rnn_layer)
    h = torch.zeros(len(X), rnn_layer.hidden_size)
    c, states = torch.zeros_like(h), []
    for t in range(28):
        h, c = cell(X[:, t], (h, c)) if kind == "LSTM" else (cell(X[:, t], h), c)
        h.retain_grad()  # keep d loss / d h_t (autograd frees it otherwise)
        states.append(h)
    nn.functional.cross_entropy(head(h), y).backward()
    return [s.grad.norm(dim=1).mean().item() for s in states]


def clipping_run(X, y, clip, seed, steps=150, lr=0.2):
    """A tanh RNN trained with plain SGD at a large step (no Adam to tame it), with or
    without clip_grad_norm_. Returns (gradient norms before clipping, losses)."""
    torch.manual_seed(seed)
    model = SequenceRNN("rnn", 64)
    nn.init.orthogonal_(model.rnn.weight_hh_l0)  # the usual start for a recurrent matrix
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    norms, losses = [], []
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=g)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        # clip_grad_norm_ rescales all gradients together when their total norm exceeds
        # `clip` (the direction is kept, the step is shortened); it returns the norm before
        norm = nn.utils.clip_grad_norm_(model.parameters(), clip or float("inf"))
        optimizer.step()
        norms.append(norm.item())
        losses.append(loss.item())
    return norms, losses


# ---- 4. Training: lesson 3's loop, lesson 6's schedule ------------------------------------------
def make_model(args, order=None):
    kwargs = {"cell": args.cell, "hidden_size": args.hidden_size, "order": order}
    return SequenceRNN(**kwargs), kwargs


def train(model, loaders, args, epochs, device, verbose=True):
    """Adam with a one-cycle schedule (lesson 6), lesson 3's fit: the best epoch is kept."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=epochs, steps_per_epoch=len(loaders[0]),
        cycle_momentum=False)
    result = dl_utils.fit(model, loaders[0], loaders[1], optimizer, epochs, device,
                          verbose=verbose, scheduler=scheduler)
    if result["status"] == "diverged":
        raise dl_utils.FriendlyError(f"training diverged ({result['diverged']}) with lr "
                                     f"{args.lr}: try a smaller --lr")
    return result


# ---- The lesson ----------------------------------------------------------------------------
def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR, num_epochs=NUM_EPOCHS)
    parser.add_argument("--cell", choices=["gru", "lstm", "rnn"], default=CELL,
                        help="the recurrent layer (default: %(default)s)")
    parser.add_argument("--hidden-size", type=dl_utils.positive_int, default=HIDDEN,
                        help="size of the hidden state (default: %(default)s)")
    parser.add_argument("--clip", type=dl_utils.positive_float, default=CLIP,
                        help="section 3's clipping threshold (default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file, default=str(CHECKPOINT),
                        help="where to save the kept model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_results_arg(parser)  # make tables reads it
    dl_utils.add_common_args(parser, seed=SEED)
    return parser.parse_args(argv)


def shapes(model, X):
    """One batch through the network, step by step, with its shapes."""
    rows = X.reshape(len(X), 28, 28)
    states, _ = model.rnn(rows)
    dl_utils.print_table(["what", "shape", "meaning"], [
        ["images", list(X.shape), "[batch, channel, height, width]"],
        ["rows", list(rows.shape), "[batch, time, features]: batch_first=True"],
        ["hidden states", list(states.shape), "h_1 ... h_28, one per row read"],
        ["last state", list(states[:, -1].shape), "has read all 28 rows"],
        ["scores", list(model.head(states[:, -1]).shape), "10 classes"]])


def through_time_section(X, y, args):
    """The gradient reaching each step, at initialization, for each kind of cell."""
    curves = {}
    for cell in ("rnn", "lstm", "gru"):
        torch.manual_seed(args.seed)
        fresh = SequenceRNN(cell, args.hidden_size)
        curves[fresh.rnn.__class__.__name__] = gradient_through_time(fresh.rnn, fresh.head, X, y)
    dl_utils.print_table(["cell", *(f"t={t}" for t in (1, 7, 14, 21, 28)), "t=1 / t=28"],
                         [[name, *(f"{c[t - 1]:.1e}" for t in (1, 7, 14, 21, 28)),
                           f"{c[0] / c[-1]:.1e}"] for name, c in curves.items()])
    return curves


def clipping_section(X, y, clip, seed, seeds=3):
    """Clipped and unclipped, the same seeds: the loss over the last 20 steps, paired."""
    runs = {name: [clipping_run(X, y, c, seed + k) for k in range(seeds)]
            for name, c in ((f"clip at {clip:g}", clip), ("no clipping", None))}
    end = {name: [sum(losses[-20:]) / 20 for _, losses in r] for name, r in runs.items()}
    dl_utils.print_table(["run", "largest gradient norm", f"steps over {clip:g}",
                          f"loss, last 20 steps (mean ± SE, {seeds} seeds)"],
                         [[name, f"{max(max(n) for n, _ in r):.3g}",
                           f"{sum(sum(v > clip for v in n) for n, _ in r) / seeds:.0f}",
                           f"{dl_utils.mean_se(end[name])[0]:.3f} ± "
                           f"{dl_utils.mean_se(end[name])[1]:.3f}"] for name, r in runs.items()])
    return dl_utils.paired_difference(*end.values())  # clipped minus unclipped


def order_section(args, device):
    """The same network and seed on the rows in order, and in one fixed random order."""
    perm = torch.randperm(28, generator=torch.Generator().manual_seed(args.seed)).tolist()
    found = {}
    for name, order in (("rows in order", None), ("rows shuffled (fixed)", perm)):
        generator = dl_utils.set_seed(args.seed)
        loaders = dl_utils.load_mnist_data(args.batch_size, subset=ORDER_SUBSET, device=device,
                                           generator=generator)[:2]
        model = make_model(args, order)[0].to(device)
        found[name] = train(model, loaders, args, ORDER_EPOCHS, device, verbose=False)
    dl_utils.print_table(["rows fed", "val acc % (1 epoch, 10,000 images)"],
                         [[name, f"{100 * r['best_val_acc']:.2f}"] for name, r in found.items()])
    return perm, found


def plot_through_time(curves, show):
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, c in curves.items():
        ax.semilogy(range(1, 29), c, marker="o", markersize=3, label=name)
    ax.set_xlabel("time step t (row of the image)")
    ax.set_ylabel("||d loss / d h_t||")
    ax.set_title("How much gradient reaches each step (256 validation digits)")
    ax.legend()
    dl_utils.save_figure(fig, "11_gradient_through_time.png", show)


def explain_through_time(curves):
    ratio = {name: c[0] / c[-1] for name, c in curves.items()}
    weakest = min(ratio, key=ratio.get)
    dl_utils.prose(f"""
        The loss is computed after step 28; its gradient travels back through every
        step, multiplied each time by the step's Jacobian (for a tanh RNN: W_h times the
        tanh's slope, at most 1). Here the gradient that reaches step 1 is
        {', '.join(f'{ratio[n]:.1e} x' for n in ratio)} that at step 28 for
        {', '.join(ratio)}: weakest for {weakest}. A factor far below 1 means the first
        rows barely teach the network ("vanishing gradients"); above 1 for many steps, it
        explodes. Gates (LSTM, GRU) add a path along which the state is copied, scaled by
        a learned gate instead of squashed through W_h and tanh, so a memory can survive
        many steps once the gates learn to keep it; at initialization, as here, the
        gates sit near 0.5 and have learned nothing yet.""")


def explain_clipping(d, clip):
    word = dl_utils.interval_verdict(d, "clipping made it worse", "clipping trained better",
                                     "no difference these seeds can see")
    dl_utils.prose(f"""
        Clipping rescales any gradient longer than {clip:g} to length {clip:g} (the same
        direction, a shorter step), so one huge gradient cannot throw the weights far
        away. Clipped minus unclipped, final loss: {d['mean']:+.3f} [{d['low']:+.3f},
        {d['high']:+.3f}] (95%, paired by seed): {word}. Clipping treats the symptom,
        one huge step; gates treat the cause.""")


def explain_trained(curves, name):
    fresh, trained = curves[name], curves[f"{name}, trained"]
    before, after = fresh[0] / fresh[-1], trained[0] / trained[-1]
    dl_utils.prose(f"""
        After training, the gradient reaching step 1 is {after:.1e} x that at step 28
        ({before:.1e} x at initialization): {'the gates learned to carry the early rows '
        'further' if after > before else 'no more of it reaches the first rows than before'}.
        11_gradient_through_time.png draws every curve.""")


def explain_order(found):
    (a, ra), (b, rb) = found.items()
    acc = {a: ra["best_val_acc"], b: rb["best_val_acc"]}
    se = math.hypot(*(dl_utils.accuracy_se(v, dl_utils.VAL_SIZE) for v in acc.values()))
    gap = acc[a] - acc[b]
    said = (f"{a if gap > 0 else b} read better, by {100 * abs(gap):.2f} points" if abs(gap)
            > 1.96 * se else "the two cannot be told apart")
    learned = ("" if min(acc.values()) < 0.5 else " Both are far above chance (10%): a "
               "fixed order, the same for every image, is a convention the network learns; "
               "the recurrence only ever sees one row at a time, in the order given.")
    dl_utils.prose(f"""
        One short run each, same seed: {said} (the 95% margin for two accuracies on 5,000
        validation images is {100 * 1.96 * se:.2f} points).{learned}""")


def main(argv=None):
    args = parse_args(argv)
    device, loaders = dl_utils.setup(args)
    dl_utils.section("1. MNIST as a sequence: 28 rows of 28 pixels")
    model, model_kwargs = make_model(args)
    model = model.to(device)
    shapes(model, loaders[0].X[:args.batch_size])
    print(f"{type(model.rnn).__name__}({args.hidden_size}): "
          f"{dl_utils.count_parameters(model):,} parameters")
    dl_utils.section("2. A recurrent cell by hand, against nn.RNN")
    if not dl_utils.match_table(check_against_torch(), "compared with nn.RNN (float64)"):
        raise dl_utils.FriendlyError("the hand-written RNN differs from nn.RNN: see the table")
    dl_utils.section("3. Why plain RNNs struggle: the gradient through time")
    val = loaders[1]
    X, y = val.X[:256].cpu().reshape(256, 28, 28), val.y[:256].cpu()
    curves = through_time_section(X, y, args)
    explain_through_time(curves)
    train_X, train_y = loaders[0].X[:10_000].cpu(), loaders[0].y[:10_000].cpu()
    explain_clipping(clipping_section(train_X, train_y, args.clip, args.seed), args.clip)
    dl_utils.section(f"4. A {args.cell.upper()} trained: {args.epochs} epochs, one-cycle lr "
                     f"{args.lr:g}")
    dl_utils.set_seed(args.seed)  # the same start whatever sections 2-3 drew
    result = train(model, loaders, args, args.epochs, device)
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.compare_with_course(  # the other lessons' saved models, as they recorded them
        dl_utils.MODELS_DIR, f"{type(model.rnn).__name__} (11)", dl_utils.count_parameters(model),
        metrics, result["train_seconds"], "(One run each, with its own recipe: a fair judgement "
        "pairs seeds, as the README's architectures table does.)")
    name, trained = type(model.rnn).__name__, copy.deepcopy(model).cpu()
    curves[f"{name}, trained"] = gradient_through_time(trained.rnn, trained.head, X, y)
    explain_trained(curves, name)
    plot_through_time(curves, args.show)
    dl_utils.section("5. What order means: the rows shuffled")
    perm, found = order_section(args, device)
    print(f"(Fixed random order of the rows: {perm})")
    explain_order(found)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(Path(args.checkpoint), args, model, model_kwargs, result,
                             metrics, device)
    dl_utils.save_run_results(Path(__file__).name, args, device, result, metrics,
                              parameters=dl_utils.count_parameters(model))  # (make tables)
    print(f"\nNext: python 04_load_model.py --checkpoint {dl_utils.display_path(args.checkpoint)}")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
