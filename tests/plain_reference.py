"""An independent reference for the NumPy backend: the book's formulas transcribed plainly, step by step
and sample by sample, sharing no code with scratchrnn beyond the parameter names.

The NumPy backend is the reference every other backend is tested against, so it cannot be tested
against itself: its loss is held to ``plain_loss`` here (the chapter's mean cross-entropy over the
book's RNN, GRU and LSTM equations, 8.5, 9.1-9.3, inverted dropout as documented), its gradients to
central finite differences of that loss, its optimizers to the update rules as torch.optim documents
them, and held-out perplexity to ``plain_heldout_perplexity`` (every row of the text read in one
pass, the state carried from its first token to its last).
"""
from __future__ import annotations

import math

import numpy as np


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _names(layer: int) -> str:
    return "" if layer == 0 else f"l{layer}."


def _layer_step(cell: str, activation: str, p: dict, pre: str, x: np.ndarray, state: tuple) -> tuple:
    """One time step of one layer for a single sample: (its output h, its new state)."""
    if cell == "rnn":
        (h,) = state
        z = x @ p[pre + "W_xh"] + h @ p[pre + "W_hh"] + p[pre + "b_h"]
        h = np.tanh(z) if activation == "tanh" else np.maximum(z, 0.0)
        return h, (h,)
    if cell == "gru":
        (h,) = state
        update = _sigmoid(x @ p[pre + "W_xz"] + h @ p[pre + "W_hz"] + p[pre + "b_z"])
        reset = _sigmoid(x @ p[pre + "W_xr"] + h @ p[pre + "W_hr"] + p[pre + "b_r"])
        candidate = np.tanh(x @ p[pre + "W_xh"] + (reset * h) @ p[pre + "W_hh"] + p[pre + "b_h"])
        h = update * h + (1 - update) * candidate
        return h, (h,)
    h, c = state
    i = _sigmoid(x @ p[pre + "W_xi"] + h @ p[pre + "W_hi"] + p[pre + "b_i"])
    f = _sigmoid(x @ p[pre + "W_xf"] + h @ p[pre + "W_hf"] + p[pre + "b_f"])
    o = _sigmoid(x @ p[pre + "W_xo"] + h @ p[pre + "W_ho"] + p[pre + "b_o"])
    c_tilde = np.tanh(x @ p[pre + "W_xc"] + h @ p[pre + "W_hc"] + p[pre + "b_c"])
    c = f * c + i * c_tilde
    h = o * np.tanh(c)
    return h, (h, c)


def plain_masks(config, batch: int, steps: int, seed: int = 0) -> list[np.ndarray] | None:
    """The dropout masks as documented (backends/dropout.py, cells.dropout_mask): a generator seeded
    [seed, 0x0D0], one (steps, batch, hidden) draw of uniform numbers per layer, layer 0 first, a unit
    kept where its number is at least the rate and scaled by 1 / (1 - rate)."""
    if not config.dropout:
        return None
    rng = np.random.default_rng([seed, 0x0D0])
    rate = config.dropout
    return [np.where(rng.random((steps, batch, config.num_hiddens)) >= rate, 1.0 / (1.0 - rate), 0.0)
            for _ in range(config.num_layers)]


def plain_forward(params: dict, config, X: np.ndarray, state=None, masks=None):
    """Logits (batch, steps, vocab) of the (batch, steps) tokens ``X`` and the final state per layer,
    one sample and one step at a time. ``state``: a list per layer of the state tensors (batch,
    hidden); zeros when None."""
    if getattr(config, "layer_norm", False):
        raise ValueError("the plain transcription has the book's cells only; test_regularization.py writes "
                         "the layer-normalised ones")
    p = {name: np.asarray(value, dtype=np.float64) for name, value in params.items()}
    batch, steps = X.shape
    width = 2 if config.cell == "lstm" else 1
    if state is None:
        state = [[np.zeros((batch, config.num_hiddens)) for _ in range(width)] for _ in range(config.num_layers)]
    state = [[np.array(s, dtype=np.float64) for s in layer] for layer in state]
    logits = np.zeros((batch, steps, config.vocab_size))
    for b in range(batch):
        for t in range(steps):
            token = int(X[b, t])
            if config.embedding == "onehot":
                x = np.zeros(config.vocab_size)
                x[token] = 1.0
            else:
                x = p["W_emb"][token]
            for layer in range(config.num_layers):
                x, new = _layer_step(config.cell, config.activation, p, _names(layer),
                                     x, tuple(s[b] for s in state[layer]))
                for s, value in zip(state[layer], new):
                    s[b] = value
                if masks is not None:
                    x = x * masks[layer][t, b]
            if getattr(config, "tie_weights", False):
                # tied (Press and Wolf): the output layer reads the embedding, through W_proj where the
                # hidden and embedding widths differ
                if "W_proj" in p:
                    x = x @ p["W_proj"]
                logits[b, t] = p["W_emb"] @ x + p["b_q"]
            else:
                logits[b, t] = x @ p["W_hq"] + p["b_q"]
    return logits, state


