"""Speed of the scratch RNN: the chapter's code, torch.nn.RNN and every scratchrnn backend, side by side.

    python benchmarks/bench.py                  # everything, 3 interleaved rounds (make bench)
    python benchmarks/bench.py --quick          # a smoke test, well under a minute
    python benchmarks/bench.py --impls numpy,torch --rounds 5
    python benchmarks/bench.py --device cuda    # the torch implementations on a GPU
    python benchmarks/bench.py --impls numpy,torch --cells rnn,gru,lstm --rounds 3   # the step loops' table

What is measured, for each implementation (the chapter's settings: 35 steps, 512 hidden units, the
28-token character vocabulary of the bundled Time Machine, SGD with lr 1, gradients clipped to norm 1,
sequential batches with the state carried and detached):
- training tokens/s at batch 32 (the chapter's) and at batch 256;
- greedy generation chars/s, one stream (the chapter's ``predict_ch8``) and 64 streams at once;
- peak resident memory of the process after the batch-32 training (the "chapter run");
- a dense 512x512 float32 GEMM, the machine's practical limit: one training token costs about
  6 (H^2 + H V) FLOPs, so tokens/s times that, over the GEMM rate, is how near the limit training runs.

Then, for the numpy and torch backends among ``--impls`` and every cell of ``--cells`` (the RNN, the GRU
and the LSTM: g = 1, 3, 4 products of H by a hidden-size square matrix per step), training tokens/s
at batch 32 with the compiled library on (the step loops ``kernels.choose`` picks on this machine,
measuring them the first time) and off (``SCRATCHRNN_NO_KERNEL=1``), their ratio, and the share of the
GEMM rate at 6 (g H^2 + H V) FLOPs per token.

Every implementation runs in processes of its own (two deep-learning frameworks must never share one,
and a process's peak memory is then its own): one trains, a fresh one generates, as `scratchrnn
generate` would. A round runs every implementation once, in turn, each timing its work a few times
after a warm-up; a reported rate is the median over all rounds and repeats,
so a machine that slows down for a while slows every column alike.

The baseline ("chapter") is the chapter's PyTorch code written out below, as close to the book as a
script can be; ``nn.RNN`` is the chapter's concise model (8.6) trained by the same loop.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MXNET_PYTHON = ROOT / ".venv-mxnet" / "bin" / "python"

# name -> (framework it imports, what it is)
IMPLEMENTATIONS = {
    "chapter": ("torch", "the chapter's code (baseline): one-hot inputs, torch.mm loop, train_epoch_ch8"),
    "nn.RNN": ("torch", "torch.nn.RNN with the same one-hot inputs, SGD and clipping (chapter 8.6)"),
    "numpy": ("numpy", "scratchrnn, numpy backend (hand-written BPTT); compiled step loops and decoder"),
    "numpy-loop": ("numpy", "the same with the compiled library off: NumPy's loops (NO_KERNEL)"),
    "torch": ("torch", "scratchrnn, torch backend, fast path (the default)"),
    "torch-loop": ("torch", "the same with the compiled library off: PyTorch's loops (NO_KERNEL)"),
    "numpy-avx2": ("numpy", "numpy with the kernels' AVX2 variant forced (SCRATCHRNN_KERNEL_VARIANT)"),
    "numpy-baseline": ("numpy", "numpy with the kernels' baseline variant forced"),
    "torch-avx2": ("torch", "torch with the kernels' AVX2 variant forced (SCRATCHRNN_KERNEL_VARIANT)"),
    "torch-baseline": ("torch", "torch with the kernels' baseline variant forced"),
    "torch-chapter": ("torch", "scratchrnn, torch backend, impl='chapter'"),
    "tensorflow": ("tensorflow", "scratchrnn, tensorflow backend"),
    "paddle": ("paddle", "scratchrnn, paddle backend"),
    "mxnet": ("mxnet", "scratchrnn, mxnet backend (run by .venv-mxnet's python)"),
}
TORCH_IMPLEMENTATIONS = ("chapter", "nn.RNN", "torch", "torch-loop", "torch-chapter", "torch-avx2",
                         "torch-baseline")
GENERATION_PREFIX = "time traveller "

FULL = dict(rounds=3, repeats=3, train_tokens=20_000, warmup_batches=2, gen_chars=2_000, gen_streams=64,
            gen_chars_batched=200, gemm_seconds=1.0, worker_timeout=900)
QUICK = dict(rounds=1, repeats=1, train_tokens=2_000, warmup_batches=1, gen_chars=100, gen_streams=64,
             gen_chars_batched=10, gemm_seconds=0.3, worker_timeout=120)
CELLS = ("rnn", "gru", "lstm")
GATE_PRODUCTS = {"rnn": 1, "gru": 3, "lstm": 4}     # g: products of H by an H x H matrix per step
LOOP_BACKENDS = ("numpy", "torch")                  # the backends with compiled step loops


def loop_impls(impls: list[str], cells: list[str]) -> list[str]:
    """The step loops' table's workers: "<backend>:<cell>:on" and ":off" for each backend with compiled
    loops among ``impls`` and each cell."""
    return [f"{backend}:{cell}:{mode}" for backend in LOOP_BACKENDS if backend in impls for cell in cells
            for mode in ("on", "off")]


# =====================================================================================================
# The chapter's code (Dive into Deep Learning 8.5, PyTorch), written out as the baseline.
# =====================================================================================================
def chapter_code(torch, device):
    """The chapter's functions, bound to an imported torch; returned as a namespace."""
    import torch.nn.functional as F
    from torch import nn

    def get_params(vocab_size, num_hiddens, device):
        num_inputs = num_outputs = vocab_size

        def normal(shape):
            return torch.randn(size=shape, device=device) * 0.01
        W_xh = normal((num_inputs, num_hiddens))
        W_hh = normal((num_hiddens, num_hiddens))
        b_h = torch.zeros(num_hiddens, device=device)
        W_hq = normal((num_hiddens, num_outputs))
        b_q = torch.zeros(num_outputs, device=device)
        params = [W_xh, W_hh, b_h, W_hq, b_q]
        for param in params:
            param.requires_grad_(True)
        return params

    def init_rnn_state(batch_size, num_hiddens, device):
        return (torch.zeros((batch_size, num_hiddens), device=device),)

    def rnn(inputs, state, params):
        W_xh, W_hh, b_h, W_hq, b_q = params
        H, = state
        outputs = []
        for X in inputs:                     # inputs: (steps, batch, vocab) one-hot
            H = torch.tanh(torch.mm(X, W_xh) + torch.mm(H, W_hh) + b_h)
            Y = torch.mm(H, W_hq) + b_q
            outputs.append(Y)
        return torch.cat(outputs, dim=0), (H,)

    class RNNModelScratch:
        def __init__(self, vocab_size, num_hiddens, device, get_params, init_state, forward_fn):
            self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
            self.params = get_params(vocab_size, num_hiddens, device)
            self.init_state, self.forward_fn = init_state, forward_fn

        def __call__(self, X, state):
            X = F.one_hot(X.T, self.vocab_size).type(torch.float32)
            return self.forward_fn(X, state, self.params)

        def begin_state(self, batch_size, device):
            return self.init_state(batch_size, self.num_hiddens, device)

    class RNNModel(nn.Module):
        """The concise model of 8.6 around torch.nn.RNN."""

        def __init__(self, rnn_layer, vocab_size):
            super().__init__()
            self.rnn = rnn_layer
            self.vocab_size = vocab_size
            self.num_hiddens = self.rnn.hidden_size
            self.linear = nn.Linear(self.num_hiddens, self.vocab_size)

        def forward(self, inputs, state):
            X = F.one_hot(inputs.T.long(), self.vocab_size).to(torch.float32)
            Y, state = self.rnn(X, state)
            output = self.linear(Y.reshape((-1, Y.shape[-1])))
            return output, state

        def begin_state(self, device, batch_size=1):
            return torch.zeros((self.rnn.num_layers, batch_size, self.num_hiddens), device=device)

    def predict_ch8(prefix, num_preds, net, vocab, device):
        state = net.begin_state(batch_size=1, device=device)
        outputs = [vocab[prefix[0]]]

        def get_input():
            return torch.tensor([outputs[-1]], device=device).reshape((1, 1))
        for y in prefix[1:]:                 # warm-up period
            _, state = net(get_input(), state)
            outputs.append(vocab[y])
        for _ in range(num_preds):           # predict num_preds steps
            y, state = net(get_input(), state)
            outputs.append(int(y.argmax(dim=1).reshape(1)))
        return "".join([vocab.idx_to_token[i] for i in outputs])

    def grad_clipping(net, theta):
        if isinstance(net, nn.Module):
            params = [p for p in net.parameters() if p.requires_grad]
        else:
            params = net.params
        norm = torch.sqrt(sum(torch.sum((p.grad ** 2)) for p in params))
        if norm > theta:
            for param in params:
                param.grad[:] *= theta / norm

    def sgd(params, lr, batch_size):
        with torch.no_grad():
            for param in params:
                param -= lr * param.grad / batch_size
                param.grad.zero_()

    class Accumulator:
        def __init__(self, n):
            self.data = [0.0] * n

        def add(self, *args):
            self.data = [a + float(b) for a, b in zip(self.data, args)]

        def __getitem__(self, idx):
            return self.data[idx]

    def train_epoch_ch8(net, train_iter, loss, updater, device, use_random_iter):
        state, start = None, time.perf_counter()
        metric = Accumulator(2)              # sum of training loss, number of tokens
        for X, Y in train_iter:
            if state is None or use_random_iter:
                state = net.begin_state(batch_size=X.shape[0], device=device)
            else:
                if isinstance(net, nn.Module) and not isinstance(state, tuple):
                    state.detach_()
                else:
                    for s in state:
                        s.detach_()
            y = Y.T.reshape(-1)
            X, y = X.to(device), y.to(device)
            y_hat, state = net(X, state)
            l = loss(y_hat, y.long()).mean()
            if isinstance(updater, torch.optim.Optimizer):
                updater.zero_grad()
                l.backward()
                grad_clipping(net, 1)
                updater.step()
            else:
                l.backward()
                grad_clipping(net, 1)
                updater(batch_size=1)
            metric.add(l * y.numel(), y.numel())
        if device.type == "cuda":
            torch.cuda.synchronize()
        return math.exp(metric[0] / metric[1]), metric[1] / (time.perf_counter() - start)

    return argparse.Namespace(
        get_params=get_params, init_rnn_state=init_rnn_state, rnn=rnn, RNNModelScratch=RNNModelScratch,
        RNNModel=RNNModel, predict_ch8=predict_ch8, grad_clipping=grad_clipping, sgd=sgd,
        train_epoch_ch8=train_epoch_ch8)


