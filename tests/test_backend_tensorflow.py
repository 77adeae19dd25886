"""The TensorFlow backend against the NumPy reference (runs in its own process: make test-tensorflow)."""
import numpy as np
import pytest
from contract import MODEL_VARIANTS, BackendContract, _boosted_params, _chapter_batches, _run_steps

from scratchrnn import backends
from scratchrnn.model import ModelConfig, init_params
from scratchrnn.optim import create_optimizer


class TestTensorFlowBackend(BackendContract):
    backend_name = "tensorflow"


@pytest.mark.parametrize("clip", [None, 0.5], ids=["no-clip", "clip"])
@pytest.mark.parametrize("config", MODEL_VARIANTS, ids=lambda c: f"{c.activation}-{c.embedding}")
def test_compiled_sgd_step_matches_numpy_for_every_variant(config, clip):
    """The contract trains only the chapter's model; the compiled step must handle every option."""
    params = _boosted_params(config, scale=10)
    rng = np.random.default_rng(5)
    batches = [tuple(rng.integers(0, config.vocab_size, (3, 5)) for _ in range(2)) for _ in range(3)]
    ours = backends.create("tensorflow", params, config, dtype="float64")
    ref = backends.create("numpy", params, config, dtype="float64")
    losses = _run_steps(ours, batches, "sequential", lr=0.1, clip=clip)
    ref_losses = _run_steps(ref, batches, "sequential", lr=0.1, clip=clip)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-9)
    for name, value in ref.get_params().items():
        np.testing.assert_allclose(ours.get_params()[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


def _step_graph_traces(backend) -> list[int]:
    return [graph.experimental_get_tracing_count() for graph in backend._step_graphs.values()]


def test_training_traces_each_graph_once():
    """Retracing on every step would make training many times slower (and TensorFlow warns about it).
    The chapter's SGD runs its whole step as one graph (the update included), traced once whatever
    the learning rate of each step."""
    batches, vocab = _chapter_batches("sequential", count=4)
    config = ModelConfig(len(vocab), 16)
    backend = backends.create("tensorflow", init_params(config, 0), config)
    _run_steps(backend, batches, "sequential", detach=True)
    _run_steps(backend, batches, "sequential", lr=0.5, detach=True)
    assert _step_graph_traces(backend) == [1]
    # without detaching, each step replays a longer history: still no new trace
    _run_steps(backend, batches, "sequential", detach=False)
    assert backend._replay_graph.experimental_get_tracing_count() == 1
    assert _step_graph_traces(backend) == [1]


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_a_step_moves_the_weights_as_numpy_does_and_traces_once(name):
    """SGD's update runs inside the step's graph, Adam's (a rule with state) eagerly after the
    graph of gradients and clipping: both move the weights as the NumPy reference does, and each
    graph is traced once over steps with a changing learning rate."""
    config = ModelConfig(7, 6)
    params = _boosted_params(config, scale=3)
    rng = np.random.default_rng(2)
    batches = [tuple(rng.integers(0, 7, (3, 4)) for _ in range(2)) for _ in range(4)]
    results = []
    for backend_name in ("tensorflow", "numpy"):
        backend = backends.create(backend_name, params, config, dtype="float64")
        optimizer = create_optimizer(name)
        losses = [_run_steps(backend, batches[k:k + 1], "sequential", lr=lr, optimizer=optimizer)[0]
                  for k, lr in enumerate((0.1, 0.05, 0.02, 0.01))]
        results.append((losses, backend.get_params(), backend))
    (losses, weights, ours), (ref_losses, ref_weights, _) = results
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-9)
    for key, value in ref_weights.items():
        np.testing.assert_allclose(weights[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
    if name == "sgd":
        assert _step_graph_traces(ours) == [1]
    else:
        assert not ours._step_graphs and ours._clipped_graph.experimental_get_tracing_count() == 1



def test_dropout_masks_enter_the_graph_without_a_new_trace():
    """Masks drawn in NumPy are the graph's inputs: one trace serves every step, each with new masks
    (a mask drawn inside the traced function would be drawn once, at tracing, and reused)."""
    config = ModelConfig(7, 5, cell="lstm", num_layers=2, dropout=0.3)
    params = _boosted_params(config, scale=10)
    rng = np.random.default_rng(7)
    batches = [tuple(rng.integers(0, 7, (3, 4)) for _ in range(2)) for _ in range(3)]
    ours = backends.create("tensorflow", params, config, dtype="float64", dropout_seed=4)
    ref = backends.create("numpy", params, config, dtype="float64", dropout_seed=4)
    losses = _run_steps(ours, batches, "sequential", lr=0.1)
    np.testing.assert_allclose(losses, _run_steps(ref, batches, "sequential", lr=0.1), rtol=1e-9)
    assert _step_graph_traces(ours) == [1]
    assert ours.dropout_rng_state() == ref.dropout_rng_state()
    # the replay of earlier batches (a state not detached) reuses its trace too, with their masks
    _run_steps(ours, batches, "sequential", lr=0.1, detach=False)
    _run_steps(ref, batches, "sequential", lr=0.1, detach=False)
    assert ours._replay_graph.experimental_get_tracing_count() == 1
    for name, value in ref.get_params().items():
        np.testing.assert_allclose(ours.get_params()[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
