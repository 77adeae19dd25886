"""Reproduce the book's GRU (9.1) and LSTM (9.2) results on The Time Machine, beside the chapter's RNN.

    .venv/bin/python scripts/reproduce_cells.py          # GRU and LSTM on numpy and torch, 500 epochs each
    .venv/bin/python scripts/reproduce_cells.py --epochs 5 --backends numpy   # a quick look
    .venv/bin/python scripts/reproduce_cells.py --table-only   # rebuild the record from runs/cells

The book's settings for both cells: ``batch_size, num_steps = 32, 35`` and ``load_data_time_machine``
(the first 10,000 character tokens, sequential partitioning), 256 hidden units, and ``train_ch8(model,
train_iter, vocab, lr=1, num_epochs=500)`` (clipping at 1); it reports a perplexity of about 1.1 for
both. Each run is ``scratchrnn train --cell gru|lstm`` with those settings in a process of its own, as
reproduce_chapter.py runs the RNN (book_runs.py). Writes docs/results/cells.{md,json,png}: the last and
lowest perplexity, tokens/s, wall time and the continuations of "time traveller" and "traveller" of
each run, the per-epoch curves, and beside them the RNN's rows of docs/results/chapter.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

from book_runs import PROMPTS, ROOT, BookRun, finished_span, machine, markdown_table, plot_rows, row_key, \
    sample_cell, train_and_collect

BOOK_HIDDEN = 256                 # num_hiddens in 9.1 and 9.2
BOOK_PERPLEXITY = 1.1             # what the book prints after training either cell
CELLS = ("gru", "lstm")
BACKENDS = ("numpy", "torch")
# the chapter's RNN runs shown beside the cells: same data, batches, learning rate and partitioning
RNN_KEYS = [("rnn", backend, "sequential", 0) for backend in BACKENDS]

COLUMNS = [("model", lambda row: f"{row.get('cell', 'rnn')}, {row.get('hidden', 512)} hidden"),
           ("backend", lambda row: row["backend"]),
           ("epochs", lambda row: str(row["epochs"])),
           ("last-epoch perplexity", lambda row: f"{row['perplexity']:.2f}"),
           ("lowest (epoch)", lambda row: f"{row['best_perplexity']:.2f} ({row['best_epoch']})"),
           ("tokens/s", lambda row: f"{row['tokens_per_sec']:,.0f}"),
           ("wall time", lambda row: f"{row['wall_seconds']:.0f} s" if "wall_seconds" in row
            else f"{row['seconds']:.0f} s (training)"),
           *[(f"`{prompt}` continues as", sample_cell(prompt)) for prompt in PROMPTS]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=500, help="epochs per run (the book: 500)")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--hidden", type=int, default=BOOK_HIDDEN, help="hidden units (the book: 256)")
    parser.add_argument("--table-only", action="store_true", help="train nothing: tabulate existing runs")
    parser.add_argument("--missing", action="store_true", help="train only the runs not on record yet")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "cells", help="run directories")
    parser.add_argument("--record", type=Path, default=ROOT / "docs" / "results",
                        help="where cells.json, cells.md and cells.png are written")
    parser.add_argument("--chapter-record", type=Path, default=ROOT / "docs" / "results" / "chapter.json",
                        help="the RNN's record, shown beside the cells")
    return parser.parse_args(argv)


def rnn_rows(chapter_record: Path) -> list[dict]:
    """The chapter's RNN runs that share the cells' settings but for the hidden units (512 there)."""
    if not chapter_record.exists():
        return []
    by_key = {row_key(row): row for row in json.loads(chapter_record.read_text())["runs"] if "error" not in row}
    return [{**by_key[key], "cell": "rnn", "hidden": by_key[key].get("hidden", 512)}
            for key in RNN_KEYS if key in by_key]


def summary_sentence(rows: list[dict]) -> str:
    """How the cells' last epochs compare with the book's ~1.1, from the measured rows."""
    finished = [row for row in rows if "error" not in row]
    if not finished:
        return "No run has finished yet."
    last = [row["perplexity"] for row in finished]
    epochs = sorted({row["epochs"] for row in finished})
    return (f"The book prints a perplexity of about {BOOK_PERPLEXITY} for both cells after 500 epochs; "
            f"here the last epoch ({', '.join(map(str, epochs))} epochs) gives {min(last):.2f} to "
            f"{max(last):.2f} over {len(finished)} runs, and the lowest epoch "
            f"{min(row['best_perplexity'] for row in finished):.2f}.")


def write_record(args: argparse.Namespace, rows: list[dict], rnn: list[dict], load_average: list[float]) -> None:
    command = shlex.join([".venv/bin/python", "scripts/reproduce_cells.py", *sys.argv[1:]])
    record = {"command": command, "machine": machine(), "date": datetime.date.today().isoformat(),
              "load_average": load_average, "book": {"hidden": BOOK_HIDDEN, "perplexity": BOOK_PERPLEXITY},
              "runs": rows, "rnn_from_chapter": rnn}
    args.record.mkdir(parents=True, exist_ok=True)
    (args.record / "cells.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# GRU and LSTM with the book's settings",
        "",
        "Chapters 9.1 (GRU) and 9.2 (LSTM) of *Dive into Deep Learning* train on the first 10,000 "
        "characters of The Time Machine with batches of 32 x 35 (sequential partitioning), 256 hidden "
        "units, learning rate 1, clipping at 1, 500 epochs. The same settings here, each run a "
        "`scratchrnn train --cell ...` of its own, one after the other; the chapter's RNN (8.5, 512 "
        "hidden units, from [chapter.md](chapter.md)) beside them. The cells' continuations are greedy, "
        "from each run's best weights (its lowest training perplexity).",
        "",
        summary_sentence(rows),
        "",
        markdown_table(rows + rnn, COLUMNS),
        f"Runs finished {finished_span(rows)} on {machine()}; the load average was {load_average[0]} "
        f"when they started and {load_average[1]} when they ended (tokens/s fall as it rises). Rerun with:",
        "",
        f"    {command}",
        "",
        "![perplexity per epoch of every run](cells.png)",
        "",
    ]
    (args.record / "cells.md").write_text("\n".join(lines))
    plot_rows(rows + rnn, args.record / "cells", "The book's settings: GRU, LSTM and the RNN",
              lambda row: f"{row['cell']} {row['hidden']}, {row['backend']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = [BookRun(backend, cell=cell, hidden=args.hidden) for cell in args.cells for backend in args.backends]
    load_before = round(os.getloadavg()[0], 2)
    rows, errors = train_and_collect(runs, [] if args.table_only else runs, epochs=args.epochs,
                                     out_root=args.out, record_path=args.record / "cells.json",
                                     missing_only=args.missing)
    write_record(args, rows, rnn_rows(args.chapter_record), [load_before, round(os.getloadavg()[0], 2)])
    print((args.record / "cells.md").read_text())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
