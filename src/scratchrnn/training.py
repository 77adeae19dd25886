"""The training loop, written once for every backend.

What the chapter's ``train_epoch_ch8`` decides -- when the state starts from zero, when it is
detached, how perplexity and speed are measured -- is decided here, so all backends train the same
way; the backend only runs one SGD step at a time.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np

from .backends.base import Backend
from .errors import TrainingDiverged, UserError

MAX_FINITE_LOSS = math.log(np.finfo(np.float64).max)


@dataclass
class TrainConfig:
    epochs: int = 500
    lr: float = 1.0
    batch_size: int = 32
    num_steps: int = 35
    sampling: str = "sequential"     # "sequential" carries the state across batches, "random" does not
    clip: float | None = 1.0         # theta of global-norm clipping; None trains without clipping
    detach: bool = True              # False: sequential batches backpropagate into earlier ones
    seed: int = 0

    def validate(self) -> None:
        """Refuse values that cannot train, with a message that names the option."""
        positive_ints = {"--epochs": self.epochs, "--batch-size": self.batch_size,
                         "--num-steps": self.num_steps}
        for option, value in positive_ints.items():
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise UserError(f"{option} must be a positive integer, not {value}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, not {self.lr}")
        if self.clip is not None and not (self.clip > 0 and math.isfinite(self.clip)):
            raise UserError(f"--clip must be a positive number, not {self.clip}")
        if self.sampling not in ("sequential", "random"):
            raise UserError(f"--sampling must be 'sequential' or 'random', not {self.sampling!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EpochResult:
    epoch: int
    perplexity: float
    tokens: int
    seconds: float

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class TrainResult:
    epochs: list[EpochResult] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)  # (epoch, perplexity)

    @property
    def perplexity(self) -> float:
        return self.epochs[-1].perplexity

    @property
    def tokens_per_sec(self) -> float:
        """Training tokens over training seconds, all epochs together (predictions not counted)."""
        seconds = sum(e.seconds for e in self.epochs)
        return sum(e.tokens for e in self.epochs) / seconds if seconds > 0 else float("inf")

    @property
    def lowest(self) -> EpochResult:
        """The epoch of lowest training perplexity (with lr 1 the last one can sit on a late spike)."""
        return min(self.epochs, key=lambda e: e.perplexity)

    @property
    def history(self) -> list[float]:
        return [e.perplexity for e in self.epochs]


def train_epoch(backend: Backend, batches: Iterable, config: TrainConfig, epoch: int = 1) -> EpochResult:
    """One pass over the batches (the chapter's ``train_epoch_ch8``)."""
    start = time.perf_counter()
    # a diverging run overflows before it turns NaN; that is reported below as TrainingDiverged,
    # so NumPy's per-operation overflow warnings would only bury the message
    with np.errstate(over="ignore", invalid="ignore"):
        loss_sum, tokens = _sgd_over_batches(backend, batches, config)
    mean_loss = float(loss_sum) / max(tokens, 1)
    seconds = time.perf_counter() - start
    # past ~709 nats exp() overflows float64: a perplexity that large is divergence too
    if not math.isfinite(mean_loss) or mean_loss > MAX_FINITE_LOSS:
        raise TrainingDiverged(epoch, mean_loss)
    return EpochResult(epoch, math.exp(mean_loss), tokens, seconds)


def _sgd_over_batches(backend: Backend, batches: Iterable, config: TrainConfig):
    state = None
    loss_sum, tokens = 0.0, 0
    for X, Y in batches:
        if state is None or config.sampling == "random":
            # random batches do not continue each other: a state carried over would be noise
            state = backend.begin_state(X.shape[0])
        elif config.detach:
            # keep the values, cut the graph: backpropagation stops at this batch's first step
            state = backend.detach(state)
        loss, state = backend.train_step(X, Y, state, config.lr, config.clip)
        loss_sum = loss_sum + loss * Y.size     # may stay a device scalar until the epoch ends
        tokens += Y.size
    return loss_sum, tokens


def evaluate_perplexity(backend: Backend, corpus: np.ndarray, batch_size: int, num_steps: int) -> float:
    """Perplexity of held-out text: its tokens read in order, the state carried, no training."""
    corpus = np.asarray(corpus, dtype=np.int64)
    rows = (len(corpus) - 1) // batch_size
    if rows < 1:
        raise UserError(f"validation text too short: {len(corpus)} tokens for batch size {batch_size}")
    xs = corpus[:rows * batch_size].reshape(batch_size, rows)
    ys = corpus[1:rows * batch_size + 1].reshape(batch_size, rows)
    state = backend.begin_state(batch_size)
    nll, count = 0.0, 0
    for i in range(0, rows, num_steps):
        X, Y = xs[:, i:i + num_steps], ys[:, i:i + num_steps]
        logits, state = backend.forward(X, state)
        logits = logits.astype(np.float64)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        nll -= log_probs[np.arange(Y.size), Y.T.reshape(-1)].sum()
        count += Y.size
    return math.exp(nll / count)


def train(backend: Backend, loader: Iterable, config: TrainConfig, *,
          on_epoch: Callable[[EpochResult], None] | None = None,
          validation: np.ndarray | None = None, validate_every: int = 10) -> TrainResult:
    """Train for ``config.epochs`` epochs; ``on_epoch`` is called after each (for logs, checkpoints).

    Raises TrainingDiverged when the loss stops being finite; the caller still holds whatever
    ``on_epoch`` saved before that.
    """
    config.validate()
    result = TrainResult()
    for epoch in range(1, config.epochs + 1):
        stats = train_epoch(backend, loader, config, epoch)
        result.epochs.append(stats)
        if validation is not None and (epoch % validate_every == 0 or epoch == config.epochs):
            result.validation.append(
                (epoch, evaluate_perplexity(backend, validation, config.batch_size, config.num_steps)))
        if on_epoch is not None:
            on_epoch(stats)
    return result
