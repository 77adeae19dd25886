"""Continuous batching: one worker thread advances every active stream of text by one token per step,
with one batched forward call through the backend.

A *stream* is one continuation (one choice of one request); a *job* is the streams of one request.
Streams join between steps, once their prompt has been read (prompts of one length are read in one
call), and leave between steps: when they have their ``max_tokens``, when a stop string appears, or
when their client has gone. So requests that arrive together are decoded together, and a long one never
holds up a short one.

Each stream picks its tokens with its own ``generation.TokenPicker`` (its decoding, its seed): rows that
share a decoding get their distribution in one call of ``generation.next_token_probs``, and each row
draws its uniform number from its own generator, exactly as a picker given that row alone would. The
HTTP side (``app``) runs on an asyncio loop in another thread; the worker wakes a job's coroutine at
most once per step, and a streaming client gets whatever text has accumulated since it last read, so a
slow reader costs the worker nothing.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .. import faults
from ..generation import TokenPicker, next_token_probs


@dataclass(frozen=True)
class Limits:
    """What one server accepts. Over ``max_streams`` (all requests together) a request is refused with
    429; over any other, with 400."""

    max_streams: int = 256          # continuations decoded at once
    max_tokens: int = 4096          # characters one continuation may ask for
    max_n: int = 16                 # continuations of one prompt
    max_prompts: int = 64           # prompts of one request
    max_prompt_chars: int = 8192    # characters of one prompt
    max_stop: int = 4               # stop strings of one request
    max_stop_chars: int = 64        # characters of one stop string
    max_body_bytes: int = 1 << 20   # bytes of one request body
    max_analyze_chars: int = 1000   # characters the explorer analyses at once


class Busy(Exception):
    """More streams asked for than the server has room for right now."""


class Stream:
    """One continuation: its prompt, how it picks tokens, when it stops, and the text made so far.

    The worker appends to ``chars`` and advances ``released``, the length that may be shown: it stays
    behind the end while the text ends in the beginning of a stop string, which might yet complete.
    """

    def __init__(self, prompt_ids: Sequence[int], max_tokens: int, picker: TokenPicker,
                 stop: Sequence[str] = ()):
        self.prompt_ids = list(prompt_ids)
        self.max_tokens = max_tokens
        self.picker = picker
        self.stop = tuple(stop)
        self.chars: list[str] = []
        self.released = 0
        self.finish_reason: str | None = None
        self._text = ""             # the text as one string, kept only when there are stop strings

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def text(self, start: int = 0) -> str:
        """The released text from character ``start`` on."""
        return "".join(self.chars[start:self.released])

    def push(self, char: str) -> None:
        """Add one generated character; finish on a stop string or at ``max_tokens``."""
        self.chars.append(char)
        if self.stop:
            self._text += char
            for stop in self.stop:
                if self._text.endswith(stop):
                    del self.chars[len(self.chars) - len(stop):]
                    self.released = len(self.chars)
                    self.finish_reason = "stop"
                    return
            self.released = len(self.chars) - self._held_back()
        else:
            self.released = len(self.chars)
        if len(self.chars) >= self.max_tokens:
            self.released = len(self.chars)
            self.finish_reason = "length"

    def _held_back(self) -> int:
        """How many of the last characters could begin a stop string."""
        longest = 0
        for stop in self.stop:
            for k in range(min(len(stop) - 1, len(self._text)), longest, -1):
                if self._text.endswith(stop[:k]):
                    longest = k
                    break
        return longest


class Job:
    """The streams of one request, and how the worker tells its coroutine that something changed:
    ``wake`` (called in the worker's thread) runs at most once until the coroutine has ``taken`` it."""

    def __init__(self, streams: Sequence[Stream], wake: Callable[[], None], streaming: bool):
        self.streams = list(streams)
        self.streaming = streaming
        self.cancelled = False
        self.error: str | None = None
        self._wake = wake
        self._pending = False

    @property
    def finished(self) -> bool:
        return self.error is not None or all(s.finished for s in self.streams)

    def taken(self) -> None:
        """The coroutine is about to read: the next change wakes it again."""
        self._pending = False

    def notify(self, progressed: bool) -> None:
        if (self.streaming and progressed) or self.finished:
            if not self._pending:
                self._pending = True
                self._wake()


def decoding_groups(pickers: Sequence[TokenPicker]) -> list[list[int]]:
    """The rows whose pickers decode alike (the same strategy, temperature, top-k and top-p)."""
    groups: dict[tuple, list[int]] = {}
    for row, picker in enumerate(pickers):
        d = picker.decoding
        groups.setdefault((d.strategy, d.temperature, d.top_k, d.top_p), []).append(row)
    return list(groups.values())


def pick_tokens(logits: np.ndarray, pickers: Sequence[TokenPicker],
                groups: list[list[int]] | None = None) -> np.ndarray:
    """The next token of each row of ``logits`` (rows, vocab), row i picked by ``pickers[i]``: what
    ``pickers[i](logits[i:i + 1])`` picks, with one distribution computed per decoding (``groups``:
    ``decoding_groups(pickers)``, given when known)."""
    picks = np.empty(len(pickers), dtype=np.int64)
    last = logits.shape[1] - 1
    for rows in decoding_groups(pickers) if groups is None else groups:
        decoding = pickers[rows[0]].decoding
        # the usual case, every row decoded alike, needs no copy of the rows
        where = slice(None) if len(rows) == len(pickers) else rows
        if decoding.strategy == "greedy":
            # as TokenPicker: the likeliest token but <unk> (column 0), which stands for no character
            picks[where] = np.argmax(logits[where][:, 1:], axis=1) + 1
            continue
        probs = next_token_probs(logits[where], decoding)
        # the draw of TokenPicker: one uniform number per row, from that row's own generator (a scalar
        # draw is the number a (1, 1) draw holds, at a fraction of the cost)
        draws = np.array([pickers[row].rng.random() for row in rows])
        picks[where] = np.minimum((np.cumsum(probs, axis=1) < draws[:, None]).sum(axis=1), last)
    return picks


class Batcher:
    """The worker: ``submit`` jobs, ``cancel`` one whose client has gone, ``close`` at the end."""

    def __init__(self, backend, tokens: Sequence[str], limits: Limits = Limits()):
        self.backend = backend
        self.tokens = list(tokens)
        self.limits = limits
        self._lock = threading.Condition()
        self._waiting: deque[Stream] = deque()
        self._owner: dict[int, Job] = {}        # id(stream) -> its job
        self._admitted = 0                      # streams waiting or active
        self._closing = False
        self._active: list[Stream] = []
        self._state: list[np.ndarray] = []      # per state tensor, (active, hidden)
        self._logits = np.zeros((0, len(self.tokens)))
        self._pickers: tuple[list, list] | None = None     # the active rows' pickers and their groups
        self._cancelled = 0                     # cancellations asked for: the next step looks for them
        self.steps = 0                          # forward calls made for active streams (a statistic)
        self._thread = threading.Thread(target=self._run, name="scratchrnn-batcher", daemon=True)
        self._thread.start()

    @property
    def active_streams(self) -> int:
        return self._admitted

    def submit(self, job: Job) -> None:
        """Queue a job's streams; raises Busy, taking none of them, if they do not all fit."""
        with self._lock:
            if self._closing:
                raise Busy("the server is shutting down")
            if self._admitted + len(job.streams) > self.limits.max_streams:
                raise Busy(f"{self._admitted} of {self.limits.max_streams} streams are in use; this request "
                           f"needs {len(job.streams)}")
            self._admitted += len(job.streams)
            for stream in job.streams:
                self._owner[id(stream)] = job
                self._waiting.append(stream)
            self._lock.notify()

    def cancel(self, job: Job) -> None:
        """The client has gone: its streams leave before the next step and free their slots."""
        job.cancelled = True
        with self._lock:
            self._cancelled += 1
            self._lock.notify()

    def close(self) -> None:
        """Stop the worker; jobs still running end with an error."""
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout=10)

    # -- the worker ------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while not (self._closing or self._waiting or self._active):
                    self._lock.wait()
                if self._closing:
                    break
                joining = list(self._waiting)
                self._waiting.clear()
            try:
                self._step(joining)
            except Exception as err:        # a failing backend fails its jobs, never the server
                self._fail_all(f"generation failed: {type(err).__name__}: {err}")
        self._fail_all("the server is shutting down")

    def _fail_all(self, message: str) -> None:
        with self._lock:
            streams = self._active + list(self._waiting)
            self._waiting.clear()
        for stream in streams:
            job = self._owner.get(id(stream))
            if job is not None and job.error is None:
                job.error = message
                job.notify(True)
        self._keep([False] * len(self._active))
        self._leave(streams)

    def _leave(self, streams: Sequence[Stream]) -> None:
        with self._lock:
            for stream in streams:
                if self._owner.pop(id(stream), None) is not None:
                    self._admitted -= 1

    def _keep(self, keep: Sequence[bool]) -> None:
        """Keep only the active rows marked True (their state and logits)."""
        if all(keep):
            return
        rows = np.flatnonzero(keep)
        self._pickers = None
        self._active = [self._active[i] for i in rows]
        self._state = [part[rows] for part in self._state]
        self._logits = self._logits[rows]

    def _step(self, joining: list[Stream]) -> None:
        # who has gone since the last step
        if self._cancelled:
            with self._lock:
                self._cancelled = 0
            stays = [not self._owner[id(s)].cancelled for s in self._active]
            gone = [s for s, kept in zip(self._active, stays) if not kept]
            self._keep(stays)
        else:
            gone = []
        cancelled = [s for s in joining if self._owner[id(s)].cancelled]
        joining = [s for s in joining if not self._owner[id(s)].cancelled]
        self._leave(gone + cancelled)
        self._join(joining)
        if not self._active:
            return
        if self._pickers is None:
            pickers = [s.picker for s in self._active]
            self._pickers = (pickers, decoding_groups(pickers))
        picks = pick_tokens(self._logits, *self._pickers)
        progressed: dict[int, Job] = {}
        finished = []
        tokens, owner = self.tokens, self._owner
        for stream, token in zip(self._active, picks.tolist()):
            stream.push(tokens[token])
            # a job that does not stream hears only of its end
            if stream.finish_reason is not None:
                finished.append(stream)
                job = owner[id(stream)]
                progressed[id(job)] = job
            elif owner[id(stream)].streaming:
                job = owner[id(stream)]
                progressed[id(job)] = job
        keep = [not s.finished for s in self._active]
        going_on = picks[np.asarray(keep, dtype=bool)]
        self._keep(keep)
        self._leave(finished)
        for job in progressed.values():
            job.notify(True)
        if self._active:
            self._advance(going_on)

    def _advance(self, tokens: np.ndarray) -> None:
        """One forward call: every active stream reads its newest token."""
        faults.point("serve.step")
        backend = self.backend
        state = backend.state_from_numpy(tuple(self._state))
        logits, state = backend.forward(tokens[:, None], state)
        self._state = list(backend.state_to_numpy(state))
        self._logits = np.asarray(logits)
        self.steps += 1

    def _join(self, streams: list[Stream]) -> None:
        """Read the prompts of joining streams (those of one length in one call) and add them as rows;
        a stream asking for no token is done at once."""
        done_at_once = [s for s in streams if s.max_tokens == 0]
        for stream in done_at_once:
            stream.finish_reason = "length"
            self._owner[id(stream)].notify(True)
        self._leave(done_at_once)
        streams = [s for s in streams if s.max_tokens > 0]
        by_length: dict[int, list[Stream]] = {}
        for stream in streams:
            by_length.setdefault(len(stream.prompt_ids), []).append(stream)
        backend = self.backend
        for group in by_length.values():
            X = np.asarray([s.prompt_ids for s in group], dtype=np.int64)
            logits, state = backend.forward(X, backend.begin_state(len(group)))
            parts = backend.state_to_numpy(state)
            self._state = [np.concatenate([old, new]) for old, new in zip(self._state, parts)] \
                if self._state else [np.array(p) for p in parts]
            self._logits = np.concatenate([self._logits, np.asarray(logits)[-len(group):]])
            self._active.extend(group)
            self._pickers = None
