"""Builds the optional compiled greedy decoder; everything else about the package is in pyproject.toml.

The decoder is plain C loaded with ctypes (scratchrnn/fast_decode.py), built as if it were an extension
module so that pip compiles it at install time. ``optional=True``: where it cannot be compiled (no C
compiler, no pthreads) the install still succeeds and generation runs the NumPy loop.
"""
import os
import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args, link_args, libraries = [], [], []
else:
    # -ffp-contract=fast: a * b + c as one fused multiply-add, which ISO C mode otherwise forbids; the
    # decoder's products are multiply-adds, and fusing them halves their instructions
    compile_args = ["-O3", "-std=c11", "-ffp-contract=fast", "-pthread"]
    link_args, libraries = ["-pthread"], ["m"]
    # tuned for the processor it is built on, as befits a source install; SCRATCHRNN_PORTABLE=1 builds
    # for any processor of the architecture (for a wheel to be installed elsewhere)
    if not os.environ.get("SCRATCHRNN_PORTABLE"):
        compile_args.append("-march=native")

setup(ext_modules=[Extension("scratchrnn._greedy_decode", ["src/scratchrnn/_greedy_decode.c"],
                             extra_compile_args=compile_args, extra_link_args=link_args,
                             libraries=libraries, optional=True)])
