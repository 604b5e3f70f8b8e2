"""The perception node's parameters: one typed dataclass, declared with descriptions and ranges.

Every field of :class:`PerceptionParameters` becomes a ROS parameter of the same name. Its
metadata (:func:`param`) gives the description, the allowed range or choices and whether the
value may change while the node runs. :func:`validate` is the single place that says why a
value is refused; the node calls it for the values given at start-up (the node then refuses to
start) and for every later ``set_parameters`` request (the request is refused, the node keeps
its old value).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mds_core.inference.moving_objects import MOVING_THRESHOLD
from mds_ros.frames import OPTICAL_IN_BASE

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class StartupError(RuntimeError):
    """A node cannot start with these parameters or this checkpoint; the message says why."""


def param(default: Any, description: str, *, choices: tuple[str, ...] = (), low: float | None = None,
          high: float | None = None, dynamic: bool = False) -> Any:
    """A dataclass field carrying the ROS parameter's descriptor data."""
    meta = {"description": description, "choices": choices, "low": low, "high": high, "dynamic": dynamic}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class NodeParameters:
    """Base of the nodes' parameter sets: names, specs and per-value validation."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def spec(cls, name: str) -> dict[str, Any]:
        return next(f.metadata for f in dataclasses.fields(cls) if f.name == name)

    @classmethod
    def validate_value(cls, name: str, value: Any) -> str | None:
        """Why ``value`` is not acceptable for parameter ``name``, or None."""
        return _validate_value(cls, name, value)


@dataclass
class CameraInputParameters(NodeParameters):
    """How a node receives the camera: topics, transport, intrinsics, pairing, size limits."""

    autostart: bool = param(True, "configure and activate at start-up; false: stay unconfigured until a lifecycle "
                            "transition (ros2 lifecycle set NODE configure, then activate)")
    checkpoint: str = param("", "path of the trained model (.pt, written by `mds train` or `mds demo`); required")
    device: str = param("auto", "auto, cpu, cuda or cuda:N; an unavailable GPU falls back to cpu with a warning")
    image_topic: str = param("image", "input image topic (relative names follow the node namespace)")
    camera_info_topic: str = param("camera_info", "camera info topic paired with the image")
    input_transport: str = param("raw", "raw: sensor_msgs/Image on image_topic; compressed: "
                                 "sensor_msgs/CompressedImage on image_topic + '/compressed'",
                                 choices=("raw", "compressed"))
    camera_info_source: str = param("topic", "topic: pair every image with camera_info; parameters: use "
                                    "`intrinsics` and do not subscribe to camera_info",
                                    choices=("topic", "parameters"))
    intrinsics: list[float] = param([0.0], "fx, fy, cx, cy in pixels of the input image "
                                    "(with camera_info_source=parameters)")
    intrinsics_size: list[int] = param([0, 0], "width, height of the image the intrinsics parameters are for; "
                                       "[0, 0] = the size of the first image (camera_info_source=parameters)")
    intrinsics_size_mismatch: str = param("refuse", "an image of another size than intrinsics_size: refuse it as "
                                          "malformed, or rescale the intrinsics to it",
                                          choices=("refuse", "rescale"))
    pairing_tolerance: float = param(0.0, "seconds an image stamp may differ from its camera_info stamp",
                                     low=0.0, high=1.0)
    pairing_queue_size: int = param(10, "unpaired images/camera infos kept while waiting for a partner",
                                    low=1, high=1000)
    max_input_pixels: int = param(4096 * 4096, "larger input images are refused as malformed", low=1,
                                  high=1 << 28)


@dataclass
class PerceptionParameters(CameraInputParameters):
    backend: str = param("torch", "torch: the checkpoint in PyTorch; onnxruntime: the networks as ONNX graphs in "
                         "onnxruntime (TensorRT, CUDA, OpenVINO or CPU provider; needs the onnx or openvino extra)",
                         choices=("torch", "onnxruntime"))
    torch_threads: int = param(0, "threads of PyTorch's CPU ops in this process; 0 = automatic: 1 with the "
                               "onnxruntime backend (its sessions own the cores; torch only resizes and combines), "
                               "else PyTorch's default", low=0, high=1024)
    onnx_model: str = param("", "backend onnxruntime: an export folder (`mds export`); empty = export the "
                            "checkpoint at start-up and on every hot swap")
    width: int = param(0, "network input width in pixels, a multiple of 32; 0 = the checkpoint's", low=0, high=4096)
    height: int = param(0, "network input height in pixels, a multiple of 32; 0 = the checkpoint's", low=0, high=4096)
    num_components: int = param(0, "K, the number of motion components; 0 = the checkpoint's (it cannot be changed)",
                                low=0, high=64)
    motion_evidence: bool = param(True, "components model: ~/moving_probability and ~/components average the masks "
                                  "with the optical flow's evidence of motion under the ego-motion (a few ms a "
                                  "frame on a CPU core); false: the masks alone, as in the paper")
    max_frame_gap: float = param(0.5, "seconds; a larger gap to the previous frame resets it (0 = never)",
                                 low=0.0, high=3600.0, dynamic=True)
    publisher_depth: int = param(10, "QoS history depth of the outputs: how many frames a reliable subscriber may lag "
                                 "behind before it misses some (memory: this many of each output message)",
                                 low=1, high=1000)
    publisher_reliability: str = param("reliable", "QoS reliability of the outputs (RViz subscribes reliable)",
                                       choices=("reliable", "best_effort"))
    publish_depth: bool = param(True, "publish ~/depth/image (32FC1) and ~/depth/camera_info", dynamic=True)
    publish_labels: bool = param(True, "publish ~/labels (mono8 argmax component)", dynamic=True)
    publish_overlay: bool = param(True, "publish ~/overlay (rgb8 decomposition over the image)", dynamic=True)
    publish_masks: bool = param(True, "publish ~/masks (one 32FC<K> image, channel k = soft mask k)", dynamic=True)
    publish_moving_probability: bool = param(True, "publish ~/moving_probability (32FC1: the scene flow's motion "
                                             "mask, or 1 - the background component's mask, weighed with the flow's "
                                             "evidence with motion_evidence)", dynamic=True)
    publish_independent_flow: bool = param(True, "publish ~/independent_flow (32FC3, scene-flow models: 3D motion "
                                           "not explained by the ego-motion, per frame)", dynamic=True)
    publish_motions: bool = param(True, "publish ~/motions (PoseArray: component motions, previous -> current)",
                                  dynamic=True)
    publish_ego_motion: bool = param(True, "publish ~/ego_motion (PoseStamped: the camera's motion, previous -> "
                                     "current)", dynamic=True)
    publish_odometry: bool = param(True, "publish ~/odometry (nav_msgs/Odometry, odom_frame -> the camera's frame) and "
                                   "~/path (nav_msgs/Path): the ego-motion chained, in the depth's units", dynamic=True)
    odom_frame: str = param("odom", "parent frame of ~/odometry and ~/path (REP 105)")
    path_length: int = param(1000, "poses kept in ~/path", low=2, high=1000000)
    path_publish_period: float = param(0.5, "seconds between ~/path messages (a long path costs milliseconds to "
                                       "send; ~/odometry comes every frame); 0 = every frame", low=0.0, high=3600.0,
                                       dynamic=True)
    base_frame: str = param("", "REP 105 base frame (e.g. base_link) whose pose ~/odometry and ~/path report, "
                            "through camera_in_base; empty = the camera's frame (the images' frame_id)")
    camera_in_base: list[float] = param(list(OPTICAL_IN_BASE), "pose of the camera's frame in base_frame: x, y, z "
                                        "(m), roll, pitch, yaw (rad), as static_transform_publisher takes them; the "
                                        "default is an optical frame (z forward, x right, y down) at the base origin "
                                        "looking along the base's x axis")
    publish_odom_tf: bool = param(False, "broadcast odom_frame -> base_frame (or the camera's frame) on /tf and, with "
                                  "base_frame, base_frame -> the camera's frame on /tf_static (needs tf2_ros; leave "
                                  "off when another node owns the odom frame)")
    publish_components: bool = param(True, "publish ~/components (MarkerArray: an arrow along the own motion of every "
                                     "moving object and a label with its speed)", dynamic=True)
    component_min_pixels: int = param(20, "smallest moving object shown on ~/components, in pixels at the model "
                                      "resolution", low=1, high=1 << 24, dynamic=True)
    moving_threshold: float = param(MOVING_THRESHOLD, "moving probability from which a pixel belongs to a moving "
                                    "object on ~/components (connected regions of such pixels)", low=0.0, high=1.0,
                                    dynamic=True)
    publish_point_cloud: bool = param(True, "publish ~/points (organised PointCloud2 coloured like ~/overlay)",
                                      dynamic=True)
    publish_tf: bool = param(False, "broadcast <frame_id>/mds_component_<k> TF frames (needs tf2_ros)",
                             dynamic=True)
    depth_scale_mode: str = param("none", "none: network units; fixed: multiply by depth_scale; camera_height: metric "
                                  "scale from the ground plane and camera_height (see README)",
                                  choices=("none", "fixed", "camera_height"), dynamic=True)
    depth_scale: float = param(1.0, "metres per network depth unit (depth_scale_mode=fixed)", low=1e-6, high=1e6,
                               dynamic=True)
    camera_height: float = param(0.0, "metres from the road to the camera centre (depth_scale_mode=camera_height)",
                                 low=0.0, high=100.0, dynamic=True)
    camera_pitch: float = param(0.0, "expected camera pitch in degrees, positive looking down "
                                "(depth_scale_mode=camera_height)", low=-45.0, high=45.0, dynamic=True)
    scale_window: int = param(15, "frames in the running median of the camera-height scale", low=1, high=10000)
    overlay_alpha: float = param(0.5, "opacity of the decomposition in ~/overlay", low=0.0, high=1.0, dynamic=True)
    diagnostics_period: float = param(1.0, "seconds between /diagnostics messages", low=0.05, high=60.0)
    stall_periods: int = param(10, "diagnostics periods with frames accepted but no output before the node "
                               "reports ERROR (stalled)", low=2, high=100000)
    checkpoint_poll_period: float = param(1.0, "seconds between checks whether the watched checkpoint file "
                                          "changed; a new file is loaded and swapped in between frames (0 = never)",
                                          low=0.0, high=3600.0)
    watch_checkpoint: str = param("", "checkpoint file to watch for new weights (online training writes it); "
                                  "empty = the checkpoint file itself")


@dataclass
class OnlineTrainingParameters(CameraInputParameters):
    output_checkpoint: str = param("", "where the adapted weights are written (atomically); required; point the "
                                   "perception node's watch_checkpoint here")
    buffer_frames: int = param(300, "recent frames kept for training (at the model resolution)", low=3, high=100000)
    batch_size: int = param(4, "triplets per training step", low=1, high=256)
    checkpoint_every: int = param(20, "training steps between checkpoints", low=1, high=1000000)
    motion_evidence: bool = param(True, "components model: ~/moving_probability and ~/components average the masks "
                                  "with the optical flow's evidence of motion under the ego-motion (a few ms a "
                                  "frame on a CPU core); false: the masks alone, as in the paper")
    max_frame_gap: float = param(0.5, "seconds; frames further apart never form a triplet", low=1e-3, high=3600.0)
    min_triplets: int = param(4, "training waits until the buffer holds this many triplets", low=1, high=100000)
    learning_rate: float = param(0.0, "Adam learning rate; 0 = the checkpoint's", low=0.0, high=1.0)
    max_steps: int = param(0, "stop training after this many steps (0 = never)", low=0, high=1 << 40)
    status_period: float = param(1.0, "seconds between /diagnostics messages", low=0.05, high=60.0)
    pause_with: str = param("", "a lifecycle node (e.g. /mds_perception) whose state the training follows: paused "
                            "while that node is not active (empty = always train while active)")


def validate_value(name: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for perception parameter ``name``, or None."""
    return _validate_value(PerceptionParameters, name, value)


