"""The scene-flow motion model (Dynamo-Depth) on hand-computed cases."""

import dataclasses
import shutil

import pytest
import torch
from synthetic import kitti_like_intrinsics, textured_image

from mds_core.method.decomposition import ComponentMotion
from mds_core.method.geometry import backproject, pose_vector_to_transform, project
from mds_core.method.scene_flow import SceneFlowMotion, constant_velocity_flow
from mds_core.method.warping import warp_source

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)

B, H, W = 2, 16, 24


def ego_motion() -> torch.Tensor:
    """A small rotation about y and a forward translation, target -> source."""
    return pose_vector_to_transform(torch.tensor([[0.0, 0.02, 0.0]] * B), torch.tensor([[0.05, 0.0, -0.3]] * B))


def depth_map() -> torch.Tensor:
    return 4.0 + 6.0 * textured_image(H, W, batch=B, seed=2)[:, :1]


def test_mask_zero_is_the_rigid_warp():
    source = textured_image(H, W, batch=B, seed=1)
    depth, intrinsics, ego = depth_map(), kitti_like_intrinsics(W, H, B), ego_motion()
    flow = torch.randn(B, 3, H, W, generator=torch.Generator().manual_seed(0))  # ignored where M = 0
    scene_flow = SceneFlowMotion(ego=ego, complete_flow=flow, mask=torch.zeros(B, 1, H, W))
    rigid = ComponentMotion(masks=torch.ones(B, 1, H, W), transforms=ego[:, None])
    warped = warp_source(source, depth, intrinsics, scene_flow)
    expected = warp_source(source, depth, intrinsics, rigid)
    assert torch.allclose(warped.pixels, expected.pixels, atol=1e-5)
    assert torch.allclose(warped.image, expected.image, atol=1e-6)


def test_a_box_moving_with_a_known_flow_is_reconstructed_exactly():
    # The source image is linear in (u, v), so bilinear sampling returns its exact value anywhere
    # inside the image: the warped target equals the analytic image at the true source pixels.
    intrinsics, ego, depth = kitti_like_intrinsics(W, H, B), ego_motion(), depth_map()
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    coefficients = torch.tensor([[0.01, 0.02, 0.1], [0.03, -0.01, 0.5], [-0.02, 0.015, 0.6]])

    def analytic(pixels: torch.Tensor) -> torch.Tensor:  # (B, H, W, 2) -> (B, 3, H, W)
        return torch.einsum("cj,bjhw->bchw", coefficients[:, :2], pixels.permute(0, 3, 1, 2)) + coefficients[:, 2, None, None]

    source = analytic(torch.stack([u, v], dim=-1).expand(B, H, W, 2))
    box = torch.zeros(B, 1, H, W)
    box[:, :, 5:11, 8:16] = 1.0
    object_motion = torch.tensor([1.0, 0.3, 0.8]).view(1, 3, 1, 1)  # the box's own displacement, target frame
    points = backproject(depth, torch.linalg.inv(intrinsics))
    true_points = torch.einsum("bij,bjhw->bihw", ego[:, :3, :3], points + box * object_motion) + ego[:, :3, 3, None, None]
    true_pixels = project(true_points, intrinsics)
    inside = ((true_pixels[..., 0] >= 0) & (true_pixels[..., 0] <= W - 1)
              & (true_pixels[..., 1] >= 0) & (true_pixels[..., 1] <= H - 1))[:, None].expand(B, 3, H, W)
    assert inside.float().mean() > 0.8

    motion = SceneFlowMotion(ego=ego, complete_flow=torch.zeros(B, 3, H, W), mask=box)
    # the complete flow that moves the box by object_motion: C = E + object_motion on the box
    motion.complete_flow = (motion.rigid_flow(points) + object_motion) * box
    warped = warp_source(source, depth, intrinsics, motion)
    assert torch.allclose(warped.pixels, true_pixels, atol=1e-4)
    assert torch.allclose(warped.image[inside], analytic(true_pixels)[inside], atol=1e-5)
    # the independent flow is the box's own motion on the box and zero elsewhere
    assert torch.allclose(motion.independent_flow(points), box * object_motion, atol=1e-6)
    # the rigid warp gets the box wrong
    rigid = warp_source(source, depth, intrinsics, SceneFlowMotion(ego, motion.complete_flow, torch.zeros_like(box)))
    assert (rigid.pixels - true_pixels).norm(dim=-1)[box[:, 0] > 0].min() > 1.0  # pixels


