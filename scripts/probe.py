#!/usr/bin/env python3
"""Try what a hostile but fair user would, and say what held.

Runs the real command line (``python -m scratchrnn``, the tree this script sits in) in subprocesses
on tiny models, one case at a time per worker, in categories: bad options, bad data files, hostile
checkpoints, sizes, output pipes and encodings, signals, concurrent runs, a full disk. Every case
states what must hold -- an exit status (0, 2 for a user's mistake, 130 after Ctrl-C), no Python
traceback on stderr, a one-line message, a time and memory bound, a run directory left loadable --
and is counted as held, broke or skipped (a precondition this machine cannot give, e.g. an
unreadable directory when running as root). Prints tried / held / broke per category; exit status 1
if anything broke.

    python scripts/probe.py                    # everything (a few minutes on 2 cores)
    python scripts/probe.py --select sizes/    # the cases whose "category/name" contains the text
    python scripts/probe.py --list

Fault injection (``SCRATCHRNN_FAULT``, see ``scratchrnn/faults.py``) stops a run at named points
rather than relying on the timing of a signal, so the cases mean the same on a fast or slow machine.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--epochs", "2", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "5",
        "--no-progress", "--predict-every", "0"]
CHECKPOINT_POINTS = ["checkpoint.staging-created", "checkpoint.model-written", "checkpoint.optimizer-written",
                     "checkpoint.config-written", "checkpoint.files-synced", "checkpoint.version-named",
                     "checkpoint.pointer-created", "checkpoint.pointer-swapped", "checkpoint.old-moved-aside",
                     "checkpoint.new-in-place", "checkpoint.old-removed", "checkpoint.dir-synced"]
MiB = 1 << 20


class Broke(Exception):
    """What should have held did not; the message says what happened instead."""


class Skip(Exception):
    """This machine cannot set the case up (the message says why)."""


@dataclass
class Proc:
    rc: int | None
    out: str
    err: str
    seconds: float
    max_rss: int          # bytes, of the command's own process
    timed_out: bool

    def last_err(self) -> str:
        lines = [line for line in self.err.splitlines() if line.strip()]
        return lines[-1][:200] if lines else "(nothing on stderr)"


# -- running the command ------------------------------------------------------------------------------
def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT / "src"))
    for name in ("SCRATCHRNN_FAULT", "SCRATCHRNN_NO_KERNEL", "SCRATCHRNN_THREADS", "PYTHONIOENCODING"):
        env.pop(name, None)
    env.update(extra or {})
    return env


def start(args, env=None, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=None):
    return subprocess.Popen([sys.executable, "-m", "scratchrnn", *map(str, args)], stdin=stdin,
                            stdout=stdout, stderr=subprocess.PIPE, env=_env(env), cwd=cwd,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float, began: float | None = None,
           read_stdout: bool = True) -> Proc:
    """Wait for ``proc`` (killing its process group past ``timeout``), reading its output as it comes
    and taking its peak memory from wait4."""
    began = time.monotonic() if began is None else began
    chunks = {"out": [], "err": []}

    def drain(stream, key):
        for block in iter(lambda: stream.read(65536), b""):
            chunks[key].append(block)

    readers = [threading.Thread(target=drain, args=(proc.stderr, "err"), daemon=True)]
    if read_stdout and proc.stdout is not None:
        readers.append(threading.Thread(target=drain, args=(proc.stdout, "out"), daemon=True))
    for reader in readers:
        reader.start()
    timed_out, status, usage = False, None, None
    # a process already reaped by Popen.poll() keeps its exit status; its peak memory is lost
    while status is None and proc.returncode is None:
        pid, raw, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            status = raw
            break
        if time.monotonic() - began > timeout:
            timed_out = True
            _kill_group(proc.pid, signal.SIGKILL)
            _, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    if status is not None:
        proc.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(timeout=5)
    return Proc(proc.returncode, b"".join(chunks["out"]).decode("utf-8", "replace"),
                b"".join(chunks["err"]).decode("utf-8", "replace"), time.monotonic() - began,
                usage.ru_maxrss * 1024 if usage else 0, timed_out)


def _kill_group(pid: int, sig) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def cli(*args, env=None, timeout=120, stdin=subprocess.DEVNULL, cwd=None) -> Proc:
    return finish(start(args, env=env, stdin=stdin, cwd=cwd), timeout)


def expect(proc: Proc, codes=(2,), one_line=None, seconds=None, max_rss=None) -> Proc:
    """The rules every case shares: no traceback, an expected exit status, a one-line refusal."""
    if proc.timed_out:
        raise Broke(f"still running after {proc.seconds:.0f} s (killed)")
    if "Traceback (most recent call last)" in proc.err:
        raise Broke(f"traceback, ending: {proc.last_err()}")
    if proc.rc not in codes:
        raise Broke(f"exit status {proc.rc}, expected {' or '.join(map(str, codes))}: {proc.last_err()}")
    if one_line is None:
        one_line = proc.rc == 2
    if one_line:
        # the refusal is one line, the last; a line before it may say which checkpoint was read
        lines = [line for line in proc.err.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        if not lines or len(errors) != 1 or errors[0] != lines[-1] or not lines[-1].startswith("scratchrnn"):
            raise Broke(f"not one line of refusal on stderr: {proc.err[-300:]!r}")
    if seconds is not None and proc.seconds > seconds:
        raise Broke(f"took {proc.seconds:.1f} s, more than {seconds} s")
    if max_rss is not None and proc.max_rss > max_rss:
        raise Broke(f"peak memory {proc.max_rss / MiB:.0f} MiB, more than {max_rss / MiB:.0f} MiB")
    return proc


def loadable(path: Path, what: str = "the run directory") -> None:
    """``generate`` reads a checkpoint from ``path`` (a run or checkpoint directory)."""
    proc = cli("generate", path, "--num-chars", "5", timeout=120)
    if proc.rc != 0 and (Path(path) / "last").exists():
        # a run stopped before its first best/ (Ctrl-C in the first epoch) keeps last/
        proc = cli("generate", path, "--which", "last", "--num-chars", "5", timeout=120)
    if proc.rc != 0:
        raise Broke(f"{what} is not loadable afterwards (generate: exit {proc.rc}: {proc.last_err()})")


def train_tiny(out: Path, *extra, env=None, timeout=180) -> Proc:
    return cli("train", "--out", out, *TINY, *extra, env=env, timeout=timeout)


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
def _config(ckpt: Path) -> dict:
    return json.loads((ckpt / "config.json").read_text(encoding="utf-8"))


def _write_config(ckpt: Path, config) -> None:
    (ckpt / "config.json").write_text(json.dumps(config), encoding="utf-8")


def _reseal(ckpt: Path, filename: str = "model.safetensors") -> None:
    """Recompute the weights file's checksum and size in config.json, as an attacker would."""
    config = _config(ckpt)
    data = (ckpt / filename).read_bytes()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == filename and isinstance(value, dict) and "sha256" in value:
                    value["sha256"] = hashlib.sha256(data).hexdigest()
                    if "bytes" in value:
                        value["bytes"] = len(data)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(config)
    if config.get("weights_sha256"):
        config["weights_sha256"] = hashlib.sha256(data).hexdigest()
    _write_config(ckpt, config)


