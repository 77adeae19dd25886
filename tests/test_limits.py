"""Sizes a machine cannot hold and seeds NumPy cannot take: refused at once, in one line, naming them."""
import os
import subprocess
import sys
import time

import pytest

from scratchrnn.errors import UserError
from scratchrnn.memory import available_bytes, format_bytes
from scratchrnn.model import ModelConfig, check_fits_in_memory, estimate_training_bytes, init_params


def test_the_estimate_counts_parameters_gradients_two_optimizer_slots_and_one_batch():
    config = ModelConfig(28, 512)
    estimate = estimate_training_bytes(config, 32, 35, "float32")
    params = 28 * 512 + 512 * 512 + 512 + 512 * 28 + 28
    assert estimate.parameters == 4 * params
    assert estimate.gradients == 4 * params and estimate.optimizer == 8 * params
    # every step keeps at least its hidden state and its logits for backpropagation
    assert estimate.activations >= 4 * 32 * 35 * (512 + 28)
    assert estimate.total == sum((estimate.parameters, estimate.gradients, estimate.optimizer,
                                  estimate.activations))
    assert estimate_training_bytes(config, 32, 35, "float64").total == 2 * estimate.total
    assert estimate_training_bytes(config, 64, 35).activations > estimate.activations


def test_a_model_larger_than_the_memory_is_refused_naming_the_estimate_and_the_memory():
    config = ModelConfig(28, 100_000)      # 40 GB of W_hh alone in float32
    with pytest.raises(UserError) as err:
        check_fits_in_memory(config, 32, 35, "float32", available=8 * 2**30)
    message = str(err.value)
    assert "num_hiddens 100000" in message and "8.0 GiB of memory available" in message
    assert format_bytes(estimate_training_bytes(config, 32, 35).total) in message
    # what fits passes and says how much it takes
    assert check_fits_in_memory(ModelConfig(28, 512), 32, 35, available=8 * 2**30).total < 2**30


def test_unknown_memory_refuses_nothing(monkeypatch):
    monkeypatch.setattr("scratchrnn.model.available_bytes", lambda: None)
    check_fits_in_memory(ModelConfig(28, 10**9), 32, 35)


@pytest.mark.skipif(available_bytes() is None, reason="no /proc/meminfo here")
def test_init_params_refuses_weights_beyond_memory_before_drawing_them():
    start = time.perf_counter()
    with pytest.raises(UserError, match="vocab_size 28, num_hiddens 1000000000 need about .* EiB"):
        init_params(ModelConfig(28, 10**9))
    assert time.perf_counter() - start < 1


@pytest.mark.parametrize("seed", [-1, 2.0, True])
def test_init_params_refuses_a_seed_numpy_cannot_take(seed):
    with pytest.raises(ValueError, match="seed must be"):
        init_params(ModelConfig(5, 3), seed)


def _cli(*args):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "scratchrnn", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


@pytest.mark.skipif(available_bytes() is None, reason="no /proc/meminfo here")
def test_train_refuses_a_billion_hidden_units_at_once_with_the_estimate(tmp_path):
    start = time.perf_counter()
    proc = _cli("train", "--hidden", 1_000_000_000, "--out", tmp_path / "run", "--epochs", 1)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "needs about" in proc.stderr and "EiB" in proc.stderr and "memory available" in proc.stderr
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["generate", "nowhere"],
                                     ["experiment", "relu", "--quick"]])
def test_a_negative_seed_is_one_line_at_every_command(command, tmp_path):
    proc = _cli(*command, "--seed", "-1")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "--seed" in proc.stderr and ">= 0" in proc.stderr and "Traceback" not in proc.stderr
