"""The experiments by name, and the one entry point that runs one and writes its report."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import backends, faults
from ..data import num_batches
from ..errors import UserError
from . import cells, hyperparams, no_clip, no_detach, onehot_vs_embedding, other_text, relu, sampling
from .harness import Context
from .report import Report, finite

REPORT_NAME = "report.md"
RESULTS_NAME = "results.json"


@dataclass(frozen=True)
class Experiment:
    """One exercise: what runs it, the line ``--help`` shows, and whether it needs ``--data``."""

    run: Callable[[Context], tuple[Report, dict]]
    description: str
    needs_data: bool = False


EXPERIMENTS: dict[str, Experiment] = {
    "onehot-vs-embedding": Experiment(
        onehot_vs_embedding.run, "exercise 1: one-hot @ W_xh is a row lookup; one-hot vs learned embeddings"),
    "hyperparams": Experiment(
        hyperparams.run, "exercise 2: sweep hidden size, time steps, lr (epochs from the curves); best "
                         "held-out perplexity"),
    "sampling": Experiment(
        sampling.run, "exercise 3: greedy vs sampling at temperatures / alpha, top-k, top-p"),
    "no-clip": Experiment(
        no_clip.run, "exercise 4: with and without gradient clipping, at two learning rates"),
    "no-detach": Experiment(
        no_detach.run, "exercise 5: detached vs not detached state: time and perplexity"),
    "relu": Experiment(relu.run, "exercise 6: ReLU with and without clipping, against tanh"),
    "other-text": Experiment(
        other_text.run, "exercise 2: train on the --data text too, evaluate each model on both",
        needs_data=True),
    "cells": Experiment(
        cells.run, "chapter 9: rnn vs gru vs lstm vs a 2-layer lstm on the same text and budget"),
}


def describe_experiments() -> str:
    """One line per experiment, for ``scratchrnn experiment --help``."""
    width = max(map(len, EXPERIMENTS))
    return "\n".join(f"  {name:<{width}}  {e.description}" for name, e in EXPERIMENTS.items())


def _check_long_enough(ctx: Context) -> None:
    """Every experiment fits in what is left after the held-out part, with twice the time steps."""
    corpus, _ = ctx.corpus()
    scale = ctx.scale
    usable = int(len(corpus) * (1 - scale.val_fraction))
    if num_batches(usable, scale.batch_size, 2 * scale.num_steps, "sequential") < 1:
        needed = math.ceil((scale.batch_size * 2 * scale.num_steps + 2 * scale.num_steps + 1)
                           / (1 - scale.val_fraction))
        raise UserError(f"{ctx.data or 'the text'} is too short: {len(corpus)} tokens after cleaning, the "
                        f"{'quick' if ctx.quick else 'full'} experiments need at least {needed}")


def run_experiment(name: str, out: str | Path | None = None, *, quick: bool = False,
                   backend: str = "numpy", data: str | None = None, seed: int = 0,
                   epochs: int | None = None, hidden: int | None = None,
                   log: Callable[[str], None] = print) -> Path:
    """Run one experiment and write its report; returns the report's path."""
    if name not in EXPERIMENTS:
        raise UserError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs must be a positive integer, not {epochs}")
    if hidden is not None and hidden < 1:
        raise UserError(f"--hidden must be a positive integer, not {hidden}")
    out = Path(out) if out is not None else Path("runs") / "experiments" / name
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    experiment = EXPERIMENTS[name]
    if experiment.needs_data and data is None:
        raise UserError(f"the {name} experiment needs --data PATH: the text to compare with the Time Machine")
    backends.backend_class(backend)  # an unknown or missing framework fails before any work
    ctx = Context(name, out, quick, backend, data, seed, epochs, hidden, log)
    _check_long_enough(ctx)  # a missing, unreadable or too short --data fails before anything is written
    out.mkdir(parents=True, exist_ok=True)
    _check_writable(out)      # a full or read-only disk says so now, not after the experiment's runs
    started = time.perf_counter()
    report, results = experiment.run(ctx)
    seconds = time.perf_counter() - started
    command = f"scratchrnn experiment {name} --out {out}" + (" --quick" if quick else "")
    command += "".join(f" {flag} {value}" for flag, value in (
        ("--backend", backend if backend != "numpy" else None), ("--data", data),
        ("--seed", seed or None), ("--epochs", epochs), ("--hidden", hidden)) if value is not None)
    report.text(f"Regenerate with `{command}` ({seconds:.0f} s on the machine that wrote this).")
    path = out / REPORT_NAME
    faults.point("experiment.report-writing")
    path.write_text(report.render(), encoding="utf-8")
    results = {"experiment": name, "quick": quick, "backend": backend, "data": data, "seed": seed,
               "seconds": seconds, "command": command, **results}
    (out / RESULTS_NAME).write_text(json.dumps(finite(results), indent=1) + "\n", encoding="utf-8")
    return path


def _check_writable(out: Path) -> None:
    """Write and remove a small file in ``out``: OSError (ENOSPC, EROFS, EACCES...) if it cannot be."""
    probe = out / f".probe-{os.getpid()}"
    try:
        faults.point("experiment.out-probed")
        with open(probe, "wb") as f:
            f.write(b"probe")
            f.flush()
            os.fsync(f.fileno())
    finally:
        probe.unlink(missing_ok=True)
