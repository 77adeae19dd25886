"""The analysis functions (``scratchrnn.analysis``): states and gates against a plain transcription of the
book's equations, every gradient against finite differences in float64 and against PyTorch's autograd,
and the feature scores against values worked out by hand."""
import itertools
import json

import numpy as np
import pytest

from scratchrnn.analysis import (ReferenceModel, analyze, as_tokens, auc, average_ranks, gate_saturation,
                                 layer_series, pearson, prediction_gradients, predictions, text_features,
                                 training_curves, unit_search)
from scratchrnn.analysis.features import Feature
from scratchrnn.model import ModelConfig

CONFIGS = [
    ModelConfig(vocab_size=7, num_hiddens=5, cell="rnn"),
    ModelConfig(vocab_size=7, num_hiddens=5, cell="rnn", activation="relu", embedding="learned", embed_dim=3),
    ModelConfig(vocab_size=7, num_hiddens=5, cell="gru", num_layers=2),
    ModelConfig(vocab_size=7, num_hiddens=4, cell="lstm", num_layers=2, embedding="learned", embed_dim=3),
    ModelConfig(vocab_size=6, num_hiddens=4, cell="lstm"),
]
IDS = [1, 3, 2, 5, 4, 1, 6 % 6 + 1, 2]


def _params(config, seed=0):
    """Weights large enough that the gradients are far from zero (the book's 0.01 makes them tiny)."""
    rng = np.random.default_rng(seed)
    return {name: rng.normal(0, 0.6, shape) for name, shape in config.param_shapes().items()}


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _plain_forward(params, config, inputs, nudge=None):
    """The book's equations one step at a time, on input vectors (steps, input): each layer's states
    and gates by name, and the logits. ``nudge=(layer, step, unit, delta)`` adds delta to that layer's
    H after that step, before anything reads it."""
    p, hidden = params, config.num_hiddens
    x_seq, layers = list(inputs), []
    for layer in range(config.num_layers):
        w = {plain: p[full] for plain, full in config.layer_param_names(layer).items()}
        H, C = np.zeros(hidden), np.zeros(hidden)
        record = {}
        outputs = []
        for t, x in enumerate(x_seq):
            if config.cell == "rnn":
                z = x @ w["W_xh"] + H @ w["W_hh"] + w["b_h"]
                H = np.tanh(z) if config.activation == "tanh" else np.maximum(z, 0)
            elif config.cell == "gru":
                Z = _sigmoid(x @ w["W_xz"] + H @ w["W_hz"] + w["b_z"])
                R = _sigmoid(x @ w["W_xr"] + H @ w["W_hr"] + w["b_r"])
                cand = np.tanh(x @ w["W_xh"] + (R * H) @ w["W_hh"] + w["b_h"])
                H = Z * H + (1 - Z) * cand
                for name, value in (("z", Z), ("r", R), ("h", cand)):
                    record.setdefault(name, []).append(value)
            else:
                I = _sigmoid(x @ w["W_xi"] + H @ w["W_hi"] + w["b_i"])
                F = _sigmoid(x @ w["W_xf"] + H @ w["W_hf"] + w["b_f"])
                O = _sigmoid(x @ w["W_xo"] + H @ w["W_ho"] + w["b_o"])
                cand = np.tanh(x @ w["W_xc"] + H @ w["W_hc"] + w["b_c"])
                C = F * C + I * cand
                H = O * np.tanh(C)
                for name, value in (("i", I), ("f", F), ("o", O), ("c", cand), ("C", C)):
                    record.setdefault(name, []).append(value)
            if nudge is not None and nudge[:2] == (layer, t):
                H = H.copy()
                H[nudge[2]] += nudge[3]
            outputs.append(H)
        record["H"] = outputs
        layers.append({name: np.array(values) for name, values in record.items()})
        x_seq = outputs
    logits = np.array(x_seq) @ p["W_hq"] + p["b_q"]
    return layers, logits


def _log_prob(logits, t, target):
    row = logits[t]
    return row[target] - row.max() - np.log(np.exp(row - row.max()).sum())


def _inputs(params, config, ids):
    return np.eye(config.vocab_size)[ids] if config.embedding == "onehot" else params["W_emb"][ids]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.cell}-{c.num_layers}-{c.embedding}")
