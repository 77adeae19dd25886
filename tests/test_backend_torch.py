"""The PyTorch backend against the NumPy reference (runs in its own process: make test-torch)."""
from contract import BackendContract


class TestTorchBackend(BackendContract):
    backend_name = "torch"
