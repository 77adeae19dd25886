"""The NumPy reference checked against itself through the contract (sanity of the contract), plus
what only the hand-written backward pass needs: agreement with finite differences."""
import numpy as np
import pytest
from contract import CLIP_THETA_THAT_BITES, MODEL_VARIANTS, BackendContract, _boosted_params, _chapter_batches

from scratchrnn import backends
from scratchrnn.model import ModelConfig, global_norm, init_params


class TestNumpyContractAgainstItself(BackendContract):
    """Here subject and reference are the same code, so the contract's comparisons with "numpy" only
    check the contract's own plumbing; the hand-written gradients are held to finite differences
    below, and the trained model's text to the compiled decoder and the generic loop."""

    backend_name = "numpy"


def _loss(params, config, X, Y, state=None):
    backend = backends.create("numpy", params, config, dtype="float64")
    start = backend.begin_state(X.shape[0]) if state is None else backend.state_from_numpy(state)
    return backend.loss_and_grads(X, Y, start)


@pytest.mark.parametrize("config", MODEL_VARIANTS, ids=lambda c: f"{c.activation}-{c.embedding}")
@pytest.mark.parametrize("carried_state", [False, True], ids=["zero-state", "carried-state"])
def test_gradients_match_central_finite_differences(config, carried_state):
    params = _boosted_params(config)
    rng = np.random.default_rng(4)
    X, Y = rng.integers(0, config.vocab_size, (2, 4)), rng.integers(0, config.vocab_size, (2, 4))
    state = (rng.normal(0, 0.5, (2, config.num_hiddens)),) if carried_state else None
    _, grads, _ = _loss(params, config, X, Y, state)
    eps = 1e-6
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric[idx] = (_loss(plus, config, X, Y, state)[0] - _loss(minus, config, X, Y, state)[0]) / (2 * eps)
        rel = np.linalg.norm(numeric - grads[name]) / max(np.linalg.norm(numeric) + np.linalg.norm(grads[name]), 1e-30)
        assert rel < 1e-5, (name, rel)


def test_gradient_through_an_undetached_state_matches_finite_differences():
    """Without detaching, the second batch's loss depends on the weights through the first batch."""
    config = ModelConfig(5, 4)
    params = _boosted_params(config)
    rng = np.random.default_rng(7)
    X1, Y1, X2, Y2 = (rng.integers(0, 5, (2, 3)) for _ in range(4))

    def second_loss(p):
        backend = backends.create("numpy", p, config, dtype="float64")
        _, _, state = backend.loss_and_grads(X1, Y1, backend.begin_state(2))
        return backend.loss_and_grads(X2, Y2, state)

    _, grads, _ = second_loss(params)
    eps = 1e-6
    for name, value in params.items():
        for idx in list(np.ndindex(value.shape))[:6]:
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric = (second_loss(plus)[0] - second_loss(minus)[0]) / (2 * eps)
            assert abs(numeric - grads[name][idx]) <= 1e-6 + 1e-5 * abs(numeric), (name, idx)


def test_the_contracts_clipping_threshold_tells_global_from_per_parameter_clipping():
    """The contract's twenty clipped steps compare weights to rtol 1e-4: at its theta, a backend that
    clipped each parameter on its own would be off by far more after a single step."""
    batches, vocab = _chapter_batches("sequential", count=1)
    config = ModelConfig(len(vocab), 512)
    params = init_params(config, 0)
    X, Y = batches[0]
    backend = backends.create("numpy", params, config)
    _, grads, _ = backend.loss_and_grads(X, Y, backend.begin_state(X.shape[0]))
    theta = CLIP_THETA_THAT_BITES
    total = global_norm(grads)
    assert total > 2 * theta
    for name, grad in grads.items():
        by_global = params[name] - grad * (theta / total)
        by_parameter = params[name] - grad * min(1.0, theta / max(float(np.linalg.norm(grad)), 1e-30))
        scale = float(np.max(np.abs(by_global)))
        # five times the contract's atol (1e-4 of the largest weight), after one step of twenty
        if float(np.max(np.abs(grad))) > 0:
            assert float(np.max(np.abs(by_parameter - by_global))) > 5e-4 * scale, name
