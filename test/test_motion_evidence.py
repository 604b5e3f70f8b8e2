"""Motion evidence (mds_core.method.motion_evidence): flow that no static point can produce."""

import pytest
import torch
from synthetic import kitti_like_intrinsics, make_sequences, textured_image, tiny_config

from mds_core.method.geometry import backproject, pixel_grid, pose_vector_to_transform, project
from mds_core.method.motion_evidence import (
    UNDECIDED,
    DepthTrust,
    EvidenceStream,
    FlowChain,
    colour_guided_fill,
    dense_flow,
    epipolar_distance,
    epipolar_line_distance,
    epipolar_ray_distance,
    flow_ego_motion,
    motion_evidence,
    moving_evidence,
    static_depth_distance,
    translation_scale,
)

pytestmark = pytest.mark.numerics

HEIGHT, WIDTH = 48, 96


def _flow_of(points: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """``(B, 2, H, W)`` flow that carries each target pixel to the projection of ``points`` (source frame)."""
    pixels = pixel_grid(HEIGHT, WIDTH)[:2]
    return project(points, intrinsics).movedim(-1, 1) - pixels


def test_with_the_camera_still_the_distance_is_the_flow_itself():
    flow = torch.randn(2, 2, HEIGHT, WIDTH) * 3.0
    distance = epipolar_distance(flow, torch.eye(4).expand(2, 4, 4), kitti_like_intrinsics(WIDTH, HEIGHT, 2),
                                 near_depth=torch.tensor([1.0, 1.0]))
    assert torch.allclose(distance, flow.norm(dim=1), atol=1e-4)


def test_static_points_stay_on_their_segment_and_a_crossing_object_leaves_it():
    """A camera driving forward and turning a little: every static point at any depth beyond the near one lies
    on its segment (distance ~0), whatever the depth; a point that also moves across the heading does not."""
    intrinsics = kitti_like_intrinsics(WIDTH, HEIGHT)
    depth = 3.0 + 60.0 * torch.rand(1, 1, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0))
    # target -> source: the source camera is 1 m behind and turned by 0.02 rad about the vertical axis
    transform = pose_vector_to_transform(torch.tensor([[[0.0, 0.02, 0.0]]]), torch.tensor([[[0.05, 0.0, 1.0]]]))[:, 0]
    points = backproject(depth, torch.linalg.inv(intrinsics))
    moved = torch.einsum("bij,bjhw->bihw", transform[:, :3, :3], points) + transform[:, :3, 3, None, None]
    static = epipolar_distance(_flow_of(moved, intrinsics), transform, intrinsics, near_depth=torch.tensor([2.0]))
    assert float(static.max()) < 1e-2
    crossing = moved + torch.tensor([0.6, 0.0, 0.0]).view(1, 3, 1, 1)  # 0.6 m sideways per frame
    distance = epipolar_distance(_flow_of(crossing, intrinsics), transform, intrinsics, near_depth=torch.tensor([2.0]))
    # off the rows through the epipole a sideways motion is across the epipolar lines: pixels, not hundredths
    rows = torch.cat([torch.arange(0, 12), torch.arange(36, HEIGHT)])
    near = (depth[0, 0, rows] < 15.0)
    assert float(distance[0, rows][near].median()) > 1.0
    # a parked car's motion relative to the camera is the static world's: no evidence at any depth
    assert float(epipolar_distance(_flow_of(moved, intrinsics), transform, intrinsics,
                                   near_depth=torch.tensor([0.5])).max()) < 1e-2


