"""Lesson 11: sequences and recurrent networks, on the digits you already know.

Every network so far saw a digit all at once. A recurrent network reads it the way you
read a sentence: one piece at a time, carrying a memory from each piece to the next
(the hidden state h_t). Here the pieces are the image's 28 rows, top to bottom: MNIST
read as a sequence of 28 time steps of 28 pixels each. Same data; one new idea.

    1. shapes: [N, 1, 28, 28] read as [batch, time, features] = [N, 28, 28]
    2. a recurrent cell by hand, h_t = tanh(x_t W_x + h_{t-1} W_h + b), checked number
       for number against nn.RNN with the same weights: outputs and gradients
    3. why plain RNNs struggle: the gradient that reaches each time step, measured for
       a tanh RNN, an LSTM and a GRU, each at PyTorch's default start and at the start
       practitioners give it; gradient clipping, measured
    4. a GRU trained to the course's standard: validation keeps the epoch, test once
    5. what order means: the same network fed the rows in a fixed random order

Run it:
    python 11_sequences_and_rnns.py                   # the README's results
    python 11_sequences_and_rnns.py --cell lstm       # an LSTM instead of the GRU
    python 11_sequences_and_rnns.py --cell rnn        # a plain tanh RNN: no gates
Then: python 04_load_model.py --checkpoint models/sequence_gru.pt
Exercises: exercises/ex11_sequences.py, checked by python exercises/check.py 11
"""

import copy
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
CELL = "gru"  # "gru", "lstm" or "rnn" (tanh): which recurrent layer reads the rows
HIDDEN = 80  # hidden state size: a GRU of 80 has 27,210 parameters
# Epochs: a budget, with the one-cycle schedule (lesson 6); the README's architectures
# table measures this default at 98.59 ± 0.09% on validation (3 seeds)
NUM_EPOCHS = 6
BATCH_SIZE = 128  # a recurrent step is a small matrix product: big batches use the CPU
LR = 3e-3  # the schedule's peak, as in lesson 6
CLIP = 1.0  # gradient clipping's threshold in the demonstration (section 3)
ORDER_SUBSET = 10_000  # section 5: a short run per order, the same seed...
ORDER_EPOCHS = 1  # ...and one epoch each
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
        if order is None:
            order = range(28)
        self.register_buffer("order", torch.as_tensor(order))

    def forward(self, x):
        rows = x.reshape(len(x), 28, 28)[:, self.order]  # [N, time = 28, features = 28]
        states, _ = self.rnn(rows)  # [N, 28, hidden]: h_1 ... h_28
        return self.head(states[:, -1])


# ---- 2. A recurrent cell by hand -------------------------------------------------
def rnn_by_hand(X, W_x, W_h, b):
    """Every hidden state of a tanh RNN over X [N, T, features]: h_0 = 0, then for
    each t, h_t = tanh(x_t W_x + h_{t-1} W_h + b). A plain loop: step t needs h_{t-1},
    so the steps cannot run side by side (why RNNs are slow on long sequences, and one
    reason lesson 12's attention replaced them). Returns [N, T, hidden]."""
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
    # (torch keeps two biases, b_ih and b_hh: only their sum matters)
    b = rnn.bias_ih_l0 + rnn.bias_hh_l0
    ours = by_hand(X, rnn.weight_ih_l0.T, rnn.weight_hh_l0.T, b)
    theirs = rnn(X)[0]
    params = [X, rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0]
    # (allow_unused: a wrong hand cell may skip a weight; its gradient is then 0)
    g_ours = torch.autograd.grad((ours * mix).sum(), params, allow_unused=True)
    g_theirs = torch.autograd.grad((theirs * mix).sum(), params)
    names = ["d/d inputs", "d/d W_x", "d/d W_h", "d/d b"]
    diffs = {"outputs h_1..h_28": (ours - theirs).abs().max().item()}
    for name, p, a, b in zip(names, params, g_ours, g_theirs):
        if a is None:
            a = torch.zeros_like(p)
        diffs[name] = (a - b).abs().max().item()
    return diffs


# ---- 3. Why plain RNNs struggle: the gradient through time -----------------------
def cell_of(rnn_layer):
    """The one-step cell (nn.RNNCell, nn.GRUCell, nn.LSTMCell) with a layer's
    weights."""
    cell = getattr(nn, f"{type(rnn_layer).__name__}Cell")(28, rnn_layer.hidden_size)
    weights = {}
    for name, w in rnn_layer.state_dict().items():  # weight_hh_l0 -> weight_hh
        weights[name.removesuffix("_l0")] = w
    cell.load_state_dict(weights)
    return cell


