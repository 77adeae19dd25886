"""Several processes against one: what data parallelism buys on this machine, and what it predicts.

    python benchmarks/distributed.py                 # batch 32 and 256, 3 interleaved rounds
    python benchmarks/distributed.py --quick         # a smoke test
    python benchmarks/distributed.py --out benchmarks/results/distributed-cpu-2core.json

Measured side by side, for the torch backend (float32, 512 hidden units, 35 steps, the book's 28
tokens, SGD with clipping, sequential batches with the state carried; the RNN on its fast path, the
LSTM in its autograd form):
- training tokens/s of 1 process with 2 threads, and of 2 ranks (torchrun, gloo) with 1 thread each,
  both at global batch 32 and 256 (the 2 ranks read 16 or 128 rows each);
- the all-reduce's share of a 2-rank step: the time inside ``GradientAverager`` (flatten, all_reduce,
  divide) over the step's time;
- gloo's all_reduce on its own on 2 ranks, at four sizes from one number to the gradients' bytes:
  a straight line through them gives the latency a and the bandwidth b (t = 2a + bytes/b for a ring
  of 2).

The prediction for N ranks, each on a core of its own like this machine's and joined like these two
(so an optimistic network: loopback), with the global batch B fixed (each rank B/N rows):
    step(N) = compute(B/N rows, 1 thread) + ring all_reduce(N) = c0 + c1 * B/N + 2 (N-1) a + 2 (N-1)/N * bytes / b
with c0 and c1 fitted through the two 1-thread compute times measured (16 and 128 rows per rank), and
tokens/s(N) = B * 35 / step(N). It ignores everything that grows with real networks and machines
(switch latency, stragglers, NUMA); it says where the all-reduce starts to dominate, not a promise.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HIDDEN, STEPS = 512, 35
FULL = dict(rounds=3, timed_steps=20, warmup_steps=3)
QUICK = dict(rounds=1, timed_steps=4, warmup_steps=1)


# -- one measurement (run as a worker: one process, or each rank under torchrun) ------------------------
def worker(cell: str, batch: int, threads: int, timed: int, warmup: int, out: str) -> None:
    import numpy as np
    import torch

    from scratchrnn import backends
    from scratchrnn.data import SeqDataLoader, load_corpus
    from scratchrnn.distributed import GradientAverager, init_world, shutdown_world
    from scratchrnn.model import ModelConfig, init_params
    from scratchrnn.optim import create_optimizer

    world = init_world("torch", threads=threads)
    corpus, vocab = load_corpus(None)
    model = ModelConfig(len(vocab), HIDDEN, cell=cell)
    backend = backends.create("torch", init_params(model, 0), model)
    loader = SeqDataLoader(corpus, batch, STEPS, "sequential", seed=0, rank=world.rank, world_size=world.size)
    optimizer = create_optimizer("sgd")
    reduce_seconds = []
    averager = GradientAverager(world) if world.distributed else None

    def timed_reduce(grads):
        start = time.perf_counter()
        result = averager(grads)
        reduce_seconds.append(time.perf_counter() - start)
        return result

    options = {"reduce": timed_reduce} if averager else {}

    def batches():
        while True:
            yield from loader

    source, state = batches(), backend.begin_state(batch // world.size)
    step_seconds = []
    for i in range(warmup + timed):
        X, Y = next(source)
        start = time.perf_counter()
        _, state = backend.train_step(X, Y, backend.detach(state), 1.0, 1.0, optimizer, **options)
        step_seconds.append(time.perf_counter() - start)
    step_seconds, reduce_seconds = step_seconds[warmup:], reduce_seconds[warmup:]
    grad_bytes = sum(p.numel() * p.element_size() for p in backend.parameters().values())
    result = {"cell": cell, "batch": batch, "ranks": world.size, "threads": torch.get_num_threads(),
              "step_s": statistics.median(step_seconds),
              "tokens_per_sec": batch * STEPS / statistics.median(step_seconds),
              "reduce_s": statistics.median(reduce_seconds) if reduce_seconds else 0.0,
              "grad_bytes": grad_bytes}
    if world.distributed:
        import torch.distributed as dist
        # all_reduce alone at four sizes around the gradients' (fastest of the repeats: the machine's
        # other work only ever adds), for t = fixed + bytes / bandwidth
        sizes, fastest = [1, grad_bytes // 16, grad_bytes // 4, grad_bytes], []
        for nbytes in sizes:
            buffer, times = torch.zeros(max(1, nbytes // 4)), []
            for _ in range(warmup + timed):
                dist.barrier()
                start = time.perf_counter()
                dist.all_reduce(buffer)
                times.append(time.perf_counter() - start)
            fastest.append(min(times[warmup:]))
        result["allreduce_sizes_bytes"], result["allreduce_s"] = sizes, fastest
        slope, intercept = np.polyfit(np.array(sizes, dtype=float), np.array(fastest), 1)
        result["allreduce_fixed_s"], result["allreduce_s_per_byte"] = float(intercept), float(slope)
        # every rank's share of its step: the slowest decides
        result["step_s_ranks"] = world.gather_rows((np.array([result["step_s"]]),))
    if world.is_main:
        if world.distributed:
            result["step_s_ranks"] = result["step_s_ranks"][0].tolist()
        Path(out).write_text(json.dumps(result))
    shutdown_world()


# -- the driver -------------------------------------------------------------------------------------------
def _measure(cell: str, batch: int, ranks: int, settings: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   OMP_NUM_THREADS=str(2 // ranks))
        args = ["--worker", "--cell", cell, "--batch", str(batch), "--threads", str(2 // ranks), "--timed",
                str(settings["timed_steps"]), "--warmup", str(settings["warmup_steps"]), "--result", str(out)]
        if ranks == 1:
            command = [sys.executable, __file__, *args]
        else:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                       str(ranks), __file__, *args]
        subprocess.run(command, env=env, check=True, timeout=900, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def predict(two_rank: dict, batches: dict, ranks_list=(4, 8, 16, 32, 64)) -> dict:
    """tokens/s for N ranks at each global batch, from the model in the module's docstring."""
    # compute on 1 thread: a 2-rank step minus its all-reduce, at 16 and 128 rows per rank
    points = sorted((b // 2, r["step_s"] - r["reduce_s"]) for b, r in batches.items())
    (x0, y0), (x1, y1) = points[0], points[-1]
    c1 = (y1 - y0) / (x1 - x0)
    c0 = y0 - c1 * x0
    if c0 < 0:             # noise on a busy machine: a step's fixed cost cannot be negative
        c0, c1 = 0.0, y1 / x1
    # a ring of 2 ranks: t = 2 a + bytes / b (each rank sends half the buffer, twice)
    latency = max(0.0, two_rank["allreduce_fixed_s"]) / 2
    grad_bytes = two_rank["grad_bytes"]
    bandwidth = 1.0 / max(1e-15, two_rank["allreduce_s_per_byte"])
    table = {}
    for batch in batches:
        rows = {}
        for n in ranks_list:
            if batch % n:
                continue
            compute = c0 + c1 * batch / n
            allreduce = 2 * (n - 1) * latency + 2 * (n - 1) / n * grad_bytes / bandwidth
            rows[n] = {"tokens_per_sec": batch * STEPS / (compute + allreduce),
                       "allreduce_share": allreduce / (compute + allreduce)}
        table[batch] = rows
    return {"c0_s": c0, "c1_s_per_row": c1, "latency_s": latency, "bandwidth_bytes_per_s": bandwidth,
            "by_batch": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--cells", default="rnn,lstm", help="cells to measure, comma-separated")
    parser.add_argument("--cell", default="rnn", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--timed", type=int, default=20, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.cell, args.batch, args.threads, args.timed, args.warmup, args.result)
        return
    settings = QUICK if args.quick else FULL
    cells = args.cells.split(",")
    runs = {(c, b, r): [] for c in cells for b in (32, 256) for r in (1, 2)}
    for round_ in range(settings["rounds"]):
        for key in runs:                         # interleaved: a machine slowing down slows every column
            runs[key].append(_measure(*key, settings))
            print(f"round {round_ + 1}: {key[0]}, batch {key[1]}, {key[2]} rank(s): "
                  f"{runs[key][-1]['tokens_per_sec']:,.0f} tokens/s", file=sys.stderr)

    def median_run(results):
        return sorted(results, key=lambda r: r["tokens_per_sec"])[len(results) // 2]

    summary = {f"{c}_batch{b}_ranks{r}": median_run(results) for (c, b, r), results in runs.items()}
    predictions = {}
    for c in cells:
        two = {b: summary[f"{c}_batch{b}_ranks2"] for b in (32, 256)}
        predictions[c] = predict(two[256], two)
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                          "processor": platform.processor(), "gpu": "none in this session"},
              "settings": {"hidden": HIDDEN, "num_steps": STEPS, "dtype": "float32", **settings},
              "runs": {f"{c}_batch{b}_ranks{r}": results for (c, b, r), results in runs.items()},
              "median": summary, "prediction": predictions}
    print(table(report, cells))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


def table(report: dict, cells: list) -> str:
    m = report["median"]
    lines = ["| cell | global batch | 1 process x 2 threads | 2 ranks x 1 thread | 2 ranks / 1 | "
             "all-reduce share (2 ranks) |", "|---|---:|---:|---:|---:|---:|"]
    for c in cells:
        for b in (32, 256):
            one, two = m[f"{c}_batch{b}_ranks1"], m[f"{c}_batch{b}_ranks2"]
            lines.append(f"| {c} | {b} | {one['tokens_per_sec']:,.0f} | {two['tokens_per_sec']:,.0f} | "
                         f"{two['tokens_per_sec'] / one['tokens_per_sec']:.2f}x | "
                         f"{two['reduce_s'] / two['step_s']:.1%} |")
    for c in cells:
        p = report["prediction"][c]
        lines += ["", f"{c}: compute(rows) = {p['c0_s'] * 1e3:.2f} ms + {p['c1_s_per_row'] * 1e3:.3f} ms/row "
                  f"on 1 thread; all_reduce latency {p['latency_s'] * 1e6:.0f} us per hop, bandwidth "
                  f"{p['bandwidth_bytes_per_s'] / 1e9:.2f} GB/s", "",
                  "| ranks | " + " | ".join(f"{c}, batch {b}: tokens/s (all-reduce share)"
                                          for b in p["by_batch"]) + " |",
                  "|---:|" + "---:|" * len(p["by_batch"])]
        for n in (4, 8, 16, 32, 64):
            row_cells = []
            for b, rows in p["by_batch"].items():
                row = rows.get(n)
                row_cells.append(f"{row['tokens_per_sec']:,.0f} ({row['allreduce_share']:.0%})" if row else "-")
            lines.append(f"| {n} | " + " | ".join(row_cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
