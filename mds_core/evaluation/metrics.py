"""Depth evaluation following Monodepth2's conventions, with Dynamo-Depth's per-region split.

Conventions (see the method notes, "Evaluation"):

* The prediction is already resized to the ground-truth size (bilinear, by the caller) and is a
  depth in the model's units; the ground truth is in metres with ``0`` meaning "no measurement".
* A pixel is valid where ``min_depth < gt < max_depth`` (strict on both sides) and, with
  ``eigen_crop``, inside the Eigen crop box (:func:`eigen_crop_mask`).
* Scale: with ``median_scaling`` the prediction of each image is multiplied by
  ``median(gt[valid]) / median(pred[valid])`` over the *whole* image's valid pixels; a
  ``fixed_scale`` replaces that (e.g. 5.4 for stereo-trained models); otherwise no scaling.
  After scaling the prediction is clamped to ``[min_depth, max_depth]``.
* Metrics: ``abs_rel = mean |g - p| / g``, ``sq_rel = mean (g - p)^2 / g``,
  ``rmse = sqrt(mean (g - p)^2)``, ``rmse_log = sqrt(mean (ln g - ln p)^2)``,
  ``a_k = mean[max(g/p, p/g) < 1.25^k]`` for ``k = 1, 2, 3``.
* Overall metrics are computed per image and then averaged over images (Monodepth2).
* Region metrics (motion labels: 0 static background, 1 moving, 2 static movable object,
  255 unlabelled/ignored) are **pooled**: every valid pixel of the region across all images counts
  once (Dynamo-Depth's convention), using the whole-image scale. The per-image mean over the
  images that contain the region is reported beside them (``regions_per_image``).
* Moving pixels are further split by kind when the caller says which of them move *with the
  camera* (the un-warped previous frame already explains them,
  :func:`mds_core.evaluation.motion_scores.split_moving_labels`): ``moving_relative`` and
  ``moving_with_camera``. The photometric loss says nothing about the depth of a with-camera
  mover (the image does not change whatever its depth), so only the relative movers show what a
  motion model does for the depth of moving objects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from mds_core.motion_labels import MOTION_MOVING, MOTION_PARKED, MOTION_STATIC, MOTION_UNLABELLED

#: Region name -> motion label value.
REGION_LABELS: dict[str, int] = {"moving": MOTION_MOVING, "static_movable": MOTION_PARKED,
                                 "static_background": MOTION_STATIC}
#: The moving region split by kind (``DepthEvaluator.add(..., with_camera=...)``).
MOVER_KIND_REGIONS: tuple[str, ...] = ("moving_relative", "moving_with_camera")
#: Every region of :class:`DepthEvaluation`, in report order.
DEPTH_REGIONS: tuple[str, ...] = ("moving", *MOVER_KIND_REGIONS, "static_movable", "static_background")
#: Label value for unlabelled pixels (never counted in any region).
IGNORE_LABEL = MOTION_UNLABELLED

_METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


@dataclass(frozen=True)
class DepthMetrics:
    """The seven standard depth metrics (lower is better for the errors, higher for ``a_k``)."""

    abs_rel: float
    sq_rel: float
    rmse: float
    rmse_log: float
    a1: float
    a2: float
    a3: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, k) for k in _METRIC_NAMES], dtype=np.float64)

    @classmethod
    def from_array(cls, values: np.ndarray) -> DepthMetrics:
        return cls(*(float(v) for v in values))

    @staticmethod
    def names() -> tuple[str, ...]:
        return _METRIC_NAMES


class _ErrorSums:
    """Running sums from which the seven metrics of a pooled pixel set follow (bounded memory)."""

    def __init__(self) -> None:
        self.count = 0
        self.abs_rel = 0.0
        self.sq_rel = 0.0
        self.sq = 0.0
        self.log_sq = 0.0
        self.deltas = np.zeros(3, dtype=np.int64)

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        if gt.size == 0:
            return
        gt = gt.astype(np.float64, copy=False)
        pred = pred.astype(np.float64, copy=False)
        diff = gt - pred
        self.count += int(gt.size)
        self.abs_rel += float(np.sum(np.abs(diff) / gt))
        self.sq_rel += float(np.sum(diff**2 / gt))
        self.sq += float(np.sum(diff**2))
        self.log_sq += float(np.sum((np.log(gt) - np.log(pred)) ** 2))
        ratio = np.maximum(gt / pred, pred / gt)
        self.deltas += np.array([np.count_nonzero(ratio < 1.25**k) for k in (1, 2, 3)])

    def metrics(self) -> DepthMetrics | None:
        if self.count == 0:
            return None
        n = self.count
        a1, a2, a3 = (self.deltas / n).tolist()
        return DepthMetrics(
            abs_rel=self.abs_rel / n,
            sq_rel=self.sq_rel / n,
            rmse=float(np.sqrt(self.sq / n)),
            rmse_log=float(np.sqrt(self.log_sq / n)),
            a1=a1,
            a2=a2,
            a3=a3,
        )


def compute_depth_errors(gt: np.ndarray, pred: np.ndarray) -> DepthMetrics:
    """Metrics of 1-D arrays of valid ground-truth and (scaled, clamped) predicted depths.

    Both must be positive and of equal, non-zero length; computed in float64.
    """
    gt = np.asarray(gt, dtype=np.float64).ravel()
    pred = np.asarray(pred, dtype=np.float64).ravel()
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred differ in size: {gt.shape} vs {pred.shape}")
    if gt.size == 0:
        raise ValueError("no pixels to evaluate")
    sums = _ErrorSums()
    sums.add(gt, pred)
    result = sums.metrics()
    assert result is not None
    return result


@dataclass(frozen=True)
class EvalSettings:
    """Evaluation settings; the defaults are Monodepth2's for monocular KITTI models except
    ``eigen_crop`` (set it for the KITTI Eigen split)."""

    min_depth: float = 1e-3
    max_depth: float = 80.0
    eigen_crop: bool = False
    median_scaling: bool = True
    #: Multiply predictions by this instead of median scaling (takes precedence) when set.
    fixed_scale: float | None = None
    #: Where the per-image scales passed to :meth:`DepthEvaluator.add` come from ("" when none are).
    external_scale: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.min_depth < self.max_depth:
            raise ValueError(f"need 0 <= min_depth < max_depth, got {self.min_depth}, {self.max_depth}")
        if self.fixed_scale is not None and not self.fixed_scale > 0:
            raise ValueError(f"fixed_scale must be positive, got {self.fixed_scale}")


def eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the Eigen crop (Garg/Eigen, as in Monodepth2).

    True on rows ``[int(0.40810811 H), int(0.99189189 H))`` and columns
    ``[int(0.03594771 W), int(0.96405229 W))``.
    """
    mask = np.zeros((height, width), dtype=bool)
    top, bottom = int(0.40810811 * height), int(0.99189189 * height)
    left, right = int(0.03594771 * width), int(0.96405229 * width)
    mask[top:bottom, left:right] = True
    return mask