def gradient_through_time(rnn_layer, head, X, y):
    """||d loss / d h_t|| for t = 1..28 (mean over the batch), for a trained or fresh
    layer: its cell run step by step (nn.RNNCell, nn.GRUCell, nn.LSTMCell share the
    layer's weights), so that every h_t is a tensor autograd can report on."""
    cell = cell_of(rnn_layer)
    h = torch.zeros(len(X), rnn_layer.hidden_size)
    c = torch.zeros_like(h)  # (the LSTM's second state, its "cell")
    states = []
    for t in range(28):
        if isinstance(rnn_layer, nn.LSTM):
            h, c = cell(X[:, t], (h, c))
        else:
            h = cell(X[:, t], h)
        h.retain_grad()  # keep d loss / d h_t (autograd frees it otherwise)
        states.append(h)
    nn.functional.cross_entropy(head(h), y).backward()
    return [s.grad.norm(dim=1).mean().item() for s in states]


USUAL_STARTS = {"RNN": "orthogonal W_h", "LSTM": "forget bias 1",
                "GRU": "update bias 1"}


def usual_start(layer):
    """The start practitioners give each cell instead of PyTorch's default, which draws
    every weight uniformly in +-1/sqrt(hidden size):
    - tanh RNN: an orthogonal W_h, which keeps the length of every vector it multiplies
      (Saxe et al. 2014), so the state neither shrinks nor grows step after step;
    - LSTM: the forget gate's bias at 1 (Jozefowicz et al. 2015): the gate starts at
      sigmoid(1) = 0.73, keeping most of the cell's state from step to step;
    - GRU: the update gate's bias at 1: h_t = (1 - z) n + z h_{t-1} in PyTorch's GRU,
      so z near 0.73 keeps most of h_{t-1}.
    PyTorch stacks the gates' biases in one vector (LSTM: input, forget, cell, output;
    GRU: reset, update, new), so the gate is the second block of hidden_size numbers."""
    h = layer.hidden_size
    with torch.no_grad():
        if isinstance(layer, nn.RNN):
            nn.init.orthogonal_(layer.weight_hh_l0)
        else:  # two biases, b_ih and b_hh: their sum is the gate's bias
            layer.bias_ih_l0[h:2 * h] = 1.0
            layer.bias_hh_l0[h:2 * h] = 0.0
    return layer


def clipping_run(X, y, clip, seed, steps=150, lr=0.2):
    """A tanh RNN trained with plain SGD at a large step (no Adam to tame it), with or
    without clip_grad_norm_. Returns (gradient norms before clipping, losses)."""
    torch.manual_seed(seed)
    model = SequenceRNN("rnn", 64)
    nn.init.orthogonal_(model.rnn.weight_hh_l0)  # the usual start (usual_start, above)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    norms = []
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(y), (64,), generator=g)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
        loss.backward()
        # clip_grad_norm_ rescales all gradients together when their total norm
        # exceeds `clip` (the direction is kept, the step is shortened); it returns
        # the norm measured BEFORE clipping
        norm = nn.utils.clip_grad_norm_(model.parameters(), clip or float("inf"))
        optimizer.step()
        norms.append(norm.item())
        losses.append(loss.item())
    return norms, losses


# ---- 4. Training: lesson 3's loop, lesson 6's schedule ---------------------------
def make_model(args, order=None):
    kwargs = {"cell": args.cell, "hidden_size": args.hidden_size, "order": order}
    return SequenceRNN(**kwargs), kwargs


def train(model, loaders, args, epochs, device, verbose=True):
    """Adam with a one-cycle schedule (lesson 6), lesson 3's fit: the best epoch is
    kept."""
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=epochs, steps_per_epoch=len(loaders[0]),
        cycle_momentum=False)
    result = dl_utils.fit(model, loaders[0], loaders[1], optimizer, epochs, device,
                          verbose=verbose, scheduler=scheduler)
    if result["status"] == "diverged":
        raise dl_utils.FriendlyError(f"training diverged ({result['diverged']}) with "
                                     f"lr {args.lr}: try a smaller --lr")
    return result


