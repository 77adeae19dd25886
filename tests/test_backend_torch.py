"""The PyTorch backend against the NumPy reference (runs in its own process: make test-torch).

The contract runs on the default fast path and on the chapter's plain path; the tests below hold the
fast path to the plain one directly, float64, including what the contract exercises only lightly.
"""
import dataclasses
import weakref

import numpy as np
import pytest
import torch
from contract import (GATED_KERNEL_CONFIGS, MODEL_VARIANTS, BackendContract, ForwardOnly, _boosted_params,
                      _rel_err, chained_float32_steps, check_compiled_gated_training, needs_library,
                      switch_compiled_loops, variant_id)

from scratchrnn import backends, kernels
from scratchrnn.errors import UserError
from scratchrnn.generation import Decoding, generate_ids
from scratchrnn.model import ModelConfig, init_params


class TestTorchBackend(BackendContract):
    backend_name = "torch"


class TestTorchChapterPath(BackendContract):
    """The book's autograd form (impl="chapter") for every model: it is what the fast path is held to."""

    backend_name = "torch"

    def make(self, params, config, dtype="float32"):
        return backends.create("torch", params, config, device=self.device, dtype=dtype, impl="chapter")

    def builds_layer_norm(self) -> bool:
        return False          # the book's code has no layer-normalised cells: the fast path has them


def _pair(config, params, dtype="float64"):
    fast = backends.create("torch", params, config, dtype=dtype)
    plain = backends.create("torch", params, config, dtype=dtype, impl="chapter")
    return fast, plain


def test_fast_path_is_the_default():
    config = ModelConfig(5, 4)
    assert backends.create("torch", init_params(config), config).impl == "fast"


def test_unknown_implementation_is_a_user_error():
    config = ModelConfig(5, 4)
    with pytest.raises(UserError, match="impl"):
        backends.create("torch", init_params(config), config, impl="fastest")


EQUIVALENCE_VARIANTS = [*MODEL_VARIANTS, ModelConfig(9, 8, "relu", "learned", 3)]


@pytest.mark.parametrize("config", EQUIVALENCE_VARIANTS,
                         ids=lambda c: f"{c.activation}-{c.embedding}")
def test_fast_loss_gradients_and_state_equal_the_plain_path(config):
    params = _boosted_params(config, scale=10)
    fast, plain = _pair(config, params)
    rng = np.random.default_rng(5)
    state = rng.normal(0, 0.5, (3, config.num_hiddens))
    X, Y = rng.integers(0, config.vocab_size, (3, 6)), rng.integers(0, config.vocab_size, (3, 6))
    loss, grads, new_state = fast.loss_and_grads(X, Y, fast.state_from_numpy((state,)))
    ref_loss, ref_grads, ref_state = plain.loss_and_grads(X, Y, plain.state_from_numpy((state,)))
    assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)
    for name in ref_grads:
        assert _rel_err(grads[name], ref_grads[name]) < 1e-5, name
    assert _rel_err(fast.state_to_numpy(new_state)[0], plain.state_to_numpy(ref_state)[0]) < 1e-5
    logits, _ = fast.forward(X, fast.state_from_numpy((state,)))
    ref_logits, _ = plain.forward(X, plain.state_from_numpy((state,)))
    assert _rel_err(logits, ref_logits) < 1e-10


def test_fast_path_returns_the_gradient_of_the_initial_state():
    """What chained (undetached) batches rely on: d loss / d h0 equals the plain path's autograd."""
    config = ModelConfig(7, 6, "tanh", "learned", 4)
    fast, plain = _pair(config, _boosted_params(config, scale=10))
    rng = np.random.default_rng(8)
    h0 = rng.normal(0, 0.5, (2, 6))
    X, Y = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
    dh0 = {}
    for name, backend in (("fast", fast), ("plain", plain)):
        start = torch.tensor(h0, requires_grad=True)
        loss, _, _ = backend._loss(X, Y, (start,))
        loss.backward()
        dh0[name] = start.grad.numpy()
    assert np.abs(dh0["plain"]).max() > 1e-3
    assert _rel_err(dh0["fast"], dh0["plain"]) < 1e-5


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_a_trained_batchs_graph_is_freed_once_its_state_is_dropped(cell):
    """Training for hours keeps its memory: once nothing holds the state a batch returned (the next
    batch detached it), that batch's graph and everything its backward pass kept are freed at once,
    with no reference cycle left for Python's collector (which never freed the LSTM's)."""
    config = ModelConfig(9, 8, cell=cell)
    backend = backends.create("torch", init_params(config, 0), config)
    rng = np.random.default_rng(3)
    X, Y = rng.integers(0, 9, (2, 5)), rng.integers(0, 9, (2, 5))
    _, state = backend.train_step(X, Y, backend.begin_state(2), 0.5, 1.0)
    assert all(s.grad_fn is not None for s in state)
    graph = weakref.ref(state[0].grad_fn)
    backend.train_step(X, Y, backend.detach(state), 0.5, 1.0)
    del state
    assert graph() is None


