"""Lesson 12: attention and a small Vision Transformer, on the digits you already know.

Lesson 11 read a digit one row at a time, carrying a memory from step to step. A
Transformer drops the memory: it cuts the digit into pieces ("tokens") and lets every
piece look at every other piece at once, weighting each by how relevant it looks. That
weighting is attention, the idea behind today's language models, applied here to 16
tiles of 7x7 pixels: a Vision Transformer (ViT, Dosovitskiy et al. 2020).

    1. tokens: a digit cut into 16 patches of 7x7 pixels, [N, 16, 49]
    2. attention by hand, softmax(Q K^T / sqrt(d)) V, checked number for number against
       F.scaled_dot_product_attention and nn.MultiheadAttention; why the 1/sqrt(d)
    3. a Vision Transformer written out, every shape printed once
    4. trained to the course's standard: validation keeps the epoch, test once
    5. what position embeddings do: the patches shuffled
    6. inductive bias: the ViT against lesson 6's CNN on 1,000 images, equal steps
    7. where the class token looks; which network to use

Run it:
    python 12_attention_and_transformers.py                  # the README's results
    python 12_attention_and_transformers.py --patch 4        # 49 tokens of 4x4: slower
    python 12_attention_and_transformers.py --sizes 1000 5000 55000 --small-steps 1280  # README
Then: python 04_load_model.py --checkpoint models/vit.pt
Exercises: exercises/ex12_attention.py, checked by python exercises/check.py 12
"""

import itertools
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
PATCH = 7  # 7x7 pixels per token: 16 tokens. 4x4 gives 49 (attention costs tokens^2)
DIM = 64  # the width of every token: 64 numbers
DEPTH = 4  # Transformer blocks; 4 of width 64 give 139,018 parameters (the goal: <= 200k)
HEADS = 4  # attention heads per block, each of width DIM / HEADS = 16
MLP_SIZE = 128  # hidden units of each block's MLP (2x DIM; the original ViT uses 4x)
NUM_EPOCHS = 5  # one-cycle (lesson 6): past 98% on test; 7 (until 2026-12-06): +0.16 val, 1.4x time
BATCH_SIZE = 128
LR = 3e-3  # the schedule's peak, as in lessons 6 and 11
WEIGHT_DECAY = 0.05  # AdamW's decoupled decay (07b), the usual choice for Transformers
MAX_SHIFT = 2  # lesson 6's random shifts: a ViT has no built-in notion of "nearby"
SIZES = (1000,)  # section 6: training-set sizes (make tables: 1000 5000 55000, 3 seeds)
POSITIONS_N = 1000  # section 5: the short runs with and without positions see this many
SMALL_STEPS = 160  # sections 5-6: the same steps for every network at every size (short)
ROUNDS = 4  # ... in 4 rounds, each ending with a look at validation (the best is kept)
SEED = 0
CHECKPOINT = dl_utils.MODELS_DIR / "vit.pt"


# ---- 1. Tokens ----------------------------------------------------------------------------
def patchify(X, patch=PATCH):
    """[N, 1, 28, 28] -> [N, tokens, patch * patch]: the image cut into patch x patch
    tiles, read left to right, top to bottom, each tile flattened into one token."""
    n = 28 // patch
    return X.reshape(len(X), n, patch, n, patch).permute(0, 1, 3, 2, 4).reshape(
        len(X), n * n, patch * patch)


# ---- 2. Attention by hand -----------------------------------------------------------------
def attention(Q, K, V, mask=None):
    """Scaled dot-product attention: softmax(Q K^T / sqrt(d)) V, and its weights.

    Q [..., T_q, d]: what each token looks for; K [..., T_k, d]: what each offers;
    V [..., T_k, d_v]: what each passes on. A query's weight on a key grows with their
    dot product; softmax over the keys makes each query's weights sum to 1, so every
    output is a weighted average of the values. mask [..., T_q, T_k] (True: may look),
    as F.scaled_dot_product_attention's attn_mask; a masked score becomes -inf, and
    softmax gives it weight 0. Returns (output [..., T_q, d_v], weights [..., T_q, T_k]).
    """
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # [..., T_q, T_k]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # over the keys: each row sums to 1
    return weights @ V, weights


