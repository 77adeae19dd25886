"""The compiled step loops of the gated cells against the NumPy cells' own loops, at the chapter's size.

    .venv/bin/python benchmarks/gated_kernel.py              # two to three minutes on 2 cores

For the GRU and the LSTM, minibatches of 32 and 256 rows (``--rows``), 35 steps, 512 hidden units,
float32, side by side in one process:
- the loops alone: milliseconds per minibatch of the cell's forward pass and of its backward pass
  (``GRUCell.forward`` / ``.backward``, ``LSTMCell``'s, the recurrent weights' gradient products
  included), with the NumPy loops and with each variant of the compiled ones this processor runs
  (avx512, avx2, baseline), on ``kernels.threads()`` threads;
- inside whole NumPy training steps (one-hot input, the output layer, the loss, clipping, SGD, the
  state carried), where the BLAS library's threads, spinning for a while after each of the step's large
  products, share the cores with the compiled loops' threads: milliseconds per step, NumPy's loops'
  step over the variant's, and the cell's forward and backward pass within the step. That is where
  ``kernels.gated.MAX_BATCH`` comes from.
Each measurement is taken in rounds that run every implementation once, in turn, so that a machine
that slows down for a while slows them all alike, and the fastest run counts (a machine's noise is all
on one side). No framework is imported. The tables are printed as Markdown.

On a machine that others share, wall-clock times of two threads say more about the neighbours than
about the loops. Then ``OPENBLAS_NUM_THREADS=1 SCRATCHRNN_THREADS=1 ... --clock cpu`` compares what
each implementation costs a core: the CPU time of the process (every thread of it, each alone here),
which a neighbour taking the core for a while does not add to.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from scratchrnn import backends, kernels
from scratchrnn.cells import get_cell
from scratchrnn.cells.base import CellWeights
from scratchrnn.data import load_corpus, seq_data_iter_sequential
from scratchrnn.kernels import _library, gated
from scratchrnn.model import ModelConfig, init_params

HIDDEN, STEPS = 512, 35
clock = time.perf_counter           # --clock cpu: time.process_time


class Implementation:
    """Runs what follows with the NumPy loops ("numpy") or with one variant's compiled loops."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self._saved = _library._chosen, dict(gated.MAX_BATCH)
        if self.name == "numpy":
            os.environ["SCRATCHRNN_NO_KERNEL"] = "1"
        else:
            _library._chosen = kernels.variant_kernels(self.name)
            for cell in gated.GATES:                     # measured at every size, whatever the limits say
                for op in ("forward", "backward"):
                    gated.MAX_BATCH[(self.name, cell, op, "numpy")] = 1 << 30
        return self

    def __exit__(self, *exc):
        os.environ.pop("SCRATCHRNN_NO_KERNEL", None)
        _library._chosen = self._saved[0]
        gated.MAX_BATCH.clear()
        gated.MAX_BATCH.update(self._saved[1])


def loops_alone(cell_name: str, batch: int, names: list[str], rounds: int) -> dict:
    """Best ms per minibatch of the cell's forward and backward pass, per implementation."""
    rng = np.random.default_rng(0)
    cell = get_cell(cell_name)
    gates = gated.GATES[cell_name]
    recurrent_width = (gates - 1 if cell_name == "gru" else gates) * HIDDEN
    weights = CellWeights(None, None, rng.normal(0, 0.05, (HIDDEN, recurrent_width)).astype(np.float32),
                          rng.normal(0, 0.05, (HIDDEN, HIDDEN)).astype(np.float32) if cell_name == "gru" else None)
    terms = rng.normal(0, 0.5, (STEPS, batch, gates * HIDDEN)).astype(np.float32)
    state = cell.begin_state(batch, HIDDEN, np.float32)
    d_outputs = rng.normal(0, 0.01, (STEPS, batch, HIDDEN)).astype(np.float32)
    best = {name: [float("inf"), float("inf")] for name in names}
    for _ in range(rounds):
        for name in names:
            with Implementation(name):
                start = clock()
                _, _, cache = cell.forward(terms, state, weights)
                middle = clock()
                cell.backward(cache, weights, d_outputs.copy(), None, True)
                end = clock()
            best[name] = [min(best[name][0], middle - start), min(best[name][1], end - middle)]
    return {name: (1e3 * forward, 1e3 * backward) for name, (forward, backward) in best.items()}


