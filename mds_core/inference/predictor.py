"""Inference API: load a checkpoint, predict depth and the scene's motion from consecutive frames.

:class:`Predictor` is what ``mds infer``, ``mds eval`` and the ROS node call, for either motion
model: the K components need the previous frame; the scene flow needs the previous and the next
frame (its motion mask describes the middle one), and with the previous frame alone gives the
ego-motion. Frames are
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
from mds_core.config import LossConfig, ModelConfig
from mds_core.device import resolve_device
from mds_core.evaluation.motion_scores import flat_points, motion_distance
from mds_core.inference.moving_belief import MovingBelief
from mds_core.method.dynamo_depth import DynamoDepth
from mds_core.method.geometry import backproject, pose_vector_to_transform, scale_intrinsics
from mds_core.method.motion_evidence import EvidenceStream, stream_evidence
from mds_core.method.motion_models import MotionModel, create_model
from mds_core.method.networks import disparity_to_depth
from mds_core.method.oracle import ground_truth_depth as oracle_ground_truth_depth
from mds_core.method.scene_flow import SceneFlowMotion

LOG = logging.getLogger(__name__)

#: The moving probability with the flow's evidence: this share of the masks' (1 - the background's mask), the rest
#: the evidence's. A model trained for minutes generalises its masks poorly to drives it has not seen, the evidence
#: needs no training: on held-out city drives (three seeds, two sets of drives, docs/decomposition-ladder.md) 0.2 was
#: better than half and half in every situation but along the road on the set with most lead cars (equal there),
#: which only the masks see.
MASK_SHARE = 0.2


@dataclass
class PreparedFrame:
    """A frame resized to the model resolution, on the inference device."""

    tensor: Tensor  # (1, 3, h, w) float in [0, 1]
    original_size: tuple[int, int]  # (width, height) of the frame as given
    image: np.ndarray | None = None  # (h, w, 3) uint8 RGB at the model resolution (the frame itself if it was)


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
        moving_probability: ``(h, w)`` how surely each pixel moves, or None: ``frame_moving_probability``
            accumulated over the stream along the optical flow (:mod:`mds_core.inference.moving_belief`) where the
            predictor uses the evidence (the components model's default), else the masks'.
        frame_moving_probability: ``(h, w)`` this frame pair's own: ``mask_moving_probability`` weighed with
            ``motion_evidence`` (:data:`MASK_SHARE`) as far as ``evidence_sight`` goes, the masks' alone beyond;
            or None.
        mask_moving_probability: ``(h, w)`` 1 - mask of the background component (the paper's), or None.
        motion_evidence: ``(h, w)`` the optical flow's own say that a pixel moves, under the ego-motion the
            flow itself shows (:func:`mds_core.method.motion_evidence.stream_evidence`), or None when not used.
        evidence_sight: ``(h, w)`` in [0, 1] how far the frames could show a mover that keeps to its epipolar
            line (:class:`mds_core.method.motion_evidence.SightedEvidence`), or None when not used.
        motion_distance: ``(h, w)`` relative 3D distance between where the mixture and where the
            background component move each pixel (:func:`mds_core.evaluation.motion_scores.motion_distance`),
            or None.
        flat_motion_distance: the same with every point at the frame's median depth (no depth
            prior; :func:`mds_core.evaluation.motion_scores.flat_points`), or None.
        independent_flow: ``(3, h, w)`` scene flow only: the 3D motion of each point toward the next
            frame that the ego-motion does not explain, ``M (C - E)``, target camera frame, depth units
            per frame; None otherwise.
        ego_motion: ``(4, 4)`` the camera's motion from the previous frame to the current one (for
            the components model, the background component's), or None.

    For the scene-flow model ``masks`` is ``(2, h, w)`` (static, moving), ``labels`` 1 where the
    motion mask exceeds 0.5, ``transforms`` ``(1, 4, 4)`` the ego-motion and ``background`` 0.
    """

    depth: np.ndarray
    disparity: np.ndarray
    intrinsics: np.ndarray
    masks: np.ndarray | None = None
    labels: np.ndarray | None = None
    transforms: np.ndarray | None = None
    background: int | None = None
    moving_probability: np.ndarray | None = None
    frame_moving_probability: np.ndarray | None = None
    mask_moving_probability: np.ndarray | None = None
    motion_evidence: np.ndarray | None = None
    evidence_sight: np.ndarray | None = None
    motion_distance: np.ndarray | None = None
    flat_motion_distance: np.ndarray | None = None
    independent_flow: np.ndarray | None = None
    ego_motion: np.ndarray | None = None


