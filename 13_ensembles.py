"""Lesson 13: several networks that vote: an ensemble, chosen on validation.

Two networks trained on the same digits still misread different ones: change the seed
or the architecture and the mistakes move. Average their probabilities, and a digit
that one network misreads with little confidence is outvoted by the others. That is an
ensemble, the oldest dependable way to buy accuracy (and the usual winner of
competitions), paid for by running every member on every input. This lesson trains
nothing: it reads the networks that lessons 3, 6, 11 and 12 saved, and
    1. scores each on validation: MNIST's own digits, and lesson 6's stand-ins for
       other writers (the same digits re-drawn like lesson 9's pad, and cut to 8x8);
    2. counts where they disagree: a vote can only fix what not every member gets
       wrong; averaged probabilities can fix a few more, where the true digit is
       every member's runner-up (counted);
    3. combines them three ways: averaged probabilities, averaged logits, a majority
       vote;
    4. chooses the members on validation (every subset is tried), then reports the
       choice on the test set once, against its best member, paired on the same digits;
    5. saves the ensemble as one checkpoint, which lesson 4 loads and lesson 9 serves.

Run it (after lessons 3, 6, 11 and 12; `make run` runs them first):
    python 13_ensembles.py                          # the course's networks
    python 13_ensembles.py --members models/cnn.pt models/vit.pt   # any checkpoints
Lesson 6's CNN with other seeds (about 3 minutes each on a slow 2-core machine), then
their ensemble; docs/results.md's lesson 13 tables measured ensembles over 12 seeds of
the CNN lesson 6 had before (32 and 64 filters, trained with blur too; `make tables`):
    python 06_convolutional_network.py --seed 1 --checkpoint models/cnn_seed1.pt
    python 06_convolutional_network.py --seed 2 --checkpoint models/cnn_seed2.pt
    python 13_ensembles.py --members models/cnn.pt models/cnn_seed1.pt \\
        models/cnn_seed2.pt
Then: python 04_load_model.py --checkpoint models/ensemble.pt,
or python 09_serve_digits.py
Exercises: exercises/ex13_ensembles.py, checked by python exercises/check.py 13
"""

import itertools
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

import dl_utils

# ---- Settings: the defaults reproduce the README; each has a flag (-h lists them) ----
# The members: lessons 6, 11, 12 and 3
MEMBER_FILES = ("cnn.pt", "sequence_gru.pt", "vit.pt", "simple_nn.pt")
MEMBERS = [dl_utils.MODELS_DIR / name for name in MEMBER_FILES]
# What picks the members: MNIST's validation digits ("mnist"), the writer stand-ins
# ("writers"), or the mean of all three sets ("all": the page's users are other writers)
CHOOSE_ON = "all"
WRITER_CHECK = 2000  # validation digits re-drawn and cut to 8x8, as in lesson 6
MAX_MEMBERS = 8  # every subset is tried: 2^8 - 1 = 255 ensembles at most
CHECKPOINT = dl_utils.MODELS_DIR / "ensemble.pt"
CNN_FILE = "cnn.pt"  # lesson 6's CNN: the single network lesson 9 serves by default


class Ensemble(nn.Module):
    """Several trained networks as one: each member's logits -> probabilities, averaged.

    Why average probabilities rather than logits: each network's logits live on a scale
    of its own (a confident CNN's reach +-20, another network's +-8), so in a sum of
    logits the loudest member decides; probabilities share one scale, 0 to 1, summing
    to 1. forward returns the LOG of the averaged probabilities: softmax(log p) = p, so
    lesson 4, lesson 9 and the cross-entropy loss read it exactly as any network's
    logits. members: how to rebuild each network, {"model_module", "model_class",
    "model_kwargs"}, as a checkpoint records it, and "inputs", the pixel scaling it was
    trained on (03); the ensemble's checkpoint holds these and every member's weights
    (a state_dict: "members.0.block1.0.weight", ...; a member trained on other pixels
    sits inside dl_utils.InputsAsTrained: "members.0.model.fc1.weight"), still no
    code.
    """

    def __init__(self, members):
        super().__init__()
        # nn.ModuleList, not a Python list: the members' parameters become the
        # ensemble's own, so state_dict(), .to(device) and .eval() reach them (a plain
        # list hides them). dl_utils.build_model rebuilds each member from its recipe,
        # as load_checkpoint rebuilds any checkpoint's network.
        self.members = nn.ModuleList([dl_utils.build_model(r) for r in members])

    def forward(self, x):  # every member runs: n members cost n times one network
        probs = torch.stack([m(x).softmax(dim=1) for m in self.members]).mean(dim=0)
        return log_of(probs)


