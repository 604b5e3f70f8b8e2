"""The generator's true optical flow (mds_core.tools.synth.true_flow), and the evidence's optical flow against it."""

import cv2
import numpy as np
import pytest
import torch

from mds_core.data.sequence_folder import SequenceFolder
from mds_core.method.motion_evidence import dense_flow
from mds_core.tools.synth import SynthConfig, write_sequence_folder
from mds_core.tools.synth.true_flow import true_flow


def _city_drive(root, width: int, height: int, frames: int):
    """A drive with crossing traffic, pedestrians and a cyclist, whose camera stands still for a while."""
    config = SynthConfig(width=width, height=height, num_frames=frames, seed=4, num_crossing=3, num_pedestrians=4,
                         num_cyclists=1, camera_stop_probability=1.0, camera_stop_seconds=0.5)
    write_sequence_folder(root, "drive", config)
    return SequenceFolder(root / "drive")


def _warp(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` sampled at ``p + flow(p)`` and where that lies inside it."""
    height, width = flow.shape[1:]
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    x, y = u + flow[0].astype(np.float32), v + flow[1].astype(np.float32)
    inside = (x > 0) & (x < width - 1) & (y > 0) & (y < height - 1)
    return cv2.remap(image, x, y, cv2.INTER_LINEAR).astype(np.float64), inside


def test_the_true_flow_carries_each_pixel_to_where_the_previous_frame_shows_it(tmp_path):
    """Warping the previous frame by the true flow reproduces the current one, on the movers too, where the
    flow of a static world (the camera's motion alone) does not."""
    sequence = _city_drive(tmp_path, 96, 64, 8)
    for index in range(1, len(sequence)):
        truth = true_flow(sequence.path, index, index - 1)
        current, previous = sequence.image(index).astype(np.float64), sequence.image(index - 1)
        movers = (sequence.motion(index) == 1) & truth.valid
        moved, inside = _warp(previous, truth.flow)
        still, still_inside = _warp(previous, truth.static_flow)
        error = np.abs(moved - current).mean(axis=-1)
        static_error = np.abs(still - current).mean(axis=-1)
        assert movers.sum() > 100
        assert error[inside & movers].mean() < 0.5 * static_error[still_inside & movers].mean()
        assert error[inside & truth.valid].mean() < 3.0  # grey levels of 255: texture interpolation only
        np.testing.assert_allclose(truth.flow[:, sequence.motion(index) == 0], truth.static_flow[:, sequence.motion(index) == 0])


@pytest.mark.numerics
def test_the_evidence_flow_follows_crossing_traffic_at_the_models_size(tmp_path):
    """At 192x64 DIS refined to full resolution follows the movers: with OpenCV's medium preset alone
    (refined to half resolution, 8-pixel patches every 4) the movers' median error here is 1.9 px."""
    sequence = _city_drive(tmp_path, 192, 64, 16)
    to_tensor = lambda image: torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    static_errors, mover_errors = [], []
    for index in range(1, len(sequence)):
        truth = true_flow(sequence.path, index, index - 1)
        flow, _ = dense_flow(to_tensor(sequence.image(index)), to_tensor(sequence.image(index - 1)))
        error = np.linalg.norm(flow[0].numpy() - truth.flow, axis=0)
        motion = sequence.motion(index)
        visible_motion = np.linalg.norm(truth.flow - truth.static_flow, axis=0) > 1.0  # a mover's own pixels
        static_errors.append(error[(motion == 0) & truth.valid])
        mover_errors.append(error[(motion == 1) & truth.valid & visible_motion])
    assert np.median(np.concatenate(static_errors)) < 0.03
    assert np.median(np.concatenate(mover_errors)) < 1.0
