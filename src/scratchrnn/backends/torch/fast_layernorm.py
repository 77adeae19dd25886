"""The layer-normalised LSTM and GRU on the torch backend's fast path: the NumPy reference's mathematics
(``scratchrnn.cells.layernorm``, where the equations are) in PyTorch operations, with backpropagation
through the steps written by hand, as ``fast_cells`` does for the book's cells.

What is PyTorch's own here is what ``fast_cells`` does too: each normalisation is a few operations on
a (batch, gates, hidden) view of a step's terms, so every gate is normalised over its own units in one
call; the input terms of all steps are normalised at once before the loop; the factors backward
multiplies the flowing gradient by are computed for all steps at once before its loop; and the
gradients of the gains and biases are sums over all steps after it. The compiled library has no
loops for these cells (``kernels.choose`` says so), so they always run here. The gates are laid side
by side as [o | i | f | c] (the LSTM: i, f and c take their gradients from dL/dC_t in one broadcast
multiplication) and [z | r | h] (the GRU).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ...cells.base import split_by_gate
from ...cells.layernorm import EPS
from .fast_cells import (TORCH_CELLS, TorchCell, TorchCellWeights, _carried, _output_grads, _states_buffer,
                         lstm_gate_factors, tanh_into)


def normalize(values, groups: int):
    """Each of ``groups`` equal blocks of the last axis at mean 0 and variance 1: the normalised values
    (shaped like ``values``) and 1 / sqrt(var + eps) per block (..., groups, 1)."""
    blocks = values.reshape(*values.shape[:-1], groups, -1)
    var, mean = torch.var_mean(blocks, dim=-1, keepdim=True, correction=0)
    inv_std = torch.rsqrt(var.add_(EPS))
    return (blocks - mean).mul_(inv_std).view(values.shape), inv_std


def normalize_backward(d_normalized, normalized, inv_std, groups: int):
    """The gradient of what ``normalize`` saw: per block (d - mean(d) - x^ mean(d x^)) / std."""
    d = d_normalized.reshape(*d_normalized.shape[:-1], groups, -1)
    x_hat = normalized.reshape(d.shape)
    d_values = d - d.mean(dim=-1, keepdim=True)
    d_values.sub_(x_hat * (d * x_hat).mean(dim=-1, keepdim=True)).mul_(inv_std)
    return d_values.view(d_normalized.shape)


def _sum_rows(values):
    """The sum over steps and rows: a per-unit parameter's gradient."""
    return values.reshape(-1, values.shape[-1]).sum(dim=0)


@dataclass(frozen=True)
class LayerNormTorchWeights(TorchCellWeights):
    """TorchCellWeights (``b`` zeros: the bias comes after the normalisation) with the gates' biases,
    the gains of the normalised input and recurrent terms, the GRU candidate's recurrent gain and the
    LSTM cell normalisation's gain and shift -- each a new tensor, as every TorchCellWeights is."""

    bias: torch.Tensor | None = None
    gain_x: torch.Tensor | None = None
    gain_h: torch.Tensor | None = None
    gain_hh: torch.Tensor | None = None
    gain_cell: torch.Tensor | None = None
    bias_cell: torch.Tensor | None = None


class LayerNormTorchCell(TorchCell):
    """What the two share: ``prepare`` lays every per-gate tensor side by side in ``layout``."""

    def prepare(self, params, loops=None):
        # the compiled loops never run these cells: ``loops`` is kept for the record only
        def side_by_side(stem, gates):
            return torch.cat([params[f"{stem}{g}"] for g in gates])
        bias = side_by_side("b_", self.layout)
        return LayerNormTorchWeights(
            W_x=torch.cat([params[f"W_x{g}"] for g in self.layout], dim=1), b=torch.zeros_like(bias),
            W_h=torch.cat([params[f"W_h{g}"] for g in self.recurrent], dim=1), layout=self.layout,
            recurrent=self.recurrent, loops=loops, bias=bias, gain_x=side_by_side("g_x", self.layout),
            gain_h=side_by_side("g_h", self.recurrent))

    @staticmethod
    def input_grads(weights, d_W_x, d_b) -> dict:
        # the zeros added to the input terms are no parameter (the biases' gradients come from backward)
        return split_by_gate(d_W_x, "W_x", weights.layout)


