"""What every backend must do, checked against the NumPy reference.

Each ``tests/test_backend_<name>.py`` subclasses ``BackendContract`` with its ``backend_name`` and
runs in a process of its own (``make test-<name>``), so no two frameworks are ever imported together.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plain_reference import PlainOptimizer

from scratchrnn import backends, cells, kernels
from scratchrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scratchrnn.data import SeqDataLoader, load_corpus
from scratchrnn.errors import UserError
from scratchrnn.generation import predict
from scratchrnn.model import ModelConfig, global_norm, init_params
from scratchrnn.optim import create_optimizer

MODEL_VARIANTS = [
    ModelConfig(7, 6, "tanh", "onehot"),
    ModelConfig(7, 6, "relu", "onehot"),
    ModelConfig(7, 6, "tanh", "learned", 4),
]

# Models beyond the chapter's (the book's 9.1-9.3): a backend runs those whose cell it lists in
# ``Backend.cells``, and stacked layers and dropout where it says ``layers_and_dropout``. With dropout
# both backends draw the same masks (the same generator, seeded alike: ``dropout_seed``).
GATED_VARIANTS = [
    ModelConfig(7, 6, cell="gru"),
    ModelConfig(7, 6, cell="lstm"),
    ModelConfig(7, 5, "tanh", "learned", 4, cell="lstm", num_layers=2),
    ModelConfig(7, 5, cell="gru", num_layers=2, dropout=0.3),
    ModelConfig(7, 5, "relu", cell="rnn", num_layers=3, dropout=0.3),
]


# What came after the book's LSTM (docs/regularization.md): a backend builds the regularisers around
# the cells where it says ``layers_and_dropout`` and the layer-normalised cells where it says
# ``layer_norm``. Every kind of mask at once, tied weights through a projection, AR and TAR; a
# layer-normalised LSTM; a layer-normalised GRU with weight dropout, locked output dropout and tied
# weights of the embedding's own width.
REGULARIZED_VARIANTS = [
    ModelConfig(7, 4, "tanh", "learned", 3, cell="lstm", num_layers=2, dropout=0.1, weight_dropout=0.3,
                input_dropout=0.2, hidden_dropout=0.3, output_dropout=0.2, embed_dropout=0.2, tie_weights=True,
                activation_reg=1.0, temporal_reg=1.0),
    ModelConfig(7, 5, cell="lstm", layer_norm=True),
    ModelConfig(7, 4, "tanh", "learned", 4, cell="gru", num_layers=2, layer_norm=True, weight_dropout=0.3,
                output_dropout=0.2, tie_weights=True),
]


def variant_id(config: ModelConfig) -> str:
    dropout = f"-dropout{config.dropout}" if config.dropout else ""
    extras = "".join(f"-{name}" for name in ("layer_norm", "weight_dropout", "tie_weights", "activation_reg")
                     if getattr(config, name))
    return f"{config.cell}x{config.num_layers}-{config.activation}-{config.embedding}{dropout}{extras}"


def _boosted_params(config: ModelConfig, seed: int = 3, scale: float = 40) -> dict:
    """float64 weights large enough that every gradient is far from zero (N(0, 0.01) makes them tiny)."""
    params = {k: v * scale for k, v in init_params(config, seed, np.float64).items()}
    rng = np.random.default_rng(seed)
    for name in params:
        if cells.is_bias(name):
            params[name] = rng.normal(0, 0.3, params[name].shape)
        elif cells.is_gain(name):             # a layer normalisation's gain: near its starting 1
            params[name] = rng.normal(1, 0.3, params[name].shape)
    return params


needs_library = pytest.mark.skipif(kernels.load() is None, reason=f"compiled kernels {kernels.status()}")


def switch_compiled_loops(monkeypatch, on: bool) -> list:
    """Forces the compiled step loops (SCRATCHRNN_LOOPS=compiled: kernels.choose answers without
    measuring) or the framework's own for this test; returns a list to which every call of the
    compiled training loops appends its name ("rnn_forward", "gru_backward", ...: the RNN's
    scratchrnn.kernels.recurrence, the gated cells' scratchrnn.kernels.gated), to tell which ran."""
    from scratchrnn.kernels import gated, recurrence
    monkeypatch.delenv("SCRATCHRNN_NO_KERNEL", raising=False)
    monkeypatch.setenv("SCRATCHRNN_LOOPS", "compiled" if on else "own")
    calls = []
    loops = {f"rnn_{op}": (recurrence, op) for op in ("forward", "backward")}
    loops.update({f"{cell}_{op}": (gated, f"{cell}_{op}") for cell in ("gru", "lstm") for op in ("forward", "backward")})
    for label, (module, name) in loops.items():
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _real=real, _label=label, **k: calls.append(_label) or _real(*a, **k))
    return calls


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _chapter_batches(sampling: str, count: int = 20, seed: int = 0):
    corpus, vocab = load_corpus(None, 10000)
    batches = []
    loader = SeqDataLoader(corpus, 32, 35, sampling, seed=seed)
    while len(batches) < count:
        batches.extend(loader)
    return batches[:count], vocab


