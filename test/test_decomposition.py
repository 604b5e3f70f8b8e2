"""Eq. (3): depth-ordered softmax, and the model's frame-order convention."""

import math

import pytest
import torch

from mds_core.config import ModelConfig
from mds_core.method.decomposition import depth_ordered_softmax, plain_softmax
from mds_core.method.model import MonoDepthSeg

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)


def test_depth_ordering_matches_equation_3_by_hand():
    logits = torch.tensor([0.5, 0.2, -0.1]).view(1, 3, 1, 1)
    # M_i = exp(i * M'_i) / sum_j exp(j * M'_j), i = 1..3
    e = [math.exp(1 * 0.5), math.exp(2 * 0.2), math.exp(3 * -0.1)]
    expected = torch.tensor([x / sum(e) for x in e]).view(1, 3, 1, 1)
    assert torch.allclose(depth_ordered_softmax(logits), expected, atol=1e-6)


def test_ordering_favours_later_components_for_equal_positive_logits():
    masks = depth_ordered_softmax(torch.ones(1, 4, 2, 2))
    assert torch.all(masks[:, 1:] > masks[:, :-1])
    assert torch.allclose(masks.sum(dim=1), torch.ones(1, 2, 2))
    assert torch.allclose(plain_softmax(torch.ones(1, 4, 2, 2)), torch.full((1, 4, 2, 2), 0.25))


def test_previous_source_uses_the_inverse_of_the_predicted_transform():
    config = ModelConfig(height=64, width=64, depth_encoder="resnet18", pose_mask_encoder="resnet18",
                         num_components=2)
    model = MonoDepthSeg(config).eval()
    images = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        out = model(images, [-1, 1])
    for source in out.sources:
        predicted = source.component_transforms
        used = source.motion.transforms
        if source.offset < 0:
            assert torch.allclose(predicted @ used, torch.eye(4).expand_as(used), atol=1e-5)
        else:
            assert torch.equal(predicted, used)


def test_k_equals_one_is_a_single_rigid_motion():
    config = ModelConfig(height=64, width=64, depth_encoder="resnet18", pose_mask_encoder="resnet18",
                         num_components=1)
    model = MonoDepthSeg(config).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 2, 3, 64, 64), [1])
    assert torch.equal(out.sources[0].motion.masks, torch.ones(2, 1, 64, 64))
    assert out.sources[0].motion.transforms.shape == (2, 1, 4, 4)


# --- oracle rung "depth" and learning aids (docs/decomposition-ladder.md) ----------------------

def _tiny_model(**overrides) -> MonoDepthSeg:
    config = ModelConfig(height=64, width=64, depth_encoder="resnet18", pose_mask_encoder="resnet18",
                         num_components=3, **overrides)
    return MonoDepthSeg(config).eval()


def test_oracle_depth_is_resized_nearest_with_invalid_pixels_at_max_depth():
    from mds_core.method.networks import disparity_to_depth
    from mds_core.method.oracle import depth_to_disparity, ground_truth_depth

    native = torch.tensor([[[5.0, 0.0], [float("nan"), 500.0]]])  # (1, 2, 2): valid, sky, invalid, too far
    depth = ground_truth_depth([native], 4, 4, min_depth=0.1, max_depth=100.0)
    assert depth.shape == (1, 1, 4, 4)
    assert torch.equal(depth[0, 0, :2, :2], torch.full((2, 2), 5.0))  # nearest: no blending across pixels
    assert torch.equal(depth[0, 0, :2, 2:], torch.full((2, 2), 100.0))
    assert torch.equal(depth[0, 0, 2:], torch.full((2, 4), 100.0))
    values = torch.tensor([0.1, 3.0, 100.0])
    assert torch.allclose(disparity_to_depth(depth_to_disparity(values, 0.1, 100.0), 0.1, 100.0), values)


def test_ground_truth_rung_has_no_depth_network_and_feeds_the_ground_truth_disparity():
    from mds_core.method.oracle import depth_to_disparity

    model = _tiny_model(depth_source="ground_truth", ground_truth_depth_scale=0.5)
    assert model.depth_net is None
    seen = {}
    model.pose_mask_net.register_forward_hook(lambda _m, inputs, _o: seen.update(depth=inputs[2]))
    depth = 1.0 + 20.0 * torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 3, 64, 64), [-1, 1], depth)
    assert torch.allclose(seen["depth"], depth_to_disparity(depth, 0.1, 100.0).repeat(2, 1, 1, 1))
    assert torch.equal(out.warp_depth, depth * 0.5) and len(out.disparities) == 1
    with pytest.raises(ValueError, match="ground-truth depth"):
        model(torch.rand(2, 3, 3, 64, 64), [-1, 1])


