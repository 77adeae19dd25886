"""Long short-term memory (D2L 9.2):

    I_t = sigmoid(X_t W_xi + H_{t-1} W_hi + b_i)        input gate
    F_t = sigmoid(X_t W_xf + H_{t-1} W_hf + b_f)        forget gate
    O_t = sigmoid(X_t W_xo + H_{t-1} W_ho + b_o)        output gate
    C~_t = tanh(X_t W_xc + H_{t-1} W_hc + b_c)          candidate memory
    C_t = F_t * C_{t-1} + I_t * C~_t
    H_t = O_t * tanh(C_t)

The state is (H, C). All four pre-activations of a step come from one product of H_{t-1} with
[W_hi | W_hf | W_ho | W_hc], added to the precomputed input terms [i | f | o | c].

The step loops written here (``forward_steps``, ``backward_steps``) are the reference the compiled
ones are tested against.
"""
from __future__ import annotations

import numpy as np

from .base import Cell, final_grads, sigmoid_, zeros_if_none


class LSTMCell(Cell):
    name = "lstm"
    gates = ("i", "f", "o", "c")
    state_names = ("H", "C")

    def forward(self, terms, state, weights, activation="tanh"):
        cache = self.forward_loop(terms, state, weights, activation)
        hs, cs = cache[:2]
        return hs[1:], (hs[-1].copy(), cs[-1].copy()), cache

    def forward_loop(self, terms, state, weights, activation="tanh"):
        return self.forward_steps(terms, state, weights)

    @staticmethod
    def forward_steps(terms, state, weights):
        """The forward loop in NumPy: the cache ``(hs, cs, acts, tanh_cs)``, hs and cs holding the
        starting state and every state after it."""
        num_steps, batch, four_hidden = terms.shape
        hidden = four_hidden // 4
        dtype = terms.dtype
        hs = np.empty((num_steps + 1, batch, hidden), dtype=dtype)
        cs = np.empty((num_steps + 1, batch, hidden), dtype=dtype)
        hs[0], cs[0] = state
        acts = np.empty((num_steps, batch, four_hidden), dtype=dtype)  # I, F, O, C~ after activation
        tanh_cs = np.empty((num_steps, batch, hidden), dtype=dtype)
        for t in range(num_steps):
            gates = np.matmul(hs[t], weights.W_h, out=acts[t])
            gates += terms[t]
            sigmoid_(gates[:, :3 * hidden])
            np.tanh(gates[:, 3 * hidden:], out=gates[:, 3 * hidden:])
            i, f, o, candidate = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
            c = np.multiply(f, cs[t], out=cs[t + 1])
            c += i * candidate
            np.tanh(c, out=tanh_cs[t])
            np.multiply(o, tanh_cs[t], out=hs[t + 1])
        return hs, cs, acts, tanh_cs

    def backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        hs = cache[0]
        hidden = hs.shape[2]
        d_terms, d_state0 = self.backward_loop(cache, weights, d_outputs, d_final, need_d_state0)
        d_W_h = hs[:-1].reshape(-1, hidden).T @ d_terms.reshape(-1, 4 * hidden)
        recurrent = {f"W_h{g}": d_W_h[:, k * hidden:(k + 1) * hidden] for k, g in enumerate(self.gates)}
        return d_terms, recurrent, d_state0

    def backward_loop(self, cache, weights, d_outputs, d_final, need_d_state0):
        d_terms, dh, dc = self.backward_steps(cache, weights, d_outputs, *final_grads(d_final, 2), need_d_state0)
        return d_terms, (dh, dc) if need_d_state0 else None

    @staticmethod
    def backward_steps(cache, weights, d_outputs, d_h_final, d_c_final, need_d_state0):
        """The backward loop in NumPy: the gradient of the input terms, and dL/dH_0 and dL/dC_0
        (meaningful only when ``need_d_state0``). ``d_outputs`` may be overwritten."""
        hs, cs, acts, tanh_cs = cache
        num_steps, batch, hidden = tanh_cs.shape
        d_terms = np.empty_like(acts)
        W_h_T = np.ascontiguousarray(weights.W_h.T)     # (4 hidden, hidden)
        dh = zeros_if_none(d_h_final, hs[0])            # dL/dH_t and dL/dC_t arriving from later steps
        dc = zeros_if_none(d_c_final, cs[0])
        for t in range(num_steps - 1, -1, -1):
            if d_outputs is not None:
                dh += d_outputs[t]
            i, f, o, candidate = (acts[t, :, k * hidden:(k + 1) * hidden] for k in range(4))
            d_i, d_f, d_o, d_cand = (d_terms[t, :, k * hidden:(k + 1) * hidden] for k in range(4))
            tanh_c = tanh_cs[t]
            # H = O tanh(C): to O, and on to C (added to what reaches C from C_{t+1})
            np.multiply(dh, tanh_c, out=d_o)
            d_o *= o * (1 - o)
            dc += dh * o * (1 - tanh_c * tanh_c)
            # C = F C_{t-1} + I C~
            np.multiply(dc, candidate, out=d_i)
            d_i *= i * (1 - i)
            np.multiply(dc, cs[t], out=d_f)
            d_f *= f * (1 - f)
            np.multiply(dc, i, out=d_cand)
            d_cand *= 1 - candidate * candidate
            if t > 0 or need_d_state0:
                dc *= f
                np.matmul(d_terms[t], W_h_T, out=dh)
        return d_terms, dh, dc
