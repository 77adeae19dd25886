"""Text, tokens and vocabulary; the chapter's minibatches are in ``batches`` (re-exported here).

A text file is read in pieces and cleaned as it streams in, so ``--max-tokens N`` of a large file
reads a bounded prefix of it (see ``load_corpus``). The corpus is held as token ids in the
narrowest unsigned integer type its vocabulary allows: 1 byte per character for up to 256 tokens
(every text under the chapter's cleaning), 2 bytes up to 65,536, else 4 (int32). Batches are
widened to int64 one at a time.
"""
from __future__ import annotations

import codecs
import collections
import errno
import os
import re
import stat
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

# the minibatch side (partitioning, the loader) is a module of its own; its names stay importable here
from .batches import (SeqDataLoader, check_corpus_fits, num_batches,  # noqa: F401
                      seq_data_iter_sequential, split_heldout)
from .errors import UserError

# How raw text becomes lines of characters.
#   "chapter": D2L's cleaning -- every run of non-letters becomes one space, lower case, lines stripped.
#   "raw":     the text as written (newlines included), less control characters other than \t, \n
#              and \r: a checkpoint refuses them in its vocabulary, and printed they drive the terminal.
CLEANING_MODES = ("chapter", "raw")

# bytes read from a data file at a time
READ_CHUNK_BYTES = 1 << 20
# the vocabulary counts at least this many tokens of a text (all of any book-length text, as the
# chapter counts the whole book) even when --max-tokens keeps fewer; past it, reading stops
VOCAB_SCAN_TOKENS = 1 << 22

_NON_LETTERS = re.compile("[^A-Za-z]+")
# every boundary str.splitlines() knows (a CRLF reads as two, which leaves cleaned text unchanged)
_LINE_BREAK_CHARS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_BREAK_CODES = np.array([ord(mark) for mark in _LINE_BREAK_CHARS], dtype=np.uint32)
# Unicode's control characters (category Cc), less tab, newline and carriage return
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_CONTROL_TABLE = dict.fromkeys([*range(0x00, 0x09), 0x0b, 0x0c, *range(0x0e, 0x20), *range(0x7f, 0xa0)])


def time_machine_path() -> Path:
    """Path of the copy of H. G. Wells' *The Time Machine* that ships inside the package."""
    return Path(str(resources.files("scratchrnn") / "corpora" / "timemachine.txt"))


def iter_text(path: str | Path | None = None, chunk_bytes: int = READ_CHUNK_BYTES) -> Iterator[str]:
    """The text of a UTF-8 file (the bundled book when ``path`` is None), decoded piece by piece.

    Reads ``chunk_bytes`` at a time, so a caller that stops early has read only a prefix of the file.
    Raises UserError for a path that is missing, not a regular file, unreadable or not UTF-8 -- when
    the first piece is asked for, before any text is returned.
    """
    path = time_machine_path() if path is None else Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(f"data file not found: {path}") from None
    except OSError as err:
        # e.g. a directory on the way that the user may not enter
        raise UserError(f"cannot read data file {path}: {err.strerror}") from None
    if stat.S_ISDIR(mode):
        raise UserError(f"data path is a directory, not a file: {path}")
    if not stat.S_ISREG(mode):
        # a FIFO or a device would block or never end
        raise UserError(f"data path is not a regular file: {path}")
    try:
        handle = open(path, "rb", buffering=0)
    except OSError as err:
        raise UserError(f"cannot read data file {path}: {err.strerror}") from None
    decoder = codecs.getincrementaldecoder("utf-8")()
    consumed = 0
    with handle:
        for data, length in _pieces(handle, chunk_bytes, path):
            held = len(decoder.getstate()[0])     # bytes of a character cut by the previous piece
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as err:
                byte = consumed - held + err.start
                raise UserError(f"data file is not UTF-8 text: {path} (byte {byte} cannot be decoded)") from None
            consumed += length
            if text:
                yield text
            if not data:
                return


