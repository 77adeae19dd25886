"""What the tests of ``scratchrnn serve`` share: a small trained run with quotes and line breaks in its
text, and the app served by uvicorn on a free port of 127.0.0.1 in a thread of the test process."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

TRAIN = ["--epochs", "4", "--hidden", "24", "--batch-size", "8", "--num-steps", "12", "--lr", "2", "--no-progress",
         "--predict-every", "0", "--cleaning", "raw"]
TEXT = ('"Hello," she said. "The time machine is here."\n'
        'He looked (briefly) at it and said: "Where?"\n'
        'The traveller smiled; "in the laboratory," he said.\n') * 8


def run_cli(*args, timeout=120, **kwargs):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "scratchrnn", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, **kwargs)


_RUNS: dict = {}


def train_run(tmp_path_factory, cell: str = "lstm", extra=()):
    """A run trained by ``scratchrnn train`` on TEXT (raw cleaning: quotes and line breaks kept), trained
    once per test session for each (cell, extra) and shared by the modules that ask for it (they only
    read it)."""
    key = (cell, tuple(map(str, extra)))
    if key not in _RUNS:
        directory = tmp_path_factory.mktemp(f"run-{cell}")
        data = directory / "quotes.txt"
        data.write_text(TEXT, encoding="utf-8")
        out = directory / cell
        proc = run_cli("train", "--data", data, "--out", out, "--cell", cell, *TRAIN, *extra)
        assert proc.returncode == 0, proc.stderr
        _RUNS[key] = out
    return _RUNS[key]


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1 (a free port), in a thread; ``stop`` ends it."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)

    @property
    def batcher(self):
        return self.app.state.batcher

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()
        assert not self.thread.is_alive()


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
