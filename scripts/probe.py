#!/usr/bin/env python3
"""Try what a hostile but fair user would, and say what held.

Runs the real command line (``python -m scratchrnn``, the tree this script sits in) in subprocesses
on tiny models, one case at a time per worker, in categories: bad options, bad data files, hostile
checkpoints (and run directories), sizes, output pipes and encodings, signals, concurrent runs, a full
disk (probe_hardening.py adds issue 28's cases to them). Every case states what must hold -- an exit
status (0, 2 for a user's mistake, 130 after Ctrl-C), no Python traceback on stderr, a one-line
message, a time and memory bound, a run directory left loadable -- and is counted as held, broke or
skipped (a precondition this machine cannot give, e.g. an unreadable directory when running as root).
Prints tried / held / broke per category; exit status 1 if anything broke.

    python scripts/probe.py                    # everything (a few minutes on 2 cores)
    python scripts/probe.py --select sizes/    # the cases whose "category/name" contains the text
    python scripts/probe.py --list

Fault injection (``SCRATCHRNN_FAULT``, see ``scratchrnn/faults.py``) stops a run at named points
rather than relying on the timing of a signal, so the cases mean the same on a fast or slow machine.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from probe_damage import (big_config, deep_json, fill, flip, garbage_config, huge_header_length,
                          huge_shape, long_integer, other_shapes, replace_with, retype, set_cleaning,
                          set_model, set_model_field, set_vocab_entry, to_v1, truncate, zip_bomb)
from probe_hardening import CASES as HARDENING_CASES
from probe_run import (MiB, TINY, Broke, Skip, cli, env_for, expect, finish, kill_group, loadable, start,
                       train_tiny)

CHECKPOINT_POINTS = ["checkpoint.staging-created", "checkpoint.model-written", "checkpoint.optimizer-written",
                     "checkpoint.config-written", "checkpoint.files-synced", "checkpoint.version-named",
                     "checkpoint.pointer-created", "checkpoint.pointer-swapped", "checkpoint.old-moved-aside",
                     "checkpoint.new-in-place", "checkpoint.old-removed", "checkpoint.dir-synced"]


# -- the cases -----------------------------------------------------------------------------------------
CASES: list[tuple[str, str, callable]] = []


def case(category: str, name: str):
    def register(fn):
        CASES.append((category, name, fn))
        return fn
    return register


class Workspace:
    """A scratch directory per case, and one trained run shared by the cases that need a checkpoint."""

    def __init__(self, root: Path):
        self.root = root
        self._lock = threading.Lock()
        self._base: Path | None = None

    def dir(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=name.replace("/", "_") + "-", dir=self.root))
        return path

    def base_run(self) -> Path:
        with self._lock:
            if self._base is None:
                out = self.root / "base-run"
                expect(train_tiny(out), codes=(0,))
                self._base = out
            return self._base

    def checkpoint_copy(self, name: str) -> Path:
        """A copy of the base run's newest checkpoint directory, to damage."""
        source = (self.base_run() / "last").resolve()
        target = self.dir(name) / "ckpt"
        shutil.copytree(source, target)
        return target

    def text(self, name: str, content: bytes) -> Path:
        path = self.dir(name) / "text.txt"
        path.write_bytes(content)
        return path


TEXT = ("The Time Traveller (for so it will be convenient to speak of him) was expounding a recondite "
        "matter to us. His grey eyes shone and twinkled, and his usually pale face was flushed.\n") * 40


# bad options: every one refused at once, in one line, before a run directory appears
def _refused_option(args, where="train"):
    def run(ws: Workspace):
        out = ws.dir("opt") / "run"
        full = [where, *args] + (["--out", out, "--no-progress"] if where == "train" else [])
        expect(cli(*full, timeout=60))
        if out.exists():
            raise Broke(f"{out} was created by a refused command")
    return run


