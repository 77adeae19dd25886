"""README.md and README.zh-CN.md tell the same command line, and it is the one the parser defines.

The command-line section of each README (``## The command line`` / ``## 命令行``) starts with a code
block of usage lines, ``scratchrnn SUBCOMMAND [--option ...]`` with continuation lines indented below. Both
READMEs must list the same subcommands with the same options, and those must be exactly the options
``scratchrnn.cli.build_parser`` defines: an option added to the parser and not to both READMEs (or one
removed from the parser and still documented) fails here.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from scratchrnn.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
READMES = {"en": (ROOT / "README.md", "The command line"), "zh": (ROOT / "README.zh-CN.md", "命令行")}
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
MAKE_TARGET = re.compile(r"\bmake ([\w./-]*\w)")


def _section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next heading of that level."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def documented_command_line(language: str) -> dict[str, set[str]]:
    """Subcommand -> the options its usage lines list, from the README's command-line code blocks."""
    path, heading = READMES[language]
    # the section's first code block is the usage; later ones are examples
    block = re.search(r"^```[^\n]*\n(.*?)^```", _section(path.read_text(encoding="utf-8"), heading),
                      re.M | re.S)
    assert block, f"{path.name}: no code block under '## {heading}'"
    usage: dict[str, set[str]] = {}
    current = None
    for line in block.group(1).splitlines():
        start = re.match(r"scratchrnn (\w+)", line)
        if start:
            current = usage.setdefault(start.group(1), set())
        elif not line.startswith((" ", "\t")):
            current = None          # something else: a comment, another command
        if current is not None:
            current.update(OPTION.findall(line))
    return usage


def parser_command_line() -> dict[str, set[str]]:
    """Subcommand -> the long options scratchrnn's parser defines for it (--help aside)."""
    parser = build_parser()
    subcommands = next(action for action in parser._actions
                       if isinstance(action, argparse._SubParsersAction)).choices
    return {name: {option for action in sub._actions for option in action.option_strings
                   if option.startswith("--") and option != "--help"}
            for name, sub in subcommands.items()}


def test_both_readmes_list_the_same_commands_and_options():
    english, chinese = documented_command_line("en"), documented_command_line("zh")
    assert {"train", "generate"} <= set(english)
    assert sorted(english) == sorted(chinese)
    for command in english:
        assert english[command] == chinese[command], (
            f"scratchrnn {command}: only in README.md: {sorted(english[command] - chinese[command])}; "
            f"only in README.zh-CN.md: {sorted(chinese[command] - english[command])}")


def test_readme_lists_every_option_the_parser_defines():
    documented, defined = documented_command_line("en"), parser_command_line()
    assert sorted(documented) == sorted(defined), "README.md's usage lines and the parser's subcommands"
    for command in defined:
        missing, stale = defined[command] - documented[command], documented[command] - defined[command]
        assert not missing and not stale, (
            f"scratchrnn {command}: options the parser has and README.md's usage lines lack: {sorted(missing)}; "
            f"listed there but not in the parser: {sorted(stale)} (update README.md and README.zh-CN.md)")


def test_both_readmes_name_the_same_make_targets():
    english, chinese = (set(MAKE_TARGET.findall(path.read_text(encoding="utf-8"))) for path, _ in READMES.values())
    assert {"demo", "test"} <= english
    assert english == chinese, (f"only in README.md: {sorted(english - chinese)}; "
                                f"only in README.zh-CN.md: {sorted(chinese - english)}")
    makefile = (ROOT / "Makefile").read_text()
    rule_heads = {name for head in re.findall(r"^([\w .%-]+?)\s*:(?!=)", makefile, re.M) for name in head.split()}
    plain = {target for target in english if re.fullmatch(r"[\w-]+", target)}
    assert plain <= rule_heads, f"make targets the READMEs name that the Makefile lacks: {sorted(plain - rule_heads)}"
