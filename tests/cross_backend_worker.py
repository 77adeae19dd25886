"""Run by tests/test_cross_backend.py in one process per backend (so one framework per process):
load every checkpoint given and print each one's greedy continuation, as JSON."""
import json
import sys

import scratchrnn
from scratchrnn import backends
from scratchrnn.checkpoint import load_checkpoint
from scratchrnn.generation import predict

backend_name, prefix, num_chars, *checkpoints = sys.argv[1:]
texts = {"scratchrnn imported from": scratchrnn.__file__}
for path in checkpoints:
    ckpt = load_checkpoint(path)
    model = backends.create(backend_name, ckpt.params, ckpt.model)
    texts[path] = predict(model, ckpt.vocab, prefix, int(num_chars), cleaning=ckpt.cleaning)
print(json.dumps(texts))
