"""Lesson 12: the hand-written attention equals PyTorch's (and planted errors are caught),
the tiles are cut and moved as the lesson says, a ViT without positions cannot see a
shuffle, every run gets the same steps at any data size, the 1/sqrt(d) table measures
what it claims, and lessons 4 and 9 use the lesson's checkpoint."""

import math

import torch
from conftest import benchmark_reads, lesson, lessons_4_and_9_use, run_script

import dl_utils


def m12():
    return lesson("12_attention_and_transformers")


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
    assert caught["F.scaled_dot_product_attention: outputs"] < 1e-10  # only the mask differs


def test_tiles_are_cut_in_reading_order_and_moved_back():
    X = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    tiles = m12().patchify(X, 7)
    assert tiles.shape == (2, 16, 49)
    assert torch.equal(tiles[:, 0], X[:, 0, :7, :7].reshape(2, 49))
    assert torch.equal(tiles[:, 1], X[:, 0, :7, 7:14].reshape(2, 49))  # left to right first
    assert torch.equal(tiles[:, 4], X[:, 0, 7:14, :7].reshape(2, 49))
    order = torch.randperm(16)
    moved = m12().shuffle_tiles(X, order, 7)
    assert torch.equal(m12().patchify(moved, 7), tiles[:, order])
    assert torch.equal(m12().shuffle_tiles(X, torch.arange(16), 7), X)
    assert torch.equal(m12().shuffle_tiles(moved, torch.argsort(order), 7), X)


def test_a_vit_without_positions_cannot_see_a_shuffle_and_one_with_them_can():
    torch.manual_seed(0)
    X, order = torch.randn(6, 1, 28, 28), torch.randperm(16)
    blind = m12().ViT(dim=32, depth=2, heads=4, mlp_size=64, positions=False).eval()
    seeing = m12().ViT(dim=32, depth=2, heads=4, mlp_size=64).eval()
    with torch.no_grad():
        seeing.pos.normal_()  # (trained positions are far from their small start)
        shuffled = m12().shuffle_tiles(X, order)
        assert torch.allclose(blind(X), blind(shuffled), atol=1e-5)
        assert (seeing(X) - seeing(shuffled)).abs().max() > 1e-2
    assert "pos" not in blind.state_dict() and "pos" in seeing.state_dict()


def test_rounds_give_the_same_steps_at_any_data_size():
    for n in (100, 1000):
        loader = dl_utils.TensorLoader(torch.randn(n, 1, 28, 28), torch.arange(n) % 10, 64,
                                       shuffle=True, generator=torch.Generator().manual_seed(0))
        rounds = m12().Rounds(loader, 25)
        batches = list(rounds)
        assert len(rounds) == len(batches) == 25
        assert sum(len(y) for _, y in batches) >= 25 * 36  # (a pass may end in a short batch)


def test_the_scale_table_measures_sqrt_d():
    for row in m12().score_spread(dims=(4, 64), n=200):
        assert abs(row["std"] / math.sqrt(row["d"]) - 1) < 0.1
        assert abs(row["std_scaled"] - 1) < 0.1
        assert row["top_scaled"] < row["top"]


def test_quick_run_saves_a_model_that_04_and_09_use(tmp_path):
    ckpt = tmp_path / "vit.pt"
    result = run_script("12_attention_and_transformers.py", "--epochs", "1", "--subset", "1000",
                        "--small-steps", "8", "--checkpoint", ckpt, "--results",
                        tmp_path / "12.json", inline=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for header in ("1. Tokens", "2. Attention by hand", "3-4. The ViT trained",
                   "5. What position embeddings do", "6. Inductive bias", "7. Where the class"):
        assert header in out
    assert "[128, 16, 49]" in out and "[128, 17, 64]" in out and "139,018 parameters" in out
    assert "NO" not in out.split("2. Attention by hand")[1].split("3-4.")[0]
    benchmark_reads("12_attention_and_transformers.py", out)
    lessons_4_and_9_use(ckpt, "ViT(patch=7, dim=64, depth=4, heads=4, mlp_size=128)", "ViT")


def test_heads_must_divide_the_width():
    result = run_script("12_attention_and_transformers.py", "--dim", "30", "--heads", "4")
    assert result.returncode != 0 and "--heads 4 must divide --dim 30" in result.stderr
    assert "Traceback" not in result.stderr
