"""The book's recurrent layers in PyTorch as chapters 8.5, 9.1 and 9.2 write them: a Python loop over
time steps, ``@`` for every product, autograd for the gradients (in the backend).

Each function takes a layer's inputs as a sequence of (batch, input) steps, its state and its weights
under the book's names, and returns every step's H and the state after the last step: ``rnn`` is the
chapter's ``rnn``, ``gru`` and ``lstm`` the book's, each with the output layer moved out, since a deep
model (9.3) reads only its last layer. ``backends.stacking`` stacks them, with dropout, and ends in the
output layer, for this framework and the others alike. The NumPy backend (``scratchrnn.cells``)
computes the same numbers with the backward pass written by hand; the tests hold the two together.
"""
from __future__ import annotations

import torch


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


#: the layer function of each cell, for ``backends.stacking``
CELL_FUNCTIONS = {"rnn": rnn, "gru": gru, "lstm": lstm}
