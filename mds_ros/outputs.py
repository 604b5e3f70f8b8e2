"""The perception node's output topics, and the messages built from one :class:`StreamOutput`.

Every message carries the input image's header (stamp and frame_id). An output is computed only
while it is enabled and someone subscribes to it, so an unwatched point cloud costs nothing.

=========================  ===================================  ==================================
topic (node-private)       type                                 content
=========================  ===================================  ==================================
``~/depth/image``          sensor_msgs/Image ``32FC1``           depth along the optical axis,
                                                                NaN where invalid (REP 118)
``~/depth/camera_info``    sensor_msgs/CameraInfo               intrinsics at the depth image size
``~/labels``               sensor_msgs/Image ``mono8``           argmax component per pixel
                                                                (scene flow: 1 moving, 0 static)
``~/overlay``              sensor_msgs/Image ``rgb8``            decomposition colours over the image
                                                                (scene flow: moving probability)
``~/masks``                sensor_msgs/Image ``32FC<K>``         channel k = soft mask of component k
                                                                (scene flow: static, moving)
``~/moving_probability``   sensor_msgs/Image ``32FC1``           probability that the point moves
                                                                (components: 1 - background mask)
``~/independent_flow``     sensor_msgs/Image ``32FC3``           scene flow only: x, y, z motion of
                                                                each point not explained by the
                                                                ego-motion, camera frame, depth
                                                                units per frame
``~/motions``              geometry_msgs/PoseArray              pose k = motion of component k,
                                                                previous -> current camera frame
                                                                (scene flow: the ego-motion)
``~/ego_motion``           geometry_msgs/PoseStamped            the camera's motion, previous ->
                                                                current camera frame
``~/odometry``             nav_msgs/Odometry                    the ego-motion chained: pose of the
                                                                camera (or ``base_frame``) in
                                                                ``odom_frame``, twist over the frame
``~/path``                 nav_msgs/Path                        the recent odometry poses
``~/components``           visualization_msgs/MarkerArray       per moving object: an arrow from its
                                                                centroid along its own velocity
                                                                (one second long) and its speed
``~/points``               sensor_msgs/PointCloud2              organised x, y, z, rgb (coloured
                                                                like the overlay)
=========================  ===================================  ==================================

Translations and flows are in the depth's output units (``depth_scale_mode``). With the
camera-height scale, until the first ground plane is found the depth is all NaN and no motion
is published (their units are not known yet). The scene-flow
model's outputs of a frame are published when the next frame has arrived (its motion mask needs
it), stamped with the frame they describe.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from geometry_msgs.msg import Point, PoseArray, PoseStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from mds_core.evaluation.odometry import OdometryStep
from mds_core.inference.moving_objects import MovingObject, moving_objects
from mds_core.inference.predictor import Prediction
from mds_core.inference.streaming import StreamOutput
from mds_core.visualization import colourise_masks, colourise_moving_probability, component_colours, overlay
from mds_ros.conversions import (
    float_image_msg,
    image_msg,
    mono8_msg,
    point_cloud_msg,
    pose_array_msg,
    pose_msgs,
    rgb8_msg,
    scaled_camera_info,
    set_header,
)
from mds_ros.frames import OdometryFrames, transform_msg
from mds_ros.parameters import PerceptionParameters


@dataclass
class OutputFrame:
    """What the publishers need of one processed frame."""

    header: object  # std_msgs/Header of the input image
    image: np.ndarray  # (H, W, 3) uint8 RGB input image
    camera_info: CameraInfo | None  # the paired input camera info (None with intrinsics from parameters)
    result: StreamOutput
    depth_scale: float = 1.0  # published units per network depth unit; NaN: not known yet (no metric output)
    odometry: OdometryStep | None = None  # the chained ego-motion after this frame (None: none this frame)


@dataclass
class OutputBatch:
    """Every message of one frame, built before any is sent: a frame is published whole or not at all."""

    sends: list[tuple[Callable[[Any], None], Any]] = field(default_factory=list)

    def add(self, send: Callable[[Any], None], message: Any) -> None:
        self.sends.append((send, message))

    def publish(self) -> None:
        for send, message in self.sends:
            send(message)


def output_bytes_per_frame(width: int, height: int, mask_channels: int, scene_flow: bool) -> int:
    """The image payload of one frame with every output subscribed: depth, moving probability (4 bytes a
    pixel each), masks (4 a channel), point cloud (16), overlay (3), labels (1), scene flow (12)."""
    return width * height * (28 + 4 * mask_channels + (12 if scene_flow else 0))


def depth_in_output_units(depth: np.ndarray, scale: float, out: np.ndarray | None = None) -> np.ndarray:
    """Network depth -> published depth (float32, into ``out`` when given): times ``scale``, NaN where not
    positive finite (all NaN while the scale is not known)."""
    out = np.multiply(depth, np.float32(scale), out=out, dtype=np.float32, casting="unsafe")
    valid = out > 0  # false for NaN
    valid &= out < np.inf
    np.copyto(out, np.float32(np.nan), where=~valid)
    return out


def transforms_in_output_units(transforms: np.ndarray, scale: float) -> np.ndarray:
    """``(K, 4, 4)`` rigid motions with their translations in the depth's output units."""
    out = np.array(transforms, dtype=np.float64)
    out[:, :3, 3] *= scale
    return out


