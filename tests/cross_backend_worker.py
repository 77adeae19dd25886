"""Run by tests/test_cross_backend.py in one process per backend (so one framework per process).

``train BACKEND OUT_ROOT SHARED_ARGS_JSON NAME=ARGS...``: train one run per model (``scratchrnn train``
with the shared arguments and the model's own, in this process), into OUT_ROOT/NAME, and print
{NAME: run dir}. ``generate BACKEND PREFIX NUM_CHARS CHECKPOINT...``: load every checkpoint given and
print each one's greedy continuation, as JSON. Both add where scratchrnn was imported from.
"""
import contextlib
import io
import json
import sys
from pathlib import Path

import scratchrnn
from scratchrnn import backends
from scratchrnn.checkpoint import load_checkpoint
from scratchrnn.cli import main
from scratchrnn.generation import predict

mode, backend_name, *rest = sys.argv[1:]
if mode == "train":
    out_root, *models = rest
    shared = json.loads(models.pop(0))
    runs = {"scratchrnn imported from": scratchrnn.__file__}
    for model in models:
        name, args = model.split("=", 1)
        out = Path(out_root) / name
        with contextlib.redirect_stdout(io.StringIO()):
            status = main(["train", "--backend", backend_name, "--out", str(out), *shared, *args.split()])
        if status != 0:
            sys.exit(f"training {name} with {backend_name} ended with status {status}")
        runs[name] = str(out)
    print(json.dumps(runs))
else:
    prefix, num_chars, *checkpoints = rest
    texts = {"scratchrnn imported from": scratchrnn.__file__}
    for path in checkpoints:
        ckpt = load_checkpoint(path)
        model = backends.create(backend_name, ckpt.params, ckpt.model)
        texts[path] = predict(model, ckpt.vocab, prefix, int(num_chars), cleaning=ckpt.cleaning)
    print(json.dumps(texts))