def _still_camera_frames_with_a_box(lefts: list[int], top: int = 16) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A textured wall seen by a camera that stands still and a textured 16x24 box in front of it at each of the
    columns ``lefts`` in turn (cut off by the image's border). Returns the frames and the last frame's box mask."""
    wall = textured_image(HEIGHT, WIDTH, seed=3)
    box_texture = textured_image(16, 24, seed=4)
    frames = []
    for left in lefts:
        frame = wall.clone()
        first, last = max(left, 0), min(left + 24, WIDTH)
        frame[..., top:top + 16, first:last] = box_texture[..., first - left:last - left]
        frames.append(frame)
    box = torch.zeros(1, HEIGHT, WIDTH, dtype=torch.bool)
    box[:, top:top + 16, max(lefts[-1], 0):min(lefts[-1] + 24, WIDTH)] = True
    return frames, box


def _still_camera_with_a_box_moving_right(shift: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A textured wall seen by a camera that stands still, and a textured box in front of it moving ``shift``
    pixels to the right between the source and the target. Returns target, source and the box mask."""
    (source, target), box = _still_camera_frames_with_a_box([30, 30 + shift])
    return target, source, box


def test_dense_flow_follows_a_shift_and_trusts_the_visible_pixels():
    image = textured_image(HEIGHT, WIDTH + 8, seed=5)
    target, source = image[..., 4:4 + WIDTH], image[..., 6:6 + WIDTH]  # the source is the target moved 2 px left
    flow, valid = dense_flow(target, source)
    interior = (slice(None), slice(8, -8), slice(8, -8))
    assert float((flow[:, 0] + 2.0)[interior].abs().median()) < 0.25
    assert float(flow[:, 1][interior].abs().median()) < 0.25
    assert float(valid[interior].float().mean()) > 0.9
    assert not bool(valid[:, :, :2].any())  # the left columns went out of the source image


def test_motion_evidence_finds_a_box_moving_while_the_camera_stands_still():
    target, source, box = _still_camera_with_a_box_moving_right()
    pair = motion_evidence(torch.cat([target, source]), torch.cat([source, target]), torch.eye(4).expand(2, 4, 4),
                           kitti_like_intrinsics(WIDTH, HEIGHT, 2), torch.full((2, 1, HEIGHT, WIDTH), 10.0),
                           threshold=1.0, window=5)
    assert pair.moving.shape == pair.static.shape == (2, HEIGHT, WIDTH) and pair.still.tolist() == [True, True]
    evidence = pair.moving[:1]
    assert float((evidence & box).sum() / box.sum()) > 0.6
    assert float((evidence & ~box).sum() / (~box).sum()) < 0.03
    # with the camera standing still, what does not move is known static: most of the wall, never the box
    static = pair.static[:1]
    assert float((static & ~box).sum() / (~box).sum()) > 0.8
    assert not bool((static & box).any())
    # an ego-motion that says the camera panned does not matter: the wall stands still in the image, so the
    # camera stood still
    intrinsics = kitti_like_intrinsics(WIDTH, HEIGHT)
    pan = pose_vector_to_transform(torch.tensor([[[0.0, 2.0 / float(intrinsics[0, 0, 0]), 0.0]]]),
                                   torch.zeros(1, 1, 3))[:, 0]
    depth = torch.full((1, 1, HEIGHT, WIDTH), 10.0)
    assert torch.equal(motion_evidence(target, source, pan, intrinsics, depth, threshold=1.0, window=5).moving, evidence)
    # a camera that really moves (sideways in front of the wall 10 m away: the image moves 2 px): the ego-motion
    # decides what moves
    image = textured_image(HEIGHT, WIDTH + 8, seed=6)
    moved_target, moved_source = image[..., 4:4 + WIDTH], image[..., 2:2 + WIDTH]
    sideways = torch.eye(4)[None].clone()
    sideways[0, 0, 3] = 2.0 * 10.0 / float(intrinsics[0, 0, 0])
    wrong = motion_evidence(moved_target, moved_source, torch.eye(4)[None], intrinsics, depth, 1.0, 5)
    right = motion_evidence(moved_target, moved_source, sideways, intrinsics, depth, 1.0, 5)
    assert float(wrong.moving.float().mean()) > 0.5 and float(right.moving.float().mean()) < 0.05
    # a moving camera: nothing is known static, whatever the ego-motion
    assert not bool(right.still.any()) and not bool(right.static.any()) and not bool(wrong.static.any())


def test_moving_evidence_scores_the_moving_box_high_and_the_standing_wall_low():
    """The inference-time score with the camera standing: 0.5 at the threshold, rising with the distance."""
    target, source, box = _still_camera_with_a_box_moving_right(shift=3)
    intrinsics = kitti_like_intrinsics(WIDTH, HEIGHT)
    score = moving_evidence(target, source, intrinsics, threshold=1.0, window=5)
    assert score.shape == (1, HEIGHT, WIDTH) and float(score.min()) >= 0.0 and float(score.max()) < 1.0
    core = torch.zeros_like(box)
    core[:, 19:29, 36:54] = True  # the box without the border that a window shares with the wall
    assert float(score[core].median()) > 0.75  # 3 px against a 1 px threshold: 1 - 2^-3 = 0.875
    assert float(score[~box].median()) < 0.1
    # where the flow is not forward-backward consistent (the strip of wall the box uncovers, the box's edges) the
    # trusted pixels of the same colour around speak (test_colour_guided_fill...): nothing away from the box moves
    near_box = torch.nn.functional.max_pool2d(box[:, None].float(), 13, 1, 6)[:, 0].bool()
    assert float(score[~near_box].max()) < 0.5
    # a pixel at exactly the threshold scores 0.5
    assert float(moving_evidence(target, source, intrinsics, threshold=3.0, window=5)[core].median()) == \
        pytest.approx(0.5, abs=0.15)


SCENE_HEIGHT, SCENE_WIDTH = 96, 192


def _moving_camera_with_a_box_moving_down() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A textured surface curving away (3 m at the left edge to 30 m at the right: not a plane, whose essential
    matrix would be ambiguous, and enough parallax to pin the epipole) seen by a camera that moves 0.3 m
    sideways and 0.5 m along its axis and turns by 0.01 rad between the frames, and a box on it that also
    moves 4 px down in the image. Returns target, source, the box mask and the true target -> source
    transform."""
    import torch.nn.functional as F

    intrinsics = kitti_like_intrinsics(SCENE_WIDTH, SCENE_HEIGHT)
    columns, rows = torch.linspace(0, 1, SCENE_WIDTH), torch.linspace(0, 1, SCENE_HEIGHT)
    depth = (3.0 + 27.0 * columns[None, :] ** 2 + 2.0 * rows[:, None] ** 2).expand(1, 1, SCENE_HEIGHT, SCENE_WIDTH)
    transform = pose_vector_to_transform(torch.tensor([[[0.0, 0.01, 0.0]]]), torch.tensor([[[0.3, 0.0, 0.5]]]))[:, 0]
    points = backproject(depth, torch.linalg.inv(intrinsics))
    moved = torch.einsum("bij,bjhw->bihw", transform[:, :3, :3], points) + transform[:, :3, 3, None, None]
    where = project(moved, intrinsics)  # (1, H, W, 2): where each target pixel is in the source
    box = torch.zeros(1, SCENE_HEIGHT, SCENE_WIDTH, dtype=torch.bool)
    box[:, 28:60, 72:120] = True
    where = where + torch.where(box[..., None], torch.tensor([0.0, -4.0]), torch.tensor([0.0, 0.0]))
    source = textured_image(SCENE_HEIGHT, SCENE_WIDTH, seed=9)
    grid = torch.stack([2 * where[..., 0] / (SCENE_WIDTH - 1) - 1, 2 * where[..., 1] / (SCENE_HEIGHT - 1) - 1], dim=-1)
    target = F.grid_sample(source, grid, align_corners=True, padding_mode="border")
    return target, source, box, transform


def test_the_flow_finds_its_own_ego_motion_and_the_box_that_leaves_its_epipolar_line():
    """No ego-motion is given: the essential matrix of the flow recovers the camera's (up to scale), the static
    wall lies on its epipolar lines at every depth, and the box moving across them scores high."""
    target, source, box, truth = _moving_camera_with_a_box_moving_down()
    intrinsics = kitti_like_intrinsics(SCENE_WIDTH, SCENE_HEIGHT)
    flow, valid = dense_flow(target, source)
    found = flow_ego_motion(flow, valid, intrinsics, still=torch.tensor([False]))
    assert torch.allclose(found[0, :3, :3], truth[0, :3, :3], atol=2e-2)  # within about a degree
    direction = truth[0, :3, 3] / truth[0, :3, 3].norm()
    assert float(found[0, :3, 3] @ direction) > 0.95  # the translation's direction (unit length)
    distance = epipolar_line_distance(flow, found, intrinsics)
    inner = valid.clone()
    inner[:, :10], inner[:, -10:], inner[:, :, :10], inner[:, :, -10:] = False, False, False, False
    assert float(distance[inner & ~box].median()) < 0.3
    assert float(distance[inner & box].median()) > 1.0
    score = moving_evidence(target, source, intrinsics, threshold=0.5, window=5)
    core = torch.zeros_like(box)
    core[:, 36:52, 80:112] = True
    assert float(score[core].median()) > 0.7 and float(score[inner & ~box].median()) < 0.3
    # the same frames give the same answer (RANSAC's draws are seeded)
    assert torch.equal(score, moving_evidence(target, source, intrinsics, threshold=0.5, window=5))


def test_the_depth_finds_the_traffic_along_the_heading_that_stays_on_its_epipolar_lines():
    """A camera driving 0.5 m forward (and turning a little) past a smooth scene, with a car driving away faster
    than it and one coming towards it: both stay on their epipolar lines (the line distance is ~0), but neither
    is where a static point at its depth goes. The translation's length is fitted from a unit direction."""
    intrinsics = kitti_like_intrinsics(WIDTH, HEIGHT)
    rows, columns = torch.linspace(0, 1, HEIGHT)[:, None], torch.linspace(0, 1, WIDTH)[None, :]
    depth = (6.0 + 30.0 * (1.0 - rows) + 10.0 * columns).expand(1, 1, HEIGHT, WIDTH).clone()
    away, coming = torch.zeros(HEIGHT, WIDTH, dtype=torch.bool), torch.zeros(HEIGHT, WIDTH, dtype=torch.bool)
    away[8:22, 6:30], coming[28:44, 64:90] = True, True
    depth[0, 0][away | coming] = 10.0
    forward = torch.tensor([[[0.0, 0.0, 0.5]]])
    transform = pose_vector_to_transform(torch.tensor([[[0.0, 0.01, 0.0]]]), forward)[:, 0]
    points = torch.einsum("bij,bjhw->bihw", transform[:, :3, :3], backproject(depth, torch.linalg.inv(intrinsics)))
    # target -> source: a static point is 0.5 m further away in the source camera; the car driving away at 2 m a
    # frame was 1.5 m nearer, the one coming at 2 m a frame 2.5 m further
    own = torch.where(away, -2.0, torch.where(coming, 2.0, 0.0))
    points = points + transform[:, :3, 3, None, None] + torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1) * own
    flow = _flow_of(points, intrinsics)
    valid = torch.ones(1, HEIGHT, WIDTH, dtype=torch.bool)
    unit = transform.clone()
    unit[:, :3, 3] = unit[:, :3, 3] / unit[:, :3, 3].norm()
    assert float(translation_scale(flow, valid, unit, intrinsics, 1.0 / depth)[0]) == pytest.approx(0.5, rel=0.02)
    line = epipolar_line_distance(flow, unit, intrinsics)
    consistency = static_depth_distance(flow, valid, unit, intrinsics, depth)
    distance = consistency.distance(torch.ones(1))
    static = ~torch.nn.functional.max_pool2d((away | coming)[None, None].float(), 9, 1, 4)[0, 0].bool()
    assert torch.equal(consistency.ray, epipolar_ray_distance(flow, unit, intrinsics))
    assert float(line[0].max()) < 0.05 and float(distance[0][static].max()) < 0.05
    assert float(consistency.static_excess[0]) < 0.01  # the static world (most of the frame) is where its depth says
    ray = consistency.ray[0]
    for car in (away, coming):
        core = car & ~torch.nn.functional.max_pool2d((~car)[None, None].float(), 5, 1, 2)[0, 0].bool()
        assert float(distance[0][core].median()) > 1.0
        # driving away faster than the camera follows, a car looks as if behind the camera: beyond where any static
        # point of its pixel can go, which needs no depth; coming closer it stays where a nearer static point would be
        assert (float(ray[core].median()) > 1.0) == (car is away)
    # the scale of the depth does not matter, and a standing camera (no translation) falls back to the line
    assert torch.allclose(static_depth_distance(flow, valid, unit, intrinsics, depth * 7.0).distance(torch.ones(1)),
                          distance, atol=1e-3)
    still = static_depth_distance(flow, valid, torch.eye(4)[None], intrinsics, depth)
    assert not bool(still.excess.any()) and bool(still.static_excess.isnan().all())
    # a depth that does not explain the static world (a poorly trained one) is distrusted from the frames seen so
    # far, and the evidence falls back to the ray distance; one odd frame (say, full of movers) does not decide
    good, wrong = consistency.static_excess, torch.tensor([2.0])
    trust = DepthTrust(frames=3)
    assert float(trust(good, threshold=1.0)[0]) > 0.95
    trust(good, threshold=1.0)
    assert float(trust(wrong, threshold=1.0)[0]) > 0.95
    trust(wrong, threshold=1.0)
    assert float(trust(good, threshold=1.0)[0]) == 0.0  # two of the last three were wrong
    assert float(DepthTrust()(still.static_excess, threshold=1.0)[0]) == 0.0  # nothing seen: not trusted


