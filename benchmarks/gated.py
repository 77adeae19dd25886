"""Training speed of the three cells (RNN, GRU, LSTM) at the chapter's settings, side by side in one process.

    .venv/bin/python benchmarks/gated.py                        # every cell, the default rows, 5 rounds
    .venv/bin/python benchmarks/gated.py --cells lstm --rounds 9 --name gated-cpu-2core
    .venv/bin/python benchmarks/gated.py --threads 1            # one thread for every row
    .venv/bin/python benchmarks/gated.py --rows torch-compiled,torch-own   # PyTorch's team or the kernels' own

Rows, for each cell (batch 32, 35 steps, 512 hidden units, the 28-token vocabulary of the bundled Time
Machine, one-hot inputs, SGD with lr 1, gradients clipped to norm 1, sequential batches with the state
carried and detached, float32, on the CPU):

- ``book``: the book's own from-scratch code (D2L 8.5 ``rnn``, 9.1 ``gru``, 9.2 ``lstm``, with their
  ``get_params`` and ``init_*_state``), written out below and in bench.py, trained by the chapter's
  ``train_epoch_ch8`` with its ``sgd`` and ``grad_clipping`` (from bench.py): the baseline;
- ``nn``: ``torch.nn.RNN`` / ``GRU`` / ``LSTM`` in the book's concise ``RNNModel`` (one-hot inputs, a
  linear output layer), trained by that same loop;
- ``torch-chapter``: scratchrnn's torch backend, impl="chapter" (the book's cells, autograd);
- ``torch``: scratchrnn's torch backend, its default fast path (hand-written BPTT,
  ``backends/torch/fast_model.py``), with the loops it chooses;
- ``torch-compiled``: the same with the compiled step loops forced on (on PyTorch's OpenMP team),
  ``torch-own``: forced on, on the kernels' own threads (``SCRATCHRNN_TORCH_TEAM=0``), ``torch-loop``:
  forced off (PyTorch's own step loops);
- ``numpy``: scratchrnn's NumPy reference (hand-written BPTT).

Every row lives in this one process (torch and NumPy only; no two deep-learning frameworks), and each
round times every row once, in an order rotated from round to round, so that a busy stretch of a
shared machine slows every row alike, each after a pause in which the row before's threads stop
spinning (``bench.settle``); a rate is the median over the rounds. Each round also times a
512x512 float32 GEMM (bench.py's), the machine's practical limit: one training token costs about
6 (G H^2 + H V) FLOPs (G gates: 3 for the GRU, 4 for the LSTM), so tokens/s times that, over the GEMM
rate, is how near the limit each row trains.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (this folder: the chapter's training loop, the GEMM timer, the runners)

CELLS = ("rnn", "gru", "lstm")
ROWS = ("book", "nn", "torch-chapter", "torch", "torch-compiled", "torch-own", "torch-loop", "numpy")
DEFAULT_ROWS = ("book", "nn", "torch", "torch-compiled", "torch-loop")
GATES = {"rnn": 1, "gru": 3, "lstm": 4}


# =====================================================================================================
# The book's gated cells (Dive into Deep Learning 9.1 and 9.2, PyTorch), written out as the baseline.
# =====================================================================================================
def book_gated_code(torch):
    """The book's ``get_params``, state and step functions of the GRU and the LSTM, for a torch."""

    def normal(shape, device):
        return torch.randn(size=shape, device=device) * 0.01

    def three(num_inputs, num_hiddens, device):
        return (normal((num_inputs, num_hiddens), device), normal((num_hiddens, num_hiddens), device),
                torch.zeros(num_hiddens, device=device))

    def output_layer(num_hiddens, num_outputs, device):
        return [normal((num_hiddens, num_outputs), device), torch.zeros(num_outputs, device=device)]

    def get_gru_params(vocab_size, num_hiddens, device):
        W_xz, W_hz, b_z = three(vocab_size, num_hiddens, device)   # update gate
        W_xr, W_hr, b_r = three(vocab_size, num_hiddens, device)   # reset gate
        W_xh, W_hh, b_h = three(vocab_size, num_hiddens, device)   # candidate hidden state
        params = [W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h,
                  *output_layer(num_hiddens, vocab_size, device)]
        for param in params:
            param.requires_grad_(True)
        return params

    def init_gru_state(batch_size, num_hiddens, device):
        return (torch.zeros((batch_size, num_hiddens), device=device),)

    def gru(inputs, state, params):
        W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h, W_hq, b_q = params
        H, = state
        outputs = []
        for X in inputs:
            Z = torch.sigmoid((X @ W_xz) + (H @ W_hz) + b_z)
            R = torch.sigmoid((X @ W_xr) + (H @ W_hr) + b_r)
            H_tilda = torch.tanh((X @ W_xh) + ((R * H) @ W_hh) + b_h)
            H = Z * H + (1 - Z) * H_tilda
            Y = H @ W_hq + b_q
            outputs.append(Y)
        return torch.cat(outputs, dim=0), (H,)

    def get_lstm_params(vocab_size, num_hiddens, device):
        W_xi, W_hi, b_i = three(vocab_size, num_hiddens, device)   # input gate
        W_xf, W_hf, b_f = three(vocab_size, num_hiddens, device)   # forget gate
        W_xo, W_ho, b_o = three(vocab_size, num_hiddens, device)   # output gate
        W_xc, W_hc, b_c = three(vocab_size, num_hiddens, device)   # candidate memory cell
        params = [W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c,
                  *output_layer(num_hiddens, vocab_size, device)]
        for param in params:
            param.requires_grad_(True)
        return params

    def init_lstm_state(batch_size, num_hiddens, device):
        return (torch.zeros((batch_size, num_hiddens), device=device),
                torch.zeros((batch_size, num_hiddens), device=device))

    def lstm(inputs, state, params):
        W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c, W_hq, b_q = params
        H, C = state
        outputs = []
        for X in inputs:
            I = torch.sigmoid((X @ W_xi) + (H @ W_hi) + b_i)
            F = torch.sigmoid((X @ W_xf) + (H @ W_hf) + b_f)
            O = torch.sigmoid((X @ W_xo) + (H @ W_ho) + b_o)
            C_tilda = torch.tanh((X @ W_xc) + (H @ W_hc) + b_c)
            C = F * C + I * C_tilda
            H = O * torch.tanh(C)
            Y = (H @ W_hq) + b_q
            outputs.append(Y)
        return torch.cat(outputs, dim=0), (H, C)

    return {"gru": (get_gru_params, init_gru_state, gru), "lstm": (get_lstm_params, init_lstm_state, lstm)}


