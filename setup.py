"""Builds the optional compiled library; everything else about the package is in pyproject.toml.

The library (the greedy decoder and the training recurrences) is plain C loaded with ctypes
(scratchrnn/compiled.py), built as if it were an extension module so that pip compiles it at install
time. ``optional=True``: where it cannot be compiled (no C compiler, no pthreads) the install still
succeeds and the backends run their own loops.
"""
import os
import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args, link_args, libraries = [], [], []
else:
    # -ffp-contract=fast: a * b + c as one fused multiply-add, which ISO C mode otherwise forbids; the
    # library's products are multiply-adds, and fusing them halves their instructions
    compile_args = ["-O3", "-std=c11", "-ffp-contract=fast", "-pthread"]
    link_args, libraries = ["-pthread"], ["m"]
    # tuned for the processor it is built on, as befits a source install; SCRATCHRNN_PORTABLE=1 builds
    # for any processor of the architecture (for a wheel to be installed elsewhere)
    if not os.environ.get("SCRATCHRNN_PORTABLE"):
        compile_args.append("-march=native")

sources = ["src/scratchrnn/_greedy_decode.c", "src/scratchrnn/_recurrence.c"]
setup(ext_modules=[Extension("scratchrnn._compiled", sources, depends=["src/scratchrnn/_compiled.h"],
                             extra_compile_args=compile_args, extra_link_args=link_args,
                             libraries=libraries, optional=True)])
