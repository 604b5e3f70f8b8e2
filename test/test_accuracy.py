"""``mds accuracy``: a tiny run of every variant, through the command line, writes sane reports."""

import dataclasses
import json
import math
import os
from pathlib import Path

import cv2
import pytest
import torch

from mds_core.cli.main import main
from mds_core.tools.accuracy import PRESETS, VARIANTS, mean_and_std, situation_frames, training_config

WIDTH, HEIGHT = 64, 64


def test_tiny_accuracy_run_writes_markdown_json_and_png(tmp_path):
    out = tmp_path / "accuracy"
    args = ["accuracy", "--preset", "cpu", "--output", str(out), "--device", "cpu", "--steps", "3",
            "--width", str(WIDTH), "--height", str(HEIGHT), "--train-sequences", "1", "--frames", "6",
            "--heldout-sequences", "1", "--heldout-frames", "4", "--batch-size", "2", "--seed", "3", "--seeds", "1"]
    assert main(args) == 0
    markdown, report, picture = out / "accuracy.md", out / "accuracy.json", out / "accuracy.png"
    assert markdown.is_file() and report.is_file() and picture.is_file()

    data = json.loads(report.read_text())
    runs = data["runs"]
    assert sorted((r["variant"], r["seed"]) for r in runs) == sorted(
        (v, 3) for v in ("K=1", "K=5", "K=5, GT depth", "scene flow"))
    for run in runs:
        assert run["steps"] == 3
        assert math.isfinite(run["depth"]["overall"]["abs_rel"])
        if run["variant"] == "K=1":
            assert run["motion_segmentation"] is None  # one component: nothing to segment
        else:
            assert 0.0 <= run["motion_segmentation"]["mask/relative"]["best_f1"] <= 1.0
    # the summary is the mean and standard deviation over seeds (one here: see test_mean_and_std_over_seeds)
    k5 = next(r for r in runs if r["variant"] == "K=5")
    assert data["summary"]["K=5"]["depth"]["moving"]["abs_rel"] == [k5["depth"]["moving"]["abs_rel"], 0.0]
    k1 = next(r for r in runs if r["variant"] == "K=1")
    change = {region: k5["depth"][region]["abs_rel"] / k1["depth"][region]["abs_rel"] - 1
              for region in ("moving", "static_background")}
    assert data["summary"]["K=5"]["abs_rel_change_vs_k1"]["moving"] == [change["moving"], 0.0]
    assert data["summary"]["K=5"]["moving_minus_background"] == [change["moving"] - change["static_background"], 0.0]
    oracle = next(r for r in runs if r["variant"] == "K=5, GT depth")
    assert data["summary"]["K=5, GT depth"]["motion"]["mask/all"]["average_precision"] == [
        oracle["motion_segmentation"]["mask/all"]["average_precision"], 0.0]
    assert "motion" not in data["summary"]["K=1"] and "motion" in data["summary"]["K=5, GT depth"]
    assert 0.0 < data["chance"]["mask/all"]["prevalence"] < 1.0
    assert data["preset"]["width"] == WIDTH and data["preset"]["seed"] == 3
    assert data["num_heldout_frames"] == 4

    text = markdown.read_text()
    assert "| K=1 |" in text and "| K=5, GT depth |" in text and "±" in text
    assert "| K=5, GT depth | 0.000" not in text  # the oracle's depth is the ground truth: no depth row

    image = cv2.imread(str(picture))
    rows = len(data["montage_frames"])
    assert rows >= 1
    assert image.shape == (rows * HEIGHT, 9 * WIDTH, 3)  # six columns, the oracle's decomposition, the scene flow's two
    flow = next(r for r in runs if r["variant"] == "scene flow")
    assert 0.0 <= flow["motion_segmentation"]["mask/all"]["average_precision"] <= 1.0  # its motion mask is scored
    assert "| scene flow vs K=1 |" in text and "| scene flow |" in text
    assert "| K=5 vs K=1 |" in text and "moving relative to camera" in text and " points |" in text
    assert set(k5["depth"]) >= {"moving_relative", "moving_with_camera"}

    # --reuse evaluates the finished models again instead of retraining them
    checkpoints = {r["variant"]: r["checkpoint"] for r in runs}
    written = {name: os.stat(path).st_mtime_ns for name, path in checkpoints.items()}
    assert main([*args, "--reuse"]) == 0
    again = json.loads(report.read_text())["runs"]
    assert {r["variant"]: os.stat(r["checkpoint"]).st_mtime_ns for r in again} == written
    assert [r["train_seconds"] for r in again] == [r["train_seconds"] for r in runs]
    assert [r["depth"] for r in again] == [r["depth"] for r in runs]  # the same models, scored the same
    assert len(json.loads(report.read_text())["reused"]) == 4 and "only evaluated again" in markdown.read_text()
    # another budget is another config: that run trains anew
    assert main([*args, "--reuse", "--batch-size", "1"]) == 0  # a later option wins
    retrained = json.loads(report.read_text())["runs"]
    assert all(os.stat(r["checkpoint"]).st_mtime_ns != written[r["variant"]] for r in retrained)
    assert retrained[1]["variant"] == "K=5"
    assert set(json.loads(report.read_text())["summary"]["K=5"]["situations"]) == {"along_road"}  # road scenes

    # city scenes: other data, so nothing is reused; every segmenting model is scored per situation
    written = {r["variant"]: os.stat(r["checkpoint"]).st_mtime_ns for r in retrained}
    assert main([*args, "--reuse", "--scene", "city", "--heldout-frames", "12"]) == 0
    city = json.loads(report.read_text())
    assert city["preset"]["scene"] == "city" and not city["reused"]
    assert all(os.stat(r["checkpoint"]).st_mtime_ns != written[r["variant"]] for r in city["runs"])
    situations = city["summary"]["K=5"]["situations"]
    assert {"along_road", "across", "pedestrian"} <= set(situations) and "situations" not in city["summary"]["K=1"]
    # the components models are also scored with their masks alone (the paper's moving probability), the scene
    # flow's motion mask only as it is
    alone = city["summary"]["K=5"]["situations_masks_alone"]
    assert set(alone) == set(situations) and "situations_masks_alone" not in city["summary"]["scene flow"]
    assert "| K=5, masks alone |" in markdown.read_text()
    assert 0.0 < city["situation_chance"]["across"]["prevalence"] < 1.0
    assert "Per situation" in markdown.read_text() and "| chance (all-moving F1, prevalence) |" in markdown.read_text()
    # a picture per situation the held-out drives show: image | moving probability | components | ground truth
    shown = cv2.imread(str(out / "situations.png"))
    frames = situation_frames(out / "data" / "heldout")
    assert [name for name, _, _ in frames][:3] == ["along_road", "across", "pedestrian"]
    assert shown.shape[1] == 4 * WIDTH and shown.shape[0] >= len(frames) * HEIGHT


