"""Which step loops run: the one question the backends and generation ask of the compiled library.

``choose(workload, trial)`` answers it for one workload -- a framework's training loops (the forward
recurrence and backpropagation through it) for a cell at a (batch, hidden, steps) shape, its forward
passes alone, one step of the forward loop for a number of streams (how a server's batcher and the
decoding of gated cells advance), or greedy decoding for a number of streams -- with a ``Choice``: the framework's own loops
or the compiled ones (which variant, how many threads, for the LSTM how the work is shared out), and
why. The whole decision is here, in this order:

1. what the compiled library cannot take: float64, a GPU, a cell it has no such loop for (only the
   RNN has a compiled decoder), ``SCRATCHRNN_NO_KERNEL`` set, a library that is not built or cannot
   be used here: the framework's own loops;
2. ``SCRATCHRNN_LOOPS=own`` or ``=compiled`` forces the answer without measuring (the tests force it
   where they need to know which loops ran); unset or ``measure``, the default, goes on:
3. what the wisdom file remembers for this workload on this processor and library build
   (``wisdom.py``);
4. otherwise, the first time a workload is used, its candidates are timed here on synthetic data of
   its shape (``trial`` builds them; ``measure_interleaved`` times them, alternating, a few rounds),
   the compiled loops are chosen only where they are measurably faster (``decide``), and the answer
   is remembered. Forward passes alone are never measured: they run compiled where training at the
   same shape was measured faster. One step for many streams is no training shape, so it is measured
   on its own (the forward loop alone); it and decoding are measured for a bucket of streams (a
   power of two), not for every number of streams a caller may bring.

No measured number lives in the code: every answer that depends on speed was timed on the machine
that uses it (``scratchrnn tune`` measures ahead of time, ``scratchrnn tune --show`` lists them).
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from ..cells import CELLS
from . import _library, _sources, wisdom

GROUPS = ("training", "inference", "stepping", "decoding")
LOOPS_SETTINGS = ("measure", "own", "compiled")
OWN, COMPILED, COMPILED_UNITS = "own", "compiled", "compiled-units"

# The compiled loops are chosen where their median time is at least this much below the framework's
# and they won most rounds side by side: a smaller gain is within what a busy machine's noise can fake.
MIN_GAIN = 0.03
# A measurement: one untimed run of each candidate, then rounds until this many seconds have passed
# (at least MIN_ROUNDS, at most MAX_ROUNDS rounds).
BUDGET_SECONDS = 0.3
MIN_ROUNDS, MAX_ROUNDS = 3, 9


@dataclass(frozen=True)
class Workload:
    """What the loops are asked to do. ``group``: "training" (forward and backward loops),
    "inference" (the forward loop alone), "stepping" (one step of the forward loop for ``batch``
    streams) or "decoding" (greedy generation, ``batch`` streams); ``steps`` the time steps of a
    minibatch (training, inference; 1 for stepping), ``vocab`` the vocabulary's size (decoding)."""

    framework: str
    cell: str
    group: str
    batch: int
    hidden: int
    steps: int = 0
    vocab: int = 0
    activation: str = "tanh"
    dtype: str = "float32"
    device: str = "cpu"
    layer_norm: bool = False        # the cell's layer-normalised form, which has no compiled loops

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"group must be one of {', '.join(GROUPS)}, not {self.group!r}")
        for name in ("batch", "hidden"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, not {getattr(self, name)!r}")
        if self.group == "decoding" and self.vocab < 1:
            raise ValueError(f"vocab must be a positive integer for decoding, not {self.vocab!r}")
        if self.group != "decoding" and self.steps < 1:
            raise ValueError(f"steps must be a positive integer for {self.group}, not {self.steps!r}")
        if self.group == "stepping" and self.steps != 1:
            raise ValueError(f"stepping is one step at a time, not {self.steps!r}")

    @classmethod
    def of_minibatch(cls, framework: str, config, batch: int, steps: int, training: bool, dtype: str,
                     device: str) -> "Workload":
        """A backend's step loops for a model (``config``: cell, num_hiddens, activation, layer_norm) at
        minibatches of ``batch`` x ``steps``: training, or forward passes alone -- of which one step
        for many streams (a server's batch, a gated cell's decoding) is no training shape, and is
        measured on its own as "stepping"."""
        group = "training" if training else "stepping" if steps == 1 else "inference"
        return cls(framework, config.cell, group, batch, config.num_hiddens, steps, activation=config.activation,
                   dtype=dtype, device=device, layer_norm=config.layer_norm)

    def key(self, threads: int) -> str:
        """The wisdom file's key: every size that changes which loops are faster (forward passes
        alone share training's entry)."""
        group = "training" if self.group == "inference" else self.group
        size = f"v{self.vocab}" if self.group == "decoding" else f"s{self.steps}"
        return (f"{self.framework}/{self.cell}/{group}/{self.dtype}/b{self.batch}/h{self.hidden}/{size}/"
                f"{self.activation}/t{threads}")

    def describe(self) -> str:
        if self.group == "decoding":
            return f"the {self.cell} decoder, {self.batch} stream(s) of {self.hidden} units ({self.framework})"
        if self.group == "stepping":
            return f"one step of the {self.cell} loops, {self.batch} stream(s) of {self.hidden} units ({self.framework})"
        return f"the {self.cell} step loops {self.batch}x{self.hidden}, {self.steps} steps ({self.framework})"

    def own_loops(self) -> str:
        """What the compiled loops are measured against, in words."""
        if self.group == "decoding":
            return "NumPy's decode loop"
        return f"the {self.framework} loops"


@dataclass(frozen=True)
class Choice:
    """The answer: ``loops`` "own" (the framework's) or "compiled"; for compiled loops, the library's
    ``variant``, at most ``threads`` threads, and for the LSTM ``unit_shares`` (0: each thread takes
    some of the rows; n: the hidden units are cut in n shares); and ``reason``, in words."""

    loops: str
    reason: str
    variant: str | None = None
    threads: int = 0
    unit_shares: int = 0

    @property
    def compiled(self) -> bool:
        return self.loops == COMPILED

    def describe(self) -> str:
        if not self.compiled:
            return f"the framework's own loops: {self.reason}"
        split = f", the hidden units in {self.unit_shares} shares" if self.unit_shares else ""
        return f"compiled ({self.variant}, {self.threads} thread(s){split}): {self.reason}"


def decoding_bucket(streams: int) -> int:
    """The number of streams decoding and stepping are measured for: the next power of two, so that a server seeing
    every count from 1 to 100 measures eight entries, not a hundred."""
    return 1 << max(0, int(streams) - 1).bit_length()


def loops_setting() -> str:
    """``SCRATCHRNN_LOOPS``: measure (the default), own or compiled; another value is said once and
    taken as measure."""
    text = os.environ.get("SCRATCHRNN_LOOPS", "").strip().lower()
    if text in ("", "measure"):
        return "measure"
    if text in LOOPS_SETTINGS:
        return text
    wisdom.say(f"SCRATCHRNN_LOOPS={text!r} is not one of {', '.join(LOOPS_SETTINGS)}; measuring")
    return "measure"


def _blocked(workload: Workload) -> str | None:
    """Why the compiled loops cannot take this workload at all (None: they can)."""
    if workload.dtype != "float32":
        return f"{workload.dtype}: the compiled loops compute in float32"
    if workload.device != "cpu":
        return f"on {workload.device}: the compiled loops run on the CPU"
    if workload.layer_norm:
        return f"the compiled library has no step loops for the layer-normalised {workload.cell}"
    if workload.cell not in CELLS or (workload.group == "decoding" and workload.cell != "rnn"):
        what = "decoder" if workload.group == "decoding" else "step loops"
        return f"the compiled library has no {what} for the {workload.cell}"
    if _library.disabled():
        return "SCRATCHRNN_NO_KERNEL is set"
    if _library.load() is None:
        return f"the compiled library is {_library.status()}"
    return None


def candidates(workload: Workload) -> dict[str, Choice]:
    """What is timed: the framework's loops, the compiled ones, and for the LSTM on several threads
    the compiled ones with the hidden units shared out (one share per thread) instead of the rows."""
    variant, threads = _library.load().variant, _library.threads(workload.framework)
    found = {OWN: Choice(OWN, "measured"), COMPILED: Choice(COMPILED, "measured", variant, threads)}
    if workload.cell == "lstm" and workload.group != "decoding" and threads > 1:
        found[COMPILED_UNITS] = Choice(COMPILED, "measured", variant, threads, unit_shares=threads)
    return found


def measure_interleaved(runners: dict[str, Callable[[], object]], clock=time.perf_counter
                        ) -> dict[str, list[float]]:
    """Seconds per run of each candidate: one untimed run each (first-use costs), then rounds that
    run every candidate once, in alternating order, until ``BUDGET_SECONDS`` have passed."""
    for run in runners.values():
        run()
    names, times = list(runners), {name: [] for name in runners}
    start = clock()
    for index in range(MAX_ROUNDS):
        for name in (names if index % 2 == 0 else names[::-1]):
            began = clock()
            runners[name]()
            times[name].append(clock() - began)
        if index + 1 >= MIN_ROUNDS and clock() - start > BUDGET_SECONDS:
            break
    return times


def decide(times: dict[str, list[float]]) -> tuple[str, float]:
    """The candidate to run and its speed over the framework's loops (median over median): the
    fastest compiled candidate where it is at least ``MIN_GAIN`` faster and won most rounds against
    the framework's loops side by side, else "own"."""
    own = times[OWN]
    compiled = [name for name in times if name != OWN]
    best = min(compiled, key=lambda name: statistics.median(times[name]))
    speedup = statistics.median(own) / max(statistics.median(times[best]), 1e-12)
    wins = sum(mine < theirs for mine, theirs in zip(times[best], own))
    if speedup >= 1 + MIN_GAIN and 2 * wins > len(own):
        return best, speedup
    return OWN, speedup


_identities: dict = {}
_wisdoms: dict = {}


def library_identity() -> dict:
    """The build of the library in use, as the wisdom file names it: the hash of the sources beside it
    (the loader refuses a library built from others; they include its interface), else of the library's
    own bytes; the variant in use."""
    kernels = _library.load()
    here = Path(_library.__file__).parent
    if here not in _identities:
        build = _sources.source_hash(here)
        if build is None:
            built = [here / f"_kernels{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
            found = next((path for path in built if path.exists()), None)
            build = hashlib.sha256(found.read_bytes()).hexdigest()[:16] if found else "unknown"
        _identities[here] = build
    return {"build": _identities[here], "variant": kernels.variant if kernels else "none"}


def current_wisdom() -> wisdom.Wisdom:
    """The wisdom of this processor and library build, in the cache directory the environment names."""
    directory, cpu, library = wisdom.cache_dir(), wisdom.cpu_model(), library_identity()
    key = (str(directory), cpu, tuple(sorted(library.items())))
    if key not in _wisdoms:
        _wisdoms[key] = wisdom.Wisdom(directory, cpu, library)
    return _wisdoms[key]


def _remembered(entry: dict, workload: Workload, variant: str, threads: int, where: Path) -> Choice:
    speedup, own = entry["speedup"], workload.own_loops()
    if entry["loops"] == OWN:
        return Choice(OWN, f"the compiled loops measured {speedup:.2f}x the speed of {own} here, not "
                           f"measurably faster (wisdom file {where})")
    return Choice(COMPILED, f"measured {speedup:.2f}x the speed of {own} here (wisdom file {where})",
                  variant, threads, entry["unit_shares"])


def _progress(workload: Workload) -> None:
    """One line while measuring, where someone is watching the terminal (stderr only, never stdout)."""
    if getattr(sys.stderr, "isatty", lambda: False)():
        print(f"scratchrnn: timing {workload.describe()} on this machine (once; scratchrnn tune --show)",
              file=sys.stderr, flush=True)


def choose(workload: Workload, trial: Callable[[Choice], Callable[[], object]] | None = None, *,
           measure: Callable | None = None, fresh: bool = False) -> Choice:
    """The loops to run for ``workload`` (see the module's docstring for the order of the rules).

    ``trial(candidate)`` returns a function that runs the candidate's loops once on synthetic data of
    the workload's shape; without it nothing can be measured, and an unremembered workload runs the
    framework's loops. ``measure`` times the trials (default ``measure_interleaved``: tests inject
    timings); ``fresh`` measures again even where an answer is remembered (``scratchrnn tune``).
    """
    if workload.group in ("decoding", "stepping"):
        workload = replace(workload, batch=decoding_bucket(workload.batch))
    blocked = _blocked(workload)
    if blocked:
        return Choice(OWN, blocked)
    found = candidates(workload)
    setting = loops_setting()
    if setting == "own":
        return Choice(OWN, "SCRATCHRNN_LOOPS=own")
    if setting == "compiled":
        return replace(found[COMPILED], reason="SCRATCHRNN_LOOPS=compiled")
    compiled = found[COMPILED]
    store = current_wisdom()
    key = workload.key(compiled.threads)
    entry = None if fresh else store.lookup(key)
    if entry is not None:
        return _remembered(entry, workload, compiled.variant, compiled.threads, store.path)
    if workload.group == "inference":
        return Choice(OWN, "forward passes alone follow what training at the same shape was measured "
                           "to run, and it was not measured here")
    if trial is None:
        return Choice(OWN, "not measured here (scratchrnn tune measures it)")
    _progress(workload)
    times = (measure or measure_interleaved)({name: trial(choice) for name, choice in found.items()})
    winner, speedup = decide(times)
    # kept to six digits, and never 0 s (a clock too coarse for a run), which the file's check refuses
    medians = {name: max(float(f"{statistics.median(values):.6g}"), 1e-9) for name, values in times.items()}
    store.remember(key, {"loops": found[winner].loops, "unit_shares": found[winner].unit_shares,
                         "speedup": round(speedup, 4), "times": medians})
    return _remembered(store.lookup(key), workload, compiled.variant, compiled.threads, store.path)


def status() -> str:
    """How the step loops are chosen, for ``scratchrnn --version``."""
    if _library.disabled() or _library.load() is None:
        return "step loops: the frameworks' own"
    setting = loops_setting()
    if setting != "measure":
        return f"step loops: {setting} (SCRATCHRNN_LOOPS)"
    return f"step loops: measured on first use, remembered in {current_wisdom().path}"
