"""The saliency of ``scratchrnn.analysis`` (NumPy's hand-written BPTT, the reference) against the autograd of
every other framework that can take gradients through its inputs: TensorFlow, PaddlePaddle and MXNet, each
in a process of its own (tests/saliency_worker.py) running the backend's code of the book's models.
PyTorch's is in test_analysis.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchrnn.analysis import ReferenceModel, prediction_gradients
from scratchrnn.model import ModelConfig

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("tensorflow", "paddle", "mxnet")
CONFIGS = [
    ModelConfig(vocab_size=7, num_hiddens=5, cell="rnn"),
    ModelConfig(vocab_size=7, num_hiddens=5, cell="gru", num_layers=2),
    ModelConfig(vocab_size=7, num_hiddens=4, cell="lstm", num_layers=2, embedding="learned", embed_dim=3),
]
IDS = [1, 3, 2, 5, 4, 1, 6, 2]
POSITIONS = [0, 3, 6]


def _python_for(framework: str) -> str | None:
    """The interpreter whose environment has the framework (MXNet's lives in .venv-mxnet)."""
    if framework != "mxnet":
        return sys.executable
    explicit = os.environ.get("SCRATCHRNN_MXNET_PYTHON")
    if explicit:
        return explicit
    local = ROOT / ".venv-mxnet" / "bin" / "python"
    return str(local) if local.exists() else None


def _cases():
    rng = np.random.default_rng(4)
    cases = []
    for config in CONFIGS:
        params = {name: rng.normal(0, 0.6, shape) for name, shape in config.param_shapes().items()}
        cases.append((config, params))
    return cases


@pytest.fixture(scope="module")
def answers():
    """Each framework's norms, its workers run side by side."""
    cases = _cases()
    payload = json.dumps([{"config": c.to_dict(), "params": {k: v.tolist() for k, v in p.items()}, "ids": IDS,
                           "positions": POSITIONS} for c, p in cases])
    env = dict(os.environ, PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(Path(__file__).parent)]))
    running = {}
    for framework in FRAMEWORKS:
        python = _python_for(framework)
        if python is None:
            continue
        running[framework] = subprocess.Popen([python, str(Path(__file__).parent / "saliency_worker.py"), framework,
                                               payload], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                              env=env)
    results = {}
    for framework, proc in running.items():
        out, err = proc.communicate(timeout=600)
        results[framework] = (proc.returncode, out, err)
    return cases, results


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_saliency_matches_the_frameworks_autograd(answers, framework):
    cases, results = answers
    if framework not in results:
        if os.environ.get("CI"):
            pytest.fail(f"no environment for {framework}: run `make test`, which builds it")
        pytest.skip(f"no environment for {framework} (make test builds it)")
    status, out, err = results[framework]
    if status != 0 and "No module named" in err and not os.environ.get("CI"):
        pytest.skip(f"{framework} is not installed here")
    assert status == 0, err[-3000:]
    answer = json.loads(out.strip().splitlines()[-1])
    assert Path(answer["scratchrnn imported from"]).is_relative_to(ROOT / "src")
    for (config, params), theirs in zip(cases, answer["norms"]):
        ours = prediction_gradients(ReferenceModel(params, config), IDS, POSITIONS)
        np.testing.assert_allclose(ours.inputs, theirs, rtol=1e-8, atol=1e-12, err_msg=f"{framework} {config}")
