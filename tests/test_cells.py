"""The cells (scratchrnn.cells) and the NumPy models built from them: forward against the book's
equations written out directly, every gradient against finite differences in float64 (one and two
layers, zero and carried states, with and without dropout), the dropout masks, generation."""
import numpy as np
import pytest

from scratchrnn import backends, cells
from scratchrnn.backends.numpy.backend import NumpyBackend
from scratchrnn.generation import Decoding, generate_ids
from scratchrnn.model import ModelConfig, init_params

CELL_NAMES = ["rnn", "gru", "lstm"]


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _book_step(cell, x, state, p, prefix="", activation="tanh"):
    """One step of a cell exactly as D2L 8.5 / 9.1 / 9.2 write it."""
    w = {name[len(prefix):]: value for name, value in p.items() if name.startswith(prefix)} if prefix else p
    if cell == "rnn":
        H, = state
        act = np.tanh if activation == "tanh" else (lambda z: np.maximum(z, 0))
        H = act(x @ w["W_xh"] + H @ w["W_hh"] + w["b_h"])
        return H, (H,)
    if cell == "gru":
        H, = state
        Z = _sigmoid(x @ w["W_xz"] + H @ w["W_hz"] + w["b_z"])
        R = _sigmoid(x @ w["W_xr"] + H @ w["W_hr"] + w["b_r"])
        H_tilda = np.tanh(x @ w["W_xh"] + (R * H) @ w["W_hh"] + w["b_h"])
        H = Z * H + (1 - Z) * H_tilda
        return H, (H,)
    H, C = state
    I = _sigmoid(x @ w["W_xi"] + H @ w["W_hi"] + w["b_i"])
    F = _sigmoid(x @ w["W_xf"] + H @ w["W_hf"] + w["b_f"])
    O = _sigmoid(x @ w["W_xo"] + H @ w["W_ho"] + w["b_o"])
    C_tilda = np.tanh(x @ w["W_xc"] + H @ w["W_hc"] + w["b_c"])
    C = F * C + I * C_tilda
    H = O * np.tanh(C)
    return H, (H, C)


def _book_model(config, p, X, state, masks=None):
    """Logits (steps * batch, vocab) time-major: the book's deep RNN, step by step, with the given
    dropout masks (masks[layer][t]) on each layer's output."""
    width = 2 if config.cell == "lstm" else 1
    state = [tuple(state[k * width:(k + 1) * width]) for k in range(config.num_layers)]
    outputs = []
    for t, tokens in enumerate(np.asarray(X).T):
        x = np.eye(config.vocab_size)[tokens] if config.embedding == "onehot" else p["W_emb"][tokens]
        for layer in range(config.num_layers):
            x, state[layer] = _book_step(config.cell, x, state[layer], p, cells.layer_prefix(layer),
                                         config.activation)
            if masks is not None:
                x = x * masks[layer][t]
        outputs.append(x @ p["W_hq"] + p["b_q"])
    return np.concatenate(outputs), tuple(s for layer_state in state for s in layer_state)


