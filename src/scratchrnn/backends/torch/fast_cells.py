"""The three cells' step loops in PyTorch operations, with backpropagation through them written by hand.

The same mathematics and the same shape as the NumPy reference (``scratchrnn.cells``): a cell's
``forward`` receives every step's input terms ``x_t W_x + b`` of all its gates at once (steps, batch,
gates * hidden), so that only the recurrence walks step by step, with ONE product of H_{t-1} with the
recurrent weights laid side by side per step (the GRU's candidate adds its own product with R * H);
``backward`` walks back through the steps and leaves the weight gradients to large products over all
steps after the loop. What is PyTorch's own here:

- each step writes into buffers made before the loop (``addmm_``, ``out=``, in-place activations),
  so the loops allocate nothing: at 32 x 512 an operator call costs about as much as its arithmetic;
- the factors backward multiplies each step's gradient by (derivatives of the gates, products of
  gates saved by the forward pass) are computed for all steps at once before the loop, in a few large
  operations, so that the loop keeps only what depends on the gradient flowing back: per step, four
  element-wise operations and one product for the LSTM, four and two for the GRU;
- the gates are laid side by side in an order of our own (the GRU as [r | z | h], the LSTM as
  [o | i | f | c]), chosen so that the gates one operation serves sit next to each other: one
  sigmoid covers every sigmoid gate, one broadcast multiplication fills several gates' gradients.
  ``input_grads`` cuts the gradients back out under the book's names.

Nothing here records autograd history: these functions run inside ``fast_model.StackedLoss``, which
hands their results to autograd. They run on any device and in float32 or float64; on the CPU in
float32, where ``kernels.choose`` says so (it measures both on this machine the first time a shape is
used: ``training_trial``), every cell's two loops run compiled instead, on PyTorch's own threads. The
compiled gated loops take their gates in the NumPy cells' order, so a layer whose loops run compiled
has its weights laid side by side in that order (``compiled_layout``); ``TorchCellWeights`` records
which loops it was prepared for.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ... import kernels
from ...cells import get_cell
from ...cells.base import split_by_gate


# -- the RNN cell's step loops ------------------------------------------------------------------------

def activate_(z, activation: str):
    """act(z), in place."""
    if activation == "relu":
        return z.relu_()
    if z.device.type == "cpu" and not z.requires_grad:
        # NumPy's SIMD tanh is about five times faster than ATen's on the CPUs measured (see
        # benchmarks/README.md), and a CPU tensor's memory can be viewed as a NumPy array.
        values = z.numpy()
        np.tanh(values, out=values)
        return z
    return z.tanh_()


def tanh_into(z, out):
    """tanh(z), written into ``out`` (which may be ``z``). On the CPU through NumPy views of the same
    memory: ATen hands a contiguous tanh to MKL's vector library, which splits even one step's
    (batch, hidden) block across threads, and the threads' hand-over costs more than the arithmetic
    (``activate_``'s measurement; on a busy machine many times more)."""
    if z.device.type == "cpu":
        np.tanh(z.numpy(), out=out.numpy())
        return out
    return torch.tanh(z, out=out)


def rnn_forward_steps(hs, W_hh, activation: str, loops: kernels.Choice | None = None) -> None:
    """``hs[t + 1] = act(hs[t + 1] + hs[t] @ W_hh)`` for every step, in place: ``hs`` (steps + 1,
    batch, hidden) arrives holding the start state in hs[0] and every step's input terms after it.
    ``loops``: compiled ones where that choice says so, else PyTorch's."""
    if loops is not None and loops.compiled:
        # on PyTorch's own threads (kernels/torch_team.py), not beside them
        with kernels.running_on(kernels.torch_team.team()):
            kernels.recurrence.forward(hs.numpy(), W_hh.detach().numpy(), activation, threads=loops.threads)
        return
    steps = hs.unbind(0)
    for t in range(len(steps) - 1):
        activate_(steps[t + 1].addmm_(steps[t], W_hh), activation)


def _activation_grad(hs, activation: str):
    """d act(z) / dz in terms of the output h = act(z) (a new tensor)."""
    if activation == "tanh":
        return torch.addcmul(hs.new_ones(()), hs, hs, value=-1)     # 1 - h^2
    return (hs > 0).to(hs.dtype)


def rnn_backward_steps(hs, W_hh, dhs, d_h_last, activation: str, need_dh0: bool,
                       loops: kernels.Choice | None = None):
    """dL/dz_t for every step (z_t the activation's argument), (steps, batch, hidden), and dL/dh_0 if
    ``need_dh0``: the step loop of backpropagation through time.

    ``W_hh`` the weights of the forward pass; ``dhs`` is the gradient reaching each state from its
    output (None: nothing; otherwise used as scratch space), ``d_h_last`` what reaches the last state
    from later batches (None: nothing). ``loops`` as for ``rnn_forward_steps``.
    """
    if loops is not None and loops.compiled:
        with kernels.running_on(kernels.torch_team.team()):
            dz, d_h0 = kernels.recurrence.backward(
                hs.numpy(), W_hh.detach().numpy(), None if dhs is None else dhs.numpy(),
                None if d_h_last is None else d_h_last.numpy(), activation, need_dh0, threads=loops.threads)
        return torch.from_numpy(dz), None if d_h0 is None else torch.from_numpy(d_h0)
    # the step products with a contiguous W_hh^T run about a third faster than with a transposed view
    W_hh_T = W_hh.T.contiguous()
    num_steps = hs.shape[0] - 1
    dz = _activation_grad(hs[1:], activation)  # becomes dL/dz_t step by step below
    dz_steps = dz.unbind(0)
    dhs_steps = dhs.unbind(0) if dhs is not None else None
    # dL/dh_t for the last step: from its output and from later batches
    if dhs is None:
        dh = d_h_last
    else:
        dh = dhs_steps[-1] if d_h_last is None else dhs_steps[-1].add_(d_h_last)
    for t in range(num_steps - 1, -1, -1):
        dz_steps[t].mul_(dh)
        if t > 0:
            # dL/dh_{t-1}: its own output's gradient (dhs is scratch here) + dL/dz_t W_hh^T
            dh = dz_steps[t] @ W_hh_T if dhs is None else dhs_steps[t - 1].addmm_(dz_steps[t], W_hh_T)
    return dz, dz_steps[0] @ W_hh_T if need_dh0 else None


# -- cells for the stacked model ------------------------------------------------------------------------
@dataclass(frozen=True)
class TorchCellWeights:
    """One layer's weights side by side in the gate order ``layout`` (the cell's own, or the compiled
    loops' when ``loops`` are compiled ones): ``W_x`` (input, gates * hidden), ``b`` (gates * hidden,),
    ``W_h`` the recurrent weights that multiply H_{t-1} (the gates ``recurrent``, in that order), and
    for the GRU ``W_hh``, the candidate's, which multiplies R * H_{t-1}. ``loops``: the choice of step
    loops they were prepared for (None: PyTorch's).

    Every one is a new tensor, never a parameter itself: the optimizer updates parameters in place,
    and a later batch whose state was not detached still backpropagates through this one with the
    weights as they were here."""

    W_x: torch.Tensor
    b: torch.Tensor
    W_h: torch.Tensor
    W_hh: torch.Tensor | None = None
    layout: tuple[str, ...] = ()
    recurrent: tuple[str, ...] = ()
    loops: kernels.Choice | None = None

    @property
    def compiled(self) -> bool:
        return self.loops is not None and self.loops.compiled


def _array(tensor):
    """A CPU tensor's memory as a NumPy array (None for None), for the compiled loops."""
    return None if tensor is None else tensor.detach().numpy()


def _compiled_call(function, loops: kernels.Choice, *args, **kwargs):
    """``function`` of ``kernels.gated`` on PyTorch's own threads (kernels/torch_team.py), as many as
    ``loops`` names (no more than PyTorch is told to use); its arrays back as tensors sharing their
    memory."""
    with kernels.running_on(kernels.torch_team.team()):
        results = function(*args, threads=loops.threads, **kwargs)
    return tuple(None if a is None else torch.from_numpy(a) for a in results)


class TorchCell:
    """What the stacked model needs of a cell (the NumPy ``Cell``'s methods, on torch tensors)."""

    name = "cell"
    #: the gates side by side, in this order (each cell's docstring says why this order)
    layout: tuple[str, ...] = ()
    #: gates whose recurrent weights multiply H_{t-1} (side by side in W_h, in this order)
    recurrent: tuple[str, ...] = ()
    #: the same two in the order of the compiled loops (``kernels.gated``: the NumPy cells')
    compiled_layout: tuple[str, ...] = ()
    compiled_recurrent: tuple[str, ...] = ()
    state_size = 1

    def prepare(self, params: dict, loops: kernels.Choice | None = None) -> TorchCellWeights:
        """``params`` under the cell's plain names -> the layer's weights side by side (new tensors),
        in the compiled loops' gate order if ``loops`` are compiled ones: both loops run compiled or
        neither, since the weights' order is chosen for both."""
        compiled = loops is not None and loops.compiled
        layout, recurrent = ((self.compiled_layout, self.compiled_recurrent) if compiled
                             else (self.layout, self.recurrent))
        return TorchCellWeights(W_x=torch.cat([params[f"W_x{g}"] for g in layout], dim=1),
                                b=torch.cat([params[f"b_{g}"] for g in layout]),
                                W_h=torch.cat([params[f"W_h{g}"] for g in recurrent], dim=1),
                                layout=layout, recurrent=recurrent, loops=loops)

    def input_buffer(self, num_steps: int, batch: int, start: tuple, like):
        """Where a layer's input terms are computed, (steps, batch, gates * hidden), and the ``states``
        its ``forward`` then takes (None here: the gated cells' loops keep their own)."""
        return like.new_empty((num_steps, batch, len(self.layout) * start[0].shape[1])), None

    @staticmethod
    def input_grads(weights: TorchCellWeights, d_W_x, d_b) -> dict:
        """The gradients of W_x{g} and b_{g}, cut from those of the side-by-side W_x and b."""
        return {**split_by_gate(d_W_x, "W_x", weights.layout), **split_by_gate(d_b, "b_", weights.layout)}

    @staticmethod
    def recurrent_grads(weights: TorchCellWeights, d_W_h) -> dict:
        """The gradients of W_h{g}, cut from that of the side-by-side W_h."""
        return split_by_gate(d_W_h, "W_h", weights.recurrent)


def _states_buffer(terms, start):
    """(steps + 1, batch, hidden) holding ``start`` in row 0: a step's state is written after its
    predecessor's, and the rows before the last are the weight gradients' left-hand side."""
    num_steps, batch, _ = terms.shape
    hs = terms.new_empty((num_steps + 1, batch, start.shape[1]))
    hs[0] = start
    return hs


def _output_grads(d_outputs, d_last, like):
    """The gradient reaching each step's output, as a tensor the loop may overwrite (zeros for None),
    with what reaches the last state from later batches added to its last step."""
    grads = torch.zeros_like(like) if d_outputs is None else d_outputs
    if d_last is not None:
        grads[-1] += d_last
    return grads


def _carried(d_outputs, t: int, like):
    """Where dL/dH_{t-1} is accumulated: the step's own output gradient (scratch from here on), or a
    new tensor before the first step (the gradient of the starting state)."""
    return d_outputs[t - 1] if t > 0 else torch.zeros_like(like)


class TorchRNN(TorchCell):
    """The chapter's cell: one gate, h (its loops above)."""

    name = "rnn"
    layout = recurrent = ("h",)

    def prepare(self, params, loops=None):
        # clones: the snapshots every TorchCellWeights is (cat of one tensor would copy too, less plainly)
        return TorchCellWeights(W_x=params["W_xh"].clone(), b=params["b_h"].clone(), W_h=params["W_hh"].clone(),
                                layout=self.layout, recurrent=self.recurrent, loops=loops)

    def input_buffer(self, num_steps, batch, start, like):
        # the input terms go straight into the rows of the states buffer that the loop turns into H_1 ..
        # H_T in place: no copy of them (a copy into fresh memory costs as much as a tenth of the loop)
        hs = like.new_empty((num_steps + 1, batch, start[0].shape[1]))
        hs[0] = start[0]
        return hs[1:], hs

    def forward(self, terms, state, weights, activation, states=None):
        """``states``: the buffer ``input_buffer`` made, whose rows after the first are ``terms``."""
        hs = states
        if hs is None:
            hs = _states_buffer(terms, state[0])
            hs[1:] = terms
        rnn_forward_steps(hs, weights.W_h, activation, weights.loops)
        return hs[1:], (hs[-1].clone(),), (hs, activation)

    def backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        hs, activation = cache
        d_last = None if d_final is None else d_final[0]
        d_outputs = _output_grads(d_outputs, None, hs[1:])
        dz, dh0 = rnn_backward_steps(hs, weights.W_h, d_outputs, d_last, activation, need_d_state0, weights.loops)
        hidden = hs.shape[2]
        d_W_hh = hs[:-1].reshape(-1, hidden).T @ dz.reshape(-1, hidden)
        return dz, self.recurrent_grads(weights, d_W_hh), (dh0,) if need_d_state0 else None


class TorchGRU(TorchCell):
    """The GRU (D2L 9.1). Gates side by side as [r | z | h]: r and z take one sigmoid and one product
    with [W_hr | W_hz]; z and the candidate h take their gradients from the same dL/dH_t, in one
    broadcast multiplication."""

    name = "gru"
    layout = ("r", "z", "h")
    recurrent = ("r", "z")
    compiled_layout = ("z", "r", "h")
    compiled_recurrent = ("z", "r")

    def prepare(self, params, loops=None):
        return dataclasses.replace(super().prepare(params, loops), W_hh=params["W_hh"].clone())

    def forward(self, terms, state, weights, activation="tanh", states=None):
        if weights.compiled:
            hs, zr, candidates, reset_h = _compiled_call(kernels.gated.gru_forward, weights.loops, _array(terms),
                                                         _array(state[0]), _array(weights.W_h), _array(weights.W_hh))
            return hs[1:], (hs[-1].clone(),), (hs, zr, candidates, reset_h)
        hs = _states_buffer(terms, state[0])
        hidden = hs.shape[2]
        acts = terms                              # the input terms become the gates' values, in place
        reset_h = torch.empty_like(hs[1:])        # R_t * H_{t-1}, the candidate's product's input
        for t in range(terms.shape[0]):
            h_prev, step = hs[t], acts[t]
            rz, candidate = step[:, :2 * hidden], step[:, 2 * hidden:]
            rz.addmm_(h_prev, weights.W_h).sigmoid_()
            r, z = rz[:, :hidden], rz[:, hidden:]
            torch.mul(r, h_prev, out=reset_h[t])
            tanh_into(candidate.addmm_(reset_h[t], weights.W_hh), candidate)
            # H_t = Z H_{t-1} + (1 - Z) H~_t = H~_t + Z (H_{t-1} - H~_t)
            torch.lerp(candidate, h_prev, z, out=hs[t + 1])
        return hs[1:], (hs[-1].clone(),), (hs, acts, reset_h)

    def backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        if weights.compiled:
            return self._compiled_backward(cache, weights, d_outputs, d_final, need_d_state0)
        hs, acts, reset_h = cache
        num_steps, batch, hidden = reset_h.shape
        h_prev = hs[:-1]
        r, z, candidate = (acts[..., k * hidden:(k + 1) * hidden] for k in range(3))
        # what the gradient flowing back is multiplied by, for every step at once, in d_terms' layout:
        # R through R * H_{t-1}: H_{t-1} R(1 - R); Z: (H_{t-1} - H~) Z(1 - Z); H~: (1 - Z)(1 - H~^2)
        factors = torch.empty_like(acts)
        one_minus_z = 1 - z
        torch.mul(h_prev * r, 1 - r, out=factors[..., :hidden])
        torch.mul((h_prev - candidate) * z, one_minus_z, out=factors[..., hidden:2 * hidden])
        torch.mul(one_minus_z, 1 - candidate * candidate, out=factors[..., 2 * hidden:])
        W_h_T, W_hh_T = weights.W_h.T.contiguous(), weights.W_hh.T.contiguous()
        d_terms = torch.empty_like(acts)
        d_reset_h = torch.empty_like(hs[0])
        d_outputs = _output_grads(d_outputs, None if d_final is None else d_final[0], hs[1:])
        dh = d_outputs[-1]
        for t in range(num_steps - 1, -1, -1):
            d_step, factor = d_terms[t], factors[t]
            # Z and H~ take dL/dH_t times their factors: one multiplication for both
            torch.mul(dh[:, None, :], factor[:, hidden:].view(batch, 2, hidden),
                      out=d_step[:, hidden:].view(batch, 2, hidden))
            torch.mm(d_step[:, 2 * hidden:], W_hh_T, out=d_reset_h)
            torch.mul(d_reset_h, factor[:, :hidden], out=d_step[:, :hidden])
            if t > 0 or need_d_state0:
                # dL/dH_{t-1}: through both gates, directly (Z H_{t-1}), and through R * H_{t-1}
                carried = _carried(d_outputs, t, dh).addmm_(d_step[:, :2 * hidden], W_h_T)
                carried.addcmul_(dh, z[t]).addcmul_(d_reset_h, r[t])
                dh = carried
        return d_terms, self._weight_grads(weights, h_prev, reset_h, d_terms), (dh,) if need_d_state0 else None

    def _compiled_backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        hs, zr, candidates, reset_h = cache
        d_terms, dh0 = _compiled_call(
            kernels.gated.gru_backward, weights.loops, tuple(_array(a) for a in cache), _array(weights.W_h),
            _array(weights.W_hh), _array(d_outputs), _array(None if d_final is None else d_final[0]),
            need_d_state0)
        return d_terms, self._weight_grads(weights, hs[:-1], reset_h, d_terms), (dh0,) if need_d_state0 else None

    def _weight_grads(self, weights, h_prev, reset_h, d_terms) -> dict:
        """The recurrent weights' gradients, one product each over all steps: W_h's (the two sigmoid
        gates, first in either order) from H_{t-1}, W_hh's from R * H_{t-1}."""
        hidden = h_prev.shape[2]
        d_flat = d_terms.view(-1, 3 * hidden)
        grads = self.recurrent_grads(weights, h_prev.reshape(-1, hidden).T @ d_flat[:, :2 * hidden])
        grads["W_hh"] = reset_h.reshape(-1, hidden).T @ d_flat[:, 2 * hidden:]
        return grads


def lstm_gate_factors(acts, cs, tanh_cs) -> tuple:
    """What the LSTM's backward loop multiplies dL/dH and dL/dC by, for every step at once: H = O tanh(C)
    sends dL/dH to O times tanh(C) O(1 - O) and to C times O (1 - tanh(C)^2); C = F C_{t-1} + I C~
    sends dL/dC to I times C~ I(1 - I), to F times C_{t-1} F(1 - F) and to C~ times I (1 - C~^2).
    ``acts`` holds the gates (o, i, f, c~) side by side, ``cs`` every step's cell from the starting one,
    ``tanh_cs`` the tanh of the cell each output read (of its normalised form in a layer-normalised
    LSTM). Returns the factors of O, of C, and of I, F and C~ stacked as (steps, batch, 3, hidden)."""
    num_steps, batch, hidden = tanh_cs.shape
    o, i, f, candidate = (acts[..., k * hidden:(k + 1) * hidden] for k in range(4))
    ifc_factors = torch.empty((num_steps, batch, 3, hidden), dtype=acts.dtype, device=acts.device)
    torch.mul(candidate * i, 1 - i, out=ifc_factors[:, :, 0])
    torch.mul(cs[:-1] * f, 1 - f, out=ifc_factors[:, :, 1])
    torch.mul(i, 1 - candidate * candidate, out=ifc_factors[:, :, 2])
    return tanh_cs * o * (1 - o), o * (1 - tanh_cs * tanh_cs), ifc_factors


class TorchLSTM(TorchCell):
    """The LSTM (D2L 9.2). Gates side by side as [o | i | f | c]: one sigmoid covers o, i and f, one
    tanh the candidate c; and i, f and c take their gradients from the same dL/dC_t, in one broadcast
    multiplication."""

    name = "lstm"
    layout = recurrent = ("o", "i", "f", "c")
    compiled_layout = compiled_recurrent = ("i", "f", "o", "c")
    state_size = 2

    def forward(self, terms, state, weights, activation="tanh", states=None):
        if weights.compiled:
            hs, cs, acts, tanh_cs = _compiled_call(kernels.gated.lstm_forward, weights.loops, _array(terms),
                                                   _array(state[0]), _array(state[1]), _array(weights.W_h),
                                                   unit_shares=weights.loops.unit_shares)
            return hs[1:], (hs[-1].clone(), cs[-1].clone()), (hs, cs, acts, tanh_cs)
        hs = _states_buffer(terms, state[0])
        cs = _states_buffer(terms, state[1])
        hidden = hs.shape[2]
        acts = terms                              # the input terms become the gates' values, in place
        tanh_cs = torch.empty_like(hs[1:])
        for t in range(terms.shape[0]):
            gates = acts[t].addmm_(hs[t], weights.W_h)
            gates[:, :3 * hidden].sigmoid_()
            tanh_into(gates[:, 3 * hidden:], gates[:, 3 * hidden:])
            o, i, f, candidate = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
            torch.mul(f, cs[t], out=cs[t + 1]).addcmul_(i, candidate)     # C_t = F C_{t-1} + I C~
            torch.mul(o, tanh_into(cs[t + 1], tanh_cs[t]), out=hs[t + 1])
        return hs[1:], (hs[-1].clone(), cs[-1].clone()), (hs, cs, acts, tanh_cs)

    def backward(self, cache, weights, d_outputs, d_final, need_d_state0):
        if weights.compiled:
            d_h_last, d_c_last = (None, None) if d_final is None else d_final
            d_terms, dh0, dc0 = _compiled_call(
                kernels.gated.lstm_backward, weights.loops, tuple(_array(a) for a in cache), _array(weights.W_h),
                _array(d_outputs), _array(d_h_last), _array(d_c_last), need_d_state0,
                unit_shares=weights.loops.unit_shares)
            return d_terms, self._weight_grads(weights, cache[0], d_terms), (dh0, dc0) if need_d_state0 else None
        hs, cs, acts, tanh_cs = cache
        num_steps, batch, hidden = tanh_cs.shape
        o_factor, c_factor, ifc_factors = lstm_gate_factors(acts, cs, tanh_cs)
        forget = acts[..., 2 * hidden:3 * hidden]          # dL/dC_{t-1} = F_t dL/dC_t
        W_h_T = weights.W_h.T.contiguous()
        d_terms = torch.empty_like(acts)
        d_h_last, d_c_last = (None, None) if d_final is None else d_final
        d_outputs = _output_grads(d_outputs, d_h_last, hs[1:])
        dc = torch.zeros_like(cs[0]) if d_c_last is None else d_c_last.clone()   # dL/dC_t from later steps
        dh = d_outputs[-1]
        for t in range(num_steps - 1, -1, -1):
            d_step = d_terms[t]
            torch.mul(dh, o_factor[t], out=d_step[:, :hidden])
            dc.addcmul_(dh, c_factor[t])
            torch.mul(dc[:, None, :], ifc_factors[t], out=d_step[:, hidden:].view(batch, 3, hidden))
            if t > 0 or need_d_state0:
                dc.mul_(forget[t])
                dh = _carried(d_outputs, t, dh).addmm_(d_step, W_h_T)
        return d_terms, self._weight_grads(weights, hs, d_terms), (dh, dc) if need_d_state0 else None

    def _weight_grads(self, weights, hs, d_terms) -> dict:
        """W_h's gradient, one product over all steps of H_{t-1} with the gates' gradients."""
        hidden = hs.shape[2]
        return self.recurrent_grads(weights, hs[:-1].reshape(-1, hidden).T @ d_terms.view(-1, 4 * hidden))


TORCH_CELLS = {"rnn": TorchRNN(), "gru": TorchGRU(), "lstm": TorchLSTM()}


def training_trial(workload: kernels.Workload) -> Callable[[kernels.Choice], Callable[[], object]]:
    """For ``kernels.choose``: a candidate's loops as the fast path's training step runs them at the
    workload's shape, on synthetic data -- one layer's forward pass and its backward pass, the
    recurrent weights' gradient products included; for a "stepping" workload, the forward pass alone."""
    cell = TORCH_CELLS[workload.cell]
    steps, batch, hidden = workload.steps, workload.batch, workload.hidden
    dtype = {"float32": torch.float32, "float64": torch.float64}[workload.dtype]
    made: dict = {}

    def data():
        if not made:
            generator = torch.Generator().manual_seed(0)
            shapes = get_cell(workload.cell).param_shapes(hidden, hidden)
            made["params"] = {name: torch.randn(shape, generator=generator, dtype=dtype) / np.sqrt(hidden)
                              for name, shape in shapes.items()}
            gates = len(get_cell(workload.cell).gates)
            made["terms"] = torch.randn((steps, batch, gates * hidden), generator=generator, dtype=dtype)
            made["d_outputs"] = torch.randn((steps, batch, hidden), generator=generator, dtype=dtype)
            made["state"] = tuple(torch.zeros((batch, hidden), dtype=dtype) for _ in range(cell.state_size))
        return made

    def trial(choice: kernels.Choice) -> Callable[[], object]:
        made = data()
        weights = cell.prepare(made["params"], choice)

        def run():
            with torch.no_grad():
                # the loops write into the input terms and the output gradients: each run has its own
                _, _, cache = cell.forward(made["terms"].clone(), made["state"], weights, workload.activation)
                if workload.group == "stepping":
                    return cache
                return cell.backward(cache, weights, made["d_outputs"].clone(), None, False)
        return run
    return trial