def test_mask_one_without_rotation_moves_points_by_the_complete_flow():
    ego = pose_vector_to_transform(torch.zeros(B, 3), torch.tensor([[0.2, -0.1, -0.5]] * B))
    points = torch.randn(B, 3, H, W, generator=torch.Generator().manual_seed(3)) + torch.tensor([0, 0, 8.0]).view(1, 3, 1, 1)
    flow = torch.randn(B, 3, H, W, generator=torch.Generator().manual_seed(4))
    motion = SceneFlowMotion(ego=ego, complete_flow=flow, mask=torch.ones(B, 1, H, W))
    assert torch.allclose(motion.transform_points(points), points + flow, atol=1e-5)
    # several point sets (e.g. one per scale) at once, as the objective passes them
    stacked = torch.stack([points, 2 * points])
    assert torch.allclose(motion.transform_points(stacked)[1], motion.transform_points(2 * points), atol=1e-5)


def test_constant_velocity_signs():
    flow = torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
    assert torch.equal(constant_velocity_flow(flow, 1), flow)
    assert torch.equal(constant_velocity_flow(flow, -1), -flow)  # toward the previous frame: the negative
    assert torch.equal(constant_velocity_flow(flow, 2), 2 * flow)  # two frames ahead: twice as far
    with pytest.raises(ValueError, match="offset 0"):
        constant_velocity_flow(flow, 0)


def test_scene_flow_networks_shapes_condition_and_detached_ego_motion():
    from mds_core.method.networks import EgoPoseNet, SceneFlowNet

    torch.manual_seed(0)
    height, width = 64, 96
    frames = [torch.rand(B, 3, height, width) for _ in range(3)]
    axis_angle, translation = EgoPoseNet("resnet18")(frames[0], frames[1])
    assert axis_angle.shape == translation.shape == (B, 3)
    network = SceneFlowNet("resnet18")
    ego = (torch.randn(B, 6) * 0.01).requires_grad_()
    out = network(*frames, ego)
    assert [tuple(f.shape) for f in out.complete_flow] == [(B, 3, height >> s, width >> s) for s in range(4)]
    assert [tuple(m.shape) for m in out.mask_logits] == [(B, 1, height >> s, width >> s) for s in range(4)]
    assert all(((m > 0) & (m < 1)).all() for m in out.motion_mask)
    # the field starts from the ego-motion: another ego-motion moves the whole flow field
    other = network(*frames, ego + 0.01)
    assert (other.complete_flow[0] - out.complete_flow[0]).abs().mean() > 1e-4
    (out.complete_flow[0].sum() + out.mask_logits[0].sum()).backward()
    assert ego.grad is None  # detached: the flow does not train the pose
    assert all(p.grad is not None for p in network.flow_decoder.parameters())


# --- the scene-flow regularisers, on cases small enough to compute by hand ---

def test_flow_consistency_by_hand():
    from mds_core.method.losses.scene_flow_terms import flow_consistency

    complete = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4).repeat(1, 3, 1, 1).requires_grad_()
    rigid = torch.full((1, 3, 1, 4), 0.5)
    mask = torch.tensor([0.0, 0.5, 1.0, 0.0]).view(1, 1, 1, 4).requires_grad_()
    disparity = torch.tensor([0.5, 0.5, 0.5, 0.01]).view(1, 1, 1, 4)  # the last pixel is too far: not counted
    # per pixel and channel |C - E| (1 - M): 0.5*1, 1.5*0.5, 2.5*0, 0 (too far) -> 1.25 * 3 channels / 12 elements
    value = flow_consistency(complete - rigid, mask, disparity)
    assert value.item() == pytest.approx(3.75 / 12)
    value.backward()
    assert mask.grad is None  # the mask is detached: this term never raises it
    expected = torch.tensor([1 / 12, 0.5 / 12, 0.0, 0.0]).expand(3, 4)
    assert torch.allclose(complete.grad[0, :, 0], expected)  # it pulls C toward E (sign of C - E)


