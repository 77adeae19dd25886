"""Cutting a corpus of token ids into minibatches: the chapter's random and sequential partitioning.

Everything here works on NumPy arrays, so every backend sees exactly the same batches for the same
seed. ``scratchrnn.data`` re-exports these names.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from .errors import UserError
from .model import check_seed


def num_batches(corpus_len: int, batch_size: int, num_steps: int, sampling: str) -> int:
    """How many minibatches one epoch yields in the worst case of the random offset."""
    if sampling == "random":
        return max(0, (corpus_len - (num_steps - 1) - 1) // num_steps // batch_size)
    return max(0, (corpus_len - num_steps - 1) // batch_size // num_steps)


def most_batches(corpus_len: int, batch_size: int, num_steps: int) -> int:
    """How many minibatches one epoch yields in the best case of the random offset (no offset), with
    either partitioning: where a resumed epoch's position can be at most."""
    return max(0, (corpus_len - 1) // (batch_size * num_steps))


def check_corpus_fits(corpus_len: int, batch_size: int, num_steps: int, sampling: str) -> None:
    """Refuse a corpus too short to give one (batch_size x num_steps) minibatch, naming the numbers."""
    if num_batches(corpus_len, batch_size, num_steps, sampling) < 1:
        needed = batch_size * num_steps + num_steps + (sampling == "sequential")
        raise UserError(
            f"corpus too short: {corpus_len} tokens cannot fill one batch of {batch_size} x {num_steps} "
            f"tokens with {sampling} partitioning (needs at least {needed}); use a smaller --batch-size or "
            f"--num-steps, or more text (--max-tokens, --data)")


def as_ids(corpus: Sequence[int]) -> np.ndarray:
    """A corpus as an integer array, kept in its own (compact) type when it is one already."""
    ids = np.asarray(corpus)
    if ids.dtype.kind not in "iu":
        ids = ids.astype(np.int64)
    return ids


def split_heldout(corpus: Sequence[int], fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The tokens to train on, and the last ``fraction`` of them held out for validation perplexity.

    The held-out part is the end of the text in one piece, so that it is read in order like the
    training text. ``scratchrnn train --val-fraction`` and the experiments split this way.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), not {fraction}")
    cut = int(len(corpus) * (1 - fraction))
    return as_ids(corpus[:cut]), np.asarray(corpus[cut:], dtype=np.int64)


def seq_data_iter_random(corpus: Sequence[int], batch_size: int, num_steps: int,
                         rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Random partitioning: disjoint subsequences, shuffled, so adjacent batches are unrelated.

    Starts at a random offset in [0, num_steps) so every epoch sees different cuts.
    """
    corpus = as_ids(corpus)[int(rng.integers(0, num_steps)):]
    num_subseqs = (len(corpus) - 1) // num_steps
    starts = np.arange(0, num_subseqs * num_steps, num_steps)
    rng.shuffle(starts)
    offsets = np.arange(num_steps)
    for i in range(0, batch_size * (num_subseqs // batch_size), batch_size):
        rows = starts[i:i + batch_size, None] + offsets
        yield corpus[rows].astype(np.int64), corpus[rows + 1].astype(np.int64)


def seq_data_iter_sequential(corpus: Sequence[int], batch_size: int, num_steps: int,
                             rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Sequential partitioning: row i of batch k+1 continues row i of batch k.

    That is what lets training carry the hidden state from one batch to the next.
    """
    corpus = as_ids(corpus)
    offset = int(rng.integers(0, num_steps + 1))
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    xs = corpus[offset:offset + num_tokens].reshape(batch_size, -1)
    ys = corpus[offset + 1:offset + 1 + num_tokens].reshape(batch_size, -1)
    for i in range(0, num_steps * (xs.shape[1] // num_steps), num_steps):
        yield xs[:, i:i + num_steps].astype(np.int64), ys[:, i:i + num_steps].astype(np.int64)


class SeqDataLoader:
    """Re-iterable minibatch source: each pass is one epoch with fresh random cuts.

    ``rank`` and ``world_size`` (training on several processes): every rank draws the same cuts from
    the same seed and keeps its own rows of each (batch_size, num_steps) batch, rows rank, rank +
    world_size, ... -- so with sequential partitioning a rank's rows continue its own rows of the
    previous batch, and its carried state stays its own; with random partitioning the batch's shuffled
    subsequences are shared out the same way. ``batch_size`` is the global batch: a multiple of
    ``world_size``.
    """

    def __init__(self, corpus: Sequence[int], batch_size: int, num_steps: int,
                 sampling: str = "sequential", seed: int | None = 0, rank: int = 0, world_size: int = 1):
        if sampling not in ("sequential", "random"):
            raise ValueError(f"sampling must be 'sequential' or 'random', not {sampling!r}")
        for name, value in (("batch_size", batch_size), ("num_steps", num_steps)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        check_seed(seed)
        if isinstance(world_size, bool) or not isinstance(world_size, (int, np.integer)) or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, not {world_size!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), not {rank!r}")
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not a multiple of world_size {world_size}: "
                             f"every rank reads an equal share of each batch")
        self.rank, self.world_size = int(rank), int(world_size)
        # kept compact (1 byte per token for small vocabularies); batches are widened one at a time
        self.corpus = as_ids(corpus)
        self.batch_size, self.num_steps, self.sampling = batch_size, num_steps, sampling
        self.rng = np.random.default_rng(seed)
        self._iter = seq_data_iter_random if sampling == "random" else seq_data_iter_sequential

    def __iter__(self):
        batches = self._iter(self.corpus, self.batch_size, self.num_steps, self.rng)
        if self.world_size == 1:
            return batches
        return ((X[self.rank::self.world_size], Y[self.rank::self.world_size]) for X, Y in batches)
