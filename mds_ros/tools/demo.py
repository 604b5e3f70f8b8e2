"""``mds ros-demo``: the perception node on a replayed camera stream, end to end, on this machine.

1. a model: trained by ``mds demo`` on generated scenes (reused when it already exists);
2. a rosbag2 (MCAP) of a held-out generated drive: ``/camera/image_raw`` (rgb8),
   ``/camera/camera_info`` and ground-truth depth on ``/camera/depth_gt``;
3. the node and ``mds_replay``, each in its own process (the node list of the launch file,
   started by :mod:`mds_ros.tools.runner`), over Fast DDS on the loopback interface;
4. every output is recorded (``recorded/``, a rosbag2), and ``ros_demo.png`` (image | GT depth |
   depth | components overlay | moving probability | ground-truth movers) and ``summary.md``
   (frames in and out, latency, depth error against ground truth) are written.

With ``--bag`` a bag of the user's (e.g. real footage from ``mds bag-from-video``) is replayed instead
of the generated drive: the node subscribes to its one image stream and the CameraInfo beside it,
and its outputs are scored against the ground truth the bag carries, if any (``<namespace>/depth_gt``,
``<namespace>/motion_gt``); the picture leaves out the ground-truth columns it has not.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mds_core.data.sequence_folder import camera_moved
from mds_core.evaluation.metrics import DepthEvaluator, EvalSettings
from mds_core.evaluation.motion_segmentation import MotionSegmentationEvaluator
from mds_core.tools.demo import DemoSettings, run_demo
from mds_core.tools.synth import SynthConfig, write_rosbag
from mds_core.tools.synth.config import SCENES
from mds_core.visualization import colourise_depth, colourise_motion_labels, heat_map, panel, save_png

LOG = logging.getLogger(__name__)

IMAGE_TOPIC, INFO_TOPIC, GT_TOPIC = "/camera/image_raw", "/camera/camera_info", "/camera/depth_gt"
NODE = "/mds_perception"
#: The columns of ros_demo.png: the node's outputs beside the generator's ground truth.
PICTURE = ["image", "GT depth", "depth (node)", "components (node)", "moving probability (node)", "GT: moving red, parked blue"]


@dataclass
class RosDemoSettings:
    output: Path = Path("outputs/ros_demo")
    steps: int = 300  # training steps of the model, when it has to be trained
    frames: int = 40
    width: int = 384  # camera resolution of the replayed bag (the model runs at its own)
    height: int = 128
    fps: float = 10.0
    rate: float = 1.0  # replay speed factor
    seed: int = 0
    device: str = "auto"
    checkpoint: Path | None = None  # use this model instead of training one
    scene: str = "road"  # road, or city: crossing traffic, pedestrians, cyclists, and the camera stops halfway
    bag: Path | None = None  # replay this bag (e.g. real footage) instead of a generated drive


@dataclass
class ReplayedBag:
    """The bag the node is shown, and the topics of its frames and ground truth."""

    path: Path
    image_topic: str
    info_topic: str
    frames: int
    duration: float  # seconds of bag time
    depth_topic: str | None = None  # ground-truth depth (32FC1, metres, 0 = none)
    motion_topic: str | None = None  # ground-truth motion labels (mono8, 1 = moving)
    compressed: bool = False

    @property
    def stream(self) -> str:
        """The image topic without image_transport's ``/compressed``."""
        return self.image_topic.removesuffix("/compressed")

    @property
    def namespace(self) -> str:
        return self.stream.rsplit("/", 1)[0]


