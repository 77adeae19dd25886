"""The book's runs on The Time Machine, shared by reproduce_chapter.py (the RNN of chapter 8.5) and
reproduce_cells.py (the GRU and LSTM of chapters 9.1 and 9.2).

A run is ``scratchrnn train`` with the book's settings -- the first 10,000 character tokens, batches of
32 x 35, learning rate 1, clipping at 1 -- in a process of its own (MXNet's in .venv-mxnet), one after
the other, so the tokens/s of different runs are measured on the same machine in one sitting. Its row
is read back from the run directory: the per-epoch ``metrics.jsonl`` that ``train`` writes, and
``summary.json``, the summary ``train --json`` printed (the continuations of the best weights) with the
wall time of the whole process, which ``train`` below keeps there.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
METRICS_FILE = "metrics.jsonl"   # scratchrnn.rundir.METRICS_FILE: one line per epoch
SUMMARY_FILE = "summary.json"    # kept by this module beside the run's own files
PROMPTS = ("time traveller", "traveller")   # what the book continues after training


@dataclass(frozen=True)
class BookRun:
    """One training with the book's settings; ``cell`` and ``hidden`` say which chapter's model."""

    backend: str
    sampling: str = "sequential"
    seed: int = 0
    cell: str = "rnn"
    hidden: int = 512

    @property
    def name(self) -> str:
        # the RNN's directories keep the names reproduce_chapter.py has always given them
        cell = "" if self.cell == "rnn" else f"{self.cell}-"
        return f"{cell}{self.backend}-{self.sampling}" + (f"-seed{self.seed}" if self.seed else "")

    def key(self) -> tuple:
        return (self.cell, self.backend, self.sampling, self.seed)

    def describe(self) -> dict:
        return {"backend": self.backend, "sampling": self.sampling, "seed": self.seed, "cell": self.cell,
                "hidden": self.hidden}


def row_key(row: dict) -> tuple:
    """The ``BookRun.key`` of a recorded row (rows of chapter.json written before cells were added
    name no cell: they are the RNN's)."""
    return (row.get("cell", "rnn"), row["backend"], row["sampling"], row["seed"])


def python_for(backend: str) -> Path:
    """The interpreter that trains a backend: MXNet lives in an environment of its own."""
    if backend == "mxnet":
        return ROOT / ".venv-mxnet" / "bin" / "python"
    return Path(sys.executable)


def train(run: BookRun, epochs: int, out_root: Path) -> str | None:
    """Train one run into ``out_root/run.name``; returns None, or the error line it ended with."""
    directory = out_root / run.name
    cmd = [str(python_for(run.backend)), "-m", "scratchrnn", "train", "--backend", run.backend,
           "--cell", run.cell, "--sampling", run.sampling, "--epochs", str(epochs), "--batch-size", "32",
           "--num-steps", "35", "--hidden", str(run.hidden), "--lr", "1", "--max-tokens", "10000",
           "--seed", str(run.seed), "--out", str(directory), "--overwrite", "--json"]
    print(f"-> {shlex.join(cmd[1:])}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall_seconds = time.perf_counter() - started
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
    summary = json.loads(proc.stdout)
    summary["wall_seconds"] = wall_seconds
    (directory / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"   perplexity {summary['perplexity']:.2f}, {summary['tokens_per_sec']:.0f} tokens/s, "
          f"{wall_seconds:.0f} s", flush=True)
    return None


def row_from_run(run: BookRun, out_root: Path) -> dict | None:
    """The recorded row of a finished run, or None where its directory holds no finished run."""
    directory = out_root / run.name
    metrics_path, summary_path = directory / METRICS_FILE, directory / SUMMARY_FILE
    if not (metrics_path.exists() and summary_path.exists()):
        return None
    records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    summary = json.loads(summary_path.read_text())
    history = [record["train_perplexity"] for record in records]
    if not history:
        return None
    best = min(range(len(history)), key=history.__getitem__)
    held_out = [record["val_perplexity"] for record in records if record.get("val_perplexity") is not None]
    finished = datetime.datetime.fromtimestamp(summary_path.stat().st_mtime)
    return {**run.describe(), "epochs": len(history), "perplexity": history[-1],
            "best_perplexity": history[best], "best_epoch": best + 1,
            "held_out_perplexity": held_out[-1] if held_out else None,
            "tokens_per_sec": summary["tokens_per_sec"],
            "seconds": sum(record["seconds"] for record in records),
            "wall_seconds": summary["wall_seconds"], "samples": summary["samples"],
            "perplexity_history": history, "finished": finished.isoformat(timespec="minutes")}


def train_and_collect(runs: list[BookRun], to_train: list[BookRun], *, epochs: int, out_root: Path,
                      record_path: Path, missing_only: bool = False) -> tuple[list[dict], dict]:
    """Train ``to_train`` (only those not on record yet, with ``missing_only``), then return the rows
    of all ``runs``, in their order, and the errors of the runs that failed (by key).

    A run whose directory is gone keeps the row already on record in ``record_path``, so partial
    reruns add to the table.
    """
    on_record = {}
    if record_path.exists():
        on_record = {row_key(row): row for row in json.loads(record_path.read_text())["runs"]
                     if "error" not in row}
    errors = {}
    for run in to_train:
        if missing_only and (run.key() in on_record or row_from_run(run, out_root) is not None):
            continue
        if not python_for(run.backend).exists():
            print(f"-> {run.backend}: no environment, skipped")
            continue
        error = train(run, epochs, out_root)
        if error:
            errors[run.key()] = error
    rows = []
    for run in runs:
        if run.key() in errors:
            rows.append({**run.describe(), "error": errors[run.key()]})
        elif (row := row_from_run(run, out_root) or on_record.get(run.key())) is not None:
            rows.append(row)
    return rows, errors


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def finished_span(rows: list[dict]) -> str:
    finished = sorted(row["finished"] for row in rows if "finished" in row)
    return f"{finished[0]} to {finished[-1]}" if finished else "never"


Column = tuple[str, Callable[[dict], str]]


def markdown_table(rows: list[dict], columns: list[Column]) -> str:
    """A Markdown table of ``rows``, a column per (heading, text of a row); a failed run's row says so."""
    lines = ["| " + " | ".join(heading for heading, _ in columns) + " |", "|---" * len(columns) + "|"]
    for row in rows:
        if "error" in row:
            cells = [cell(row) for _, cell in columns[:3]] + [f"failed: {row['error']}"]
            cells += [""] * (len(columns) - len(cells))
        else:
            cells = [cell(row) for _, cell in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def sample_cell(prompt: str) -> Callable[[dict], str]:
    """A table cell with a row's continuation of ``prompt``, as code (a ``|`` in it escaped)."""
    return lambda row: "`" + row["samples"].get(prompt, "").replace("|", "\\|") + "`"


def plot_rows(rows: list[dict], path_stem: Path, title: str, label: Callable[[dict], str]) -> None:
    """One perplexity-vs-epoch figure of every row with a curve (PNG and SVG)."""
    from scratchrnn.plotting import plot_perplexity

    curves = {label(row): row["perplexity_history"] for row in rows if "perplexity_history" in row}
    if curves:
        first, *others = curves
        plot_perplexity(curves[first], path_stem, title=title, label=first,
                        extra_curves={name: curves[name] for name in others})
