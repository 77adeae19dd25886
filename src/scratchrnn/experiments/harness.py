"""What every experiment shares: the sizes of its runs, and the one function that trains a run.

A run that blows up is a result, not a crash: ``train_run`` stops it and records "diverged at epoch
N" with the reason (a NaN/infinite loss, or a perplexity far above uniform guessing).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import backends
from ..data import SeqDataLoader, Vocab, check_corpus_fits, load_corpus
from ..errors import TrainingDiverged
from ..model import ModelSettings, global_norm, init_params
from ..training import TrainConfig, evaluate_perplexity, train
from .formatting import fmt

# A model that guesses uniformly has perplexity |V|; one ten times worse than that is not learning
# any more but running away, so the run is stopped and reported as diverged.
BLOWUP_FACTOR = 10


@dataclass(frozen=True)
class Scale:
    """Sizes shared by an experiment's runs: the full ones of docs/exercises.md or --quick ones."""

    max_tokens: int
    batch_size: int
    num_steps: int
    hidden: int
    epochs: int | None      # None: each experiment's own full length
    val_fraction: float
    num_chars: int          # characters generated per sample
    samples: int            # continuations drawn per decoder


FULL = Scale(max_tokens=10000, batch_size=32, num_steps=35, hidden=256, epochs=None,
             val_fraction=0.1, num_chars=100, samples=8)
QUICK = Scale(max_tokens=3000, batch_size=16, num_steps=10, hidden=16, epochs=3,
              val_fraction=0.1, num_chars=30, samples=4)


@dataclass
class Context:
    """What one ``scratchrnn experiment`` call was asked for."""

    name: str
    out: Path
    quick: bool = False
    backend: str = "numpy"
    data: str | None = None
    seed: int = 0
    epochs_override: int | None = None
    hidden_override: int | None = None
    log: Callable[[str], None] = print
    _corpus: tuple | None = field(default=None, repr=False)

    @property
    def scale(self) -> Scale:
        return QUICK if self.quick else FULL

    def epochs(self, full: int) -> int:
        """Epochs of a run: --epochs if given, else the quick length, else this experiment's full length."""
        if self.epochs_override is not None:
            return self.epochs_override
        return self.scale.epochs if self.quick else full

    @property
    def hidden(self) -> int:
        return self.hidden_override or self.scale.hidden

    def corpus(self) -> tuple[list[int], Vocab]:
        """The training text (--data, else the bundled Time Machine), cut to the scale's token count."""
        if self._corpus is None:
            self._corpus = load_corpus(self.data, self.scale.max_tokens, cleaning="chapter")
        return self._corpus

    def base_spec(self, label: str, full_epochs: int, **changes) -> "RunSpec":
        """The experiment's usual run (the chapter's RNN at this scale), with ``changes`` (see
        ``RunSpec.changed``)."""
        spec = RunSpec(label=label, model=ModelSettings(num_hiddens=self.hidden), epochs=self.epochs(full_epochs),
                       batch_size=self.scale.batch_size, num_steps=self.scale.num_steps)
        return spec.changed(**changes)


# -- one training run ----------------------------------------------------------------------------------
_MODEL_FIELDS = frozenset(f.name for f in fields(ModelSettings))


@dataclass(frozen=True)
class RunSpec:
    """One model trained with sequential partitioning, as in the chapter."""

    label: str
    model: ModelSettings
    epochs: int
    batch_size: int
    num_steps: int
    lr: float = 1.0
    clip: float | None = 1.0
    detach: bool = True

    def changed(self, **changes) -> "RunSpec":
        """A copy with ``changes``, which may name the model's settings (``cell="lstm"``) beside the
        run's own fields (``lr=2.0``)."""
        model = {k: v for k, v in changes.items() if k in _MODEL_FIELDS}
        own = {k: v for k, v in changes.items() if k not in _MODEL_FIELDS}
        return replace(self, model=replace(self.model, **model), **own)

    def value(self, name: str):
        """A field of the run or of its model, by name."""
        return getattr(self.model if name in _MODEL_FIELDS else self, name)

    def describe(self) -> str:
        model = self.model
        clip = f"clip {self.clip:g}" if self.clip is not None else "no clipping"
        inputs = "one-hot" if model.embedding == "onehot" else f"embedding {model.embed_dim}"
        cell = model.activation if model.cell == "rnn" else model.cell
        layers = f"{model.num_layers} layers of " if model.num_layers > 1 else ""
        dropout = f", dropout {model.dropout:g}" if model.dropout else ""
        return (f"{layers}{cell}, {inputs}, {model.num_hiddens} hidden, {self.num_steps} steps, "
                f"lr {self.lr:g}, {clip}{dropout}{'' if self.detach else ', not detached'}")


