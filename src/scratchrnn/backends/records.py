"""What a hand-written backward pass keeps from a forward pass, one record per layer and one per
minibatch: the same for the NumPy backend and the torch backend's fast path, each holding its own
framework's arrays."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class LayerRecord:
    """What the backward pass needs from one layer of one forward pass."""

    weights: Any                  # the layer's weights side by side, as its cell's loops used them
    cache: Any                    # the cell's own (see the cells' forward)
    inputs: Any | None            # (steps, batch, hidden): what reached the layer (layers above 0)
    mask: Any | None              # the dropout mask applied to its output (training with dropout)
    recurrent_masks: dict | None = None   # weight dropout's masks of its recurrent weights, by plain name


@dataclass
class BatchRecord:
    """What the backward pass needs from one forward pass over a (batch, steps) minibatch."""

    tokens: Any                   # (steps, batch) input indices, time-major
    layers: list                  # a LayerRecord per layer, layer 0 first
    top: Any                      # (steps, batch, hidden): what the output layer read
    final_state: tuple            # the flat state after the batch
    loops: Any                    # the step loops that ran (and that its backward pass runs)
    embedded: Any | None = None   # (steps * batch, embed) for a learned embedding
    W_hq: Any | None = None       # the output layer's weights as they were, where they change in place
    raw_top: Any | None = None    # (steps, batch, hidden): the last layer's output before dropout (TAR)
    inputs_mask: Any | None = None  # what the embedded inputs were multiplied by (Masks.inputs)
    output_weights: dict | None = None  # tied weights: W_emb (and W_proj) as they were, where they change in place

    @property
    def num_steps(self) -> int:
        return self.tokens.shape[0]
