"""The chapter's six exercises as experiments: ``scratchrnn experiment NAME``.

Every experiment trains a few models with the package's own pieces -- ``data.load_corpus`` and
``SeqDataLoader`` for batches, ``backends.create`` for the model, ``training.train`` for the loop,
``generation`` for text -- and writes ``DIR/report.md`` (tables and PNG plots beside it) and
``DIR/results.json`` (every number measured). ``--quick`` shrinks the runs to tiny models and a few
epochs; the full runs behind ``docs/exercises.md`` use the sizes in ``harness.FULL``.

``registry`` names the experiments and runs one; ``harness`` trains a run (a run that diverges is a
result, recorded, never raised); ``report`` writes tables and plots; each exercise is a module of its
own with a ``run(ctx) -> (Report, results)``.
"""
from .harness import FULL, QUICK
from .registry import EXPERIMENTS, describe_experiments, run_experiment

# what ``scratchrnn experiment`` needs; the pieces an experiment is made of are in their modules
__all__ = ["EXPERIMENTS", "FULL", "QUICK", "describe_experiments", "run_experiment"]
