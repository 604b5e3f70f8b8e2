"""Typed configuration for training, evaluation and inference.

Every configuration is a tree of dataclasses. :func:`config_from_dict` builds one from plain
data (a YAML/JSON file, or the dict saved inside a checkpoint) and rejects unknown keys and
wrong types with the dotted path of the offending entry, so a typo in a config file is an
error rather than a silently ignored option.

Numbers in scientific notation (``1e-3``, ``5E-4``, ``1.5e2``) are numbers wherever a number is
expected, although YAML 1.1 (PyYAML) reads the ones without a dot or exponent sign as strings.
Every :class:`ConfigError` is one line naming the file or entry, what is wrong and, where it is
not obvious, what to do.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message names the offending entry."""


EncoderName = Literal["resnet18", "resnet50"]
PoseMaskBackbone = Literal["resnet18", "resnet50", "deeplabv3_resnet50"]
MaskRegulariser = Literal["depth_ordering", "smoothness"]
DepthSource = Literal["network", "ground_truth"]
MotionSource = Literal["network", "true_scene", "true_camera"]
MovingPixelsSource = Literal["evidence", "ground_truth"]
EvidenceEgo = Literal["pose", "flow"]
MotionModelName = Literal["components", "scene_flow"]


#: Default motion-hypothesis factors, in order of use (docs/decomposition-ladder.md): oncoming,
#: followed at the camera's speed, overtaking, slow oncoming, fast oncoming, fast overtaking. None
#: within ``hypothesis_spread`` of 1 (the static world, which is the background's).
STANDARD_HYPOTHESES: tuple[float, ...] = (2.0, 0.0, -0.5, 1.5, 3.0, -1.0)
#: The own-motion set (``model.hypothesis_set: own_motion``), in order of use: ``(f_k, h_k)`` pairs,
#: ``t_k = f_k t_0 + sigma h_k`` (docs/decomposition-ladder.md, "At a crossing"): oncoming, followed at
#: the camera's speed, moving right across the heading, moving left, overtaking, slow oncoming, fast
#: oncoming. Moving right or left also while the camera stands still.
OWN_MOTION_HYPOTHESES: tuple[tuple[float, tuple[float, float, float]], ...] = (
    (2.0, (0.0, 0.0, 0.0)), (0.0, (0.0, 0.0, 0.0)), (1.0, (1.5, 0.0, 0.0)), (1.0, (-1.5, 0.0, 0.0)),
    (-0.5, (0.0, 0.0, 0.0)), (1.5, (0.0, 0.0, 0.0)), (3.0, (0.0, 0.0, 0.0)))
HypothesisSet = Literal["own_motion", "ego_scaled"]


