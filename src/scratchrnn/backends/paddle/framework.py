"""PaddlePaddle, imported once for the backend and its cells, without its notices.

Its own module so that ``backend.py`` and ``cells.py`` both take ``paddle`` and ``F`` from here,
imported the one way below, rather than one taking them from the other.
"""
from __future__ import annotations

import os
import warnings

import numpy as np


def _amd_cpu_with_avx2() -> bool:
    """Whether this is an AMD processor with AVX2 and FMA (read from Linux's /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            text = cpuinfo.read()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return "AuthenticAMD" in text and "avx2" in flags and "fma" in flags


def _import_paddle_quietly():
    """Import paddle without the notices it prints, and with its CPU matrix products at full speed.

    - Paddle warns on import that ``ccache`` is missing. That matters only for compiling C++
      extensions, which this package never does.
    - Its C++ core logs through GLOG, which reads its level from the environment when the core loads.
    - Paddle's CPU matrix products run in the MKL it bundles, and that MKL, on an AMD processor,
      takes a generic code path two to three times slower than its AVX2 one unless
      ``MKL_DEBUG_CPU_TYPE=5`` is set when it first picks one. It picks at its first product, so
      one tiny product runs here while the variable is set.

    Each variable is set only if the user has not chosen a value, and removed again afterwards, so
    programs this process starts see the environment the user gave it.
    """
    defaults = {"GLOG_minloglevel": "2"}     # GLOG: errors only
    if _amd_cpu_with_avx2():
        defaults["MKL_DEBUG_CPU_TYPE"] = "5"  # MKL: the AVX2 kernels
    ours = [name for name in defaults if name not in os.environ]
    for name in ours:
        os.environ[name] = defaults[name]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No ccache found")
            import paddle
            import paddle.nn.functional as F
        cpu = paddle.CPUPlace()
        ones = paddle.to_tensor(np.ones((2, 2), dtype=np.float32), place=cpu)
        paddle.matmul(ones, ones)
    finally:
        for name in ours:
            os.environ.pop(name, None)
    return paddle, F


paddle, F = _import_paddle_quietly()