# =====================================================================================================
# Worker: one implementation, one process.
# =====================================================================================================
# For benchmarks that time several implementations in one process (interleaved.py, gated.py): how
# long to wait before timing a row. NumPy's OpenBLAS threads keep spinning on the cores for about a
# tenth of a second after its last product, and a row timed right after a NumPy row shared the cores
# with them: the chapter's code, timed after the numpy rows, trained at 33,000 tokens/s instead of
# 48,000 in one process.
SETTLE_SECONDS = 0.3


def settle() -> None:
    """Waits until the threads of the row timed before have stopped spinning."""
    time.sleep(SETTLE_SECONDS)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def gemm_gflops(framework: str, device: str, seconds: float, n: int = 512, clock=time.perf_counter) -> float:
    """FLOP rate of a dense n x n float32 matrix product, best of a few timed bursts (``clock``:
    time.process_time for the CPU time this process took, on one thread what a busy machine's other
    programs do not add to)."""
    if framework == "numpy":
        import numpy as np
        a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
        out = np.empty_like(a)

        def product():
            np.matmul(a, a, out=out)

        def sync():
            pass
    else:
        import torch
        a = torch.randn(n, n, device=device)
        out = torch.empty_like(a)

        def product():
            torch.mm(a, a, out=out)

        def sync():
            if device == "cuda":
                torch.cuda.synchronize()
    for _ in range(5):
        product()
    sync()
    best, reps, deadline = 0.0, 20, time.perf_counter() + seconds
    while True:
        start = clock()
        for _ in range(reps):
            product()
        sync()
        elapsed = clock() - start
        best = max(best, 2 * n ** 3 * reps / elapsed / 1e9)
        if time.perf_counter() > deadline:
            return best
        reps = max(reps, int(reps * 0.05 / max(elapsed, 1e-9)) + 1)   # bursts of ~50 ms


