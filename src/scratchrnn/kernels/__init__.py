"""The compiled loops of scratchrnn, and the one question the rest of the package asks of them.

``choose(workload, trial)`` (``choice.py``) says which loops run a workload -- the framework's own or
the compiled ones -- and why: each backend asks it once per model, dtype, device and batch (and
generation once per bucket of streams), then calls what it was told. The answer comes from measuring
the candidates on this machine the first time a workload is used, remembered in the wisdom file
(``wisdom.py``), unless the library cannot take the workload or ``SCRATCHRNN_LOOPS`` forces it.

The loops themselves: ``recurrence`` (the RNN's forward recurrence and backpropagation through it),
``gated`` (the GRU's and the LSTM's), ``decode`` (greedy generation with the RNN), all float32 on the
CPU. ``status()`` says which variant of the library runs here, or why it is off; ``choice.status()``
how the loops are chosen. How the library is built, loaded and threaded: setup.py, ``_library.py``,
``pool.c``.
"""
from __future__ import annotations

from . import choice, decode, gated, recurrence, torch_team, wisdom
from ._library import (built_variants, configured_threads, disabled, enabled, last_threads, load,
                       running_on, status, threads, variant_kernels)
from .choice import Choice, Workload, choose, decoding_bucket

__all__ = ["Choice", "Workload", "choose", "decoding_bucket", "choice", "wisdom", "status", "enabled",
           "disabled", "load", "threads", "configured_threads", "last_threads", "built_variants",
           "variant_kernels", "running_on", "decode", "recurrence", "torch_team", "gated"]