@pytest.mark.parametrize("config", EQUIVALENCE_VARIANTS,
                         ids=lambda c: f"{c.activation}-{c.embedding}")
def test_fast_training_without_detaching_equals_the_plain_path(config):
    """Four chained batches with updates between them: the third and fourth backpropagate through
    batches trained with older weights."""
    params = _boosted_params(config, scale=10)
    fast, plain = _pair(config, params)
    rng = np.random.default_rng(6)
    batches = [(rng.integers(0, config.vocab_size, (2, 5)), rng.integers(0, config.vocab_size, (2, 5)))
               for _ in range(4)]
    results = {}
    for name, backend in (("fast", fast), ("plain", plain)):
        state, losses = backend.begin_state(2), []
        for X, Y in batches:
            loss, state = backend.train_step(X, Y, state, 0.3, 5.0)   # never detached
            losses.append(float(loss))
        results[name] = losses, backend.get_params()
    np.testing.assert_allclose(results["fast"][0], results["plain"][0], rtol=1e-5)
    for key, value in results["plain"][1].items():
        assert _rel_err(results["fast"][1][key], value) < 1e-5, key


# -- the fast path of every other model (fast_model) against the book's autograd form ----------------
STACKED_VARIANTS = [ModelConfig(9, 8, "tanh", embedding, 3 if embedding == "learned" else 0, cell=cell,
                                num_layers=layers, dropout=dropout)
                    for cell in ("gru", "lstm") for layers in (1, 2) for dropout in (0.0, 0.3)
                    for embedding in ("onehot", "learned")]
STACKED_VARIANTS.append(ModelConfig(9, 8, "relu", cell="rnn", num_layers=2, dropout=0.3))
TIGHT = 1e-10     # float64: the two forms differ only in the order of their roundings


def _random_state(backend, rng, batch):
    """A carried state far from zero (each layer's H, and C for the LSTM), as NumPy arrays."""
    return [rng.normal(0, 0.5, s.shape) for s in backend.state_to_numpy(backend.begin_state(batch))]


def _loss_and_state_grads(backend, X, Y, start):
    """Loss, parameter gradients, new state and the gradient of the starting state, by autograd's
    backward through whichever form the backend runs; and the name of the loss's backward node."""
    state = tuple(torch.tensor(s, requires_grad=True) for s in start)
    loss, _, new_state = backend._loss(X, Y, state)
    backend._backward(loss)
    grads = {name: p.grad.numpy().copy() for name, p in backend.params.items()}
    return (float(loss.detach()), grads, [s.detach().numpy() for s in new_state], [s.grad.numpy() for s in state],
            type(loss.grad_fn).__name__)


