"""The generator's intersection: traffic across the camera's heading, pedestrians, cyclists, a camera
that stops. What a robot at a crossing sees, with exact ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mds_core.cli.main import main
from mds_core.evaluation.situations import CATEGORY_OF_KIND
from mds_core.tools.synth import MOTION_MOVING, Scene, SynthConfig, generate_sequence
from mds_core.tools.synth.scene import (
    CROSSWALK,
    KIND_CROSSING,
    KIND_CYCLIST,
    KIND_PEDESTRIAN,
    KIND_SAME_SPEED,
)

TRAFFIC = dict(num_crossing=3, num_pedestrians=4, num_cyclists=1)


def velocity(scene: Scene, obj, t: float, dt: float = 0.05) -> np.ndarray:
    return (scene.object_pose(obj, t + dt)[:3, 3] - scene.object_pose(obj, t)[:3, 3]) / dt


def test_the_intersection_adds_traffic_and_changes_nothing_else():
    """Options off, a seed's scene is the one it always was; on, the road's traffic and the camera stay
    the same and only the buildings and poles on the side street give way."""
    plain = Scene(SynthConfig(seed=5, num_frames=40))
    busy = Scene(SynthConfig(seed=5, num_frames=40, **TRAFFIC))
    assert plain.intersection is None and busy.intersection is not None
    along = [o for o in busy.objects if CATEGORY_OF_KIND.get(o.kind, "along_road") == "along_road"]  # and parked
    assert [(o.object_id, o.kind) for o in along] == [(o.object_id, o.kind) for o in plain.objects]
    for before, after in zip(plain.objects, along):
        np.testing.assert_array_equal(plain.object_pose(before, 2.0), busy.object_pose(after, 2.0))
    np.testing.assert_array_equal(plain.camera_pose(2.0), busy.camera_pose(2.0))
    kept = {tuple(c) for c in busy.static.centres}
    assert kept < {tuple(c) for c in plain.static.centres}
    removed = np.array([c for c in plain.static.centres if tuple(c) not in kept])
    stations, _ = plain.road.project(removed[:, :2], np.full(len(removed), busy.intersection.station))
    assert (np.abs(stations - busy.intersection.station) < 40.0).all()  # the buildings on the side street only
    counts = {kind: sum(o.kind == kind for o in busy.objects) for kind in (KIND_CROSSING, KIND_PEDESTRIAN, KIND_CYCLIST)}
    assert counts == {KIND_CROSSING: 3, KIND_PEDESTRIAN: 4, KIND_CYCLIST: 1}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crossing_traffic_moves_across_the_road_at_its_speed(seed):
    scene = Scene(SynthConfig(seed=seed, num_frames=60, **TRAFFIC))
    crossing = [o for o in scene.objects if o.crosses]
    assert {o.kind for o in crossing} >= {KIND_CROSSING, KIND_CYCLIST}
    for obj in crossing:
        v = velocity(scene, obj, 1.0)
        _, theta = scene.road.frame(np.array(obj.s0), 0.0)
        tangent = np.array([np.cos(theta), np.sin(theta), 0.0])
        assert abs(v @ tangent) < 1e-6 * np.linalg.norm(v)  # across the road
        heading = scene.object_pose(obj, 1.0)[:3, 0]  # the box's x axis: its direction of travel
        np.testing.assert_allclose(heading, v / np.linalg.norm(v), atol=1e-9)
        low, high = {KIND_CROSSING: (3.0, 12.0), KIND_CYCLIST: (4.0, 7.0), KIND_PEDESTRIAN: (1.0, 1.8)}[obj.kind]
        assert low <= np.linalg.norm(v) <= high
    walkers = [o for o in scene.objects if o.kind == KIND_PEDESTRIAN and not o.crosses]
    for obj in walkers:  # along a kerb, on the sidewalk
        assert 10.0 < abs(obj.lane) < 12.0 and 1.0 <= abs(obj.speed) <= 1.8


def test_crossing_traffic_and_pedestrians_are_in_view():
    frames = list(generate_sequence(SynthConfig(width=192, height=64, num_frames=30, seed=3, **TRAFFIC)))
    seen = set()
    for frame in frames:
        ids = np.unique(frame.instance[frame.motion == MOTION_MOVING])
        seen |= {frame.object_kinds[int(i)] for i in ids if i}
    assert {KIND_CROSSING, KIND_PEDESTRIAN} <= seen


def test_a_stopping_drive_stands_still_before_the_crosswalk():
    config = SynthConfig(width=96, height=32, num_frames=70, seed=4, camera_stop_probability=1.0, camera_stop_seconds=2.0,
                         **TRAFFIC)
    scene = Scene(config)
    assert scene.intersection.camera_stops
    assert not any(o.kind == KIND_SAME_SPEED for o in scene.objects)  # first at the stop line
    times = np.arange(config.num_frames) / config.fps
    positions = np.array([scene.camera_pose(t)[:3, 3] for t in times])
    speeds = np.linalg.norm(np.diff(positions, axis=0), axis=1) * config.fps
    still = speeds == 0.0
    assert 19 <= still.sum() <= 21  # 2 s at 10 Hz, exactly still (no rocking either)
    assert np.ptp(np.flatnonzero(still)) == still.sum() - 1  # in one stretch
    assert speeds[0] > 5.0 and speeds[-1] > 0.5  # it drove, braked, stood and started again
    assert np.abs(np.diff(speeds)).max() < 1.0  # smoothly: under 10 m/s^2
    standing = float(scene.camera_station(times[np.flatnonzero(still)[0]]))
    assert standing < scene.intersection.station + CROSSWALK - 1.0  # before the crosswalk
    frames = list(generate_sequence(config))
    a, b = frames[np.flatnonzero(still)[3]], frames[np.flatnonzero(still)[3] + 1]
    np.testing.assert_array_equal(a.camera_pose, b.camera_pose)
    background = (a.instance == 0) & (b.instance == 0)
    np.testing.assert_array_equal(a.image[background], b.image[background])  # the static scene does not move


def test_synth_command_writes_the_intersection_and_its_kinds(tmp_path: Path, capsys):
    assert main(["synth", str(tmp_path / "out"), "--frames", "8", "--width", "64", "--height", "32", "--crossing", "2",
                 "--pedestrians", "2", "--stop-probability", "1", "--stop-seconds", "0.5", "--no-progress"]) == 0
    poses = json.loads((tmp_path / "out" / "synth_000" / "poses.json").read_text())
    kinds = {entry["kind"] for entry in poses["objects"].values()}
    assert {KIND_CROSSING, KIND_PEDESTRIAN} <= kinds and KIND_SAME_SPEED not in kinds
    assert poses["config"]["num_crossing"] == 2 and poses["config"]["camera_stop_probability"] == 1.0
    assert main(["synth", str(tmp_path / "bad"), "--stop-probability", "2"]) == 2
    assert "camera_stop_probability must be in [0, 1], got 2.0" in capsys.readouterr().err
    # the default scene is the city's; --scene road is traffic along the road only; a count replaces the scene's
    for number, (scene, expected) in enumerate((([], (3, 4, 1, 0.3)), (["--scene", "road"], (0, 0, 0, 0.0)),
                                                 (["--pedestrians", "0"], (3, 0, 1, 0.3)))):
        out = tmp_path / f"scene{number}"
        assert main(["synth", str(out), "--frames", "2", "--width", "64", "--height", "32", "--no-progress",
                     *scene]) == 0
        config = json.loads((out / "synth_000" / "poses.json").read_text())["config"]
        assert tuple(config[k] for k in ("num_crossing", "num_pedestrians", "num_cyclists",
                                         "camera_stop_probability")) == expected


def test_a_short_stopping_drive_stands_in_the_middle_of_its_stop():
    """A drive shorter than braking, standing and starting shows the middle of it: the camera stands."""
    scene = Scene(SynthConfig(num_frames=20, seed=1, camera_stop_probability=1.0, camera_stop_seconds=3.0))
    stations = scene.camera_station(np.arange(20) / 10.0)
    assert np.ptp(stations) == 0.0 and stations[0] == 0.0
    assert scene.speed_profile.speed(-1.0) > 0.0 and scene.speed_profile.speed(3.0) > 0.0  # braked before, starts after


def test_a_camera_turning_at_the_intersection_turns_on_the_spot_while_it_stands(tmp_path: Path):
    """--turn-degrees: the heading turns smoothly by the angle in the middle of the drive; a standing camera
    turns on the spot, which the situation record counts as moving (the static world moves in the image)."""
    from mds_core.data.sequence_folder import SequenceFolder
    from mds_core.tools.synth import write_sequence_folder

    config = SynthConfig(width=64, height=32, num_frames=41, seed=2, camera_stop_probability=1.0,
                         camera_turn_degrees=60.0, camera_turn_seconds=2.0)
    scene = Scene(config)
    # the drive stands from 0.5 s to 3.5 s; the turn takes 1 s to 3 s
    forward = [scene.camera_pose(t)[:3, 2] for t in (0.7, 1.0, 2.0, 3.0, 3.4)]  # optical axes, world frame
    angles = [np.degrees(np.arctan2(np.cross(forward[0][:2], f[:2]), np.dot(forward[0][:2], f[:2]))) for f in forward]
    assert abs(angles[1]) < 1e-6 and abs(angles[2] - 30.0) < 1e-6 and abs(angles[3] - 60.0) < 1e-6
    assert abs(angles[4] - 60.0) < 1e-6  # turned left by 60 degrees, then it stays
    positions = np.array([scene.camera_pose(t)[:3, 3] for t in (0.7, 2.0, 3.4)])
    assert np.allclose(positions, positions[0])  # standing: the turn is on the spot
    write_sequence_folder(tmp_path, "turn", config)
    folder = SequenceFolder(tmp_path / "turn")
    moved = [folder.situation(i).camera_moved for i in range(41)]  # frame i against frame i - 1
    assert all(moved[12:30]) and not any(moved[7:10]) and not any(moved[32:35])
    with pytest.raises(ValueError, match="camera_turn_degrees"):
        SynthConfig(camera_turn_degrees=270.0)