def _params(config, seed=3):
    """float64 weights large enough for gradients far from zero, biases nonzero."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0, 0.3 if cells.is_bias(name) else 0.6, shape)
            for name, shape in config.param_shapes().items()}


def _state(config, batch, rng):
    width = 2 if config.cell == "lstm" else 1
    return tuple(rng.normal(0, 0.5, (batch, config.num_hiddens)) for _ in range(width * config.num_layers))


def _config(cell, layers=1, dropout=0.0, embedding="onehot", activation="tanh", vocab=5, hidden=3):
    return ModelConfig(vocab, hidden, activation, embedding, 2 if embedding == "learned" else 0,
                       cell=cell, num_layers=layers, dropout=dropout)


# -- the parameters -----------------------------------------------------------------------------------
def test_parameter_names_follow_the_book_and_deeper_layers_get_a_prefix():
    gru = ModelConfig(28, 4, cell="gru", num_layers=2).param_shapes()
    assert list(gru)[:9] == ["W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h"]
    assert list(gru)[9:] == ["l1.W_xz", "l1.W_hz", "l1.b_z", "l1.W_xr", "l1.W_hr", "l1.b_r",
                             "l1.W_xh", "l1.W_hh", "l1.b_h", "W_hq", "b_q"]
    assert gru["W_xz"] == (28, 4) and gru["l1.W_xz"] == (4, 4) and gru["W_hq"] == (4, 28)
    lstm = ModelConfig(28, 4, cell="lstm").param_shapes()
    assert list(lstm) == ["W_xi", "W_hi", "b_i", "W_xf", "W_hf", "b_f", "W_xo", "W_ho", "b_o",
                          "W_xc", "W_hc", "b_c", "W_hq", "b_q"]


def test_the_chapters_rnn_draws_the_same_weights_as_before():
    config = ModelConfig(28, 16, embedding="learned", embed_dim=5)
    rng = np.random.default_rng(7)
    want = {"W_emb": rng.standard_normal((28, 5)) * 0.01, "W_xh": rng.standard_normal((5, 16)) * 0.01,
            "W_hh": rng.standard_normal((16, 16)) * 0.01, "b_h": np.zeros(16),
            "W_hq": rng.standard_normal((16, 28)) * 0.01, "b_q": np.zeros(28)}
    got = init_params(config, 7)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name].astype(np.float32))


def test_init_is_the_books_and_the_forget_bias_is_optional():
    config = ModelConfig(9, 6, cell="lstm", num_layers=2)
    params = init_params(config, 0)
    for name, value in params.items():
        if cells.is_bias(name):
            assert not value.any(), name
        else:
            assert 0.005 < value.std() < 0.02, name
    biased = init_params(config, 0, forget_bias=1.0)
    for name in params:
        if name.endswith("b_f"):
            np.testing.assert_array_equal(biased[name], 1.0)
        else:
            np.testing.assert_array_equal(biased[name], params[name])
    with pytest.raises(ValueError, match="forget_bias is for the lstm cell"):
        init_params(ModelConfig(9, 6, cell="gru"), 0, forget_bias=1.0)


def test_scaled_init_keeps_signals_their_size_through_each_product():
    """init="scaled": every weight matrix N(0, 1/rows), so x @ W has x's scale; the embedding N(0, 1);
    biases still 0. The book's init stays the default."""
    config = ModelConfig(50, 400, cell="lstm", num_layers=2, embedding="learned", embed_dim=200)
    params = init_params(config, 0, init="scaled")
    for name, value in params.items():
        if cells.is_bias(name):
            assert not value.any(), name
        else:
            expected = 1.0 if name == "W_emb" else 1 / np.sqrt(value.shape[0])
            assert abs(value.std() / expected - 1) < 0.05, name
    x = np.random.default_rng(1).standard_normal((64, 400)).astype(np.float32)
    assert 0.9 < (x @ params["l1.W_hi"]).std() < 1.1
    with pytest.raises(ValueError, match="init must be one of"):
        init_params(config, 0, init="xavier")