class SelfAttention(nn.Module):
    """Multi-head self-attention: the tokens attend to each other, in `heads` groups.

    One Linear makes every token's query, key and value for all heads at once (the layout
    of nn.MultiheadAttention's in_proj_weight); each head attends within its own DIM /
    heads numbers, so heads can look for different things; `out` mixes them back. The
    last weights are kept for the attention maps (section 7).
    """

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.attend, self.weights = heads, attention, None
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        N, T, D = x.shape  # [batch, tokens, dim]
        q, k, v = self.qkv(x).reshape(N, T, 3, self.heads, D // self.heads).permute(
            2, 0, 3, 1, 4)  # 3 x [N, heads, T, D / heads]
        out, weights = self.attend(q, k, v)
        self.weights = weights.detach()  # [N, heads, T, T]
        return self.out(out.transpose(1, 2).reshape(N, T, D))  # heads side by side again


def check_against_torch(by_hand=attention, seed=0):
    """By hand vs PyTorch, the same inputs and weights, in float64: the largest
    differences of the outputs and of the gradients."""
    torch.manual_seed(seed)
    Q, K, V = (torch.randn(2, 4, 17, 16, dtype=torch.float64, requires_grad=True)
               for _ in range(3))  # [batch, heads, tokens, d]
    mask = (torch.rand(17, 17) > 0.3) | torch.eye(17, dtype=torch.bool)  # each keeps a key
    diffs, gaps = {}, dl_utils.output_and_gradient_gaps
    for name, m in (("F.scaled_dot_product_attention", None), ("... with a mask", mask)):
        diffs[f"{name}: outputs"], diffs[f"{name}: d/d Q, K, V"] = gaps(
            by_hand(Q, K, V, m)[0], F.scaled_dot_product_attention(Q, K, V, m), (Q, K, V),
            (Q, K, V))
    mha = nn.MultiheadAttention(32, 4, batch_first=True, dtype=torch.float64)
    ours = SelfAttention(32, 4).double()
    ours.load_state_dict({"qkv.weight": mha.in_proj_weight, "qkv.bias": mha.in_proj_bias,
                          "out.weight": mha.out_proj.weight, "out.bias": mha.out_proj.bias})
    ours.attend = by_hand
    X = torch.randn(3, 17, 32, dtype=torch.float64, requires_grad=True)
    diffs["nn.MultiheadAttention: outputs"], diffs["... d/d inputs and weights"] = gaps(
        ours(X), mha(X, X, X, need_weights=False)[0], (X, ours.qkv.weight, ours.out.weight),
        (X, mha.in_proj_weight, mha.out_proj.weight))
    return diffs


def score_spread(dims=(4, 16, 64, 256), tokens=17, n=500, seed=0):
    """Scores of random unit-variance queries and keys, with and without 1/sqrt(d): their
    spread, and the mean weight softmax gives each query's favourite key."""
    g, rows = torch.Generator().manual_seed(seed), []
    for d in dims:
        Q, K = torch.randn(2, n, tokens, d, generator=g)
        raw = Q @ K.transpose(-2, -1)
        (std, top), (std_scaled, top_scaled) = ((s.std().item(), s.softmax(-1).amax(-1).mean()
                                                 .item()) for s in (raw, raw / math.sqrt(d)))
        rows.append(dict(d=d, std=std, std_scaled=std_scaled, top=top, top_scaled=top_scaled))
    return rows


# ---- 3. A Vision Transformer, written out -------------------------------------------------
class Block(nn.Module):
    """A pre-norm Transformer block: attention, then an MLP, each added to its input.

    Attention is where tokens exchange information; the MLP then works on each token alone.
    "x + ..." (a residual, as in ResNets) lets a block add a correction instead of
    rebuilding the token, and gives the gradient a straight path down; LayerNorm before
    each part ("pre-norm") keeps its input at a steady scale: steadier than post-norm.
    """

    def __init__(self, dim, heads, mlp_size):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_size), nn.GELU(), nn.Linear(mlp_size, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))  # tokens look at each other
        return x + self.mlp(self.norm2(x))  # each token thinks on its own


