"""Reproduce the chapter's result with every backend and record one table.

    .venv/bin/python scripts/reproduce_chapter.py            # 500 epochs, every backend, ~20 min on 2 cores
    .venv/bin/python scripts/reproduce_chapter.py --epochs 5 --backends numpy torch   # a quick look

Each run is `scratchrnn train` with the chapter's settings (batch 32, 35 steps, 512 hidden, lr 1, first
10,000 tokens, clipping at 1) in a process of its own -- MXNet's in .venv-mxnet -- one after the other,
so the tokens/s of the backends are measured on the same machine in one sitting. Writes
docs/results/chapter.json and docs/results/chapter.md (the table README.md shows).
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
RUNS = [("numpy", "sequential"), ("torch", "sequential"), ("tensorflow", "sequential"),
        ("mxnet", "sequential"), ("paddle", "sequential"), ("numpy", "random"), ("torch", "random")]


def python_for(backend: str) -> Path:
    venv = ".venv-mxnet" if backend == "mxnet" else ".venv"
    return ROOT / venv / "bin" / "python"


def run_one(backend: str, sampling: str, epochs: int, out_root: Path) -> dict:
    out = out_root / f"{backend}-{sampling}"
    cmd = [str(python_for(backend)), "-m", "scratchrnn", "train", "--backend", backend, "--sampling", sampling,
           "--epochs", str(epochs), "--batch-size", "32", "--num-steps", "35", "--hidden", "512", "--lr", "1",
           "--max-tokens", "10000", "--out", str(out), "--overwrite", "--json"]
    print(f"-> {backend} {sampling}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"backend": backend, "sampling": sampling, "error": proc.stderr.strip().splitlines()[-1:]}
    result = json.loads(proc.stdout)
    print(f"   perplexity {result['perplexity']:.2f}, {result['tokens_per_sec']:.0f} tokens/s", flush=True)
    return {key: result[key] for key in ("backend", "perplexity", "tokens_per_sec", "seconds", "samples")} | {
        "sampling": sampling}


def markdown_table(rows: list[dict], epochs: int) -> str:
    lines = [f"| backend | sampling | epochs | training perplexity | tokens/s | `time traveller` continues as |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['backend']} | {row['sampling']} | {epochs} | failed: {row['error']} | | |")
            continue
        sample = row["samples"]["time traveller"].replace("|", "\\|")
        lines.append(f"| {row['backend']} | {row['sampling']} | {epochs} | {row['perplexity']:.2f} | "
                     f"{row['tokens_per_sec']:,.0f} | `{sample}` |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=500, help="epochs per run (the chapter: 500)")
    parser.add_argument("--backends", nargs="*", default=None, help="only these backends")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "chapter", help="run directories")
    parser.add_argument("--record", type=Path, default=ROOT / "docs" / "results",
                        help="where chapter.json and chapter.md are written")
    args = parser.parse_args()
    runs = [(b, s) for b, s in RUNS if args.backends is None or b in args.backends]
    rows = [run_one(backend, sampling, args.epochs, args.out) for backend, sampling in runs
            if python_for(backend).exists() or print(f"-> {backend}: no environment, skipped")]
    args.record.mkdir(parents=True, exist_ok=True)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "epochs": args.epochs,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "command": " ".join([Path(sys.executable).name, *sys.argv])}
    for row in rows:
        row["date"] = meta["date"]
    record = args.record / "chapter.json"
    if args.backends is not None and record.exists():
        # a partial rerun replaces its own rows and keeps the others, each row dated
        done = {(row["backend"], row["sampling"]) for row in rows}
        kept = [row for row in json.loads(record.read_text())["runs"]
                if (row["backend"], row["sampling"]) not in done]
        rows = sorted(kept + rows, key=lambda row: RUNS.index((row["backend"], row["sampling"])))
    record.write_text(json.dumps({"meta": meta, "runs": rows}, indent=2) + "\n")
    table = markdown_table(rows, args.epochs)
    dates = sorted({row.get("date", meta["date"])[:16] for row in rows})
    (args.record / "chapter.md").write_text(
        f"Measured {', '.join(dates)} on {meta['machine']} with `scripts/reproduce_chapter.py` "
        f"(last: `{meta['command']}`), one run after the other.\n\n{table}")
    print(table)
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
