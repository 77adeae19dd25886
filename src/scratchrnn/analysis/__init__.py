"""Looking inside a trained model: plain functions, NumPy arrays in and out, no HTTP and no HTML.

Everything is computed from a checkpoint's parameters with the reference cells (``scratchrnn.cells``)
in float64, and every gradient by their hand-written backpropagation through time:

- ``reference``: the forward pass with every layer's states and gates kept, and the next-character
  distribution at each position (its likeliest candidates, the surprise of the actual next one);
- ``gradients``: how strongly each earlier input drives a prediction (saliency), and the gradient norm
  with respect to each hidden state as it flows back through time;
- ``features``: simple features of a text, the units that track each best, and gate saturation;
- ``curves``: a run's training curves from its metrics.jsonl.

``analyze`` runs them all on one text. ``scratchrnn serve``'s explorer page and ``scratchrnn explain``
are thin layers over this package (``scratchrnn.explorer``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .curves import training_curves
from .features import (Feature, UnitMatch, auc, average_ranks, gate_saturation, pearson, text_features,
                       unit_search)
from .gradients import Gradients, prediction_gradients, state_gradients
from .reference import (GATE_NAMES, SIGMOID_GATES, Predictions, ReferenceModel, Trace, as_tokens, layer_series,
                        predictions)


@dataclass
class TextAnalysis:
    """Everything the views show for one text of T tokens."""

    ids: np.ndarray                     # (T,)
    predictions: Predictions
    series: list                        # per layer: {"H": (T, hidden), ...} (``layer_series``)
    features: list                      # the text's Features
    matches: dict                       # feature name -> its best UnitMatches
    saturation: list                    # per layer: {gate letter: (left (hidden,), right (hidden,))}
    gradients: Gradients | None         # for the positions asked for, else None


def analyze(model: ReferenceModel, ids: Sequence[int], text: str, *, top_k: int = 5, top_units: int = 5,
            gradient_positions: Sequence[int] | None = None) -> TextAnalysis:
    """Run every analysis on a text: ``ids`` its tokens, ``text`` the characters they stand for (one
    per token, for the features). ``gradient_positions``: where to take gradients (None: nowhere)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) != len(text):
        raise ValueError(f"text has {len(text)} characters but ids {len(ids)} tokens: one token per character")
    trace = model.run(as_tokens(ids))
    series = layer_series(model.config, trace)
    features = text_features(text)
    matches = {f.name: unit_search(f, series, top_units) for f in features}
    saturation = [{gate: gate_saturation(by_name[gate]) for gate in SIGMOID_GATES.get(model.config.cell, ())}
                  for by_name in series]
    gradients = None
    if gradient_positions is not None:
        gradients = prediction_gradients(model, ids, gradient_positions)
    return TextAnalysis(ids, predictions(trace, top_k), series, features, matches, saturation, gradients)


__all__ = ["GATE_NAMES", "SIGMOID_GATES", "Feature", "Gradients", "Predictions", "ReferenceModel", "TextAnalysis",
           "Trace", "UnitMatch", "analyze", "as_tokens", "auc", "average_ranks", "gate_saturation", "layer_series",
           "pearson", "prediction_gradients", "predictions", "state_gradients", "text_features", "training_curves",
           "unit_search"]
