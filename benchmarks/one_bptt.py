"""The torch backend's chapter model trained by its own hand-written BPTT (``_RNNLoss``) against the
stacked model's (``StackedLoss``, which serves every other model), side by side in one process.

    OMP_NUM_THREADS=1 SCRATCHRNN_THREADS=1 .venv/bin/python benchmarks/one_bptt.py compiled 30 --cpu
    .venv/bin/python benchmarks/one_bptt.py own 12

The chapter's settings (batch 32, 35 steps, 512 hidden units, float32, lr 1, clipping at 1), the
step loops forced (first argument: compiled or own), rounds of 10 training steps each way in
alternating order (second argument: how many). ``--cpu`` times with the process's CPU time on one
thread, which neighbours taking the core do not add to. Written to decide whether the two could be
one (issue 24): they could, and after that commit this script has nothing left to compare.
"""
import os
import statistics
import sys
import time

import torch

from scratchrnn import backends
from scratchrnn.backends.torch.fast_model import StackedModel
from scratchrnn.data import SeqDataLoader, load_corpus
from scratchrnn.model import ModelConfig, init_params

CPU = "--cpu" in sys.argv
clock = time.process_time if CPU else time.perf_counter
if CPU:
    torch.set_num_threads(1)
os.environ["SCRATCHRNN_LOOPS"] = sys.argv[1] if len(sys.argv) > 1 else "own"
rounds = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 8
corpus, vocab = load_corpus(None, None)
config = ModelConfig(len(vocab), 512)
batches = list(SeqDataLoader(corpus, 32, 35, "sequential", seed=0))[:40]
models = {}
for name in ("rnnloss", "stacked"):
    backend = backends.create("torch", init_params(config, 0), config)
    if name == "stacked":
        backend.stacked = StackedModel(config)
    models[name] = backend


def tokens_per_second(backend, count: int = 10, offset: int = 0) -> float:
    state = backend.begin_state(32)
    start = clock()
    for X, Y in batches[offset:offset + count]:
        loss, state = backend.train_step(X, Y, backend.detach(state), 1.0, 1.0)
    float(loss)
    return count * 32 * 35 / (clock() - start)


for backend in models.values():
    tokens_per_second(backend, 3)
rates = {name: [] for name in models}
for index in range(rounds):
    for name in (list(models) if index % 2 == 0 else list(models)[::-1]):
        rates[name].append(tokens_per_second(models[name], 10, (index * 10) % 30))
for name, values in rates.items():
    print(f"{name:8} median {statistics.median(values):8.0f} tok/s (lowest {min(values):.0f}, highest {max(values):.0f})")
ratios = [s / r for s, r in zip(rates["stacked"], rates["rnnloss"])]
print(f"stacked / rnnloss: median of the rounds' ratios {statistics.median(ratios):.3f} "
      f"(lowest {min(ratios):.3f}, highest {max(ratios):.3f}); of the total times "
      f"{sum(1 / r for r in rates['rnnloss']) / sum(1 / s for s in rates['stacked']):.3f}; of the best rounds "
      f"{max(rates['stacked']) / max(rates['rnnloss']):.3f} ({os.environ['SCRATCHRNN_LOOPS']} loops, "
      f"{'CPU time, 1 thread' if CPU else 'wall clock'})")
