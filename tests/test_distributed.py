"""Training on several ranks (torch.distributed on gloo, 2 ranks on this machine).

Each test launches real processes (torchrun or ``scratchrnn train --nproc``), so they are few and
tiny: a few hundred tokens, 8 hidden units, float64 where results are compared with one process.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not dist.is_available(), reason="this PyTorch has no torch.distributed")]

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from distributed_worker import CASES, train_case  # noqa: E402

from scratchrnn import distributed  # noqa: E402
from scratchrnn.checkpoint import load_checkpoint  # noqa: E402
from scratchrnn.data import SeqDataLoader  # noqa: E402
from scratchrnn.distributed import SINGLE, World, world_from_env  # noqa: E402
from scratchrnn.errors import UserError  # noqa: E402
from scratchrnn.model import ModelSettings  # noqa: E402
from scratchrnn.run_config import RunConfig  # noqa: E402
from scratchrnn.runner import run  # noqa: E402
from scratchrnn.training import TrainConfig  # noqa: E402

TIMEOUT = 240          # seconds for one launch: the machine running the suite may be busy
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def _env(**extra) -> dict:
    env = dict(os.environ)
    src = str(HERE.parent / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("SCRATCHRNN_FAULT", None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_cli(*args, env=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scratchrnn", "train", *args], env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)


# -- in one process -------------------------------------------------------------------------------------
def test_world_from_env_reads_torchrun_variables():
    assert world_from_env({}) == SINGLE
    world = world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (world.rank, world.size, world.local_rank, world.local_size, world.is_main) == (3, 4, 1, 2, False)
    with pytest.raises(UserError, match="inconsistent"):
        world_from_env({"RANK": "4", "WORLD_SIZE": "4"})


@pytest.mark.parametrize("sampling", ["sequential", "random"])
def test_ranks_read_interleaved_rows_of_the_same_batches(sampling):
    corpus = np.arange(500) % 97
    whole = list(SeqDataLoader(corpus, 6, 5, sampling, seed=2))
    shares = [list(SeqDataLoader(corpus, 6, 5, sampling, seed=2, rank=r, world_size=3)) for r in range(3)]
    for k, (X, Y) in enumerate(whole):
        for r in range(3):
            np.testing.assert_array_equal(shares[r][k][0], X[r::3])
            np.testing.assert_array_equal(shares[r][k][1], Y[r::3])
    with pytest.raises(ValueError, match="multiple of world_size"):
        SeqDataLoader(corpus, 5, 5, sampling, world_size=2)


def test_gather_rows_in_the_world_of_one_is_the_identity():
    arrays = (np.ones((4, 2)),)
    assert World().gather_rows(arrays)[0] is arrays[0]


# -- 2 ranks against one process -------------------------------------------------------------------------
def test_two_ranks_take_the_same_steps_as_one_process_with_the_whole_batch(tmp_path):
    """Per-epoch training and held-out perplexities and final weights to 1e-9 (float64): RNN, GRU and
    LSTM, SGD and Adam, sequential and random partitioning, torch and numpy, two layers with dropout;
    both ranks end with identical weights."""
    out = tmp_path / "ranks.npz"
    done = subprocess.run([*TORCHRUN, "--standalone", "--nproc-per-node", "2",
                           str(HERE / "distributed_worker.py"), str(out)],
                          env=_env(OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    got = np.load(out)
    for i, case in enumerate(CASES):
        perplexities, heldout, params = train_case(case)
        np.testing.assert_allclose(got[f"{i}/train"], perplexities, rtol=1e-9, err_msg=str(case))
        np.testing.assert_allclose(got[f"{i}/val"], heldout, rtol=1e-9, err_msg=str(case))
        for name, value in params.items():
            ranks = got[f"{i}/{name}"]
            np.testing.assert_array_equal(ranks[0], ranks[1])
            np.testing.assert_allclose(ranks[0], value, rtol=1e-9, atol=1e-12, err_msg=f"{case} {name}")


# -- the command line ----------------------------------------------------------------------------------
TINY = ["--backend", "torch", "--dtype", "float64", "--hidden", "8", "--max-tokens", "600", "--batch-size", "4",
        "--num-steps", "5", "--no-progress", "--predict-every", "0"]


def _reference(tmp_path, epochs: int, **model) -> dict:
    """The tiny run's last/ weights from one process, through the same runner."""
    config = RunConfig(out=str(tmp_path / "reference"), backend="torch", dtype="float64", max_tokens=600,
                       model=ModelSettings(num_hiddens=8, **model),
                       train=TrainConfig(epochs=epochs, batch_size=4, num_steps=5), predict_every=0)
    run(config, "new", say=lambda line: None, progress=False)
    return load_checkpoint(tmp_path / "reference", "last").params


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_refusals_come_before_any_process_starts(capsys, tmp_path):
    from scratchrnn.cli import main
    assert main(["train", "--backend", "tensorflow", "--nproc", "2", "--out", str(tmp_path / "a")]) == 2
    assert "--nproc needs --backend torch or numpy" in capsys.readouterr().err
    assert main(["train", "--backend", "torch", "--nproc", "2", "--batch-size", "5", "--out", str(tmp_path / "a")]) == 2
    assert "--batch-size 5 is not a multiple of --nproc 2" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("model", [{}, {"cell": "gru", "num_layers": 2, "dropout": 0.3}],
                         ids=["rnn", "gru-2-layers-dropout"])
