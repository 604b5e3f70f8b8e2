"""ONNX export (``mds export``) and the onnxruntime backend: the exported graphs reproduce PyTorch,
the Predictor gives the same outputs on either backend for both motion models, and bad input is
one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.cli.main import main
from mds_core.config import ModelConfig
from mds_core.inference.onnx_backend import OnnxModelError, choose_providers
from mds_core.inference.predictor import Predictor

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)

W, H = 96, 64
K_IN = np.array([[80.0, 0.0, 72.0], [0.0, 80.0, 48.0], [0.0, 0.0, 1.0]])
FIELDS = ("depth", "disparity", "masks", "labels", "moving_probability", "ego_motion", "transforms",
          "independent_flow", "motion_distance")


@pytest.fixture(scope="module", params=["components", "scene_flow"])
def exported(request, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp(request.param)
    checkpoint = write_untrained_checkpoint(folder / "model.pt", ModelConfig(
        width=W, height=H, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=3,
        motion_model=request.param))
    assert main(["export", str(checkpoint), "--output", str(folder / "onnx")]) == 0
    return checkpoint, folder / "onnx"


def test_export_writes_checked_graphs_and_metadata(exported, capsys):
    checkpoint, folder = exported
    metadata = json.loads((folder / "metadata.json").read_text())
    graphs = {"components": {"depth", "pose_mask"}, "scene_flow": {"depth", "ego_pose", "scene_flow"}}
    assert set(metadata["graphs"]) == graphs[metadata["motion_model"]]
    assert all((folder / g["file"]).is_file() for g in metadata["graphs"].values())
    assert metadata["input_size"] == [W, H] and metadata["depth_range"] == [0.1, 100.0]
    assert metadata["precision"] == "fp32" and metadata["opset"] == 18 and metadata["mds_version"]
    assert len(metadata["check"]) == len(graphs[metadata["motion_model"]])
    assert all(c["max_abs_difference"] <= 1e-4 for c in metadata["check"])


@pytest.mark.parametrize("provider", ["CPUExecutionProvider", "OpenVINOExecutionProvider"])
def test_onnxruntime_predictions_equal_torch_predictions(exported, provider):
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        pytest.skip(f"this onnxruntime has no {provider} (the test environment installs onnxruntime-openvino)")
    checkpoint, folder = exported
    torch_predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    assert Predictor.from_onnx(folder, device="cpu").providers == choose_providers(device="cpu")
    onnx_predictor = Predictor.from_onnx(folder, device="cpu", providers=[provider])
    assert onnx_predictor.backend == "onnxruntime" and onnx_predictor.device.type == "cpu"
    assert [graph.session.get_providers()[0] for graph in _graphs(onnx_predictor)] == [provider] * len(
        _graphs(onnx_predictor))
    assert onnx_predictor.motion_model == torch_predictor.motion_model
    frames = np.random.default_rng(0).integers(0, 255, (3, 96, 144, 3), dtype=np.uint8)
    for previous, following in ((None, None), (frames[0], frames[2])):
        expected = torch_predictor.predict(frames[1], K_IN, previous, following=following)
        got = onnx_predictor.predict(frames[1], K_IN, previous, following=following)
        for name in FIELDS:
            a, b = getattr(expected, name), getattr(got, name)
            assert (a is None) == (b is None), name
            if a is not None:
                np.testing.assert_allclose(b, a, atol=1e-4, err_msg=name)


def _graphs(predictor: Predictor) -> list:
    """The onnxruntime graphs of an onnxruntime predictor's model."""
    return [module.graph for module in predictor.model.modules() if hasattr(module, "graph")]


def test_export_on_the_fly_and_bad_folders(exported, tmp_path):
    checkpoint, folder = exported
    predictor = Predictor.load(checkpoint, device="cpu", backend="onnxruntime")  # exports into a temporary folder
    assert predictor.backend == "onnxruntime" and predictor.size == (W, H)
    with pytest.raises(OnnxModelError, match="exported at 96x64, not 128x64"):
        Predictor.from_onnx(folder, device="cpu", size=(128, 64))
    with pytest.raises(OnnxModelError, match="not an mds export folder"):
        Predictor.from_onnx(tmp_path, device="cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text((folder / "metadata.json").read_text())
    with pytest.raises(OnnxModelError, match="depth.onnx is missing"):
        Predictor.from_onnx(broken, device="cpu")


def test_export_command_errors_are_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.pt"), "--output", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "missing.pt"), "--output", str(tmp_path / "out"), "--size", "wide"])
    assert "expected WIDTHxHEIGHT" in capsys.readouterr().err


def test_execution_providers_are_chosen_tensorrt_then_cuda_then_openvino_then_cpu():
    everything = ["CPUExecutionProvider", "OpenVINOExecutionProvider", "CUDAExecutionProvider",
                  "TensorrtExecutionProvider"]
    assert choose_providers(everything) == ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                            "OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CUDAExecutionProvider",
                                                                                   "CPUExecutionProvider"]
    # device cpu: what runs on the CPU
    assert choose_providers(everything, device="cpu") == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], device="cpu") == \
        ["CPUExecutionProvider"]
    assert choose_providers([]) == ["CPUExecutionProvider"]
