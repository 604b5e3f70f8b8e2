"""``mds_node``: depth and scene decomposition of a camera stream.

A thin adapter: message -> RGB array (:mod:`mds_ros.conversions`) -> :class:`FrameStream`
around the core :class:`~mds_core.inference.predictor.Predictor` -> output messages
(:mod:`mds_ros.outputs`). Subscription callbacks only pair images with camera infos and leave
the newest pair in a one-frame mailbox; a worker thread takes it from there, so when inference
is slower than the camera older frames are dropped (and counted), never queued.

Hardening: every message is checked in the subscription callback before it may enter the
mailbox (:func:`~mds_ros.camera_input.check_frame`: sizes, encoding, step, data length,
compressed-image header, camera info), so a malformed message is counted as malformed and never
takes a valid frame's place; a frame that passes those checks and still fails to decode gives
way to the newest frame it displaced that does decode. Nothing one frame does stops the worker: any exception
is counted and logged once per cause. If the worker stops all the same, ``/diagnostics`` says
ERROR and the process exits with status 1, so a launch ``respawn`` restarts it.

Run: ``ros2 run mds mds_node --ros-args -p checkpoint:=model.pt -r image:=/camera/image_raw``
(or ``python -m mds_ros.perception_node`` without a ROS install).
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CameraInfo

from mds_core.checkpoint import CheckpointError
from mds_core.evaluation.odometry import OdometryChain, OdometryStep
from mds_core.inference.heap import retain_freed_memory
from mds_core.inference.predictor import Prediction, Predictor
from mds_core.inference.streaming import FrameStream, StreamSettings
from mds_core.method.metric_scale import ScaleTracker, camera_height_scale
from mds_ros.camera_input import CameraSubscription, ParameterIntrinsics, check_frame, decode_frame, subscribe_camera
from mds_ros.conversions import ImageConversionError
from mds_ros.diagnostics import CauseLog, DiagnosticsReporter, NodeStatistics, clip_problem
from mds_ros.frames import OdometryFrames
from mds_ros.lifecycle import ManagedNode
from mds_ros.middleware import shared_memory_segment_bytes, uses_fast_dds
from mds_ros.outputs import OutputFrame, OutputPublishers, output_bytes_per_frame
from mds_ros.pairing import stamp_nanoseconds
from mds_ros.parameters import PerceptionParameters, StartupError
from mds_ros.spin import spin_nodes

NODE_NAME = "mds_perception"


@dataclass
class PendingFrame:
    image: Any  # sensor_msgs/Image or CompressedImage
    info: CameraInfo | None
    received: float  # time.perf_counter() when it arrived


class LatestFrameSlot:
    """A mailbox for the newest frame, keeping the few frames it displaced as spares.

    Frames enter only after the cheap checks, but a frame can still fail to decode (a corrupt
    JPEG body); the worker then falls back to the newest spare that decodes, so a burst of up to
    ``SPARES`` such frames between two inferences costs no valid one. ``put`` returns True when
    it discarded the oldest spare (a frame dropped because inference was busy).
    """

    SPARES = 3

    def __init__(self):
        self._items: list[PendingFrame] = []  # oldest first
        self._ready = threading.Condition()

    def put(self, item: PendingFrame) -> bool:
        with self._ready:
            self._items.append(item)
            dropped = len(self._items) > 1 + self.SPARES
            if dropped:
                del self._items[0]
            self._ready.notify()
        return dropped

    def take(self, timeout: float) -> list[PendingFrame] | None:
        """The waiting frames newest first, or None when no frame came within ``timeout`` seconds."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            if not self._items:
                return None
            taken, self._items = self._items[::-1], []
        return taken