def motion_colours(prediction: Prediction) -> np.ndarray:
    """``(h, w, 3)`` colours of the motion: the components' colours, or the scene flow's moving probability."""
    if prediction.independent_flow is not None:
        return colourise_moving_probability(prediction.moving_probability)
    return colourise_masks(prediction.masks, prediction.background)


def odometry_msg(step: OdometryStep, header, odom_frame: str, child_frame: str, out: Odometry | None = None
                 ) -> Odometry:
    """``nav_msgs/Odometry``: the pose of ``child_frame`` (the camera's or the base frame) in ``odom_frame``
    and its velocity in ``child_frame`` (written into ``out`` when given)."""
    message = Odometry() if out is None else out
    set_header(message.header, header).frame_id = odom_frame
    message.child_frame_id = child_frame
    pose_msgs(step.pose[None], out=[message.pose.pose])
    (message.twist.twist.linear.x, message.twist.twist.linear.y, message.twist.twist.linear.z) = \
        (float(v) for v in step.linear)
    (message.twist.twist.angular.x, message.twist.twist.angular.y, message.twist.twist.angular.z) = \
        (float(v) for v in step.angular)
    return message


class PathHistory:
    """The recent odometry poses, and when ``~/path`` is due: a long path costs milliseconds to build and
    send, so it goes out at most every ``path_publish_period`` seconds while ``~/odometry`` comes every
    frame. Each pose becomes a ``PoseStamped`` once, when it is first sent: all of those since the last
    path together, rather than one a frame right after the networks, when Python's caches are cold."""

    @dataclass
    class _Entry:
        stamp: object  # builtin_interfaces/Time of the frame
        frame_id: str  # the odometry frame
        pose: np.ndarray  # (4, 4) world_from_camera
        message: PoseStamped | None = None  # built when first sent

    def __init__(self, length: int):
        self._entries: deque[PathHistory._Entry] = deque(maxlen=length)
        self._sent: float | None = None  # time.monotonic() of the last ~/path

    def add(self, stamp, world_from_camera: np.ndarray, odom_frame: str) -> None:
        self._entries.append(self._Entry(stamp, odom_frame, world_from_camera))

    @property
    def poses(self) -> list[PoseStamped]:
        """The poses as messages, oldest first."""
        pending = [entry for entry in self._entries if entry.message is None]
        if pending:
            for entry, pose in zip(pending, pose_msgs(np.stack([entry.pose for entry in pending]))):
                entry.message = PoseStamped(header=Header(stamp=entry.stamp, frame_id=entry.frame_id), pose=pose)
        return [entry.message for entry in self._entries]

    def due(self, period: float, now: float) -> bool:
        """Whether a ``~/path`` should go out now (and if so, it counts as sent)."""
        if self._sent is not None and now - self._sent < period:
            return False
        self._sent = now
        return True

    def message(self, header, odom_frame: str) -> Path:
        """``nav_msgs/Path`` of the poses in ``odom_frame``, stamped like ``header``."""
        message = Path()
        message.header.stamp = header.stamp
        message.header.frame_id = odom_frame
        message.poses = list(self.poses)
        return message


def path_msg(poses: list[tuple[object, np.ndarray]], header, odom_frame: str) -> Path:
    """``nav_msgs/Path`` of ``(stamp, world_from_camera)`` in ``odom_frame``, stamped like ``header``."""
    history = PathHistory(len(poses))
    for stamp, pose in poses:
        history.add(stamp, pose, odom_frame)
    return history.message(header, odom_frame)


