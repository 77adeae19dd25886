"""Reproduce the chapter's result with every backend and record one table.

    .venv/bin/python scripts/reproduce_chapter.py            # 500 epochs, every run below, ~30 min on 2 cores
    .venv/bin/python scripts/reproduce_chapter.py --epochs 5 --backends numpy torch   # a quick look
    .venv/bin/python scripts/reproduce_chapter.py --table-only   # rebuild the table from runs/chapter
    .venv/bin/python scripts/reproduce_chapter.py --missing      # only the runs not on record yet

Each run is `scratchrnn train` with the chapter's settings (batch 32, 35 steps, 512 hidden, lr 1, first
10,000 tokens, clipping at 1) in a process of its own -- MXNet's in .venv-mxnet -- one after the other,
so the tokens/s of the backends are measured on the same machine in one sitting. Every backend starts
from the same weights and sees the same batches, so for one seed their curves should agree; a second
seed for every backend, and a third for numpy, show how much the last epoch depends on the draw. Writes
docs/results/chapter.json and docs/results/chapter.md (the table README.md shows). A run whose
directory is gone keeps the row already on record in chapter.json, so partial reruns add to the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (backend, sampling, seed)
BACKENDS = ("numpy", "torch", "tensorflow", "mxnet", "paddle")
RUNS = ([(backend, "sequential", 0) for backend in BACKENDS] + [("numpy", "random", 0), ("torch", "random", 0)]
        + [(backend, "sequential", 1) for backend in BACKENDS] + [("numpy", "sequential", 2)])


def python_for(backend: str) -> Path:
    venv = ".venv-mxnet" if backend == "mxnet" else ".venv"
    return ROOT / venv / "bin" / "python"


def run_dir(out_root: Path, backend: str, sampling: str, seed: int) -> Path:
    return out_root / (f"{backend}-{sampling}" + (f"-seed{seed}" if seed else ""))


def train(backend: str, sampling: str, seed: int, epochs: int, out_root: Path) -> str | None:
    """Run one training; returns None, or the error line it ended with."""
    cmd = [str(python_for(backend)), "-m", "scratchrnn", "train", "--backend", backend, "--sampling", sampling,
           "--epochs", str(epochs), "--batch-size", "32", "--num-steps", "35", "--hidden", "512", "--lr", "1",
           "--max-tokens", "10000", "--seed", str(seed), "--out", str(run_dir(out_root, backend, sampling, seed)),
           "--overwrite", "--json"]
    print(f"-> {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
    result = json.loads(proc.stdout)
    print(f"   perplexity {result['perplexity']:.2f}, {result['tokens_per_sec']:.0f} tokens/s", flush=True)
    return None


def row_from_run(out_root: Path, backend: str, sampling: str, seed: int) -> dict | None:
    path = run_dir(out_root, backend, sampling, seed) / "metrics.json"
    if not path.exists():
        return None
    metrics = json.loads(path.read_text())
    history = metrics["perplexity_history"]
    best = min(range(len(history)), key=history.__getitem__)
    return {"backend": backend, "sampling": sampling, "seed": seed, "epochs": len(history),
            "perplexity": metrics["perplexity"], "best_perplexity": history[best], "best_epoch": best + 1,
            "tokens_per_sec": metrics["tokens_per_sec"], "seconds": metrics["seconds"],
            "samples": metrics["samples"], "perplexity_history": history,
            "finished": datetime.datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="minutes")}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| backend | sampling | seed | epochs | last-epoch perplexity | lowest (epoch) | tokens/s | "
             "`time traveller` continues as |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['backend']} | {row['sampling']} | {row['seed']} | | failed: {row['error']} "
                         f"| | | |")
            continue
        sample = row["samples"]["time traveller"].replace("|", "\\|")
        lines.append(f"| {row['backend']} | {row['sampling']} | {row['seed']} | {row['epochs']} | "
                     f"{row['perplexity']:.2f} | {row['best_perplexity']:.2f} ({row['best_epoch']}) | "
                     f"{row['tokens_per_sec']:,.0f} | `{sample}` |")
    return "\n".join(lines) + "\n"


def plot_runs(rows: list[dict], path_stem: Path) -> None:
    """One perplexity-vs-epoch figure of every run on record (PNG and SVG)."""
    from scratchrnn.plotting import plot_perplexity

    curves = {f"{row['backend']}, {row['sampling']}, seed {row['seed']}": row["perplexity_history"]
              for row in rows if "perplexity_history" in row}
    if curves:
        first, *others = curves
        plot_perplexity(curves[first], path_stem, title="The chapter's settings, every backend",
                        label=first, extra_curves={name: curves[name] for name in others})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=500, help="epochs per run (the chapter: 500)")
    parser.add_argument("--backends", nargs="*", default=None, help="only the runs of these backends")
    parser.add_argument("--table-only", action="store_true", help="train nothing: tabulate existing runs")
    parser.add_argument("--missing", action="store_true", help="train only the runs not on record yet")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "chapter", help="run directories")
    parser.add_argument("--record", type=Path, default=ROOT / "docs" / "results",
                        help="where chapter.json and chapter.md are written")
    args = parser.parse_args()
    record_path = args.record / "chapter.json"
    on_record = {}
    if record_path.exists():
        on_record = {(row["backend"], row["sampling"], row["seed"]): row
                     for row in json.loads(record_path.read_text())["runs"] if "error" not in row}
    runs = [run for run in RUNS if (args.backends is None or run[0] in args.backends)
            and not (args.missing and (run in on_record or row_from_run(args.out, *run) is not None))]
    errors = {}
    if not args.table_only:
        for backend, sampling, seed in runs:
            if not python_for(backend).exists():
                print(f"-> {backend}: no environment, skipped")
                continue
            error = train(backend, sampling, seed, args.epochs, args.out)
            if error:
                errors[(backend, sampling, seed)] = error
    rows = []
    for run in RUNS:   # every run on record, not only those just made
        if run in errors:
            rows.append({"backend": run[0], "sampling": run[1], "seed": run[2], "error": errors[run]})
        elif (row := row_from_run(args.out, *run) or on_record.get(run)) is not None:
            rows.append(row)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    args.record.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps({"machine": machine, "runs": rows}, indent=2) + "\n")
    table = markdown_table(rows)
    finished = sorted(row["finished"] for row in rows if "finished" in row)
    span = f"{finished[0]} to {finished[-1]}" if finished else "never"
    (args.record / "chapter.md").write_text(
        f"Runs finished {span} on {machine}, one after the other, by `scripts/reproduce_chapter.py`.\n\n{table}")
    plot_runs(rows, args.record / "chapter")
    print(table)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
