"""Dropout masks, drawn in NumPy by every backend exactly as the reference draws them.

Every backend draws a training batch's masks with ``draw_masks``, from a generator of its own
(``dropout_generator``), in one fixed order -- embedding dropout's rows, the locked mask of the
inputs, each layer's weight-dropout masks, each layer's output masks (the per-step dropout mask, then
the locked one) -- and hands them to its model as NumPy arrays or its own tensors (``Masks``). So the
same generator state gives every backend the very same masks: that is what lets the contract tests
compare training with dropout across frameworks, and resume a run exactly. The generator's state
goes into checkpoints.

On several ranks each rank keeps its rows of every mask drawn per row (``cells.RankRows``), while
the masks that are not per row -- a weight matrix's, the embedding's rows -- are drawn whole by
every rank alike, so N ranks apply the masks one process applies.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from ..cells import RankRows, dropout_mask


class Masks(NamedTuple):
    """One training batch's masks (NumPy arrays, or a framework's tensors after ``map``); a field is
    None where nothing of its kind is dropped.

    ``inputs``: what the embedded inputs are multiplied by, broadcastable to (steps, batch, embed) --
    embedding dropout's factor of each token's row, (steps, batch, 1), times the locked input mask,
    (1, batch, embed). ``recurrent``: per layer, the weight-dropout mask of each recurrent weight
    under the cell's plain names (``Cell.recurrent_weights``), each (hidden, hidden). ``outputs``: per
    layer, what its output is multiplied by (None for a layer without one), broadcastable to (steps,
    batch, hidden): the per-step dropout mask (steps, batch, hidden), the locked one (1, batch, hidden)
    (hidden_dropout below the last layer, output_dropout on it), or their product.
    """

    inputs: Any = None
    recurrent: list | None = None
    outputs: list | None = None

    def map(self, convert: Callable) -> "Masks":
        """The same masks, each array through ``convert`` (to a framework's tensor)."""
        def each(value):
            return None if value is None else convert(value)
        return Masks(each(self.inputs),
                     None if self.recurrent is None else [{k: each(v) for k, v in layer.items()}
                                                          for layer in self.recurrent],
                     None if self.outputs is None else [each(mask) for mask in self.outputs])


def whole_mask(rng, shape: tuple[int, ...], rate: float, dtype) -> np.ndarray:
    """A dropout mask that is not cut into rows (a weight matrix's, the embedding's rows): drawn from
    the whole stream on every rank (``RankRows`` keeps rows of per-row masks only)."""
    generator = rng.generator if isinstance(rng, RankRows) else rng
    return dropout_mask(generator, shape, rate, dtype)


def dropout_generator(seed: int) -> np.random.Generator:
    """The generator dropout masks are drawn from, for a seed: a stream of its own, apart from the
    one ``init_params`` draws the weights from with the same seed."""
    return np.random.default_rng([seed, 0x0D0])


class DropoutMasks:
    """What every Backend does with its dropout generator (``Backend`` inherits it): ``dropout_seed``
    seeds it, its state goes into checkpoints, and training on several ranks shares its stream."""

    _dropout_rng: np.random.Generator | RankRows

    def _init_dropout(self, seed: int) -> None:
        self._dropout_rng = dropout_generator(seed)

    def dropout_rng_state(self) -> dict:
        """The state of the generator the dropout masks come from (JSON-able), for checkpoints."""
        return self._dropout_rng.bit_generator.state

    def set_dropout_rng_state(self, state: dict) -> None:
        self._dropout_rng.bit_generator.state = state

    def share_dropout_stream(self, rank: int, world: int) -> None:
        """Training on ``world`` ranks: this rank's dropout masks become its rows of the masks of the
        whole global batch (``cells.RankRows``), so that N ranks train as one process would. Every
        rank must hold the same dropout seed. Once is enough; nothing changes on one rank."""
        if world > 1 and not isinstance(self._dropout_rng, RankRows):
            self._dropout_rng = RankRows(self._dropout_rng, rank, world)

    def draw_masks(self, X) -> Masks | None:
        """One training batch's masks (``Masks``, NumPy arrays in the backend's dtype), or None when the
        model drops nothing: ``X`` is the (batch, steps) batch they are for. The order of the draws is
        part of the contract (see the module's docstring)."""
        c = self.config
        if not c.draws_masks:
            return None
        rng, dtype = self._dropout_rng, self.dtype
        batch, steps = np.shape(X)
        inputs = recurrent = outputs = None
        if c.embed_dropout:
            # a character dropped is dropped wherever it occurs in the batch: its row of W_emb is zero
            rows = whole_mask(rng, (c.vocab_size,), c.embed_dropout, dtype)
            inputs = rows[np.asarray(X).T][..., None]
        if c.input_dropout:
            locked = dropout_mask(rng, (1, batch, c.embed_dim), c.input_dropout, dtype)
            inputs = locked if inputs is None else inputs * locked
        if c.weight_dropout:
            names = c.cell_math.recurrent_weights
            shape = (c.num_hiddens, c.num_hiddens)
            recurrent = [{name: whole_mask(rng, shape, c.weight_dropout, dtype) for name in names}
                         for _ in range(c.num_layers)]
        if c.dropout or c.hidden_dropout or c.output_dropout:
            outputs = []
            for layer in range(c.num_layers):
                mask = dropout_mask(rng, (steps, batch, c.num_hiddens), c.dropout, dtype) if c.dropout else None
                locked_rate = c.output_dropout if layer == c.num_layers - 1 else c.hidden_dropout
                if locked_rate:
                    locked = dropout_mask(rng, (1, batch, c.num_hiddens), locked_rate, dtype)
                    mask = locked if mask is None else mask * locked
                outputs.append(mask)
        return Masks(inputs, recurrent, outputs)