def test_objective_warps_with_the_ground_truth_depth():
    """A sideways camera shift of a fronto-parallel plane is explained exactly only at the true depth."""
    from synthetic import kitti_like_intrinsics, textured_image

    from mds_core.config import LossConfig
    from mds_core.data.sample import Batch
    from mds_core.method.decomposition import ComponentMotion
    from mds_core.method.losses import SelfSupervisedObjective
    from mds_core.method.model import ModelOutput, SourceMotion
    from mds_core.method.warping import warp_source

    height, width, true_depth = 32, 64, 4.0
    intrinsics = kitti_like_intrinsics(width, height)
    shift = torch.eye(4)[None, None].clone()
    shift[..., 0, 3] = 0.2
    motion = ComponentMotion(masks=torch.ones(1, 1, height, width), transforms=shift)
    target = textured_image(height + 16, width + 32, seed=1)[..., 8:-8, 16:-16]
    # a source consistent with the target at depth 4 m: warp the target by the inverse motion
    inverse = ComponentMotion(masks=motion.masks, transforms=torch.linalg.inv(shift))
    source = warp_source(target, torch.full((1, 1, height, width), true_depth), intrinsics, inverse).image
    batch = Batch(images=torch.stack([target, source], dim=1), network_images=torch.stack([target, source], dim=1),
                  intrinsics=intrinsics, depth=None, motion=None, names=["x"])
    model = ModelConfig(height=height, width=width, num_components=1, depth_source="ground_truth")
    objective = SelfSupervisedObjective(LossConfig(automask=False), model)

    def loss(depth: float) -> float:
        d = torch.full((1, 1, height, width), depth)
        sources = [SourceMotion(1, motion, torch.zeros(1, 1, height, width), motion.masks, shift)]
        return float(objective(batch, ModelOutput([torch.zeros_like(d)], d, sources, warp_depth=d)).photometric)

    interior = loss(true_depth)
    assert interior < 0.5 * loss(2.0) and interior < 0.5 * loss(8.0)


def test_warmup_puts_all_mask_mass_on_the_background_component():
    model = _tiny_model()
    model.components_enabled = False
    with torch.no_grad():
        out = model(torch.rand(1, 2, 3, 64, 64), [1])
    masks = out.sources[0].motion.masks
    assert torch.equal(masks[:, 0], torch.ones(1, 64, 64)) and torch.equal(masks[:, 1:], torch.zeros(1, 2, 64, 64))
    assert not torch.equal(out.sources[0].soft_masks, masks)  # the priors still see the soft masks


def test_motion_hypotheses_scale_the_background_motion():
    from mds_core.config import ConfigError
    from mds_core.method.decomposition import hypothesis_motions

    axis_angle = torch.tensor([[[0.01, 0.02, 0.03], [0.001, 0.0, 0.0], [0.0, 0.0, 0.0]]], requires_grad=True)
    translation = torch.tensor([[[0.0, 0.0, -1.0], [0.1, 0.0, -50.0], [0.0, 0.0, 0.0]]], requires_grad=True)
    rotation, moved = hypothesis_motions(axis_angle, translation, [2.0, -0.5], spread=0.4, pose_scale=0.01)
    # background unchanged; r_k = r_0 + dr_k; t_k = f_k t_0 + spread |t_0| tanh(dt_k / pose_scale)
    assert torch.equal(rotation[:, 0], axis_angle[:, 0]) and torch.equal(moved[:, 0], translation[:, 0])
    assert torch.allclose(rotation[0, 1], torch.tensor([0.011, 0.02, 0.03]))
    expected = torch.tensor([0.4 * math.tanh(10.0), 0.0, -2.0 - 0.4])  # the residual saturates at the spread
    assert torch.allclose(moved[0, 1], expected, atol=1e-5)
    assert torch.allclose(moved[0, 2], torch.tensor([0.0, 0.0, 0.5]))
    # the background's motion is not trained through the hypotheses
    moved[:, 1:].sum().backward()
    assert float(translation.grad[0, 0].abs().sum()) == 0.0 and float(translation.grad[0, 1].abs().sum()) > 0
    # the model applies them: with a zero residual every component is the scaled background motion
    model = _tiny_model(motion_hypotheses=[2.0, 0.0])
    head = model.pose_mask_net.pose_decoder.net[-1]
    assert float(head.weight[6:].detach().abs().sum()) == 0.0  # residuals start at zero
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[3:6] = torch.tensor([0.0, 0.0, -100.0])  # t_0 = (0, 0, -1) after the 0.01 scaling
        transforms = model(torch.rand(1, 2, 3, 64, 64), [1]).sources[0].component_transforms
    assert torch.allclose(transforms[0, :, 2, 3], torch.tensor([-1.0, -2.0, 0.0]))
    with pytest.raises(ConfigError, match="one factor per non-background component"):
        ModelConfig(num_components=3, motion_hypotheses=[2.0]).validate()


