"""How far a run has got, and what it measured on the way: the records the training loop hands out
(``EpochResult`` as each epoch ends, ``StepResult`` at an evaluation inside an epoch), what it returns
(``TrainResult``) and ``TrainState``, everything about a run's progress that is not a weight.

``TrainState`` -- epochs and optimizer steps done, where an epoch in progress stands, the batch order's
random generator, the best score -- is, with the weights and the optimizer's slots, what a run needs to
continue exactly where it stopped, whether it stopped at an epoch's end or after any batch inside one
(``scratchrnn.runner`` saves and restores it). ``training`` uses these and re-exports them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

STEP_RECORD = "step"          # the "kind" of a metrics.jsonl line written inside an epoch


def _no_sums() -> dict:
    return {"loss_sum": 0.0, "tokens": 0, "seconds": 0.0}


@dataclass
class EpochResult:
    epoch: int
    perplexity: float
    tokens: int
    seconds: float
    val_perplexity: float | None = None
    lr: float = float("nan")         # the learning rate of the epoch's last step
    is_best: bool = False            # the best score of the run so far (see TrainState.best)
    world_size: int = 1              # the ranks that trained it (their tokens are all counted)
    step: int | None = None          # optimizer steps taken when the epoch ended (set by training.train)

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    def record(self) -> dict:
        """The epoch as a line of metrics.jsonl."""
        record = {"epoch": self.epoch, "train_perplexity": self.perplexity,
                  "val_perplexity": self.val_perplexity, "lr": self.lr,
                  "tokens_per_sec": self.tokens_per_sec, "seconds": self.seconds, "world_size": self.world_size}
        if self.step is not None:
            record["step"] = self.step
        return record


@dataclass
class StepResult:
    """An evaluation inside an epoch, every ``TrainConfig.eval_every_steps`` optimizer steps: the
    training perplexity of the batches since the previous one (of this epoch) and, where text is held
    out, its perplexity now."""

    step: int                        # optimizer steps taken
    epoch: float                     # epochs done, with the share of the epoch in progress (for plots)
    perplexity: float
    tokens: int
    seconds: float
    val_perplexity: float | None = None
    lr: float = float("nan")
    is_best: bool = False
    world_size: int = 1

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("inf")

    def record(self) -> dict:
        """The evaluation as a line of metrics.jsonl (``kind`` tells it from an epoch's line)."""
        return {"kind": STEP_RECORD, "step": self.step, "epoch": self.epoch, "train_perplexity": self.perplexity,
                "val_perplexity": self.val_perplexity, "lr": self.lr, "tokens_per_sec": self.tokens_per_sec,
                "seconds": self.seconds, "world_size": self.world_size}


def epoch_records(records: list[dict]) -> list[dict]:
    """The lines of metrics.jsonl that close an epoch (those of evaluations inside epochs left out)."""
    return [r for r in records if r.get("kind") != STEP_RECORD]


@dataclass
class TrainState:
    """A run's progress, apart from its weights and optimizer slots (JSON in checkpoints)."""

    epoch: int = 0                   # epochs completed
    step: int = 0                    # optimizer updates taken: the schedule's position
    batch: int = 0                   # batches of epoch ``epoch + 1`` trained already (an epoch in progress)
    partial: dict = field(default_factory=_no_sums)   # that epoch's sums so far (all ranks)
    evaluated: dict = field(default_factory=_no_sums)  # ``partial`` as of that epoch's latest step evaluation
    loader_rng: dict | None = None   # the batch order's generator as epoch ``epoch + 1`` begins
    best: dict | None = None         # {"epoch", "score", "by"} (and "step" if found inside an epoch)
    history: list = field(default_factory=list)   # EpochResult.record() of every epoch done

    def to_dict(self, with_history: bool = True) -> dict:
        data = asdict(self)
        data["loader_rng"] = json_safe_ints(self.loader_rng, to_text=True)
        if not with_history:
            del data["history"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainState":
        known = set(cls.__dataclass_fields__)
        state = cls(**{k: v for k, v in data.items() if k in known})
        state.loader_rng = json_safe_ints(state.loader_rng, to_text=False)
        return state

    def tokens_per_sec(self, records: list[dict]) -> float:
        """The run's average speed: the training tokens over the training seconds of every epoch in
        ``records`` (metrics.jsonl's) and of the epoch in progress (evaluations and saves not counted)."""
        done = epoch_records(records)
        seconds = sum(r.get("seconds", 0) for r in done) + self.partial["seconds"]
        tokens = sum(r.get("tokens_per_sec", 0) * r.get("seconds", 0) for r in done) + self.partial["tokens"]
        return tokens / seconds if seconds > 0 else float("nan")

    def where(self) -> str:
        """Where the run stands, in words: "epoch 3, after batch 17 (step 87)" or "epoch 2 (step 70)"."""
        if self.batch:
            return f"epoch {self.epoch + 1}, after batch {self.batch} (step {self.step})"
        return f"epoch {self.epoch} (step {self.step})"


def json_safe_ints(value, to_text: bool):
    """A generator's state with its 128-bit integers as hexadecimal text (``to_text``) or back.

    Checkpoints refuse JSON integers of more than a few digits (a hostile file could hold millions),
    and PCG64's state and increment are 39-digit numbers.
    """
    if isinstance(value, dict):
        return {k: json_safe_ints(v, to_text) for k, v in value.items()}
    if to_text and isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**53:
        return f"int:{value:x}"
    if not to_text and isinstance(value, str) and value.startswith("int:"):
        return int(value[4:], 16)
    return value


@dataclass
class TrainResult:
    epochs: list[EpochResult] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)  # (epoch, perplexity)
    steps: list[StepResult] = field(default_factory=list)              # the evaluations inside epochs
    interrupted: bool = False        # stopped by ``should_stop`` inside an epoch
    reached_max_steps: bool = False  # stopped by ``TrainConfig.max_steps`` (inside an epoch if carried is set)
    carried: Any = None              # the state carried into the next batch, when stopped inside an epoch

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


def window(state: TrainState) -> dict:
    """The sums of the epoch in progress since its latest step evaluation (or its start)."""
    now, then = state.partial, state.evaluated
    return {key: now[key] - then[key] for key in ("loss_sum", "tokens", "seconds")}


def perplexity_of(sums: dict) -> float:
    """exp of the mean loss of ``sums`` (``loss_sum`` over ``tokens``), inf when it overflows."""
    mean = float(sums["loss_sum"]) / max(int(sums["tokens"]), 1)
    try:
        return math.exp(mean)
    except OverflowError:
        return float("inf")