@pytest.mark.parametrize("kwargs,message", [
    ({"cell": "gru", "activation": "relu"}, "activation must be 'tanh' for the gru cell"),
    ({"cell": "transformer"}, "cell must be one of"),
    ({"num_layers": 0}, "num_layers must be a positive integer"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
])
def test_config_refuses_what_cannot_be_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(9, 6, **kwargs)


# -- forward against the book --------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("layers,embedding", [(1, "onehot"), (2, "onehot"), (3, "learned")])
def test_forward_is_the_books_equations(cell, layers, embedding):
    config = _config(cell, layers, dropout=0.5, embedding=embedding, hidden=4)
    params = _params(config)
    rng = np.random.default_rng(0)
    X = rng.integers(0, config.vocab_size, (3, 6))
    state = _state(config, 3, rng)
    backend = backends.create("numpy", params, config, dtype="float64")
    logits, new_state = backend.forward(X, backend.state_from_numpy(state))
    want_logits, want_state = _book_model(config, params, X, state)    # dropout is off in forward
    np.testing.assert_allclose(logits, want_logits, rtol=1e-12, atol=1e-12)
    assert len(new_state) == len(want_state)
    for got, want in zip(new_state, want_state):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_rnn_relu_forward_is_the_chapters():
    config = _config("rnn", 2, activation="relu")
    params = _params(config)
    X = np.random.default_rng(1).integers(0, 5, (2, 4))
    backend = backends.create("numpy", params, config, dtype="float64")
    logits, _ = backend.forward(X, backend.begin_state(2))
    want, _ = _book_model(config, params, X, tuple(np.zeros((2, 3)) for _ in range(2)))
    np.testing.assert_allclose(logits, want, rtol=1e-12, atol=1e-12)


def _book_layer(cell):
    """A layer function of the kind each framework's cells.py writes (every step's H, final state),
    here in NumPy from the book's steps."""
    def layer(inputs, state, w, activation):
        outputs = []
        for x in inputs:
            H, state = _book_step(cell, x, state, w, "", activation)
            outputs.append(H)
        return outputs, state
    return layer


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("layers,embedding,dropout",
                         [(1, "onehot", 0.0), (2, "learned", 0.5), (3, "onehot", 0.5)])
def test_the_stacking_written_once_is_the_books_deep_model(cell, layers, embedding, dropout):
    """backends.stacking, which every autograd backend runs its cells through, here over NumPy's
    TensorOps: each layer reads the one below with its own slice of the flat state and its own weights,
    each layer's output is multiplied by its mask, and the output layer reads the last."""
    from scratchrnn.backends import stacking
    from scratchrnn.backends.base import TensorOps
    config = _config(cell, layers, dropout, embedding, hidden=4)
    params = _params(config)
    rng = np.random.default_rng(5)
    X = rng.integers(0, config.vocab_size, (3, 6))
    state = _state(config, 3, rng)
    from scratchrnn.backends.dropout import Masks
    masks = None
    if dropout:
        masks = [cells.dropout_mask(rng, (6, 3, 4), dropout, np.float64) for _ in range(layers)]
    tokens = X.T
    inputs = np.eye(config.vocab_size)[tokens] if embedding == "onehot" else params["W_emb"][tokens]
    logits, new_state = stacking.deep_model(TensorOps(), _book_layer(cell), inputs, state, params, config,
                                            None if masks is None else Masks(outputs=masks))
    want_logits, want_state = _book_model(config, params, X, state, masks)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-12, atol=1e-12)
    assert len(new_state) == len(want_state) == backends.base.state_size(config)
    for got, want in zip(new_state, want_state):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# -- gradients against finite differences ---------------------------------------------------------------
def _loss_fn(backend, X, Y, state, rng_state):
    """The backend's training loss as a function of its parameters, with the same dropout masks every
    time (the generator is put back where it was before each evaluation)."""
    def loss(params):
        backend.params = params
        backend.set_dropout_rng_state(rng_state)
        start = backend.begin_state(X.shape[0]) if state is None else backend.state_from_numpy(state)
        return backend.gradients(X, Y, start)
    return loss


def _check_every_element(loss, params, grads, eps=1e-6, tol=1e-6, limit=None):
    """Central differences of every element of every parameter (the first ``limit`` of each, if given)
    against ``grads``."""
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for idx in list(np.ndindex(value.shape))[:limit]:
            plus = dict(params, **{name: value.copy()})
            minus = dict(params, **{name: value.copy()})
            plus[name][idx] += eps
            minus[name][idx] -= eps
            numeric[idx] = (loss(plus)[0] - loss(minus)[0]) / (2 * eps)
        analytic = grads[name]
        if limit is not None:
            analytic = np.where(np.arange(value.size).reshape(value.shape) < limit, analytic, 0)
        scale = max(np.linalg.norm(numeric) + np.linalg.norm(analytic), 1e-30)
        assert np.linalg.norm(numeric - analytic) / scale < tol, name
        assert np.linalg.norm(numeric) > 1e-4, f"{name}: a gradient too small to check anything"


GRAD_CASES = [  # cell, layers, dropout, embedding, batch, steps
    (cell, layers, dropout, "onehot", 2, 3)
    for cell in CELL_NAMES for layers in (1, 2) for dropout in (0.0, 0.4)
] + [(cell, 2, 0.3, "learned", 3, 2) for cell in CELL_NAMES]


@pytest.mark.parametrize("cell,layers,dropout,embedding,batch,steps", GRAD_CASES,
                         ids=lambda v: str(v))