def run_worker(impl: str, spec: dict) -> dict:
    """Measure one implementation: {metric: [one value per timed repeat]}, or a number for memory."""
    if impl.startswith("gemm:"):
        framework = impl.split(":", 1)[1]
        device = spec["device"] if framework == "torch" else "cpu"
        return {"gemm_gflops": [gemm_gflops(framework, device, spec["gemm_seconds"])]}

    from scratchrnn.data import load_corpus
    corpus, vocab = load_corpus(None, None)          # the whole bundled Time Machine
    if impl.count(":") == 2:
        return _measure_loops(impl, spec, corpus, vocab)
    runner = (_ChapterRunner if impl in ("chapter", "nn.RNN") else _ScratchRunner)(impl, spec, vocab)
    measure_part = _measure_training if spec["part"] == "train" else _measure_generation
    results = measure_part(runner, spec, corpus, vocab, range(spec["repeats"]))
    results["peak_rss_mb_all"] = peak_rss_mb()
    return results


def _measure_training(runner, spec, corpus, vocab, repeats) -> dict:
    from scratchrnn.data import SeqDataLoader
    results = {}
    for batch_size in (32, 256):
        batches = list(SeqDataLoader(corpus, batch_size, spec["num_steps"], "sequential", seed=0))
        wanted = max(1, math.ceil(spec["train_tokens"] / (batch_size * spec["num_steps"])))
        timed = (batches * math.ceil(wanted / len(batches)))[:wanted]
        runner.train(batches[:spec["warmup_batches"]])
        results[f"train_b{batch_size}_tokens_per_s"] = [runner.train(timed) for _ in repeats]
        if batch_size == 32:
            results["peak_rss_mb"] = peak_rss_mb()  # the chapter's run: what a process needs to train it
            results.update(runner.device_memory())
    return results


