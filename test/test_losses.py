"""Monodepth2's SSIM, photometric error, auto-masking and smoothness."""

import pytest
import torch
from synthetic import textured_image

from mds_core.method.losses import (
    disparity_smoothness,
    edge_aware_smoothness,
    minimum_reprojection,
    photometric_error,
    ssim,
    ssim_dissimilarity,
)

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)


def test_ssim_of_identical_images_is_one_and_the_loss_zero():
    x = textured_image(16, 16)
    assert torch.allclose(ssim(x, x), torch.ones_like(x), atol=1e-4)
    assert torch.allclose(ssim_dissimilarity(x, x), torch.zeros_like(x), atol=1e-4)


def test_ssim_term_rewards_similarity_not_dissimilarity():
    x = textured_image(16, 16, seed=1)
    close = (x + 0.02).clamp(0, 1)
    far = 1.0 - x
    assert ssim_dissimilarity(x, close).mean() < ssim_dissimilarity(x, far).mean()
    assert torch.all(ssim_dissimilarity(x, far) <= 1.0)


def test_ssim_matches_hand_computation_on_a_constant_patch_pair():
    # constant images a, b: sigma = 0, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.2, 0.6
    value = ssim(torch.full((1, 1, 5, 5), a), torch.full((1, 1, 5, 5), b))
    c1 = 0.01**2
    assert torch.allclose(value, torch.tensor((2 * a * b + c1) / (a * a + b * b + c1)), atol=1e-4)


def test_photometric_error_weights_ssim_and_l1():
    a = torch.full((1, 3, 5, 5), 0.2)
    b = torch.full((1, 3, 5, 5), 0.6)
    c1 = 0.01**2
    dssim = (1 - (2 * 0.2 * 0.6 + c1) / (0.04 + 0.36 + c1)) / 2
    expected = 0.85 * dssim + 0.15 * 0.4
    assert torch.allclose(photometric_error(a, b), torch.tensor(expected), atol=1e-4)
    assert photometric_error(a, b).shape == (1, 1, 5, 5)


def test_minimum_over_sources_and_automask():
    reprojection = torch.tensor([0.5, 0.2]).view(1, 2, 1, 1)
    identity = torch.tensor([0.1, 0.9]).view(1, 2, 1, 1)
    plain = minimum_reprojection(reprojection, None)
    assert torch.allclose(plain.per_pixel, torch.tensor(0.2))
    masked = minimum_reprojection(reprojection, identity)
    assert torch.allclose(masked.per_pixel, torch.tensor(0.1), atol=1e-4)  # identity wins
    assert masked.automask.item() == 0.0
    kept = minimum_reprojection(torch.tensor([0.05, 0.2]).view(1, 2, 1, 1), identity)
    assert kept.automask.item() == 1.0
    averaged = minimum_reprojection(reprojection, None, use_minimum=False)
    assert torch.allclose(averaged.per_pixel, torch.tensor(0.35))


def test_edge_aware_smoothness_by_hand():
    values = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    image = torch.zeros(1, 3, 2, 2)
    # dx = |0-1| in both rows (weight exp(0) = 1) -> mean 1; dy = 0
    assert torch.allclose(edge_aware_smoothness(values, image), torch.tensor(1.0))
    edge = torch.zeros(1, 3, 2, 2)
    edge[..., 1] = 1.0  # an image edge where the values jump: weight exp(-1)
    assert torch.allclose(edge_aware_smoothness(values, edge), torch.tensor(torch.e ** -1))


def test_disparity_smoothness_is_scale_invariant():
    disparity = torch.rand(1, 1, 8, 8) + 0.1
    image = textured_image(8, 8)
    assert torch.allclose(disparity_smoothness(disparity, image), disparity_smoothness(disparity * 7, image), atol=1e-5)


