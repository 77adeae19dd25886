"""The chapter's cell (D2L 8.5): H_t = act(X_t W_xh + H_{t-1} W_hh + b_h), act tanh (or ReLU).

Its two step loops (``forward_steps``, ``backprop_steps``) are the reference the compiled ones are
tested against.
"""
from __future__ import annotations

import numpy as np

from .base import Cell, final_grads


def activate_(z: np.ndarray, activation: str) -> np.ndarray:
    """act(z), in place."""
    if activation == "tanh":
        return np.tanh(z, out=z)
    return np.maximum(z, 0, out=z)


def activation_grad(h: np.ndarray, activation: str) -> np.ndarray:
    """d act(z) / dz, written in terms of the output h = act(z) (a new array)."""
    if activation == "tanh":
        grad = np.multiply(h, h)
        return np.subtract(1, grad, out=grad)
    return (h > 0).astype(h.dtype)


def forward_steps(hs: np.ndarray, terms: np.ndarray, W_hh: np.ndarray, activation: str) -> None:
    """``hs[t + 1] = act(terms[t] + hs[t] @ W_hh)`` for every step, in place; hs[0] is the start.
    Each step writes into ``hs``, so the loop allocates nothing."""
    for t in range(terms.shape[0]):
        h = np.matmul(hs[t], W_hh, out=hs[t + 1])
        h += terms[t]
        activate_(h, activation)


def backprop_steps(hs: np.ndarray, W_hh_T: np.ndarray, dhs: np.ndarray | None, dh_last: np.ndarray | None,
                   activation: str, need_dh0: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The step loop of backpropagation through time: dL/dz_t for every step (z_t the activation's
    argument), and dL/dh_0 when ``need_dh0``.

    ``dhs`` (steps, batch, hidden) is the loss gradient reaching each state from its own output (None:
    nothing; otherwise used as scratch space); ``dh_last`` what reaches the last state from later
    minibatches (None: nothing).
    """
    num_steps, batch, hidden = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    dz = activation_grad(hs[1:], activation)        # becomes dL/dz_t step by step below
    carried = np.empty((batch, hidden), dtype=hs.dtype)     # dL/dh_t arriving from step t + 1
    for t in range(num_steps - 1, -1, -1):
        # dL/dh_t: from this step's output, plus from step t + 1 (or, at the last step, later batches)
        from_later = dh_last if t == num_steps - 1 else carried
        if dhs is None:
            dh = from_later
        else:
            dh = dhs[t]
            if from_later is not None:
                dh += from_later
        dz[t] *= dh
        if t > 0 or need_dh0:
            np.matmul(dz[t], W_hh_T, out=carried)
    return dz, carried if need_dh0 else None


class RNNCell(Cell):
    name = "rnn"
    gates = ("h",)
    state_names = ("H",)

    def forward(self, terms, state, weights, activation):
        cache = self.forward_loop(terms, state, weights, activation)
        hs = cache[0]
        return hs[1:], (hs[-1].copy(),), cache

    def forward_loop(self, terms, state, weights, activation):
        num_steps, batch, hidden = terms.shape
        hs = np.empty((num_steps + 1, batch, hidden), dtype=terms.dtype)
        hs[0] = state[0]
        forward_steps(hs, terms, weights.W_h, activation)
        return hs, activation

    def backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        hs, activation = cache
        hidden = hs.shape[2]
        dh_last = final_grads(d_final, 1)[0]
        if d_outputs is None and dh_last is None:       # nothing reaches this minibatch
            d_terms = np.zeros_like(hs[1:])
            return d_terms, {"W_hh": np.zeros_like(weights.W_h)}, (np.zeros_like(hs[0]),) if need_d_state0 else None
        dz, d_state0 = self.backward_loop(cache, weights, d_outputs, (dh_last,), need_d_state0)
        d_W_hh = hs[:-1].reshape(-1, hidden).T @ dz.reshape(-1, hidden)
        return dz, {"W_hh": d_W_hh}, d_state0

    def backward_loop(self, cache, weights, d_outputs, d_final, need_d_state0):
        hs, activation = cache
        W_hh_T = np.ascontiguousarray(weights.W_h.T)
        dz, dh0 = backprop_steps(hs, W_hh_T, d_outputs, final_grads(d_final, 1)[0], activation, need_d_state0)
        return dz, (dh0,) if need_d_state0 else None
