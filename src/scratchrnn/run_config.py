"""What a training run is asked for (``RunConfig``), and the text it reads for that.

``RunConfig`` holds the settings as plain values (nanoGPT-style), with ``None`` for "the default for
this data", which ``resolved`` decides: the chapter's first 10,000 characters of its book (and the
next as many held out, scored only), or all of a text of one's own with its last 10% held out.
``load_run_corpus`` reads that text (in the vocabulary of the checkpoint a run starts from, when it
starts from one: ``init_from``) and says which file it was (``DataFile``: its absolute path, size and
SHA-256, so that a run resumes from any directory and follows its text to a new place);
``run_prefixes`` chooses the prompts continued while training.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Vocab, check_corpus_fits, compact_ids, load_corpus, split_heldout
from .errors import UserError
from .generation import default_prefix, encode_prefix
from .model import ModelSettings
from .training import BEST_BY, TrainConfig

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
    model: ModelSettings = field(default_factory=ModelSettings)   # the vocabulary's size comes from the data
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint_every: int = 1
    predict_every: int = 10
    prefixes: list | None = None         # None: the text's own first words ("time traveller" for the book)
    num_chars: int = 50
    checkpoint_every_steps: int = 0      # optimizer steps between saves of last/ inside epochs (0: none)
    keep: int = 0                        # checkpoint versions kept besides best/ and last/, the newest
    max_minutes: float | None = None     # this process's training time, after which it saves and stops
    tensorboard: bool = False            # TensorBoard event files in DIR/tensorboard
    init_from: str | None = None         # a checkpoint whose weights (and vocabulary) the run starts from

    def resolved(self) -> "RunConfig":
        """The same settings with every ``None`` default decided for this data."""
        bundled = self.data is None
        max_tokens = self.max_tokens if self.max_tokens is not None else (CHAPTER_MAX_TOKENS if bundled else "all")
        val_fraction = self.val_fraction
        if val_fraction is None and not bundled:
            val_fraction = DEFAULT_VAL_FRACTION
        best_by = self.best_by or ("val" if val_fraction else "train")
        # absolute: a resumed run finds its text from any working directory
        data = None if bundled else os.path.abspath(self.data)
        return dataclasses.replace(self, data=data, cleaning=self.cleaning or ("chapter" if bundled else "raw"),
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
        for name in ("predict_every", "checkpoint_every_steps", "keep"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {value}")
        minutes = self.max_minutes
        if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float))
                                    or not (minutes > 0 and math.isfinite(minutes))):
            raise ValueError(f"max_minutes must be a positive number or None, not {minutes}")
        if not isinstance(self.model, ModelSettings):
            raise ValueError(f"model must be a ModelSettings, not {self.model!r}")
        if not isinstance(self.out, str) or not self.out.strip():
            raise ValueError(f"out must name a directory, not {self.out!r}")
        self.train.validate()

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["train"] = self.train.to_dict()
        data["model"] = self.model.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """The settings ``to_dict`` wrote, or an older scratchrnn wrote (with ``init`` and
        ``forget_bias`` beside ``model``, not in it)."""
        if not isinstance(data, dict) or not isinstance(data.get("train", {}), dict):
            raise ValueError("the run's settings must be a mapping with a mapping 'train'")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["train"] = TrainConfig.from_dict(values.get("train", {}))
        model = values.get("model", {})
        if isinstance(model, dict):
            model = {**{k: data[k] for k in ("init", "forget_bias") if k in data}, **model}
        values["model"] = ModelSettings.from_dict(model)
        return cls(**values)


@dataclass
class DataFile:
    """Which file a run's text came from: its absolute path, size in bytes and SHA-256."""

    path: str
    bytes: int
    sha256: str

    @classmethod
    def of(cls, path: str) -> "DataFile":
        """Hash the file (read a megabyte at a time); an unreadable one raises UserError."""
        digest, size = hashlib.sha256(), 0
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
                    size += len(block)
        except OSError as err:
            raise UserError(f"cannot read data file {path}: {err.strerror or err}") from None
        return cls(os.path.abspath(path), size, digest.hexdigest())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Corpus:
    """A run's text as token ids: what it trains on, what it scores (or None), their fingerprint, and
    the file they came from (None: the bundled book)."""

    train: np.ndarray
    heldout: np.ndarray | None
    vocab: object
    fingerprint: str
    source: DataFile | None = None


