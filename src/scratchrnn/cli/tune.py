"""``scratchrnn tune``: measure ahead of time which step loops run fastest on this machine, or show
what was measured (``--show``).

Training and generation measure a workload the first time they meet it (``kernels.choose``); this
command does it on purpose, for the workloads named by its options -- by default the chapter's (batch
32, 35 steps, 512 hidden units, the bundled book's 28-token vocabulary) for every cell, on the numpy
backend and on torch where it is installed, and the greedy decoder for 1 and 64 streams -- measuring
again where an answer is already remembered. The answers go to the wisdom file (kernels/wisdom.py).
"""
from __future__ import annotations

import importlib
import importlib.util
import textwrap

from ..cells import CELLS as _CELLS
from ..errors import UserError
from .common import HelpFormatter, positive_int

TUNED_BACKENDS = ("numpy", "torch")
# where each backend's trial of its step loops lives (what kernels.choose times)
_TRIALS = {"numpy": "scratchrnn.backends.numpy.cells", "torch": "scratchrnn.backends.torch.fast_cells"}
CELLS = tuple(_CELLS)
CHAPTER_VOCAB = 28


def _names(text: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise UserError(f"{flag} takes a comma-separated list of {', '.join(allowed)}, not {text!r}")
    return names


def _counts(text: str, flag: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise UserError(f"{flag} takes a comma-separated list of positive integers, not {text!r}")
    return counts


def add_parser(sub) -> None:
    t = sub.add_parser(
        "tune", formatter_class=HelpFormatter,
        help="measure which step loops (the compiled ones or the framework's) are faster here; --show lists them",
        description=textwrap.fill(
            "Time the compiled step loops against each framework's own for the workloads named below, "
            "on this machine, and remember the faster in the wisdom file, as training and generation do "
            "the first time they meet a workload. --show lists what is remembered and why.", width=88))
    t.add_argument("--show", action="store_true", help="list the remembered choices and where they are kept, "
                                                        "measuring nothing")
    t.add_argument("--backend", default=None,
                   help="comma-separated backends whose loops to measure (default: numpy, and torch where "
                        "it is installed)")
    t.add_argument("--cell", default=",".join(CELLS), help="comma-separated cells")
    t.add_argument("--batch-size", type=positive_int, default=32, help="rows of a training minibatch")
    t.add_argument("--hidden", type=positive_int, default=512, help="hidden units")
    t.add_argument("--num-steps", type=positive_int, default=35, help="time steps of a training minibatch")
    t.add_argument("--activation", choices=("tanh", "relu"), default="tanh", help="the RNN's activation")
    t.add_argument("--streams", default="1,64",
                   help="comma-separated numbers of streams to measure the RNN's greedy decoder and every "
                        "cell's single steps for (what serve's batches and generation run; each counts as its "
                        "bucket, the next power of two); 0: none")
    t.add_argument("--vocab", type=positive_int, default=CHAPTER_VOCAB, help="vocabulary size, for the decoder")


def _show() -> int:
    from .. import kernels
    store = kernels.choice.current_wisdom()
    print(f"compiled kernels: {kernels.status()}")
    print(kernels.choice.status())
    entries = store.entries()
    if not entries:
        print(f"nothing measured yet on this machine (wisdom file: {store.path})")
        return 0
    print(f"wisdom file: {store.path} ({len(entries)} workload(s))")
    for key, entry in sorted(entries.items()):
        times = ", ".join(f"{name} {1e3 * seconds:.2f} ms" for name, seconds in sorted(entry["times"].items()))
        if entry["loops"] == "compiled":
            split = f", hidden units in {entry['unit_shares']} shares" if entry["unit_shares"] else ""
            verdict = f"compiled{split}: {entry['speedup']:.2f}x the speed of the framework's loops"
        else:
            verdict = f"own: the compiled loops {entry['speedup']:.2f}x, not measurably faster"
        print(f"  {key}: {verdict} ({times})")
    return 0


def run(args) -> int:
    if args.show:
        return _show()
    from .. import backends, kernels
    from ..generation import decoding_trial
    installed = [name for name in TUNED_BACKENDS if name == "numpy" or importlib.util.find_spec(name)]
    names = _names(args.backend, TUNED_BACKENDS, "--backend") if args.backend else installed
    cells = _names(args.cell, CELLS, "--cell")
    streams = [] if args.streams.strip() == "0" else _counts(args.streams, "--streams")
    for name in names:
        backends.backend_class(name)            # a framework that is not installed: one line, exit 2
        training_trial = importlib.import_module(_TRIALS[name]).training_trial
        workloads = [kernels.Workload(name, cell, "training", args.batch_size, args.hidden, args.num_steps,
                                      activation=args.activation) for cell in cells]
        workloads += [kernels.Workload(name, "rnn", "decoding", kernels.decoding_bucket(count), args.hidden,
                                       vocab=args.vocab, activation=args.activation)
                      for count in sorted(set(streams)) if "rnn" in cells]
        workloads += [kernels.Workload(name, cell, "stepping", kernels.decoding_bucket(count), args.hidden, 1,
                                       activation=args.activation) for count in sorted(set(streams)) for cell in cells]
        for workload in dict.fromkeys(workloads):
            trial = decoding_trial(workload) if workload.group == "decoding" else training_trial(workload)
            print(f"{workload.describe()}: {kernels.choose(workload, trial, fresh=True).describe()}", flush=True)
    return 0
