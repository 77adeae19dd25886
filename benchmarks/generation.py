"""Greedy generation against the chapter's ``predict_ch8``, side by side in one process.

    .venv/bin/python benchmarks/generation.py                           # 2 threads, wall clock, 7 rounds
    .venv/bin/python benchmarks/generation.py --threads 1 --clock cpu   # what it costs one core
    .venv/bin/python benchmarks/generation.py --decoder compiled        # the compiled decoder at 64 streams too

Rows (the chapter's model: 512 hidden units, the 28-token vocabulary of the bundled Time Machine,
weights from the same seed; generation speed does not depend on training): ``chapter1``, the chapter's
``predict_ch8`` (one stream, from bench.py), and for the torch and numpy backends scratchrnn's
``predict`` (one stream: the prompt, then ``--chars`` characters) and ``predict_many`` (64 streams
at once, 200 characters each; chars/s over all streams), against ``predict_ch8``'s one stream: the
issue's goals are 10x for one stream and 30x for 64. Each round times every row once in turn; rates
are medians over the rounds, with the slowest and fastest round. ``--decoder compiled`` makes the
compiled decoder take any number of streams (by default the package chooses, as it does for its
users); ``--clock cpu`` counts the CPU time of the process, which on one thread (``--threads 1``) other
programs taking the core do not add to.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chars", type=int, default=2000, help="characters per one-stream timing")
    parser.add_argument("--threads", type=int, help="threads for every row (default: the libraries' own)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--decoder", choices=("auto", "compiled"), default="auto")
    args = parser.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu needs --threads 1 (the CPU time of several threads counts their waiting)")
    if args.threads:
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench  # noqa: E402  (this folder: the chapter's code and the runners)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from scratchrnn import kernels
    from scratchrnn.data import load_corpus
    if args.decoder == "compiled":
        # every choice forced to the compiled loops: this benchmark only generates
        os.environ["SCRATCHRNN_LOOPS"] = "compiled"
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    spec = {**bench.FULL, "device": "cpu", "num_hiddens": 512, "num_steps": 35}
    corpus, vocab = load_corpus(None, None)
    chapter = bench._ChapterRunner("chapter", spec, vocab)
    runners = {name: bench._ScratchRunner(name, spec, vocab) for name in ("torch", "numpy")}
    prefixes = ["".join(vocab.to_tokens(list(corpus[i * 97:i * 97 + 12]))) for i in range(64)]
    chapter_chars = max(1, args.chars // 10)              # predict_ch8 is slow: fewer characters

    def timed(work, chars):
        start = clock()
        work()
        return chars / (clock() - start)

    rows = {"chapter1": lambda: timed(lambda: chapter.generate_one("time traveller ", chapter_chars), chapter_chars)}
    for name, runner in runners.items():
        rows[f"{name}1"] = lambda r=runner: timed(lambda: r.generate_one("time traveller ", args.chars), args.chars)
        rows[f"{name}64"] = lambda r=runner: timed(lambda: r.generate_many(prefixes, 200), 64 * 200)
    for work in rows.values():                                   # warm-up
        work()
    rates: dict = {name: [] for name in rows}
    names = list(rows)
    for round_index in range(args.rounds):
        for name in names[round_index % len(names):] + names[:round_index % len(names)]:
            bench.settle()
            rates[name].append(rows[name]())
        print(f"  round {round_index + 1} of {args.rounds}: load average {os.getloadavg()[0]:.2f}", flush=True)
    base = statistics.median(rates["chapter1"])
    print(f"\nmedian of {args.rounds} rounds, {args.clock} clock, threads {args.threads or 'default'}, decoder "
          f"{args.decoder}; kernels {kernels.status()}; load average {os.getloadavg()}")
    print("| row | chars/s | slowest-fastest round | x predict_ch8 |\n|---|---:|---:|---:|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {min(values):,.0f}-{max(values):,.0f} | {median / base:.1f}x |")


if __name__ == "__main__":
    main()