CLIP_THETA_THAT_BITES = 0.05


def _run_steps(backend, batches, sampling, lr=1.0, clip=1.0, detach=True, optimizer=None, norms=None):
    """The training loop's state rules (as in training.train_epoch), returning per-step losses.

    With a list as ``norms``, each step's unclipped global gradient norm is appended to it first.
    """
    losses, state = [], None
    for X, Y in batches:
        if state is None or sampling == "random":
            state = backend.begin_state(X.shape[0])
        elif detach:
            state = backend.detach(state)
        if norms is not None:
            norms.append(global_norm(backend.loss_and_grads(X, Y, state)[1]))
        loss, state = backend.train_step(X, Y, state, lr, clip, optimizer)
        losses.append(float(loss))
    return losses


def transcribed_steps(backend, batches, sampling, rule="sgd", lr=1.0, clip=1.0, weight_decay=0.0, norms=None):
    """``_run_steps`` with the update written out here instead of scratchrnn.optim's: the backend's
    gradients (the NumPy backend's, held to finite differences of the plain transcription in
    test_backend_numpy), scaled together so that their global norm is at most ``clip``, then applied
    by ``plain_reference.PlainOptimizer``. The reference the contract's training runs are held to, so
    that the optimizers and clipping are not compared with themselves."""
    optimizer = PlainOptimizer(rule, lr, weight_decay)
    losses, state = [], None
    for X, Y in batches:
        if state is None or sampling == "random":
            state = backend.begin_state(X.shape[0])
        else:
            state = backend.detach(state)
        loss, grads, state = backend.loss_and_grads(X, Y, state)
        norm = float(np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in grads.values())))
        if norms is not None:
            norms.append(norm)
        if clip is not None and norm > clip:
            grads = {name: g * (clip / norm) for name, g in grads.items()}
        params = backend.get_params()
        for name, value in optimizer.step(params, grads).items():
            backend.assign(name, value.astype(params[name].dtype))
        losses.append(float(loss))
    return losses


def chained_float32_steps(backend_name, config, params, batch: int):
    """Three minibatches in float32, never detached, with SGD updates between them: the losses and the
    final weights (what the compiled loops are held to, against the backend's own loops)."""
    backend = backends.create(backend_name, params, config, dtype="float32")
    rng = np.random.default_rng(4)
    state, losses = backend.begin_state(batch), []
    for _ in range(3):
        X, Y = rng.integers(0, config.vocab_size, (2, batch, 6))
        loss, state = backend.train_step(X, Y, state, 0.1, 5.0)
        losses.append(float(loss))
    return losses, backend.get_params()


# gated models for the compiled loops' training tests: each cell alone, and stacked with an embedding or dropout
GATED_KERNEL_CONFIGS = [ModelConfig(11, 40, cell="gru"), ModelConfig(11, 40, cell="lstm"),
                        ModelConfig(11, 24, "tanh", "learned", 5, cell="lstm", num_layers=2),
                        ModelConfig(11, 24, cell="gru", num_layers=2, dropout=0.3)]