def background_component(masks: Tensor) -> int:
    """The background is the component with the largest total mask mass in the frame."""
    return int(masks.flatten(1).sum(dim=1).argmax())


def scale_intrinsics_to(intrinsics: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Scale K from images of ``from_size`` (w, h) to ``to_size`` (w, h)."""
    matrix = torch.as_tensor(np.asarray(intrinsics, dtype=np.float64))
    return scale_intrinsics(matrix, to_size[0] / from_size[0], to_size[1] / from_size[1]).numpy()


class Predictor:
    """Depth and scene motion from a trained checkpoint of either motion model.

    ``motion_evidence`` (components model): the moving probability weighs the masks' (:data:`MASK_SHARE`) and
    the optical flow's evidence, under the ego-motion the flow itself shows (docs/performance.md); False:
    the masks' alone, as in the paper. Calls whose ``previous`` frame is the ``current`` frame of the call
    before form a stream: its evidence also looks three frames back (``evidence_stream``,
    :func:`mds_core.method.motion_evidence.stream_evidence`), and its moving probability accumulates along the
    flow (``moving_belief``, :mod:`mds_core.inference.moving_belief`); one predictor per camera stream.
    """

    def __init__(self, model: MotionModel, device: torch.device | str = "cpu",
                 size: tuple[int, int] | None = None, motion_evidence: bool = True):
        self.motion_evidence = motion_evidence
        # what the evidence keeps from frame to frame: how far it may believe this model's depth, the chained flow
        self.evidence_stream = EvidenceStream()
        self.moving_belief = MovingBelief()
        self.device = resolve_device(str(device)) if not isinstance(device, torch.device) else device
        self.model = model.to(self.device).eval()
        self.config: ModelConfig = model.config
        self._size = self._checked_size(size) if size else (self.config.width, self.config.height)
        self.checkpoint_step: int | None = None
        self.backend = "torch"
        self.providers: list[str] = []  # onnxruntime execution providers (backend "onnxruntime")
        self._export_folder = None  # the temporary export an onnxruntime predictor runs (removed with it)

    def memory_bytes(self) -> int:
        """Bytes of the model's weights and buffers held by PyTorch (an onnxruntime model's graphs live
        in onnxruntime's sessions and count 0 here)."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    @staticmethod
    def _checked_size(size: tuple[int, int]) -> tuple[int, int]:
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0 or width % 32 or height % 32:
            raise ValueError(f"input size {width}x{height}: width and height must be positive multiples of 32")
        return width, height

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto",
                        size: tuple[int, int] | None = None, motion_evidence: bool = True) -> Predictor:
        """Load a checkpoint (safely: tensors and plain data only).

        ``size`` (w, h) runs the fully convolutional networks at another resolution than the
        one they were trained at (multiples of 32); by default the training resolution.
        """
        checkpoint = load_checkpoint(path)
        model = create_model(checkpoint.config.model)
        load_model_state(model, checkpoint.model, checkpoint.config.model, checkpoint.config.model, str(path))
        LOG.info("loaded %s (step %d)", path, checkpoint.step)
        predictor = cls(model, device, size, motion_evidence)
        predictor.checkpoint_step = checkpoint.step
        return predictor

    @classmethod
    def from_onnx(cls, folder: str | Path, device: str = "auto", size: tuple[int, int] | None = None,
                  threads: int = 0, providers: list[str] | None = None, motion_evidence: bool = True) -> Predictor:
        """The networks of an export folder (``mds export``) in onnxruntime, at the size they were
        exported at; the rest of the prediction as with :meth:`from_checkpoint`. ``threads``: the
        sessions' intra-op threads (0: onnxruntime's default); ``providers``: the execution providers,
        best first (default: the best available for ``device``)."""
        from mds_core.inference.onnx_backend import GPU_PROVIDERS, OnnxModelError, load_onnx_model

        model, metadata = load_onnx_model(folder, device, threads, providers)
        exported = (model.config.width, model.config.height)
        if size is not None and tuple(size) != exported:
            raise OnnxModelError(f"{folder} was exported at {exported[0]}x{exported[1]}, not {size[0]}x{size[1]} "
                                 f"(export again with --size)")
        uses_gpu = any(p in GPU_PROVIDERS for p in metadata["providers"])
        predictor = cls(model, resolve_device(device) if uses_gpu else torch.device("cpu"),
                        motion_evidence=motion_evidence)
        predictor.checkpoint_step = metadata.get("checkpoint_step")
        predictor.backend = "onnxruntime"
        predictor.providers = metadata["providers"]
        return predictor

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "auto", size: tuple[int, int] | None = None,
             backend: str = "torch", onnx_folder: str | Path | None = None,
             motion_evidence: bool = True) -> Predictor:
        """A predictor on either backend. ``backend="onnxruntime"`` runs the export folder
        ``onnx_folder``, or, without one, exports ``checkpoint`` first (into a temporary folder that
        lives as long as the predictor; a few seconds per network)."""
        if backend == "torch":
            return cls.from_checkpoint(checkpoint, device=device, size=size, motion_evidence=motion_evidence)
        if backend != "onnxruntime":
            raise ValueError(f"backend must be torch or onnxruntime, got {backend!r}")
        if onnx_folder:
            return cls.from_onnx(onnx_folder, device=device, size=size, motion_evidence=motion_evidence)
        import tempfile

        from mds_core.inference.onnx_export import export_onnx

        source = cls.from_checkpoint(checkpoint, device="cpu", size=size)
        folder = tempfile.TemporaryDirectory(prefix="mds_onnx_")
        export_onnx(source.model, folder.name, size=source.size, checkpoint_step=source.checkpoint_step)
        predictor = cls.from_onnx(folder.name, device=device, motion_evidence=motion_evidence)
        predictor._export_folder = folder
        return predictor

    @property
    def size(self) -> tuple[int, int]:
        """Model input size ``(width, height)``."""
        return self._size

    @property
    def num_components(self) -> int:
        """K for the components model; 2 (static, moving) for the scene flow."""
        return 2 if self.uses_scene_flow else self.config.num_components

    @property
    def uses_scene_flow(self) -> bool:
        return isinstance(self.model, DynamoDepth)

    @property
    def motion_model(self) -> str:
        """``components`` or ``scene_flow`` (``model.motion_model`` of the checkpoint)."""
        return self.config.motion_model

    def prepare(self, image: np.ndarray) -> PreparedFrame:
        """``(H, W, 3)`` uint8 RGB -> a :class:`PreparedFrame` on the device."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        if (width, height) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).to(self.device)
        tensor = tensor.permute(2, 0, 1)[None].float().div_(255.0)
        return PreparedFrame(tensor, (width, height), image)

    @torch.inference_mode()
    def predict(
        self,
        current: np.ndarray | PreparedFrame,
        intrinsics: np.ndarray,
        previous: np.ndarray | PreparedFrame | None = None,
        ground_truth_depth: np.ndarray | None = None,
        following: np.ndarray | PreparedFrame | None = None,
        motion_scores: bool = True,
    ) -> Prediction:
        """Predict for ``current``; with ``previous`` also the K masks and motions (components), or
        the ego-motion, and with ``following`` too the motion mask and independent flow (scene flow).

        ``intrinsics`` is the 3x3 camera matrix of the frames as given (original size).
        ``ground_truth_depth``: ``(H, W)`` metres (0 = none) at any size; required by models of the
        oracle rung "depth" (``model.depth_source = "ground_truth"``), ignored by the others.
        ``motion_scores=False`` leaves out ``motion_distance`` and ``flat_motion_distance`` (for
        evaluation; a node does not publish them: about 20 ms a frame at 640x192 on a CPU).
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
        k_tensor = torch.as_tensor(k_model, dtype=warp_depth.dtype, device=self.device)[None]
        if self.uses_scene_flow:
            following = following if following is None or isinstance(following, PreparedFrame) else self.prepare(following)
            return self._scene_flow(prediction, current, previous, following, warp_depth, k_tensor, motion_scores)
        source = self.model.predict_motion(current.tensor, previous.tensor[:, None], [-1], disparity, warp_depth)[0]
        masks = source.motion.masks[0]
        background = background_component(masks)
        prediction.masks = masks.float().cpu().numpy()
        # max().indices, not argmax(): the same first-maximum index, 20x faster over K on the CPU
        prediction.labels = masks.max(dim=0).indices.to(torch.uint8).cpu().numpy()
        prediction.transforms = source.component_transforms[0].float().cpu().numpy()
        prediction.background = background
        moving = 1.0 - masks[background]
        prediction.mask_moving_probability = moving.float().cpu().numpy()
        if self.motion_evidence:
            evidence = stream_evidence(current.tensor, previous.tensor, k_tensor.float(),
                                       LossConfig.motion_evidence_threshold * self.size[0],
                                       2 * int(LossConfig.assignment_window * self.size[0] / 2) + 1,
                                       depth=warp_depth.float(), stream=self.evidence_stream)
            score, sight = evidence.score[0].to(moving.device), evidence.sight[0].to(moving.device)
            prediction.motion_evidence = score.cpu().numpy()
            prediction.evidence_sight = sight.cpu().numpy()
            moving = moving.float()
            # where the frames cannot show a mover that keeps to its epipolar line, its look (the masks) decides
            moving = sight * (MASK_SHARE * moving + (1.0 - MASK_SHARE) * score) + (1.0 - sight) * moving
            prediction.frame_moving_probability = moving.float().cpu().numpy()
            moving = self.moving_belief.update(current.tensor, previous.tensor, moving[None], evidence.flow,
                                               evidence.valid)[0]
        prediction.moving_probability = moving.float().cpu().numpy()
        prediction.ego_motion = prediction.transforms[background]
        if not motion_scores:
            return prediction
        inv_k = torch.linalg.inv(k_tensor)
        distance = motion_distance(source.motion, backproject(warp_depth, inv_k), warp_depth)
        prediction.motion_distance = distance[0].float().cpu().numpy()
        flat_distance = motion_distance(source.motion, *flat_points(warp_depth, inv_k))
        prediction.flat_motion_distance = flat_distance[0].float().cpu().numpy()
        return prediction

    def _scene_flow(self, prediction: Prediction, current: PreparedFrame, previous: PreparedFrame,
                    following: PreparedFrame | None, warp_depth: Tensor, k_tensor: Tensor,
                    motion_scores: bool = True) -> Prediction:
        """The ego-motion from (previous, current); with ``following`` the motion mask and independent
        flow of the current frame (toward the next one) and the motion scores."""
        model: DynamoDepth = self.model
        if following is None:
            pose, _ = model.predict_ego_motion(current.tensor, previous.tensor[:, None], [-1])[0]
            prediction.ego_motion = _pose_matrix(pose)
            prediction.transforms = prediction.ego_motion[None]
            return prediction
        frames = torch.stack([previous.tensor, following.tensor], dim=1)
        ego = model.predict_ego_motion(current.tensor, frames, [-1, 1])
        flow = model.predict_scene_flow(previous.tensor, current.tensor, following.tensor, [pose for pose, _ in ego])
        mask, complete = flow.motion_mask[0], flow.complete_flow[0]  # toward the next frame
        motion = SceneFlowMotion(ego[1][1], complete, mask)
        points = backproject(warp_depth, torch.linalg.inv(k_tensor))
        probability = mask[0, 0].float().cpu().numpy()
        prediction.moving_probability = probability
        prediction.masks = np.stack([1.0 - probability, probability])
        prediction.labels = (probability > 0.5).astype(np.uint8)
        prediction.background = 0
        prediction.ego_motion = _pose_matrix(ego[0][0])
        prediction.transforms = prediction.ego_motion[None]
        prediction.independent_flow = motion.independent_flow(points)[0].float().cpu().numpy()
        if not motion_scores:
            return prediction
        prediction.motion_distance = motion_distance(motion, points, warp_depth)[0].float().cpu().numpy()
        flat, flat_depth = flat_points(warp_depth, torch.linalg.inv(k_tensor))
        prediction.flat_motion_distance = motion_distance(motion, flat, flat_depth)[0].float().cpu().numpy()
        return prediction


def _pose_matrix(pose: Tensor) -> np.ndarray:
    """``(1, 6)`` translation and axis-angle -> ``(4, 4)`` float32 (earlier frame -> later frame)."""
    return pose_vector_to_transform(pose[:, 3:], pose[:, :3])[0].float().cpu().numpy()


def resize_disparity_to_depth(disparity: np.ndarray, size: tuple[int, int], min_depth: float,
                              max_depth: float) -> np.ndarray:
    """Resize a sigmoid disparity map to ``size`` (w, h) bilinearly, then convert to depth."""
    tensor = torch.from_numpy(disparity)[None, None]
    resized = F.interpolate(tensor, size=(size[1], size[0]), mode="bilinear", align_corners=False)
    return disparity_to_depth(resized, min_depth, max_depth)[0, 0].numpy()
