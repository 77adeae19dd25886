"""A run read back from its directory's ``last/`` to be continued (``runner.run(..., "resume")``).

What may change when a run is continued: how long it trains (``train.epochs`` and ``train.max_steps``,
raised only: lowered, the run would not be the one it was started as), how many checkpoints it keeps,
this process's time budget, TensorBoard's event files, and where its text lies (a text that moved is
found by its new path when its SHA-256 is the one recorded). Everything else is the saved run's.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .checkpoint import CARRIED_SLOT, Checkpoint
from .distributed import World
from .errors import UserError
from .run_config import DataFile, RunConfig
from .rundir import RunDirectory
from .training import TrainState, json_safe_ints


@dataclass
class SavedRun:
    """What rank 0 read from a run directory's ``last/`` to continue it (sent to the other ranks)."""

    config: RunConfig        # the saved run's settings, with what may change taken from the request
    checkpoint: Checkpoint
    state: TrainState
    train_state: dict        # the checkpoint's train_state as written

    @classmethod
    def read(cls, directory: RunDirectory, asked: RunConfig) -> "SavedRun":
        ckpt = directory.load("last")
        saved = ckpt.train_state or {}
        if not isinstance(saved.get("run"), dict) or not isinstance(saved.get("progress"), dict):
            raise UserError(f"{directory.path}/last holds no training state to resume from (written by an "
                            f"older scratchrnn?)")
        try:
            config = RunConfig.from_dict(saved["run"])
            state = TrainState.from_dict(saved["progress"])
            config.validate()
        except (TypeError, ValueError) as err:
            raise UserError(f"{directory.path}/last has a training state this scratchrnn cannot use "
                            f"({err})") from None
        _take_request(config, asked, directory)
        if asked.data is not None:
            config.data = _moved_text(asked.data, config, saved.get("data_file"), directory)
        if state.epoch >= config.train.epochs and state.batch == 0:
            raise UserError(f"the run in {directory.path} has done its {state.epoch} epochs; resume with more "
                            f"epochs to train on")
        if config.train.max_steps and state.step >= config.train.max_steps:
            raise UserError(f"the run in {directory.path} has taken its {state.step} steps (max_steps); resume "
                            f"with a higher max_steps to train on")
        return cls(config, ckpt, state, saved)

    def restore(self, backend, optimizer, world: World) -> tuple[TrainState, object]:
        """Take up where the saved run stopped: its optimizer slots and dropout masks go to ``backend``
        and ``optimizer``; returns its progress and, inside an epoch, the state of this rank's rows."""
        dropout_rng = self.train_state.get("dropout_rng")
        if dropout_rng is not None:
            backend.set_dropout_rng_state(json_safe_ints(dropout_rng, to_text=False))
        arrays = dict(self.checkpoint.optimizer_state)
        carried = [arrays.pop(f"{CARRIED_SLOT}/{i}") for i in range(len(arrays))
                   if f"{CARRIED_SLOT}/{i}" in arrays]
        where = f"{self.config.out}/last"
        try:
            optimizer.load_state_arrays(backend, arrays, self.train_state.get("optimizer_steps", 0))
        except ValueError as err:
            raise UserError(f"{where}: {err}") from None
        batch_size = self.config.train.batch_size
        if not (carried and self.state.batch):
            return self.state, None
        # saved for the whole batch (all ranks' rows): this rank continues its own rows
        if any(len(a) != batch_size for a in carried):
            raise UserError(f"{where}: the carried state does not match batch_size {batch_size}")
        return self.state, backend.state_from_numpy(tuple(world.rows(a) for a in carried))


def _take_request(config: RunConfig, asked: RunConfig, directory: RunDirectory) -> None:
    """What a resumed run takes from the request: longer training, checkpoints kept, a time budget."""
    config.out = asked.out
    for name, value, own in (("epochs", asked.train.epochs, config.train.epochs),
                             ("max_steps", asked.train.max_steps, config.train.max_steps)):
        if not value:                  # 0: as the run was started
            continue
        if own and value < own:
            raise UserError(f"{name} {value} is below the {own} the run in {directory.path} was started with: "
                            f"a resumed run trains as long as it was started to, or longer")
        setattr(config.train, name, value)
    if asked.keep:
        config.keep = asked.keep
    config.max_minutes = asked.max_minutes           # this process's budget, not the run's
    config.tensorboard = config.tensorboard or asked.tensorboard


def _moved_text(path: str, config: RunConfig, recorded, directory: RunDirectory) -> str:
    """The new path of the run's text, once its content is known to be the same."""
    if config.data is None:
        raise UserError(f"the run in {directory.path} trained on the bundled book, not on a file: resume it "
                        f"without data")
    if not os.path.isfile(path):
        raise UserError(f"data file not found: {path}")
    if isinstance(recorded, dict) and isinstance(recorded.get("sha256"), str):
        found = DataFile.of(path)
        if found.sha256 != recorded["sha256"]:
            raise UserError(f"{path} is not the text the run in {directory.path} trained on ({found.bytes:,} "
                            f"bytes, SHA-256 {found.sha256[:12]}...; the run's: {recorded.get('bytes')} bytes, "
                            f"{recorded['sha256'][:12]}...)")
    # a run saved before the hash was recorded: the text's fingerprint is compared once it is read
    return os.path.abspath(path)
