"""Reproduce the chapter's result with every backend and record one table.

    .venv/bin/python scripts/reproduce_chapter.py            # 500 epochs, every run below, ~30 min on 2 cores
    .venv/bin/python scripts/reproduce_chapter.py --epochs 5 --backends numpy torch   # a quick look
    .venv/bin/python scripts/reproduce_chapter.py --table-only   # rebuild the table from runs/chapter
    .venv/bin/python scripts/reproduce_chapter.py --missing      # only the runs not on record yet

Each run is `scratchrnn train` with the chapter's settings (batch 32, 35 steps, 512 hidden, lr 1, first
10,000 tokens, clipping at 1) in a process of its own -- MXNet's in .venv-mxnet -- one after the other,
so the tokens/s of the backends are measured on the same machine in one sitting (book_runs.py). Every
backend starts from the same weights and sees the same batches, so for one seed their curves should
agree; a second seed for every backend, and a third for numpy, show how much the last epoch depends on
the draw. Writes docs/results/chapter.json and docs/results/chapter.md (summarised in README.md and
docs/results.md). A run whose directory is gone keeps the row already on record in chapter.json, so
partial reruns add to the table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from book_runs import ROOT, BookRun, finished_span, machine, markdown_table, plot_rows, sample_cell, \
    train_and_collect

BACKENDS = ("numpy", "torch", "tensorflow", "mxnet", "paddle")
RUNS = ([BookRun(backend) for backend in BACKENDS]
        + [BookRun("numpy", "random"), BookRun("torch", "random")]
        + [BookRun(backend, seed=1) for backend in BACKENDS] + [BookRun("numpy", seed=2)])
COLUMNS = [("backend", lambda row: row["backend"]), ("sampling", lambda row: row["sampling"]),
           ("seed", lambda row: str(row["seed"])), ("epochs", lambda row: str(row["epochs"])),
           ("last-epoch perplexity", lambda row: f"{row['perplexity']:.2f}"),
           ("lowest (epoch)", lambda row: f"{row['best_perplexity']:.2f} ({row['best_epoch']})"),
           ("tokens/s", lambda row: f"{row['tokens_per_sec']:,.0f}"),
           ("`time traveller` continues as", sample_cell("time traveller"))]


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
    chosen = [] if args.table_only else [run for run in RUNS
                                         if args.backends is None or run.backend in args.backends]
    # the table holds every run on record, not only those just made
    rows, errors = train_and_collect(RUNS, chosen, epochs=args.epochs, out_root=args.out,
                                     record_path=record_path, missing_only=args.missing)
    args.record.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps({"machine": machine(), "runs": rows}, indent=2) + "\n")
    table = markdown_table(rows, COLUMNS)
    (args.record / "chapter.md").write_text(
        f"Runs finished {finished_span(rows)} on {machine()}, one after the other, by "
        f"`scripts/reproduce_chapter.py`.\n\n{table}")
    plot_rows(rows, args.record / "chapter", "The chapter's settings, every backend",
              lambda row: f"{row['backend']}, {row['sampling']}, seed {row['seed']}")
    print(table)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
