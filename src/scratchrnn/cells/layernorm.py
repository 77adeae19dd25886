"""The layer-normalised LSTM and GRU (Ba, Kiros and Hinton, "Layer Normalization", 2016), in NumPy,
with backpropagation through them written by hand.

Layer normalisation rescales a vector of pre-activations to mean 0 and variance 1 over its units,
then gives each unit a learned gain:

    LN(a; g) = g * (a - mean(a)) / sqrt(var(a) + eps)

Each gate's pre-activation from the input and its pre-activation from the recurrence are normalised
apart, each over the hidden units of that gate, before they are added to the gate's bias; the LSTM's
cell is normalised too before the tanh that makes H (with a gain g_cell and a shift b_cell):

    I_t = sigmoid(LN(X_t W_xi; g_xi) + LN(H_{t-1} W_hi; g_hi) + b_i)       likewise F_t, O_t
    C~_t = tanh(LN(X_t W_xc; g_xc) + LN(H_{t-1} W_hc; g_hc) + b_c)
    C_t = F_t * C_{t-1} + I_t * C~_t
    H_t = O_t * tanh(LN(C_t; g_cell) + b_cell)

and for the GRU

    Z_t = sigmoid(LN(X_t W_xz; g_xz) + LN(H_{t-1} W_hz; g_hz) + b_z)       likewise R_t
    H~_t = tanh(LN(X_t W_xh; g_xh) + LN((R_t * H_{t-1}) W_hh; g_hh) + b_h)
    H_t = Z_t * H_{t-1} + (1 - Z_t) * H~_t

The paper gives each normalisation a shift of its own; added together before the gate's bias they
are one bias, so the gate's b_{g} is the only one kept. A normalised sum no longer depends on the
scale of the weights, which is what makes the gates' statistics steady from step to step.

The input terms reach ``forward`` as X_t W_x of every gate and step, WITHOUT the bias: the bias
comes after the normalisation, which would otherwise remove most of it. So the weights a cell
``prepare``s have a bias of zeros where the book's cells have theirs (the backends add it to the
input terms as for every cell, and it adds nothing), and the true bias and the gains in their own
fields; ``backward`` returns the gradients of those with the recurrent weights'. The compiled
library has no loop for these cells: they always run these NumPy loops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Cell, CellWeights, final_grads, side_by_side, sigmoid_, split_by_gate, zeros_if_none

EPS = 1e-5          # added to the variance before its square root, as PyTorch's LayerNorm does


def normalize(values: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Each of the ``groups`` equal blocks of the last axis at mean 0 and variance 1: the normalised
    values (the shape of ``values``) and 1 / sqrt(var + eps) of every block (..., groups, 1)."""
    shape = values.shape
    blocks = values.reshape(*shape[:-1], groups, -1)
    centered = blocks - blocks.mean(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(np.mean(centered * centered, axis=-1, keepdims=True) + EPS)
    centered *= inv_std
    return centered.reshape(shape), inv_std


def normalize_backward(d_normalized: np.ndarray, normalized: np.ndarray, inv_std: np.ndarray,
                       groups: int) -> np.ndarray:
    """The gradient of the values ``normalize`` saw, from that of its normalised values: per block,
    (d - mean(d) - x^ mean(d x^)) / sqrt(var + eps)."""
    shape = d_normalized.shape
    d = d_normalized.reshape(*shape[:-1], groups, -1)
    x_hat = normalized.reshape(d.shape)
    d_values = d - d.mean(axis=-1, keepdims=True) - x_hat * np.mean(d * x_hat, axis=-1, keepdims=True)
    d_values *= inv_std
    return d_values.reshape(shape)


def _sum_rows(values: np.ndarray) -> np.ndarray:
    """The sum over every axis but the last (steps and rows): a per-unit parameter's gradient."""
    return values.reshape(-1, values.shape[-1]).sum(axis=0)


@dataclass(frozen=True)
class LayerNormWeights(CellWeights):
    """A layer-normalised cell's weights: CellWeights' (with ``b`` zeros, see the module's docstring),
    the gates' biases side by side (``bias``), the gains of the normalised input terms (``gain_x``,
    every gate) and recurrent terms (``gain_h``: the gates of W_h; ``gain_hh``: the GRU's candidate),
    and the LSTM's cell normalisation's gain and shift."""

    bias: np.ndarray | None = None
    gain_x: np.ndarray | None = None
    gain_h: np.ndarray | None = None
    gain_hh: np.ndarray | None = None
    gain_cell: np.ndarray | None = None
    bias_cell: np.ndarray | None = None


class LayerNormCell(Cell):
    """What the two layer-normalised cells share: a gain per gate for the input terms and one for the
    recurrent terms, under the names g_x{g} and g_h{g}."""

    layer_norm = True

    def param_shapes(self, input_size, num_hiddens):
        shapes = super().param_shapes(input_size, num_hiddens)
        for g in self.gates:
            shapes[f"g_x{g}"] = (num_hiddens,)
            shapes[f"g_h{g}"] = (num_hiddens,)
        return shapes

    def input_grads(self, d_W_x, d_b):
        # the zeros the backend added to the input terms are no parameter: the biases' gradients come
        # from ``backward``, after the normalisation
        return split_by_gate(d_W_x, "W_x", self.gates)

    def forward(self, terms, state, weights, activation="tanh"):
        cache = self.forward_loop(terms, state, weights, activation)
        return cache[0][1:], tuple(s[-1].copy() for s in cache[:len(self.state_names)]), cache

    def backward_loop(self, cache, weights, d_outputs, d_final, need_d_state0):
        d_terms, _, d_state0 = self.backward(cache, weights, d_outputs, d_final, need_d_state0)
        return d_terms, d_state0

    def backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        return self.backward_steps(cache, weights, d_outputs, d_final, need_d_state0)

    def state_gradients(self, cache, weights, d_outputs) -> tuple[np.ndarray, np.ndarray]:
        """The gradient of the input terms, and dL/dH_t of every step's H as it flows back through
        the loop (its own output's and the later steps'): what ``analysis.gradients`` reads."""
        states = np.empty_like(cache[0][1:])
        d_terms, _, _ = self.backward_steps(cache, weights, d_outputs, None, False, states)
        return d_terms, states


class LayerNormLSTMCell(LayerNormCell):
    name = "lstm"
    gates = ("i", "f", "o", "c")
    state_names = ("H", "C")

    def param_shapes(self, input_size, num_hiddens):
        return {**super().param_shapes(input_size, num_hiddens), "g_cell": (num_hiddens,), "b_cell": (num_hiddens,)}

    def prepare(self, params):
        bias = side_by_side(params, "b_", self.gates)
        return LayerNormWeights(W_x=side_by_side(params, "W_x", self.gates), b=np.zeros_like(bias),
                                W_h=side_by_side(params, "W_h", self.gates), bias=bias,
                                gain_x=side_by_side(params, "g_x", self.gates),
                                gain_h=side_by_side(params, "g_h", self.gates),
                                gain_cell=params["g_cell"], bias_cell=params["b_cell"])

    def forward_loop(self, terms, state, weights, activation="tanh"):
        """The cache: H and C (starting state first), the gates after their activations, tanh of the
        normalised cell, and every normalisation's output with its 1 / std."""
        num_steps, batch, four_hidden = terms.shape
        hidden = four_hidden // 4
        x_hat, x_inv = normalize(terms, 4)
        pre_x = x_hat * weights.gain_x + weights.bias        # the input's share of every gate, all steps
        hs = np.empty((num_steps + 1, batch, hidden), dtype=terms.dtype)
        cs = np.empty_like(hs)
        hs[0], cs[0] = state
        acts, r_hat = np.empty_like(terms), np.empty_like(terms)
        r_inv = np.empty((num_steps, batch, 4, 1), dtype=terms.dtype)
        c_hat, tanh_cs = np.empty_like(hs[1:]), np.empty_like(hs[1:])
        c_inv = np.empty((num_steps, batch, 1, 1), dtype=terms.dtype)
        for t in range(num_steps):
            r_hat[t], r_inv[t] = normalize(hs[t] @ weights.W_h, 4)
            gates = np.multiply(r_hat[t], weights.gain_h, out=acts[t])
            gates += pre_x[t]
            sigmoid_(gates[:, :3 * hidden])
            np.tanh(gates[:, 3 * hidden:], out=gates[:, 3 * hidden:])
            i, f, o, candidate = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
            np.multiply(f, cs[t], out=cs[t + 1])
            cs[t + 1] += i * candidate
            c_hat[t], c_inv[t] = normalize(cs[t + 1], 1)
            np.tanh(c_hat[t] * weights.gain_cell + weights.bias_cell, out=tanh_cs[t])
            np.multiply(o, tanh_cs[t], out=hs[t + 1])
        return hs, cs, acts, tanh_cs, x_hat, x_inv, r_hat, r_inv, c_hat, c_inv

    def backward_steps(self, cache, weights, d_outputs, d_final, need_d_state0, states=None):
        """``backward``; ``states`` (steps, batch, hidden), if given, receives dL/dH_t of every step."""
        hs, cs, acts, tanh_cs, x_hat, x_inv, r_hat, r_inv, c_hat, c_inv = cache
        num_steps, batch, hidden = tanh_cs.shape
        d_h_final, d_c_final = final_grads(d_final, 2)
        d_pre = np.empty_like(acts)             # dL/d(every gate's pre-activation)
        d_r = np.empty_like(acts)               # dL/d(H_{t-1} W_h), before its normalisation
        d_cell = np.empty_like(tanh_cs)         # dL/d(the normalised cell, after its gain and shift)
        W_h_T = np.ascontiguousarray(weights.W_h.T)
        dh = zeros_if_none(d_h_final, hs[0])
        dc = zeros_if_none(d_c_final, cs[0])
        for t in range(num_steps - 1, -1, -1):
            if d_outputs is not None:
                dh += d_outputs[t]
            if states is not None:
                states[t] = dh
            i, f, o, candidate = (acts[t, :, k * hidden:(k + 1) * hidden] for k in range(4))
            d_i, d_f, d_o, d_cand = (d_pre[t, :, k * hidden:(k + 1) * hidden] for k in range(4))
            tanh_c = tanh_cs[t]
            # H = O tanh(LN(C)): to O, and through the normalisation on to C
            np.multiply(dh * tanh_c, o * (1 - o), out=d_o)
            np.multiply(dh * o, 1 - tanh_c * tanh_c, out=d_cell[t])
            dc += normalize_backward(d_cell[t] * weights.gain_cell, c_hat[t], c_inv[t], 1)
            # C = F C_{t-1} + I C~
            np.multiply(dc * candidate, i * (1 - i), out=d_i)
            np.multiply(dc * cs[t], f * (1 - f), out=d_f)
            np.multiply(dc * i, 1 - candidate * candidate, out=d_cand)
            d_r[t] = normalize_backward(d_pre[t] * weights.gain_h, r_hat[t], r_inv[t], 4)
            if t > 0 or need_d_state0:
                dc *= f
                dh = d_r[t] @ W_h_T
        d_terms = normalize_backward(d_pre * weights.gain_x, x_hat, x_inv, 4)
        d_W_h = hs[:-1].reshape(-1, hidden).T @ d_r.reshape(-1, 4 * hidden)
        grads = {**split_by_gate(d_W_h, "W_h", self.gates), **split_by_gate(_sum_rows(d_pre), "b_", self.gates),
                 **split_by_gate(_sum_rows(d_pre * x_hat), "g_x", self.gates),
                 **split_by_gate(_sum_rows(d_pre * r_hat), "g_h", self.gates),
                 "g_cell": _sum_rows(d_cell * c_hat), "b_cell": _sum_rows(d_cell)}
        return d_terms, grads, (dh, dc) if need_d_state0 else None


class LayerNormGRUCell(LayerNormCell):
    name = "gru"
    gates = ("z", "r", "h")
    state_names = ("H",)

    def prepare(self, params):
        bias = side_by_side(params, "b_", self.gates)
        return LayerNormWeights(W_x=side_by_side(params, "W_x", self.gates), b=np.zeros_like(bias),
                                W_h=side_by_side(params, "W_h", ("z", "r")), W_hh=params["W_hh"], bias=bias,
                                gain_x=side_by_side(params, "g_x", self.gates),
                                gain_h=side_by_side(params, "g_h", ("z", "r")), gain_hh=params["g_hh"])

    def forward_loop(self, terms, state, weights, activation="tanh"):
        """The cache: H (starting state first), Z and R, the candidates, R * H_{t-1}, and every
        normalisation's output with its 1 / std."""
        num_steps, batch, three_hidden = terms.shape
        hidden = three_hidden // 3
        x_hat, x_inv = normalize(terms, 3)
        pre_x = x_hat * weights.gain_x + weights.bias
        hs = np.empty((num_steps + 1, batch, hidden), dtype=terms.dtype)
        hs[0] = state[0]
        zr, zr_hat = (np.empty((num_steps, batch, 2 * hidden), dtype=terms.dtype) for _ in range(2))
        zr_inv = np.empty((num_steps, batch, 2, 1), dtype=terms.dtype)
        candidates, reset_h, u_hat = (np.empty_like(hs[1:]) for _ in range(3))
        u_inv = np.empty((num_steps, batch, 1, 1), dtype=terms.dtype)
        for t in range(num_steps):
            h_prev = hs[t]
            zr_hat[t], zr_inv[t] = normalize(h_prev @ weights.W_h, 2)
            gates = np.multiply(zr_hat[t], weights.gain_h, out=zr[t])
            gates += pre_x[t, :, :2 * hidden]
            sigmoid_(gates)
            z, r = gates[:, :hidden], gates[:, hidden:]
            np.multiply(r, h_prev, out=reset_h[t])
            u_hat[t], u_inv[t] = normalize(reset_h[t] @ weights.W_hh, 1)
            candidate = np.multiply(u_hat[t], weights.gain_hh, out=candidates[t])
            candidate += pre_x[t, :, 2 * hidden:]
            np.tanh(candidate, out=candidate)
            # H_t = Z H_{t-1} + (1 - Z) H~ = H~ + Z (H_{t-1} - H~)
            h = np.subtract(h_prev, candidate, out=hs[t + 1])
            h *= z
            h += candidate
        return hs, zr, candidates, reset_h, x_hat, x_inv, zr_hat, zr_inv, u_hat, u_inv

    def backward_steps(self, cache, weights, d_outputs, d_final, need_d_state0, states=None):
        """``backward``; ``states`` (steps, batch, hidden), if given, receives dL/dH_t of every step."""
        hs, zr, candidates, reset_h, x_hat, x_inv, zr_hat, zr_inv, u_hat, u_inv = cache
        num_steps, batch, hidden = candidates.shape
        d_pre = np.empty((num_steps, batch, 3 * hidden), dtype=hs.dtype)     # every gate's pre-activation
        d_zr = np.empty((num_steps, batch, 2 * hidden), dtype=hs.dtype)      # H_{t-1} W_h, before its norm
        d_u = np.empty_like(candidates)                                      # (R * H_{t-1}) W_hh, likewise
        W_h_T = np.ascontiguousarray(weights.W_h.T)
        W_hh_T = np.ascontiguousarray(weights.W_hh.T)
        dh = zeros_if_none(final_grads(d_final, 1)[0], hs[0])
        for t in range(num_steps - 1, -1, -1):
            if d_outputs is not None:
                dh += d_outputs[t]
            if states is not None:
                states[t] = dh
            h_prev, candidate = hs[t], candidates[t]
            z, r = zr[t, :, :hidden], zr[t, :, hidden:]
            d_z, d_r, d_cand = (d_pre[t, :, k * hidden:(k + 1) * hidden] for k in range(3))
            np.multiply(dh * (1 - z), 1 - candidate * candidate, out=d_cand)
            np.multiply(dh * (h_prev - candidate), z * (1 - z), out=d_z)
            d_u[t] = normalize_backward(d_cand * weights.gain_hh, u_hat[t], u_inv[t], 1)
            d_reset_h = d_u[t] @ W_hh_T
            np.multiply(d_reset_h * h_prev, r * (1 - r), out=d_r)
            d_zr[t] = normalize_backward(d_pre[t, :, :2 * hidden] * weights.gain_h, zr_hat[t], zr_inv[t], 2)
            if t > 0 or need_d_state0:
                # dL/dH_{t-1}: directly (Z H_{t-1}), through R * H_{t-1}, and through both gates
                dh = dh * z + d_reset_h * r + d_zr[t] @ W_h_T
        d_terms = normalize_backward(d_pre * weights.gain_x, x_hat, x_inv, 3)
        d_W_h = hs[:-1].reshape(-1, hidden).T @ d_zr.reshape(-1, 2 * hidden)
        grads = {**split_by_gate(d_W_h, "W_h", ("z", "r")),
                 "W_hh": reset_h.reshape(-1, hidden).T @ d_u.reshape(-1, hidden),
                 **split_by_gate(_sum_rows(d_pre), "b_", self.gates),
                 **split_by_gate(_sum_rows(d_pre * x_hat), "g_x", self.gates),
                 **split_by_gate(_sum_rows(d_pre[..., :2 * hidden] * zr_hat), "g_h", ("z", "r")),
                 "g_hh": _sum_rows(d_pre[..., 2 * hidden:] * u_hat)}
        return d_terms, grads, (dh,) if need_d_state0 else None