@pytest.mark.parametrize("config", STACKED_VARIANTS, ids=variant_id)
def test_stacked_fast_path_equals_the_books_autograd_form(config):
    """Loss, every gradient, the new state and the gradient of the carried state, to 1e-10 in float64,
    with the same dropout masks (each backend draws them from its own generator, seeded alike)."""
    params = _boosted_params(config, scale=10)
    fast, plain = _pair(config, params)
    rng = np.random.default_rng(11)
    start = _random_state(fast, rng, 3)
    X, Y = rng.integers(0, config.vocab_size, (2, 3, 7))
    loss, grads, state, d_start, node = _loss_and_state_grads(fast, X, Y, start)
    ref_loss, ref_grads, ref_state, ref_d_start, ref_node = _loss_and_state_grads(plain, X, Y, start)
    assert node == "StackedLossBackward" and ref_node != node        # the two forms really ran
    assert abs(loss - ref_loss) <= TIGHT * abs(ref_loss)
    assert set(grads) == set(ref_grads)
    for name in ref_grads:
        assert np.abs(ref_grads[name]).max() > 1e-6, name            # a gradient worth comparing
        assert _rel_err(grads[name], ref_grads[name]) < TIGHT, name
    for ours, theirs in zip(state + d_start, ref_state + ref_d_start, strict=True):
        assert np.abs(theirs).max() > 1e-6
        assert _rel_err(ours, theirs) < TIGHT
    # evaluation: no masks, the same logits and state
    logits, after = fast.forward(X, fast.state_from_numpy(start))
    ref_logits, ref_after = plain.forward(X, plain.state_from_numpy(start))
    assert _rel_err(logits, ref_logits) < TIGHT
    for ours, theirs in zip(fast.state_to_numpy(after), plain.state_to_numpy(ref_after), strict=True):
        assert _rel_err(ours, theirs) < TIGHT


def test_stacked_fast_path_with_dropout_differs_from_no_dropout():
    """The masks reach the fast path: with dropout its loss is not the one without."""
    config = ModelConfig(9, 8, cell="lstm", num_layers=2, dropout=0.3)
    params = _boosted_params(config, scale=10)
    X, Y = np.random.default_rng(2).integers(0, 9, (2, 3, 7))
    with_masks = backends.create("torch", params, config, dtype="float64")
    without = backends.create("torch", params, dataclasses.replace(config, dropout=0.0), dtype="float64")
    loss = with_masks.loss_and_grads(X, Y, with_masks.begin_state(3))[0]
    assert abs(loss - without.loss_and_grads(X, Y, without.begin_state(3))[0]) > 1e-3


@pytest.mark.parametrize("config", [ModelConfig(9, 8, cell="gru", num_layers=2, dropout=0.3),
                                    ModelConfig(9, 8, "tanh", "learned", 3, cell="lstm", num_layers=2,
                                                dropout=0.3),
                                    ModelConfig(9, 8, cell="lstm")], ids=variant_id)
def test_stacked_fast_training_without_detaching_equals_the_books_form(config):
    """Four chained batches, never detached, with clipped updates between them: each batch's backward
    runs back through every earlier one, with the weights each was computed with."""
    params = _boosted_params(config, scale=10)
    fast, plain = _pair(config, params)
    rng = np.random.default_rng(12)
    batches = [rng.integers(0, config.vocab_size, (2, 2, 5)) for _ in range(4)]
    results = {}
    for name, backend in (("fast", fast), ("plain", plain)):
        state, losses = backend.begin_state(2), []
        for X, Y in batches:
            loss, state = backend.train_step(X, Y, state, 0.3, 5.0)
            losses.append(float(loss))
        results[name] = losses, backend.get_params()
    np.testing.assert_allclose(results["fast"][0], results["plain"][0], rtol=TIGHT)
    detached = backends.create("torch", params, config, dtype="float64")
    state = detached.begin_state(2)
    for X, Y in batches:
        _, state = detached.train_step(X, Y, detached.detach(state), 0.3, 5.0)
    for key, value in results["plain"][1].items():
        assert _rel_err(results["fast"][1][key], value) < TIGHT, key
    # backpropagating into earlier batches is another computation than detaching
    assert max(_rel_err(detached.get_params()[key], value) for key, value in results["plain"][1].items()) > 1e-6


class _DecodeInTorch(ForwardOnly):
    """The PyTorch decode loop (what a GPU runs), forced on the CPU."""

    has_fast_decode = True

    def decode(self, state, logits, num_tokens, pick, on_step=None):
        with torch.no_grad():
            return self.inner._decode_in_torch(state[0].clone(), logits, *self.inner._decode_weights(),
                                               num_tokens, pick, on_step)


@pytest.mark.parametrize("strategy", ["greedy", "sample"])
@pytest.mark.parametrize("config", [ModelConfig(11, 16, "tanh"), ModelConfig(11, 16, "relu", "learned", 5)],
                         ids=lambda c: f"{c.activation}-{c.embedding}")