def mean_cross_entropy(logits: np.ndarray, Y: np.ndarray) -> float:
    """The chapter's loss: the mean over every predicted token of -log softmax(logits)[target]."""
    total = 0.0
    for row, target in zip(logits.reshape(-1, logits.shape[-1]), np.asarray(Y).reshape(-1)):
        shifted = row - row.max()
        total -= shifted[int(target)] - math.log(np.exp(shifted).sum())
    return total / Y.size


def plain_loss(params, config, X, Y, state=None, masks=None) -> float:
    return mean_cross_entropy(plain_forward(params, config, X, state, masks)[0], Y)


def finite_difference_gradients(loss, params: dict, eps: float = 1e-6, entries: int | None = None,
                                seed: int = 0) -> dict[str, dict[tuple, float]]:
    """Central differences of ``loss(params)`` for every entry of every parameter (or ``entries``
    chosen at random per parameter): name -> {index: derivative}."""
    rng = np.random.default_rng(seed)
    found = {}
    for name, value in params.items():
        indices = list(np.ndindex(value.shape))
        if entries is not None and len(indices) > entries:
            indices = [indices[i] for i in rng.choice(len(indices), entries, replace=False)]
        found[name] = {}
        for index in indices:
            plus = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
            minus = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            found[name][index] = (loss(plus) - loss(minus)) / (2 * eps)
    return found


def plain_heldout_perplexity(params, config, corpus, batch_size: int) -> float:
    """Perplexity of held-out text as the chapter scores it: the text cut into ``batch_size`` rows of
    consecutive tokens, each row read from its first token to its last in one pass (the state carried
    the whole way), every token after the first predicted."""
    corpus = np.asarray(corpus, dtype=np.int64)
    rows = (len(corpus) - 1) // batch_size
    X = corpus[:rows * batch_size].reshape(batch_size, rows)
    Y = corpus[1:rows * batch_size + 1].reshape(batch_size, rows)
    return math.exp(plain_loss(params, config, X, Y))


class PlainOptimizer:
    """The update rules as torch.optim documents them, one step at a time over a dict of parameters
    (defaults: momentum 0.9; rmsprop alpha 0.99, eps 1e-8; adagrad eps 1e-10; adam and adamw betas
    (0.9, 0.999), eps 1e-8). ``weight_decay`` adds decay * param to the gradient, except adamw's, which
    shrinks the weights by lr * decay before its step."""

    def __init__(self, rule: str, lr: float, weight_decay: float = 0.0):
        if rule not in ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw"):
            raise ValueError(rule)
        self.rule, self.lr, self.weight_decay = rule, lr, weight_decay
        self.t = 0
        self.buffer, self.square, self.first, self.second = {}, {}, {}, {}

    def step(self, params: dict, grads: dict) -> dict:
        """The parameters after one step (float64), from the gradients of this step."""
        self.t += 1
        return {name: self._one(name, np.array(p, dtype=np.float64), np.array(grads[name], dtype=np.float64))
                for name, p in params.items()}

    def _one(self, name, p, g):
        lr, decay, t = self.lr, self.weight_decay, self.t
        zeros = np.zeros_like(p)
        if decay and self.rule != "adamw":
            g = g + decay * p
        if self.rule == "sgd":
            return p - lr * g
        if self.rule == "momentum":
            self.buffer[name] = g if t == 1 else 0.9 * self.buffer[name] + g
            return p - lr * self.buffer[name]
        if self.rule == "adagrad":
            self.square[name] = self.square.get(name, zeros) + g * g
            return p - lr * g / (np.sqrt(self.square[name]) + 1e-10)
        if self.rule == "rmsprop":
            self.square[name] = 0.99 * self.square.get(name, zeros) + 0.01 * g * g
            return p - lr * g / (np.sqrt(self.square[name]) + 1e-8)
        if self.rule == "adamw":
            p = p * (1 - lr * decay)
        self.first[name] = 0.9 * self.first.get(name, zeros) + 0.1 * g
        self.second[name] = 0.999 * self.second.get(name, zeros) + 0.001 * g * g
        corrected_first = self.first[name] / (1 - 0.9 ** t)
        corrected_second = self.second[name] / (1 - 0.999 ** t)
        return p - lr * corrected_first / (np.sqrt(corrected_second) + 1e-8)