def _validate_value(cls: type, name: str, value: Any) -> str | None:
    spec = cls.spec(name)
    default = getattr(cls(), name)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            return f"{name} must be true or false, got {value!r}"
        return None
    if isinstance(default, (int, float)) and not isinstance(value, bool):
        if not isinstance(value, (int, float)) or (isinstance(default, int) and not isinstance(value, int)):
            return f"{name} must be a {type(default).__name__}, got {value!r}"
        if not math.isfinite(value):
            return f"{name} must be finite, got {value!r}"
        if spec["low"] is not None and value < spec["low"]:
            return f"{name} must be >= {spec['low']:g}, got {value!r}"
        if spec["high"] is not None and value > spec["high"]:
            return f"{name} must be <= {spec['high']:g}, got {value!r}"
    if spec["choices"] and value not in spec["choices"]:
        return f"{name} must be one of {', '.join(spec['choices'])}, got {value!r}"
    if name == "device":
        base = str(value).split(":", 1)
        if base[0] not in DEVICE_CHOICES or (len(base) == 2 and (base[0] != "cuda" or not base[1].isdigit())):
            return f"device must be auto, cpu, cuda or cuda:N, got {value!r}"
    if name in ("width", "height") and value % 32:
        return f"{name} must be 0 or a multiple of 32, got {value}"
    if name in ("image_topic", "camera_info_topic") and not str(value).strip():
        return f"{name} must not be empty"
    return None