def check_compiled_gated_training(backend_name, config, monkeypatch, batch: int = 19):
    """A backend trains a gated model in float32 with the compiled loops (forced: both of them run
    compiled) as it does with its own loops: three chained minibatches with updates, losses and
    weights to 1e-5."""
    if kernels.load() is None:
        pytest.skip(f"compiled kernels {kernels.status()}")
    compiled = ("forward", "backward")
    params = _boosted_params(config, scale=10)
    calls = switch_compiled_loops(monkeypatch, True)
    losses, weights = chained_float32_steps(backend_name, config, params, batch)
    ran, calls[:] = set(calls), []
    switch_compiled_loops(monkeypatch, False)
    ref_losses, ref_weights = chained_float32_steps(backend_name, config, params, batch)
    assert ran == {f"{config.cell}_{op}" for op in compiled} and not calls
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for name, value in ref_weights.items():
        assert _rel_err(weights[name], value) < 1e-5, name
    assert max(_rel_err(weights[name], params[name]) for name in params) > 1e-3   # it did train


FIXTURE = Path(__file__).parent / "fixtures" / "time_machine_h64.npz"


def trained_fixture():
    """The book's vocabulary and a 64-unit model trained on it (200 epochs of the chapter's settings
    with the numpy backend), whose greedy continuations are words, not one word repeated."""
    _, vocab = load_corpus(None, 10000)
    with np.load(FIXTURE, allow_pickle=False) as saved:
        params = {name: saved[name] for name in saved.files}
    return vocab, ModelConfig(len(vocab), params["W_hh"].shape[0]), params


def reads_like_text(continuation: str) -> bool:
    """Not a degenerate continuation: several different characters, no short cycle."""
    cycles = any(continuation == (continuation[:p] * len(continuation))[:len(continuation)]
                 for p in range(1, 9))
    return len(set(continuation)) >= 8 and not cycles


class ForwardOnly:
    """A backend that declares no loop of its own (``has_fast_decode``) and hides ``decode`` and
    ``decode_weights``: generation's generic loop, stepping through ``forward`` (where the compiled
    decoder does not take the model, dtype or decoding, or is off: ``SCRATCHRNN_NO_KERNEL``)."""

    has_fast_decode = False

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name in ("decode", "decode_weights"):
            raise AttributeError(name)
        return getattr(self.inner, name)


