"""What came after the book's LSTM (docs/regularization.md), in the NumPy reference: the layer-normalised
cells against their equations written out step by step, every gradient of every technique against
finite differences in float64, the masks (what each kind drops, in what order, on several ranks),
the model settings (defaults off, checked, stored in checkpoints), the kernel choice, and the command
line."""
import dataclasses
import json

import numpy as np
import pytest

from scratchrnn import backends, cells, kernels
from scratchrnn.analysis import ReferenceModel, as_tokens, prediction_gradients
from scratchrnn.backends.numpy.backend import NumpyBackend, softmax_cross_entropy
from scratchrnn.backends.regularization import activation_penalty
from scratchrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scratchrnn.data import Vocab
from scratchrnn.model import ModelConfig, ModelSettings, init_params

LEARNED = {"embedding": "learned", "embed_dim": 3}


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _ln(a, gain, eps=1e-5):
    return gain * (a - a.mean(axis=-1, keepdims=True)) / np.sqrt(a.var(axis=-1, keepdims=True) + eps)


def _ln_step(cell, x, state, w):
    """One step of a layer-normalised cell exactly as docs/regularization.md writes it."""
    def gate(g, h_in, squash):
        return squash(_ln(x @ w[f"W_x{g}"], w[f"g_x{g}"]) + _ln(h_in @ w[f"W_h{g}"], w[f"g_h{g}"]) + w[f"b_{g}"])
    if cell == "gru":
        H, = state
        Z, R = gate("z", H, _sigmoid), gate("r", H, _sigmoid)
        H = Z * H + (1 - Z) * gate("h", R * H, np.tanh)
        return H, (H,)
    H, C = state
    I, F, O = (gate(g, H, _sigmoid) for g in "ifo")
    C = F * C + I * gate("c", H, np.tanh)
    H = O * np.tanh(_ln(C, w["g_cell"]) + w["b_cell"])
    return H, (H, C)


def _plain_forward(config, p, inputs, state=None, nudge=None):
    """Logits (steps, vocab) of one sequence of input vectors through layer-normalised layers and the
    (possibly tied) output layer, step by step; ``nudge=(layer, step, unit, delta)`` moves that H."""
    width = 2 if config.cell == "lstm" else 1
    states = [tuple(np.zeros(config.num_hiddens) for _ in range(width)) for _ in range(config.num_layers)]
    x_seq = list(inputs)
    for layer in range(config.num_layers):
        w = {plain: p[full] for plain, full in config.layer_param_names(layer).items()}
        outputs = []
        for t, x in enumerate(x_seq):
            H, states[layer] = _ln_step(config.cell, x, states[layer], w)
            if nudge is not None and nudge[:2] == (layer, t):
                H = H.copy()
                H[nudge[2]] += nudge[3]
                states[layer] = (H, *states[layer][1:])
            outputs.append(H)
        x_seq = outputs
    top = np.array(x_seq)
    if not config.tie_weights:
        return top @ p["W_hq"] + p["b_q"]
    if config.projects_output:
        top = top @ p["W_proj"]
    return top @ p["W_emb"].T + p["b_q"]


