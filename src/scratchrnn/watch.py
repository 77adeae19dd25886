"""What a person watching a run sees besides the lines it prints: a progress bar that counts optimizer
steps with the epoch beside it, TensorBoard event files (``RunConfig.tensorboard``), and, when the run
trains inside a Jupyter kernel, its curves redrawn in the notebook after every evaluation.

The bar's rate is the run's average over this process's time (tqdm with no smoothing), and the tokens/s
beside it is the run's average over its training time, the figure the summary ends with. The event
files go to ``DIR/tensorboard/``; a resumed run writes on from its checkpoint's step, and TensorBoard
drops what an earlier process wrote past that step (``purge_step``).
"""
from __future__ import annotations

import importlib.util
import io
import math
import sys
from pathlib import Path

from .errors import UserError
from .progress import EpochResult, StepResult

TENSORBOARD_SUBDIR = "tensorboard"
TENSORBOARD_PACKAGE = "tensorboardX"
TENSORBOARD_INSTALL = "pip install tensorboardX, or pip install '.[tensorboard]' in a clone of scratchrnn"


def check_tensorboard_writer() -> None:
    """Refuse a run that asks for event files where the writer is not installed."""
    if importlib.util.find_spec(TENSORBOARD_PACKAGE) is None:
        raise UserError(f"tensorboard event files need the {TENSORBOARD_PACKAGE} package, which is not "
                        f"installed: {TENSORBOARD_INSTALL}")


def run_header(config, model, backend, corpus, world) -> str:
    """The line a run starts with: what trains on what, its parameters, how long, how the best is chosen."""
    train = config.train
    parameters = sum(math.prod(shape) for shape in model.param_shapes().values())
    limits = "".join([f", at most {train.max_steps:,} steps" if train.max_steps else "",
                      f", at most {config.max_minutes:g} minutes" if config.max_minutes else ""])
    start = f"; from the weights of {config.init_from}" if config.init_from else ""
    return (f"training {backend!r}, {parameters:,} parameters, on {len(corpus.train):,} tokens "
            f"(vocabulary {len(corpus.vocab)}), "
            + (f"held-out {len(corpus.heldout):,} tokens, " if corpus.heldout is not None else "")
            + f"{train.optimizer} lr {train.lr:g}, {train.epochs} epochs of {train.sampling} batches "
            f"{train.batch_size} x {train.num_steps}{limits}; best by {config.best_by}{start}"
            + (f"; {world.size} ranks of {train.batch_size // world.size} rows each" if world.distributed else ""))


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (IPython is looked up, never imported here)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


class RunWatch:
    """The bar, the event files and the notebook's plot of one run (rank 0's; each part optional)."""

    def __init__(self, *, total_steps: int, done_steps: int, epochs: int, done_epochs: int,
                 bar: bool = True, tensorboard_dir: Path | None = None, live: bool = False, title: str = ""):
        self.epochs, self.title = epochs, title
        self._bar = self._writer = self._display = None
        self._figures = ""                 # what the bar shows beside the speed: the epoch, perplexities
        if bar:
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, initial=done_steps, unit="step", file=sys.stderr,
                             dynamic_ncols=True, smoothing=0)
            self._figures = self._epoch_text(done_epochs)
            self._bar.set_postfix_str(self._figures, refresh=False)
        if tensorboard_dir is not None:
            from tensorboardX import SummaryWriter
            self._writer = SummaryWriter(str(tensorboard_dir), purge_step=done_steps or None, flush_secs=10)
        self._live = live

    @property
    def wants_records(self) -> bool:
        """Whether ``reached`` draws the metrics it is given (only the notebook's plot does)."""
        return self._live

    def _epoch_text(self, done_epochs: int) -> str:
        return f"epoch {min(done_epochs + 1, self.epochs)}/{self.epochs}"

    # -- as training goes ---------------------------------------------------------------------------
    def step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def reached(self, result: EpochResult | StepResult, done_epochs: int, tokens_per_sec: float,
                records: list[dict], total_steps: int | None = None) -> None:
        """An epoch ended or an evaluation was made: the bar's figures, the event files, the plot."""
        if self._bar is not None:
            if total_steps is not None:
                self._bar.total = max(total_steps, self._bar.n)
            held_out = f", held-out {result.val_perplexity:.2f}" if result.val_perplexity is not None else ""
            self._figures = f"{self._epoch_text(done_epochs)}, perplexity {result.perplexity:.2f}{held_out}"
            self.speed(tokens_per_sec)
        if self._writer is not None:
            self._write_scalars(result, tokens_per_sec)
        if self._live and records:
            self._redraw(records)

    def speed(self, tokens_per_sec: float) -> None:
        """Show the run's average speed beside the bar (at the end: the figure the summary prints)."""
        if self._bar is not None and math.isfinite(tokens_per_sec):
            self._bar.set_postfix_str(f"{self._figures}, {tokens_per_sec:,.0f} tokens/s")

    def _write_scalars(self, result, tokens_per_sec: float) -> None:
        step = result.step
        for name, perplexity in (("train", result.perplexity), ("val", result.val_perplexity)):
            if perplexity is not None and math.isfinite(perplexity) and perplexity > 0:
                self._writer.add_scalar(f"perplexity/{name}", perplexity, step)
                self._writer.add_scalar(f"loss/{name}", math.log(perplexity), step)    # nats per token
        if math.isfinite(result.lr):
            self._writer.add_scalar("lr", result.lr, step)
        if math.isfinite(tokens_per_sec):
            self._writer.add_scalar("tokens_per_sec", tokens_per_sec, step)

    def _redraw(self, records: list[dict]) -> None:
        from IPython.display import Image, display

        from .plotting import pyplot, training_figure
        figure = training_figure(records, self.title)
        png = io.BytesIO()
        figure.savefig(png, format="png")
        pyplot().close(figure)
        image = Image(data=png.getvalue(), format="png")
        if self._display is None:
            self._display = display(image, display_id=True)
        else:
            self._display.update(image)

    # -- printing between updates, and the end ----------------------------------------------------------
    def clear(self) -> None:
        if self._bar is not None:
            self._bar.clear()

    def refresh(self) -> None:
        if self._bar is not None:
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