def test_the_two_models_differ_only_in_the_number_of_components(tmp_path):
    preset = PRESETS["cpu"]
    k1, k5, oracle, flow = (dataclasses.asdict(training_config(preset, v, tmp_path, tmp_path / "run", num_samples=200))
                            for v in VARIANTS[:4])
    assert flow["model"]["motion_model"] == "scene_flow" and k5["model"]["motion_model"] == "components"
    # the motion rung's two: K=1 but for the true motions in the warp
    for variant, source in zip(VARIANTS[4:], ("true_camera", "true_scene")):
        given = dataclasses.asdict(training_config(preset, variant, tmp_path, tmp_path / "run", num_samples=200))
        assert given["model"].pop("motion_source") == source and given == {**k1, "model": {
            key: value for key, value in k1["model"].items() if key != "motion_source"}}
    # the movers rung: K=5 but for the assignment's moving pixels
    movers = dataclasses.asdict(training_config(preset, VARIANTS[6], tmp_path, tmp_path / "run", num_samples=200))
    assert movers["model"].pop("moving_pixels_source") == "ground_truth" and k5["model"]["moving_pixels_source"] == "evidence"
    assert movers == {**k5, "model": {key: value for key, value in k5["model"].items() if key != "moving_pixels_source"}}
    assert k1["model"].pop("num_components") == 1 and k5["model"].pop("num_components") == 5
    assert k1 == k5
    assert oracle["model"]["depth_source"] == "ground_truth" and k5["model"]["depth_source"] == "network"
    assert k1["optim"]["max_steps"] == preset.steps
    assert k1["optim"]["epochs"] * (200 // preset.batch_size) >= preset.steps  # the budget fits the schedule
    assert [PRESETS[name].seeds for name in ("quick", "cpu", "gpu")] == [1, 3, 3]
    # --set reaches every model, after the variant's own settings
    tuned = dataclasses.replace(preset, overrides=("model.hypothesis_scene_rate=0.02", "model.ground_truth_depth_scale=1"))
    k5, oracle = (training_config(tuned, v, tmp_path, tmp_path / "run", num_samples=200) for v in VARIANTS[1:3])
    assert k5.model.hypothesis_scene_rate == oracle.model.hypothesis_scene_rate == 0.02
    assert oracle.model.depth_source == "ground_truth" and oracle.model.ground_truth_depth_scale == 1.0


def test_the_motion_and_movers_rungs_compare_depth_given_the_true_motions_or_the_true_movers(tmp_path):
    out = tmp_path / "accuracy"
    assert main(["accuracy", "--preset", "quick", "--output", str(out), "--device", "cpu", "--steps", "2",
                 "--width", str(WIDTH), "--height", str(HEIGHT), "--train-sequences", "1", "--frames", "5",
                 "--heldout-sequences", "1", "--heldout-frames", "3", "--batch-size", "2", "--no-scene-flow",
                 "--rungs", "full,motion,movers"]) == 0
    data = json.loads((out / "accuracy.json").read_text())
    runs = {r["variant"]: r for r in data["runs"]}
    assert set(runs) == {"K=1", "K=5", "K=1, true camera motion", "true scene motion", "K=5, true movers"}
    assert "| K=5, true movers vs K=1 |" in (out / "accuracy.md").read_text()
    assert "moving_minus_background" in data["summary"]["K=5, true movers"]
    scene, camera = runs["true scene motion"]["depth"], runs["K=1, true camera motion"]["depth"]
    change = {region: scene[region]["abs_rel"] / camera[region]["abs_rel"] - 1 for region in ("moving", "static_background")}
    row = next(line for line in (out / "accuracy.md").read_text().splitlines()
               if line.startswith("| true scene motion vs K=1, true camera motion |"))
    assert f"{100 * (change['moving'] - change['static_background']):+.1f} ± 0.0 points" in row
    assert (out / "seed0" / "true_scene" / "checkpoints" / "last.pt").is_file()


def test_mean_and_std_over_seeds():
    assert mean_and_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    assert mean_and_std([2.0]) == (2.0, 0.0)
    assert mean_and_std([2.0, float("nan")]) == (2.0, 0.0)
    assert all(math.isnan(x) for x in mean_and_std([]))


def test_bad_override_is_one_line_error(capsys):
    assert main(["accuracy", "--width", "100", "--output", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mds accuracy: error: width and height must be positive multiples of 32, got 100x64"]
    assert main(["accuracy", "--set", "model.hypothesis_scene_rate=2", "--output", "unused"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mds accuracy: error: model.hypothesis_scene_rate must be in [0, 1), got 2.0"]


def test_a_stopped_run_resumes_each_unfinished_model_exactly_with_reuse(tmp_path, monkeypatch, caplog):
    """The long preset's promise: stop a run mid-training (here K=1 after 2 of its 4 steps), run it again with
    --reuse, and the model continues from its last checkpoint to the weights of a run never stopped; its
    record keeps the time and first losses of both parts."""
    from mds_core.checkpoint import load_checkpoint
    from mds_core.tools.accuracy import run_accuracy_benchmark
    from mds_core.training import loop

    preset = dataclasses.replace(PRESETS["quick"], width=WIDTH, height=HEIGHT, train_sequences=1, frames_per_sequence=6,
                                 heldout_sequences=1, heldout_frames=3, steps=4, batch_size=2, rungs=("full",),
                                 scene_flow=False, checkpoint_every=1, montage_frames=1)
    reference = run_accuracy_benchmark(preset, tmp_path / "reference")
    assert PRESETS["long"].checkpoint_every > 0 and PRESETS["long"].scene == "city"

    real_step, calls = loop.train_step, []

    def stopped_after_two(state, objective, batch):
        calls.append(state.step)
        if len(calls) > 2:
            raise KeyboardInterrupt  # as when the session ends
        return real_step(state, objective, batch)

    with monkeypatch.context() as patch:
        patch.setattr(loop, "train_step", stopped_after_two)
        with pytest.raises(KeyboardInterrupt):
            run_accuracy_benchmark(preset, tmp_path / "stopped", reuse=True)
    k1_folder = tmp_path / "stopped" / "seed0" / "k1"
    assert load_checkpoint(k1_folder / "checkpoints" / "last.pt").step == 2
    steps_run = []

    def counted(state, objective, batch):
        steps_run.append(state.step)
        return real_step(state, objective, batch)

    with monkeypatch.context() as patch, caplog.at_level("INFO"):
        patch.setattr(loop, "train_step", counted)
        resumed = run_accuracy_benchmark(preset, tmp_path / "stopped", reuse=True)
    assert steps_run == [2, 3, 0, 1, 2, 3]  # K=1's last two steps, then K=5 from the start
    assert "resuming" in caplog.text and "resumed from" in caplog.text and resumed.reused == []
    for ours, theirs in zip(resumed.models, reference.models, strict=True):
        expected, got = load_checkpoint(theirs.checkpoint), load_checkpoint(ours.checkpoint)
        assert got.step == expected.step == 4
        for name, tensor in expected.model.items():
            assert torch.equal(tensor, got.model[name]), f"{ours.variant.name}: {name}"
        assert ours.loss_first == pytest.approx(theirs.loss_first, rel=1e-6)  # steps 1-2 from before the stop
    record = json.loads((k1_folder / "training.json").read_text())
    assert record["scene"] == "road" and record["steps"] == 4 and record["train_seconds"] > 0


def test_a_rerun_with_another_config_keeps_the_earlier_checkpoints(tmp_path):
    """A model retrained with another config (here more steps) moves the earlier training's checkpoints aside
    instead of deleting them: hours of a long preset's training must survive a rerun with a changed setting."""
    from mds_core.checkpoint import load_checkpoint
    from mds_core.tools.accuracy import run_accuracy_benchmark

    preset = dataclasses.replace(PRESETS["quick"], width=WIDTH, height=HEIGHT, train_sequences=1, frames_per_sequence=5,
                                 heldout_sequences=1, heldout_frames=3, steps=1, batch_size=2, rungs=("full",),
                                 scene_flow=False, montage_frames=1)
    run_accuracy_benchmark(preset, tmp_path)
    run_accuracy_benchmark(dataclasses.replace(preset, steps=2), tmp_path, reuse=True)
    for folder in ("k1", "k5"):
        model = tmp_path / "seed0" / folder
        assert load_checkpoint(model / "checkpoints.earlier-1" / "last.pt").step == 1
        assert load_checkpoint(model / "checkpoints" / "last.pt").step == 2


def test_a_run_continues_whether_its_folders_are_given_relative_or_absolute(tmp_path, monkeypatch):
    from mds_core.tools.accuracy import same_training

    monkeypatch.chdir(tmp_path)
    relative = training_config(PRESETS["quick"], VARIANTS[0], Path("data/train"), Path("seed0/k1"), 100, 0)
    absolute = dataclasses.replace(relative, output_dir=str(tmp_path / "seed0" / "k1"),
                                   data=dataclasses.replace(relative.data, root=str(tmp_path / "data" / "train")))
    assert same_training(relative, absolute)
    elsewhere = dataclasses.replace(absolute, output_dir=str(tmp_path / "seed1" / "k1"))
    assert not same_training(relative, elsewhere)
    faster = dataclasses.replace(absolute.optim, learning_rate=absolute.optim.learning_rate * 2)
    other_rate = dataclasses.replace(absolute, optim=faster)
    assert not same_training(relative, other_rate)


def test_models_trained_side_by_side_are_those_trained_one_after_another(tmp_path):
    """``--jobs``: each model trains in its own process; at one thread each, the weights are exactly those of
    training them in turn in this process at one thread."""
    from mds_core.checkpoint import load_checkpoint
    from mds_core.tools.accuracy import run_accuracy_benchmark

    preset = dataclasses.replace(PRESETS["quick"], width=WIDTH, height=HEIGHT, train_sequences=1, frames_per_sequence=5,
                                 heldout_sequences=1, heldout_frames=3, steps=2, batch_size=2, rungs=("full",),
                                 scene_flow=False, montage_frames=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        in_turn = run_accuracy_benchmark(preset, tmp_path / "in_turn")
        torch.set_num_threads(2)  # two jobs: one thread each
        side_by_side = run_accuracy_benchmark(dataclasses.replace(preset, jobs=2), tmp_path / "side_by_side")
    finally:
        torch.set_num_threads(threads)
    assert [m.variant for m in side_by_side.models] == [m.variant for m in in_turn.models]
    for ours, theirs in zip(side_by_side.models, in_turn.models, strict=True):
        assert ours.checkpoint.parent.parent.parent.parent.name == "side_by_side"
        expected, got = load_checkpoint(theirs.checkpoint), load_checkpoint(ours.checkpoint)
        assert got.step == expected.step == 2
        for name, tensor in expected.model.items():
            assert torch.equal(tensor, got.model[name]), f"{ours.variant.name}: {name}"
        assert ours.report.depth.overall.abs_rel == pytest.approx(theirs.report.depth.overall.abs_rel, rel=1e-5)


def test_jobs_must_be_positive():
    with pytest.raises(ValueError, match="jobs"):
        dataclasses.replace(PRESETS["quick"], jobs=0).validate()
