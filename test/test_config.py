"""Typed configs: strict loading, clear errors, overrides."""

import re

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
    with pytest.raises(ConfigError, match=r"c.yaml line 1: unclosed flow sequence"):
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


# Scientific notation (issue 17): YAML 1.1 reads `1e-3`, `5E-4` and `1.5e2` as strings, not numbers.
# One case per typed field kind, through a config file and through `--set`.
SCIENTIFIC_CASES = [
    # (kind, dotted key, value as written, expected field value or None for "rejected")
    ("float", "optim.learning_rate", "1e-3", 1e-3),
    ("float", "loss.smoothness_weight", "5E-4", 5e-4),
    ("float", "model.max_depth", "1.5e2", 150.0),
    ("float", "model.max_depth", "1.5e+2", 150.0),
    ("int", "optim.epochs", "2e1", 20),
    ("list", "optim.betas", "[9e-1, 999E-3]", [0.9, 0.999]),
    ("optional", "optim.max_steps", "1e3", 1000),
    ("optional", "data.bag.intrinsics", "[6e1, 1.2e2, 4.8e1, 3.2e1]", [60.0, 120.0, 48.0, 32.0]),
    ("optional-null", "optim.max_steps", "null", None),
    ("str", "data.root", "1e-3", "1e-3"),  # a string stays the text as written, not 0.001
]


def _field(config, dotted):
    for key in dotted.split("."):
        config = getattr(config, key)
    return config


def _nested_yaml(dotted, value):
    keys = dotted.split(".")
    lines = [f"{'  ' * depth}{key}:" for depth, key in enumerate(keys[:-1])]
    return "\n".join([*lines, f"{'  ' * (len(keys) - 1)}{keys[-1]}: {value}"]) + "\n"


@pytest.mark.parametrize("kind,dotted,written,expected", SCIENTIFIC_CASES,
                         ids=[f"{case[0]}-{case[1]}={case[2]}" for case in SCIENTIFIC_CASES])
def test_scientific_notation_in_config_files_and_overrides(tmp_path, kind, dotted, written, expected):
    path = tmp_path / "config.yaml"
    path.write_text(_nested_yaml(dotted, written))
    from_file = _field(load_config(path), dotted)
    from_override = _field(apply_overrides(TrainConfig(), [f"{dotted}={written}"]), dotted)
    for value in (from_file, from_override):
        assert value == pytest.approx(expected) if expected is not None else value is None
        assert type(value) is type(expected)
        if isinstance(expected, list):
            assert all(type(item) is float for item in value)


@pytest.mark.parametrize("dotted,written,message", [
    ("amp", "1e-3", "amp: expected true/false, got '1e-3'"),  # bool: not a number field
    ("optim.epochs", "1e-3", "optim.epochs: expected an integer, got '1e-3'"),  # int: not a whole number
    ("optim.learning_rate", "1e-3x", "optim.learning_rate: expected a number, got '1e-3x'"),
])
def test_scientific_notation_is_still_type_checked(tmp_path, dotted, written, message):
    path = tmp_path / "config.yaml"
    path.write_text(_nested_yaml(dotted, written))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(TrainConfig(), [f"{dotted}={written}"])


@pytest.mark.parametrize("text,line,reason", [
    ("model: [unclosed\n", 1, "unclosed flow sequence"),
    ("seed: 1\ndevice: cpu\nmodel: {height: 64\noptim: {}\n", 3, "unclosed flow mapping"),
    ("model:\n\theight: 64\n", 2, "tab"),
    ("data:\n  root: a: b\n", 2, "quote"),
    ("data:\n  root: 'unterminated\n", 2, "unterminated quoted string"),
])
def test_yaml_syntax_errors_are_one_line_with_file_and_line(tmp_path, text, line, reason):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith(f"{path} line {line}: "), message
    assert reason in message, message


def test_other_config_errors_are_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"seed": 1,\n "amp": }\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))} line 2: ") as caught:
        load_config(path)
    assert "\n" not in str(caught.value)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ConfigError, match="not a text file") as caught:
        load_config(binary)
    with pytest.raises(ConfigError, match=r"override 'model=\[1': unclosed flow sequence") as caught:
        apply_overrides(TrainConfig(), ["model=[1"])
    assert "\n" not in str(caught.value)


def test_decomposition_options_are_typed_and_validated():
    config = apply_overrides(TrainConfig(), ["model.depth_source=ground_truth", "decomposition.warmup_steps=50",
                                             "loss.assignment_margin=0.05", "model.motion_hypotheses=[3, -1, 0, 2]"])
    assert config.model.depth_source == "ground_truth" and config.decomposition.warmup_steps == 50
    assert config.loss.assignment_margin == 0.05 and config.model.hypotheses == [3.0, -1.0, 0.0, 2.0]
    defaults = TrainConfig()
    assert defaults.model.depth_source == "network" and defaults.model.hypotheses == [2.0, 0.0, 1.0, 1.0]
    assert defaults.model.directions == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [-1.5, 0.0, 0.0]]
    ego = apply_overrides(TrainConfig(), ["model.hypothesis_set=ego_scaled"]).model
    assert ego.hypotheses == [2.0, 0.0, -0.5, 1.5] and ego.directions is None
    # explicit factors mean no standard own motions; explicit own motions are used as given
    assert config.model.directions is None
    with pytest.raises(ConfigError, match="model.hypothesis_set: must be one of"):
        apply_overrides(TrainConfig(), ["model.hypothesis_set=sideways"])
    assert defaults.decomposition.warmup_steps == 150 and defaults.loss.automask_start_step == 100
    with pytest.raises(ConfigError, match="model.depth_source: must be one of"):
        apply_overrides(TrainConfig(), ["model.depth_source=lidar"])
    with pytest.raises(ConfigError, match="decomposition.warmup_steps must be >= 0"):
        apply_overrides(TrainConfig(), ["decomposition.warmup_steps=-1"])
    with pytest.raises(ConfigError, match="loss.mask_assignment_weight must be >= 0"):
        apply_overrides(TrainConfig(), ["loss.mask_assignment_weight=-1"])
    with pytest.raises(ConfigError, match="needs model.motion_hypotheses set explicitly"):
        apply_overrides(TrainConfig(), ["model.num_components=9"])
    with pytest.raises(ConfigError, match="ground_truth_depth_scale must be > 0"):
        apply_overrides(TrainConfig(), ["model.ground_truth_depth_scale=0"])
