"""Training on several processes (and machines) with PyTorch's own stack: torchrun and torch.distributed.

Data parallel, as nanoGPT does it: every rank holds the whole model, reads its own rows of every
minibatch, computes gradients on them, and one ``all_reduce`` averages the gradients before the one
global-norm clipping and update (``optim.apply_update``). With a global batch of B rows split into N
equal shares, the averaged gradient is the gradient of the mean loss over all B rows, so N ranks take
the same step as one process with batch B (up to the order of floating-point sums).

- ``World``: this process's rank among ``size``, read from the environment torchrun sets (RANK,
  WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE; MASTER_ADDR and MASTER_PORT for the rendezvous). A run
  without torchrun is the world of one, ``SINGLE``, and never touches torch.distributed.
- ``init_world``: joins the process group ("gloo" on the CPU, "nccl" on CUDA) when there are several
  ranks, and gives each rank its share of the cores.
- ``GradientAverager``: the ``reduce`` callable ``apply_update`` runs before clipping. It flattens
  all gradients into one buffer (one collective per step, not one per parameter) and carries one
  extra number in it: whether any rank was asked to stop (Ctrl-C), so that all ranks stop after the
  same batch without a second collective.

The torch backend averages its tensors where they are (GPU included); the numpy backend joins
through NumPy views of the same memory on gloo. Other backends are refused: their frameworks and
torch in one process are not something the suite can vouch for.
"""
from __future__ import annotations

import datetime
import os
import re
import signal
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from . import faults
from .errors import UserError
from .interrupts import importing

BACKENDS = ("torch", "numpy")        # the backends that can train on several ranks
TIMEOUT_ENV = "SCRATCHRNN_DIST_TIMEOUT"
# seconds a rank waits in a collective before giving up: long enough for rank 0 alone to save a
# checkpoint, score validation text and plot while the others wait at the next step
DEFAULT_TIMEOUT_S = 600
MAX_TIMEOUT_S = 1e7                  # about 116 days: longer is a mistake, not a wait
# a rank that has waited this long for the others to join says what it waits for
SAY_WAITING_AFTER_S = 15.0
_joined = False                      # whether this process joined a process group (init_world)


class PeerLost(UserError):
    """A collective failed: another rank died or stopped answering (every surviving rank says so)."""


class FailedElsewhere(UserError):
    """Another rank failed and rank 0 reports why; this rank only exits (no second message)."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run (the world of one by default)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run directory, prints and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def rows(self, array):
        """This rank's share of a batch laid out as rows: rows rank, rank + size, ..."""
        return array[self.rank::self.size] if self.distributed else array

    # -- collectives (each one a no-op in the world of one) --------------------------------------------
    def sum(self, values) -> list[float]:
        """The sums over all ranks of a few numbers, in float64."""
        if not self.distributed:
            return [float(v) for v in values]
        import torch
        import torch.distributed as dist
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"      # NCCL reduces GPU tensors only
        buffer = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
        _collective("all_reduce", buffer)
        return buffer.tolist()

    def broadcast(self, value):
        """Rank 0's ``value`` (any picklable object), on every rank."""
        if not self.distributed:
            return value
        box = [value if self.is_main else None]
        _collective("broadcast_object_list", box, src=0)
        return box[0]

    def gather_rows(self, arrays: tuple) -> tuple | None:
        """Arrays whose rows each rank holds ``rows`` of, put back together on rank 0 (None elsewhere)."""
        if not self.distributed:
            return tuple(arrays)
        parts = [None] * self.size if self.is_main else None
        _collective("gather_object", [np.asarray(a) for a in arrays], parts, dst=0)
        if not self.is_main:
            return None
        whole = []
        for i, first in enumerate(parts[0]):
            rows = sum(part[i].shape[0] for part in parts)
            full = np.empty((rows, *first.shape[1:]), dtype=first.dtype)
            for rank, part in enumerate(parts):
                full[rank::self.size] = part[i]
            whole.append(full)
        return tuple(whole)

    @contextmanager
    def together(self):
        """Run a block on every rank and fail on all of them if it failed on any (a UserError).

        Without this, a rank that refused the data while the others went on would leave them waiting
        in the next collective until the timeout. Rank 0 raises the first failure with the failing
        rank named; the others raise ``FailedElsewhere`` (quiet: the message is printed once).
        """
        error = None
        try:
            yield
        except UserError as err:
            if not self.distributed:
                raise
            error = err
        if not self.distributed:
            return
        messages = [None] * self.size
        _collective("all_gather_object", messages, None if error is None else str(error))
        failed = [(rank, text) for rank, text in enumerate(messages) if text is not None]
        if not failed:
            return
        rank, text = failed[0]
        if self.is_main:
            if error is not None and rank == 0:
                raise error
            raise UserError(f"rank {rank}: {text}")
        raise FailedElsewhere(text) from None


