"""Turning a trained model into text: warm up on a prefix, then pick one token after another.

Works for every backend through ``Backend.forward`` only; the choice of the next token (greedy, or
sampled with temperature / top-k / top-p) is plain NumPy and so identical everywhere. Greedy float32
generation on the CPU goes to the compiled decoder (``kernels.decode``), whatever the backend, where it
was measured faster on this machine for that many streams (``decoder``): the same recurrence, without
Python's cost per character.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from . import faults, kernels
from .backends.base import Backend, has_decode_weights
from .backends.decoding import decode_by_forward, decode_loop
from .data import Vocab, clean_prefix
from .errors import UserError


@dataclass(frozen=True)
class Decoding:
    """How the next token is chosen.

    ``greedy`` takes the most likely token (the chapter's ``predict_ch8``). ``sample`` draws from
    softmax(logits / temperature), optionally only among the ``top_k`` most likely tokens and/or the
    smallest set whose probability reaches ``top_p``. The chapter's exercise writes the same thing as
    q(x) proportional to P(x)^alpha: that is temperature = 1 / alpha.
    """

    strategy: str = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None

    def __post_init__(self):
        if self.strategy not in ("greedy", "sample"):
            raise UserError(f"--strategy must be 'greedy' or 'sample', not {self.strategy!r}")
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise UserError(f"--temperature must be a positive number, not {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k must be a positive integer, not {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], not {self.top_p}")
        if self.seed is not None and not (isinstance(self.seed, (int, np.integer)) and self.seed >= 0):
            raise UserError(f"seed must be an integer >= 0, not {self.seed!r}")


def next_token_probs(logits: np.ndarray, decoding: Decoding) -> np.ndarray:
    """Sampling distribution over the vocabulary for each row of logits (batch, vocab).

    ``<unk>`` (index 0 of every vocabulary) is never drawn: it stands for characters the model never
    saw, so a sample would print a placeholder where the text has a character.

    The logits are shifted by their maximum before the division by the temperature, so the likeliest
    token's term is 0 and every other one 0 or below, whatever the temperature's size: one so small
    that the division overflows (``1e-310``) gives the limit of a falling temperature, greedy choice
    with ties drawn evenly, rather than infinity minus infinity.
    """
    require_finite(logits)
    z = np.array(logits, dtype=np.float64)
    z[..., UNK_INDEX] = -np.inf
    with np.errstate(over="ignore", under="ignore"):
        z = (z - z.max(axis=-1, keepdims=True)) / decoding.temperature
        probs = np.exp(z)
    probs /= probs.sum(axis=-1, keepdims=True)
    if decoding.top_k is not None and decoding.top_k < probs.shape[-1]:
        kth = np.sort(probs, axis=-1)[:, -decoding.top_k][:, None]
        probs = np.where(probs >= kth, probs, 0.0)
    if decoding.top_p is not None and decoding.top_p < 1:
        order = np.argsort(-probs, axis=-1)
        sorted_probs = np.take_along_axis(probs, order, axis=-1)
        # keep a token while the mass of the tokens ranked above it is still short of top_p
        mass_above = np.cumsum(sorted_probs, axis=-1) - sorted_probs
        keep_sorted = mass_above < decoding.top_p * probs.sum(axis=-1, keepdims=True)
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        probs = np.where(keep, probs, 0.0)
    return probs / probs.sum(axis=-1, keepdims=True)


UNK_INDEX = 0          # data.Vocab puts <unk> first


class OutputsNotFinite(UserError):
    """The model's outputs overflowed its floating-point type: nothing sensible can be picked."""


def require_finite(logits: np.ndarray) -> None:
    """Refuse to pick from logits that are not all finite numbers (``<unk>``'s column aside, which is
    never picked): weights near the type's limit overflow in a product, and the likeliest token of a
    row of NaN is nothing but the first."""
    if not np.isfinite(np.asarray(logits)[..., UNK_INDEX + 1:]).all():
        raise OutputsNotFinite(_NOT_FINITE)


_NOT_FINITE = ("the model's outputs overflowed to infinity or NaN: its weights are too large to generate with "
               "in this precision")


def check_weights_fit(params: dict[str, np.ndarray], dtype: str = "float32") -> None:
    """Refuse (OutputsNotFinite) weights so large that the sums of a step could leave ``dtype``'s range.

    Every vector a weight matrix multiplies holds values of at most 1 (a tanh, a gate's product, a
    one-hot row) or of the embedding's size, so no sum of a step exceeds the embedding's largest value
    times the largest column sum of every weight matrix added up. Below the type's largest number, no
    product or sum overflows (the relu cell's state, which can grow, is checked as it is made).
    """
    with np.errstate(over="ignore"):
        embedding = params.get("W_emb")
        scale = max(1.0, float(np.abs(embedding).max())) if embedding is not None and embedding.size else 1.0
        total = 0.0
        for name, value in params.items():
            if name == "W_emb" or not np.size(value):
                continue
            magnitude = np.abs(np.asarray(value, dtype=np.float64))
            total += float(magnitude.sum(axis=0).max() if magnitude.ndim == 2 else magnitude.max())
        bound = total * scale
    limit = float(np.finfo(dtype).max)
    if not bound < limit:
        raise OutputsNotFinite(f"the weights are too large to generate with in {dtype}: a step's sums could "
                               f"reach {bound:.3g}, beyond the {limit:.3g} it can hold")


class TokenPicker:
    """Chooses the next token for a batch of logits, reproducibly for a fixed seed."""

    def __init__(self, decoding: Decoding):
        self.decoding = decoding
        self.rng = np.random.default_rng(decoding.seed)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        if self.decoding.strategy == "greedy":
            require_finite(logits)
            # the likeliest token but <unk>, which stands for no character of the text
            return np.argmax(logits[..., UNK_INDEX + 1:], axis=-1) + UNK_INDEX + 1
        probs = next_token_probs(logits, self.decoding)
        # inverse-CDF draw: one uniform number per row, so a seed fixes the whole text
        u = self.rng.random((probs.shape[0], 1))
        picks = (np.cumsum(probs, axis=-1) < u).sum(axis=-1)
        return np.minimum(picks, probs.shape[-1] - 1)


def encode_prefix(prefix: str, vocab: Vocab, cleaning: str = "chapter") -> list[int]:
    """Token indices of a prompt, cleaned like the training text.

    Characters the model never saw are refused rather than silently turned into ``<unk>``: the
    model was never trained to read ``<unk>``, so its continuation would be meaningless.
    """
    if not prefix:
        raise UserError("the prefix is empty: give at least one character to start from")
    cleaned = clean_prefix(prefix, cleaning)
    unknown = sorted({ch for ch in cleaned if ch not in vocab or vocab[ch] == vocab.unk})
    if unknown:
        named = ", ".join(repr(ch) for ch in unknown[:NAMED_UNKNOWN])
        more = (f" and {len(unknown) - NAMED_UNKNOWN} more ({len(unknown)} in all)"
                if len(unknown) > NAMED_UNKNOWN else "")
        raise UserError(f"the prefix has characters the model's vocabulary lacks: {named}{more}")
    return [vocab[ch] for ch in cleaned]


NAMED_UNKNOWN = 8      # a refusal names this many of a prefix's unknown characters, then counts the rest


CHAPTER_PREFIX = "time traveller"     # the chapter's prompt, for its book
PROMPT_WORDS = 4                        # a prompt taken from a text: at most this many words ...
PROMPT_CHARS = 40                       # ... and this many characters
_PROMPT_SCAN = 400                      # tokens read to find the text's first line


def default_prefix(corpus: Sequence[int], vocab: Vocab, *, bundled: bool = False) -> str:
    """The prompt continued when the user gives none, for a text of character tokens.

    The chapter's "time traveller" for the bundled book (``bundled``). For any other text, its own
    first words: the first line that is not blank, up to ``PROMPT_WORDS`` words and ``PROMPT_CHARS``
    characters, as the text writes them. So the prompt is always in the model's vocabulary and in the
    text's style: a model of Shakespeare is not asked to continue "time traveller".
    """
    if bundled:
        return CHAPTER_PREFIX
    text = vocab_text(vocab, [i for i in corpus[:_PROMPT_SCAN] if i != vocab.unk])
    words = re.compile(r"\s*(\S+(?:\s+\S+){0,%d})" % (PROMPT_WORDS - 1))
    for line in text.splitlines():
        match = words.match(line)
        if match:
            prefix = match.group(1)
            break
    else:
        return text[:10]                # nothing but whitespace: the text's first characters
    if len(prefix) > PROMPT_CHARS:
        head = prefix[:PROMPT_CHARS]
        # whole words where the cut falls inside one, unless the line has no space to cut at
        if not prefix[PROMPT_CHARS].isspace() and head.split(maxsplit=1)[1:]:
            head = head.rsplit(maxsplit=1)[0]
        prefix = head.rstrip()
    return prefix


def generate_ids(backend: Backend, prefixes: Sequence[Sequence[int]], num_tokens: int,
                 decoding: Decoding = Decoding(),
                 on_step: Callable[[np.ndarray], None] | None = None) -> list[list[int]]:
    """Continue several prefixes at once; returns each prefix followed by its ``num_tokens`` tokens.

    Each prefix is read on its own (they may differ in length; prefixes of equal length share one
    forward call); the continuations then advance together as one batch, one step per token.
    ``on_step`` sees every new column of tokens.

    A backend may offer ``decode(state, logits, num_tokens, pick, on_step)`` -- the same loop without
    the per-token cost of ``forward`` (see ``NumpyBackend.decode``); backends without it are stepped
    through ``forward`` one token at a time. ``generate_blocks`` makes the same tokens a block at a time.
    """
    blocks = list(generate_blocks(backend, prefixes, num_tokens, decoding, on_step))
    new = np.concatenate(blocks, axis=1) if blocks else np.empty((len(prefixes), 0), np.int64)
    return [list(ids) + continuation for ids, continuation in zip(prefixes, new.tolist())]


def generate_blocks(backend: Backend, prefixes: Sequence[Sequence[int]], num_tokens: int,
                    decoding: Decoding = Decoding(),
                    on_step: Callable[[np.ndarray], None] | None = None,
                    block: int | None = None) -> Iterator[np.ndarray]:
    """The new tokens of ``generate_ids`` (not the prefixes), as (batch, n) arrays of at most ``block``
    columns each, made as they are asked for: memory stays bounded however many tokens are wanted.

    ``block=None`` makes them in one block. The compiled decoder continues a block exactly where the
    last one stopped; a backend's ``decode`` does not hand back its final state, so the next block
    starts from the state of reading the last block again through ``forward`` (the same sums in
    another order, so a long text made in blocks can part from one made whole at a near-tie).
    """
    if num_tokens < 0:
        raise UserError(f"num_tokens must be zero or more, not {num_tokens}")
    block = max(num_tokens, 1) if block is None else block
    if block < 1:
        raise ValueError(f"block must be a positive number of tokens, not {block}")
    if (has_decode_weights(backend.config)
            and all(len(ids) > 0 for ids in prefixes)
            and decoding.strategy == "greedy"
            and decoder(backend, len(prefixes)).compiled):
        yield from _compiled_blocks(backend, prefixes, num_tokens, block, on_step)
        return
    state, logits = _read_prefixes(backend, prefixes)
    pick = TokenPicker(decoding)
    decode = backend.decode if backend.has_fast_decode else None
    for start in range(0, num_tokens, block):
        n = min(block, num_tokens - start)
        more = start + n < num_tokens
        if decode is not None:
            tokens = np.asarray(decode(state, logits, n, pick, on_step))
            if more:
                step_logits, state = backend.forward(np.ascontiguousarray(tokens, dtype=np.int64), state)
                logits = step_logits[-len(prefixes):]   # time-major: the last step's rows come last
        else:
            tokens, state = _decode_by_forward(backend, state, logits, n, pick, on_step)
            if more:
                step_logits, state = backend.forward(tokens[:, -1:].astype(np.int64), state)
                logits = step_logits[-len(prefixes):]
        yield tokens


def decoder(backend: Backend, streams: int) -> kernels.Choice:
    """Whether greedy decoding of ``streams`` streams runs on the compiled decoder or the backend's own
    loop: ``kernels.choose``, which the first time times the compiled decoder against NumPy's loop of
    one product per token (what the numpy backend and the torch backend on the CPU run; a backend that
    steps its whole forward pass per token is slower than either) for a bucket of streams."""
    c = backend.config
    workload = kernels.Workload(backend.name, c.cell, "decoding", kernels.decoding_bucket(streams), c.num_hiddens,
                                vocab=c.vocab_size, activation=c.activation, dtype=backend.dtype,
                                device=backend.device)
    return kernels.choose(workload, decoding_trial(workload))


def decoding_trial(workload: kernels.Workload):
    """For ``kernels.choose``: greedy decoding of ``workload.batch`` streams on a random model of its
    size, by the compiled decoder or by ``decode_loop``; as many tokens as keep a run short."""
    num_tokens = max(8, min(64, 4096 // workload.batch))
    made: list = []

    def problem():
        if not made:
            rng = np.random.default_rng(0)
            hidden, vocab = workload.hidden, workload.vocab
            made.extend([(rng.standard_normal((vocab, hidden)) * 0.5).astype(np.float32),
                         (rng.standard_normal((hidden, hidden + vocab)) / np.sqrt(hidden)).astype(np.float32),
                         np.zeros(vocab, np.float32)])
        return made

    def fresh_state():
        return (np.zeros((workload.batch, workload.hidden), np.float32),
                np.zeros((workload.batch, workload.vocab), np.float32))

    def trial(choice: kernels.Choice):
        input_rows, W_step, b_q = problem()
        if choice.compiled:
            return lambda: kernels.decode.greedy_decode(*fresh_state(), input_rows, W_step, b_q, workload.activation,
                                                        num_tokens, framework=workload.framework)
        greedy = TokenPicker(Decoding())
        return lambda: decode_loop(*fresh_state(), input_rows, W_step, b_q, workload.activation, num_tokens,
                                   greedy, None)
    return trial


# Bytes a generated token costs while it is held: the int64 array it is made in, its Python list and
# the joined text (and some room for the copies in between).
HELD_BYTES_PER_TOKEN = 32


def generation_bytes(batch: int, num_tokens: int, longest_prefix: int, vocab_size: int, num_hiddens: int,
                     block: int | None = None) -> int:
    """A generous estimate of the peak memory of generating ``num_tokens`` tokens for ``batch`` rows.

    Reading the prefixes keeps every step's logits and states (counted in float64); the output is
    held whole (``generate_ids``, ``block=None``) or a block at a time (``generate_blocks``), and a
    backend's ``decode`` continued over blocks reads each block again through ``forward``.
    """
    per_step = 8 * (vocab_size + 2 * num_hiddens)
    reading = batch * longest_prefix * per_step
    if block is None or block >= num_tokens:
        return reading + batch * num_tokens * HELD_BYTES_PER_TOKEN
    return reading + batch * block * (HELD_BYTES_PER_TOKEN + per_step)


def _rows_by_length(prefixes: Sequence[Sequence[int]]) -> list[list[int]]:
    """The rows of the prefixes grouped by length: prefixes of one length are read together."""
    groups: dict[int, list[int]] = {}
    for row, ids in enumerate(prefixes):
        groups.setdefault(len(ids), []).append(row)
    return list(groups.values())


def _read_prefixes(backend: Backend, prefixes: Sequence[Sequence[int]]):
    """The state after each prefix and the logits of its last token, stacked in the prefixes' order."""
    states, last_logits = [None] * len(prefixes), [None] * len(prefixes)
    for rows in _rows_by_length(prefixes):
        X = np.asarray([prefixes[row] for row in rows], dtype=np.int64)
        logits, state = backend.forward(X, backend.begin_state(len(rows)))
        parts = backend.state_to_numpy(state)
        last_step = logits[-len(rows):]                 # time-major: the last step's rows come last
        for i, row in enumerate(rows):
            states[row] = tuple(part[i:i + 1] for part in parts)
            last_logits[row] = last_step[i]
    state = backend.state_from_numpy(tuple(np.concatenate(parts) for parts in zip(*states)))
    return state, np.stack(last_logits)


STREAM_CHUNK = 64       # tokens the compiled decoder makes between two calls of ``on_step``


def _compiled_blocks(backend: Backend, prefixes: Sequence[Sequence[int]], num_tokens: int, block: int,
                     on_step: Callable[[np.ndarray], None] | None) -> Iterator[np.ndarray]:
    """``generate_blocks`` for greedy float32 decoding on the CPU, by the compiled decoder (kernels.decode).

    It reads the prefixes too (those of equal length together), so that no BLAS call comes between
    two generations: a multithreaded one leaves the BLAS library's threads spinning for a while on the
    cores the decoder's threads need. When the tokens are streamed, it runs a chunk at a time, and
    ``on_step`` sees each column of the chunk: a chunk takes a fraction of a millisecond.
    """
    input_rows, W_step, b_q = backend.decode_weights()
    # <unk> never the likeliest: its logit is -inf (it stands for no character of the text)
    b_q = np.array(b_q, dtype=np.float32)
    b_q[UNK_INDEX] = -np.inf
    activation = backend.config.activation
    framework = backend.name            # no more threads than it is told to use (kernels.threads)
    h = np.array(backend.state_to_numpy(backend.begin_state(len(prefixes)))[0], dtype=np.float32)
    logits = np.zeros((len(prefixes), len(b_q)), np.float32)    # not read: every row starts forced
    groups = _rows_by_length(prefixes)
    if len(groups) == 1:                # the usual case: the first call reads the prefixes
        forced = np.asarray(prefixes, dtype=np.int64)
    else:                                       # read each length apart, then go on together
        for rows in groups:
            h_rows, logits_rows = h[rows], logits[rows]             # copies, updated in place
            prompt = np.asarray([prefixes[row] for row in rows], dtype=np.int64)
            kernels.decode.greedy_decode(h_rows, logits_rows, input_rows, W_step, b_q, activation, 0, prompt,
                                         framework=framework)
            h[rows], logits[rows] = h_rows, logits_rows
        forced = None
    chunk = block if on_step is None else min(block, STREAM_CHUNK)
    for start in range(0, num_tokens, chunk):
        tokens = kernels.decode.greedy_decode(h, logits, input_rows, W_step, b_q, activation,
                                              min(chunk, num_tokens - start), forced if start == 0 else None,
                                              framework=framework)
        faults.point("kernels.decode-returned")
        # a relu state can outgrow float32 (check_weights_fit cannot bound it): the decoder's argmax of
        # NaN logits is their first NaN, and <unk> (-inf here) can only be picked that way
        if (tokens == UNK_INDEX).any() or not np.isfinite(h).all():
            raise OutputsNotFinite(_NOT_FINITE)
        require_finite(logits)
        if on_step is not None:
            for column in tokens.T:
                on_step(column)
        yield tokens


def _decode_by_forward(backend: Backend, state, logits: np.ndarray, num_tokens: int, pick: TokenPicker,
                       on_step: Callable[[np.ndarray], None] | None):
    """The generic generation loop: pick a token per row, feed it back through ``forward``.

    Returns the tokens (batch, num_tokens) and the state before the last of them was fed back.
    """
    return decode_by_forward(backend.forward, state, logits, num_tokens, pick, on_step)


def predict(backend: Backend, vocab: Vocab, prefix: str, num_chars: int = 50, *,
            cleaning: str = "chapter", decoding: Decoding = Decoding(), stream=None) -> str:
    """The prefix and its continuation, as text. ``stream`` (a file) receives characters as they come."""
    ids = encode_prefix(prefix, vocab, cleaning)
    on_step = None
    if stream is not None:
        stream.write(vocab_text(vocab, ids))
        stream.flush()

        def on_step(tokens):
            stream.write(vocab.idx_to_token[int(tokens[0])])
            stream.flush()
    out = generate_ids(backend, [ids], num_chars, decoding, on_step)[0]
    if stream is not None:
        stream.write("\n")
    return vocab_text(vocab, out)


def predict_many(backend: Backend, vocab: Vocab, prefixes: Sequence[str], num_chars: int = 50, *,
                 cleaning: str = "chapter", decoding: Decoding = Decoding()) -> list[str]:
    """Batched ``predict``: all continuations advance together."""
    ids = [encode_prefix(p, vocab, cleaning) for p in prefixes]
    return [vocab_text(vocab, out) for out in generate_ids(backend, ids, num_chars, decoding)]


def vocab_text(vocab: Vocab, ids: Sequence[int]) -> str:
    # the list's own __getitem__ (which takes NumPy integers too) rather than a generator of int(i):
    # several times faster, which shows when 64 streams of text take 30 ms to generate
    return "".join(map(vocab.idx_to_token.__getitem__, ids))

