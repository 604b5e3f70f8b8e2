"""KITTI raw loading: calibration, splits, targets, velodyne ground truth, image formats."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from kitti_fake import (
    DATE,
    DEFAULT_DRIVES,
    FAR_OFFSET,
    fake_calibration,
    fake_grid_pixels,
    fake_image,
    fake_plane_depth,
    make_fake_kitti,
    write_split,
)

from mds_core.data import DataError, TripletDataset
from mds_core.data.dataset import TargetFrame
from mds_core.data.kitti import (
    KittiSequence,
    kitti_sequences_and_targets,
    load_gt_depths_npz,
    read_calib_file,
    read_split_file,
    select_kitti,
    velodyne_depth_map,
)

SIZE = (124, 38)
DRIVE0 = f"{DATE}/{DEFAULT_DRIVES[0]}"
DRIVE1 = f"{DATE}/{DEFAULT_DRIVES[1]}"


@pytest.fixture(scope="module")
def kitti(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_kitti(tmp_path_factory.mktemp("kitti"), frames=[5, 4], size=SIZE)


# --- calibration -------------------------------------------------------------------------------


def test_read_calib_file_parses_floats_and_skips_text(kitti: Path) -> None:
    calib = read_calib_file(kitti / DATE / "calib_cam_to_cam.txt")
    assert "calib_time" not in calib
    assert calib["corner_dist"].shape == (1,)
    assert calib["P_rect_02"].shape == (12,)
    assert calib["S_rect_02"].tolist() == [124.0, 38.0]
    np.testing.assert_allclose(calib["P_rect_02"].reshape(3, 4), fake_calibration(SIZE)["P_rect_02"])
    velo = read_calib_file(kitti / DATE / "calib_velo_to_cam.txt")
    assert set(velo) == {"R", "T", "delta_f", "delta_c"}
    assert set(read_calib_file(kitti / DATE / "calib_imu_to_velo.txt")) == {"R", "T"}


def test_read_calib_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing"):
        read_calib_file(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("P_rect_02: 1 2 3\nthis line has no colon\n")
    with pytest.raises(DataError, match=r"bad.txt:2"):
        read_calib_file(bad)


def test_missing_calibration_is_a_data_error(tmp_path: Path) -> None:
    root = make_fake_kitti(tmp_path, drives=DEFAULT_DRIVES[:1], frames=2, size=SIZE)
    (root / DATE / "calib_cam_to_cam.txt").unlink()
    with pytest.raises(DataError, match="calib_cam_to_cam"):
        KittiSequence(root, DRIVE0, "l")


def test_intrinsics_from_p_rect_and_s_rect(kitti: Path) -> None:
    calib = fake_calibration(SIZE)
    for side, camera in (("l", 2), ("r", 3)):
        matrix, size = KittiSequence(kitti, DRIVE0, side).intrinsics()
        np.testing.assert_allclose(matrix, calib[f"P_rect_0{camera}"][:, :3])
        assert size == SIZE
        assert matrix[2].tolist() == [0.0, 0.0, 1.0]


def test_intrinsics_size_from_image_without_s_rect(tmp_path: Path) -> None:
    root = make_fake_kitti(tmp_path, drives=DEFAULT_DRIVES[:1], frames=2, size=(60, 20), include_s_rect=False)
    sequence = KittiSequence(root, DRIVE0, "l")
    assert sequence.calibration.size is None
    assert sequence.intrinsics()[1] == (60, 20)


def test_intrinsics_size_mismatch_is_reported(tmp_path: Path) -> None:
    root = make_fake_kitti(tmp_path, drives=DEFAULT_DRIVES[:1], frames=2, size=SIZE)
    image_path = root / DRIVE0 / "image_02" / "data" / "0000000000.png"
    cv2.imwrite(str(image_path), np.zeros((19, 62, 3), np.uint8))
    with pytest.raises(DataError, match="S_rect_02"):
        KittiSequence(root, DRIVE0, "l").intrinsics()


# --- frames and images -------------------------------------------------------------------------


def test_sequence_frames_and_images(kitti: Path) -> None:
    sequence = KittiSequence(kitti, DRIVE0, "l")
    assert len(sequence) == 5
    assert sequence.frame_id(3) == "0000000003"
    assert sequence.name == f"{DEFAULT_DRIVES[0]}_l"
    np.testing.assert_array_equal(sequence.image(2), fake_image(SIZE, 2, 2))
    np.testing.assert_array_equal(KittiSequence(kitti, DRIVE0, "r").image(2), fake_image(SIZE, 2, 3))
    assert sequence.motion(0) is None
    with pytest.raises(DataError, match="'l' or 'r'"):
        KittiSequence(kitti, DRIVE0, "x")


def test_jpg_images(tmp_path: Path) -> None:
    root = make_fake_kitti(tmp_path, drives=DEFAULT_DRIVES[:1], frames=3, size=SIZE, image_ext=".jpg")
    sequence = KittiSequence(root, DRIVE0, "l")
    assert len(sequence) == 3
    assert sequence.image_path(1).suffix == ".jpg"
    image = sequence.image(1)
    assert image.shape == (SIZE[1], SIZE[0], 3) and image.dtype == np.uint8
    assert np.abs(image.astype(int) - fake_image(SIZE, 1, 2)).mean() < 12  # lossy, but the same image
    assert sequence.intrinsics()[1] == SIZE
    sequences, targets = kitti_sequences_and_targets(root, None, [-1, 1])
    assert [t.frame for t in targets] == [1]


def test_png_preferred_over_jpg_of_same_frame(tmp_path: Path) -> None:
    root = make_fake_kitti(tmp_path, drives=DEFAULT_DRIVES[:1], frames=2, size=SIZE)
    cv2.imwrite(str(root / DRIVE0 / "image_02" / "data" / "0000000001.jpg"), np.zeros((38, 124, 3), np.uint8))
    sequence = KittiSequence(root, DRIVE0, "l")
    assert len(sequence) == 2
    assert sequence.image_path(1).suffix == ".png"


def test_non_contiguous_frames_rejected(tmp_path: Path) -> None:
    root = make_fake_kitti(tmp_path, drives=DEFAULT_DRIVES[:1], frames=4, size=SIZE)
    (root / DRIVE0 / "image_02" / "data" / "0000000001.png").unlink()
    with pytest.raises(DataError, match="contiguously"):
        KittiSequence(root, DRIVE0, "l")


# --- velodyne ground truth ---------------------------------------------------------------------


def test_velodyne_depth_is_the_known_plane(kitti: Path) -> None:
    sequence = KittiSequence(kitti, DRIVE0, "l")
    u, v = fake_grid_pixels(SIZE)
    for frame in (0, 3):
        depth = sequence.depth(frame)
        assert depth is not None and depth.dtype == np.float32 and depth.shape == (SIZE[1], SIZE[0])
        # Nearest of the two points per pixel, exactly on the plane.
        np.testing.assert_allclose(depth[v, u], fake_plane_depth(frame), rtol=1e-5)
        # Nothing else: points behind the sensor or outside the image are dropped.
        others = np.ones(depth.shape, bool)
        others[v, u] = False
        assert np.count_nonzero(depth[others]) == 0


def test_velodyne_depth_without_eigen_shift_is_one_pixel_further(kitti: Path) -> None:
    shifted = KittiSequence(kitti, DRIVE0, "l").depth(1)
    exact = KittiSequence(kitti, DRIVE0, "l", eigen_pixel_shift=False).depth(1)
    assert shifted is not None and exact is not None
    np.testing.assert_array_equal(exact[1:, 1:], shifted[:-1, :-1])


def test_right_camera_depth_uses_p_rect_03(kitti: Path) -> None:
    depth = KittiSequence(kitti, DRIVE0, "r").depth(0)
    assert depth is not None
    values = depth[depth > 0]
    assert values.size > 100
    # Depth = third row of P_rect_03 @ [R_rect X; 1] = left depth - P02[2,3] + P03[2,3].
    calib = fake_calibration(SIZE)
    offset = calib["P_rect_03"][2, 3] - calib["P_rect_02"][2, 3]
    near, far = fake_plane_depth(0) + offset, fake_plane_depth(0) + FAR_OFFSET + offset
    assert np.all(np.isclose(values, near, rtol=1e-5) | np.isclose(values, far, rtol=1e-5))


def test_depth_none_without_velodyne(tmp_path: Path) -> None:
    root = make_fake_kitti(tmp_path, drives=DEFAULT_DRIVES[:1], frames=2, size=SIZE, with_velodyne=False)
    assert KittiSequence(root, DRIVE0, "l").depth(0) is None


def test_velodyne_depth_map_hand_made() -> None:
    # Velodyne frame = rectified camera frame, K = [[10,0,2],[0,10,1],[0,0,1]].
    projection = np.array([[10.0, 0, 2, 0], [0, 10, 1, 0], [0, 0, 1, 0]])
    points = np.array(
        [
            [2.0, 0.0, 0.0, 1],  # -> (2, 1) at depth 2 -> Eigen pixel (1, 0)
            [4.0, 0.0, 0.0, 1],  # same pixel, farther: loses
            [1.0, 0.1, 0.1, 1],  # -> (3, 2) -> (2, 1)
            [-1.0, 0.0, 0.0, 1],  # behind: dropped
            [1.0, -0.2, 0.0, 1],  # -> (0, 1) -> column -1: outside
        ]
    )
    # Velodyne (x, y, z) -> camera (X, Y, Z) = (y, z, x), then the projection.
    axes = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    depth = velodyne_depth_map(points, projection @ axes, (4, 3))
    expected = np.zeros((3, 4), np.float32)
    expected[0, 1] = 2.0
    expected[1, 2] = 1.0
    np.testing.assert_array_equal(depth, expected)
    exact = velodyne_depth_map(points, projection @ axes, (4, 3), eigen_pixel_shift=False)
    assert exact[1, 2] == 2.0 and exact[2, 3] == 1.0 and exact[1, 0] == 1.0
    assert np.count_nonzero(exact) == 3


# --- splits and targets ------------------------------------------------------------------------


def test_read_split_file(tmp_path: Path) -> None:
    path = tmp_path / "split.txt"
    path.write_text(f"{DRIVE0} 3 l\n\n{DRIVE1}/ 0000000002 r\n")
    assert read_split_file(path) == [(DRIVE0, 3, "l"), (DRIVE1, 2, "r")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"{DRIVE0} 3", "3 fields"),
        (f"{DRIVE0} 3 x", "'l' or 'r'"),
        (f"{DRIVE0} -1 l", "non-negative integer"),
        (f"{DRIVE0} three l", "non-negative integer"),
    ],
)
def test_read_split_file_malformed_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "split.txt"
    path.write_text(f"{DRIVE0} 1 l\n{DRIVE0} 2 l\n{line}\n")
    with pytest.raises(DataError, match=rf"split.txt:3: .*{message}"):
        read_split_file(path)
    with pytest.raises(DataError, match="missing split"):
        read_split_file(tmp_path / "absent.txt")


def test_targets_from_split(kitti: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    split = write_split(
        tmp_path / "train_files.txt",
        [(DRIVE1, 2, "l"), (DRIVE0, 0, "l"), (DRIVE0, 2, "r"), (DRIVE0, 4, "l"), (DRIVE0, 1, "l")],
    )
    with caplog.at_level(logging.WARNING, logger="mds_core.data.kitti"):
        sequences, targets = kitti_sequences_and_targets(kitti, split, [-1, 1])
    assert [(s.folder, s.side) for s in sequences] == [(DRIVE1, "l"), (DRIVE0, "l"), (DRIVE0, "r")]
    # Frames 0 and 4 of drive 0 (5 frames) lack a source frame: dropped and logged.
    assert targets == [TargetFrame(0, 2), TargetFrame(2, 2), TargetFrame(1, 1)]
    assert "2 of 5 split entries dropped" in caplog.text
    selection = select_kitti(kitti, split, [-1, 1])
    assert selection.dropped == [(DRIVE0, 0, "l"), (DRIVE0, 4, "l")]
    # Without source frames (evaluation) every entry is kept, in the split's order.
    _, all_targets = kitti_sequences_and_targets(kitti, split, [])
    assert [(t.sequence, t.frame) for t in all_targets] == [(0, 2), (1, 0), (2, 2), (1, 4), (1, 1)]
    # Wider offsets drop more.
    _, wide = kitti_sequences_and_targets(kitti, split, [-2, 2])
    assert wide == [TargetFrame(2, 2)]  # drive 1 has only 4 frames


def test_targets_without_split(kitti: Path) -> None:
    sequences, targets = kitti_sequences_and_targets(kitti, None, [-1, 1])
    assert [(s.folder, s.side, len(s)) for s in sequences] == [(DRIVE0, "l", 5), (DRIVE1, "l", 4)]
    assert targets == [TargetFrame(0, f) for f in (1, 2, 3)] + [TargetFrame(1, f) for f in (1, 2)]
    _, all_frames = kitti_sequences_and_targets(kitti, None, [])
    assert len(all_frames) == 9


def test_missing_drive_in_split(kitti: Path, tmp_path: Path) -> None:
    split = write_split(tmp_path / "s.txt", [(DRIVE0, 1, "l"), (f"{DATE}/{DATE}_drive_0099_sync", 5, "l")])
    with pytest.raises(DataError, match="drive_0099_sync"):
        kitti_sequences_and_targets(kitti, split, [-1, 1])


def test_split_frame_beyond_drive(kitti: Path, tmp_path: Path) -> None:
    split = write_split(tmp_path / "s.txt", [(DRIVE1, 4, "l")])
    with pytest.raises(DataError, match="frame 4 .* 4 frames"):
        kitti_sequences_and_targets(kitti, split, [])


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        kitti_sequences_and_targets(tmp_path / "none", None, [-1, 1])
    with pytest.raises(DataError, match="no KITTI raw drives"):
        kitti_sequences_and_targets(tmp_path, None, [-1, 1])


def test_kitti_sequence_in_triplet_dataset(kitti: Path) -> None:
    sequences, targets = kitti_sequences_and_targets(kitti, None, [-1, 1])
    dataset = TripletDataset(sequences, targets, [-1, 1], height=16, width=48, load_ground_truth=True)
    sample = dataset[0]
    assert sample.images.shape == (3, 3, 16, 48)
    assert sample.depth is not None and sample.depth.shape == (1, SIZE[1], SIZE[0])
    assert sample.motion is None
    matrix, _ = sequences[0].intrinsics()
    assert float(sample.intrinsics[0, 0]) == pytest.approx(matrix[0, 0] * 48 / SIZE[0], rel=1e-6)
    assert sample.name == f"{DEFAULT_DRIVES[0]}_l/0000000001"


# --- exported ground truth ---------------------------------------------------------------------


def test_load_gt_depths_npz(tmp_path: Path) -> None:
    path = tmp_path / "gt_depths.npz"
    maps = np.random.default_rng(0).uniform(1, 80, size=(3, 4, 6)).astype(np.float32)
    np.savez_compressed(path, data=maps)
    loaded = load_gt_depths_npz(path)
    assert len(loaded) == 3
    np.testing.assert_array_equal(loaded[1], maps[1])

    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.ones((4, 6)), np.ones((5, 7))
    pickled = tmp_path / "ragged.npz"
    np.savez_compressed(pickled, data=ragged)
    with pytest.raises(DataError, match="allow_pickle=True"):
        load_gt_depths_npz(pickled)
    assert [m.shape for m in load_gt_depths_npz(pickled, allow_pickle=True)] == [(4, 6), (5, 7)]

    np.savez_compressed(tmp_path / "other.npz", depth=maps)
    with pytest.raises(DataError, match="no 'data'"):
        load_gt_depths_npz(tmp_path / "other.npz")
    with pytest.raises(DataError, match="missing"):
        load_gt_depths_npz(tmp_path / "absent.npz")
