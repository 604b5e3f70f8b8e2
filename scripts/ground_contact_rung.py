"""Would the ground pin a mover's depth? A ladder rung for the depth claim (docs/accuracy.md).

A component's free rigid motion lets the photometric loss accept a mover at any depth whose translation
scales with it (``scripts/object_scale_probe.py``). The world's scale is fixed by the static scene, and
an object stands on the ground: this rung retrains a model with the config of an existing checkpoint
plus one term, ``weight`` x the mean ``|log D - log D_ground|`` over the labelled objects' contact pixels
(an object pixel whose pixel below is static background), where ``D_ground`` is where the pixel's ray
meets the ground plane fitted (RANSAC, :func:`~mds_core.method.metric_scale.fit_ground_plane`) to the
detached depth of the static background. The contact pixels come from the scene's labels (an oracle: it
asks whether the mechanism works before a learned segmentation has to find them), so the checkpoint's
config must load them (``model.moving_pixels_source=ground_truth``, the rung ``movers``).

    python scripts/ground_contact_rung.py outputs/accuracy_city2/seed0/k5_true_movers/checkpoints/last.pt \\
        --out outputs/accuracy_city2/seed0/k5_true_movers_contact --weight 0.1
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mds_core.checkpoint import load_checkpoint
from mds_core.config import LossConfig, ModelConfig
from mds_core.data.sample import Batch
from mds_core.method.geometry import backproject
from mds_core.method.losses import SelfSupervisedObjective
from mds_core.method.losses.objective import LossOutput
from mds_core.method.metric_scale import fit_ground_plane
from mds_core.method.model import ModelOutput
from mds_core.tools.synth import MOTION_STATIC, MOTION_UNLABELLED
from mds_core.training.loop import train


def contact_log_error(depth: Tensor, inv_intrinsics: Tensor, labels: Tensor,
                      max_tilt_degrees: float = 15.0) -> Tensor | None:
    """Mean ``|log D - log D_ground|`` over one image's contact pixels; None without a plane or contacts.

    ``depth``: ``(1, H, W)``; ``inv_intrinsics``: ``(3, 3)``; ``labels``: ``(H, W)`` motion labels."""
    static = labels == MOTION_STATIC
    objects = (labels != MOTION_STATIC) & (labels != MOTION_UNLABELLED)
    contact = torch.zeros_like(objects)
    contact[:-1] = objects[:-1] & static[1:]
    if not contact.any():
        return None
    rays = backproject(torch.ones_like(depth)[None], inv_intrinsics[None])[0]  # (3, H, W), z = 1
    plane = fit_ground_plane(rays * depth.detach(), static)
    if plane is None or plane.tilt_degrees(0.0) > max_tilt_degrees:
        return None
    normal = torch.as_tensor(plane.normal, dtype=depth.dtype, device=depth.device)
    towards_ground = -(normal[:, None, None] * rays).sum(dim=0)  # > 0 where the ray meets the ground ahead
    contact &= towards_ground > 1e-3
    if not contact.any():
        return None
    ground_depth = plane.distance / towards_ground[contact]
    return (depth[0][contact].clamp_min(1e-6).log() - ground_depth.log()).abs().mean()


class GroundContact(SelfSupervisedObjective):
    """The self-supervised objective plus ``weight`` x the labelled objects' contact error."""

    def __init__(self, loss: LossConfig, model: ModelConfig, weight: float):
        super().__init__(loss, model)
        self.weight = weight

    def __call__(self, batch: Batch, output: ModelOutput, **kwargs) -> LossOutput:
        result = super().__call__(batch, output, **kwargs)
        if batch.motion is None:
            raise ValueError("the ground-contact rung needs the scene's labels (model.moving_pixels_source=ground_truth)")
        depth = output.depth
        inverse = torch.linalg.inv(batch.intrinsics.to(depth))
        terms = []
        for image, labels in enumerate(batch.motion):
            labels = F.interpolate(labels[None].float(), size=depth.shape[-2:], mode="nearest")[0, 0].long()
            term = contact_log_error(depth[image], inverse[image], labels)
            if term is not None and math.isfinite(float(term)):
                terms.append(term)
        if not terms:
            return result
        return dataclasses.replace(result, total=result.total + self.weight * torch.stack(terms).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint whose config is retrained with the term")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--weight", type=float, default=0.1)
    args = parser.parse_args()
    config = load_checkpoint(args.checkpoint).config
    config.output_dir = str(args.out)
    train(config, overwrite=True, objective=GroundContact(config.loss, config.model, args.weight))


if __name__ == "__main__":
    main()
