"""Writers: the project's sequence-folder format and rosbag2 (MCAP / sqlite3).

Sequence folder (``ROOT/<name>/``)::

    images/NNNNNN.png      RGB frames (PNG, 8 bit), NNNNNN = 6-digit index from 000000
    depth/NNNNNN.npy       float32 (H, W), metres along the optical axis, 0 = none (sky)
    motion/NNNNNN.png      uint8 labels: 0 static, 1 moving object, 2 parked (static movable)
    instances/NNNNNN.png   uint16 instance ids, 0 = background
    calib.json             {"K": [[fx,0,cx],[0,fy,cy],[0,0,1]], "width": W, "height": H}
    poses.json             timestamps, camera poses (world_from_camera), object poses
                           (world_from_object), object kinds/sizes and the SynthConfig used
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from mds_core.tools.synth.config import SynthConfig
from mds_core.tools.synth.frame import SynthFrame
from mds_core.tools.synth.sequence import generate_sequence

FrameCallback = Callable[[SynthFrame], None]

WORLD_FRAME_DOC = "world: Z up, road plane Z=0, X along the road at s=0, Y left (right-handed)"
CAMERA_FRAME_DOC = "camera: OpenCV optical frame (x right, y down, z forward); poses are world_from_camera"
OBJECT_FRAME_DOC = "object: box centre, x forward, y left, z up; poses are world_from_object; size = (l, w, h)"

FOLDER_SUBDIRS = ("images", "depth", "motion", "instances")


def frame_name(index: int) -> str:
    """``NNNNNN`` (six digits, zero-padded)."""
    return f"{index:06d}"


def _check_output_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a directory")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"cannot create {out}: {parent} is not a directory")
            break
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"sequence folder {out} exists and is not empty (use overwrite=True)")
        for sub in FOLDER_SUBDIRS:
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
        for file in ("calib.json", "poses.json"):
            (out / file).unlink(missing_ok=True)


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write image {path}")


def _matrix(m: np.ndarray) -> list[list[float]]:
    return [[float(x) for x in row] for row in m]


def write_frames_to_folder(out: Path, config: SynthConfig, frames: Iterable[SynthFrame]) -> Path:
    """Write already generated ``frames`` into the sequence folder ``out`` (must be empty)."""
    for sub in FOLDER_SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    K = config.intrinsics()
    calib = {"K": _matrix(K), "width": int(config.width), "height": int(config.height)}
    (out / "calib.json").write_text(json.dumps(calib, indent=2))

    timestamps: list[int] = []
    camera_poses: list[list[list[float]]] = []
    objects: dict[str, dict[str, Any]] = {}
    for frame in frames:
        name = frame_name(frame.index)
        _imwrite(out / "images" / f"{name}.png", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
        np.save(out / "depth" / f"{name}.npy", frame.depth.astype(np.float32))
        _imwrite(out / "motion" / f"{name}.png", frame.motion.astype(np.uint8))
        if frame.instance.max(initial=0) > np.iinfo(np.uint16).max:
            raise ValueError("instance ids do not fit in uint16")
        _imwrite(out / "instances" / f"{name}.png", frame.instance.astype(np.uint16))
        timestamps.append(int(frame.timestamp_ns))
        camera_poses.append(_matrix(frame.camera_pose))
        for oid, pose in frame.object_poses.items():
            entry = objects.setdefault(
                str(oid),
                {
                    "kind": frame.object_kinds.get(oid, ""),
                    "moving": bool(frame.object_moving.get(oid, True)),
                    "size": [float(x) for x in frame.object_sizes.get(oid, np.zeros(3))],
                    "poses": [],
                },
            )
            entry["poses"].append(_matrix(pose))
    poses = {
        "conventions": {"world": WORLD_FRAME_DOC, "camera": CAMERA_FRAME_DOC, "object": OBJECT_FRAME_DOC},
        "timestamps_ns": timestamps,
        "camera_poses": camera_poses,
        "objects": objects,
        "K": _matrix(K),
        "config": config.to_dict(),
    }
    (out / "poses.json").write_text(json.dumps(poses))
    return out


def write_sequence_folder(
    root: Path,
    name: str,
    config: SynthConfig,
    *,
    overwrite: bool = False,
    on_frame: FrameCallback | None = None,
) -> Path:
    """Generate a sequence and write it to ``root/name`` (see the module docstring).

    Args:
        root: parent folder (created if missing).
        name: sequence name (a single path component).
        config: what to generate.
        overwrite: replace the generator's files in an existing non-empty folder instead of
            raising ``FileExistsError``.
        on_frame: called after each frame is written (e.g. a progress bar update).

    Returns:
        The sequence folder ``root/name``.
    """
    if not name or Path(name).name != name or name in {".", ".."}:
        raise ValueError(f"sequence name must be a single path component, got {name!r}")
    out = Path(root) / name
    _check_output_dir(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)

    def frames() -> Iterable[SynthFrame]:
        for frame in generate_sequence(config):
            yield frame
            if on_frame is not None:
                on_frame(frame)

    return write_frames_to_folder(out, config, frames())


# ---------------------------------------------------------------------------- rosbag2
def _stamp(typestore: Any, timestamp_ns: int) -> Any:
    time_cls = typestore.types["builtin_interfaces/msg/Time"]
    return time_cls(sec=int(timestamp_ns // 1_000_000_000), nanosec=int(timestamp_ns % 1_000_000_000))


def image_message(typestore: Any, frame: SynthFrame, frame_id: str) -> Any:
    """``sensor_msgs/msg/Image`` (rgb8) of a frame."""
    header_cls = typestore.types["std_msgs/msg/Header"]
    image_cls = typestore.types["sensor_msgs/msg/Image"]
    h, w = frame.image.shape[:2]
    return image_cls(
        header=header_cls(stamp=_stamp(typestore, frame.timestamp_ns), frame_id=frame_id),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=3 * w,
        data=np.ascontiguousarray(frame.image, dtype=np.uint8).reshape(-1),
    )


def depth_message(typestore: Any, frame: SynthFrame, frame_id: str) -> Any:
    """``sensor_msgs/msg/Image`` (32FC1, little endian, metres, 0 = none) of a frame's GT depth."""
    header_cls = typestore.types["std_msgs/msg/Header"]
    image_cls = typestore.types["sensor_msgs/msg/Image"]
    h, w = frame.depth.shape
    data = np.ascontiguousarray(frame.depth, dtype="<f4").view(np.uint8).reshape(-1)
    return image_cls(
        header=header_cls(stamp=_stamp(typestore, frame.timestamp_ns), frame_id=frame_id),
        height=h,
        width=w,
        encoding="32FC1",
        is_bigendian=0,
        step=4 * w,
        data=data,
    )