@dataclass(frozen=True)
class ScaleStats:
    """The per-image scale factors applied to the predictions.

    ``std_normalised`` is ``std(ratios / median(ratios))``, the number Monodepth2 prints.
    """

    mean: float
    median: float
    std: float
    std_normalised: float
    count: int


@dataclass(frozen=True)
class DepthEvaluation:
    """Result of :class:`DepthEvaluator`.

    ``overall``: metrics averaged over images. ``regions``: region name -> metrics pooled over all
    pixels of that region across images (``None`` when the region has no valid pixels).
    ``regions_per_image``: the same regions, metrics averaged over the images containing the
    region. ``region_pixels``: number of valid pixels per region (pooled count);
    ``region_images``: number of images containing the region. ``num_labelled_images``: images
    that came with motion labels. ``num_skipped``: images without any valid ground truth pixel
    (not counted in ``num_images``).
    """

    overall: DepthMetrics
    regions: dict[str, DepthMetrics | None]
    regions_per_image: dict[str, DepthMetrics | None]
    num_images: int
    num_valid_pixels: int
    region_pixels: dict[str, int]
    region_images: dict[str, int]
    num_labelled_images: int
    num_skipped: int
    scale: ScaleStats
    settings: EvalSettings = field(default_factory=EvalSettings)