def log_of(probs):
    """log p. A probability rounded to 0 would give log 0 = -inf, so the smallest
    positive number of its dtype stands in for it (exercise 13.1 computes the same
    without ever rounding to 0, with logsumexp)."""
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log()


# ---- 1. The members, scored on validation ----------------------------------------
def load_members(paths, device):
    """Each checkpoint's network in eval mode, with what rebuilds it."""
    if len(paths) > MAX_MEMBERS or len(set(paths)) < len(paths):
        raise dl_utils.FriendlyError(
            f"--members: 1 to {MAX_MEMBERS} different checkpoints")
    members = []
    for path in map(Path, paths):
        shown = dl_utils.display_path(path)
        if not path.exists():
            raise dl_utils.FriendlyError(
                f"no checkpoint at {shown}: run the lesson that trains it first "
                "(`make run` trains every default member)")
        model, checkpoint = dl_utils.load_checkpoint(path, device=device)
        if isinstance(model, Ensemble):
            raise dl_utils.FriendlyError(
                f"{shown} is an ensemble already: give its members instead")
        recipe = {}
        for key in ("model_module", "model_class", "model_kwargs"):
            recipe[key] = checkpoint[key]
        recipe["inputs"] = dl_utils.input_scaling(checkpoint, dl_utils.INPUT_SCALINGS)
        members.append({"name": path.name, "model": model.eval(), "recipe": recipe})
    return members


def validation_sets(n):
    """Lesson 6's writer check: validation digits as stored (all 5,000), and the first n
    re-drawn like lesson 9's pad and cut to 8x8 as the UCI digits were made
    (dl_utils.writer_stand_ins). Choices are made on these; never on test digits."""
    train_X, train_y, _, _ = dl_utils.load_mnist_tensors()
    idx = dl_utils.train_val_split(len(train_y))[1]
    stand_ins = dl_utils.writer_stand_ins(train_X[idx[:n]], train_y[idx[:n]])
    return {"validation": (train_X[idx], train_y[idx]),
            "re-drawn": stand_ins["re-drawn like the pad"],
            "8x8": stand_ins["cut to 8x8"]}


def logits_of(model, X, device):
    """A network's logits [N, 10] for uint8 digits [N, 28, 28], 1,000 at a time."""
    parts = []
    with torch.inference_mode():  # no autograd records: inference only
        for batch in X.split(1000):
            parts.append(model(dl_utils.normalize(batch).to(device)).cpu())
    return torch.cat(parts)


def accuracy(logits, y) -> float:
    return (logits.argmax(dim=1) == y).float().mean().item()


def score_members(members, sets, device):
    """Every member's logits on every set, once (each combination below reuses them)."""
    for m in members:
        m["logits"] = {}
        for name, (X, _) in sets.items():
            m["logits"][name] = logits_of(m["model"], X, device)
    shapes = []
    for name, logits in members[0]["logits"].items():
        shapes.append(f"{name} {list(logits.shape)}")
    print("Logits per member and set, e.g. " + ", ".join(shapes))
    rows = []
    for m in members:
        size = dl_utils.count_parameters(m["model"])
        row = [m["name"], m["recipe"]["model_class"], f"{size:,}"]
        for name, (_, y) in sets.items():
            row.append(f"{100 * accuracy(m['logits'][name], y):.2f}")
        rows.append(row)
    headers = ["member", "model", "parameters"]
    for name in sets:
        headers.append(f"{name} %")
    dl_utils.print_table(headers, rows)