class BackendContract:
    backend_name = "numpy"
    device = "cpu"

    def make(self, params, config, dtype="float32"):
        return backends.create(self.backend_name, params, config, device=self.device, dtype=dtype)

    def reference(self, params, config, dtype="float32"):
        return backends.create("numpy", params, config, dtype=dtype)

    # -- the chapter's shapes ----------------------------------------------------------------------
    def test_refuses_a_device_or_dtype_it_lacks(self):
        config = ModelConfig(7, 6)
        params = init_params(config, 0)
        if "cuda" not in backends.backend_class(self.backend_name).devices:
            with pytest.raises(UserError, match="CPU only.*use --backend torch for --device cuda"):
                backends.create(self.backend_name, params, config, device="cuda")
        with pytest.raises(UserError, match=f"the {self.backend_name} backend runs on .*not 'tpu'"):
            backends.create(self.backend_name, params, config, device="tpu")
        with pytest.raises(UserError, match="computes in float32 or float64, not 'float16'"):
            backends.create(self.backend_name, params, config, dtype="float16")

    def test_chapter_shapes(self):
        config = ModelConfig(28, 512)
        backend = self.make(init_params(config, 0), config)
        logits, state = backend.forward(np.arange(10).reshape(2, 5), backend.begin_state(2))
        assert logits.shape == (10, 28)
        assert len(state) == 1
        assert backend.state_to_numpy(state)[0].shape == (2, 512)

    def test_parameters_round_trip_unchanged(self):
        config = ModelConfig(28, 16)
        params = init_params(config, 5)
        got = self.make(params, config).get_params()
        assert list(got) == list(params)
        for name in params:
            np.testing.assert_array_equal(got[name], params[name])

    # -- gradients equal the reference, float64 ------------------------------------------------------
    def builds(self, config: ModelConfig) -> bool:
        """Whether this backend builds ``config``'s model (see GATED_VARIANTS, REGULARIZED_VARIANTS)."""
        cls = backends.backend_class(self.backend_name)
        chapter_like = config.num_layers == 1 and not config.draws_masks and not config.tie_weights \
            and not config.has_penalty
        return (config.cell in cls.cells and (chapter_like or cls.layers_and_dropout)
                and (not config.layer_norm or self.builds_layer_norm()))

    def builds_layer_norm(self) -> bool:
        """Whether this backend (as ``make`` creates it) builds the layer-normalised cells."""
        return backends.backend_class(self.backend_name).layer_norm

    def supports(self, config: ModelConfig) -> bool:
        """Whether the tests below check ``config``'s model here (a subclass may leave some to another)."""
        return self.builds(config)

    def skip_unless_supported(self, config: ModelConfig) -> None:
        if not self.supports(config):
            pytest.skip(f"the {self.backend_name} backend does not build {variant_id(config)} models")

    @pytest.mark.parametrize("config", GATED_VARIANTS, ids=variant_id)
    def test_refuses_a_model_it_does_not_build(self, config):
        if self.builds(config):
            pytest.skip(f"the {self.backend_name} backend builds {variant_id(config)} models")
        with pytest.raises(UserError, match=f"the {self.backend_name} backend (implements|builds one layer)"):
            self.make(init_params(config, 0), config)

    @pytest.mark.parametrize("config", MODEL_VARIANTS, ids=lambda c: f"{c.activation}-{c.embedding}")
    def test_loss_and_gradients_match_numpy_float64(self, config):
        self.check_gradients_against_numpy(config)

    @pytest.mark.parametrize("config", GATED_VARIANTS, ids=variant_id)
    def test_gated_and_deep_models_match_numpy_float64(self, config):
        self.skip_unless_supported(config)
        self.check_gradients_against_numpy(config)

    def check_gradients_against_numpy(self, config):
        params = _boosted_params(config)
        rng = np.random.default_rng(1)
        X1, Y1, X2, Y2 = (rng.integers(0, config.vocab_size, (3, 5)) for _ in range(4))
        ours, ref = self.make(params, config, "float64"), self.reference(params, config, "float64")
        # first batch: the state starts from zero
        loss, grads, state = ours.loss_and_grads(X1, Y1, ours.begin_state(3))
        ref_loss, ref_grads, ref_state = ref.loss_and_grads(X1, Y1, ref.begin_state(3))
        assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)
        for name in ref_grads:
            assert _rel_err(grads[name], ref_grads[name]) < 1e-5, name
        # second batch: the state carried over (detached), as sequential training does
        loss, grads, _ = ours.loss_and_grads(X2, Y2, ours.detach(state))
        ref_loss, ref_grads, _ = ref.loss_and_grads(X2, Y2, ref.detach(ref_state))
        assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss)
        for name in ref_grads:
            assert _rel_err(grads[name], ref_grads[name]) < 1e-5, name

    @pytest.mark.parametrize("config", REGULARIZED_VARIANTS, ids=variant_id)
    def test_regularized_models_match_numpy_float64(self, config):
        """Weight, locked and embedding dropout (the same masks from the same generator), tied weights,
        AR and TAR, layer-normalised cells: the loss, every gradient of the objective over two batches,
        and the forward pass of evaluation."""
        self.skip_unless_supported(config)
        self.check_gradients_against_numpy(config)
        params = _boosted_params(config)
        ours, ref = self.make(params, config, "float64"), self.reference(params, config, "float64")
        X = np.random.default_rng(2).integers(0, 7, (2, 6))
        assert _rel_err(ours.forward(X, ours.begin_state(2))[0], ref.forward(X, ref.begin_state(2))[0]) < 1e-10

    def test_refuses_layer_norm_where_it_has_none(self):
        config = ModelConfig(7, 5, cell="lstm", layer_norm=True)
        if self.builds_layer_norm():
            pytest.skip(f"the {self.backend_name} backend builds layer-normalised cells")
        with pytest.raises(UserError, match=r"builds the book's cells, not layer-normalised ones \(layer_norm\)"):
            self.make(init_params(config, 0), config)

    def test_a_regularized_model_trains_without_detaching_as_numpy_does(self):
        """Three chained batches never detached, with updates: every batch's masks (a weight's drawn
        whole, the rows' per sequence) replayed as they ran, equal losses and weights."""
        config = REGULARIZED_VARIANTS[0]
        self.skip_unless_supported(config)
        rng = np.random.default_rng(3)
        batches = [tuple(rng.integers(0, config.vocab_size, (2, 4, 6))) for _ in range(3)]
        params = _boosted_params(config, scale=10)
        ours, ref = self.make(params, config, "float64"), self.reference(params, config, "float64")
        losses = _run_steps(ours, batches, "sequential", lr=0.5, detach=False)
        ref_losses = _run_steps(ref, batches, "sequential", lr=0.5, detach=False)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
        assert ours.dropout_rng_state() == ref.dropout_rng_state()
        for name, value in ref.get_params().items():
            np.testing.assert_allclose(ours.get_params()[name], value, rtol=1e-6, atol=1e-9, err_msg=name)

    @pytest.mark.parametrize("config", [ModelConfig(7, 6)] + GATED_VARIANTS, ids=variant_id)
    def test_forward_matches_numpy_step_by_step(self, config):
        self.skip_unless_supported(config)
        params = _boosted_params(config)
        ours, ref = self.make(params, config, "float64"), self.reference(params, config, "float64")
        X = np.random.default_rng(2).integers(0, 7, (2, 6))
        logits, state = ours.forward(X, ours.begin_state(2))
        ref_logits, ref_state = ref.forward(X, ref.begin_state(2))
        assert _rel_err(logits, ref_logits) < 1e-10
        # continuing one token at a time from the carried state, as generation does
        step_logits, _ = ours.forward(X[:, :1], state)
        ref_step, _ = ref.forward(X[:, :1], ref_state)
        assert _rel_err(step_logits, ref_step) < 1e-10

    # -- training equals the reference, float32 ------------------------------------------------------
    @pytest.mark.parametrize("sampling", ["sequential", "random"])
    def test_twenty_clipped_sgd_steps_match_numpy(self, sampling):
        batches, vocab = _chapter_batches(sampling)
        config = ModelConfig(len(vocab), 512)
        params = init_params(config, 0)
        ours, ref = self.make(params, config), self.reference(params, config)
        # the chapter's weights start with gradient norms near 0.2: theta 0.05 makes clipping rescale
        # every step, so a backend that clips each parameter on its own (or not at all) moves elsewhere
        theta = CLIP_THETA_THAT_BITES
        losses = _run_steps(ours, batches, sampling, clip=theta)
        norms = []
        ref_losses = transcribed_steps(ref, batches, sampling, clip=theta, norms=norms)
        assert sum(n > 1.5 * theta for n in norms) >= 15, norms
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
        got, want = ours.get_params(), ref.get_params()
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4,
                                       atol=1e-4 * float(np.max(np.abs(want[name]))), err_msg=name)

    @pytest.mark.parametrize("name", ["adam", "rmsprop", "momentum", "sgd-decay"])
    def test_twenty_steps_of_other_optimizers_match_numpy(self, name):
        """The optimizers are written once (scratchrnn.optim) over each backend's TensorOps and
        ``add_to_parameters``: the rule on this framework's tensors gives the losses and weights of the
        rule as transcribed (``transcribed_steps``) over the reference's gradients (sgd-decay: SGD with
        weight decay, whose gradients gain a term before the move)."""
        batches, vocab = _chapter_batches("sequential")
        config = ModelConfig(len(vocab), 64)
        params = init_params(config, 0)
        ours, ref = self.make(params, config), self.reference(params, config)
        lr = {"momentum": 0.3, "sgd-decay": 1.0}.get(name, 0.002)
        make = (lambda: create_optimizer("sgd", weight_decay=0.01)) if name == "sgd-decay" else (
            lambda: create_optimizer(name))
        losses = _run_steps(ours, batches, "sequential", lr=lr, optimizer=make())
        rule, decay = ("sgd", 0.01) if name == "sgd-decay" else (name, 0.0)
        ref_losses = transcribed_steps(ref, batches, "sequential", rule, lr=lr, weight_decay=decay)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
        assert ref_losses[-1] < ref_losses[0] - 0.1          # it trained, so the comparison means something
        got, want = ours.get_params(), ref.get_params()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4,
                                       atol=1e-4 * float(np.max(np.abs(want[key]))), err_msg=key)

    def test_no_detach_backpropagates_into_earlier_batches_like_numpy(self):
        batches, vocab = _chapter_batches("sequential", count=4)
        config = ModelConfig(len(vocab), 32)
        # weights small enough that gradients through 140 steps neither explode nor vanish
        params = _boosted_params(config, scale=10)
        ours, ref = self.make(params, config, "float64"), self.reference(params, config, "float64")
        losses = _run_steps(ours, batches, "sequential", lr=0.5, detach=False)
        ref_losses = _run_steps(ref, batches, "sequential", lr=0.5, detach=False)
        detached = self.reference(params, config, "float64")
        detached_losses = _run_steps(detached, batches, "sequential", lr=0.5, detach=True)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
        for name, value in ref.get_params().items():
            np.testing.assert_allclose(ours.get_params()[name], value, rtol=1e-6, atol=1e-9)
        # and it is a different computation from detaching, or the test above proves nothing
        assert abs(ref_losses[-1] - detached_losses[-1]) > 1e-6

    def test_twenty_sgd_steps_of_a_deep_lstm_with_dropout_match_numpy(self):
        config = ModelConfig(28, 24, cell="lstm", num_layers=2, dropout=0.2)
        self.skip_unless_supported(config)
        batches, vocab = _chapter_batches("sequential")
        assert len(vocab) == config.vocab_size
        # weights N(0, 0.1): from N(0, 0.01) twenty steps move a gated model too little to compare
        params = {k: v * 10 for k, v in init_params(config, 0).items()}
        ours, ref = self.make(params, config), self.reference(params, config)
        losses = _run_steps(ours, batches, "sequential")
        ref_losses = _run_steps(ref, batches, "sequential")
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-4)
        assert ref_losses[-1] < ref_losses[0] - 0.05
        got, want = ours.get_params(), ref.get_params()
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4,
                                       atol=1e-4 * float(np.max(np.abs(want[key]))), err_msg=key)

    def test_no_detach_of_a_deep_lstm_with_dropout_is_numpys(self):
        batches, vocab = _chapter_batches("sequential", count=3)
        config = ModelConfig(len(vocab), 12, cell="lstm", num_layers=2, dropout=0.2)
        self.skip_unless_supported(config)
        params = _boosted_params(config, scale=10)
        ours, ref = self.make(params, config, "float64"), self.reference(params, config, "float64")
        losses = _run_steps(ours, batches, "sequential", lr=0.5, detach=False)
        ref_losses = _run_steps(ref, batches, "sequential", lr=0.5, detach=False)
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
        for name, value in ref.get_params().items():
            np.testing.assert_allclose(ours.get_params()[name], value, rtol=1e-6, atol=1e-9, err_msg=name)

    def test_the_dropout_generators_state_gives_the_same_masks_again(self):
        """What a checkpoint keeps of the masks (``dropout_rng_state``) draws them again on resume;
        ``forward`` (evaluation, generation) draws none."""
        config = ModelConfig(7, 5, cell="gru", num_layers=2, dropout=0.5)
        self.skip_unless_supported(config)
        backend = backends.create(self.backend_name, _boosted_params(config), config, device=self.device,
                                  dtype="float64", dropout_seed=3)
        X, Y = (np.random.default_rng(8).integers(0, 7, (3, 4)) for _ in range(2))
        saved = backend.dropout_rng_state()
        backend.forward(X, backend.begin_state(3))
        assert backend.dropout_rng_state() == saved
        first = backend.loss_and_grads(X, Y, backend.begin_state(3))[0]
        second = backend.loss_and_grads(X, Y, backend.begin_state(3))[0]
        backend.set_dropout_rng_state(saved)
        assert backend.loss_and_grads(X, Y, backend.begin_state(3))[0] == first
        assert second != first

    def test_clipping_bounds_the_update(self):
        batches, vocab = _chapter_batches("random", count=1)
        config = ModelConfig(len(vocab), 64)
        params = _boosted_params(config)
        backend = self.make(params, config, "float64")
        theta, lr = 1e-3, 1.0
        _run_steps(backend, batches, "random", lr=lr, clip=theta)
        moved = np.sqrt(sum(np.sum((backend.get_params()[k] - params[k]) ** 2) for k in params))
        assert moved <= lr * theta * (1 + 1e-6)
        assert moved >= lr * theta * (1 - 1e-6)   # the gradient norm was far above theta

    # -- checkpoints cross backends ----------------------------------------------------------------
    def test_checkpoint_written_here_generates_the_same_text_in_numpy(self, tmp_path, monkeypatch):
        # a model trained far enough to continue with words (an untrained one repeats "the the"),
        # trained a few steps more here so that the checkpoint is this backend's own
        vocab, config, params = trained_fixture()
        batches, _ = _chapter_batches("sequential", count=4)
        if kernels.load() is not None:
            monkeypatch.setenv("SCRATCHRNN_LOOPS", "compiled")  # the compiled decoder makes the text first
        backend = self.make(params, config)
        _run_steps(backend, batches, "sequential", lr=0.1)
        save_checkpoint(tmp_path / "ckpt", Checkpoint(backend.get_params(), vocab, config))
        ckpt = load_checkpoint(tmp_path / "ckpt")
        numpy_model = backends.create("numpy", ckpt.params, ckpt.model)
        reloaded_here = self.make(ckpt.params, ckpt.model)
        text = predict(backend, vocab, "time traveller", 40)
        assert reads_like_text(text[len("time traveller"):]), text
        assert predict(numpy_model, ckpt.vocab, "time traveller", 40) == text
        assert predict(reloaded_here, ckpt.vocab, "time traveller", 40) == text
        # greedy float32 generation above ran on the compiled decoder where the library is built, the
        # same C code for every backend; without it, this framework's own forward pass makes the text,
        # through its own decode loop and through generation's generic loop alike
        monkeypatch.setenv("SCRATCHRNN_NO_KERNEL", "1")
        assert predict(reloaded_here, vocab, "time traveller", 40) == text
        assert predict(ForwardOnly(reloaded_here), vocab, "time traveller", 40) == text

    @pytest.mark.parametrize("config", [ModelConfig(28, 32, cell="lstm", num_layers=2, dropout=0.1),
                                        ModelConfig(28, 32, cell="gru")], ids=variant_id)
    def test_gated_checkpoint_generates_the_same_text_in_numpy(self, tmp_path, config):
        self.skip_unless_supported(config)
        batches, vocab = _chapter_batches("sequential", count=4)
        backend = self.make({k: v * 10 for k, v in init_params(config, 1).items()}, config)
        _run_steps(backend, batches, "sequential")
        save_checkpoint(tmp_path / "ckpt", Checkpoint(backend.get_params(), vocab, config))
        ckpt = load_checkpoint(tmp_path / "ckpt")
        numpy_model = backends.create("numpy", ckpt.params, ckpt.model)
        text = predict(backend, vocab, "time traveller", 30)
        assert predict(numpy_model, ckpt.vocab, "time traveller", 30) == text
        assert predict(ForwardOnly(backend), vocab, "time traveller", 30) == text