class TorchLayerNormLSTM(LayerNormTorchCell):
    name = "lstm"
    layout = recurrent = ("o", "i", "f", "c")
    state_size = 2

    def prepare(self, params, loops=None):
        return dataclasses.replace(super().prepare(params, loops), gain_cell=params["g_cell"].clone(),
                                   bias_cell=params["b_cell"].clone())

    def forward(self, terms, state, weights, activation="tanh", states=None):
        num_steps, batch, four_hidden = terms.shape
        hidden = four_hidden // 4
        x_hat, x_inv = normalize(terms, 4)
        pre_x = torch.addcmul(weights.bias, x_hat, weights.gain_x)    # the input's share of every gate
        hs, cs = _states_buffer(terms, state[0]), _states_buffer(terms, state[1])
        acts, r_hat = torch.empty_like(terms), torch.empty_like(terms)
        r_inv = terms.new_empty((num_steps, batch, 4, 1))
        c_hat, tanh_cs = torch.empty_like(hs[1:]), torch.empty_like(hs[1:])
        c_inv = terms.new_empty((num_steps, batch, 1, 1))
        for t in range(num_steps):
            normalized, r_inv[t] = normalize(hs[t] @ weights.W_h, 4)
            r_hat[t] = normalized
            gates = torch.addcmul(pre_x[t], normalized, weights.gain_h, out=acts[t])
            gates[:, :3 * hidden].sigmoid_()
            tanh_into(gates[:, 3 * hidden:], gates[:, 3 * hidden:])
            o, i, f, candidate = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
            torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, candidate)          # C_t = F C_{t-1} + I C~
            normalized, c_inv[t] = normalize(cs[t + 1], 1)
            c_hat[t] = normalized
            tanh_into(torch.addcmul(weights.bias_cell, normalized, weights.gain_cell), tanh_cs[t])
            torch.mul(o, tanh_cs[t], out=hs[t + 1])
        cache = (hs, cs, acts, tanh_cs, x_hat, x_inv, r_hat, r_inv, c_hat, c_inv)
        return hs[1:], (hs[-1].clone(), cs[-1].clone()), cache

    def backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        hs, cs, acts, tanh_cs, x_hat, x_inv, r_hat, r_inv, c_hat, c_inv = cache
        num_steps, batch, hidden = tanh_cs.shape
        # H = O tanh(LN(C)): the book's factors, the second of them now the normalised cell's
        o_factor, cell_factor, ifc_factors = lstm_gate_factors(acts, cs, tanh_cs)
        forget = acts[..., 2 * hidden:3 * hidden]          # dL/dC_{t-1} = F_t dL/dC_t
        W_h_T = weights.W_h.T.contiguous()
        d_pre, d_r = torch.empty_like(acts), torch.empty_like(acts)
        d_cell = torch.empty_like(tanh_cs)
        d_h_last, d_c_last = (None, None) if d_final is None else d_final
        d_outputs = _output_grads(d_outputs, d_h_last, hs[1:])
        dc = torch.zeros_like(cs[0]) if d_c_last is None else d_c_last.clone()
        dh = d_outputs[-1]
        for t in range(num_steps - 1, -1, -1):
            d_step = d_pre[t]
            torch.mul(dh, o_factor[t], out=d_step[:, :hidden])
            torch.mul(dh, cell_factor[t], out=d_cell[t])
            dc += normalize_backward(d_cell[t] * weights.gain_cell, c_hat[t], c_inv[t], 1)
            torch.mul(dc[:, None, :], ifc_factors[t], out=d_step[:, hidden:].view(batch, 3, hidden))
            d_r[t] = normalize_backward(d_step * weights.gain_h, r_hat[t], r_inv[t], 4)
            if t > 0 or need_d_state0:
                dc.mul_(forget[t])
                dh = _carried(d_outputs, t, dh).addmm_(d_r[t], W_h_T)
        d_terms = normalize_backward(d_pre * weights.gain_x, x_hat, x_inv, 4)
        d_W_h = hs[:-1].reshape(-1, hidden).T @ d_r.view(-1, 4 * hidden)
        grads = {**self.recurrent_grads(weights, d_W_h), **split_by_gate(_sum_rows(d_pre), "b_", self.layout),
                 **split_by_gate(_sum_rows(d_pre * x_hat), "g_x", self.layout),
                 **split_by_gate(_sum_rows(d_pre * r_hat), "g_h", self.recurrent),
                 "g_cell": _sum_rows(d_cell * c_hat), "b_cell": _sum_rows(d_cell)}
        return d_terms, grads, (dh, dc) if need_d_state0 else None


