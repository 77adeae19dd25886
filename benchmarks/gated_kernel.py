"""The compiled step loops of the gated cells against a backend's own loops, at the chapter's size.

    .venv/bin/python benchmarks/gated_kernel.py                      # NumPy's; two to three minutes on 2 cores
    .venv/bin/python benchmarks/gated_kernel.py --framework torch    # the torch backend's fast path

For the GRU and the LSTM, minibatches of 32 and 256 rows (``--rows``), 35 steps, 512 hidden units,
float32, side by side in one process:
- the loops alone: milliseconds per minibatch of the cell's forward pass and of its backward pass
  (``GRUCell.forward`` / ``.backward``, ``LSTMCell``'s, the recurrent weights' gradient products
  included), with the NumPy loops and with each variant of the compiled ones this processor runs
  (avx512, avx2, baseline), on ``kernels.threads()`` threads;
- inside whole NumPy training steps (one-hot input, the output layer, the loss, clipping, SGD, the
  state carried), where the BLAS library's threads, spinning for a while after each of the step's large
  products, share the cores with the compiled loops' threads: milliseconds per step, NumPy's loops'
  step over the variant's, and the cell's forward and backward pass within the step. ``kernels.choose``
  makes the same comparison, once, on the machine that trains.
With ``--framework torch`` the same for the torch backend: its cells' own loops in PyTorch operations
(``backends.torch.fast_cells``, the weights in their gate order) against the compiled ones called from
them (in the compiled loops' order, on PyTorch's threads), and whole torch training steps.
Each measurement is taken in rounds that run every implementation once, in turn, so that a machine
that slows down for a while slows them all alike, and the fastest run counts (a machine's noise is all
on one side). No framework is imported unless ``--framework`` names it. The tables are printed as Markdown.

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
from scratchrnn.backends.numpy.cells import step_loops
from scratchrnn.cells import get_cell
from scratchrnn.cells.base import CellWeights
from scratchrnn.data import load_corpus, seq_data_iter_sequential
from scratchrnn.kernels import _library, gated
from scratchrnn.model import ModelConfig, init_params

HIDDEN, STEPS = 512, 35
clock = time.perf_counter           # --clock cpu: time.process_time
framework = "numpy"                 # --framework


class Implementation:
    """Runs what follows with the framework's own loops ("own") or with one variant's compiled loops:
    ``choice`` is the ``kernels.Choice`` naming them, and SCRATCHRNN_LOOPS forces it on the backends."""

    def __init__(self, name: str):
        self.name = name
        self.choice = (kernels.Choice("own", "measured here") if name == "own"
                       else kernels.Choice("compiled", "measured here", name, kernels.threads(framework)))

    def __enter__(self):
        self._saved = _library._chosen, os.environ.get("SCRATCHRNN_LOOPS")
        os.environ["SCRATCHRNN_LOOPS"] = self.choice.loops
        if self.choice.compiled:
            _library._chosen = kernels.variant_kernels(self.name)
        return self

    def __exit__(self, *exc):
        _library._chosen = self._saved[0]
        os.environ.pop("SCRATCHRNN_LOOPS", None)
        if self._saved[1] is not None:
            os.environ["SCRATCHRNN_LOOPS"] = self._saved[1]


def loops_alone(cell_name: str, batch: int, names: list[str], rounds: int) -> dict:
    """Best ms per minibatch of the cell's forward and backward pass, per implementation."""
    if framework == "torch":
        return torch_loops_alone(cell_name, batch, names, rounds)
    rng = np.random.default_rng(0)
    gates = gated.GATES[cell_name]
    recurrent_width = (gates - 1 if cell_name == "gru" else gates) * HIDDEN
    weights = CellWeights(None, None, rng.normal(0, 0.05, (HIDDEN, recurrent_width)).astype(np.float32),
                          rng.normal(0, 0.05, (HIDDEN, HIDDEN)).astype(np.float32) if cell_name == "gru" else None)
    terms = rng.normal(0, 0.5, (STEPS, batch, gates * HIDDEN)).astype(np.float32)
    state = get_cell(cell_name).begin_state(batch, HIDDEN, np.float32)
    d_outputs = rng.normal(0, 0.01, (STEPS, batch, HIDDEN)).astype(np.float32)
    best = {name: [float("inf"), float("inf")] for name in names}
    for _ in range(rounds):
        for name in names:
            with Implementation(name) as implementation:
                cell = step_loops(cell_name, implementation.choice)
                start = clock()
                _, _, cache = cell.forward(terms, state, weights)
                middle = clock()
                cell.backward(cache, weights, d_outputs.copy(), None, True)
                end = clock()
            best[name] = [min(best[name][0], middle - start), min(best[name][1], end - middle)]
    return {name: (1e3 * forward, 1e3 * backward) for name, (forward, backward) in best.items()}


