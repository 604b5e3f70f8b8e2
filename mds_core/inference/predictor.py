"""Inference API: load a checkpoint, predict depth and the scene decomposition of a frame pair.

:class:`Predictor` is what ``mds infer``, ``mds eval`` and the ROS node call. Frames are
``(H, W, 3)`` uint8 RGB arrays at any size; they are resized to the model resolution and
the intrinsics scaled to match. :meth:`Predictor.prepare` returns the preprocessed frame on the
inference device so that a streaming caller can keep the previous frame there.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from mds_core.checkpoint import load_checkpoint, load_model_state
from mds_core.config import ModelConfig
from mds_core.device import resolve_device
from mds_core.evaluation.motion_scores import flat_points, motion_distance
from mds_core.method.geometry import backproject, scale_intrinsics
from mds_core.method.model import MonoDepthSeg
from mds_core.method.networks import disparity_to_depth
from mds_core.method.oracle import ground_truth_depth as oracle_ground_truth_depth

LOG = logging.getLogger(__name__)


@dataclass
class PreparedFrame:
    """A frame resized to the model resolution, on the inference device."""

    tensor: Tensor  # (1, 3, h, w) float in [0, 1]
    original_size: tuple[int, int]  # (width, height) of the frame as given


@dataclass
class Prediction:
    """Outputs for the current frame, at the model resolution ``(h, w)``.

    Attributes:
        depth: ``(h, w)`` float32 depth (network units; see README on scale).
        disparity: ``(h, w)`` float32 sigmoid disparity.
        intrinsics: ``(3, 3)`` camera matrix at ``(h, w)``.
        masks: ``(K, h, w)`` soft component masks (None without a previous frame).
        labels: ``(h, w)`` uint8 argmax component of each pixel (None without a previous frame).
        transforms: ``(K, 4, 4)`` rigid motion of each component from the previous camera frame
            to the current one, as predicted (None without a previous frame).
        background: index of the background component (largest mask mass), or None.
        moving_probability: ``(h, w)`` 1 - mask of the background component, or None.
        motion_distance: ``(h, w)`` relative 3D distance between where the mixture and where the
            background component move each pixel (:func:`mds_core.evaluation.motion_scores.motion_distance`),
            or None.
        flat_motion_distance: the same with every point at the frame's median depth (no depth
            prior; :func:`mds_core.evaluation.motion_scores.flat_points`), or None.
    """

    depth: np.ndarray
    disparity: np.ndarray
    intrinsics: np.ndarray
    masks: np.ndarray | None = None
    labels: np.ndarray | None = None
    transforms: np.ndarray | None = None
    background: int | None = None
    moving_probability: np.ndarray | None = None
    motion_distance: np.ndarray | None = None
    flat_motion_distance: np.ndarray | None = None


def background_component(masks: Tensor) -> int:
    """The background is the component with the largest total mask mass in the frame."""
    return int(masks.flatten(1).sum(dim=1).argmax())


def scale_intrinsics_to(intrinsics: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Scale K from images of ``from_size`` (w, h) to ``to_size`` (w, h)."""
    matrix = torch.as_tensor(np.asarray(intrinsics, dtype=np.float64))
    return scale_intrinsics(matrix, to_size[0] / from_size[0], to_size[1] / from_size[1]).numpy()


