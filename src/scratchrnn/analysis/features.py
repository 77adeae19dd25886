"""Which units track what: simple features of a text, how well each unit follows each one, and how often
a gate sits at its extremes.

Karpathy, Johnson and Fei-Fei ("Visualizing and Understanding Recurrent Networks", 2015) found cells of
character LSTMs that track quotes, line length and the like by looking at activations beside such
features; here the search is automatic. A binary feature (inside quotes or not) is scored by the AUC of
a unit's activation for telling its two classes apart; a numeric one (position in the line) by Pearson's
correlation. Both are reported with their sign, so 0.5 / 0 is "nothing" and 1 / +-1 is "exactly".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

@dataclass(frozen=True)
class Feature:
    """A feature of a text: one value per character (as read at that position)."""

    name: str
    kind: str                   # "binary" (0 or 1) or "numeric"
    description: str
    values: np.ndarray          # (T,)


def _line_positions(text: str) -> np.ndarray:
    """For each character, how many characters of its line come before it."""
    out, position = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        out[i] = position
        position = 0 if ch == "\n" else position + 1
    return out


def _word_positions(text: str) -> np.ndarray:
    """For each character inside a word, its place in the word from 1; 0 elsewhere."""
    out, position = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        position = position + 1 if ch.isalnum() or (ch == "'" and position) else 0
        out[i] = position
    return out


def _inside(text: str, opening: str, closing: str) -> np.ndarray:
    """1 from an opening mark up to (not including) its closing mark; marks that open and close alike
    (a straight quote) alternate."""
    out, depth = np.zeros(len(text)), 0
    for i, ch in enumerate(text):
        if ch in opening and (ch not in closing or depth == 0):
            depth += 1
        elif ch in closing and depth:
            depth -= 1
        out[i] = depth > 0
    return out


def text_features(text: str) -> list[Feature]:
    """The features of ``text`` that vary along it (a feature constant over the text -- no quote in it,
    no line break -- tells nothing and is left out)."""
    after_newline = np.zeros(len(text))
    after_newline[1:] = [ch == "\n" for ch in text[:-1]]
    candidates = [
        Feature("inside quotes", "binary", "between an opening and a closing quotation mark",
                _inside(text, "\u201c\"", "\u201d\"")),
        Feature("inside parentheses", "binary", "between ( and )", _inside(text, "(", ")")),
        Feature("position in line", "numeric", "characters since the last line break", _line_positions(text)),
        Feature("after a newline", "binary", "the character just after a line break", after_newline),
        Feature("inside a word", "binary", "a letter or digit (or an apostrophe inside a word)",
                (_word_positions(text) > 0).astype(float)),
        Feature("position in word", "numeric", "place in the current word, from 1 (0 outside words)",
                _word_positions(text)),
    ]
    if "\n" not in text[:-1]:
        # one line: the position in it is the position in the text, which any drifting unit follows
        candidates = [f for f in candidates if f.name != "position in line"]
    return [f for f in candidates if len(f.values) > 1 and np.ptp(f.values) > 0]


def average_ranks(values: np.ndarray) -> np.ndarray:
    """The ranks (1 ... n) of each column's values, ties given the mean of the ranks they span."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, axis=0, kind="stable")
    ordered = np.take_along_axis(values, order, axis=0)
    n = values.shape[0]
    ranks = np.empty_like(values)
    columns = values.reshape(n, -1).shape[1]
    flat_ordered, flat_order = ordered.reshape(n, columns), order.reshape(n, columns)
    flat_ranks = ranks.reshape(n, columns)
    for c in range(columns):
        column = flat_ordered[:, c]
        starts = np.flatnonzero(np.r_[True, column[1:] != column[:-1]])
        ends = np.r_[starts[1:], n]
        mean_rank = (starts + ends + 1) / 2.0           # ranks start + 1 ... end, averaged
        flat_ranks[flat_order[:, c], c] = np.repeat(mean_rank, ends - starts)
    return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Area under the ROC curve of each column of ``scores`` (T, units) for binary ``labels`` (T,): the
    probability that a random positive scores above a random negative (ties count one half)."""
    labels = np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if not positives or not negatives:
        raise ValueError("auc needs both classes among the labels")
    ranks = average_ranks(np.asarray(scores, dtype=np.float64).reshape(len(labels), -1))
    return (ranks[labels].sum(axis=0) - positives * (positives + 1) / 2) / (positives * negatives)


def pearson(feature: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pearson's correlation of ``feature`` (T,) with each column of ``values`` (T, units); a column
    that does not vary correlates 0."""
    x = np.asarray(feature, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64).reshape(len(x), -1)
    x = x - x.mean()
    y = y - y.mean(axis=0)
    denominator = np.sqrt((x @ x) * (y * y).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (x @ y) / denominator
    return np.where(denominator > 0, r, 0.0)


@dataclass(frozen=True)
class UnitMatch:
    """A unit found to track a feature: where it is and how well (``score``, signed, see ``strength``)."""

    layer: int
    series: str                 # "H", "C", or a gate's letter
    unit: int
    score: float                # AUC for a binary feature, Pearson's r for a numeric one

    def strength(self, kind: str) -> float:
        """How well, whatever the direction: |r|, or how far the AUC is from chance, as 2 |AUC - 0.5|."""
        return abs(self.score) if kind == "numeric" else 2 * abs(self.score - 0.5)


def unit_search(feature: Feature, series: list[dict[str, np.ndarray]], top: int = 5) -> list[UnitMatch]:
    """The ``top`` units that track ``feature`` best, over every layer's series (``reference.layer_series``)."""
    matches = []
    for layer, by_name in enumerate(series):
        for name, values in by_name.items():
            scores = auc(feature.values, values) if feature.kind == "binary" else pearson(feature.values, values)
            matches.extend(UnitMatch(layer, name, int(unit), float(score)) for unit, score in enumerate(scores))
    matches.sort(key=lambda m: -m.strength(feature.kind))
    return matches[:top]


def gate_saturation(gate: np.ndarray, low: float = 0.1, high: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """For each unit of a gate's values (T, units): the fraction of steps it is left-saturated (below
    ``low``) and right-saturated (above ``high``), as Karpathy et al. plot them. A gate near 0 blocks
    what passes through it, near 1 lets it all through; a unit that is neither most of the time acts
    as a gentle mix."""
    gate = np.asarray(gate)
    if gate.ndim != 2 or gate.shape[0] < 1:
        raise ValueError(f"gate must be (steps, units) with at least one step, not {gate.shape}")
    return (gate < low).mean(axis=0), (gate > high).mean(axis=0)
