"""The training loop, written once for every backend.

What the chapter's ``train_epoch_ch8`` decides -- when the state starts from zero, when it is
detached, how perplexity and speed are measured -- is decided here, so all backends train the same
way; the backend only computes a minibatch's loss and gradients, and ``optim`` clips and updates.

``train`` counts epochs and optimizer steps alike: it can stop after ``TrainConfig.max_steps``, score
the held-out text every ``eval_every_steps`` and hand the run a checkpoint's worth of state every
``checkpoint_every_steps``, all inside an epoch. An epoch is then trained in parts: each part stops
(as a Ctrl-C would, ``train_epoch``'s ``should_stop``), the run evaluates or saves, and the next part
continues the same batches with the same carried state -- what resuming a saved run does, so a run
that paused is the run that never did. The records and ``TrainState`` are in ``progress``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np

from . import faults
from .backends.base import Backend
from .data import num_batches
from .distributed import SINGLE, World
from .errors import TrainingDiverged
from .model import log_softmax
from .optim import OPTIMIZERS, SCHEDULES, Optimizer, OptimizerConfig, Schedule, create_optimizer
from .progress import (EpochResult, StepResult, TrainResult, TrainState, json_safe_ints,  # noqa: F401
                       perplexity_of, window)

MAX_FINITE_LOSS = math.log(np.finfo(np.float64).max)
BEST_BY = ("train", "val")


@dataclass
class TrainConfig:
    """How to train: the chapter's settings by default (SGD at lr 1, clipping at 1, 500 epochs)."""

    epochs: int = 500
    lr: float = 1.0
    batch_size: int = 32
    num_steps: int = 35
    sampling: str = "sequential"     # "sequential" carries the state across batches, "random" does not
    clip: float | None = 1.0         # theta of global-norm clipping; None trains without clipping
    detach: bool = True              # False: sequential batches backpropagate into earlier ones
    seed: int = 0
    optimizer: str = "sgd"
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup: int = 0                  # optimizer steps of linear warm-up
    lr_decay: float = 0.5            # "step" schedule: the factor applied at each decay
    lr_decay_every: int = 0          # "step" schedule: epochs between decays (0: a third of the epochs)
    eval_every: int = 0              # epochs between validations (0: about 50 in a run, at least 1 apart)
    max_steps: int = 0               # optimizer steps after which training ends, inside an epoch if need be (0: none)
    eval_every_steps: int = 0        # optimizer steps between evaluations inside epochs (0: at epoch ends only)

    def validate(self) -> None:
        """Refuse values that cannot train, naming the field."""
        positive_ints = {"epochs": self.epochs, "batch_size": self.batch_size, "num_steps": self.num_steps}
        for name, value in positive_ints.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value}")
        for name, value in {"warmup": self.warmup, "lr_decay_every": self.lr_decay_every,
                            "eval_every": self.eval_every, "max_steps": self.max_steps,
                            "eval_every_steps": self.eval_every_steps}.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {value}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, not {self.lr}")
        if self.clip is not None and not (self.clip > 0 and math.isfinite(self.clip)):
            raise ValueError(f"clip must be a positive number or None, not {self.clip}")
        if self.sampling not in ("sequential", "random"):
            raise ValueError(f"sampling must be 'sequential' or 'random', not {self.sampling!r}")
        if not self.detach and self.sampling == "random":
            raise ValueError("detach=False needs sampling 'sequential' (random batches reset the state)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, not {self.seed}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, not {self.lr_schedule!r}")
        self.optimizer_config()                     # its own checks (weight_decay)
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], not {self.lr_decay}")

    def optimizer_config(self) -> OptimizerConfig:
        return OptimizerConfig(self.optimizer, weight_decay=self.weight_decay)

    def make_optimizer(self) -> Optimizer:
        return create_optimizer(self.optimizer_config())

    def schedule(self, steps_per_epoch: int) -> Schedule:
        """The learning rate per optimizer step, for epochs of ``steps_per_epoch`` steps; a cosine runs
        its course over the run's steps (``max_steps`` where that ends the run first)."""
        decay_epochs = self.lr_decay_every or max(1, self.epochs // 3)
        total = self.epochs * steps_per_epoch
        if self.max_steps:
            total = min(total, self.max_steps)
        return Schedule(self.lr_schedule, self.lr, self.warmup, max(1, total),
                        self.lr_decay, max(1, decay_epochs * steps_per_epoch))

    def evaluation_interval(self) -> int:
        return self.eval_every or max(1, self.epochs // 50)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class _Interrupted(Exception):
    """Raised inside an epoch when ``should_stop`` says so; carries what the epoch had done."""

    def __init__(self, carried):
        super().__init__("interrupted")
        self.carried = carried


def _epoch_batches(loader: Iterable, state: TrainState) -> Iterable:
    """The loader's batches for epoch ``state.epoch + 1``, past the ones an interrupted run trained.

    A loader with a random generator (``SeqDataLoader.rng``) is set to the state recorded when the
    epoch began, so a resumed epoch reads the very batches the interrupted one would have.
    """
    rng = getattr(loader, "rng", None)
    if rng is not None:
        if state.loader_rng is not None:
            rng.bit_generator.state = state.loader_rng
        else:
            state.loader_rng = rng.bit_generator.state
    batches = iter(loader)
    for _ in range(state.batch):
        next(batches, None)
    return batches


def train_epoch(backend: Backend, batches: Iterable, config: TrainConfig, epoch: int = 1, *,
                optimizer: Optimizer | None = None, schedule: Callable[[int], float] | None = None,
                state: TrainState | None = None, carried=None,
                should_stop: Callable[[], bool] | None = None, world: World = SINGLE,
                reduce: Callable[[dict], dict] | None = None) -> EpochResult:
    """One pass over the batches (the chapter's ``train_epoch_ch8``).

    ``state`` (optional) counts optimizer steps and, when the epoch is interrupted, keeps how far it
    got; ``carried`` is the hidden state an interrupted epoch stopped with. On several ranks
    (``world``), ``batches`` are this rank's rows, ``reduce`` averages the gradients over the ranks,
    and the epoch's loss and token count are summed over them, so the result is the global batch's.
    """
    state = state if state is not None else TrainState(epoch=epoch - 1)
    schedule = schedule or (lambda step: config.lr)
    partial = state.partial
    start = time.perf_counter()
    lr = schedule(state.step)
    # this rank's own sums from here on; the ranks' are added up (and to what a resumed epoch had
    # done already) when the epoch ends or stops
    loss_sum, tokens = 0.0, 0
    step_options = {} if reduce is None else {"reduce": reduce}
    # a diverging run overflows before it turns NaN; that is reported below as TrainingDiverged,
    # so NumPy's per-operation overflow warnings would only bury the message
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            for X, Y in batches:
                if carried is None or config.sampling == "random":
                    # random batches do not continue each other: a state carried over would be noise
                    carried = backend.begin_state(X.shape[0])
                elif config.detach:
                    # keep the values, cut the graph: backpropagation stops at this batch's first step
                    carried = backend.detach(carried)
                lr = schedule(state.step)
                loss, carried = backend.train_step(X, Y, carried, lr, config.clip, optimizer, **step_options)
                state.step += 1
                state.batch += 1
                loss_sum = loss_sum + loss * Y.size     # may stay a device scalar until the epoch ends
                tokens += Y.size
                faults.point("train.batch-end")
                if should_stop is not None and should_stop():
                    raise _Interrupted(carried)
    except _Interrupted:
        loss_sum, tokens = world.sum([loss_sum, tokens])
        state.partial = {"loss_sum": partial["loss_sum"] + loss_sum, "tokens": partial["tokens"] + int(tokens),
                         "seconds": partial["seconds"] + time.perf_counter() - start}
        raise
    loss_sum, tokens = world.sum([loss_sum, tokens])
    loss_sum, tokens = partial["loss_sum"] + loss_sum, partial["tokens"] + int(tokens)
    mean_loss = float(loss_sum) / max(tokens, 1)
    seconds = partial["seconds"] + time.perf_counter() - start
    # past ~709 nats exp() overflows float64: a perplexity that large is divergence too
    if not math.isfinite(mean_loss) or mean_loss > MAX_FINITE_LOSS:
        raise TrainingDiverged(epoch, mean_loss)
    return EpochResult(epoch, math.exp(mean_loss), tokens, seconds, lr=lr, world_size=world.size)


def evaluate_perplexity(backend: Backend, corpus: np.ndarray, batch_size: int, num_steps: int,
                        world: World = SINGLE) -> float:
    """Perplexity of held-out text: its tokens read in order, the state carried, no training.

    On several ranks each scores its share of the ``batch_size`` rows and the sums are added up.
    """
    corpus = np.asarray(corpus, dtype=np.int64)
    rows = (len(corpus) - 1) // batch_size
    if rows < 1:
        raise ValueError(f"held-out text too short: {len(corpus)} tokens for batch_size {batch_size}")
    xs = corpus[:rows * batch_size].reshape(batch_size, rows)
    ys = corpus[1:rows * batch_size + 1].reshape(batch_size, rows)
    xs, ys = world.rows(xs), world.rows(ys)
    state = backend.begin_state(xs.shape[0])
    nll, count = 0.0, 0
    for i in range(0, rows, num_steps):
        X, Y = xs[:, i:i + num_steps], ys[:, i:i + num_steps]
        logits, state = backend.forward(X, state)
        log_probs = log_softmax(np.asarray(logits, dtype=np.float64))
        nll -= log_probs[np.arange(Y.size), Y.T.reshape(-1)].sum()
        count += Y.size
    nll, count = world.sum([nll, count])
    return math.exp(nll / count)


def _improved(state: TrainState, score: float | None, epoch: int, best_by: str, step: int | None = None) -> bool:
    """Whether ``score`` (of ``epoch``, or of ``step`` inside it) is the best so far, updating
    ``state.best`` if so."""
    if score is None or not math.isfinite(score):
        return False
    if state.best is not None and state.best["by"] == best_by and not score < state.best["score"]:
        return False
    state.best = {"epoch": epoch, "score": score, "by": best_by, **({} if step is None else {"step": step})}
    return True


@dataclass
class StepEvent:
    """What ``train`` hands ``on_step`` when it pauses inside an epoch: the evaluation made there (or
    None), whether a checkpoint is due, and the state carried into the next batch (this rank's rows)."""

    evaluation: StepResult | None
    checkpoint_due: bool
    carried: Any


class _Lookahead:
    """An epoch's batches that can tell whether another one follows, without handing it out."""

    def __init__(self, batches: Iterable):
        self._batches, self._ahead = iter(batches), None

    def __iter__(self):
        return self

    def __next__(self):
        if self._ahead is None:
            return next(self._batches)
        ahead, self._ahead = self._ahead, None
        if ahead is StopIteration:
            raise StopIteration
        return ahead

    def more(self) -> bool:
        if self._ahead is None:
            self._ahead = next(self._batches, StopIteration)
        return self._ahead is not StopIteration


def _due(step: int, every: int) -> bool:
    return bool(every) and step % every == 0


def train(backend: Backend, loader: Iterable, config: TrainConfig, *,
          optimizer: Optimizer | None = None, state: TrainState | None = None, carried=None,
          on_epoch: Callable[[EpochResult], None] | None = None,
          on_step: Callable[[StepEvent], None] | None = None, checkpoint_every_steps: int = 0,
          validation: np.ndarray | None = None, eval_every: int | None = None,
          best_by: str = "train", stop_when: Callable[[EpochResult], bool] | None = None,
          should_stop: Callable[[], bool] | None = None, world: World = SINGLE,
          reduce: Callable[[dict], dict] | None = None) -> TrainResult:
    """Train until ``config.epochs`` epochs (or ``config.max_steps`` optimizer steps) are done;
    ``on_epoch`` is called after each epoch (for logs and checkpoints), with ``state`` (a TrainState,
    updated in place) already describing that epoch.

    - ``optimizer``: the update rule (default: the one ``config`` names, fresh); ``state`` and
      ``carried``: where a resumed run continues (see TrainState), default a new run.
    - ``validation``: held-out token ids, scored every ``eval_every`` epochs (default from config)
      and after the last; ``best_by`` ("train" or "val") is which perplexity picks the best epoch.
    - Inside an epoch, every ``config.eval_every_steps`` steps: a ``StepResult`` (training perplexity
      since the last one, held-out perplexity), which can be the best by "val"; every
      ``checkpoint_every_steps`` steps (and where ``max_steps`` ends the run) a checkpoint is due.
      Either way ``on_step(StepEvent)`` is called,
      with ``state`` describing the epoch so far (``state.partial``); not after an epoch's last batch,
      where ``on_epoch`` follows.
    - ``stop_when(stats)``: end training after an epoch for which it returns True.
    - ``should_stop()``: asked after every batch; True stops inside the epoch, and the result says
      ``interrupted`` with the carried state, while ``state`` records how far the epoch got. Reaching
      ``config.max_steps`` inside an epoch stops the same way, saying ``reached_max_steps``.
    - ``world`` and ``reduce``: training on several ranks (``scratchrnn.distributed``): ``loader``
      yields this rank's rows, ``reduce`` averages gradients, losses and validation are summed over
      the ranks; every rank gets the same results. ``should_stop`` must then agree on all ranks.

    Raises TrainingDiverged when the loss stops being finite; the caller still holds whatever
    ``on_epoch`` saved before that.
    """
    config.validate()
    if best_by not in BEST_BY:
        raise ValueError(f"best_by must be one of {BEST_BY}, not {best_by!r}")
    if best_by == "val" and validation is None:
        raise ValueError("best_by 'val' needs validation text")
    state = state if state is not None else TrainState()
    optimizer = optimizer if optimizer is not None else config.make_optimizer()
    backend.share_dropout_stream(world.rank, world.size)
    steps_per_epoch = max(1, _steps_per_epoch(loader))
    schedule = config.schedule(steps_per_epoch)
    interval = eval_every or config.evaluation_interval()
    result = TrainResult()
    stop_asked = [False]

    def at_max_steps() -> bool:
        return bool(config.max_steps) and state.step >= config.max_steps

    def stop_or_pause() -> bool:
        # asked after every batch (distributed: every rank at the same one); a pause is never taken
        # after an epoch's last batch, which ends the epoch instead
        stop_asked[0] = bool(should_stop()) if should_stop is not None else False
        pause = (_due(state.step, config.eval_every_steps) or _due(state.step, checkpoint_every_steps)
                 or at_max_steps())
        return stop_asked[0] or (pause and batches.more())

    while state.epoch < config.epochs:
        if at_max_steps():
            result.reached_max_steps = True
            break
        epoch = state.epoch + 1
        batches = _Lookahead(_epoch_batches(loader, state))
        while True:
            try:
                stats = train_epoch(backend, batches, config, epoch, optimizer=optimizer, schedule=schedule,
                                    state=state, carried=carried, should_stop=stop_or_pause, world=world,
                                    reduce=reduce)
                break
            except _Interrupted as stop:
                carried = stop.carried
            # a pause inside the epoch (or a stop): state.partial holds the epoch's sums so far
            evaluation = None
            if _due(state.step, config.eval_every_steps):
                evaluation = _step_evaluation(backend, state, config, validation, world, best_by,
                                              schedule(state.step - 1), steps_per_epoch)
                result.steps.append(evaluation)
            # where max_steps ends the run, its last state is a checkpoint's too
            checkpoint_due = _due(state.step, checkpoint_every_steps) or at_max_steps()
            if on_step is not None and (evaluation is not None or checkpoint_due):
                on_step(StepEvent(evaluation, checkpoint_due, carried))
            if stop_asked[0] or at_max_steps():
                result.interrupted, result.reached_max_steps = stop_asked[0], not stop_asked[0]
                result.carried = carried
                return result
        carried = None
        stats.step = state.step
        if validation is not None and (epoch % interval == 0 or epoch == config.epochs or at_max_steps()
                                       or _due(state.step, config.eval_every_steps)):
            stats.val_perplexity = evaluate_perplexity(backend, validation, config.batch_size,
                                                       config.num_steps, world)
            result.validation.append((epoch, stats.val_perplexity))
        score = stats.perplexity if best_by == "train" else stats.val_perplexity
        stats.is_best = _improved(state, score, epoch, best_by)
        state.epoch, state.batch = epoch, 0
        state.partial = {"loss_sum": 0.0, "tokens": 0, "seconds": 0.0}
        state.evaluated = dict(state.partial)
        rng = getattr(loader, "rng", None)
        state.loader_rng = rng.bit_generator.state if rng is not None else None
        state.history.append(stats.record())
        result.epochs.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
        if stop_when is not None and stop_when(stats):
            break
    else:
        result.reached_max_steps = at_max_steps()
    return result


def _step_evaluation(backend: Backend, state: TrainState, config: TrainConfig, validation, world: World,
                     best_by: str, lr: float, steps_per_epoch: int) -> StepResult:
    """Score the run inside an epoch: the training batches since the last evaluation, the held-out text."""
    sums = window(state)
    mean_loss = float(sums["loss_sum"]) / max(int(sums["tokens"]), 1)
    if not math.isfinite(mean_loss) or mean_loss > MAX_FINITE_LOSS:
        raise TrainingDiverged(state.epoch + 1, mean_loss)
    val = (evaluate_perplexity(backend, validation, config.batch_size, config.num_steps, world)
           if validation is not None else None)
    done = state.epoch + min(state.batch / steps_per_epoch, 1.0)
    stats = StepResult(state.step, round(done, 6), perplexity_of(sums), int(sums["tokens"]), sums["seconds"],
                       val, lr=lr, world_size=world.size)
    state.evaluated = dict(state.partial)
    if best_by == "val":
        stats.is_best = _improved(state, val, state.epoch + 1, best_by, step=state.step)
    return stats


def _steps_per_epoch(loader) -> int:
    """Minibatches in an epoch, for the schedules (the fewest an epoch's random offset can give)."""
    try:
        return num_batches(len(loader.corpus), loader.batch_size, loader.num_steps, loader.sampling)
    except AttributeError:
        return 1
