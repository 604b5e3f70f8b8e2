"""The objective's batched implementation against a plain per-scale, per-source, per-component loop.

:func:`reference_objective` is the objective as first written (before the warps, SSIMs and
photometric errors of all scales, sources and components were batched into single calls): one
warp and one SSIM per scale and source, Monodepth2's SSIM with ``avg_pool2d``, and the
per-component reprojection as one warp per component. It is kept here, with its own copies of
the warp and SSIM, as the definition the fast path must reproduce: on a fixed seeded batch, the
total loss and its parts within 1e-5 relative (fp32). Per-pixel maps and the gradients of
every network output are compared at 1e-4: in fp32 a pixel's SSIM is only good to about 1e-5
relative (its variances ``E[x^2] - mu^2`` cancel), and the reference itself differs from the
float64 value by that much. The fixed case has smooth images and depth: where two warps sample
the same border pixel their errors tie exactly, rounding decides which one the per-pixel minimum
takes, and that pixel's gradient would go to the other source or component.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from synthetic import kitti_like_intrinsics, textured_image

from mds_core.config import LossConfig, ModelConfig
from mds_core.data.sample import Batch
from mds_core.method.decomposition import ComponentMotion, depth_ordered_softmax
from mds_core.method.geometry import pose_vector_to_transform
from mds_core.method.losses import SelfSupervisedObjective
from mds_core.method.losses.component_assignment import assignment_targets, mask_assignment
from mds_core.method.losses.photometric import minimum_reprojection
from mds_core.method.losses.smoothness import disparity_smoothness, edge_aware_smoothness
from mds_core.method.model import ModelOutput, SourceMotion
from mds_core.method.motion_evidence import motion_evidence
from mds_core.method.networks import disparity_to_depth

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)

RELATIVE_TOLERANCE = 1e-5  # the loss and its parts
MAP_TOLERANCE = 1e-4  # per-pixel maps and gradients (fp32 rounding of the per-pixel SSIM)
B, H, W = 2, 32, 64
OFFSETS = [-1, 1]


# --- the reference: the per-scale / per-source / per-component loop, with its own warp and SSIM ---

def reference_ssim(x, y):
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x * mu_x
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y * mu_y
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2))


def reference_photometric_error(prediction, target, ssim_weight):
    l1 = (target - prediction).abs().mean(dim=1, keepdim=True)
    dssim = ((1.0 - reference_ssim(prediction, target)) / 2.0).clamp(0.0, 1.0).mean(dim=1, keepdim=True)
    return ssim_weight * dssim + (1.0 - ssim_weight) * l1


def reference_warp(source, depth, intrinsics, masks, transforms):
    """Eqs. (4)-(7) for one source: back-project, eq. (6) over the K transforms, project, sample."""
    height, width = depth.shape[-2:]
    v, u = torch.meshgrid(torch.arange(height, dtype=depth.dtype), torch.arange(width, dtype=depth.dtype),
                          indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)])
    points = torch.einsum("bij,jhw->bihw", torch.linalg.inv(intrinsics), pixels) * depth
    moved = torch.einsum("bkij,bjhw->bkihw", transforms[:, :, :3, :3], points) + transforms[:, :, :3, 3, None, None]
    moved = (masks[:, :, None] * moved).sum(dim=1)
    homogeneous = torch.einsum("bij,bjhw->bihw", intrinsics, moved)
    uv = (homogeneous[:, :2] / (homogeneous[:, 2:3] + 1e-7)).permute(0, 2, 3, 1)
    grid = uv / uv.new_tensor([width - 1, height - 1]) * 2.0 - 1.0
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=True)


def reference_objective(loss: LossConfig, model: ModelConfig, batch: Batch, output: ModelOutput,
                        step: int | None) -> dict[str, torch.Tensor]:
    target, sources, intrinsics = batch.target, batch.sources, batch.intrinsics
    height, width = target.shape[-2:]
    identity = None
    if loss.automask and (step is None or step >= loss.automask_start_step):
        identity = torch.cat([reference_photometric_error(sources[:, s], target, loss.ssim_weight)
                              for s in range(sources.shape[1])], dim=1)
    totals, photometric_terms = [], []
    assigned_reprojection = assignment = torch.zeros(())
    for scale, disparity in enumerate(output.disparities):
        full = F.interpolate(disparity, size=(height, width), mode="bilinear", align_corners=False)
        depth = output.warp_depth if output.warp_depth is not None else disparity_to_depth(
            full, model.min_depth, model.max_depth)
        warped = [reference_warp(sources[:, s], depth, intrinsics, src.motion.masks, src.motion.transforms)
                  for s, src in enumerate(output.sources)]
        errors = torch.cat([reference_photometric_error(w, target, loss.ssim_weight) for w in warped], dim=1)
        reprojection = minimum_reprojection(errors, identity, loss.min_reprojection)
        photometric = reprojection.per_pixel.mean()
        smoothness = disparity_smoothness(disparity, F.interpolate(target, size=disparity.shape[-2:], mode="area"))
        totals.append(photometric + loss.smoothness_weight / (2**scale) * smoothness)
        photometric_terms.append(photometric)
        if scale == 0 and model.num_components > 1 and output.components_enabled and (
                loss.assigned_reprojection_weight > 0 or loss.mask_assignment_weight > 0):
            per_source = []
            for s, src in enumerate(output.sources):
                ones = torch.ones_like(depth)
                per_source.append(torch.cat([
                    reference_photometric_error(reference_warp(sources[:, s], depth, intrinsics, ones,
                                                               src.motion.transforms[:, k:k + 1]),
                                                target, loss.ssim_weight)
                    for k in range(src.motion.transforms.shape[1])], dim=1))
            window = 2 * int(loss.assignment_window * width / 2) + 1
            moving = static = None
            if loss.motion_evidence_threshold > 0:  # the evidence itself: test_motion_evidence.py
                found = [motion_evidence(target, sources[:, s], src.motion.transforms[:, 0], intrinsics, depth,
                                         loss.motion_evidence_threshold * width, window)
                         for s, src in enumerate(output.sources)]
                moving = torch.stack([e.moving for e in found]).any(dim=0)
                static = torch.stack([e.static for e in found]).all(dim=0)
                still = torch.stack([e.still for e in found]).all(dim=0)
                if loss.standing_camera_weight > 0:
                    distances = [src.motion.transforms[b, 0, :3, 3].norm()
                                 + (src.motion.transforms[b, 0, :3, :3] - torch.eye(3)).norm()
                                 for src in output.sources for b in range(len(still)) if still[b]]
                    if distances:
                        totals[-1] = totals[-1] + loss.standing_camera_weight * (
                            torch.stack(distances).mean() / model.pose_scale)
            if loss.background_reprojection_weight > 0:
                alone = torch.cat([
                    reference_photometric_error(reference_warp(sources[:, s], depth.detach(), intrinsics,
                                                               torch.ones_like(depth), src.motion.transforms[:, :1]),
                                                target, loss.ssim_weight)
                    for s, src in enumerate(output.sources)], dim=1).amin(dim=1)
                keep = torch.ones_like(alone) if moving is None else (~moving).float()
                totals[-1] = totals[-1] + loss.background_reprojection_weight * (alone * keep).sum() / keep.sum()
            targets = assignment_targets(torch.stack(per_source).amin(dim=0).detach(), loss.assignment_margin, window,
                                         moving=moving, static=static)
            chosen = torch.cat([errors.gather(1, targets[:, None]) for errors in per_source], dim=1)
            assigned_reprojection = minimum_reprojection(chosen, identity, loss.min_reprojection).per_pixel.mean()
            assignment = torch.stack([mask_assignment(src.soft_masks, targets, moving)
                                      for src in output.sources]).mean()
            totals[-1] = (totals[-1] + loss.assigned_reprojection_weight * assigned_reprojection
                          + loss.mask_assignment_weight * assignment)
        if scale == 0:
            per_pixel, warped_scale0 = reprojection.per_pixel, torch.stack(warped, dim=1)
    total = torch.stack(totals).mean()
    if model.mask_regulariser == "smoothness" and model.num_components > 1:
        total = total + loss.mask_smoothness_weight * torch.stack(
            [edge_aware_smoothness(src.motion.masks, target) for src in output.sources]).mean()
    return {"total": total, "photometric": torch.stack(photometric_terms).mean(), "assigned_reprojection": assigned_reprojection,
            "mask_assignment": assignment, "per_pixel": per_pixel, "warped_sources": warped_scale0}


# --- a fixed seeded batch and model output whose leaves stand for the networks' outputs ---

@dataclasses.dataclass
class Case:
    batch: Batch
    output: ModelOutput
    leaves: list[torch.Tensor]


def fixed_case(num_components: int, oracle_depth: bool = False, seed: int = 0, standing: bool = False) -> Case:
    """``standing``: in the first sample the camera stands still (its sources are the target, noise aside)
    while a box in it moves."""
    generator = torch.Generator().manual_seed(seed)
    target = textured_image(H, W, batch=B, seed=seed)
    # sources: the target shifted by a few pixels, plus a little noise, so that warps can explain them
    sources = [torch.roll(target, shifts=offset * 2, dims=-1) + 0.02 * torch.rand(target.shape, generator=generator)
               for offset in OFFSETS]
    if standing:
        for offset, source in zip(OFFSETS, sources):
            source[0] = target[0]
            source[0, :, 4:12, 8:20] = torch.roll(target[0, :, 4:12, 8:20], shifts=3 * offset, dims=-1)
    images = torch.stack([target, *sources], dim=1).clamp(0, 1)
    batch = Batch(images, images, kitti_like_intrinsics(W, H, B), None, None, [str(i) for i in range(B)])
    scales = 1 if oracle_depth else 4
    disparities = [torch.rand(B, 1, H >> s, W >> s, generator=generator).mul(0.3).add(0.05).requires_grad_()
                   for s in range(scales)]
    leaves = list(disparities)
    motions = []
    for offset in OFFSETS:
        logits = torch.randn(B, num_components, H, W, generator=generator).requires_grad_()
        axis_angle = (0.01 * torch.randn(B, num_components, 3, generator=generator)).requires_grad_()
        translation = (0.05 * torch.randn(B, num_components, 3, generator=generator)).requires_grad_()
        leaves += [logits, axis_angle, translation]
        soft = depth_ordered_softmax(logits)
        transforms = pose_vector_to_transform(axis_angle, translation, invert=offset < 0)
        motions.append(SourceMotion(offset, ComponentMotion(soft, transforms), logits, soft, transforms))
    warp_depth = 2.0 + 8.0 * textured_image(H, W, batch=B, seed=seed + 1)[:, :1] if oracle_depth else None
    depth = warp_depth if oracle_depth else disparity_to_depth(disparities[0], 0.1, 100.0)
    return Case(batch, ModelOutput(disparities, depth, motions, warp_depth=warp_depth), leaves)


CONFIGS = {
    "defaults (assignment terms on)": ({}, {}, {}),
    "published objective": (dict(assigned_reprojection_weight=0.0, mask_assignment_weight=0.0), {}, {}),
    "assignment terms, mask smoothness": (
        dict(assigned_reprojection_weight=1.0, mask_assignment_weight=0.1), dict(mask_regulariser="smoothness"), {}),
    "no auto-masking, mean over sources": (
        dict(automask=False, min_reprojection=False, assigned_reprojection_weight=1.0, mask_assignment_weight=0.1), {}, {}),
    "before the auto-masking start step": (
        dict(automask_start_step=10, assigned_reprojection_weight=1.0, mask_assignment_weight=0.1), {}, {}),
    "oracle depth": (dict(assigned_reprojection_weight=1.0, mask_assignment_weight=0.1), {}, dict(oracle_depth=True)),
    "a standing camera in the batch": ({}, {}, dict(standing=True)),
}


def relative_difference(value: torch.Tensor, reference: torch.Tensor) -> float:
    value, reference = value.detach(), reference.detach()
    return float((value - reference).norm() / reference.norm().clamp_min(1e-12))


def loss_and_gradients(compute, case: Case) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    torch.manual_seed(1234)  # the same auto-masking noise for both computations
    result = compute(case)
    gradients = torch.autograd.grad(result["total"], case.leaves, retain_graph=True, allow_unused=True)
    return result, [g if g is not None else torch.zeros_like(leaf) for g, leaf in zip(gradients, case.leaves)]


@pytest.mark.parametrize("name", CONFIGS)
def test_objective_matches_the_reference_loop(name):
    loss_overrides, model_overrides, case_options = CONFIGS[name]
    num_components = 5
    loss = dataclasses.replace(LossConfig(), **loss_overrides)
    model = dataclasses.replace(ModelConfig(height=H, width=W, num_components=num_components), **model_overrides)
    case = fixed_case(num_components, **case_options)
    step = 0

    def fast(c: Case) -> dict[str, torch.Tensor]:
        out = SelfSupervisedObjective(loss, model)(c.batch, c.output, step=step)
        if case_options.get("standing"):  # the standing-camera terms were really computed
            assert float(out.standing_camera) > 0 and float(out.static_fraction) > 0.1
        return {"total": out.total, "photometric": out.photometric, "assigned_reprojection": out.assigned_reprojection,
                "mask_assignment": out.mask_assignment, "per_pixel": out.per_pixel,
                "warped_sources": out.warped_sources}

    expected, expected_gradients = loss_and_gradients(
        lambda c: reference_objective(loss, model, c.batch, c.output, step), case)
    result, gradients = loss_and_gradients(fast, case)

    assert relative_difference(result["total"], expected["total"]) < RELATIVE_TOLERANCE
    for key in ("photometric", "assigned_reprojection", "mask_assignment"):
        assert relative_difference(result[key], expected[key]) < RELATIVE_TOLERANCE, key
    for key in ("per_pixel", "warped_sources"):
        assert relative_difference(result[key], expected[key]) < MAP_TOLERANCE, key
    if loss.assigned_reprojection_weight > 0:
        assert float(expected["assigned_reprojection"].detach()) > 0  # the per-component terms were really computed
    assert any(g.abs().sum() > 0 for g in expected_gradients)
    for gradient, reference, leaf in zip(gradients, expected_gradients, case.leaves):
        assert relative_difference(gradient, reference) < MAP_TOLERANCE, tuple(leaf.shape)


def test_the_comparison_detects_a_wrong_objective():
    """The tolerance is far below the effect of a small change of the maths (0.1% of the SSIM weight)."""
    loss = LossConfig(assigned_reprojection_weight=1.0, mask_assignment_weight=0.1)
    model = ModelConfig(height=H, width=W, num_components=5)
    case = fixed_case(5)
    torch.manual_seed(1234)
    expected = reference_objective(loss, model, case.batch, case.output, None)["total"]
    torch.manual_seed(1234)
    fast = SelfSupervisedObjective(loss, model)(case.batch, case.output).total
    assert relative_difference(fast, expected) < RELATIVE_TOLERANCE
    shifted = dataclasses.replace(loss, ssim_weight=loss.ssim_weight * (1 + 1e-3))
    torch.manual_seed(1234)
    perturbed = SelfSupervisedObjective(shifted, model)(case.batch, case.output).total
    assert relative_difference(perturbed, expected) > 10 * RELATIVE_TOLERANCE


def test_cpu_training_step_loss_matches_the_plain_model_and_reference_loop():
    """The loss of a fixed batch through the training path on CPU (channels-last weights, the decoders'
    ELU through exp, the batched objective) against the same weights as a plain contiguous model with
    ``F.elu``, scored by :func:`reference_objective`.

    The weights' gradients agree to about 3e-3 only: at initialisation the K motion hypotheses nearly
    coincide (the ego-motion is close to 0), so rounding decides the per-pixel minimum over components
    at many pixels. They are compared at 2e-2, which any error in the maths would exceed.
    """
    import copy

    from mds_core.config import TrainConfig
    from mds_core.method.networks.layers import ConvBlock
    from mds_core.training.distributed import DistributedContext
    from mds_core.training.loop import build_training_state

    height, width = 64, 96
    config = TrainConfig(device="cpu")
    config.model = ModelConfig(height=height, width=width, depth_encoder="resnet18", pose_mask_encoder="resnet18",
                               num_components=5, motion_hypotheses=[2, 0, -0.5, 1.5])
    config.loss = LossConfig(assigned_reprojection_weight=1.0, mask_assignment_weight=0.1)
    torch.manual_seed(0)
    state = build_training_state(config, torch.device("cpu"), DistributedContext())
    fast_model = state.model.train()
    assert fast_model.depth_net.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    plain_model = copy.deepcopy(fast_model).to(memory_format=torch.contiguous_format)
    for module in plain_model.modules():
        if isinstance(module, ConvBlock):
            module[1] = torch.nn.ELU(inplace=True)

    target = textured_image(height, width, batch=B, seed=3)
    images = torch.stack([torch.roll(target, 2, dims=-1), target, torch.roll(target, -2, dims=-1)], dim=1)
    images = images[:, [1, 0, 2]]  # target first, then the sources at offsets -1, +1
    batch = Batch(images, images, kitti_like_intrinsics(width, height, B), None, None, [str(i) for i in range(B)])

    torch.manual_seed(1234)
    fast = SelfSupervisedObjective(config.loss, config.model)(batch, fast_model(images, OFFSETS), step=None).total
    fast_gradients = torch.autograd.grad(fast, list(fast_model.parameters()))
    torch.manual_seed(1234)
    plain = reference_objective(config.loss, config.model, batch, plain_model(images, OFFSETS), None)["total"]
    plain_gradients = torch.autograd.grad(plain, list(plain_model.parameters()))

    assert relative_difference(fast, plain) < RELATIVE_TOLERANCE
    for gradient, reference in zip(fast_gradients, plain_gradients):
        assert relative_difference(gradient, reference) < 2e-2