def test_states_gates_and_predictions_match_the_books_equations(config):
    params = _params(config)
    model = ReferenceModel(params, config)
    trace = model.run(as_tokens(IDS))
    plain_layers, plain_logits = _plain_forward(params, config, _inputs(params, config, IDS))
    for ours, theirs in zip(layer_series(config, trace), plain_layers):
        assert set(ours) == set(theirs)
        for name in ours:
            np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-12, atol=1e-12)
    pred = predictions(trace, top_k=3)
    log_probs = plain_logits - np.log(np.exp(plain_logits).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(pred.surprise, [-log_probs[t, IDS[t + 1]] for t in range(len(IDS) - 1)], rtol=1e-12)
    for t in range(len(IDS)):
        expected = sorted(range(config.vocab_size), key=lambda v: -log_probs[t, v])[:3]
        assert pred.top_ids[t].tolist() == expected
        np.testing.assert_allclose(pred.top_probs[t], np.exp(log_probs[t, expected]), rtol=1e-12)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.cell}-{c.num_layers}-{c.embedding}")
def test_input_saliency_is_the_norm_of_the_finite_difference_gradient(config):
    params = _params(config, seed=1)
    model = ReferenceModel(params, config)
    positions = [0, 3, len(IDS) - 1]
    grads = prediction_gradients(model, IDS, positions)
    inputs = _inputs(params, config, IDS)
    eps = 1e-6
    for row, t in enumerate(positions):
        target = grads.targets[row]
        likeliest = int(np.argmax(_plain_forward(params, config, inputs)[1][t]))
        expected_target = IDS[t + 1] if t + 1 < len(IDS) else likeliest
        assert target == expected_target
        for s in range(len(IDS)):
            numeric = np.zeros(inputs.shape[1])
            for k in range(inputs.shape[1]):
                up, down = inputs.copy(), inputs.copy()
                up[s, k] += eps
                down[s, k] -= eps
                numeric[k] = (_log_prob(_plain_forward(params, config, up)[1], t, target)
                              - _log_prob(_plain_forward(params, config, down)[1], t, target)) / (2 * eps)
            assert grads.inputs[row, s] == pytest.approx(np.linalg.norm(numeric), rel=1e-6, abs=1e-9)
            if s > t:
                assert grads.inputs[row, s] == 0       # a later input cannot drive an earlier prediction


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.cell}-{c.num_layers}-{c.embedding}")
def test_the_gradient_through_time_is_the_finite_difference_gradient_of_each_state(config):
    params = _params(config, seed=2)
    model = ReferenceModel(params, config)
    t = len(IDS) - 2
    grads = prediction_gradients(model, IDS, [t])
    inputs = _inputs(params, config, IDS)
    eps = 1e-6
    target = IDS[t + 1]
    for layer, s in itertools.product(range(config.num_layers), range(len(IDS))):
        numeric = np.zeros(config.num_hiddens)
        for unit in range(config.num_hiddens):
            up = _plain_forward(params, config, inputs, (layer, s, unit, eps))[1]
            down = _plain_forward(params, config, inputs, (layer, s, unit, -eps))[1]
            numeric[unit] = (_log_prob(up, t, target) - _log_prob(down, t, target)) / (2 * eps)
        assert grads.states[layer][0, s] == pytest.approx(np.linalg.norm(numeric), rel=1e-6, abs=1e-9), (layer, s)


def test_many_positions_at_once_equal_one_at_a_time(monkeypatch):
    from scratchrnn.analysis import gradients

    config = CONFIGS[3]
    model = ReferenceModel(_params(config), config)
    together = prediction_gradients(model, IDS, range(len(IDS)))
    monkeypatch.setattr(gradients, "TARGETS_PER_PASS", 3)      # passes of 3, 3 and 2 positions
    in_passes = prediction_gradients(model, IDS, range(len(IDS)))
    for t in range(len(IDS)):
        alone = prediction_gradients(model, IDS, [t], targets=[together.targets[t]])
        np.testing.assert_allclose(alone.inputs[0], together.inputs[t], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(in_passes.inputs[t], together.inputs[t], rtol=1e-12, atol=1e-15)
        for layer in range(config.num_layers):
            np.testing.assert_allclose(alone.states[layer][0], together.states[layer][t], rtol=1e-12, atol=1e-15)


def test_prediction_gradients_refuse_positions_and_targets_out_of_range():
    config = CONFIGS[0]
    model = ReferenceModel(_params(config), config)
    with pytest.raises(ValueError, match="positions"):
        prediction_gradients(model, IDS, [len(IDS)])
    with pytest.raises(ValueError, match="targets"):
        prediction_gradients(model, IDS, [1], targets=[config.vocab_size])
    with pytest.raises(ValueError, match="targets"):
        prediction_gradients(model, IDS, [1, 2], targets=[1])


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[2], CONFIGS[3]],
                         ids=lambda c: f"{c.cell}-{c.num_layers}-{c.embedding}")