def test_component_terms_train_a_motion_that_has_no_mask_mass():
    """With all mask mass on component 0, only the assigned reprojection reaches component 1's motion."""
    import math

    from synthetic import kitti_like_intrinsics, textured_image

    from mds_core.config import LossConfig, ModelConfig
    from mds_core.data.sample import Batch
    from mds_core.method.decomposition import ComponentMotion
    from mds_core.method.losses import SelfSupervisedObjective
    from mds_core.method.losses.component_assignment import mask_assignment
    from mds_core.method.model import ModelOutput, SourceMotion

    height, width = 32, 64
    images = torch.stack([textured_image(height, width, seed=1), textured_image(height, width, seed=2)], dim=1)
    batch = Batch(images=images, network_images=images, intrinsics=kitti_like_intrinsics(width, height),
                  depth=None, motion=None, names=["x"])
    masks = torch.zeros(1, 2, height, width)
    masks[:, 0] = 1.0
    depth = torch.full((1, 1, height, width), 5.0)

    def gradient_of_component_1(**weights) -> float:
        transforms = torch.eye(4).repeat(1, 2, 1, 1)
        transforms[0, :, 0, 3] = torch.tensor([0.05, -0.05])
        transforms.requires_grad_()
        logits = torch.zeros(1, 2, height, width, requires_grad=True)
        soft = torch.softmax(logits, dim=1)
        source = SourceMotion(1, ComponentMotion(masks=masks, transforms=transforms), logits, soft, transforms)
        model = ModelConfig(height=height, width=width, num_components=2, depth_source="ground_truth")
        loss = SelfSupervisedObjective(LossConfig(**weights), model)(
            batch, ModelOutput([torch.zeros_like(depth)], depth, [source], warp_depth=depth))
        loss.total.backward()
        return float(transforms.grad[0, 1].abs().sum())

    assert gradient_of_component_1(assigned_reprojection_weight=0.0, mask_assignment_weight=0.0) == 0.0
    assert gradient_of_component_1(assigned_reprojection_weight=1.0) > 0.0
    # assignment by hand: -log M of each pixel's target component, averaged over pixels
    soft = torch.tensor([[0.9, 0.5], [0.1, 0.5]]).reshape(1, 2, 1, 2)
    value = mask_assignment(soft, torch.tensor([[[1, 0]]]))
    assert abs(float(value) + (math.log(0.1) + math.log(0.5)) / 2) < 1e-6


def test_assignment_targets_leave_the_background_only_by_a_margin():
    from mds_core.method.losses.component_assignment import assignment_targets

    # per pixel errors of (background, component 1, component 2)
    errors = torch.tensor([[0.30, 0.10, 0.20], [0.30, 0.29, 0.35], [0.10, 0.20, 0.30], [0.30, 0.25, 0.05]])
    errors = errors.T.reshape(1, 3, 1, 4)
    targets = assignment_targets(errors, margin=0.02)
    # clear win of 1; a tie within the margin stays background; background best; clear win of 2
    assert targets.tolist() == [[[1, 0, 0, 2]]]
    assert assignment_targets(errors, margin=0.0).tolist() == [[[1, 1, 0, 2]]]
    assert assignment_targets(errors, margin=0.3).tolist() == [[[0, 0, 0, 0]]]


def test_automasking_starts_at_the_configured_step():
    from synthetic import kitti_like_intrinsics, textured_image

    from mds_core.config import LossConfig, ModelConfig
    from mds_core.data.sample import Batch
    from mds_core.method.decomposition import ComponentMotion
    from mds_core.method.losses import SelfSupervisedObjective
    from mds_core.method.model import ModelOutput, SourceMotion

    height, width = 32, 64
    image = textured_image(height, width, seed=1)
    images = torch.stack([image, image], dim=1)  # a static camera: the identity explains every pixel
    batch = Batch(images=images, network_images=images, intrinsics=kitti_like_intrinsics(width, height),
                  depth=None, motion=None, names=["x"])
    depth = torch.full((1, 1, height, width), 5.0)
    transforms = torch.eye(4).view(1, 1, 4, 4).clone()
    transforms[0, 0, 0, 3] = 0.2  # a wrong motion: worse than the identity almost everywhere
    ones = torch.ones(1, 1, height, width)
    output = ModelOutput([torch.zeros_like(depth)], depth,
                         [SourceMotion(1, ComponentMotion(ones, transforms), ones, ones, transforms)], warp_depth=depth)
    objective = SelfSupervisedObjective(LossConfig(automask_start_step=10),
                                        ModelConfig(height=height, width=width, num_components=1, depth_source="ground_truth"))
    assert float(objective(batch, output, step=9).automask_fraction) == 1.0  # every pixel in the loss
    assert float(objective(batch, output, step=10).automask_fraction) < 0.5  # auto-masking drops most
    assert float(objective(batch, output).automask_fraction) < 0.5  # no step: after every warm-up


