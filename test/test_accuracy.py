"""``mds accuracy``: a tiny K=1 vs K=5 run through the command line writes sane reports."""

import dataclasses
import json
import math

import cv2

from mds_core.cli.main import main
from mds_core.tools.accuracy import PRESETS, training_config

WIDTH, HEIGHT = 64, 64


def test_tiny_accuracy_run_writes_markdown_json_and_png(tmp_path):
    out = tmp_path / "accuracy"
    status = main(["accuracy", "--preset", "cpu", "--output", str(out), "--device", "cpu", "--steps", "3",
                   "--width", str(WIDTH), "--height", str(HEIGHT), "--train-sequences", "1", "--frames", "6",
                   "--heldout-sequences", "1", "--heldout-frames", "4", "--batch-size", "2", "--seed", "3"])
    assert status == 0
    markdown, report, picture = out / "accuracy.md", out / "accuracy.json", out / "accuracy.png"
    assert markdown.is_file() and report.is_file() and picture.is_file()

    data = json.loads(report.read_text())
    assert set(data["models"]) == {"K=1", "K=5"}
    for model in data["models"].values():
        assert model["steps"] == 3
        assert math.isfinite(model["depth"]["overall"]["abs_rel"])
    assert data["models"]["K=1"]["motion_segmentation"] is None  # one component: nothing to segment
    assert 0.0 <= data["models"]["K=5"]["motion_segmentation"]["best_f1"] <= 1.0
    assert data["preset"]["width"] == WIDTH and data["preset"]["seed"] == 3
    assert data["num_heldout_frames"] == 4

    text = markdown.read_text()
    assert "| K=1 | moving |" in text and "| K=5 | static background |" in text

    image = cv2.imread(str(picture))
    rows = len(data["montage_frames"])
    assert rows >= 1
    assert image.shape == (rows * HEIGHT, 6 * WIDTH, 3)


def test_the_two_models_differ_only_in_the_number_of_components(tmp_path):
    preset = PRESETS["cpu"]
    k1 = dataclasses.asdict(training_config(preset, 1, tmp_path, tmp_path / "run", num_samples=200))
    k5 = dataclasses.asdict(training_config(preset, 5, tmp_path, tmp_path / "run", num_samples=200))
    assert k1["model"].pop("num_components") == 1 and k5["model"].pop("num_components") == 5
    assert k1 == k5
    assert k1["optim"]["max_steps"] == preset.steps
    assert k1["optim"]["epochs"] * (200 // preset.batch_size) >= preset.steps  # the budget fits the schedule


def test_bad_override_is_one_line_error(capsys):
    assert main(["accuracy", "--width", "100", "--output", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mds accuracy: error: width and height must be positive multiples of 32, got 100x64"]
