"""What every command's parser shares: argument types that refuse bad values in one line, the parser
whose errors are one line and exit status 2, and the help layout."""
from __future__ import annotations

import argparse
import math

from ..kernels._library import MAX_THREADS

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130      # as a shell reports a program ended by SIGINT


def checked(convert, accept, expected: str):
    """An argparse type: ``convert`` the text, then refuse values ``accept`` rejects, naming ``expected``."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, got {text}")
        return value
    return parse


positive_int = checked(int, lambda v: v >= 1, "a positive integer")
non_negative_int = checked(int, lambda v: v >= 0, "an integer >= 0")
positive_float = checked(float, lambda v: v > 0 and math.isfinite(v), "a positive number")
fraction = checked(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
non_negative_float = checked(float, lambda v: v >= 0 and math.isfinite(v), "a number >= 0")
decay = checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")


def max_tokens(text: str) -> int | str:
    if text.lower() == "all":
        return "all"
    return positive_int(text)


class Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line and exit status 2 like every other user error."""

    def error(self, message):
        # the usage block would bury the one line that matters; --help is one command away
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """The help of every command: "(default: X)" after an option's text where X says something, and
    descriptions laid out as written where they hold line breaks (the list of experiments)."""

    def _get_help_string(self, action):
        # "not given" (None, a flag's False) explains itself, and a text that names its default in
        # its own words would otherwise say it twice
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


probability = checked(float, lambda v: 0 < v <= 1, "a number in (0, 1]")
thread_count = checked(int, lambda v: 1 <= v <= MAX_THREADS, f"a number of threads from 1 to {MAX_THREADS}")
