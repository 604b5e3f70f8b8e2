"""Motion segmentation evaluation: precision-recall of a moving-probability map.

Conventions:

* Labels: 1 = moving object (positive); 0 = static background and 2 = static movable object
  (negatives); 255 (and any other value) is ignored.
* A pixel is predicted moving at threshold ``t`` when ``probability >= t``. The curve is
  evaluated at ``t_k = k / num_bins`` for ``k = 0 .. num_bins - 1`` from histograms of the
  probabilities (bin ``k`` holds ``[k/n, (k+1)/n)``, 1.0 falls into the last bin), so memory does
  not grow with the number of pixels. The numbers "at 0.5" are counted exactly (``p >= 0.5``),
  independently of the bins.
* Precision is NaN at thresholds where nothing is predicted moving; F1 is 0 there and wherever
  precision + recall = 0. Average precision is the step-wise sum
  ``sum_k (R_k - R_{k+1}) P_k`` (scikit-learn's definition on the binned scores).
* With no positive pixel at all, recall (hence F1 and AP) is undefined: ``has_positives`` is
  False and ``best_f1``, ``best_threshold``, ``recall_at_05``, ``f1_at_05`` and
  ``average_precision`` are NaN. ``iou_at_05`` is NaN only when there are neither positives nor
  predicted positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITIVE_LABEL = 1
NEGATIVE_LABELS = (0, 2)


@dataclass(frozen=True)
class MotionSegmentationResult:
    """Precision-recall summary of moving-object segmentation (see the module docstring)."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    best_f1: float
    best_threshold: float
    precision_at_05: float
    recall_at_05: float
    f1_at_05: float
    iou_at_05: float
    average_precision: float
    num_positive: int
    num_negative: int
    num_images: int
    has_positives: bool


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator > 0 else float("nan")


class MotionSegmentationEvaluator:
    """Accumulates histograms of moving probabilities for positive and negative pixels."""

    def __init__(self, num_bins: int = 1000):
        if num_bins < 2:
            raise ValueError(f"num_bins must be at least 2, got {num_bins}")
        self.num_bins = num_bins
        self._positive = np.zeros(num_bins, dtype=np.int64)
        self._negative = np.zeros(num_bins, dtype=np.int64)
        self._tp05 = 0
        self._fp05 = 0
        self._images = 0

    def add(self, moving_probability: np.ndarray, labels: np.ndarray) -> None:
        """Add one image: ``(H, W)`` probabilities in [0, 1] and ``(H, W)`` uint8 labels."""
        probability = np.asarray(moving_probability, dtype=np.float64)
        labels = np.asarray(labels)
        if probability.shape != labels.shape or probability.ndim != 2:
            raise ValueError(
                f"probability {probability.shape} and labels {labels.shape} must be equal 2-D shapes"
            )
        positive = labels == POSITIVE_LABEL
        negative = np.isin(labels, NEGATIVE_LABELS)
        used = probability[positive | negative]
        if used.size and (not np.all(np.isfinite(used)) or used.min() < 0 or used.max() > 1):
            raise ValueError("moving probabilities must be finite and within [0, 1]")
        self._images += 1
        self._tp05 += self._accumulate(probability[positive], self._positive)
        self._fp05 += self._accumulate(probability[negative], self._negative)

    def _accumulate(self, values: np.ndarray, histogram: np.ndarray) -> int:
        """Add ``values`` to ``histogram`` in place; returns how many are >= 0.5."""
        if values.size == 0:
            return 0
        bins = np.minimum((values * self.num_bins).astype(np.int64), self.num_bins - 1)
        histogram += np.bincount(bins, minlength=self.num_bins)
        return int(np.count_nonzero(values >= 0.5))

    def result(self) -> MotionSegmentationResult:
        num_pos = int(self._positive.sum())
        num_neg = int(self._negative.sum())
        thresholds = np.arange(self.num_bins, dtype=np.float64) / self.num_bins
        # Pixels with probability >= t_k are those in bins k.. : reversed cumulative sums.
        tp = np.cumsum(self._positive[::-1])[::-1].astype(np.float64)
        fp = np.cumsum(self._negative[::-1])[::-1].astype(np.float64)
        predicted = tp + fp
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
            recall = tp / num_pos if num_pos > 0 else np.full(self.num_bins, np.nan)
            denominator = np.nan_to_num(precision) + np.nan_to_num(recall)
            f1 = np.where(
                denominator > 0,
                2 * np.nan_to_num(precision) * np.nan_to_num(recall) / np.maximum(denominator, 1e-300),
                0.0,
            )
        has_positives = num_pos > 0
        if has_positives:
            best = int(np.argmax(f1))
            best_f1, best_threshold = float(f1[best]), float(thresholds[best])
            next_recall = np.append(recall[1:], 0.0)
            average_precision = float(np.sum((recall - next_recall) * np.nan_to_num(precision)))
        else:
            best_f1 = best_threshold = average_precision = float("nan")
            f1 = np.full(self.num_bins, np.nan)

        tp05, fp05 = self._tp05, self._fp05
        fn05 = num_pos - tp05
        p05 = _ratio(tp05, tp05 + fp05)
        r05 = _ratio(tp05, num_pos)
        if has_positives:
            f05 = 2 * p05 * r05 / (p05 + r05) if tp05 > 0 else 0.0
        else:
            f05 = float("nan")
        return MotionSegmentationResult(
            thresholds=thresholds,
            precision=precision,
            recall=recall,
            f1=f1,
            best_f1=best_f1,
            best_threshold=best_threshold,
            precision_at_05=p05,
            recall_at_05=r05,
            f1_at_05=float(f05),
            iou_at_05=_ratio(tp05, tp05 + fp05 + fn05),
            average_precision=average_precision,
            num_positive=num_pos,
            num_negative=num_neg,
            num_images=self._images,
            has_positives=has_positives,
        )
