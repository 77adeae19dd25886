"""Dropout masks for the autograd backends, drawn in NumPy exactly as the reference draws them.

The NumPy backend draws one mask per layer, layer 0 first, each (steps, batch, hidden), from its own
generator (``numpy.backend.dropout_generator``). A backend that draws its masks from a generator in
the same state, in the same order, applies the very same masks -- which is what lets the contract
tests compare training with dropout across frameworks, and resume a run exactly.
"""
from __future__ import annotations

import numpy as np

from ..cells import dropout_mask
from .numpy.backend import dropout_generator


class DropoutMasks:
    """Mixin for a Backend: ``dropout_seed`` seeds the generator; its state goes into checkpoints."""

    def _init_dropout(self, seed: int) -> None:
        self._dropout_rng = dropout_generator(seed)

    def dropout_rng_state(self) -> dict:
        """The state of the generator the dropout masks come from (JSON-able), for checkpoints."""
        return self._dropout_rng.bit_generator.state

    def set_dropout_rng_state(self, state: dict) -> None:
        self._dropout_rng.bit_generator.state = state

    def draw_masks(self, X) -> list[np.ndarray] | None:
        """One training batch's masks, as NumPy arrays (one per layer, (steps, batch, hidden), time-
        major), or None without dropout: ``X`` is the (batch, steps) batch they are for."""
        rate = self.config.dropout
        if not rate:
            return None
        batch, steps = np.shape(X)
        shape = (steps, batch, self.config.num_hiddens)
        return [dropout_mask(self._dropout_rng, shape, rate, self.numpy_dtype())
                for _ in range(self.config.num_layers)]
