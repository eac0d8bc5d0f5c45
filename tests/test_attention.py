"""Lessons 12 and 12b: the hand-written attention equals PyTorch's (and planted errors
are caught), the ViT trains through F.scaled_dot_product_attention and keeps weights
only when asked, its optimizer decays what lesson 7's does, the tiles are cut and moved
as the lessons say, 12b's ViT from PyTorch's layers is lesson 12's number for number,
a ViT without positions cannot see a shuffle, every run gets the same steps at any data
size, the 1/sqrt(d) table measures what it claims, the verdicts are McNemar's, and
lessons 4 and 9 use lesson 12's checkpoint."""

import json
import math

import torch
from conftest import benchmark_reads, lesson, lessons_4_and_9_use, run_script

import dl_utils


def m12():
    return lesson("12_attention_and_transformers")


def m12b():
    return lesson("12b_inductive_bias")


def test_attention_by_hand_matches_pytorch_and_planted_errors_are_caught():
    diffs = m12().check_against_torch()
    assert len(diffs) == 6 and max(diffs.values()) < 1e-10

    def unscaled(Q, K, V, mask=None):  # forgets the 1/sqrt(d)
        scores = Q @ K.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1) @ V, scores.softmax(-1)

    def over_queries(Q, K, V, mask=None):  # softmax over the wrong axis
        scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-2).nan_to_num()
        return weights @ V, weights

    def mask_ignored(Q, K, V, mask=None):
        return m12().attention(Q, K, V)

    for wrong in (unscaled, over_queries):
        assert max(m12().check_against_torch(wrong).values()) > 1e-3, wrong.__name__
    caught = m12().check_against_torch(mask_ignored)
    assert caught["... with a mask: outputs"] > 1e-3
    # only the mask differs
    assert caught["F.scaled_dot_product_attention: outputs"] < 1e-10


def test_tiles_are_cut_in_reading_order_and_moved_back():
    X = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    tiles = m12().patchify(X, 7)
    assert tiles.shape == (2, 16, 49)
    assert torch.equal(tiles[:, 0], X[:, 0, :7, :7].reshape(2, 49))
    assert torch.equal(tiles[:, 1], X[:, 0, :7, 7:14].reshape(2, 49))  # left to right
    assert torch.equal(tiles[:, 4], X[:, 0, 7:14, :7].reshape(2, 49))
    for patch in (7, 4):  # 12b cuts them with F.unfold: the same tiles
        assert torch.equal(m12b().tiles(X, patch), m12().patchify(X, patch))
    order = torch.randperm(16)
    moved = m12b().shuffle_tiles(X, order, 7)
    assert torch.equal(m12().patchify(moved, 7), tiles[:, order])
    assert torch.equal(m12b().shuffle_tiles(X, torch.arange(16), 7), X)
    assert torch.equal(m12b().shuffle_tiles(moved, torch.argsort(order), 7), X)


def test_the_vit_trains_through_pytorchs_attention_and_keeps_weights_only_if_asked():
    """Review 3.6 and 3.5: training runs F.scaled_dot_product_attention; the hand
    version, which hands back its weights, runs only when keep_weights is set."""
    torch.manual_seed(0)
    block = m12().SelfAttention(32, 4).eval()
    X = torch.randn(3, 17, 32)
    calls = []
    original = m12().F.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)
    m12().F.scaled_dot_product_attention = counted
    try:
        out = block(X)
    finally:
        m12().F.scaled_dot_product_attention = original
    assert calls == [1] and block.weights is None
    block.keep_weights = True
    assert torch.allclose(block(X), out, atol=1e-5)
    assert block.weights.shape == (3, 4, 17, 17)
    assert torch.allclose(block.weights.sum(dim=-1), torch.ones(3, 4, 17))


def test_the_vits_optimizer_decays_what_lesson_7_decays():
    """Review 1.7: tensors of 2 or more dimensions decay; biases and LayerNorm's
    scales and shifts do not."""
    model = m12().ViT(dim=32, depth=1, heads=4, mlp_size=64)
    decayed, other = m12().make_optimizer(model, 1e-3, 0.05).param_groups
    assert decayed["weight_decay"] == 0.05 and other["weight_decay"] == 0.0
    names = {id(p): name for name, p in model.named_parameters()}
    assert {names[id(p)] for p in other["params"]} == {
        name for name, p in model.named_parameters() if p.dim() < 2}
    assert "blocks.0.norm1.weight" in {names[id(p)] for p in other["params"]}
    assert "blocks.0.attn.qkv.weight" in {names[id(p)] for p in decayed["params"]}
    assert len(decayed["params"]) + len(other["params"]) == len(names)


def test_12b_builds_lesson_12s_vit_from_pytorchs_layers():
    """The same parameters, and with lesson 12's weights, the same outputs."""
    torch.manual_seed(0)
    ours = m12().ViT().eval()
    theirs = m12b().LibraryViT().eval()
    assert dl_utils.count_parameters(ours) == 139_018
    assert dl_utils.count_parameters(theirs) == 139_018
    with torch.no_grad():
        ours.pos.normal_()  # (trained positions are far from their small start)
        ours.cls.normal_()
    theirs.load_state_dict(m12b().from_lesson_12(ours.state_dict()))
    X = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(ours(X), theirs(X), atol=1e-4)
    assert m12b().check_patch_embedding() < 1e-12