# ---- 2. Where they disagree ------------------------------------------------------
def misread_by_every_member(logits, y):
    """Members' logits [members, N, 10] -> two boolean tensors [N]: the digits every
    member misreads, and those of them that the members' averaged probabilities read
    right all the same (the true digit was a close second for every member)."""
    wrong = logits.argmax(dim=-1) != y  # [members, N]
    every = wrong.all(dim=0)
    averaged_right = combine(logits, "probabilities").argmax(dim=1) == y
    return every, every & averaged_right


def shared_errors(members, y):
    """Validation digits each pair misreads together (diagonal: a member's own
    errors), and the count of those every member misreads that averaging fixes."""
    wrong = torch.stack([m["logits"]["validation"].argmax(dim=1) != y for m in members])
    shared = (wrong[:, None] & wrong[None, :]).sum(dim=-1)  # [members, members]
    rows = []
    for m, counts in zip(members, shared):
        rows.append([m["name"], *[f"{int(c):,}" for c in counts]])
    dl_utils.print_table(["errors shared", *[m["name"] for m in members]], rows)
    every, rescued = misread_by_every_member(stacked(members, "validation"), y)
    every, rescued = int(every.sum()), int(rescued.sum())
    some = int(wrong.any(dim=0).sum())
    oracle = 100 * (1 - every / len(y))
    if every == 0:
        averaged = "Averaging has no such digit to rescue here."
    elif rescued == 0:
        averaged = ("Averaged probabilities could still read one of them right, where "
                    "the true digit is every member's close second: here none of the "
                    f"{every:,}.")
    else:
        averaged = ("Averaged probabilities can still read one of them right, where "
                    "the true digit is every member's close second: here "
                    f"{rescued:,} of the {every:,}, so the ensemble below may pass the "
                    "vote's bound.")
    dl_utils.prose(f"""
        Of {len(y):,} validation digits, {some:,} are misread by at least one member
        and {every:,} by every one. A vote can fix none of those {every:,}, nor can any
        rule that picks one member's answer: the best such a rule could do (the
        "oracle", right whenever one member is) is {oracle:.2f}%. {averaged} An
        ensemble gains where errors differ, and members that share most of their
        errors (off the diagonal) add little.""")
    return every, rescued


def plot_disagreements(members, X, y, show, n=12):
    """Validation digits the members answer differently, each member's answer drawn."""
    answers = torch.stack([m["logits"]["validation"].argmax(dim=1) for m in members])
    mixed = (answers != answers[0]).any(dim=0).nonzero().flatten()[:n]
    averaged = combine(stacked(members, "validation"), "probabilities").argmax(dim=1)
    fig, axes = dl_utils.image_grid(1, max(1, len(mixed)), (1.1, 1.5))
    for ax, i in zip(axes.flat, mixed.tolist()):
        ax.imshow(X[i].numpy(), cmap="gray")  # (matplotlib takes NumPy arrays)
        said = "".join(str(a) for a in answers[:, i].tolist())
        right = averaged[i] == y[i]
        ax.set_title(f"{said} -> {averaged[i]}\n(true {y[i]})", fontsize=8,
                     color="green" if right else "red")
    names = ", ".join(m["name"] for m in members)
    fig.suptitle(f"Members' answers ({names}), then all of them averaged", fontsize=9,
                 y=1.12)
    dl_utils.save_figure(fig, "13_disagreements.png", show)