def test_saliency_matches_pytorch_autograd_through_the_books_torch_code(config):
    """The torch backend's chapter implementation (the book's code, autograd), with the input vectors as
    the leaves autograd differentiates: the same norms as the hand-written BPTT."""
    torch = pytest.importorskip("torch")
    from scratchrnn import backends
    from scratchrnn.backends.torch import cells as torch_cells

    params = _params(config, seed=3)
    backend = backends.create("torch", params, config, dtype="float64", impl="chapter")
    X = np.array([IDS])
    if config.embedding == "onehot":
        leaf = torch.nn.functional.one_hot(torch.as_tensor(X.T), config.vocab_size).to(torch.float64)
    else:
        leaf = backend.params["W_emb"].detach()[torch.as_tensor(X.T)]
    leaf.requires_grad_(True)
    positions = list(range(len(IDS) - 1))
    ours = prediction_gradients(ReferenceModel(params, config), IDS, positions)
    for t in positions:
        leaf.grad = None
        logits, _ = torch_cells.deep_model(leaf, backend.begin_state(1), backend.params, config)
        torch.log_softmax(logits, dim=-1)[t, IDS[t + 1]].backward()
        autograd_norms = leaf.grad[:, 0].norm(dim=-1).numpy()
        np.testing.assert_allclose(ours.inputs[t], autograd_norms, rtol=1e-9, atol=1e-12)


# -- features ---------------------------------------------------------------------------------------------
def test_text_features_by_hand():
    text = 'ab "c d"\ne (f)'
    features = {f.name: f for f in text_features(text)}
    assert features["inside quotes"].values.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert features["inside parentheses"].values.tolist() == [0] * 11 + [1, 1, 0]
    assert features["position in line"].values.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4]
    assert features["after a newline"].values.tolist() == [0] * 9 + [1, 0, 0, 0, 0]
    assert features["inside a word"].values.tolist() == [1, 1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    assert features["position in word"].values.tolist() == [1, 2, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    assert features["inside quotes"].kind == "binary" and features["position in line"].kind == "numeric"
    # the chapter's cleaning leaves neither quotes nor line breaks: those features are left out
    assert {f.name for f in text_features("the time machine")} == {"inside a word", "position in word"}
    # all inside one word: only the position in it varies (an apostrophe inside a word belongs to it)
    assert [(f.name, f.values.tolist()) for f in text_features("don't")] == [("position in word", [1, 2, 3, 4, 5])]
    assert text_features("don't ")[0].values.tolist() == [1, 1, 1, 1, 1, 0]


def test_average_ranks_share_ties():
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])
    np.testing.assert_array_equal(average_ranks(np.array([[1.0, 5.0], [1.0, 4.0]])), [[1.5, 2], [1.5, 1]])


def test_auc_is_the_fraction_of_positive_negative_pairs_ranked_right():
    rng = np.random.default_rng(0)
    labels = rng.random(40) < 0.3
    scores = np.round(rng.normal(size=(40, 6)), 1)          # rounding makes ties
    scores[:, 0] = labels                                   # a unit that is the feature
    pairs = [(p, n) for p in np.flatnonzero(labels) for n in np.flatnonzero(~labels)]
    brute = [np.mean([1.0 if scores[p, u] > scores[n, u] else 0.5 if scores[p, u] == scores[n, u] else 0.0
                      for p, n in pairs]) for u in range(6)]
    np.testing.assert_allclose(auc(labels, scores), brute, rtol=1e-12)
    assert auc(labels, scores)[0] == 1.0 and auc(labels, -scores)[0] == 0.0
    with pytest.raises(ValueError, match="both classes"):
        auc(np.ones(4), scores[:4])