# -- data ---------------------------------------------------------------------------------------------------
def load_run_corpus(config: RunConfig, vocab: Vocab | None = None) -> Corpus:
    """The training tokens, the held-out tokens (or None) and the vocabulary, as ``config`` says;
    given ``vocab`` (a checkpoint's, for a run that starts from its weights), the text is written in that
    vocabulary, and a character it lacks is refused."""
    cfg = config
    source = DataFile.of(cfg.data) if cfg.data is not None and Path(cfg.data).is_file() else None
    max_tokens = None if cfg.max_tokens == "all" else cfg.max_tokens
    if cfg.held_out_after_slice:
        # read twice the slice: the chapter's training text, then as much again to score
        corpus, own = load_corpus(None, 2 * max_tokens, cleaning=cfg.cleaning)
        corpus = corpus if vocab is None else written_in(corpus, own, vocab, "the bundled book")
        train_ids, heldout = corpus[:max_tokens], np.asarray(corpus[max_tokens:], dtype=np.int64)
        if len(heldout) - 1 < cfg.train.batch_size:
            heldout = None
    else:
        corpus, own = load_corpus(cfg.data, max_tokens, cleaning=cfg.cleaning)
        corpus = corpus if vocab is None else written_in(corpus, own, vocab, cfg.data)
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
    return Corpus(np.asarray(train_ids), heldout, own if vocab is None else vocab, digest.hexdigest(), source)


MISSING_SHOWN = 10       # characters a refusal names of those a vocabulary lacks


def written_in(ids: np.ndarray, own: Vocab, target: Vocab, where) -> np.ndarray:
    """Token ids of ``own``'s vocabulary as ids of ``target``'s; every character must be in ``target``."""
    missing = [token for token in own.idx_to_token[1:] if token not in target.token_to_idx]
    if missing:
        shown = ", ".join(repr(token) for token in missing[:MISSING_SHOWN])
        more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
        raise UserError(f"{where} has {len(missing)} character{'s' if len(missing) > 1 else ''} the "
                        f"model's vocabulary of {len(target)} lacks: {shown}{more}; a run that starts from "
                        f"trained weights reads only characters they were trained on")
    # the table in the narrowest type: looking a whole text up gives ids no wider than the text needs
    table = compact_ids([target.token_to_idx.get(token, target.unk) for token in own.idx_to_token], len(target))
    return table[np.asarray(ids)]


def starting_from(config: RunConfig, start) -> RunConfig:
    """A new run's settings when it starts from the weights of ``start`` (a ``checkpoint.Checkpoint``):
    their model and cleaning. A model setting ``config`` gives (one not the default) must be theirs."""
    where = f"the weights of {config.init_from}"
    if config.cleaning not in (None, start.cleaning):
        raise UserError(f"cleaning {config.cleaning!r} is not the {start.cleaning!r} {where} were trained with")
    model = ModelSettings.from_dict({k: v for k, v in start.model.to_dict().items() if k != "vocab_size"})
    default = ModelSettings()
    for name in (f.name for f in dataclasses.fields(ModelSettings)):
        asked = getattr(config.model, name)
        if asked != getattr(default, name) and asked != getattr(model, name):
            raise UserError(f"model setting {name}={asked!r} is not {where}'s ({getattr(model, name)!r}): a "
                            f"run that starts from trained weights has their model")
    return dataclasses.replace(config, model=model, cleaning=start.cleaning,
                               init_from=os.path.abspath(str(start.path)))


def read_run_text(cfg: RunConfig, vocab: Vocab | None = None, resumed: bool = False) -> Corpus:
    """``load_run_corpus``; a resumed run's text, missing where it was, says how to name its new place."""
    try:
        return load_run_corpus(cfg, vocab)
    except UserError as err:
        if not resumed or cfg.data is None or Path(cfg.data).exists():
            raise
        raise UserError(f"{err}: the text of the run in {cfg.out} is no longer where it was; give its new "
                        f"path as data (its SHA-256 must be the one the run recorded)") from None


def run_prefixes(config: RunConfig, corpus: Corpus) -> list[str]:
    """The prompts continued during and after training, checked against the vocabulary now."""
    if config.prefixes:
        for prefix in config.prefixes:
            encode_prefix(prefix, corpus.vocab, config.cleaning)
        return list(config.prefixes)
    prefix = default_prefix(corpus.train, corpus.vocab, bundled=config.data is None)
    prompts = [prefix, "traveller"] if config.data is None else [prefix]
    return prompts