def test_the_evidence_knows_where_it_cannot_see_a_mover_that_keeps_to_its_epipolar_line():
    """A camera driving 0.5 m straight on: how far a static point at the pixel's depth moves is the evidence's sight.
    Around the focus of expansion and far away it is under the threshold: a car ahead at the camera's speed looks
    like the static world there. Near the camera, off the centre, it sees. A standing camera shows every motion
    whole, and a distrusted depth says nothing about where the evidence is blind."""
    intrinsics = kitti_like_intrinsics(WIDTH, HEIGHT)
    rows = torch.linspace(0, 1, HEIGHT)[:, None].expand(HEIGHT, WIDTH)
    depth = (4.0 + 60.0 * (1.0 - rows)).expand(1, 1, HEIGHT, WIDTH).clone()  # far at the top, near at the bottom
    points = backproject(depth, torch.linalg.inv(intrinsics)) + torch.tensor([0.0, 0.0, 0.5]).view(1, 3, 1, 1)
    flow = _flow_of(points, intrinsics)
    valid = torch.ones(1, HEIGHT, WIDTH, dtype=torch.bool)
    forward = torch.eye(4)[None].clone()
    forward[0, 2, 3] = 1.0  # the direction; its length is fitted
    consistency = static_depth_distance(flow, valid, forward, intrinsics, depth)
    assert torch.allclose(consistency.parallax, flow.norm(dim=1), atol=1e-3)  # no rotation: the flow is parallax
    sight = consistency.sight(torch.ones(1), threshold=1.0)
    centre_row, centre_column = HEIGHT // 2, WIDTH // 2
    assert float(sight[0, centre_row - 2:centre_row + 2, centre_column - 2:centre_column + 2].max()) < 0.2
    assert float(sight[0, :4].mean()) < 0.5  # far away
    assert float(sight[0, -6:, :12].min()) == 1.0 and float(sight[0, -6:, -12:].min()) == 1.0  # near, at the sides
    assert torch.equal(consistency.sight(torch.zeros(1), threshold=1.0), torch.ones_like(sight))  # depth not believed
    standing = static_depth_distance(flow, valid, torch.eye(4)[None], intrinsics, depth)
    assert torch.equal(standing.sight(torch.ones(1), threshold=1.0), torch.ones_like(sight))


