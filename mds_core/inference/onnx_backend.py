"""The onnxruntime backend: a model whose networks run as exported ONNX graphs.

:func:`load_onnx_model` builds the motion model of an export folder (``mds export``;
:mod:`mds_core.inference.onnx_export`) and puts, in place of each network, a module that runs
its graph in an onnxruntime session. Everything around the networks (eq. 3's masks, the motion
hypotheses, the pose matrices, the scene-flow geometry) stays the same PyTorch code as with the
torch backend, so :class:`~mds_core.inference.predictor.Predictor` and the node use either
backend unchanged. Execution providers are chosen in the order TensorRT, CUDA, CPU among those
the installed onnxruntime offers (:func:`choose_providers`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from mds_core.config import ModelConfig, config_from_dict
from mds_core.inference.onnx_export import FORMAT, METADATA
from mds_core.method.motion_models import MotionModel, create_model
from mds_core.method.networks.pose_mask import PoseMaskOutput
from mds_core.method.networks.scene_flow import SceneFlowOutput

LOG = logging.getLogger(__name__)

#: Preferred execution providers, best first. OpenVINO runs on the CPU (``pip install 'mds[openvino]'``,
#: onnxruntime built with it): on 2 CPU cores at 640x192 its graphs take 77 ms against the CPU
#: provider's 110 ms (depth 36 against 48, pose and masks 41 against 62).
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider",
                       "CPUExecutionProvider")
#: The providers that run on a GPU (the predictor's tensors then live there too).
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
#: OpenVINO's CPU plugin in full precision (it would otherwise pick bf16 where the CPU has it).
OPENVINO_CPU_PROPERTIES = {"INFERENCE_PRECISION_HINT": "f32"}


class OnnxModelError(RuntimeError):
    """An export folder that cannot be used; the message says why."""


def choose_providers(available: list[str] | None = None, device: str = "auto") -> list[str]:
    """The providers to use, best first: TensorRT, CUDA, OpenVINO, then CPU, among ``available``
    (default: what onnxruntime offers). ``device="cpu"`` keeps those that run on the CPU."""
    import onnxruntime as ort

    available = list(ort.get_available_providers() if available is None else available)
    chosen = [p for p in PROVIDER_PREFERENCE if p in available and not (device == "cpu" and p in GPU_PROVIDERS)]
    return chosen if "CPUExecutionProvider" in chosen else [*chosen, "CPUExecutionProvider"]


class _Graph:
    """One onnxruntime session, called with tensors, returning tensors on ``device``."""

    def __init__(self, path: Path, providers: list[str], threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
        # idle worker threads sleep instead of spinning: in a node they would take the cores from
        # the executor, the decoding and DDS between two frames
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        properties = {**OPENVINO_CPU_PROPERTIES, **({"INFERENCE_NUM_THREADS": threads} if threads > 0 else {})}
        openvino = {"device_type": "CPU", "load_config": json.dumps({"CPU": properties})}
        configured = [(p, openvino) if p == "OpenVINOExecutionProvider" else p for p in providers]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=configured)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.float16 = self.session.get_inputs()[0].type == "tensor(float16)"

    def __call__(self, *inputs: Tensor) -> list[Tensor]:
        device = inputs[0].device
        dtype = np.float16 if self.float16 else np.float32
        feed = {name: np.ascontiguousarray(x.detach().cpu().numpy().astype(dtype, copy=False))
                for name, x in zip(self.input_names, inputs)}
        return [torch.from_numpy(np.asarray(out, dtype=np.float32)).to(device) for out in self.session.run(None, feed)]


class OnnxDepthNet(nn.Module):
    def __init__(self, graph: _Graph):
        super().__init__()
        self.graph = graph

    def forward(self, image: Tensor) -> list[Tensor]:
        return self.graph(image)


class OnnxPoseMaskNet(nn.Module):
    def __init__(self, graph: _Graph):
        super().__init__()
        self.graph = graph

    def forward(self, earlier: Tensor, later: Tensor, depth_input: Tensor) -> PoseMaskOutput:
        axis_angle, translation, mask_logits = self.graph(earlier, later, depth_input)
        return PoseMaskOutput(mask_logits, axis_angle, translation)


class OnnxEgoPoseNet(nn.Module):
    def __init__(self, graph: _Graph):
        super().__init__()
        self.graph = graph

    def forward(self, earlier: Tensor, later: Tensor) -> tuple[Tensor, Tensor]:
        axis_angle, translation = self.graph(earlier, later)
        return axis_angle, translation


class OnnxSceneFlowNet(nn.Module):
    def __init__(self, graph: _Graph):
        super().__init__()
        self.graph = graph

    def forward(self, previous: Tensor, target: Tensor, following: Tensor, ego_motion: Tensor) -> SceneFlowOutput:
        complete_flow, mask_logits = self.graph(previous, target, following, ego_motion)
        return SceneFlowOutput(complete_flow=[complete_flow], mask_logits=[mask_logits])


#: Which attribute of the motion model each graph replaces, and the module that runs it.
_REPLACES = {"depth": ("depth_net", OnnxDepthNet), "pose_mask": ("pose_mask_net", OnnxPoseMaskNet),
             "ego_pose": ("ego_pose_net", OnnxEgoPoseNet), "scene_flow": ("scene_flow_net", OnnxSceneFlowNet)}


def read_metadata(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / METADATA
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise OnnxModelError(f"{folder} is not an mds export folder (no {METADATA}; write one with `mds export`)") \
            from error
    except (OSError, ValueError) as error:
        raise OnnxModelError(f"{path} cannot be read: {error}") from error
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise OnnxModelError(f"{path} is not an mds export of format {FORMAT}")
    return metadata


def load_onnx_model(folder: str | Path, device: str = "auto", threads: int = 0,
                    providers: list[str] | None = None) -> tuple[MotionModel, dict[str, Any]]:
    """The motion model of an export folder, its networks running in onnxruntime, and the metadata
    (with ``providers``: the execution providers used; by default :func:`choose_providers`)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise OnnxModelError(f"the onnxruntime backend needs the onnx extra: pip install 'mds[onnx]' or "
                             f"'mds[openvino]' ({error})") \
            from error
    folder = Path(folder)
    metadata = read_metadata(folder)
    config: ModelConfig = config_from_dict(ModelConfig, metadata["model"], "model")
    width, height = metadata["input_size"]
    config.width, config.height = int(width), int(height)
    model = create_model(config)
    providers = list(providers) if providers else choose_providers(device=device)
    for name, graph in metadata["graphs"].items():
        attribute, module = _REPLACES[name]
        path = folder / graph["file"]
        if not path.is_file():
            raise OnnxModelError(f"{path} is missing from the export folder")
        setattr(model, attribute, module(_Graph(path, providers, threads)))
    metadata["providers"] = providers
    LOG.info("onnxruntime model from %s (%s), providers %s", folder, ", ".join(metadata["graphs"]), providers)
    return model.eval(), metadata
