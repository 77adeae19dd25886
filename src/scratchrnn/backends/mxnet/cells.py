"""The book's models in MXNet as chapters 9.1-9.3 write them, in MXNet's NumPy idiom: a Python loop
over time steps, ``np.dot`` for every product, ``npx.sigmoid`` and ``np.tanh`` for the gates, recorded
under ``autograd.record()`` (in the backend).

Each cell function takes a layer's inputs (steps, batch, input), its state and its weights under the
book's names, and returns every step's H and the state after the last step: ``gru`` and ``lstm`` are
the book's functions with the output layer moved out, since a deep model (9.3) reads only its last
layer. ``deep_model`` stacks them, multiplies each layer's output by the dropout mask it is given, and
ends in the output layer. The NumPy backend computes the same numbers with a hand-written backward
pass; the contract tests hold the two together.
"""
from __future__ import annotations

from ...cells import layer_prefix
from .framework import np, npx, use_np


def rnn(inputs, state, w, activation: str = "tanh"):
    # npx.relu: derivative 0 at z = 0, as the reference's (see MXNetBackend)
    act = np.tanh if activation == "tanh" else npx.relu
    H, = state
    outputs = []
    for X in inputs:
        H = act(np.dot(X, w["W_xh"]) + np.dot(H, w["W_hh"]) + w["b_h"])
        outputs.append(H)
    return outputs, (H,)


def gru(inputs, state, w, activation: str = "tanh"):
    H, = state
    outputs = []
    for X in inputs:
        Z = npx.sigmoid(np.dot(X, w["W_xz"]) + np.dot(H, w["W_hz"]) + w["b_z"])
        R = npx.sigmoid(np.dot(X, w["W_xr"]) + np.dot(H, w["W_hr"]) + w["b_r"])
        H_tilda = np.tanh(np.dot(X, w["W_xh"]) + np.dot(R * H, w["W_hh"]) + w["b_h"])
        H = Z * H + (1 - Z) * H_tilda
        outputs.append(H)
    return outputs, (H,)


def lstm(inputs, state, w, activation: str = "tanh"):
    H, C = state
    outputs = []
    for X in inputs:
        I = npx.sigmoid(np.dot(X, w["W_xi"]) + np.dot(H, w["W_hi"]) + w["b_i"])
        F = npx.sigmoid(np.dot(X, w["W_xf"]) + np.dot(H, w["W_hf"]) + w["b_f"])
        O = npx.sigmoid(np.dot(X, w["W_xo"]) + np.dot(H, w["W_ho"]) + w["b_o"])
        C_tilda = np.tanh(np.dot(X, w["W_xc"]) + np.dot(H, w["W_hc"]) + w["b_c"])
        C = F * C + I * C_tilda
        H = O * np.tanh(C)
        outputs.append(H)
    return outputs, (H, C)


CELL_FUNCTIONS = {"rnn": rnn, "gru": gru, "lstm": lstm}
STATE_SIZES = {"rnn": 1, "gru": 1, "lstm": 2}


@use_np
def deep_model(inputs, state: tuple, weights: dict, config, masks=None):
    """Logits (steps * batch, vocab), time-major, and the flat state after the last step.

    ``inputs`` (steps, batch, input): one-hot vectors or embeddings. ``state`` is flat, each layer's
    tensors in turn (layer 0 first). ``masks`` (one (steps, batch, hidden) array per layer, or None:
    no dropout) multiply each layer's output, as the layer above and the output layer read it.
    """
    cell = CELL_FUNCTIONS[config.cell]
    width = STATE_SIZES[config.cell]
    new_state = []
    layer_inputs = inputs
    for layer in range(config.num_layers):
        prefix = layer_prefix(layer)
        w = {name[len(prefix):]: value for name, value in weights.items()
             if name.startswith(prefix) and "." not in name[len(prefix):]}
        outputs, final = cell(layer_inputs, tuple(state[layer * width:(layer + 1) * width]), w,
                              config.activation)
        new_state.extend(final)
        layer_inputs = np.stack(outputs)
        if masks is not None:
            layer_inputs = layer_inputs * masks[layer]
    H = layer_inputs.reshape(-1, config.num_hiddens)
    return np.dot(H, weights["W_hq"]) + weights["b_q"], tuple(new_state)
