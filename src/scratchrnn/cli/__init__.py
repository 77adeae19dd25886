"""The ``scratchrnn`` command: one module per subcommand (``train``, ``generate``, ``experiment``,
``tune``, ``serve``, ``explain``), each owning its parser (``add_parser``) and its command (``run``).

Every mistake a user can make (a bad option value, a missing file, a corpus too short, a damaged
checkpoint, a framework not installed) ends with one line on stderr and exit status 2, before
anything on disk is touched. The program starts in ``scratchrnn.launch``, which keeps a Ctrl-C during
the imports to one line.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from .. import __version__, console, kernels
from ..errors import RunInterrupted, UserError, os_error_message
from . import experiment, explain, generate, serve, train, tune
from .common import EXIT_INTERRUPTED, EXIT_USER_ERROR, HelpFormatter, Parser

COMMANDS = {"train": train, "generate": generate, "experiment": experiment, "tune": tune, "serve": serve,
            "explain": explain}


class _PrintVersion(argparse.Action):
    """``--version``: one line, whatever the terminal's width (argparse's own action wraps it)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"scratchrnn {__version__} (compiled kernels: {kernels.status()}; {kernels.choice.status()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="scratchrnn",
        description="Character-level RNN language models from scratch (Dive into Deep Learning, 8.5).",
        formatter_class=HelpFormatter)
    parser.add_argument("--version", action=_PrintVersion,
                        help="show the version, whether the compiled kernels (greedy generation, the "
                             "step loops of a training step) are built and on, and how the loops are chosen "
                             "(where the wisdom file of measured choices is), then exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    for command in COMMANDS.values():
        command.add_parser(sub)

    return parser


def main(argv=None) -> int:
    # Ctrl-C raises KeyboardInterrupt again from here on (scratchrnn.launch kept it to one line until
    # now), so that each command can say what it kept
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    console.keep_stderr_usable()
    args = build_parser().parse_args(argv)
    # the command's own words, for ``train --nproc`` to start its ranks with
    args._argv = list(sys.argv[1:] if argv is None else argv)
    try:
        _refuse_undecodable(args)
        code = COMMANDS[args.command].run(args)
        # what is still buffered for stdout goes now: a reader gone (``| head``) is quiet, a full disk
        # behind it is one line below, rather than "Exception ignored" from Python's exit
        console.stdout().flush()
        return code
    except UserError as err:
        console.say_error(f"scratchrnn: error: {err}")
        return EXIT_USER_ERROR
    except RunInterrupted as err:
        console.say_error(f"scratchrnn: {err}")
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        # Ctrl-C outside training (start-up, loading, generation): nothing half-written is left
        console.say_error("scratchrnn: interrupted")
        return EXIT_INTERRUPTED
    except OSError as err:
        # the disk or the file system said no (full, read-only, a name too long, a path through a
        # file) somewhere a command has no more to say than the system: every command, one line
        console.say_error(f"scratchrnn: error: {os_error_message(err)}")
        return EXIT_USER_ERROR


def _refuse_undecodable(args) -> None:
    """Refuse names and texts given in bytes that are not UTF-8: Python keeps such bytes as lone
    surrogates, which neither the JSON of a run directory nor a UTF-8 terminal can hold."""
    for name, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and not name.startswith("_") and _has_surrogate(text):
                option = f"--{name.replace('_', '-')}"
                flag = option if option in _flags_of(args) else name.upper()
                shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                raise UserError(f"{flag} '{shown}' holds bytes that are not UTF-8; give names and texts "
                                f"in UTF-8")


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _flags_of(args) -> set[str]:
    """The options of the command ``args`` came from, as typed (``--out``)."""
    command = build_parser()._subparsers._group_actions[0].choices[args.command]
    return {option for action in command._actions for option in action.option_strings}