for _name, _args in [("seed-negative", ["--seed", "-1"]), ("hidden-zero", ["--hidden", "0"]),
                     ("lr-zero", ["--lr", "0"]), ("lr-nan", ["--lr", "nan"]), ("lr-inf", ["--lr", "inf"]),
                     ("epochs-negative", ["--epochs", "-3"]), ("batch-size-zero", ["--batch-size", "0"]),
                     ("num-steps-fraction", ["--num-steps", "1.5"]), ("max-tokens-zero", ["--max-tokens", "0"]),
                     ("val-fraction-above-one", ["--val-fraction", "1.5"]),
                     ("no-detach-with-random", ["--no-detach", "--sampling", "random"]),
                     ("learned-embedding-width-zero", ["--embedding", "learned", "--embed-dim", "0"]),
                     ("unknown-option", ["--colour", "blue"]), ("cuda-on-numpy", ["--device", "cuda"]),
                     ("clip-negative", ["--clip", "-1"])]:
    case("bad options", _name)(_refused_option(_args))


@case("bad options", "resume-missing")
def _(ws):
    expect(cli("train", "--resume", ws.dir("nothing") / "run", "--no-progress", timeout=60))


@case("bad options", "out-empty-string")
def _(ws):
    expect(cli("train", "--out", "", *TINY, timeout=60, cwd=ws.dir("cwd")))


@case("bad options", "val-fraction-too-small-for-a-batch")
def _(ws):
    out = ws.dir("val") / "run"
    proc = expect(train_tiny(out, "--val-fraction", "0.001", "--epochs", "30"))
    if (out / "metrics.jsonl").exists() and (out / "metrics.jsonl").read_text().strip():
        raise Broke(f"refused only after training epochs: {proc.last_err()}")


for _name, _args in [("num-chars-negative", ["--num-chars", "-1"]), ("temperature-zero", ["--temperature", "0"]),
                     ("top-p-above-one", ["--top-p", "1.5"]), ("top-k-zero", ["--top-k", "0"]),
                     ("seed-negative", ["--seed", "-1"]), ("empty-prefix", ["--prefix", ""])]:
    def _generate_refused(ws, _args=_args):
        expect(cli("generate", ws.base_run(), *_args, timeout=60))
    case("bad options", "generate-" + _name)(_generate_refused)


@case("bad options", "threads-not-a-number-help")
def _(ws):
    expect(cli("--help", env={"SCRATCHRNN_THREADS": "abc"}, timeout=60), codes=(0,), one_line=False)


@case("bad options", "threads-fraction-train")
def _(ws):
    expect(train_tiny(ws.dir("thr") / "run", env={"SCRATCHRNN_THREADS": "1.5"}), codes=(0, 2))


@case("bad options", "no-kernel-zero-keeps-kernels")
def _(ws):
    plain = expect(cli("--version", timeout=60), codes=(0,), one_line=False).out
    if " on" not in plain and "on)" not in plain:
        raise Skip(f"compiled kernels are not on here: {plain.strip()}")
    zero = expect(cli("--version", env={"SCRATCHRNN_NO_KERNEL": "0"}, timeout=60), codes=(0,), one_line=False)
    if zero.out != plain:
        raise Broke(f"SCRATCHRNN_NO_KERNEL=0 changed --version: {zero.out.strip()!r}")


# bad data files
def _refused_data(make, cleaning=None):
    def run(ws: Workspace):
        path = make(ws)
        extra = ["--cleaning", cleaning] if cleaning else []
        out = ws.dir("data") / "run"
        expect(train_tiny(out, "--data", path, *extra, timeout=60), seconds=45)
    return run


def _fifo(ws):
    path = ws.dir("fifo") / "fifo"
    os.mkfifo(path)
    return path


def _symlink(ws, target):
    path = ws.dir("link") / "text.txt"
    path.symlink_to(target)
    return path


def _loop(ws):
    where = ws.dir("loop")
    (where / "a").symlink_to(where / "b")
    (where / "b").symlink_to(where / "a")
    return where / "a"