SINGLE = World()


def world_from_env(env=None) -> World:
    """The world torchrun describes in the environment (the world of one without it)."""
    env = os.environ if env is None else env
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
        local_size = int(env.get("LOCAL_WORLD_SIZE", str(size)))
    except ValueError as err:
        raise UserError(f"torchrun's environment is not understood ({err})") from None
    if size < 1 or not 0 <= rank < size or not 0 <= local_rank < local_size:
        raise UserError(f"torchrun's environment is inconsistent: RANK {rank}, WORLD_SIZE {size}, "
                        f"LOCAL_RANK {local_rank}, LOCAL_WORLD_SIZE {local_size}")
    return World(rank, size, local_rank, local_size)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def default_threads(ranks_here: int) -> int:
    """Threads per rank: this machine's cores shared out among its ranks, at least one."""
    return max(1, available_cores() // max(1, ranks_here))


def timeout_seconds(env=None) -> float:
    """SCRATCHRNN_DIST_TIMEOUT's seconds (default DEFAULT_TIMEOUT_S), refused in one line unless a
    number above 0 and at most MAX_TIMEOUT_S (PyTorch keeps it in milliseconds of a 64-bit integer,
    and Python's timedelta cannot hold infinity)."""
    env = os.environ if env is None else env
    text = env.get(TIMEOUT_ENV)
    if text is None:
        return float(DEFAULT_TIMEOUT_S)
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= MAX_TIMEOUT_S:
        raise UserError(f"{TIMEOUT_ENV} must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, "
                        f"not {text!r}")
    return value


def init_world(backend: str, device: str = "cpu", threads: int | None = None, env=None) -> World:
    """Join the run's process group if torchrun started several ranks; return this process's World.

    ``threads`` (default: the cores shared out among this machine's ranks) go to PyTorch's thread pool
    and to the compiled step loops; BLAS libraries read OMP_NUM_THREADS, which ``--nproc`` sets.
    """
    world = world_from_env(env)
    if not world.distributed:
        if threads is not None:
            _set_threads(threads, with_torch=backend == "torch")
        return world
    if backend not in BACKENDS:
        raise UserError(f"the {backend} backend trains in one process only; several ranks need "
                        f"{' or '.join(BACKENDS)}")
    if device == "cuda" and backend != "torch":
        raise UserError("several ranks on CUDA need the torch backend")
    seconds = timeout_seconds(env)
    quiet_torch_logs()
    with importing():
        import torch
        import torch.distributed as dist

    _set_threads(threads or default_threads(world.local_size), with_torch=True)
    if device == "cuda":
        torch.cuda.set_device(world.local_rank)
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    # the rendezvous waits for every rank: one that never comes (not started, or still importing on a
    # loaded machine) holds the others up to the timeout, so a rank kept waiting says so
    waiting = threading.Timer(SAY_WAITING_AFTER_S, lambda: _say(
        f"scratchrnn: rank {world.rank} is waiting for the other {world.size - 1} rank(s) to join at {where} "
        f"(it gives up after {seconds:g} s, {TIMEOUT_ENV})"))
    waiting.daemon = True
    waiting.start()
    global _joined
    try:
        dist.init_process_group("nccl" if device == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=seconds))
        _joined = True
    except (RuntimeError, ValueError) as err:
        raise PeerLost(f"rank {world.rank} could not join the other ranks at {where} ({_first_line(err)})") from None
    finally:
        waiting.cancel()
    return world


def require_torch(option: str) -> None:
    """Refuse (UserError, naming ``option``) a PyTorch that is not installed or lacks torch.distributed;
    imported with Ctrl-C ending the program at once (``interrupts.importing``)."""
    quiet_torch_logs()
    try:
        with importing():
            import torch.distributed as dist
    except ImportError:
        from .backends import install_hint
        raise UserError(f"{option} needs PyTorch: {install_hint('torch')}") from None
    if not dist.is_available():
        raise UserError(f"{option} needs a PyTorch built with torch.distributed")


def quiet_torch_logs() -> None:
    """PyTorch's C++ side logs each failed attempt to reach a peer with a stack of frames; this program
    says what failed in one line, so those logs are off unless TORCH_CPP_LOG_LEVEL asks for them (read
    when torch is imported: call before)."""
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "FATAL")


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


def shutdown_world() -> None:
    """Leave the process group, if this process joined one (and touch torch only then: a run of one
    never imports it, and a Ctrl-C during its import must not meet it half-loaded here)."""
    global _joined
    if not _joined:
        return
    import torch.distributed as dist
    if dist.is_initialized():
        dist.destroy_process_group()
    _joined = False


