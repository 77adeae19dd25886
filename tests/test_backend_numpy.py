"""The NumPy reference, held to references that share none of its code: the contract's comparisons of
losses, gradients and logits are made here against ``plain_reference`` (the book's formulas transcribed
sample by sample, gradients by central differences of them), and its optimizer comparisons against the
update rules transcribed; the hand-written backward pass is also held to finite differences below."""
import numpy as np
import pytest
from contract import (CLIP_THETA_THAT_BITES, GATED_VARIANTS, MODEL_VARIANTS, REGULARIZED_VARIANTS, BackendContract, _boosted_params,
                      _chapter_batches, _rel_err, variant_id)
from plain_reference import finite_difference_gradients, plain_forward, plain_loss, plain_masks

from scratchrnn import backends
from scratchrnn.model import ModelConfig, global_norm, init_params


class TestNumpyContractAgainstItself(BackendContract):
    """Here the subject is the reference, so the contract's checks of losses, gradients and logits are
    made against the plain transcription instead (the methods below); the contract's training runs
    compare the backend's steps with the update rules transcribed (contract.transcribed_steps)."""

    backend_name = "numpy"

    def check_gradients_against_numpy(self, config):
        """Loss against the plain transcription, gradients against its central differences (a sample
        of entries of every parameter), from a zero state and from a carried one, dropout included
        (the masks as documented, drawn again for the second batch)."""
        params = _boosted_params(config)
        rng = np.random.default_rng(1)
        X1, Y1, X2, Y2 = (rng.integers(0, config.vocab_size, (3, 5)) for _ in range(4))
        ours = self.make(params, config, "float64")
        masks = plain_masks(config, 3, 5, seed=0)
        draws = np.random.default_rng([0, 0x0D0])           # the masks of the second batch follow
        if masks is not None:
            draws.random((config.num_layers, 5, 3, config.num_hiddens))
        loss, grads, state = ours.loss_and_grads(X1, Y1, ours.begin_state(3))
        _assert_plain(params, config, X1, Y1, None, masks, loss, grads)
        masks = None if masks is None else [np.where(draws.random((5, 3, config.num_hiddens)) >= config.dropout,
                                                     1 / (1 - config.dropout), 0.0)
                                            for _ in range(config.num_layers)]
        carried = _per_layer(ours.state_to_numpy(ours.detach(state)), config)
        loss, grads, _ = ours.loss_and_grads(X2, Y2, ours.detach(state))
        _assert_plain(params, config, X2, Y2, carried, masks, loss, grads)

    @pytest.mark.parametrize("config", REGULARIZED_VARIANTS, ids=variant_id)
    def test_regularized_models_match_numpy_float64(self, config):
        """The regularised and layer-normalised models have no plain transcription: their gradients are
        held to central differences of the objective, the masks replayed, from a zero and a carried state."""
        from test_regularization import assert_gradients_match_finite_differences
        for carried in (False, True):
            assert_gradients_match_finite_differences(config, carried)

    @pytest.mark.parametrize("config", [ModelConfig(7, 6)] + GATED_VARIANTS, ids=variant_id)
    def test_forward_matches_numpy_step_by_step(self, config):
        params = _boosted_params(config)
        ours = self.make(params, config, "float64")
        X = np.random.default_rng(2).integers(0, 7, (2, 6))
        logits, state = ours.forward(X, ours.begin_state(2))
        plain, plain_state = plain_forward(params, config, X)
        # the backend's logits are time-major: (steps * batch, vocab)
        assert _rel_err(logits, plain.transpose(1, 0, 2).reshape(-1, config.vocab_size)) < 1e-10
        step_logits, _ = ours.forward(X[:, :1], state)
        plain_step, _ = plain_forward(params, config, X[:, :1], plain_state)
        assert _rel_err(step_logits, plain_step[:, 0]) < 1e-10


def _per_layer(flat: tuple, config) -> list[list[np.ndarray]]:
    width = 2 if config.cell == "lstm" else 1
    return [list(flat[k * width:(k + 1) * width]) for k in range(config.num_layers)]


def _assert_plain(params, config, X, Y, state, masks, loss, grads) -> None:
    expected = plain_loss(params, config, X, Y, state, masks)
    assert abs(loss - expected) <= 1e-9 * abs(expected), (loss, expected)
    numeric = finite_difference_gradients(lambda p: plain_loss(p, config, X, Y, state, masks), params, entries=6)
    for name, entries in numeric.items():
        for index, value in entries.items():
            assert abs(grads[name][index] - value) <= 1e-6 + 1e-5 * abs(value), (name, index, grads[name][index], value)


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
