"""The NumPy reference checked against itself through the contract (sanity of the contract), plus
what only the hand-written backward pass needs: agreement with finite differences."""
import numpy as np
import pytest
from contract import MODEL_VARIANTS, BackendContract, _boosted_params

from scratchrnn import backends
from scratchrnn.model import ModelConfig


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
