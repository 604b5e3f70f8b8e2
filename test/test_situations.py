"""Scores per situation: movers along the road, across it, pedestrians, the camera standing still."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import HEIGHT, WIDTH, tiny_config

from mds_core.data.sequence_folder import FrameSituation, SequenceFolder
from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation
from mds_core.evaluation.metrics import IGNORE_LABEL, EvalSettings
from mds_core.evaluation.situations import SITUATIONS, SituationEvaluator, situation_labels
from mds_core.tools.synth import SynthConfig, write_sequence_folder
from mds_core.training.loop import train

KINDS = {1: "oncoming", 2: "crossing", 3: "pedestrian", 4: "parked", 5: "cyclist"}


def frame(camera_moved: bool = True) -> tuple[np.ndarray, FrameSituation]:
    instances = np.zeros((4, 14), np.int64)  # the last four columns: static background
    for oid in KINDS:
        instances[:, 2 * oid - 2: 2 * oid] = oid  # two columns each
    motion = np.where(np.isin(instances, [1, 2, 3, 5]), 1, np.where(instances == 4, 2, 0)).astype(np.uint8)
    return motion, FrameSituation(instances=instances, kinds=KINDS, camera_moved=camera_moved)


def test_each_situation_keeps_its_movers_and_ignores_the_others():
    motion, situation = frame()
    labels = situation_labels(motion, situation)
    assert set(labels) == {"along_road", "across", "pedestrian"}  # the camera moved
    expected_positive = {"along_road": [1], "across": [2], "pedestrian": [3, 5]}
    for name, mine in expected_positive.items():
        positive = labels[name] == 1
        np.testing.assert_array_equal(positive, np.isin(situation.instances, mine))
        np.testing.assert_array_equal(labels[name] == IGNORE_LABEL, (motion == 1) & ~positive)
        np.testing.assert_array_equal(labels[name] == 2, situation.instances == 4)  # parked: still negatives
    stopped = situation_labels(*frame(camera_moved=False))
    np.testing.assert_array_equal(stopped["camera_stopped"], motion)


def test_a_perfect_score_is_perfect_in_every_situation_and_chance_is_the_prevalence():
    evaluator = SituationEvaluator(EvalSettings())
    depth = np.full((4, 14), 10.0, np.float32)
    for moved in (True, False):
        motion, situation = frame(moved)
        evaluator.add(situation, motion, (motion == 1).astype(np.float32), depth, depth)
    results = evaluator.result()
    assert list(results) == list(SITUATIONS)
    for scores in results.values():
        assert scores.motion.average_precision == pytest.approx(1.0) and scores.motion.best_f1 == pytest.approx(1.0)
        assert scores.depth.regions["moving"].abs_rel == pytest.approx(0.0)
    assert results["camera_stopped"].depth.num_images == 1 and results["across"].depth.num_images == 2
    assert results["pedestrian"].motion.num_positive == 2 * 16  # 2 frames x (pedestrian + cyclist) x 8 pixels
    constant = SituationEvaluator(EvalSettings())
    motion, situation = frame()
    constant.add(situation, motion, np.full(motion.shape, 0.5, np.float32), depth, depth)
    across = constant.result()["across"].motion
    assert across.average_precision == pytest.approx(8 / (8 + 8 + 16))  # a constant score: the prevalence


@pytest.fixture(scope="module")
def crossing_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("crossing")
    config = SynthConfig(width=WIDTH, height=HEIGHT, num_frames=40, seed=4, num_crossing=3, num_pedestrians=4,
                         num_cyclists=1, camera_stop_probability=1.0, camera_stop_seconds=1.0)
    write_sequence_folder(root, "stops", config)
    return root


def test_the_sequence_folder_says_what_moves_how_and_when_the_camera_stands(crossing_data, tmp_path):
    sequence = SequenceFolder(crossing_data / "stops")
    moved = [sequence.situation(i).camera_moved for i in range(len(sequence))]
    assert moved[0] and moved[-1] and 9 <= moved.count(False) <= 11  # 1 s at 10 Hz
    kinds = set(sequence.situation(20).kinds.values())
    assert {"crossing", "pedestrian", "cyclist", "oncoming", "parked"} <= kinds
    write_sequence_folder(tmp_path, "plain", SynthConfig(width=WIDTH, height=HEIGHT, num_frames=3, seed=1))
    (tmp_path / "plain" / "poses.json").unlink()
    assert SequenceFolder(tmp_path / "plain").situation(1) is None  # no kinds: no situations


def test_eval_scores_every_situation(crossing_data, tmp_path):
    config = tiny_config(crossing_data, tmp_path / "run", components=3, max_steps=1)
    checkpoint = train(config).checkpoint
    report = run_evaluation(EvaluationRequest(checkpoint=str(checkpoint), data=str(crossing_data), device="cpu"),
                            progress=False)
    assert list(report.situations) == list(SITUATIONS)
    stopped = report.situations["camera_stopped"]
    assert 9 <= stopped.depth.num_images <= 11 and stopped.motion.num_positive > 0
    for scores in report.situations.values():
        assert scores.motion.num_positive > 0 and np.isfinite(scores.motion.average_precision)
    markdown = report.to_markdown()
    assert "### Per situation" in markdown and "| camera_stopped |" in markdown
    assert set(report.to_json_dict()["situations"]) == set(SITUATIONS)