def test_a_vit_without_positions_cannot_see_a_shuffle_and_one_with_them_can():
    torch.manual_seed(0)
    X, order = torch.randn(6, 1, 28, 28), torch.randperm(16)
    small = {"dim": 32, "depth": 2, "heads": 4, "mlp_size": 64}
    blind = m12b().LibraryViT(positions=False, **small).eval()
    seeing = m12b().LibraryViT(**small).eval()
    with torch.no_grad():
        seeing.pos.normal_()  # (trained positions are far from their small start)
        shuffled = m12b().shuffle_tiles(X, order)
        assert torch.allclose(blind(X), blind(shuffled), atol=1e-5)
        assert (seeing(X) - seeing(shuffled)).abs().max() > 1e-2
    assert "pos" not in blind.state_dict() and "pos" in seeing.state_dict()


def test_rounds_give_the_same_steps_at_any_data_size():
    for n in (100, 1000):
        generator = torch.Generator().manual_seed(0)
        loader = dl_utils.TensorLoader(torch.randn(n, 1, 28, 28), torch.arange(n) % 10,
                                       64, shuffle=True, generator=generator)
        rounds = m12b().Rounds(loader, 25)
        batches = list(rounds)
        assert len(rounds) == len(batches) == 25
        assert sum(len(y) for _, y in batches) >= 25 * 36  # (a pass may end short)


def test_12b_says_what_its_numbers_show(capsys):
    """Review 1.6 and section 5: each sentence follows its McNemar counts."""
    y = torch.arange(100) % 10
    right = torch.eye(10)[y] * 5
    wrong = torch.eye(10)[(y + 1) % 10] * 5

    def reading(first_right):  # logits right on the first `first_right` digits
        return torch.cat([right[:first_right], wrong[first_right:]])
    m12b().explain_sizes({1000: {"cnn_only": 30, "vit_only": 2, "p": 1e-6},
                          5000: {"cnn_only": 25, "vit_only": 3, "p": 1e-5}})
    said = " ".join(capsys.readouterr().out.split())
    assert "at every size measured up to 5,000 images and this budget, the CNN" in said
    assert "For small datasets, use the CNN" in said and "plentiful" not in said
    m12b().explain_sizes({1000: {"cnn_only": 30, "vit_only": 2, "p": 1e-6},
                          5000: {"cnn_only": 12, "vit_only": 10, "p": 0.8}})
    said = " ".join(capsys.readouterr().out.split())
    assert "1,000 images: the CNN; 5,000 images: no clear difference" in said
    found = {"lesson 12's ViT, all images": (reading(90), reading(60)),
             "ViT, 1,000 images": (reading(80), reading(79)),
             "ViT without positions, 1,000": (reading(70), reading(70))}
    gain = m12b().explain_positions(found, y, 1e-7)
    said = " ".join(capsys.readouterr().out.split())
    assert "30 digits go wrong and 0 go right" in said
    assert "it reads where each tile is" in said  # 30 against 0: p < 0.05
    assert "1 digits go wrong and 0 go right (McNemar's exact p = 1): no clear" in said
    assert "10 digits read right only with them, 0 only without" in said
    assert "positions help" in said and gain == 0.1


def test_the_scale_table_measures_sqrt_d():
    for row in m12().score_spread(dims=(4, 64), n=200):
        assert abs(row["std"] / math.sqrt(row["d"]) - 1) < 0.1
        assert abs(row["std_scaled"] - 1) < 0.1
        assert row["top_scaled"] < row["top"]


def test_quick_run_saves_a_model_that_04_and_09_use_and_12b_reads(tmp_path):
    ckpt = tmp_path / "vit.pt"
    result = run_script("12_attention_and_transformers.py", "--epochs", "1",
                        "--subset", "1000", "--checkpoint", ckpt, "--results",
                        tmp_path / "12.json", inline=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for header in ("1. Tokens", "2. Attention by hand", "3-4. The ViT trained",
                   "5. Where the class"):
        assert header in out
    assert "[128, 16, 49]" in out and "[128, 17, 64]" in out
    assert "139,018 parameters" in out
    assert "NO" not in out.split("2. Attention by hand")[1].split("3-4.")[0]
    benchmark_reads("12_attention_and_transformers.py", out)
    lessons_4_and_9_use(ckpt, "ViT(patch=7, dim=64, depth=4, heads=4, mlp_size=128)",
                        "ViT")
    results = tmp_path / "12b.json"
    result = run_script("12b_inductive_bias.py", "--small-steps", "8", "--vit", ckpt,
                        "--results", results, inline=True)
    assert result.returncode == 0, result.stderr
    out = " ".join(result.stdout.split())
    for header in ("1. The same ViT", "2. What position embeddings do",
                   "3. Inductive bias"):
        assert header in out
    assert "139,018 parameters" in out and "every answer is the same" in out
    assert "lesson 12's ViT, all images" in out
    sizes = json.loads(results.read_text())["sizes"]
    assert set(sizes["1000"]) >= {"cnn_val_acc", "vit_val_acc"}  # make tables reads


def test_heads_must_divide_the_width():
    result = run_script("12_attention_and_transformers.py", "--dim", "30",
                        "--heads", "4")
    assert result.returncode != 0 and "--heads 4 must divide --dim 30" in result.stderr
    assert "Traceback" not in result.stderr
