"""Lesson 12b: inductive bias, what a network assumes before it sees any data.

A CNN (lesson 6) and a Vision Transformer (lesson 12) can both read digits; they
differ in what they assume about images before any training, their inductive bias. A
convolution assumes that nearby pixels belong together and that a stroke is a stroke
wherever it is; between its tiles, a ViT assumes neither, and knows where a tile sits
only from its position embeddings. This lesson measures what the position embeddings
do (section 2) and what the CNN's two assumptions are worth (section 3), after a check:

    1. a check: lesson 12's ViT rebuilt from PyTorch's own layers. Its patch
       embedding, one Linear shared by every tile, is a 7x7 convolution with stride 7
       (stride 7: the window moves 7 pixels at a time, so tiles never overlap), and its
       blocks are nn.TransformerEncoderLayer; given lesson 12's trained weights, it
       gives lesson 12's answers, number for number
    2. what position embeddings do: the tiles of each digit shuffled, for lesson 12's
       trained ViT and for two short runs, with and without position embeddings
    3. the ViT against lesson 6's CNN at equal steps, on 1,000 training images by
       default; which network to use

Two models read the same validation images, so each comparison is McNemar's exact
test on the images only one of them reads right (lesson 8b).

Run it (after lesson 12, whose trained ViT section 2 shuffles; without it, that row
is left out):
    python 12b_inductive_bias.py                   # a quick look (one size, 160 steps)
    python 12b_inductive_bias.py --sizes 1000 5000 55000 --small-steps 1280
The second is one seed of docs/results.md's sizes table (make tables runs it with
--seed 0, 1 and 2, and pairs the seeds); the quick look does not reproduce that table.
Exercises: exercises/ex12_attention.py (12.3), checked by python exercises/check.py 12
"""

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import dl_utils

# ---- Settings: the defaults are the quick look; each has a flag (-h lists them) ----
PATCH = 7  # lesson 12's ViT: 16 tiles of 7x7 pixels...
DIM = 64  # ...64 numbers per token...
DEPTH = 4  # ...4 blocks...
HEADS = 4  # ...of 4 heads...
MLP_SIZE = 128  # ...and an MLP of 128 hidden units in each block
BATCH_SIZE = 128
LR = 3e-3  # the schedule's peak, as in lessons 6, 11 and 12
WEIGHT_DECAY = 0.05  # AdamW's decoupled decay (07b), as in lesson 12
MAX_SHIFT = 2  # lesson 6's random shifts, for both networks
SIZES = (1000,)  # section 3: training-set sizes (make tables: 1000 5000 55000, 3 seeds)
POSITIONS_N = 1000  # section 2: the short runs with and without positions see this many
SMALL_STEPS = 160  # the same steps for every network at every size...
ROUNDS = 4  # ...in 4 rounds, each ending with a look at validation (the best is kept)
CNN_CHANNELS = (16, 32)  # section 3's CNN: the one docs/results.md's sizes table used
SEED = 0
VIT_CHECKPOINT = dl_utils.MODELS_DIR / "vit.pt"  # what lesson 12 saves


# ---- 1. A check: the same ViT, from PyTorch's parts ------------------------------
def tiles(X, patch=PATCH):
    """[N, 1, 28, 28] -> [N, tokens, patch * patch]: the tiles in reading order, each
    flattened (lesson 12's patchify). F.unfold cuts out every patch x patch window,
    here with a stride of `patch`, so the windows do not overlap."""
    return F.unfold(X, patch, stride=patch).transpose(1, 2)


def shuffle_tiles(X, order, patch=PATCH):
    """The images with their tiles moved: tile k of the result is tile order[k].
    F.fold puts the tiles back where F.unfold took them from."""
    moved = F.unfold(X, patch, stride=patch)[:, :, order]
    return F.fold(moved, X.shape[-2:], patch, stride=patch)


