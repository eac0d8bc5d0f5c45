"""Lesson 11: the hand-written RNN equals nn.RNN (and a planted error is caught), the cells
measured through time are the layer's own, the rows' order travels with the model, the
lesson runs, and lessons 4 and 9 use its checkpoint."""

import torch
from conftest import benchmark_reads, lesson, lessons_4_and_9_use, run_script


def m11():
    return lesson("11_sequences_and_rnns")


def test_the_rnn_by_hand_matches_nn_rnn_and_a_planted_error_is_caught():
    diffs = m11().check_against_torch()
    assert len(diffs) == 5 and max(diffs.values()) < 1e-10

    def no_recurrence(X, W_x, W_h, b):  # forgets h_{t-1}: every step starts afresh
        return torch.tanh(X @ W_x + b)

    def relu_cell(X, W_x, W_h, b):  # another non-linearity
        h, out = torch.zeros(X.shape[0], W_h.shape[0], dtype=X.dtype), []
        for t in range(X.shape[1]):
            h = torch.relu(X[:, t] @ W_x + h @ W_h + b)
            out.append(h)
        return torch.stack(out, 1)
    for wrong in (no_recurrence, relu_cell):
        assert max(m11().check_against_torch(wrong).values()) > 1e-3


def test_the_cells_measured_through_time_are_the_layers_own():
    X = torch.randn(4, 28, 28)
    for kind in ("rnn", "gru", "lstm"):
        torch.manual_seed(0)
        layer = m11().SequenceRNN(kind, 16).rnn
        cell = m11().cell_of(layer)
        h = c = torch.zeros(4, 16)
        for t in range(28):
            if kind == "lstm":
                h, c = cell(X[:, t], (h, c))
            else:
                h = cell(X[:, t], h)
        assert torch.allclose(h, layer(X)[0][:, -1], atol=1e-6), kind


def test_the_rows_order_is_part_of_the_model():
    """A model with a row order reads permuted rows as the plain one reads the originals,
    and the order is saved and loaded with the weights."""
    torch.manual_seed(0)
    plain = m11().SequenceRNN("gru", 12)
    perm = torch.randperm(28).tolist()
    shuffled = m11().SequenceRNN("gru", 12, order=perm)
    shuffled.load_state_dict({**plain.state_dict(), "order": torch.tensor(perm)})
    X = torch.randn(3, 1, 28, 28)
    inverse = torch.argsort(torch.tensor(perm))
    assert torch.allclose(shuffled(X[:, :, inverse]), plain(X), atol=1e-6)
    assert torch.equal(shuffled.state_dict()["order"], torch.tensor(perm))


def test_quick_run_saves_a_model_that_04_and_09_use(tmp_path):
    ckpt = tmp_path / "sequence_gru.pt"
    result = run_script("11_sequences_and_rnns.py", "--epochs", "1", "--subset", "1000",
                        "--checkpoint", ckpt, inline=True)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for header in ("1. MNIST as a sequence", "2. A recurrent cell by hand", "3. Why plain RNNs",
                   "4. A GRU trained", "5. What order means"):
        assert header in out
    assert "[128, 28, 28]" in out and "[128, 28, 80]" in out and "27,210 parameters" in out
    assert "NO" not in out.split("2. A recurrent cell by hand")[1].split("3. Why")[0]
    benchmark_reads("11_sequences_and_rnns.py", out)
    lessons_4_and_9_use(ckpt, "SequenceRNN(cell=gru, hidden_size=80, order=None)", "SequenceRNN")


def test_clipping_is_measured_on_the_same_seeds():
    """clipping_run is seeded (the same seed, the same run); the norms it reports are
    measured before clipping, and a clipped run then takes other steps."""
    X, y = torch.randn(200, 1, 28, 28), torch.randint(0, 10, (200,))
    clipped = m11().clipping_run(X, y, 0.01, seed=3, steps=5)
    assert clipped == m11().clipping_run(X, y, 0.01, seed=3, steps=5)
    free = m11().clipping_run(X, y, None, seed=3, steps=5)
    assert free[0][0] == clipped[0][0] > 0.01  # the same first gradient, before clipping
    assert free[1][1:] != clipped[1][1:]  # then the clipped steps differ
