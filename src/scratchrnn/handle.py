"""``scratchrnn.load``: a trained model in one call, for a script or a notebook.

    import scratchrnn
    model = scratchrnn.load("runs/shakespeare")                 # a run directory's best/, or a checkpoint
    print(model.generate("ROMEO:", num_chars=200, temperature=0.8, seed=1))
    model.perplexity("To be, or not to be, that is the question")

What ``scratchrnn generate`` does, without the command line: the checkpoint is read and checked once,
its weights go to the backend asked for, and every call cleans and encodes its text as the training
text was (a character the model never saw is refused, naming it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .checkpoint import Checkpoint, load_checkpoint
from .errors import UserError
from .generation import Decoding, encode_prefix, generate_ids, vocab_text
from .model import ModelConfig

PERPLEXITY_CHUNK = 256          # characters read per forward call when scoring a text (the state is carried)


class Model:
    """A trained model, ready to continue text and to score it (see ``load``).

    ``config`` is the model (a ``ModelConfig``: cell, layers, hidden units, vocabulary size ...),
    ``vocab`` its vocabulary, ``cleaning`` how text is cleaned before it is read, ``settings`` the
    run's settings (a ``RunConfig``) where the checkpoint was written by a training run, else None,
    ``info`` what the checkpoint records (epoch, scores), ``path`` the checkpoint directory read.
    """

    def __init__(self, checkpoint: Checkpoint, backend: str = "numpy", device: str = "cpu"):
        from . import backends
        from .run_config import RunConfig

        self.checkpoint = checkpoint
        self.config: ModelConfig = checkpoint.model
        self.vocab = checkpoint.vocab
        self.cleaning = checkpoint.cleaning
        self.info = checkpoint.info
        self.path = checkpoint.path
        saved = (checkpoint.train_state or {}).get("run")
        try:
            self.settings = RunConfig.from_dict(saved) if isinstance(saved, dict) else None
        except (TypeError, ValueError):
            self.settings = None          # settings an older scratchrnn wrote: the weights still serve
        self.backend_name = backend
        self._backend = backends.create(backend, checkpoint.params, checkpoint.model, device=device)

    def __repr__(self) -> str:
        m = self.config
        return (f"Model({self.path}: {m.cell}, {m.num_layers} x {m.num_hiddens}, vocabulary {m.vocab_size}, "
                f"{self.backend_name})")

    @property
    def default_prefix(self) -> str:
        """The prompt training continued (the text's first words), as ``scratchrnn generate`` uses."""
        prompts = self.info.get("prefixes")
        if isinstance(prompts, list) and prompts and isinstance(prompts[0], str) and prompts[0]:
            return prompts[0]
        from .generation import CHAPTER_PREFIX
        return CHAPTER_PREFIX

    def generate(self, prefix: str | Sequence[str] | None = None, num_chars: int = 50, *,
                 temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None, strategy: str | None = None) -> str | list[str]:
        """The prefix and its continuation of ``num_chars`` characters; a list of prefixes gives a list,
        continued together. Greedy (the chapter's ``predict_ch8``) unless a sampling option is given
        (``temperature``, ``top_k``, ``top_p``, ``seed``) or ``strategy="sample"``; a seed makes the
        sample repeatable."""
        sampling = any(option is not None for option in (temperature, top_k, top_p, seed))
        decoding = Decoding(strategy or ("sample" if sampling else "greedy"), 1.0 if temperature is None
                            else temperature, top_k, top_p, seed)
        if isinstance(num_chars, bool) or not isinstance(num_chars, (int, np.integer)) or num_chars < 0:
            raise UserError(f"num_chars must be an integer >= 0, not {num_chars!r}")
        one = prefix is None or isinstance(prefix, str)
        prefixes = [self.default_prefix if prefix is None else prefix] if one else list(prefix)
        rows = [encode_prefix(p, self.vocab, self.cleaning) for p in prefixes]
        texts = [vocab_text(self.vocab, ids) for ids in generate_ids(self._backend, rows, num_chars, decoding)]
        return texts[0] if one else texts

    def perplexity(self, text: str) -> float:
        """The model's perplexity on ``text``: each character after the first predicted from those before
        it, in order, the state carried (as held-out text is scored while training)."""
        from .training import evaluate_perplexity

        try:
            ids = encode_prefix(text, self.vocab, self.cleaning)
        except UserError as err:            # encode_prefix speaks of a prompt
            raise UserError(str(err).replace("the prefix", "the text to score")) from None
        if len(ids) < 2:
            raise UserError("text to score needs at least two characters (the first is only read)")
        return evaluate_perplexity(self._backend, np.asarray(ids, dtype=np.int64), 1, PERPLEXITY_CHUNK)


def load(path: str | Path, which: str = "best", backend: str = "numpy", device: str = "cpu") -> Model:
    """The trained model in ``path``: a run directory (its ``best/``, or ``which="last"``) or a checkpoint
    directory, on ``backend`` (any backend reads any checkpoint). A missing or damaged checkpoint
    raises UserError, naming what is wrong."""
    return Model(load_checkpoint(path, which), backend=backend, device=device)
