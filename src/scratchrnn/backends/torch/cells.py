"""The book's models in PyTorch as chapters 9.1-9.3 write them: a Python loop over time steps,
``@`` for every product, autograd for the gradients.

Each cell function takes a layer's inputs (steps, batch, input), its state and its weights under the
book's names, and returns every step's H and the state after the last step: ``gru`` and ``lstm`` are
the book's ``gru`` and ``lstm`` functions with the output layer moved out (a deep model reads only its
last layer). ``deep_model`` stacks them, applies the dropout masks it is given to each layer's output,
and ends in the output layer. The NumPy backend (``scratchrnn.cells``) computes the same numbers with
the backward pass written by hand; the tests hold the two together.
"""
from __future__ import annotations

import torch

from ...cells import layer_prefix


def rnn(inputs, state, w, activation: str = "tanh"):
    act = torch.tanh if activation == "tanh" else torch.relu
    H, = state
    outputs = []
    for X in inputs:
        H = act(X @ w["W_xh"] + H @ w["W_hh"] + w["b_h"])
        outputs.append(H)
    return outputs, (H,)


def gru(inputs, state, w, activation: str = "tanh"):
    H, = state
    outputs = []
    for X in inputs:
        Z = torch.sigmoid(X @ w["W_xz"] + H @ w["W_hz"] + w["b_z"])
        R = torch.sigmoid(X @ w["W_xr"] + H @ w["W_hr"] + w["b_r"])
        H_tilda = torch.tanh(X @ w["W_xh"] + (R * H) @ w["W_hh"] + w["b_h"])
        H = Z * H + (1 - Z) * H_tilda
        outputs.append(H)
    return outputs, (H,)


def lstm(inputs, state, w, activation: str = "tanh"):
    H, C = state
    outputs = []
    for X in inputs:
        I = torch.sigmoid(X @ w["W_xi"] + H @ w["W_hi"] + w["b_i"])
        F = torch.sigmoid(X @ w["W_xf"] + H @ w["W_hf"] + w["b_f"])
        O = torch.sigmoid(X @ w["W_xo"] + H @ w["W_ho"] + w["b_o"])
        C_tilda = torch.tanh(X @ w["W_xc"] + H @ w["W_hc"] + w["b_c"])
        C = F * C + I * C_tilda
        H = O * torch.tanh(C)
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
        outputs, final = cell(layer_inputs, tuple(state[layer * width:(layer + 1) * width]), w,
                              config.activation)
        new_state.extend(final)
        layer_inputs = torch.stack(outputs)
        if masks is not None:
            layer_inputs = layer_inputs * masks[layer]
    H = layer_inputs.reshape(-1, config.num_hiddens)
    return H @ weights["W_hq"] + weights["b_q"], tuple(new_state)
