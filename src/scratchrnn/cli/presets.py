"""Settings of ``scratchrnn train`` that come from a name (``--preset``) or a file (``--config``).

A preset or a config file holds values for the train command's options, keyed by the options' names
with underscores (``hidden``, ``lr_schedule``, ``batch_size``: the parser's ``dest``); each value is
checked as the option itself checks it, and a key no option has is refused, naming it. What the
command line gives wins over the file, and the file over the preset (a file may name its preset:
``preset = "char-lstm"``). TOML files are read with tomllib (Python 3.11 and later) or tomli (3.9, 3.10);
a file named ``*.json`` is JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

MAX_CONFIG_BYTES = 1 << 20
# keys a config file may not hold: they say which run to continue or where settings come from
NOT_IN_FILES = ("resume", "config", "help")


@dataclass(frozen=True)
class Preset:
    summary: str          # one line: what it is and where it comes from
    values: dict          # option dest -> value


PRESETS = {
    "chapter": Preset(
        "the chapter's RNN (D2L 8.5): 512 hidden units on one-hot inputs, SGD at lr 1 with clipping at 1, "
        "500 epochs of 32 x 35 sequential batches (the defaults)",
        {"cell": "rnn", "layers": 1, "hidden": 512, "activation": "tanh", "embedding": "onehot",
         "dropout": 0.0, "init": "book", "forget_bias": 0.0, "optimizer": "sgd", "lr": 1.0,
         "lr_schedule": "constant", "warmup": 0, "batch_size": 32, "num_steps": 35, "sampling": "sequential",
         "clip": 1.0, "epochs": 500}),
    "char-lstm": Preset(
        "the LSTM of docs/results/shakespeare.md (lstm-2x512-scaled, 1.428 nats per character on "
        "tinyshakespeare's held-out text): 2 layers of 512 units, a learned embedding of 64, dropout 0.2, "
        "scaled initial weights with forget bias 1, Adam at 2e-3 with 50 warm-up steps and a cosine "
        "schedule, clipping at 1, 64 x 100 random batches, 10 epochs (1,560 steps of tinyshakespeare, "
        "where that run reached its best)",
        {"cell": "lstm", "layers": 2, "hidden": 512, "activation": "tanh", "embedding": "learned",
         "embed_dim": 64, "dropout": 0.2, "init": "scaled", "forget_bias": 1.0, "optimizer": "adam",
         "lr": 2e-3, "lr_schedule": "cosine", "warmup": 50, "batch_size": 64, "num_steps": 100,
         "sampling": "random", "clip": 1.0, "epochs": 10, "predict_every": 1}),
}


def read_config_file(path: str) -> dict:
    """The settings in a TOML or JSON file, as a mapping (not yet checked against the options)."""
    file = Path(path)
    try:
        if not file.is_file():
            raise UserError(f"--config {path}: {'not found' if not file.exists() else 'not a regular file'}")
        if file.stat().st_size > MAX_CONFIG_BYTES:
            raise UserError(f"--config {path} is larger than {MAX_CONFIG_BYTES >> 10} KiB: not a file of settings")
        data = file.read_bytes()
    except OSError as err:
        raise UserError(f"--config {path}: {err.strerror or err}") from None
    try:
        if file.suffix.lower() == ".json":
            values = json.loads(data.decode("utf-8-sig"))
        else:
            values = _toml().loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(f"--config {path} is not UTF-8 text") from None
    except ValueError as err:            # json.JSONDecodeError and tomllib.TOMLDecodeError both are
        kind = "JSON" if file.suffix.lower() == ".json" else "TOML"
        raise UserError(f"--config {path} is not valid {kind}: {err}") from None
    if not isinstance(values, dict):
        raise UserError(f"--config {path} must hold a table of settings (key = value), not {type(values).__name__}")
    return values


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
        return tomllib
    try:
        import tomli
    except ImportError:
        raise UserError("--config with a TOML file needs tomli on Python before 3.11: pip install tomli "
                        "(or write the settings as JSON, in a file named *.json)") from None
    return tomli


def checked_values(values: dict, parser: argparse.ArgumentParser, source: str) -> dict:
    """``values`` (option dest -> value) as the options would have parsed them; UserError names a
    key no option has or a value its option refuses."""
    actions = {action.dest: action for action in parser._actions if action.option_strings}
    unknown = sorted(key for key in values if key not in actions or key in NOT_IN_FILES)
    if unknown:
        raise UserError(f"{source}: {', '.join(map(repr, unknown))} {'is not an option' if len(unknown) == 1 else 'are not options'} "
                        f"of scratchrnn train (keys are the options' names with underscores: batch_size, lr_schedule)")
    return {key: _checked(actions[key], value, f"{source}: {key}") for key, value in values.items()}


def _checked(action: argparse.Action, value, where: str):
    if action.nargs == 0:                           # a switch: --no-clip, --tensorboard
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, not {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):  # --prefix: a list of texts (or one)
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(item, str) for item in items):
            raise UserError(f"{where} must be a text or a list of texts, not {value!r}")
        return items
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where} must be a number or a text, not {value!r}")
    try:
        converted = action.type(str(value)) if action.type is not None else str(value)
    except argparse.ArgumentTypeError as err:
        raise UserError(f"{where}: {err}") from None
    except ValueError:
        raise UserError(f"{where} must be a number, not {value!r}") from None
    if action.choices is not None and converted not in action.choices:
        raise UserError(f"{where} must be one of {', '.join(map(str, action.choices))}, not {value!r}")
    return converted


def given_options(argv: list[str], build) -> set[str]:
    """The dests of the train options ``argv`` gives (``build()``: a fresh parser and its train parser)."""
    parser, train = build()
    for action in train._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv))) - {"command"}


def with_settings(args: argparse.Namespace, build) -> tuple[argparse.Namespace, str | None]:
    """``args`` parsed again with the preset's and the config file's values as the defaults (so what the
    command line gives wins), and a line saying where the settings came from (None: neither given)."""
    if args.preset is None and args.config is None:
        return args, None
    parser, train = build()
    from_file = read_config_file(args.config) if args.config is not None else {}
    named = from_file.pop("preset", None)
    if named is not None and named not in PRESETS:
        raise UserError(f"--config {args.config}: preset must be one of {', '.join(PRESETS)}, not {named!r}")
    preset = args.preset or named
    values = checked_values(PRESETS[preset].values, train, f"preset {preset}") if preset else {}
    values.update(checked_values(from_file, train, f"--config {args.config}"))
    given = given_options(args._argv, build)
    train.set_defaults(**values)
    settled = parser.parse_args(args._argv)
    settled._argv = args._argv
    if "clip" in given and "no_clip" not in given:
        settled.no_clip = False           # --clip on the command line outdoes a file's no_clip = true
    where = [f"preset {preset} ({PRESETS[preset].summary})"] if preset else []
    if from_file:
        where.append(f"{args.config} ({', '.join(sorted(from_file))})")
    return settled, f"settings: {' and '.join(where)}; options on the command line win"
