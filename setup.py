"""Builds the optional compiled library; everything else about the package is in pyproject.toml.

The library (the greedy decoder and the training recurrences, ``src/scratchrnn/kernels/``) is plain C
loaded with ctypes (``scratchrnn/kernels/_library.py``), built as if it were an extension module so that
pip compiles it at install time. It calls nothing of Python's C API, so it is named ``_kernels.so``
(no CPython version in the name) and the wheel is tagged ``py3-none-<platform>``: one wheel serves every
Python 3 the package supports on that platform. ``optional=True``: where it cannot be compiled (no C compiler, no
pthreads) the install still succeeds and the backends run their own loops.

Portable by default: on x86-64 the kernel files (the decoder, the RNN's and the gated cells' loops)
are compiled three times, for AVX-512, for AVX2 with FMA and for the architecture's baseline, under
names of their own, into one library; the loader picks what the processor it runs on has.
``SCRATCHRNN_NATIVE=1`` compiles them for the building machine instead (``-march=native``, beside the
baseline, which a machine without those instructions falls back to). Elsewhere (aarch64, ...) only the
baseline is built.

Every build compiles every file anew (no object or library from ``build/`` is reused), and the library
records the hash of its sources, which the loader checks against the sources beside it.
"""
import importlib.util
import os
import platform
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_ext import build_ext

try:
    from setuptools.errors import CompileError
except ImportError:                                  # setuptools before 59
    from distutils.errors import CompileError

KERNELS = "scratchrnn.kernels._kernels"
KERNELS_DIR = Path("src/scratchrnn/kernels")
VARIANT_SOURCES = [str(KERNELS_DIR / "greedy_decode.c"), str(KERNELS_DIR / "recurrence.c"),
                   str(KERNELS_DIR / "gated.c"), str(KERNELS_DIR / "lstm_units.c")]
SHARED_SOURCES = [str(KERNELS_DIR / "pool.c"), str(KERNELS_DIR / "dispatch.c")]
# -ffp-contract=fast: a * b + c as one fused multiply-add, which ISO C mode otherwise forbids; the
# library's products are multiply-adds, and fusing them halves their instructions
COMPILE_ARGS = ["-O3", "-std=c11", "-ffp-contract=fast", "-pthread"]
X86_VARIANTS = {
    "avx512": ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq", "-mavx2", "-mfma"],
    "avx2": ["-mavx2", "-mfma"],
    "baseline": [],
}


def _source_hash() -> str:
    spec = importlib.util.spec_from_file_location("_kernel_sources", KERNELS_DIR / "_sources.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.source_hash(KERNELS_DIR)


def _variants() -> dict:
    if os.environ.get("SCRATCHRNN_NATIVE", "").strip().lower() in ("1", "true", "yes"):
        return {"native": ["-march=native"], "baseline": []}
    if platform.machine().lower() in ("x86_64", "amd64"):
        return X86_VARIANTS
    return {"baseline": []}


class BuildKernels(build_ext):
    """Compiles the kernel files once per variant, with their own flags, and links them into one
    library with the parts they share (pool.c, dispatch.c)."""

    def run(self):
        self.force = True               # never a library or object left in build/ by older sources
        super().run()

    def get_ext_filename(self, fullname):
        # asked with the dotted name, and with its last part alone (get_ext_fullpath)
        if fullname in (KERNELS, KERNELS.rpartition(".")[2]):
            # a ctypes library, not an extension module: no interpreter's tag in its name
            return os.path.join(*fullname.split(".")) + ".so"
        return super().get_ext_filename(fullname)

    def build_extension(self, ext):
        if ext.name != KERNELS:
            return super().build_extension(ext)
        self.compiler.force = True
        hash_macro = [("SCRATCHRNN_SOURCE_HASH", f'"{_source_hash()}"')]
        objects = self.compiler.compile(SHARED_SOURCES, output_dir=os.path.join(self.build_temp, "shared"),
                                        macros=hash_macro, extra_postargs=COMPILE_ARGS)
        for variant, flags in _variants().items():
            try:
                objects += self.compiler.compile(
                    VARIANT_SOURCES, output_dir=os.path.join(self.build_temp, variant),
                    macros=[("SCRATCHRNN_VARIANT", variant)], extra_postargs=COMPILE_ARGS + flags)
            except CompileError:
                if variant == "baseline":
                    raise
                print(f"scratchrnn: the {variant} kernels did not compile; built without them",
                      file=sys.stderr)
        path = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.compiler.link_shared_object(objects, path, libraries=["m"], extra_postargs=["-pthread"],
                                         target_lang="c")


class PlatformWheel(bdist_wheel):
    """The wheel's tag: ``py3-none`` (any Python 3: the library is loaded with ctypes) and the platform
    the library was compiled for (a wheel without it is ``py3-none-any``)."""

    def get_tag(self):
        _, _, platform_tag = super().get_tag()
        return "py3", "none", platform_tag


ext_modules = [] if sys.platform == "win32" else [
    Extension(KERNELS, VARIANT_SOURCES + SHARED_SOURCES,
              depends=[str(KERNELS_DIR / name)
                       for name in ("kernels.h", "panels.h", "gated.h", "pool.h", "_sources.py")],
              optional=True)]
setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildKernels, "bdist_wheel": PlatformWheel})
