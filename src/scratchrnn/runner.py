"""One training run, from its settings to a run directory: what ``scratchrnn train`` does.

``run(config, mode)`` (settings: ``run_config.RunConfig``) puts the run together as a ``Run``, checking
everything that can be checked before the first batch (data, sizes, prompts, the directory), then
trains with ``training.train`` and keeps the run directory (``rundir.RunDirectory``) current:
``metrics.jsonl`` as each epoch ends, ``last/`` every ``checkpoint_every`` epochs, ``best/`` whenever
the best score improves, the plot at the end or when stopped. ``mode="resume"`` continues a run from
its ``last/`` checkpoint exactly where it stopped (weights, optimizer slots, schedule position, batch
order, and within an interrupted epoch its position and carried state).

A first Ctrl-C stops after the current batch, saves ``last/`` and says how to resume; a second one
stops at once (what ``last/`` held is kept: saves are atomic).

On several ranks (``world``, see ``scratchrnn.distributed``) every rank runs this same code on its
rows of every batch; rank 0 alone opens the run directory (its lock, checkpoints, metrics, plot) and
prints. What a rank refuses before training every rank refuses (``World.together``). A resumed run
is read by rank 0 and sent to the others, so the other machines of a run need the data but not the
run directory. The state of a run is global -- weights, optimizer slots, the batch order's generator
and, within an interrupted epoch, the hidden state of all the batch's rows (gathered to rank 0 for
the save) -- so a run saved by N ranks resumes on any M that divides the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import backends, distributed, faults
from .backends.base import Backend
from .checkpoint import CARRIED_SLOT, Checkpoint, estimate_checkpoint_bytes
from .data import SeqDataLoader
from .distributed import SINGLE, GradientAverager, World
from .errors import RunInterrupted, TrainingDiverged, UserError
from .generation import predict
from .interrupts import StopRequests
from .model import ModelConfig, check_fits_in_memory, init_params
from .optim import Optimizer
from .plotting import plot_training
from .run_config import Corpus, RunConfig, load_run_corpus, run_prefixes
from .rundir import RunDirectory
from .training import EpochResult, TrainConfig, TrainState, json_safe_ints, train


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

    @property
    def history(self) -> list[dict]:
        return self.state.history


# -- the run --------------------------------------------------------------------------------------------------
def run(config: RunConfig, mode: str = "new", *, say: Callable[[str], None] = print,
        progress: bool = True, world: World = SINGLE) -> RunOutcome:
    """Train as ``config`` says into ``config.out``; ``mode`` is "new", "overwrite" or "resume".

    For "resume" (see also ``resume``), ``config`` gives the directory and may raise ``train.epochs``
    (0: as many as the run was started with); every other setting is the saved run's. ``say`` prints
    a line; ``progress`` shows a progress bar on stderr.
    ``world``: this rank's place when several train together (every rank calls ``run``; only rank 0
    touches the directory, says anything or shows progress).
    Raises UserError for anything wrong before training (nothing on disk touched then), training
    divergence and failed saves (the last good checkpoint kept); RunInterrupted for a second Ctrl-C.
    """
    if not world.is_main:
        say, progress = (lambda line: None), False
    directory = RunDirectory(config.out) if world.is_main else None
    try:
        saved = None
        if mode == "resume":
            with world.together():
                if world.is_main:
                    for note in directory.open("resume"):
                        say(f"note: {note}")
                    saved = _SavedRun.read(directory, config)
            saved = world.broadcast(saved)
            config = saved.config
        with world.together():
            this_run = Run.prepare(config, saved, world, directory, say)
        this_run.open(mode, saved)
        return this_run.train(progress)
    finally:
        if directory is not None:
            directory.close()


def resume(out: str, epochs: int | None = None, **options) -> RunOutcome:
    """Continue the run in ``out`` with its own settings, up to ``epochs`` (default: as many as it was
    started with); ``options`` as for ``run``."""
    return run(RunConfig(out=str(out), train=TrainConfig(epochs=epochs or 0)), "resume", **options)


@dataclass
class _SavedRun:
    """What rank 0 read from a run directory's ``last/`` to continue it (sent to the other ranks)."""

    config: RunConfig        # the saved run's settings, with the directory and epochs asked for now
    checkpoint: Checkpoint
    state: TrainState
    train_state: dict        # the checkpoint's train_state as written

    @classmethod
    def read(cls, directory: RunDirectory, asked: RunConfig) -> "_SavedRun":
        ckpt = directory.load("last")
        saved = ckpt.train_state or {}
        if not isinstance(saved.get("run"), dict) or not isinstance(saved.get("progress"), dict):
            raise UserError(f"{directory.path}/last holds no training state to resume from (written by an "
                            f"older scratchrnn?)")
        try:
            config = RunConfig.from_dict(saved["run"])
            config.out = asked.out
            if asked.train.epochs:            # 0: as many as the run was started with
                config.train.epochs = asked.train.epochs
            state = TrainState.from_dict(saved["progress"])
            config.validate()
        except (TypeError, ValueError) as err:
            raise UserError(f"{directory.path}/last has a training state this scratchrnn cannot use "
                            f"({err})") from None
        if state.epoch >= config.train.epochs and state.batch == 0:
            raise UserError(f"the run in {directory.path} has done its {state.epoch} epochs; resume with more "
                            f"epochs to train on")
        return cls(config, ckpt, state, saved)


