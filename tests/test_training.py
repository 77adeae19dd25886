"""The training loop's semantics, clipping, and the chapter's names (NumPy backend only)."""
import math

import numpy as np
import pytest

import scratchrnn
from scratchrnn import backends
from scratchrnn.backends.base import TensorOps
from scratchrnn.data import SeqDataLoader, load_corpus, num_batches
from scratchrnn.errors import TrainingDiverged, UserError
from scratchrnn.model import ModelConfig, global_norm, init_params
from scratchrnn.optim import clip_by_global_norm
from scratchrnn.training import TrainConfig, evaluate_perplexity, train, train_epoch


def _small_run(seed=0, epochs=6, sampling="sequential", hidden=48):
    corpus, vocab = load_corpus(max_tokens=3000)
    config = ModelConfig(len(vocab), hidden)
    backend = backends.create("numpy", init_params(config, seed), config)
    loader = SeqDataLoader(corpus, 8, 12, sampling, seed=seed)
    result = train(backend, loader, TrainConfig(epochs=epochs, batch_size=8, num_steps=12, sampling=sampling,
                                                seed=seed))
    return result, backend


# -- clipping ---------------------------------------------------------------------------------------------
def test_clipping_caps_the_global_norm_and_keeps_the_direction():
    rng = np.random.default_rng(0)
    grads = {"a": rng.normal(size=(4, 3)), "b": rng.normal(size=5)}
    before = {k: v.copy() for k, v in grads.items()}
    grads, norm = clip_by_global_norm(grads, 0.5, TensorOps())
    assert norm == pytest.approx(global_norm(before))
    assert global_norm(grads) == pytest.approx(0.5)
    flat_before = np.concatenate([v.ravel() for v in before.values()])
    flat_after = np.concatenate([v.ravel() for v in grads.values()])
    assert np.allclose(flat_after / np.linalg.norm(flat_after), flat_before / np.linalg.norm(flat_before))


def test_clipping_below_theta_changes_nothing():
    grads = {"a": np.array([0.3, -0.4])}
    grads, _ = clip_by_global_norm(grads, 1.0, TensorOps())
    np.testing.assert_array_equal(grads["a"], [0.3, -0.4])
    as_list = [np.array([3.0, 4.0])]
    assert scratchrnn.grad_clipping(as_list, 1.0) == pytest.approx(5.0)   # the chapter's name
    np.testing.assert_allclose(as_list[0], [0.6, 0.8])


