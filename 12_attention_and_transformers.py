"""Lesson 12: attention and a small Vision Transformer, on the digits you already know.

Lesson 11 read a digit one row at a time, carrying a memory from step to step. A
Transformer drops the memory: it cuts the digit into pieces ("tokens") and lets every
piece look at every other piece at once, weighting each by how relevant it looks. That
weighting is attention, the idea behind today's language models, applied here to 16
tiles of 7x7 pixels: a Vision Transformer (ViT, Dosovitskiy et al. 2020).

    1. tokens: a digit cut into 16 patches of 7x7 pixels, [N, 16, 49]
    2. attention by hand, softmax(Q K^T / sqrt(d)) V, checked number for number
       against F.scaled_dot_product_attention and nn.MultiheadAttention; why the
       1/sqrt(d). Proved equal, PyTorch's own does the work from then on
    3. a Vision Transformer written out, every shape printed once
    4. trained to the course's standard: validation keeps the epoch, test once
    5. where the class token looks
Lesson 12b then asks what this ViT assumes about images, against lesson 6's CNN.

Run it:
    python 12_attention_and_transformers.py                  # the README's results
    python 12_attention_and_transformers.py --patch 4        # 49 tokens of 4x4: slower
Then: python 04_load_model.py --checkpoint models/vit.pt
      python 12b_inductive_bias.py                       # what this ViT assumes
Exercises: exercises/ex12_attention.py, checked by python exercises/check.py 12
"""

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
PATCH = 7  # 7x7 pixels per token: 16 tokens. 4x4 gives 49 (attention costs tokens^2)
DIM = 64  # the width of every token: 64 numbers
DEPTH = 4  # Transformer blocks; 4 of width 64 give 139,018 parameters
HEADS = 4  # attention heads per block, each of width DIM / HEADS = 16
MLP_SIZE = 128  # hidden units of each block's MLP (2x DIM; the original ViT uses 4x)
# Epochs, with one-cycle (lesson 6): measured on validation (seed 0), 5 epochs read
# 98.50% and 7 epochs 98.66%, for 1.4x the time: 5 keep `make run` within its budget
NUM_EPOCHS = 5
BATCH_SIZE = 128
LR = 3e-3  # the schedule's peak, as in lessons 6 and 11
WEIGHT_DECAY = 0.05  # AdamW's decoupled decay (07b), the usual choice for Transformers
MAX_SHIFT = 2  # lesson 6's random shifts: a ViT has no built-in notion of "nearby"
SEED = 0
CHECKPOINT = dl_utils.MODELS_DIR / "vit.pt"


# ---- 1. Tokens -------------------------------------------------------------------
def patchify(X, patch=PATCH):
    """[N, 1, 28, 28] -> [N, tokens, patch * patch]: the image cut into patch x patch
    tiles, read left to right, top to bottom, each tile flattened into one token."""
    n = 28 // patch
    tiles = X.reshape(len(X), n, patch, n, patch)  # [N, tile row, y, tile column, x]
    tiles = tiles.permute(0, 1, 3, 2, 4)  # [N, tile row, tile column, y, x]
    return tiles.reshape(len(X), n * n, patch * patch)


# ---- 2. Attention by hand --------------------------------------------------------
def attention(Q, K, V, mask=None):
    """Scaled dot-product attention: softmax(Q K^T / sqrt(d)) V, and its weights.

    Q [..., T_q, d]: what each token looks for; K [..., T_k, d]: what each offers;
    V [..., T_k, d_v]: what each passes on. A query's weight on a key grows with their
    dot product; softmax over the keys makes each query's weights sum to 1, so every
    output is a weighted average of the values. mask [..., T_q, T_k] (True: may look),
    as F.scaled_dot_product_attention's attn_mask; a masked score becomes -inf, and
    softmax gives it weight 0. Beware: nn.MultiheadAttention's boolean attn_mask and
    key_padding_mask mean the opposite (True: may NOT look), the most common mask bug in
    PyTorch code. Returns (output [..., T_q, d_v], weights [..., T_q, T_k]).
    """
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # [..., T_q, T_k]
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # over the keys: each row sums to 1
    return weights @ V, weights


