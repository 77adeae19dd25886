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

from scratchrnn.checkpoint import load_checkpoint  # noqa: E402
from scratchrnn.data import SeqDataLoader  # noqa: E402
from scratchrnn.distributed import SINGLE, World, world_from_env  # noqa: E402
from scratchrnn.errors import UserError  # noqa: E402
from scratchrnn.runner import RunConfig, run  # noqa: E402
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
    """Per-epoch training and held-out perplexities and final weights to 1e-9 (float64), SGD and Adam,
    sequential and random partitioning, torch and numpy; both ranks end with identical weights."""
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
