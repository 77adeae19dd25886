"""The compiled step loops of the gated cells (scratchrnn.kernels.gated) held to the NumPy cells' own
loops in float64, in every variant this processor runs, and the NumPy backend training GRU and LSTM
models with them held to itself without them. Runs in the core process."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from contract import GATED_KERNEL_CONFIGS, check_compiled_gated_training, variant_id

from scratchrnn import kernels
from scratchrnn.cells import get_cell
from scratchrnn.cells.base import CellWeights
from scratchrnn.kernels import gated

needs_library = pytest.mark.skipif(kernels.load() is None, reason=f"compiled kernels {kernels.status()}")
VARIANTS = kernels.built_variants()

SHAPES = [  # batch, hidden, threads
    (1, 1, 1),          # one row, one unit: the single-row products, every vector mostly padding
    (3, 7, 2),          # too few rows for two groups: one thread
    (19, 37, 2),        # groups of 10 and 9 rows; rows that fill no whole vector
    (32, 64, 2),        # the chapter's batch: two groups of 16 rows
    (64, 48, 3),        # three threads: groups of 22, 21 and 21 rows
    (32, 512, 2),       # the chapter's size
    (150, 16, 2),       # more rows than two groups take: four groups of 37 or 38, two per thread
]
STEPS = 5


def _problem(cell: str, batch: int, hidden: int, carried: bool, seed: int = 0):
    """float64 input terms, starting state and recurrent weights large enough that every gate is far
    from 0 and 1 (so that a wrong derivative changes the results)."""
    rng = np.random.default_rng(seed)
    gates = gated.GATES[cell]
    terms = rng.normal(0, 1, (STEPS, batch, gates * hidden))
    scale = 1.2 / np.sqrt(hidden)
    W_h = rng.normal(0, scale, (hidden, (gates - 1 if cell == "gru" else gates) * hidden))
    W_hh = rng.normal(0, scale, (hidden, hidden)) if cell == "gru" else None
    names = get_cell(cell).state_names
    state = tuple(np.tanh(rng.normal(size=(batch, hidden))) if carried else np.zeros((batch, hidden))
                  for _ in names)
    return terms, state, CellWeights(None, None, W_h, W_hh), rng


def _as32(value):
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(_as32(v) for v in value)
    return value.astype(np.float32)


def _compiled_forward(cell, terms, state, weights, threads, variant, **lstm_options):
    chosen = kernels.variant_kernels(variant)
    if cell == "gru":
        return gated.gru_forward(_as32(terms), _as32(state[0]), _as32(weights.W_h), _as32(weights.W_hh),
                                 threads=threads, kernels=chosen)
    return gated.lstm_forward(_as32(terms), _as32(state[0]), _as32(state[1]), _as32(weights.W_h),
                              threads=threads, kernels=chosen, **lstm_options)


def _compiled_backward(cell, cache, weights, d_outputs, d_final, need, threads, variant, **lstm_options):
    """(d_terms, d_state0 as a tuple, or None)"""
    chosen = kernels.variant_kernels(variant)
    cache, d_outputs, d_final = _as32(cache), _as32(d_outputs), _as32(d_final) or (None, None)
    if cell == "gru":
        d_terms, dh0 = gated.gru_backward(cache, _as32(weights.W_h), _as32(weights.W_hh), d_outputs,
                                          d_final[0], need, threads=threads, kernels=chosen)
        return d_terms, None if dh0 is None else (dh0,)
    d_terms, dh0, dc0 = gated.lstm_backward(cache, _as32(weights.W_h), d_outputs, d_final[0], d_final[1],
                                            need, threads=threads, kernels=chosen, **lstm_options)
    assert (dh0 is None) == (dc0 is None)
    return d_terms, None if dh0 is None else (dh0, dc0)


def _close(got, want, scale=None, tolerance=2e-5):
    """Within ``tolerance`` of the largest value of ``want`` (or of ``scale``): float32 against float64."""
    assert got.shape == want.shape and got.dtype == np.float32
    largest = max(float(np.abs(want).max()), scale or 0.0, 1e-30)
    assert float(np.abs(got.astype(np.float64) - want).max()) <= tolerance * largest


@needs_library
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("batch,hidden,threads", SHAPES)
@pytest.mark.parametrize("carried", [True, False], ids=["carried-state", "zero-state"])
def test_the_compiled_forward_loop_is_the_cells(variant, cell, batch, hidden, threads, carried):
    terms, state, weights, _ = _problem(cell, batch, hidden, carried)
    want = get_cell(cell).forward_steps(terms, state, weights)
    got = _compiled_forward(cell, terms, state, weights, threads, variant)
    assert len(got) == len(want) == 4
    for got_array, want_array in zip(got, want):
        _close(got_array, want_array)
    assert np.abs(want[0][1:]).max() > 0.1          # states far from zero: the test can tell


@needs_library
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("batch,hidden,threads", SHAPES)
@pytest.mark.parametrize("with_outputs,with_later", [(True, True), (True, False), (False, True)])
def test_the_compiled_backward_loop_is_the_cells(variant, cell, batch, hidden, threads, with_outputs,
                                                 with_later):
    terms, state, weights, rng = _problem(cell, batch, hidden, carried=True)
    the_cell = get_cell(cell)
    cache = the_cell.forward_steps(terms, state, weights)
    d_outputs = rng.normal(size=(STEPS, batch, hidden)) if with_outputs else None
    d_final = tuple(rng.normal(size=(batch, hidden)) for _ in the_cell.state_names) if with_later else None
    finals = d_final or (None,) * len(the_cell.state_names)
    want_terms, *want_state0 = the_cell.backward_steps(
        cache, weights, None if d_outputs is None else d_outputs.copy(), *finals, True)
    got_terms, got_state0 = _compiled_backward(cell, cache, weights, d_outputs, d_final, True, threads, variant)
    _close(got_terms, want_terms)
    scale = float(np.abs(want_terms).max())        # a state gradient may be small beside the others
    assert len(got_state0) == len(want_state0)
    for got, want in zip(got_state0, want_state0):
        _close(got, want, scale)
    assert np.abs(want_terms).max() > 1e-2 and min(np.abs(w).max() for w in want_state0) > 1e-4
    terms_only, none = _compiled_backward(cell, cache, weights, d_outputs, d_final, False, threads, variant)
    np.testing.assert_array_equal(terms_only, got_terms)
    assert none is None


UNIT_SHARES = [  # batch, hidden, threads, shares of the hidden units asked for
    (32, 512, 2, 2),    # the chapter's size: two shares of 256 units
    (19, 37, 2, 2),     # shares of 32 and 5 units, the second mostly padding
    (5, 130, 3, 3),     # three shares (48, 48 and 34 units) on three threads
    (7, 40, 1, 2),      # one thread: it takes both shares of every step itself
    (9, 20, 2, 5),      # more shares asked than there are vectors of units: as many as there are
]


@needs_library
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("batch,hidden,threads,shares", UNIT_SHARES)
def test_the_lstm_loops_with_the_hidden_units_shared_out_are_the_cells(variant, batch, hidden, threads, shares):
    """lstm_units.c: every thread computes some of the hidden units of every row, meeting the others at
    every step; the same results as the cell's loops, forward and backward, every input used."""
    terms, state, weights, rng = _problem("lstm", batch, hidden, carried=True)
    cell = get_cell("lstm")
    cache = cell.forward_steps(terms, state, weights)
    got = _compiled_forward("lstm", terms, state, weights, threads, variant, unit_shares=shares)
    for got_array, want_array in zip(got, cache):
        _close(got_array, want_array)
    d_outputs = rng.normal(size=(STEPS, batch, hidden))
    d_final = tuple(rng.normal(size=(batch, hidden)) for _ in range(2))
    want_terms, *want_state0 = cell.backward_steps(cache, weights, d_outputs.copy(), *d_final, True)
    got_terms, got_state0 = _compiled_backward("lstm", cache, weights, d_outputs, d_final, True, threads, variant,
                                               unit_shares=shares)
    _close(got_terms, want_terms)
    for got_grad, want_grad in zip(got_state0, want_state0):
        _close(got_grad, want_grad, float(np.abs(want_terms).max()))
    terms_only, none = _compiled_backward("lstm", cache, weights, d_outputs, d_final, False, threads, variant,
                                          unit_shares=shares)
    np.testing.assert_array_equal(terms_only, got_terms)
    assert none is None