def _pieces(handle, chunk_bytes: int, path) -> Iterator[tuple[bytes, int]]:
    """A file's bytes a piece at a time, each with the length of file it stands for, ending with b"".

    A hole of a sparse file (``truncate -s 4G``) reads as NUL bytes, which every cleaning drops -- or,
    between two letters of a line, reads as the one space any run of non-letters makes -- so one NUL
    stands for the whole hole, and a 4 GiB hole costs nothing to read. Where the file system cannot
    say where its holes are, every byte is read. The size the file had when it was opened is never
    trusted: a file under /proc says 0 and holds text, and a file can grow while it is read.
    """
    fd = handle.fileno()
    position, holes = 0, hasattr(os, "SEEK_DATA")
    while True:
        if holes:
            try:
                data_at = os.lseek(fd, position, os.SEEK_DATA)
                hole_at = os.lseek(fd, data_at, os.SEEK_HOLE)
            except OSError as err:
                if err.errno == errno.ENXIO:        # nothing but a hole from here to the end
                    data_at = hole_at = os.lseek(fd, 0, os.SEEK_END)
                else:                               # no holes to ask about here: read everything
                    holes = False
                    os.lseek(fd, position, os.SEEK_SET)
            if holes:
                if data_at > position:
                    yield b"\0", data_at - position
                position = data_at
                os.lseek(fd, position, os.SEEK_SET)
        want = chunk_bytes if not holes else max(1, min(chunk_bytes, hole_at - position))
        try:
            data = handle.read(want)
        except OSError as err:
            raise UserError(f"cannot read data file {path}: {err.strerror}") from None
        position += len(data)
        yield data, len(data)
        if not data:
            return


def read_text(path: str | Path | None = None) -> str:
    """Read a whole UTF-8 text file (the bundled Time Machine when ``path`` is None).

    Raises UserError for a file that is missing, unreadable, not UTF-8, or empty, so the CLI can say
    what is wrong instead of printing a traceback.
    """
    text = "".join(iter_text(path))
    if not text.strip():
        raise UserError(f"data file is empty: {path or time_machine_path()}")
    return text


def clean_lines(text: str, cleaning: str = "chapter") -> list[str]:
    """Split text into lines, cleaned as the chapter does (or kept raw, less control characters)."""
    if cleaning == "chapter":
        return [_NON_LETTERS.sub(" ", line).strip().lower() for line in text.splitlines()]
    if cleaning == "raw":
        return _CONTROL.sub("", text).splitlines(keepends=True)
    raise ValueError(f"unknown cleaning {cleaning!r}; choose from {CLEANING_MODES}")


def clean_stream(pieces: Iterable[str], cleaning: str = "chapter") -> Iterator[str]:
    """Cleaned text of ``pieces`` (consecutive parts of one text), piece by piece.

    Concatenated, the result is ``"".join(clean_lines(text, cleaning))`` -- cleaned lines joined with
    nothing between them, as the chapter joins them -- however the text was cut into pieces, even
    inside a line or between the two characters of a CRLF, in memory bounded by the pieces' size.
    """
    for codes in _clean_codes(pieces, cleaning):
        yield codes.tobytes().decode("utf-32-le")


def _clean_codes(pieces: Iterable[str], cleaning: str) -> Iterator[np.ndarray]:
    """``clean_stream`` as arrays of code points (uint32), which is what counting characters needs."""
    if cleaning == "raw":
        for piece in pieces:
            # str.translate: a text that is mostly control characters (NUL bytes) cleans in
            # milliseconds a megabyte, where a regular expression's substitution takes a tenth of a second
            yield np.frombuffer(piece.translate(_CONTROL_TABLE).encode("utf-32-le"), dtype=np.uint32)
    elif cleaning == "chapter":
        cleaner = _ChapterCleaner()
        for piece in pieces:
            yield cleaner.clean(piece)
    else:
        raise ValueError(f"unknown cleaning {cleaning!r}; choose from {CLEANING_MODES}")