def _measure_loops(impl: str, spec: dict, corpus, vocab) -> dict:
    """A worker of the step loops' table: training tokens/s at batch 32 for one backend and cell, the
    compiled library on (the loops chosen here) or off; and which loops ran."""
    from scratchrnn.data import SeqDataLoader
    backend, cell, mode = impl.split(":")
    if mode == "off":
        os.environ["SCRATCHRNN_NO_KERNEL"] = "1"
    runner = _ScratchRunner(backend, spec, vocab, cell)
    batches = list(SeqDataLoader(corpus, 32, spec["num_steps"], "sequential", seed=0))
    wanted = max(1, math.ceil(spec["train_tokens"] / (32 * spec["num_steps"])))
    timed = (batches * math.ceil(wanted / len(batches)))[:wanted]
    runner.train(batches[:spec["warmup_batches"]])     # the first step measures the loops where needed
    rates = [runner.train(timed) for _ in range(spec["repeats"])]
    loops = runner.backend.step_loops(32, spec["num_steps"], True)
    compiled = getattr(loops, "compiled", getattr(getattr(loops, "choice", None), "compiled", False))
    return {"train_b32_tokens_per_s": rates, "compiled": compiled, "peak_rss_mb_all": peak_rss_mb()}


def _measure_generation(runner, spec, corpus, vocab, repeats) -> dict:
    results = {}
    runner.generate_one(GENERATION_PREFIX, 10)     # warm-up
    results["gen_1_chars_per_s"] = []
    for _ in repeats:
        start = time.perf_counter()
        text = runner.generate_one(GENERATION_PREFIX, spec["gen_chars"])
        results["gen_1_chars_per_s"].append(spec["gen_chars"] / (time.perf_counter() - start))
        # at least: an untrained model may pick <unk>, which the chapter's predict_ch8 writes as 5 characters
        assert len(text) >= len(GENERATION_PREFIX) + spec["gen_chars"], "generation returned too little"
    if runner.batched_generation:
        # different prefixes of equal length: 12-character slices of the book
        prefixes = ["".join(vocab.to_tokens(list(corpus[i * 97:i * 97 + 12])))
                    for i in range(spec["gen_streams"])]
        runner.generate_many(prefixes, 2)
        key = f"gen_{spec['gen_streams']}_chars_per_s"
        results[key] = []
        for _ in repeats:
            start = time.perf_counter()
            runner.generate_many(prefixes, spec["gen_chars_batched"])
            elapsed = time.perf_counter() - start
            results[key].append(spec["gen_streams"] * spec["gen_chars_batched"] / elapsed)
    return results