class LibraryViT(nn.Module):
    """Lesson 12's ViT, built from PyTorch's layers: patches -> tokens (+ a class token,
    + positions) -> pre-norm blocks -> the class token -> 10 scores.

    nn.Conv2d(1, dim, patch, stride=patch) is lesson 12's patch embedding: each output
    position sees one tile and nothing else, with the same weights for every tile (see
    check_patch_embedding). nn.TransformerEncoderLayer with norm_first=True is lesson
    12's Block (LayerNorm, attention, residual; LayerNorm, MLP, residual). Each block is
    made on its own: nn.TransformerEncoder(layer, depth) would deep-copy one layer, so
    every block would start from the same initial weights. positions=False leaves the
    position embeddings out (section 2).
    """

    def __init__(self, patch=PATCH, dim=DIM, depth=DEPTH, heads=HEADS,
                 mlp_size=MLP_SIZE, positions=True, num_classes=10):
        super().__init__()
        tokens = (28 // patch) ** 2
        self.patch = patch
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = None
        if positions:
            self.pos = nn.Parameter(0.02 * torch.randn(1, tokens + 1, dim))
        blocks = []
        for _ in range(depth):
            # dropout=0.0: lesson 12's ViT has no dropout (PyTorch's default is 0.1)
            blocks.append(nn.TransformerEncoderLayer(
                dim, heads, mlp_size, dropout=0.0, activation="gelu", batch_first=True,
                norm_first=True))
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, X):
        t = self.embed(X).flatten(2).transpose(1, 2)  # [N, dim, 4, 4] -> [N, 16, dim]
        t = torch.cat([self.cls.expand(len(X), -1, -1), t], dim=1)  # [N, 17, dim]
        if self.pos is not None:
            t = t + self.pos
        x = self.blocks(t)
        return self.head(self.norm(x)[:, 0])  # the class token alone


def check_patch_embedding(patch=PATCH, dim=DIM, seed=0):
    """The largest difference, in float64, between the convolution and one Linear
    applied to every tile, with the same weights (the kernel flattened)."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(1, dim, patch, stride=patch, dtype=torch.float64)
    linear = nn.Linear(patch * patch, dim, dtype=torch.float64)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(dim, -1))
        linear.bias.copy_(conv.bias)
    X = torch.randn(5, 1, 28, 28, dtype=torch.float64)
    by_conv = conv(X).flatten(2).transpose(1, 2)  # [N, tokens, dim]
    by_linear = linear(tiles(X, patch))
    return (by_conv - by_linear).abs().max().item()


# Lesson 12's names for the weights -> PyTorch's names (nn.TransformerEncoderLayer
# keeps the query, key and value weights in one in_proj_weight, as lesson 12's qkv)
RENAMED = {"attn.qkv.weight": "self_attn.in_proj_weight",
           "attn.qkv.bias": "self_attn.in_proj_bias",
           "attn.out.": "self_attn.out_proj.",
           "mlp.0.": "linear1.",
           "mlp.2.": "linear2."}


def from_lesson_12(state):
    """Lesson 12's ViT's state_dict, renamed for LibraryViT: the same numbers; the
    embedding's [dim, 49] matrix becomes the convolution's [dim, 1, 7, 7] kernel."""
    renamed = {}
    for name, weights in state.items():
        for old, new in RENAMED.items():
            name = name.replace(old, new)
        renamed[name] = weights
    dim = renamed["embed.weight"].shape[0]
    renamed["embed.weight"] = renamed["embed.weight"].reshape(dim, 1, PATCH, PATCH)
    return renamed


def same_as_lesson_12(trained, val, device):
    """Lesson 12's trained ViT and a LibraryViT with its weights, on 1,000 validation
    digits: the largest difference of their scores, and how many answers differ."""
    library = LibraryViT().to(device)
    library.load_state_dict(from_lesson_12(trained.state_dict()))
    library.eval()
    trained.eval()
    X = val.X[:1000]
    with torch.no_grad():
        ours = trained(X)
        theirs = library(X)
    differ = (ours.argmax(dim=1) != theirs.argmax(dim=1)).sum().item()
    return (ours - theirs).abs().max().item(), differ


# ---- Short runs: lesson 12's recipe, the same steps at any data size -------------
class Rounds:
    """A loader cut into rounds of `steps` batches: the same steps at any data size."""

    def __init__(self, loader, steps):
        self.loader = loader
        self.steps = steps
        self.dataset = loader.dataset

    def __len__(self):
        return self.steps

    def __iter__(self):  # passes over the data, a fresh shuffle each, cut after `steps`
        given = 0
        while given < self.steps:
            for batch in self.loader:
                yield batch
                given += 1
                if given == self.steps:
                    return


def make_optimizer(model, lr, weight_decay):
    """AdamW with lesson 7's two parameter groups (its make_optimizer): tensors of 2
    or more dimensions decay, biases and LayerNorm's scales and shifts do not."""
    decayed = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decayed, "weight_decay": weight_decay},
                              {"params": others, "weight_decay": 0.0}], lr=lr)


