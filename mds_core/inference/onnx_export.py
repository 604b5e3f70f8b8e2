"""``mds export``: a checkpoint's networks as ONNX graphs, checked against PyTorch, for deployment.

What runs on a robot is the networks; the rest of a prediction (the masks of eq. 3, the motion
hypotheses, the pose matrices, the scene-flow geometry) is a few small tensor operations that
:class:`~mds_core.inference.predictor.Predictor` keeps in PyTorch for either backend
(:mod:`mds_core.inference.onnx_backend`). Exported are, at a fixed input size with a dynamic
batch dimension:

=================  ===========================================  =====================================
graph              inputs                                        outputs
=================  ===========================================  =====================================
``depth``          ``image`` (B, 3, h, w) RGB in [0, 1]          ``disparity`` (B, 1, h, w) sigmoid
``pose_mask``      ``earlier``, ``later`` (B, 3, h, w),          ``axis_angle``, ``translation``
(components)       ``disparity`` (B, 1, h, w)                    (B, K, 3), ``mask_logits`` (B, K, h, w)
``ego_pose``       ``earlier``, ``later`` (B, 3, h, w)           ``axis_angle``, ``translation`` (B, 3)
(scene flow)
``scene_flow``     ``previous``, ``target``, ``following``        ``complete_flow`` (B, 3, h, w),
(scene flow)       (B, 3, h, w), ``ego_motion`` (B, 6)           ``mask_logits`` (B, 1, h, w)
=================  ===========================================  =====================================

Only the finest scale of the multi-scale outputs is exported (inference uses no other).
``metadata.json`` beside the graphs records the model config, the input size, the graphs and
their inputs and outputs, the normalisation, the precision, the opset, the project version and
the check: every graph is run in onnxruntime on random inputs and compared with PyTorch.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mds_core.config import ModelConfig
from mds_core.method.dynamo_depth import DynamoDepth
from mds_core.method.motion_models import MotionModel

LOG = logging.getLogger(__name__)

METADATA = "metadata.json"
FORMAT = "mds-onnx-1"
#: Largest absolute difference from PyTorch accepted by the export check, by precision.
TOLERANCE = {"fp32": 1e-4, "fp16": 5e-2}
NORMALISATION = "RGB, float in [0, 1] (uint8 / 255), no mean or standard deviation subtracted"


class ExportError(RuntimeError):
    """The export or its check failed; the message says which graph and why."""


class _DepthGraph(nn.Module):
    def __init__(self, model: MotionModel):
        super().__init__()
        self.depth_net = model.depth_net

    def forward(self, image: Tensor) -> Tensor:
        return self.depth_net(image)[0]


class _PoseMaskGraph(nn.Module):
    def __init__(self, model: MotionModel):
        super().__init__()
        self.pose_mask_net = model.pose_mask_net

    def forward(self, earlier: Tensor, later: Tensor, disparity: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = self.pose_mask_net(earlier, later, disparity)
        return out.axis_angle, out.translation, out.mask_logits


class _EgoPoseGraph(nn.Module):
    def __init__(self, model: MotionModel):
        super().__init__()
        self.ego_pose_net = model.ego_pose_net

    def forward(self, earlier: Tensor, later: Tensor) -> tuple[Tensor, Tensor]:
        return self.ego_pose_net(earlier, later)


class _SceneFlowGraph(nn.Module):
    def __init__(self, model: MotionModel):
        super().__init__()
        self.scene_flow_net = model.scene_flow_net

    def forward(self, previous: Tensor, target: Tensor, following: Tensor, ego_motion: Tensor) -> tuple[Tensor, Tensor]:
        out = self.scene_flow_net(previous, target, following, ego_motion)
        return out.complete_flow[0], out.mask_logits[0]


@dataclass(frozen=True)
class GraphSpec:
    """One exported network: its file stem, wrapper, input names and shapes (batch first), outputs."""

    name: str
    wrapper: type[nn.Module]
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    outputs: tuple[str, ...]


def graph_specs(model: MotionModel, width: int, height: int) -> list[GraphSpec]:
    """The graphs of ``model`` at ``width`` x ``height`` (shapes without the batch dimension)."""
    image = (3, height, width)
    specs = []
    if model.depth_net is not None:
        specs.append(GraphSpec("depth", _DepthGraph, (("image", image),), ("disparity",)))
    if isinstance(model, DynamoDepth):
        specs.append(GraphSpec("ego_pose", _EgoPoseGraph, (("earlier", image), ("later", image)),
                               ("axis_angle", "translation")))
        specs.append(GraphSpec("scene_flow", _SceneFlowGraph, (("previous", image), ("target", image),
                                                                ("following", image), ("ego_motion", (6,))),
                               ("complete_flow", "mask_logits")))
    else:
        specs.append(GraphSpec("pose_mask", _PoseMaskGraph, (("earlier", image), ("later", image),
                                                              ("disparity", (1, height, width))),
                               ("axis_angle", "translation", "mask_logits")))
    return specs


@dataclass
class GraphCheck:
    name: str
    file: str
    seconds: float  # export time
    max_abs_difference: float  # onnxruntime vs PyTorch on random inputs, over every output
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_difference <= self.tolerance


@dataclass
class ExportReport:
    output_dir: Path
    width: int
    height: int
    precision: str
    opset: int
    checks: list[GraphCheck] = field(default_factory=list)

    def to_text(self) -> str:
        lines = [f"exported to {self.output_dir} ({self.width}x{self.height}, {self.precision}, opset {self.opset})"]
        for c in self.checks:
            verdict = "ok" if c.passed else "FAILED"
            lines.append(f"  {c.file:18s} max |onnxruntime - torch| {c.max_abs_difference:.2e} "
                         f"(tolerance {c.tolerance:.0e}) {verdict}  [{c.seconds:.0f} s]")
        return "\n".join(lines)


def _random_inputs(spec: GraphSpec, batch: int, generator: torch.Generator) -> tuple[Tensor, ...]:
    inputs = []
    for name, shape in spec.inputs:
        values = torch.rand(batch, *shape, generator=generator)
        if name == "ego_motion":
            values = (values - 0.5) * 0.02  # a plausible one-step motion (metres-ish units x 0.01)
        inputs.append(values)
    return tuple(inputs)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's progress lines, its optimiser's INFO logs and its warnings go to the debug log."""
    chatter = io.StringIO()
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        LOG.debug("exporter output:\n%s", chatter.getvalue())


