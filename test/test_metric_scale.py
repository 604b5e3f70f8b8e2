"""Metric scale from the camera height: the ground plane of generated scenes gives the true scale,
planes that are not the road are refused, and ``mds eval --scale camera-height`` scores metric depth
without median scaling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthetic import HEIGHT, WIDTH, make_sequences

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.cli.main import main
from mds_core.config import ModelConfig
from mds_core.method.metric_scale import ScaleTracker, camera_height_scale, fit_ground_plane
from mds_core.tools.synth import SynthConfig, generate_sequence

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)

SYNTH = SynthConfig(width=192, height=64, num_frames=6, seed=5)


@pytest.fixture(scope="module")
def frames():
    return list(generate_sequence(SYNTH))


@pytest.mark.parametrize("units", [1.0, 0.37, 25.0])
def test_the_ground_plane_of_exact_depth_gives_the_true_scale_within_1_percent(frames, units):
    """Depth in any units (metres x ``units``): the scale back to metres is 1 / units."""
    for frame in frames:
        static = frame.motion == 0
        for mask in (None, static):
            scale = camera_height_scale(frame.depth * units, SYNTH.intrinsics(), SYNTH.camera_height, static=mask)
            assert scale is not None and abs(scale * units - 1.0) < 0.01, (scale, units)


def test_planes_that_are_not_the_road_are_refused(frames):
    k = SYNTH.intrinsics()
    depth = frames[0].depth
    # the camera pitched 30 degrees down sees the road tilted: refused at the expected pitch 0 ...
    pitch = np.radians(30.0)
    rotation = torch.tensor([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    from mds_core.method.geometry import backproject

    points = backproject(torch.as_tensor(depth, dtype=torch.float64)[None, None],
                         torch.linalg.inv(torch.as_tensor(k, dtype=torch.float64))[None])[0]
    tilted = torch.einsum("ij,jhw->ihw", rotation.double(), points)
    plane = fit_ground_plane(tilted)
    assert plane is not None and plane.tilt_degrees(0.0) > 25 and plane.tilt_degrees(30.0) < 3
    assert abs(plane.distance - SYNTH.camera_height) < 0.02
    # ... and a wall facing the camera (constant depth) has no horizontal plane at all
    assert camera_height_scale(np.full_like(depth, 5.0), k, SYNTH.camera_height) is None
    assert camera_height_scale(np.zeros_like(depth), k, SYNTH.camera_height) is None  # no valid point


def test_the_scale_tracker_smooths_and_keeps_the_last_good_scale():
    tracker = ScaleTracker(window=3)
    assert tracker.update(None) is None and tracker.failures == 1
    assert tracker.update(2.0) == 2.0
    assert tracker.update(10.0) == 6.0 and tracker.update(3.0) == 3.0  # median of the window
    assert tracker.update(None) == 3.0 and tracker.update(float("nan")) == 3.0 and tracker.failures == 3
    assert tracker.update(4.0) == 4.0  # 10 left the window: (3, 4) and 10 -> median of 10, 3, 4
    assert tracker.spread is not None and tracker.spread > 0


def test_eval_with_the_camera_height_scores_metric_depth_without_median_scaling(tmp_path, capsys):
    """The oracle rung predicts the ground-truth depth: the camera-height scale then matches the
    median scaling within 1% and the metric depth is right without any ground-truth scaling."""
    data = make_sequences(tmp_path / "data", count=1, frames=4, width=WIDTH, height=HEIGHT)
    checkpoint = write_untrained_checkpoint(tmp_path / "oracle.pt", ModelConfig(
        width=WIDTH, height=HEIGHT, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=2,
        depth_source="ground_truth"))
    output = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--scale", "camera-height",
                 "--camera-height", "1.5", "--device", "cpu", "--output", str(output), "--quiet"]) == 0
    report = json.loads(output.read_text())
    assert report["metadata"]["camera_height_scale_error_median"] < 0.01
    assert report["metadata"]["camera_height_frames_without_plane"] == 0
    assert report["depth"]["overall"]["abs_rel"] < 0.05
    assert "scaling: camera height 1.5 m (ground plane)" in capsys.readouterr().out
    # a wrong height scales everything by the same wrong factor
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--scale", "camera-height",
                 "--camera-height", "3.0", "--device", "cpu", "--output", str(output), "--quiet"]) == 0
    assert json.loads(output.read_text())["depth"]["overall"]["abs_rel"] > 0.9
    assert main(["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--scale", "camera-height"]) == 2
    assert "needs --camera-height" in capsys.readouterr().err
