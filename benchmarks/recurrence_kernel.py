"""The compiled training recurrences against the NumPy backend's step loops, at the chapter's size.

    .venv/bin/python benchmarks/recurrence_kernel.py          # about half a minute

For minibatches of 8 to 256 rows, 35 steps, 512 hidden units: milliseconds per minibatch of
- the compiled forward and backward loops (``kernels.recurrence``) with 1 thread and with 2,
- the NumPy backend's loops (one BLAS product and an elementwise pass per step, Python around them).
Each is the best of several runs. Then the same compiled loops timed inside whole NumPy training steps,
where OpenBLAS's threads, spinning for a while after each of the step's large products, share the cores
with the compiled loops' threads: the comparison ``kernels.choose`` makes once on the machine that trains
(``make bench`` has the end result under PyTorch, the rows ``torch`` and ``torch-loop``). No framework
is imported. ``SCRATCHRNN_KERNEL_VARIANT=avx2`` (or ``baseline``) measures another variant than the
one the library picks for this processor.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from decode_kernel import best_seconds     # this script's folder is on the path when it runs

from scratchrnn import backends, kernels
from scratchrnn.cells.rnn import backprop_steps
from scratchrnn.kernels import recurrence as fast_recurrence
from scratchrnn.data import load_corpus, seq_data_iter_sequential
from scratchrnn.model import ModelConfig, init_params

HIDDEN, STEPS = 512, 35


def best_ms(run, repeats: int) -> float:
    return 1e3 * best_seconds(run, repeats)


def loops_alone(batches: list[int], repeats: int) -> None:
    """The loops by themselves; the compiled ones first, before any BLAS call of this process has
    started OpenBLAS's threads."""
    rng = np.random.default_rng(0)
    W = rng.normal(0, 0.05, (HIDDEN, HIDDEN)).astype(np.float32)
    problems = {}
    for batch in batches:
        inputs = rng.normal(0, 0.5, (STEPS + 1, batch, HIDDEN)).astype(np.float32)
        hs = inputs.copy()
        fast_recurrence.forward(hs, W, "tanh")
        problems[batch] = inputs, hs, rng.normal(0, 0.01, (STEPS, batch, HIDDEN)).astype(np.float32)
    rows = {batch: [] for batch in batches}
    for batch, (inputs, hs, dhs) in problems.items():
        work = inputs.copy()
        for threads in (1, 2):
            rows[batch].append(best_ms(lambda: fast_recurrence.forward(work, W, "tanh", threads=threads),
                                       repeats))
        for threads in (1, 2):
            rows[batch].append(best_ms(lambda: fast_recurrence.backward(hs, W, dhs, None, "tanh", True,
                                                                        threads=threads), repeats))
    os.environ["SCRATCHRNN_NO_KERNEL"] = "1"
    for batch, (inputs, hs, dhs) in problems.items():
        work = inputs.copy()

        def numpy_forward():
            for t in range(STEPS):
                h = np.matmul(work[t], W, out=work[t + 1])
                h += inputs[t + 1]
                np.tanh(h, out=h)
        rows[batch].insert(2, best_ms(numpy_forward, repeats))
        # with the transposed copy of W that the NumPy backend makes for its loop (the compiled loop
        # packs the transpose itself, inside the time above)
        rows[batch].append(best_ms(lambda: backprop_steps(hs, np.ascontiguousarray(W.T), dhs.copy(), None,
                                                          "tanh", True), repeats))
    os.environ.pop("SCRATCHRNN_NO_KERNEL")
    print(f"ms per minibatch of {STEPS} steps, hidden {HIDDEN}, best of {repeats}")
    print(f"{'rows':>5} {'forward: 1 thread':>18} {'2 threads':>10} {'NumPy':>7}"
          f" {'backward: 1 thread':>19} {'2 threads':>10} {'NumPy':>7}")
    widths = (18, 10, 7, 19, 10, 7)
    for batch, row in rows.items():
        print(f"{batch:>5} " + " ".join(f"{value:>{width}.2f}" for value, width in zip(row, widths)))


def inside_training(batches: list[int]) -> None:
    """Medians over an epoch of NumPy training steps: with the compiled loops (forced at every size),
    the time in those loops, and with NumPy's loops."""
    corpus, vocab = load_corpus()
    config = ModelConfig(len(vocab), HIDDEN)
    spent = {}
    for name in ("forward", "backward"):
        real = getattr(fast_recurrence, name)

        def timed(*args, _real=real, _name=name, **kwargs):
            start = time.perf_counter()
            result = _real(*args, **kwargs)
            spent[_name] += time.perf_counter() - start
            return result
        setattr(fast_recurrence, name, timed)

    def epoch(batch):
        backend = backends.create("numpy", init_params(config, 0), config)
        chosen = list(seq_data_iter_sequential(corpus, batch, STEPS, np.random.default_rng(0)))
        state, steps, loops = backend.begin_state(batch), [], []
        for index, (X, Y) in enumerate(chosen[:max(12, 384 // batch)]):
            spent.update(forward=0.0, backward=0.0)
            start = time.perf_counter()
            _, state = backend.train_step(X, Y, backend.detach(state), 1.0, 1.0)
            if index:                                           # the first warms up
                steps.append(time.perf_counter() - start)
                loops.append(spent["forward"] + spent["backward"])
        return 1e3 * np.median(steps), 1e3 * np.median(loops)

    print("\ninside NumPy training steps, ms per minibatch (median of an epoch, at least 11 minibatches)")
    print(f"{'rows':>5} {'compiled loops: step':>21} {'of it the loops':>16} {'NumPy loops: step':>18}")
    for batch in batches:
        os.environ["SCRATCHRNN_LOOPS"] = "compiled"
        with_compiled, in_loops = epoch(batch)
        os.environ["SCRATCHRNN_LOOPS"] = "own"
        with_numpy, _ = epoch(batch)
        os.environ.pop("SCRATCHRNN_LOOPS")
        print(f"{batch:>5} {with_compiled:>21.2f} {in_loops:>16.2f} {with_numpy:>18.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="8,16,32,64,128,256", help="comma-separated minibatch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement; the best counts")
    args = parser.parse_args()
    if not kernels.enabled():
        raise SystemExit(f"the compiled kernels are {kernels.status()}")
    print(f"kernels: {kernels.status()}")
    batches = [int(b) for b in args.rows.split(",")]
    loops_alone(batches, args.repeats)
    inside_training(batches)


if __name__ == "__main__":
    main()