class SelfAttention(nn.Module):
    """Multi-head self-attention: the tokens attend to each other, in `heads` groups.

    One Linear makes every token's query, key and value for all heads at once (the
    layout of nn.MultiheadAttention's in_proj_weight); each head attends within its own
    DIM / heads numbers, so heads can look for different things; `out` mixes them back.
    The attention itself is F.scaled_dot_product_attention, proved equal to `attention`
    above in section 2: it runs fused kernels (FlashAttention on GPUs), which never hand
    back the weights. keep_weights = True runs `attention` instead and keeps the last
    weights, as section 5 does to draw them.
    """

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.keep_weights = False
        self.weights = None  # [N, heads, T, T], kept only when keep_weights is set

    def forward(self, x):
        N, T, D = x.shape  # [batch, tokens, dim]
        qkv = self.qkv(x).reshape(N, T, 3, self.heads, D // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x [N, heads, T, D / heads]
        if self.keep_weights:
            out, weights = attention(q, k, v)
            self.weights = weights.detach()
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(N, T, D)  # the heads side by side again
        return self.out(out)


def check_against_torch(by_hand=attention, seed=0):
    """By hand vs PyTorch, the same inputs and weights, in float64: the largest
    differences of the outputs and of the gradients. The last two rows check the
    SelfAttention that trains (through F.scaled_dot_product_attention) against
    nn.MultiheadAttention: the heads cut and joined as PyTorch's are."""
    torch.manual_seed(seed)
    shape = (2, 4, 17, 16)  # [batch, heads, tokens, d]
    Q = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    K = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    V = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(17, 17) > 0.3
    mask = mask | torch.eye(17, dtype=torch.bool)  # every query keeps one key at least
    gaps = dl_utils.output_and_gradient_gaps
    diffs = {}
    for name, m in (("F.scaled_dot_product_attention", None),
                    ("... with a mask", mask)):
        ours = by_hand(Q, K, V, m)[0]
        theirs = F.scaled_dot_product_attention(Q, K, V, m)
        found = gaps(ours, theirs, (Q, K, V), (Q, K, V))
        diffs[f"{name}: outputs"] = found[0]
        diffs[f"{name}: d/d Q, K, V"] = found[1]
    mha = nn.MultiheadAttention(32, 4, batch_first=True, dtype=torch.float64)
    ours = SelfAttention(32, 4).double()
    ours.load_state_dict({"qkv.weight": mha.in_proj_weight,
                          "qkv.bias": mha.in_proj_bias,
                          "out.weight": mha.out_proj.weight,
                          "out.bias": mha.out_proj.bias})
    X = torch.randn(3, 17, 32, dtype=torch.float64, requires_grad=True)
    found = gaps(ours(X), mha(X, X, X, need_weights=False)[0],
                 (X, ours.qkv.weight, ours.out.weight),
                 (X, mha.in_proj_weight, mha.out_proj.weight))
    diffs["nn.MultiheadAttention: outputs"] = found[0]
    diffs["... d/d inputs and weights"] = found[1]
    return diffs


def score_spread(dims=(4, 16, 64, 256), tokens=17, n=500, seed=0):
    """Scores of random unit-variance queries and keys, with and without 1/sqrt(d):
    their spread, and the mean weight softmax gives each query's favourite key."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for d in dims:
        Q, K = torch.randn(2, n, tokens, d, generator=g)
        raw = Q @ K.transpose(-2, -1)
        scaled = raw / math.sqrt(d)
        rows.append({"d": d,
                     "std": raw.std().item(),
                     "std_scaled": scaled.std().item(),
                     "top": raw.softmax(-1).amax(-1).mean().item(),
                     "top_scaled": scaled.softmax(-1).amax(-1).mean().item()})
    return rows


# ---- 3. A Vision Transformer, written out ----------------------------------------
class Block(nn.Module):
    """A pre-norm Transformer block: attention, then an MLP, each added to its input.

    Attention is where tokens exchange information; the MLP then works on each token
    alone. Each part sits in a residual connection, x + f(x): the block adds a
    correction to its input instead of rebuilding the token, so gradients flow straight
    through the "+" (ResNets do the same in CNNs). LayerNorm standardizes each token's
    64 numbers (DIM) to mean 0 and spread 1, then applies a learned scale and shift:
    like batch norm (lesson 7), but per token, not per batch. Here it comes before each
    part ("pre-norm"), so every part sees inputs of a steady scale; the original
    Transformer put it after the "+" ("post-norm"), which trains less steadily in deep
    stacks.
    """

    def __init__(self, dim, heads, mlp_size):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        # GELU: a smooth ReLU (x times the chance that a standard normal is below x),
        # the usual choice in Transformers
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_size), nn.GELU(),
                                 nn.Linear(mlp_size, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))  # tokens look at each other
        return x + self.mlp(self.norm2(x))  # each token thinks on its own


class ViT(nn.Module):
    """Patches -> tokens (+ a class token, + positions) -> blocks -> class token -> 10.

    The class token is a learned extra token that belongs to no patch; it gathers what
    the blocks find, and the head reads it alone. Attention itself ignores order (swap
    two tokens and the outputs swap with them), so each place gets a learned position
    embedding added to its token (lesson 12b measures what they do).
    """

    def __init__(self, patch=PATCH, dim=DIM, depth=DEPTH, heads=HEADS,
                 mlp_size=MLP_SIZE, num_classes=10):
        super().__init__()
        tokens = (28 // patch) ** 2
        self.patch = patch
        self.embed = nn.Linear(patch * patch, dim)  # the same for every patch
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens + 1, dim))
        blocks = [Block(dim, heads, mlp_size) for _ in range(depth)]
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def tokens(self, X):
        t = self.embed(patchify(X, self.patch))  # [N, 16, dim]
        t = torch.cat([self.cls.expand(len(X), -1, -1), t], dim=1)  # [N, 17, dim]
        return t + self.pos

    def forward(self, X):
        x = self.blocks(self.tokens(X))
        return self.head(self.norm(x)[:, 0])  # the class token alone


# ---- 4. Training: lesson 6's recipe, with AdamW ----------------------------------
def make_optimizer(model, lr, weight_decay):
    """AdamW with lesson 7's two parameter groups (its make_optimizer; nanoGPT's rule):
    tensors of 2 or more dimensions decay, biases and LayerNorm's scales and shifts do
    not. By that rule the class token and the position embeddings (3 dimensions each)
    decay too (nanoGPT does the same; some ViT libraries exempt them)."""
    decayed = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decayed, "weight_decay": weight_decay},
                              {"params": others, "weight_decay": 0.0}], lr=lr)


def train(model, train_loader, val_loader, args, epochs, device, verbose=True):
    """AdamW with a one-cycle schedule, lesson 6's shifts; the best epoch is kept."""
    optimizer = make_optimizer(model, args.lr, WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=epochs, steps_per_epoch=len(train_loader),
        cycle_momentum=False)
    result = dl_utils.fit(model, train_loader, val_loader, optimizer, epochs, device,
                          verbose=verbose, scheduler=scheduler)
    if result["status"] == "diverged":
        raise dl_utils.FriendlyError(f"training diverged ({result['diverged']}) with "
                                     f"lr {args.lr}: try a smaller --lr")
    return result