def small_run(kind, n, args, device, runs, positions=True):
    """n training images, args.small_steps steps in ROUNDS (AdamW, one-cycle, lesson
    6's shifts), one seed. Returns the model and its (logits, labels) on validation.
    Each run is trained once and kept in `runs`: sections 2 and 3 share the ViT."""
    key = (kind, n, positions)
    if key in runs:
        return runs[key]
    generator = dl_utils.set_seed(args.seed)
    train_loader, val_loader, _ = dl_utils.load_mnist_data(
        args.batch_size, subset=n, device=device, generator=generator)
    steps = Rounds(dl_utils.ShiftedLoader(train_loader, MAX_SHIFT),
                   args.small_steps // ROUNDS)
    if kind == "CNN":
        model = dl_utils.SmallCNN(channels=CNN_CHANNELS)
    else:
        model = LibraryViT(positions=positions)
    model = model.to(device)
    optimizer = make_optimizer(model, args.lr, WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, epochs=ROUNDS, steps_per_epoch=len(steps),
        cycle_momentum=False)
    result = dl_utils.fit(model, steps, val_loader, optimizer, ROUNDS, device,
                          verbose=False, scheduler=scheduler)
    if result["status"] == "diverged":
        raise dl_utils.FriendlyError(f"training diverged ({result['diverged']}) with "
                                     f"lr {args.lr}: try a smaller --lr")
    runs[key] = (model, predict(model, val_loader, device))
    return runs[key]


def predict(model, loader, device, order=None):
    """(logits [N, 10], labels [N]) on every image of the loader, with the tiles
    rearranged by `order` when one is given."""
    model.eval()
    logits = []
    labels = []
    with torch.no_grad():
        for X, y in loader:
            if order is not None:
                X = shuffle_tiles(X, order)
            logits.append(model(X).cpu())
            labels.append(y.cpu())
    return torch.cat(logits), torch.cat(labels)


def percent(logits, y):
    return f"{100 * (logits.argmax(dim=1) == y).float().mean():.2f}"


def p_text(p):
    """A p-value as printed after "p": "= 0.029", or "< 1e-4" for the smallest (a
    float rounds the very smallest to 0)."""
    return f"= {p:.2g}" if p >= 1e-4 else "< 1e-4"


def verdict(fixed, broken, better, worse):
    """McNemar's exact test (lesson 8b) in one phrase: the images only the second
    model reads right (fixed) against those only the first does (broken)."""
    if dl_utils.coin_flip_p(fixed, broken) >= 0.05:
        return "no clear difference"
    return better if fixed > broken else worse


# ---- 2. What position embeddings do ----------------------------------------------
def positions_section(args, trained, val, device, runs):
    """Lesson 12's trained ViT (when there is one), and short runs with and without
    positions, on validation digits with their tiles in place and shuffled. Returns
    {model name: (logits in place, logits shuffled)}, the labels, and the largest
    change the shuffle makes to any score of the ViT without positions."""
    generator = torch.Generator().manual_seed(args.seed)
    order = torch.randperm((28 // PATCH) ** 2, generator=generator)
    models = {}
    if trained is not None:
        models["lesson 12's ViT, all images"] = trained
    seen = small_run("ViT", POSITIONS_N, args, device, runs)[0]
    models[f"ViT, {POSITIONS_N:,} images"] = seen
    blind = small_run("ViT", POSITIONS_N, args, device, runs, positions=False)[0]
    models[f"ViT without positions, {POSITIONS_N:,}"] = blind
    found = {}
    rows = []
    for name, model in models.items():
        in_place, y = predict(model, val, device)
        shuffled = predict(model, val, device, order)[0]
        found[name] = (in_place, shuffled)
        rows.append([name, percent(in_place, y), percent(shuffled, y)])
    dl_utils.print_table(["model", "val acc %, tiles in place", "tiles shuffled"], rows)
    X = val.X[:500]
    with torch.no_grad():  # the scores of 500 digits, in place and shuffled
        moved = blind(X) - blind(shuffle_tiles(X, order))
    return found, y, moved.abs().max().item()


def explain_positions(found, y, moved):
    """What the shuffle did, and whether positions helped. Returns the gain in
    accuracy from positions (for make tables)."""
    said = []
    for name, (in_place, shuffled) in list(found.items())[:-1]:  # the ViTs with them
        fixed, broken = dl_utils.changed_predictions(in_place, shuffled, y)
        p = dl_utils.coin_flip_p(fixed, broken)
        reads = verdict(fixed, broken, "it reads shuffled tiles better",
                        "it reads where each tile is")
        said.append(f"{name}: {percent(in_place, y)}% -> {percent(shuffled, y)}%, "
                    f"{broken} digits go wrong and {fixed} go right (McNemar's exact "
                    f"p {p_text(p)}): {reads}")
    seen = found[f"ViT, {POSITIONS_N:,} images"][0]
    blind = found[f"ViT without positions, {POSITIONS_N:,}"]
    gained, lost = dl_utils.changed_predictions(blind[0], seen, y)
    p = dl_utils.coin_flip_p(gained, lost)
    word = verdict(gained, lost, "positions help", "positions hurt")
    dl_utils.prose(f"""
        Shuffling the tiles: {'; '.join(said)}. Without position embeddings, the largest
        change of any score on 500 shuffled digits is {moved:.1e} (rounding): attention
        treats its tokens as a set, so this model reads a shuffled digit exactly as the
        original ({percent(blind[0], y)}% and {percent(blind[1], y)}%), and a digit with
        its top and bottom rows of tiles swapped would read the same. Positions, on
        {POSITIONS_N:,} images: {gained} digits read right only with them, {lost} only
        without (p {p_text(p)}): {word} (paired on the same {len(y):,} validation
        images; one seed each, so seed-to-seed luck is not in it).""")
    return (gained - lost) / len(y)


# ---- 3. The ViT against lesson 6's CNN, by training-set size ---------------------
def sizes_section(args, device, runs):
    """The CNN and the ViT at each size, the same steps and recipe, compared on the
    same validation images."""
    found = {}
    rows = []
    for n in args.sizes:
        cnn_model, (cnn, y) = small_run("CNN", n, args, device, runs)
        vit_model, (vit, _) = small_run("ViT", n, args, device, runs)
        cnn_only, vit_only = dl_utils.changed_predictions(vit, cnn, y)
        found[n] = {"cnn_val_acc": (cnn.argmax(dim=1) == y).float().mean().item(),
                    "vit_val_acc": (vit.argmax(dim=1) == y).float().mean().item(),
                    "cnn_only": cnn_only, "vit_only": vit_only,
                    "p": dl_utils.coin_flip_p(cnn_only, vit_only)}
        rows.append([f"{min(n, 55_000):,}", percent(cnn, y), percent(vit, y),
                     f"{cnn_only:,}", f"{vit_only:,}",
                     p_text(found[n]["p"]).removeprefix("= ")])
    dl_utils.print_table(["training images", "CNN val %", "ViT val %", "only CNN right",
                          "only ViT right", "McNemar p"], rows)
    dl_utils.prose(f"""
        (Each: {args.small_steps} steps of {args.batch_size}, AdamW one-cycle, shifts.
        CNN {dl_utils.count_parameters(cnn_model):,} parameters, ViT
        {dl_utils.count_parameters(vit_model):,}. p counts the validation images' luck,
        not the training seed's: make tables pairs 3 seeds.)""")
    return found


def explain_sizes(found):
    won = {}
    for n, d in found.items():
        won[n] = verdict(d["cnn_only"], d["vit_only"], "the CNN", "the ViT")
    largest = f"{min(max(found), 55_000):,}"
    if set(won.values()) == {"the CNN"}:
        said = (f"On MNIST, at every size measured up to {largest} images and this "
                "budget, the CNN read better.")
        advice = "the CNN: it read better at every size measured"
    elif set(won.values()) == {"the ViT"}:
        said = f"At every size measured up to {largest} images, the ViT read better."
        advice = "the ViT: it read better at every size measured"
    else:
        each = []
        for n, w in won.items():
            each.append(f"{min(n, 55_000):,} images: {w}")
        said = f"By size: {'; '.join(each)}."
        advice = f"whichever read better at your data size ({'; '.join(each)})"
    dl_utils.prose(f"""
        {said} A convolution looks at 3x3 neighbourhoods with the same filter at every
        pixel: two assumptions about images ("nearby pixels belong together", "a stroke
        is a stroke wherever it is") built in. The ViT has them only at the scale of
        its patches (section 1: one filter per 7x7 tile): between patches it relates
        any patch to any other from its first layer, and must learn from examples which
        relations matter. ViTs overtake CNNs after pretraining on tens of millions of
        images (Dosovitskiy et al. 2021). For small datasets, use {advice}.""")


# ---- The lesson ------------------------------------------------------------------
def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    parser.add_argument("--sizes", type=dl_utils.positive_int, nargs="+",
                        default=list(SIZES),
                        help="section 3's training-set sizes (default: %(default)s)")
    parser.add_argument("--small-steps", type=dl_utils.positive_int,
                        default=SMALL_STEPS,
                        help="training steps of every short run (default: %(default)s)")
    parser.add_argument("--batch-size", type=dl_utils.positive_int, default=BATCH_SIZE,
                        help="images per step (default: %(default)s)")
    parser.add_argument("--lr", type=dl_utils.positive_float, default=LR,
                        help="the one-cycle schedule's peak (default: %(default)s)")
    parser.add_argument("--vit", default=str(VIT_CHECKPOINT),
                        help="lesson 12's trained ViT, shuffled in section 2 (default: "
                             f"{dl_utils.display_path(VIT_CHECKPOINT)})")
    dl_utils.add_results_arg(parser)  # make tables reads it
    dl_utils.add_common_args(parser, seed=SEED)
    args = parser.parse_args(argv)
    if args.small_steps < ROUNDS:
        parser.error(f"--small-steps must be at least {ROUNDS} (one per round)")
    return args


def lesson_12_vit(path, device):
    """Lesson 12's trained ViT, or None (said once) when there is none of lesson 12's
    shape: 7x7 tiles, 64 numbers per token, 4 blocks of 4 heads."""
    if Path(path).exists():
        trained, checkpoint = dl_utils.load_checkpoint(path, device=device)
        shape = {"patch": PATCH, "dim": DIM, "depth": DEPTH, "heads": HEADS,
                 "mlp_size": MLP_SIZE}
        kwargs = checkpoint.get("model_kwargs", {})
        if checkpoint.get("model_class") == "ViT" and kwargs == shape:
            return trained.eval()
    print(f"(No ViT of lesson 12's default shape at {dl_utils.display_path(path)}: run "
          "python 12_attention_and_transformers.py to compare with it.)")
    return None


def main(argv=None):
    args = parse_args(argv)
    dl_utils.setup_figures(args.show)
    dl_utils.section("Setup")
    device = dl_utils.get_device(args.device)
    val = dl_utils.load_mnist_data(device=device)[1]
    trained = lesson_12_vit(args.vit, device)
    dl_utils.section("1. The same ViT, from PyTorch's parts: a check")
    model = LibraryViT()
    print(f"embed: {model.embed}\nEach of the {len(model.blocks)} blocks: "
          f"{model.blocks[0]}")
    counts = {}
    for name, p in model.named_parameters():  # grouped by the first part of the name
        part = name.split(".")[0]
        counts[part] = counts.get(part, 0) + p.numel()
    parts = ", ".join(f"{part} {count:,}" for part, count in counts.items())
    print(f"{sum(counts.values()):,} parameters: {parts}")
    gap = check_patch_embedding()
    if gap > 1e-10:
        raise dl_utils.FriendlyError(f"the convolution differs from a Linear per tile "
                                     f"by {gap:.1e}")
    dl_utils.prose(f"""
        nn.Conv2d with a 7x7 kernel and a stride of 7 against lesson 12's patch
        embedding (one Linear applied to every tile), with the same weights, in
        float64: the largest difference is {gap:.1e}. A Linear shared by every tile is
        a convolution whose stride equals its kernel: the same filter everywhere, at
        the scale of a tile.""")
    if trained is not None:
        largest, differ = same_as_lesson_12(trained, val, device)
        answers = "every answer is the same"
        if differ:
            answers = f"{differ} answers differ (scores within rounding of a tie)"
        dl_utils.prose(f"""
            Lesson 12's trained weights, renamed (from_lesson_12) and loaded into this
            ViT: on 1,000 validation digits its scores differ from lesson 12's by at
            most {largest:.1e} (float32 rounding), and {answers}.""")
    dl_utils.section("2. What position embeddings do: the tiles shuffled")
    runs = {}  # every short run, trained once
    found, y, moved = positions_section(args, trained, val, device, runs)
    positions_gain = explain_positions(found, y, moved)
    dl_utils.section("3. Inductive bias: the ViT against lesson 6's CNN, equal steps")
    sizes = sizes_section(args, device, runs)
    explain_sizes(sizes)
    if args.results:
        dl_utils.save_results(args.results, Path(__file__).name, args, device,
                              sizes=sizes, positions_gain=positions_gain)
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
