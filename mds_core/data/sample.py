"""Typed training/evaluation samples and their collation into batches."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


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
    """

    images: Tensor
    network_images: Tensor
    intrinsics: Tensor
    depth: Tensor | None
    motion: Tensor | None
    name: str


@dataclass
class Batch:
    """A collated list of :class:`Sample`. Ground truth stays a list (sizes may differ)."""

    images: Tensor  # (B, 1 + S, 3, H, W)
    network_images: Tensor  # (B, 1 + S, 3, H, W)
    intrinsics: Tensor  # (B, 3, 3)
    depth: list[Tensor] | None
    motion: list[Tensor] | None
    names: list[str]

    @property
    def target(self) -> Tensor:
        return self.images[:, 0]

    @property
    def sources(self) -> Tensor:
        return self.images[:, 1:]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        def move(value):
            if isinstance(value, Tensor):
                return value.to(device, non_blocking=non_blocking)
            return value

        return Batch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def __len__(self) -> int:
        return self.images.shape[0]


def collate_samples(samples: list[Sample]) -> Batch:
    """``collate_fn`` for :class:`torch.utils.data.DataLoader`."""
    has_depth = all(s.depth is not None for s in samples)
    has_motion = all(s.motion is not None for s in samples)
    return Batch(
        images=torch.stack([s.images for s in samples]),
        network_images=torch.stack([s.network_images for s in samples]),
        intrinsics=torch.stack([s.intrinsics for s in samples]),
        depth=[s.depth for s in samples] if has_depth else None,
        motion=[s.motion for s in samples] if has_motion else None,
        names=[s.name for s in samples],
    )
