"""The LSTM's compiled loops with the minibatch's rows shared out among the threads, against the same
loops with the hidden units shared out (kernels/lstm_units.c): where does each win?

    .venv/bin/python benchmarks/lstm_split.py                                # about two minutes on 2 cores
    .venv/bin/python benchmarks/lstm_split.py --hidden 512 --rows 32 --rounds 30 --steps
    .venv/bin/python benchmarks/lstm_split.py --framework numpy --hidden 512 --rows 32 --steps

For each size (hidden units x rows, 35 steps, float32), side by side in one process, in rounds that
run both ways once each, in turns (a machine that slows down for a while slows both alike):
- ``loops``: the forward and the backward loop alone (``kernels.gated.lstm_forward`` / ``_backward``),
  on the threads the backend of ``--framework`` runs them on: PyTorch's for torch, the library's own
  for numpy (which imports no torch);
- ``step`` (``--steps``, at the chapter's 28-token vocabulary): whole training steps of that backend
  (one-hot input, the output layer, the loss, the recurrent weights' gradient, clipping, SGD), the
  cell's loops run one way or the other.
A round's time is the fastest of a few repetitions; the table gives the median over the rounds of
each way's time and of the ratio rows / units within each round (above 1: the units are faster), with
its quartiles. ``kernels.choose`` makes the same comparison on the machine that uses the loops (the
``compiled`` and ``compiled-units`` candidates); this shows it over a range of sizes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (this folder: settle, StealMeter, machine_description)

STEPS = 35


class Split:
    """Runs what follows with the hidden units shared out (one share per thread, as the choice's
    ``compiled-units`` candidate) or with the rows shared out: the compiled loops are forced
    (SCRATCHRNN_LOOPS=compiled, set by ``main``) and ``kernels.choose`` is told which way."""

    units = False

    def __init__(self, units: bool):
        self.units = units

    def __enter__(self):
        from scratchrnn import kernels
        self._saved, Split.units = kernels.choose, self.units
        units = self.units

        def choose(workload, trial=None, **options):
            choice = self._saved(workload, trial, **options)
            return dataclasses.replace(choice, unit_shares=choice.threads if units else 0) if choice.compiled else choice
        kernels.choose = choose

    def __exit__(self, *exc):
        from scratchrnn import kernels
        kernels.choose, Split.units = self._saved, False


def loops_runner(framework: str, hidden: int, batch: int):
    """One forward and backward pass of the compiled loops: a function returning its time."""
    from scratchrnn import kernels
    from scratchrnn.kernels import gated
    rng = np.random.default_rng(0)
    terms = (rng.standard_normal((STEPS, batch, 4 * hidden)) * 0.5).astype(np.float32)
    W_h = (rng.standard_normal((hidden, 4 * hidden)) / np.sqrt(hidden)).astype(np.float32)
    h0 = c0 = np.zeros((batch, hidden), np.float32)
    d_outputs = (rng.standard_normal((STEPS, batch, hidden)) * 0.01).astype(np.float32)
    threads = kernels.threads(framework)
    team = kernels.torch_team.team() if framework == "torch" else None

    def run() -> float:
        with kernels.running_on(team):
            start = time.perf_counter()
            shares = threads if Split.units else 0
            cache = gated.lstm_forward(terms, h0, c0, W_h, threads=threads, unit_shares=shares)
            gated.lstm_backward(cache, W_h, d_outputs, None, None, True, threads=threads, unit_shares=shares)
            return time.perf_counter() - start
    return run


def step_runner(framework: str, hidden: int, batch: int):
    """One training step of the framework's backend: a function returning its time."""
    from scratchrnn import backends
    from scratchrnn.data import load_corpus, seq_data_iter_sequential
    from scratchrnn.model import ModelConfig, init_params
    corpus, vocab = load_corpus()
    config = ModelConfig(len(vocab), hidden, cell="lstm")
    backend = backends.create(framework, init_params(config, 0), config, dtype="float32")
    minibatches = list(seq_data_iter_sequential(corpus, batch, STEPS, np.random.default_rng(0)))
    carried = {"state": backend.begin_state(batch), "index": 0}

    def run() -> float:
        X, Y = minibatches[carried["index"] % len(minibatches)]
        carried["index"] += 1
        backend._loops.clear()      # ask kernels.choose again: this way or the other
        start = time.perf_counter()
        _, carried["state"] = backend.train_step(X, Y, backend.detach(carried["state"]), 1.0, 1.0)
        return time.perf_counter() - start
    return run


def compare(runner, rounds: int, repeats: int) -> dict:
    """Both ways, in turns, ``rounds`` times; each time the fastest of ``repeats`` runs after one to warm up."""
    times = {"rows": [], "units": []}
    for index in range(rounds):
        for way in (("rows", "units") if index % 2 == 0 else ("units", "rows")):
            bench.settle()
            with Split(way == "units"):
                times[way].append(min(runner() for _ in range(repeats + 1)))   # the first warms up
    ratios = [rows / units for rows, units in zip(times["rows"], times["units"])]
    return {"rows_ms": 1e3 * statistics.median(times["rows"]), "units_ms": 1e3 * statistics.median(times["units"]),
            "ratio": statistics.median(ratios), "ratio_quartiles": [float(np.percentile(ratios, q)) for q in (25, 75)],
            "runs_ms": {way: [1e3 * t for t in values] for way, values in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", default="256,384,512,768", help="comma-separated hidden sizes")
    parser.add_argument("--rows", default="16,32,64,128", help="comma-separated minibatch sizes")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per way and round; the fastest counts")
    parser.add_argument("--framework", choices=("torch", "numpy"), default="torch",
                        help="the backend whose threads run the loops, and whose training steps --steps times")
    parser.add_argument("--steps", action="store_true", help="whole training steps too")
    parser.add_argument("--name", help="write benchmarks/results/<name>.json")
    args = parser.parse_args()
    os.environ["SCRATCHRNN_LOOPS"] = "compiled"
    if args.framework == "torch":
        import torch  # noqa: F401  (the loops run on PyTorch's threads, as the torch backend runs them)
    from scratchrnn import kernels
    steal = bench.StealMeter()
    results = []
    print(f"kernels: {kernels.status()}; {args.framework}'s {kernels.threads(args.framework)} thread(s)\n")
    print("| hidden | rows | what | rows shared, ms | units shared, ms | rows / units (quartiles) |")
    print("|---:|---:|---|---:|---:|---|")
    for hidden in (int(h) for h in args.hidden.split(",")):
        for batch in (int(b) for b in args.rows.split(",")):
            kinds = {"loops": loops_runner(args.framework, hidden, batch)}
            if args.steps:
                kinds["step"] = step_runner(args.framework, hidden, batch)
            for what, runner in kinds.items():
                result = {"hidden": hidden, "rows": batch, "what": what, **compare(runner, args.rounds, args.repeats)}
                results.append(result)
                low, high = result["ratio_quartiles"]
                print(f"| {hidden} | {batch} | {what} | {result['rows_ms']:.2f} | {result['units_ms']:.2f} | "
                      f"{result['ratio']:.3f}x ({low:.3f}-{high:.3f}) |", flush=True)
    share = steal.share()
    print(f"\nmedians of {args.rounds} rounds; {bench.StealMeter.describe(share)}")
    if args.name:
        path = Path(__file__).resolve().parent / "results" / f"{args.name}.json"
        path.write_text(json.dumps({"machine": {**bench.machine_description(), "steal_share": share},
                                    "settings": {**vars(args), "kernels": kernels.status()},
                                    "results": results}, indent=2) + "\n")
        print(f"written: {path}")


if __name__ == "__main__":
    main()