class _ChapterRunner:
    """The chapter's code (``chapter``) or its torch.nn.RNN model (``nn.RNN``)."""

    batched_generation = False                       # the chapter generates one stream at a time

    def __init__(self, impl, spec, vocab):
        import torch
        from torch import nn
        self.torch = torch
        self.device = torch.device(spec["device"])
        torch.manual_seed(0)     # the same weights in every process, and so the same generated text
        self.ch = chapter_code(torch, self.device)
        self.vocab = vocab
        hidden = spec["num_hiddens"]
        if impl == "chapter":
            self.net = self.ch.RNNModelScratch(len(vocab), hidden, self.device, self.ch.get_params,
                                               self.ch.init_rnn_state, self.ch.rnn)
            params = self.net.params
        else:
            self.net = self.ch.RNNModel(nn.RNN(len(vocab), hidden), len(vocab)).to(self.device)
            params = list(self.net.parameters())
        lr = 1.0
        self.updater = lambda batch_size: self.ch.sgd(params, lr, batch_size)
        self.loss = nn.CrossEntropyLoss()

    def train(self, batches) -> float:
        torch = self.torch
        batches = [(torch.as_tensor(X), torch.as_tensor(Y)) for X, Y in batches]
        _, speed = self.ch.train_epoch_ch8(self.net, batches, self.loss, self.updater, self.device, False)
        return speed

    def device_memory(self) -> dict:
        if self.device.type != "cuda":
            return {}
        return {"cuda_peak_mb": self.torch.cuda.max_memory_allocated() / 2 ** 20}

    def generate_one(self, prefix, num_chars) -> str:
        # as the chapter calls it: outside torch.no_grad, so each step also records an autograd graph
        return self.ch.predict_ch8(prefix, num_chars, self.net, self.vocab, self.device)