def test_with_the_depth_the_evidence_finds_a_car_driving_ahead_at_the_cameras_speed():
    """The inference evidence from two rendered frames (DIS flow, the flow's own ego-motion): a box that keeps its
    distance ahead of the camera moves in the image as a static point infinitely far would, on its epipolar line,
    so only the depth finds it."""
    import torch.nn.functional as F

    intrinsics = kitti_like_intrinsics(SCENE_WIDTH, SCENE_HEIGHT)
    columns, rows = torch.linspace(0, 1, SCENE_WIDTH), torch.linspace(0, 1, SCENE_HEIGHT)
    depth = (3.0 + 27.0 * columns[None, :] ** 2 + 2.0 * rows[:, None] ** 2).expand(1, 1, SCENE_HEIGHT, SCENE_WIDTH)
    transform = pose_vector_to_transform(torch.tensor([[[0.0, 0.01, 0.0]]]), torch.tensor([[[0.3, 0.0, 0.5]]]))[:, 0]
    box = torch.zeros(1, SCENE_HEIGHT, SCENE_WIDTH, dtype=torch.bool)
    box[:, 28:60, 24:72] = True
    points = torch.einsum("bij,bjhw->bihw", transform[:, :3, :3], backproject(depth, torch.linalg.inv(intrinsics)))
    # the box drives ahead of the camera at its speed (a lead car): it keeps its distance, and its image only turns
    # with the camera, as if it were infinitely far (0 t instead of + t)
    points = points + torch.where(box[:, None], 0.0, 1.0) * transform[:, :3, 3, None, None]
    where = project(points, intrinsics)
    source = textured_image(SCENE_HEIGHT, SCENE_WIDTH, seed=9)
    grid = torch.stack([2 * where[..., 0] / (SCENE_WIDTH - 1) - 1, 2 * where[..., 1] / (SCENE_HEIGHT - 1) - 1], dim=-1)
    target = F.grid_sample(source, grid, align_corners=True, padding_mode="border")
    core = torch.zeros_like(box)
    core[:, 34:54, 30:66] = True
    inner = torch.zeros_like(box)
    inner[:, 10:-10, 10:-10] = True
    with_depth = moving_evidence(target, source, intrinsics, threshold=0.5, window=5, depth=depth)
    without = moving_evidence(target, source, intrinsics, threshold=0.5, window=5)
    assert float(with_depth[core].median()) > 0.7 and float(without[core].median()) < 0.3
    assert float(with_depth[inner & ~box].median()) < 0.2


