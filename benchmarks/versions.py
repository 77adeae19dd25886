"""Two versions of scratchrnn side by side: has a change lost speed? Training tokens/s of one backend at
the chapter's settings, this checkout against another, with the chapter's code as the baseline.

    git worktree add /tmp/before 829b211
    (cd /tmp/before && /work/main/.venv/bin/python setup.py build_ext --inplace)
    .venv/bin/python benchmarks/versions.py --other /tmp/before --rounds 25 --name versions-torch
    .venv/bin/python benchmarks/versions.py --other /tmp/before --backend mxnet --python .venv-mxnet/bin/python
    .venv/bin/python benchmarks/versions.py --other /tmp/before --generate 64    # generation, 64 streams

On a machine whose speed moves from minute to minute (a virtual machine on a shared host), rates
measured an hour apart, or in processes run one after another, cannot tell a few percent lost from the
host's weather. Here each row lives in a worker process of its own that stays up for the whole run
(``this``: this checkout's ``src``; ``other``: the other checkout's, first on its ``PYTHONPATH``, both
run by ``--python``, the environment that has the backend's framework; and ``chapter``: the chapter's
code from bench.py, run by this Python, which has PyTorch), each warmed up once, and every round asks each worker
in turn, in a rotated order and after a pause (``bench.settle``), to train the same minibatches:
sequential batches of 32 x 35 tokens of the whole book, 512 hidden units, SGD with lr 1, clipping at 1,
float32 on the CPU, through the version's own ``train_epoch``. Rates are medians over the rounds; the
share of the CPUs' time the host took is printed beside them. Only the API both versions share is
used (``backends.create``, ``ModelConfig``, ``init_params``, ``load_corpus``, ``SeqDataLoader``,
``TrainConfig``, ``train_epoch``), which every version since the first benchmark has.
``--generate STREAMS`` times greedy generation instead (``generation.predict_many``), as ``bench.py``
does: STREAMS 12-character slices of the book as prompts, ``--chars`` characters each, against the
chapter's ``predict_ch8`` for one stream. ``--clock cpu`` runs every worker on one thread
(OMP_NUM_THREADS=1) and divides by the process's CPU time instead of the wall time: on a machine that
others keep busy, the wall time of a timing depends on what they did meanwhile, its CPU time much less.

    .venv/bin/python benchmarks/versions.py --other /work/main --backend numpy --cell lstm --clock cpu
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (this folder: the chapter's code, the pause between rows, the steal meter)


def worker(row: str, backend_name: str, cell: str, streams: int, clock: str = "wall") -> None:
    """Serves one row: after warming up, reads "START COUNT" lines and answers each with the tokens/s
    of training minibatches START .. START + COUNT - 1, or, if ``streams``, with the characters/s of
    generating COUNT characters for each of that many streams (the chapter's row: one stream, its
    ``predict_ch8``)."""
    import scratchrnn
    from scratchrnn.data import SeqDataLoader, load_corpus
    corpus, vocab = load_corpus(None, None)
    batches = list(SeqDataLoader(corpus, 32, 35, "sequential", seed=0))
    spec = {**bench.FULL, "device": "cpu", "num_hiddens": 512, "num_steps": 35}
    if row == "chapter":
        runner = bench._ChapterRunner("chapter", spec, vocab)
        train = runner.train

        def generate(num_chars):
            runner.generate_one(bench.GENERATION_PREFIX, num_chars)
            return 1
    else:
        from scratchrnn import backends
        from scratchrnn.model import ModelConfig, init_params
        from scratchrnn.training import TrainConfig, train_epoch
        # the cell named only when it is not the chapter's: versions before the cells had no such field
        config = ModelConfig(len(vocab), 512) if cell == "rnn" else ModelConfig(len(vocab), 512, cell=cell)
        backend = backends.create(backend_name, init_params(config, 0), config)
        settings = TrainConfig(epochs=1, lr=1.0, batch_size=32, num_steps=35, sampling="sequential", clip=1.0)

        def train(chosen):
            return train_epoch(backend, chosen, settings).tokens_per_sec

        def generate(num_chars):
            from scratchrnn.generation import predict_many
            # as bench.py's 64 streams: 12-character slices of the book, one a stream
            prefixes = ["".join(vocab.to_tokens(list(corpus[i * 97:i * 97 + 12]))) for i in range(streams)]
            predict_many(backend, vocab, prefixes, num_chars)
            return streams
    if clock == "cpu":
        # tokens per second of this process's CPU time (one thread: see --clock)
        train_on_wall = train

        def train(chosen):
            began = time.process_time()
            train_on_wall(chosen)
            return sum(X.size for X, _ in chosen) / (time.process_time() - began)
    if streams:        # the warm-up
        generate(2)
    else:
        train(batches[:2])
    print(json.dumps({"ready": True, "scratchrnn": str(Path(scratchrnn.__file__).parent), "batches": len(batches)}),
          flush=True)
    for line in sys.stdin:
        start, count = (int(word) for word in line.split())
        if streams:
            began = time.perf_counter()
            rate = generate(count) * count / (time.perf_counter() - began)
        else:
            rate = train([batches[(start + k) % len(batches)] for k in range(count)])
        print(json.dumps({"rate": rate}), flush=True)


class Worker:
    """A row's worker process, started with ``src`` first on its PYTHONPATH."""

    def __init__(self, row: str, src: Path, backend_name: str, python: str, cell: str, streams: int,
                 clock: str = "wall"):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
        if clock == "cpu":
            env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", SCRATCHRNN_THREADS="1")
        self.process = subprocess.Popen([python, __file__, "--worker", row, "--backend", backend_name,
                                         "--cell", cell, "--generate", str(streams), "--clock", clock],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._answer()
        if row != "chapter" and Path(self.info["scratchrnn"]) != src / "scratchrnn":
            raise SystemExit(f"the {row} worker imported scratchrnn from {self.info['scratchrnn']}, not from {src}")

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a worker ended early (exit status {self.process.wait()})")
        return json.loads(line)

    def measure(self, start: int, count: int) -> float:
        self.process.stdin.write(f"{start} {count}\n")
        self.process.stdin.flush()
        return self._answer()["rate"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="the other version's checkout (its compiled library built "
                                                   "in place, if it has one)")
    parser.add_argument("--backend", default="torch", choices=("torch", "numpy", "tensorflow", "paddle", "mxnet"))
    parser.add_argument("--python", default=sys.executable,
                        help="the Python that runs the two versions' rows (default: this one)")
    parser.add_argument("--cell", default="rnn", choices=("rnn", "gru", "lstm"),
                        help="the versions' cell (gru, lstm: versions that have them; the chapter's row "
                             "stays the chapter's RNN)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--batches", type=int, default=8, help="minibatches of 32 x 35 tokens per timing")
    parser.add_argument("--generate", type=int, default=0, metavar="STREAMS",
                        help="measure greedy generation for this many streams instead of training (the "
                             "chapter's row: predict_ch8, one stream)")
    parser.add_argument("--chars", type=int, default=200,
                        help="with --generate: characters a stream per timing")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: tokens per second of wall time, the libraries' own threads; cpu: per second "
                             "of the process's CPU time, one thread (for a machine others keep busy)")
    parser.add_argument("--name", help="write benchmarks/results/<name>.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.backend, args.cell, args.generate, args.clock)
    if args.other is None or not (args.other / "src" / "scratchrnn").is_dir():
        parser.error("--other must name a checkout of scratchrnn (a folder with src/scratchrnn)")
    sources = {"chapter": HERE.parent / "src", "this": HERE.parent / "src", "other": args.other.resolve() / "src"}
    workers = {row: Worker(row, src, args.backend, sys.executable if row == "chapter" else args.python, args.cell,
                           args.generate, args.clock)
               for row, src in sources.items()}
    commits = {row: _commit(src.parent) for row, src in sources.items() if row != "chapter"}
    task = f"generation, {args.generate} streams" if args.generate else "training"
    unit = "chars/s" if args.generate else "tokens/s"
    count = args.chars if args.generate else args.batches
    print(f"{args.backend} backend, {args.cell}, {task}; this: {commits['this']}, other: {commits['other']}",
          flush=True)
    rates: dict = {row: [] for row in workers}
    names = list(workers)
    steal = bench.StealMeter()
    try:
        for round_index in range(args.rounds):
            start = 2 + args.batches * round_index
            for row in names[round_index % len(names):] + names[:round_index % len(names)]:
                bench.settle()
                rates[row].append(workers[row].measure(start, count))
            print(f"  round {round_index + 1} of {args.rounds}: " + ", ".join(
                f"{row} {values[-1]:,.0f}" for row, values in rates.items()), flush=True)
    finally:
        for process in workers.values():
            process.close()
    steal_share = steal.share()
    medians = {row: statistics.median(values) for row, values in rates.items()}
    timing = f"{args.chars} characters a stream" if args.generate else f"{args.batches} minibatches"
    clock = "of CPU time, one thread" if args.clock == "cpu" else "of wall time"
    print(f"\nmedian {unit} ({clock}) of {args.rounds} rounds of {timing}; {bench.StealMeter.describe(steal_share)}")
    print(f"| row | {unit} | x chapter | x other |\n|---|---:|---:|---:|")
    for row, rate in medians.items():
        print(f"| {row} | {rate:,.0f} | {rate / medians['chapter']:.2f}x | {rate / medians['other']:.2f}x |")
    if args.name:
        path = HERE / "results" / f"{args.name}.json"
        path.write_text(json.dumps({
            "machine": {"cpu": bench.machine_description().get("cpu", "unknown"), "platform": platform.platform(),
                        "cpus": os.cpu_count(),
                        "load_average_at_end": os.getloadavg(), "steal_share": steal_share},
            "settings": {"backend": args.backend, "cell": args.cell, "rounds": args.rounds, "clock": args.clock,
                         "batches": args.batches, "generate_streams": args.generate, "chars": args.chars},
            "commits": commits, "chars_per_s" if args.generate else "tokens_per_s": medians, "runs": rates},
            indent=2) + "\n")
        print(f"written: {path}")


def _commit(checkout: Path) -> str:
    """The checkout's commit (with "+changes" where its code, src/ and setup.py, has uncommitted
    changes), or "unknown"."""
    try:
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no", "--",
                                "src", "setup.py"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


if __name__ == "__main__":
    main()