def test_mask_sparsity_by_hand():
    from mds_core.method.losses.scene_flow_terms import mask_sparsity

    logits = torch.tensor([0.0, 2.0, -1.0, 3.0]).view(1, 1, 1, 4)
    rigid = torch.zeros(1, 1, 4, 2)
    complete = torch.zeros(1, 1, 4, 2)
    complete[0, 0, 3] = torch.tensor([5.0, 0.0])  # only the last pixel's complete flow disagrees with the rigid one
    expected = torch.nn.functional.softplus(torch.tensor([0.0, 2.0, -1.0])).mean()  # -log(1 - sigmoid)
    assert mask_sparsity(logits, rigid, complete, 8, 8).item() == pytest.approx(expected.item(), rel=1e-6)
    assert mask_sparsity(logits, rigid, rigid, 8, 8).item() == 0.0  # no pixel below the mean gap: nothing to say


def ground_scene(height=32, width=48, plane=(0.05, 0.02, 1.5)):
    """Depth of a camera looking at the plane y = w1 x + w2 z + w3 (y down) in its lower half; far above."""
    from mds_core.method.geometry import pixel_grid

    intrinsics = kitti_like_intrinsics(width, height)
    rays = torch.einsum("bij,jhw->bihw", torch.linalg.inv(intrinsics), pixel_grid(height, width))
    w1, w2, w3 = plane
    depth = w3 / (rays[:, 1] - w1 * rays[:, 0] - w2 * rays[:, 2])
    depth = torch.where((depth > 0) & (depth < 80), depth, torch.full_like(depth, 80.0))[:, None]
    return depth, intrinsics