def test_nproc_run_stopped_inside_an_epoch_resumes_on_one_process(tmp_path, model):
    """Ctrl-C on both ranks (after their 5th batch, so at the 6th through the all_reduce): rank 0 saves
    the whole batch's carried state, world_size 2; one process resumes the epoch from its middle and ends
    where a run never stopped ends (1e-9, float64) -- with dropout too: the ranks' masks are rows of
    one stream's, which the checkpoint continues."""
    out = tmp_path / "run"
    flags = {"cell": "--cell", "num_layers": "--layers", "dropout": "--dropout"}
    model_args = [str(part) for key, value in model.items() for part in (flags[key], value)]
    stopped = _train_cli(*TINY, *model_args, "--epochs", "2", "--nproc", "2", "--out", str(out),
                         env=_env(SCRATCHRNN_FAULT="train.batch-end:after-5-sigint"))
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert stopped.stderr.count("stopping after this batch") == 1          # rank 0 alone speaks
    saved = load_checkpoint(out, "last")
    assert saved.train_state["world_size"] == 2 and saved.info["world_size"] == 2
    assert saved.train_state["progress"]["batch"] == 6
    assert saved.optimizer_state["carried/0"].shape == (4, 8)              # all 4 rows, both ranks'
    resumed = _train_cli("--resume", str(out), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = _reference(tmp_path, 2, **model)
    final = load_checkpoint(out, "last").params
    for name, value in reference.items():
        np.testing.assert_allclose(final[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
    assert [r["epoch"] for r in _metrics(out)] == [1, 2]


def test_nproc_pauses_and_max_steps_inside_epochs_resume_on_one_process(tmp_path):
    """2 ranks evaluate and save inside epochs (every step checkpoint gathers both ranks' carried rows)
    and stop at --max-steps in the middle of the second epoch; one process takes up from there and
    ends where one process never stopped ends (1e-9, float64)."""
    out = tmp_path / "run"
    part = _train_cli(*TINY, "--epochs", "2", "--nproc", "2", "--max-steps", "40", "--checkpoint-every-steps", "7",
                      "--eval-every-steps", "9", "--out", str(out))
    assert part.returncode == 0, part.stderr[-3000:]
    saved = load_checkpoint(out, "last")
    progress = saved.train_state["progress"]
    assert (progress["epoch"], progress["step"], saved.train_state["world_size"]) == (1, 40, 2)
    assert progress["batch"] > 0 and saved.optimizer_state["carried/0"].shape == (4, 8)
    assert [r["step"] for r in _metrics(out) if r.get("kind") == "step"] == [9, 18, 27, 36]
    resumed = _train_cli("--resume", str(out), "--max-steps", "1000", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = _reference(tmp_path, 2)
    final = load_checkpoint(out, "last").params
    for name, value in reference.items():
        np.testing.assert_allclose(final[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
    assert [r["epoch"] for r in _metrics(out) if r.get("kind") is None] == [1, 2]


def test_a_killed_rank_stops_the_run_and_resume_continues(tmp_path):
    """kill -9 of rank 1 in epoch 2: the launch ends within a bounded time, non-zero, saying which rank
    died; --resume on 2 ranks continues from epoch 1 and finishes with 2-rank metrics."""
    out = tmp_path / "run"
    start = time.monotonic()
    killed = _train_cli(*TINY, "--epochs", "3", "--nproc", "2", "--out", str(out),
                        env=_env(SCRATCHRNN_FAULT="dist.rank1.all-reduce:after-40-kill"))
    elapsed = time.monotonic() - start
    assert killed.returncode not in (0, 130), killed.stderr[-3000:]
    assert "rank 1 was killed by SIGKILL" in killed.stderr
    assert "Traceback" not in killed.stderr
    assert elapsed < 120
    assert [r["epoch"] for r in _metrics(out)] == [1]
    resumed = _train_cli("--resume", str(out), "--nproc", "2", "--no-progress", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads(resumed.stdout)["epochs"] == 3
    assert [(r["epoch"], r["world_size"]) for r in _metrics(out)] == [(1, 2), (2, 2), (3, 2)]


def test_two_nodes_on_the_loopback_address(tmp_path):
    """Two torchrun launches, one rank each, meeting at 127.0.0.1 as two machines would; the result is
    one process's with the whole batch."""
    out, port = tmp_path / "run", _free_port()
    launches = [subprocess.Popen([*TORCHRUN, "--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1",
                                  "--master-addr", "127.0.0.1", "--master-port", str(port),
                                  "-m", "scratchrnn", "train", *TINY, "--epochs", "1", "--out", str(out)],
                                 env=_env(OMP_NUM_THREADS="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
                for node in (0, 1)]
    try:
        outputs = [launch.communicate(timeout=TIMEOUT) for launch in launches]
    finally:
        for launch in launches:
            if launch.poll() is None:
                launch.send_signal(signal.SIGKILL)
    assert [launch.returncode for launch in launches] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "perplexity" in outputs[0][0] and outputs[1][0] == ""            # rank 0 alone prints
    assert _metrics(out)[0]["world_size"] == 2
    reference = _reference(tmp_path, 1)
    final = load_checkpoint(out, "last").params
    for name, value in reference.items():
        np.testing.assert_allclose(final[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("exits, status", [
    ({0: 130, 1: -signal.SIGTERM}, 130),    # Ctrl-C: rank 0 ended first, the agent stopped rank 1
    ({0: 130, 1: 130}, 130),
    ({0: 2, 1: -signal.SIGTERM}, 2),        # a user error, said by the rank
    ({0: -signal.SIGKILL, 1: -signal.SIGTERM}, 1),
    ({0: -signal.SIGTERM, 1: -signal.SIGTERM}, 1),
])
def test_launch_maps_how_the_ranks_ended_to_one_exit_status(monkeypatch, tmp_path, exits, status):
    """What --nproc returns, whichever rank the agent saw end first: an interrupt or a user error that
    the ranks reported themselves keeps its status; a rank killed from outside is an error (1)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure
    from torch.distributed.launcher import api

    error_file = str(tmp_path / "none.json")
    failures = {rank: ProcessFailure(rank, 1000 + rank, code, error_file) for rank, code in exits.items()}

    def launcher(config, entrypoint):
        def run(*args):
            raise ChildFailedError("scratchrnn", failures)
        return run

    monkeypatch.setattr(api, "elastic_launch", launcher)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")          # launch sets it for its ranks; restored after
    assert distributed.launch(2, ["train"]) == status
