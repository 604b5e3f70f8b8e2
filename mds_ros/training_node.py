"""``mds_trainer``: self-supervised adaptation on the live camera stream, in the background.

Subscribes to the same camera topics as the perception node (:mod:`mds_ros.camera_input`),
keeps a bounded buffer of recent frames and trains :class:`~mds_core.training.online.OnlineTrainer`
in a background thread, starting from ``checkpoint`` and writing ``output_checkpoint``
atomically every ``checkpoint_every`` steps. The perception node swaps those weights in when its
``watch_checkpoint`` points at that file. Status goes to ``/diagnostics``.

Two processes::

    mds_node --ros-args -p checkpoint:=model.pt -p watch_checkpoint:=online.pt
    mds_trainer --ros-args -p checkpoint:=model.pt -p output_checkpoint:=online.pt

or one process (one GPU, both models in one interpreter): ``mds_online`` with the parameters of
both (``--ros-args --params-file config/mds_node.yaml --params-file config/mds_trainer.yaml``: each node
takes the parameters it declares).
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import TransitionEvent
from lifecycle_msgs.srv import GetState

from mds_core.checkpoint import CheckpointError
from mds_core.training.online import OnlineSettings, OnlineTrainer
from mds_ros.camera_input import CameraSubscription, ParameterIntrinsics, check_frame, decode_frame, subscribe_camera
from mds_ros.conversions import ImageConversionError
from mds_ros.diagnostics import INACTIVE_MESSAGES, CauseLog, clip_problem, diagnostic_array, diagnostic_status
from mds_ros.lifecycle import ManagedNode
from mds_ros.pairing import stamp_nanoseconds
from mds_ros.parameters import OnlineTrainingParameters, StartupError
from mds_ros.spin import spin_nodes

NODE_NAME = "mds_trainer"


class TrainingNode(ManagedNode):
    """The online trainer, a lifecycle node (:mod:`mds_ros.lifecycle`): configure loads the checkpoint
    and its optimiser, activate subscribes and trains, deactivate pauses (the model and the frame
    buffer stay), cleanup releases them."""

    parameters_class = OnlineTrainingParameters

    def __init__(self, **node_kwargs: Any):
        super().__init__(NODE_NAME, **node_kwargs)
        self.settings: OnlineTrainingParameters
        self.trainer: OnlineTrainer | None = None
        self.malformed = 0
        self.camera_messages_lost = 0  # reported lost by the middleware on the way (best effort)
        self.failures = 0
        self.last_problem = ""
        self._causes = CauseLog()
        self._camera: CameraSubscription | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # pause_with: the followed node's last known state; unknown counts as active (it may have
        # become active before this node subscribed to its transitions)
        self._followed = None
        self._followed_state_client = None
        self._asking = False
        self.followed_state = "unknown"
        self._paused = threading.Event()
        self._status = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # in every state
        self.create_timer(self.settings.status_period, self._publish_status)
        self.autostart()

    def configure(self) -> None:
        s = self.settings
        try:
            self.trainer = OnlineTrainer(s.checkpoint, s.output_checkpoint, OnlineSettings(
                buffer_frames=s.buffer_frames, batch_size=s.batch_size, checkpoint_every=s.checkpoint_every,
                max_gap=s.max_frame_gap, min_triplets=s.min_triplets,
                learning_rate=s.learning_rate or None), device=s.device)
        except (CheckpointError, FileNotFoundError, ValueError) as error:
            raise StartupError(f"cannot start training from {s.checkpoint!r}: {error}") from error
        self._intrinsics = ParameterIntrinsics(s) if s.camera_info_source == "parameters" else None

    def activate(self) -> None:
        s = self.settings
        if s.pause_with:  # follow that node's lifecycle: train only while it is active
            followed = s.pause_with.rstrip("/")
            self._followed = self.create_subscription(TransitionEvent, f"{followed}/transition_event",
                                                      self._on_followed_transition, 10)
            # it may have changed state while this node was not listening: ask (now or on a later status tick)
            self._followed_state_client = self.create_client(GetState, f"{followed}/get_state")
            self.followed_state = "unknown"
            self._ask_followed_state()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._train, name="mds_online_training", daemon=True)
        self._thread.start()
        self._camera = subscribe_camera(self, s, self._on_frame, on_lost=self._on_camera_lost)
        self.get_logger().info(f"training from {s.checkpoint} on {self.trainer.device}, camera {self._camera.topic}, "
                               f"writing {s.output_checkpoint} every {s.checkpoint_every} steps")

    def deactivate(self) -> None:
        self.shutdown()

    def cleanup(self) -> None:
        self.shutdown()
        self.trainer = None

    def shutdown(self) -> None:
        """Unsubscribe and stop training after the step in flight."""
        if self._camera is not None:
            self._camera.close()
            self._camera = None
        if self._followed is not None:
            self.destroy_subscription(self._followed)
            self.destroy_client(self._followed_state_client)
            self._followed, self._followed_state_client = None, None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30.0)
            self._thread = None

    def _on_camera_lost(self, count: int) -> None:
        self.camera_messages_lost += count  # the executor's thread, as the status timer

    def _on_frame(self, image: Any, info: Any) -> None:
        """Check and decode a frame into the training buffer; nothing a message holds ends the node."""
        try:
            check_frame(image, info, self.settings, self._intrinsics)
            rgb, intrinsics = decode_frame(image, info, self.settings, self._intrinsics)
            self.trainer.buffer.add(rgb, intrinsics, stamp_nanoseconds(image) * 1e-9)
        except ImageConversionError as error:
            self.malformed += 1
            self.last_problem = clip_problem(f"dropped a malformed frame: {error}")
            self.get_logger().warning(self.last_problem, throttle_duration_sec=5.0)
        except Exception as error:  # a frame must not take the node (or the training) down
            self.failures += 1
            self.last_problem = clip_problem(f"frame failed: {type(error).__name__}: {error}")
            cause = self._causes.first_time(error)
            if cause is not None:
                self.get_logger().error(f"{self.last_problem} (first time for {cause}; later ones are only counted)")

    def _on_followed_transition(self, event: TransitionEvent) -> None:
        """``pause_with``'s node changed state: train while it is active, pause otherwise."""
        self._follow(event.goal_state.label)

    def _ask_followed_state(self) -> None:
        """Ask ``pause_with``'s node for its state once its service is there (the answer comes later)."""
        client = self._followed_state_client
        if client is None or self.followed_state != "unknown" or self._asking or not client.service_is_ready():
            return
        self._asking = True

        def answered(future) -> None:
            self._asking = False
            if future.result() is not None and self.followed_state == "unknown":
                self._follow(future.result().current_state.label)

        client.call_async(GetState.Request()).add_done_callback(answered)

    def _follow(self, state: str) -> None:
        self.followed_state = state
        if self.followed_state == "active":
            self._paused.clear()
        else:
            self._paused.set()
        self.get_logger().info(f"{self.settings.pause_with} is {self.followed_state}: training "
                               f"{'resumes' if self.followed_state == 'active' else 'paused'}")

    def _train(self) -> None:
        self.trainer.run(self._stop, max_steps=self.settings.max_steps, on_error=self._step_failed,
                         pause=self._paused)

    def _step_failed(self, error: Exception) -> None:
        """A failing step must not take the node (or the stream) down: count it, log each cause once."""
        self.failures += 1
        self.last_problem = clip_problem(f"training step failed: {type(error).__name__}: {error}")
        cause = self._causes.first_time(error)
        if cause is not None:
            self.get_logger().error(f"{self.last_problem} (first time for {cause}; later ones are only counted)")

    def _publish_status(self) -> None:
        self._ask_followed_state()
        if self.trainer is None:
            self._status.publish(diagnostic_array(self.get_clock().now().to_msg(), diagnostic_status(
                "mds_trainer: online adaptation", DiagnosticStatus.OK, INACTIVE_MESSAGES[self.lifecycle_state],
                "none", {"lifecycle_state": self.lifecycle_state, "last_problem": self.configure_problem})))
            return
        status = self.trainer.status
        snapshot = self.trainer.buffer.snapshot()
        step_times = list(status.step_seconds)
        values = {
            "steps": str(status.steps),
            "batch": str(self.settings.batch_size),
            "loss": "-" if status.last_loss is None else f"{status.last_loss:.5f}",
            "step_median_ms": f"{np.median(step_times) * 1e3:.1f}" if step_times else "-",
            "frames_buffered": str(len(snapshot)),
            "frames_received": str(self.trainer.buffer.added),
            "triplets": str(len(snapshot.targets(self.settings.max_frame_gap,
                                                 self.trainer.state.config.data.source_offsets))),
            "checkpoints_written": str(status.checkpoints_written),
            "malformed_messages": str(self.malformed),
            "camera_messages_lost": str(self.camera_messages_lost),
            "failed_steps": str(self.failures),
            "last_problem": self.last_problem,
            "device": str(self.trainer.device),
            "output": self.settings.output_checkpoint,
            "lifecycle_state": self.lifecycle_state,
        }
        level = DiagnosticStatus.ERROR if self.failures and not status.steps else DiagnosticStatus.OK
        message = "training" if status.steps else "waiting for enough frames"
        if self.settings.pause_with:
            values["pause_with"] = f"{self.settings.pause_with} ({self.followed_state})"
        if self.lifecycle_state != "active":
            level, message = DiagnosticStatus.OK, "inactive: training paused, model loaded (activate)"
        elif self._paused.is_set():
            level, message = DiagnosticStatus.OK, f"paused: {self.settings.pause_with} is {self.followed_state}"
        self._status.publish(diagnostic_array(self.get_clock().now().to_msg(), diagnostic_status(
            "mds_trainer: online adaptation", level, message, str(self.trainer.device), values)))


def main(args: list[str] | None = None) -> int:
    return spin_nodes([TrainingNode], args)


def main_online(args: list[str] | None = None) -> int:
    """``mds_online``: the perception node and the training node in one process."""
    from mds_ros.perception_node import PerceptionNode

    return spin_nodes([functools.partial(PerceptionNode, shares_process_with_training=True), TrainingNode], args)


if __name__ == "__main__":
    sys.exit(main())