class _ChapterCleaner:
    """The chapter's cleaning of lines joined with nothing, on arrays, one piece of text at a time.

    Per line: every run of non-letters becomes one space, the line is stripped and lower-cased. So a
    letter is kept (lower case), and one space goes before it exactly when non-letters separate it
    from an earlier letter of the same line -- when no line break lies between the two letters.
    """

    def __init__(self):
        self.started = False   # the current line has had letters (in earlier pieces)
        self.gap = False       # and non-letters followed its last letter

    def clean(self, piece: str) -> np.ndarray:
        codes = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)
        lower = codes | 0x20
        at = np.flatnonzero((lower >= ord("a")) & (lower <= ord("z")))     # the letters
        if not len(at):
            # no letter (a run of NUL bytes, say): only whether a line ends in it matters
            if any(mark in piece for mark in _LINE_BREAK_CHARS):
                self.started = self.gap = False
            elif len(codes) and self.started:
                self.gap = True
            return np.zeros(0, dtype=np.uint32)
        breaks = np.cumsum(np.isin(codes, _BREAK_CODES))                    # breaks up to each place
        space = np.empty(len(at), dtype=bool)
        # between two letters of this piece: a run of non-letters, and no break in it
        space[1:] = (np.diff(at) > 1) & (breaks[at[1:] - 1] == breaks[at[:-1]])
        # the first letter continues the line of earlier pieces unless a break comes before it
        breaks_before = breaks[at[0] - 1] if at[0] else 0
        space[0] = self.started and not breaks_before and (self.gap or at[0] > 0)
        last = at[-1]
        if breaks[-1] > breaks[last]:
            self.started = self.gap = False
        else:
            self.started, self.gap = True, bool(last < len(codes) - 1)
        out = np.empty((len(at), 2), dtype=np.uint32)
        out[:, 0], out[:, 1] = ord(" "), lower[at]
        keep = np.ones((len(at), 2), dtype=bool)
        keep[:, 0] = space
        return out[keep]


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
        self._build(collections.Counter(_flatten(tokens)), min_freq, reserved_tokens)

    def _build(self, counts: dict, min_freq: int, reserved_tokens: Sequence[str]) -> None:
        # sorted() is stable: tokens of equal frequency keep the order of ``counts``
        self.token_freqs = sorted(counts.items(), key=lambda item: item[1], reverse=True)
        self.idx_to_token: list[str] = [self.UNK, *[t for t in reserved_tokens if t != self.UNK]]
        taken = set(self.idx_to_token)
        for token, freq in self.token_freqs:
            if freq < min_freq:
                break
            if token not in taken:
                self.idx_to_token.append(token)
                taken.add(token)
        self.token_to_idx = {token: idx for idx, token in enumerate(self.idx_to_token)}

    @classmethod
    def from_counts(cls, counts: dict, min_freq: int = 0, reserved_tokens: Sequence[str] = ()) -> "Vocab":
        """The vocabulary of a text given its token counts, in the order the tokens first appear."""
        vocab = cls()
        vocab._build(dict(counts), min_freq, reserved_tokens)
        return vocab

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


def compact_ids(ids, vocab_size: int) -> np.ndarray:
    """Token ids in the narrowest integer type that holds ``vocab_size`` distinct ids."""
    return np.asarray(ids).astype(id_dtype(vocab_size), copy=False)