# ---- The lesson ------------------------------------------------------------------
def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR,
                               num_epochs=NUM_EPOCHS)
    parser.add_argument("--cell", choices=["gru", "lstm", "rnn"], default=CELL,
                        help="the recurrent layer (default: %(default)s)")
    parser.add_argument("--hidden-size", type=dl_utils.positive_int, default=HIDDEN,
                        help="size of the hidden state (default: %(default)s)")
    parser.add_argument("--clip", type=dl_utils.positive_float, default=CLIP,
                        help="section 3's clipping threshold, a gradient norm "
                             "(default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file,
                        default=str(CHECKPOINT),
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
        ["scores", list(model.head(states[:, -1]).shape), "one per class, 0 to 9"]])


def through_time_section(X, y, args):
    """The gradient reaching each step, at initialization: each kind of cell at
    PyTorch's default start, then at its usual one (usual_start). Returns the curves
    and the spectral radius of the default RNN's W_h."""
    curves = {}
    for cell in ("rnn", "lstm", "gru"):
        for usual in (False, True):
            torch.manual_seed(args.seed)
            fresh = SequenceRNN(cell, args.hidden_size)
            name = type(fresh.rnn).__name__
            if usual:
                usual_start(fresh.rnn)
                name = f"{name}, {USUAL_STARTS[name]}"
            elif cell == "rnn":  # the size of W_h's largest eigenvalue
                eigenvalues = torch.linalg.eigvals(fresh.rnn.weight_hh_l0.detach())
                radius = eigenvalues.abs().max().item()
            curves[name] = gradient_through_time(fresh.rnn, fresh.head, X, y)
    steps = (1, 7, 14, 21, 28)
    rows = []
    for name, c in curves.items():
        rows.append([name, *[f"{c[t - 1]:.1e}" for t in steps], f"{c[0] / c[-1]:.1e}"])
    headers = ["fresh cell, start", *[f"t={t}" for t in steps], "t=1 / t=28"]
    dl_utils.print_table(headers, rows)
    return curves, radius


def clipping_section(X, y, clip, seed, seeds=3):
    """Clipped and unclipped, the same seeds: the loss over the last 20 steps, paired.
    Returns the paired difference and the gradient norms, measured before clipping."""
    runs = {f"clip at {clip:g}": [], "no clipping": []}
    for k in range(seeds):
        runs[f"clip at {clip:g}"].append(clipping_run(X, y, clip, seed + k))
        runs["no clipping"].append(clipping_run(X, y, None, seed + k))
    end = {}
    norms = {}
    rows = []
    for name, found in runs.items():
        end[name] = [sum(losses[-20:]) / 20 for _, losses in found]
        norms[name] = torch.tensor([n for run_norms, _ in found for n in run_norms])
        over = (norms[name] > clip).sum().item() / seeds
        mean, se = dl_utils.mean_se(end[name])
        rows.append([name, f"{norms[name].median():.2f}", f"{norms[name].max():.2f}",
                     f"{over:.0f}", f"{mean:.3f} ± {se:.3f}"])
    steps = len(runs["no clipping"][0][0])
    dl_utils.print_table(["run", "median norm", "largest norm", f"steps over {clip:g}",
                          "loss, last 20 steps"], rows)
    print(f"(Gradient norms measured BEFORE clipping; {steps} steps per run; the loss: "
          f"mean ± SE over {seeds} seeds.)")
    d = dl_utils.paired_difference(*end.values())  # clipped minus unclipped
    return d, norms["no clipping"], steps


def order_section(args, device):
    """The same network and seed on the rows in order, and in one fixed random order.

    Where order does matter, measured by benchmarks/row_order.py with this lesson's
    code (seeds 0-2, paired by seed, 1 epoch on 10,000 images): which rows come LAST.
    The head reads only the final state, and MNIST's last rows are nearly blank (rows
    25-27: mean brightness 0.001-0.021, against about 0.2 in the middle rows). A
    shuffle ending on its three blankest rows read 15.5 points worse than the same
    shuffle ending on its three inkiest, [-28.2, -2.9] (95%); rows in order, which end
    blank too, read 6.5 points worse, [-13.2, +0.2]: no clear difference with 3 seeds.
    A GRU carries early rows across blank ones, but not for free."""
    generator = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(28, generator=generator).tolist()
    found = {}
    for name, order in (("rows in order", None), ("rows shuffled (fixed)", perm)):
        generator = dl_utils.set_seed(args.seed)
        loaders = dl_utils.load_mnist_data(args.batch_size, subset=ORDER_SUBSET,
                                           device=device, generator=generator)[:2]
        model = make_model(args, order)[0].to(device)
        found[name] = train(model, loaders, args, ORDER_EPOCHS, device, verbose=False)
    rows = []
    for name, r in found.items():
        rows.append([name, f"{100 * r['best_val_acc']:.2f}"])
    trained = f"val acc % ({ORDER_EPOCHS} epoch, {ORDER_SUBSET:,} images)"
    dl_utils.print_table(["rows fed", trained], rows)
    return perm, found


