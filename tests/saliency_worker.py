"""Run by tests/test_analysis_backends.py in one process per framework (one framework per process).

``FRAMEWORK CASES_JSON``: for each case (a model's config and parameters, a text's token ids, the
positions to explain), the norm of the gradient of log p(ids[t + 1] | ids[..t]) with respect to every
input vector (the one-hot vector, or the embedding row), taken by the framework's own autograd through
the backend's code of the book's models (``backends.FRAMEWORK.cells.deep_model``), in float64. Prints
{"scratchrnn imported from": ..., "norms": [per case, (positions, steps)]} as JSON.
"""
import json
import sys

import numpy as np

import scratchrnn
from scratchrnn import backends
from scratchrnn.model import ModelConfig


def tensorflow_grads(backend, cells, config, vectors, t, target):
    import tensorflow as tf

    x = tf.constant(vectors)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits, _ = cells.deep_model(x, backend.begin_state(1), backend.parameters(), config)
        log_p = tf.nn.log_softmax(logits, axis=-1)[t, target]
    return tape.gradient(log_p, x).numpy()


def paddle_grads(backend, cells, config, vectors, t, target):
    import paddle

    x = paddle.to_tensor(vectors, stop_gradient=False)
    logits, _ = cells.deep_model(x, backend.begin_state(1), backend.parameters(), config)
    paddle.nn.functional.log_softmax(logits, axis=-1)[t, target].backward()
    return x.grad.numpy()


def mxnet_grads(backend, cells, config, vectors, t, target):
    from mxnet import autograd, np as mx_np, npx

    npx.set_np()
    x = mx_np.array(vectors, dtype=vectors.dtype)
    x.attach_grad()
    with autograd.record():
        logits, _ = cells.deep_model(x, backend.begin_state(1), backend.parameters(), config)
        log_p = npx.log_softmax(logits, axis=-1)[t, target]
    log_p.backward()
    return x.grad.asnumpy()


GRADS = {"tensorflow": tensorflow_grads, "paddle": paddle_grads, "mxnet": mxnet_grads}


def main():
    framework, cases_json = sys.argv[1:]
    cells = __import__(f"scratchrnn.backends.{framework}.cells", fromlist=["deep_model"])
    norms = []
    for case in json.loads(cases_json):
        config = ModelConfig.from_dict(case["config"])
        params = {name: np.asarray(value, dtype=np.float64) for name, value in case["params"].items()}
        backend = backends.create(framework, params, config, dtype="float64")
        ids = np.asarray(case["ids"])
        vectors = np.eye(config.vocab_size)[ids] if config.embedding == "onehot" else params["W_emb"][ids]
        vectors = vectors[:, None, :]                       # (steps, batch 1, input): time-major
        rows = []
        for t in case["positions"]:
            grads = GRADS[framework](backend, cells, config, vectors, t, int(ids[t + 1]))
            rows.append(np.linalg.norm(grads[:, 0], axis=-1).tolist())
        norms.append(rows)
    print(json.dumps({"scratchrnn imported from": scratchrnn.__file__, "norms": norms}))


if __name__ == "__main__":
    main()
