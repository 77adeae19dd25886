"""The optimizers and schedules of scratchrnn.optim, against update rules transcribed here from their
papers / torch.optim's documentation, independently of the package's code."""
from __future__ import annotations

import math

import numpy as np
import pytest

from scratchrnn import backends
from scratchrnn.backends.base import Backend, TensorOps
from scratchrnn.data import SeqDataLoader, load_corpus
from scratchrnn.model import ModelConfig, init_params
from scratchrnn.optim import OPTIMIZERS, OptimizerConfig, Schedule, clip_by_global_norm, create_optimizer
from scratchrnn.training import TrainConfig, train


class ArrayModel:
    """The part of a backend an optimizer sees: parameters, assign, add_to_parameters, ops (NumPy)."""

    ops = TensorOps()
    add_to_parameters = Backend.add_to_parameters      # the generic form, over parameters and assign

    def __init__(self, params):
        self.params = {k: v.copy() for k, v in params.items()}

    def parameters(self):
        return dict(self.params)

    def assign(self, name, value):
        self.params[name] = value


def reference_run(name: str, params: dict, grads_seq: list, lr: float, wd: float = 0.0) -> dict:
    """The update rules written out plainly, one parameter at a time."""
    out = {}
    for key, p in params.items():
        p = p.copy()
        m = np.zeros_like(p)
        v = np.zeros_like(p)
        for t, grads in enumerate(grads_seq, start=1):
            g = grads[key]
            if name != "adamw":
                g = g + wd * p
            if name == "sgd":
                p = p - lr * g
            elif name == "momentum":
                m = 0.9 * m + g
                p = p - lr * m
            elif name == "adagrad":
                v = v + g * g
                p = p - lr * g / (np.sqrt(v) + 1e-10)
            elif name == "rmsprop":
                v = 0.99 * v + 0.01 * g * g
                p = p - lr * g / (np.sqrt(v) + 1e-8)
            else:
                if name == "adamw":
                    p = p * (1 - lr * wd)
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g * g
                m_hat, v_hat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
                p = p - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        out[key] = p
    return out


def _problem(seed=0, steps=20):
    rng = np.random.default_rng(seed)
    params = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    grads_seq = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(steps)]
    return params, grads_seq


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_each_rule_matches_its_transcription_over_20_steps(name, wd):
    params, grads_seq = _problem()
    model = ArrayModel(params)
    optimizer = create_optimizer(name, weight_decay=wd)
    for grads in grads_seq:
        optimizer.update(model, grads, 0.01)
    expected = reference_run(name, params, grads_seq, 0.01, wd)
    for key in params:
        np.testing.assert_allclose(model.params[key], expected[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_adam_epsilon_is_added_after_bias_correction():
    """With a tiny gradient the first Adam step is lr * g / (|g| + eps): about lr, not lr * |g| / eps."""
    model = ArrayModel({"w": np.zeros(1)})
    create_optimizer("adam").update(model, {"w": np.array([1e-6])}, 0.1)
    assert model.params["w"][0] == pytest.approx(-0.1 / (1 + 1e-2), rel=1e-6)


def test_state_arrays_round_trip_and_continue_identically():
    params, grads_seq = _problem(steps=10)
    straight = ArrayModel(params)
    opt = create_optimizer("adam")
    for grads in grads_seq:
        opt.update(straight, grads, 0.01)
    resumed = ArrayModel(params)
    first = create_optimizer("adam")
    for grads in grads_seq[:4]:
        first.update(resumed, grads, 0.01)
    saved, step = first.state_arrays(resumed), first.step_count
    assert sorted(saved) == sorted(f"{s}/{p}" for s in ("exp_avg", "exp_avg_sq") for p in params)
    second = create_optimizer("adam")
    second.load_state_arrays(resumed, saved, step)
    for grads in grads_seq[4:]:
        second.update(resumed, grads, 0.01)
    for key in params:
        np.testing.assert_array_equal(resumed.params[key], straight.params[key])


def test_missing_state_is_refused_by_name():
    model = ArrayModel({"w": np.zeros(2)})
    with pytest.raises(ValueError, match="exp_avg/w"):
        create_optimizer("adam").load_state_arrays(model, {"exp_avg_sq/w": np.zeros(2)}, 3)


def test_bad_settings_name_their_field():
    with pytest.raises(ValueError, match="optimizer name"):
        OptimizerConfig("lbfgs")
    with pytest.raises(ValueError, match="weight_decay"):
        OptimizerConfig("adamw", weight_decay=-1)
    with pytest.raises(ValueError, match="warmup"):
        Schedule("cosine", 1.0, warmup=-1)


# -- clipping -------------------------------------------------------------------------------------------
def test_clipping_is_global_not_per_parameter():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([0.0, 4.0])}
    clipped, norm = clip_by_global_norm(grads, 1.0, TensorOps())
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.0])
    np.testing.assert_allclose(clipped["b"], [0.0, 0.8])   # per-parameter clipping would give [0, 1]


def test_no_clipping_leaves_gradients_alone():
    grads = {"a": np.array([30.0])}
    same, norm = clip_by_global_norm(grads, None, TensorOps())
    assert same is grads and norm is None


# -- schedules ------------------------------------------------------------------------------------------
def test_schedules():
    assert [Schedule("constant", 0.5)(s) for s in (0, 10, 1000)] == [0.5, 0.5, 0.5]
    step = Schedule("step", 1.0, decay=0.5, decay_every=10)
    assert [step(s) for s in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    warm = Schedule("cosine", 1.0, warmup=4, total_steps=104, min_lr_ratio=0.1)
    assert [warm(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert warm(4) == pytest.approx(1.0)
    assert warm(54) == pytest.approx(0.55)          # half-way down the cosine: (1 + 0.1) / 2
    assert warm(104) == pytest.approx(0.1)
    assert warm(10_000) == pytest.approx(0.1)       # stays at the floor past the end


def test_training_follows_the_schedule():
    corpus, vocab = load_corpus(max_tokens=2000)
    config = ModelConfig(len(vocab), 8)
    backend = backends.create("numpy", init_params(config), config)
    loader = SeqDataLoader(corpus, 4, 10, seed=0)
    train_config = TrainConfig(epochs=3, lr=0.5, batch_size=4, num_steps=10, lr_schedule="step",
                               lr_decay=0.5, lr_decay_every=1)
    result = train(backend, loader, train_config)
    lrs = [e.lr for e in result.epochs]
    assert lrs == [0.5, 0.25, 0.125]


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_chapter_training_learns_with_other_optimizers(name):
    corpus, vocab = load_corpus(max_tokens=3000)
    config = ModelConfig(len(vocab), 32)
    backend = backends.create("numpy", init_params(config), config)
    loader = SeqDataLoader(corpus, 8, 20, seed=0)
    lr = 0.5 if name == "momentum" else 0.01
    result = train(backend, loader, TrainConfig(epochs=8, lr=lr, batch_size=8, num_steps=20, optimizer=name))
    assert result.epochs[-1].perplexity < 0.8 * result.epochs[0].perplexity
    assert math.isfinite(result.perplexity)