def validate(parameters: CameraInputParameters) -> list[str]:
    """Every reason why ``parameters`` cannot start a node (empty when they can)."""
    cls = type(parameters)
    problems = [p for p in (cls.validate_value(n, getattr(parameters, n)) for n in cls.names()) if p]
    exported = isinstance(parameters, PerceptionParameters) and parameters.backend == "onnxruntime" \
        and parameters.onnx_model
    if not parameters.checkpoint and not exported:
        problems.append("checkpoint is not set: train a model first (`bash scripts/demo.sh` writes "
                        "outputs/ros_demo/model/run/checkpoints/last.pt, `mds train` writes your own) and pass "
                        "-p checkpoint:=PATH")
    if isinstance(parameters, OnlineTrainingParameters) and not parameters.output_checkpoint:
        problems.append("output_checkpoint is not set: the adapted weights need a file to go to")
    if isinstance(parameters, PerceptionParameters) and (parameters.width == 0) != (parameters.height == 0):
        problems.append("set both width and height, or neither (0 = the checkpoint's size)")
    if isinstance(parameters, PerceptionParameters) and parameters.depth_scale_mode == "camera_height" \
            and not parameters.camera_height > 0:
        problems.append("depth_scale_mode camera_height needs camera_height > 0 (metres from the road to the camera)")
    if parameters.camera_info_source == "parameters":
        values = parameters.intrinsics
        if len(values) != 4 or not all(math.isfinite(v) for v in values) or values[0] <= 0 or values[1] <= 0:
            problems.append(f"intrinsics must be [fx, fy, cx, cy] with fx, fy > 0 when camera_info_source is "
                            f"parameters, got {values}")
    if isinstance(parameters, PerceptionParameters) and (
            len(parameters.camera_in_base) != 6 or not all(math.isfinite(v) for v in parameters.camera_in_base)):
        problems.append(f"camera_in_base must be 6 finite numbers [x, y, z, roll, pitch, yaw], got "
                        f"{list(parameters.camera_in_base)}")
    size = parameters.intrinsics_size
    if len(size) != 2 or any(v < 0 for v in size) or (size[0] == 0) != (size[1] == 0):
        problems.append(f"intrinsics_size must be [width, height], both > 0 or both 0, got {list(size)}")
    return problems


