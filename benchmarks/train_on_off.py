"""``scratchrnn train`` with the compiled code on and off, side by side: is it ever slower with it?

    .venv/bin/python benchmarks/train_on_off.py                        # about 20 minutes on 2 cores
    .venv/bin/python benchmarks/train_on_off.py --rounds 5 --out benchmarks/results/NAME.txt

The issue's goal (#23): for the numpy and torch backends and the RNN, GRU and LSTM, training at the
chapter's settings (batch 32, 35 steps, 512 hidden units, float32, lr 1, clipping at 1, sequential
batches) is never slower with the compiled library than without it (>= 0.97x, medians). Each run is a
real ``scratchrnn train --json`` process on the bundled book; its tokens/s are what the command reports.
"on" is the default, the step loops ``kernels.choose`` picks on this machine (``scratchrnn tune`` runs
first, so that no timed run includes the measurement, and its answers are printed); "off" is
``SCRATCHRNN_NO_KERNEL=1``, the frameworks' own loops. A round runs every configuration on and off,
back to back in alternating order, the configurations in a rotating order, so that a machine that
slows down for a while (other programs on its cores) slows both halves of a pair alike; the table
gives the median over the rounds of each half and of the ratio on / off within each round, with the
lowest and highest ratio. The CPU's model and the hypervisor's steal are printed with the results.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (this folder: StealMeter, machine_description)

BACKENDS, CELLS = ("numpy", "torch"), ("rnn", "gru", "lstm")
CHAPTER = ["--batch-size", "32", "--num-steps", "35", "--hidden", "512", "--dtype", "float32", "--lr", "1",
           "--sampling", "sequential", "--no-progress", "--predict-every", "0", "--json"]


def train(backend: str, cell: str, compiled: bool, args, scratch: Path) -> float:
    """One ``scratchrnn train`` process: the tokens/s it reports."""
    env = dict(os.environ)
    env.pop("SCRATCHRNN_LOOPS", None)
    if compiled:
        env.pop("SCRATCHRNN_NO_KERNEL", None)
    else:
        env["SCRATCHRNN_NO_KERNEL"] = "1"
    command = [sys.executable, "-m", "scratchrnn", "train", "--backend", backend, "--cell", cell, *CHAPTER,
               "--epochs", str(args.epochs), "--max-tokens", str(args.max_tokens),
               "--out", str(scratch / f"{backend}-{cell}"), "--overwrite"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["tokens_per_sec"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=30_000, help="tokens of the book trained on per epoch")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    pairs = [(b, c) for b in args.backends.split(",") for c in args.cells.split(",")]
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    machine = bench.machine_description()
    say(f"CPU: {machine.get('cpu', '?')}, {machine['cpus']} CPUs; {machine['platform']}; load average at the "
        f"start {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say(f"command: {' '.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}")
    say(f"scratchrnn train {' '.join(CHAPTER)} --epochs {args.epochs} --max-tokens {args.max_tokens}")
    version = subprocess.run([sys.executable, "-m", "scratchrnn", "--version"], capture_output=True, text=True)
    say(version.stdout.strip())
    tuned = subprocess.run([sys.executable, "-m", "scratchrnn", "tune", "--backend", args.backends, "--cell",
                            args.cells, "--streams", "0"], capture_output=True, text=True)
    say("\nscratchrnn tune (the loops 'on' runs; measured before the timed runs):")
    for line in (tuned.stdout + tuned.stderr).strip().splitlines():
        say(f"  {line.split(' (wisdom file ')[0]}")
    steal = bench.StealMeter()
    rates = {pair: {"on": [], "off": []} for pair in pairs}
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(args.rounds):
            shift = index % len(pairs)
            for backend, cell in pairs[shift:] + pairs[:shift]:
                for mode in (("on", "off") if index % 2 == 0 else ("off", "on")):
                    start = time.perf_counter()
                    rate = train(backend, cell, mode == "on", args, Path(scratch))
                    rates[backend, cell][mode].append(rate)
                    print(f"  round {index + 1}: {backend} {cell} {mode}: {rate:,.0f} tok/s "
                          f"({time.perf_counter() - start:.0f} s)", flush=True)
    say(f"\nmedians of {args.rounds} rounds; {bench.StealMeter.describe(steal.share())}; load average now "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    say("| backend | cell | on, tok/s | off, tok/s | on / off (lowest-highest) |")
    say("|---|---|---:|---:|---|")
    for (backend, cell), measured in rates.items():
        ratios = [on / off for on, off in zip(measured["on"], measured["off"])]
        say(f"| {backend} | {cell} | {statistics.median(measured['on']):,.0f} | "
            f"{statistics.median(measured['off']):,.0f} | {statistics.median(ratios):.3f}x "
            f"({min(ratios):.3f}-{max(ratios):.3f}) |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
