"""``scratchrnn explain``: the explorer's views of one text, written as one HTML file that holds its data
and its scripts and needs no network when opened (for sharing, and for the notebooks)."""
from __future__ import annotations

import os
from pathlib import Path

from .common import HelpFormatter, positive_int

DEFAULT_MAX_CHARS = 500
MAX_TEXT_BYTES = 16 << 20       # the text is read whole; only its beginning is explained


def add_parser(sub) -> None:
    e = sub.add_parser(
        "explain", formatter_class=HelpFormatter,
        help="write the explorer's views of a text as one self-contained HTML file",
        description="Run a trained model over the beginning of a text and write what it computes as one HTML "
                    "file (data and scripts inside, no network needed to open it): the text coloured by "
                    "surprise with the candidates at each position, every unit's activation and the units "
                    "that track simple features, the saliency of each earlier character for any position "
                    "with the gradient norm through time, gate saturation, and the run's training curves. "
                    "Gradients are taken at every position, which costs time growing with the square of "
                    "--max-chars.")
    e.add_argument("run_dir", metavar="RUN_DIR",
                   help="a run directory (its best/ or last/, see --which), or a checkpoint directory")
    e.add_argument("--text", metavar="FILE", required=True, help="UTF-8 text to explain")
    e.add_argument("--html", metavar="OUT", required=True, help="the HTML file to write")
    e.add_argument("--which", choices=("best", "last"), default="best",
                   help="in a run directory: the best epoch's weights or the newest")
    e.add_argument("--max-chars", type=positive_int, default=DEFAULT_MAX_CHARS, metavar="N",
                   help="explain the first N characters of the text (after cleaning it as the training text was)")
    e.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _read_text(path: str) -> str:
    from ..errors import UserError

    file = Path(path)
    try:
        if not file.is_file():
            raise UserError(f"--text {path}: {'not a regular file' if file.exists() else 'not found'}")
        with open(file, "rb") as f:
            data = f.read(MAX_TEXT_BYTES)
        # a cut inside a character at the limit is dropped, not refused
        return data.decode("utf-8-sig", errors="ignore" if len(data) == MAX_TEXT_BYTES else "strict")
    except UnicodeDecodeError:
        raise UserError(f"--text {path} is not UTF-8 text") from None
    except OSError as err:
        raise UserError(f"--text {path}: {err.strerror or err}") from None


def run(args) -> int:
    from .. import explorer
    from ..analysis import ReferenceModel, training_curves
    from ..checkpoint import load_checkpoint
    from ..data import clean_prefix
    from ..errors import UserError
    from ..explorer.bundle import analyze_text, model_summary
    from ..generation import encode_prefix

    out = Path(args.html)
    if out.exists() and not args.overwrite:
        raise UserError(f"--html {out} exists; give --overwrite to replace it")
    if not out.parent.is_dir():
        raise UserError(f"--html {out}: the directory {out.parent} does not exist")
    ckpt = load_checkpoint(args.run_dir, args.which)
    if ckpt.token != "char":
        raise UserError(f"{ckpt.path} is a {ckpt.token}-level model; explain shows character models")
    text = clean_prefix(_read_text(args.text), ckpt.cleaning)[:args.max_chars]
    try:
        ids = encode_prefix(text, ckpt.vocab, ckpt.cleaning)
    except UserError as err:
        raise UserError(f"--text {args.text}: {err}".replace("the prefix", "the text")) from None
    model_id = Path(args.run_dir).resolve().name
    data = {"model": model_summary(ckpt.model, ckpt.vocab.idx_to_token, model_id=model_id, cleaning=ckpt.cleaning,
                                   info=ckpt.info),
            "analysis": analyze_text(ReferenceModel(ckpt.params, ckpt.model), ids, text, all_gradients=True),
            "curves": training_curves(args.run_dir)}
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(explorer.page(data), encoding="utf-8")
        os.replace(temporary, out)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise UserError(f"cannot write --html {out} ({err.strerror or err})") from None
    print(f"scratchrnn: wrote {out} ({len(text)} characters explained)")
    return 0
