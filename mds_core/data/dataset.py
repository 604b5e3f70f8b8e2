"""Self-supervised training samples (target + source frames) from frame sequences."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mds_core.config import AugmentationConfig
from mds_core.data.augmentation import (
    AugmentationDraw,
    colour_jitter,
    flip_horizontally,
)
from mds_core.data.sample import OpticalFlow, Sample
from mds_core.data.sequence_folder import DataError, FrameSequence, SequenceFolder
from mds_core.method.geometry import scale_intrinsics
from mds_core.method.motion_evidence import dense_flow
from mds_core.method.true_motion import TrueMotion


@dataclass(frozen=True)
class TargetFrame:
    """Index of a target frame: ``sequences[sequence][frame]``."""

    sequence: int
    frame: int


def valid_targets(sequences: list[FrameSequence], source_offsets: list[int]) -> list[TargetFrame]:
    """Every frame whose source frames all exist in its sequence."""
    lo, hi = min(min(source_offsets), 0), max(max(source_offsets), 0)
    return [
        TargetFrame(s, f)
        for s, seq in enumerate(sequences)
        for f in range(-lo, len(seq) - hi)
    ]


def change_thumbnail(image: np.ndarray) -> np.ndarray:
    """The 64x32 grey thumbnail in [0, 1] that static-frame detection compares."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(gray, (64, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def thumbnail_change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two :func:`change_thumbnail` results (0 = identical)."""
    return float(np.abs(a - b).mean())


def remove_static_frames(
    sequences: list[FrameSequence],
    targets: list[TargetFrame],
    source_offsets: list[int],
    threshold: float,
    keep: int = 0,
) -> tuple[list[TargetFrame], int]:
    """Drop targets whose image barely changes w.r.t. any source frame, but the first ``keep`` of each
    run of such targets in a sequence.

    The change is the mean absolute difference of 64x32 grey thumbnails in [0, 1]; a target is
    static when that difference to some source is below ``threshold`` (the camera stood still,
    so the frame pair carries no parallax; the decomposition still learns from a few that nothing
    but the movers moves then). Returns ``(kept, number_dropped)``.
    """
    if threshold <= 0:
        return targets, 0
    cache: dict[tuple[int, int], np.ndarray] = {}

    def thumb(s: int, f: int) -> np.ndarray:
        if (s, f) not in cache:
            cache[(s, f)] = change_thumbnail(sequences[s].image(f))
        return cache[(s, f)]

    dropped, run, previous = set(), 0, None
    for t in sorted(targets, key=lambda t: (t.sequence, t.frame)):
        static = min(thumbnail_change(thumb(t.sequence, t.frame), thumb(t.sequence, t.frame + o))
                     for o in source_offsets) < threshold
        follows = previous == (t.sequence, t.frame - 1)
        run = run + 1 if static and follows else int(static)
        previous = (t.sequence, t.frame)
        if static and run > keep:
            dropped.add((t.sequence, t.frame))
    kept = [t for t in targets if (t.sequence, t.frame) not in dropped]
    return kept, len(targets) - len(kept)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


#: Memory for the optical flow a training data set keeps (:meth:`TripletDataset.compute_optical_flow`):
#: about 110 kB a sample (two sources) at 192x64, 300 kB at 320x96, each flip kept apart.
DEFAULT_FLOW_CACHE_MB = 2048.0


def sample_optical_flow(images: torch.Tensor) -> OpticalFlow:
    """A sample's flow from ``images[0]`` (the target) to each of ``images[1:]`` (``(1 + S, 3, H, W)``)."""
    sources = images[1:]
    return OpticalFlow(*dense_flow(images[:1].expand_as(sources), sources))


class OpticalFlowCache:
    """The optical flow of a sample's frames by key (its index and whether it was flipped), computed on
    first use and kept while the kept flows take less than ``budget`` bytes; beyond, computed each time."""

    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0
        self._kept: dict[tuple[int, bool], OpticalFlow] = {}

    def get(self, key: tuple[int, bool], images: torch.Tensor) -> OpticalFlow:
        """The flow from ``images[0]`` (the target) to each of ``images[1:]`` (``(1 + S, 3, H, W)``)."""
        kept = self._kept.get(key)
        if kept is not None:
            return kept
        computed = sample_optical_flow(images)
        size = sum(t.numel() * t.element_size() for t in (computed.flow, computed.valid))
        if self.used + size <= self.budget:
            self._kept[key] = computed
            self.used += size
        return computed

    def __len__(self) -> int:
        return len(self._kept)


