"""What every cell shares: its parameters named per gate, weights laid side by side, a few helpers."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CellWeights:
    """One layer's parameters arranged for the step loop.

    ``W_x`` and ``b`` hold every gate's input weights and biases side by side, (input, gates * hidden)
    and (gates * hidden,), so that the input terms of all gates and all steps are one product.
    ``W_h`` holds the recurrent weights that multiply the previous H, side by side likewise; the GRU's
    candidate multiplies R * H instead of H, so its W_hh stays apart, in ``W_hh``.
    """

    W_x: np.ndarray
    b: np.ndarray
    W_h: np.ndarray
    W_hh: np.ndarray | None = None


class Cell(ABC):
    """A recurrent cell (see the package's docstring for what each method computes)."""

    name = "cell"
    #: one letter per gate: parameters W_x{g}, W_h{g}, b_{g} for each, in this order
    gates: tuple[str, ...] = ()
    #: the tensors of the state, each (batch, hidden)
    state_names: tuple[str, ...] = ("H",)
    #: whether the gates' terms are layer-normalised (``cells.layernorm``)
    layer_norm = False

    @property
    def recurrent_weights(self) -> tuple[str, ...]:
        """The names of the weights that multiply the previous state (W_hh; W_hz, W_hr, W_hh; W_hi, W_hf,
        W_ho, W_hc), in the book's order: what weight dropout drops."""
        return tuple(f"W_h{g}" for g in self.gates)

    def param_shapes(self, input_size: int, num_hiddens: int) -> dict[str, tuple[int, ...]]:
        """The book's parameter names and shapes for one layer, in the book's order."""
        shapes = {}
        for g in self.gates:
            shapes[f"W_x{g}"] = (input_size, num_hiddens)
            shapes[f"W_h{g}"] = (num_hiddens, num_hiddens)
            shapes[f"b_{g}"] = (num_hiddens,)
        return shapes

    def prepare(self, params: dict[str, np.ndarray]) -> CellWeights:
        """The weights side by side (``params`` under the cell's plain names)."""
        return CellWeights(W_x=side_by_side(params, "W_x", self.gates), b=side_by_side(params, "b_", self.gates),
                           W_h=side_by_side(params, "W_h", self.gates))

    def input_grads(self, d_W_x: np.ndarray, d_b: np.ndarray) -> dict[str, np.ndarray]:
        """The gradients of W_x{g} and b_{g}, cut from those of the side-by-side W_x and b."""
        return {**split_by_gate(d_W_x, "W_x", self.gates), **split_by_gate(d_b, "b_", self.gates)}

    def begin_state(self, batch_size: int, num_hiddens: int, dtype) -> tuple[np.ndarray, ...]:
        return tuple(np.zeros((batch_size, num_hiddens), dtype=dtype) for _ in self.state_names)

    @abstractmethod
    def forward(self, terms: np.ndarray, state: tuple, weights: CellWeights, activation: str):
        """Every step's output H (steps, batch, hidden), the state after the last step, and what
        ``backward`` needs (the cache). The steps themselves are ``forward_loop``'s."""

    @abstractmethod
    def backward(self, cache, weights: CellWeights, d_outputs: np.ndarray | None, d_final: tuple | None,
                 need_d_state0: bool):
        """From the loss gradient reaching each step's output (``d_outputs``, or None: nothing) and the
        state after the last step (``d_final``, a tuple whose entries may be None, or None): the
        gradient of the input terms (steps, batch, gates * hidden), of the recurrent weights (a dict
        under the cell's plain names) and of the starting state (a tuple, or None unless
        ``need_d_state0``). ``d_outputs`` may be overwritten. The steps themselves are
        ``backward_loop``'s; the recurrent weights' gradients are one product over all steps after it."""

    # The two loops that must walk the minibatch step by step, apart from the rest of ``forward`` and
    # ``backward``, so that a backend may run them elsewhere with the same cache (the NumPy backend
    # runs them compiled where that was measured faster: backends/numpy/cells.py).
    @abstractmethod
    def forward_loop(self, terms: np.ndarray, state: tuple, weights: CellWeights, activation: str):
        """The forward step loop over a minibatch: the cache, whose first array holds the starting H
        and every H after it, (steps + 1, batch, hidden)."""

    @abstractmethod
    def backward_loop(self, cache, weights: CellWeights, d_outputs: np.ndarray | None, d_final: tuple | None,
                      need_d_state0: bool):
        """Backpropagation through the step loop: the gradient of the input terms, and that of the
        starting state (a tuple) when ``need_d_state0``, else None. ``d_outputs`` may be overwritten."""


def side_by_side(params: dict[str, np.ndarray], stem: str, gates: tuple[str, ...]) -> np.ndarray:
    """``params[stem + g]`` for every gate, concatenated along the last axis (no copy for one gate)."""
    if len(gates) == 1:
        return params[stem + gates[0]]
    return np.concatenate([params[stem + g] for g in gates], axis=-1)


def split_by_gate(values, stem: str, gates: tuple[str, ...]) -> dict:
    """``side_by_side`` undone: ``{stem + g: g's block of the last axis}``, as views (NumPy arrays or
    any framework's tensors)."""
    width = values.shape[-1] // len(gates)
    return {stem + g: values[..., k * width:(k + 1) * width] for k, g in enumerate(gates)}


def sigmoid_(z: np.ndarray) -> np.ndarray:
    """The logistic function, in place, as 0.5 (1 + tanh(z / 2)): the same values as 1 / (1 + e^-z)
    without overflowing exp for large negative z."""
    z *= 0.5
    np.tanh(z, out=z)
    z += 1
    z *= 0.5
    return z


def zeros_if_none(value: np.ndarray | None, like: np.ndarray) -> np.ndarray:
    """``value`` as a new array, or zeros shaped like ``like`` when there is none."""
    return np.zeros_like(like) if value is None else np.array(value, dtype=like.dtype)


def final_grads(d_final: tuple | None, count: int) -> tuple:
    """``d_final`` as a tuple of ``count`` entries (each an array or None)."""
    return (None,) * count if d_final is None else tuple(d_final)
