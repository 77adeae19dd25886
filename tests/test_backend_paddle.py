"""The PaddlePaddle backend against the NumPy reference (runs in its own process: make test-paddle)."""
import os
import subprocess
import sys

import numpy as np
import pytest
from contract import BackendContract, _boosted_params, _chapter_batches, _run_steps

from scratchrnn.model import ModelConfig, init_params


class TestPaddleBackend(BackendContract):
    backend_name = "paddle"

    @pytest.mark.parametrize("config", [ModelConfig(28, 16, "relu", "learned", 5), ModelConfig(28, 16)],
                             ids=["relu-learned", "tanh-onehot"])
    def test_unclipped_training_matches_numpy(self, config):
        batches, _ = _chapter_batches("sequential", count=3)
        params = _boosted_params(config, scale=5)
        ours, ref = self.make(params, config, "float64"), self.reference(params, config, "float64")
        losses = _run_steps(ours, batches, "sequential", lr=0.5, clip=None)
        ref_losses = _run_steps(ref, batches, "sequential", lr=0.5, clip=None)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-9)
        for name, value in ref.get_params().items():
            np.testing.assert_allclose(ours.get_params()[name], value, rtol=1e-8, atol=1e-12, err_msg=name)

    def test_forward_is_inference_from_a_state_with_history(self):
        batches, vocab = _chapter_batches("sequential", count=1)
        config = ModelConfig(len(vocab), 16)
        backend = self.make(init_params(config, 0), config, "float64")
        X, Y = batches[0]
        _, state = backend.train_step(X, Y, backend.begin_state(X.shape[0]), 1.0, 1.0)
        assert not state[0].stop_gradient        # the training state still leads back to the weights
        before = backend.get_params()
        logits, new_state = backend.forward(X[:, :1], state)
        assert logits.dtype == np.float64 and logits.shape == (X.shape[0], len(vocab))
        assert new_state[0].stop_gradient         # no graph recorded
        for name, value in backend.get_params().items():
            np.testing.assert_array_equal(value, before[name])


def _import_backend_in_a_fresh_process(extra_env: dict) -> subprocess.CompletedProcess:
    """Import the backend in a new interpreter; it prints the GLOG/MKL variables it sees afterwards."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLOG_minloglevel", "MKL_DEBUG_CPU_TYPE")}
    env.update(extra_env)
    code = ("import os\n"
            "from scratchrnn.backends.paddle import backend\n"
            "names = ('GLOG_minloglevel', 'MKL_DEBUG_CPU_TYPE')\n"
            "print({k: os.environ[k] for k in names if k in os.environ})\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


def test_import_prints_nothing_and_leaves_no_variables_behind():
    result = _import_backend_in_a_fresh_process({})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.strip() == "{}"


def test_import_keeps_the_users_own_settings():
    result = _import_backend_in_a_fresh_process({"GLOG_minloglevel": "1", "MKL_DEBUG_CPU_TYPE": "4"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'GLOG_minloglevel': '1', 'MKL_DEBUG_CPU_TYPE': '4'}"
