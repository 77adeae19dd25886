"""Checkpoints: what is saved comes back, version 1 still loads, and damage is refused, not used."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from scratchrnn import backends
from scratchrnn.checkpoint import (Checkpoint, load_checkpoint, save_checkpoint, vocab_problem)
from scratchrnn.checkpoint_files import nesting_depth
from scratchrnn.data import SeqDataLoader, Vocab, load_corpus
from scratchrnn.errors import UserError
from scratchrnn.generation import predict
from scratchrnn.model import ModelConfig, init_params
from scratchrnn.training import TrainConfig, train

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "v1-checkpoint"


@pytest.fixture(scope="module")
def trained():
    corpus, vocab = load_corpus(max_tokens=2000)
    config = ModelConfig(len(vocab), 32, embedding="learned", embed_dim=8)
    backend = backends.create("numpy", init_params(config, 2), config)
    train(backend, SeqDataLoader(corpus, 8, 10), TrainConfig(epochs=3, batch_size=8, num_steps=10))
    return backend, vocab, config


def _ckpt(trained, **kw):
    backend, vocab, config = trained
    return Checkpoint(backend.get_params(), vocab, config, **kw)


def test_round_trip_restores_weights_vocab_config_and_text(tmp_path, trained):
    backend, vocab, config = trained
    save_checkpoint(tmp_path / "ckpt", _ckpt(trained, info={"epoch": 3}))
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.model == config and ckpt.vocab.idx_to_token == vocab.idx_to_token
    assert ckpt.info == {"epoch": 3} and ckpt.train_state is None and ckpt.optimizer_state == {}
    for name, value in backend.get_params().items():
        np.testing.assert_array_equal(ckpt.params[name], value)
        assert ckpt.params[name].dtype == value.dtype
    reloaded = backends.create("numpy", ckpt.params, ckpt.model)
    assert predict(reloaded, ckpt.vocab, "the time", 40) == predict(backend, vocab, "the time", 40)


def test_version_2_layout_is_safetensors_and_json_with_train_and_optimizer_state(tmp_path, trained):
    params = trained[0].get_params()
    optimizer = {"exp_avg/W_xh": np.full_like(params["W_xh"], 0.5), "step/W_xh": np.array(7.0)}
    state = {"epoch": 3, "rng": [1, 2, 3], "history": [{"epoch": 1, "ppl": 9.5}]}
    save_checkpoint(tmp_path / "ckpt", _ckpt(trained, train_state=state, optimizer_state=optimizer))
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json", "model.safetensors", "optimizer.safetensors"]
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["format"] == "scratchrnn-checkpoint" and config["version"] == 2
    assert config["vocab"] == trained[1].idx_to_token and config["data"] == {"cleaning": "chapter", "token": "char"}
    assert set(config["files"]) == {"model.safetensors", "optimizer.safetensors"}
    from safetensors import safe_open   # what the Hugging Face tooling uses
    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), framework="np") as f:
        assert sorted(f.keys()) == sorted(params)
        np.testing.assert_array_equal(f.get_tensor("W_hh"), params["W_hh"])
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.train_state == state
    np.testing.assert_array_equal(ckpt.optimizer_state["exp_avg/W_xh"], optimizer["exp_avg/W_xh"])
    assert ckpt.optimizer_state["step/W_xh"].shape == () and float(ckpt.optimizer_state["step/W_xh"]) == 7.0


def test_no_pickle_anywhere():
    source = (Path(__file__).parents[1] / "src" / "scratchrnn" / "checkpoint.py").read_text()
    source += (Path(__file__).parents[1] / "src" / "scratchrnn" / "checkpoint_files.py").read_text()
    assert "pickle" not in source.replace("no pickle", "") and "np.load(" not in source


def test_version_1_fixture_still_loads():
    ckpt = load_checkpoint(FIXTURE_V1)
    assert ckpt.model == ModelConfig(28, 8) and len(ckpt.vocab) == 28 and ckpt.info["epoch"] == 2
    assert ckpt.train_state is None and ckpt.optimizer_state == {}
    with np.load(FIXTURE_V1 / "weights.npz", allow_pickle=False) as npz:
        for name in npz.files:
            np.testing.assert_array_equal(ckpt.params[name], npz[name])
    text = predict(backends.create("numpy", ckpt.params, ckpt.model), ckpt.vocab, "time", 10)
    assert text.startswith("time") and len(text) == 14


def test_a_version_1_run_directory_and_a_v1_config_without_new_model_keys_load(tmp_path):
    shutil.copytree(FIXTURE_V1, tmp_path / "run" / "checkpoint")
    assert load_checkpoint(tmp_path / "run").model == ModelConfig(28, 8)
    assert load_checkpoint(tmp_path / "run", which="last").model == ModelConfig(28, 8)
    config_path = tmp_path / "run" / "checkpoint" / "config.json"
    config = json.loads(config_path.read_text())
    for key in ("cell", "num_layers", "dropout"):
        del config["model"][key]
    config_path.write_text(json.dumps(config))
    assert load_checkpoint(tmp_path / "run").model == ModelConfig(28, 8)


def test_saving_again_replaces_the_old_checkpoint_and_leaves_no_debris(tmp_path, trained):
    save_checkpoint(tmp_path / "ckpt", _ckpt(trained, info={"epoch": 1}))
    save_checkpoint(tmp_path / "ckpt", _ckpt(trained, info={"epoch": 2}))
    assert load_checkpoint(tmp_path / "ckpt").info["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_run_directory_is_accepted_for_its_checkpoints(tmp_path, trained):
    save_checkpoint(tmp_path / "run" / "last", _ckpt(trained, info={"which": "last"}))
    with pytest.raises(UserError, match="no best/ checkpoint"):
        load_checkpoint(tmp_path / "run")
    save_checkpoint(tmp_path / "run" / "best", _ckpt(trained, info={"which": "best"}))
    assert load_checkpoint(tmp_path / "run").info["which"] == "best"
    assert load_checkpoint(tmp_path / "run", which="last").info["which"] == "last"


def test_a_save_stopped_between_its_renames_leaves_the_old_copy_loadable(tmp_path, trained):
    save_checkpoint(tmp_path / "ckpt", _ckpt(trained, info={"epoch": 1}))
    os.rename(tmp_path / "ckpt", tmp_path / ".ckpt.old-4242")
    assert load_checkpoint(tmp_path / "ckpt").info["epoch"] == 1
    save_checkpoint(tmp_path / "ckpt", _ckpt(trained, info={"epoch": 2}))
    assert load_checkpoint(tmp_path / "ckpt").info["epoch"] == 2


def test_interrupt_while_the_old_copy_is_aside_puts_it_back(tmp_path, trained, monkeypatch):
    save_checkpoint(tmp_path / "ckpt", _ckpt(trained, info={"epoch": 1}))
    monkeypatch.setenv("SCRATCHRNN_FAULT", "checkpoint.old-moved-aside:interrupt")
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ckpt", _ckpt(trained, info={"epoch": 2}))
    assert load_checkpoint(tmp_path / "ckpt").info["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_vocabulary_with_an_escape_code_is_not_saved(tmp_path, trained):
    backend, vocab, config = trained
    bad = Vocab.from_tokens_list(vocab.idx_to_token[:-1] + ["\x1b"])
    with pytest.raises(UserError, match="control character"):
        save_checkpoint(tmp_path / "ckpt", Checkpoint(backend.get_params(), bad, config))
    assert vocab_problem(["<unk>", "a", "\n", "\t", "\r", "\x0c"]) is None


def test_nesting_depth_is_counted_without_recursion():
    assert nesting_depth('{"a": [1, {"b": "[[[{{"}], "c\\"[": []}') == 3
    assert nesting_depth("[" * 200_000) == 200_000


# -- damage and hostile content (details in test_checkpoint_hostile.py) ----------------------------
def _corrupt_weights(ckpt_dir):
    path = ckpt_dir / "model.safetensors"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _break_json(ckpt_dir):
    (ckpt_dir / "config.json").write_text("{ not json")


def _drop_weights(ckpt_dir):
    (ckpt_dir / "model.safetensors").unlink()


def _shrink_vocab(ckpt_dir):
    config = json.loads((ckpt_dir / "config.json").read_text())
    config["vocab"] = config["vocab"][:-1]
    (ckpt_dir / "config.json").write_text(json.dumps(config))


def _other_format(ckpt_dir):
    (ckpt_dir / "config.json").write_text(json.dumps({"format": "something-else"}))


@pytest.mark.parametrize("damage, message", [
    (_corrupt_weights, "checksum"),
    (_break_json, "not valid JSON"),
    (_drop_weights, "no model.safetensors"),
    (_shrink_vocab, "vocabulary has 27 tokens"),
    (_other_format, "not a scratchrnn checkpoint"),
])
def test_damaged_checkpoints_are_refused_with_the_reason(tmp_path, trained, damage, message):
    ckpt_dir = save_checkpoint(tmp_path / "ckpt", _ckpt(trained))
    damage(ckpt_dir)
    with pytest.raises(UserError, match=message):
        load_checkpoint(ckpt_dir)


def test_other_valid_weights_without_a_new_checksum_are_refused(tmp_path, trained):
    """Catches a load that skips the SHA-256 check: the file is valid, only the checksum disagrees."""
    backend, vocab, config = trained
    ckpt_dir = save_checkpoint(tmp_path / "ckpt", _ckpt(trained))
    other = save_checkpoint(tmp_path / "other", Checkpoint(init_params(config, 9), vocab, config))
    shutil.copy(other / "model.safetensors", ckpt_dir / "model.safetensors")
    with pytest.raises(UserError, match="checksum"):
        load_checkpoint(ckpt_dir)


def test_other_valid_v1_weights_without_a_new_checksum_are_refused(tmp_path):
    ckpt_dir = tmp_path / "v1"
    shutil.copytree(FIXTURE_V1, ckpt_dir)
    params = init_params(ModelConfig(28, 8), 5)
    with open(ckpt_dir / "weights.npz", "wb") as f:
        np.savez(f, **params)
    with pytest.raises(UserError, match="checksum"):
        load_checkpoint(ckpt_dir)


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_checkpoint(tmp_path / "empty")


def test_a_train_state_with_numpy_rng_states_round_trips(tmp_path, trained):
    state = {"loader_rng": np.random.default_rng(7).bit_generator.state,
             "legacy_rng": [int(x) for x in np.random.RandomState(3).get_state()[1][:8]],
             "best": float("inf"), "epoch": 4}
    save_checkpoint(tmp_path / "ckpt", _ckpt(trained, train_state=state))
    loaded = load_checkpoint(tmp_path / "ckpt").train_state
    assert loaded == state
    rng = np.random.default_rng()
    rng.bit_generator.state = loaded["loader_rng"]
    assert rng.integers(1 << 30) == np.random.default_rng(7).integers(1 << 30)


@pytest.mark.parametrize("point", ["checkpoint.staging-created", "checkpoint.model-written",
                                   "checkpoint.config-written", "checkpoint.files-synced",
                                   "checkpoint.old-moved-aside", "checkpoint.new-in-place",
                                   "checkpoint.old-removed"])
def test_ctrl_c_at_any_step_of_save_checkpoint_keeps_a_copy_and_no_debris(tmp_path, trained, monkeypatch, point):
    save_checkpoint(tmp_path / "ckpt", _ckpt(trained, info={"epoch": 1}))
    monkeypatch.setenv("SCRATCHRNN_FAULT", f"{point}:interrupt")
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "ckpt", _ckpt(trained, info={"epoch": 2}))
    monkeypatch.delenv("SCRATCHRNN_FAULT")
    assert load_checkpoint(tmp_path / "ckpt").info["epoch"] in (1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_the_size_estimate_covers_what_a_save_writes(tmp_path, trained):
    from scratchrnn.checkpoint import estimate_checkpoint_bytes
    params = trained[0].get_params()
    optimizer = {f"{slot}/{k}": v for k, v in params.items() for slot in ("exp_avg", "exp_avg_sq")}
    path = save_checkpoint(tmp_path / "ckpt", _ckpt(trained, optimizer_state=optimizer, train_state={"epoch": 1}))
    written = sum(p.stat().st_size for p in path.iterdir())
    estimate = estimate_checkpoint_bytes(trained[2], 4, optimizer_slots=2)
    assert written <= estimate < 2 * written + (1 << 17)
