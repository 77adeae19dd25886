"""The chapter's six exercises as experiments: ``scratchrnn experiment NAME``.

Every experiment trains a few models with the package's own pieces -- ``data.load_corpus`` and
``SeqDataLoader`` for batches, ``backends.create`` for the model, ``training.train`` for the loop,
``generation`` for text -- and writes ``DIR/report.md`` (tables and PNG plots beside it) and
``DIR/results.json`` (every number measured). ``--quick`` shrinks the runs to a few seconds; the
full runs behind ``docs/exercises.md`` use the sizes in ``harness.FULL``.

``registry`` names the experiments and runs one; ``harness`` trains a run (a run that diverges is a
result, recorded, never raised); ``report`` writes tables and plots; each exercise is a module of its
own with a ``run(ctx) -> (Report, results)``.
"""
from .harness import BLOWUP_FACTOR, FULL, QUICK, Context, RunOutcome, RunSpec, Scale, train_run
from .registry import (EXPERIMENTS, REPORT_NAME, RESULTS_NAME, Experiment, describe_experiments,
                       run_experiment)
from .report import Panel, Report, plot_panels

__all__ = ["BLOWUP_FACTOR", "EXPERIMENTS", "FULL", "QUICK", "REPORT_NAME", "RESULTS_NAME", "Context",
           "Experiment", "Panel", "Report", "RunOutcome", "RunSpec", "Scale", "describe_experiments",
           "plot_panels", "run_experiment", "train_run"]