def _params(config, seed=3):
    """float64 parameters far from zero: weights N(0, 0.6), biases N(0, 0.3), gains N(1, 0.3)."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(1 if cells.is_gain(name) else 0, 0.3 if cells.is_bias(name) or cells.is_gain(name)
                             else 0.6, shape) for name, shape in config.param_shapes().items()}


# -- the layer-normalised cells -------------------------------------------------------------------------
@pytest.mark.parametrize("config", [ModelConfig(5, 4, cell="lstm", layer_norm=True),
                                    ModelConfig(5, 3, cell="gru", layer_norm=True, num_layers=2, **LEARNED),
                                    ModelConfig(5, 4, cell="lstm", layer_norm=True, num_layers=2, tie_weights=True,
                                                **LEARNED)], ids=lambda c: f"{c.cell}x{c.num_layers}")
def test_layer_normalised_forward_is_the_equations(config):
    params = _params(config)
    X = np.random.default_rng(0).integers(0, 5, (1, 6))
    backend = NumpyBackend(params, config, dtype="float64")
    logits, _ = backend.forward(X, backend.begin_state(1))
    inputs = np.eye(5)[X[0]] if config.embedding == "onehot" else params["W_emb"][X[0]]
    np.testing.assert_allclose(logits, _plain_forward(config, params, inputs), rtol=1e-10, atol=1e-12)


def test_layer_norm_adds_gains_that_start_at_one_and_keeps_the_books_weights():
    """The same seed draws the same weights with and without layer norm; gains start at 1, the cell
    normalisation's shift at 0, and the rnn has no such cell."""
    book, normed = ModelConfig(9, 6, cell="lstm", num_layers=2), ModelConfig(9, 6, cell="lstm", num_layers=2,
                                                                            layer_norm=True)
    plain, ln = init_params(book, 4), init_params(normed, 4)
    extra = set(ln) - set(plain)
    assert extra == {f"{prefix}{name}" for prefix in ("", "l1.") for name in
                     ["g_xi", "g_hi", "g_xf", "g_hf", "g_xo", "g_ho", "g_xc", "g_hc", "g_cell", "b_cell"]}
    for name in plain:
        np.testing.assert_array_equal(ln[name], plain[name])
    for name in extra:
        np.testing.assert_array_equal(ln[name], 0.0 if name.endswith("b_cell") else 1.0)
    assert set(init_params(ModelConfig(9, 6, cell="gru", layer_norm=True), 0)) - set(
        init_params(ModelConfig(9, 6, cell="gru"), 0)) == {"g_xz", "g_hz", "g_xr", "g_hr", "g_xh", "g_hh"}
    with pytest.raises(ValueError, match="layer_norm is for the gru and lstm cells, not the rnn cell"):
        ModelConfig(9, 6, layer_norm=True)


# -- every gradient against finite differences ----------------------------------------------------------
GRAD_CASES = {
    "ln-lstm": ModelConfig(5, 4, cell="lstm", layer_norm=True),
    "ln-gru-2": ModelConfig(5, 3, cell="gru", layer_norm=True, num_layers=2, **LEARNED),
    "ln-lstm-2-tied": ModelConfig(5, 3, cell="lstm", layer_norm=True, num_layers=2, tie_weights=True,
                                  weight_dropout=0.3, **LEARNED),
    "gru-weight-locked": ModelConfig(5, 3, cell="gru", num_layers=2, weight_dropout=0.4, hidden_dropout=0.3,
                                     output_dropout=0.3, dropout=0.2, **LEARNED),
    "lstm-embedding-tied-projected-ar-tar": ModelConfig(5, 4, cell="lstm", num_layers=2, embed_dropout=0.3,
                                                        input_dropout=0.3, tie_weights=True, activation_reg=0.5,
                                                        temporal_reg=0.7, **LEARNED),
    "rnn-tied-tar": ModelConfig(5, 3, cell="rnn", tie_weights=True, weight_dropout=0.3, output_dropout=0.3,
                                temporal_reg=1.0, **LEARNED),
}


def _objective(backend, X, Y, state, rng_state):
    """What the gradients are of: the cross-entropy plus AR and TAR, with the same masks every time."""
    def objective(params):
        backend.params = params
        backend.set_dropout_rng_state(rng_state)
        start = backend.begin_state(X.shape[0]) if state is None else backend.state_from_numpy(state)
        logits, record = backend._run(X, start, train=True)
        loss, _ = softmax_cross_entropy(logits, np.asarray(Y).T.reshape(-1))
        return loss + float(activation_penalty(record.top, record.raw_top, backend.config))
    return objective


@pytest.mark.parametrize("carried", [False, True], ids=["zero-state", "carried-state"])
@pytest.mark.parametrize("name", list(GRAD_CASES))
def test_every_gradient_matches_finite_differences(name, carried):
    assert_gradients_match_finite_differences(GRAD_CASES[name], carried)


