"""The book's models in PaddlePaddle as chapters 9.1-9.3 write them, in dygraph: a Python loop over
time steps, ``paddle.matmul`` for every product, ``F.sigmoid`` and ``paddle.tanh`` for the gates,
``loss.backward()`` for the gradients (in the backend).

Each cell function takes a layer's inputs as a sequence of (batch, input) steps, its state and its
weights under the book's names, and returns every step's H and the state after the last step: ``gru``
and ``lstm`` are the book's functions with the output layer moved out, since a deep model (9.3) reads
only its last layer. ``deep_model`` stacks them, multiplies each layer's output by the dropout mask it
is given, and ends in the output layer. The NumPy backend computes the same numbers with a
hand-written backward pass; the contract tests hold the two together.
"""
from __future__ import annotations

from ...cells import layer_prefix
from .framework import F, paddle


def rnn(inputs, state, w, activation: str = "tanh"):
    act = paddle.tanh if activation == "tanh" else F.relu
    H, = state
    outputs = []
    for X in inputs:
        H = act(paddle.matmul(X, w["W_xh"]) + paddle.matmul(H, w["W_hh"]) + w["b_h"])
        outputs.append(H)
    return outputs, (H,)


def gru(inputs, state, w, activation: str = "tanh"):
    H, = state
    outputs = []
    for X in inputs:
        Z = F.sigmoid(paddle.matmul(X, w["W_xz"]) + paddle.matmul(H, w["W_hz"]) + w["b_z"])
        R = F.sigmoid(paddle.matmul(X, w["W_xr"]) + paddle.matmul(H, w["W_hr"]) + w["b_r"])
        H_tilda = paddle.tanh(paddle.matmul(X, w["W_xh"]) + paddle.matmul(R * H, w["W_hh"]) + w["b_h"])
        H = Z * H + (1 - Z) * H_tilda
        outputs.append(H)
    return outputs, (H,)


def lstm(inputs, state, w, activation: str = "tanh"):
    H, C = state
    outputs = []
    for X in inputs:
        I = F.sigmoid(paddle.matmul(X, w["W_xi"]) + paddle.matmul(H, w["W_hi"]) + w["b_i"])
        F_ = F.sigmoid(paddle.matmul(X, w["W_xf"]) + paddle.matmul(H, w["W_hf"]) + w["b_f"])
        O = F.sigmoid(paddle.matmul(X, w["W_xo"]) + paddle.matmul(H, w["W_ho"]) + w["b_o"])
        C_tilda = paddle.tanh(paddle.matmul(X, w["W_xc"]) + paddle.matmul(H, w["W_hc"]) + w["b_c"])
        C = F_ * C + I * C_tilda
        H = O * paddle.tanh(C)
        outputs.append(H)
    return outputs, (H, C)


CELL_FUNCTIONS = {"rnn": rnn, "gru": gru, "lstm": lstm}
STATE_SIZES = {"rnn": 1, "gru": 1, "lstm": 2}


def deep_model(inputs, state: tuple, weights: dict, config, masks=None):
    """Logits (steps * batch, vocab), time-major, and the flat state after the last step.

    ``inputs`` (steps, batch, input): one-hot vectors or embeddings. ``state`` is flat, each layer's
    tensors in turn (layer 0 first). ``masks`` (one (steps, batch, hidden) tensor per layer, or None:
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
        # unbind splits the steps in one op (see PaddleBackend._rnn)
        outputs, final = cell(paddle.unbind(layer_inputs, axis=0),
                              tuple(state[layer * width:(layer + 1) * width]), w, config.activation)
        new_state.extend(final)
        layer_inputs = paddle.stack(outputs)
        if masks is not None:
            layer_inputs = layer_inputs * masks[layer]
    H = layer_inputs.reshape([-1, config.num_hiddens])
    return paddle.matmul(H, weights["W_hq"]) + weights["b_q"], tuple(new_state)