@dataclass
class ModelConfig:
    """Architecture (paper section 3.4). K=1 is the Monodepth2-style baseline."""

    height: int = 192
    width: int = 640
    # "components": MonoDepthSeg's K masks and K rigid motions (eq. 6); "scene_flow": Dynamo-Depth's
    # ego-motion plus per-pixel 3D flow gated by a motion mask (mds_core.method.dynamo_depth). The
    # scene-flow model uses pose_mask_encoder for its ego-pose and flow encoders, and ignores
    # num_components, mask_regulariser and the motion hypotheses.
    motion_model: MotionModelName = "components"
    depth_encoder: EncoderName = "resnet50"
    pose_mask_encoder: PoseMaskBackbone = "resnet50"
    num_components: int = 5
    mask_regulariser: MaskRegulariser = "depth_ordering"
    min_depth: float = 0.1
    max_depth: float = 100.0
    num_scales: int = 4
    pose_scale: float = 0.01
    detach_depth_input: bool = False
    # Oracle rung "depth" (docs/decomposition-ladder.md): "ground_truth" replaces the depth network
    # by the sample's ground-truth depth (mds_core.method.oracle), so only the pose+mask network learns.
    depth_source: DepthSource = "network"
    # Oracle rung "motion" (mds_core.method.true_motion), for training on generated scenes: the warp takes
    # the scene's true rigid motions instead of the pose+mask network's, so only depth learns;
    # "true_scene": every object's own motion (a perfect decomposition), "true_camera": the camera's
    # motion alone (K=1 with the true pose).
    motion_source: MotionSource = "network"
    # Oracle rung "movers" (docs/accuracy.md, the depth claim's ladder), for training on generated scenes:
    # the component assignment is told which pixels move and which do not by the scene's labels instead of
    # the optical flow's motion evidence (mds_core.method.motion_evidence.MotionEvidence.labelled): the
    # pose+mask network and the depth network still learn everything else.
    moving_pixels_source: MovingPixelsSource = "evidence"
    # The true motions' translations (metres) are multiplied by this: the depth network then learns depth in
    # metres times it. Its sigmoid starts near 0.2 units (a pixel's depth of 2 m at 0.1) and spans
    # min_depth..max_depth units; at 1, 1 m a frame against 0.2 m of depth throws every warp out of the image
    # and the depth can collapse to the far end (docs/accuracy.md, "The depth claim's ladder").
    true_motion_scale: float = 0.1
    # Ground-truth depth (metres) is multiplied by this before the warp. Warps are invariant to a
    # common scale of depth and translation; the pose decoder's 0.01 output scaling suits
    # translations of about 0.01 units per frame, so metric scenes (about 1 m per frame) learn
    # their translations much faster at 0.01 than at 1.
    ground_truth_depth_scale: float = 1.0
    # Motion hypotheses (mds_core.method.decomposition.hypothesis_motions): K-1 factors f_k, component
    # k moves like the background scaled, t_k = f_k t_0 + a bounded residual, r_k = r_0 + dr_k, from
    # what the pose decoder predicts for it. Along a road: 1 parked, 0 followed at the camera's speed,
    # 2 oncoming, < 0 overtaking. null: the first K-1 factors of the hypothesis_set; []: the paper's K
    # independent motions.
    motion_hypotheses: list[float] | None = None
    # the standard hypotheses used while motion_hypotheses and hypothesis_directions are null:
    # "own_motion" (OWN_MOTION_HYPOTHESES: factors and own motions in the camera frame) or "ego_scaled"
    # (STANDARD_HYPOTHESES: factors only, the default before own motions)
    hypothesis_set: HypothesisSet = "own_motion"
    # how far (times the ego translation, per axis) a hypothesis' residual may move it
    hypothesis_spread: float = 0.4
    # Own motion in the camera frame, for movers that do not follow the camera's heading and for a
    # camera standing still: hypothesis k moves by f_k t_0 + sigma h_k, h_k = hypothesis_directions[k-1]
    # ((x right, y down, z forward), one per non-background component; null: those of the
    # hypothesis_set when motion_hypotheses is null too, else none), sigma = hypothesis_scene_rate x the
    # frame's median depth (a speed per frame relative to the scene, in the depth's units); the residual
    # is then bounded by hypothesis_spread x max(|t_0|, sigma). hypothesis_scene_rate 0: sigma = 0.
    hypothesis_directions: list[list[float]] | None = None
    hypothesis_scene_rate: float = 0.02

    def _standard_hypotheses(self) -> list:
        own = self.hypothesis_set == "own_motion"
        return list((OWN_MOTION_HYPOTHESES if own else STANDARD_HYPOTHESES)[: self.num_components - 1])

    @property
    def hypotheses(self) -> list[float]:
        """The motion-hypothesis factors in use ([] = independent motions); see ``motion_hypotheses``."""
        if self.motion_hypotheses is not None:
            return list(self.motion_hypotheses)
        standard = self._standard_hypotheses()
        return [entry[0] for entry in standard] if self.hypothesis_set == "own_motion" else standard

    @property
    def directions(self) -> list[list[float]] | None:
        """The own motion ``h_k`` of each hypothesis in use, or None; see ``hypothesis_directions``."""
        if self.hypothesis_directions is not None:
            return [list(h) for h in self.hypothesis_directions]
        if self.motion_hypotheses is None and self.hypothesis_set == "own_motion" and self.num_components > 1:
            return [list(direction) for _, direction in self._standard_hypotheses()]
        return None

    def validate(self) -> None:
        if self.hypothesis_set not in ("own_motion", "ego_scaled"):
            raise ConfigError(f"model.hypothesis_set must be own_motion or ego_scaled, got {self.hypothesis_set!r}")
        standard = len(OWN_MOTION_HYPOTHESES if self.hypothesis_set == "own_motion" else STANDARD_HYPOTHESES)
        if self.motion_hypotheses is None and self.num_components - 1 > standard:
            raise ConfigError(
                f"model.num_components={self.num_components} needs model.motion_hypotheses set explicitly "
                f"(one factor per non-background component; the standard {self.hypothesis_set} list has "
                f"{standard}), or [] for independent motions"
            )
        if self.motion_hypotheses and len(self.motion_hypotheses) != self.num_components - 1:
            raise ConfigError(
                f"model.motion_hypotheses needs one factor per non-background component "
                f"({self.num_components - 1} for model.num_components={self.num_components}), "
                f"got {len(self.motion_hypotheses)}"
            )
        if not all(math.isfinite(f) for f in self.hypotheses):
            raise ConfigError(f"model.motion_hypotheses must be finite numbers, got {self.motion_hypotheses}")
        if self.hypothesis_directions is not None and (
                len(self.hypothesis_directions) != len(self.hypotheses)
                or not all(len(h) == 3 and all(math.isfinite(v) for v in h) for h in self.hypothesis_directions)):
            raise ConfigError(f"model.hypothesis_directions needs one [x, y, z] per motion hypothesis "
                              f"({len(self.hypotheses)}), got {self.hypothesis_directions}")
        if not 0 <= self.hypothesis_scene_rate < 1:
            raise ConfigError(f"model.hypothesis_scene_rate must be in [0, 1), got {self.hypothesis_scene_rate}")
        if not 0 <= self.hypothesis_spread < 10:
            raise ConfigError(f"model.hypothesis_spread must be in [0, 10), got {self.hypothesis_spread}")
        if self.motion_source not in ("network", "true_scene", "true_camera"):
            raise ConfigError(f"model.motion_source must be network, true_scene or true_camera, got {self.motion_source!r}")
        if self.motion_source != "network" and (self.motion_model != "components" or self.depth_source != "network"):
            raise ConfigError("model.motion_source true_scene/true_camera trains the depth network alone: it needs "
                              "model.motion_model components and model.depth_source network")
        if self.moving_pixels_source not in ("evidence", "ground_truth"):
            raise ConfigError(f"model.moving_pixels_source must be evidence or ground_truth, got {self.moving_pixels_source!r}")
        if self.moving_pixels_source != "evidence" and (self.motion_model != "components" or self.num_components < 2
                                                       or self.motion_source != "network"):
            raise ConfigError("model.moving_pixels_source ground_truth teaches the component assignment: it needs "
                              "model.motion_model components, num_components > 1 and model.motion_source network")
        if not self.true_motion_scale > 0:
            raise ConfigError(f"model.true_motion_scale must be > 0, got {self.true_motion_scale}")
        if not self.ground_truth_depth_scale > 0:
            raise ConfigError(f"model.ground_truth_depth_scale must be > 0, got {self.ground_truth_depth_scale}")
        if self.height <= 0 or self.width <= 0 or self.height % 32 or self.width % 32:
            raise ConfigError(
                f"model.height and model.width must be positive multiples of 32 "
                f"(ResNet strides), got {self.width}x{self.height}"
            )
        if not 1 <= self.num_components <= 64:
            raise ConfigError(f"model.num_components must be in 1..64, got {self.num_components}")
        if not 0 < self.min_depth < self.max_depth:
            raise ConfigError(
                f"need 0 < model.min_depth < model.max_depth, got {self.min_depth}, {self.max_depth}"
            )
        if not 1 <= self.num_scales <= 4:
            raise ConfigError(f"model.num_scales must be in 1..4, got {self.num_scales}")