def test_the_lstm_shares_out_its_hidden_units_only_where_that_was_measured_faster():
    """kernels.gated.lstm_unit_shares: large W_h and few rows on several threads (benchmarks/lstm_split.py)."""
    assert gated.lstm_unit_shares(32, 512, 2) == 2              # the chapter's size
    assert gated.lstm_unit_shares(32, 512, 8) == 8
    assert gated.lstm_unit_shares(16, 384, 2) == 2
    assert gated.lstm_unit_shares(32, 512, 1) == 0              # one thread: nothing to share out
    assert gated.lstm_unit_shares(128, 512, 2) == 0             # many rows: the rows
    assert gated.lstm_unit_shares(32, 256, 2) == 0              # W_h that the rows' loops keep in cache
    assert gated.lstm_unit_shares(32, 512, 16) == 512 // gated.MIN_UNITS_PER_SHARE


@needs_library
def test_the_split_benchmark_times_both_ways():
    """benchmarks/lstm_split.py at its smallest, on numpy's threads: a row per size and kind of timing,
    each with both ways' times and their ratio."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "lstm_split.py"
    done = subprocess.run([sys.executable, str(script), "--framework", "numpy", "--hidden", "64", "--rows", "8",
                           "--rounds", "2", "--repeats", "1", "--steps"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in done.stdout.splitlines()
            if line.startswith("| 64 | 8 |")]
    assert [row[2] for row in rows] == ["loops", "step"]
    for row in rows:
        assert float(row[3]) > 0 and float(row[4]) > 0 and float(row[5].split("x")[0]) > 0


@needs_library
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_each_half_works_with_the_other_halfs_cache(cell):
    """The compiled forward loop keeps what the cell's backward loop reads, and the other way round."""
    terms, state, weights, rng = _problem(cell, 9, 20, carried=True)
    the_cell = get_cell(cell)
    terms, state, weights32 = _as32(terms), _as32(state), CellWeights(None, None, _as32(weights.W_h),
                                                                      _as32(weights.W_hh))
    d_outputs = rng.normal(size=(STEPS, 9, 20)).astype(np.float32)
    numpy_cache = the_cell.forward_steps(terms, state, weights32)
    compiled_cache = _compiled_forward(cell, terms, state, weights32, 2, kernels.load().variant)
    finals = (None,) * len(the_cell.state_names)
    from_compiled = the_cell.backward_steps(compiled_cache, weights32, d_outputs.copy(), *finals, True)
    compiled_from_numpy = _compiled_backward(cell, numpy_cache, weights32, d_outputs, None, True, 2,
                                             kernels.load().variant)
    np.testing.assert_allclose(from_compiled[0], compiled_from_numpy[0], rtol=1e-4, atol=1e-6)
    for got, want in zip(compiled_from_numpy[1], from_compiled[1:]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@needs_library
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_gated_call_uses_no_more_threads_than_it_is_given(threads):
    terms, state, weights, _ = _problem("lstm", 48, 16, carried=False)
    _compiled_forward("lstm", terms, state, weights, threads, kernels.load().variant)
    assert kernels.last_threads() == threads            # 48 rows: six groups of 8 at most


@needs_library
@pytest.mark.parametrize("config", GATED_KERNEL_CONFIGS, ids=variant_id)
def test_numpy_training_with_the_compiled_gated_loops_equals_training_without(config, monkeypatch):
    check_compiled_gated_training("numpy", config, monkeypatch)


def test_what_the_compiled_gated_loops_take():
    for cell in ("gru", "lstm"):
        for op in ("forward", "backward"):
            most = gated.max_batch(cell, op, "numpy")
            on = kernels.enabled() and most > 0
            at_32 = kernels.supports(cell, np.float32, "cpu", op, batch=32, framework="numpy")
            assert at_32 == (on and most >= 32)
            assert kernels.supports(cell, np.float32, "cpu", op, framework="numpy") == on
            assert not kernels.supports(cell, np.float64, "cpu", op, batch=32)
            assert not kernels.supports(cell, np.float32, "cuda", op, batch=32)
            assert not kernels.supports(cell, np.float32, "cpu", op, batch=0)
            if on and most < 1 << 30:
                assert not kernels.supports(cell, np.float32, "cpu", op, batch=most + 1, framework="numpy")
        assert not kernels.supports(cell, np.float32, "cpu", "decode")      # the decoder is the RNN's
    assert gated.max_batch("gru", "forward", "a framework nobody measured") == 0


def test_each_variant_is_used_only_where_it_was_measured_faster():
    """Every combination named in MAX_BATCH is one the library has; max_batch gives its row, and a
    combination with no row gives 0."""
    for (variant, cell, op, framework), most in gated.MAX_BATCH.items():
        assert variant in kernels._library.VARIANTS and cell in gated.GATES and op in ("forward", "backward")
        assert most > 0
        chosen = kernels.variant_kernels(variant)
        if chosen is not None:
            assert gated.max_batch(cell, op, framework, kernels=chosen) == most
    for variant in VARIANTS:
        chosen = kernels.variant_kernels(variant)
        for cell in gated.GATES:
            for op in ("forward", "backward"):
                want = gated.MAX_BATCH.get((variant, cell, op, "numpy"), 0)
                assert gated.max_batch(cell, op, "numpy", kernels=chosen) == want


def test_the_wrappers_refuse_terms_of_the_wrong_width():
    if kernels.load() is None:
        pytest.skip(f"compiled kernels {kernels.status()}")
    with pytest.raises(ValueError, match="3 \\* hidden"):
        gated.gru_forward(np.zeros((2, 3, 10), np.float32), np.zeros((3, 3), np.float32),
                          np.zeros((3, 6), np.float32), np.zeros((3, 3), np.float32))