MARKER_NAMESPACE = "mds_components"
MOVING_COLOUR = (230, 40, 40)  # the scene flow's moving colour (colourise_moving_probability)


def component_markers(objects: list[MovingObject], header, units: str, num_components: int,
                      kept: list[Marker] | None = None, background: int | None = None) -> MarkerArray:
    """``MarkerArray`` of the moving objects in the image's frame: a DELETEALL first (objects that are gone
    disappear), then per object an arrow from its centroid to where its own velocity takes it in one second
    and a text with its speed. Sizes follow the object's distance, so they read in any depth units.

    ``kept``: the markers of earlier frames, filled in again (a Marker is slow to build); markers this
    frame needs beyond them are added to it. Marker ``2n + 1`` is always an arrow, ``2n + 2`` a text.
    Colours are those of the overlay (``background``: the background component, grey)."""
    kept = [] if kept is None else kept
    kept.extend(Marker() for _ in range(len(kept), 1 + 2 * len(objects)))
    clear = kept[0]
    set_header(clear.header, header)
    clear.ns, clear.action = MARKER_NAMESPACE, Marker.DELETEALL
    colours = component_colours(num_components, background)  # those of the overlay
    for n, obj in enumerate(objects):
        colour = colours[obj.component] if num_components > 1 else MOVING_COLOUR
        size = max(float(obj.centroid[2]), 1e-3) * 0.02
        arrow, text = kept[1 + 2 * n], kept[2 + 2 * n]
        for marker in (arrow, text):
            set_header(marker.header, header)
            marker.ns, marker.action = MARKER_NAMESPACE, Marker.ADD
            marker.color.r, marker.color.g, marker.color.b = (float(c) / 255.0 for c in colour)
            marker.color.a = 1.0
            marker.pose.orientation.w = 1.0
        arrow.id, arrow.type = 2 * obj.id, Marker.ARROW
        if len(arrow.points) != 2:
            arrow.points = [Point(), Point()]
        start, end = arrow.points
        start.x, start.y, start.z = (float(v) for v in obj.centroid)
        end.x, end.y, end.z = (float(v) for v in obj.centroid + obj.velocity)
        arrow.scale.x, arrow.scale.y, arrow.scale.z = size, 2.0 * size, 3.0 * size  # shaft, head width, head
        text.id, text.type = 2 * obj.id + 1, Marker.TEXT_VIEW_FACING
        text.pose.position.x, text.pose.position.y, text.pose.position.z = \
            start.x, start.y - 4.0 * size, start.z  # above the centroid (optical y points down)
        text.scale.z = 3.0 * size
        text.text = f"{obj.speed:.1f} {units}"
    return MarkerArray(markers=kept[:1 + 2 * len(objects)])


def pose_stamped_msg(transform: np.ndarray, header, out: PoseStamped | None = None) -> PoseStamped:
    """A ``PoseStamped`` of one ``(4, 4)`` rigid transform, with a copy of ``header`` (into ``out`` when given)."""
    message = PoseStamped() if out is None else out
    set_header(message.header, header)
    pose_msgs(transform[None], out=[message.pose])
    return message


