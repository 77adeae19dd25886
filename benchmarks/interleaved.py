"""The compiled kernels' speed targets, side by side in one process: every variant against the
chapter's code and against the backends' own loops, interleaved, for a machine too busy for make bench.

    .venv/bin/python benchmarks/interleaved.py                   # a few minutes on 2 cores
    .venv/bin/python benchmarks/interleaved.py --rounds 9 --name cpu-2core-variants

``make bench`` runs each implementation in processes of its own, one after another, which is right on
a quiet machine; on a shared one the load changes between processes, and ratios across them are
noise. Here one process holds the chapter's code and the torch and numpy backends, and each round
times every row once, in a rotating order, so a slow stretch of the machine slows every row alike,
each after a pause in which the row before's threads stop spinning (``bench.settle``); rates are
medians over the rounds (``--best``: the best timing of each row, the one other programs disturbed
least, for a machine that is busy throughout). Rows: ``chapter`` (the chapter's code, from bench.py), then torch
and numpy with each kernel variant this processor runs forced (``torch-avx512``, ...) and with the
kernels off (``torch-loop``, ``numpy-loop``: the backends' own loops). A variant's row runs its
compiled loops everywhere (SCRATCHRNN_LOOPS=compiled), whether or not ``kernels.choose`` would.
Columns: training tokens/s at batch 32 (the chapter's settings: 35 steps, 512 hidden, lr 1, clipping
at 1), greedy generation of one stream (chars/s; the chapter's ``predict_ch8`` for ``chapter``) and
of 64 streams together (chars/s over all streams; compared with ``predict_ch8``'s one stream).
Generation is timed after all training, as training's BLAS threads would slow it (README.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (this folder: the chapter's code and its runners)

from scratchrnn import kernels  # noqa: E402
from scratchrnn.kernels import _library  # noqa: E402

PREFIX = "time traveller "


@contextmanager
def kernel_mode(mode: str):
    """Kernels off ("loop"), or on with one variant forced, for the block's duration."""
    saved_env = {name: os.environ.get(name) for name in ("SCRATCHRNN_NO_KERNEL", "SCRATCHRNN_LOOPS")}
    saved_chosen = _library._chosen
    if mode == "loop":
        os.environ["SCRATCHRNN_NO_KERNEL"] = "1"
    else:
        os.environ.pop("SCRATCHRNN_NO_KERNEL", None)
        os.environ["SCRATCHRNN_LOOPS"] = "compiled"
        _library._chosen = kernels.variant_kernels(mode)
    try:
        yield
    finally:
        _library._chosen = saved_chosen
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--train-batches", type=int, default=8, help="minibatches of 32 per timing")
    parser.add_argument("--gen-chars", type=int, default=500, help="characters per one-stream timing")
    parser.add_argument("--best", action="store_true",
                        help="the best timing of each row instead of the median: on a machine that other "
                             "programs keep busy, the timing they disturbed least")
    parser.add_argument("--name", help="write benchmarks/results/<name>.json")
    args = parser.parse_args()
    from scratchrnn.data import SeqDataLoader, load_corpus
    spec = {**bench.FULL, "device": "cpu", "num_hiddens": 512, "num_steps": 35}
    corpus, vocab = load_corpus(None, None)
    batches = list(SeqDataLoader(corpus, 32, 35, "sequential", seed=0))
    chapter = bench._ChapterRunner("chapter", spec, vocab)
    scratch = {name: bench._ScratchRunner(name, spec, vocab) for name in ("torch", "numpy")}
    variants = kernels.built_variants()
    rows = {"chapter": (chapter, None)}
    for name, runner in scratch.items():
        for mode in variants + ["loop"]:
            rows[f"{name}-{mode}"] = (runner, mode)
    prefixes = ["".join(vocab.to_tokens(list(corpus[i * 97:i * 97 + 12]))) for i in range(64)]

    for runner, mode in rows.values():                                  # warm-up
        with kernel_mode(mode or "loop"):
            runner.train(batches[:2])
    times: dict = {name: {"train_b32_tokens_per_s": [], "gen_1_chars_per_s": [], "gen_64_chars_per_s": []}
                   for name in rows}
    names = list(rows)
    steal = bench.StealMeter()
    for part in ("train", "generate"):
        for round_index in range(args.rounds):
            order = names[round_index % len(names):] + names[:round_index % len(names)]
            for name in order:
                runner, mode = rows[name]
                bench.settle()
                with kernel_mode(mode or "loop"):
                    if part == "train":
                        timed = batches[2 + args.train_batches * round_index:][:args.train_batches]
                        times[name]["train_b32_tokens_per_s"].append(runner.train(timed))
                        continue
                    start = time.perf_counter()
                    runner.generate_one(PREFIX, args.gen_chars)
                    times[name]["gen_1_chars_per_s"].append(args.gen_chars / (time.perf_counter() - start))
                    if runner is chapter:
                        continue
                    start = time.perf_counter()
                    runner.generate_many(prefixes, 100)
                    times[name]["gen_64_chars_per_s"].append(64 * 100 / (time.perf_counter() - start))
            print(f"  {part}, round {round_index + 1} of {args.rounds}", flush=True)

    steal_share = steal.share()
    statistic = max if args.best else statistics.median
    medians = {name: {key: statistic(values) for key, values in columns.items() if values}
               for name, columns in times.items()}
    base = medians["chapter"]
    ratios = {name: {key: value / base["gen_1_chars_per_s" if key == "gen_64_chars_per_s" else key]
                     for key, value in columns.items()} for name, columns in medians.items()}
    print(f"\nkernels: {kernels.status()}; variants this processor runs: {', '.join(variants)}; "
          f"{'best' if args.best else 'median'} of {args.rounds} rounds; load average {os.getloadavg()}; "
          f"{bench.StealMeter.describe(steal_share)}")
    print(f"{'row':<16} {'train b32 tok/s':>22} {'gen 1 chars/s':>22} {'gen 64 chars/s':>22}")
    for name, columns in medians.items():
        cells = [f"{columns[key]:,.0f} ({ratios[name][key]:.2f}x)" if key in columns else "-"
                 for key in ("train_b32_tokens_per_s", "gen_1_chars_per_s", "gen_64_chars_per_s")]
        print(f"{name:<16} " + " ".join(f"{cell:>22}" for cell in cells))
    if args.name:
        path = Path(__file__).resolve().parent / "results" / f"{args.name}.json"
        path.write_text(json.dumps({
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "load_average_at_end": os.getloadavg(), "steal_share": steal_share},
            "kernels": kernels.status(), "variants": variants, "settings": vars(args),
            "statistic": "best" if args.best else "median", "results": medians, "ratios_to_chapter": ratios, "runs": times}, indent=2) + "\n")
        print(f"written: {path}")


if __name__ == "__main__":
    main()
