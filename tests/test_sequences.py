"""Lesson 11: the hand-written RNN equals nn.RNN (and a planted error is caught), the
cells measured through time are the layer's own, at PyTorch's default start and at the
usual one, the prose says what the numbers show (gates only for gated cells, clipping
as it acted, no verdict on one run per row order), the rows' order travels with the
model, the lesson runs, and lessons 4 and 9 use its checkpoint."""

import torch
from conftest import benchmark_reads, lesson, lessons_4_and_9_use, run_script

import dl_utils


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
    """A model with a row order reads permuted rows as the plain one reads the
    originals, and the order is saved and loaded with the weights."""
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
    for header in ("1. MNIST as a sequence", "2. A recurrent cell by hand",
                   "3. Why plain RNNs", "4. A GRU trained", "5. What order means"):
        assert header in out
    assert "[128, 28, 28]" in out and "[128, 28, 80]" in out
    assert "27,210 parameters" in out
    assert "RNN, orthogonal W_h" in out and "measured BEFORE clipping" in out
    assert "NO" not in out.split("2. A recurrent cell by hand")[1].split("3. Why")[0]
    benchmark_reads("11_sequences_and_rnns.py", out)
    lessons_4_and_9_use(ckpt, "SequenceRNN(cell=gru, hidden_size=80, order=None)",
                        "SequenceRNN")


def test_clipping_is_measured_on_the_same_seeds():
    """clipping_run is seeded (the same seed, the same run); the norms it reports are
    measured before clipping, and a clipped run then takes other steps."""
    X, y = torch.randn(200, 1, 28, 28), torch.randint(0, 10, (200,))
    clipped = m11().clipping_run(X, y, 0.01, seed=3, steps=5)
    assert clipped == m11().clipping_run(X, y, 0.01, seed=3, steps=5)
    free = m11().clipping_run(X, y, None, seed=3, steps=5)
    assert free[0][0] == clipped[0][0] > 0.01  # the same first gradient, unclipped
    assert free[1][1:] != clipped[1][1:]  # then the clipped steps differ


def test_the_usual_starts_are_what_their_names_say():
    torch.manual_seed(0)
    rnn = m11().usual_start(m11().SequenceRNN("rnn", 16).rnn)
    w = rnn.weight_hh_l0.detach()
    assert torch.allclose(w @ w.T, torch.eye(16), atol=1e-5)  # orthogonal: lengths kept
    for kind in ("lstm", "gru"):  # the second gate (forget, update): bias 1 in all
        layer = m11().usual_start(m11().SequenceRNN(kind, 16).rnn)
        bias = (layer.bias_ih_l0 + layer.bias_hh_l0).detach()
        assert torch.equal(bias[16:32], torch.ones(16)), kind
        fresh = m11().SequenceRNN(kind, 16).rnn
        assert (fresh.bias_ih_l0 + fresh.bias_hh_l0)[16:32].abs().max() < 0.5


def test_the_through_time_table_has_both_starts_and_says_what_they_show(capsys):
    """Review 1.3: the usual start passes more gradient back to step 1 than PyTorch's
    default, for every cell; the sentence comparing an orthogonal RNN with the default
    gated cells is printed only when its numbers say so."""
    val = dl_utils.load_mnist_data()[1]
    X, y = val.X[:256].reshape(256, 28, 28), val.y[:256]
    args = m11().parse_args([])
    curves, radius = m11().through_time_section(X, y, args)
    assert list(curves) == ["RNN", "RNN, orthogonal W_h", "LSTM", "LSTM, forget bias 1",
                            "GRU", "GRU, update bias 1"]
    ratio = {name: c[0] / c[-1] for name, c in curves.items()}
    for name, start in m11().USUAL_STARTS.items():
        assert ratio[f"{name}, {start}"] > ratio[name], name
    assert 0.4 < radius < 0.8  # uniform in +-1/sqrt(80): a radius near 0.6
    table = capsys.readouterr().out
    assert "RNN, orthogonal W_h" in table and "LSTM, forget bias 1" in table
    m11().explain_through_time(curves, radius, 80)
    said = " ".join(capsys.readouterr().out.split())
    beats = ratio["RNN, orthogonal W_h"] > max(ratio["LSTM"], ratio["GRU"])
    said_beats = "passes back more than the LSTM and the GRU at their default" in said
    assert said_beats == beats
    assert "Initialization decides how much gradient reaches step 1" in said
    assert f"(the size of its largest eigenvalue) of {radius:.2f}" in said
    assert "Jacobian: the matrix of how much each of h_t's numbers moves" in said


