"""Online self-supervised adaptation: keep training on the frames a camera is streaming.

:class:`FrameBuffer` keeps a bounded window of the most recent frames (already resized to the
model resolution, uint8 on the CPU). Targets are frames whose previous and next frames are in
the buffer, later in time and within ``max_gap`` seconds, so a bag loop or a pause never makes
a triplet. :class:`OnlineTrainer` takes a snapshot of the buffer for each step, builds samples
exactly as offline training does (:class:`~mds_core.data.dataset.TripletDataset`: the same
resizing, intrinsics scaling and augmentation), runs :func:`~mds_core.training.loop.train_step`
and writes the weights atomically every ``checkpoint_every`` steps, where the inference node's
hot swap picks them up. Either motion model adapts, in the last stage of its training (for the
scene flow every network, at half the learning rate). Nothing here knows about ROS.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mds_core.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from mds_core.data.dataset import TargetFrame, TripletDataset
from mds_core.data.sample import collate_samples
from mds_core.device import resolve_device
from mds_core.inference.predictor import scale_intrinsics_to
from mds_core.method.losses import SelfSupervisedObjective
from mds_core.training.distributed import DistributedContext
from mds_core.training.loop import build_training_state, checkpoint_of, enter_stage
from mds_core.training.stages import Stage, stage_configs

LOG = logging.getLogger(__name__)


@dataclass
class OnlineSettings:
    """``buffer_frames`` bounds memory (frames at the model resolution); ``max_gap`` in seconds."""

    buffer_frames: int = 300
    batch_size: int = 4
    checkpoint_every: int = 20
    max_gap: float = 0.5
    min_triplets: int = 4  # buffered targets with all their source frames before training starts
    learning_rate: float | None = None  # None: the checkpoint's
    seed: int = 0

    def validate(self) -> None:
        if self.buffer_frames < 3 or self.batch_size < 1 or self.checkpoint_every < 1 or self.min_triplets < 1:
            raise ValueError("buffer_frames >= 3, batch_size >= 1, checkpoint_every >= 1 and min_triplets >= 1")
        if not self.max_gap > 0:
            raise ValueError(f"max_gap must be > 0, got {self.max_gap}")


@dataclass
class _BufferedFrame:
    stamp: float
    image: np.ndarray  # (h, w, 3) uint8 at the model resolution
    intrinsics: np.ndarray  # (3, 3) at the model resolution


@dataclass
class BufferSnapshot:
    """A frozen view of the buffer that :class:`TripletDataset` reads as a frame sequence."""

    frames: list[_BufferedFrame]
    name: str = "live"

    def __len__(self) -> int:
        return len(self.frames)

    def frame_id(self, index: int) -> str:
        return f"{self.frames[index].stamp:.6f}"

    def image(self, index: int) -> np.ndarray:
        return self.frames[index].image

    def intrinsics(self) -> tuple[np.ndarray, tuple[int, int]]:
        latest = self.frames[-1]
        return latest.intrinsics, (latest.image.shape[1], latest.image.shape[0])

    def depth(self, index: int) -> None:
        return None

    def motion(self, index: int) -> None:
        return None

    def targets(self, max_gap: float, source_offsets: list[int]) -> list[TargetFrame]:
        """Frames whose source frames are buffered, every step between them later in time and
        within ``max_gap`` seconds."""
        lo, hi = min(min(source_offsets), 0), max(max(source_offsets), 0)
        gaps = np.diff([f.stamp for f in self.frames])
        step_ok = (gaps > 0) & (gaps <= max_gap)
        return [TargetFrame(0, i) for i in range(-lo, len(self.frames) - hi) if step_ok[i + lo:i + hi].all()]


class FrameBuffer:
    """The most recent ``capacity`` frames of one camera, resized to ``size`` (w, h)."""

    def __init__(self, capacity: int, size: tuple[int, int]):
        self.size = size
        self._frames: deque[_BufferedFrame] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self.added = 0

    def add(self, image: np.ndarray, intrinsics: np.ndarray, stamp: float) -> None:
        """``image`` (H, W, 3) uint8 RGB with its 3x3 ``intrinsics``, taken at ``stamp`` seconds."""
        height, width = image.shape[:2]
        small = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA) if (width, height) != self.size else image
        matrix = scale_intrinsics_to(intrinsics, (width, height), self.size)
        with self._lock:
            if self._frames and stamp < self._frames[-1].stamp:
                self._frames.clear()  # time went backwards (a bag loop): old frames make no triplets
            self._frames.append(_BufferedFrame(stamp, np.ascontiguousarray(small), matrix))
            self.added += 1

    def snapshot(self) -> BufferSnapshot:
        with self._lock:
            return BufferSnapshot(list(self._frames))

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


@dataclass
class OnlineStatus:
    steps: int = 0
    checkpoints_written: int = 0
    last_loss: float | None = None
    last_checkpoint: Path | None = None
    step_seconds: deque = field(default_factory=lambda: deque(maxlen=100))


class OnlineTrainer:
    """Adapts the model of ``checkpoint`` on a :class:`FrameBuffer`; writes to ``output``."""

    def __init__(self, checkpoint: str | Path, output: str | Path, settings: OnlineSettings | None = None,
                 device: str = "auto"):
        self.settings = settings or OnlineSettings()
        self.settings.validate()
        source = load_checkpoint(checkpoint)
        config = source.config
        config.optim.batch_size = self.settings.batch_size
        if self.settings.learning_rate is not None:
            config.optim.learning_rate = self.settings.learning_rate
        self.device = resolve_device(device)
        self.state = build_training_state(config, self.device, DistributedContext())
        load_model_state(self.state.model, source.model, config.model, source.config.model, str(checkpoint))
        self.state.step = source.step
        # adaptation goes on as training ended: in its last stage (the scene flow's joint stage: every
        # network at half the learning rate, no auto-masking; the components model's only stage)
        enter_stage(self.state, Stage(stage_configs(config)[-1], 0, source.step + 2**62))
        self.objective = SelfSupervisedObjective(config.loss, config.model)
        self.buffer = FrameBuffer(self.settings.buffer_frames, (config.model.width, config.model.height))
        self.output = Path(output)
        self.status = OnlineStatus()
        self._rng = np.random.default_rng(self.settings.seed)

    def _targets(self, snapshot: BufferSnapshot) -> list[TargetFrame]:
        return snapshot.targets(self.settings.max_gap, self.state.config.data.source_offsets)

    def step(self) -> float | None:
        """One optimisation step on a random batch of buffered triplets; None while too few exist."""
        from mds_core.training.loop import train_step

        snapshot = self.buffer.snapshot()
        targets = self._targets(snapshot)
        if len(targets) < self.settings.min_triplets:
            return None
        config = self.state.config
        dataset = TripletDataset([snapshot], targets, config.data.source_offsets, config.model.height,
                                 config.model.width, augmentation=config.data.augmentation,
                                 seed=self.settings.seed)
        dataset.set_epoch(self.status.steps)
        chosen = self._rng.choice(len(targets), size=min(self.settings.batch_size, len(targets)), replace=False)
        batch = collate_samples([dataset[int(i)] for i in chosen]).to(self.device)
        started = time.perf_counter()
        loss, _ = train_step(self.state, self.objective, batch)
        self.state.step += 1
        self.status.steps += 1
        self.status.last_loss = float(loss.total.detach())
        self.status.step_seconds.append(time.perf_counter() - started)
        if self.status.steps % self.settings.checkpoint_every == 0:
            self.save()
        return self.status.last_loss

    def save(self) -> Path:
        """Write the current weights atomically to ``output`` (readers never see a partial file)."""
        path = save_checkpoint(self.output, checkpoint_of(self.state, {"loss": self.status.last_loss or float("nan")}))
        self.status.checkpoints_written += 1
        self.status.last_checkpoint = path
        LOG.info("online training: step %d, loss %.4f, wrote %s", self.state.step, self.status.last_loss or 0.0, path)
        return path

    def run(self, stop: threading.Event, max_steps: int = 0,
            on_error: Callable[[Exception], None] | None = None, idle_wait: float = 0.1, error_wait: float = 1.0,
            pause: threading.Event | None = None) -> None:
        """Train until ``stop`` is set (or after ``max_steps`` steps; 0 = no limit), waiting while the
        buffer has too few triplets and while ``pause`` is set. A failing step is passed to ``on_error``
        (re-raised without one) and training goes on after ``error_wait`` s. A run that ends at
        ``max_steps`` between two periodic checkpoints writes a last one."""
        while not stop.is_set() and (max_steps == 0 or self.status.steps < max_steps):
            if pause is not None and pause.is_set():
                stop.wait(idle_wait)
                continue
            try:
                if self.step() is None:
                    stop.wait(idle_wait)
            except Exception as error:
                if on_error is None:
                    raise
                on_error(error)
                stop.wait(error_wait)
        if max_steps and self.status.steps >= max_steps and self.status.steps % self.settings.checkpoint_every:
            self.save()