# ---- 3. Three ways to combine them -----------------------------------------------
def combine(logits, how):
    """Members' logits [members, N, 10] -> one [N, 10] score per digit (its argmax is
    the answer)."""
    if how == "probabilities":  # what Ensemble.forward does
        return log_of(logits.softmax(dim=-1).mean(dim=0))
    if how == "logits":  # each member weighted by the scale of its logits
        return logits.mean(dim=0)
    votes = F.one_hot(logits.argmax(dim=-1), 10).sum(dim=0).float()  # "vote": one each
    # (a tie: the averaged probabilities decide)
    return votes + 0.5 * logits.softmax(dim=-1).mean(dim=0)


def stacked(members, name, chosen=None):
    """The chosen members' logits on one set, stacked: [members, N, 10]."""
    if chosen is None:
        chosen = range(len(members))
    return torch.stack([members[i]["logits"][name] for i in chosen])


def combinations_table(members, sets):
    found = {}
    for how in ("probabilities", "logits", "vote"):
        found[how] = []
        for name, (_, y) in sets.items():
            found[how].append(accuracy(combine(stacked(members, name), how), y))
    rows = []
    for how, accs in found.items():
        rows.append([how, *[f"{100 * a:.2f}" for a in accs]])
    headers = [f"all {len(members)} members, combined", *[f"{n} %" for n in sets]]
    dl_utils.print_table(headers, rows)
    best = max(found, key=lambda how: sum(found[how]))
    kept = ""
    if best != "probabilities":
        kept = (" The ensemble below still averages probabilities: that rule was fixed "
                "before looking, and one more choice made on these digits would "
                "flatter them further.")
    dl_utils.prose(f"""
        A vote throws away how sure each member was (a 51% and a 99% answer count the
        same); averaged logits let the member with the largest logits speak loudest;
        averaged probabilities, the usual choice and what Ensemble.forward does, weigh
        every member's confidence on one scale. Here the best mean over the three sets
        of validation digits is that of the {best}.{kept}""")


# ---- 4. Choosing the members, on validation --------------------------------------
def criterion(scores, choose_on):
    """The number the choice maximizes (CHOOSE_ON), from accuracies on the validation
    sets."""
    writers = (scores["re-drawn"] + scores["8x8"]) / 2
    if choose_on == "mnist":
        return scores["validation"]
    if choose_on == "writers":
        return writers
    return (scores["validation"] + 2 * writers) / 3  # "all": the three sets' mean


def every_subset(members, sets, choose_on):
    """[(criterion, -size, member indices, {set: accuracy})] for every non-empty subset,
    best first; on a tie, the one with fewer members (it costs less to run)."""
    found = []
    for k in range(1, len(members) + 1):
        for chosen in itertools.combinations(range(len(members)), k):
            scores = {}
            for name, (_, y) in sets.items():
                combined = combine(stacked(members, name, chosen), "probabilities")
                scores[name] = accuracy(combined, y)
            found.append((criterion(scores, choose_on), -k, chosen, scores))
    return sorted(found, key=lambda f: f[:2], reverse=True)


def member_names(members, chosen):
    """"cnn.pt + vit.pt": the chosen members' file names."""
    return " + ".join(members[i]["name"] for i in chosen)


def subsets_table(members, found, choose_on, rows=6):
    headers = ["members (averaged probabilities)"]
    for name in found[0][3]:
        headers.append(f"{name} %")
    headers.append(f"{choose_on} %")
    table = []
    for score, _, chosen, scores in found[:rows]:
        accs = [f"{100 * a:.2f}" for a in scores.values()]
        table.append([member_names(members, chosen), *accs, f"{100 * score:.2f}"])
    dl_utils.print_table(headers, table)
    best_single = next(f for f in found if f[1] == -1)
    dl_utils.prose(f"""
        The best {min(rows, len(found))} of {len(found)} subsets, by {choose_on!r} (-h:
        --choose-on). Chosen on validation: {member_names(members, found[0][2])}; the
        best single member is {member_names(members, best_single[2])}. Picked as the
        best of {len(found)} on these same digits, the chosen subset's validation
        numbers are a little optimistic (lesson 7c's selection bias): the test set,
        which chose nothing, has the last word.""")
    return found[0][2], best_single[2][0]