class ViT(nn.Module):
    """Patches -> tokens (+ a class token, + positions) -> blocks -> the class token -> 10.

    The class token is a learned extra token that belongs to no patch; it gathers what
    the blocks find, and the head reads it alone. Attention itself ignores order (swap
    two tokens and the outputs swap with them), so each place gets a learned position
    embedding added to its token; positions=False leaves them out (section 5).
    """

    def __init__(self, patch=PATCH, dim=DIM, depth=DEPTH, heads=HEADS, mlp_size=MLP_SIZE,
                 positions=True, num_classes=10):
        super().__init__()
        self.patch, tokens = patch, (28 // patch) ** 2
        self.embed = nn.Linear(patch * patch, dim)  # the same for every patch
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens + 1, dim)) if positions else None
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_size) for _ in range(depth)))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)

    def tokens(self, X):
        t = self.embed(patchify(X, self.patch))  # [N, 16, dim]
        t = torch.cat([self.cls.expand(len(X), -1, -1), t], dim=1)  # [N, 17, dim]
        return t if self.pos is None else t + self.pos

    def forward(self, X):
        return self.head(self.norm(self.blocks(self.tokens(X)))[:, 0])


# ---- 4. Training: lesson 6's recipe, with AdamW -------------------------------------------
class Rounds:
    """A loader cut into rounds of `steps` batches: the same steps at any data size."""

    def __init__(self, loader, steps):
        self.loader, self.steps, self.dataset = loader, steps, loader.dataset

    def __len__(self):
        return self.steps

    def __iter__(self):  # passes over the data, a fresh shuffle each, cut after `steps`
        return itertools.islice((batch for _ in itertools.count() for batch in self.loader),
                                self.steps)