def plot_through_time(curves, show):
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, c in curves.items():
        ax.semilogy(range(1, 29), c, marker="o", markersize=3, label=name)
    ax.set_xlabel("time step t (row of the image)")
    ax.set_ylabel("||d loss / d h_t||")
    ax.set_title("How much gradient reaches each step (256 validation digits)")
    ax.legend(fontsize=8)
    dl_utils.save_figure(fig, "11_gradient_through_time.png", show)


def explain_through_time(curves, radius, hidden_size):
    ratio = {}
    for name, c in curves.items():
        ratio[name] = c[0] / c[-1]
    default = {"RNN": ratio["RNN"], "LSTM": ratio["LSTM"], "GRU": ratio["GRU"]}
    usual = {}
    for name, start in USUAL_STARTS.items():
        usual[name] = ratio[f"{name}, {start}"]
    weakest = min(default, key=default.get)
    said = []
    for name in default:
        said.append(f"{default[name]:.1e} x for the {name}")
    said_usual = []
    for name, start in USUAL_STARTS.items():
        said_usual.append(f"{usual[name]:.1e} x for the {name} with {start}")
    if usual["RNN"] > max(default["LSTM"], default["GRU"]):
        even = ""
        if usual["RNN"] > max(usual["LSTM"], usual["GRU"]):
            even = ", and more even than at their usual starts"
        compared = ("With an orthogonal W_h, the plain RNN passes back more than the "
                    f"LSTM and the GRU at their default{even}: part of what looks like "
                    "a weakness of plain RNNs is PyTorch's default start.")
    else:
        compared = ("Even with an orthogonal W_h, the plain RNN passes back less than "
                    "the LSTM and the GRU at their default.")
    dl_utils.prose(f"""
        The loss is computed after step 28; its gradient travels back through every
        step, multiplied each time by the step's Jacobian: the matrix of how much each
        of h_t's numbers moves with each of h_(t-1)'s (for a tanh RNN: W_h times the
        tanh's slope, at most 1). A factor far below 1 per step means the first rows
        barely teach the network ("vanishing gradients"); above 1 for many steps, the
        gradient explodes. At PyTorch's default start the gradient that reaches step 1
        is {', '.join(said)} (of that at step 28): weakest for the {weakest}. That
        default draws every weight uniformly in ±1/sqrt({hidden_size}), which leaves
        the RNN's W_h with a spectral radius (the size of its largest eigenvalue) of
        {radius:.2f}: the gradient shrinks by about that factor per step before tanh's
        slope is even counted.

        At the usual starts it is {', '.join(said_usual)}. {compared} Initialization
        decides how much gradient reaches step 1 at the start; gates decide whether
        training can keep it there. A gate (LSTM, GRU) adds a path along which the
        state is copied, scaled by a learned number between 0 and 1 instead of squashed
        through W_h and tanh, so a memory can survive many steps once the gates learn
        to keep it.""")


def explain_clipping(d, clip, norms, steps):
    word = dl_utils.interval_verdict(d, "clipping made it worse",
                                     "clipping trained better", "no clear difference")
    share = (norms > clip).float().mean().item()
    spikes = torch.quantile(norms, 0.9).item()
    peak = (norms.max() / norms.median()).item()
    if share > 0.5:
        acted = (f"At {clip:g} it shortened {100 * share:.0f}% of the unclipped run's "
                 "steps: nearly every step, so here it fixes every step's length to "
                 f"lr x {clip:g} (normalized gradient descent) rather than guarding "
                 f"against a rare spike. The largest norm is {peak:.1f} times the "
                 f"median. --clip {spikes:.2g}, the 90th percentile of the unclipped "
                 "norms, would touch only the longest tenth of the steps.")
    else:
        acted = (f"At {clip:g} it shortened {100 * share:.0f}% of the unclipped run's "
                 f"steps: only the longest ones (the largest is {peak:.1f} times the "
                 "median).")
    dl_utils.prose(f"""
        Clipping rescales a gradient longer than {clip:g} to length {clip:g} (the same
        direction, a shorter step). {acted} Clipped minus unclipped, final loss:
        {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] (95%, paired by seed):
        {word}. Clipping stops an exploding gradient from throwing the weights away;
        gates give a vanishing gradient a path to survive. They answer different
        failures, which is why LSTMs are still trained with clipping.""")


