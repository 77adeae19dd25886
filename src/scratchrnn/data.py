"""Text, tokens, vocabulary and the chapter's two ways of cutting a corpus into minibatches.

Everything here works on Python lists and NumPy arrays, so every backend sees exactly the same
batches for the same seed.
"""
from __future__ import annotations

import collections
import re
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .errors import UserError

TIME_MACHINE_SHA1 = "090b5e7e70c295757f55df93cb0a180b9691891a"

# How raw text becomes lines of characters.
#   "chapter": D2L's cleaning -- every run of non-letters becomes one space, lower case, lines stripped.
#   "raw":     the text as written (every character, newlines included), for real texts.
CLEANING_MODES = ("chapter", "raw")


def time_machine_path() -> Path:
    """Path of the copy of H. G. Wells' *The Time Machine* that ships inside the package."""
    return Path(str(resources.files("scratchrnn") / "corpora" / "timemachine.txt"))


def read_text(path: str | Path | None = None) -> str:
    """Read a UTF-8 text file (the bundled Time Machine when ``path`` is None).

    Raises UserError for a file that is missing, unreadable, not UTF-8, or empty, so the CLI can say
    what is wrong instead of printing a traceback.
    """
    path = time_machine_path() if path is None else Path(path)
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    if not path.is_file():
        raise UserError(f"data path is not a file: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"data file is not UTF-8 text: {path} (byte {err.start} cannot be decoded)") from None
    except OSError as err:
        raise UserError(f"cannot read data file {path}: {err.strerror}") from None
    if not text.strip():
        raise UserError(f"data file is empty: {path}")
    return text


def clean_lines(text: str, cleaning: str = "chapter") -> list[str]:
    """Split text into lines, cleaned as the chapter does (or kept raw)."""
    if cleaning == "chapter":
        return [re.sub("[^A-Za-z]+", " ", line).strip().lower() for line in text.splitlines()]
    if cleaning == "raw":
        return text.splitlines(keepends=True)
    raise ValueError(f"unknown cleaning {cleaning!r}; choose from {CLEANING_MODES}")


def clean_prefix(prefix: str, cleaning: str = "chapter") -> str:
    """Apply a corpus' cleaning to a user's prompt, keeping its edges (a trailing space matters)."""
    if cleaning == "chapter":
        return re.sub("[^A-Za-z]+", " ", prefix).lower()
    return prefix


def read_time_machine() -> list[str]:
    """The chapter's ``read_time_machine``: the bundled book as cleaned lines."""
    return clean_lines(read_text(None), "chapter")


def tokenize(lines: Sequence[str], token: str = "word") -> list[list[str]]:
    """Split each line into word or character tokens."""
    if token == "word":
        return [line.split() for line in lines]
    if token == "char":
        return [list(line) for line in lines]
    raise ValueError(f"unknown token type {token!r}; choose 'word' or 'char'")


def _flatten(tokens: Iterable) -> list:
    tokens = list(tokens)
    if tokens and isinstance(tokens[0], list):
        return [tok for line in tokens for tok in line]
    return tokens


class Vocab:
    """Token <-> index table. Index 0 is ``<unk>``, then reserved tokens, then tokens by falling frequency.

    Ties in frequency keep first-appearance order, so the table is a pure function of the text.
    """

    UNK = "<unk>"

    def __init__(self, tokens: Iterable = (), min_freq: int = 0, reserved_tokens: Sequence[str] = ()):
        counter = collections.Counter(_flatten(tokens))
        self.token_freqs = sorted(counter.items(), key=lambda item: item[1], reverse=True)
        self.idx_to_token: list[str] = [self.UNK, *[t for t in reserved_tokens if t != self.UNK]]
        for token, freq in self.token_freqs:
            if freq < min_freq:
                break
            if token not in self.idx_to_token:
                self.idx_to_token.append(token)
        self.token_to_idx = {token: idx for idx, token in enumerate(self.idx_to_token)}

    @classmethod
    def from_tokens_list(cls, idx_to_token: Sequence[str]) -> "Vocab":
        """Rebuild a vocabulary from its saved index order (used by checkpoints)."""
        if not idx_to_token or idx_to_token[0] != cls.UNK:
            raise ValueError("a saved vocabulary must start with <unk>")
        vocab = cls()
        vocab.idx_to_token = list(idx_to_token)
        vocab.token_to_idx = {token: idx for idx, token in enumerate(vocab.idx_to_token)}
        return vocab

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        if isinstance(tokens, (list, tuple)):
            return [self[token] for token in tokens]
        return self.token_to_idx.get(tokens, self.unk)

    def __contains__(self, token) -> bool:
        return token in self.token_to_idx

    def to_tokens(self, indices):
        if isinstance(indices, (list, tuple, np.ndarray)):
            return [self.idx_to_token[int(i)] for i in indices]
        return self.idx_to_token[int(indices)]

    @property
    def unk(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {self.idx_to_token[:10]}{'...' if len(self) > 10 else ''})"


def load_corpus(path: str | Path | None = None, max_tokens: int | None = None,
                cleaning: str = "chapter", token: str = "char") -> tuple[list[int], Vocab]:
    """Token indices of a text and its vocabulary (the chapter's ``load_corpus_time_machine``).

    The vocabulary is built from the whole text; ``max_tokens`` then keeps the first tokens only.
    As in the chapter, cleaned lines are joined with nothing between them.
    """
    lines = clean_lines(read_text(path), cleaning)
    tokens = tokenize(lines, token)
    vocab = Vocab(tokens)
    corpus = [vocab[tok] for line in tokens for tok in line]
    if max_tokens is not None and max_tokens > 0:
        corpus = corpus[:max_tokens]
    if not corpus:
        raise UserError(f"no tokens left in {path or time_machine_path()} after cleaning")
    return corpus, vocab


def num_batches(corpus_len: int, batch_size: int, num_steps: int, sampling: str) -> int:
    """How many minibatches one epoch yields in the worst case of the random offset."""
    if sampling == "random":
        return max(0, (corpus_len - (num_steps - 1) - 1) // num_steps // batch_size)
    return max(0, (corpus_len - num_steps - 1) // batch_size // num_steps)


def check_corpus_fits(corpus_len: int, batch_size: int, num_steps: int, sampling: str) -> None:
    """Refuse a corpus too short to give one (batch_size x num_steps) minibatch, naming the numbers."""
    if num_batches(corpus_len, batch_size, num_steps, sampling) < 1:
        needed = batch_size * num_steps + num_steps + (sampling == "sequential")
        raise UserError(
            f"corpus too short: {corpus_len} tokens cannot fill one batch of {batch_size} x {num_steps} "
            f"tokens with {sampling} partitioning (needs at least {needed}); use a smaller --batch-size or "
            f"--num-steps, or more text (--max-tokens, --data)")


def split_heldout(corpus: Sequence[int], fraction: float) -> tuple[list[int], np.ndarray]:
    """The tokens to train on, and the last ``fraction`` of them held out for validation perplexity.

    The held-out part is the end of the text in one piece, so that it is read in order like the
    training text. ``scratchrnn train --val-fraction`` and the experiments split this way.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), not {fraction}")
    cut = int(len(corpus) * (1 - fraction))
    return list(corpus[:cut]), np.asarray(corpus[cut:], dtype=np.int64)


def seq_data_iter_random(corpus: Sequence[int], batch_size: int, num_steps: int,
                         rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Random partitioning: disjoint subsequences, shuffled, so adjacent batches are unrelated.

    Starts at a random offset in [0, num_steps) so every epoch sees different cuts.
    """
    corpus = np.asarray(corpus, dtype=np.int64)[int(rng.integers(0, num_steps)):]
    num_subseqs = (len(corpus) - 1) // num_steps
    starts = np.arange(0, num_subseqs * num_steps, num_steps)
    rng.shuffle(starts)
    offsets = np.arange(num_steps)
    for i in range(0, batch_size * (num_subseqs // batch_size), batch_size):
        rows = starts[i:i + batch_size, None] + offsets
        yield corpus[rows], corpus[rows + 1]


def seq_data_iter_sequential(corpus: Sequence[int], batch_size: int, num_steps: int,
                             rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Sequential partitioning: row i of batch k+1 continues row i of batch k.

    That is what lets training carry the hidden state from one batch to the next.
    """
    corpus = np.asarray(corpus, dtype=np.int64)
    offset = int(rng.integers(0, num_steps + 1))
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    xs = corpus[offset:offset + num_tokens].reshape(batch_size, -1)
    ys = corpus[offset + 1:offset + 1 + num_tokens].reshape(batch_size, -1)
    for i in range(0, num_steps * (xs.shape[1] // num_steps), num_steps):
        yield xs[:, i:i + num_steps], ys[:, i:i + num_steps]


class SeqDataLoader:
    """Re-iterable minibatch source: each pass is one epoch with fresh random cuts."""

    def __init__(self, corpus: Sequence[int], batch_size: int, num_steps: int,
                 sampling: str = "sequential", seed: int | None = 0):
        if sampling not in ("sequential", "random"):
            raise ValueError(f"sampling must be 'sequential' or 'random', not {sampling!r}")
        self.corpus = np.asarray(corpus, dtype=np.int64)
        self.batch_size, self.num_steps, self.sampling = batch_size, num_steps, sampling
        self.rng = np.random.default_rng(seed)
        self._iter = seq_data_iter_random if sampling == "random" else seq_data_iter_sequential

    def __iter__(self):
        return self._iter(self.corpus, self.batch_size, self.num_steps, self.rng)
