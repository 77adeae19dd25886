"""The book's recurrent layers in PaddlePaddle as chapters 8.5, 9.1 and 9.2 write them, in dygraph: a
Python loop over time steps, ``paddle.matmul`` for every product, ``F.sigmoid`` and ``paddle.tanh``
for the gates, ``loss.backward()`` for the gradients (in the backend).

Each function takes a layer's inputs as a sequence of (batch, input) steps (``paddle.unbind``), its
state and its weights under the book's names, and returns every step's H and the state after the last
step: ``rnn`` is the chapter's ``rnn``, ``gru`` and ``lstm`` the book's, each with the output layer
moved out, since a deep model (9.3) reads only its last layer. ``backends.stacking`` stacks them, with
dropout, and ends in the output layer, for this framework and the others alike. The NumPy backend
computes the same numbers with a hand-written backward pass; the contract tests hold the two together.
"""
from __future__ import annotations

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


#: the layer function of each cell, for ``backends.stacking``
CELL_FUNCTIONS = {"rnn": rnn, "gru": gru, "lstm": lstm}
