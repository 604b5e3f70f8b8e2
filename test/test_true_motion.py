"""The oracle rung "motion" (mds_core.method.true_motion): the generated scene's true rigid motions in the
warp, the data set that gives them (mirrored with a flipped sample), and a training run on them."""

import numpy as np
import pytest
import torch

from mds_core.config import ConfigError, ModelConfig, TrainConfig, apply_overrides
from mds_core.data.factory import build_dataset
from mds_core.data.sample import collate_samples
from mds_core.data.sequence_folder import SequenceFolder
from mds_core.method.losses.photometric import photometric_error
from mds_core.method.oracle import ground_truth_depth
from mds_core.method.true_motion import TrueMotion
from mds_core.method.warping import warp_source
from mds_core.tools.synth import SynthConfig, write_sequence_folder
from mds_core.tools.synth.true_flow import true_flow


def _city_drive(root, frames: int = 6):
    config = SynthConfig(width=96, height=64, num_frames=frames, seed=4, num_crossing=3, num_pedestrians=4,
                         num_cyclists=1, camera_stop_probability=0.0)
    write_sequence_folder(root, "drive", config)
    return SequenceFolder(root / "drive")


def _image(sequence: SequenceFolder, index: int) -> torch.Tensor:
    return torch.from_numpy(sequence.image(index)).permute(2, 0, 1)[None].float() / 255


def _warp(sequence: SequenceFolder, index: int, source: int, motion: TrueMotion) -> tuple[np.ndarray, np.ndarray]:
    """The L1 error of the source warped onto the target with the true depth and ``motion`` (no SSIM window
    across an object's boundary), and where each target pixel was sampled ``(H, W, 2)``."""
    height, width = sequence.image(index).shape[:2]
    depth = ground_truth_depth([torch.from_numpy(sequence.depth(index))], height, width, 0.1, 100.0)
    intrinsics = torch.as_tensor(sequence.intrinsics()[0], dtype=torch.float32)[None]
    warped = warp_source(_image(sequence, source), depth, intrinsics,
                         TrueMotion.stack([motion]).component_motion(0, height, width))
    return photometric_error(warped.image, _image(sequence, index), 0.0)[0, 0].numpy(), warped.pixels[0].numpy()


def test_the_true_motion_warps_movers_where_the_cameras_motion_alone_does_not(tmp_path):
    sequence = _city_drive(tmp_path)
    errors, camera_errors = [], []
    for index in range(1, len(sequence)):
        truth = sequence.true_motion(index, [index - 1])
        assert truth.transforms.shape[:2] == (1, 1 + int(truth.components.max()))
        error, pixels = _warp(sequence, index, index - 1, truth)
        camera_error, camera_pixels = _warp(sequence, index, index - 1, truth.camera_only())
        labels = sequence.motion(index)
        width, height = labels.shape[1], labels.shape[0]
        inside = ((pixels > 0) & (pixels < [width - 1, height - 1])).all(-1)
        # the movers whose own motion takes them at least a pixel from where the camera's would
        apart = (labels == 1) & inside & (np.linalg.norm(pixels - camera_pixels, axis=-1) > 1.0)
        errors.append(error[apart])
        camera_errors.append(camera_error[apart])
        background = labels == 0
        np.testing.assert_allclose(error[background], camera_error[background], atol=1e-5)
        # where the warp samples is where the generator's true flow (written independently, in numpy) goes
        truth_flow = true_flow(sequence.path, index, index - 1)
        grid = np.stack(np.meshgrid(np.arange(width), np.arange(height)), axis=-1)
        near = truth_flow.valid & (sequence.depth(index) < 100.0)  # the warp clamps depth at model.max_depth
        np.testing.assert_allclose((pixels - grid)[near], truth_flow.flow.transpose(1, 2, 0)[near], atol=1e-3)
    errors, camera_errors = np.concatenate(errors), np.concatenate(camera_errors)
    assert errors.size > 100
    assert errors.mean() < 0.8 * camera_errors.mean()  # occlusions and untextured bodies keep some error


def test_a_mirrored_sample_has_the_mirrored_motions(tmp_path):
    sequence = _city_drive(tmp_path)
    truth = sequence.true_motion(3, [2, 4])
    flipped = truth.mirrored()
    assert torch.equal(flipped.components, torch.flip(truth.components, dims=[-1]))
    points = torch.tensor([[1.5, -0.3, 7.0, 1.0], [-2.0, 0.4, 12.0, 1.0]]).T
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    # moving a mirrored point with the mirrored motion is mirroring the moved point
    torch.testing.assert_close(flipped.transforms @ (mirror @ points), mirror @ (truth.transforms @ points))
    # and the flipped frames warp with it as the original frames with theirs
    height, width = 64, 96
    image = lambda i: torch.flip(_image(sequence, i), dims=[-1])
    depth = torch.flip(ground_truth_depth([torch.from_numpy(sequence.depth(3))], height, width, 0.1, 100.0), dims=[-1])
    intrinsics = torch.as_tensor(sequence.intrinsics()[0], dtype=torch.float32).clone()
    intrinsics[0, 2] = (width - 1) - intrinsics[0, 2]
    warped = warp_source(image(2), depth, intrinsics[None], TrueMotion.stack([flipped]).component_motion(0, height, width))
    error = photometric_error(warped.image, image(3), 0.0)[0, 0].numpy()
    original, _ = _warp(sequence, 3, 2, truth)
    np.testing.assert_allclose(np.flip(error, axis=-1), original, atol=1e-4)


