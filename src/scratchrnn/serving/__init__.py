"""``scratchrnn serve``: a trained run behind an HTTP server that speaks OpenAI's completions API, with
the explorer page (``scratchrnn.explorer``) at ``/``.

- ``served``: the run being served (its checkpoint, a backend, the reference model for the analyses);
- ``batcher``: the worker that decodes every active request's continuations together;
- ``openai_api``: the request and response shapes and the error body;
- ``app``: the FastAPI application over them.

FastAPI and uvicorn (with httptools and uvloop) and threadpoolctl come with the optional extra
``serve``; ``require_extra`` says how to install them.
Nothing here is imported by ``import scratchrnn``.
"""
from __future__ import annotations

import importlib.util

from ..errors import UserError

INSTALL_HINT = "pip install '.[serve]'"     # from a clone of the repository: the package is not on PyPI


def require_extra() -> None:
    """Refuse (UserError, one line) when the packages the server runs on are not installed."""
    missing = [name for name in ("fastapi", "uvicorn", "threadpoolctl") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"scratchrnn serve needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                        f"not installed: run {INSTALL_HINT} in a clone of scratchrnn")