class TorchLayerNormGRU(LayerNormTorchCell):
    name = "gru"
    layout = ("z", "r", "h")
    recurrent = ("z", "r")

    def prepare(self, params, loops=None):
        return dataclasses.replace(super().prepare(params, loops), W_hh=params["W_hh"].clone(),
                                   gain_hh=params["g_hh"].clone())

    def forward(self, terms, state, weights, activation="tanh", states=None):
        num_steps, batch, three_hidden = terms.shape
        hidden = three_hidden // 3
        x_hat, x_inv = normalize(terms, 3)
        pre_x = torch.addcmul(weights.bias, x_hat, weights.gain_x)
        hs = _states_buffer(terms, state[0])
        zr, zr_hat = (terms.new_empty((num_steps, batch, 2 * hidden)) for _ in range(2))
        zr_inv = terms.new_empty((num_steps, batch, 2, 1))
        candidates, reset_h, u_hat = (torch.empty_like(hs[1:]) for _ in range(3))
        u_inv = terms.new_empty((num_steps, batch, 1, 1))
        for t in range(num_steps):
            h_prev = hs[t]
            normalized, zr_inv[t] = normalize(h_prev @ weights.W_h, 2)
            zr_hat[t] = normalized
            gates = torch.addcmul(pre_x[t, :, :2 * hidden], normalized, weights.gain_h, out=zr[t]).sigmoid_()
            z, r = gates[:, :hidden], gates[:, hidden:]
            torch.mul(r, h_prev, out=reset_h[t])
            normalized, u_inv[t] = normalize(reset_h[t] @ weights.W_hh, 1)
            u_hat[t] = normalized
            candidate = torch.addcmul(pre_x[t, :, 2 * hidden:], normalized, weights.gain_hh, out=candidates[t])
            tanh_into(candidate, candidate)
            torch.lerp(candidate, h_prev, z, out=hs[t + 1])        # H~ + Z (H_{t-1} - H~)
        cache = (hs, zr, candidates, reset_h, x_hat, x_inv, zr_hat, zr_inv, u_hat, u_inv)
        return hs[1:], (hs[-1].clone(),), cache

    def backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        hs, zr, candidates, reset_h, x_hat, x_inv, zr_hat, zr_inv, u_hat, u_inv = cache
        num_steps, batch, hidden = candidates.shape
        h_prev = hs[:-1]
        z, r = zr[..., :hidden], zr[..., hidden:]
        # for every step at once: the candidate's factor (1 - Z)(1 - H~^2), Z's (H_{t-1} - H~) Z(1 - Z),
        # and R's through R * H_{t-1}, H_{t-1} R(1 - R)
        cand_factor = (1 - z) * (1 - candidates * candidates)
        z_factor = (h_prev - candidates) * z * (1 - z)
        r_factor = h_prev * r * (1 - r)
        W_h_T, W_hh_T = weights.W_h.T.contiguous(), weights.W_hh.T.contiguous()
        d_pre = torch.empty((num_steps, batch, 3 * hidden), dtype=hs.dtype, device=hs.device)
        d_zr, d_u = torch.empty_like(zr), torch.empty_like(candidates)
        d_outputs = _output_grads(d_outputs, None if d_final is None else d_final[0], hs[1:])
        dh = d_outputs[-1]
        for t in range(num_steps - 1, -1, -1):
            d_step = d_pre[t]
            torch.mul(dh, z_factor[t], out=d_step[:, :hidden])
            torch.mul(dh, cand_factor[t], out=d_step[:, 2 * hidden:])
            d_u[t] = normalize_backward(d_step[:, 2 * hidden:] * weights.gain_hh, u_hat[t], u_inv[t], 1)
            d_reset_h = d_u[t] @ W_hh_T
            torch.mul(d_reset_h, r_factor[t], out=d_step[:, hidden:2 * hidden])
            d_zr[t] = normalize_backward(d_step[:, :2 * hidden] * weights.gain_h, zr_hat[t], zr_inv[t], 2)
            if t > 0 or need_d_state0:
                # dL/dH_{t-1}: through both gates, directly (Z H_{t-1}), and through R * H_{t-1}
                carried = _carried(d_outputs, t, dh).addmm_(d_zr[t], W_h_T)
                dh = carried.addcmul_(dh, z[t]).addcmul_(d_reset_h, r[t])
        d_terms = normalize_backward(d_pre * weights.gain_x, x_hat, x_inv, 3)
        grads = {**self.recurrent_grads(weights, h_prev.reshape(-1, hidden).T @ d_zr.view(-1, 2 * hidden)),
                 "W_hh": reset_h.reshape(-1, hidden).T @ d_u.view(-1, hidden),
                 **split_by_gate(_sum_rows(d_pre), "b_", self.layout),
                 **split_by_gate(_sum_rows(d_pre * x_hat), "g_x", self.layout),
                 **split_by_gate(_sum_rows(d_pre[..., :2 * hidden] * zr_hat), "g_h", self.recurrent),
                 "g_hh": _sum_rows(d_pre[..., 2 * hidden:] * u_hat)}
        return d_terms, grads, (dh,) if need_d_state0 else None


LAYER_NORM_CELLS = {"lstm": TorchLayerNormLSTM(), "gru": TorchLayerNormGRU()}


def torch_cell(config) -> TorchCell:
    """The fast path's cell for a model: the book's (``fast_cells``) or its layer-normalised form."""
    return LAYER_NORM_CELLS[config.cell] if config.layer_norm else TORCH_CELLS[config.cell]
