"""Running the command line for scripts/probe.py: a subprocess per call, its exit status, output,
time and peak memory, and the rules every case shares (``expect``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--hidden", "8", "--epochs", "2", "--max-tokens", "2000", "--batch-size", "4", "--num-steps", "5",
        "--no-progress", "--predict-every", "0"]
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
def env_for(extra: dict | None = None) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT / "src"))
    for name in ("SCRATCHRNN_FAULT", "SCRATCHRNN_NO_KERNEL", "SCRATCHRNN_THREADS", "PYTHONIOENCODING"):
        env.pop(name, None)
    env.update(extra or {})
    return env


def start(args, env=None, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=None):
    return subprocess.Popen([sys.executable, "-m", "scratchrnn", *map(str, args)], stdin=stdin,
                            stdout=stdout, stderr=subprocess.PIPE, env=env_for(env), cwd=cwd,
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
            kill_group(proc.pid, signal.SIGKILL)
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


def kill_group(pid: int, sig) -> None:
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