class _BookRunner(bench._ChapterRunner):
    """The book's from-scratch cell (``book``) or torch.nn's (``nn``), trained by the chapter's loop
    (``bench._ChapterRunner.train``)."""

    def __init__(self, cell, row, spec, vocab):
        import torch
        from torch import nn
        self.torch, self.device, self.vocab = torch, torch.device("cpu"), vocab
        torch.manual_seed(0)
        self.ch = bench.chapter_code(torch, self.device)
        hidden = spec["num_hiddens"]
        if row == "book":
            get_params, init_state, step = (book_gated_code(torch)[cell] if cell != "rnn" else
                                            (self.ch.get_params, self.ch.init_rnn_state, self.ch.rnn))
            self.net = self.ch.RNNModelScratch(len(vocab), hidden, self.device, get_params, init_state, step)
            params = self.net.params
        else:
            layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell](len(vocab), hidden)
            self.net = _concise_model(self.ch, layer, len(vocab))
            params = list(self.net.parameters())
        self.updater = lambda batch_size: self.ch.sgd(params, 1.0, batch_size)
        self.loss = nn.CrossEntropyLoss()


def _concise_model(ch, layer, vocab_size):
    """The book's concise RNNModel around ``layer``, whose state is (H, C) for an LSTM (9.2)."""
    from torch import nn

    class ConciseModel(ch.RNNModel):
        def begin_state(self, device, batch_size=1):
            H = super().begin_state(device, batch_size)
            return (H, H.clone()) if isinstance(self.rnn, nn.LSTM) else H

    return ConciseModel(layer, vocab_size)


@contextlib.contextmanager
def compiled_loops(row: str):
    """The step loops a ``torch-*`` row runs, for the block's duration: forced on (``torch-compiled``;
    ``torch-own`` on the kernels' own threads), forced off (``torch-loop``), else as chosen
    (``kernels.choose``, measured on this machine). A backend asks once per shape, on its first
    minibatch, which the warm-up runs inside this block."""
    from scratchrnn.kernels import torch_team
    forced = {"torch-compiled": "compiled", "torch-own": "compiled", "torch-loop": "own"}.get(row)
    saved = torch_team.team, os.environ.get("SCRATCHRNN_LOOPS")
    if forced:
        os.environ["SCRATCHRNN_LOOPS"] = forced
    if row == "torch-own":
        torch_team.team = lambda: None
    try:
        yield
    finally:
        torch_team.team = saved[0]
        if saved[1] is None:
            os.environ.pop("SCRATCHRNN_LOOPS", None)
        else:
            os.environ["SCRATCHRNN_LOOPS"] = saved[1]


class _GatedScratchRunner(bench._ScratchRunner):
    """A scratchrnn backend with one of the cells, trained by the package's own loop
    (``bench._ScratchRunner.train``), its step loops as the row says (``compiled_loops``)."""

    def __init__(self, cell, row, spec, vocab):
        from scratchrnn import backends
        from scratchrnn.model import ModelConfig, init_params
        from scratchrnn.training import TrainConfig
        name, options = ("numpy", {}) if row == "numpy" else ("torch", {"impl": "chapter" if row == "torch-chapter"
                                                                         else "fast"})
        self.row = row
        config = ModelConfig(len(vocab), spec["num_hiddens"], cell=cell)
        self.backend = backends.create(name, init_params(config, 0), config, **options)
        self.config = TrainConfig(epochs=1, lr=1.0, batch_size=32, num_steps=spec["num_steps"],
                                  sampling="sequential", clip=1.0)
        self.vocab, self.device = vocab, "cpu"

    def train(self, batches) -> float:
        with compiled_loops(self.row):
            return super().train(batches)