def motion_message(typestore: Any, frame: Any, frame_id: str) -> Any:
    """``sensor_msgs/msg/Image`` (mono8) of a frame's ground-truth motion labels (0 static, 1 moving,
    other values as the source defines them, e.g. 2 for the generator's parked cars)."""
    header_cls = typestore.types["std_msgs/msg/Header"]
    image_cls = typestore.types["sensor_msgs/msg/Image"]
    h, w = frame.motion.shape
    return image_cls(
        header=header_cls(stamp=_stamp(typestore, frame.timestamp_ns), frame_id=frame_id),
        height=h, width=w, encoding="mono8", is_bigendian=0, step=w,
        data=np.ascontiguousarray(frame.motion, dtype=np.uint8).reshape(-1),
    )


def compressed_image_message(typestore: Any, frame: SynthFrame, frame_id: str,
                             image_format: Literal["jpeg", "png"] = "jpeg", jpeg_quality: int = 95) -> Any:
    """``sensor_msgs/msg/CompressedImage`` of a frame, as ``image_transport``'s compressed plugin
    writes it: format ``"rgb8; jpeg compressed bgr8"`` (or ``png``)."""
    header_cls = typestore.types["std_msgs/msg/Header"]
    compressed_cls = typestore.types["sensor_msgs/msg/CompressedImage"]
    bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
    if image_format == "jpeg":
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    elif image_format == "png":
        ok, data = cv2.imencode(".png", bgr)
    else:
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    if not ok:
        raise ValueError(f"could not encode frame {frame.index} as {image_format}")
    return compressed_cls(
        header=header_cls(stamp=_stamp(typestore, frame.timestamp_ns), frame_id=frame_id),
        format=f"rgb8; {image_format} compressed bgr8",
        data=np.ascontiguousarray(data, dtype=np.uint8).reshape(-1),
    )


