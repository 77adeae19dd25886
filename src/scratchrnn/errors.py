"""Errors a user can fix. The CLI prints their message and exits with status 2, without a traceback."""


class UserError(Exception):
    """Bad input: a wrong option, a missing file, a corpus too short, a corrupt checkpoint."""


class BackendUnavailable(UserError):
    """The framework behind a backend is not installed (the message names the extra to install)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"training diverged at epoch {epoch}: the loss became {loss}")
        self.epoch, self.loss = epoch, loss


class RunInterrupted(Exception):
    """Training was stopped at once (a second Ctrl-C); the message says what the run directory kept."""
