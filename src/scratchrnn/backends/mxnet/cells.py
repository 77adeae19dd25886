"""The book's recurrent layers in MXNet as chapters 8.5, 9.1 and 9.2 write them, in MXNet's NumPy
idiom: a Python loop over time steps, ``np.dot`` for every product, ``npx.sigmoid`` and ``np.tanh``
for the gates, recorded under ``autograd.record()`` (in the backend).

Each function takes a layer's inputs as a sequence of (batch, input) steps, its state and its weights
under the book's names, and returns every step's H and the state after the last step: ``rnn`` is the
chapter's ``rnn``, ``gru`` and ``lstm`` the book's, each with the output layer moved out, since a deep
model (9.3) reads only its last layer. ``backends.stacking`` stacks them, with dropout, and ends in the
output layer, for this framework and the others alike. The NumPy backend computes the same numbers
with a hand-written backward pass; the contract tests hold the two together.
"""
from __future__ import annotations

from .framework import np, npx


def rnn(inputs, state, w, activation: str = "tanh"):
    # npx.relu: derivative 0 at z = 0, as the reference's (h > 0); np.maximum(z, 0) would give 1
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


#: the layer function of each cell, for ``backends.stacking``
CELL_FUNCTIONS = {"rnn": rnn, "gru": gru, "lstm": lstm}
