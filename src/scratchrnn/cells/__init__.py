"""The recurrent cells, free of any framework: what each one is, and its mathematics in NumPy.

A cell is the part of the model that walks a sequence step by step (D2L 8.5 the RNN, 9.1 the GRU,
9.2 the LSTM). Each one is described by:

- its gates: a cell with gates ``g`` has parameters ``W_x{g}`` (input, hidden), ``W_h{g}``
  (hidden, hidden) and ``b_{g}`` (hidden,) for each, in the book's order and with the book's names
  (the RNN's single "gate" is ``h``: W_xh, W_hh, b_h);
- its state: the RNN and the GRU carry H, the LSTM carries (H, C), each (batch, hidden);
- ``forward(terms, state, weights, activation)``: the step loop over a whole minibatch, given every
  step's input terms ``x_t [W_x{g} ...] + [b_{g} ...]`` (steps, batch, gates * hidden) computed
  beforehand in one product (or one row gather for one-hot inputs) -- only the recurrence has to
  walk step by step;
- ``backward(cache, weights, d_outputs, d_final, need_d_state0)``: backpropagation through that
  loop, written by hand: the gradient of the input terms (from which the caller takes the
  gradients of W_x*, b_* and of the inputs), of the recurrent weights, and of the starting state;
- ``forward_loop`` and ``backward_loop``: the two loops alone, which a backend may run elsewhere
  with the same cache (the NumPy backend runs them compiled where that is faster).

``layernorm`` holds the layer-normalised LSTM and GRU (Ba, Kiros and Hinton 2016), the same
interface with gains of their own (``get_cell(name, layer_norm=True)``).

This package is the mathematics in NumPy and imports no compiled code.

The model (embedding, stacked layers, dropout, output layer) is assembled from cells by the backends;
``backends.numpy.backend`` is the reference.
"""
from __future__ import annotations

import numpy as np

from .base import Cell, CellWeights
from .gru import GRUCell
from .layernorm import LayerNormGRUCell, LayerNormLSTMCell
from .lstm import LSTMCell
from .rnn import RNNCell

CELLS = {"rnn": RNNCell(), "gru": GRUCell(), "lstm": LSTMCell()}
LAYER_NORM_CELLS = {"gru": LayerNormGRUCell(), "lstm": LayerNormLSTMCell()}


def get_cell(name: str, layer_norm: bool = False):
    """The cell called ``name`` ("rnn", "gru" or "lstm"); with ``layer_norm``, its layer-normalised
    form (the gru and lstm have one)."""
    cells = LAYER_NORM_CELLS if layer_norm else CELLS
    try:
        return cells[name]
    except KeyError:
        kind = "layer-normalised " if layer_norm else ""
        raise ValueError(f"cell must be one of {tuple(cells)} for a {kind}cell, not {name!r}") from None


def layer_prefix(layer: int) -> str:
    """Parameter-name prefix of a layer: none for layer 0 (the book's names), ``l1.`` for the next..."""
    return "" if layer == 0 else f"l{layer}."


def is_bias(name: str) -> bool:
    """Whether a parameter name (with or without a layer prefix) names a bias."""
    return name.rsplit(".", 1)[-1].startswith("b_")


def is_gain(name: str) -> bool:
    """Whether a parameter name names a layer normalisation's gain (g_xi, l1.g_cell...), which starts at 1."""
    return name.rsplit(".", 1)[-1].startswith("g_")


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], rate: float, dtype) -> np.ndarray:
    """An inverted-dropout mask: 0 with probability ``rate``, else 1 / (1 - rate).

    Drawn as ``rng.random(shape)`` in float64 and kept where the draw is at least ``rate``, so that
    any backend holding a generator in the same state draws the same mask.
    """
    keep = rng.random(shape) >= rate
    return np.where(keep, 1.0 / (1.0 - rate), 0.0).astype(dtype)


class RankRows:
    """The dropout stream of one rank of several, as a generator for ``dropout_mask``: every rank
    holds the same stream (the same seed, and the same state after a resume) and draws each batch's
    masks for the whole global batch, then keeps its own rows, ``rank::world`` along the batch axis --
    the rows its data loader gives it. So N ranks apply exactly the masks one process applies to the
    whole batch, and the state saved by any rank continues every rank's stream. The price: each rank
    draws N times the numbers it uses.
    """

    def __init__(self, generator: np.random.Generator, rank: int, world: int):
        self.generator, self.rank, self.world = generator, rank, world

    @property
    def bit_generator(self):
        return self.generator.bit_generator

    def random(self, shape: tuple[int, ...]) -> np.ndarray:
        steps, batch, *rest = shape
        return self.generator.random((steps, batch * self.world, *rest))[:, self.rank::self.world]


__all__ = ["CELLS", "LAYER_NORM_CELLS", "Cell", "CellWeights", "GRUCell", "LSTMCell", "LayerNormGRUCell",
           "LayerNormLSTMCell", "RNNCell", "RankRows", "dropout_mask", "get_cell", "is_bias", "is_gain",
           "layer_prefix"]
