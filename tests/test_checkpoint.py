"""Checkpoints: what is saved comes back, and damage is refused, not used."""
import json

import numpy as np
import pytest

from scratchrnn import backends
from scratchrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from scratchrnn.data import SeqDataLoader, load_corpus
from scratchrnn.errors import UserError
from scratchrnn.generation import predict
from scratchrnn.model import ModelConfig, init_params
from scratchrnn.training import TrainConfig, train


@pytest.fixture(scope="module")
def trained():
    corpus, vocab = load_corpus(max_tokens=2000)
    config = ModelConfig(len(vocab), 32, embedding="learned", embed_dim=8)
    backend = backends.create("numpy", init_params(config, 2), config)
    train(backend, SeqDataLoader(corpus, 8, 10), TrainConfig(epochs=3, batch_size=8, num_steps=10))
    return backend, vocab, config


def test_round_trip_restores_weights_vocab_config_and_text(tmp_path, trained):
    backend, vocab, config = trained
    save_checkpoint(tmp_path / "ckpt", Checkpoint(backend.get_params(), vocab, config, info={"epoch": 3}))
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.model == config and ckpt.vocab.idx_to_token == vocab.idx_to_token
    assert ckpt.info == {"epoch": 3}
    for name, value in backend.get_params().items():
        np.testing.assert_array_equal(ckpt.params[name], value)
    reloaded = backends.create("numpy", ckpt.params, ckpt.model)
    assert predict(reloaded, ckpt.vocab, "the time", 40) == predict(backend, vocab, "the time", 40)


def test_saving_again_replaces_the_old_checkpoint_and_leaves_no_debris(tmp_path, trained):
    backend, vocab, config = trained
    params = backend.get_params()
    save_checkpoint(tmp_path / "ckpt", Checkpoint(params, vocab, config, info={"epoch": 1}))
    save_checkpoint(tmp_path / "ckpt", Checkpoint(params, vocab, config, info={"epoch": 2}))
    assert load_checkpoint(tmp_path / "ckpt").info["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_run_directory_is_accepted_for_its_checkpoint(tmp_path, trained):
    backend, vocab, config = trained
    save_checkpoint(tmp_path / "run" / "checkpoint", Checkpoint(backend.get_params(), vocab, config))
    assert load_checkpoint(tmp_path / "run").model == config


def _corrupt_weights(ckpt_dir):
    path = ckpt_dir / "weights.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _break_json(ckpt_dir):
    (ckpt_dir / "config.json").write_text("{ not json")


def _drop_weights(ckpt_dir):
    (ckpt_dir / "weights.npz").unlink()


def _shrink_vocab(ckpt_dir):
    config = json.loads((ckpt_dir / "config.json").read_text())
    config["vocab"] = config["vocab"][:-1]
    (ckpt_dir / "config.json").write_text(json.dumps(config))


def _other_format(ckpt_dir):
    (ckpt_dir / "config.json").write_text(json.dumps({"format": "something-else"}))


@pytest.mark.parametrize("damage, message", [
    (_corrupt_weights, "corrupt"),
    (_break_json, "not valid JSON"),
    (_drop_weights, "no weights.npz"),
    (_shrink_vocab, "vocabulary has 27 tokens"),
    (_other_format, "not a scratchrnn checkpoint"),
])
def test_damaged_checkpoints_are_refused_with_the_reason(tmp_path, trained, damage, message):
    backend, vocab, config = trained
    ckpt_dir = save_checkpoint(tmp_path / "ckpt", Checkpoint(backend.get_params(), vocab, config))
    damage(ckpt_dir)
    with pytest.raises(UserError, match=message):
        load_checkpoint(ckpt_dir)


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_checkpoint(tmp_path / "empty")
