"""Dropout masks, drawn in NumPy by every backend exactly as the reference draws them.

The NumPy backend draws one mask per layer, layer 0 first, each (steps, batch, hidden), from a
generator of its own (``dropout_generator``). Every other backend draws its masks from a generator in
the same state, in the same order, and so applies the very same masks -- which is what lets the
contract tests compare training with dropout across frameworks, and resume a run exactly. The
generator's state goes into checkpoints.
"""
from __future__ import annotations

import numpy as np

from ..cells import RankRows, dropout_mask


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

    def draw_masks(self, X) -> list[np.ndarray] | None:
        """One training batch's masks, as NumPy arrays (one per layer, (steps, batch, hidden), time-
        major), or None without dropout: ``X`` is the (batch, steps) batch they are for."""
        rate = self.config.dropout
        if not rate:
            return None
        batch, steps = np.shape(X)
        shape = (steps, batch, self.config.num_hiddens)
        return [dropout_mask(self._dropout_rng, shape, rate, self.dtype)
                for _ in range(self.config.num_layers)]
