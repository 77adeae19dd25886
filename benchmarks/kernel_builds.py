"""Built kernel modules side by side: a change to the C against the build before it, in one process.

    cp src/scratchrnn/kernels/_kernels.abi3.so /tmp/before.so      # then change the C, rebuild
    python setup.py build_ext --inplace && cp src/scratchrnn/kernels/_kernels.abi3.so /tmp/after.so
    .venv/bin/python benchmarks/kernel_builds.py /tmp/before.so /tmp/after.so        # one thread, CPU time
    .venv/bin/python benchmarks/kernel_builds.py --threads 2 /tmp/x.so:avx2:0 /tmp/x.so:avx2:2

Each argument is a built ``_kernels`` module, optionally with the variant to run (default: the first
this processor runs) and, for the LSTM, the number of shares of its hidden units (``lstm_units.c``; 0:
the rows shared out), as ``PATH[:VARIANT[:SHARES]]``; the same file may be named twice. Each module
is imported under a package name of its own, so each has its own threads and state. Cases, at the
chapter's size (35 steps, ``--rows`` rows, 512 hidden units, float32): the forward and backward step
loops of the RNN, the GRU and the LSTM (``--cases``), and ``decode``: greedy decoding of
``--decode-steps`` characters for ``--rows`` streams (vocabulary 28), reported per step. Every round
runs each case of every module in turn (the order rotated between rounds), the best of ``--repeats``
runs counting; the table gives the median over rounds, the slowest and fastest round, and the ratio to
the first module. ``--clock cpu`` (the default with one thread) counts this process's CPU time, which
another program taking the core does not add to; with several threads it counts their spinning too.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time

import numpy as np

HIDDEN, STEPS, VOCAB = 512, 35, 28
CASES = ("rnn fwd", "rnn bwd", "gru fwd", "gru bwd", "lstm fwd", "lstm bwd", "decode")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def load(argument: str, index: int):
    """(name, module, variant, shares) for PATH[:VARIANT[:SHARES]]."""
    path, _, rest = argument.partition(":")
    variant, _, shares = rest.partition(":")
    spec = importlib.util.spec_from_file_location(f"build{index}._kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    variant = variant or next(name for name, runs, _ in module.variants() if runs)
    name = f"{index}:{os.path.basename(path)}:{variant}" + (f":{shares}" if shares else "")
    return name, module, variant, int(shares) if shares else 0


def cases(module, variant: str, shares: int, rows: int, threads: int, decode_steps: int) -> dict:
    """case -> (function, FLOPs or steps): the arrays made once, as the loops want them."""
    rng = np.random.default_rng(0)
    H, T, B = HIDDEN, STEPS, rows
    floats = lambda *shape, scale=1.0: (rng.standard_normal(shape) * scale).astype(np.float32)  # noqa: E731
    W, W2, W4 = floats(H, H, scale=0.04), floats(H, 2 * H, scale=0.04), floats(H, 4 * H, scale=0.04)
    inputs, d_outputs = floats(T + 1, B, H, scale=0.5), floats(T, B, H)
    terms3, terms4 = floats(T, B, 3 * H), floats(T, B, 4 * H)
    hs = inputs.copy()
    module.recurrence_forward(variant, T, B, H, threads, False, W, hs)
    empty = lambda *shape: np.zeros(shape, np.float32)  # noqa: E731
    dz, d_start = empty(T, B, H), empty(B, H)
    gru = [empty(T + 1, B, H), empty(T, B, 2 * H), empty(T, B, H), empty(T, B, H)]
    lstm = [empty(T + 1, B, H), empty(T + 1, B, H), empty(T, B, 4 * H), empty(T, B, H)]
    d_terms3, d_terms4 = empty(T, B, 3 * H), empty(T, B, 4 * H)
    module.gru_forward(variant, T, B, H, threads, terms3, W2, W, *gru)
    module.lstm_forward(variant, T, B, H, threads, shares, terms4, W4, *lstm)
    W_step, input_rows, b_q = floats(H, H + VOCAB, scale=1.5 / np.sqrt(H)), floats(VOCAB, H, scale=0.8), floats(VOCAB)
    h0 = np.tanh(floats(B, H))
    logits0 = (h0 @ W_step[:, H:] + b_q).astype(np.float32)

    def rnn_forward():
        module.recurrence_forward(variant, T, B, H, threads, False, W, inputs.copy())

    def decode():
        module.greedy_decode(variant, B, H, VOCAB, 0, decode_steps, threads, False, np.zeros((B, 0), np.int64),
                             input_rows, W_step, b_q, h0.copy(), logits0.copy(), np.empty((B, decode_steps), np.int64))

    flops = {cell: 2 * B * H * GATES[cell] * H * T for cell in GATES}
    return {
        "rnn fwd": (rnn_forward, flops["rnn"]),
        "rnn bwd": (lambda: module.recurrence_backward(variant, T, B, H, threads, False, W, hs, d_outputs, None, dz,
                                                       d_start), flops["rnn"]),
        "gru fwd": (lambda: module.gru_forward(variant, T, B, H, threads, terms3, W2, W, *gru), flops["gru"]),
        "gru bwd": (lambda: module.gru_backward(variant, T, B, H, threads, W2, W, gru[0], gru[1], gru[2], d_outputs,
                                                None, d_terms3, d_start), flops["gru"]),
        "lstm fwd": (lambda: module.lstm_forward(variant, T, B, H, threads, shares, terms4, W4, *lstm),
                     flops["lstm"]),
        "lstm bwd": (lambda: module.lstm_backward(variant, T, B, H, threads, shares, W4, lstm[1], lstm[2], lstm[3],
                                                  d_outputs, None, None, d_terms4, d_start, d_start.copy()),
                     flops["lstm"]),
        "decode": (decode, None),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("builds", nargs="+", help="PATH[:VARIANT[:SHARES]] of built _kernels modules")
    parser.add_argument("--cases", default=",".join(CASES[:-1]), help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=("wall", "cpu"), help="default: cpu with one thread, else wall")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-steps", type=int, default=400)
    args = parser.parse_args()
    clock = {"cpu": time.process_time, "wall": time.perf_counter}[args.clock or ("cpu" if args.threads == 1 else "wall")]
    builds = [load(argument, index) for index, argument in enumerate(args.builds)]
    wanted = args.cases.split(",")
    table = {name: cases(module, variant, shares, args.rows, args.threads, args.decode_steps)
             for name, module, variant, shares in builds}
    seconds = {(name, case): [] for name in table for case in wanted}
    names = list(table)
    for round_index in range(args.rounds):
        for case in wanted:
            for name in names[round_index % len(names):] + names[:round_index % len(names)]:
                work = table[name][case][0]
                work()
                best = float("inf")
                for _ in range(args.repeats):
                    start = clock()
                    work()
                    best = min(best, clock() - start)
                seconds[(name, case)].append(best)
    print(f"{args.rows} rows, {args.threads} thread(s), {clock.__name__}, median of {args.rounds} rounds "
          f"(best of {args.repeats} each); load average {os.getloadavg()}")
    for case in wanted:
        first = None
        for name in names:
            values = seconds[(name, case)]
            median = statistics.median(values)
            first = first or median
            flops = table[name][case][1]
            if flops is None:
                scale, unit, rate = 1e6 / args.decode_steps, "us/step", ""
            else:
                scale, unit, rate = 1e3, "ms", f"  {flops / median / 1e9:6.1f} GFLOP/s"
            print(f"{case:9s} {name:28s} {median * scale:8.2f} {unit} [{min(values) * scale:.2f}-"
                  f"{max(values) * scale:.2f}]{rate}  x{first / median:.3f}")


if __name__ == "__main__":
    main()
