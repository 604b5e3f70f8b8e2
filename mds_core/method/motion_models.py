"""The two motion models behind ``model.motion_model``, built from a :class:`ModelConfig`.

* ``components``: :class:`~mds_core.method.model.MonoDepthSeg` (K masks and K rigid motions);
* ``scene_flow``: :class:`~mds_core.method.dynamo_depth.DynamoDepth` (ego-motion plus per-pixel
  3D flow gated by a motion mask).

Both take ``(images, offsets, depth)`` and return a :class:`~mds_core.method.model.ModelOutput`
whose sources carry a warping motion model, so that the objective, the training loop and the
tools treat them alike.
"""

from __future__ import annotations

from mds_core.config import ModelConfig
from mds_core.method.dynamo_depth import DynamoDepth
from mds_core.method.model import MonoDepthSeg

MotionModel = MonoDepthSeg | DynamoDepth


def create_model(config: ModelConfig) -> MotionModel:
    """The untrained model ``config.motion_model`` names."""
    if config.motion_model == "scene_flow":
        return DynamoDepth(config)
    return MonoDepthSeg(config)


def motion_encoders(model: MotionModel) -> list:
    """The encoders of the motion networks (``pretrained.pose_mask_encoder`` initialises them)."""
    if isinstance(model, DynamoDepth):
        return [model.ego_pose_net.encoder, model.scene_flow_net.encoder]
    return [model.pose_mask_net.encoder]