@dataclass
class Run:
    """One training run, put together: its settings, text, model, backend, batches, optimizer and
    progress, the state an interrupted epoch carries on with, its directory (rank 0's; None on the other
    ranks) and its place among the ranks. ``prepare`` builds it, ``open`` opens the directory, ``train``
    trains; ``save`` and ``on_epoch`` are what training calls back."""

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
    saved_epoch: int | None = None       # the epoch last/ holds; None: no checkpoint of this run yet
    notes: list[str] = field(default_factory=list)
    _bar: object = field(default=None, init=False, repr=False)   # the progress bar while training, if shown

    @classmethod
    def prepare(cls, config: RunConfig, saved: _SavedRun | None, world: World = SINGLE,
                directory: RunDirectory | None = None, say: Callable[[str], None] = print) -> "Run":
        """Everything that can refuse the run before the directory is touched, and what training needs."""
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
        corpus = load_run_corpus(cfg)
        try:
            model = cfg.model.config(len(corpus.vocab))
        except ValueError as err:
            raise UserError(str(err)) from None
        train_cfg = cfg.train
        check_fits_in_memory(model, train_cfg.batch_size, train_cfg.num_steps, cfg.dtype)
        prefixes = run_prefixes(cfg, corpus)
        optimizer = train_cfg.make_optimizer()
        # dropout masks come from the backend's own generator, seeded from the run's seed; on several
        # ranks every rank holds the same stream and keeps its rows of each mask (training.train), so
        # the masks are those of one process, and a resume on any number of ranks continues them
        options = {"dropout_seed": train_cfg.seed} if model.draws_masks else {}
        if saved is None:
            params = init_params(model, train_cfg.seed, init=cfg.model.init, forget_bias=cfg.model.forget_bias)
        else:
            if saved.train_state.get("data_fingerprint") != corpus.fingerprint or \
                    list(saved.checkpoint.vocab.idx_to_token) != list(corpus.vocab.idx_to_token):
                raise UserError(f"the training text is not the one the run in {cfg.out} was saved with "
                                f"({cfg.data or 'the bundled book'} changed); resume needs the same text")
            params = saved.checkpoint.params
        backend = backends.create(cfg.backend, params, model, device=cfg.device, dtype=cfg.dtype, **options)
        loader = SeqDataLoader(corpus.train, train_cfg.batch_size, train_cfg.num_steps, train_cfg.sampling,
                               seed=train_cfg.seed, rank=world.rank, world_size=world.size)
        prepared = cls(cfg, corpus, model, prefixes, backend, optimizer, loader, TrainState(),
                       directory=directory, world=world, say=say)
        if saved is not None:
            prepared._continue(saved)
        return prepared

    def _continue(self, saved: _SavedRun) -> None:
        """Take up where the saved run stopped: its optimizer slots, dropout masks, progress and the
        state of this rank's rows in an interrupted epoch."""
        self.state, self.saved_epoch = saved.state, saved.state.epoch
        dropout_rng = saved.train_state.get("dropout_rng")
        if dropout_rng is not None:
            self.backend.set_dropout_rng_state(json_safe_ints(dropout_rng, to_text=False))
        arrays = dict(saved.checkpoint.optimizer_state)
        carried = [arrays.pop(f"{CARRIED_SLOT}/{i}") for i in range(len(arrays))
                   if f"{CARRIED_SLOT}/{i}" in arrays]
        where = f"{self.config.out}/last"
        try:
            self.optimizer.load_state_arrays(self.backend, arrays, saved.train_state.get("optimizer_steps", 0))
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
        batch_size = self.config.train.batch_size
        if carried and self.state.batch:
            # saved for the whole batch (all ranks' rows): this rank continues its own rows
            if any(len(a) != batch_size for a in carried):
                raise UserError(f"{where}: the carried state does not match batch_size {batch_size}")
            self.carried = self.backend.state_from_numpy(tuple(self.world.rows(a) for a in carried))

    @property
    def out(self) -> Path:
        return self.directory.path if self.directory is not None else Path(self.config.out)

    def open(self, mode: str, saved: _SavedRun | None = None) -> None:
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

    def _open_directory(self, mode: str, saved: _SavedRun | None) -> list[str]:
        if saved is None:
            checkpoint_bytes = estimate_checkpoint_bytes(self.model, np.dtype(self.config.dtype).itemsize,
                                                         len(self.optimizer.slots), extra_json_bytes=1 << 16)
            return self.directory.open(mode, need_bytes=checkpoint_bytes)
        self.directory.trim_metrics(self.state.epoch)
        self.state.history = self.directory.read_metrics()
        return []

    # -- what training calls back -------------------------------------------------------------------------
    def save(self, which, carried=None) -> None:
        """Rank 0: save ``which`` ("last", "best" or both); ``carried`` is an interrupted epoch's state
        of all rows, as NumPy arrays."""
        cfg, state = self.config, self.state
        arrays = self.optimizer.state_arrays(self.backend)
        for i, tensor in enumerate(carried or ()):
            arrays[f"{CARRIED_SLOT}/{i}"] = tensor
        # the per-epoch history is the run directory's metrics.jsonl: a checkpoint that carried it
        # would grow by a line every epoch and be rewritten every epoch
        train_state = {"run": cfg.to_dict(), "progress": state.to_dict(with_history=False),
                       "optimizer_steps": self.optimizer.step_count, "data_fingerprint": self.corpus.fingerprint,
                       "world_size": self.world.size}
        if self.model.draws_masks:
            train_state["dropout_rng"] = json_safe_ints(self.backend.dropout_rng_state(), to_text=True)
        info = {"backend": cfg.backend, "epoch": state.epoch, "world_size": self.world.size, "best": state.best,
                "train": cfg.train.to_dict(), "prefixes": self.prefixes}
        self.directory.save(which, Checkpoint(self.backend.get_params(), self.corpus.vocab, self.model,
                                              cfg.cleaning, "char", info=info, train_state=train_state,
                                              optimizer_state=arrays))
        if "last" in which:
            self.saved_epoch = state.epoch

    def on_epoch(self, stats: EpochResult) -> None:
        """After each epoch: rank 0 appends its metrics, saves what is due and shows how it went."""
        cfg = self.config
        faults.point(f"train.rank{self.world.rank}.epoch-end")
        if not self.world.is_main:
            return
        self.directory.append_metrics(stats.record())
        which = []
        if stats.is_best:
            which.append("best")
        if stats.epoch % cfg.checkpoint_every == 0 or stats.epoch == cfg.train.epochs:
            which.append("last")
        if which:
            self.save(tuple(which))
        faults.point("train.epoch-end")
        bar = self._bar
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ppl=f"{stats.perplexity:.2f}", tok_s=f"{stats.tokens_per_sec:,.0f}")
        if cfg.predict_every and stats.epoch % cfg.predict_every == 0:
            text = predict(self.backend, self.corpus.vocab, self.prefixes[0], cfg.num_chars, cleaning=cfg.cleaning)
            val = f"  held-out {stats.val_perplexity:6.2f}" if stats.val_perplexity is not None else ""
            if bar is not None:
                bar.clear()
            self.say(f"epoch {stats.epoch:4d}  perplexity {stats.perplexity:7.2f}{val}  {text}")
            if bar is not None:
                bar.refresh()

    # -- training -----------------------------------------------------------------------------------------
    def train(self, progress: bool = True) -> RunOutcome:
        """Train to the last epoch (or a Ctrl-C), and say what happened."""
        cfg, train_cfg, world, corpus = self.config, self.config.train, self.world, self.corpus
        self.say(f"training {self.backend!r} on {len(corpus.train):,} tokens (vocabulary {len(corpus.vocab)}), "
                 + (f"held-out {len(corpus.heldout):,} tokens, " if corpus.heldout is not None else "")
                 + f"{train_cfg.optimizer} lr {train_cfg.lr:g}, {train_cfg.epochs} epochs of {train_cfg.sampling} "
                 f"batches {train_cfg.batch_size} x {train_cfg.num_steps}; best by {cfg.best_by}"
                 + (f"; {world.size} ranks of {train_cfg.batch_size // world.size} rows each"
                    if world.distributed else ""))
        stop = StopRequests(grace=2.0 if world.distributed else 0.0, quiet=not world.is_main)
        # several ranks must stop after the same batch: the request travels with the gradients
        reduce = GradientAverager(world, wants_stop=stop) if world.distributed else None
        self._bar = _progress_bar(train_cfg.epochs, self.state.epoch, progress)
        try:
            with stop:
                result = train(self.backend, self.loader, train_cfg, optimizer=self.optimizer, state=self.state,
                               carried=self.carried, on_epoch=self.on_epoch, validation=corpus.heldout,
                               best_by=cfg.best_by, should_stop=reduce.should_stop if reduce else stop,
                               world=world, reduce=reduce)
        except TrainingDiverged as err:
            self._close_bar()
            raise self._diverged(err) from None
        except KeyboardInterrupt:
            self._close_bar()
            kept = (f"{self.out}/last holds epoch {self.saved_epoch}" if self.saved_epoch
                    else "no checkpoint was saved")
            raise RunInterrupted(f"interrupted; {kept}" if world.is_main else "interrupted") from None
        self._close_bar()
        outcome = RunOutcome(cfg, self.state, self.out, notes=list(self.notes))
        if result.interrupted:
            return self._stopped(outcome, result.carried)
        outcome.best_epoch = self.state.best["epoch"] if self.state.best else None
        if world.is_main:
            outcome.plots = self._plot()
            outcome.tokens_per_sec = _tokens_per_sec(self.state.history)
            outcome.samples = self.samples()
        return outcome

    def _diverged(self, err: TrainingDiverged) -> UserError:
        """What a diverged run says; rank 0 keeps its plot, or removes a directory it left empty."""
        if not self.world.is_main:
            return UserError(str(err))
        if self.saved_epoch or self.state.history:
            self._plot()
        else:
            _remove_empty_run(self.directory)
        kept = (f"the last good checkpoint (epoch {self.saved_epoch}) is in {self.out}/last" if self.saved_epoch
                else "no checkpoint of this run was saved")
        return UserError(f"{err}; training stopped, {kept}. Try a smaller learning rate or clipping")

    def _stopped(self, outcome: RunOutcome, carried) -> RunOutcome:
        """After a first Ctrl-C: save last/ with the state of every rank's rows, put together as one
        batch's on rank 0, and say how to continue."""
        carried_all = self.world.gather_rows(self.backend.state_to_numpy(carried))
        outcome.status = "interrupted"
        if not self.world.is_main:
            return outcome
        self.save(("last",), carried_all)
        outcome.plots = self._plot()
        state = self.state
        where = f"epoch {state.epoch + 1}, after batch {state.batch}" if state.batch else f"epoch {state.epoch}"
        outcome.notes.append(f"stopped in {where}; saved {self.out}/last. Continue with: "
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
        return plot_training(records, self.directory.plot_stem, title)

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _remove_empty_run(directory: RunDirectory) -> None:
    """A run that diverged before anything was saved leaves no directory behind (if it made one)."""
    directory.close()
    try:
        directory.metrics_path.unlink(missing_ok=True)
        directory.path.rmdir()          # only if empty: anything else there is not ours to remove
    except OSError:
        pass


def _tokens_per_sec(history: list[dict]) -> float:
    seconds = sum(r.get("seconds", 0) for r in history)
    tokens = sum(r.get("tokens_per_sec", 0) * r.get("seconds", 0) for r in history)
    return tokens / seconds if seconds > 0 else float("nan")


def _progress_bar(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    import sys

    from tqdm import tqdm
    return tqdm(total=total, initial=done, unit="epoch", file=sys.stderr, dynamic_ncols=True)
