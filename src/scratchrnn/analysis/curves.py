"""A run's training curves, read from its ``metrics.jsonl`` (one record per epoch, and one per evaluation
inside an epoch at its fractional epoch, ``rundir`` and ``progress``)."""
from __future__ import annotations

import math
from pathlib import Path

from ..rundir import RunDirectory

CURVES = ("train_perplexity", "val_perplexity", "lr", "tokens_per_sec")


def training_curves(run_dir: str | Path) -> dict[str, list]:
    """``{"epoch": [...], "train_perplexity": [...], ...}``: one entry per record in the order written (an
    evaluation of --eval-every-steps at its share of the epoch: 2.5 half-way through the third),
    None where a record lacks a value or holds one that is not a finite number. Reading takes no lock,
    so a run that ``scratchrnn train`` is writing can be read at any moment (a line it is halfway
    through is skipped by ``RunDirectory.read_metrics``)."""
    records = [r for r in RunDirectory(run_dir).read_metrics() if _number(r.get("epoch")) is not None]
    curves = {"epoch": [r["epoch"] for r in records]}
    for name in CURVES:
        curves[name] = [_number(r.get(name)) for r in records]
    return curves


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value