def user_bag(path: Path) -> ReplayedBag:
    """What the node needs of a user's bag: its one image stream, the CameraInfo next to it, ground truth.

    Raises:
        DataError: no bag, no or several image streams, no CameraInfo in the images' namespace.
    """
    from mds_core.data.rosbag.decode import COMPRESSED_TYPE, IMAGE_TYPE
    from mds_core.data.rosbag.reader import BagReader
    from mds_core.data.rosbag.topics import choose_camera_info_topic, choose_image_topic
    from mds_core.data.sequence_folder import DataError
    from mds_core.tools.footage_bag import DEPTH_TOPIC, MOTION_TOPIC

    reader = BagReader(path)
    image_topic = choose_image_topic(reader.topics, "", str(path))
    info_topic = choose_camera_info_topic(reader.topics, image_topic, "", str(path))
    stream = image_topic.removesuffix("/compressed")
    namespace = stream.rsplit("/", 1)[0]
    if info_topic != f"{namespace}/camera_info":
        raise DataError(f"{path}: the node needs a CameraInfo on {namespace}/camera_info beside {image_topic} "
                        f"(the bag has {info_topic or 'none'})")
    compressed = reader.topics[image_topic].msgtype == COMPRESSED_TYPE
    if compressed and image_topic != f"{stream}/compressed":
        raise DataError(f"{path}: compressed images must be on <topic>/compressed (image_transport's name), "
                        f"not {image_topic}")

    def ground_truth(topic: str) -> str | None:
        entry = reader.topics.get(f"{namespace}/{topic}")
        return entry.name if entry is not None and entry.msgtype == IMAGE_TYPE and entry.count else None

    return ReplayedBag(path=path, image_topic=image_topic, info_topic=info_topic,
                       frames=int(reader.topics[image_topic].count or 0), duration=float(reader.duration or 0.0),
                       depth_topic=ground_truth(DEPTH_TOPIC), motion_topic=ground_truth(MOTION_TOPIC),
                       compressed=compressed)


def output_topics() -> dict[str, type]:
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseArray, PoseStamped
    from nav_msgs.msg import Odometry, Path
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    from visualization_msgs.msg import MarkerArray

    return {f"{NODE}/depth/image": Image, f"{NODE}/depth/camera_info": CameraInfo, f"{NODE}/labels": Image,
            f"{NODE}/overlay": Image, f"{NODE}/masks": Image, f"{NODE}/moving_probability": Image,
            f"{NODE}/independent_flow": Image, f"{NODE}/motions": PoseArray, f"{NODE}/ego_motion": PoseStamped,
            f"{NODE}/odometry": Odometry, f"{NODE}/path": Path, f"{NODE}/components": MarkerArray,
            f"{NODE}/points": PointCloud2,
            "/diagnostics": DiagnosticArray}


def ensure_model(settings: RosDemoSettings) -> Path:
    if settings.checkpoint is not None:
        return settings.checkpoint
    folder = settings.output / ("model" if settings.scene == "road" else f"model_{settings.scene}")  # one per scene
    checkpoint = folder / "run" / "checkpoints" / "last.pt"
    if not checkpoint.exists():
        LOG.info(f"training the demo model (mds demo, {settings.steps} steps) into {checkpoint.parent.parent}")
        run_demo(DemoSettings(output=folder, steps=settings.steps, seed=settings.seed, scene=settings.scene))
    return checkpoint


def run_ros_demo(settings: RosDemoSettings) -> str:
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image

    from mds_ros.tools.launch_file import load_launch
    from mds_ros.tools.session import NodeSession

    out = settings.output
    out.mkdir(parents=True, exist_ok=True)
    bag = user_bag(settings.bag) if settings.bag is not None else None  # a bad bag is refused before training
    checkpoint = ensure_model(settings)
    recorded_path = out / "recorded"
    shutil.rmtree(recorded_path, ignore_errors=True)
    movers, still = {}, set()  # ground-truth motion labels by stamp, for the picture; stamps of a standing camera
    if bag is None:
        bag = _generated_drive(settings, movers, still)
    topics = {**output_topics(), bag.image_topic: CompressedImage if bag.compressed else Image,
              bag.info_topic: CameraInfo}
    for topic in (bag.depth_topic, bag.motion_topic):
        if topic is not None:
            topics[topic] = Image
    arguments = {"checkpoint": str(checkpoint), "device": settings.device, "camera_namespace": bag.namespace,
                 "image_topic": bag.stream.removeprefix(bag.namespace + "/")}
    specs = load_launch("mds.launch.xml", arguments)
    if bag.compressed:  # the node reads image_transport's compressed stream
        for spec in specs:
            if spec.executable == "mds_node":
                spec.parameters["input_transport"] = "compressed"
    with NodeSession(specs, topics, out / "logs", input_topics=(bag.image_topic, bag.info_topic)) as session:
        wall = session.replay(bag.path, bag.frames, bag.duration, settings.rate)
    session.recorder.write_bag(recorded_path)
    if bag.motion_topic is not None and not movers:
        movers.update({_stamp(m): _image(m) for m in session.recorder.messages(bag.motion_topic)})
    return _report(settings, session.recorder, bag, checkpoint, wall, movers, still)


