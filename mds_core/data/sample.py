"""Typed training/evaluation samples and their collation into batches."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from mds_core.method.true_motion import TrueMotion


@dataclass
class Sample:
    """One target frame with its source frames.

    Attributes:
        images: ``(1 + S, 3, H, W)`` float in [0, 1]: the target first, then the sources in the
            order of ``DataConfig.source_offsets``. Never augmented with colour: the photometric
            loss is computed on these.
        network_images: the same frames after colour jitter; only these enter the networks.
        intrinsics: ``(3, 3)`` camera matrix at ``(H, W)``.
        depth: optional ``(1, Hg, Wg)`` ground-truth depth in metres (0 = none) at the native size.
        motion: optional ``(1, Hg, Wg)`` uint8 motion labels (0 static background, 1 moving
            object, 2 static movable object, 255 unlabelled) at the native size.
        name: ``"<sequence>/<frame>"``.
        optical_flow: optional :class:`OpticalFlow` from the target to each source (``(S, ...)``),
            computed by the data set for a loss that needs it (the motion evidence).
        true_motion: optional :class:`TrueMotion` of the generated scene (the oracle rung "motion").
    """

    images: Tensor
    network_images: Tensor
    intrinsics: Tensor
    depth: Tensor | None
    motion: Tensor | None
    name: str
    optical_flow: OpticalFlow | None = None
    true_motion: TrueMotion | None = None


@dataclass
class OpticalFlow:
    """Dense optical flow from target frames to their sources, computed ahead of the training step.

    ``flow`` ``(..., 2, H, W)`` in pixels (``p + flow(p)`` is where ``p`` went in the source) and
    ``valid`` ``(..., H, W)`` booleans: where it is trustworthy
    (:func:`mds_core.method.motion_evidence.dense_flow`). A sample's has a leading source
    dimension ``S``, a batch's ``(B, S)``.
    """

    flow: Tensor
    valid: Tensor

    def source(self, index: int) -> tuple[Tensor, Tensor]:
        """The ``(B, 2, H, W)`` flow and ``(B, H, W)`` validity of a batch toward source ``index``."""
        return self.flow[:, index], self.valid[:, index]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> OpticalFlow:
        return OpticalFlow(self.flow.to(device, non_blocking=non_blocking), self.valid.to(device, non_blocking=non_blocking))

    @staticmethod
    def stack(flows: list[OpticalFlow]) -> OpticalFlow:
        """Samples' flows as a batch's (a leading batch dimension)."""
        return OpticalFlow(torch.stack([f.flow for f in flows]), torch.stack([f.valid for f in flows]))


@dataclass
class Batch:
    """A collated list of :class:`Sample`. Ground truth stays a list (sizes may differ)."""

    images: Tensor  # (B, 1 + S, 3, H, W)
    network_images: Tensor  # (B, 1 + S, 3, H, W)
    intrinsics: Tensor  # (B, 3, 3)
    depth: list[Tensor] | None
    motion: list[Tensor] | None
    names: list[str]
    optical_flow: OpticalFlow | None = None  # (B, S, ...): only when the data set computed it
    true_motion: TrueMotion | None = None  # only on the oracle rung "motion"

    @property
    def target(self) -> Tensor:
        return self.images[:, 0]

    @property
    def sources(self) -> Tensor:
        return self.images[:, 1:]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(value):
            if isinstance(value, (Tensor, OpticalFlow, TrueMotion)):
                return value.to(device, non_blocking=non_blocking)
            return value

        return Batch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def __len__(self) -> int:
        return self.images.shape[0]


def collate_samples(samples: list[Sample]) -> Batch:
    """``collate_fn`` for :class:`torch.utils.data.DataLoader`."""
    has_depth = all(s.depth is not None for s in samples)
    has_motion = all(s.motion is not None for s in samples)
    flows = [s.optical_flow for s in samples]
    motions = [s.true_motion for s in samples]
    return Batch(
        images=torch.stack([s.images for s in samples]),
        network_images=torch.stack([s.network_images for s in samples]),
        intrinsics=torch.stack([s.intrinsics for s in samples]),
        depth=[s.depth for s in samples] if has_depth else None,
        motion=[s.motion for s in samples] if has_motion else None,
        names=[s.name for s in samples],
        optical_flow=OpticalFlow.stack(flows) if all(f is not None for f in flows) else None,
        true_motion=TrueMotion.stack(motions) if all(m is not None for m in motions) else None,
    )