def assert_gradients_match_finite_differences(config: ModelConfig, carried: bool) -> None:
    """The NumPy reference's gradient of the objective (the cross-entropy plus AR and TAR), every entry
    of every parameter, against central differences of its forward pass with the masks replayed; also
    the contract's check of the NumPy backend itself (test_backend_numpy)."""
    params = _params(config)
    rng = np.random.default_rng(4)
    X, Y = (rng.integers(0, config.vocab_size, (2, 3)) for _ in range(2))
    width = 2 if config.cell == "lstm" else 1
    state = tuple(rng.normal(0, 0.5, (2, config.num_hiddens)) for _ in range(width * config.num_layers)) \
        if carried else None
    backend = NumpyBackend(params, config, dtype="float64", dropout_seed=5)
    rng_state = backend.dropout_rng_state()
    objective = _objective(backend, X, Y, state, rng_state)
    backend.set_dropout_rng_state(rng_state)
    start = backend.begin_state(2) if state is None else backend.state_from_numpy(state)
    loss, grads, _ = backend.gradients(X, Y, start)
    if not config.has_penalty:
        assert loss == pytest.approx(objective(params), rel=1e-12)
    eps = 1e-6
    for pname, value in params.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus, minus = dict(params, **{pname: value.copy()}), dict(params, **{pname: value.copy()})
            plus[pname][idx] += eps
            minus[pname][idx] -= eps
            numeric[idx] = (objective(plus) - objective(minus)) / (2 * eps)
        scale = np.linalg.norm(numeric) + np.linalg.norm(grads[pname])
        assert np.linalg.norm(numeric - grads[pname]) / scale < 1e-6, pname
        assert np.linalg.norm(numeric) > 1e-4, f"{pname}: a gradient too small to check anything"


def test_the_loss_reported_is_the_cross_entropy_and_the_penalty_moves_only_the_gradients():
    config = GRAD_CASES["lstm-embedding-tied-projected-ar-tar"]
    plain = dataclasses.replace(config, activation_reg=0.0, temporal_reg=0.0)
    params = _params(config)
    X, Y = (np.random.default_rng(6).integers(0, 5, (2, 4)) for _ in range(2))
    with_penalty, without = (NumpyBackend(params, c, dtype="float64", dropout_seed=1) for c in (config, plain))
    loss, grads, _ = with_penalty.gradients(X, Y, with_penalty.begin_state(2))
    plain_loss, plain_grads, _ = without.gradients(X, Y, without.begin_state(2))
    assert loss == plain_loss
    assert not np.allclose(grads["W_hi"], plain_grads["W_hi"])
    np.testing.assert_array_equal(grads["b_q"], plain_grads["b_q"])    # the penalty never sees the logits


# -- the masks -------------------------------------------------------------------------------------------
ALL_MASKS = ModelConfig(11, 6, cell="lstm", num_layers=3, dropout=0.2, weight_dropout=0.5, input_dropout=0.3,
                        hidden_dropout=0.4, output_dropout=0.25, embed_dropout=0.5, embedding="learned", embed_dim=5)


def test_each_kind_of_mask_drops_what_it_should():
    backend = NumpyBackend(init_params(ALL_MASKS, 0), ALL_MASKS, dtype="float64", dropout_seed=2)
    X = np.random.default_rng(0).integers(0, 11, (8, 30))
    masks = backend.draw_masks(X)
    assert masks.inputs.shape == (30, 8, 5)
    # embedding dropout alone: a character's factor is the same wherever it occurs in the batch
    only_embedding = dataclasses.replace(ALL_MASKS, input_dropout=0.0)
    factors = NumpyBackend(init_params(only_embedding, 0), only_embedding, dropout_seed=2).draw_masks(X).inputs
    assert factors.shape == (30, 8, 1)
    for character in range(11):
        assert len(set(factors[X.T == character, 0])) <= 1
    assert set(np.unique(factors)) == {0.0, 2.0}
    # locked input dropout alone: one mask per sequence, the same at every step
    only_locked = dataclasses.replace(ALL_MASKS, embed_dropout=0.0)
    locked = NumpyBackend(init_params(only_locked, 0), only_locked, dropout_seed=2).draw_masks(X).inputs
    assert locked.shape == (1, 8, 5) and (locked == 0).any()
    # weight dropout: one (hidden, hidden) mask per recurrent weight and layer, about half kept
    assert [sorted(layer) for layer in masks.recurrent] == [["W_hc", "W_hf", "W_hi", "W_ho"]] * 3
    values = np.concatenate([m.ravel() for layer in masks.recurrent for m in layer.values()])
    assert set(np.unique(values)) == {0.0, 2.0} and abs((values == 0).mean() - 0.5) < 0.1
    # outputs: layers below the top take dropout x hidden_dropout (locked), the top dropout x output_dropout
    for layer, mask in enumerate(masks.outputs):
        assert mask.shape == (30, 8, 6)
        locked_rate = 0.25 if layer == 2 else 0.4
        kept = 1 / (1 - 0.2) / (1 - locked_rate)
        assert set(np.unique(np.round(mask, 9))) <= {0.0, round(kept, 9)}
    # evaluation and generation draw nothing
    state = backend.dropout_rng_state()
    backend.forward(X, backend.begin_state(8))
    assert backend.dropout_rng_state() == state