for _name, _make, _cleaning in [
        ("missing", lambda ws: ws.dir("none") / "missing.txt", None),
        ("empty", lambda ws: ws.text("empty", b""), None),
        ("whitespace-only", lambda ws: ws.text("ws", b"  \n\t\n  \r\n"), None),
        ("latin-1", lambda ws: ws.text("latin", "café déjà vu\n".encode("latin-1") * 200), None),
        ("utf-16", lambda ws: ws.text("utf16", TEXT.encode("utf-16")), None),
        ("random-bytes", lambda ws: ws.text("rand", os.urandom(20000)), None),
        ("a-directory", lambda ws: ws.dir("isdir"), None),
        ("a-fifo", _fifo, None),
        ("dev-zero", lambda ws: Path("/dev/zero"), None),
        ("under-a-regular-file", lambda ws: ws.text("file", b"x" * 100) / "inside.txt", None),
        ("symlink-loop", _loop, None),
        ("dangling-symlink", lambda ws: _symlink(ws, "/nonexistent/text.txt"), None),
        ("digits-only-chapter-cleaning", lambda ws: ws.text("digits", b"12345 67890\n" * 500), "chapter"),
        ("too-short-for-one-batch", lambda ws: ws.text("short", b"hello there\n"), None)]:
    case("bad data", _name)(_refused_data(_make, _cleaning))


@case("bad data", "file-behind-an-unenterable-directory")
def _(ws):
    if os.geteuid() == 0:
        raise Skip("root may enter any directory")
    locked = ws.dir("locked")
    (locked / "text.txt").write_text(TEXT)
    locked.chmod(0)
    try:
        expect(train_tiny(ws.dir("run") / "run", "--data", locked / "text.txt", timeout=60))
    finally:
        locked.chmod(0o755)


@case("bad data", "control-characters-raw")
def _(ws):
    path = ws.text("ctl", ("\x1b[31mred\x1b[0m \x00\x07 " + TEXT).encode())
    out = ws.dir("ctl") / "run"
    expect(train_tiny(out, "--data", path, "--cleaning", "raw"), codes=(0,), one_line=False)
    proc = expect(cli("generate", out, "--num-chars", "40", "--prefix", "The"), codes=(0,), one_line=False)
    if "\x1b" in proc.out or "\x00" in proc.out:
        raise Broke("generate printed control characters from the vocabulary")


@case("bad data", "crlf-and-nul-raw")
def _(ws):
    path = ws.text("crlf", TEXT.replace("\n", "\r\n").encode() + b"\x00" * 10)
    expect(train_tiny(ws.dir("crlf") / "run", "--data", path), codes=(0,), one_line=False)


# hostile checkpoints: generate refuses each at once, in one line, in bounded memory
for _name, _damage in [
        ("truncated-weights", truncate), ("flipped-byte", flip),
        ("declared-shape-1e9-by-1e9", huge_shape), ("header-length-2-to-60", huge_header_length),
        ("int8-weights", retype("I8", 1)), ("bool-weights", retype("BOOL", 1)),
        ("float16-weights", retype("F16", 2)), ("complex-weights", retype("C64", 8)),
        ("nan-weights", fill(float("nan"))), ("inf-weights", fill(float("inf"))),
        ("weights-of-other-shapes", other_shapes),
        ("model-a-list", set_model([1, 2])), ("model-null", set_model(None)),
        ("model-a-string", set_model("rnn")),
        ("num-hiddens-float", set_model_field("num_hiddens", 8.0)),
        ("num-hiddens-string", set_model_field("num_hiddens", "8")),
        ("vocab-size-mismatch", set_model_field("vocab_size", 29)),
        ("vocab-entry-int", set_vocab_entry(3, 7)), ("vocab-entry-null", set_vocab_entry(3, None)),
        ("vocab-entry-bool", set_vocab_entry(3, True)), ("vocab-duplicate", set_vocab_entry(3, "e")),
        ("vocab-empty-token", set_vocab_entry(3, "")), ("vocab-800-characters", set_vocab_entry(3, "x" * 800)),
        ("vocab-ansi-escape", set_vocab_entry(3, "\x1b[2J")), ("unknown-cleaning", set_cleaning),
        ("json-200000-deep", deep_json), ("integer-5000-digits", long_integer),
        ("config-a-directory", replace_with("dir", "config.json")),
        ("config-a-fifo", replace_with("fifo", "config.json")),
        ("config-dev-zero", replace_with("zero", "config.json")),
        ("weights-a-directory", replace_with("dir", "model.safetensors")),
        ("weights-a-fifo", replace_with("fifo", "model.safetensors")),
        ("weights-dev-zero", replace_with("zero", "model.safetensors")),
        ("config-40-mib", big_config), ("config-not-json", garbage_config),
        ("config-missing", lambda ckpt: (ckpt / "config.json").unlink()),
        ("v1-npz-zip-bomb", zip_bomb)]:
    def _hostile(ws, _damage=_damage, _name=_name):
        ckpt = ws.checkpoint_copy(_name)
        _damage(ckpt)
        expect(cli("generate", ckpt, "--num-chars", "5", timeout=60), seconds=45, max_rss=1024 * MiB)
    case("hostile checkpoints", _name)(_hostile)


