"""Typed configs: strict loading, clear errors, overrides."""

import pytest

from mds_core.config import ConfigError, TrainConfig, apply_overrides, config_from_dict, config_to_dict, load_config


def test_round_trip_through_plain_data():
    config = TrainConfig()
    config.model.num_components = 3
    assert config_from_dict(TrainConfig, config_to_dict(config)) == config


def test_defaults_follow_the_paper():
    config = TrainConfig()
    assert config.optim.learning_rate == 1e-4 and config.optim.epochs == 20 and config.optim.lr_decay_epochs == 5
    assert config.model.num_components == 5 and config.model.mask_regulariser == "depth_ordering"
    assert config.model.depth_encoder == "resnet50"
    assert config.loss.ssim_weight == 0.85 and config.loss.smoothness_weight == 1e-3


def test_unknown_keys_and_bad_types_name_the_entry(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  num_componets: 3\n")
    with pytest.raises(ConfigError, match=r"model: unknown key\(s\) \['num_componets'\]"):
        load_config(path)
    path.write_text("optim:\n  batch_size: twelve\n")
    with pytest.raises(ConfigError, match="optim.batch_size: expected an integer"):
        load_config(path)
    path.write_text("model:\n  depth_encoder: resnet34\n")
    with pytest.raises(ConfigError, match="model.depth_encoder: must be one of"):
        load_config(path)
    path.write_text("model:\n  width: 100\n")
    with pytest.raises(ConfigError, match="multiples of 32"):
        load_config(path)
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="could not be parsed"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_overrides():
    config = apply_overrides(TrainConfig(), ["optim.max_steps=7", "data.root=/tmp/x", "model.num_components=2"])
    assert config.optim.max_steps == 7 and config.data.root == "/tmp/x" and config.model.num_components == 2
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(TrainConfig(), ["optim.nope=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(TrainConfig(), ["optim.max_steps"])


def test_shipped_config_files_load():
    from pathlib import Path

    files = sorted((Path(__file__).parent.parent / "config").glob("train_*.yaml"))
    assert files
    for path in files:
        load_config(path)
