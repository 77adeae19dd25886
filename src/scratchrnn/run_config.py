"""What a training run is asked for (``RunConfig``), and the text it reads for that.

``RunConfig`` holds the settings as plain values (nanoGPT-style), with ``None`` for "the default for
this data", which ``resolved`` decides: the chapter's first 10,000 characters of its book (and the
next as many held out, scored only), or all of a text of one's own with its last 10% held out.
``load_run_corpus`` reads that text; ``run_prefixes`` chooses the prompts continued while training.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np

from .backends import BACKENDS
from .data import CLEANING_MODES, check_corpus_fits, load_corpus, split_heldout
from .errors import UserError
from .generation import default_prefix, encode_prefix
from .model import ModelSettings
from .saved_state import check_count
from .training import BEST_BY, TrainConfig

CHAPTER_MAX_TOKENS = 10000       # the chapter trains on the first 10,000 characters of its book
DEFAULT_VAL_FRACTION = 0.1       # a text of one's own: the last 10% held out, as nanoGPT splits
DEVICES = ("cpu", "cuda")
DTYPES = ("float32", "float64")


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
        """Refuse settings that cannot train, naming the field: what ``train`` accepts here, a resumed
        run's checkpoint is checked against again, so a run never writes settings it cannot read back."""
        if self.best_by not in (None, *BEST_BY):
            raise ValueError(f"best_by must be one of {BEST_BY}, not {self.best_by!r}")
        if self.val_fraction is not None and not (isinstance(self.val_fraction, (int, float))
                                                  and not isinstance(self.val_fraction, bool)
                                                  and 0 <= self.val_fraction < 1):
            raise ValueError(f"val_fraction must be in [0, 1), not {self.val_fraction!r}")
        for name in ("checkpoint_every", "num_chars"):
            check_count(getattr(self, name), name, least=1)
        check_count(self.predict_every, "predict_every")
        if self.max_tokens not in (None, "all"):
            check_count(self.max_tokens, "max_tokens", least=1)
        for name, options in (("backend", BACKENDS), ("device", DEVICES), ("dtype", DTYPES),
                              ("cleaning", (None, *CLEANING_MODES))):
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {', '.join(map(str, options))}, not "
                                 f"{getattr(self, name)!r}")
        if self.data is not None and not isinstance(self.data, str):
            raise ValueError(f"data must name a file, not {self.data!r}")
        if self.prefixes is not None and not (isinstance(self.prefixes, list) and all(
                isinstance(prefix, str) and prefix for prefix in self.prefixes)):
            raise ValueError(f"prefixes must be a list of texts, not {self.prefixes!r}")
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
class Corpus:
    """A run's text as token ids: what it trains on, what it scores (or None), and their fingerprint."""

    train: np.ndarray
    heldout: np.ndarray | None
    vocab: object
    fingerprint: str


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


def run_prefixes(config: RunConfig, corpus: Corpus) -> list[str]:
    """The prompts continued during and after training, checked against the vocabulary now."""
    if config.prefixes:
        for prefix in config.prefixes:
            encode_prefix(prefix, corpus.vocab, config.cleaning)
        return list(config.prefixes)
    prefix = default_prefix(corpus.train, corpus.vocab, bundled=config.data is None)
    prompts = [prefix, "traveller"] if config.data is None else [prefix]
    return prompts