def _safetensors(ckpt: Path) -> tuple[dict, bytes]:
    raw = (ckpt / "model.safetensors").read_bytes()
    size = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def _write_safetensors(ckpt: Path, header: dict, data: bytes, reseal=True) -> None:
    blob = json.dumps(header).encode()
    (ckpt / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    if reseal:
        _reseal(ckpt)


def _retype(dtype: str, itemsize: int):
    def damage(ckpt):
        header, data = _safetensors(ckpt)
        out, offset = {}, 0
        for name, entry in header.items():
            if name == "__metadata__":
                out[name] = entry
                continue
            count = 1
            for dim in entry["shape"]:
                count *= dim
            out[name] = {"dtype": dtype, "shape": entry["shape"], "data_offsets": [offset, offset + count * itemsize]}
            offset += count * itemsize
        _write_safetensors(ckpt, out, b"\x01" * offset)
    return damage


def _fill(value: float):
    def damage(ckpt):
        header, data = _safetensors(ckpt)
        _write_safetensors(ckpt, header, struct.pack("<f", value) * (len(data) // 4))
    return damage


def _huge_shape(ckpt):
    header, data = _safetensors(ckpt)
    header["W_hh"]["shape"] = [10**9, 10**9]
    _write_safetensors(ckpt, header, data)


def _huge_header_length(ckpt):
    raw = (ckpt / "model.safetensors").read_bytes()
    (ckpt / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 60) + raw[8:])
    _reseal(ckpt)


def _truncate(ckpt):
    path = ckpt / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


def _flip(ckpt):
    path = ckpt / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-50] ^= 0x40
    path.write_bytes(bytes(raw))


def _other_shapes(ckpt):
    header, data = _safetensors(ckpt)
    header["W_hh"]["shape"] = [4, 16]
    _write_safetensors(ckpt, header, data)


def _set_model(value):
    def damage(ckpt):
        config = _config(ckpt)
        config["model"] = value
        _write_config(ckpt, config)
    return damage


def _set_model_field(field, value):
    def damage(ckpt):
        config = _config(ckpt)
        config["model"][field] = value
        _write_config(ckpt, config)
    return damage


def _set_vocab_entry(index, value):
    def damage(ckpt):
        config = _config(ckpt)
        config["vocab"][index] = value
        _write_config(ckpt, config)
    return damage


def _set_cleaning(ckpt):
    config = _config(ckpt)
    if isinstance(config.get("data"), dict):
        config["data"]["cleaning"] = "shout"
    else:
        config["cleaning"] = "shout"
    _write_config(ckpt, config)


def _deep_json(ckpt):
    (ckpt / "config.json").write_text("[" * 200_000 + "]" * 200_000)


def _long_integer(ckpt):
    text = (ckpt / "config.json").read_text()
    config = _config(ckpt)
    hidden = config["model"]["num_hiddens"]
    (ckpt / "config.json").write_text(text.replace(f'"num_hiddens": {hidden}', '"num_hiddens": ' + "9" * 5000, 1))


def _replace_with(kind, filename):
    def damage(ckpt):
        path = ckpt / filename
        path.unlink()
        if kind == "dir":
            path.mkdir()
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "zero":
            path.symlink_to("/dev/zero")
    return damage


def _big_config(ckpt):
    config = _config(ckpt)
    config["padding"] = " " * (40 * MiB)
    _write_config(ckpt, config)


def _garbage_config(ckpt):
    (ckpt / "config.json").write_bytes(b"\x89PNG\r\n\x1a\n not json at all")


def _v1(ckpt: Path, members: dict[str, bytes] | None = None) -> None:
    """Rewrite the checkpoint in the version-1 layout (weights.npz), with ``members`` replacing the
    real .npy members when given."""
    from io import BytesIO

    import numpy as np
    sys.path.insert(0, str(ROOT / "src"))
    from scratchrnn.checkpoint_files import safetensors_arrays  # noqa: E402 -- the tree under test
    config = _config(ckpt)
    path = ckpt / "model.safetensors"
    params = safetensors_arrays(path.read_bytes(), path)
    with zipfile.ZipFile(ckpt / "weights.npz", "w", zipfile.ZIP_DEFLATED) as npz:
        for name, value in params.items():
            if members and f"{name}.npy" in members:
                continue
            buffer = BytesIO()
            np.save(buffer, value, allow_pickle=False)
            npz.writestr(f"{name}.npy", buffer.getvalue())
        for name, blob in (members or {}).items():
            with npz.open(name, "w", force_zip64=True) as member:
                for block in blob:
                    member.write(block)
    (ckpt / "model.safetensors").unlink()
    old = {"format": config.get("format"), "version": 1, "model": config["model"], "vocab": config["vocab"],
           "data": config.get("data", {}),
           "weights_sha256": hashlib.sha256((ckpt / "weights.npz").read_bytes()).hexdigest()}
    _write_config(ckpt, old)


def _zip_bomb(ckpt):
    # a W_hh member whose header declares 8 GiB of float32 zeros, deflated to a few MB
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 32768), }"
    header = header + " " * (63 - (len(header) + 10) % 64) + "\n"
    start = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()
    zeros = bytes(4 * MiB)
    _v1(ckpt, {"W_hh.npy": [start, *([zeros] * 128)]})


