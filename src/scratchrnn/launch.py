"""Where the ``scratchrnn`` command starts (the console script, and ``python -m scratchrnn``).

A Ctrl-C while the program is still importing its modules would print a KeyboardInterrupt traceback.
Here, before anything else is imported, SIGINT is set to end the program with one line and status
130; ``cli.main`` then puts Python's own handler back, so each command can say what it kept. This is
the command's concern alone: ``import scratchrnn`` touches no signal handler.
"""
import os
import signal
import sys


def _interrupted_while_starting(signum, frame):
    os.write(2, b"scratchrnn: interrupted\n")
    os._exit(130)


def main() -> int:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from .cli import main as cli_main

    return cli_main()