def test_locked_masks_are_one_per_sequence_reused_at_every_step():
    config = ModelConfig(7, 5, cell="gru", num_layers=2, hidden_dropout=0.5, output_dropout=0.5, input_dropout=0.5,
                         embedding="learned", embed_dim=4)
    backend = NumpyBackend(init_params(config, 0), config, dtype="float64", dropout_seed=0)
    masks = backend.draw_masks(np.zeros((6, 9), dtype=int))
    assert masks.inputs.shape == (1, 6, 4)
    assert [m.shape for m in masks.outputs] == [(1, 6, 5), (1, 6, 5)]
    assert masks.recurrent is None
    _, record = backend._run(np.zeros((6, 9), dtype=int), backend.begin_state(6), train=True)
    top = record.top
    assert np.array_equal(top[0] == 0, top[-1] == 0) and (top == 0).any()     # the same units at every step


def test_the_books_dropout_alone_draws_exactly_what_it_drew_before():
    """A run saved before the new masks existed resumes with the same stream: with only ``dropout``,
    a batch's masks are one (steps, batch, hidden) draw per layer, layer 0 first, as before."""
    config = ModelConfig(9, 7, cell="lstm", num_layers=3, dropout=0.3)
    backend = NumpyBackend(init_params(config, 0), config, dtype="float32", dropout_seed=4)
    masks = backend.draw_masks(np.zeros((5, 6), dtype=int))
    rng = backends.dropout.dropout_generator(4)
    assert masks.inputs is None and masks.recurrent is None
    for mask in masks.outputs:
        np.testing.assert_array_equal(mask, cells.dropout_mask(rng, (6, 5, 7), 0.3, np.float32))
    assert backend.dropout_rng_state() == rng.bit_generator.state


def test_two_ranks_apply_the_masks_one_process_applies():
    """Per-row masks are cut into each rank's rows (``RankRows``); a weight's and the embedding's are
    drawn whole by every rank: the ranks' masks together are the single process's."""
    X = np.random.default_rng(1).integers(0, 11, (4, 7))
    one = NumpyBackend(init_params(ALL_MASKS, 0), ALL_MASKS, dtype="float64", dropout_seed=9)
    whole = one.draw_masks(X)
    for rank in range(2):
        ranked = NumpyBackend(init_params(ALL_MASKS, 0), ALL_MASKS, dtype="float64", dropout_seed=9)
        ranked.share_dropout_stream(rank, 2)
        mine = ranked.draw_masks(X[rank::2])
        np.testing.assert_array_equal(mine.inputs, whole.inputs[:, rank::2])
        for got, want in zip(mine.outputs, whole.outputs):
            np.testing.assert_array_equal(got, want[:, rank::2])
        for got, want in zip(mine.recurrent, whole.recurrent):
            for name in want:
                np.testing.assert_array_equal(got[name], want[name])


