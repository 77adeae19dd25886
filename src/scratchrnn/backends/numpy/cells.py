"""The NumPy backend's step loops: the reference loops of ``scratchrnn.cells``, or the compiled
library's, chosen once per workload by ``kernels.choose``.

A cell's two step loops -- the forward recurrence over a minibatch and backpropagation through it --
are the only part of a training step that must walk the steps one by one; everything else is a few
large products. ``scratchrnn.cells`` writes them in NumPy (the reference); the classes below are the
same cells with those two loops handed to the compiled library (``kernels.recurrence``,
``kernels.gated``), which keeps the same cache, so either loop can follow the other's. Which of the two
a workload runs is not decided here: ``step_loops`` takes the ``kernels.Choice`` (see
``scratchrnn.kernels.choice``), and ``training_trial`` is what the choice times on this machine.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ... import kernels
from ...cells import CellWeights, GRUCell, LSTMCell, RNNCell, get_cell
from ...cells.base import Cell, final_grads


class CompiledRNN(RNNCell):
    """The chapter's cell, its loops compiled (``kernels.recurrence``)."""

    def __init__(self, choice: kernels.Choice):
        self.choice = choice

    def forward_loop(self, terms, state, weights, activation):
        num_steps, batch, hidden = terms.shape
        hs = np.empty((num_steps + 1, batch, hidden), dtype=terms.dtype)
        hs[0], hs[1:] = state[0], terms
        kernels.recurrence.forward(hs, weights.W_h, activation, threads=self.choice.threads)
        return hs, activation

    def backward_loop(self, cache, weights, d_outputs, d_final, need_d_state0):
        hs, activation = cache
        dz, dh0 = kernels.recurrence.backward(hs, weights.W_h, d_outputs, final_grads(d_final, 1)[0], activation,
                                              need_d_state0, threads=self.choice.threads)
        return dz, (dh0,) if need_d_state0 else None


class CompiledGRU(GRUCell):
    """The GRU, its loops compiled (``kernels.gated``)."""

    def __init__(self, choice: kernels.Choice):
        self.choice = choice

    def forward_loop(self, terms, state, weights, activation="tanh"):
        return kernels.gated.gru_forward(terms, state[0], weights.W_h, weights.W_hh, threads=self.choice.threads)

    def backward_loop(self, cache, weights, d_outputs, d_final, need_d_state0):
        d_terms, dh0 = kernels.gated.gru_backward(cache, weights.W_h, weights.W_hh, d_outputs,
                                                  final_grads(d_final, 1)[0], need_d_state0,
                                                  threads=self.choice.threads)
        return d_terms, (dh0,) if need_d_state0 else None


class CompiledLSTM(LSTMCell):
    """The LSTM, its loops compiled (``kernels.gated``), the rows or the hidden units shared out."""

    def __init__(self, choice: kernels.Choice):
        self.choice = choice

    def forward_loop(self, terms, state, weights, activation="tanh"):
        return kernels.gated.lstm_forward(terms, state[0], state[1], weights.W_h, threads=self.choice.threads,
                                          unit_shares=self.choice.unit_shares)

    def backward_loop(self, cache, weights, d_outputs, d_final, need_d_state0):
        d_terms, dh0, dc0 = kernels.gated.lstm_backward(cache, weights.W_h, d_outputs, *final_grads(d_final, 2),
                                                        need_d_state0, threads=self.choice.threads,
                                                        unit_shares=self.choice.unit_shares)
        return d_terms, (dh0, dc0) if need_d_state0 else None


COMPILED = {"rnn": CompiledRNN, "gru": CompiledGRU, "lstm": CompiledLSTM}


def step_loops(cell: str, choice: kernels.Choice, layer_norm: bool = False) -> Cell:
    """The cell ``cell`` whose loops are the ones ``choice`` names; its layer-normalised form with
    ``layer_norm``, which has no compiled loops (``kernels.choose`` never names them for it)."""
    if layer_norm:
        return get_cell(cell, layer_norm=True)
    return COMPILED[cell](choice) if choice.compiled else get_cell(cell)


def training_trial(workload: kernels.Workload) -> Callable[[kernels.Choice], Callable[[], object]]:
    """For ``kernels.choose``: a candidate's loops as a training step runs them at the workload's
    shape, on synthetic data -- one layer's forward pass and its backward pass, the recurrent weights'
    gradient products included (the BLAS library's threads they leave spinning are part of what the
    compiled loops meet in a real step); for a "stepping" workload, the forward pass alone."""
    cell = get_cell(workload.cell)
    steps, batch, hidden = workload.steps, workload.batch, workload.hidden
    dtype = np.dtype(workload.dtype)
    made: dict = {}

    def data() -> dict:
        # made on the first trial only: a backend builds this function for every shape it meets,
        # and most shapes are remembered, never measured
        if not made:
            rng = np.random.default_rng(0)
            scale = 1 / np.sqrt(hidden)
            recurrent_gates = len(cell.gates) - (workload.cell == "gru")    # the GRU's W_hh stands apart
            made["weights"] = CellWeights(
                None, None, (rng.standard_normal((hidden, recurrent_gates * hidden)) * scale).astype(dtype),
                (rng.standard_normal((hidden, hidden)) * scale).astype(dtype) if workload.cell == "gru" else None)
            made["terms"] = rng.standard_normal((steps, batch, len(cell.gates) * hidden)).astype(dtype)
            made["d_outputs"] = rng.standard_normal((steps, batch, hidden)).astype(dtype)
            made["state"] = cell.begin_state(batch, hidden, dtype)
        return made

    def trial(choice: kernels.Choice) -> Callable[[], object]:
        loops, made = step_loops(workload.cell, choice), data()

        def run():
            _, _, cache = loops.forward(made["terms"], made["state"], made["weights"], workload.activation)
            if workload.group == "stepping":
                return cache
            return loops.backward(cache, made["weights"], made["d_outputs"].copy(), None, False)
        return run
    return trial
