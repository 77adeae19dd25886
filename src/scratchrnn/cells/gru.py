"""The gated recurrent unit (D2L 9.1):

    Z_t = sigmoid(X_t W_xz + H_{t-1} W_hz + b_z)            update gate
    R_t = sigmoid(X_t W_xr + H_{t-1} W_hr + b_r)            reset gate
    H~_t = tanh(X_t W_xh + (R_t * H_{t-1}) W_hh + b_h)      candidate state
    H_t = Z_t * H_{t-1} + (1 - Z_t) * H~_t

The input terms of all three arrive precomputed, side by side [z | r | h]; each step multiplies H_{t-1}
by [W_hz | W_hr] once for both gates, and R_t * H_{t-1} by W_hh for the candidate.

The step loops written here (``forward_steps``, ``backward_steps``) are the reference the compiled
ones are tested against.
"""
from __future__ import annotations

import numpy as np

from .base import Cell, CellWeights, final_grads, side_by_side, sigmoid_, zeros_if_none


class GRUCell(Cell):
    name = "gru"
    gates = ("z", "r", "h")
    state_names = ("H",)

    def prepare(self, params):
        return CellWeights(W_x=side_by_side(params, "W_x", self.gates), b=side_by_side(params, "b_", self.gates),
                           W_h=side_by_side(params, "W_h", ("z", "r")), W_hh=params["W_hh"])

    def forward(self, terms, state, weights, activation="tanh"):
        cache = self.forward_loop(terms, state, weights, activation)
        hs = cache[0]
        return hs[1:], (hs[-1].copy(),), cache

    def forward_loop(self, terms, state, weights, activation="tanh"):
        return self.forward_steps(terms, state, weights)

    @staticmethod
    def forward_steps(terms, state, weights):
        """The forward loop in NumPy: the cache ``(hs, zr, candidates, reset_h)``, hs holding the
        starting state and every state after it."""
        num_steps, batch, three_hidden = terms.shape
        hidden = three_hidden // 3
        dtype = terms.dtype
        hs = np.empty((num_steps + 1, batch, hidden), dtype=dtype)
        hs[0] = state[0]
        zr = np.empty((num_steps, batch, 2 * hidden), dtype=dtype)     # Z_t and R_t side by side
        candidates = np.empty((num_steps, batch, hidden), dtype=dtype)
        reset_h = np.empty((num_steps, batch, hidden), dtype=dtype)     # R_t * H_{t-1}
        for t in range(num_steps):
            h_prev = hs[t]
            gates = np.matmul(h_prev, weights.W_h, out=zr[t])
            gates += terms[t, :, :2 * hidden]
            sigmoid_(gates)
            z, r = gates[:, :hidden], gates[:, hidden:]
            np.multiply(r, h_prev, out=reset_h[t])
            candidate = np.matmul(reset_h[t], weights.W_hh, out=candidates[t])
            candidate += terms[t, :, 2 * hidden:]
            np.tanh(candidate, out=candidate)
            # H_t = Z H_{t-1} + (1 - Z) H~ = H~ + Z (H_{t-1} - H~)
            h = np.subtract(h_prev, candidate, out=hs[t + 1])
            h *= z
            h += candidate
        return hs, zr, candidates, reset_h

    def backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        hs, zr, candidates, reset_h = cache
        hidden = hs.shape[2]
        d_terms, d_state0 = self.backward_loop(cache, weights, d_outputs, d_final, need_d_state0)
        h_prev_flat = hs[:-1].reshape(-1, hidden)
        d_gates = d_terms[:, :, :2 * hidden].reshape(-1, 2 * hidden)
        d_W_h = h_prev_flat.T @ d_gates
        d_W_hh = reset_h.reshape(-1, hidden).T @ d_terms[:, :, 2 * hidden:].reshape(-1, hidden)
        recurrent = {"W_hz": d_W_h[:, :hidden], "W_hr": d_W_h[:, hidden:], "W_hh": d_W_hh}
        return d_terms, recurrent, d_state0

    def backward_loop(self, cache, weights, d_outputs, d_final, need_d_state0):
        d_terms, dh = self.backward_steps(cache, weights, d_outputs, final_grads(d_final, 1)[0], need_d_state0)
        return d_terms, (dh,) if need_d_state0 else None

    @staticmethod
    def backward_steps(cache, weights, d_outputs, d_h_final, need_d_state0):
        """The backward loop in NumPy: the gradient of the input terms, and dL/dH_0 (meaningful only
        when ``need_d_state0``). ``d_outputs`` may be overwritten."""
        hs, zr, candidates, _ = cache
        num_steps, batch, hidden = candidates.shape
        d_terms = np.empty((num_steps, batch, 3 * hidden), dtype=hs.dtype)
        W_h_T = np.ascontiguousarray(weights.W_h.T)     # (2 hidden, hidden)
        W_hh_T = np.ascontiguousarray(weights.W_hh.T)
        dh = zeros_if_none(d_h_final, hs[0])            # dL/dH_t arriving from later steps
        for t in range(num_steps - 1, -1, -1):
            if d_outputs is not None:
                dh += d_outputs[t]
            h_prev, candidate = hs[t], candidates[t]
            z, r = zr[t, :, :hidden], zr[t, :, hidden:]
            d_z, d_r, d_cand = (d_terms[t, :, k * hidden:(k + 1) * hidden] for k in range(3))
            # through H~: dL/d(pre-tanh) = dH (1 - Z) (1 - H~^2)
            np.multiply(dh, 1 - z, out=d_cand)
            d_cand *= 1 - candidate * candidate
            # through Z: dL/d(pre-sigmoid) = dH (H_{t-1} - H~) Z (1 - Z)
            np.subtract(h_prev, candidate, out=d_z)
            d_z *= dh
            d_z *= z * (1 - z)
            # through R: the candidate's product saw R * H_{t-1}
            d_reset_h = d_cand @ W_hh_T
            np.multiply(d_reset_h, h_prev, out=d_r)
            d_r *= r * (1 - r)
            if t > 0 or need_d_state0:
                # dL/dH_{t-1}: directly (Z H_{t-1}), through R * H_{t-1}, and through both gates
                dh *= z
                dh += d_reset_h * r
                dh += d_terms[t, :, :2 * hidden] @ W_h_T
        return d_terms, dh