@pytest.mark.parametrize("carried", [False, True], ids=["zero-state", "carried-state"])
def test_every_gradient_matches_finite_differences(cell, layers, dropout, embedding, batch, steps, carried):
    config = _config(cell, layers, dropout, embedding, hidden=3 if layers > 1 else 4)
    params = _params(config)
    rng = np.random.default_rng(4)
    X, Y = (rng.integers(0, config.vocab_size, (batch, steps)) for _ in range(2))
    state = _state(config, batch, rng) if carried else None
    backend = NumpyBackend(params, config, dtype="float64", dropout_seed=5)
    loss = _loss_fn(backend, X, Y, state, backend.dropout_rng_state())
    _, grads, _ = loss(params)
    _check_every_element(loss, params, grads)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_gradient_with_respect_to_the_starting_state(cell):
    config = _config(cell, 2, dropout=0.3)
    params = _params(config)
    rng = np.random.default_rng(6)
    X, Y = (rng.integers(0, 5, (2, 3)) for _ in range(2))
    state = _state(config, 2, rng)
    backend = NumpyBackend(params, config, dtype="float64")
    rng_state = backend.dropout_rng_state()

    def loss_and_d_state0(start):
        backend.set_dropout_rng_state(rng_state)
        logits, record = backend._run(X, start, train=True)
        from scratchrnn.backends.numpy.backend import softmax_cross_entropy
        value, dlogits = softmax_cross_entropy(logits, Y.T.reshape(-1))
        grads = {name: np.zeros_like(v) for name, v in params.items()}
        d_top = (dlogits @ params["W_hq"].T).reshape(record.top.shape)
        return value, backend._backprop(record, d_top, None, grads, need_d_state0=True)

    _, d_state0 = loss_and_d_state0(state)
    assert len(d_state0) == len(state)
    eps = 1e-6
    for k, part in enumerate(state):
        numeric = np.zeros_like(part)
        for idx in np.ndindex(part.shape):
            plus, minus = [list(state) for _ in range(2)]
            plus[k], minus[k] = part.copy(), part.copy()
            plus[k][idx] += eps
            minus[k][idx] -= eps
            numeric[idx] = (loss_and_d_state0(tuple(plus))[0] - loss_and_d_state0(tuple(minus))[0]) / (2 * eps)
        np.testing.assert_allclose(d_state0[k], numeric, rtol=1e-5, atol=1e-8, err_msg=f"state {k}")


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_no_detach_backpropagates_through_earlier_batches_of_every_cell(cell):
    """Without detaching, the second batch's loss depends on the weights through the first batch."""
    config = _config(cell, 2, dropout=0.25)
    params = _params(config)
    rng = np.random.default_rng(7)
    X1, Y1, X2, Y2 = (rng.integers(0, 5, (2, 3)) for _ in range(4))
    backend = NumpyBackend(params, config, dtype="float64")
    rng_state = backend.dropout_rng_state()

    def second_loss(p):
        backend.params = p
        backend.set_dropout_rng_state(rng_state)
        _, _, state = backend.gradients(X1, Y1, backend.begin_state(2))
        return backend.gradients(X2, Y2, state)

    _, grads, _ = second_loss(params)
    _check_every_element(second_loss, params, grads, limit=5)
    # and it is not the detached gradient
    backend.params = params
    backend.set_dropout_rng_state(rng_state)
    _, _, state = backend.gradients(X1, Y1, backend.begin_state(2))
    _, detached, _ = backend.gradients(X2, Y2, backend.detach(state))
    first = next(iter(params))
    assert not np.allclose(detached[first], grads[first])