def test_photometric_error_gradient_is_exact_and_predictions_may_be_batched():
    import torch.nn.functional as F

    from mds_core.method.losses.ssim import box_mean_3x3

    generator = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 4, 5, dtype=torch.float64, generator=generator)
    x = torch.rand(3, 2, 3, 4, 5, dtype=torch.float64, generator=generator)
    x[0, 0] = target[0]  # an exact match: SSIM 1, the clamp's and |.|'s kinks
    x.requires_grad_()
    # the written-out gradient (a target without gradient) ...
    assert torch.autograd.gradcheck(lambda v: photometric_error(v, target), (x,), fast_mode=True)
    # ... against autograd through the plain expressions (a target with a gradient takes that path)
    fast = photometric_error(x, target)
    plain = photometric_error(x, target.clone().requires_grad_())
    assert torch.allclose(fast, plain, atol=1e-12)
    weights = torch.rand(fast.shape, dtype=torch.float64, generator=generator)
    (fast_gradient,) = torch.autograd.grad(fast, x, weights)
    (plain_gradient,) = torch.autograd.grad(plain, x, weights)
    assert torch.allclose(fast_gradient, plain_gradient, atol=1e-12)
    assert torch.allclose(fast[1], photometric_error(x[1], target), atol=1e-12)  # as if compared alone
    assert torch.allclose(box_mean_3x3(x), F.avg_pool2d(x.flatten(0, 1), 3, 1).view(3, 2, 3, 2, 3))


def test_window_sums_match_the_pooling_they_replace():
    import torch.nn.functional as F

    from mds_core.method.losses.ssim import box_sum_3x3, box_sum_3x3_adjoint
    from mds_core.method.window import window_mean

    generator = torch.Generator().manual_seed(0)
    values = torch.rand(2, 3, 12, 17, generator=generator)
    for window in (3, 5, 9):
        expected = F.avg_pool2d(values, window, stride=1, padding=window // 2, count_include_pad=False)
        assert torch.allclose(window_mean(values, window), expected, atol=1e-6)
    for shape in ((2, 3, 6, 7), (1, 1, 2, 5), (1, 1, 1, 1)):  # the adjoint: window sum of the zero-padded gradient
        grad = torch.rand(shape, dtype=torch.float64, generator=generator)
        assert torch.allclose(box_sum_3x3_adjoint(grad), box_sum_3x3(F.pad(grad, (2, 2, 2, 2))), atol=1e-12)


def test_a_camera_standing_still_teaches_the_background_its_stop_only_without_auto_masking():
    """The camera stands still but the background's motion says 'forward': auto-masking drops every static pixel
    (they look the same un-warped) and a component that stands still explains them, so no auto-masked term
    corrects the background; the background reprojection does, and leaves out the pixels known to move."""
    from synthetic import kitti_like_intrinsics, textured_image

    from mds_core.config import LossConfig, ModelConfig
    from mds_core.data.sample import Batch
    from mds_core.method.decomposition import ComponentMotion
    from mds_core.method.losses import SelfSupervisedObjective
    from mds_core.method.losses.component_assignment import background_reprojection
    from mds_core.method.model import ModelOutput, SourceMotion

    height, width = 32, 64
    wall = textured_image(height, width, seed=1)
    batch = Batch(images=torch.stack([wall, wall], dim=1), network_images=torch.stack([wall, wall], dim=1),
                  intrinsics=kitti_like_intrinsics(width, height), depth=None, motion=None, names=["x"])
    depth = torch.full((1, 1, height, width), 5.0)
    model = ModelConfig(height=height, width=width, num_components=2, depth_source="ground_truth")

    def background_gradient(weight: float, standing: float = 0.0) -> float:
        transforms = torch.eye(4).repeat(1, 2, 1, 1)
        transforms[0, 0, 2, 3] = 0.3  # the background: forward; component 1 stands still
        transforms.requires_grad_()
        masks = torch.stack([torch.ones(height, width), torch.zeros(height, width)])[None]
        source = SourceMotion(1, ComponentMotion(masks=masks, transforms=transforms), masks, masks, transforms)
        objective = SelfSupervisedObjective(
            LossConfig(background_reprojection_weight=weight, standing_camera_weight=standing), model)
        loss = objective(batch, ModelOutput([torch.zeros_like(depth)], depth, [source], warp_depth=depth))
        loss.total.backward()
        return float(transforms.grad[0, 0, 2, 3])

    assert background_gradient(0.0) == 0.0
    assert background_gradient(1.0) > 1e-3  # descending it brings the background's translation back to 0
    # the optical flow sees the wall stand still: the standing-camera term pulls the same way, on its own
    assert background_gradient(0.0, standing=0.05) > 1e-3
    errors = torch.tensor([[[[0.2, 0.4], [0.1, 0.3]]], [[[0.3, 0.1], [0.2, 0.2]]]])  # (S=2, B=1, H=2, W=2)
    assert abs(float(background_reprojection(errors)) - (0.2 + 0.1 + 0.1 + 0.2) / 4) < 1e-6
    moving = torch.tensor([[[False, True], [False, False]]])
    assert abs(float(background_reprojection(errors, moving)) - (0.2 + 0.1 + 0.2) / 3) < 1e-6
