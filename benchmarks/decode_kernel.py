"""The compiled greedy decoder against NumPy's decode loop, step by step, at the chapter's size.

    .venv/bin/python benchmarks/decode_kernel.py            # about a minute

For 1 to 1024 streams: microseconds per step (one character for every stream) of
- the compiled decoder with 1 thread and with 2 (``kernels.decode.greedy_decode``),
- ``backends.decoding.decode_loop`` (one BLAS product per step, Python around it).
Each is the best of several runs, the machine's noise being all on one side: past some number of
streams the BLAS product wins (``kernels.choose`` finds where on the machine that generates). Then, for the
64-stream goal, the (64 x 512) @ (512 x 540) product alone; and 1 and 64 streams again while another
process keeps a core busy (the decoder's fallback when a thread keeps losing its core, and its groups
of streams taken in turn). No framework is imported.

It measures the variant the library picks for this processor; ``SCRATCHRNN_KERNEL_VARIANT=avx2`` (or
``baseline``, ``avx512``) measures another that the processor runs.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

from scratchrnn import kernels
from scratchrnn.kernels import decode as fast_decode
from scratchrnn.backends.decoding import decode_loop
from scratchrnn.generation import Decoding, TokenPicker

HIDDEN, VOCAB = 512, 28


def best_seconds(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,2,4,8,16,32,64,128,256,512,1024",
                        help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement; the best counts")
    args = parser.parse_args()
    if kernels.load() is None:
        raise SystemExit(f"the compiled kernels are {kernels.status()}")
    os.environ.pop("SCRATCHRNN_NO_KERNEL", None)
    rng = np.random.default_rng(0)
    W_step = rng.normal(0, 0.05, (HIDDEN, HIDDEN + VOCAB)).astype(np.float32)
    input_rows = rng.normal(0, 0.5, (VOCAB, HIDDEN)).astype(np.float32)
    b_q = rng.normal(0, 1, VOCAB).astype(np.float32)
    greedy = TokenPicker(Decoding())
    chosen = kernels.load()
    print(f"microseconds per step, hidden {HIDDEN}, vocabulary {VOCAB}, best of {args.repeats}; "
          f"the decoder's {chosen.variant} variant, vectors of {chosen.vector_floats} floats")
    print(f"{'streams':>7} {'kernel, 1 thread':>17} {'kernel, 2 threads':>18} {'numpy loop':>11}")
    for batch in (int(b) for b in args.streams.split(",")):
        steps = max(200, 20_000 // batch)
        h0 = np.tanh(rng.normal(size=(batch, HIDDEN))).astype(np.float32)
        logits0 = (h0 @ W_step[:, HIDDEN:] + b_q).astype(np.float32)

        def kernel(threads):
            h, logits = h0.copy(), logits0.copy()
            fast_decode.greedy_decode(h, logits, input_rows, W_step, b_q, "tanh", steps, threads=threads)

        def numpy_loop():
            decode_loop(h0.copy(), logits0, input_rows, W_step, b_q, "tanh", steps, greedy, None)

        times = [best_seconds(lambda: kernel(1), args.repeats), best_seconds(lambda: kernel(2), args.repeats),
                 best_seconds(numpy_loop, args.repeats)]
        print(f"{batch:>7} " + " ".join(f"{1e6 * t / steps:>{w}.2f}" for t, w in zip(times, (17, 18, 11))),
              flush=True)

    h64, product = rng.random((64, HIDDEN), dtype=np.float32), np.empty((64, HIDDEN + VOCAB), np.float32)
    seconds = best_seconds(lambda: [np.matmul(h64, W_step, out=product) for _ in range(200)], args.repeats)
    print(f"\n(64 x {HIDDEN}) @ ({HIDDEN} x {HIDDEN + VOCAB}) alone (NumPy's BLAS): {1e6 * seconds / 200:.1f} us")

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        for batch, steps in ((1, 20_000), (64, 400)):
            h = np.tanh(rng.normal(size=(batch, HIDDEN))).astype(np.float32)
            logits = (h @ W_step[:, HIDDEN:] + b_q).astype(np.float32)
            for threads in (1, 2):
                seconds = best_seconds(lambda: fast_decode.greedy_decode(
                    h.copy(), logits.copy(), input_rows, W_step, b_q, "tanh", steps, threads=threads),
                    args.repeats)
                print(f"{batch} stream(s) beside a process that keeps a core busy, {threads} thread(s): "
                      f"{1e6 * seconds / steps:.2f} us per step")
    finally:
        busy.kill()


if __name__ == "__main__":
    main()