def id_dtype(vocab_size: int) -> np.dtype:
    """uint8 for up to 256 tokens, uint16 up to 65,536, else int32."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def load_corpus(path: str | Path | None = None, max_tokens: int | None = None,
                cleaning: str = "chapter", token: str = "char") -> tuple[np.ndarray, Vocab]:
    """Token ids of a text and its vocabulary (the chapter's ``load_corpus_time_machine``).

    As in the chapter, cleaned lines are joined with nothing between them, the vocabulary counts the
    whole text and ``max_tokens`` then keeps the first tokens only. For character tokens the file is
    read in pieces, and with ``max_tokens`` reading stops after the first
    max(max_tokens, VOCAB_SCAN_TOKENS) tokens: that many are counted for the vocabulary (a whole book,
    so its result is the chapter's) and the rest of a larger file is never read. The ids come back as
    a compact array (``id_dtype``: 1 byte per token for up to 256 tokens).
    """
    if cleaning not in CLEANING_MODES:
        raise ValueError(f"unknown cleaning {cleaning!r}; choose from {CLEANING_MODES}")
    keep = max_tokens if max_tokens is not None and max_tokens > 0 else None
    if token == "word":
        tokens = tokenize(clean_lines(read_text(path), cleaning), token)
        vocab = Vocab(tokens)
        ids = [vocab[tok] for line in tokens for tok in line][:keep]
        corpus = compact_ids(np.asarray(ids, dtype=np.int64), len(vocab))
    elif token == "char":
        corpus, vocab = _load_chars(path, keep, cleaning)
    else:
        raise ValueError(f"unknown token type {token!r}; choose 'word' or 'char'")
    if not len(corpus):
        raise UserError(f"no tokens left in {path or time_machine_path()} after cleaning")
    return corpus, vocab


class _CharCounter:
    """Counts characters piece by piece and numbers them in order of first appearance."""

    def __init__(self):
        self.first_seen: list[int] = []                      # code points, in order of appearance
        self.number = np.full(0x110000, -1, dtype=np.int32)  # code point -> its place in first_seen
        self.counts = np.zeros(0, dtype=np.int64)             # by place in first_seen

    def add(self, codes: np.ndarray) -> np.ndarray:
        """Count characters (code points) and return their places in first_seen."""
        present = np.flatnonzero(np.bincount(codes))
        new = present[self.number[present] < 0]
        if len(new):
            # number the new characters in the order they first occur in this piece
            unique, first = np.unique(codes, return_index=True)
            for code in new[np.argsort(first[np.searchsorted(unique, new)], kind="stable")]:
                self.number[code] = len(self.first_seen)
                self.first_seen.append(int(code))
            self.counts = np.concatenate([self.counts, np.zeros(len(new), dtype=np.int64)])
        places = self.number[codes]
        self.counts += np.bincount(places, minlength=len(self.counts))
        return places


def _load_chars(path, keep: int | None, cleaning: str) -> tuple[np.ndarray, Vocab]:
    scan = None if keep is None else max(keep, VOCAB_SCAN_TOKENS)
    counter, held, seen = _CharCounter(), _Held(), 0
    blank = {"so far": True}

    def noting_text(pieces):
        for piece in pieces:
            if blank["so far"] and not piece.isspace():
                blank["so far"] = False
            yield piece

    for piece in _clean_codes(noting_text(iter_text(path)), cleaning):
        if scan is not None:
            piece = piece[:scan - seen]
        if len(piece):
            places = counter.add(piece)
            if keep is None or seen < keep:
                if held.ids is None:
                    # a text has no more characters than its file has bytes
                    size = (time_machine_path() if path is None else Path(path)).stat().st_size
                    held.start(size if keep is None else min(size, keep))
                held.append(places if keep is None else places[:keep - seen], len(counter.first_seen))
            seen += len(piece)
        if scan is not None and seen >= scan:
            break      # the rest of the file is never read
    if blank["so far"]:
        raise UserError(f"data file is empty: {path or time_machine_path()}")
    counts = {chr(code): int(n) for code, n in zip(counter.first_seen, counter.counts)}
    vocab = Vocab.from_counts(counts)
    # places in order of appearance -> the vocabulary's ids, in place, a block at a time
    to_id = np.array([vocab.token_to_idx.get(ch, vocab.unk) for ch in counts], dtype=np.int64)
    corpus = held.ids[:held.length] if held.ids is not None else np.zeros(0, dtype=np.uint8)
    for at in range(0, len(corpus), READ_CHUNK_BYTES):
        corpus[at:at + READ_CHUNK_BYTES] = to_id[corpus[at:at + READ_CHUNK_BYTES]]
    return corpus.astype(id_dtype(len(vocab)), copy=False), vocab


class _Held:
    """The kept characters' places, in one array as narrow as their number allows.

    The array is sized for the most characters the file can hold but only what is written to is
    ever given memory by the system, so the text is held once, at 1 byte per character for up to
    255 distinct characters (widened, once, if more appear).
    """

    def __init__(self):
        self.ids: np.ndarray | None = None
        self.length = 0

    def start(self, capacity: int) -> None:
        self.ids = np.empty(capacity, dtype=np.uint8)

    def append(self, places: np.ndarray, distinct: int) -> None:
        wanted = id_dtype(distinct + 1)     # + 1: the vocabulary's <unk> comes first
        needed = self.length + len(places)
        if wanted.itemsize > self.ids.dtype.itemsize or needed > len(self.ids):
            # wider ids, or more text than the file's size said (/proc files say 0; files grow)
            larger = np.empty(max(len(self.ids), needed, 2 * len(self.ids) if needed > len(self.ids) else 0),
                              dtype=max(wanted, self.ids.dtype, key=lambda t: t.itemsize))
            larger[:self.length] = self.ids[:self.length]
            self.ids = larger
        self.ids[self.length:self.length + len(places)] = places
        self.length += len(places)

