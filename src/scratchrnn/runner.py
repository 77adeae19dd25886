"""One training run, from its settings to a run directory: what ``scratchrnn train`` does.

``RunConfig`` holds the settings as plain values (nanoGPT-style); ``run(config, mode)`` checks
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

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import backends, distributed, faults
from .checkpoint import CARRIED_SLOT, Checkpoint, estimate_checkpoint_bytes
from .data import SeqDataLoader, check_corpus_fits, load_corpus, split_heldout
from .distributed import SINGLE, GradientAverager, World
from .errors import RunInterrupted, TrainingDiverged, UserError
from .generation import default_prefix, encode_prefix, predict
from .interrupts import StopRequests
from .model import INITS, ModelConfig, check_fits_in_memory, init_params
from .plotting import plot_training
from .rundir import RunDirectory
from .training import BEST_BY, TrainConfig, TrainState, json_safe_ints, train

CHAPTER_MAX_TOKENS = 10000       # the chapter trains on the first 10,000 characters of its book
DEFAULT_VAL_FRACTION = 0.1       # a text of one's own: the last 10% held out, as nanoGPT splits


@dataclass
class RunConfig:
    """Everything a run needs, as plain values; ``None`` means "the default for this data" (resolve)."""

    out: str
    backend: str = "numpy"
    device: str = "cpu"
    dtype: str = "float32"
    data: str | None = None              # None: the bundled Time Machine
    cleaning: str | None = None          # None: "chapter" for the bundled book, "raw" for a file
    max_tokens: int | str | None = None  # None: 10000 for the bundled book, "all" for a file
    val_fraction: float | None = None    # None: 0.1 of a file; for the bundled book the text after the slice
    best_by: str | None = None           # None: "val" where text is held out of a file, else "train"
    model: dict = field(default_factory=dict)     # ModelConfig's fields except vocab_size
    init: str = "book"                   # the weights' start (model.init_params): "book" or "scaled"
    forget_bias: float = 0.0             # the LSTM's forget-gate bias at the start (char-rnn: 1)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint_every: int = 1
    predict_every: int = 10
    prefixes: list | None = None         # None: the text's own first words ("time traveller" for the book)
    num_chars: int = 50

    def resolved(self) -> "RunConfig":
        """The same settings with every ``None`` default decided for this data."""
        bundled = self.data is None
        max_tokens = self.max_tokens if self.max_tokens is not None else (CHAPTER_MAX_TOKENS if bundled else "all")
        val_fraction = self.val_fraction
        if val_fraction is None and not bundled:
            val_fraction = DEFAULT_VAL_FRACTION
        best_by = self.best_by or ("val" if val_fraction else "train")
        return dataclasses.replace(self, cleaning=self.cleaning or ("chapter" if bundled else "raw"),
                                   max_tokens=max_tokens, val_fraction=val_fraction, best_by=best_by)

    @property
    def held_out_after_slice(self) -> bool:
        """The chapter's set-up: the book's first N tokens trained on, the next N held out (scored only)."""
        return self.data is None and self.val_fraction is None and self.max_tokens != "all"

    def validate(self) -> None:
        if self.best_by not in (None, *BEST_BY):
            raise ValueError(f"best_by must be one of {BEST_BY}, not {self.best_by!r}")
        if self.val_fraction is not None and not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), not {self.val_fraction}")
        for name in ("checkpoint_every", "num_chars"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value}")
        if isinstance(self.predict_every, bool) or not isinstance(self.predict_every, int) or self.predict_every < 0:
            raise ValueError(f"predict_every must be an integer >= 0, not {self.predict_every}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, not {self.init!r}")
        if self.forget_bias and self.model.get("cell", "rnn") != "lstm":
            raise ValueError(f"forget_bias is for the lstm cell, not the {self.model.get('cell', 'rnn')} cell")
        if not isinstance(self.out, str) or not self.out.strip():
            raise ValueError(f"out must name a directory, not {self.out!r}")
        self.train.validate()

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["train"] = self.train.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["train"] = TrainConfig.from_dict(values.get("train", {}))
        return cls(**values)


@dataclass
class Corpus:
    train: np.ndarray
    heldout: np.ndarray | None
    vocab: object
    fingerprint: str


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


# -- data ---------------------------------------------------------------------------------------------------
def load_run_corpus(config: RunConfig) -> Corpus:
    """The training tokens, the held-out tokens (or None) and the vocabulary, as ``config`` says."""
    cfg = config
    max_tokens = None if cfg.max_tokens == "all" else cfg.max_tokens
    if cfg.held_out_after_slice:
        # read twice the slice: the chapter's training text, then as much again to score
        corpus, vocab = load_corpus(None, 2 * max_tokens, cleaning=cfg.cleaning)
        train_ids, heldout = corpus[:max_tokens], np.asarray(corpus[max_tokens:], dtype=np.int64)
        if len(heldout) - 1 < cfg.train.batch_size:
            heldout = None
    else:
        corpus, vocab = load_corpus(cfg.data, max_tokens, cleaning=cfg.cleaning)
        if cfg.val_fraction:
            train_ids, heldout = split_heldout(corpus, cfg.val_fraction)
            if len(heldout) - 1 < cfg.train.batch_size:
                raise UserError(
                    f"held-out text too short: val_fraction {cfg.val_fraction} of {len(corpus)} tokens is "
                    f"{len(heldout)}, which cannot give each of the batch_size {cfg.train.batch_size} rows a "
                    f"token to predict; hold out more text or use a smaller batch")
        else:
            train_ids, heldout = corpus, None
    check_corpus_fits(len(train_ids), cfg.train.batch_size, cfg.train.num_steps, cfg.train.sampling)
    digest = hashlib.sha256(np.asarray(train_ids, dtype=np.int64).tobytes())
    if heldout is not None:
        digest.update(heldout.tobytes())
    return Corpus(np.asarray(train_ids), heldout, vocab, digest.hexdigest())


def _prefixes(config: RunConfig, corpus: Corpus) -> list[str]:
    """The prompts continued during and after training, checked against the vocabulary now."""
    if config.prefixes:
        for prefix in config.prefixes:
            encode_prefix(prefix, corpus.vocab, config.cleaning)
        return list(config.prefixes)
    prefix = default_prefix(corpus.train, corpus.vocab, bundled=config.data is None)
    prompts = [prefix, "traveller"] if config.data is None else [prefix]
    return prompts


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
    run_dir = RunDirectory(config.out) if world.is_main else None
    resume = None
    if mode == "resume":
        with world.together():
            if world.is_main:
                for note in run_dir.open("resume"):
                    say(f"note: {note}")
                try:
                    resume = _load_resume(run_dir, config)
                except BaseException:
                    run_dir.close()
                    raise
        resume = world.broadcast(resume)
        config = resume["config"]
    try:
        return _run(config, mode, run_dir, resume, say, progress, world)
    finally:
        if run_dir is not None:
            run_dir.close()


def resume(out: str, epochs: int | None = None, **options) -> RunOutcome:
    """Continue the run in ``out`` with its own settings, up to ``epochs`` (default: as many as it was
    started with); ``options`` as for ``run``."""
    return run(RunConfig(out=str(out), train=TrainConfig(epochs=epochs or 0)), "resume", **options)


def _load_resume(run_dir: RunDirectory, asked: RunConfig) -> dict:
    ckpt = run_dir.load("last")
    saved = ckpt.train_state or {}
    if not isinstance(saved.get("run"), dict) or not isinstance(saved.get("progress"), dict):
        raise UserError(f"{run_dir.path}/last holds no training state to resume from (written by an "
                        f"older scratchrnn?)")
    try:
        config = RunConfig.from_dict(saved["run"])
        config.out = asked.out
        if asked.train.epochs:            # 0: as many as the run was started with
            config.train.epochs = asked.train.epochs
        state = TrainState.from_dict(saved["progress"])
        config.validate()
    except (TypeError, ValueError) as err:
        raise UserError(f"{run_dir.path}/last has a training state this scratchrnn cannot use ({err})") from None
    if state.epoch >= config.train.epochs and state.batch == 0:
        raise UserError(f"the run in {run_dir.path} has done its {state.epoch} epochs; resume with more "
                        f"epochs to train on")
    return {"config": config, "ckpt": ckpt, "state": state, "saved": saved}


def _run(config, mode, run_dir, resume, say, progress, world) -> RunOutcome:
    with world.together():
        prepared = _prepare(config, resume, world)
    cfg, corpus, model, prefixes, optimizer, backend, state, carried, loader = prepared
    out_path = run_dir.path if run_dir is not None else Path(cfg.out)
    # every rank must train on the same text: rank 0's fingerprint is the yardstick
    fingerprint = world.broadcast(corpus.fingerprint)
    with world.together():
        if corpus.fingerprint != fingerprint:
            raise UserError(f"the training text here is not rank 0's ({cfg.data or 'the bundled book'} "
                            f"differs); every machine of a run needs the same text")
        if world.is_main:
            notes = _open_run_dir(run_dir, mode, cfg, model, optimizer, state, resume)
    if not world.is_main:
        notes = []
    for note in notes:
        say(f"note: {note}")
    return _train_run(cfg, corpus, model, prefixes, optimizer, backend, state, carried, loader,
                      run_dir, out_path, resume, notes, say, progress, world)


def _prepare(config, resume, world):
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
        model = ModelConfig(len(corpus.vocab), **cfg.model)
    except (TypeError, ValueError) as err:
        raise UserError(str(err)) from None
    train_cfg = cfg.train
    check_fits_in_memory(model, train_cfg.batch_size, train_cfg.num_steps, cfg.dtype)
    prefixes = _prefixes(cfg, corpus)

    optimizer = train_cfg.make_optimizer()
    # dropout masks come from the backend's own generator, seeded from the run's seed; on several
    # ranks every rank holds the same stream and keeps its rows of each mask (training.train), so
    # the masks are those of one process, and a resume on any number of ranks continues them
    options = {"dropout_seed": train_cfg.seed} if model.dropout else {}
    if resume is None:
        params = init_params(model, train_cfg.seed, init=cfg.init, forget_bias=cfg.forget_bias)
        backend = backends.create(cfg.backend, params, model,
                                  device=cfg.device, dtype=cfg.dtype, **options)
        state, carried = TrainState(), None
    else:
        ckpt, state = resume["ckpt"], resume["state"]
        if resume["saved"].get("data_fingerprint") != corpus.fingerprint or \
                list(ckpt.vocab.idx_to_token) != list(corpus.vocab.idx_to_token):
            raise UserError(f"the training text is not the one the run in {cfg.out} was saved with "
                            f"({cfg.data or 'the bundled book'} changed); resume needs the same text")
        backend = backends.create(cfg.backend, ckpt.params, model, device=cfg.device, dtype=cfg.dtype,
                                  **options)
        dropout_rng = resume["saved"].get("dropout_rng")
        if dropout_rng is not None:
            backend.set_dropout_rng_state(json_safe_ints(dropout_rng, to_text=False))
        arrays = dict(ckpt.optimizer_state)
        carried_arrays = [arrays.pop(f"{CARRIED_SLOT}/{i}") for i in range(len(arrays))
                          if f"{CARRIED_SLOT}/{i}" in arrays]
        try:
            optimizer.load_state_arrays(backend, arrays, resume["saved"].get("optimizer_steps", 0))
        except ValueError as err:
            raise UserError(f"{cfg.out}/last: {err}") from None
        carried = None
        if carried_arrays and state.batch:
            # saved for the whole batch (all ranks' rows): this rank continues its own rows
            if any(len(a) != train_cfg.batch_size for a in carried_arrays):
                raise UserError(f"{cfg.out}/last: the carried state does not match batch_size "
                                f"{train_cfg.batch_size}")
            carried = backend.state_from_numpy(tuple(world.rows(a) for a in carried_arrays))
    loader = SeqDataLoader(corpus.train, train_cfg.batch_size, train_cfg.num_steps, train_cfg.sampling,
                           seed=train_cfg.seed, rank=world.rank, world_size=world.size)
    return cfg, corpus, model, prefixes, optimizer, backend, state, carried, loader


def _open_run_dir(run_dir, mode, cfg, model, optimizer, state, resume) -> list[str]:
    """Rank 0: open the directory last, after everything that could still refuse the run."""
    if resume is None:
        checkpoint_bytes = estimate_checkpoint_bytes(model, np.dtype(cfg.dtype).itemsize,
                                                     len(optimizer.slots), extra_json_bytes=1 << 16)
        return run_dir.open(mode, need_bytes=checkpoint_bytes)
    run_dir.trim_metrics(state.epoch)
    state.history = run_dir.read_metrics()
    return []


def _train_run(cfg, corpus, model, prefixes, optimizer, backend, state, carried, loader, run_dir, out_path,
               resume, notes, say, progress, world) -> RunOutcome:
    train_cfg = cfg.train
    outcome = RunOutcome(cfg, state, out_path, notes=list(notes))
    title = (f"{cfg.backend}, {model.cell} {model.num_hiddens} hidden, {train_cfg.optimizer} lr "
             f"{train_cfg.lr:g}, {train_cfg.sampling}")
    saved = {"epoch": state.epoch if resume else None}

    def checkpoint(which, carried_now=None) -> None:
        """Rank 0: save; ``carried_now`` is an interrupted epoch's state of all rows, as NumPy arrays."""
        arrays = optimizer.state_arrays(backend)
        if carried_now is not None:
            for i, tensor in enumerate(carried_now):
                arrays[f"{CARRIED_SLOT}/{i}"] = tensor
        # the per-epoch history is the run directory's metrics.jsonl: a checkpoint that carried it
        # would grow by a line every epoch and be rewritten every epoch
        train_state = {"run": cfg.to_dict(), "progress": state.to_dict(with_history=False),
                       "optimizer_steps": optimizer.step_count, "data_fingerprint": corpus.fingerprint,
                       "world_size": world.size}
        if model.dropout:
            train_state["dropout_rng"] = json_safe_ints(backend.dropout_rng_state(), to_text=True)
        info = {"backend": cfg.backend, "epoch": state.epoch, "world_size": world.size, "best": state.best,
                "train": train_cfg.to_dict(), "prefixes": prefixes}
        run_dir.save(which, Checkpoint(backend.get_params(), corpus.vocab, model, cfg.cleaning, "char",
                                       info=info, train_state=train_state, optimizer_state=arrays))
        if "last" in which:
            saved["epoch"] = state.epoch

    bar = _progress_bar(train_cfg.epochs, state.epoch, progress)
    watch = prefixes[0]

    def on_epoch(stats) -> None:
        faults.point(f"train.rank{world.rank}.epoch-end")
        if not world.is_main:
            return
        run_dir.append_metrics(stats.record())
        which = []
        if stats.is_best:
            which.append("best")
        if stats.epoch % cfg.checkpoint_every == 0 or stats.epoch == train_cfg.epochs:
            which.append("last")
        if which:
            checkpoint(tuple(which))
        faults.point("train.epoch-end")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(ppl=f"{stats.perplexity:.2f}", tok_s=f"{stats.tokens_per_sec:,.0f}")
        if cfg.predict_every and stats.epoch % cfg.predict_every == 0:
            text = predict(backend, corpus.vocab, watch, cfg.num_chars, cleaning=cfg.cleaning)
            val = f"  held-out {stats.val_perplexity:6.2f}" if stats.val_perplexity is not None else ""
            line = f"epoch {stats.epoch:4d}  perplexity {stats.perplexity:7.2f}{val}  {text}"
            if bar is not None:
                bar.clear()
            say(line)
            if bar is not None:
                bar.refresh()

    say(f"training {backend!r} on {len(corpus.train):,} tokens (vocabulary {len(corpus.vocab)}), "
        + (f"held-out {len(corpus.heldout):,} tokens, " if corpus.heldout is not None else "")
        + f"{train_cfg.optimizer} lr {train_cfg.lr:g}, {train_cfg.epochs} epochs of {train_cfg.sampling} "
        f"batches {train_cfg.batch_size} x {train_cfg.num_steps}; best by {cfg.best_by}"
        + (f"; {world.size} ranks of {train_cfg.batch_size // world.size} rows each" if world.distributed else ""))
    stop = StopRequests(grace=2.0 if world.distributed else 0.0, quiet=not world.is_main)
    # several ranks must stop after the same batch: the request travels with the gradients
    reduce = GradientAverager(world, wants_stop=stop) if world.distributed else None
    try:
        with stop:
            result = train(backend, loader, train_cfg, optimizer=optimizer, state=state, carried=carried,
                           on_epoch=on_epoch, validation=corpus.heldout, best_by=cfg.best_by,
                           should_stop=reduce.should_stop if reduce else stop, world=world, reduce=reduce)
    except TrainingDiverged as err:
        _close(bar)
        if not world.is_main:
            raise UserError(str(err)) from None
        if saved["epoch"] or state.history:
            outcome.plots = _plot(run_dir, title)
        else:
            _remove_empty_run(run_dir)
        kept = (f"the last good checkpoint (epoch {saved['epoch']}) is in {run_dir.path}/last"
                if saved["epoch"] else "no checkpoint of this run was saved")
        raise UserError(f"{err}; training stopped, {kept}. Try a smaller learning rate or clipping") from None
    except KeyboardInterrupt:
        _close(bar)
        if not world.is_main:
            raise RunInterrupted("interrupted") from None
        kept = (f"{run_dir.path}/last holds epoch {saved['epoch']}" if saved["epoch"]
                else "no checkpoint was saved")
        raise RunInterrupted(f"interrupted; {kept}") from None
    _close(bar)
    if result.interrupted:
        # the state of every rank's rows, put together as one batch's on rank 0
        carried_all = world.gather_rows(backend.state_to_numpy(result.carried))
        outcome.status = "interrupted"
        if not world.is_main:
            return outcome
        checkpoint(("last",), carried_all)
        outcome.plots = _plot(run_dir, title)
        where = f"epoch {state.epoch + 1}, after batch {state.batch}" if state.batch else f"epoch {state.epoch}"
        outcome.notes.append(f"stopped in {where}; saved {run_dir.path}/last. Continue with: "
                             f"scratchrnn train --resume {run_dir.path}")
        return outcome
    outcome.best_epoch = state.best["epoch"] if state.best else None
    if not world.is_main:
        return outcome
    outcome.plots = _plot(run_dir, title)
    outcome.best_epoch = state.best["epoch"] if state.best else None
    outcome.tokens_per_sec = _tokens_per_sec(state.history)
    best = run_dir.load("best") if state.best else None
    if best is not None:
        best_backend = backends.create(cfg.backend, best.params, model, device=cfg.device, dtype=cfg.dtype)
        outcome.samples = {p: predict(best_backend, corpus.vocab, p, cfg.num_chars, cleaning=cfg.cleaning)
                           for p in prefixes}
    return outcome


def _remove_empty_run(run_dir: RunDirectory) -> None:
    """A run that diverged before anything was saved leaves no directory behind (if it made one)."""
    run_dir.close()
    try:
        run_dir.metrics_path.unlink(missing_ok=True)
        run_dir.path.rmdir()          # only if empty: anything else there is not ours to remove
    except OSError:
        pass


def _tokens_per_sec(history: list[dict]) -> float:
    seconds = sum(r.get("seconds", 0) for r in history)
    tokens = sum(r.get("tokens_per_sec", 0) * r.get("seconds", 0) for r in history)
    return tokens / seconds if seconds > 0 else float("nan")


def _plot(run_dir: RunDirectory, title: str) -> list:
    records = run_dir.read_metrics()
    if not records:
        return []
    return plot_training(records, run_dir.plot_stem, title)


def _progress_bar(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    import sys

    from tqdm import tqdm
    return tqdm(total=total, initial=done, unit="epoch", file=sys.stderr, dynamic_ncols=True)


def _close(bar) -> None:
    if bar is not None:
        bar.close()