def test_the_predictor_weighs_the_masks_with_the_evidence_and_finds_a_box_an_untrained_model_misses(tmp_path):
    """An untrained K=2 model has no idea what moves; the flow evidence does, and the moving probability the
    node publishes weighs both (MASK_SHARE of the masks'; False: the masks alone, the paper's)."""
    import numpy as np

    from mds_core.checkpoint import write_untrained_checkpoint
    from mds_core.config import ModelConfig
    from mds_core.evaluation.motion_segmentation import MotionSegmentationEvaluator
    from mds_core.inference.predictor import MASK_SHARE, Predictor

    height, width = 64, 96
    wall = textured_image(height, width, seed=7)
    box_texture = textured_image(20, 24, seed=8)
    previous, current = wall.clone(), wall.clone()
    previous[..., 20:40, 30:54] = box_texture
    current[..., 20:40, 34:58] = box_texture
    labels = np.zeros((height, width), np.uint8)
    labels[20:40, 34:58] = 1
    as_rgb = lambda image: (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    intrinsics = kitti_like_intrinsics(width, height)[0].numpy()
    path = write_untrained_checkpoint(tmp_path / "m.pt", ModelConfig(width=width, height=height, num_components=2,
                                                                     depth_encoder="resnet18",
                                                                     pose_mask_encoder="resnet18"))
    fused = Predictor.from_checkpoint(path, device="cpu").predict(as_rgb(current), intrinsics, as_rgb(previous))
    masks = Predictor.from_checkpoint(path, device="cpu", motion_evidence=False).predict(
        as_rgb(current), intrinsics, as_rgb(previous))
    assert masks.motion_evidence is None and np.array_equal(masks.moving_probability, masks.mask_moving_probability)
    assert np.allclose(fused.mask_moving_probability, masks.mask_moving_probability, atol=1e-6)
    # the masks and the evidence weighed where the frames see, beyond it the masks; a standing camera sees everything
    sight = fused.evidence_sight
    assert sight.shape == fused.motion_evidence.shape and np.all(sight == 1.0)
    weighed = MASK_SHARE * fused.mask_moving_probability + (1 - MASK_SHARE) * fused.motion_evidence
    assert np.allclose(fused.moving_probability, sight * weighed + (1 - sight) * fused.mask_moving_probability,
                       atol=1e-6)

    def average_precision(score: np.ndarray) -> float:
        evaluator = MotionSegmentationEvaluator()
        evaluator.add(score, labels)
        return evaluator.result().average_precision

    assert average_precision(fused.moving_probability) > 0.8 > average_precision(masks.moving_probability) + 0.3


def test_assignment_sends_the_moving_pixels_to_the_best_non_background_component():
    from mds_core.method.losses.component_assignment import assignment_targets

    errors = torch.tensor([[[[0.10, 0.10, 0.10]], [[0.10, 0.30, 0.12]], [[0.10, 0.20, 0.11]]]])  # (1, K=3, 1, 3)
    assert assignment_targets(errors, margin=0.02).tolist() == [[[0, 0, 0]]]
    moving = torch.tensor([[[True, True, False]]])
    assert assignment_targets(errors, margin=0.02, moving=moving).tolist() == [[[1, 2, 0]]]


def test_static_pixels_go_to_the_background_and_the_evidence_of_several_sources_combines():
    from mds_core.method.losses.component_assignment import assignment_targets
    from mds_core.method.motion_evidence import MotionEvidence

    errors = torch.tensor([[[[0.30, 0.30, 0.30]], [[0.10, 0.10, 0.35]], [[0.20, 0.20, 0.20]]]])  # (1, K=3, 1, 3)
    assert assignment_targets(errors, margin=0.02).tolist() == [[[1, 1, 2]]]
    static = torch.tensor([[[True, False, False]]])
    # a component that explains a known static pixel better (it learned to stand still too) does not take it
    assert assignment_targets(errors, margin=0.02, static=static).tolist() == [[[0, 1, 2]]]
    one = MotionEvidence(moving=torch.tensor([[[True, False, False]]]), static=torch.tensor([[[False, True, True]]]),
                         still=torch.tensor([True]))
    other = MotionEvidence(moving=torch.tensor([[[False, False, True]]]), static=torch.tensor([[[False, True, False]]]),
                           still=torch.tensor([False]))
    both = MotionEvidence.across_sources([one, other])
    assert both.moving.tolist() == [[[True, False, True]]] and both.static.tolist() == [[[False, True, False]]]
    assert both.still.tolist() == [False]


def test_the_standing_camera_term_pulls_the_ego_motion_to_the_identity_on_standing_frames_only():
    from mds_core.method.losses.component_assignment import standing_camera

    translation = torch.tensor([[[0.003, 0.0, 0.004]], [[0.0, 0.0, 0.5]]], requires_grad=True)  # (B=2, 1, 3)
    transforms = pose_vector_to_transform(torch.zeros(2, 1, 3), translation)[:, 0][None]  # (S=1, B=2, 4, 4)
    still = torch.tensor([True, False])
    value = standing_camera(transforms, still, scale=0.01)
    assert float(value.detach()) == pytest.approx(0.005 / 0.01, rel=1e-5)  # |t| of the standing frame, in decoder units
    value.backward()
    assert float(translation.grad[0].norm()) > 0 and float(translation.grad[1].abs().sum()) == 0.0
    rotated = pose_vector_to_transform(torch.tensor([[[0.0, 0.02, 0.0]]]), torch.zeros(1, 1, 3))[:, 0][None]
    assert float(standing_camera(rotated, torch.tensor([True]), 1.0)) > 0.02  # a turn on the spot is not standing
    assert float(standing_camera(transforms, torch.tensor([False, False]), 0.01)) == 0.0


def test_the_training_data_set_gives_each_sample_the_flow_the_evidence_would_compute_and_keeps_it(tmp_path):
    from mds_core.data.factory import build_dataset
    from mds_core.data.sample import collate_samples
    from mds_core.method.losses import SelfSupervisedObjective
    from mds_core.training.distributed import DistributedContext
    from mds_core.training.loop import build_training_state

    config = tiny_config(make_sequences(tmp_path / "data", count=1, frames=5), tmp_path / "run")
    config.data.augmentation.flip_probability = 1.0  # every sample mirrored: the flow is the mirrored frames'
    dataset = build_dataset(config.data, config.model, training=True)
    assert dataset[0].optical_flow is None  # only for a loss that needs it
    dataset.compute_optical_flow()
    samples = [dataset[i] for i in range(len(dataset))]
    for sample in samples:
        target, sources = sample.images[:1], sample.images[1:]
        flow, valid = dense_flow(target.expand_as(sources), sources)
        assert torch.equal(sample.optical_flow.flow, flow) and torch.equal(sample.optical_flow.valid, valid)
    assert dataset[0].optical_flow is samples[0].optical_flow  # kept: the next epoch computes nothing
    assert len(dataset.flow_cache) == len(dataset)
    dataset.compute_optical_flow(cache_megabytes=0)
    dataset[0]
    assert len(dataset.flow_cache) == 0  # beyond the budget it is computed each time

    # the loss is the same whether the batch brings the flow or the evidence computes it
    objective = SelfSupervisedObjective(config.loss, config.model)
    assert objective.needs_optical_flow
    state = build_training_state(config, torch.device("cpu"), DistributedContext())
    batch = collate_samples(samples[:2])
    assert batch.optical_flow.flow.shape == (2, 2, 2, *batch.target.shape[-2:])
    with torch.no_grad():
        output = state.network(batch.network_images, config.data.source_offsets)
        torch.manual_seed(0)  # the auto-masking's noise
        given = objective(batch, output)
        batch.optical_flow = None
        torch.manual_seed(0)
        computed = objective(batch, output)
    assert given.evidence_fraction > 0
    assert torch.equal(given.total, computed.total) and torch.equal(given.evidence_fraction, computed.evidence_fraction)


def test_training_computes_each_samples_flow_once_in_the_data_set_and_never_in_the_step(tmp_path, monkeypatch):
    import mds_core.data.dataset as dataset_module
    import mds_core.method.motion_evidence as evidence_module
    from mds_core.training.loop import train

    calls = {"data set": 0, "step": 0}

    def counted(where, compute):
        def wrapper(*args):
            calls[where] += 1
            return compute(*args)
        return wrapper

    monkeypatch.setattr(dataset_module, "dense_flow", counted("data set", dense_flow))
    monkeypatch.setattr(evidence_module, "dense_flow", counted("step", dense_flow))
    config = tiny_config(make_sequences(tmp_path / "data", count=1, frames=6), tmp_path / "run", epochs=3, lr_decay_epochs=1)
    config.data.augmentation.enabled = False
    result = train(config)
    assert result.steps == 6  # 4 samples, batch 2, three epochs
    assert calls == {"data set": 4, "step": 0}


def test_colour_guided_fill_gives_an_untrusted_pixel_the_say_of_trusted_pixels_of_its_colour():
    """A grey car (its untextured body untrusted, its trusted rim moving) on a green verge (trusted, static) with
    an untrusted strip of verge beside the car that the car uncovered: the body takes the rim's say, the strip the
    verge's; an untrusted pixel with no trusted pixel of its colour near stays undecided."""
    height, width = 24, 40
    image = torch.zeros(1, 3, height, width)
    image[:, 1] = 0.6  # green verge
    car = torch.zeros(1, height, width, dtype=torch.bool)
    car[:, 8:16, 10:24] = True
    image[:, :, 8:16, 10:24] = 0.5  # grey car
    body = torch.zeros_like(car)
    body[:, 9:15, 11:23] = True
    strip = torch.zeros_like(car)
    strip[:, 8:16, 24:27] = True
    lone = torch.zeros_like(car)
    lone[:, 2, 34] = True
    image[:, :, 2, 34] = torch.tensor([0.9, 0.1, 0.1])  # a red pixel: no trusted pixel has its colour
    score = torch.where(car, torch.tensor(0.9), torch.tensor(0.05))
    reliable = ~(body | strip | lone)
    undecided = ~reliable
    filled = colour_guided_fill(score, reliable, image, undecided)
    assert torch.equal(filled[reliable], score[reliable])  # trusted pixels keep their score
    assert float(filled[body].min()) > 0.8  # the car's say, a little towards undecided in its middle
    assert float(filled[strip].max()) < 0.15
    assert float(filled[lone]) == pytest.approx(UNDECIDED, abs=1e-6)
    # without the colour, the strip would take the car's rim's say too: the colour is what keeps them apart
    grey = torch.full_like(image, 0.5)
    assert float(colour_guided_fill(score, reliable, grey, undecided)[strip].max()) > 0.3


def test_the_flow_chained_over_three_frame_pairs_follows_a_pan_as_one_flow_would():
    """A camera panning 1 px a frame: chained pair by pair, the flow from the newest frame to three frames back is
    3 px; a pair that does not continue the stream starts a new chain."""
    image = textured_image(HEIGHT, WIDTH + 12, seed=5)
    frames = [image[..., a:a + WIDTH] for a in (2, 3, 4, 5)]  # frame t shows the image from column a_t
    chain = FlowChain(frames=3)
    for previous, current in zip(frames, frames[1:]):
        flows = chain.extend(current, previous, *dense_flow(current, previous))
    assert len(flows) == 3
    interior = (slice(None), slice(8, -8), slice(8, -8))
    for back, (flow, valid) in enumerate(flows, start=1):  # a point at x in frame t was at x + back in frame t - back
        assert float((flow[:, 0] - back)[interior].abs().median()) < 0.25
        assert float(flow[:, 1][interior].abs().median()) < 0.25
        assert float(valid[interior].float().mean()) > 0.9
        assert not bool(valid[:, :, -back:].any())  # the right columns came from outside the earlier frame
    direct, _ = dense_flow(frames[3], frames[0])
    assert float((flows[2][0] - direct).abs().amax(dim=1)[interior].median()) < 0.25
    restarted = chain.extend(frames[3], frames[0], *dense_flow(frames[3], frames[0]))  # frame 0 is not the last target
    assert len(restarted) == 1 and torch.equal(restarted[0][0], direct)
    with pytest.raises(ValueError, match="at least one frame pair"):
        FlowChain(frames=0)


def test_a_stream_sees_a_mover_too_slow_for_one_frame_pair():
    """A box creeping 1 px a frame in front of a standing camera, against a 2 px threshold: the pair alone says
    little, the stream's three frames back say more; the wall stays static either way."""
    frames, box = _still_camera_frames_with_a_box([30, 31, 32, 33])
    intrinsics = kitti_like_intrinsics(WIDTH, HEIGHT)
    stream = EvidenceStream()
    for previous, current in zip(frames, frames[1:]):
        streamed = moving_evidence(current, previous, intrinsics, threshold=2.0, window=5, stream=stream)
    pair = moving_evidence(frames[3], frames[2], intrinsics, threshold=2.0, window=5)
    core = torch.zeros_like(box)
    core[:, 19:29, 38:54] = True
    assert float(pair[core].median()) < 0.35  # 1 px against 2: 1 - 2^-0.5 = 0.29
    assert float(streamed[core].median()) > float(pair[core].median()) + 0.04  # (0.29 + 1 - 2^-(3/4)) / 2 = 0.35
    near_box = torch.nn.functional.max_pool2d(box[:, None].float(), 13, 1, 6)[:, 0].bool()
    assert float(streamed[~near_box].median()) < 0.1 and float(pair[~near_box].median()) < 0.1
    # the first pair of a stream is the pair alone
    assert torch.equal(moving_evidence(frames[1], frames[0], intrinsics, 2.0, 5, stream=EvidenceStream()),
                       moving_evidence(frames[1], frames[0], intrinsics, 2.0, 5))


def test_a_box_entering_the_view_is_not_taken_for_static_where_its_flow_leaves_the_image():
    """A box driving into the view from the right border, 4 px a frame, the camera standing: the strip of it that was
    outside the previous frame has no flow to trust; it takes the say of the box around it, not 'static'."""
    frames, box = _still_camera_frames_with_a_box([WIDTH - 8, WIDTH - 12])
    score = moving_evidence(frames[1], frames[0], kitti_like_intrinsics(WIDTH, HEIGHT), threshold=1.0, window=5)
    entering = torch.zeros_like(box)
    entering[:, 19:29, WIDTH - 4:] = True  # outside the image in the previous frame
    assert float(score[entering].median()) >= UNDECIDED - 0.01  # no trusted pixel of its colour: undecided (was 0)
    near_box = torch.nn.functional.max_pool2d(box[:, None].float(), 13, 1, 6)[:, 0].bool()
    assert float(score[~near_box].median()) < 0.1