def make_model(args):
    kwargs = {"patch": args.patch, "dim": args.dim, "depth": args.depth,
              "heads": args.heads, "mlp_size": args.mlp_size}
    return ViT(**kwargs), kwargs


# ---- The lesson ------------------------------------------------------------------
def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    dl_utils.add_training_args(parser, batch_size=BATCH_SIZE, lr=LR,
                               num_epochs=NUM_EPOCHS)
    parser.add_argument("--patch", type=int, choices=[2, 4, 7, 14], default=PATCH,
                        help="pixels per side of a patch (default: %(default)s)")
    for flag, default, what in (("--dim", DIM, "numbers per token"),
                                ("--depth", DEPTH, "Transformer blocks"),
                                ("--heads", HEADS, "attention heads (divide --dim)"),
                                ("--mlp-size", MLP_SIZE, "hidden units of each MLP")):
        parser.add_argument(flag, type=dl_utils.positive_int, default=default,
                            help=f"{what} (default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file,
                        default=str(CHECKPOINT),
                        help="where to save the kept model (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    dl_utils.add_results_arg(parser)  # make tables reads it
    dl_utils.add_common_args(parser, seed=SEED)
    args = parser.parse_args(argv)
    if args.dim % args.heads:
        parser.error(f"--heads {args.heads} must divide --dim {args.dim}")
    return args


def tokens_section(model, X):
    """One batch through the ViT, step by step: its shapes, and where the weights
    are."""
    with torch.no_grad():
        patches = patchify(X, model.patch)
        tokens = model.tokens(X)
        out = model.blocks(tokens)
    scores = f"{list(out[:, 0].shape)} -> {[len(X), 10]}"
    dl_utils.print_table(["what", "shape", "meaning"], [
        ["images", list(X.shape), "[batch, channel, height, width]"],
        ["patches", list(patches.shape), "[batch, tokens, pixels]: one tile per token"],
        ["tokens", [*patches.shape[:2], out.shape[-1]],
         "each patch times one shared Linear"],
        ["+ class token, + positions", list(tokens.shape),
         "token 0 belongs to no patch"],
        [f"after {len(model.blocks)} blocks", list(out.shape),
         "each block refines every token"],
        ["class token -> scores", scores, "the head"]])
    counts = {}
    for name, p in model.named_parameters():  # grouped by the first part of the name
        part = name.split(".")[0]
        counts[part] = counts.get(part, 0) + p.numel()
    parts = ", ".join(f"{part} {count:,}" for part, count in counts.items())
    print(f"{sum(counts.values()):,} parameters: {parts}")


def explain_scaling(rows):
    table = []
    for r in rows:
        table.append([r["d"], f"{r['std']:.1f}", f"{r['std_scaled']:.2f}",
                      f"{r['top']:.2f}", f"{r['top_scaled']:.2f}"])
    dl_utils.print_table(["d", "score spread", "with 1/sqrt(d)", "top weight",
                          "with 1/sqrt(d)"], table)
    big = rows[-1]
    dl_utils.prose(f"""
        (17 tokens; unit-variance queries and keys; "top weight": the softmax's weight
        on each query's favourite key.) A score sums d products, so its spread grows
        like sqrt(d): {big['std']:.1f} at d = {big['d']}. Softmax turns a large spread
        into nearly all the weight on one key ({big['top']:.2f} here): a near one-hot
        choice whose gradient is nearly zero, so attention stops learning. Dividing by
        sqrt(d) keeps the spread near 1 ({big['std_scaled']:.2f}; top weight
        {big['top_scaled']:.2f}).""")


def attention_maps(model, val, args):
    """The class token's attention over the patches, in the last block, head-averaged:
    the hand-written attention, the one that hands back its weights, for one pass."""
    X = val.X[:1000]
    model.eval()
    last = model.blocks[-1].attn
    last.keep_weights = True
    with torch.no_grad():
        model(X)
    last.keep_weights = False
    n = 28 // args.patch
    w = last.weights[:, :, 0, 1:].mean(1).cpu()  # [N, tokens]
    inked = patchify(dl_utils.to_pixels(X)[:, None], args.patch).amax(-1) > 0.5
    share = (w * inked).sum(1).mean().item()
    frac = inked.float().mean().item()
    fig, axes = dl_utils.image_grid(1, 8, (1.6, 1.8))
    for i, ax in enumerate(axes[0]):
        ax.imshow(dl_utils.to_pixels(X[i:i + 1])[0].numpy(), cmap="gray")
        heat = torch.kron(w[i].reshape(n, n), torch.ones(args.patch, args.patch))
        ax.imshow(heat.numpy(), cmap="inferno", alpha=0.55)
        ax.set_title(f"label {val.y[i].item()}", fontsize=9)
    fig.suptitle("Where the class token looks (last block, heads averaged)")
    dl_utils.save_figure(fig, "12_attention_maps.png", args.show)
    dl_utils.prose(f"""
        On 1,000 validation digits the class token gives {100 * share:.0f}% of its
        attention to the patches that hold ink, {100 * frac:.0f}% of the patches
        (12_attention_maps.png draws 8). Attention maps show where information was
        gathered, not why the answer came out: a hint, not an explanation.""")


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
        raise dl_utils.FriendlyError(
            "the hand-written attention differs: see the table")
    explain_scaling(score_spread())
    dl_utils.section(f"3-4. The ViT trained: {args.epochs} epochs, one-cycle lr "
                     f"{args.lr:g}")
    shifted = dl_utils.ShiftedLoader(loaders[0], MAX_SHIFT)
    result = train(model, shifted, loaders[1], args, args.epochs, device)
    metrics = dl_utils.report(model, loaders, device)
    dl_utils.compare_with_course(  # the other lessons' saved models, as they recorded
        dl_utils.MODELS_DIR, "ViT (12)", model_size, metrics, result["train_seconds"],
        "(One run each, its own recipe: lesson 12b compares at equal steps, the README "
        "over seeds.)")
    dl_utils.section("5. Where the class token looks")
    attention_maps(model, loaders[1], args)
    dl_utils.section("Saving")
    dl_utils.save_kept_model(Path(args.checkpoint), args, model, model_kwargs, result,
                             metrics, device)
    dl_utils.save_run_results(Path(__file__).name, args, device, result, metrics,
                              parameters=model_size)  # (make tables reads it)
    print(f"\nNext: python 04_load_model.py --checkpoint "
          f"{dl_utils.display_path(args.checkpoint)}")
    print("Then: python 12b_inductive_bias.py (what this ViT assumes about images)")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