def test_only_gated_cells_are_said_to_have_gates(capsys):
    """Review 1.4: --cell rnn has no gates; the sentence names the cell."""
    for name in ("RNN", "GRU", "LSTM"):
        curves = {name: [1e-8] + [1.0] * 27, f"{name}, trained": [1e-4] + [1.0] * 27}
        m11().explain_trained(curves, name)
        said = " ".join(capsys.readouterr().out.split())
        assert f"step 1 of the {name}" in said
        assert ("gates" in said) == (name != "RNN"), said
    m11().explain_trained({"GRU": [1e-4] + [1.0] * 27,
                           "GRU, trained": [1e-8] + [1.0] * 27}, "GRU")
    assert "no more of it reaches the first rows" in capsys.readouterr().out


def test_clipping_says_when_it_fixes_every_step_and_when_only_the_spikes(capsys):
    d = {"mean": -0.2, "low": -0.3, "high": -0.1, "se": 0.02, "n": 3}
    steady = torch.linspace(1.5, 3.0, 100)  # every norm over 1: no spike
    m11().explain_clipping(d, 1.0, steady, 100)
    said = " ".join(capsys.readouterr().out.split())
    assert "shortened 100% of the unclipped run's steps" in said
    assert "fixes every step's length" in said and "clipping trained better" in said
    assert "LSTMs are still trained with clipping" in said
    assert f"--clip {torch.quantile(steady, 0.9).item():.2g}" in said
    spiky = torch.cat([torch.full((95,), 0.5), torch.full((5,), 9.0)])
    m11().explain_clipping({**d, "high": 0.1}, 1.0, spiky, 100)
    said = " ".join(capsys.readouterr().out.split())
    assert "shortened 5% of the unclipped run's steps: only the longest" in said
    assert "every step's length" not in said and "no clear difference" in said


def test_the_row_order_is_not_judged_on_one_seed(capsys):
    """Review 1.5: one run per order gives no verdict, only "far above chance"."""
    found = {"rows in order": {"best_val_acc": 0.91},
             "rows shuffled (fixed)": {"best_val_acc": 0.86}}
    m11().explain_order(found)
    said = " ".join(capsys.readouterr().out.split())
    assert "far above chance" in said and "read better, by" not in said
    assert "margin" not in said


def test_row_order_moves_the_blankest_or_inkiest_rows_to_the_end():
    """benchmarks/row_order.py: each order is the seed's shuffle with three rows moved
    to the end, the blankest or the inkiest, and otherwise the same rows in the same
    order; then a tiny run prints both paired differences."""
    row_order = lesson("benchmarks.row_order")
    ink = [-(r - 13.2) ** 2 for r in range(28)]  # inkiest in the middle, no ties
    found = row_order.orders(0, ink)
    assert found["in order"] is None
    perm = torch.randperm(28, generator=torch.Generator().manual_seed(0)).tolist()
    for name, last in (("shuffled, ends blank", [27, 0, 26]),
                       ("shuffled, ends inked", [13, 14, 12])):
        assert found[name][-3:] == last, name
        assert found[name][:-3] == [r for r in perm if r not in last], name
    result = run_script("benchmarks/row_order.py", "--seeds", "2", "--subset", "300",
                        inline=True)
    assert result.returncode == 0, result.stderr
    assert "in order minus 'shuffled, ends inked':" in result.stdout
    assert "shuffled, ends blank minus 'shuffled, ends inked':" in result.stdout