class OutputPublishers:
    def __init__(self, node: Node, reliability: str, frames: OdometryFrames, path_length: int = 1000,
                 depth: int = 10):
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT)
        # a lifecycle node's publishers send only while it is active
        create = getattr(node, "create_lifecycle_publisher", node.create_publisher)
        self.depth = create(Image, "~/depth/image", qos)
        self.depth_info = create(CameraInfo, "~/depth/camera_info", qos)
        self.labels = create(Image, "~/labels", qos)
        self.overlay = create(Image, "~/overlay", qos)
        self.masks = create(Image, "~/masks", qos)
        self.moving_probability = create(Image, "~/moving_probability", qos)
        self.independent_flow = create(Image, "~/independent_flow", qos)
        self.motions = create(PoseArray, "~/motions", qos)
        self.ego_motion = create(PoseStamped, "~/ego_motion", qos)
        self.odometry = create(Odometry, "~/odometry", qos)
        self.path = create(Path, "~/path", qos)
        self.points = create(PointCloud2, "~/points", qos)
        self.components = create(MarkerArray, "~/components", qos)
        self._publishers = [self.depth, self.depth_info, self.labels, self.overlay, self.masks,
                            self.moving_probability, self.independent_flow, self.motions, self.ego_motion,
                            self.odometry, self.path, self.points, self.components]
        self._tf = None
        self._static_tf = None  # the static broadcaster once base -> camera has been sent
        self._frames = frames
        self._node = node
        self.path_history = PathHistory(path_length)
        self._depth_info: tuple[tuple, CameraInfo] | None = None  # (what it was built from, the message)
        # one message per output, filled in again every frame: rclpy serialises a message while publishing
        # it, so the next frame can write into the same one (and its pixel buffer) instead of building anew
        self._kept: dict[str, Any] = {}
        self._kept_markers: list[Marker] = []

    def _message(self, output: str, kind: type) -> Any:
        """The kept message of ``output`` (created on first use)."""
        message = self._kept.get(output)
        if message is None:
            message = self._kept[output] = kind()
        return message

    def subscribed(self) -> int:
        """How many output topics have at least one subscriber matched (this node's side of discovery)."""
        return sum(publisher.get_subscription_count() > 0 for publisher in self._publishers)

    def destroy(self) -> None:
        """Remove every output topic (a lifecycle cleanup)."""
        destroy = getattr(self._node, "destroy_lifecycle_publisher", self._node.destroy_publisher)
        for publisher in self._publishers:
            destroy(publisher)
        self._publishers = []

    @staticmethod
    def _wanted(enabled: bool, *publishers) -> bool:
        return enabled and any(p.get_subscription_count() > 0 for p in publishers)

    def publish(self, frame: OutputFrame, settings: PerceptionParameters) -> None:
        """Build every output message of ``frame``, then send them all (nothing is sent when one fails)."""
        self.build(frame, settings).publish()

    def build(self, frame: OutputFrame, settings: PerceptionParameters) -> OutputBatch:
        """Every wanted output message of ``frame``, not sent yet.

        Raises:
            ValueError: a message cannot be built (non-finite intrinsics and the like).
        """
        batch = OutputBatch()
        prediction, header = frame.result.prediction, frame.header
        want_points = self._wanted(settings.publish_point_cloud, self.points)
        want_depth = self._wanted(settings.publish_depth, self.depth, self.depth_info)
        scale, metric = frame.depth_scale, math.isfinite(frame.depth_scale)
        depth = None
        if want_depth:  # computed straight into the message
            message, depth = image_msg(prediction.depth.shape, "<f4", "32FC1", header, self._message("depth", Image))
            depth_in_output_units(prediction.depth, scale, out=depth)
            size = (depth.shape[1], depth.shape[0])
            batch.add(self.depth.publish, message)
            batch.add(self.depth_info.publish, self._depth_camera_info(frame.camera_info, prediction.intrinsics,
                                                                       header, size))
        # motions need the depth's units: none are published while the camera-height scale is not known
        transforms = None if prediction.transforms is None or not metric else \
            transforms_in_output_units(prediction.transforms, scale)
        if metric and prediction.ego_motion is not None and self._wanted(settings.publish_ego_motion, self.ego_motion):
            ego = transforms_in_output_units(prediction.ego_motion[None], scale)[0]
            batch.add(self.ego_motion.publish, pose_stamped_msg(ego, header, self._message("ego_motion", PoseStamped)))
        if transforms is not None and self._wanted(settings.publish_motions, self.motions):
            batch.add(self.motions.publish, pose_array_msg(transforms, header, self._message("motions", PoseArray)))
        child_frame = self._frames.child(header.frame_id)
        if frame.odometry is not None and self._wanted(settings.publish_odometry, self.odometry):
            batch.add(self.odometry.publish, odometry_msg(frame.odometry, header, settings.odom_frame, child_frame,
                                                          self._message("odometry", Odometry)))
        if frame.odometry is not None:
            self.path_history.add(header.stamp, frame.odometry.pose, settings.odom_frame)
            if self._wanted(settings.publish_odometry, self.path) and \
                    self.path_history.due(settings.path_publish_period, time.monotonic()):
                batch.add(self.path.publish, self.path_history.message(header, settings.odom_frame))
        if frame.odometry is not None and settings.publish_odom_tf:
            self._add_odometry_tf(batch, frame.odometry, header, settings.odom_frame, child_frame)
        if self._wanted(settings.publish_components, self.components):
            # nothing while the units are unknown; the DELETEALL still clears what was shown
            objects = moving_objects(prediction, frame.result.gap or 0.0, scale, settings.component_min_pixels,
                                     settings.moving_threshold) if metric else []
            units = "units/s" if settings.depth_scale_mode == "none" else "m/s"
            kinds = 1 if prediction.independent_flow is not None or prediction.masks is None else len(prediction.masks)
            markers = component_markers(objects, header, units, kinds, self._kept_markers, prediction.background)
            batch.add(self.components.publish, markers)
        if prediction.masks is None:
            return batch  # no linked neighbours (first frame after a reset): depth (and ego-motion) only
        if self._wanted(settings.publish_labels, self.labels):
            batch.add(self.labels.publish, mono8_msg(prediction.labels, header, self._message("labels", Image)))
        if self._wanted(settings.publish_masks, self.masks):
            batch.add(self.masks.publish, float_image_msg(prediction.masks, header, self._message("masks", Image)))
        if self._wanted(settings.publish_moving_probability, self.moving_probability):
            batch.add(self.moving_probability.publish, float_image_msg(prediction.moving_probability, header,
                                                                       self._message("moving_probability", Image)))
        if metric and prediction.independent_flow is not None and self._wanted(settings.publish_independent_flow,
                                                                               self.independent_flow):
            flow = prediction.independent_flow * np.float32(scale)
            batch.add(self.independent_flow.publish, float_image_msg(flow, header,
                                                                     self._message("independent_flow", Image)))
        want_overlay = self._wanted(settings.publish_overlay, self.overlay)
        if want_points and depth is None:
            depth = depth_in_output_units(prediction.depth, scale)
        if want_overlay or want_points:
            height, width = prediction.depth.shape
            small = frame.result.image  # what the networks saw
            if small is None or small.shape[:2] != (height, width):
                small = cv2.resize(frame.image, (width, height), interpolation=cv2.INTER_AREA)
            coloured = overlay(small, motion_colours(prediction), settings.overlay_alpha)
            if want_overlay:
                batch.add(self.overlay.publish, rgb8_msg(coloured, header, self._message("overlay", Image)))
            if want_points:
                batch.add(self.points.publish, point_cloud_msg(depth, prediction.intrinsics, coloured, header,
                                                               self._message("points", PointCloud2)))
        if transforms is not None and settings.publish_tf and self._tf_broadcaster() is not None:
            batch.add(self._tf.sendTransform, self._tf_messages(transforms, header))
        return batch

    def _depth_camera_info(self, info: CameraInfo | None, intrinsics: np.ndarray, header, size: tuple[int, int]
                           ) -> CameraInfo:
        """:func:`scaled_camera_info`, built once per camera and size; later frames get it with their header."""
        key = (None if info is None else (info.distortion_model, tuple(info.d)), np.asarray(intrinsics).tobytes(), size)
        if self._depth_info is None or self._depth_info[0] != key:
            self._depth_info = (key, scaled_camera_info(info, intrinsics, header, size))
        message = self._depth_info[1]
        set_header(message.header, header)
        return message

    def _add_odometry_tf(self, batch: OutputBatch, step: OdometryStep, header, odom_frame: str,
                         child_frame: str) -> None:
        """``odom -> child`` on /tf every frame; ``base -> camera`` on /tf_static once (with a base frame)."""
        if self._tf_broadcaster() is None:
            return
        batch.add(self._tf.sendTransform, [transform_msg(step.pose, header.stamp, odom_frame, child_frame)])
        mounting = self._frames.camera_tf(header.stamp, header.frame_id)
        if mounting is not None and self._static_tf is None:
            from tf2_ros import StaticTransformBroadcaster

            self._static_tf = StaticTransformBroadcaster(self._node)
            batch.add(self._static_tf.sendTransform, [mounting])

    def _tf_broadcaster(self) -> Any:
        """The TF broadcaster, created on first use; None (with one warning) without tf2_ros."""
        if self._tf is None:
            try:
                from tf2_ros import TransformBroadcaster
            except ImportError:
                self._node.get_logger().warning("publish_tf or publish_odom_tf is set but tf2_ros is not "
                                                "importable: no TF frames", once=True)
                return None
            self._tf = TransformBroadcaster(self._node)
        return self._tf

    @staticmethod
    def _tf_messages(transforms: np.ndarray, header) -> list[TransformStamped]:
        """``<frame_id>/mds_component_<k>``: where component k's motion moves the camera-frame origin."""
        return [transform_msg(transform, header.stamp, header.frame_id, f"{header.frame_id}/mds_component_{k}")
                for k, transform in enumerate(transforms)]
