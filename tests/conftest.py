"""Settings for the whole test session, before any test (or any process a test starts) runs.

- ``SCRATCHRNN_CACHE``: a temporary directory, so that no test reads or writes the user's cache (the
  wisdom file of measured step-loop choices, kernels/wisdom.py) and every session starts without one.
- ``SCRATCHRNN_LOOPS``: ``own`` unless the caller chose otherwise, so that no test's outcome depends on
  a measurement made with the real clock on a busy machine. Tests of the compiled loops force
  ``compiled`` (contract.switch_compiled_loops); tests of the choosing logic inject their timings.
  ``SCRATCHRNN_LOOPS=compiled make test`` runs the whole suite on the compiled loops.
"""
import os
import shutil
import tempfile

_session_cache = tempfile.mkdtemp(prefix="scratchrnn-test-cache-")
os.environ["SCRATCHRNN_CACHE"] = _session_cache
os.environ.setdefault("SCRATCHRNN_LOOPS", "own")


def pytest_unconfigure(config):
    shutil.rmtree(_session_cache, ignore_errors=True)