class TripletDataset(Dataset):
    """Target frame + source frames, resized to the model resolution with K scaled to match.

    Augmentation is deterministic: sample ``i`` of epoch ``e`` always draws from
    ``numpy.random.default_rng((seed, e, i))``, whichever worker loads it, so that a resumed
    run sees exactly the same data as an uninterrupted one.
    """

    def __init__(
        self,
        sequences: list[FrameSequence],
        targets: list[TargetFrame],
        source_offsets: list[int],
        height: int,
        width: int,
        augmentation: AugmentationConfig | None = None,
        load_ground_truth: bool = False,
        load_true_motion: bool = False,
        seed: int = 0,
    ):
        self.sequences = sequences
        self.targets = targets
        self.source_offsets = list(source_offsets)
        self.height = height
        self.width = width
        self.augmentation = augmentation
        self.load_ground_truth = load_ground_truth
        self.load_true_motion = load_true_motion
        self.seed = seed
        self.epoch = 0
        self.flow_cache: OpticalFlowCache | None = None

    def compute_optical_flow(self, cache_megabytes: float = DEFAULT_FLOW_CACHE_MB) -> None:
        """Give every sample the optical flow from its target to each source (the motion evidence's,
        :func:`~mds_core.method.motion_evidence.dense_flow`), computed here rather than in the training
        step: in the loader's worker processes while the step runs, and kept in memory up to
        ``cache_megabytes`` for the next epochs (DIS is deterministic: a kept flow is the one a new
        computation would give)."""
        self.flow_cache = OpticalFlowCache(int(cache_megabytes * 2**20))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.targets)

    def _resized(self, sequence: FrameSequence, index: int) -> np.ndarray:
        image = sequence.image(index)
        if image.shape[:2] != (self.height, self.width):
            image = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return image

    def __getitem__(self, i: int) -> Sample:
        target = self.targets[i]
        sequence = self.sequences[target.sequence]
        indices = [target.frame] + [target.frame + o for o in self.source_offsets]
        images = torch.stack([_to_tensor(self._resized(sequence, j)) for j in indices])

        matrix, (native_w, native_h) = sequence.intrinsics()
        intrinsics = scale_intrinsics(torch.as_tensor(matrix, dtype=torch.float32),
                                      self.width / native_w, self.height / native_h)

        depth = motion = None
        if self.load_ground_truth:
            gt_depth = sequence.depth(target.frame)
            gt_motion = sequence.motion(target.frame)
            depth = None if gt_depth is None else torch.from_numpy(gt_depth)[None]
            motion = None if gt_motion is None else torch.from_numpy(gt_motion)[None]
        true_motion = self._true_motion(sequence, target.frame, indices[1:])

        network_images = images
        flipped = False
        if self.augmentation is not None and self.augmentation.enabled:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            draw = AugmentationDraw.sample(self.augmentation, rng)
            flipped = draw.flip
            if draw.flip:
                images, intrinsics = flip_horizontally(images, intrinsics)
                # ground truth (loaded for training by the oracle rung) is mirrored with the frames
                depth = None if depth is None else torch.flip(depth, dims=[-1])
                motion = None if motion is None else torch.flip(motion, dims=[-1])
                true_motion = None if true_motion is None else true_motion.mirrored()
            network_images = colour_jitter(images, draw)
        return Sample(
            images=images,
            network_images=network_images,
            intrinsics=intrinsics,
            depth=depth,
            motion=motion,
            name=f"{sequence.name}/{sequence.frame_id(target.frame)}",
            optical_flow=None if self.flow_cache is None else self.flow_cache.get((i, flipped), images),
            true_motion=true_motion,
        )

    def _true_motion(self, sequence: FrameSequence, index: int, sources: list[int]) -> TrueMotion | None:
        """The generated scene's motions for the oracle rung "motion" (sequence folders with poses.json)."""
        if not self.load_true_motion:
            return None
        if not isinstance(sequence, SequenceFolder):
            raise DataError(f"{sequence.name}: the true motion (model.motion_source) needs generated sequence "
                            f"folders with instances/ and poses.json")
        return sequence.true_motion(index, sources)
