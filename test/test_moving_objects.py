"""Moving objects from a prediction (centroid and own velocity), the node's markers of them, and the
REP 105 base frame of the odometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ros_support import message_differences

from mds_core.evaluation.odometry import OdometryChain
from mds_core.inference.moving_objects import MovingObject, moving_objects, moving_regions
from mds_core.inference.predictor import Prediction

H, W = 40, 60
K_MATRIX = np.array([[50.0, 0.0, 30.0], [0.0, 50.0, 20.0], [0.0, 0.0, 1.0]])


def rigid(yaw: float = 0.0, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    """A rotation about the camera's y axis (a turn of a forward-looking camera) and a translation."""
    transform = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    transform[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    transform[:3, 3] = translation
    return transform


def translation(vector) -> np.ndarray:
    return rigid(0.0, vector)


def back_projected(depth: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.stack([(u - 30.0) / 50.0 * depth, (v - 20.0) / 50.0 * depth, depth], axis=-1)


def components_prediction() -> tuple[Prediction, np.ndarray]:
    """Background (0), a car (1) driving on its own, a speck (2) too small to count; the camera turns and
    drives forward. Returns the prediction and the car's displacement in the previous camera frame."""
    depth = np.full((H, W), 10.0, np.float32)
    depth[10:20, 20:40] = 5.0  # the car
    labels = np.zeros((H, W), np.uint8)
    labels[10:20, 20:40] = 1
    labels[30:33, 5:8] = 2  # 9 pixels
    ego = rigid(0.05, (0.0, 0.0, -1.0))  # points move 1 unit closer and turn: X_t = E X_t-1
    displacement = np.array([0.3, 0.0, 0.8])  # the car's own motion, previous camera frame
    car = ego @ translation(displacement)  # it moved, then the camera moved
    transforms = np.stack([ego, car, rigid(0.0, (5.0, 0.0, 0.0))])
    masks = np.stack([labels == k for k in range(3)]).astype(np.float32)
    prediction = Prediction(depth=depth, disparity=1.0 / depth, intrinsics=K_MATRIX, masks=masks, labels=labels,
                            transforms=transforms, background=0, moving_probability=1.0 - masks[0], ego_motion=ego)
    return prediction, displacement


def test_a_components_own_velocity_is_its_motion_with_the_cameras_removed():
    prediction, displacement = components_prediction()
    objects = moving_objects(prediction, seconds=0.1, scale=2.0, min_pixels=20)
    assert [(obj.id, obj.component) for obj in objects] == [(1, 1)]  # not the background, not the 9-pixel speck
    car = objects[0]
    assert car.mask.sum() == 200 and car.mask[10:20, 20:40].all()
    expected_velocity = rigid(0.05)[:3, :3] @ displacement * 2.0 / 0.1  # seen in the current camera frame
    np.testing.assert_allclose(car.velocity, expected_velocity, atol=1e-9)
    assert car.speed == pytest.approx(np.linalg.norm(displacement) * 20.0)
    v, u = np.mgrid[10:20, 20:40]
    np.testing.assert_allclose(car.centroid, np.median(back_projected(np.full(u.shape, 10.0), u, v).reshape(-1, 3),
                                                       axis=0))
    assert car.pixels == 200
    # a component that moves like the background has no own motion
    prediction.transforms[1] = prediction.transforms[0]
    assert moving_objects(prediction, 0.1)[0].speed == pytest.approx(0.0, abs=1e-9)


def test_objects_are_regions_of_moving_probability_that_move_with_their_main_component():
    prediction, displacement = components_prediction()
    # the car's pixels are shared: component 1 holds 60% of their mass, component 2 30%, the background 10%
    masks = prediction.masks.copy()
    masks[:, 10:20, 20:40] = np.array([0.1, 0.6, 0.3], np.float32)[:, None, None]
    prediction.masks, prediction.moving_probability = masks, 1.0 - masks[0]
    prediction.labels = masks.argmax(axis=0).astype(np.uint8)
    objects = moving_objects(prediction, seconds=0.1, threshold=0.5)
    assert [(obj.component, obj.pixels) for obj in objects] == [(1, 200)]
    np.testing.assert_allclose(objects[0].velocity, rigid(0.05)[:3, :3] @ displacement / 0.1, atol=1e-9)
    # below the threshold nothing is shown, whatever the argmax says
    assert moving_objects(prediction, seconds=0.1, threshold=0.95) == []
    # two separate moving regions are two objects, even of one component
    masks[:, 25:35, 40:50] = np.array([0.0, 1.0, 0.0], np.float32)[:, None, None]
    prediction.moving_probability = 1.0 - masks[0]
    objects = moving_objects(prediction, seconds=0.1, threshold=0.5)
    assert [(obj.id, obj.component, obj.pixels) for obj in objects] == [(1, 1, 200), (2, 1, 100)]


def test_no_objects_without_masks_time_or_units():
    prediction, _ = components_prediction()
    assert moving_objects(prediction, 0.0) == []
    assert moving_objects(prediction, 0.1, scale=float("nan")) == []
    alone = Prediction(depth=prediction.depth, disparity=prediction.disparity, intrinsics=K_MATRIX)
    assert moving_objects(alone, 0.1) == []


def test_scene_flow_objects_are_the_connected_moving_regions():
    depth = np.full((H, W), 8.0, np.float32)
    labels = np.zeros((H, W), np.uint8)
    flow = np.zeros((3, H, W), np.float32)
    labels[5:15, 5:15] = 1
    flow[:, 5:15, 5:15] = np.array([0.1, 0.0, 0.2], np.float32)[:, None, None]
    labels[25:35, 40:55] = 1
    flow[:, 25:35, 40:55] = np.array([-0.3, 0.0, 0.0], np.float32)[:, None, None]
    labels[0, 59] = 1  # a lone pixel: noise
    prediction = Prediction(depth=depth, disparity=1.0 / depth, intrinsics=K_MATRIX,
                            masks=np.stack([labels == 0, labels == 1]).astype(np.float32), labels=labels,
                            moving_probability=labels.astype(np.float32), transforms=np.eye(4)[None], background=0,
                            independent_flow=flow, ego_motion=np.eye(4))
    objects = moving_objects(prediction, seconds=0.5, scale=3.0, min_pixels=20)
    assert sorted(obj.pixels for obj in objects) == [100, 150]
    assert {obj.component for obj in objects} == {1}
    by_size = {obj.pixels: obj for obj in objects}
    np.testing.assert_allclose(by_size[100].velocity, [0.6, 0.0, 1.2], atol=1e-6)
    np.testing.assert_allclose(by_size[150].velocity, [-1.8, 0.0, 0.0], atol=1e-6)
    assert by_size[150].centroid[2] == pytest.approx(24.0)  # depth 8 times the scale


def test_markers_clear_then_show_an_arrow_and_a_speed_per_object():
    pytest.importorskip("visualization_msgs")
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from mds_ros.outputs import component_markers

    prediction, _ = components_prediction()
    objects = moving_objects(prediction, 0.1)
    header = Header(frame_id="camera_optical_frame")
    header.stamp.sec = 3
    markers = component_markers(objects, header, "m/s", 3).markers
    assert [m.action for m in markers] == [Marker.DELETEALL, Marker.ADD, Marker.ADD]
    arrow, text = markers[1], markers[2]
    assert (arrow.type, arrow.id, text.type, text.id) == (Marker.ARROW, 2, Marker.TEXT_VIEW_FACING, 3)
    assert all(m.header.frame_id == "camera_optical_frame" and m.header.stamp.sec == 3 for m in markers)
    start, end = arrow.points
    np.testing.assert_allclose([start.x, start.y, start.z], objects[0].centroid)
    np.testing.assert_allclose([end.x - start.x, end.y - start.y, end.z - start.z], objects[0].velocity)
    assert text.text == f"{objects[0].speed:.1f} m/s" and arrow.scale.x > 0 and text.scale.z > 0
    assert [m.action for m in component_markers([], header, "m/s", 3).markers] == [Marker.DELETEALL]


def test_markers_written_into_kept_ones_are_those_built_anew():
    """The node fills the markers of earlier frames in again: two objects, then one, then two."""
    pytest.importorskip("visualization_msgs")
    from std_msgs.msg import Header

    from mds_ros.outputs import component_markers

    prediction, _ = components_prediction()
    car = moving_objects(prediction, 0.1)[0]
    other = MovingObject(2, car.centroid + 1.0, -car.velocity, 30, 2, car.mask)
    kept = []
    for second, objects in enumerate([[car, other], [other], [car, other]]):
        header = Header(frame_id=f"camera_{second}")
        header.stamp.sec = second
        message = component_markers(objects, header, "m/s", 3, kept)
        assert len(kept) == 5 and all(a is b for a, b in zip(message.markers, kept))
        assert not message_differences(message, component_markers(objects, header, "m/s", 3))


def test_moving_regions_are_the_connected_regions_large_enough():
    """Both ways of counting region sizes (a few regions one by one, many by a histogram) agree."""
    for squares in (3, 14):
        probability = np.zeros((40, 120), np.float32)
        expected = []
        for k in range(squares):
            side = 5 if k % 2 == 0 else 4  # 25 pixels count, 16 do not
            row, col = 2 + 10 * (k // 14 % 4), 2 + 8 * (k % 14)
            probability[row:row + side, col:col + side] = 0.9
            if side == 5:
                expected.append((row, col))
        regions = moving_regions(probability, 0.5, min_pixels=20)
        assert len(regions) == len(expected), squares
        for region, (row, col) in zip(regions, expected):
            assert region.sum() == 25 and region[row:row + 5, col:col + 5].all()


def test_the_odometry_in_a_base_frame_follows_the_mounting():
    pytest.importorskip("geometry_msgs")
    from builtin_interfaces.msg import Time

    from mds_ros.frames import OPTICAL_IN_BASE, OdometryFrames, transform_from_xyz_rpy

    # the default mounting: optical z (forward) is the base's x, optical x (right) its -y, optical y (down) its -z
    rotation = transform_from_xyz_rpy(OPTICAL_IN_BASE)[:3, :3]
    np.testing.assert_allclose(rotation, [[0, 0, 1], [-1, 0, 0], [0, -1, 0]], atol=1e-12)
    frames = OdometryFrames("odom", "base_link", OPTICAL_IN_BASE)
    assert frames.child("camera_optical_frame") == "base_link"
    step = OdometryChain().add(frames.motion(translation((0.0, 0.0, -1.5))), 0.1)  # the camera drives forward
    np.testing.assert_allclose(step.pose[:3, 3], [1.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(step.linear, [15.0, 0.0, 0.0], atol=1e-9)

    # a camera 2 m ahead of the base: when the base turns in place by 0.1 rad, the camera swings sideways;
    # reported in the base frame the motion is the pure turn
    mounting = (2.0, 0.0, 1.2, *OPTICAL_IN_BASE[3:])
    frames = OdometryFrames("odom", "base_link", mounting)
    base_turn = transform_from_xyz_rpy((0, 0, 0, 0, 0, 0.1))  # the base's new pose in the old one
    camera_motion = np.linalg.inv(frames.base_from_camera) @ np.linalg.inv(base_turn) @ frames.base_from_camera
    step = OdometryChain().add(frames.motion(camera_motion), 1.0)
    np.testing.assert_allclose(step.pose, base_turn, atol=1e-12)
    np.testing.assert_allclose(step.angular, [0.0, 0.0, 0.1], atol=1e-12)
    # without a base frame the camera's own motion is reported
    camera = OdometryFrames("odom", "", mounting)
    assert camera.child("camera_optical_frame") == "camera_optical_frame" and camera.camera_tf(Time(), "c") is None
    np.testing.assert_allclose(camera.motion(camera_motion), camera_motion)
    static = frames.camera_tf(Time(), "camera_optical_frame")
    assert (static.header.frame_id, static.child_frame_id) == ("base_link", "camera_optical_frame")
    assert (static.transform.translation.x, static.transform.translation.z) == (2.0, 1.2)


def test_object_scores_count_shown_objects_on_moving_pixels_and_the_moving_objects_found():
    from mds_core.evaluation.object_scores import ObjectScoreEvaluator

    # labels at twice the model's resolution: two moving cars, a parked car (2), an ignored band (255)
    labels = np.zeros((2 * H, 2 * W), np.uint8)
    labels[20:40, 40:80] = 1  # car A, 800 px
    labels[60:70, 90:110] = 1  # car B, 200 px
    labels[0:10, 0:30] = 2
    labels[76:80, :] = 255
    probability = np.zeros((H, W), np.float32)
    probability[10:20, 20:40] = 0.9  # on car A: 200 model px = 800 labelled px
    probability[0:5, 0:15] = 0.8  # on the parked car: 75 px
    probability[30:32, 45:50] = 0.9  # on car B, but 10 px: too small to be shown
    prediction = Prediction(depth=np.full((H, W), 5.0, np.float32), disparity=np.full((H, W), 0.2, np.float32),
                            intrinsics=K_MATRIX, masks=np.stack([1.0 - probability, probability]),
                            labels=(probability > 0.5).astype(np.uint8), transforms=np.stack([np.eye(4)] * 2),
                            background=0, moving_probability=probability, ego_motion=np.eye(4))
    evaluator = ObjectScoreEvaluator(threshold=0.3, min_pixels=20)
    evaluator.add(moving_objects(prediction, 1.0, min_pixels=20, threshold=0.3), labels, (H, W))
    scores = evaluator.result()
    assert (scores.shown, scores.on_moving, scores.moving, scores.found, scores.images) == (2, 1, 2, 1, 1)
    assert scores.precision == 0.5 and scores.recall == 0.5
    # a frame without any moving pixel adds nothing but the image
    evaluator.add([], np.zeros((2 * H, 2 * W), np.uint8), (H, W))
    assert (evaluator.result().moving, evaluator.result().images) == (2, 2)