def test_a_stopped_camera_and_a_box_moving_sideways_are_explained_exactly_by_one_component():
    """Hypotheses in the camera frame's own-motion space reach a sideways mover while the camera stands
    still; the ego-scaled ones cannot (with t_0 = 0 every component is t_0)."""
    from mds_core.config import ConfigError
    from mds_core.method.decomposition import ComponentMotion, hypothesis_motions, scene_speed
    from mds_core.method.geometry import pose_vector_to_transform

    height, width = 8, 12
    depth = torch.full((1, 1, height, width), 10.0)
    depth[..., 2:6, 3:8] = 6.0  # a box nearer than the wall behind it
    box = (depth == 6.0)[:, 0]
    grid_v, grid_u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                                    indexing="ij")
    points = torch.stack([(grid_u - 6.0) / 10.0, (grid_v - 4.0) / 10.0, torch.ones(height, width)])[None] * depth
    sideways = torch.tensor([0.3, 0.0, 0.0])  # the box's own motion per frame; the camera does not move
    sigma = scene_speed(depth, rate=0.025)  # 0.25: the median depth is 10
    assert torch.allclose(sigma, torch.tensor([0.25]))
    pose_scale, spread = 0.01, 1.0
    residual = torch.tensor([pose_scale * math.atanh((0.3 - 0.25) / (spread * 0.25)), 0.0, 0.0])
    axis_angle = torch.zeros(1, 2, 3)
    translation = torch.stack([torch.zeros(3), residual])[None]  # t_0 = 0, and the residual of component 1
    directions = torch.tensor([[1.0, 0.0, 0.0]])  # hypothesis: moving right in the camera frame
    rotation, moved = hypothesis_motions(axis_angle, translation, [1.0], spread, pose_scale, directions, sigma)
    assert torch.allclose(moved[0, 1], sideways, atol=1e-6)
    masks = torch.stack([~box, box], dim=1).float()  # one-hot: the box is component 1
    motion = ComponentMotion(masks=masks, transforms=pose_vector_to_transform(rotation, moved))
    expected = points + box[:, None] * sideways.view(1, 3, 1, 1)
    assert torch.allclose(motion.transform_points(points), expected, atol=1e-5)
    # ego-scaled hypotheses alone: whatever the decoder says, every component stands still with the camera
    _, stuck = hypothesis_motions(axis_angle, torch.randn(1, 2, 3) * 100.0 * torch.tensor([0.0, 1.0]).view(1, 2, 1),
                                  [2.0], spread, pose_scale)
    assert float(stuck.abs().max()) == 0.0
    with pytest.raises(ConfigError, match="one \\[x, y, z\\] per motion hypothesis"):
        ModelConfig(num_components=3, hypothesis_directions=[[1.0, 0.0, 0.0]]).validate()


def test_own_motion_hypotheses_are_scaled_by_the_scene_in_the_model():
    model = _tiny_model(motion_hypotheses=[1.0, 1.0], hypothesis_directions=[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]],
                        hypothesis_scene_rate=0.02)
    head = model.pose_mask_net.pose_decoder.net[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()  # the camera stands still, every residual is zero
        out = model(torch.rand(1, 2, 3, 64, 64), [1])
    sigma = 0.02 * float(out.depth.flatten().median())
    transforms = out.sources[0].component_transforms[0]
    assert torch.allclose(transforms[:, 0, 3], torch.tensor([0.0, sigma, -sigma]), atol=1e-6)


def test_checkpoints_from_before_motion_hypotheses_keep_independent_motions(tmp_path):
    from mds_core.checkpoint import load_checkpoint, write_untrained_checkpoint

    model = ModelConfig(height=64, width=64, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=3)
    assert model.hypotheses == [2.0, 0.0]  # the default for K=3: the first two standard factors
    path = write_untrained_checkpoint(tmp_path / "new.pt", model)
    assert load_checkpoint(path).config.model.hypotheses == [2.0, 0.0]
    payload = torch.load(path, weights_only=True)
    del payload["config"]["model"]["motion_hypotheses"]  # as written by an older mds
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").config.model.hypotheses == []
    # written before the own-motion set was the default: the ego-scaled factors, no own motion
    payload = torch.load(path, weights_only=True)
    del payload["config"]["model"]["hypothesis_set"], payload["config"]["model"]["hypothesis_scene_rate"]
    torch.save(payload, tmp_path / "before_own_motion.pt")
    older = load_checkpoint(tmp_path / "before_own_motion.pt").config.model
    assert older.hypotheses == [2.0, 0.0] and older.directions is None and older.hypothesis_scene_rate == 0.0
    del payload["config"]["loss"]["motion_evidence_threshold"], payload["config"]["loss"]["background_reprojection_weight"]
    torch.save(payload, tmp_path / "before_the_crossing_aids.pt")
    loss = load_checkpoint(tmp_path / "before_the_crossing_aids.pt").config.loss
    assert loss.motion_evidence_threshold == 0.0 and loss.background_reprojection_weight == 0.0
    # written with the crossing aids but before the standing-camera term: the aids stay, the term is off
    payload = torch.load(path, weights_only=True)
    assert payload["config"]["loss"]["standing_camera_weight"] > 0
    del payload["config"]["loss"]["standing_camera_weight"]
    torch.save(payload, tmp_path / "before_the_standing_term.pt")
    loss = load_checkpoint(tmp_path / "before_the_standing_term.pt").config.loss
    assert loss.standing_camera_weight == 0.0 and loss.motion_evidence_threshold > 0
    assert ModelConfig(num_components=1).hypotheses == []