def _rung_batch(tmp_path, *overrides: str):
    """A tiny training config on a generated city drive with ``overrides``, and a training batch of two of its samples."""
    _city_drive(tmp_path / "data", frames=5)
    config = apply_overrides(TrainConfig(), [
        f"data.root={tmp_path / 'data'}", "model.height=64", "model.width=96", "model.depth_encoder=resnet18",
        "model.pose_mask_encoder=resnet18", *overrides])
    dataset = build_dataset(config.data, config.model, training=True)
    return config, collate_samples([dataset[0], dataset[1]])


def test_the_depth_network_trains_on_the_true_motion(tmp_path):
    """A few steps of the rung: batches carry the true motion (padded to the largest object count), the pose+mask
    network gets no gradient, the depth network does."""
    from mds_core.method.losses.objective import SelfSupervisedObjective
    from mds_core.method.motion_models import create_model

    config, batch = _rung_batch(tmp_path, "model.num_components=1", "model.motion_source=true_scene")
    assert batch.true_motion is not None and batch.true_motion.transforms.shape[:2] == (2, 2)
    model = create_model(config.model)
    output = model(batch.network_images, config.data.source_offsets, None, true_motion=batch.true_motion)
    loss = SelfSupervisedObjective(config.loss, config.model)(batch, output)
    loss.total.backward()
    assert all(p.grad is None for p in model.pose_mask_net.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.depth_net.parameters())
    with pytest.raises(ValueError, match="true motion"):
        model(batch.network_images, config.data.source_offsets, None)


def test_the_rung_refuses_what_it_cannot_do():
    with pytest.raises(ConfigError, match="motion_source"):
        ModelConfig(motion_source="true_scene", motion_model="scene_flow").validate()
    with pytest.raises(ConfigError, match="motion_source"):
        ModelConfig(motion_source="true_scene", depth_source="ground_truth").validate()


def test_the_flow_evidence_for_training_finds_more_of_the_movers_than_the_poses_epipolar_lines(tmp_path):
    """loss.motion_evidence_ego: the evidence the masks are taught with, under the flow's own ego-motion and the depth
    (here the true one), against the distance from the epipolar lines of the true camera motion."""
    from mds_core.method.motion_evidence import flow_motion_evidence, motion_evidence

    config = SynthConfig(width=192, height=64, num_frames=8, seed=11, num_crossing=3, num_pedestrians=4, num_cyclists=1,
                         camera_stop_probability=0.0)
    write_sequence_folder(tmp_path, "drive", config)
    sequence = SequenceFolder(tmp_path / "drive")
    found = {"pose": [], "flow": []}
    false_alarms = {"pose": [], "flow": []}
    intrinsics = torch.as_tensor(sequence.intrinsics()[0], dtype=torch.float32)[None]
    threshold, window = 0.0075 * 192, 9
    for index in range(1, len(sequence) - 1):
        depth = ground_truth_depth([torch.from_numpy(sequence.depth(index))], 64, 192, 0.1, 100.0)
        camera = sequence.true_motion(index, [index - 1]).transforms[None, 0, 0]
        labels = torch.from_numpy(sequence.motion(index))
        for name in found:
            if name == "pose":
                evidence = motion_evidence(_image(sequence, index), _image(sequence, index - 1), camera, intrinsics,
                                           depth, threshold, window)
            else:
                evidence = flow_motion_evidence(_image(sequence, index), _image(sequence, index - 1), intrinsics,
                                                depth, threshold, window)
            found[name].append(evidence.moving[0][labels == 1])
            false_alarms[name].append(evidence.moving[0][labels == 0])
    recall = {name: float(torch.cat(values).float().mean()) for name, values in found.items()}
    false = {name: float(torch.cat(values).float().mean()) for name, values in false_alarms.items()}
    # small movers, a window of 9 px and one frame pair: few pixels either way, but several times more by the flow's
    assert recall["flow"] > 3 * recall["pose"] and recall["flow"] > 0.01, recall
    assert false["flow"] < 0.02, false


def test_the_movers_rung_teaches_the_assignment_the_labelled_movers(tmp_path):
    """model.moving_pixels_source=ground_truth: training batches carry the labels, the objective's evidence is
    exactly the labelled movers (parked cars static), the masks are taught them and everything still learns."""
    from mds_core.method.losses.objective import SelfSupervisedObjective
    from mds_core.method.motion_evidence import MotionEvidence
    from mds_core.method.motion_models import create_model

    config, batch = _rung_batch(tmp_path, "model.num_components=3", "model.moving_pixels_source=ground_truth")
    assert batch.motion is not None
    labels = torch.stack([m[0] for m in batch.motion])
    assert labels.shape[-2:] == (64, 96) and bool((labels == 1).any()) and bool((labels == 2).any())
    evidence = MotionEvidence.labelled(batch.motion, (64, 96), torch.zeros(2, dtype=torch.bool))
    assert torch.equal(evidence.moving, labels == 1) and torch.equal(evidence.static, (labels == 0) | (labels == 2))
    model = create_model(config.model)
    output = model(batch.network_images, config.data.source_offsets, None)
    loss = SelfSupervisedObjective(config.loss, config.model)(batch, output)
    assert float(loss.evidence_fraction) == pytest.approx(float((labels == 1).float().mean()))
    loss.total.backward()
    for network in (model.depth_net, model.pose_mask_net):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.parameters())
    batch.motion = None
    with pytest.raises(ValueError, match="motion labels"):
        SelfSupervisedObjective(config.loss, config.model)(batch, output)
    with pytest.raises(ConfigError, match="moving_pixels_source"):
        ModelConfig(moving_pixels_source="ground_truth", num_components=1).validate()