def train(model, train_loader, val_loader, args, epochs, device, verbose=True):
    """AdamW with a one-cycle schedule, lesson 6's shifts; the best epoch is kept."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=epochs, steps_per_epoch=len(train_loader),
        cycle_momentum=False)
    result = dl_utils.fit(model, train_loader, val_loader, optimizer, epochs, device,
                          verbose=verbose, scheduler=scheduler)
    if result["status"] == "diverged":
        raise dl_utils.FriendlyError(f"training diverged ({result['diverged']}) with lr "
                                     f"{args.lr}: try a smaller --lr")
    return result


def shuffle_tiles(X, order, patch=PATCH):
    """The images with their tiles moved: tile k of the result is tile order[k] (the
    tiles rearranged, then patchify's reshapes run backwards)."""
    n = 28 // patch
    tiles = patchify(X, patch)[:, order]
    return tiles.reshape(len(X), n, n, patch, patch).permute(0, 1, 3, 2, 4).reshape(X.shape)


def correct_on(model, loader, device, order=None):
    """Per image: 1.0 where the model is right (the tiles rearranged by `order`, if given)."""
    model.eval()
    with torch.no_grad():
        return torch.cat([(model(X if order is None else shuffle_tiles(X, order, model.patch))
                           .argmax(1) == y).double().cpu() for X, y in loader])


def small_run(kind, n, args, device, positions=True):
    """Sections 5 and 6: n training images, args.small_steps steps in ROUNDS, one seed."""
    generator = dl_utils.set_seed(args.seed)
    train_loader, val_loader, _ = dl_utils.load_mnist_data(
        args.batch_size, subset=n, device=device, generator=generator)
    steps = Rounds(dl_utils.ShiftedLoader(train_loader, MAX_SHIFT), args.small_steps // ROUNDS)
    model = (dl_utils.SmallCNN(channels=(16, 32)) if kind == "CNN"  # 06's width until 2026-12
             else make_model(args, positions=positions)[0]).to(device)  # (the README's table)
    result = train(model, steps, val_loader, args, ROUNDS, device, verbose=False)
    return model, result, correct_on(model, val_loader, device)


def make_model(args, positions=True):
    kwargs = dict(patch=args.patch, dim=args.dim, depth=args.depth, heads=args.heads,
                  mlp_size=args.mlp_size, **({} if positions else {"positions": False}))
    return ViT(**kwargs), kwargs


# ---- The lesson ----------------------------------------------------------------------------
def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR, num_epochs=NUM_EPOCHS)
    parser.add_argument("--patch", type=int, choices=[2, 4, 7, 14], default=PATCH,
                        help="pixels per side of a patch (default: %(default)s)")
    for flag, default, what in (("--dim", DIM, "numbers per token"),
                                ("--depth", DEPTH, "Transformer blocks"),
                                ("--heads", HEADS, "attention heads (must divide --dim)"),
                                ("--mlp-size", MLP_SIZE, "hidden units of each block's MLP")):
        parser.add_argument(flag, type=dl_utils.positive_int, default=default,
                            help=f"{what} (default: %(default)s)")
    parser.add_argument("--sizes", type=dl_utils.positive_int, nargs="+", default=list(SIZES),
                        help="section 6's training-set sizes (default: %(default)s)")
    parser.add_argument("--small-steps", type=dl_utils.positive_int, default=SMALL_STEPS,
                        help="sections 5-6's training steps per run (default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file, default=str(CHECKPOINT),
                        help="where to save the kept model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_results_arg(parser)  # make tables reads it
    dl_utils.add_common_args(parser, seed=SEED)
    args = parser.parse_args(argv)
    if args.dim % args.heads:
        parser.error(f"--heads {args.heads} must divide --dim {args.dim}")
    return args


def tokens_section(model, X):
    """One batch through the ViT, step by step: its shapes, and where the parameters are."""
    with torch.no_grad():
        patches = patchify(X, model.patch)
        tokens = model.tokens(X)
        out = model.blocks(tokens)
    dl_utils.print_table(["what", "shape", "meaning"], [
        ["images", list(X.shape), "[batch, channel, height, width]"],
        ["patches", list(patches.shape), "[batch, tokens, pixels]: one tile per token"],
        ["tokens", [*patches.shape[:2], out.shape[-1]], "each patch times one shared Linear"],
        ["+ class token, + positions", list(tokens.shape), "token 0 belongs to no patch"],
        [f"after {len(model.blocks)} blocks", list(out.shape), "each block refines every token"],
        ["class token -> scores", f"{list(out[:, 0].shape)} -> {[len(X), 10]}", "the head"]])
    counts = {}
    for name, p in model.named_parameters():  # grouped by the first part of the name
        counts[name.split(".")[0]] = counts.get(name.split(".")[0], 0) + p.numel()
    print(f"{sum(counts.values()):,} parameters: "
          + ", ".join(f"{k} {v:,}" for k, v in counts.items()))


def explain_scaling(rows):
    dl_utils.print_table(["d", "score spread", "with 1/sqrt(d)", "top weight", "with 1/sqrt(d)"],
                         [[r["d"], f"{r['std']:.1f}", f"{r['std_scaled']:.2f}",
                           f"{r['top']:.2f}", f"{r['top_scaled']:.2f}"] for r in rows])
    big = rows[-1]
    dl_utils.prose(f"""
        (17 tokens; unit-variance queries and keys; "top weight": the softmax's weight on
        each query's favourite key.) A score sums d products, so its spread grows like
        sqrt(d): {big['std']:.1f} at d = {big['d']}. Softmax turns a large spread into nearly
        all the weight on one key ({big['top']:.2f} here): a near one-hot choice whose
        gradient is nearly zero, so attention stops learning. Dividing by sqrt(d) keeps
        the spread near 1 ({big['std_scaled']:.2f}; top weight {big['top_scaled']:.2f}).""")


def positions_section(model, val, runs, args, device):
    """The trained ViT, and short runs with and without positions, on shuffled tiles."""
    order = torch.randperm((28 // args.patch) ** 2,
                           generator=torch.Generator().manual_seed(args.seed))
    (seen, _, c_seen), (blind, _, c_blind) = (runs[(k, POSITIONS_N)] for k in ("ViT", "blind"))
    found = {name: [correct_on(m, val, device, o).mean().item() for o in (None, order)]
             for name, m in (("ViT, all images (section 4)", model),
                             (f"ViT, {POSITIONS_N:,} images", seen),
                             (f"ViT without positions, {POSITIONS_N:,}", blind))}
    dl_utils.print_table(["model", "val acc %, tiles in place", "tiles shuffled"],
                         [[k, *(f"{100 * a:.2f}" for a in v)] for k, v in found.items()])
    with torch.no_grad():  # the scores of 500 digits, intact and shuffled
        moved = (blind(val.X[:500]) - blind(shuffle_tiles(val.X[:500], order, args.patch)))
    moved = moved.abs().max().item()
    return found, moved, dl_utils.paired_difference(c_seen.tolist(), c_blind.tolist())


def explain_positions(found, moved, d):
    (a, b), _, (c, e) = found.values()
    word = dl_utils.interval_verdict(d, "positions help", "positions hurt",
                                     "no difference these images can show")
    dl_utils.prose(f"""
        Shuffling the tiles takes the trained ViT from {100 * a:.2f}% to {100 * b:.2f}%:
        it reads where each tile is. Without position embeddings, the largest change of
        any score on 500 shuffled digits is {moved:.1e} (rounding): attention treats its
        tokens as a set, so this model reads a shuffled digit exactly as the original
        ({100 * c:.2f}% and {100 * e:.2f}%), and a 6 and a 9 made of the same tiles would
        look alike. Positions, on {POSITIONS_N:,} images: {dl_utils.interval(d)} points:
        {word} (95%, paired on the same 5,000 validation images; one seed each, so
        seed-to-seed luck is not in it).""")


def sizes_section(runs, args, device):
    """CNN minus ViT at each size, the same steps and recipe, paired on validation images."""
    found, rows = {}, []
    for n in args.sizes:
        for kind in ("CNN", "ViT"):
            if (kind, n) not in runs:
                runs[(kind, n)] = small_run(kind, n, args, device)
        cnn, vit = runs[("CNN", n)][2], runs[("ViT", n)][2]
        d = found[n] = dl_utils.paired_difference(cnn.tolist(), vit.tolist())
        d.update(cnn_val_acc=cnn.mean().item(), vit_val_acc=vit.mean().item())
        rows.append([f"{min(n, 55_000):,}", f"{100 * cnn.mean():.2f}", f"{100 * vit.mean():.2f}",
                     dl_utils.interval(d)])
    dl_utils.print_table(["training images", "CNN val %", "ViT val %",
                          "CNN minus ViT [95%, paired on images]"], rows)
    print(f"(Each: {args.small_steps} steps of {args.batch_size}, AdamW one-cycle, shifts. "
          f"CNN {dl_utils.count_parameters(runs[('CNN', n)][0]):,} parameters, ViT "
          f"{dl_utils.count_parameters(runs[('ViT', n)][0]):,}. One seed: make tables pairs 3.)")
    return found


def explain_sizes(found):
    parts = [f"{min(n, 55_000):,} images: {dl_utils.interval(d)} points" for n, d in found.items()]
    won = {n: "CNN" if d["low"] > 0 else "ViT" if d["high"] < 0 else "a tie" for n, d in
           found.items()}
    first = next(iter(won.values()))
    advice = (f"the {first}: it read better at every size measured" if set(won.values()) ==
              {first} != {"a tie"} else "whichever won at your data size (" + "; ".join(
                  f"{n:,} images: {w}" for n, w in won.items()) + ")")
    dl_utils.prose(f"""
        CNN minus ViT, {'; '.join(parts)}. A convolution looks at 3x3 neighbourhoods with
        one filter everywhere: two assumptions about images ("nearby pixels belong
        together", "a stroke is a stroke wherever it is") built in. The ViT relates any
        patch to any other from its first layer and must learn from examples which
        relations matter: that pays when data is plentiful (ViTs shine after pretraining
        on millions of images), and costs when it is not. For small images, use {advice}.""")


def attention_maps(model, val, args):
    """The class token's attention over the patches, in the last block, head-averaged."""
    X = val.X[:1000]
    model.eval()
    with torch.no_grad():
        model(X)
    n = 28 // args.patch
    w = model.blocks[-1].attn.weights[:, :, 0, 1:].mean(1).cpu()  # [N, tokens]
    inked = patchify(dl_utils.to_pixels(X)[:, None], args.patch).amax(-1) > 0.5
    share, frac = (w * inked).sum(1).mean().item(), inked.float().mean().item()
    fig, axes = dl_utils.image_grid(1, 8, (1.6, 1.8))
    for i, ax in enumerate(axes[0]):
        ax.imshow(dl_utils.to_pixels(X[i:i + 1])[0], cmap="gray")
        heat = torch.kron(w[i].reshape(n, n), torch.ones(args.patch, args.patch))
        ax.imshow(heat, cmap="inferno", alpha=0.55)
        ax.set_title(f"label {val.y[i].item()}", fontsize=9)
    fig.suptitle("Where the class token looks (last block, heads averaged)")
    dl_utils.save_figure(fig, "12_attention_maps.png", args.show)
    dl_utils.prose(f"""
        On 1,000 validation digits the class token gives {100 * share:.0f}% of its attention
        to the patches that hold ink, {100 * frac:.0f}% of the patches (12_attention_maps.png
        draws 8). Attention maps show where information was gathered, not why the
        answer came out: a hint, not an explanation.""")


def main(argv=None):
    args = parse_args(argv)
    device, loaders = dl_utils.setup(args)
    dl_utils.section("1. Tokens: a digit cut into patches")
    model, model_kwargs = make_model(args)
    model.to(device)  # (a module moves in place)
    tokens_section(model, loaders[0].X[:args.batch_size])
    model_size = dl_utils.count_parameters(model)
    dl_utils.section("2. Attention by hand, against PyTorch's")
    if not dl_utils.match_table(check_against_torch(), "compared (float64)"):
        raise dl_utils.FriendlyError("the hand-written attention differs: see the table")
    explain_scaling(score_spread())
    dl_utils.section(f"3-4. The ViT trained: {args.epochs} epochs, one-cycle lr {args.lr:g}")
    dl_utils.set_seed(args.seed)  # the same start whatever section 2 drew
    result = train(model, dl_utils.ShiftedLoader(loaders[0], MAX_SHIFT), loaders[1], args,
                   args.epochs, device)
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.compare_with_course(  # the other lessons' saved models, as they recorded them
        dl_utils.MODELS_DIR, "ViT (12)", model_size, metrics, result["train_seconds"],
        "(One run each, its own recipe: section 6 compares at equal steps, the README over seeds.)")
    dl_utils.section("5. What position embeddings do: the tiles shuffled")
    runs = {(kind, POSITIONS_N): small_run("ViT", POSITIONS_N, args, device, kind == "ViT")
            for kind in ("ViT", "blind")}  # ("blind": no position embeddings)
    found, moved, d = positions_section(model, loaders[1], runs, args, device)
    explain_positions(found, moved, d)
    dl_utils.section("6. Inductive bias: the ViT against lesson 6's CNN, little data")
    sizes = sizes_section(runs, args, device)
    explain_sizes(sizes)
    dl_utils.section("7. Where the class token looks")
    attention_maps(model, loaders[1], args)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(Path(args.checkpoint), args, model, model_kwargs, result,
                             metrics, device)
    dl_utils.save_run_results(Path(__file__).name, args, device, result, metrics, sizes=sizes,
                              positions_gain=d["mean"], parameters=model_size)
    print(f"\nNext: python 04_load_model.py --checkpoint {dl_utils.display_path(args.checkpoint)}")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
