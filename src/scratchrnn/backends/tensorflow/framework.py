"""TensorFlow, imported once for the backend and its cells, without its start-up log lines.

Its own module so that the environment variable below is set before the first import of TensorFlow,
whichever of ``backend.py`` and ``cells.py`` comes first.
"""
from __future__ import annotations

import os

# TensorFlow's C++ side logs info lines on import (CPU features and the like). Hide those, keep its
# warnings, and leave alone a level the user chose. It must be set before tensorflow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import tensorflow as tf  # noqa: E402

__all__ = ["tf"]