def _generated_drive(settings: RosDemoSettings, movers: dict[int, np.ndarray], still: set[int]) -> ReplayedBag:
    """Write the held-out generated drive as ``OUTPUT/bag``, its movers and standing stamps into ``movers`` and
    ``still``."""
    path = settings.output / "bag"
    shutil.rmtree(path, ignore_errors=True)
    synth = SynthConfig(width=settings.width, height=settings.height, num_frames=settings.frames,
                        fps=settings.fps, seed=settings.seed + 5000, **demo_scene(settings.scene))
    previous = []

    def keep(frame) -> None:
        movers[frame.timestamp_ns] = frame.motion
        if previous and not camera_moved(previous[-1], frame.camera_pose):
            still.add(frame.timestamp_ns)
        previous.append(frame.camera_pose)

    write_rosbag(path, synth, depth_topic=GT_TOPIC, on_frame=keep)
    return ReplayedBag(path=path, image_topic=IMAGE_TOPIC, info_topic=INFO_TOPIC, frames=settings.frames,
                       duration=synth.duration, depth_topic=GT_TOPIC)


def _size(images: dict) -> str:
    """``WxH`` of the replayed images (raw or compressed), or ``?`` when none was recorded."""
    if not images:
        return "?"
    rgb = _image(next(iter(images.values())))
    return f"{rgb.shape[1]}x{rgb.shape[0]}"


def _stamp(message) -> int:
    return message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec


def _image(message) -> np.ndarray:
    from sensor_msgs.msg import CompressedImage

    from mds_ros.conversions import compressed_to_rgb, image_to_rgb

    if isinstance(message, CompressedImage):
        return compressed_to_rgb(message)

    if message.encoding == "32FC1":
        return np.frombuffer(bytes(message.data), dtype=np.float32).reshape(message.height, message.width)
    if message.encoding == "mono8":
        return np.frombuffer(bytes(message.data), dtype=np.uint8).reshape(message.height, message.width)
    return image_to_rgb(message)


def demo_scene(scene: str) -> dict:
    """The generator's options of the replayed drive: a city drive stops halfway, always."""
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {sorted(SCENES)}, got {scene!r}")
    options = dict(SCENES[scene])
    if "camera_stop_probability" in options:
        options["camera_stop_probability"] = 1.0
    return options