def file_signature(path: str) -> tuple[int, int] | None:
    """(mtime, size) of a file, None when it does not exist (yet)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


class CheckpointWatcher:
    """Which version (mtime, size) of the checkpoint file is loaded or was refused, and whether a
    load is under way; only a version not seen before is loaded, once."""

    def __init__(self, path: str, signature: tuple[int, int] | None):
        self.path = path
        self._seen = signature
        self._loading = False
        self._lock = threading.Lock()

    def should_load(self, signature: tuple[int, int]) -> bool:
        with self._lock:
            if self._loading or signature == self._seen:
                return False
            self._loading = True
            return True

    def finished(self, signature: tuple[int, int]) -> None:
        with self._lock:
            self._seen, self._loading = signature, False


class PerceptionNode(ManagedNode):
    """The perception node, a lifecycle node (:mod:`mds_ros.lifecycle`): configure loads the model,
    activate subscribes and starts the inference thread, deactivate stops taking frames (the model
    stays), cleanup releases the model."""

    parameters_class = PerceptionParameters

    def __init__(self, shares_process_with_training: bool = False, **node_kwargs: Any):
        super().__init__(NODE_NAME, **node_kwargs)
        self.settings: PerceptionParameters
        self._shares_torch = shares_process_with_training  # mds_online: the trainer needs torch's threads
        self.statistics = NodeStatistics()
        self.exit_code = 0
        self.stream: FrameStream | None = None
        self.outputs: OutputPublishers | None = None
        self._camera: CameraSubscription | None = None
        self._worker: threading.Thread | None = None
        self._running = False
        self._slot = LatestFrameSlot()
        self._causes = CauseLog()
        self._poll_timer = None
        self.diagnostics = DiagnosticsReporter(self.statistics, "none", {}, stall_periods=self.settings.stall_periods)
        self.diagnostics.state = self.lifecycle_state
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # in every state
        self.create_timer(self.settings.diagnostics_period, self._publish_diagnostics)
        self.autostart()

    # -- lifecycle ----------------------------------------------------------------------------
    def configure(self) -> None:
        s = self.settings
        predictor = self._load_predictor()
        self._set_torch_threads(predictor)
        retain_freed_memory()  # each frame reuses the last one's memory instead of faulting it in anew
        self.stream = FrameStream(predictor, StreamSettings(s.max_frame_gap))
        self._scales = ScaleTracker(s.scale_window)  # camera-height scale over recent frames
        self._odometry_chain = OdometryChain()  # visual odometry: the ego-motion chained (~/odometry, ~/path)
        self._odometry_stamp: float | None = None  # stamp of the last published frame
        self._frames = OdometryFrames(s.odom_frame, s.base_frame, s.camera_in_base)
        self.outputs = OutputPublishers(self, s.publisher_reliability, self._frames, s.path_length,
                                        s.publisher_depth)
        self._intrinsics = ParameterIntrinsics(s) if s.camera_info_source == "parameters" else None
        self.diagnostics.hardware_id = str(predictor.device)
        self.diagnostics.static_values = {
            "device": str(predictor.device),
            "model": f"{s.checkpoint or s.onnx_model} (step {predictor.checkpoint_step})",
            "input_size": "{}x{}".format(*predictor.size),
            "motion_model": predictor.motion_model,
            "backend": predictor.backend + (f" ({', '.join(predictor.providers)})" if predictor.providers else ""),
            "components": str(predictor.num_components),
            "model_memory_mb": f"{predictor.memory_bytes() / 2**20:.1f}",
        }
        watched = s.watch_checkpoint or s.checkpoint
        self._swap = CheckpointWatcher(watched, file_signature(watched) if watched == s.checkpoint else None)
        if s.checkpoint_poll_period > 0:
            self._poll_timer = self.create_timer(s.checkpoint_poll_period, self._check_checkpoint)
        self.statistics.count(models_loaded=1)
        self.get_logger().info(
            f"configured: {s.checkpoint or s.onnx_model} ({predictor.backend}) on {predictor.device}, input "
            f"{predictor.size[0]}x{predictor.size[1]}, {predictor.motion_model} (K={predictor.num_components})")
        self._check_shared_memory(predictor)

    def _check_shared_memory(self, predictor: Predictor) -> None:
        """Warn when two frames' outputs do not fit Fast DDS's shared-memory segment: lost messages would then
        reach subscribers on this machine only at the writer's next heartbeat (docs/ros.md, "Middleware")."""
        frame = output_bytes_per_frame(*predictor.size, predictor.num_components, predictor.uses_scene_flow)
        segment = shared_memory_segment_bytes()
        if uses_fast_dds() and 2 * frame > segment:
            self.get_logger().warning(
                f"a frame's outputs take up to {frame / 2**20:.1f} MB, Fast DDS's shared-memory segment is "
                f"{segment / 2**20:.1f} MB: subscribers on this machine may get outputs late; give the node a "
                f"Fast DDS profile with a segment of at least {math.ceil(2 * frame / 2**20)} MB (FASTDDS_DEFAULT_PROFILES_FILE,"
                f" see config/fastdds.xml)")

    def activate(self) -> None:
        self._slot = LatestFrameSlot()
        self._running = True
        self._worker = threading.Thread(target=self._work, name="mds_inference", daemon=True)
        self._worker.start()
        self._camera = subscribe_camera(self, self.settings, self._on_frame, on_lost=self._on_camera_lost)
        self.get_logger().info(f"active: image {self._camera.topic} ({self.settings.input_transport}), intrinsics "
                               f"from {self.settings.camera_info_source}")

    def deactivate(self) -> None:
        self._stop_taking_frames()
        if self.stream is not None:
            self.stream.reset()  # the next frame after re-activation starts afresh

    def cleanup(self) -> None:
        self._stop_taking_frames()
        if self._poll_timer is not None:
            self.destroy_timer(self._poll_timer)
            self._poll_timer = None
        if self.outputs is not None:
            self.outputs.destroy()
        self.stream, self.outputs = None, None
        self.diagnostics.hardware_id, self.diagnostics.static_values = "none", {}

    def shutdown(self) -> None:
        self._stop_taking_frames()

    def _stop_taking_frames(self) -> None:
        """Unsubscribe, then let the worker finish the frame in flight and end."""
        if self._camera is not None:
            self._camera.close()
            self._camera = None
        self._running = False
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=30.0)
        self._worker = None

    def _enter(self, state: str) -> None:
        super()._enter(state)
        self.diagnostics.state = state
        with self.statistics.lock:
            self.statistics.last_problem = self.configure_problem or self.statistics.last_problem

    def parameters_changed(self, changed: dict) -> None:
        if self.stream is not None:
            self.stream.settings.max_frame_gap = self.settings.max_frame_gap

    def _set_torch_threads(self, predictor: Predictor) -> None:
        """``torch_threads``, or 1 with onnxruntime in a process of its own: PyTorch's idle OpenMP threads
        otherwise keep spinning on the cores the onnxruntime sessions need (measured at 640x192 on 2 cores:
        a frame 117 ms with torch's 2 threads, 107 ms with 1)."""
        threads = self.settings.torch_threads
        if not threads and predictor.backend == "onnxruntime" and not self._shares_torch:
            threads = 1
        if threads:
            torch.set_num_threads(threads)
            self.get_logger().info(f"PyTorch CPU threads: {threads}")

    def _load_predictor(self) -> Predictor:
        s = self.settings
        try:
            predictor = Predictor.load(s.checkpoint, device=s.device, size=(s.width, s.height) if s.width else None,
                                       backend=s.backend, onnx_folder=s.onnx_model or None,
                                       motion_evidence=s.motion_evidence)
        except (CheckpointError, FileNotFoundError, ValueError, RuntimeError, ImportError) as error:
            source = f"ONNX export {s.onnx_model!r}" if s.backend == "onnxruntime" and s.onnx_model \
                else f"checkpoint {s.checkpoint!r}"
            if any(path and path in str(error) for path in (s.checkpoint, s.onnx_model)):
                source = "ONNX export" if source.startswith("ONNX") else "checkpoint"  # the reason names the path
            raise StartupError(f"cannot load {source} ({s.backend} backend): {error}") from error
        if s.device.startswith("cuda") and predictor.device.type != "cuda":
            self.get_logger().warning(f"device {s.device} requested but CUDA is not available: running on cpu")
        if s.num_components and s.num_components != predictor.num_components:
            raise StartupError(f"num_components={s.num_components} but the checkpoint has "
                               f"K={predictor.num_components} (K is fixed by training; use 0)")
        return predictor

    # -- streaming --------------------------------------------------------------------------
    def _on_frame(self, image: Any, info: CameraInfo | None) -> None:
        """Subscription callback: check the frame cheaply, then leave it in the mailbox."""
        self.statistics.input_rate.tick()
        self.statistics.count(frames_received=1)
        try:
            check_frame(image, info, self.settings, self._intrinsics)
        except ImageConversionError as error:
            self._problem(f"refused a malformed frame: {error}", malformed_messages=1)
            return
        except Exception as error:  # a bug in the checks must not stop the executor
            self._failure(error, "checking a frame", failed_frames=1)
            return
        self.statistics.count(frames_accepted=1)
        if self._slot.put(PendingFrame(image, info, time.perf_counter())):
            self.statistics.count(frames_dropped=1)

    def _on_camera_lost(self, count: int) -> None:
        """The middleware lost ``count`` camera images before they arrived (counted; diagnostics warn)."""
        self.statistics.count(camera_messages_lost=count)

    def _work(self) -> None:
        """The inference thread: serves frames until shutdown; nothing one frame does ends it."""
        reason = "the inference thread ended"
        try:
            while self._running:
                taken = self._slot.take(timeout=0.1)
                if taken is None:
                    continue
                try:
                    self._serve(taken)
                except Exception as error:
                    self._failure(error, "serving a frame", failed_frames=1)
        except BaseException as error:  # noqa: B036 - reported below, then the process exits non-zero
            reason = f"{type(error).__name__}: {error}"
        finally:
            if self._running:
                self._worker_stopped(reason)

    def _serve(self, frames: list[PendingFrame]) -> None:
        """Process the newest of ``frames`` that decodes (newest first); the older ones are dropped."""
        for index, frame in enumerate(frames):
            if self._process(frame):
                if index + 1 < len(frames):
                    self.statistics.count(frames_dropped=len(frames) - index - 1)
                return

    def _process(self, frame: PendingFrame) -> bool:
        """Decode, infer and publish one frame (all outputs or none); False when it is malformed."""
        started = time.perf_counter()
        try:
            rgb, intrinsics = decode_frame(frame.image, frame.info, self.settings, self._intrinsics)
        except ImageConversionError as error:
            self._problem(f"dropped a malformed frame: {error}", malformed_messages=1)
            return False
        converted = time.perf_counter()
        try:
            # the tag comes back with the prediction of this frame: at once for the components model,
            # with the next frame for the scene flow (whose motion mask needs it)
            result = self.stream.push(rgb, intrinsics, stamp_nanoseconds(frame.image) * 1e-9,
                                      tag=(frame.image.header, rgb, frame.info))
            inferred = time.perf_counter()
            if result is not None:
                header, image, info = result.tag
                scale = self._depth_scale(result.prediction)
                odometry = self._odometry(result.prediction, header, scale)
                self.outputs.build(OutputFrame(header, image, info, result, scale, odometry),
                                   self.settings).publish()
        except Exception as error:  # keep the stream alive whatever one frame does
            self._failure(error, "frame failed", failed_frames=1)
            return True
        published = time.perf_counter()
        self.statistics.count(frames_processed=1)
        if result is None:
            return True  # the scene flow's first frame: published with the next one
        if result.reset is not None:
            self.statistics.count(resets=1)
            if result.gap is not None:
                self.get_logger().info(f"previous frame reset: {result.reset.value} (gap {result.gap:.3f} s)")
        self.statistics.output_rate.tick()
        self.statistics.latency.add(conversion=converted - started, network=inferred - converted,
                                    publish=published - inferred, total=published - frame.received)
        return True

    def _depth_scale(self, prediction: Prediction) -> float:
        """Published units per network depth unit (``depth_scale_mode``); with ``camera_height`` the
        running median of the ground-plane scales, NaN until the first plane is found."""
        s = self.settings
        if s.depth_scale_mode != "camera_height":
            scale = s.depth_scale if s.depth_scale_mode == "fixed" else 1.0
            with self.statistics.lock:
                self.statistics.depth_scale, self.statistics.depth_scale_spread = f"{scale:g}", ""
            return scale
        static = None if prediction.moving_probability is None else prediction.moving_probability < 0.5
        measured = camera_height_scale(prediction.depth, prediction.intrinsics, s.camera_height, s.camera_pitch,
                                       static=static)
        scale = self._scales.update(measured)
        spread = self._scales.spread
        with self.statistics.lock:
            self.statistics.frames_without_ground_plane += measured is None
            self.statistics.depth_scale = "not estimated yet" if scale is None else f"{scale:.4g}"
            self.statistics.depth_scale_spread = "" if spread is None else f"{spread:.3f}"
        return float("nan") if scale is None else scale

    def _odometry(self, prediction: Prediction, header: Any, scale: float) -> OdometryStep | None:
        """Chain this frame's ego-motion (in the depth's output units); a frame without one, or without
        known units, starts a new segment at the same pose."""
        stamp = (int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)) * 1e-9
        previous, self._odometry_stamp = self._odometry_stamp, stamp
        if prediction.ego_motion is None or not math.isfinite(scale) or previous is None or stamp <= previous:
            self._odometry_chain.reset()
            return None
        motion = prediction.ego_motion.astype(np.float64)  # a copy
        motion[:3, 3] *= scale
        motion = self._frames.motion(motion)  # the base frame's motion when one is set
        step = self._odometry_chain.add(motion, stamp - previous)
        return step

    def _problem(self, text: str, **counter: int) -> None:
        text = clip_problem(text)
        self.statistics.count(**counter)
        with self.statistics.lock:
            self.statistics.last_problem = text
        self.get_logger().warning(text, throttle_duration_sec=5.0)

    def _failure(self, error: Exception, context: str, **counter: int) -> None:
        """An unexpected exception: counted every time, logged with its traceback once per cause."""
        if not self._running or not self.context.ok():
            return  # a frame in flight while the node shuts down: its publishers are gone, nothing failed
        text = clip_problem(f"{context}: {type(error).__name__}: {error}")
        self.statistics.count(**counter)
        with self.statistics.lock:
            self.statistics.last_problem = text
        cause = self._causes.first_time(error)
        if cause is None:
            return
        details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        self.get_logger().error(f"{text} (first time for {cause}; later ones are only counted)\n{details}")

    def _worker_stopped(self, reason: str) -> None:
        """The inference thread is gone: report ERROR, then end the process with status 1."""
        with self.statistics.lock:
            self.statistics.worker_failure = reason
        self.exit_code = 1
        self.get_logger().fatal(f"inference stopped ({clip_problem(reason)}): shutting down with status 1")
        try:
            self._publish_diagnostics()
        finally:
            self.context.try_shutdown()

    # -- weights hot swap --------------------------------------------------------------------
    def _check_checkpoint(self) -> None:
        """A changed checkpoint file is loaded in the background and swapped in between frames;
        a broken or incompatible one is refused and the current weights stay."""
        signature = file_signature(self._swap.path)
        if signature is None or not self._swap.should_load(signature):
            return
        threading.Thread(target=self._load_new_weights, args=(signature,), name="mds_swap", daemon=True).start()

    def _load_new_weights(self, signature: tuple[int, int]) -> None:
        stream = self.stream
        if stream is None:  # cleaned up meanwhile
            self._swap.finished(signature)
            return
        current = stream.predictor
        try:
            predictor = Predictor.load(self._swap.path, device=self.settings.device, size=current.size,
                                       backend=current.backend, motion_evidence=current.motion_evidence)
            if predictor.motion_model != current.motion_model:
                raise CheckpointError(f"it is a {predictor.motion_model} model, the running one "
                                      f"{current.motion_model}")
            if predictor.num_components != current.num_components:
                raise CheckpointError(f"it has K={predictor.num_components}, the running model "
                                      f"K={current.num_components}")
        except (CheckpointError, OSError, ValueError, RuntimeError, ImportError) as error:
            self._swap.finished(signature)
            self._problem(f"refused the new checkpoint {self._swap.path} ({error}); keeping the weights "
                          f"of step {current.checkpoint_step}", checkpoints_refused=1)
            return
        stream.swap_predictor(predictor)
        self._swap.finished(signature)
        self.statistics.count(checkpoints_swapped=1)
        self.diagnostics.static_values["model"] = f"{self._swap.path} (step {predictor.checkpoint_step})"
        self.get_logger().info(f"swapped in new weights: {self._swap.path} step {predictor.checkpoint_step}")

    def _publish_diagnostics(self) -> None:
        self.diagnostics.subscribed_outputs = 0 if self.outputs is None else self.outputs.subscribed()
        self._diagnostics_pub.publish(self.diagnostics.array(self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> int:
    return spin_nodes([PerceptionNode], args)


if __name__ == "__main__":
    sys.exit(main())