class _ScratchRunner:
    """A scratchrnn backend, driven through the package's own training loop and generation."""

    batched_generation = True

    def __init__(self, impl, spec, vocab, cell="rnn"):
        from scratchrnn import backends
        from scratchrnn.model import ModelConfig, init_params
        from scratchrnn.training import TrainConfig
        name, options = impl, {}
        if impl == "torch-chapter":
            name, options = "torch", {"impl": "chapter"}
        if impl.endswith("-loop"):
            name = impl[:-len("-loop")]
            os.environ["SCRATCHRNN_NO_KERNEL"] = "1"
        for variant in ("avx2", "baseline"):
            if impl.endswith(f"-{variant}"):
                name = impl[:-len(variant) - 1]
                os.environ["SCRATCHRNN_KERNEL_VARIANT"] = variant
        device = spec["device"] if name == "torch" else "cpu"
        config = ModelConfig(len(vocab), spec["num_hiddens"], cell=cell)
        self.backend = backends.create(name, init_params(config, 0), config, device=device, **options)
        self.config = TrainConfig(epochs=1, lr=1.0, batch_size=32, num_steps=spec["num_steps"],
                                  sampling="sequential", clip=1.0)
        self.vocab, self.device = vocab, device

    def train(self, batches) -> float:
        from scratchrnn.training import train_epoch
        return train_epoch(self.backend, batches, self.config).tokens_per_sec

    def device_memory(self) -> dict:
        if self.device != "cuda":
            return {}
        import torch
        return {"cuda_peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20}

    def generate_one(self, prefix, num_chars) -> str:
        from scratchrnn.generation import predict
        return predict(self.backend, self.vocab, prefix, num_chars)

    def generate_many(self, prefixes, num_chars) -> list[str]:
        from scratchrnn.generation import predict_many
        return predict_many(self.backend, self.vocab, prefixes, num_chars)


# =====================================================================================================
# Orchestrator: rounds of worker processes, medians, ratios, table, JSON.
# =====================================================================================================
def framework_available(framework: str) -> bool:
    import importlib.util
    if framework == "mxnet":
        return MXNET_PYTHON.exists()
    return importlib.util.find_spec(framework) is not None


def worker_command(impl: str, spec: dict) -> list[str]:
    python = str(MXNET_PYTHON) if impl == "mxnet" else sys.executable
    return [python, str(Path(__file__).resolve()), "--worker", impl, "--spec", json.dumps(spec)]


def measure(impl: str, spec: dict) -> dict:
    """Measure one implementation: training in one worker process, generation in another.

    Generation gets a fresh process, as `scratchrnn generate` runs: in the process that has just
    trained, generation's threads were measured at half speed (benchmarks/README.md)."""
    if impl.startswith("gemm:") or impl.count(":") == 2:
        return run_worker_process(impl, spec)
    merged: dict = {}
    for part in ("train", "generate"):
        result = run_worker_process(impl, {**spec, "part": part})
        if "error" in result:
            return result
        peak = max(merged.get("peak_rss_mb_all", 0), result.pop("peak_rss_mb_all"))
        merged.update(result, peak_rss_mb_all=peak)
    return merged


def run_worker_process(impl: str, spec: dict) -> dict:
    """Run one worker process; its last stdout line is its JSON result."""
    try:
        done = subprocess.run(worker_command(impl, spec), capture_output=True, text=True,
                              timeout=spec["worker_timeout"], cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {spec['worker_timeout']} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"exit status {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def flops_per_token(spec: dict, vocab_size: int = 28) -> float:
    """Forward, backward to activations and weight gradients: three products of each weight matrix."""
    hidden = spec["num_hiddens"]
    return 6 * (hidden * hidden + hidden * vocab_size)


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """{impl: {metric: median}} over every timed repeat of the rounds that succeeded; errors kept as text."""
    summary = {}
    for impl, results in runs.items():
        good = [r for r in results if "error" not in r]
        if not good:
            summary[impl] = {"error": results[-1]["error"] if results else "not run"}
            continue
        metrics = sorted({key for r in good for key in r})
        summary[impl] = {key: statistics.median(value for r in good if key in r for value in _as_list(r[key]))
                         for key in metrics}
    return summary


COLUMNS = [
    ("train_b32_tokens_per_s", "train b32 tok/s"),
    ("train_b256_tokens_per_s", "train b256 tok/s"),
    ("gen_1_chars_per_s", "gen 1 chars/s"),
    ("gen_64_chars_per_s", "gen 64 chars/s"),
    ("peak_rss_mb", "peak MB"),
]


def ratios(summary: dict, gemm: float | None, spec: dict) -> dict[str, dict]:
    """Each implementation against the chapter's code; batched generation against predict_ch8."""
    base = summary.get("chapter", {})
    out = {}
    for impl, metrics in summary.items():
        if "error" in metrics:
            continue
        r = {}
        for key, _ in COLUMNS:
            base_key = "gen_1_chars_per_s" if key == "gen_64_chars_per_s" else key
            if key in metrics and base.get(base_key):
                r[key] = metrics[key] / base[base_key]
        if gemm and "train_b256_tokens_per_s" in metrics:
            gflops = metrics["train_b256_tokens_per_s"] * flops_per_token(spec) / 1e9
            r["train_b256_fraction_of_gemm"] = gflops / gemm
        out[impl] = r
    return out


def loops_table(summary: dict, gemm: float | None, spec: dict) -> tuple[list[dict], str]:
    """The step loops' table: for each backend and cell, tokens/s with the compiled library on and
    off, on / off, and the share of the GEMM rate (6 (g H^2 + H V) FLOPs per token)."""
    rows, lines = [], []
    pairs = sorted({impl.rsplit(":", 1)[0] for impl in summary if impl.count(":") == 2},
                   key=lambda pair: (LOOP_BACKENDS.index(pair.split(":")[0]), CELLS.index(pair.split(":")[1])))
    for pair in pairs:
        on, off = summary.get(f"{pair}:on", {}), summary.get(f"{pair}:off", {})
        backend, cell = pair.split(":")
        row = {"backend": backend, "cell": cell, "on_tokens_per_s": on.get("train_b32_tokens_per_s"),
               "off_tokens_per_s": off.get("train_b32_tokens_per_s"), "compiled": bool(on.get("compiled"))}
        hidden, vocab = spec["num_hiddens"], 28
        flops = 6 * (GATE_PRODUCTS[cell] * hidden * hidden + hidden * vocab)
        if row["on_tokens_per_s"] and row["off_tokens_per_s"]:
            row["on_over_off"] = row["on_tokens_per_s"] / row["off_tokens_per_s"]
        if row["on_tokens_per_s"] and gemm:
            row["on_fraction_of_gemm"] = row["on_tokens_per_s"] * flops / 1e9 / gemm
        rows.append(row)
        def cell_text(key: str, fmt: str) -> str:
            return fmt.format(row[key]) if row.get(key) is not None else "-"
        lines.append(f"{backend:<7} {cell:<5} {cell_text('on_tokens_per_s', '{:,.0f}'):>10} "
                     f"{cell_text('off_tokens_per_s', '{:,.0f}'):>10} {cell_text('on_over_off', '{:.2f}x'):>7} "
                     f"{cell_text('on_fraction_of_gemm', '{:.0%}'):>7}  {'compiled' if row['compiled'] else 'own'}")
    header = (f"{'backend':<7} {'cell':<5} {'on tok/s':>10} {'off tok/s':>10} {'on/off':>7} {'% GEMM':>7}"
              f"  loops chosen (batch 32)")
    return rows, "\n".join([header, *lines])


def format_table(summary: dict, rel: dict) -> str:
    header = ["implementation"] + [title for _, title in COLUMNS] + ["b256 % of GEMM"]
    rows = [header]
    for impl, metrics in summary.items():
        if "error" in metrics:
            rows.append([impl, f"failed: {metrics['error']}"[:100]])
            continue
        row = [impl]
        for key, _ in COLUMNS:
            if key not in metrics:
                row.append("-")
                continue
            value = metrics[key]
            text = f"{value:,.0f}"
            if key in rel.get(impl, {}):
                text += f" ({rel[impl][key]:.2f}x)"
            row.append(text)
        fraction = rel.get(impl, {}).get("train_b256_fraction_of_gemm")
        row.append(f"{100 * fraction:.0f}%" if fraction is not None else "-")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(header))]
    lines = []
    for r in rows:
        if len(r) == 2 and r[1].startswith("failed"):
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]}")
        else:
            lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                   for i, (cell, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


class StealMeter:
    """The share of the CPUs' time that the hypervisor gave to other machines while this one wanted it
    ("steal" in /proc/stat), from its creation to ``share()``: on a virtual machine whose host is
    busy, every rate of a run drops with it, and a run with a large share says more about the host than
    about the code. None where /proc/stat has no such column (not Linux, or not virtual)."""

    def __init__(self):
        self.start = self._times()

    @staticmethod
    def _times() -> list[int] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        except OSError:
            return None
        # cpu user nice system idle iowait irq softirq steal [guest guest_nice: already in user, nice]
        return [int(value) for value in fields[1:9]] if fields[:1] == ["cpu"] and len(fields) >= 9 else None

    def share(self) -> float | None:
        end = self._times()
        if self.start is None or end is None:
            return None
        spent = [b - a for a, b in zip(self.start, end)]
        return spent[7] / sum(spent) if sum(spent) > 0 else 0.0

    @staticmethod
    def describe(share: float | None) -> str:
        """The share as the benchmarks print it."""
        return "steal not known" if share is None else f"the hypervisor took {100 * share:.1f}% of the CPUs' time"


def machine_description() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["load_average_at_start"] = os.getloadavg()
    except OSError:
        pass
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke test")
    parser.add_argument("--impls", default=",".join(IMPLEMENTATIONS),
                        help=f"comma-separated, from: {', '.join(IMPLEMENTATIONS)}")
    parser.add_argument("--cells", default=None,
                        help="comma-separated cells of the step loops' table, from rnn, gru, lstm (default: all "
                             "three, rnn with --quick; none: no table)")
    parser.add_argument("--rounds", type=int, help="interleaved repeats (median taken); default 3, quick 1")
    parser.add_argument("--repeats", type=int, help="timed repeats inside each worker; default 3, quick 1")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="device of the torch implementations (the others run on the CPU)")
    parser.add_argument("--name", help="results go to benchmarks/results/<name>.json (default: the device)")
    parser.add_argument("--json", type=Path, help="write the JSON here instead")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(run_worker(args.worker, json.loads(args.spec))))
        return 0

    spec = dict(QUICK if args.quick else FULL, num_steps=35, num_hiddens=512, device=args.device)
    for option in ("rounds", "repeats"):
        if getattr(args, option) is not None:
            if getattr(args, option) < 1:
                parser.error(f"--{option} must be at least 1")
            spec[option] = getattr(args, option)
    impls = [name.strip() for name in args.impls.split(",") if name.strip()]
    unknown = [name for name in impls if name not in IMPLEMENTATIONS]
    if unknown:
        parser.error(f"unknown implementation(s): {', '.join(unknown)}")
    if args.device == "cuda":
        impls = [name for name in impls if name in TORCH_IMPLEMENTATIONS]
    skipped = {name: f"{IMPLEMENTATIONS[name][0]} not installed" for name in impls
               if not framework_available(IMPLEMENTATIONS[name][0])}
    impls = [name for name in impls if name not in skipped]
    gemm_workers = ["gemm:numpy"] + (["gemm:torch"] if any(IMPLEMENTATIONS[n][0] == "torch" for n in impls)
                                     else [])
    cells_text = args.cells if args.cells is not None else ("rnn" if args.quick else ",".join(CELLS))
    cells = [] if cells_text.strip() == "none" else [c.strip() for c in cells_text.split(",") if c.strip()]
    if any(cell not in CELLS for cell in cells):
        parser.error(f"--cells takes a comma-separated list of {', '.join(CELLS)} (or none), not {cells_text!r}")
    loop_workers = loop_impls(impls, cells)

    print(f"scratchrnn benchmark: {', '.join(impls)}; device {args.device}; {spec['rounds']} round(s)",
          flush=True)
    for name, why in skipped.items():
        print(f"  skipping {name}: {why}", flush=True)
    runs: dict[str, list[dict]] = {name: [] for name in gemm_workers + impls + loop_workers}
    steal = StealMeter()
    for round_index in range(spec["rounds"]):
        # rotate the order every round, so no implementation always runs first (or last)
        rotated = impls + loop_workers
        shift = round_index % len(rotated)
        order = gemm_workers + rotated[shift:] + rotated[:shift]
        for name in order:
            start = time.perf_counter()
            result = measure(name, spec)
            runs[name].append(result)
            status = result.get("error", "ok")
            print(f"  round {round_index + 1}: {name:<14} {time.perf_counter() - start:6.1f} s  {status}",
                  flush=True)

    summary = summarize(runs)
    gemm_rates = {name.split(":")[1]: summary[name].get("gemm_gflops") for name in gemm_workers}
    gemm = max((rate for rate in gemm_rates.values() if rate), default=None)
    measured = {name: summary[name] for name in impls}
    rel = ratios(measured, gemm, spec)

    print()
    print(format_table(measured, rel))
    print()
    print("GEMM 512x512 float32: " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in gemm_rates.items() if v)
          + f"; training FLOPs per token 6(H^2+HV) = {flops_per_token(spec) / 1e6:.2f} MFLOP")
    print("ratios (x) are to the chapter's code; gen 64 is compared with the chapter's one-stream "
          "predict_ch8")
    loop_rows = []
    if loop_workers:
        loop_rows, loop_text = loops_table({name: summary[name] for name in loop_workers}, gemm, spec)
        print(f"\nthe step loops: training tokens/s at batch 32 with the compiled library on (the loops "
              f"kernels.choose picks here) and off (SCRATCHRNN_NO_KERNEL); % of the GEMM rate at "
              f"6(gH^2+HV) FLOPs per token, g = 1, 3, 4 for rnn, gru, lstm\n")
        print(loop_text)
    steal_share = steal.share()
    if steal_share is not None:
        print(StealMeter.describe(steal_share) + " during the run (steal)")

    report = {
        "machine": {**machine_description(), "steal_share": steal_share}, "device": args.device, "settings": spec,
        "implementations": {name: IMPLEMENTATIONS[name][1] for name in impls},
        "skipped": skipped, "gemm_gflops": gemm_rates, "flops_per_token": flops_per_token(spec),
        "results": measured, "ratios_to_chapter": rel, "step_loops": loop_rows, "runs": runs,
    }
    path = args.json or ROOT / "benchmarks" / "results" / f"{args.name or args.device}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {path}")
    failed = [name for name in impls + loop_workers if "error" in summary[name]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
