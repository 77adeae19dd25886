"""scratchrnn: the character-level RNN of Dive into Deep Learning 8.5, from scratch, in five backends.

Importing this package imports no deep-learning framework; a backend's framework is imported when
that backend is first created (``scratchrnn.backends.create``).
"""
__version__ = "0.1.0"

import os as _os
import signal as _signal
import sys as _sys


def _interrupted_while_starting(signum, frame):
    _os.write(2, b"scratchrnn: interrupted\n")
    _os._exit(130)


# Started as the command (``scratchrnn ...`` or ``python -m scratchrnn``, whose argv[0] is "-m" while
# the package is found), a Ctrl-C during the imports below would print a KeyboardInterrupt traceback:
# until cli.main puts Python's own handler back, it ends the program with one line and status 130.
if _sys.argv and (_sys.argv[0] == "-m" or _os.path.basename(_sys.argv[0]) == "scratchrnn"):
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)

from .backends import BACKENDS, create as create_backend
from .chapter import (GRUModelScratch, LSTMModelScratch, RNNModelScratch, grad_clipping,
                      load_data_time_machine, predict_ch8, train_ch8, train_epoch_ch8)
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import (SeqDataLoader, Vocab, load_corpus, read_time_machine, seq_data_iter_random,
                   seq_data_iter_sequential, tokenize)
from .errors import TrainingDiverged, UserError
from .generation import Decoding, predict, predict_many
from .model import ModelConfig, init_params
from .optim import OptimizerConfig, Schedule, create_optimizer
from .runner import RunConfig, resume, run
from .training import TrainConfig, TrainState, train, train_epoch

__all__ = [
    "BACKENDS", "create_backend", "RNNModelScratch", "GRUModelScratch", "LSTMModelScratch", "grad_clipping",
    "load_data_time_machine", "predict_ch8", "train_ch8", "train_epoch_ch8", "Checkpoint", "load_checkpoint", "save_checkpoint",
    "SeqDataLoader", "Vocab", "load_corpus", "read_time_machine", "seq_data_iter_random",
    "seq_data_iter_sequential", "tokenize", "TrainingDiverged", "UserError", "Decoding", "predict",
    "predict_many", "ModelConfig", "init_params", "TrainConfig", "TrainState", "train", "train_epoch",
    "OptimizerConfig", "Schedule", "create_optimizer", "RunConfig", "run", "resume",
]