class Predictor:
    """Depth and scene decomposition from a trained MonoDepthSeg checkpoint."""

    def __init__(self, model: MonoDepthSeg, device: torch.device | str = "cpu",
                 size: tuple[int, int] | None = None):
        self.device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        self.config: ModelConfig = model.config
        self._size = self._checked_size(size) if size else (self.config.width, self.config.height)
        self.checkpoint_step: int | None = None

    @staticmethod
    def _checked_size(size: tuple[int, int]) -> tuple[int, int]:
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0 or width % 32 or height % 32:
            raise ValueError(f"input size {width}x{height}: width and height must be positive multiples of 32")
        return width, height

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto",
                        size: tuple[int, int] | None = None) -> Predictor:
        """Load a checkpoint (safely: tensors and plain data only).

        ``size`` (w, h) runs the fully convolutional networks at another resolution than the
        one they were trained at (multiples of 32); by default the training resolution.
        """
        checkpoint = load_checkpoint(path)
        model = MonoDepthSeg(checkpoint.config.model)
        load_model_state(model, checkpoint.model, checkpoint.config.model, checkpoint.config.model, str(path))
        LOG.info("loaded %s (step %d)", path, checkpoint.step)
        predictor = cls(model, device, size)
        predictor.checkpoint_step = checkpoint.step
        return predictor

    @property
    def size(self) -> tuple[int, int]:
        """Model input size ``(width, height)``."""
        return self._size

    @property
    def num_components(self) -> int:
        return self.config.num_components

    def prepare(self, image: np.ndarray) -> PreparedFrame:
        """``(H, W, 3)`` uint8 RGB -> a :class:`PreparedFrame` on the device."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        if (width, height) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        tensor = tensor.permute(2, 0, 1)[None].float().div_(255.0)
        return PreparedFrame(tensor, (width, height))

    @torch.inference_mode()
    def predict(
        self,
        current: np.ndarray | PreparedFrame,
        intrinsics: np.ndarray,
        previous: np.ndarray | PreparedFrame | None = None,
        ground_truth_depth: np.ndarray | None = None,
    ) -> Prediction:
        """Predict for ``current``; with ``previous`` also the K masks and motions.

        ``intrinsics`` is the 3x3 camera matrix of the frames as given (original size).
        ``ground_truth_depth``: ``(H, W)`` metres (0 = none) at any size; required by models of the
        oracle rung "depth" (``model.depth_source = "ground_truth"``), ignored by the others.
        """
        current = current if isinstance(current, PreparedFrame) else self.prepare(current)
        k_model = scale_intrinsics_to(intrinsics, current.original_size, self.size)
        if self.model.uses_depth_network:
            disparity = self.model.predict_disparity(current.tensor)[0]
            depth = warp_depth = self.model.to_depth(disparity)
        else:
            if ground_truth_depth is None:
                raise ValueError("this model uses ground-truth depth (model.depth_source): pass ground_truth_depth")
            width, height = self.size
            depth = oracle_ground_truth_depth([torch.from_numpy(np.asarray(ground_truth_depth, dtype=np.float32))],
                                              height, width, self.config.min_depth, self.config.max_depth)
            depth = depth.to(self.device)
            disparity = self.model.oracle_disparity(depth)
            warp_depth = depth * self.config.ground_truth_depth_scale
        prediction = Prediction(
            depth=depth[0, 0].float().cpu().numpy(),
            disparity=disparity[0, 0].float().cpu().numpy(),
            intrinsics=k_model,
        )
        if previous is None:
            return prediction
        previous = previous if isinstance(previous, PreparedFrame) else self.prepare(previous)
        source = self.model.predict_motion(current.tensor, previous.tensor[:, None], [-1], disparity)[0]
        masks = source.motion.masks[0]
        background = background_component(masks)
        prediction.masks = masks.float().cpu().numpy()
        prediction.labels = masks.argmax(dim=0).to(torch.uint8).cpu().numpy()
        prediction.transforms = source.component_transforms[0].float().cpu().numpy()
        prediction.background = background
        prediction.moving_probability = (1.0 - masks[background]).float().cpu().numpy()
        k_tensor = torch.as_tensor(k_model, dtype=warp_depth.dtype, device=self.device)[None]
        inv_k = torch.linalg.inv(k_tensor)
        distance = motion_distance(source.motion, backproject(warp_depth, inv_k), warp_depth)
        prediction.motion_distance = distance[0].float().cpu().numpy()
        flat_distance = motion_distance(source.motion, *flat_points(warp_depth, inv_k))
        prediction.flat_motion_distance = flat_distance[0].float().cpu().numpy()
        return prediction


def resize_disparity_to_depth(disparity: np.ndarray, size: tuple[int, int], min_depth: float,
                              max_depth: float) -> np.ndarray:
    """Resize a sigmoid disparity map to ``size`` (w, h) bilinearly, then convert to depth."""
    tensor = torch.from_numpy(disparity)[None, None]
    resized = F.interpolate(tensor, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    return disparity_to_depth(resized, min_depth, max_depth)[0, 0].numpy()