def _export_graph(spec: GraphSpec, model: MotionModel, path: Path, opset: int, fp16: bool,
                  generator: torch.Generator) -> GraphCheck:
    import onnxruntime as ort

    wrapper = spec.wrapper(model).eval()
    example = _random_inputs(spec, 2, generator)
    if fp16:
        wrapper = wrapper.half()
        example = tuple(x.half() for x in example)
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = {name: {0: batch} for name, _ in spec.inputs}
    started = time.perf_counter()
    with _quiet_exporter():
        torch.onnx.export(wrapper, example, str(path), input_names=[n for n, _ in spec.inputs],
                          output_names=list(spec.outputs), opset_version=opset, dynamo=True, dynamic_shapes=dynamic,
                          external_data=False, verbose=False)
    seconds = time.perf_counter() - started
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = _random_inputs(spec, 3, generator)  # another batch size than the example's
    if fp16:
        check = tuple(x.half() for x in check)
    with torch.inference_mode():
        expected = wrapper(*check)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = session.run(None, {name: x.numpy() for (name, _), x in zip(spec.inputs, check)})
    difference = max(float(np.abs(g.astype(np.float64) - e.double().numpy()).max()) for g, e in zip(got, expected))
    return GraphCheck(spec.name, path.name, seconds, difference, TOLERANCE["fp16" if fp16 else "fp32"])


def export_onnx(model: MotionModel, output_dir: str | Path, size: tuple[int, int] | None = None, fp16: bool = False,
                opset: int = 18, checkpoint_step: int | None = None, seed: int = 0) -> ExportReport:
    """Export ``model``'s networks to ``output_dir`` and check them; raise :class:`ExportError` when a
    graph cannot be exported or differs from PyTorch by more than the tolerance."""
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ExportError(f"exporting needs the onnx extra: pip install 'mds[onnx]' or 'mds[openvino]' "
                          f"({error})") from error
    config: ModelConfig = model.config
    width, height = size or (config.width, config.height)
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        raise ExportError(f"size {width}x{height}: width and height must be positive multiples of 32")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    generator = torch.Generator().manual_seed(seed)
    report = ExportReport(out, width, height, "fp16" if fp16 else "fp32", opset)
    for spec in graph_specs(model, width, height):
        path = out / f"{spec.name}.onnx"
        LOG.info("exporting %s to %s", spec.name, path)
        try:
            check = _export_graph(spec, model, path, opset, fp16, generator)
        except Exception as error:  # the exporter raises many types; one line for the CLI
            raise ExportError(f"graph {spec.name}: {type(error).__name__}: {error}") from error
        report.checks.append(check)
        if not check.passed:
            raise ExportError(f"graph {spec.name}: onnxruntime differs from PyTorch by {check.max_abs_difference:.2e} "
                              f"(tolerance {check.tolerance:.0e})")
    from mds_core import __version__

    metadata = {
        "format": FORMAT,
        "mds_version": __version__,
        "model": asdict(config),
        "motion_model": config.motion_model,
        "num_components": 2 if config.motion_model == "scene_flow" else config.num_components,
        "input_size": [width, height],
        "depth_range": [config.min_depth, config.max_depth],
        "normalisation": NORMALISATION,
        "precision": report.precision,
        "opset": opset,
        "checkpoint_step": checkpoint_step,
        "graphs": {spec.name: {"file": f"{spec.name}.onnx", "inputs": [n for n, _ in spec.inputs],
                               "outputs": list(spec.outputs)} for spec in graph_specs(model, width, height)},
        "check": [asdict(c) for c in report.checks],
    }
    (out / METADATA).write_text(json.dumps(metadata, indent=2) + "\n")
    return report
