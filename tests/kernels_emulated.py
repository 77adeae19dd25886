"""Run by test_kernels.py under qemu-x86_64 -cpu <older processor>: which variant the library picks
there, and whether its decoder, its recurrences and the gated cells' loops compute what plain NumPy
computes. Prints "variant <name>" and "agree"; exits non-zero otherwise (an illegal instruction kills
it)."""
import numpy as np

from scratchrnn import kernels
from scratchrnn.cells import get_cell
from scratchrnn.cells.base import CellWeights
from scratchrnn.kernels import decode, gated, recurrence

chosen = kernels.load()
if chosen is None:
    raise SystemExit(f"kernels {kernels.status()}")
print("variant", chosen.variant, kernels.built_variants())

rng = np.random.default_rng(0)
hidden, vocab, batch, steps = 64, 11, 2, 6
W_step = rng.normal(0, 1.5 / np.sqrt(hidden), (hidden, hidden + vocab)).astype(np.float32)
input_rows = rng.normal(0, 0.8, (vocab, hidden)).astype(np.float32)
b_q = rng.normal(0, 0.3, vocab).astype(np.float32)
h = np.zeros((batch, hidden), np.float32)
logits = (h @ W_step[:, hidden:] + b_q).astype(np.float32)
want_h, want_logits, want = np.zeros((batch, hidden)), logits.astype(np.float64), []
tokens = decode.greedy_decode(h, logits, input_rows, W_step, b_q, "tanh", 20, threads=2)
for _ in range(20):
    picked = want_logits.argmax(axis=1)
    want.append(picked)
    want_h = np.tanh(input_rows[picked] + want_h @ W_step[:, :hidden])
    want_logits = want_h @ W_step[:, hidden:] + b_q
assert (tokens == np.stack(want, axis=1)).all(), (tokens, want)
assert np.allclose(h, want_h, atol=5e-5)

W = W_step[:, :hidden].copy()
hs = rng.normal(0, 0.7, (steps + 1, batch * 8, hidden)).astype(np.float32)
ref = hs.astype(np.float64)
for t in range(steps):
    ref[t + 1] = np.tanh(ref[t + 1] + ref[t] @ W)
recurrence.forward(hs, W, "tanh", threads=2)
assert np.allclose(hs, ref, atol=5e-5)
dz, dh0 = recurrence.backward(hs, W, None, np.ones((batch * 8, hidden), np.float32),
                              "tanh", True, threads=2)
carried = np.ones((batch * 8, hidden))
for t in range(steps - 1, -1, -1):
    want_dz = carried * (1 - ref[t + 1] ** 2)
    assert np.allclose(dz[t], want_dz, atol=5e-5)
    carried = want_dz @ W.T
assert np.allclose(dh0, carried, atol=5e-5)

# the gated cells: the compiled loops against the cells' own, in float64
for name, width in (("gru", 2), ("lstm", 4)):
    cell = get_cell(name)
    gates = gated.GATES[name]
    terms = rng.normal(0, 1, (steps, batch * 8, gates * hidden))
    weights = CellWeights(None, None, rng.normal(0, 1.2 / np.sqrt(hidden), (hidden, width * hidden)),
                          rng.normal(0, 1.2 / np.sqrt(hidden), (hidden, hidden)) if name == "gru" else None)
    state = tuple(np.tanh(rng.normal(size=(batch * 8, hidden))) for _ in cell.state_names)
    d_outputs = rng.normal(size=(steps, batch * 8, hidden))
    want_cache = cell.forward_steps(terms, state, weights)
    want_grads = cell.backward_steps(want_cache, weights, d_outputs.copy(), *(None,) * len(state), True)
    as32 = [a.astype(np.float32) for a in (terms, *state, weights.W_h)]
    runs = []
    if name == "gru":
        cache = gated.gru_forward(*as32, weights.W_hh.astype(np.float32), threads=2)
        runs.append((cache, gated.gru_backward(cache, as32[2], weights.W_hh.astype(np.float32),
                                               d_outputs.astype(np.float32), None, True, threads=2)))
    for shares in ((0, 2) if name == "lstm" else ()):     # the rows shared out, then the hidden units
        cache = gated.lstm_forward(*as32, threads=2, unit_shares=shares)
        runs.append((cache, gated.lstm_backward(cache, as32[3], d_outputs.astype(np.float32), None, None, True,
                                                threads=2, unit_shares=shares)))
    for cache, grads in runs:
        for got, want in zip((*cache, *grads), (*want_cache, *want_grads)):
            assert np.allclose(got, want, atol=5e-5 * max(1.0, np.abs(want).max())), name
print("agree")
