"""One training run, from its settings to a run directory: what ``scratchrnn train`` does.

``run(config, mode)`` (settings: ``run_config.RunConfig``) puts the run together as a ``Run``, checking
everything that can be checked before the first batch (data, sizes, prompts, the directory), then
trains with ``training.train`` and keeps the run directory (``rundir.RunDirectory``) current:
``metrics.jsonl`` as each epoch ends (and at each evaluation inside one), ``last/`` every
``checkpoint_every`` epochs and every ``checkpoint_every_steps`` steps, ``best/`` whenever the best
score improves, the plot at the end or when stopped. ``mode="resume"`` continues a run from its
``last/`` checkpoint exactly where it stopped (weights, optimizer slots, schedule position, batch
order, and within an epoch its position and carried state); ``saved_run`` says what may change then.
A run may also start from the weights of another (``RunConfig.init_from``): a new run, its model the
checkpoint's, its text read in the checkpoint's vocabulary.

A run ends when its epochs or ``train.max_steps`` are done, or when ``max_minutes`` of this process's
training have passed: then, as after a first Ctrl-C, it stops after the current batch and saves
``last/`` with where it stood, but it finishes (samples, summary) and says how to continue. A first
Ctrl-C stops after the current batch, saves ``last/`` and says how to resume; a second one stops at
once (what ``last/`` held is kept: saves are atomic), and says so too.

On several ranks (``world``, see ``scratchrnn.distributed``) every rank runs this same code on its
rows of every batch; rank 0 alone opens the run directory (its lock, checkpoints, metrics, plot) and
prints. What a rank refuses before training every rank refuses (``World.together``). A resumed run
is read by rank 0 and sent to the others, so the other machines of a run need the data but not the
run directory. The state of a run is global -- weights, optimizer slots, the batch order's generator
and, within an epoch, the hidden state of all the batch's rows (gathered to rank 0 for the save) --
so a run saved by N ranks resumes on any M that divides the batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import backends, distributed, faults
from .backends.base import Backend
from .checkpoint import CARRIED_SLOT, Checkpoint, estimate_checkpoint_bytes, load_checkpoint
from .data import SeqDataLoader, num_batches
from .distributed import SINGLE, GradientAverager, World
from .errors import RunInterrupted, TrainingDiverged, UserError, os_error_message
from .generation import predict
from .interrupts import StopRequests
from .model import ModelConfig, check_fits_in_memory, check_limits, init_params
from .optim import Optimizer
from .plotting import plot_training
from .progress import epoch_records
from .run_config import Corpus, RunConfig, read_run_text, run_prefixes, starting_from
from .rundir import RunDirectory
from .saved_run import SavedRun
from .training import EpochResult, StepEvent, TrainConfig, TrainState, json_safe_ints, train
from .watch import TENSORBOARD_SUBDIR, RunWatch, check_tensorboard_writer, in_jupyter, run_header


@dataclass
class RunOutcome:
    """What a run did, for the caller to report."""

    config: RunConfig
    state: TrainState
    out: Path
    status: str = "finished"          # finished, interrupted
    samples: dict = field(default_factory=dict)   # prefix -> continuation, from the best weights
    best_epoch: int | None = None
    tokens_per_sec: float = float("nan")
    plots: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    records: list = field(default_factory=list)   # metrics.jsonl's lines (rank 0)
    stopped_by: str | None = None     # "max_steps" or "max_minutes" where one of them ended the run

    @property
    def history(self) -> list[dict]:
        return self.state.history


# -- the run --------------------------------------------------------------------------------------------------
def run(config: RunConfig, mode: str = "new", *, say: Callable[[str], None] = print,
        progress: bool = True, world: World = SINGLE) -> RunOutcome:
    """Train as ``config`` says into ``config.out``; ``mode`` is "new", "overwrite" or "resume".

    For "resume" (see also ``resume``), ``config`` gives the directory and what a resumed run may
    change (``saved_run``: ``train.epochs`` and ``train.max_steps``, 0 for as the run was started;
    ``keep``, ``max_minutes``, ``tensorboard``, and ``data`` for a text that moved); every other
    setting is the saved run's. ``say`` prints a line; ``progress`` shows a progress bar on stderr
    (and, inside Jupyter, the curves redrawn in the notebook).
    ``world``: this rank's place when several train together (every rank calls ``run``; only rank 0
    touches the directory, says anything or shows progress).
    Raises UserError for anything wrong before training (nothing on disk touched then), training
    divergence and failed saves (the last good checkpoint kept); RunInterrupted for a second Ctrl-C.
    """
    if not world.is_main:
        say, progress = (lambda line: None), False
    directory = RunDirectory(config.out, keep=_keep(config)) if world.is_main else None
    try:
        saved = None
        if mode == "resume":
            with world.together():
                if world.is_main:
                    for note in directory.open("resume"):
                        say(f"note: {note}")
                    saved = SavedRun.read(directory, config)
                    directory.keep = saved.config.keep
            saved = world.broadcast(saved)
            config = saved.config
        with world.together():
            this_run = Run.prepare(config, saved, world, directory, say)
        this_run.open(mode, saved)
        return this_run.train(progress)
    finally:
        if directory is not None:
            directory.close()


def _keep(config: RunConfig) -> int:
    keep = config.keep
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise UserError(f"keep must be an integer >= 0, not {keep!r}")
    return keep


def resume(out: str, epochs: int | None = None, **options) -> RunOutcome:
    """Continue the run in ``out`` with its own settings, up to ``epochs`` (default: as many as it was
    started with); ``options`` as for ``run``."""
    return run(RunConfig(out=str(out), train=TrainConfig(epochs=epochs or 0)), "resume", **options)


@dataclass
class Run:
    """One training run, put together: its settings, text, model, backend, batches, optimizer and
    progress, the state an interrupted epoch carries on with, its directory (rank 0's; None on the other
    ranks) and its place among the ranks. ``prepare`` builds it, ``open`` opens the directory, ``train``
    trains; ``save``, ``on_epoch`` and ``on_step`` are what training calls back."""

    config: RunConfig                    # resolved: no None default left
    corpus: Corpus
    model: ModelConfig
    prefixes: list[str]
    backend: Backend
    optimizer: Optimizer
    loader: SeqDataLoader
    state: TrainState
    carried: object = None               # the state an interrupted epoch resumes with
    directory: RunDirectory | None = None
    world: World = SINGLE
    say: Callable[[str], None] = print
    saved_step: int | None = None        # the step last/ holds; None: no checkpoint of this run yet
    saved_where: str = ""                # ... and where the run stood then, in words
    notes: list[str] = field(default_factory=list)
    _watch: RunWatch | None = field(default=None, init=False, repr=False)

    @classmethod
    def prepare(cls, config: RunConfig, saved: SavedRun | None, world: World = SINGLE,
                directory: RunDirectory | None = None, say: Callable[[str], None] = print) -> "Run":
        """Everything that can refuse the run before the directory is touched, and what training needs."""
        start = None
        if saved is None and config.init_from is not None:
            start = load_checkpoint(config.init_from, "best")
            config = starting_from(config, start)
        cfg = config.resolved()
        try:
            cfg.validate()
        except ValueError as err:
            raise UserError(str(err)) from None
        if world.distributed and cfg.backend not in distributed.BACKENDS:
            raise UserError(f"the {cfg.backend} backend trains in one process only; several ranks need "
                            f"{' or '.join(distributed.BACKENDS)}")
        if cfg.train.batch_size % world.size:
            raise UserError(f"batch_size {cfg.train.batch_size} is not a multiple of the {world.size} ranks: "
                            f"every rank reads an equal share of each batch")
        if cfg.tensorboard and world.is_main:
            check_tensorboard_writer()
        vocab = start.vocab if start is not None else (saved.checkpoint.vocab if saved and cfg.init_from else None)
        corpus = read_run_text(cfg, vocab, resumed=saved is not None)
        try:
            model = start.model if start is not None else cfg.model.config(len(corpus.vocab))
        except ValueError as err:
            raise UserError(str(err)) from None
        train_cfg = cfg.train
        check_fits_in_memory(model, train_cfg.batch_size, train_cfg.num_steps, cfg.dtype)
        try:
            check_limits(model)           # what the checkpoint reader would refuse, refused now
        except ValueError as err:
            raise UserError(str(err)) from None
        prefixes = run_prefixes(cfg, corpus)
        optimizer = train_cfg.make_optimizer()
        # dropout masks come from the backend's own generator, seeded from the run's seed; on several
        # ranks every rank holds the same stream and keeps its rows of each mask (training.train), so
        # the masks are those of one process, and a resume on any number of ranks continues them
        options = {"dropout_seed": train_cfg.seed} if model.draws_masks else {}
        if saved is not None:
            if saved.train_state.get("data_fingerprint") != corpus.fingerprint or \
                    list(saved.checkpoint.vocab.idx_to_token) != list(corpus.vocab.idx_to_token):
                raise UserError(f"the training text is not the one the run in {cfg.out} was saved with "
                                f"({cfg.data or 'the bundled book'} changed); resume needs the same text")
            params = saved.checkpoint.params
        elif start is not None:
            params = start.params
        else:
            params = init_params(model, train_cfg.seed, init=cfg.model.init, forget_bias=cfg.model.forget_bias)
        backend = backends.create(cfg.backend, params, model, device=cfg.device, dtype=cfg.dtype, **options)
        loader = SeqDataLoader(corpus.train, train_cfg.batch_size, train_cfg.num_steps, train_cfg.sampling,
                               seed=train_cfg.seed, rank=world.rank, world_size=world.size)
        prepared = cls(cfg, corpus, model, prefixes, backend, optimizer, loader, TrainState(),
                       directory=directory, world=world, say=say)
        if saved is not None:
            prepared.state, prepared.carried = saved.restore(prepared.backend, prepared.optimizer, world,
                                                             len(corpus.train))
            prepared.saved_step, prepared.saved_where = saved.state.step, saved.state.where()
        return prepared

    @property
    def out(self) -> Path:
        return self.directory.path if self.directory is not None else Path(self.config.out)

    def open(self, mode: str, saved: SavedRun | None = None) -> None:
        """Check that every rank read the same text, then (rank 0) open the directory: last, after
        everything that could still refuse the run."""
        world = self.world
        # every rank must train on the same text: rank 0's fingerprint is the yardstick
        fingerprint = world.broadcast(self.corpus.fingerprint)
        with world.together():
            if self.corpus.fingerprint != fingerprint:
                raise UserError(f"the training text here is not rank 0's ({self.config.data or 'the bundled book'} "
                                f"differs); every machine of a run needs the same text")
            if world.is_main:
                self.notes = self._open_directory(mode, saved)
        for note in self.notes:
            self.say(f"note: {note}")

    def _open_directory(self, mode: str, saved: SavedRun | None) -> list[str]:
        if saved is None:
            checkpoint_bytes = estimate_checkpoint_bytes(self.model, np.dtype(self.config.dtype).itemsize,
                                                         len(self.optimizer.slots), extra_json_bytes=1 << 16)
            return self.directory.open(mode, need_bytes=checkpoint_bytes)
        self.directory.trim_metrics(self.state.epoch, self.state.step)
        self.state.history = epoch_records(self.directory.read_metrics())
        return []

    # -- what training calls back -------------------------------------------------------------------------
    def save(self, which, carried=None) -> None:
        """Rank 0: save ``which`` ("last", "best" or both); ``carried`` is an epoch in progress's state
        of all rows, as NumPy arrays."""
        cfg, state = self.config, self.state
        arrays = self.optimizer.state_arrays(self.backend)
        for i, tensor in enumerate(carried or ()):
            arrays[f"{CARRIED_SLOT}/{i}"] = tensor
        params = self.backend.get_params()
        # the checkpoint reader refuses what is not finite: such a save would be a run it cannot read
        broken = next((name for name, array in {**params, **arrays}.items() if not np.isfinite(array).all()), None)
        if broken is not None:
            raise TrainingDiverged(state.epoch, float("nan"), f"{broken} became NaN or infinite")
        # the per-epoch history is the run directory's metrics.jsonl: a checkpoint that carried it
        # would grow by a line every epoch and be rewritten every epoch
        train_state = {"run": cfg.to_dict(), "progress": state.to_dict(with_history=False),
                       "optimizer_steps": self.optimizer.step_count, "data_fingerprint": self.corpus.fingerprint,
                       "world_size": self.world.size}
        if self.corpus.source is not None:
            train_state["data_file"] = self.corpus.source.to_dict()
        if self.model.draws_masks:
            train_state["dropout_rng"] = json_safe_ints(self.backend.dropout_rng_state(), to_text=True)
        info = {"backend": cfg.backend, "epoch": state.epoch, "step": state.step, "world_size": self.world.size,
                "best": state.best, "train": cfg.train.to_dict(), "prefixes": self.prefixes}
        self.directory.save(which, Checkpoint(params, self.corpus.vocab, self.model,
                                              cfg.cleaning, "char", info=info, train_state=train_state,
                                              optimizer_state=arrays), label=(state.epoch, state.step))
        if "last" in which:
            self.saved_step, self.saved_where = state.step, state.where()

    def on_epoch(self, stats: EpochResult) -> None:
        """After each epoch: rank 0 appends its metrics, saves what is due and shows how it went."""
        cfg, state = self.config, self.state
        faults.point(f"train.rank{self.world.rank}.epoch-end")
        if not self.world.is_main:
            return
        self.directory.append_metrics(stats.record())
        which = []
        if stats.is_best:
            which.append("best")
        steps_due = cfg.checkpoint_every_steps and state.step % cfg.checkpoint_every_steps == 0
        if stats.epoch % cfg.checkpoint_every == 0 or stats.epoch == cfg.train.epochs or steps_due:
            which.append("last")
        if which:
            self.save(tuple(which))
        faults.point("train.epoch-end")
        self._show(stats)
        if cfg.predict_every and stats.epoch % cfg.predict_every == 0:
            text = predict(self.backend, self.corpus.vocab, self.prefixes[0], cfg.num_chars, cleaning=cfg.cleaning)
            val = f"  held-out {stats.val_perplexity:6.2f}" if stats.val_perplexity is not None else ""
            self._print(f"epoch {stats.epoch:4d}  perplexity {stats.perplexity:7.2f}{val}  {text}")

    def on_step(self, event: StepEvent) -> None:
        """At a pause inside an epoch: the evaluation's record and line, last/ when due, best/ when the
        evaluation is the best so far. Every rank takes part in gathering the carried state."""
        carried = None
        if event.checkpoint_due:
            carried = self.world.gather_rows(self.backend.state_to_numpy(event.carried))
        faults.point(f"train.rank{self.world.rank}.step-pause")
        if not self.world.is_main:
            return
        stats = event.evaluation
        which = []
        if stats is not None:
            self.directory.append_metrics(stats.record())
            if stats.is_best:
                which.append("best")
        if event.checkpoint_due:
            which.append("last")
        if which:
            self.save(tuple(which), carried if event.checkpoint_due else None)
        faults.point("train.step-pause")
        if stats is not None:
            self._show(stats)
            val = f"  held-out {stats.val_perplexity:6.2f}" if stats.val_perplexity is not None else ""
            self._print(f"step {stats.step:6d} (epoch {stats.epoch:.2f})  perplexity {stats.perplexity:7.2f}{val}")

    def _show(self, stats) -> None:
        if self._watch is not None:
            records = self.directory.read_metrics() if self._watch.wants_records else []
            self._watch.reached(stats, self.state.epoch, self.state.tokens_per_sec(self.state.history), records,
                                self._total_steps())

    def _print(self, line: str) -> None:
        if self._watch is not None:
            self._watch.clear()
        self.say(line)
        if self._watch is not None:
            self._watch.refresh()

    # -- training -----------------------------------------------------------------------------------------
    def _total_steps(self) -> int:
        """The steps the run will have taken at its end, as far as the epochs' lengths tell."""
        train_cfg, state = self.config.train, self.state
        steps_per_epoch = max(1, num_batches(len(self.corpus.train), train_cfg.batch_size, train_cfg.num_steps,
                                             train_cfg.sampling))
        total = state.step - state.batch + (train_cfg.epochs - state.epoch) * steps_per_epoch
        return min(total, train_cfg.max_steps) if train_cfg.max_steps else total

    def train(self, progress: bool = True) -> RunOutcome:
        """Train to the end (or a Ctrl-C, or the time budget), and say what happened."""
        cfg, train_cfg, world, corpus = self.config, self.config.train, self.world, self.corpus
        self.say(run_header(self.config, self.model, self.backend, self.corpus, world))
        stop = StopRequests(grace=2.0 if world.distributed else 0.0, quiet=not world.is_main)
        deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else None
        if world.is_main and (progress or cfg.tensorboard):
            m = self.model
            self._watch = RunWatch(total_steps=self._total_steps(), done_steps=self.state.step,
                                   epochs=train_cfg.epochs, done_epochs=self.state.epoch, bar=progress,
                                   tensorboard_dir=self.out / TENSORBOARD_SUBDIR if cfg.tensorboard else None,
                                   live=progress and in_jupyter(), title=f"{cfg.backend}, {m.cell} {m.num_hiddens}")

        def wants_stop() -> bool:
            # asked after every batch: the bar counts it, then a Ctrl-C or the clock may end the run
            if self._watch is not None:
                self._watch.step()
            return stop.requested or (deadline is not None and time.monotonic() >= deadline)
        # several ranks must stop after the same batch: the request travels with the gradients
        reduce = GradientAverager(world, wants_stop=wants_stop) if world.distributed else None
        try:
            with stop:
                result = train(self.backend, self.loader, train_cfg, optimizer=self.optimizer, state=self.state,
                               carried=self.carried, on_epoch=self.on_epoch, on_step=self.on_step,
                               checkpoint_every_steps=cfg.checkpoint_every_steps, validation=corpus.heldout,
                               best_by=cfg.best_by, should_stop=reduce.should_stop if reduce else wants_stop,
                               world=world, reduce=reduce)
                outcome = RunOutcome(cfg, self.state, self.out, notes=list(self.notes))
                if result.interrupted and (stop.requested or deadline is None):
                    return self._stopped(outcome, result.carried)
                if result.interrupted:
                    outcome.stopped_by = "max_minutes"
                elif result.reached_max_steps:
                    outcome.stopped_by = "max_steps"
                self._save_last(result.carried)
                if self._watch is not None:
                    self._watch.speed(self.state.tokens_per_sec(self.state.history))
        except TrainingDiverged as err:
            self._close_watch()
            raise self._diverged(err) from None
        except KeyboardInterrupt:
            self._close_watch()
            raise RunInterrupted(self._interrupted_text()) from None
        finally:
            self._close_watch()
        return self._finished(outcome)

    def _save_last(self, carried) -> None:
        """At the end: last/ holds the run as it ends (inside an epoch: with every rank's carried rows)."""
        inside = self.state.batch > 0
        carried_all = self.world.gather_rows(self.backend.state_to_numpy(carried)) if inside else None
        if self.world.is_main and self.saved_step != self.state.step:
            self.save(("last",), carried_all)

    def _finished(self, outcome: RunOutcome) -> RunOutcome:
        state = self.state
        outcome.best_epoch = state.best["epoch"] if state.best else None
        if not self.world.is_main:
            return outcome
        if outcome.stopped_by == "max_minutes":
            outcome.notes.append(f"stopped after {self.config.max_minutes:g} minutes (max_minutes) in "
                                 f"{state.where()}; saved {self.out}/last. Continue with: "
                                 f"scratchrnn train --resume {self.out}")
        outcome.records = self.directory.read_metrics()
        outcome.plots = self._plot()
        outcome.tokens_per_sec = state.tokens_per_sec(state.history)
        outcome.samples = self.samples()
        return outcome

    def _interrupted_text(self) -> str:
        """What a second Ctrl-C says: what last/ holds, and how to go on from there."""
        if not self.world.is_main:
            return "interrupted"
        if self.saved_step is None:
            return "interrupted; no checkpoint was saved"
        return (f"interrupted; {self.out}/last holds {self.saved_where}. Continue with: "
                f"scratchrnn train --resume {self.out}")

    def _diverged(self, err: TrainingDiverged) -> UserError:
        """What a diverged run says; rank 0 keeps its plot, or removes a directory it left empty."""
        if not self.world.is_main:
            return UserError(str(err))
        if self.saved_step is not None or self.state.history:
            self._plot()
        else:
            _remove_empty_run(self.directory)
        kept = (f"the last good checkpoint ({self.saved_where}) is in {self.out}/last"
                if self.saved_step is not None else "no checkpoint of this run was saved")
        return UserError(f"{err}; training stopped, {kept}. Try a smaller learning rate or clipping")

    def _stopped(self, outcome: RunOutcome, carried) -> RunOutcome:
        """After a first Ctrl-C: save last/ with the state of every rank's rows, put together as one
        batch's on rank 0, and say how to continue."""
        carried_all = self.world.gather_rows(self.backend.state_to_numpy(carried))
        outcome.status = "interrupted"
        if not self.world.is_main:
            return outcome
        try:
            self.save(("last",), carried_all)
        except TrainingDiverged as err:
            kept = f"{self.out}/last keeps {self.saved_where}" if self.saved_where else "nothing was saved"
            outcome.notes.append(f"stopped in {self.state.where()}, where {err.what}: not saved; {kept}")
            outcome.plots = self._plot()
            return outcome
        outcome.plots = self._plot()
        outcome.notes.append(f"stopped in {self.state.where()}; saved {self.out}/last. Continue with: "
                             f"scratchrnn train --resume {self.out}")
        return outcome

    def samples(self) -> dict[str, str]:
        """Each prefix continued by the best weights (none before a best epoch)."""
        if not self.state.best:
            return {}
        cfg = self.config
        best = self.directory.load("best")
        backend = backends.create(cfg.backend, best.params, self.model, device=cfg.device, dtype=cfg.dtype)
        return {p: predict(backend, self.corpus.vocab, p, cfg.num_chars, cleaning=cfg.cleaning)
                for p in self.prefixes}

    def _plot(self) -> list:
        records = self.directory.read_metrics()
        if not records:
            return []
        m, t = self.model, self.config.train
        title = f"{self.config.backend}, {m.cell} {m.num_hiddens} hidden, {t.optimizer} lr {t.lr:g}, {t.sampling}"
        try:
            return plot_training(records, self.directory.plot_stem, title)
        except OSError as err:
            # the run is saved by now: a plot that cannot be written (a full disk, a directory under
            # its name) is not worth failing it for
            self.say(f"note: {os_error_message(err, 'could not write the plot')}")
            return []

    def _close_watch(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None


def _remove_empty_run(directory: RunDirectory) -> None:
    """A run that diverged before anything was saved leaves no directory behind (if it made one)."""
    directory.close()
    try:
        directory.metrics_path.unlink(missing_ok=True)
        directory.path.rmdir()          # only if empty: anything else there is not ours to remove
    except OSError:
        pass