@case("hostile checkpoints", "missing-directory")
def _(ws):
    expect(cli("generate", ws.dir("gone") / "nothing", timeout=60))


@case("hostile checkpoints", "empty-directory")
def _(ws):
    expect(cli("generate", ws.dir("empty"), timeout=60))


@case("hostile checkpoints", "v1-layout-still-loads")
def _(ws):
    ckpt = ws.checkpoint_copy("v1")
    to_v1(ckpt)
    expect(cli("generate", ckpt, "--num-chars", "5", timeout=60), codes=(0,), one_line=False)


# sizes a machine cannot hold: refused at once with an estimate, or streamed in bounded memory
for _name, _args in [("hidden-1e9", ["--hidden", "1000000000"]),
                     ("embed-dim-1e9", ["--embedding", "learned", "--embed-dim", "1000000000"]),
                     ("batch-size-1e8", ["--batch-size", "100000000"]),
                     ("num-steps-1e9", ["--num-steps", "1000000000"])]:
    def _too_big(ws, _args=_args):
        out = ws.dir("big") / "run"
        expect(cli("train", "--out", out, "--no-progress", *_args, timeout=60), seconds=30, max_rss=1024 * MiB)
    case("sizes", _name)(_too_big)


@case("sizes", "generate-1e12-characters-into-a-closed-pipe")
def _(ws):
    proc = start(["generate", ws.base_run(), "--num-chars", "1000000000000", "--stream"])
    began = time.monotonic()
    received = proc.stdout.read(4000)
    proc.stdout.close()
    result = finish(proc, 60, began, read_stdout=False)
    expect(result, codes=(0, 2), max_rss=1024 * MiB)
    if result.rc == 0 and len(received) < 4000:
        raise Broke(f"only {len(received)} bytes before exit 0")


@case("sizes", "generate-1e12-characters-json")
def _(ws):
    expect(cli("generate", ws.base_run(), "--num-chars", "1000000000000", "--json", timeout=60),
           seconds=30, max_rss=1024 * MiB)