def _report(settings: RosDemoSettings, recorder, bag: ReplayedBag, checkpoint: Path, wall: float,
            movers: dict[int, np.ndarray], still: set[int]) -> str:
    from mds_core.inference.predictor import MASK_SHARE
    from mds_ros.tools.session import output_delivery

    images = {_stamp(m): m for m in recorder.messages(bag.image_topic)}
    gts = {_stamp(m): m for m in recorder.messages(bag.depth_topic)} if bag.depth_topic else {}
    depths = recorder.messages(f"{NODE}/depth/image")
    moving = {_stamp(m): m for m in recorder.messages(f"{NODE}/moving_probability")}
    overlays = {_stamp(m): m for m in recorder.messages(f"{NODE}/overlay")}
    values = recorder.latest_status("mds_perception")
    evaluator, scored, complete = DepthEvaluator(EvalSettings()), 0, []
    for depth_msg in depths:
        stamp = _stamp(depth_msg)
        depth = _image(depth_msg)
        gt = None
        if stamp in gts:
            gt = cv2.resize(_image(gts[stamp]), (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_NEAREST)
            scored += evaluator.add(depth, gt)
        pictured = all(stamp in found or not found for found in (gts, movers))  # every ground truth the bag has
        if stamp in overlays and stamp in moving and stamp in images and pictured:
            complete.append((depth, gt, stamp))
    evaluation = evaluator.result() if scored else None
    motion, standing = MotionSegmentationEvaluator(), MotionSegmentationEvaluator()
    for stamp, message in moving.items():
        if stamp in movers:
            probability = _image(message)
            size = (probability.shape[1], probability.shape[0])
            labels = cv2.resize(movers[stamp], size, interpolation=cv2.INTER_NEAREST)
            for evaluator in (motion, standing) if stamp in still else (motion,):
                evaluator.add(np.clip(probability, 0.0, 1.0), labels)
    columns = [c for c in PICTURE if (c != "GT depth" or gts) and (not c.startswith("GT:") or movers)]
    if movers and settings.bag is not None:  # a user's labels: moving or not
        columns[-1] = "GT movers (red)"
    rows = []
    for depth, gt, stamp in complete[len(complete) // 6::max(1, len(complete) // 3)][:3]:  # up to 3, spread out
        size = (depth.shape[1], depth.shape[0])
        rows += [cv2.resize(_image(images[stamp]), size, interpolation=cv2.INTER_AREA)]
        rows += [colourise_depth(gt)] if gts else []
        rows += [colourise_depth(depth), _image(overlays[stamp]), heat_map(_image(moving[stamp]))]
        if movers:
            rows += [colourise_motion_labels(cv2.resize(movers[stamp], size, interpolation=cv2.INTER_NEAREST))]
    if rows:
        save_png(settings.output / "ros_demo.png", panel(rows, columns=len(columns),
                                                         labels=columns * (len(rows) // len(columns))))
    counts = {topic.rsplit(NODE, 1)[-1] or topic: recorder.count(topic) for topic in output_topics()}
    latency = " | ".join(f"{stage} {values.get(f'latency_{stage}_median_ms', '-')} / "
                         f"{values.get(f'latency_{stage}_p99_ms', '-')}"
                         for stage in ("conversion", "network", "publish", "total"))
    lines = [
        "# mds ros-demo",
        "",
        f"Model: {checkpoint} on {values.get('device')} (input {values.get('input_size')}, "
        f"K={values.get('components')}).",
        f"Replayed {len(images)} frames of {_size(images)} from {bag.path} at "
        f"{settings.rate * max(bag.frames - 1, 1) / max(bag.duration, 1e-9):.3g} frames/s through the node in "
        f"separate processes ({wall:.1f} s).",
        f"Frames in: {values.get('frames_received')}; processed: {values.get('frames_processed')}; dropped "
        f"(newest kept): {values.get('frames_dropped')}; malformed: {values.get('malformed_messages')}; "
        f"resets: {values.get('resets')}.",
        "Messages per output topic: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".",
        "Outputs" + output_delivery(recorder).removeprefix("outputs") + ".",
        f"Latency median / p99 (ms): {latency}.",
        f"Depth error against ground truth (abs rel, per-frame median scaling, {evaluation.num_images} frames): "
        f"{evaluation.overall.abs_rel:.3f}." if evaluation else
        "Depth error against ground truth: " + ("no frame to score." if gts else "the bag has no ground-truth depth."),
        _motion_line(motion.result()) if movers else "Moving probability: the bag has no ground-truth motion labels.",
        *([_still_line(standing.result())] if still else []),
        "",
        f"Pictures: {settings.output / 'ros_demo.png'}: {' | '.join(columns)}. In the node's components the static "
        "scene (the background component) is grey and every other component has a colour of its own; the moving "
        f"probability (1 - the background's mask, weighed {MASK_SHARE:g} : {1 - MASK_SHARE:g} with the optical flow's "
        "evidence, accumulated along the flow) goes from black (0) through red (0.5) to yellow (1).",
        f"Recorded outputs (rosbag2 MCAP): "
        f"{settings.output / 'recorded'}; node log: {settings.output / 'logs' / 'mds_perception.log'}.",
    ]
    summary = "\n".join(lines)
    (settings.output / "summary.md").write_text(summary + "\n")
    return summary


def _still_line(result) -> str:
    """The moving probability on the frames where the camera stood still."""
    if not result.has_positives:
        return "With the camera standing still: no processed frame with a moving object to score."
    prevalence = result.num_positive / max(1, result.num_positive + result.num_negative)
    return (f"With the camera standing still ({result.num_images} frames): AP {result.average_precision:.3f} "
            f"(a random score: {prevalence:.3f}), best F1 {result.best_f1:.3f} "
            f"(calling everything moving: {2 * prevalence / (1 + prevalence):.3f}).")


def _motion_line(result) -> str:
    """How well the node's moving probability picks out the ground-truth movers, next to chance."""
    if not result.has_positives:
        return "Moving probability against ground truth: no frame with a moving car to score."
    prevalence = result.num_positive / max(1, result.num_positive + result.num_negative)
    everything = 2 * prevalence / (1 + prevalence)
    return (f"Moving probability against the ground-truth movers ({result.num_images} frames): AP "
            f"{result.average_precision:.3f} (a random score: {prevalence:.3f}), best F1 {result.best_f1:.3f} at "
            f"{result.best_threshold:.2f} (calling everything moving: {everything:.3f}). The demo model is trained "
            "for minutes, so its masks are soft: the movers stand out in the moving probability at a few tenths, "
            "not at 1.")