# ---- 5. The test set, once -------------------------------------------------------
def test_once(members, chosen, best, device):
    """The chosen ensemble against its best single member on the same 10,000 test
    digits, judged by McNemar's exact test (lesson 8b) on the digits they answer
    differently."""
    _, _, X, y = dl_utils.load_mnist_tensors()
    logits = {}
    for i in {*chosen, best, *indices_of(members, CNN_FILE)}:
        logits[i] = logits_of(members[i]["model"], X, device)
    name = members[best]["name"]
    if chosen == (best,):  # one network won: there is nothing to pair it with
        acc = accuracy(logits[best], y)
        print(f"Chosen on validation: {name} alone (no subset of members read better).")
        print(f"No ensemble beat it: {name} alone, on the test set: "
              f"{dl_utils.format_accuracy(acc, len(y))}")
        against_the_cnn(members, chosen, acc, logits, y)
        return {"test_acc": acc, "best_member_test_acc": acc}
    ensemble = combine(torch.stack([logits[i] for i in chosen]), "probabilities")
    acc = {"ensemble": accuracy(ensemble, y), "best": accuracy(logits[best], y)}
    dl_utils.print_table(
        ["on the test set", "members", "accuracy (95% interval)"],
        [["the chosen ensemble", len(chosen), dl_utils.format_accuracy(acc["ensemble"],
                                                                       len(y))],
         [name, 1, dl_utils.format_accuracy(acc["best"], len(y))]])
    fixed, broken = dl_utils.changed_predictions(logits[best], ensemble, y)
    p = dl_utils.coin_flip_p(fixed, broken)
    if p >= 0.05:
        said = "shows no clear difference from"
    elif fixed > broken:
        said = "reads the test digits better than"
    else:
        said = "reads them worse than"
    dl_utils.prose(f"""
        Paired on the same digits: the ensemble reads {fixed} digits right that {name}
        misreads, and misreads {broken} that it reads right. Were the two equally good,
        each of those {fixed + broken} digits would be a fair coin flip between them
        (McNemar's exact test, lesson 8b): p = {p:.2g}, so the chosen ensemble {said}
        its best member. The test counts the digits' luck, not the members': other seeds
        give other members (the README's table varies them).""")
    against_the_cnn(members, chosen, acc["ensemble"], logits, y)
    return {"test_acc": acc["ensemble"], "best_member_test_acc": acc["best"],
            "fixed": fixed, "broken": broken, "p": p}


def indices_of(members, file_name):
    """[i] for the member saved as file_name (lesson 6's cnn.pt), or [] without it."""
    return [i for i, m in enumerate(members) if m["name"] == file_name]


def against_the_cnn(members, chosen, acc, logits, y):
    """One line when the choice does not read the test digits better than lesson 6's
    CNN alone: the network lesson 9 serves anyway, at a quarter of the cost."""
    cnn = indices_of(members, CNN_FILE)
    if not cnn or tuple(cnn) == chosen:
        return
    cnn_acc = accuracy(logits[cnn[0]], y)
    if acc <= cnn_acc:
        what = "ensemble" if len(chosen) > 1 else "network"
        print(f"On the test set the chosen {what} does not beat {CNN_FILE} alone: "
              f"{100 * acc:.2f}% against {100 * cnn_acc:.2f}%.")