def test_two_ranks_gradients_average_to_one_processes_with_every_technique():
    """What ``--nproc 2`` averages: each rank's gradients on its rows with its rows of the masks. Checked
    here for one step of a layer-normalised model with every mask, AR and TAR (tests/test_distributed.py
    trains the same regularisers under torchrun, without layer norm: normalising the near-zero terms of
    the book's N(0, 0.01) weights magnifies the ranks' different order of float64 sums too much to compare
    twenty SGD steps at 1e-9)."""
    config = ModelConfig(11, 6, cell="gru", num_layers=2, layer_norm=True, weight_dropout=0.3, input_dropout=0.2,
                         hidden_dropout=0.3, output_dropout=0.3, embed_dropout=0.2, tie_weights=True,
                         activation_reg=1.0, temporal_reg=1.0, embedding="learned", embed_dim=5)
    params = _params(config)
    X, Y = np.random.default_rng(0).integers(0, 11, (2, 4, 5))
    one = NumpyBackend(params, config, dtype="float64", dropout_seed=11)
    loss, grads, _ = one.gradients(X, Y, one.begin_state(4))
    ranks = []
    for rank in range(2):
        backend = NumpyBackend(params, config, dtype="float64", dropout_seed=11)
        backend.share_dropout_stream(rank, 2)
        ranks.append(backend.gradients(X[rank::2], Y[rank::2], backend.begin_state(2)))
    assert (ranks[0][0] + ranks[1][0]) / 2 == pytest.approx(loss, rel=1e-12)
    for name, grad in grads.items():
        np.testing.assert_allclose((ranks[0][1][name] + ranks[1][1][name]) / 2, grad, rtol=1e-10, atol=1e-12,
                                   err_msg=name)


# -- the settings -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("changes,message", [
    ({"weight_dropout": 1.0}, r"weight_dropout must be in \[0, 1\)"),
    ({"output_dropout": -0.1}, r"output_dropout must be in \[0, 1\)"),
    ({"activation_reg": -1.0}, "activation_reg must be a number >= 0"),
    ({"temporal_reg": float("nan")}, "temporal_reg must be a number >= 0"),
    ({"layer_norm": "yes"}, "layer_norm must be true or false"),
    ({"tie_weights": True, "embedding": "onehot", "embed_dim": 0}, "tie_weights needs a learned embedding"),
    ({"embed_dropout": 0.1, "embedding": "onehot", "embed_dim": 0}, "embed_dropout needs a learned embedding"),
    ({"input_dropout": 0.1, "embedding": "onehot", "embed_dim": 0}, "input_dropout needs a learned embedding"),
])
def test_settings_refuse_what_cannot_be_built_naming_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(9, 6, cell="lstm", **{**LEARNED, **changes})
    with pytest.raises(ValueError, match=message):
        ModelSettings(num_hiddens=6, cell="lstm", **{**LEARNED, **changes})


def test_defaults_are_off_and_the_books_models_keep_their_shapes():
    settings = ModelSettings()
    assert not any(getattr(settings, name) for name in (
        "layer_norm", "weight_dropout", "input_dropout", "hidden_dropout", "output_dropout", "embed_dropout",
        "tie_weights", "activation_reg", "temporal_reg"))
    config = ModelConfig(9, 6, cell="gru", num_layers=2, dropout=0.1, **LEARNED)
    assert not config.has_penalty and not config.tie_weights
    assert list(config.param_shapes())[-2:] == ["W_hq", "b_q"]
    # an older checkpoint's settings, without the new fields, are the same model
    old = {k: v for k, v in config.to_dict().items() if k not in ("layer_norm", "tie_weights", "weight_dropout")}
    assert ModelConfig.from_dict(old) == config


def test_tied_weights_replace_W_hq_and_project_where_the_widths_differ():
    square = ModelConfig(9, 3, tie_weights=True, **LEARNED)
    assert "W_hq" not in square.param_shapes() and "W_proj" not in square.param_shapes()
    wide = ModelConfig(9, 8, cell="lstm", tie_weights=True, **LEARNED)
    assert wide.param_shapes()["W_proj"] == (8, 3)
    # scaled init: a tied embedding N(0, 1/embed_dim), so that it makes unit-sized logits of unit-sized rows
    big = ModelConfig(50, 256, cell="lstm", tie_weights=True, embedding="learned", embed_dim=256)
    params = init_params(big, 0, init="scaled")
    assert abs(params["W_emb"].std() * np.sqrt(256) - 1) < 0.05


