"""Oracle rung "motion": the scene's true rigid motions in place of the pose+mask network.

The paper's claim (Table 4) is that modelling the moving components improves depth on the moving
objects. Whether a *perfect* decomposition would do so at a given budget separates the claim from
how well the masks learn: with ``model.motion_source`` set, the warp (eq. 6) takes the generated
scene's own motions and only the depth network learns.

* ``true_scene``: every pixel moves with its object (its instance id) or, off objects, with the
  static world: ``T = C_s^-1 B_o A_o^-1 C_t`` (``C`` = world_from_camera of the target ``t`` and the
  source ``s``; ``A``, ``B`` = world_from_object at ``t`` and ``s``), the static world's being
  ``C_s^-1 C_t``. Eq. (6) with one-hot masks, one component per object.
* ``true_camera``: every pixel moves with the static world: K=1 with the true camera motion, the
  counterpart that tells what the true motion alone, without the objects', does for depth.

Translations are the generator's (metres) times ``model.true_motion_scale``: the depth network learns
depth in those units, as with stereo supervision; evaluation's median scaling makes the rungs comparable. Mirroring a
sample (augmentation) mirrors its motions: ``T' = F T F`` with ``F = diag(-1, 1, 1, 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from mds_core.method.decomposition import ComponentMotion

#: horizontal mirror of camera coordinates (x right, y down, z forward)
MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))


@dataclass
class TrueMotion:
    """The true rigid motions of one target frame (a sample) or a batch of them.

    ``components``: ``(1, Hg, Wg)`` int64 at the native size (``(B, 1, Hg, Wg)`` for a batch), each
    pixel's index into ``transforms`` (0: the static world); ``transforms``: ``(S, N, 4, 4)``
    (``(B, S, N, 4, 4)``) target-camera -> source-camera transforms per source frame and component.
    """

    components: Tensor
    transforms: Tensor

    def mirrored(self) -> TrueMotion:
        """The motions of the horizontally flipped sample."""
        mirror = MIRROR.to(self.transforms)
        return TrueMotion(torch.flip(self.components, dims=[-1]), mirror @ self.transforms @ mirror)

    def camera_only(self) -> TrueMotion:
        """Every pixel with the static world (the ``true_camera`` rung)."""
        return TrueMotion(torch.zeros_like(self.components), self.transforms[..., :1, :, :])

    def scaled(self, factor: float) -> TrueMotion:
        """The same motions with their translations times ``factor`` (depth then learns in metres times it)."""
        transforms = self.transforms.clone()
        transforms[..., :3, 3] *= factor
        return TrueMotion(self.components, transforms)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TrueMotion:
        return TrueMotion(self.components.to(device, non_blocking=non_blocking),
                          self.transforms.to(device, non_blocking=non_blocking))

    @staticmethod
    def stack(motions: list[TrueMotion]) -> TrueMotion:
        """Samples' motions as a batch's: components padded with identity transforms to the largest N."""
        count = max(m.transforms.shape[-3] for m in motions)
        padded = []
        for m in motions:
            extra = torch.eye(4).expand(m.transforms.shape[0], count - m.transforms.shape[-3], 4, 4)
            padded.append(torch.cat([m.transforms, extra.to(m.transforms)], dim=-3))
        return TrueMotion(torch.stack([m.components for m in motions]), torch.stack(padded))

    def component_motion(self, source: int, height: int, width: int) -> ComponentMotion:
        """Eq. (6) for source ``source`` at the model's ``(height, width)``: one-hot masks of the
        components (nearest-neighbour resized, so no pixel mixes two objects) and their transforms."""
        components = self.components
        if components.shape[-2:] != (height, width):
            components = F.interpolate(components.float(), size=(height, width), mode="nearest").long()
        transforms = self.transforms[:, source].float()
        masks = F.one_hot(components[:, 0], transforms.shape[1]).permute(0, 3, 1, 2).to(transforms.dtype)
        return ComponentMotion(masks=masks, transforms=transforms)