@dataclass
class RunOutcome:
    """Everything measured during one run; a diverged run keeps what it measured before."""

    spec: RunSpec
    vocab_size: int
    history: list[float] = field(default_factory=list)              # training perplexity per epoch
    validation: list[tuple[int, float]] = field(default_factory=list)  # (epoch, held-out perplexity)
    grad_norms: list[tuple[int, float]] = field(default_factory=list)  # (epoch, norm on a probe batch)
    epoch_seconds: list[float] = field(default_factory=list)
    batch_seconds: list[float] = field(default_factory=list)          # each batch of the last epoch
    tokens_per_epoch: int = 0
    diverged_epoch: int | None = None
    diverged_reason: str = ""
    backend: object = None

    @property
    def diverged(self) -> bool:
        return self.diverged_epoch is not None

    @property
    def runaway_perplexity(self) -> int:
        """The training perplexity above which the run counts as diverged."""
        return BLOWUP_FACTOR * self.vocab_size

    @property
    def final_perplexity(self) -> float:
        return self.history[-1] if self.history else float("nan")

    @property
    def best_perplexity(self) -> float:
        return min(self.history) if self.history else float("nan")

    @property
    def best_validation(self) -> tuple[int, float] | None:
        return min(self.validation, key=lambda item: item[1]) if self.validation else None

    @property
    def seconds_per_epoch(self) -> float:
        return float(np.mean(self.epoch_seconds)) if self.epoch_seconds else float("nan")

    @property
    def tokens_per_sec(self) -> float:
        total = sum(self.epoch_seconds)
        return self.tokens_per_epoch * len(self.epoch_seconds) / total if total > 0 else float("nan")

    @property
    def max_grad_norm(self) -> float:
        return max((n for _, n in self.grad_norms if math.isfinite(n)), default=float("nan"))

    def status(self) -> str:
        if self.diverged:
            return f"diverged at epoch {self.diverged_epoch} ({self.diverged_reason})"
        return f"finished {len(self.history)} epochs"

    def to_dict(self) -> dict:
        return {
            "label": self.spec.label, "spec": asdict(self.spec),
            "history": self.history, "validation": [list(v) for v in self.validation],
            "grad_norms": [[e, n if math.isfinite(n) else str(n)] for e, n in self.grad_norms],
            "epoch_seconds": self.epoch_seconds, "batch_seconds": self.batch_seconds,
            "tokens_per_epoch": self.tokens_per_epoch, "diverged_epoch": self.diverged_epoch,
            "diverged_reason": self.diverged_reason, "status": self.status(),
        }


class _TimedBatches:
    """Wraps a loader and records how long each batch of the latest epoch took to train.

    The time between handing out batch k and being asked for batch k+1 is the training step of
    batch k, so this measures steps without touching the training loop.
    """

    def __init__(self, loader):
        self.loader = loader
        self.last_epoch: list[float] = []

    def __iter__(self):
        times: list[float] = []
        self.last_epoch = times
        previous = None
        for batch in self.loader:
            now = time.perf_counter()
            if previous is not None:
                times.append(now - previous)
            previous = now
            yield batch
            # the step of the batch just yielded has run once control comes back here
        if previous is not None:
            times.append(time.perf_counter() - previous)


def train_run(ctx: Context, spec: RunSpec, corpus: Sequence[int], vocab: Vocab,
              validation: np.ndarray | None = None, probe_every: int | None = None) -> RunOutcome:
    """Train one model with ``training.train`` and collect what the reports need.

    Divergence ends the run early and is recorded in the outcome; it is never raised.
    """
    check_corpus_fits(len(corpus), spec.batch_size, spec.num_steps, "sequential")
    model = spec.model.config(len(vocab))
    options = {"dropout_seed": ctx.seed} if model.draws_masks else {}
    params = init_params(model, ctx.seed, init=spec.model.init, forget_bias=spec.model.forget_bias)
    backend = backends.create(ctx.backend, params, model, **options)
    config = TrainConfig(epochs=spec.epochs, lr=spec.lr, batch_size=spec.batch_size,
                         num_steps=spec.num_steps, sampling="sequential", clip=spec.clip,
                         detach=spec.detach, seed=ctx.seed)
    loader = _TimedBatches(SeqDataLoader(corpus, spec.batch_size, spec.num_steps, "sequential",
                                         seed=ctx.seed))
    outcome = RunOutcome(spec, len(vocab), backend=backend)
    # one fixed batch on which the (unclipped) gradient norm is measured as training goes on
    probe_X, probe_Y = next(iter(SeqDataLoader(corpus, spec.batch_size, spec.num_steps, seed=ctx.seed)))
    probe_every = probe_every or max(1, spec.epochs // 60)

    def running_away(stats) -> bool:
        return stats.perplexity > outcome.runaway_perplexity

    def on_epoch(stats):
        outcome.history.append(stats.perplexity)
        outcome.epoch_seconds.append(stats.seconds)
        outcome.tokens_per_epoch = stats.tokens
        last = stats.epoch == spec.epochs
        if stats.epoch % probe_every == 0 or last or running_away(stats):
            _, grads, _ = backend.loss_and_grads(probe_X, probe_Y, backend.begin_state(spec.batch_size))
            outcome.grad_norms.append((stats.epoch, global_norm(grads)))
        held_out = stats.val_perplexity
        if validation is not None and held_out is None and running_away(stats):
            # the held-out curve, too, should end where the run left
            held_out = evaluate_perplexity(backend, validation, spec.batch_size, spec.num_steps)
        if held_out is not None:
            outcome.validation.append((stats.epoch, held_out))

    ctx.log(f"[{ctx.name}] {spec.label}: {spec.describe()}, {spec.epochs} epochs")
    try:
        # held-out perplexity about 30 times a run and after its last epoch; a run far above uniform
        # guessing is stopped after that epoch
        train(backend, loader, config, on_epoch=on_epoch, validation=validation,
              eval_every=max(1, spec.epochs // 30), stop_when=running_away)
    except TrainingDiverged as err:
        outcome.diverged_epoch = err.epoch
        outcome.diverged_reason = f"the loss became {err.loss}"
    if not outcome.diverged and outcome.history and outcome.history[-1] > outcome.runaway_perplexity:
        outcome.diverged_epoch = len(outcome.history)
        outcome.diverged_reason = (f"perplexity {fmt(outcome.history[-1])}, over {BLOWUP_FACTOR}x the "
                                   f"{len(vocab)} of uniform guessing")
    outcome.batch_seconds = list(loader.last_epoch)
    ctx.log(f"[{ctx.name}]   -> {outcome.status()}, perplexity {fmt(outcome.final_perplexity)}, "
            f"{sum(outcome.epoch_seconds):.1f} s")
    return outcome