def test_pearson_matches_numpy_and_a_flat_unit_scores_zero():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    values = np.column_stack([2 * x + 1, -x, rng.normal(size=30), np.full(30, 0.25)])
    r = pearson(x, values)
    np.testing.assert_allclose(r[:3], [np.corrcoef(x, values[:, k])[0, 1] for k in range(3)], rtol=1e-12)
    assert r[0] == pytest.approx(1) and r[1] == pytest.approx(-1) and r[3] == 0


def test_unit_search_finds_the_unit_that_is_the_feature_in_either_direction():
    rng = np.random.default_rng(2)
    feature = Feature("f", "binary", "", (rng.random(50) < 0.4).astype(float))
    noise = rng.normal(size=(50, 8))
    layer0 = {"H": noise.copy(), "C": noise[:, ::-1].copy()}
    layer1 = {"H": noise * 0.1}
    layer1["H"][:, 5] = -feature.values + 0.01 * rng.normal(size=50)     # tracks it, inverted
    best = unit_search(feature, [layer0, layer1], top=3)
    assert (best[0].layer, best[0].series, best[0].unit) == (1, "H", 5)
    assert best[0].score == pytest.approx(0.0) and best[0].strength("binary") == pytest.approx(1.0)
    assert len(best) == 3 and best[1].strength("binary") <= best[0].strength("binary")
    numeric = Feature("g", "numeric", "", np.arange(50.0))
    layer0["C"][:, 2] = np.arange(50.0) * 3
    best = unit_search(numeric, [layer0], top=1)[0]
    assert (best.series, best.unit, best.score) == ("C", 2, pytest.approx(1))


def test_gate_saturation_by_hand():
    gate = np.array([[0.05, 0.5, 0.95], [0.02, 0.95, 0.5], [0.5, 0.92, 0.05], [0.09, 0.1, 0.9]])
    left, right = gate_saturation(gate)
    np.testing.assert_allclose(left, [0.75, 0.0, 0.25])
    np.testing.assert_allclose(right, [0.0, 0.5, 0.25])      # 0.9 itself is not above 0.9


def test_analyze_runs_everything_on_a_text():
    config = ModelConfig(vocab_size=6, num_hiddens=4, cell="lstm", num_layers=2)
    text = 'ab "a"\nba'
    chars = sorted(set(text))
    ids = [1 + chars.index(ch) for ch in text]
    result = analyze(ReferenceModel(_params(config), config), ids, text, top_k=2, top_units=3,
                     gradient_positions=[2, 5])
    assert [set(s) for s in result.series] == [{"H", "C", "i", "f", "o", "c"}] * 2
    assert [set(s) for s in result.saturation] == [{"i", "f", "o"}] * 2
    assert {f.name for f in result.features} >= {"inside quotes", "after a newline", "position in line"}
    assert all(len(m) == 3 for m in result.matches.values())
    assert result.predictions.top_ids.shape == (len(text), 2) and result.gradients.inputs.shape == (2, len(text))
    with pytest.raises(ValueError, match="one token per character"):
        analyze(ReferenceModel(_params(config), config), ids[:-1], text)


def test_training_curves_skip_torn_lines_and_values_that_are_not_numbers(tmp_path):
    lines = [json.dumps({"epoch": 1, "train_perplexity": 20.5, "val_perplexity": None, "lr": 1.0}),
             '{"epoch": 2, "train_perpl',                       # torn by a kill
             json.dumps({"epoch": 2, "train_perplexity": 15.0, "val_perplexity": 16.0, "lr": 0.5,
                         "tokens_per_sec": 1000}),
             json.dumps({"note": "no epoch"})]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    curves = training_curves(tmp_path)
    assert curves["epoch"] == [1, 2]
    assert curves["train_perplexity"] == [20.5, 15.0] and curves["val_perplexity"] == [None, 16.0]
    assert curves["tokens_per_sec"] == [None, 1000]
    assert training_curves(tmp_path / "nothing-here")["epoch"] == []
