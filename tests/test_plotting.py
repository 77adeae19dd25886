"""Perplexity figures: plain numbers on the log axis, whole epochs, the learning rate where it changes."""
import math

import pytest

from scratchrnn import plotting
from scratchrnn.plotting import plain_number, plot_perplexity, plot_training


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plotting.pyplot().close("all")


def _records(epochs, lr=lambda e: 1.0, val_every=1):
    return [{"epoch": e, "train_perplexity": 1 + 25 * math.exp(-e / 4),
             "val_perplexity": 1.2 + 25 * math.exp(-e / 4) if e % val_every == 0 else None,
             "lr": lr(e), "tokens_per_sec": 1000.0, "seconds": 0.1, "world_size": 1} for e in epochs]


def _labels(axis_labels):
    return [t.get_text() for t in axis_labels if t.get_text()]


def _drawn(fig):
    fig.canvas.draw()
    return fig


@pytest.mark.parametrize("value, text", [(1, "1"), (1.5, "1.5"), (2.5, "2.5"), (25, "25"), (100, "100"),
                                         (999.6, "1,000"), (12000, "12,000"), (0.3, "0.3"),
                                         (0.001, "0.001"), (0, "0"), (1e-5, "1.0e-05")])
def test_plain_number(value, text):
    assert plain_number(value) == text


@pytest.mark.parametrize("lo, hi", [(13.5, 27), (0.95, 30), (1.0, 1e6), (1.02, 1.17), (200, 3000), (1, 1.3)])
def test_log_ticks_are_few_plain_and_inside(lo, hi):
    ticks = plotting._log_ticks(lo, hi)
    assert 2 <= len(ticks) <= plotting._MAX_TICKS
    assert all(lo <= t <= hi for t in ticks)
    assert all("e" not in plain_number(t) for t in ticks)


def test_three_epochs_integer_ticks_plain_log_labels(tmp_path):
    fig = _drawn(plotting._training_figure(_records([1, 2, 3]), "three"))
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    xs = [x for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]]
    assert xs == [1, 2, 3]
    labels = _labels(ax.get_yticklabels())
    assert len(labels) >= 2
    for label in labels:
        float(label.replace(",", ""))           # a plain number: no 10^x, no mathtext
    assert [line.get_label() for line in ax.get_lines()] == ["training", "validation"]


def test_long_run_with_a_schedule_gets_a_learning_rate_panel():
    records = _records(range(1, 501), lr=lambda e: 0.01 * (1 + math.cos(math.pi * e / 500)) / 2, val_every=10)
    fig = _drawn(plotting._training_figure(records))
    ax, lr_ax = fig.axes
    assert lr_ax.get_ylabel() == "learning rate" and lr_ax.get_xlabel() == "epoch"
    assert all(float(x).is_integer() for x in lr_ax.get_xticks())
    assert len(ax.get_lines()[1].get_xdata()) == 50          # validation every 10 epochs only
    for label in _labels(ax.get_yticklabels()) + _labels(lr_ax.get_yticklabels()):
        float(label.replace(",", ""))


def test_constant_lr_no_panel_and_bad_values_left_out():
    records = _records([3, 1, 2, 4])
    records[0]["train_perplexity"] = float("nan")       # epoch 3 diverged
    records.append(dict(records[1], train_perplexity=9.0))  # epoch 1 again (resumed): the later wins
    records[2]["val_perplexity"] = None
    fig = plotting._training_figure(records)
    (ax,) = fig.axes
    train, val = ax.get_lines()
    assert list(train.get_xdata()) == [1, 2, 4] and train.get_ydata()[0] == 9.0
    assert list(val.get_xdata()) == [1, 3, 4]


def test_plot_training_writes_png_and_svg(tmp_path):
    paths = plot_training(_records([1, 2]), tmp_path / "sub" / "perplexity", "title")
    assert [p.name for p in paths] == ["perplexity.png", "perplexity.svg"]
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paths[1].read_bytes()[:1000]
    with pytest.raises(ValueError, match="records is empty"):
        plot_training([], tmp_path / "none")


def test_plot_perplexity_keeps_working_with_plain_labels(tmp_path):
    paths = plot_perplexity([30.0, 12.0, 5.0, 3.0], tmp_path / "p", "t", validation=[(2, 13.0), (4, 4.0)],
                            extra_curves={"other": [28.0, 20.0, 9.0]})
    assert all(p.is_file() for p in paths)
    fig = _drawn(plotting._perplexity_figure([30.0, 12.0, 5.0], "", (), None, "train"))
    (ax,) = fig.axes
    assert all(float(x).is_integer() for x in ax.get_xticks())
    for label in _labels(ax.get_yticklabels()):
        float(label.replace(",", ""))