def flops_per_token(cell: str, hidden: int, vocab_size: int) -> float:
    """bench.flops_per_token's count for a cell with G gates: three products of each weight matrix."""
    return 6 * (GATES[cell] * hidden * hidden + hidden * vocab_size)


def gemm_rates(seconds: float, clock=time.perf_counter) -> dict:
    """GFLOP/s of a 512x512 float32 product in PyTorch and in NumPy, now."""
    return {framework: bench.gemm_gflops(framework, "cpu", seconds, clock=clock) for framework in ("torch", "numpy")}


def format_table(medians: dict, gemm: float, vocab_size: int, hidden: int) -> str:
    """A Markdown table: tokens/s, the ratios to the book's code and to torch.nn, the share of GEMM."""
    lines = ["| row | tokens/s | x book | x torch.nn | % of GEMM |", "|---|---:|---:|---:|---:|"]
    for name, rate in medians.items():
        cell, row = name.split(":")
        book, concise = medians.get(f"{cell}:book"), medians.get(f"{cell}:nn")
        share = rate * flops_per_token(cell, hidden, vocab_size) / 1e9 / gemm
        lines.append(f"| {cell} {row} | {rate:,.0f} | {rate / book:.2f}x | {rate / concise:.2f}x | {100 * share:.0f}% |"
                     if book and concise else f"| {cell} {row} | {rate:,.0f} | - | - | {100 * share:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default=",".join(CELLS), help="comma-separated, from: rnn, gru, lstm")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=3, help="minibatches of 32 x 35 tokens per timing")
    parser.add_argument("--threads", type=int,
                        help="threads for every row, torch's and NumPy's BLAS alike (default: the libraries' "
                             "own); 1 on a machine whose other programs keep a core busy, where a team of "
                             "two threads waits at every step for the one that shares its core")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: rates from the CPU time this process took (with --threads 1: what a row "
                             "costs a core, which other programs taking the core for a while do not add to)")
    parser.add_argument("--name", help="write benchmarks/results/<name>.json")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.clock == "cpu" and args.threads != 1:
        parser.error("--clock cpu needs --threads 1 (the CPU time of several threads counts their waiting)")
    if args.threads:
        # before NumPy and torch are imported: their BLAS libraries read these when they start
        for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(args.threads)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from scratchrnn import kernels
    from scratchrnn.data import SeqDataLoader, load_corpus
    spec = {"num_hiddens": 512, "num_steps": 35}
    corpus, vocab = load_corpus(None, None)
    batches = list(SeqDataLoader(corpus, 32, 35, "sequential", seed=0))
    runners = {}
    for cell in args.cells.split(","):
        for row in args.rows.split(","):
            runner_class = _BookRunner if row in ("book", "nn") else _GatedScratchRunner
            runners[f"{cell}:{row}"] = runner_class(cell, row, spec, vocab)
    for runner in runners.values():                                      # warm-up
        runner.train(batches[:2])

    rates: dict = {name: [] for name in runners}
    gemm: dict = {"torch": [], "numpy": []}
    names = list(runners)
    steal = bench.StealMeter()
    for round_index in range(args.rounds):
        for framework, rate in gemm_rates(0.3, clock).items():
            gemm[framework].append(rate)
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for name in order:
            timed = batches[2 + args.batches * round_index:][:args.batches]
            bench.settle()
            start = clock()
            rate = runners[name].train(timed)
            rates[name].append(rate if args.clock == "wall" else len(timed) * 32 * 35 / (clock() - start))
        print(f"  round {round_index + 1} of {args.rounds}: load average {os.getloadavg()[0]:.2f}", flush=True)

    steal_share = steal.share()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    gemm_medians = {framework: statistics.median(values) for framework, values in gemm.items()}
    best_gemm = max(gemm_medians.values())
    print(f"\nmedian of {args.rounds} rounds, {args.batches} batches of 32 x 35 tokens per timing, {args.clock} clock; "
          f"torch threads {torch.get_num_threads()}; load average {os.getloadavg()}; kernels {kernels.status()}"
          + f"; {bench.StealMeter.describe(steal_share)}")
    print(format_table(medians, best_gemm, len(vocab), spec["num_hiddens"]))
    print("GEMM 512x512 float32: " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in gemm_medians.items())
          + "; % of GEMM against the faster")
    if args.name:
        path = Path(__file__).resolve().parent / "results" / f"{args.name}.json"
        path.write_text(json.dumps({
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                        "load_average_at_end": os.getloadavg(), "steal_share": steal_share},
            "settings": {**vars(args), "torch_threads": torch.get_num_threads(), "kernels": kernels.status()},
            "gemm_gflops": gemm_medians, "tokens_per_s": medians, "runs": rates, "gemm_runs": gemm}, indent=2) + "\n")
        print(f"written: {path}")


if __name__ == "__main__":
    main()
