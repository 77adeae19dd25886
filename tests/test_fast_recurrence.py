"""The compiled training recurrences (scratchrnn.kernels.recurrence) held to the plain loops, in float64,
and the NumPy backend with them held to itself without them. Runs in the core process."""
import numpy as np
import pytest
from contract import _boosted_params, _rel_err, needs_library, switch_compiled_loops

from scratchrnn import backends, kernels
from scratchrnn.kernels import recurrence as fast_recurrence
from scratchrnn.model import ModelConfig


SHAPES = [  # hidden, batch, threads, activation
    (512, 32, 2, "tanh"),       # the chapter's: two groups of 16 rows
    (37, 19, 2, "relu"),        # groups of 10 and 9 rows, rows that fill no whole vector
    (70, 27, 3, "tanh"),        # three groups
    (16, 5, 2, "tanh"),         # too few rows for two groups: one thread
]


def _act(z, activation):
    return np.tanh(z) if activation == "tanh" else np.maximum(z, 0)


def _problem(hidden, batch, steps=9, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(0, 1.2 / np.sqrt(hidden), (hidden, hidden))
    hs = np.empty((steps + 1, batch, hidden))
    hs[0] = np.tanh(rng.normal(size=(batch, hidden)))
    hs[1:] = rng.normal(0, 0.7, (steps, batch, hidden))       # the input terms x_t W_xh + b_h
    return W, hs, rng


def _forward_reference(hs, W, activation):
    hs = hs.copy()
    for t in range(len(hs) - 1):
        hs[t + 1] = _act(hs[t + 1] + hs[t] @ W, activation)
    return hs


def _backward_reference(hs, W, dhs, dh_last, activation):
    steps = len(hs) - 1
    carried = np.zeros_like(hs[0]) if dh_last is None else dh_last.astype(np.float64)
    dz = np.empty_like(hs[1:])
    for t in range(steps - 1, -1, -1):
        dh = carried + (0 if dhs is None else dhs[t])
        grad = 1 - hs[t + 1] ** 2 if activation == "tanh" else (hs[t + 1] > 0)
        dz[t] = dh * grad
        carried = dz[t] @ W.T
    return dz, carried


@needs_library
@pytest.mark.parametrize("hidden,batch,threads,activation", SHAPES)
def test_forward_equals_the_plain_recurrence(hidden, batch, threads, activation):
    W, hs, _ = _problem(hidden, batch)
    want = _forward_reference(hs, W, activation)
    got = hs.astype(np.float32)
    fast_recurrence.forward(got, W.astype(np.float32), activation, threads=threads)
    assert _rel_err(got, want) < 2e-5
    assert np.abs(want[1:]).max() > 0.5          # states far from zero: the test can tell


@needs_library
@pytest.mark.parametrize("hidden,batch,threads,activation", SHAPES)
@pytest.mark.parametrize("with_outputs,with_later", [(True, True), (True, False), (False, True)])
def test_backward_equals_the_plain_recurrence(hidden, batch, threads, activation, with_outputs, with_later):
    W, hs, rng = _problem(hidden, batch)
    hs = _forward_reference(hs, W, activation)
    dhs = rng.normal(size=hs[1:].shape) if with_outputs else None
    dh_last = rng.normal(size=hs[0].shape) if with_later else None
    want_dz, want_dh0 = _backward_reference(hs, W, dhs, dh_last, activation)
    as32 = lambda a: None if a is None else a.astype(np.float32)      # noqa: E731
    dz, dh0 = fast_recurrence.backward(as32(hs), as32(W), as32(dhs), as32(dh_last), activation, True,
                                       threads=threads)
    assert _rel_err(dz, want_dz) < 2e-5 and _rel_err(dh0, want_dh0) < 2e-5
    dz_only, none = fast_recurrence.backward(as32(hs), as32(W), as32(dhs), as32(dh_last), activation, False,
                                             threads=threads)
    np.testing.assert_array_equal(dz_only, dz)
    assert none is None


def _train_chained(config, params, monkeypatch, kernel: bool):
    """Three batches, never detached, with updates between them: losses and the final weights."""
    calls = switch_compiled_loops(monkeypatch, kernel)
    backend = backends.create("numpy", params, config, dtype="float32")
    rng = np.random.default_rng(4)
    state, losses = backend.begin_state(19), []
    for _ in range(3):
        X, Y = rng.integers(0, config.vocab_size, (2, 19, 6))
        loss, state = backend.train_step(X, Y, state, 0.1, 5.0)
        losses.append(float(loss))
    assert bool(calls) == kernel
    return losses, backend.get_params()


@needs_library
@pytest.mark.parametrize("config", [ModelConfig(11, 40, "tanh"), ModelConfig(11, 40, "relu", "learned", 5)],
                         ids=lambda c: f"{c.activation}-{c.embedding}")
def test_numpy_training_with_the_compiled_recurrences_equals_training_without(config, monkeypatch):
    params = _boosted_params(config, scale=10)
    losses, weights = _train_chained(config, params, monkeypatch, kernel=True)
    ref_losses, ref_weights = _train_chained(config, params, monkeypatch, kernel=False)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for name, value in ref_weights.items():
        assert _rel_err(weights[name], value) < 1e-5, name
    assert max(_rel_err(weights[name], params[name]) for name in params) > 1e-3   # it did train


def test_what_the_compiled_recurrences_take(monkeypatch):
    """float32 on the CPU, for training or forward passes; float64 and GPUs stay with the backends'
    loops, whatever is forced. (Which batches are faster compiled is measured: test_choice.py.)"""
    monkeypatch.setenv("SCRATCHRNN_LOOPS", "compiled")

    def compiled(group="training", dtype="float32", device="cpu"):
        workload = kernels.Workload("numpy", "rnn", group, 32, 64, 35, dtype=dtype, device=device)
        return kernels.choose(workload).compiled
    for group in ("training", "inference"):
        assert compiled(group) == kernels.enabled()
        assert not compiled(group, dtype="float64")
        assert not compiled(group, device="cuda")
    with pytest.raises(ValueError, match="group must be one of"):
        kernels.Workload("numpy", "rnn", "train", 32, 64, 35)
