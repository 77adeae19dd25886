"""The book's models in TensorFlow as chapters 9.1-9.3 write them: ``tf.matmul`` for every product,
``tf.sigmoid`` and ``tf.tanh`` for the gates, a Python loop over time steps, ``tf.GradientTape`` for
the gradients (in the backend).

Each cell function takes a layer's inputs as a list of steps (``tf.unstack``: when traced in a
``tf.function`` the loop is unrolled, the number of steps being fixed), its state and its weights under
the book's names, and returns every step's H and the state after the last step: ``gru`` and ``lstm``
are the book's functions with the output layer moved out, since a deep model (9.3) reads only its last
layer. ``deep_model`` stacks them, multiplies each layer's output by the dropout mask it is given, and
ends in the output layer. The NumPy backend computes the same numbers with a hand-written backward
pass; the contract tests hold the two together.
"""
from __future__ import annotations

from ...cells import layer_prefix
from .framework import tf


def rnn(inputs, state, w, activation: str = "tanh"):
    act = tf.tanh if activation == "tanh" else tf.nn.relu
    H, = state
    outputs = []
    for X in inputs:
        H = act(tf.matmul(X, w["W_xh"]) + tf.matmul(H, w["W_hh"]) + w["b_h"])
        outputs.append(H)
    return outputs, (H,)


def gru(inputs, state, w, activation: str = "tanh"):
    H, = state
    outputs = []
    for X in inputs:
        Z = tf.sigmoid(tf.matmul(X, w["W_xz"]) + tf.matmul(H, w["W_hz"]) + w["b_z"])
        R = tf.sigmoid(tf.matmul(X, w["W_xr"]) + tf.matmul(H, w["W_hr"]) + w["b_r"])
        H_tilda = tf.tanh(tf.matmul(X, w["W_xh"]) + tf.matmul(R * H, w["W_hh"]) + w["b_h"])
        H = Z * H + (1 - Z) * H_tilda
        outputs.append(H)
    return outputs, (H,)


def lstm(inputs, state, w, activation: str = "tanh"):
    H, C = state
    outputs = []
    for X in inputs:
        I = tf.sigmoid(tf.matmul(X, w["W_xi"]) + tf.matmul(H, w["W_hi"]) + w["b_i"])
        F = tf.sigmoid(tf.matmul(X, w["W_xf"]) + tf.matmul(H, w["W_hf"]) + w["b_f"])
        O = tf.sigmoid(tf.matmul(X, w["W_xo"]) + tf.matmul(H, w["W_ho"]) + w["b_o"])
        C_tilda = tf.tanh(tf.matmul(X, w["W_xc"]) + tf.matmul(H, w["W_hc"]) + w["b_c"])
        C = F * C + I * C_tilda
        H = O * tf.tanh(C)
        outputs.append(H)
    return outputs, (H, C)


CELL_FUNCTIONS = {"rnn": rnn, "gru": gru, "lstm": lstm}
STATE_SIZES = {"rnn": 1, "gru": 1, "lstm": 2}


def layer_weights(weights: dict, layer: int) -> dict:
    """One layer's weights under the cell's plain names (``l1.W_xz`` -> ``W_xz``)."""
    prefix = layer_prefix(layer)
    return {name[len(prefix):]: value for name, value in weights.items()
            if name.startswith(prefix) and "." not in name[len(prefix):]}


def deep_layers(inputs, state: tuple, weights: dict, config, masks=None):
    """Every layer in turn: the last layer's outputs (a list of (batch, hidden) steps, dropout applied)
    and the flat state after the last step (each layer's tensors in turn, layer 0 first)."""
    cell = CELL_FUNCTIONS[config.cell]
    width = STATE_SIZES[config.cell]
    new_state = []
    layer_inputs = tf.unstack(inputs)
    for layer in range(config.num_layers):
        outputs, final = cell(layer_inputs, tuple(state[layer * width:(layer + 1) * width]),
                              layer_weights(weights, layer), config.activation)
        new_state.extend(final)
        if masks is not None:
            # inverted dropout on what the layer above (or the output layer) reads
            outputs = [H * mask for H, mask in zip(outputs, tf.unstack(masks[layer]))]
        layer_inputs = outputs
    return layer_inputs, tuple(new_state)


def deep_model(inputs, state: tuple, weights: dict, config, masks=None):
    """Logits (steps * batch, vocab), time-major, and the flat state after the last step.

    ``inputs`` (steps, batch, input): one-hot vectors or embeddings. ``masks`` (one (steps, batch,
    hidden) tensor per layer, or None: no dropout) multiply each layer's output.
    """
    outputs, new_state = deep_layers(inputs, state, weights, config, masks)
    H = tf.concat(outputs, axis=0)
    return tf.matmul(H, weights["W_hq"]) + weights["b_q"], new_state