def torch_loops_alone(cell_name: str, batch: int, names: list[str], rounds: int) -> dict:
    """loops_alone for the torch backend's cells: the weights prepared in the gate order of the loops
    that run (``TorchCell.prepare``), the input terms copied before each forward pass (which turns them
    into the gates' values in place)."""
    import torch
    from scratchrnn.backends.torch.fast_cells import TORCH_CELLS
    torch.manual_seed(0)
    cell = TORCH_CELLS[cell_name]
    gates = gated.GATES[cell_name]
    params = {f"W_x{g}": torch.zeros(1, HIDDEN) for g in cell.layout}
    params.update({f"b_{g}": torch.zeros(HIDDEN) for g in cell.layout})
    params.update({f"W_h{g}": torch.randn(HIDDEN, HIDDEN) * 0.05 for g in cell.recurrent})
    if cell_name == "gru":
        params["W_hh"] = torch.randn(HIDDEN, HIDDEN) * 0.05
    terms = torch.randn(STEPS, batch, gates * HIDDEN) * 0.5
    state = tuple(torch.zeros(batch, HIDDEN) for _ in range(cell.state_size))
    d_outputs = torch.randn(STEPS, batch, HIDDEN) * 0.01
    best = {name: [float("inf"), float("inf")] for name in names}
    for _ in range(rounds):
        for name in names:
            with Implementation(name) as implementation:
                weights = cell.prepare(params, implementation.choice)
                assert weights.compiled == (name != "own")
                step_terms, step_grads = terms.clone(), d_outputs.clone()
                start = clock()
                _, _, cache = cell.forward(step_terms, state, weights)
                middle = clock()
                cell.backward(cache, weights, step_grads, None, True)
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
    """The fastest training step of the framework's backend, and in it the cell's forward and backward pass (ms), per
    implementation: {name: (step, forward, backward)}."""
    corpus, vocab = load_corpus()
    config = ModelConfig(len(vocab), HIDDEN, cell=cell_name)
    minibatches = list(seq_data_iter_sequential(corpus, batch, STEPS, np.random.default_rng(0)))
    runners = {}
    for name in names:
        backend = backends.create(framework, init_params(config, 0), config, dtype="float32")
        runners[name] = [backend, backend.begin_state(batch), 0]
    times = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            backend, state, position = runners[name]
            with Implementation(name):
                cell = backend.stacked.cell if framework == "torch" else backend.step_loops(batch, STEPS, True)
            with Implementation(name), LoopClock(cell) as passes:
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
    parser.add_argument("--framework", choices=("numpy", "torch"), default="numpy",
                        help="the backend whose own loops the compiled ones are measured against")
    parser.add_argument("--steps", type=int, default=35,
                        help="time steps per minibatch (1: what a call costs besides its steps)")
    args = parser.parse_args()
    global clock, framework, STEPS
    STEPS = args.steps
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    framework = args.framework
    if kernels.load() is None:
        raise SystemExit(f"the compiled kernels are {kernels.status()}")
    variants = [v for v in kernels.built_variants() if not args.variants or v in args.variants.split(",")]
    names = ["own", *variants]
    header = "| cell | rows | " + " | ".join(f"{framework}'s own" if n == "own" else n for n in names) + " |"
    print(f"kernels: {kernels.status()}; variants this processor runs: {', '.join(variants)}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    cells, batches = args.cells.split(","), [int(b) for b in args.rows.split(",")]
    print(f"The loops alone: ms per minibatch of {STEPS} steps, {HIDDEN} hidden, forward / backward, "
          f"best of {args.rounds} rounds ({kernels.threads(framework)} threads, {args.clock} clock)\n")
    print(header)
    print("|---|---:|" + "---:|" * len(names))
    for cell in cells:
        for batch in batches:
            result = loops_alone(cell, batch, names, args.rounds)
            cells_text = " | ".join(f"{result[n][0]:.1f} / {result[n][1]:.1f}" for n in names)
            print(f"| {cell} | {batch} | {cells_text} |", flush=True)
    if args.train_rounds:
        print(f"\nInside {framework} training steps: ms per step, the fastest of {args.train_rounds} rounds of "
              f"{args.train_steps}, the {framework} loops' step time over the variant's, and of the step the "
              "cell's forward / backward pass\n")
        print(header)
        print("|---|---:|" + "---:|" * len(names))
        for cell in cells:
            for batch in batches:
                result = training_steps(cell, batch, names, args.train_rounds, args.train_steps)
                own_step = result["own"][0]
                cells_text = " | ".join(
                    f"{step:.1f}" + ("" if n == "own" else f" ({own_step / step:.2f}x)")
                    + f"; {forward:.1f} / {backward:.1f}" for n in names for step, forward, backward in [result[n]])
                print(f"| {cell} | {batch} | {cells_text} |", flush=True)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
