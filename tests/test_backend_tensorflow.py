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

