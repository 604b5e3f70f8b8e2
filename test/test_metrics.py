"""Depth metrics, motion segmentation metrics and reports, checked against hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mds_core.evaluation import (
    DepthEvaluator,
    DepthMetrics,
    EvalSettings,
    EvaluationReport,
    MotionSegmentationEvaluator,
    compute_depth_errors,
    eigen_crop_mask,
)

NO_SCALING = EvalSettings(median_scaling=False)


def row(*values: float) -> np.ndarray:
    """A ``(1, N)`` float array: a one-row image."""
    return np.array([values], dtype=np.float64)


# --- compute_depth_errors ----------------------------------------------------------------------


def test_every_metric_by_hand() -> None:
    m = compute_depth_errors(np.array([2.0, 4.0]), np.array([1.0, 4.0]))
    assert m.abs_rel == pytest.approx((1 / 2 + 0) / 2)  # 0.25
    assert m.sq_rel == pytest.approx((1 / 2 + 0) / 2)  # 0.25
    assert m.rmse == pytest.approx(math.sqrt((1 + 0) / 2))
    assert m.rmse_log == pytest.approx(math.sqrt((math.log(2) ** 2 + 0) / 2))
    # ratios max(g/p, p/g) = 2 and 1: only the exact pixel is within 1.25^3 = 1.953.
    assert (m.a1, m.a2, m.a3) == (0.5, 0.5, 0.5)


def test_delta_thresholds_by_hand() -> None:
    # Ratios 1.2 (< 1.25), 1.5 (< 1.5625), 1.9 (< 1.953), 2 (none).
    m = compute_depth_errors(np.ones(4), np.array([1.2, 1.5, 1.9, 0.5]))
    assert (m.a1, m.a2, m.a3) == (0.25, 0.5, 0.75)


def test_sq_rel_and_rmse_differ_by_gt_weighting() -> None:
    m = compute_depth_errors(np.array([10.0]), np.array([7.0]))
    assert m.abs_rel == pytest.approx(0.3)
    assert m.sq_rel == pytest.approx(0.9)
    assert m.rmse == pytest.approx(3.0)
    assert m.rmse_log == pytest.approx(abs(math.log(10 / 7)))
    assert m.as_dict()["sq_rel"] == pytest.approx(0.9)
    assert list(m.as_dict()) == ["abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3"]


def test_compute_depth_errors_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        compute_depth_errors(np.array([]), np.array([]))
    with pytest.raises(ValueError):
        compute_depth_errors(np.ones(2), np.ones(3))


# --- Eigen crop --------------------------------------------------------------------------------


def test_eigen_crop_box_kitti_size() -> None:
    mask = eigen_crop_mask(375, 1242)
    # int(0.40810811*375) = 153, int(0.99189189*375) = 371, int(0.03594771*1242) = 44,
    # int(0.96405229*1242) = 1197
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    assert (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1) == (153, 371, 44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)


def test_eigen_crop_in_evaluator() -> None:
    gt = np.full((20, 40), 10.0)
    pred = np.full((20, 40), 10.0)
    pred[0, 0] = 50.0  # outside the crop (row 0 < int(0.408*20) = 8)
    cropped = DepthEvaluator(EvalSettings(eigen_crop=True, median_scaling=False))
    cropped.add(pred, gt)
    result = cropped.result()
    assert result.overall.abs_rel == 0.0
    assert result.num_valid_pixels == (19 - 8) * (38 - 1)
    full = DepthEvaluator(NO_SCALING)
    full.add(pred, gt)
    assert full.result().overall.abs_rel == pytest.approx(4.0 / 800)


# --- DepthEvaluator ----------------------------------------------------------------------------


def test_median_scaling_by_hand() -> None:
    evaluator = DepthEvaluator()
    # Valid gt 2, 4, 6 (0 = none): medians 4 and 2 -> scale 2 -> perfect.
    evaluator.add(np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[2.0, 4.0], [6.0, 0.0]]))
    result = evaluator.result()
    assert result.overall.abs_rel == pytest.approx(0.0)
    assert result.overall.a1 == 1.0
    assert result.scale.median == pytest.approx(2.0)
    assert result.num_valid_pixels == 3


def test_median_scaling_invariance() -> None:
    rng = np.random.default_rng(0)
    gt = rng.uniform(2, 70, size=(12, 16))
    pred = gt * rng.uniform(0.7, 1.3, size=gt.shape) / 3.0
    results = []
    for factor in (1.0, 7.5):
        evaluator = DepthEvaluator()
        evaluator.add(pred * factor, gt)
        results.append(evaluator.result())
    np.testing.assert_allclose(results[0].overall.as_array(), results[1].overall.as_array(), rtol=1e-9)
    assert results[0].scale.median == pytest.approx(results[1].scale.median * 7.5)


def test_fixed_scale_and_no_scaling() -> None:
    gt, pred = row(2.0, 4.0), row(1.0, 1.0)
    fixed = DepthEvaluator(EvalSettings(fixed_scale=2.0))  # pred -> 2, 2
    fixed.add(pred, gt)
    assert fixed.result().overall.abs_rel == pytest.approx((0 + 2 / 4) / 2)
    assert fixed.result().scale.mean == 2.0
    median = DepthEvaluator()  # scale median(2,4)/1 = 3 -> pred 3, 3
    median.add(pred, gt)
    assert median.result().overall.abs_rel == pytest.approx((1 / 2 + 1 / 4) / 2)
    unscaled = DepthEvaluator(NO_SCALING)
    unscaled.add(pred, gt)
    assert unscaled.result().overall.abs_rel == pytest.approx((1 / 2 + 3 / 4) / 2)
    with pytest.raises(ValueError):
        EvalSettings(fixed_scale=0.0)


def test_depth_caps_and_clamps() -> None:
    # gt 0, 1e-3 (not > min), 80 (not < max) and 100 are invalid; only gt 50 counts.
    gt = row(0.0, 1e-3, 80.0, 100.0, 50.0)
    evaluator = DepthEvaluator(NO_SCALING)
    evaluator.add(row(1.0, 1.0, 1.0, 1.0, 200.0), gt)  # 200 clamps to 80
    result = evaluator.result()
    assert result.num_valid_pixels == 1
    assert result.overall.abs_rel == pytest.approx(30 / 50)
    low = DepthEvaluator(NO_SCALING)
    low.add(row(0.0), row(2.0))  # 0 clamps to 1e-3
    assert low.result().overall.abs_rel == pytest.approx((2 - 1e-3) / 2)
    capped = DepthEvaluator(EvalSettings(median_scaling=False, max_depth=40.0))
    capped.add(row(45.0, 1.0), row(30.0, 50.0))  # gt 50 invalid; 45 clamps to 40
    assert capped.result().overall.abs_rel == pytest.approx(10 / 30)


def test_overall_is_per_image_mean_and_regions_are_pooled() -> None:
    evaluator = DepthEvaluator(NO_SCALING)
    # Image A: moving (2 vs 1: abs_rel 0.5), background exact. Image abs_rel 0.25.
    evaluator.add(row(1.0, 4.0), row(2.0, 4.0), np.array([[1, 0]], np.uint8))
    # Image B: three exact moving pixels, a static movable one (1 vs 2: 1.0) and an unlabelled
    # one (1 vs 3: 2.0). Image abs_rel (0 + 0 + 0 + 1 + 2) / 5 = 0.6.
    labels = np.array([[1, 1, 1, 2, 255]], np.uint8)
    evaluator.add(row(1.0, 1.0, 1.0, 2.0, 3.0), row(1.0, 1.0, 1.0, 1.0, 1.0), labels)
    result = evaluator.result()
    assert result.num_images == 2 and result.num_labelled_images == 2
    assert result.overall.abs_rel == pytest.approx((0.25 + 0.6) / 2)
    # Pooled: four moving pixels, one with error 0.5 -> 0.125; per-image mean (0.5 + 0) / 2.
    moving = result.regions["moving"]
    assert moving is not None
    assert moving.abs_rel == pytest.approx(0.5 / 4)
    assert moving.rmse == pytest.approx(math.sqrt(1 / 4))
    assert moving.a1 == pytest.approx(3 / 4)
    assert result.regions_per_image["moving"].abs_rel == pytest.approx(0.25)
    assert result.regions["static_movable"].abs_rel == pytest.approx(1.0)
    assert result.regions["static_background"].abs_rel == 0.0
    assert result.region_pixels == {"moving": 4, "moving_relative": 0, "moving_with_camera": 0, "static_movable": 1,
                                    "static_background": 1}  # no with-camera map: the moving kinds are not split
    assert result.region_images == {"moving": 2, "moving_relative": 0, "moving_with_camera": 0, "static_movable": 1,
                                    "static_background": 1}


def test_moving_pixels_split_by_kind() -> None:
    evaluator = DepthEvaluator(NO_SCALING)
    labels = np.array([[1, 1, 1, 0, 2]], np.uint8)
    with_camera = np.array([[True, False, False, True, False]])  # only moving pixels count as movers
    # errors: with-camera mover 1.0 (2 vs 1), relative movers 0 and 0.5, background and static movable exact
    evaluator.add(row(2.0, 1.0, 3.0, 1.0, 1.0), row(1.0, 1.0, 2.0, 1.0, 1.0), labels, with_camera)
    result = evaluator.result()
    assert result.regions["moving"].abs_rel == pytest.approx(1.5 / 3)
    assert result.regions["moving_relative"].abs_rel == pytest.approx(0.25)
    assert result.regions["moving_with_camera"].abs_rel == pytest.approx(1.0)
    assert result.region_pixels["moving_relative"] == 2 and result.region_pixels["moving_with_camera"] == 1
    assert result.regions["static_background"].abs_rel == 0.0
    with pytest.raises(ValueError, match="with-camera map"):
        evaluator.add(row(1.0), row(1.0), None, np.array([[True]]))


def test_region_scale_comes_from_the_whole_image() -> None:
    evaluator = DepthEvaluator()
    # Whole-image scale median(1,1,1,4)/median(2,2,2,2) = 0.5 -> all predictions 1.
    evaluator.add(row(2.0, 2.0, 2.0, 2.0), row(1.0, 1.0, 1.0, 4.0), np.array([[0, 0, 0, 1]], np.uint8))
    result = evaluator.result()
    assert result.regions["moving"].abs_rel == pytest.approx(3 / 4)
    assert result.regions["static_background"].abs_rel == pytest.approx(0.0)


def test_regions_without_labels_or_pixels_are_none() -> None:
    evaluator = DepthEvaluator()
    evaluator.add(row(1.0, 2.0), row(1.0, 2.0))
    result = evaluator.result()
    assert all(v is None for v in result.regions.values())
    assert set(result.region_pixels.values()) == {0}
    evaluator.add(row(1.0, 2.0), row(1.0, 2.0), np.array([[0, 255]], np.uint8))
    result = evaluator.result()
    assert result.regions["moving"] is None and result.regions["static_background"] is not None


def test_scale_statistics() -> None:
    evaluator = DepthEvaluator()
    for scale in (1.0, 2.0, 4.0):
        evaluator.add(row(1.0, 2.0) / scale, row(1.0, 2.0))
    stats = evaluator.result().scale
    assert stats.count == 3
    assert stats.median == pytest.approx(2.0)
    assert stats.mean == pytest.approx(7 / 3)
    assert stats.std == pytest.approx(np.std([1.0, 2.0, 4.0]))
    assert stats.std_normalised == pytest.approx(np.std([0.5, 1.0, 2.0]))


def test_images_without_valid_gt_are_skipped_and_errors_are_clear() -> None:
    evaluator = DepthEvaluator()
    assert evaluator.add(row(1.0), row(0.0)) is False
    with pytest.raises(ValueError, match="no image"):
        evaluator.result()
    assert evaluator.add(row(1.0), row(3.0)) is True
    assert evaluator.result().num_skipped == 1 and evaluator.result().num_images == 1
    with pytest.raises(ValueError, match="resize"):
        evaluator.add(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="motion"):
        evaluator.add(np.ones((2, 2)), np.ones((2, 2)), np.zeros((1, 2), np.uint8))
    with pytest.raises(ValueError, match="non-finite"):
        evaluator.add(row(np.nan, 1.0), row(1.0, 1.0))


# --- motion segmentation -----------------------------------------------------------------------


def test_perfect_separation() -> None:
    evaluator = MotionSegmentationEvaluator()
    probability = np.array([[0.9, 0.9, 0.1], [0.1, 0.1, 0.7]])
    labels = np.array([[1, 1, 0], [2, 0, 1]], np.uint8)
    evaluator.add(probability, labels)
    result = evaluator.result()
    assert result.best_f1 == 1.0
    assert 0.1 < result.best_threshold <= 0.7
    assert result.average_precision == pytest.approx(1.0)
    assert (result.precision_at_05, result.recall_at_05, result.f1_at_05, result.iou_at_05) == (1, 1, 1, 1)
    assert (result.num_positive, result.num_negative, result.num_images) == (3, 3, 1)


def test_precision_recall_by_hand() -> None:
    evaluator = MotionSegmentationEvaluator(num_bins=10)
    # Positives 0.85, 0.65, 0.35; negatives 0.75, 0.25, 0.15, 0.05; ignored pixels (255) at 0.99.
    labels = np.array([[1, 0, 255], [1, 2, 255]], np.uint8)
    evaluator.add(np.array([[0.85, 0.75, 0.99], [0.65, 0.25, 0.99]]), labels)
    evaluator.add(np.array([[0.35, 0.15, 0.05]]), np.array([[1, 0, 2]], np.uint8))
    r = evaluator.result()
    np.testing.assert_allclose(r.thresholds, np.arange(10) / 10)
    tp = np.array([3, 3, 3, 3, 2, 2, 2, 1, 1, 0])
    fp = np.array([4, 3, 2, 1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_allclose(r.recall, tp / 3)
    np.testing.assert_allclose(r.precision[:9], tp[:9] / (tp + fp)[:9])
    assert np.isnan(r.precision[9]) and r.f1[9] == 0.0
    # Best F1 at t = 0.3: P = 3/4, R = 1 -> 6/7.
    assert r.best_f1 == pytest.approx(6 / 7)
    assert r.best_threshold == pytest.approx(0.3)
    # AP = (1/1 + 2/3 + 3/4) / 3 (precision at the rank of each positive) = 29/36.
    assert r.average_precision == pytest.approx(29 / 36)
    # At 0.5: TP 2 (0.85, 0.65), FP 1 (0.75), FN 1 (0.35).
    assert r.precision_at_05 == pytest.approx(2 / 3)
    assert r.recall_at_05 == pytest.approx(2 / 3)
    assert r.f1_at_05 == pytest.approx(2 / 3)
    assert r.iou_at_05 == pytest.approx(2 / 4)
    assert (r.num_positive, r.num_negative, r.num_images) == (3, 4, 2)


def test_no_positive_pixels() -> None:
    evaluator = MotionSegmentationEvaluator()
    evaluator.add(np.array([[0.2, 0.7]]), np.array([[0, 2]], np.uint8))
    r = evaluator.result()
    assert not r.has_positives
    assert math.isnan(r.best_f1) and math.isnan(r.average_precision) and math.isnan(r.recall_at_05)
    assert r.precision_at_05 == 0.0
    assert r.iou_at_05 == 0.0  # one false positive, no true positive


def test_motion_segmentation_input_checks() -> None:
    evaluator = MotionSegmentationEvaluator()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluator.add(np.array([[1.5]]), np.array([[1]], np.uint8))
    evaluator.add(np.array([[1.5]]), np.array([[255]], np.uint8))  # ignored pixels are not checked
    with pytest.raises(ValueError, match="shapes"):
        evaluator.add(np.zeros((2, 2)), np.zeros((2, 3), np.uint8))


# --- reports -----------------------------------------------------------------------------------


def _report(with_positives: bool = True) -> EvaluationReport:
    depth = DepthEvaluator(NO_SCALING)
    depth.add(row(1.0, 4.0), row(2.0, 4.0), np.array([[1, 0]], np.uint8))
    motion = MotionSegmentationEvaluator()
    motion.add(np.array([[0.9, 0.1]]), np.array([[1 if with_positives else 0, 0]], np.uint8))
    return EvaluationReport(
        depth.result(), motion.result(), {"checkpoint": Path("runs/a/ckpt.pt"), "settings": NO_SCALING}
    )


def test_report_json(tmp_path: Path) -> None:
    report = _report()
    data = report.to_json_dict()
    text = json.dumps(data, allow_nan=False)
    assert data["depth"]["overall"]["abs_rel"] == pytest.approx(0.25)
    assert data["depth"]["regions"]["moving"]["abs_rel"] == pytest.approx(0.5)
    assert data["depth"]["regions"]["static_movable"] is None
    assert data["depth"]["region_pixels"]["moving"] == 1
    assert data["motion_segmentation"]["best_f1"] == 1.0
    assert len(data["motion_segmentation"]["precision"]) == 1000
    assert data["metadata"]["checkpoint"] == "runs/a/ckpt.pt"
    assert data["metadata"]["settings"]["median_scaling"] is False
    assert "precision" not in report.to_json_dict(include_curve=False)["motion_segmentation"]
    assert "NaN" not in text

    path = report.save(tmp_path / "out" / "eval.json")
    assert json.loads(path.read_text()) == json.loads(text)
    assert "| overall |" in (tmp_path / "out" / "eval.md").read_text()
    with pytest.raises(ValueError):
        report.save(tmp_path / "eval.md")


def test_report_nan_becomes_null() -> None:
    data = _report(with_positives=False).to_json_dict()
    assert data["motion_segmentation"]["best_f1"] is None
    assert data["motion_segmentation"]["has_positives"] is False
    json.dumps(data, allow_nan=False)


def test_report_markdown() -> None:
    text = _report().to_markdown()
    lines = text.splitlines()
    overall = next(line for line in lines if line.startswith("| overall |"))
    assert "| 0.250 | 0.250 | 0.707 | 0.490 | 0.500 | 0.500 | 0.500 | 2 | 1 |" in overall
    assert next(line for line in lines if line.startswith("| moving |")).startswith("| moving | 0.500 |")
    assert "| static movable | - | - |" in text
    assert "| static background | 0.000 |" in text
    assert "### Motion segmentation" in text and "| 1.000 |" in text
    assert "checkpoint" in text
    assert "No moving pixels" in _report(with_positives=False).to_markdown()
    assert isinstance(DepthMetrics.names(), tuple)


# --- background-independent motion scores and the split of movers -----------------------------

def test_motion_distance_by_hand_and_independent_of_which_static_component_is_largest() -> None:
    import torch

    from mds_core.evaluation.motion_scores import mask_moving_score, motion_distance
    from mds_core.method.decomposition import ComponentMotion

    # 3 pixels in a row, K = 3. Components 0 and 1 move identically (a static scene split in two),
    # component 2 moves 0.3 m sideways. Component 1 has the most mass, so it is the dominant one.
    transforms = torch.eye(4).repeat(1, 3, 1, 1)
    transforms[0, :2, 2, 3] = 1.0  # both static components: 1 m forward
    transforms[0, 2, 0, 3] = 0.3
    masks = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]]).T.reshape(1, 3, 1, 3)
    masks = torch.cat([masks, torch.tensor([[0.0, 1.0, 0.0]]).T.reshape(1, 3, 1, 1)], dim=3)  # 4th pixel: comp 1
    depth = torch.full((1, 1, 1, 4), 2.0)
    points = torch.zeros(1, 3, 1, 4)
    points[:, 2] = 2.0
    distance = motion_distance(ComponentMotion(masks=masks, transforms=transforms), points, depth)
    # mixture - dominant = 0.5 * ((0.3, 0, 2) - (0, 0, 3)) = (0.15, 0, -0.5) at pixel 3; 0 where static
    expected = torch.tensor([[[0.0, 0.0, math.hypot(0.15, 0.5) / 2.0, 0.0]]])
    assert torch.allclose(distance, expected, atol=1e-6)
    # the mask score calls the static pixel of component 0 as moving as the mover itself
    score = mask_moving_score(masks)
    assert torch.allclose(score, torch.tensor([[[0.0, 1.0, 0.5, 0.0]]]))


def test_split_moving_labels_by_identity_difference() -> None:
    from mds_core.evaluation.motion_scores import identity_difference, split_moving_labels

    labels = np.array([[0, 1, 1, 2, 255]], dtype=np.uint8)
    current = np.zeros((1, 5, 3), dtype=np.uint8)
    previous = current.copy()
    previous[0, 2] = 60  # only the second moving pixel changes: it moves relative to the camera
    difference = identity_difference(current, previous)
    assert np.allclose(difference, [[0, 0, 60 / 255, 0, 0]])
    split = split_moving_labels(labels, difference)
    assert split.relative.tolist() == [[0, 255, 1, 2, 255]]
    assert split.with_camera.tolist() == [[0, 1, 255, 2, 255]]
    with pytest.raises(ValueError, match="same shape"):
        split_moving_labels(labels, difference[:, :3])


def test_report_carries_motion_scores_with_chance_levels() -> None:
    from mds_core.evaluation.report import motion_summary

    evaluator = MotionSegmentationEvaluator()
    evaluator.add(row(0.9, 0.1, 0.2, 0.3), np.array([[1, 0, 0, 2]], dtype=np.uint8))
    result = evaluator.result()
    summary = motion_summary(result)
    assert summary["prevalence"] == 0.25 and math.isclose(summary["all_moving_f1"], 0.4)
    assert summary["average_precision"] == 1.0
    depth = DepthEvaluator(NO_SCALING)
    depth.add(row(1.0, 2.0), row(1.0, 2.0))
    report = EvaluationReport(depth=depth.result(), motion=result, motion_scores={"distance/relative": result})
    assert report.to_json_dict()["motion_scores"]["distance/relative"]["prevalence"] == 0.25
    assert "| distance/relative | 1.000 | 1.000 | 0.250 | 0.400 | 1 | 3 |" in report.to_markdown()


def test_flat_motion_distance_ignores_how_near_a_pixel_is() -> None:
    import torch

    from mds_core.evaluation.motion_scores import flat_points, motion_distance
    from mds_core.method.decomposition import ComponentMotion

    # two pixels, both half on a component translated 0.2 sideways; the first is 5x nearer
    transforms = torch.eye(4).repeat(1, 2, 1, 1)
    transforms[0, 1, 0, 3] = 0.2
    masks = torch.tensor([[0.6, 0.6], [0.4, 0.4]]).reshape(1, 2, 1, 2)
    depth = torch.tensor([[[[2.0, 10.0]]]])
    inv_k = torch.eye(3)[None]
    motion = ComponentMotion(masks=masks, transforms=transforms)
    near_biased = motion_distance(motion, *(lambda d: (d * torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1), d))(depth))
    assert torch.allclose(near_biased, torch.tensor([[[0.04, 0.008]]]))
    points, flat = flat_points(depth, inv_k)
    assert torch.allclose(flat, torch.full_like(depth, 2.0))  # torch's median of two values is the lower
    assert torch.allclose(motion_distance(motion, points, flat), torch.tensor([[[0.04, 0.04]]]))