def test_a_checkpoint_keeps_every_setting_and_reloads_the_same_model(tmp_path):
    config = ModelConfig(5, 4, cell="lstm", num_layers=2, layer_norm=True, weight_dropout=0.3, input_dropout=0.1,
                         hidden_dropout=0.2, output_dropout=0.3, embed_dropout=0.1, tie_weights=True,
                         activation_reg=2.0, temporal_reg=1.0, **LEARNED)
    vocab = Vocab.from_tokens_list(["<unk>", "a", "b", "c", "d"])
    params = init_params(config, 0)
    save_checkpoint(tmp_path / "c", Checkpoint(params, vocab, config))
    loaded = load_checkpoint(tmp_path / "c")
    assert loaded.model == config
    X = np.array([[1, 2, 3, 4]])
    ours, theirs = (NumpyBackend(p, config) for p in (params, loaded.params))
    np.testing.assert_array_equal(ours.forward(X, ours.begin_state(1))[0], theirs.forward(X, theirs.begin_state(1))[0])
    # a damaged setting is refused naming the field
    raw = json.loads((tmp_path / "c" / "config.json").read_text())
    raw["model"]["weight_dropout"] = 2.0
    (tmp_path / "c" / "config.json").write_text(json.dumps(raw))
    with pytest.raises(Exception, match="weight_dropout must be in"):
        load_checkpoint(tmp_path / "c")


# -- the kernel choice, and explain --------------------------------------------------------------------------
def test_the_kernel_choice_says_layer_normalised_cells_run_the_frameworks_loops(monkeypatch):
    monkeypatch.setenv("SCRATCHRNN_LOOPS", "compiled")
    workload = kernels.Workload("numpy", "lstm", "training", 8, 16, 5, layer_norm=True)
    choice = kernels.choose(workload)
    assert not choice.compiled
    assert "no step loops for the layer-normalised lstm" in choice.describe()
    config = ModelConfig(7, 16, cell="lstm", layer_norm=True)
    backend = NumpyBackend(init_params(config, 0), config)
    assert backend.step_loops(8, 5, training=True) is cells.get_cell("lstm", layer_norm=True)


@pytest.mark.parametrize("config", [ModelConfig(6, 4, cell="lstm", num_layers=2, layer_norm=True, tie_weights=True,
                                                **LEARNED),
                                    ModelConfig(6, 3, cell="gru", layer_norm=True)], ids=["ln-lstm-tied", "ln-gru"])
def test_explains_gradients_of_layer_normalised_and_tied_models_are_finite_differences(config):
    """``scratchrnn explain``'s saliency and gradient through time (analysis.prediction_gradients):
    the norms of d log p / d input_s and d log p / d h_s, against finite differences of the model
    written out step by step."""
    params = _params(config, seed=2)
    ids = [1, 3, 2, 5, 4, 1]
    t = len(ids) - 2
    grads = prediction_gradients(ReferenceModel(params, config), ids, [t])
    inputs = np.eye(6)[ids] if config.embedding == "onehot" else params["W_emb"][ids]

    def log_p(logits):
        row = logits[t]
        return row[ids[t + 1]] - row.max() - np.log(np.exp(row - row.max()).sum())
    eps = 1e-6
    for s in range(len(ids)):
        numeric = np.zeros(inputs.shape[1])
        for k in range(inputs.shape[1]):
            up, down = inputs.copy(), inputs.copy()
            up[s, k] += eps
            down[s, k] -= eps
            numeric[k] = (log_p(_plain_forward(config, params, up)) - log_p(_plain_forward(config, params, down))) / (2 * eps)
        assert grads.inputs[0, s] == pytest.approx(np.linalg.norm(numeric), rel=1e-6, abs=1e-9)
        for layer in range(config.num_layers):
            numeric = np.zeros(config.num_hiddens)
            for unit in range(config.num_hiddens):
                up = _plain_forward(config, params, inputs, nudge=(layer, s, unit, eps))
                down = _plain_forward(config, params, inputs, nudge=(layer, s, unit, -eps))
                numeric[unit] = (log_p(up) - log_p(down)) / (2 * eps)
            assert grads.states[layer][0, s] == pytest.approx(np.linalg.norm(numeric), rel=1e-6, abs=1e-9)
    model = ReferenceModel(params, config)
    np.testing.assert_allclose(model.run(as_tokens(ids)).logits[:, 0], _plain_forward(config, params, inputs),
                               rtol=1e-10)