def _set_threads(threads: int, with_torch: bool) -> None:
    """The compiled step loops' threads, and PyTorch's (not imported for another framework's sake)."""
    os.environ["SCRATCHRNN_THREADS"] = str(threads)
    if with_torch:
        with importing():
            import torch
        torch.set_num_threads(threads)


def _collective(name: str, *args, **kwargs):
    """torch.distributed.<name>(...), with a lost or silent peer turned into one clear error."""
    import torch.distributed as dist
    try:
        return getattr(dist, name)(*args, **kwargs)
    except RuntimeError as err:            # DistBackendError, gloo's connection and timeout errors
        raise PeerLost(f"rank {dist.get_rank()} lost contact with the other ranks (one of them died or "
                       f"stopped answering: {_first_line(err)}); stopping") from None


def _first_line(err: BaseException) -> str:
    """The gist of a collective's error: its first sentence, without gloo's source location."""
    text = re.sub(r"\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", str(err)).strip()
    text = re.split(r"(?<=\.)\s|\n", text, maxsplit=1)[0] if text else type(err).__name__
    return text[:160]


class GradientAverager:
    """``reduce`` for ``apply_update``: the gradients averaged over all ranks, in one all_reduce.

    ``wants_stop()`` (this rank's Ctrl-C) travels in the same buffer; ``stop_agreed`` then says
    whether any rank asked, the same answer on every rank after every step.
    """

    def __init__(self, world: World, wants_stop=None):
        self.world = world
        self.wants_stop = wants_stop or (lambda: False)
        self.stop_agreed = False

    def __call__(self, grads: dict) -> dict:
        names = list(grads)
        first = grads[names[0]]
        flag = 1.0 if self.wants_stop() else 0.0
        faults.point(f"dist.rank{self.world.rank}.all-reduce")
        if isinstance(first, np.ndarray):
            import torch
            flat = np.concatenate([np.ravel(grads[n]) for n in names] + [np.array([flag], first.dtype)])
            _collective("all_reduce", torch.from_numpy(flat))        # in place, in flat's memory
            flat /= self.world.size
            self.stop_agreed = bool(flat[-1] > 0)
            out, at = {}, 0
            for n in names:
                size = grads[n].size
                out[n] = flat[at:at + size].reshape(grads[n].shape)
                at += size
            return out
        import torch
        flat = torch.cat([grads[n].reshape(-1) for n in names] + [first.new_full((1,), flag)])
        _collective("all_reduce", flat)
        flat /= self.world.size
        self.stop_agreed = bool(flat[-1] > 0)
        pieces = torch.split(flat[:-1], [grads[n].numel() for n in names])
        return {n: piece.view_as(grads[n]) for n, piece in zip(names, pieces)}

    def should_stop(self) -> bool:
        return self.stop_agreed


# -- scratchrnn train --nproc N ----------------------------------------------------------------------------
def launch(nproc: int, argv: list[str], threads: int | None = None) -> int:
    """Start ``nproc`` ranks of ``python -m scratchrnn ARGV`` on this machine, as ``torchrun --standalone
    --nproc-per-node NPROC -m scratchrnn ARGV`` would, and wait for them. Returns the exit status.

    A rank that fails stops the others (torchrun's agent); the ranks' own one-line messages (a user
    error, Ctrl-C) are theirs to print, and a rank killed from outside is reported here in one line.
    """
    import logging
    import uuid

    timeout_seconds()                   # refused here, once, rather than by every rank
    quiet_torch_logs()
    with importing():
        from torch.distributed.elastic.multiprocessing.api import SignalException
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # the agent's own log lines repeat, at length, what the line below says (its loggers set their
    # own levels, so each is quietened by name)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ["OMP_NUM_THREADS"] = str(threads or default_threads(nproc))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0)
    try:
        elastic_launch(config, sys.executable)("-m", "scratchrnn", *argv)
    except ChildFailedError as err:
        codes = {failure.exitcode for failure in err.failures.values()}
        # SIGTERM: the agent stopping the ranks still running once one has ended (after Ctrl-C, rank 0
        # may end before the others have left their last all_reduce)
        said = codes - {-signal.SIGTERM}
        if said and said <= {2, 130}:
            return max(said)         # the ranks said why themselves
        # the cause first: a rank killed from outside, then one that crashed; SIGTERM is the agent
        # stopping the others, and 2 a rank that saw its peer vanish
        rank, failure = min(err.failures.items(), key=lambda item: (
            (item[1].exitcode == -signal.SIGTERM, item[1].exitcode in (2, 130), item[0])))
        how = (f"was killed by {_signal_name(-failure.exitcode)}" if failure.exitcode < 0
               else f"exited with status {failure.exitcode}")
        print(f"scratchrnn: error: rank {rank} {how}; the other ranks were stopped. The run directory "
              f"keeps its last saved epoch: continue with --resume", file=sys.stderr)
        return 1
    except SignalException:
        return 130
    return 0


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
