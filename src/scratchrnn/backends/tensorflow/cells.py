"""The book's recurrent layers in TensorFlow as chapters 8.5, 9.1 and 9.2 write them: ``tf.matmul``
for every product, ``tf.sigmoid`` and ``tf.tanh`` for the gates, a Python loop over time steps,
``tf.GradientTape`` for the gradients (in the backend).

Each function takes a layer's inputs as a list of (batch, input) steps (``tf.unstack``: when traced in
a ``tf.function`` the loop is unrolled, the number of steps being fixed), its state and its weights
under the book's names, and returns every step's H and the state after the last step: ``rnn`` is the
chapter's ``rnn``, ``gru`` and ``lstm`` the book's, each with the output layer moved out, since a deep
model (9.3) reads only its last layer. ``backends.stacking`` stacks them, with dropout, and ends in
the output layer, for this framework and the others alike. The NumPy backend computes the same numbers
with a hand-written backward pass; the contract tests hold the two together.
"""
from __future__ import annotations

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


#: the layer function of each cell, for ``backends.stacking``
CELL_FUNCTIONS = {"rnn": rnn, "gru": gru, "lstm": lstm}