def test_decode_fast_paths_equal_stepping_forward(strategy, config):
    """generate_ids uses Backend.decode when present; both decode loops give the generic loop's tokens."""
    # seed 6: weights whose greedy continuations do not collapse onto one token
    backend = backends.create("torch", _boosted_params(config, seed=6), config, dtype="float64")
    decoding = Decoding(strategy, temperature=0.8, seed=3)
    prefixes = [[1, 2, 3], [4], [5, 6, 7]]
    generic = generate_ids(ForwardOnly(backend), prefixes, 30, decoding)
    assert generate_ids(backend, prefixes, 30, decoding) == generic
    assert generate_ids(_DecodeInTorch(backend), prefixes, 30, decoding) == generic
    # and the tokens were not all the same, or the comparison proves little
    assert len({tok for row in generic for tok in row[3:]}) > 1


def _train_float32(config, params, monkeypatch, kernel: bool, batch: int):
    """Three chained (never detached) batches on the fast path in float32: losses, weights, and whether
    the compiled recurrences ran."""
    calls = switch_compiled_loops(monkeypatch, kernel)
    return (*chained_float32_steps("torch", config, params, batch), bool(calls))


@needs_library
@pytest.mark.parametrize("config", [ModelConfig(11, 40, "tanh"), ModelConfig(11, 40, "relu", "learned", 5),
                                    ModelConfig(11, 40, "tanh", cell="rnn", num_layers=2, dropout=0.2)],
                         ids=variant_id)
def test_cpu_float32_training_runs_compiled_and_trains_as_torchs_own_loops(config, monkeypatch):
    """The recurrences go to the compiled library, on at most torch.get_num_threads() threads, and
    train as PyTorch's own step loops do: the chapter's model, and RNN layers stacked with dropout
    (the stacked fast path's RNN cell)."""
    params = _boosted_params(config, scale=10)
    losses, weights, compiled_ran = _train_float32(config, params, monkeypatch, kernel=True, batch=38)
    assert compiled_ran and 1 <= kernels.last_threads() <= torch.get_num_threads()
    ref_losses, ref_weights, ran = _train_float32(config, params, monkeypatch, kernel=False, batch=38)
    assert not ran
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for name, value in ref_weights.items():
        assert _rel_err(weights[name], value) < 1e-5, name


@pytest.mark.parametrize("config", [ModelConfig(11, 8), ModelConfig(11, 8, cell="lstm", num_layers=2, dropout=0.2,
                                                                activation_reg=1.0)], ids=variant_id)
def test_a_batchs_record_is_freed_with_its_loss_and_state(config):
    """The fast path's Function keeps what its backward pass needs on its node; nothing there refers
    back to its outputs, so once the loss and the state are dropped the batch's activations go at once,
    not whenever Python's cyclic collector runs (until then every batch's would pile up)."""
    import gc
    import weakref
    backend = backends.create("torch", init_params(config, 0), config)
    X, Y = np.random.default_rng(0).integers(0, 11, (2, 4, 6))
    gc.disable()
    try:
        loss, objective, state = backend._loss(X, Y, backend.begin_state(4))     # a training step's, before detaching
        backend._backward(objective)
        activations = weakref.ref(loss.grad_fn.record.top)
        del loss, objective, state
        assert activations() is None
    finally:
        gc.enable()


def test_layer_normalised_cells_never_run_the_compiled_loops(monkeypatch):
    """The compiled library has no loops for them: even forced (SCRATCHRNN_LOOPS=compiled), the fast
    path runs PyTorch's, and the choice says why."""
    calls = switch_compiled_loops(monkeypatch, True)
    config = ModelConfig(11, 16, cell="lstm", num_layers=2, layer_norm=True, weight_dropout=0.2)
    backend = backends.create("torch", _boosted_params(config, scale=10), config)
    X, Y = np.random.default_rng(0).integers(0, 11, (2, 4, 6))
    loss, _ = backend.train_step(X, Y, backend.begin_state(4), 0.1, 1.0)
    assert np.isfinite(float(loss)) and calls == []
    assert "no step loops for the layer-normalised lstm" in backend.step_loops(4, 6, training=True).describe()


