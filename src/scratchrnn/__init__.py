"""scratchrnn: the character-level RNN of Dive into Deep Learning 8.5, from scratch, in five backends.

Importing this package imports no deep-learning framework and changes nothing about the process: the
names below are loaded from their modules the first time they are used (a backend's framework when
that backend is first created, ``scratchrnn.backends.create``). The ``scratchrnn`` command starts in
``scratchrnn.launch``.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it (loaded on first use, PEP 562)
_EXPORTS = {
    "create_backend": "backends",
    "RNNModelScratch": "chapter", "GRUModelScratch": "chapter", "LSTMModelScratch": "chapter",
    "grad_clipping": "chapter", "load_data_time_machine": "chapter", "predict_ch8": "chapter",
    "train_ch8": "chapter", "train_epoch_ch8": "chapter",
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
    "SeqDataLoader": "data", "Vocab": "data", "load_corpus": "data",
    "Decoding": "generation", "predict": "generation", "predict_many": "generation",
    "load": "handle", "Model": "handle",
    "ModelConfig": "model", "ModelSettings": "model", "init_params": "model",
    "Schedule": "optim", "create_optimizer": "optim",
    "RunConfig": "run_config", "run": "runner", "resume": "runner",
    "TrainConfig": "training", "TrainState": "training", "train": "training",
}
_RENAMED = {"create_backend": "create"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scratchrnn' has no attribute {name!r}")
    module = importlib.import_module(f".{_EXPORTS[name]}", __name__)
    value = getattr(module, _RENAMED.get(name, name))
    globals()[name] = value         # looked up once
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