# -- the loop -----------------------------------------------------------------------------------------
class RecordingBackend:
    """Wraps a backend and logs how the loop treats the state."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def begin_state(self, batch_size):
        self.calls.append("begin")
        return self.inner.begin_state(batch_size)

    def detach(self, state):
        self.calls.append("detach")
        return self.inner.detach(state)

    def train_step(self, *args):
        self.calls.append("step")
        return self.inner.train_step(*args)


@pytest.mark.parametrize("sampling, detach, expected", [
    ("sequential", True, ["begin", "step"] + ["detach", "step"] * 3),
    ("random", True, ["begin", "step"] * 4),
    ("sequential", False, ["begin", "step"] * 1 + ["step"] * 3),
])
def test_state_is_reset_for_random_batches_and_detached_between_sequential_ones(sampling, detach, expected):
    config = ModelConfig(28, 8)
    recorder = RecordingBackend(backends.create("numpy", init_params(config), config))
    corpus = np.random.default_rng(0).integers(1, 28, 4 * 5 * 4 + 6)
    batches = list(SeqDataLoader(corpus, 4, 5, sampling, seed=0))[:4]
    train_epoch(recorder, batches, TrainConfig(batch_size=4, num_steps=5, sampling=sampling, detach=detach))
    assert recorder.calls == expected


def test_training_lowers_perplexity():
    result, _ = _small_run()
    assert result.history[-1] < 0.8 * result.history[0]
    # every epoch counts the tokens of its batches (8 x 12 each; the random offset decides how many
    # batches fit), and the speed is all tokens over all seconds
    fewest, most = num_batches(3000, 8, 12, "sequential"), (3000 - 1) // 8 // 12
    for epoch in result.epochs:
        assert fewest * 96 <= epoch.tokens <= most * 96 and epoch.tokens % 96 == 0
    seconds = sum(e.seconds for e in result.epochs)
    assert result.tokens_per_sec == pytest.approx(sum(e.tokens for e in result.epochs) / seconds)


def test_same_seed_same_numbers_other_seed_other_numbers():
    first, model = _small_run(seed=3, epochs=3)
    again, model_again = _small_run(seed=3, epochs=3)
    other, _ = _small_run(seed=4, epochs=3)
    assert first.history == again.history
    for name, value in model.get_params().items():
        np.testing.assert_array_equal(value, model_again.get_params()[name])
    assert first.history != other.history


def test_random_sampling_trains_too():
    result, _ = _small_run(sampling="random", epochs=5)
    assert result.history[-1] < result.history[0]


def test_divergence_stops_training_with_the_epoch():
    corpus, vocab = load_corpus(max_tokens=2000)
    config = ModelConfig(len(vocab), 32, activation="relu")
    backend = backends.create("numpy", init_params(config), config)
    loader = SeqDataLoader(corpus, 8, 10, "sequential")
    with pytest.raises(TrainingDiverged) as err:
        train(backend, loader, TrainConfig(epochs=5, lr=1e5, clip=None, batch_size=8, num_steps=10))
    assert err.value.epoch == 1


def test_an_untrained_uniform_model_has_perplexity_equal_to_the_vocabulary_size():
    config = ModelConfig(28, 16)
    zeros = {k: np.zeros_like(v) for k, v in init_params(config).items()}
    backend = backends.create("numpy", zeros, config)
    corpus, _ = load_corpus(max_tokens=1000)
    assert evaluate_perplexity(backend, np.asarray(corpus), 4, 10) == pytest.approx(28, rel=1e-5)


def test_validation_perplexity_is_recorded():
    corpus, vocab = load_corpus(max_tokens=3000)
    config = ModelConfig(len(vocab), 32)
    backend = backends.create("numpy", init_params(config), config)
    loader = SeqDataLoader(corpus[:2500], 8, 10, "sequential")
    result = train(backend, loader, TrainConfig(epochs=4, batch_size=8, num_steps=10),
                   validation=np.asarray(corpus[2500:]), eval_every=2)
    assert [epoch for epoch, _ in result.validation] == [2, 4]
    assert all(1 < ppl < 28 for _, ppl in result.validation)


# -- the chapter's names ---------------------------------------------------------------------------------
def test_chapter_names_work_as_the_chapter_uses_them(capsys):
    train_iter, vocab = scratchrnn.load_data_time_machine(32, 35)
    X, Y = next(iter(train_iter))
    assert X.shape == Y.shape == (32, 35)
    net = scratchrnn.RNNModelScratch(len(vocab), 512)
    Y_hat, state = net(np.arange(10).reshape(2, 5), net.begin_state(2))
    assert Y_hat.shape == (10, 28) and state[0].shape == (2, 512)
    assert [p.shape for p in net.params] == [(28, 512), (512, 512), (512,), (512, 28), (28,)]
    text = scratchrnn.predict_ch8("time traveller ", 10, net, vocab)
    assert text.startswith("time traveller ") and len(text) == 25

    small = scratchrnn.RNNModelScratch(len(vocab), 32)
    train_iter, vocab = scratchrnn.load_data_time_machine(8, 10, max_tokens=1000)
    ppl, speed = scratchrnn.train_ch8(small, train_iter, vocab, lr=1, num_epochs=10)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[1].startswith(f"perplexity {ppl:.1f}, ") and "tokens/sec" in lines[1]
    assert lines[-2].startswith("time traveller") and lines[-1].startswith("traveller")
    assert math.isfinite(ppl) and speed > 0


def test_a_backend_refuses_an_option_it_does_not_have():
    config = ModelConfig(28, 8)
    with pytest.raises(UserError, match="numpy backend has no option impl"):
        backends.create("numpy", init_params(config), config, impl="chapter")


def test_the_books_gated_and_deep_models_by_their_chapter_names():
    import scratchrnn
    train_iter, vocab = scratchrnn.load_data_time_machine(8, 10, max_tokens=1500)
    for cls, cell in ((scratchrnn.GRUModelScratch, "gru"), (scratchrnn.LSTMModelScratch, "lstm")):
        net = cls(len(vocab), 16, num_layers=2, dropout=0.1)
        assert net.config.cell == cell and net.config.num_layers == 2
        ppl, speed = scratchrnn.train_epoch_ch8(net, train_iter, lr=1.0)
        assert 1 < ppl < 2 * len(vocab) and speed > 0
        assert scratchrnn.predict_ch8("time ", 5, net, vocab).startswith("time ")