def descriptor(cls: type, name: str):
    """The ``rcl_interfaces/ParameterDescriptor`` of field ``name``: description, range, read-only."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    spec = cls.spec(name)
    default = getattr(cls(), name)
    # the nodes are lifecycle nodes: a value fixed while the model runs may change while unconfigured
    # (mds_ros.lifecycle refuses it otherwise), so no parameter is read-only for rclpy
    fixed = "" if spec["dynamic"] else " [changes only while the node is unconfigured]"
    result = ParameterDescriptor(description=spec["description"] + fixed)
    if spec["choices"]:
        result.additional_constraints = "one of: " + ", ".join(spec["choices"])
    if spec["low"] is not None and isinstance(default, float):
        result.floating_point_range = [FloatingPointRange(from_value=float(spec["low"]), to_value=float(spec["high"]))]
    elif spec["low"] is not None and isinstance(default, int) and not isinstance(default, bool):
        result.integer_range = [IntegerRange(from_value=int(spec["low"]), to_value=int(spec["high"]))]
    return result


def declare_parameters(node: Any, cls: type) -> Any:
    """Declare every field of ``cls`` on ``node`` and return the values given (each value is checked
    here; the set together by :func:`validate` when the node is configured).

    Raises:
        StartupError: a value of the wrong type or out of its range.
    """
    for name in cls.names():
        try:
            node.declare_parameter(name, getattr(cls(), name), descriptor(cls, name))
        except Exception as error:  # rclpy raises several types for bad values; all mean "refused"
            raise StartupError(f"parameter {name}: {error}") from error
    return cls(**{name: node.get_parameter(name).value for name in cls.names()})


def refusal(cls: type, parameters: list) -> str | None:
    """Why a ``set_parameters`` request must be refused, or None (for on-set callbacks)."""
    reasons = [cls.validate_value(p.name, p.value) for p in parameters if p.name in cls.names()]
    reasons = [r for r in reasons if r]
    return "; ".join(reasons) if reasons else None