@dataclass
class PretrainedConfig:
    """Optional local weight files in torchvision's state-dict format (never downloaded)."""

    depth_encoder: str | None = None
    pose_mask_encoder: str | None = None


@dataclass
class SceneFlowLossConfig:
    """The scene-flow model's regularisers (Dynamo-Depth's weights; mds_core.method.losses.scene_flow_terms).

    Each is divided by ``2^s`` at scale ``s`` and by the number of source frames; the four motion
    terms are ramped in linearly over the first ``ramp_steps`` steps of each training stage.
    """

    flow_smoothness_weight: float = 1e-3
    flow_consistency_weight: float = 5.0
    mask_sparsity_weight: float = 0.04
    mask_smoothness_weight: float = 0.1
    ground_weight: float = 0.1
    consistency_min_disparity: float = 0.03  # flow consistency only where the sigmoid disparity is above
    ground_rows: float = 0.4  # the ground plane is fitted to this bottom fraction of the rows
    ground_tolerance: float = 0.005  # RANSAC inlier distance (depth units), also the plane's downward shift
    ramp_steps: int = 0

    def validate(self) -> None:
        for name in ("flow_smoothness_weight", "flow_consistency_weight", "mask_sparsity_weight",
                     "mask_smoothness_weight", "ground_weight", "consistency_min_disparity", "ground_tolerance",
                     "ramp_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.scene_flow.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.ground_rows <= 1:
            raise ConfigError(f"loss.scene_flow.ground_rows must be in (0, 1], got {self.ground_rows}")


@dataclass
class LossConfig:
    """Monodepth2's self-supervised losses (paper eqs. 8-9, shared/notes/method.md)."""

    ssim_weight: float = 0.85
    smoothness_weight: float = 1e-3
    mask_smoothness_weight: float = 1e-3
    automask: bool = True
    # auto-masking only from this training step on. At the start the warp is close to the identity,
    # so auto-masking drops every pixel that a small motion makes worse and keeps those it happens to
    # improve: the ego-motion can then drift into a wrong basin (docs/decomposition-ladder.md)
    automask_start_step: int = 100
    min_reprojection: bool = True
    # Per-component assignment (mds_core.method.losses.component_assignment), at scale 0, K > 1; 0 = off
    assigned_reprojection_weight: float = 1.0  # reprojection of each pixel's assigned component (trains each T_k)
    mask_assignment_weight: float = 0.1  # -log M of each pixel's assigned component (trains the masks)
    # a pixel is assigned away from the background only where the best single component's error
    # is lower than the background's by more than this (photometric error units)
    assignment_margin: float = 0.02
    # the errors are averaged over a square window of this fraction of the image width (odd pixels)
    # before the assignment compares them
    assignment_window: float = 0.05
    # motion evidence (mds_core.method.motion_evidence): pixels whose optical flow is further than this
    # fraction of the image width from every place a static point can go under the background's motion
    # are assigned to the best non-background component; 0 = off
    motion_evidence_threshold: float = 0.0075
    # what a static point's place is measured under: "pose": the background component's motion, and the
    # distance from its epipolar line (blind to traffic along the camera's heading); "flow": the flow's own
    # ego-motion and the model's depth (detached), as the predictor's moving probability measures it
    # (motion_evidence.flow_motion_evidence: also cars ahead driving slower or faster than the camera)
    motion_evidence_ego: EvidenceEgo = "pose"
    # the background's transform alone, without auto-masking, on every pixel the motion evidence does not
    # flag (component_assignment.background_reprojection): how the ego-motion learns that the camera stopped
    background_reprojection_weight: float = 1.0
    # on frames whose optical flow says the camera stood still (median under 0.25 px against every
    # source), the background's transform is pulled to the identity (component_assignment.standing_camera;
    # in the pose decoder's units); needs the motion evidence
    standing_camera_weight: float = 0.05
    scene_flow: SceneFlowLossConfig = field(default_factory=SceneFlowLossConfig)

    def validate(self) -> None:
        self.scene_flow.validate()
        if self.automask_start_step < 0:
            raise ConfigError(f"loss.automask_start_step must be >= 0, got {self.automask_start_step}")
        if not 0.0 <= self.ssim_weight <= 1.0:
            raise ConfigError(f"loss.ssim_weight must be in [0, 1], got {self.ssim_weight}")
        for name in ("smoothness_weight", "mask_smoothness_weight",
                     "assigned_reprojection_weight", "mask_assignment_weight", "assignment_margin", "assignment_window",
                     "motion_evidence_threshold", "background_reprojection_weight", "standing_camera_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.motion_evidence_ego not in ("pose", "flow"):
            raise ConfigError(f"loss.motion_evidence_ego must be pose or flow, got {self.motion_evidence_ego!r}")


@dataclass
class AugmentationConfig:
    """Monodepth2 augmentation: each applied with probability 0.5, same draw for all frames."""

    enabled: bool = True
    colour_jitter_probability: float = 0.5
    flip_probability: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1


#: Frames of each stretch in which the camera stands still that training keeps (``data.static_keep``,
#: ``data.bag.stationary_keep``): enough for the decomposition to learn a standing camera (the
#: standing-camera term and the static targets of :mod:`mds_core.method.motion_evidence`), few enough
#: that a long wait does not fill the training set with one view.
STANDING_FRAMES_KEPT = 20


@dataclass
class BagConfig:
    """rosbag2 input (``data.format: rosbag``; README, "Training from rosbags").

    ``paths``: bag directories or ``.mcap`` / ``.db3`` files. ``image_topic`` and
    ``camera_info_topic``: empty = found in the bag. ``intrinsics``: ``[fx, fy, cx, cy]`` in pixels
    of the bag's images, used instead of any CameraInfo (images are then taken as they are).
    ``max_gap``: seconds; kept frames further apart than this start a new sequence.
    ``target_rate``: Hz; frames are skipped down to at most this rate (0 = every frame).
    ``stationary_threshold``: a frame whose 64x32 grey thumbnail differs from the last kept
    frame's by less than this (mean absolute difference in [0, 1]) is stationary (0 = off).
    ``stationary_keep``: of each stretch of stationary frames the first this many are kept (the
    decomposition learns from them that nothing but the movers moves while the camera stands, as
    it does at a crossing), the rest dropped (0: all of them, Monodepth2's habit).
    ``undistort``: remove the CameraInfo's plumb_bob / rational_polynomial / equidistant distortion.
    ``cache_memory_mb``: decoded frames (at the model resolution) kept in RAM; frames beyond go to
    a file in ``cache_dir`` (empty = the system's temporary directory), deleted when the process ends.
    """

    paths: list[str] = field(default_factory=list)
    image_topic: str = ""
    camera_info_topic: str = ""
    intrinsics: list[float] | None = None
    max_gap: float = 0.5
    target_rate: float = 0.0
    stationary_threshold: float = 0.01
    stationary_keep: int = STANDING_FRAMES_KEPT
    undistort: bool = True
    cache_memory_mb: int = 2048
    cache_dir: str = ""

    def validate(self) -> None:
        if self.intrinsics is not None:
            if len(self.intrinsics) != 4 or not all(math.isfinite(v) for v in self.intrinsics):
                raise ConfigError(f"data.bag.intrinsics must be 4 finite numbers [fx, fy, cx, cy], got {self.intrinsics}")
            if self.intrinsics[0] <= 0 or self.intrinsics[1] <= 0:
                raise ConfigError(f"data.bag.intrinsics: fx and fy must be > 0, got {self.intrinsics}")
        if not self.max_gap > 0:
            raise ConfigError(f"data.bag.max_gap must be > 0 seconds, got {self.max_gap}")
        if self.target_rate < 0:
            raise ConfigError(f"data.bag.target_rate must be >= 0 Hz (0 = every frame), got {self.target_rate}")
        if self.target_rate > 0 and self.max_gap <= 1.0 / self.target_rate:
            raise ConfigError(
                f"data.bag.max_gap ({self.max_gap} s) must exceed the frame interval 1/target_rate "
                f"({1.0 / self.target_rate:.3g} s), or every frame would start a new sequence"
            )
        if not 0.0 <= self.stationary_threshold < 1.0:
            raise ConfigError(f"data.bag.stationary_threshold must be in [0, 1), got {self.stationary_threshold}")
        if self.stationary_keep < 0:
            raise ConfigError(f"data.bag.stationary_keep must be >= 0 frames, got {self.stationary_keep}")
        if self.cache_memory_mb < 0:
            raise ConfigError(f"data.bag.cache_memory_mb must be >= 0, got {self.cache_memory_mb}")


#: Image folders of a KITTI odometry sequence (``data.footage.camera``): image_0/image_1 grey left/right,
#: image_2/image_3 colour left/right; image_l/image_r in the layout of the KITTI_sequence_N samples.
KITTI_ODOMETRY_CAMERAS: tuple[str, ...] = ("image_0", "image_1", "image_2", "image_3", "image_l", "image_r")


@dataclass
class FootageConfig:
    """Real footage (``data.format`` kitti_odometry, davis or video; docs/training.md, "Real footage").

    ``focal``: focal length in pixels of the native images, or ``fov``: their horizontal field of
    view in degrees; the principal point is the image centre. Footage without calibration (davis,
    video) needs one of the two; footage with its own calibration takes neither.
    ``fps``: video only: keep every k-th frame, the k whose rate (video fps / k) is nearest (null = every frame).
    ``sequences``: names of the sequences to use (a KITTI odometry number, a DAVIS sequence, a
    video's file stem; empty = all). ``camera``: the KITTI odometry image folder
    (:data:`KITTI_ODOMETRY_CAMERAS`; empty = image_2 when present, else image_0, else image_l).
    """

    focal: float | None = None
    fov: float | None = None
    fps: float | None = None
    sequences: list[str] = field(default_factory=list)
    camera: str = ""

    def validate(self) -> None:
        if self.focal is not None and not (math.isfinite(self.focal) and self.focal > 0):
            raise ConfigError(f"data.footage.focal (--focal) must be > 0 pixels, got {self.focal}")
        if self.fov is not None and not 0 < self.fov < 180:
            raise ConfigError(f"data.footage.fov (--fov) must be in (0, 180) degrees, got {self.fov}")
        if self.focal is not None and self.fov is not None:
            raise ConfigError("give the focal length (--focal) or the field of view (--fov), not both")
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ConfigError(f"data.footage.fps (--fps) must be > 0 frames per second, got {self.fps}")
        if self.camera and self.camera not in KITTI_ODOMETRY_CAMERAS:
            raise ConfigError(f"data.footage.camera (--camera) must be one of {list(KITTI_ODOMETRY_CAMERAS)} "
                              f"or empty, got {self.camera!r}")


@dataclass
class DataConfig:
    """Where training frames come from.

    ``format="folder"``: the sequence-folder format (README); ``root`` holds sequences.
    ``format="kitti"``: KITTI raw; ``split`` is a Zhou/Eigen split file (``train_files.txt``).
    ``format="rosbag"``: rosbag2 bags, set in ``bag`` (``root`` is not used).
    ``format="kitti_odometry"``, ``"davis"``, ``"video"``, ``"lidar_clips"``: real footage under ``root``
    (a KITTI odometry root, a DAVIS root, a video file or folder of videos, clips with sparse lidar depth
    in Dynamo-Depth's sample layout), set in ``footage``.
    """

    format: Literal["folder", "kitti", "rosbag", "kitti_odometry", "davis", "video", "lidar_clips"] = "folder"
    root: str = ""
    split: str | None = None
    val_split: str | None = None
    source_offsets: list[int] = field(default_factory=lambda: [-1, 1])
    static_threshold: float = 0.0
    static_keep: int = STANDING_FRAMES_KEPT  # of each run of static targets, the first this many are kept
    num_workers: int = 0
    image_extension: str = ".png"
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    bag: BagConfig = field(default_factory=BagConfig)
    footage: FootageConfig = field(default_factory=FootageConfig)

    def validate(self) -> None:
        if not self.source_offsets or 0 in self.source_offsets:
            raise ConfigError(
                f"data.source_offsets must be non-empty and must not contain 0, got {self.source_offsets}"
            )
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.static_keep < 0:
            raise ConfigError(f"data.static_keep must be >= 0 frames, got {self.static_keep}")
        for name in ("colour_jitter_probability", "flip_probability"):
            if not 0.0 <= getattr(self.augmentation, name) <= 1.0:
                raise ConfigError(f"data.augmentation.{name} must be in [0, 1], got {getattr(self.augmentation, name)}")
        self.bag.validate()
        self.footage.validate()

    def describe(self) -> str:
        """Where the frames come from, for log lines."""
        if self.format == "rosbag":
            return ", ".join(self.bag.paths) or "(no bags)"
        return self.root


@dataclass
class OptimConfig:
    """Adam with the paper's schedule: lr 1e-4, x0.1 for the last ``lr_decay_epochs`` epochs."""

    learning_rate: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    batch_size: int = 12
    epochs: int = 20
    lr_decay_epochs: int = 5
    lr_decay_factor: float = 0.1
    max_steps: int | None = None

    def validate(self) -> None:
        if self.learning_rate <= 0:
            raise ConfigError(f"optim.learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1:
            raise ConfigError(f"optim.batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ConfigError(f"optim.epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.lr_decay_epochs <= self.epochs:
            raise ConfigError(
                f"optim.lr_decay_epochs must be in 0..epochs ({self.epochs}), got {self.lr_decay_epochs} "
                f"(set both when shortening a run, e.g. optim.epochs=4 optim.lr_decay_epochs=1)"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"optim.max_steps must be >= 1 or null, got {self.max_steps}")


@dataclass
class DecompositionConfig:
    """The decomposition's schedule (docs/decomposition-ladder.md).

    ``warmup_steps``: for this many steps the masks are one-hot on component 0 (the model is K=1)
    and the per-component terms are off, so that depth and the ego-motion exist before the
    components are compared against them; then the components switch on.
    """

    warmup_steps: int = 150

    def validate(self) -> None:
        if self.warmup_steps < 0:
            raise ConfigError(f"decomposition.warmup_steps must be >= 0, got {self.warmup_steps}")


#: The network groups a training stage can train (``StageConfig.train``).
NETWORK_GROUPS: tuple[str, ...] = ("depth", "pose", "flow", "mask")


@dataclass
class StageConfig:
    """One stage of a staged training (Dynamo-Depth's schedule; mds_core.training.stages).

    ``fraction``: this stage's share of the run's steps (the shares are normalised over the
    stages). ``train``: the network groups that learn (``depth``; ``pose``: the ego-pose network,
    or MonoDepthSeg's pose+mask network; ``flow``: the scene-flow encoder and flow decoder; ``mask``:
    the scene-flow encoder and mask decoder); the others are frozen (no gradient, batch-norm
    statistics fixed). ``flow``/``mask``: whether the warp uses the complete flow and the motion
    mask (scene flow). ``automask``: auto-masking in this stage. Each stage starts a fresh Adam at
    ``optim.learning_rate * learning_rate_factor``.
    """

    name: str = "all"
    fraction: float = 1.0
    train: list[str] = field(default_factory=lambda: list(NETWORK_GROUPS))
    flow: bool = True
    mask: bool = True
    automask: bool = True
    learning_rate_factor: float = 1.0

    def validate(self) -> None:
        if not self.fraction > 0:
            raise ConfigError(f"stage {self.name!r}: fraction must be > 0, got {self.fraction}")
        unknown = [g for g in self.train if g not in NETWORK_GROUPS]
        if unknown or not self.train:
            raise ConfigError(f"stage {self.name!r}: train must name some of {list(NETWORK_GROUPS)}, got {self.train}")
        if self.mask and not self.flow:
            raise ConfigError(f"stage {self.name!r}: the motion mask gates the flow (mask needs flow)")
        if not self.learning_rate_factor > 0:
            raise ConfigError(f"stage {self.name!r}: learning_rate_factor must be > 0, got {self.learning_rate_factor}")


#: Dynamo-Depth's stages, in the public release's proportions (epochs 1, 1, 5, 20): depth and pose
#: with the rigid warp (auto-masking only here); the complete flow alone on frozen depth and pose;
#: pose, flow and mask on frozen depth (the "early estimation of motion segmentation"); everything
#: at half the learning rate.
SCENE_FLOW_STAGES: tuple[StageConfig, ...] = (
    StageConfig("rigid", 1.0, ["depth", "pose"], flow=False, mask=False, automask=True),
    StageConfig("flow", 1.0, ["flow"], flow=True, mask=False, automask=False),
    StageConfig("mask", 5.0, ["pose", "flow", "mask"], flow=True, mask=True, automask=False),
    StageConfig("joint", 20.0, ["depth", "pose", "flow", "mask"], flow=True, mask=True, automask=False,
                learning_rate_factor=0.5),
)


@dataclass
class LoggingConfig:
    """TensorBoard scalars every ``scalar_every`` steps, image panels every ``image_every``."""

    scalar_every: int = 50
    image_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    tensorboard: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    """Everything a training run needs; saved inside every checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    pretrained: PretrainedConfig = field(default_factory=PretrainedConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    decomposition: DecompositionConfig = field(default_factory=DecompositionConfig)
    # Staged training (mds_core.training.stages). null: the scene-flow model trains in
    # SCENE_FLOW_STAGES, the components model in one stage that trains everything; []: one stage.
    stages: list[StageConfig] | None = None
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    output_dir: str = "runs/mds"
    seed: int = 0
    device: str = "auto"
    amp: bool = True

    def validate(self) -> None:
        self.model.validate()
        self.loss.validate()
        self.data.validate()
        self.optim.validate()
        self.decomposition.validate()
        for stage in self.stages or []:
            stage.validate()
            if self.model.motion_model == "components" and (set(stage.train) & {"flow", "mask"}):
                raise ConfigError(f"stage {stage.name!r}: the components model has no flow or mask networks to train "
                                  f"(its masks are trained with 'pose', the pose+mask network)")
        if self.model.motion_model == "scene_flow" and sorted(self.data.source_offsets) != [-1, 1]:
            raise ConfigError(f"model.motion_model=scene_flow needs data.source_offsets [-1, 1] (its flow network "
                              f"sees the previous, target and next frames), got {self.data.source_offsets}")


# A number with an exponent, as YAML 1.2 and Python read it (``1e-3``, ``5E-4``, ``1.5e2``, ``.5e+1``).
# YAML 1.1, which PyYAML implements, needs a dot and a signed exponent, so it returns most of these as
# strings; the typed conversion below reads them as numbers where the field is a number.
_SCIENTIFIC = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")
_LARGEST_INTEGER = 2**63


def _is_scientific(text: str) -> bool:
    """Whether ``text`` is a number in scientific notation (mantissa and exponent)."""
    return _SCIENTIFIC.fullmatch(text.strip()) is not None


def _scientific_integer(text: str) -> int | str:
    """``text`` (scientific notation) as an int when it is a whole number, else ``text`` unchanged."""
    number = Decimal(text.strip())
    if abs(number) > _LARGEST_INTEGER or number != number.to_integral_value():
        return text
    return int(number)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _convert(value, option, path)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_convert(item, args[0], f"{path}[{i}]") for i, item in enumerate(value)]
    if _is_dataclass_type(tp):
        return config_from_dict(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, str) and _is_scientific(value):
            value = _scientific_integer(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _is_scientific(value):
            return float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp}")


def config_from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from nested plain data, rejecting unknown keys and bad types."""
    where = path or "config"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")
    kwargs = {
        name: _convert(value, hints[name], f"{path}.{name}" if path else name)
        for name, value in data.items()
    }
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested data (JSON/YAML-safe) for a dataclass config."""
    return dataclasses.asdict(config)


def load_config(path: str | Path, cls: type[T] = TrainConfig) -> T:  # type: ignore[assignment]
    """Load a YAML or JSON config file; missing keys keep their defaults."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not a text file (not UTF-8); pass a YAML or JSON config") from error
    data = _parse_json(text, str(path)) if path.suffix.lower() == ".json" else _parse_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (model:, data:, optim:, ...), "
                          f"got a {type(data).__name__}")
    config = config_from_dict(cls, data)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def apply_overrides(config: T, overrides: list[str]) -> T:
    """Apply ``section.key=value`` overrides (values parsed as YAML) and re-validate.

    Values are typed by the field they set, as in a config file: ``optim.learning_rate=1e-3`` is
    the number 0.001, ``data.root=1e-3`` the text ``1e-3``.
    """
    import yaml

    data = config_to_dict(config)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.split(".")
        node = data
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"override {item!r}: {key!r} is not a config section")
            node = node[key]
        if keys[-1] not in node:
            raise ConfigError(f"override {item!r}: unknown key {dotted!r}")
        try:
            node[keys[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: {_yaml_error_reason(error)[1]} (values are read as YAML)") from error
    updated = config_from_dict(type(config), data)
    validate = getattr(updated, "validate", None)
    if validate is not None:
        validate()
    return updated


def _parse_json(text: str, source: str) -> Any:
    """JSON ``text`` as plain data; a syntax error is a one-line :class:`ConfigError` with the line."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{source} line {error.lineno}: {error.msg} (column {error.colno})") from error


def _parse_yaml(text: str, source: str) -> Any:
    """YAML ``text`` as plain data; a syntax error is a one-line :class:`ConfigError` with the line."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        line, reason = _yaml_error_reason(error)
        where = f"{source} line {line}" if line is not None else source
        raise ConfigError(f"{where}: {reason}") from error


# PyYAML's (context, problem) wording -> a short reason; the context's line is the one to look at
# when the context names what was left open (a bracket or a quote), otherwise the problem's line.
_YAML_REASONS: list[tuple[str, str, str, bool]] = [
    ("while parsing a flow sequence", "expected ','", "unclosed flow sequence: '[' has no matching ']'", True),
    ("while parsing a flow mapping", "expected ','", "unclosed flow mapping: '{' has no matching '}'", True),
    ("while scanning a quoted scalar", "end of stream", "unterminated quoted string: add the closing quote", True),
    ("", "found character '\\t'", "tab character: indent with spaces", False),
    ("", "mapping values are not allowed here", "unexpected ': ' in a value: quote values that contain ': '", False),
    ("while parsing a block", "expected <block end>", "indentation does not match the lines above", False),
    ("", "that cannot start any token", "a value cannot start with this character: quote the value", False),
]


def _yaml_error_reason(error: Exception) -> tuple[int | None, str]:
    """The 1-based line and a short one-line reason for a PyYAML error (line None when unknown)."""
    problem = str(getattr(error, "problem", "") or "")
    context = str(getattr(error, "context", "") or "")
    problem_mark = getattr(error, "problem_mark", None)
    context_mark = getattr(error, "context_mark", None)
    for context_start, problem_part, reason, at_context in _YAML_REASONS:
        if context.startswith(context_start) and problem_part in problem:
            mark = context_mark if at_context and context_mark is not None else problem_mark
            return (mark.line + 1 if mark is not None else None), reason
    if problem:
        return (problem_mark.line + 1 if problem_mark is not None else None), problem
    first_line = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return None, f"not valid YAML ({first_line})" if first_line else "not valid YAML"
