"""The MXNet backend against the NumPy reference (own process, in .venv-mxnet: make test-mxnet)."""
import subprocess
import sys
import threading

import numpy as np
import pytest
from contract import BackendContract, _boosted_params, _chapter_batches

from scratchrnn import backends
from scratchrnn.model import ModelConfig, init_params
from scratchrnn.training import TrainConfig, train_epoch


class TestMXNetBackend(BackendContract):
    backend_name = "mxnet"


def test_train_step_returns_an_mxnet_scalar_without_waiting_for_it():
    import mxnet as mx

    batches, vocab = _chapter_batches("random", count=1)
    config = ModelConfig(len(vocab), 32)
    ours = backends.create("mxnet", init_params(config), config)
    ref = backends.create("numpy", init_params(config), config)
    (X, Y), = batches
    loss, _ = ours.train_step(X, Y, ours.begin_state(X.shape[0]), 1.0, 1.0)
    ref_loss, _ = ref.train_step(X, Y, ref.begin_state(X.shape[0]), 1.0, 1.0)
    assert isinstance(loss, mx.np.ndarray)
    assert float(loss) == pytest.approx(ref_loss, rel=1e-5)


def test_an_epoch_of_the_training_loop_sums_mxnet_losses_like_numpy():
    """training.train_epoch adds the losses up as MXNet scalars and reads them back once."""
    batches, vocab = _chapter_batches("sequential", count=4)
    config = ModelConfig(len(vocab), 64)
    train = TrainConfig(epochs=1)
    ours = train_epoch(backends.create("mxnet", init_params(config, 2), config), batches, train)
    ref = train_epoch(backends.create("numpy", init_params(config, 2), config), batches, train)
    assert ours.tokens == ref.tokens
    assert ours.perplexity == pytest.approx(ref.perplexity, rel=1e-4)


def test_forward_cuts_the_history_of_the_state_it_continues():
    """A state that forward() returns carries no graph, even from a state that did."""
    config = ModelConfig(7, 6)
    params = _boosted_params(config)
    rng = np.random.default_rng(5)
    X1, Y1, X2, X3, Y3 = (rng.integers(0, 7, (3, 4)) for _ in range(5))
    backend = backends.create("mxnet", params, config, dtype="float64")
    _, _, with_history = backend.loss_and_grads(X1, Y1, backend.begin_state(3))
    _, after_forward = backend.forward(X2, with_history)
    _, grads, _ = backend.loss_and_grads(X3, Y3, after_forward)
    fresh = backend.state_from_numpy(backend.state_to_numpy(after_forward))
    _, fresh_grads, _ = backend.loss_and_grads(X3, Y3, fresh)
    for name in grads:
        np.testing.assert_array_equal(grads[name], fresh_grads[name], err_msg=name)


def test_a_backend_made_in_one_thread_trains_in_another():
    """MXNet keeps its NumPy-semantics switch per thread; the backend must not depend on it."""
    config = ModelConfig(7, 6)
    params = _boosted_params(config)
    X, Y = (np.random.default_rng(6).integers(0, 7, (3, 4)) for _ in range(2))
    ours = backends.create("mxnet", params, config, dtype="float64")
    ref = backends.create("numpy", params, config, dtype="float64")
    results = {}

    def in_other_thread():
        loss, state = ours.train_step(X, Y, ours.begin_state(3), 0.5, 1.0)
        results["loss"] = float(loss)
        results["logits"], _ = ours.forward(X, state)

    worker = threading.Thread(target=in_other_thread)
    worker.start()
    worker.join()
    ref_loss, ref_state = ref.train_step(X, Y, ref.begin_state(3), 0.5, 1.0)
    ref_logits, _ = ref.forward(X, ref_state)
    assert results["loss"] == pytest.approx(ref_loss, rel=1e-10)
    np.testing.assert_allclose(results["logits"], ref_logits, rtol=1e-10)


def test_importing_the_backend_prints_no_warnings():
    code = "import scratchrnn.backends.mxnet.backend"
    done = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
