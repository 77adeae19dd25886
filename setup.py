"""Builds the optional compiled kernels; everything else about the package is in pyproject.toml.

The kernels (the greedy decoder and the training loops, ``src/scratchrnn/kernels/``) are plain C,
built into one CPython extension module, ``scratchrnn.kernels._kernels`` (``module.c`` checks every
array a kernel is handed against its sizes, then calls the kernel with the GIL released). pip compiles
it at install time; ``optional=True``: where it cannot be compiled (no C compiler, no pthreads) the
install still succeeds and the backends run their own loops. From Python 3.11 on it is built for
CPython's limited API (an ``abi3`` file, and wheel, that serves 3.11 and every later version); before,
for the running version.

Portable: on x86-64 the kernel files (the decoder, the RNN's and the gated cells' loops) are compiled
three times, for AVX-512, for AVX2 with FMA and for the architecture's baseline, under names of their
own, into the one module; it picks what the processor it runs on has. Elsewhere (aarch64, ...) only the
baseline is built. (A build for the building machine, ``-march=native``, was measured no faster than
the AVX2 variant on an AMD EPYC, 0.96x to 1.15x by loop, median 1.01x: benchmarks/README.md.)

Every build compiles every file anew (no object or library from ``build/`` is reused), and the module
records the hash of its sources, which the loader checks against the sources beside it.
"""
import importlib.util
import os
import platform
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    from setuptools.errors import CompileError
except ImportError:                                  # setuptools before 59
    from distutils.errors import CompileError

KERNELS = "scratchrnn.kernels._kernels"
KERNELS_DIR = Path("src/scratchrnn/kernels")
VARIANT_SOURCES = [str(KERNELS_DIR / name) for name in ("greedy_decode.c", "recurrence.c", "gated.c",
                                                         "lstm_units.c", "variant.c")]
SHARED_SOURCES = [str(KERNELS_DIR / "pool.c")]
MODULE_SOURCES = [str(KERNELS_DIR / "module.c")]
# -ffp-contract=fast: a * b + c as one fused multiply-add, which ISO C mode otherwise forbids; the
# library's products are multiply-adds, and fusing them halves their instructions. The -Werror flags:
# an entry point whose arguments differ from its type in api.h fails the build rather than warns.
COMPILE_ARGS = ["-O3", "-std=c11", "-ffp-contract=fast", "-pthread", "-fvisibility=hidden",
                "-Werror=incompatible-pointer-types", "-Werror=implicit-function-declaration"]
# One module for CPython 3.11 and later (the limited API has the buffer protocol from 3.11 on)
LIMITED_API = sys.version_info >= (3, 11)
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
    if platform.machine().lower() in ("x86_64", "amd64"):
        return X86_VARIANTS
    return {"baseline": []}


class BuildKernels(build_ext):
    """Compiles the kernel files once per variant, with their own flags, and links them into one
    extension module with the parts they share (pool.c) and the module's own file (module.c)."""

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
        objects = self.compiler.compile(SHARED_SOURCES, output_dir=os.path.join(self.build_temp, "shared"),
                                        extra_postargs=COMPILE_ARGS)
        built = []
        for variant, flags in _variants().items():
            try:
                objects += self.compiler.compile(
                    VARIANT_SOURCES, output_dir=os.path.join(self.build_temp, variant),
                    macros=[("SCRATCHRNN_VARIANT", variant)], extra_postargs=COMPILE_ARGS + flags)
                built.append(variant)
            except CompileError:
                if variant == "baseline":
                    raise
                print(f"scratchrnn: the {variant} kernels did not compile; built without them",
                      file=sys.stderr)
        macros = [("SCRATCHRNN_SOURCE_HASH", f'"{_source_hash()}"'),
                  *((f"SCRATCHRNN_HAS_{variant}", "1") for variant in built)]
        if LIMITED_API:
            macros.append(("Py_LIMITED_API", "0x030B0000"))
        objects += self.compiler.compile(MODULE_SOURCES, output_dir=os.path.join(self.build_temp, "module"),
                                         macros=macros, extra_postargs=COMPILE_ARGS)
        path = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        # a module of another name left beside it (another Python's, or the ctypes library of older
        # versions) would be found first by the loader: only the one just built stays
        for stale in Path(path).parent.glob("_kernels*.so"):
            if stale.name != Path(path).name:
                stale.unlink()
        self.compiler.link_shared_object(objects, path, libraries=["m", "dl"], extra_postargs=["-pthread"],
                                         target_lang="c")


ext_modules = [] if sys.platform == "win32" else [
    Extension(KERNELS, MODULE_SOURCES + VARIANT_SOURCES + SHARED_SOURCES,
              depends=[str(KERNELS_DIR / name)
                       for name in ("api.h", "kernels.h", "panels.h", "gated.h", "pool.h", "_sources.py")],
              py_limited_api=LIMITED_API, optional=True)]
# the wheel of a limited-API build is tagged cp311-abi3: it installs on 3.11 and every later CPython
options = {"bdist_wheel": {"py_limited_api": "cp311"}} if LIMITED_API and ext_modules else {}
setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildKernels}, options=options)
