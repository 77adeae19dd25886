"""What ``--help`` and the READMEs claim, checked against what the code accepts, wherever a machine can
check it: every option a help text names exists (with the choice it names), ``--resume``'s help lists
exactly what a resumed run accepts, every SCRATCHRNN_ variable named exists, every pip extra named is one
pyproject.toml defines, and the Python versions the README promises parse the package."""
from __future__ import annotations

import argparse
import ast
import re
import tomllib
from pathlib import Path

import pytest

from scratchrnn.cli import build_parser
from scratchrnn.cli.presets import PRESETS
from scratchrnn.cli.train import RESUME_OPTIONS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "scratchrnn"
READMES = [ROOT / "README.md", ROOT / "README.zh-CN.md"]
FLAG_AND_WORD = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)(?:[ =]([a-z][a-z0-9-]*))?")
# commands of other programs quoted in help texts (torchrun's own options are not ours)
OTHER_COMMANDS = re.compile(r"`(?:torchrun|python -m torch)[^`]*`|torchrun( --[a-z-]+( [A-Z]+)?)+")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _texts(parser: argparse.ArgumentParser) -> list[str]:
    """Every text ``--help`` shows for a command: its description, its groups' and its options' help."""
    texts = [parser.description or ""]
    texts += [group.description or "" for group in parser._action_groups]
    texts += [action.help or "" for action in parser._actions]
    return [OTHER_COMMANDS.sub("", text) for text in texts]


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_a_help_text_names_exists_with_the_choice_it_names(command):
    parser = _subcommands()[command]
    options = {**_options(parser), "--version": None, "--help": None}
    for text in _texts(parser):
        for flag, word in FLAG_AND_WORD.findall(text):
            assert flag in options, f"scratchrnn {command} --help names {flag}, which it does not have: {text!r}"
            action = options[flag]
            if word and action is not None and action.choices is not None and word not in ("and", "or"):
                assert word in action.choices, f"{command}: '{flag} {word}' in {text!r}: not one of {action.choices}"


def test_a_help_text_naming_a_missing_option_fails_here():
    """The check can fail: a made-up option in a help text is found."""
    parser = argparse.ArgumentParser(description="see --no-such-flag and --cell lstm")
    parser.add_argument("--cell", choices=("rnn", "gru"), help="--cell transformer is not one")
    texts = _texts(parser)
    found = [flag for text in texts for flag, _ in FLAG_AND_WORD.findall(text)]
    assert "--no-such-flag" in found and "--no-such-flag" not in _options(parser)
    assert ("--cell", "transformer") in [pair for text in texts for pair in FLAG_AND_WORD.findall(text)]


def test_resume_help_lists_exactly_what_a_resumed_run_accepts():
    train = _subcommands()["train"]
    options = _options(train)
    resume_help = options["--resume"].help
    named = set(re.findall(r"--[a-z][a-z0-9-]*", resume_help))
    accepted = {f"--{name.replace('_', '-')}" for name in RESUME_OPTIONS}
    assert named == accepted, (sorted(named - accepted), sorted(accepted - named))
    assert accepted <= set(options)


def test_every_preset_is_offered_and_explained():
    action = _options(_subcommands()["train"])["--preset"]
    assert tuple(action.choices) == tuple(PRESETS)
    for name, preset in PRESETS.items():
        assert f"{name}: {preset.summary}" in action.help


def _source_strings() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py")) + \
        (ROOT / "setup.py").read_text() + (ROOT / "Makefile").read_text()


def test_every_scratchrnn_variable_named_exists():
    source = _source_strings()
    named = set()
    for text in [*(path.read_text(encoding="utf-8") for path in READMES),
                 *(text for parser in _subcommands().values() for text in _texts(parser))]:
        named |= set(re.findall(r"SCRATCHRNN_[A-Z_]+[A-Z]", text))
    assert named, "the READMEs name the environment variables they document"
    missing = sorted(name for name in named if f'"{name}"' not in source and f"{name}=" not in source
                     and f"'{name}'" not in source)
    assert not missing, f"named in the READMEs or --help but read nowhere: {missing}"


def test_every_pip_extra_named_exists():
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    texts = [path.read_text(encoding="utf-8") for path in READMES] + [_source_strings()]
    named = {extra for text in texts for group in re.findall(r"\.\[([a-z,]+)\]", text) for extra in group.split(",")}
    assert named and named <= extras, f"extras named but not defined: {sorted(named - extras)}"
    assert not any("scratchrnn[" in text for text in texts), "scratchrnn is on no index: name '.[extra]'"


def test_every_module_parses_as_the_oldest_python_the_package_supports():
    """pyproject.toml says requires-python >= 3.9: no syntax of a later Python in the package."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.9"
    for path in list(PACKAGE.rglob("*.py")) + [ROOT / "setup.py"]:
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))
