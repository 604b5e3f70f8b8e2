"""The moving probability accumulated over a stream along the optical flow (mds_core.inference.moving_belief)."""

import math

import numpy as np
import pytest
import torch
from synthetic import kitti_like_intrinsics, textured_image

from mds_core.inference.moving_belief import BELIEF_EPS, MovingBelief

pytestmark = pytest.mark.numerics

HEIGHT, WIDTH, SHIFT = 32, 64, 3


def _box(left: int) -> torch.Tensor:
    box = torch.zeros(1, HEIGHT, WIDTH, dtype=torch.bool)
    box[:, 10:20, left:left + 12] = True
    return box


def _stream(lefts: list[int], own_box: float = 0.8, own_static: float = 0.2):
    """Frames (distinct images) with a box at each of ``lefts``, each frame's own moving probability (``own_box``
    on the box, ``own_static`` elsewhere) and the exact flow to the frame before (the box's pixels came from
    ``SHIFT`` px to the left; the rest stands)."""
    frames = [textured_image(HEIGHT, WIDTH, seed=seed) for seed in range(len(lefts))]
    probabilities, flows = [], []
    for left in lefts:
        box = _box(left)
        probabilities.append(torch.where(box, own_box, own_static))
        flow = torch.zeros(1, 2, HEIGHT, WIDTH)
        flow[:, 0][box] = -SHIFT
        flows.append(flow)
    return frames, probabilities, flows


def test_the_belief_follows_a_moving_box_along_the_flow_and_lets_go_of_where_it_was():
    lefts = [10, 13, 16, 19]
    frames, probabilities, flows = _stream(lefts)
    belief, trusted = MovingBelief(decay=0.5), torch.ones(1, HEIGHT, WIDTH, dtype=torch.bool)
    first = belief.update(frames[1], frames[0], probabilities[1], flows[1], trusted)
    assert torch.equal(first, probabilities[1])  # a stream's first pair: its own probability
    for index in (2, 3):
        fused = belief.update(frames[index], frames[index - 1], probabilities[index], flows[index], trusted)
    box, left_behind = _box(19), _box(16) & ~_box(19)
    # three frames of 0.8 on the box: logit 1.386 x (1 + 0.5 + 0.25)
    three_frames = 1.75 * torch.logit(torch.tensor(0.8), eps=BELIEF_EPS).item()
    assert float(fused[box].mean()) == pytest.approx(1.0 / (1.0 + math.exp(-three_frames)), abs=1e-4)
    left_earlier = _box(13) & ~(_box(16) | box)
    static = ~(box | _box(16) | _box(13))
    assert float(fused[static].max()) < 0.1  # the static world: surer than any one frame's 0.2
    assert float(fused[left_behind].max()) < 0.5  # where the box was a frame ago the belief lets go
    assert float(fused[left_earlier].max()) < 0.2  # and two frames ago, it is static again


def test_a_pair_that_does_not_continue_the_stream_and_untrusted_flow_take_the_frames_own():
    frames, probabilities, flows = _stream([10, 13, 16])
    belief, trusted = MovingBelief(), torch.ones(1, HEIGHT, WIDTH, dtype=torch.bool)
    belief.update(frames[1], frames[0], probabilities[1], flows[1], trusted)
    # the pair (2, 0) skips frame 1: a new stream
    assert torch.equal(belief.update(frames[2], frames[0], probabilities[2], flows[2], trusted), probabilities[2])
    belief = MovingBelief()
    belief.update(frames[1], frames[0], probabilities[1], flows[1], trusted)
    untrusted = torch.zeros_like(trusted)
    untrusted[:, :, :WIDTH // 2] = True
    fused = belief.update(frames[2], frames[1], probabilities[2], flows[2], untrusted)
    right = (slice(None), slice(None), slice(WIDTH // 2, None))
    assert torch.allclose(fused[right], probabilities[2][right], atol=1e-6)
    assert not torch.allclose(fused[:, :, :WIDTH // 2], probabilities[2][:, :, :WIDTH // 2], atol=1e-3)
    with pytest.raises(ValueError, match="decay"):
        MovingBelief(decay=1.0)


def test_the_predictor_accumulates_the_moving_probability_of_a_stream(tmp_path):
    """An untrained K=2 model on a box moving in front of a standing camera: from the stream's second pair on the
    published moving probability is the belief, surer on the box and on the wall than each frame's own."""
    from mds_core.checkpoint import write_untrained_checkpoint
    from mds_core.config import ModelConfig
    from mds_core.inference.predictor import Predictor

    height, width = 64, 96
    wall = textured_image(height, width, seed=7)
    box_texture = textured_image(20, 24, seed=8)
    as_rgb = lambda image: (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    frames = []
    for left in (30, 34, 38, 42):
        frame = wall.clone()
        frame[..., 20:40, left:left + 24] = box_texture
        frames.append(as_rgb(frame))
    intrinsics = kitti_like_intrinsics(width, height)[0].numpy()
    path = write_untrained_checkpoint(tmp_path / "m.pt", ModelConfig(width=width, height=height, num_components=2,
                                                                     depth_encoder="resnet18",
                                                                     pose_mask_encoder="resnet18"))
    predictor = Predictor.from_checkpoint(path, device="cpu")
    predictions = [predictor.predict(current, intrinsics, previous) for previous, current in zip(frames, frames[1:])]
    assert np.array_equal(predictions[0].moving_probability, predictions[0].frame_moving_probability)
    last = predictions[-1]
    box = np.zeros((height, width), bool)
    box[24:36, 46:62] = True  # the box's inside at its last place
    wall_pixels = np.ones((height, width), bool)
    wall_pixels[14:46, 20:76] = False  # far from the box's places
    assert last.moving_probability[box].mean() > last.frame_moving_probability[box].mean() + 0.02
    assert last.moving_probability[wall_pixels].mean() < last.frame_moving_probability[wall_pixels].mean()
    without = Predictor.from_checkpoint(path, device="cpu", motion_evidence=False)
    plain = [without.predict(current, intrinsics, previous) for previous, current in zip(frames, frames[1:])]
    assert plain[-1].frame_moving_probability is None
    assert np.array_equal(plain[-1].moving_probability, plain[-1].mask_moving_probability)