class DepthEvaluator:
    """Accumulates depth metrics image by image; memory does not grow with the pixel count."""

    def __init__(self, settings: EvalSettings | None = None):
        self.settings = settings or EvalSettings()
        self._per_image: list[np.ndarray] = []
        self._scales: list[float] = []
        self._valid_pixels = 0
        self._skipped = 0
        self._labelled = 0
        self._region_sums = {name: _ErrorSums() for name in DEPTH_REGIONS}
        self._region_per_image: dict[str, list[np.ndarray]] = {name: [] for name in DEPTH_REGIONS}
        self._crop_cache: dict[tuple[int, int], np.ndarray] = {}

    def _crop(self, height: int, width: int) -> np.ndarray:
        key = (height, width)
        if key not in self._crop_cache:
            self._crop_cache[key] = eigen_crop_mask(height, width)
        return self._crop_cache[key]

    def add(self, pred_depth: np.ndarray, gt_depth: np.ndarray, motion: np.ndarray | None = None,
            with_camera: np.ndarray | None = None, scale: float | None = None) -> bool:
        """Add one image; returns False (and counts it as skipped) when it has no valid GT pixel.

        ``pred_depth`` and ``gt_depth`` are ``(H, W)``; ``motion`` an optional ``(H, W)`` label map;
        ``with_camera`` an optional ``(H, W)`` boolean map of the pixels that move with the camera
        (splits the moving region into ``moving_relative`` and ``moving_with_camera``); ``scale``:
        this image's scale from elsewhere (the camera height), instead of the settings' scaling.
        """
        s = self.settings
        pred_depth = np.asarray(pred_depth)
        gt_depth = np.asarray(gt_depth)
        if pred_depth.ndim != 2 or pred_depth.shape != gt_depth.shape:
            raise ValueError(
                f"prediction {pred_depth.shape} and ground truth {gt_depth.shape} must be equal 2-D "
                "shapes (resize the prediction to the ground-truth size first)"
            )
        if motion is not None and np.shape(motion) != gt_depth.shape:
            raise ValueError(f"motion labels {np.shape(motion)} do not match ground truth {gt_depth.shape}")
        if with_camera is not None and (motion is None or np.shape(with_camera) != gt_depth.shape):
            raise ValueError(f"the with-camera map {np.shape(with_camera)} needs motion labels of the ground "
                             f"truth's shape {gt_depth.shape}")
        valid = (gt_depth > s.min_depth) & (gt_depth < s.max_depth)
        if s.eigen_crop:
            valid &= self._crop(*gt_depth.shape)
        if not valid.any():
            self._skipped += 1
            return False
        gt = gt_depth[valid].astype(np.float64)
        pred = pred_depth[valid].astype(np.float64)
        if not np.all(np.isfinite(pred)):
            raise ValueError("prediction has non-finite values at valid ground-truth pixels")
        if scale is not None:  # the caller's (camera height)
            scale = float(scale)
        elif s.fixed_scale is not None:
            scale = float(s.fixed_scale)
        elif s.median_scaling:
            pred_median = float(np.median(pred))
            if pred_median <= 0:
                raise ValueError(f"median predicted depth is {pred_median}; depths must be positive")
            scale = float(np.median(gt)) / pred_median
        else:
            scale = 1.0
        pred = np.clip(pred * scale, s.min_depth, s.max_depth)
        self._scales.append(scale)
        self._valid_pixels += gt.size
        self._per_image.append(compute_depth_errors(gt, pred).as_array())

        if motion is not None:
            self._labelled += 1
            labels = np.asarray(motion)[valid]
            regions = {name: labels == value for name, value in REGION_LABELS.items()}
            if with_camera is not None:
                moves_with_camera = np.asarray(with_camera, dtype=bool)[valid]
                regions["moving_relative"] = regions["moving"] & ~moves_with_camera
                regions["moving_with_camera"] = regions["moving"] & moves_with_camera
            for name, in_region in regions.items():
                if not in_region.any():
                    continue
                self._region_sums[name].add(gt[in_region], pred[in_region])
                self._region_per_image[name].append(
                    compute_depth_errors(gt[in_region], pred[in_region]).as_array()
                )
        return True

    def result(self) -> DepthEvaluation:
        """The metrics so far; raises ``ValueError`` when no image with valid GT was added."""
        if not self._per_image:
            raise ValueError(f"no image with valid ground truth was evaluated ({self._skipped} skipped)")
        scales = np.asarray(self._scales)
        median = float(np.median(scales))
        return DepthEvaluation(
            overall=DepthMetrics.from_array(np.mean(self._per_image, axis=0)),
            regions={name: sums.metrics() for name, sums in self._region_sums.items()},
            regions_per_image={
                name: DepthMetrics.from_array(np.mean(rows, axis=0)) if rows else None
                for name, rows in self._region_per_image.items()
            },
            num_images=len(self._per_image),
            num_valid_pixels=self._valid_pixels,
            region_pixels={name: sums.count for name, sums in self._region_sums.items()},
            region_images={name: len(rows) for name, rows in self._region_per_image.items()},
            num_labelled_images=self._labelled,
            num_skipped=self._skipped,
            scale=ScaleStats(
                mean=float(scales.mean()),
                median=median,
                std=float(scales.std()),
                std_normalised=float(np.std(scales / median)) if median > 0 else float("nan"),
                count=int(scales.size),
            ),
            settings=self.settings,
        )