for _name, _damage in [
        ("truncated-weights", _truncate), ("flipped-byte", _flip),
        ("declared-shape-1e9-by-1e9", _huge_shape), ("header-length-2-to-60", _huge_header_length),
        ("int8-weights", _retype("I8", 1)), ("bool-weights", _retype("BOOL", 1)),
        ("float16-weights", _retype("F16", 2)), ("complex-weights", _retype("C64", 8)),
        ("nan-weights", _fill(float("nan"))), ("inf-weights", _fill(float("inf"))),
        ("weights-of-other-shapes", _other_shapes),
        ("model-a-list", _set_model([1, 2])), ("model-null", _set_model(None)),
        ("model-a-string", _set_model("rnn")),
        ("num-hiddens-float", _set_model_field("num_hiddens", 8.0)),
        ("num-hiddens-string", _set_model_field("num_hiddens", "8")),
        ("vocab-size-mismatch", _set_model_field("vocab_size", 29)),
        ("vocab-entry-int", _set_vocab_entry(3, 7)), ("vocab-entry-null", _set_vocab_entry(3, None)),
        ("vocab-entry-bool", _set_vocab_entry(3, True)), ("vocab-duplicate", _set_vocab_entry(3, "e")),
        ("vocab-empty-token", _set_vocab_entry(3, "")), ("vocab-800-characters", _set_vocab_entry(3, "x" * 800)),
        ("vocab-ansi-escape", _set_vocab_entry(3, "\x1b[2J")), ("unknown-cleaning", _set_cleaning),
        ("json-200000-deep", _deep_json), ("integer-5000-digits", _long_integer),
        ("config-a-directory", _replace_with("dir", "config.json")),
        ("config-a-fifo", _replace_with("fifo", "config.json")),
        ("config-dev-zero", _replace_with("zero", "config.json")),
        ("weights-a-directory", _replace_with("dir", "model.safetensors")),
        ("weights-a-fifo", _replace_with("fifo", "model.safetensors")),
        ("weights-dev-zero", _replace_with("zero", "model.safetensors")),
        ("config-40-mib", _big_config), ("config-not-json", _garbage_config),
        ("config-missing", lambda ckpt: (ckpt / "config.json").unlink()),
        ("v1-npz-zip-bomb", _zip_bomb)]:
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
    _v1(ckpt)
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
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
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
    _kill_group(proc.pid, signal.SIGINT)
    expect(finish(proc, 60, began), codes=(130,), one_line=False)


@case("signals", "ctrl-c-in-the-first-epoch")
def _(ws):
    # a real SIGINT, once training has said it started, long before the first epoch ends
    out = ws.dir("int") / "run"
    proc = start(["train", "--out", out, *TINY, "--max-tokens", "200000", "--epochs", "4"])
    began = time.monotonic()
    proc.stdout.readline()
    time.sleep(0.5)
    _kill_group(proc.pid, signal.SIGINT)
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
        _kill_group(proc.pid, signal.SIGINT)
        result = expect(finish(proc, 120, began), codes=(130, 0), one_line=False)
        if (out / "last").exists() or result.rc == 0:
            loadable(out)


@case("signals", "sigterm-mid-training")
def _(ws):
    out = ws.dir("term") / "run"
    proc = start(["train", "--out", out, *TINY, "--epochs", "30", "--checkpoint-every", "1"])
    began = time.monotonic()
    time.sleep(2.0)
    _kill_group(proc.pid, signal.SIGTERM)
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
