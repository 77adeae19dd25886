"""The run a server serves: loaded once at start-up, never chosen by a request."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import backends
from ..analysis import ReferenceModel
from ..checkpoint import Checkpoint, load_checkpoint
from ..data import clean_prefix
from ..errors import UserError
from ..generation import check_weights_fit, encode_prefix


@dataclass
class ServedRun:
    """A run directory's checkpoint, a backend holding it, and the reference model the analyses use."""

    run_dir: Path
    checkpoint: Checkpoint
    backend: object
    reference: ReferenceModel
    model_id: str
    created: int

    @classmethod
    def load(cls, run_dir: str | Path, which: str = "best", backend: str = "numpy") -> "ServedRun":
        ckpt = load_checkpoint(run_dir, which)
        if ckpt.token != "char":
            raise UserError(f"{ckpt.path} is a {ckpt.token}-level model; scratchrnn serve serves character models")
        run_dir = Path(run_dir).resolve()
        model = backends.create(backend, ckpt.params, ckpt.model)
        check_weights_fit(ckpt.params, model.dtype)        # refused at start-up, not in a request
        created = int((ckpt.path / "config.json").stat().st_mtime)
        return cls(run_dir, ckpt, model, ReferenceModel(ckpt.params, ckpt.model), run_dir.name or "scratchrnn",
                   created)

    @property
    def tokens(self) -> list[str]:
        return list(self.checkpoint.vocab.idx_to_token)

    def clean(self, text: str) -> str:
        """Text as the model's training text was cleaned (the chapter's: lower-case letters and spaces)."""
        return clean_prefix(text, self.checkpoint.cleaning)

    def encode(self, text: str) -> list[int]:
        """The token ids of a text, cleaned; UserError for an empty one or a character outside the
        vocabulary (naming it)."""
        return encode_prefix(text, self.checkpoint.vocab, self.checkpoint.cleaning)
