"""What scripts/shakespeare.py needs to know about the techniques of docs/regularization.md: how to
describe a configuration's, the ablation around a configuration (each technique taken away, each one
it lacks added), and the ``scratchrnn train`` flags that train it.
"""
from __future__ import annotations

from dataclasses import replace

# The techniques the ablation adds to a configuration that lacks them, at these settings (the book's
# dropout among them), or takes away from one that has them. A technique that cannot apply to a
# configuration (layer norm to an RNN, what needs an embedding to one-hot inputs, dropout between
# layers to a single layer) is left out of its ablation.
TECHNIQUES = {
    "dropout": 0.2, "weight_dropout": 0.3, "input_dropout": 0.1, "hidden_dropout": 0.2, "output_dropout": 0.3,
    "embed_dropout": 0.05, "tie_weights": True, "activation_reg": 2.0, "temporal_reg": 1.0, "layer_norm": True,
}
WORDS = {"dropout": "dropout", "weight_dropout": "weight dropout", "input_dropout": "locked input dropout",
         "hidden_dropout": "locked dropout between layers", "output_dropout": "locked output dropout",
         "embed_dropout": "embedding dropout", "tie_weights": "tied weights", "activation_reg": "AR",
         "temporal_reg": "TAR", "layer_norm": "layer norm"}
NEEDS_EMBEDDING = ("input_dropout", "embed_dropout", "tie_weights")


def technique_words(name: str, value) -> str:
    """A technique at a setting, in words: "weight dropout 0.3", "tied weights"."""
    return WORDS[name] if isinstance(value, bool) else f"{WORDS[name]} {value:g}"


def regularization_words(settings: dict) -> str:
    """The techniques a configuration's ``regularization`` turns on, in words ("" for none)."""
    return ", ".join(technique_words(name, value) for name, value in settings.items() if value)


def _value(configuration, name: str):
    return configuration.dropout if name == "dropout" else configuration.regularization.get(name, False)


def _with(configuration, name: str, value):
    if name == "dropout":
        return replace(configuration, dropout=value)
    settings = {k: v for k, v in {**configuration.regularization, name: value}.items() if v}
    return replace(configuration, regularization=settings)


def applies(configuration, name: str) -> bool:
    """Whether a technique can be part of a configuration at all."""
    if name == "layer_norm":
        return configuration.cell in ("gru", "lstm")
    if name in NEEDS_EMBEDDING:
        return configuration.embed > 0
    if name == "hidden_dropout":
        return configuration.layers > 1
    return True


def ablations(base) -> list[tuple[str, object]]:
    """The configurations of an ablation around ``base``, with what changed in words: each technique it
    has taken away ("without weight dropout 0.3"), each one it lacks added ("with layer norm")."""
    variants = []
    for name, added in TECHNIQUES.items():
        if not applies(base, name):
            continue
        value = _value(base, name)
        if value:     # taken away: a setting of 0 (False) is left out of ``regularization``
            change, variant, suffix = f"without {technique_words(name, value)}", _with(base, name, 0.0), "without"
        else:
            change, variant, suffix = f"with {technique_words(name, added)}", _with(base, name, added), "with"
        variants.append((change, replace(variant, name=f"{base.name}-{suffix}-{name.replace('_', '-')}")))
    return variants


def train_flags(configuration) -> list[str]:
    """``scratchrnn train``'s flags for a configuration (the cosine then runs over the run's steps, not
    over a wall-time budget as in scripts/shakespeare.py)."""
    c = configuration
    flags = ["--cell", c.cell, "--layers", str(c.layers), "--hidden", str(c.hidden)]
    if c.embed:
        flags += ["--embedding", "learned", "--embed-dim", str(c.embed)]
    if c.dropout:
        flags += ["--dropout", f"{c.dropout:g}"]
    for name, value in c.regularization.items():
        flag = {"activation_reg": "--ar", "temporal_reg": "--tar"}.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, bool):
            flags += [flag] if value else []
        elif value:
            flags += [flag, f"{value:g}"]
    flags += ["--init", c.init, "--optimizer", c.optimizer, "--lr", f"{c.lr:g}", "--lr-schedule", c.lr_schedule,
              "--warmup", str(c.warmup), "--batch-size", str(c.batch_size), "--num-steps", str(c.num_steps),
              "--sampling", c.sampling]
    if c.forget_bias:
        flags += ["--forget-bias", f"{c.forget_bias:g}"]
    return flags