# ---- 6. One checkpoint for lessons 4 and 9 ---------------------------------------
def save_ensemble(path, members, chosen, metrics, X):
    """The chosen members as one Ensemble, saved, loaded back, and compared on X."""
    recipes = [members[i]["recipe"] for i in chosen]
    ensemble = Ensemble(recipes).eval()
    for slot, i in zip(ensemble.members, chosen):  # each member's weights, copied in
        slot.load_state_dict(members[i]["model"].state_dict())
    files = [members[i]["name"] for i in chosen]
    dl_utils.save_checkpoint(path, ensemble, {"members": recipes}, metrics=metrics,
                             member_files=files,
                             trained_on="its members' training data (MNIST's "
                                        "training split, unless a member's checkpoint "
                                        "says more)")
    again, _ = dl_utils.load_checkpoint(path)
    with torch.inference_mode():
        inputs = dl_utils.normalize(X)
        gap = (again.eval()(inputs) - ensemble(inputs)).abs().max().item()
    size = path.stat().st_size / 1000
    if len(chosen) == 1:
        held = (f"one network, a copy of {files[0]} wrapped as an ensemble of one: "
                f"lesson 9 serves it beside {files[0]}, with the same answers")
    else:
        held = f"{len(chosen)} members' weights and how to rebuild each"
    dl_utils.prose(f"""
        Saved {dl_utils.display_path(path)} ({size:.0f} KB: {held}). Loaded back, its
        outputs on {len(X)} digits differ from the ensemble's by at most {gap:.1g}.""")


def parse_args(argv=None):
    parser = dl_utils.make_parser(__doc__)
    shown = " ".join(dl_utils.display_path(p) for p in MEMBERS)
    parser.add_argument("--members", nargs="+", default=[str(p) for p in MEMBERS],
                        metavar="CHECKPOINT",
                        help=f"the networks to combine (default: {shown})")
    parser.add_argument("--choose-on", choices=["mnist", "writers", "all"],
                        default=CHOOSE_ON,
                        help="what picks the members: MNIST's validation digits, the "
                             "writer stand-ins (re-drawn, 8x8), or the mean of the "
                             "three (default: %(default)s)")
    parser.add_argument("--writer-check", type=dl_utils.positive_int,
                        default=WRITER_CHECK,
                        help="validation digits re-drawn and cut to 8x8 "
                             "(default: %(default)s)")
    parser.add_argument("--checkpoint", type=dl_utils.output_file,
                        default=str(CHECKPOINT),
                        help="where to save the chosen ensemble (default: "
                             f"{dl_utils.display_path(CHECKPOINT)})")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"],
                        default=os.environ.get("DL_DEVICE", "auto"),
                        help="where the networks run; auto = CUDA, then MPS, then CPU. "
                             "Also settable with the DL_DEVICE environment variable "
                             "(default: %(default)s)")
    parser.add_argument("--show", action="store_true",
                        help="also open the figure in a window when a display exists; "
                             "it is always saved as PNG under figures/")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    dl_utils.setup_figures(args.show)
    dl_utils.section("Setup")
    device = dl_utils.get_device(args.device)
    members = load_members(args.members, device)
    sets = validation_sets(args.writer_check)
    counts = []
    for name, (_, y) in sets.items():
        counts.append(f"{len(y):,} {name}")
    print(f"{len(members)} members; validation digits: {', '.join(counts)}")
    dl_utils.section("1. Each member alone, on validation")
    score_members(members, sets, device)
    dl_utils.section("2. Where they disagree")
    shared_errors(members, sets["validation"][1])
    plot_disagreements(members, *sets["validation"], args.show)
    dl_utils.section("3. Three ways to combine them")
    combinations_table(members, sets)
    dl_utils.section("4. Choosing the members, on validation")
    found = every_subset(members, sets, args.choose_on)
    chosen, best = subsets_table(members, found, args.choose_on)
    dl_utils.section("5. The chosen ensemble on the test set, once")
    metrics = test_once(members, chosen, best, device)
    dl_utils.section("Saving")
    save_ensemble(Path(args.checkpoint), members, chosen, metrics,
                  sets["validation"][0][:100])
    dl_utils.prose(f"""
        Next: python 04_load_model.py --checkpoint
        {dl_utils.display_path(args.checkpoint)}, or python 09_serve_digits.py (it
        serves every checkpoint in models/)""")
    dl_utils.show_figures(args.show)
    return 0


if __name__ == "__main__":
    dl_utils.run_main(main)
