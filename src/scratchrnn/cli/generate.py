"""``scratchrnn generate``: its parser and the command.

Which decoding the options ask for (sampling options imply sampling), where the prefixes come from
(``--prefix``; ``--prefix-file``, a whole file as one primer, lines and all; ``--prefixes-file``, one
prefix a line), and the output: one continuation is written as it is made, a block at a time, so its
length is bounded by patience rather than memory; several are made together and printed when done,
after a memory estimate, a line ``---`` between two (a continuation of a raw text can span lines); a
reader that goes away (``| head``) ends the command quietly with exit status 0, and characters the
output's encoding lacks are escaped (console.SafeWriter).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..backends import BACKENDS
from ..errors import UserError
from ..generation import CHAPTER_PREFIX as DEFAULT_PREFIX
from .common import HelpFormatter, non_negative_int, positive_float, positive_int, probability

# flags that only mean something when characters are drawn: each implies --strategy sample
_SAMPLING_FLAGS = ("--temperature", "--alpha", "--top-k", "--top-p", "--seed", "--num-samples")
MAX_PREFIX_FILE_BYTES = 16 << 20     # prefixes are read whole; a file this big is not a list of prompts
OUTPUT_BLOCK = 1 << 14               # tokens made between two writes when one continuation is printed
SEPARATOR = "---"                    # the line between two continuations (--json has none)


class _ReaderGone(Exception):
    """The reader of stdout went away (a closed pipe): nobody is left to generate for."""


def _decoding_from(args):
    """The ``Decoding`` the options ask for: sampling options imply sampling, and are refused with an
    explicit ``--strategy greedy``."""
    from ..generation import Decoding

    given = [flag for flag, value in zip(_SAMPLING_FLAGS, (args.temperature, args.alpha, args.top_k,
                                                          args.top_p, args.seed, args.num_samples > 1 or None))
             if value is not None]
    if args.strategy == "greedy" and given:
        raise UserError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to sampling, but "
                        f"--strategy greedy always takes the likeliest character: drop one or the other")
    strategy = args.strategy or ("sample" if given else "greedy")
    temperature = 1 / args.alpha if args.alpha else (args.temperature or 1.0)
    return Decoding(strategy, temperature, args.top_k, args.top_p, args.seed)


def _read_text_file(path: str, flag: str) -> str:
    """A UTF-8 file of prompts, read whole (line ends as "\n", a byte-order mark dropped)."""
    from ..memory import format_bytes

    file = Path(path)
    try:
        if not file.exists():
            raise UserError(f"{flag} {path}: not found")
        if not file.is_file():
            raise UserError(f"{flag} {path}: not a regular file")
        size = file.stat().st_size
        if size > MAX_PREFIX_FILE_BYTES:
            raise UserError(f"{flag} {path} holds {format_bytes(size)}; prefix files are read "
                            f"whole, up to {format_bytes(MAX_PREFIX_FILE_BYTES)}")
        return file.read_text(encoding="utf-8-sig")       # a byte-order mark is not part of a prefix
    except UnicodeDecodeError:
        raise UserError(f"{flag} {path} is not UTF-8 text") from None
    except OSError as err:
        raise UserError(f"{flag} {path}: {err.strerror or err}") from None


def _read_prefix_file(path: str) -> str:
    """A whole UTF-8 file as one prefix (a multi-line primer: a scene's opening, a letter's head)."""
    text = _read_text_file(path, "--prefix-file")
    if not text:
        raise UserError(f"--prefix-file {path} holds no prefix (it is empty)")
    return text


def _read_prefixes_file(path: str) -> list[str]:
    """The non-empty lines of a UTF-8 file, each a prefix."""
    text = _read_text_file(path, "--prefixes-file")
    prefixes = [line for line in text.split("\n") if line]      # read_text made every line end "\n"
    if not prefixes:
        raise UserError(f"--prefixes-file {path} holds no prefix (no non-empty line)")
    return prefixes


def add_parser(sub) -> None:
    g = sub.add_parser(
        "generate", formatter_class=HelpFormatter,
        help="continue a prefix with a trained model",
        description="Load a checkpoint (written by any backend) and continue one or more prefixes. "
                    "Greedy decoding of the rnn cell in float32 on the CPU runs on a small compiled "
                    "decoder where the package was built with a C compiler and the prefixes are no more "
                    "than the machine's vector width serves at once (scratchrnn --version says whether "
                    "it is built and on; "
                    "SCRATCHRNN_NO_KERNEL=1 turns it off); otherwise in the backend's own loop. Both "
                    "compute the same sums in a different order, so their texts part only where two "
                    "characters tie to within float32 rounding. One continuation is printed as it is "
                    "made, so its length is not bounded by memory; several are printed when all are "
                    f"done, with a line '{SEPARATOR}' between two (--json: a list), and a request too big "
                    "for the memory is refused with an estimate.")
    g.add_argument("checkpoint", metavar="CHECKPOINT_DIR",
                   help="a checkpoint directory, or a run directory (its best/ or last/, see --which)")
    g.add_argument("--which", choices=("best", "last"), default="best",
                   help="in a run directory: the best epoch's weights or the newest")
    g.add_argument("--prefix", action="append", default=None, metavar="TEXT",
                   help=f"text to continue; repeat to continue several at once as one batch (default, "
                        f"when no --prefix, --prefix-file or --prefixes-file is given: the prompt training used, the "
                        f"text's first words, or '{DEFAULT_PREFIX}'). It is cleaned like the training "
                        f"text; a character the model's vocabulary lacks is refused, naming it (the "
                        f"book's predict_ch8 would read it as <unk>, which the model never learned to "
                        f"read; predict_ch8 here refuses it too)")
    g.add_argument("--prefix-file", metavar="PATH", default=None,
                   help="UTF-8 text file read whole as one prefix, line breaks and all (a multi-line "
                        "primer), continued after those of --prefix")
    g.add_argument("--prefixes-file", metavar="PATH", default=None,
                   help="UTF-8 text file with one prefix per line (empty lines are skipped), continued "
                        "after those of --prefix and --prefix-file")
    g.add_argument("--num-chars", type=non_negative_int, default=50, metavar="N",
                   help="characters to generate after each prefix")
    g.add_argument("--num-samples", type=positive_int, default=1, metavar="N",
                   help=f"continuations of each prefix ('{SEPARATOR}' between two); more than 1 implies "
                        f"--strategy sample")
    g.add_argument("--backend", choices=BACKENDS, default="numpy",
                   help="framework that runs the model (any backend reads any checkpoint)")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run")
    g.add_argument("--strategy", choices=("greedy", "sample"), default=None,
                   help="greedy: the most likely character (the chapter's predict_ch8); sample: draw from "
                        "the model's distribution. By default greedy, or sample as soon as any of "
                        "--temperature, --alpha, --top-k, --top-p, --seed or --num-samples above 1 is "
                        "given; with an explicit --strategy greedy those options are refused")
    temp = g.add_mutually_exclusive_group()
    temp.add_argument("--temperature", type=positive_float, default=None, metavar="T",
                      help="sample from softmax(logits / T): below 1 sharper, above 1 flatter (default: 1)")
    temp.add_argument("--alpha", type=positive_float, default=None, metavar="A",
                      help="the chapter's exercise form q ~ P^alpha, i.e. temperature 1/alpha")
    g.add_argument("--top-k", type=positive_int, default=None, metavar="K",
                   help="sample only among the K likeliest characters (default: all)")
    g.add_argument("--top-p", type=probability, default=None, metavar="P",
                   help="sample only among the likeliest characters whose mass reaches P (default: all)")
    g.add_argument("--seed", type=non_negative_int, default=None, metavar="S",
                   help="seed of the sampling: the same seed gives the same text (default: a new text "
                        "every run)")
    g.add_argument("--stream", action="store_true",
                   help="flush every character as it is generated (one prefix and one sample, no --json)")
    g.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def run(args) -> int:
    from .. import backends
    from ..checkpoint import load_checkpoint
    from ..console import SafeWriter
    from ..generation import encode_prefix, generation_bytes
    from ..memory import require

    decoding = _decoding_from(args)
    prefixes = list(args.prefix or [])
    if args.prefix_file is not None:
        prefixes.append(_read_prefix_file(args.prefix_file))
    if args.prefixes_file is not None:
        prefixes += _read_prefixes_file(args.prefixes_file)
    ckpt = load_checkpoint(args.checkpoint, args.which)
    # the prompt training used for this text (its own first words), else the chapter's
    saved_prompts = ckpt.info.get("prefixes")
    default = saved_prompts[0] if isinstance(saved_prompts, list) and saved_prompts and \
        isinstance(saved_prompts[0], str) and saved_prompts[0] else DEFAULT_PREFIX
    prefixes = prefixes or [default]
    rows = len(prefixes) * args.num_samples
    if args.stream and (rows > 1 or args.json):
        raise UserError("--stream prints one continuation as it is made: give one prefix and one sample, "
                        "no --json")
    encoded = [encode_prefix(p, ckpt.vocab, ckpt.cleaning) for p in prefixes]
    one_line = rows == 1 and not args.json          # printed as it is made, a block at a time
    needed = generation_bytes(rows, args.num_chars, max(map(len, encoded)), len(ckpt.vocab),
                              ckpt.model.num_hiddens, OUTPUT_BLOCK if one_line else None)
    whom = "one continuation" if rows == 1 else f"each of {rows:,} continuations"
    require(needed, f"generating {args.num_chars:,} characters for {whom}",
            "ask for fewer (--num-chars), or print one continuation as it is made (one prefix, one "
            "sample, no --json)")
    backend = backends.create(args.backend, ckpt.params, ckpt.model, device=args.device)
    # only once every check has passed, so that a refusal stays one line
    if not args.json and sys.stderr.isatty() and isinstance(ckpt.info.get("epoch"), int):
        # which weights speak (a run's best/ or last/, and their epoch): for a person at a terminal,
        # on stderr, out of the text's way
        print(f"scratchrnn: {ckpt.path} (epoch {ckpt.info['epoch']})", file=sys.stderr)
    out = SafeWriter(sys.stdout)
    try:
        if one_line:
            _print_as_made(out, backend, ckpt.vocab, encoded[0], args.num_chars, decoding, args.stream)
        else:
            _print_all(out, args, ckpt, backend, prefixes, encoded, decoding)
        out.flush()
    except _ReaderGone:
        pass                            # like cat into a closed pipe: the reader had enough, not an error
    except OSError as err:
        raise UserError(f"cannot write the output ({err.strerror or err})") from None
    except KeyboardInterrupt:
        print("scratchrnn: generation interrupted", file=sys.stderr)
        return 130
    return 0


def _print_as_made(out, backend, vocab, ids, num_chars, decoding, stream) -> None:
    """One continuation, written a block at a time (``--stream``: a character at a time, flushed), so
    its length is bounded by patience, not memory; stops as soon as the reader is gone."""
    from ..generation import generate_blocks, vocab_text

    tokens = vocab.idx_to_token
    out.write(vocab_text(vocab, ids), flush=stream)
    on_step = None
    if stream:
        def on_step(column):
            if not out.write(tokens[int(column[0])], flush=True):
                raise _ReaderGone
    for block in generate_blocks(backend, [ids], num_chars, decoding, on_step, block=OUTPUT_BLOCK):
        if not stream and not out.write(vocab_text(vocab, block[0])):
            raise _ReaderGone
    out.write("\n")


def _print_all(out, args, ckpt, backend, prefixes, encoded, decoding) -> None:
    """Every continuation, made together as one batch, then printed with a separator line between two
    (or as JSON)."""
    from ..generation import generate_ids, vocab_text

    rows = [ids for ids in encoded for _ in range(args.num_samples)]
    texts = [vocab_text(ckpt.vocab, row) for row in generate_ids(backend, rows, args.num_chars, decoding)]
    if args.json:
        results = [{"prefix": prefix, "sample": k + 1, "text": texts[i * args.num_samples + k]}
                   for i, prefix in enumerate(prefixes) for k in range(args.num_samples)]
        record = {"checkpoint": str(ckpt.path), "backend": args.backend, "strategy": decoding.strategy,
                  "temperature": decoding.temperature, "top_k": decoding.top_k, "top_p": decoding.top_p,
                  "seed": decoding.seed, "num_chars": args.num_chars, "num_samples": args.num_samples,
                  "results": results}
        text = json.dumps(record, ensure_ascii=False)
        # an output encoding without some character gets JSON's own escapes, which stay valid JSON
        out.print(text if out.can_write(text) else json.dumps(record))
        return
    for i, text in enumerate(texts):
        if (i and not out.print(SEPARATOR)) or not out.print(text):
            raise _ReaderGone