class LoopClock:
    """Adds up the time spent in a cell's forward and backward passes (the instance's methods wrapped
    for as long as it is open)."""

    def __init__(self, cell):
        self.cell, self.spent = cell, {"forward": 0.0, "backward": 0.0}

    def __enter__(self):
        for op in self.spent:
            real = getattr(type(self.cell), op).__get__(self.cell)

            def timed(*args, _real=real, _op=op, **kwargs):
                start = clock()
                result = _real(*args, **kwargs)
                self.spent[_op] += clock() - start
                return result
            setattr(self.cell, op, timed)
        return self

    def __exit__(self, *exc):
        for op in self.spent:
            delattr(self.cell, op)


def training_steps(cell_name: str, batch: int, names: list[str], rounds: int, steps_per_round: int) -> dict:
    """The fastest NumPy training step, and in it the cell's forward and backward pass (ms), per
    implementation: {name: (step, forward, backward)}."""
    corpus, vocab = load_corpus()
    config = ModelConfig(len(vocab), HIDDEN, cell=cell_name)
    minibatches = list(seq_data_iter_sequential(corpus, batch, STEPS, np.random.default_rng(0)))
    runners = {}
    for name in names:
        backend = backends.create("numpy", init_params(config, 0), config)
        runners[name] = [backend, backend.begin_state(batch), 0]
    times = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            backend, state, position = runners[name]
            with Implementation(name), LoopClock(backend.cell) as passes:
                for index in range(steps_per_round + 1):       # the first of a round warms up
                    X, Y = minibatches[(position + index) % len(minibatches)]
                    passes.spent.update(forward=0.0, backward=0.0)
                    start = clock()
                    _, state = backend.train_step(X, Y, backend.detach(state), 1.0, 1.0)
                    if index:
                        times[name].append((clock() - start, passes.spent["forward"],
                                            passes.spent["backward"]))
            runners[name][1:] = [state, position + steps_per_round + 1]
    return {name: tuple(1e3 * np.array(min(values))) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="32,256", help="comma-separated minibatch sizes")
    parser.add_argument("--cells", default="gru,lstm")
    parser.add_argument("--variants", default="", help="comma-separated variants to measure (default: all "
                        "that this processor runs)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the loops alone; the best counts")
    parser.add_argument("--train-rounds", type=int, default=3, help="rounds of training steps (0: none)")
    parser.add_argument("--train-steps", type=int, default=4, help="training steps per implementation and round")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall-clock time, or the CPU time of the process (with one thread everywhere)")
    args = parser.parse_args()
    global clock
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if kernels.load() is None:
        raise SystemExit(f"the compiled kernels are {kernels.status()}")
    variants = [v for v in kernels.built_variants() if not args.variants or v in args.variants.split(",")]
    names = ["numpy", *variants]
    print(f"kernels: {kernels.status()}; variants this processor runs: {', '.join(variants)}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    cells, batches = args.cells.split(","), [int(b) for b in args.rows.split(",")]
    print(f"The loops alone: ms per minibatch of {STEPS} steps, {HIDDEN} hidden, forward / backward, "
          f"best of {args.rounds} rounds ({kernels.threads()} threads, {args.clock} clock)\n")
    print("| cell | rows | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for cell in cells:
        for batch in batches:
            result = loops_alone(cell, batch, names, args.rounds)
            cells_text = " | ".join(f"{result[n][0]:.1f} / {result[n][1]:.1f}" for n in names)
            print(f"| {cell} | {batch} | {cells_text} |", flush=True)
    if args.train_rounds:
        print(f"\nInside NumPy training steps: ms per step, the fastest of {args.train_rounds} rounds of "
              f"{args.train_steps}, NumPy's loops' step time over the variant's, and of the step the "
              "cell's forward / backward pass\n")
        print("| cell | rows | " + " | ".join(names) + " |")
        print("|---|---:|" + "---:|" * len(names))
        for cell in cells:
            for batch in batches:
                result = training_steps(cell, batch, names, args.train_rounds, args.train_steps)
                numpy_step = result["numpy"][0]
                cells_text = " | ".join(
                    f"{step:.1f}" + ("" if n == "numpy" else f" ({numpy_step / step:.2f}x)")
                    + f"; {forward:.1f} / {backward:.1f}" for n in names for step, forward, backward in [result[n]])
                print(f"| {cell} | {batch} | {cells_text} |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
