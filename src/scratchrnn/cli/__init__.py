"""The ``scratchrnn`` command: one module per subcommand (``train``, ``generate``, ``experiment``, ``serve``,
``explain``), each owning its parser (``add_parser``) and its command (``run``).

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

from .. import __version__, kernels
from ..errors import RunInterrupted, UserError
from . import experiment, explain, generate, serve, train
from .common import EXIT_INTERRUPTED, EXIT_USER_ERROR, HelpFormatter, Parser

COMMANDS = {"train": train, "generate": generate, "experiment": experiment, "serve": serve, "explain": explain}


class _PrintVersion(argparse.Action):
    """``--version``: one line, whatever the terminal's width (argparse's own action wraps it)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"scratchrnn {__version__} (compiled kernels: {kernels.status()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="scratchrnn",
        description="Character-level RNN language models from scratch (Dive into Deep Learning, 8.5).",
        formatter_class=HelpFormatter)
    parser.add_argument("--version", action=_PrintVersion,
                        help="show the version, and whether the compiled kernels (greedy generation, the "
                             "recurrences of a training step) are built and on, then exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    for command in COMMANDS.values():
        command.add_parser(sub)

    return parser


def main(argv=None) -> int:
    # Ctrl-C raises KeyboardInterrupt again from here on (scratchrnn.launch kept it to one line until
    # now), so that each command can say what it kept
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    # the command's own words, for ``train --nproc`` to start its ranks with
    args._argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return COMMANDS[args.command].run(args)
    except UserError as err:
        print(f"scratchrnn: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except RunInterrupted as err:
        print(f"scratchrnn: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        # Ctrl-C outside training (start-up, loading, generation): nothing half-written is left
        print("scratchrnn: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