def test_the_fast_path_asks_for_its_step_loops_once_per_shape(monkeypatch):
    """kernels.choose is asked once per shape of minibatch, for training and for forward passes alone,
    by the chapter's model and by a stacked one alike; the chapter's autograd code never asks."""
    asked = []
    real = kernels.choose
    monkeypatch.setattr(kernels, "choose", lambda workload, *a, **k: asked.append(workload) or real(workload, *a, **k))
    X, Y = np.random.default_rng(0).integers(0, 11, (2, 4, 6))
    for config, impl in ((ModelConfig(11, 16), "fast"), (ModelConfig(11, 16, cell="lstm", num_layers=2), "fast"),
                         (ModelConfig(11, 16, cell="gru"), "chapter")):
        backend = backends.create("torch", init_params(config, 0), config, impl=impl)
        state = backend.begin_state(4)
        for _ in range(3):
            _, state = backend.train_step(X, Y, backend.detach(state), 0.1, 1.0)
        for _ in range(2):
            backend.forward(X, backend.begin_state(4))
    assert [(w.framework, w.cell, w.group, w.batch, w.steps) for w in asked] == [
        ("torch", "rnn", "training", 4, 6), ("torch", "rnn", "inference", 4, 6),
        ("torch", "lstm", "training", 4, 6), ("torch", "lstm", "inference", 4, 6)]


@needs_library
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_torch_trial_runs_each_candidates_loops(cell, monkeypatch, tmp_path):
    """What kernels.choose times for the torch backend: PyTorch's loops and the compiled ones (both
    loops, on PyTorch's threads), at the workload's shape; the answer is the faster, remembered."""
    from scratchrnn.backends.torch.fast_cells import training_trial
    from scratchrnn.kernels import choice, gated, recurrence
    monkeypatch.delenv("SCRATCHRNN_LOOPS", raising=False)
    monkeypatch.setenv("SCRATCHRNN_THREADS", "2")
    monkeypatch.setenv("SCRATCHRNN_CACHE", str(tmp_path))
    monkeypatch.setattr(choice, "_wisdoms", {})
    ran = []
    for module, name in ((recurrence, "forward"), (recurrence, "backward"), (gated, f"{cell}_forward"),
                         (gated, f"{cell}_backward")):
        if hasattr(module, name):
            real = getattr(module, name)
            monkeypatch.setattr(module, name, lambda *a, _real=real, _name=name, **k: ran.append(_name) or _real(*a, **k))
    seconds = {"own": 1.0, "compiled": 0.5, "compiled-units": 0.4}

    def measure(runners):
        for run in runners.values():
            run()
        return {name: [seconds[name]] * 3 for name in runners}
    workload = kernels.Workload("torch", cell, "training", 5, 16, 4)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        chosen = kernels.choose(workload, training_trial(workload), measure=measure)
        assert chosen.compiled and chosen.unit_shares == (2 if cell == "lstm" else 0)
        assert len(ran) == 2 * (3 if cell == "lstm" else 2) - 2       # both loops of each compiled candidate
        assert kernels.choose(workload) == chosen                         # remembered
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("config", GATED_KERNEL_CONFIGS, ids=variant_id)
def test_torch_gated_training_with_the_compiled_loops_equals_its_own_loops(config, monkeypatch):
    """The fast path's GRU and LSTM loops run compiled (weights in the compiled loops' gate order) and
    train as PyTorch's own loops do."""
    check_compiled_gated_training("torch", config, monkeypatch)


@needs_library
def test_the_kernels_use_no_more_threads_than_torch_is_told(monkeypatch):
    """torch.set_num_threads(1): the compiled loops and the decoder run on one thread; with 2, on
    2. SCRATCHRNN_THREADS (or OMP_NUM_THREADS) would allow more; PyTorch's setting wins."""
    monkeypatch.setenv("SCRATCHRNN_THREADS", "8")
    config = ModelConfig(11, 128)
    params = _boosted_params(config, scale=10)
    before = torch.get_num_threads()
    try:
        for told in (1, 2):
            torch.set_num_threads(told)
            _, _, ran = _train_float32(config, params, monkeypatch, kernel=True, batch=32)
            assert ran and kernels.last_threads() == told
            backend = backends.create("torch", params, config, dtype="float32")
            generate_ids(backend, [[1, 2, 3]] * 32, 5)
            assert kernels.last_threads() == told
    finally:
        torch.set_num_threads(before)


