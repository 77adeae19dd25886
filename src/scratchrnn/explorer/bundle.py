"""The analyses of ``scratchrnn.analysis`` as the JSON the explorer page reads, in the same shape whether
the page asks the server for it (``scratchrnn serve``) or finds it inside the file (``scratchrnn
explain``).

Large arrays travel as base64: the states and gates of every unit at every position (values a heat map
shows, so 256 levels between their minimum and maximum are plenty: ``quantized``), and the gradient
norms, which span many orders of magnitude along a text (float32: ``floats``).
"""
from __future__ import annotations

import base64
from typing import Sequence

import numpy as np

from ..analysis import GATE_NAMES, SIGMOID_GATES, Gradients, ReferenceModel, TextAnalysis, analyze

SERIES_NAMES = {"H": "hidden state H", "C": "memory cell C"}


def quantized(values: np.ndarray) -> dict:
    """A float array as 8-bit levels between its minimum and maximum: the page maps level q back to
    min + q (max - min) / 255."""
    values = np.asarray(values, dtype=np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    scale = (hi - lo) / 255 if hi > lo else 1.0
    levels = np.clip(np.rint((values - lo) / scale), 0, 255).astype(np.uint8)
    return {"shape": list(values.shape), "min": lo, "max": hi, "u8": base64.b64encode(levels.tobytes()).decode()}


def floats(values: np.ndarray) -> dict:
    """A float array as little-endian float32."""
    values = np.ascontiguousarray(values, dtype="<f4")
    return {"shape": list(values.shape), "f32": base64.b64encode(values.tobytes()).decode()}


def model_summary(config, vocab_tokens: Sequence[str], *, model_id: str, cleaning: str, info: dict) -> dict:
    """What the page says about the model, and how it names its series."""
    series = {"H": SERIES_NAMES["H"]}
    if config.cell == "lstm":
        series["C"] = SERIES_NAMES["C"]
    series.update(GATE_NAMES.get(config.cell, {}))
    epoch = info.get("epoch")
    return {"id": model_id, "cell": config.cell, "layers": config.num_layers, "hidden": config.num_hiddens,
            "embedding": config.embedding, "activation": config.activation, "vocab": list(vocab_tokens),
            "cleaning": cleaning, "epoch": epoch if isinstance(epoch, int) else None,
            "series": series, "sigmoid_gates": list(SIGMOID_GATES.get(config.cell, ()))}


def gradients_json(gradients: Gradients) -> dict:
    return {"positions": gradients.positions.tolist(), "targets": gradients.targets.tolist(),
            "inputs": floats(gradients.inputs), "states": [floats(s) for s in gradients.states]}


def analysis_json(result: TextAnalysis, text: str) -> dict:
    """One text's analysis (``analysis.analyze``) for the page."""
    pred = result.predictions
    return {
        "text": text,
        "ids": result.ids.tolist(),
        "top_ids": pred.top_ids.tolist(),
        "top_probs": np.round(pred.top_probs, 5).tolist(),
        "surprise": np.round(pred.surprise, 4).tolist(),
        "series": [{name: quantized(values) for name, values in layer.items()} for layer in result.series],
        "features": [{"name": f.name, "kind": f.kind, "description": f.description,
                      "values": f.values.tolist(),
                      "matches": [{"layer": m.layer, "series": m.series, "unit": m.unit,
                                   "score": round(m.score, 4), "strength": round(m.strength(f.kind), 4)}
                                  for m in result.matches[f.name]]}
                     for f in result.features],
        "saturation": [{gate: {"left": np.round(left, 4).tolist(), "right": np.round(right, 4).tolist()}
                        for gate, (left, right) in layer.items()} for layer in result.saturation],
        "gradients": None if result.gradients is None else gradients_json(result.gradients),
    }


def analyze_text(model: ReferenceModel, ids: Sequence[int], text: str, *, all_gradients: bool) -> dict:
    """``analysis_json`` of ``analysis.analyze`` on a text; ``all_gradients`` takes the gradients at every
    position (a file that must answer every click by itself), else at none (a server answers them one
    at a time, ``gradients_json``)."""
    positions = range(len(ids)) if all_gradients else None
    return analysis_json(analyze(model, ids, text, gradient_positions=positions), text)