# -- dropout ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_masks_keep_one_minus_rate_and_scale_the_kept(rate):
    mask = cells.dropout_mask(np.random.default_rng(0), (200, 50, 40), rate, np.float32)
    kept = mask != 0
    n = mask.size
    assert abs(kept.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
    np.testing.assert_allclose(mask[kept], np.float32(1 / (1 - rate)))
    assert abs(mask.mean(dtype=np.float64) - 1) < 0.02       # inverted dropout keeps the expectation


def test_dropout_is_off_in_forward_and_on_in_training():
    config = _config("lstm", 2, dropout=0.5, hidden=32, vocab=7)
    params = _params(config)
    rng = np.random.default_rng(2)
    X, Y = (rng.integers(0, 7, (8, 20)) for _ in range(2))
    backend = NumpyBackend(params, config, dtype="float64", dropout_seed=1)
    no_dropout = NumpyBackend(params, _config("lstm", 2, hidden=32, vocab=7), dtype="float64")
    before = backend.dropout_rng_state()
    logits, _ = backend.forward(X, backend.begin_state(8))
    assert backend.dropout_rng_state() == before                # forward draws nothing
    np.testing.assert_array_equal(logits, no_dropout.forward(X, no_dropout.begin_state(8))[0])
    # in training: one mask per layer, about half the units kept, scaled by 2, applied to the outputs
    _, record = backend._run(X, backend.begin_state(8), train=True)
    assert backend.dropout_rng_state() != before
    for layer in record.layers:
        kept = layer.mask != 0
        assert layer.mask.shape == (20, 8, 32)
        assert abs(kept.mean() - 0.5) < 5 * np.sqrt(0.25 / kept.size)
        np.testing.assert_array_equal(layer.mask[kept], 2.0)
    assert np.all((record.top == 0) == (record.layers[-1].mask == 0))
    # the same generator state gives the same masks, so the same loss; the next draw differs
    backend.set_dropout_rng_state(before)
    first = backend.gradients(X, Y, backend.begin_state(8))[0]
    second = backend.gradients(X, Y, backend.begin_state(8))[0]
    backend.set_dropout_rng_state(before)
    assert backend.gradients(X, Y, backend.begin_state(8))[0] == first
    assert second != first
    assert no_dropout.gradients(X, Y, no_dropout.begin_state(8))[0] < first


def test_dropout_seed_fixes_the_masks():
    config = _config("gru", 2, dropout=0.3, hidden=8)
    params = _params(config)
    X, Y = (np.random.default_rng(3).integers(0, 5, (4, 6)) for _ in range(2))
    losses = [NumpyBackend(params, config, dtype="float64", dropout_seed=seed).gradients(
        X, Y, NumpyBackend(params, config).begin_state(4))[0] for seed in (1, 1, 2)]
    assert losses[0] == losses[1] != losses[2]


# -- training and generation --------------------------------------------------------------------------
@pytest.mark.parametrize("cell,layers,dropout", [("gru", 1, 0.0), ("lstm", 2, 0.2)])
def test_sgd_lowers_the_loss_of_gated_and_deep_models(cell, layers, dropout):
    config = _config(cell, layers, dropout, hidden=16, vocab=6)
    # weights N(0, 0.1): from the book's N(0, 0.01) a two-layer LSTM takes far longer to start learning
    params = {name: value * 10 for name, value in init_params(config, 0).items()}
    backend = backends.create("numpy", params, config, dtype="float32")
    X = np.tile(np.arange(6), (4, 3))[:, :16]           # a sequence a model can learn: 0 1 2 3 4 5 0 ...
    Y = (X + 1) % 6
    losses = []
    for _ in range(150):
        loss, state = backend.train_step(X, Y, backend.begin_state(4), 1.0, 1.0)
        losses.append(loss)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.5 * losses[0]


@pytest.mark.parametrize("cell,layers", [("gru", 1), ("lstm", 1), ("rnn", 2), ("lstm", 2)])
def test_generation_of_other_models_is_forward_step_by_step(cell, layers):
    config = _config(cell, layers, dropout=0.3, hidden=8, vocab=9)
    backend = backends.create("numpy", _params(config), config)
    prefixes = [[1, 2, 3], [4, 5], [6, 7, 8]]
    got = generate_ids(backend, prefixes, 12)
    # the same through forward alone, one token at a time
    want = []
    for ids in prefixes:
        logits, state = backend.forward(np.asarray([ids]), backend.begin_state(1))
        out = list(ids)
        for _ in range(12):
            out.append(int(np.argmax(logits[-1][1:])) + 1)     # greedy never picks <unk>, index 0
            logits, state = backend.forward(np.asarray([[out[-1]]]), state)
        want.append(out)
    assert got == want
    sampled = generate_ids(backend, prefixes, 12, Decoding("sample", seed=3))
    assert sampled == generate_ids(backend, prefixes, 12, Decoding("sample", seed=3))
    with pytest.raises(ValueError, match="decode weights exist for one rnn layer only"):
        backend.decode_weights()