_RANK = """
import numpy as np, torch
from scratchrnn import backends, kernels
from scratchrnn.model import ModelConfig, init_params
config = ModelConfig(11, 128)
backend = backends.create("torch", init_params(config, 0), config, dtype="float32")
X, Y = np.random.default_rng(0).integers(0, 11, (2, 32, 6))
backend.train_step(X, Y, backend.begin_state(32), 0.1, 5.0)
print(torch.get_num_threads(), kernels.last_threads())
"""


@needs_library
def test_two_ranks_of_one_thread_use_one_thread_each():
    """torchrun starts each rank with OMP_NUM_THREADS=1 (when it starts more than one): two such
    processes at once each run the compiled loops on one thread, two in all."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SCRATCHRNN_LOOPS": "compiled",
           "PYTHONPATH": str(Path(kernels.__file__).parents[2])}
    env.pop("SCRATCHRNN_THREADS", None)
    ranks = [subprocess.Popen([sys.executable, "-c", _RANK], stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [rank.communicate(timeout=300)[0].split() for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0]
    assert outputs == [["1", "1"], ["1", "1"]]


_TEAM = """
import numpy as np, torch
from scratchrnn import backends, kernels
from scratchrnn.kernels import _library
from scratchrnn.model import ModelConfig, init_params
torch.set_num_threads(2)
config = ModelConfig(11, 128)
backend = backends.create("torch", init_params(config, 0), config, dtype="float32")
X, Y = np.random.default_rng(0).integers(0, 11, (2, 32, 6))
backend.train_step(X, Y, backend.begin_state(32), 0.1, 5.0)
print(kernels.torch_team.status(), "|", kernels.last_threads(), _library.helper_threads())
"""


@needs_library
@pytest.mark.parametrize("team", ["on", "off"])
def test_the_torch_backends_kernel_calls_run_on_pytorchs_threads(team, tmp_path):
    """A training step's compiled loops run on PyTorch's own threads (the team of the OpenMP runtime
    PyTorch loaded, found at run time: no compiler is needed, CXX names none here): the library starts
    no threads of its own beside PyTorch's. With SCRATCHRNN_TORCH_TEAM=0 they run on the library's
    threads, and say why."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = {**os.environ, "SCRATCHRNN_CACHE": str(tmp_path / "cache"), "SCRATCHRNN_TORCH_TEAM": team,
           "SCRATCHRNN_LOOPS": "compiled", "CXX": str(tmp_path / "no-compiler"),
           "PYTHONPATH": str(Path(kernels.__file__).parents[2])}
    for name in ("SCRATCHRNN_THREADS", "OMP_NUM_THREADS"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", _TEAM], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    status, counts = done.stdout.strip().split(" | ")
    if team == "on":
        assert status == "PyTorch's threads"
        assert counts.split() == ["2", "0"]                 # two threads, none of the library's own
    else:
        assert status == "the kernels' own threads (SCRATCHRNN_TORCH_TEAM is off)"
        assert counts.split() == ["2", "1"]                 # the caller and one helper


_OPENMP_TEAM = """
import numpy as np, torch
from scratchrnn import kernels
from scratchrnn.kernels import _library, recurrence, torch_team
torch.set_num_threads(2)
rng = np.random.default_rng(0)
W = rng.normal(0, 0.05, (64, 64)).astype(np.float32)
inputs = rng.normal(0, 0.5, (6, 32, 64)).astype(np.float32)
alone, on_team = inputs.copy(), inputs.copy()
recurrence.forward(alone, W, "tanh", threads=1)
with kernels.running_on(torch_team.team()):
    recurrence.forward(on_team, W, "tanh", threads=2)
print(torch_team.team(), kernels.last_threads(), _library.helper_threads(), np.array_equal(alone, on_team))
"""


@pytest.mark.skipif(kernels.load() is None, reason=f"compiled kernels {kernels.status()}")
@pytest.mark.skipif("parallel backend: OpenMP" not in torch.__config__.parallel_info(),
                    reason="this PyTorch runs its operators on another thread pool than OpenMP")
def test_the_kernels_run_on_pytorchs_openmp_team_with_no_compiler(tmp_path):
    """Whatever the backends choose: a kernel call inside running_on(torch_team.team()) runs its jobs
    on PyTorch's OpenMP team (GOMP_parallel, found at run time: no compiler, CXX names none), on as
    many threads as it is given, starts no thread of the library's own, and computes what one thread
    computes (each row's sums are the same whichever thread takes them)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = {**os.environ, "CXX": str(tmp_path / "no-compiler"), "PYTHONPATH": str(Path(kernels.__file__).parents[2])}
    env.pop("SCRATCHRNN_TORCH_TEAM", None)
    done = subprocess.run([sys.executable, "-c", _OPENMP_TEAM], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["openmp", "2", "0", "True"]


@needs_library
def test_numpy_training_is_the_same_whether_or_not_torch_was_loaded(monkeypatch):
    """The NumPy backend's compiled loops take their threads from the environment, not from PyTorch:
    the same bits in this process (torch loaded, with a torch backend made) as in one without torch."""
    monkeypatch.setenv("SCRATCHRNN_LOOPS", "compiled")
    import subprocess
    import sys
    from pathlib import Path
    script = """
import numpy as np
from scratchrnn import backends
from scratchrnn.model import ModelConfig, init_params
config = ModelConfig(11, 128)
backend = backends.create("numpy", init_params(config, 0), config, dtype="float32")
X, Y = np.random.default_rng(0).integers(0, 11, (2, 32, 6))
loss, _ = backend.train_step(X, Y, backend.begin_state(32), 0.1, 5.0)
print(float(loss).hex(), backend.get_params()["W_hh"].astype(np.float32).tobytes().hex()[:4000])
"""
    backends.create("torch", init_params(ModelConfig(11, 128), 0), ModelConfig(11, 128), dtype="float32")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = {}
        exec(script.replace("print(", "here['out'] = ("), {"here": here})
    finally:
        torch.set_num_threads(before)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ,
                               "PYTHONPATH": str(Path(kernels.__file__).parents[2])})
    assert done.returncode == 0, done.stderr
    assert " ".join(here["out"]) == done.stdout.strip()


# -- the optimizers, written once, against torch.optim ----------------------------------------------------
@pytest.mark.parametrize("name, make_torch", [
    ("sgd", lambda ps, wd: torch.optim.SGD(ps, lr=0.05, weight_decay=wd)),
    ("momentum", lambda ps, wd: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=wd)),
    ("adagrad", lambda ps, wd: torch.optim.Adagrad(ps, lr=0.05, weight_decay=wd)),
    ("rmsprop", lambda ps, wd: torch.optim.RMSprop(ps, lr=0.05, alpha=0.99, eps=1e-8, weight_decay=wd)),
    ("adam", lambda ps, wd: torch.optim.Adam(ps, lr=0.05, weight_decay=wd)),
    ("adamw", lambda ps, wd: torch.optim.AdamW(ps, lr=0.05, weight_decay=wd)),
])
@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_optimizers_match_torch_optim_over_20_steps(name, make_torch, wd):
    from scratchrnn.optim import create_optimizer

    config = ModelConfig(7, 6, "tanh", "learned", 4)
    params = _boosted_params(config)
    ours = backends.create("torch", params, config, dtype="float64")
    theirs = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    torch_opt = make_torch(list(theirs.values()), wd)
    optimizer = create_optimizer(name, weight_decay=wd)
    rng = np.random.default_rng(0)
    for _ in range(20):
        X, Y = rng.integers(0, 7, (3, 5)), rng.integers(0, 7, (3, 5))
        _, grads, _ = ours.gradients(X, Y, ours.begin_state(3))
        # the same gradients for torch.optim, computed at its (equal) weights
        for key, p in theirs.items():
            p.grad = grads[key].detach().clone()
        optimizer.update(ours, grads, 0.05)
        torch_opt.step()
        for key, p in theirs.items():
            np.testing.assert_allclose(ours.get_params()[key], p.detach().numpy(), rtol=1e-6, atol=1e-9,
                                       err_msg=f"{name} {key}")