def test_the_ground_plane_is_found_among_outliers():
    from mds_core.method.geometry import backproject
    from mds_core.method.losses.scene_flow_terms import fit_ground_plane

    depth, intrinsics = ground_scene()
    depth[..., 28:, 10:20] = 3.0  # an object standing on the road: outliers in the bottom rows
    points = backproject(depth, torch.linalg.inv(intrinsics))
    plane = fit_ground_plane(points, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(plane[0], torch.tensor([0.05, 0.02, 1.5]), atol=1e-4)


def test_ground_plane_term_penalises_only_points_below_the_ground():
    from mds_core.method.losses.scene_flow_terms import ground_plane_term
    from mds_core.method.oracle import depth_to_disparity

    depth, intrinsics = ground_scene()
    inv = torch.linalg.inv(intrinsics)
    on_ground = depth_to_disparity(depth, 0.1, 100.0)
    generator = torch.Generator().manual_seed(0)
    assert ground_plane_term(on_ground, inv, 0.1, 100.0, generator=generator).item() == pytest.approx(0.0, abs=1e-6)
    below = depth.clone()
    below[..., 26:28, 30:34] *= 1.5  # eight road pixels pushed beyond the road surface
    disparity = depth_to_disparity(below, 0.1, 100.0).requires_grad_()
    value = ground_plane_term(disparity, inv, 0.1, 100.0, generator=torch.Generator().manual_seed(0))
    assert value.item() > 0
    value.backward()
    touched = disparity.grad[0, 0] != 0
    assert touched.sum() == 8 and touched[26:28, 30:34].all()  # only they are pushed back toward the ground
    assert (disparity.grad[0, 0][touched] < 0).all()  # ... by raising their disparity (nearer)


# --- the scene-flow model and its objective ---

def scene_flow_setup(height=64, width=96):
    from mds_core.config import LossConfig, ModelConfig
    from mds_core.data.sample import Batch
    from mds_core.method.motion_models import create_model

    config = ModelConfig(height=height, width=width, motion_model="scene_flow", depth_encoder="resnet18",
                         pose_mask_encoder="resnet18")
    model = create_model(config)
    images = torch.stack([textured_image(height, width, batch=B, seed=s) for s in range(3)], dim=1)
    batch = Batch(images, images, kitti_like_intrinsics(width, height, B), None, None, ["a", "b"])
    return config, LossConfig(), model, batch


@pytest.mark.parametrize("stage", ["rigid", "flow", "mask"])
def test_the_scene_flow_model_trains_each_stage_through_the_shared_objective(stage):
    from mds_core.method.dynamo_depth import DynamoDepth
    from mds_core.method.losses import SelfSupervisedObjective

    torch.manual_seed(0)
    config, loss_config, model, batch = scene_flow_setup()
    assert isinstance(model, DynamoDepth)
    model.flow_enabled, model.mask_enabled = stage != "rigid", stage == "mask"
    output = model(batch.network_images, [-1, 1])
    assert [tuple(d.shape) for d in output.disparities] == [(B, 1, 64 >> s, 96 >> s) for s in range(4)]
    source = output.sources[0]
    assert source.motion.complete_flow.shape == (4, B, 3, 64, 96) and source.motion.mask.shape == (4, B, 1, 64, 96)
    if stage != "rigid":  # constant velocity: the flow toward the previous frame is minus the flow toward the next
        assert torch.allclose(output.sources[0].complete_flow[0], -output.sources[1].complete_flow[0])
    loss = SelfSupervisedObjective(loss_config, config)(batch, output, step=None)
    assert torch.isfinite(loss.total)
    terms = loss.scalars()
    assert (terms["scene_flow/flow_smoothness"] > 0) == (stage != "rigid")
    assert (terms["scene_flow/mask_sparsity"] > 0) == (stage == "mask")
    assert (terms["scene_flow/ground"] >= 0) and (terms["scene_flow/flow_consistency"] > 0) == (stage == "mask")
    loss.total.backward()
    flow_grads = [p.grad for p in model.scene_flow_net.flow_decoder.parameters()]
    mask_grads = [p.grad for p in model.scene_flow_net.mask_decoder.parameters()]
    assert all(g is None for g in flow_grads) == (stage == "rigid")
    assert all(g is None or not g.any() for g in mask_grads) == (stage != "mask")
    assert any(p.grad is not None and p.grad.any() for p in model.ego_pose_net.parameters()) == (stage != "flow")


# --- staged training ---

def test_stage_boundaries_follow_the_fractions():
    from mds_core.config import TrainConfig
    from mds_core.training.stages import stage_at, training_stages

    config = TrainConfig()
    config.model.motion_model = "scene_flow"
    stages = training_stages(config, 27)  # Dynamo-Depth's proportions 1 : 1 : 5 : 20
    assert [(s.name, s.start, s.end) for s in stages] == [("rigid", 0, 1), ("flow", 1, 2), ("mask", 2, 7),
                                                          ("joint", 7, 27)]
    assert [s.name for s in training_stages(config, 4)] == ["rigid", "flow", "mask", "joint"]  # each gets a step
    assert stage_at(stages, 6).name == "mask" and stage_at(stages, 7).name == "joint"
    config.stages = []
    assert [(s.name, s.start, s.end) for s in training_stages(config, 10)] == [("all", 0, 10)]  # one stage
    config.model.motion_model = "components"
    config.stages = None
    assert [s.config.train for s in training_stages(config, 10)] == [["depth", "pose", "flow", "mask"]]


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory):
    """A scene-flow run of 8 steps in four stages of 2, with a checkpoint after every step."""
    from synthetic import make_sequences, tiny_config

    from mds_core.config import SCENE_FLOW_STAGES
    from mds_core.training.loop import train

    root = tmp_path_factory.mktemp("staged")
    data = make_sequences(root / "data", count=1, frames=6)

    def config(name):
        run = tiny_config(data, root / name, epochs=4, lr_decay_epochs=0)  # 4 samples, batch 2: 2 steps an epoch
        run.model.motion_model = "scene_flow"
        run.data.augmentation.enabled = False
        run.stages = [dataclasses.replace(stage, fraction=1.0) for stage in SCENE_FLOW_STAGES]  # 2 steps each
        run.logging.checkpoint_every = 1
        run.logging.keep_checkpoints = 20
        return run

    full = train(config("full"))
    return root, config, full


def _weights(checkpoint, prefix):
    return {k: v for k, v in checkpoint.model.items() if k.startswith(prefix)}


