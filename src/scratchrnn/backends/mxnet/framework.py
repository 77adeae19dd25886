"""MXNet, imported once for the backend and its cells, quietly and with NumPy semantics switched on.

Its own module so that ``backend.py`` and ``cells.py`` both take ``np``, ``npx`` and ``use_np`` from
here rather than one taking them from the other.
"""
from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # MXNet's import touches NumPy functions and distutils classes that have since been deprecated;
    # those warnings are about MXNet's internals, not anything a user of scratchrnn can act on
    warnings.simplefilter("ignore", DeprecationWarning)
    import mxnet as mx
    from mxnet import autograd, gluon, np, npx
    from mxnet.util import use_np

# NumPy semantics for mxnet.np arrays, switched on as the chapter does before anything else. MXNet
# keeps that switch per thread, so the backend class (backend.py) is also wrapped in ``use_np``: a backend
# made in one thread then still computes correctly when another thread calls it.
npx.set_np()
