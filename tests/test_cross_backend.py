"""Train with each backend, generate with every backend: every ordered pair gives the same greedy text,
for every cell (the chapter's RNN, a GRU, and a two-layer LSTM trained with dropout).

Each backend runs in its own process (MXNet in its own environment), so no two frameworks ever meet:
one process per backend trains all the models, one more generates from every checkpoint.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratchrnn.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["--epochs", "4", "--hidden", "32", "--max-tokens", "3000", "--batch-size", "8", "--num-steps", "10",
         "--no-progress", "--predict-every", "0", "--json"]
# each model's own arguments; the gated ones train with Adam, which within these few epochs takes them
# past continuations of nothing but spaces (a text that would tell the backends apart no better)
MODELS = {
    "rnn": "",
    "gru": "--cell gru --optimizer adam --lr 0.02",
    "lstm2-dropout": "--cell lstm --layers 2 --dropout 0.1 --optimizer adam --lr 0.02",
}


def _python_for(backend: str) -> str | None:
    """The interpreter whose environment has this backend's framework."""
    if backend != "mxnet":
        return sys.executable
    explicit = os.environ.get("SCRATCHRNN_MXNET_PYTHON")
    if explicit:
        assert Path(explicit).exists(), f"SCRATCHRNN_MXNET_PYTHON={explicit} does not exist"
        return explicit
    local = ROOT / ".venv-mxnet" / "bin" / "python"
    return str(local) if local.exists() else None


def _from_the_tree_under_test(backend: str, result: dict) -> dict:
    """The worker's answer without the path it imported scratchrnn from, which must be this tree's."""
    imported = Path(result.pop("scratchrnn imported from"))
    assert imported.is_relative_to(ROOT / "src"), (backend, imported)
    return result


def _run(python, *args):
    # the tree under test first (src/, then tests/ for the worker), not whatever is installed
    path = os.pathsep.join([str(ROOT / "src"), str(Path(__file__).parent)])
    env = dict(os.environ, PYTHONWARNINGS="ignore", PYTHONPATH=path)
    proc = subprocess.run([python, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Small trained checkpoints, one per model and backend that can run here."""
    pythons = {b: _python_for(b) for b in BACKENDS}
    missing = [b for b, p in pythons.items() if p is None]
    if missing and os.environ.get("CI"):
        pytest.fail(f"no environment for {missing}: run `make test`, which builds them")
    root = tmp_path_factory.mktemp("cross")
    worker = Path(__file__).parent / "cross_backend_worker.py"

    def train(backend: str) -> dict:
        return _from_the_tree_under_test(backend, json.loads(
            _run(pythons[backend], worker, "train", backend, root / backend, json.dumps(TRAIN),
                 *(f"{name}={args}" for name, args in MODELS.items()))))

    # two workers at a time: most of a worker's time is its framework's import, which leaves a core idle
    present = [backend for backend, python in pythons.items() if python is not None]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(present, pool.map(train, present)))
    trained = {(backend, name): run_dir for backend in present for name, run_dir in results[backend].items()}
    return pythons, trained, missing


def test_every_ordered_pair_of_backends_generates_the_same_greedy_text(checkpoints):
    pythons, trained, missing = checkpoints
    paths = [str(p) for p in trained.values()]
    texts = {}
    for backend, python in pythons.items():
        if python is not None:
            texts[backend] = _from_the_tree_under_test(backend, json.loads(
                _run(python, Path(__file__).parent / "cross_backend_worker.py",
                     "generate", backend, "time traveller", 40, *paths)))
    for (trainer, model), path in trained.items():
        by_generator = {gen: result[str(path)] for gen, result in texts.items()}
        reference = by_generator["numpy"]
        assert len(reference) == len("time traveller") + 40
        # a continuation of spaces only would be the same whatever the weights: the test would prove little
        assert reference[len("time traveller"):].strip(), f"{model} trained with {trainer}: {reference!r}"
        for generator, text in by_generator.items():
            assert text == reference, f"{model}: trained with {trainer}, generated with {generator}"
    if missing:
        pytest.skip(f"pairs with {missing} not checked: no environment (make test builds .venv-mxnet)")