def test_frozen_networks_do_not_change_and_each_stage_starts_a_fresh_optimiser(staged_run):
    from mds_core.checkpoint import load_checkpoint

    root, _, full = staged_run
    steps = {s: load_checkpoint(root / "full" / "checkpoints" / f"step_{s:07d}.pt") for s in range(1, 9)}
    assert full.steps == 8

    def changed(a, b, prefix):
        first, second = _weights(steps[a], prefix), _weights(steps[b], prefix)
        assert first, prefix
        return any(not torch.equal(first[k], second[k]) for k in first)

    # stages: rigid steps 0-1, flow 2-3, mask 4-5, joint 6-7; checkpoint s holds the weights after s steps
    assert changed(1, 2, "depth_net.") and changed(1, 2, "ego_pose_net.")
    assert not changed(2, 4, "depth_net.") and not changed(2, 4, "ego_pose_net.")  # the flow stage: both frozen,
    assert changed(2, 4, "scene_flow_net.flow_decoder.")  # ... batch-norm statistics included
    assert not changed(2, 4, "scene_flow_net.mask_decoder.")  # no mask yet
    assert not changed(4, 6, "depth_net.") and changed(4, 6, "ego_pose_net.") and changed(4, 6, "scene_flow_net.mask")
    assert changed(6, 8, "depth_net.")
    # a checkpoint at a stage's first step holds that stage's fresh optimiser: no moments yet, its learning rate
    assert not steps[2].optimizer["state"] and not steps[4].optimizer["state"] and not steps[6].optimizer["state"]
    assert steps[3].optimizer["state"]
    lrs = [steps[s].optimizer["param_groups"][0]["lr"] for s in (3, 5, 7)]
    assert lrs[0] == lrs[1] == 1e-4 and lrs[2] == pytest.approx(0.5e-4)  # joint: half the learning rate


@pytest.mark.parametrize("resume_step", [2, 3])
def test_resume_is_exact_across_a_stage_boundary(staged_run, resume_step):
    from mds_core.checkpoint import load_checkpoint
    from mds_core.training.loop import train

    root, config, full = staged_run
    reference = load_checkpoint(full.checkpoint)
    middle = root / "full" / "checkpoints" / f"step_{resume_step:07d}.pt"
    resumed_config = config(f"resumed{resume_step}")
    resumed_config.logging.keep_checkpoints = 1  # only the last one is read (each is a few hundred MB)
    resumed = load_checkpoint(train(resumed_config, resume=middle).checkpoint)
    shutil.rmtree(root / f"resumed{resume_step}")  # the module's checkpoints need several GB of disk as it is
    assert resumed.step == reference.step == 8
    for name, tensor in reference.model.items():
        assert torch.equal(tensor, resumed.model[name]), f"{name} differs after resuming at step {resume_step}"


def test_a_scene_flow_checkpoint_predicts_and_evaluates(staged_run):
    import numpy as np

    from mds_core.data.sequence_folder import find_sequences
    from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation
    from mds_core.inference.predictor import Predictor

    root, _, full = staged_run
    predictor = Predictor.from_checkpoint(full.checkpoint, device="cpu")
    assert predictor.uses_scene_flow and predictor.num_components == 2
    sequence = find_sequences(root / "data")[0]
    intrinsics, _ = sequence.intrinsics()
    frames = [sequence.image(i) for i in range(3)]
    alone = predictor.predict(frames[1], intrinsics)
    assert alone.moving_probability is None and alone.ego_motion is None
    pair = predictor.predict(frames[1], intrinsics, frames[0])  # no next frame: the ego-motion only
    assert pair.ego_motion.shape == (4, 4) and pair.moving_probability is None
    full_prediction = predictor.predict(frames[1], intrinsics, frames[0], following=frames[2])
    h, w = full_prediction.depth.shape
    assert full_prediction.moving_probability.shape == (h, w) and full_prediction.independent_flow.shape == (3, h, w)
    assert np.allclose(full_prediction.ego_motion, pair.ego_motion, atol=1e-6)
    assert full_prediction.labels.dtype == np.uint8 and set(np.unique(full_prediction.labels)) <= {0, 1}
    assert np.all(full_prediction.motion_distance >= 0)
    report = run_evaluation(EvaluationRequest(checkpoint=str(full.checkpoint), data=str(root / "data"), device="cpu"),
                            progress=False)
    assert report.motion is not None and 0.0 <= report.motion.average_precision <= 1.0
    assert report.metadata["background_component"].startswith("the ego-motion")
