"""The TensorFlow backend against the NumPy reference (runs in its own process: make test-tensorflow)."""
import numpy as np
import pytest
from contract import MODEL_VARIANTS, BackendContract, _boosted_params, _chapter_batches, _run_steps

from scratchrnn import backends
from scratchrnn.model import ModelConfig, init_params


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


def test_training_traces_each_graph_once():
    """Retracing on every step would make training many times slower (and TensorFlow warns about it)."""
    batches, vocab = _chapter_batches("sequential", count=4)
    config = ModelConfig(len(vocab), 16)
    backend = backends.create("tensorflow", init_params(config, 0), config)
    _run_steps(backend, batches, "sequential", detach=True)
    # without detaching, each step replays a longer history: still no new trace
    _run_steps(backend, batches, "sequential", detach=False)
    assert backend._clipped_graph.experimental_get_tracing_count() == 1
    assert backend._replay_graph.experimental_get_tracing_count() == 1



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
    assert ours._clipped_graph.experimental_get_tracing_count() == 1
    assert ours.dropout_rng_state() == ref.dropout_rng_state()
    # the replay of earlier batches (a state not detached) reuses its trace too, with their masks
    _run_steps(ours, batches, "sequential", lr=0.1, detach=False)
    _run_steps(ref, batches, "sequential", lr=0.1, detach=False)
    assert ours._replay_graph.experimental_get_tracing_count() == 1
    for name, value in ref.get_params().items():
        np.testing.assert_allclose(ours.get_params()[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