def camera_info_message(typestore: Any, frame: SynthFrame, frame_id: str) -> Any:
    """``sensor_msgs/msg/CameraInfo``: plumb_bob with zero distortion, ``P = [K | 0]``."""
    header_cls = typestore.types["std_msgs/msg/Header"]
    info_cls = typestore.types["sensor_msgs/msg/CameraInfo"]
    roi_cls = typestore.types["sensor_msgs/msg/RegionOfInterest"]
    K = np.asarray(frame.intrinsics, dtype=np.float64)
    P = np.concatenate([K, np.zeros((3, 1))], axis=1)
    h, w = frame.image.shape[:2]
    return info_cls(
        header=header_cls(stamp=_stamp(typestore, frame.timestamp_ns), frame_id=frame_id),
        height=h,
        width=w,
        distortion_model="plumb_bob",
        d=np.zeros(5, dtype=np.float64),
        k=K.reshape(-1).copy(),
        r=np.eye(3, dtype=np.float64).reshape(-1),
        p=P.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=roi_cls(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


class BagFrame(Protocol):
    """What a bag frame's messages are made of (a :class:`SynthFrame` is one): ``image`` ``(H, W, 3)``
    uint8 RGB, ``intrinsics`` its 3x3 ``K``, ``timestamp_ns`` the header stamp and log time; ``depth``
    and ``motion`` are read only when a depth or motion topic is written."""

    index: int
    timestamp_ns: int
    image: np.ndarray
    intrinsics: np.ndarray


def write_rosbag(
    path: Path,
    config: SynthConfig,
    *,
    storage: Literal["mcap", "sqlite3"] = "mcap",
    image_topic: str | None = None,
    info_topic: str = "/camera/camera_info",
    frame_id: str = "camera_optical_frame",
    depth_topic: str | None = None,
    on_frame: FrameCallback | None = None,
    image_format: Literal["raw", "jpeg", "png"] = "raw",
    frames: Iterable[SynthFrame] | None = None,
) -> Path:
    """Generate a sequence and write it as a rosbag2 directory at ``path`` (must not exist).

    Per frame: ``sensor_msgs/msg/Image`` (rgb8) on ``image_topic`` (default
    ``/camera/image_raw``) or, with ``image_format`` ``"jpeg"``/``"png"``,
    ``sensor_msgs/msg/CompressedImage`` (default topic ``/camera/image_raw/compressed``);
    ``sensor_msgs/msg/CameraInfo`` on ``info_topic`` and, if ``depth_topic`` is given, the
    GT depth as a 32FC1 Image. Header stamps and bag log times are the frame timestamps
    (``config.start_time_ns + i / fps``). Message types are those of ROS 2 Jazzy (rosbags
    typestore); the bag is format version 9 and stores the config as custom data
    ``mds_synth_config`` (JSON). ``frames`` replaces the generated sequence (e.g. frames of it
    repeated or reordered, for tests); their timestamps are used as they are.

    Returns:
        ``path``.
    """
    return write_frames_rosbag(
        path, generate_sequence(config) if frames is None else frames, storage=storage, image_topic=image_topic,
        info_topic=info_topic, frame_id=frame_id, depth_topic=depth_topic, on_frame=on_frame,
        image_format=image_format, custom_data={"mds_synth_config": json.dumps(config.to_dict())},
    )


def write_frames_rosbag(
    path: Path,
    frames: Iterable[BagFrame],
    *,
    storage: Literal["mcap", "sqlite3"] = "mcap",
    image_topic: str | None = None,
    info_topic: str = "/camera/camera_info",
    frame_id: str = "camera_optical_frame",
    depth_topic: str | None = None,
    on_frame: Callable[[Any], None] | None = None,
    image_format: Literal["raw", "jpeg", "png"] = "raw",
    custom_data: dict[str, str] | None = None,
    motion_topic: str | None = None,
) -> Path:
    """Write ``frames`` as a rosbag2 directory at ``path`` (must not exist), with the topics and
    messages of :func:`write_rosbag` (whose frames come from the generator); ``custom_data`` is
    stored in the bag's metadata. With ``motion_topic``, each frame's ``motion`` labels as a mono8
    Image. A frame whose ``depth`` or ``motion`` is None has no message on that topic. Returns ``path``."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
    if storage not in plugins:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"bag path {path} exists already (rosbag2 writers only create new bags)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(f"cannot create bag {path}: {parent} is not a directory")
            break
    if image_format not in ("raw", "jpeg", "png"):
        raise ValueError(f"image_format must be 'raw', 'jpeg' or 'png', got {image_format!r}")
    if image_topic is None:
        image_topic = "/camera/image_raw" if image_format == "raw" else "/camera/image_raw/compressed"
    topics = [image_topic, info_topic] + [topic for topic in (depth_topic, motion_topic) if topic]
    if len(set(topics)) != len(topics):
        raise ValueError(f"topics must be distinct, got {topics}")
    path.parent.mkdir(parents=True, exist_ok=True)

    typestore = get_typestore(Stores.ROS2_JAZZY)
    depth_type = "sensor_msgs/msg/Image"
    image_type = "sensor_msgs/msg/Image" if image_format == "raw" else "sensor_msgs/msg/CompressedImage"
    info_type = "sensor_msgs/msg/CameraInfo"
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugins[storage])
    for key, value in (custom_data or {}).items():
        writer.set_custom_data(key, value)
    with writer:
        image_conn = writer.add_connection(image_topic, image_type, typestore=typestore)
        info_conn = writer.add_connection(info_topic, info_type, typestore=typestore)
        depth_conn = writer.add_connection(depth_topic, depth_type, typestore=typestore) if depth_topic else None
        motion_conn = writer.add_connection(motion_topic, depth_type, typestore=typestore) if motion_topic else None
        for frame in frames:
            ts = int(frame.timestamp_ns)
            if image_format == "raw":
                image = image_message(typestore, frame, frame_id)
            else:
                image = compressed_image_message(typestore, frame, frame_id, image_format)
            writer.write(image_conn, ts, typestore.serialize_cdr(image, image_type))
            writer.write(info_conn, ts, typestore.serialize_cdr(camera_info_message(typestore, frame, frame_id), info_type))
            if depth_conn is not None and frame.depth is not None:
                writer.write(depth_conn, ts, typestore.serialize_cdr(depth_message(typestore, frame, frame_id), depth_type))
            if motion_conn is not None and frame.motion is not None:
                writer.write(motion_conn, ts, typestore.serialize_cdr(motion_message(typestore, frame, frame_id),
                                                                      depth_type))
            if on_frame is not None:
                on_frame(frame)
    return path