# -- runs: resume and the command line ------------------------------------------------------------------------
def test_a_regularised_run_resumes_exactly(tmp_path):
    """Every kind of mask comes from the saved generator: a run stopped and resumed trains as one never
    stopped (float64, to 1e-9)."""
    from scratchrnn.run_config import RunConfig
    from scratchrnn.runner import resume, run
    from scratchrnn.training import TrainConfig

    def config(out, epochs):
        model = ModelSettings(num_hiddens=10, cell="lstm", num_layers=2, embedding="learned", embed_dim=6,
                              layer_norm=True, weight_dropout=0.3, input_dropout=0.1, hidden_dropout=0.2,
                              output_dropout=0.3, embed_dropout=0.1, tie_weights=True, activation_reg=1.0,
                              temporal_reg=1.0)
        return RunConfig(out=str(out), dtype="float64", max_tokens=1500, model=model, predict_every=0, num_chars=10,
                         train=TrainConfig(epochs=epochs, batch_size=8, num_steps=10, optimizer="adam", lr=0.01,
                                           sampling="random", seed=3))
    run(config(tmp_path / "whole", 3), "new", say=lambda line: None, progress=False)
    run(config(tmp_path / "parts", 1), "new", say=lambda line: None, progress=False)
    resume(str(tmp_path / "parts"), epochs=3, say=lambda line: None, progress=False)
    ours, theirs = load_checkpoint(tmp_path / "parts", "last"), load_checkpoint(tmp_path / "whole", "last")
    assert ours.model == theirs.model and ours.model.layer_norm and ours.model.tie_weights
    for name in theirs.params:
        np.testing.assert_allclose(ours.params[name], theirs.params[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_the_train_command_takes_every_flag_and_refuses_in_flag_names(tmp_path, capsys):
    from scratchrnn import cli
    text = tmp_path / "tiny.txt"
    text.write_text("the time traveller was expounding a recondite matter to us\n" * 12, encoding="utf-8")
    out = tmp_path / "run"
    common = ["--data", str(text), "--cleaning", "chapter", "--epochs", "2", "--batch-size", "4", "--num-steps", "5",
              "--no-progress", "--predict-every", "0"]
    flags = ["--cell", "gru", "--layers", "2", "--hidden", "12", "--embedding", "learned", "--embed-dim", "6",
             "--layer-norm", "--weight-dropout", "0.2", "--input-dropout", "0.1", "--hidden-dropout", "0.2",
             "--output-dropout", "0.3", "--embed-dropout", "0.1", "--tie-weights", "--ar", "2", "--tar", "1"]
    assert cli.main(["train", "--out", str(out), *common, *flags]) == 0
    model = json.loads((out / "last" / "config.json").read_text())["model"]
    assert {k: model[k] for k in ("layer_norm", "weight_dropout", "input_dropout", "hidden_dropout", "output_dropout",
                                  "embed_dropout", "tie_weights", "activation_reg", "temporal_reg")} == {
        "layer_norm": True, "weight_dropout": 0.2, "input_dropout": 0.1, "hidden_dropout": 0.2, "output_dropout": 0.3,
        "embed_dropout": 0.1, "tie_weights": True, "activation_reg": 2.0, "temporal_reg": 1.0}
    assert cli.main(["train", "--resume", str(out), "--epochs", "3", "--no-progress"]) == 0
    assert cli.main(["generate", str(out), "--num-chars", "20"]) == 0
    capsys.readouterr()
    refused = ["train", "--out", str(tmp_path / "refused"), *common]
    for bad, message in ((["--tie-weights"], "--tie-weights needs a learned embedding (--embedding learned)"),
                         (["--layer-norm"], "--layer-norm is for the gru and lstm cells, not the rnn cell")):
        assert cli.main([*refused, *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    with pytest.raises(SystemExit) as exit_status:
        cli.main([*refused, "--cell", "lstm", "--ar", "-1"])
    assert exit_status.value.code == 2 and "--ar: must be a number >= 0" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