def explain_trained(curves, name):
    fresh = curves[name]
    trained = curves[f"{name}, trained"]
    before = fresh[0] / fresh[-1]
    after = trained[0] / trained[-1]
    if after <= before:
        happened = f"no more of it reaches the first rows than in the fresh {name}"
    elif name == "RNN":  # no gates: training changed W_h and the biases
        happened = (f"training moved the plain {name}'s W_h and biases so that more of "
                    "it reaches the first rows")
    else:
        happened = f"the {name}'s gates learned to carry the early rows further"
    dl_utils.prose(f"""
        After training, the gradient reaching step 1 of the {name} is {after:.1e} x that
        at step 28 ({before:.1e} x at PyTorch's default start): {happened}.
        11_gradient_through_time.png draws every curve.""")


def explain_order(found):
    lowest = min(r["best_val_acc"] for r in found.values())
    if lowest >= 0.5:
        learned = ("Both orders read far above chance (10%): a fixed order, the same "
                   "for every image, is a convention the network learns; the "
                   "recurrence only ever sees one row at a time, in the order given.")
    else:
        learned = ("At least one order is still below 50% after this short run: more "
                   "training would show whether both orders can be learned.")
    dl_utils.prose(f"""
        {learned} One short run per order, with one seed, cannot say which order reads
        better: that verdict would need several seeds, paired, as lessons 5 and 7
        judge, and the point here needs none.""")


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
    diffs = check_against_torch()
    if not dl_utils.match_table(diffs, "compared with nn.RNN (float64)"):
        raise dl_utils.FriendlyError(
            "the hand-written RNN differs from nn.RNN: see the table")
    dl_utils.section("3. Why plain RNNs struggle: the gradient through time")
    X = loaders[1].X[:256].cpu().reshape(256, 28, 28)
    y = loaders[1].y[:256].cpu()
    curves, radius = through_time_section(X, y, args)
    explain_through_time(curves, radius, args.hidden_size)
    train_X = loaders[0].X[:10_000].cpu()
    train_y = loaders[0].y[:10_000].cpu()
    d, norms, steps = clipping_section(train_X, train_y, args.clip, args.seed)
    explain_clipping(d, args.clip, norms, steps)
    dl_utils.section(f"4. A {args.cell.upper()} trained: {args.epochs} epochs, "
                     f"one-cycle lr {args.lr:g}")
    dl_utils.set_seed(args.seed)  # the same start whatever sections 2-3 drew
    result = train(model, loaders, args, args.epochs, device)
    metrics = dl_utils.report(model, loaders, device)
    name = type(model.rnn).__name__
    size = dl_utils.count_parameters(model)
    dl_utils.compare_with_course(  # the other lessons' saved models, as they recorded
        dl_utils.MODELS_DIR, f"{name} (11)", size, metrics, result["train_seconds"],
        "(One run each, with its own recipe: a fair judgement pairs seeds, as the "
        "README's architectures table does.)")
    trained = copy.deepcopy(model).cpu()
    curves[f"{name}, trained"] = gradient_through_time(trained.rnn, trained.head, X, y)
    explain_trained(curves, name)
    plot_through_time(curves, args.show)
    dl_utils.section("5. What order means: the rows shuffled")
    perm, found = order_section(args, device)
    dl_utils.prose(f"(The fixed random order of the rows: {perm})")
    explain_order(found)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(Path(args.checkpoint), args, model, model_kwargs, result,
                             metrics, device)
    dl_utils.save_run_results(Path(__file__).name, args, device, result, metrics,
                              parameters=size)  # (make tables reads it)
    print(f"\nNext: python 04_load_model.py --checkpoint "
          f"{dl_utils.display_path(args.checkpoint)}")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
