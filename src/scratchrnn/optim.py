"""Optimizers and learning-rate schedules, written once for every backend.

Each update rule below is plain arithmetic on the backend's own tensors -- ``+ - * /`` work on all of
them -- plus the few operations a ``TensorOps`` provides (``sqrt``, ``zeros_like``). The backend
hands over its gradients and its parameters; the rule returns new parameter values, and the backend
assigns them. So SGD, momentum, Adagrad, RMSprop, Adam and AdamW exist once, not five times, and the
rules read like their papers (the way einops writes one algorithm over small per-framework classes).

The rules and their defaults follow ``torch.optim`` (the tests hold the torch backend to it):
- weight decay is added to the gradient (L2 regularisation) for every rule but AdamW, which decays
  the weights directly ("decoupled weight decay");
- Adam's epsilon is added after the square root and bias correction, as in torch.

An optimizer's state (momentum buffers, second moments, its step count) is what ``state_arrays`` and
``load_state_arrays`` move in and out of checkpoints, as NumPy arrays named ``slot/parameter``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class OptimizerConfig:
    """Which rule, and its hyper-parameters (those a rule does not use are ignored by it)."""

    name: str = "sgd"
    weight_decay: float = 0.0
    momentum: float = 0.9          # momentum
    alpha: float = 0.99            # rmsprop: decay of the running mean of squared gradients
    betas: tuple[float, float] = (0.9, 0.999)   # adam, adamw
    eps: float | None = None       # None: the rule's own default (adagrad 1e-10, others 1e-8)

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer name must be one of {OPTIMIZERS}, not {self.name!r}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight_decay must be a number >= 0, not {self.weight_decay}")
        for field_name, value in (("momentum", self.momentum), ("alpha", self.alpha),
                                  ("betas[0]", self.betas[0]), ("betas[1]", self.betas[1])):
            if not 0 <= value < 1:
                raise ValueError(f"{field_name} must be in [0, 1), not {value}")
        if self.eps is not None and not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps must be a positive number, not {self.eps}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "OptimizerConfig":
        data = dict(data)
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)


class Optimizer:
    """Base class: ``update`` takes one step for all parameters at learning rate ``lr``.

    Subclasses name their per-parameter state ``slots`` and define ``_rule``, which gets one
    parameter's value, gradient and slots and returns the new value and new slots.
    """

    slots: tuple[str, ...] = ()
    default_eps = 1e-8

    def __init__(self, config: OptimizerConfig):
        self.config = config
        self.eps = config.eps if config.eps is not None else self.default_eps
        self.step_count = 0                    # updates taken (Adam's t, Adagrad's step)
        self.state: dict[str, dict[str, Any]] = {}   # slot -> parameter name -> tensor

    def update(self, backend, grads: dict, lr: float) -> None:
        """One step: every parameter of ``backend`` moves according to its gradient in ``grads``."""
        ops = backend.ops
        params = backend.parameters()
        if not self.state and self.slots:
            self.state = {slot: {name: ops.zeros_like(p) for name, p in params.items()}
                          for slot in self.slots}
        self.step_count += 1
        self.move(backend, grads, lr)

    def move(self, backend, grads: dict, lr) -> None:
        """Every parameter's move by the rule, without the bookkeeping of ``update`` (the state's
        creation, the step count). For a rule that keeps no state (``stateless``), this is all a step
        does, and a backend may trace it into a compiled step of its own (TensorFlow's graph)."""
        params = backend.parameters()
        ops = backend.ops
        for name, value in params.items():
            grad = grads[name]
            if self.config.weight_decay and not self.decoupled:
                grad = grad + self.config.weight_decay * value
            slots = {slot: self.state[slot][name] for slot in self.slots}
            new_value, new_slots = self._rule(ops, value, grad, slots, lr)
            for slot, tensor in new_slots.items():
                self.state[slot][name] = tensor
            backend.assign(name, new_value)

    decoupled = False
    #: True for a rule with no slots whose step does not depend on the step count
    stateless = False

    def _rule(self, ops, value, grad, slots: dict, lr: float):
        raise TypeError(f"{type(self).__name__} defines no update rule")

    # -- checkpoints ----------------------------------------------------------------------------------
    def state_arrays(self, backend) -> dict[str, np.ndarray]:
        """The slots as NumPy arrays named ``slot/parameter`` (empty before the first step)."""
        return {f"{slot}/{name}": backend.ops.to_numpy(tensor)
                for slot, tensors in self.state.items() for name, tensor in tensors.items()}

    def load_state_arrays(self, backend, arrays: dict[str, np.ndarray], step_count: int) -> None:
        """Restore what ``state_arrays`` saved; every slot of every parameter must be there."""
        self.step_count = int(step_count)
        if not arrays:
            self.state = {}
            return
        state: dict[str, dict[str, Any]] = {slot: {} for slot in self.slots}
        params = backend.parameters()
        for slot in self.slots:
            for name, param in params.items():
                key = f"{slot}/{name}"
                if key not in arrays:
                    raise ValueError(f"optimizer state lacks {key!r}")
                state[slot][name] = backend.ops.from_numpy(arrays[key], like=param)
        self.state = state

    def describe(self) -> dict:
        """The rule and its settings, for checkpoints and metrics."""
        return {"name": self.config.name, **{k: v for k, v in self.config.to_dict().items() if k != "name"},
                "eps": self.eps}


class SGD(Optimizer):
    """The chapter's ``sgd``: p <- p - lr * g, for all parameters at once through the backend's
    ``add_to_parameters`` (in place, in one operation, where the framework can)."""

    stateless = True

    def move(self, backend, grads, lr):
        if self.config.weight_decay:
            params = backend.parameters()
            grads = {name: grad + self.config.weight_decay * params[name] for name, grad in grads.items()}
        backend.add_to_parameters(grads, -lr)


class Momentum(Optimizer):
    """SGD with momentum (heavy ball, as torch.optim.SGD): v <- mu v + g; p <- p - lr v."""

    slots = ("momentum_buffer",)

    def _rule(self, ops, value, grad, slots, lr):
        buffer = self.config.momentum * slots["momentum_buffer"] + grad
        return value - lr * buffer, {"momentum_buffer": buffer}


class Adagrad(Optimizer):
    """Adagrad (min-char-rnn's choice): each weight's step shrinks with its gradients' summed squares."""

    slots = ("sum",)
    default_eps = 1e-10

    def _rule(self, ops, value, grad, slots, lr):
        total = slots["sum"] + grad * grad
        return value - lr * grad / (ops.sqrt(total) + self.eps), {"sum": total}


class RMSprop(Optimizer):
    """RMSprop (char-rnn's choice): Adagrad with a decaying mean of squares instead of a sum."""

    slots = ("square_avg",)

    def _rule(self, ops, value, grad, slots, lr):
        alpha = self.config.alpha
        square_avg = alpha * slots["square_avg"] + (1 - alpha) * (grad * grad)
        return value - lr * grad / (ops.sqrt(square_avg) + self.eps), {"square_avg": square_avg}


class Adam(Optimizer):
    """Adam: bias-corrected running means of the gradient and of its square."""

    slots = ("exp_avg", "exp_avg_sq")

    def _rule(self, ops, value, grad, slots, lr):
        beta1, beta2 = self.config.betas
        t = self.step_count
        exp_avg = beta1 * slots["exp_avg"] + (1 - beta1) * grad
        exp_avg_sq = beta2 * slots["exp_avg_sq"] + (1 - beta2) * (grad * grad)
        step_size = lr / (1 - beta1 ** t)
        denominator = ops.sqrt(exp_avg_sq) / math.sqrt(1 - beta2 ** t) + self.eps
        return value - step_size * (exp_avg / denominator), {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


class AdamW(Adam):
    """Adam with decoupled weight decay: the weights shrink by lr * weight_decay before the Adam step."""

    decoupled = True

    def _rule(self, ops, value, grad, slots, lr):
        if self.config.weight_decay:
            value = value * (1 - lr * self.config.weight_decay)
        return super()._rule(ops, value, grad, slots, lr)


_RULES = {"sgd": SGD, "momentum": Momentum, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam,
          "adamw": AdamW}


def create_optimizer(config: OptimizerConfig | str = "sgd", **settings) -> Optimizer:
    """An optimizer from its config, or from its name and settings (``create_optimizer("adam")``)."""
    if isinstance(config, str):
        config = OptimizerConfig(name=config, **settings)
    return _RULES[config.name](config)


# -- the one place that clips and updates ------------------------------------------------------------------
def clip_by_global_norm(grads: dict, theta: float | None, ops):
    """Scale all gradients together so that their global L2 norm is at most ``theta`` (None: leave them).

    The chapter's ``grad_clipping``. The factor min(1, theta / norm) multiplies every gradient --
    exactly 1 when the norm is small enough -- so a GPU backend never waits for the norm to reach
    Python. Returns the clipped gradients and the norm before clipping (a framework scalar or float).
    """
    if theta is None:
        return grads, None
    norm = ops.global_norm(list(grads.values()))
    factor = ops.clip_factor(norm, theta)
    return {name: g * factor for name, g in grads.items()}, norm


def apply_update(backend, grads: dict, lr: float, clip_theta: float | None, optimizer: "Optimizer",
                 reduce=None) -> None:
    """Clip ``grads`` by their global norm, then let ``optimizer`` move ``backend``'s parameters.

    ``reduce`` (training on several ranks: ``distributed.GradientAverager``) first replaces the
    gradients by their average over all ranks, so that the norm clipped is the global batch's and every
    rank takes the same step.
    """
    if reduce is not None:
        grads = reduce(grads)
    grads, _ = clip_by_global_norm(grads, clip_theta, backend.ops)
    optimizer.update(backend, grads, lr)


# -- learning-rate schedules ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """The learning rate at each optimizer step (counted from 0), from the base ``lr``.

    - constant: ``lr`` throughout;
    - step: ``lr`` times ``decay`` after every ``decay_every`` steps;
    - cosine: from ``lr`` down to ``min_lr_ratio * lr`` along half a cosine over ``total_steps``.
    ``warmup`` steps of linear warm-up (from lr / warmup up to lr) come first in every schedule.
    """

    kind: str = "constant"
    lr: float = 1.0
    warmup: int = 0
    total_steps: int = 1
    decay: float = 0.5
    decay_every: int = 1
    min_lr_ratio: float = 0.1

    def __post_init__(self):
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule kind must be one of {SCHEDULES}, not {self.kind!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, not {self.lr}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, not {self.warmup}")
        if self.total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, not {self.total_steps}")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], not {self.decay}")
        if self.decay_every < 1:
            raise ValueError(f"decay_every must be >= 1, not {self.decay_every}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], not {self.min_lr_ratio}")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        if self.kind == "constant":
            return self.lr
        if self.kind == "step":
            return self.lr * self.decay ** ((step - self.warmup) // self.decay_every)
        span = max(1, self.total_steps - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        floor = self.min_lr_ratio * self.lr
        return floor + (self.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    def to_dict(self) -> dict:
        return asdict(self)