@case("sizes", "max-tokens-3000-of-a-60-mb-file")
def _(ws):
    path = ws.dir("bigfile") / "big.txt"
    block = (TEXT * 20).encode()
    with open(path, "wb") as out:
        for _ in range(60 * MiB // len(block) + 1):
            out.write(block)
    expect(train_tiny(ws.dir("bigrun") / "run", "--data", path, "--max-tokens", "3000"), codes=(0,),
           one_line=False, seconds=90, max_rss=400 * MiB)


# output: a closed pipe or an encoding that cannot print stops the printing, never the training
@case("pipes", "train-into-head-1")
def _(ws):
    out = ws.dir("head") / "run"
    proc = start(["train", "--out", out, *TINY, "--epochs", "6", "--predict-every", "1"])
    began = time.monotonic()
    proc.stdout.readline()
    proc.stdout.close()
    expect(finish(proc, 180, began, read_stdout=False), codes=(0,), one_line=False)
    loadable(out)
    records = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").exists() else []
    if len(records) != 6:
        raise Broke(f"{len(records)} of 6 epochs recorded after the reader went away")


@case("pipes", "train-json-into-head-c-1")
def _(ws):
    out = ws.dir("headjson") / "run"
    proc = start(["train", "--out", out, *TINY, "--json"])
    began = time.monotonic()
    proc.stdout.read(1)
    proc.stdout.close()
    expect(finish(proc, 180, began, read_stdout=False), codes=(0,), one_line=False)
    loadable(out)


@case("pipes", "train-ascii-stdout-non-ascii-text")
def _(ws):
    path = ws.text("utf", ("Ça été déjà vu — naïve café. " * 30 + "\n").encode() * 10)
    out = ws.dir("ascii") / "run"
    expect(train_tiny(out, "--data", path, "--predict-every", "1", "--prefix", "Ça",
                      env={"PYTHONIOENCODING": "ascii"}), codes=(0,), one_line=False)
    loadable(out)


@case("pipes", "generate-into-head-c-10")
def _(ws):
    proc = start(["generate", ws.base_run(), "--num-chars", "20000", "--prefix", "time", "--prefix", "the"])
    began = time.monotonic()
    proc.stdout.read(10)
    proc.stdout.close()
    expect(finish(proc, 60, began, read_stdout=False), codes=(0,), one_line=False)


@case("pipes", "generate-stream-into-head-c-10")
def _(ws):
    proc = start(["generate", ws.base_run(), "--num-chars", "20000", "--stream"])
    began = time.monotonic()
    proc.stdout.read(10)
    proc.stdout.close()
    expect(finish(proc, 60, began, read_stdout=False), codes=(0,), one_line=False)


@case("pipes", "generate-to-dev-full")
def _(ws):
    with open("/dev/full", "wb") as full:
        proc = start(["generate", ws.base_run(), "--num-chars", "100"], stdout=full)
        expect(finish(proc, 60), codes=(0, 1, 2))


@case("pipes", "generate-with-stdout-closed")
def _(ws):
    proc = subprocess.Popen([sys.executable, "-c", "import os, runpy, sys; os.close(1); sys.argv = "
                             "['scratchrnn', 'generate', sys.argv[1], '--num-chars', '10']; "
                             "runpy.run_module('scratchrnn', run_name='__main__')", str(ws.base_run())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env_for(),
                            start_new_session=True)
    expect(finish(proc, 60), codes=(0, 1, 2), one_line=False)


@case("pipes", "generate-ascii-stdout-non-ascii-model")
def _(ws):
    path = ws.text("utf", ("Ça été déjà vu — naïve café. " * 30 + "\n").encode() * 10)
    out = ws.dir("asciigen") / "run"
    expect(train_tiny(out, "--data", path), codes=(0,), one_line=False)
    expect(cli("generate", out, "--prefix", "Ça", "--num-chars", "30", env={"PYTHONIOENCODING": "ascii"}),
           codes=(0, 2))


# signals: Ctrl-C is one line and exit 130 wherever it lands; a kill -9 leaves a loadable run
@case("signals", "ctrl-c-at-start-up")
def _(ws):
    proc = start(["train", "--out", ws.dir("early") / "run", *TINY])
    began = time.monotonic()
    time.sleep(0.3)
    kill_group(proc.pid, signal.SIGINT)
    expect(finish(proc, 60, began), codes=(130,), one_line=False)


@case("signals", "ctrl-c-in-the-first-epoch")
def _(ws):
    # a real SIGINT, once training has said it started, long before the first epoch ends
    out = ws.dir("int") / "run"
    proc = start(["train", "--out", out, *TINY, "--max-tokens", "200000", "--epochs", "4"])
    began = time.monotonic()
    proc.stdout.readline()
    time.sleep(0.5)
    kill_group(proc.pid, signal.SIGINT)
    expect(finish(proc, 120, began), codes=(130,), one_line=False)
    loadable(out)


@case("signals", "ctrl-c-at-the-last-epoch-end")
def _(ws):
    out = ws.dir("intend") / "run"
    expect(train_tiny(out, env={"SCRATCHRNN_FAULT": "train.epoch-end:after-2-interrupt"}), codes=(130,),
           one_line=False)
    loadable(out)


for _point in CHECKPOINT_POINTS:
    def _interrupt_in_save(ws, _point=_point):
        out = ws.dir("intsave") / "run"
        expect(train_tiny(out, "--checkpoint-every", "1", env={"SCRATCHRNN_FAULT": f"{_point}:after-2-interrupt"}),
               codes=(130, 0), one_line=False)
        loadable(out)
    case("signals", f"ctrl-c-at-{_point}")(_interrupt_in_save)

    def _kill_in_save(ws, _point=_point):
        out = ws.dir("killsave") / "run"
        proc = train_tiny(out, "--checkpoint-every", "1", env={"SCRATCHRNN_FAULT": f"{_point}:after-2-kill"})
        if proc.rc not in (-9, 0):
            raise Broke(f"exit status {proc.rc}, expected a kill: {proc.last_err()}")
        loadable(out)
        again = train_tiny(out, timeout=60)
        expect(again, codes=(2,))
    case("signals", f"kill-9-at-{_point}")(_kill_in_save)


@case("signals", "ctrl-c-at-a-random-moment")
def _(ws):
    for delay in (1.0, 2.5):
        out = ws.dir("randint") / "run"
        proc = start(["train", "--out", out, *TINY, "--epochs", "30", "--checkpoint-every", "1"])
        began = time.monotonic()
        time.sleep(delay)
        kill_group(proc.pid, signal.SIGINT)
        result = expect(finish(proc, 120, began), codes=(130, 0), one_line=False)
        if (out / "last").exists() or result.rc == 0:
            loadable(out)


@case("signals", "sigterm-mid-training")
def _(ws):
    out = ws.dir("term") / "run"
    proc = start(["train", "--out", out, *TINY, "--epochs", "30", "--checkpoint-every", "1"])
    began = time.monotonic()
    time.sleep(2.0)
    kill_group(proc.pid, signal.SIGTERM)
    result = finish(proc, 120, began)
    if "Traceback (most recent call last)" in result.err:
        raise Broke(f"traceback, ending: {result.last_err()}")
    if (out / "last").exists():
        loadable(out)


# concurrent runs: a second run into the same directory is refused at once, naming the first
@case("concurrent", "two-trains-into-one-directory")
def _(ws):
    out = ws.dir("two") / "run"
    first = start(["train", "--out", out, *TINY, "--epochs", "40"])
    began = time.monotonic()
    time.sleep(1.5)
    # --overwrite: the existing directory alone is no reason to refuse; the live run holding it is
    second = cli("train", "--out", out, *TINY, "--overwrite", timeout=120)
    done = finish(first, 240, began)
    expect(done, codes=(0,), one_line=False)
    expect(second, codes=(2,))
    if str(first.pid) not in second.err and "lock" not in second.err.lower():
        raise Broke(f"the refusal does not name the run holding the directory: {second.last_err()}")
    loadable(out)


@case("concurrent", "stale-lock-of-a-killed-run")
def _(ws):
    out = ws.dir("stale") / "run"
    train_tiny(out, env={"SCRATCHRNN_FAULT": "train.epoch-end:after-2-kill"})
    expect(train_tiny(out, "--overwrite"), codes=(0,), one_line=False)
    loadable(out)


@case("concurrent", "resume-while-another-trains")
def _(ws):
    out = ws.dir("resume") / "run"
    first = start(["train", "--out", out, *TINY, "--epochs", "40", "--checkpoint-every", "1"])
    began = time.monotonic()
    deadline = began + 60
    while not (out / "last").exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    second = cli("train", "--resume", out, "--no-progress", timeout=120)
    expect(finish(first, 240, began), codes=(0,), one_line=False)
    expect(second, codes=(2,))


@case("concurrent", "generate-while-training")
def _(ws):
    out = ws.dir("genwhile") / "run"
    first = start(["train", "--out", out, *TINY, "--epochs", "30", "--checkpoint-every", "1"])
    began = time.monotonic()
    results = []
    while first.poll() is None and len(results) < 10 and time.monotonic() - began < 120:
        if (out / "last").exists():
            results.append(cli("generate", out, "--num-chars", "5", timeout=60))
        time.sleep(0.1)
    expect(finish(first, 240, began), codes=(0,), one_line=False)
    for result in results:
        expect(result, codes=(0,), one_line=False)


# a full disk, and outputs that cannot be written: refused before training, or the last good
# checkpoint kept and said so
@case("disk full", "no-space-at-the-second-save")
def _(ws):
    out = ws.dir("enospc") / "run"
    proc = train_tiny(out, "--checkpoint-every", "1",
                      env={"SCRATCHRNN_FAULT": "checkpoint.model-written:after-2-enospc"})
    expect(proc, codes=(2, 0))
    loadable(out)


@case("disk full", "no-space-at-the-first-save")
def _(ws):
    out = ws.dir("enospc1") / "run"
    expect(train_tiny(out, env={"SCRATCHRNN_FAULT": "checkpoint.model-written:enospc"}), codes=(2,))


@case("disk full", "a-1-mib-tmpfs")
def _(ws):
    mount = ws.dir("tmpfs")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        raise Skip("cannot mount a tmpfs here")
    try:
        expect(cli("train", "--out", mount / "run", "--hidden", "512", "--epochs", "2", "--max-tokens", "2000",
                   "--batch-size", "4", "--num-steps", "5", "--no-progress", "--predict-every", "0",
                   "--checkpoint-every", "1", timeout=180), codes=(2,))
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


@case("disk full", "out-under-a-regular-file")
def _(ws):
    blocker = ws.dir("blocker") / "file"
    blocker.write_text("x")
    expect(train_tiny(blocker / "run", "--epochs", "50", timeout=60), seconds=45)


@case("disk full", "out-is-a-file")
def _(ws):
    blocker = ws.dir("isfile") / "file"
    blocker.write_text("x")
    expect(train_tiny(blocker, timeout=60))


@case("disk full", "read-only-out")
def _(ws):
    if os.geteuid() == 0:
        raise Skip("root may write anywhere")
    parent = ws.dir("ro")
    parent.chmod(0o555)
    try:
        expect(train_tiny(parent / "run", "--epochs", "50", timeout=60), seconds=45)
    finally:
        parent.chmod(0o755)


@case("disk full", "dangling-symlink-at-out-last")
def _(ws):
    out = ws.dir("dangle") / "run"
    out.mkdir()
    (out / "last").symlink_to("/nonexistent/ckpt")
    expect(train_tiny(out, timeout=60), codes=(0, 2), one_line=None)


# issue 28's cases -- writer and reader, the run directory, overflow, injected Ctrl-C, disks everywhere,
# lying file sizes, threads and the environment -- are in probe_hardening.py
CASES.extend(HARDENING_CASES)


# -- running and reporting -----------------------------------------------------------------------------
def run_case(ws: Workspace, category: str, name: str, fn) -> tuple[str, str, str, str]:
    try:
        fn(ws)
    except Broke as err:
        return category, name, "broke", str(err)
    except Skip as err:
        return category, name, "skipped", str(err)
    except Exception as err:       # the probe's own failure counts against the case, with its reason
        return category, name, "broke", f"probe error: {type(err).__name__}: {err}"
    return category, name, "held", ""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--select", action="append", default=[],
                        help="run only the cases whose 'category/name' contains this text (repeatable)")
    parser.add_argument("--jobs", type=int, default=max(2, min(8, os.cpu_count() or 2)),
                        help="cases run at once")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--json", metavar="PATH", help="also write every case's outcome here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    chosen = [c for c in CASES if not args.select or any(s in f"{c[0]}/{c[1]}" for s in args.select)]
    if args.list:
        for category, name, _ in chosen:
            print(f"{category}/{name}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="scratchrnn-probe-"))
    ws = Workspace(root)
    began = time.monotonic()
    results = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_case, ws, *c) for c in chosen]
            for future in concurrent.futures.as_completed(futures):
                category, name, status, detail = future.result()
                results.append((category, name, status, detail))
                if status == "broke":
                    print(f"BROKE {category}/{name}: {detail}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(f"{'category':<22}{'tried':>6}{'held':>6}{'broke':>6}{'skipped':>8}")
    order = list(dict.fromkeys(c[0] for c in chosen))
    for category in order:
        mine = [r for r in results if r[0] == category]
        counts = [sum(r[2] == s for r in mine) for s in ("held", "broke", "skipped")]
        print(f"{category:<22}{len(mine):>6}{counts[0]:>6}{counts[1]:>6}{counts[2]:>8}")
    total = [sum(r[2] == s for r in results) for s in ("held", "broke", "skipped")]
    print(f"{'all':<22}{len(results):>6}{total[0]:>6}{total[1]:>6}{total[2]:>8}"
          f"   ({time.monotonic() - began:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps([dict(zip(("category", "name", "status", "detail"), r))
                                               for r in sorted(results)], indent=1) + "\n")
    return 1 if total[1] else 0


if __name__ == "__main__":
    sys.exit(main())
