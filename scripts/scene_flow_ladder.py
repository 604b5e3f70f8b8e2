"""One run of the scene-flow model's ladder (docs/accuracy.md, "Why the scene-flow mask learns nothing").

Trains Dynamo-Depth's model on generated street scenes (``DATA/train``) at the ``cpu`` accuracy
preset's size and budget, evaluates its motion mask on ``DATA/heldout`` and appends one line to
``OUT/../ladder.jsonl``: motion AP beside the prevalence (all movers, relative movers, each
situation), and what the model holds on the held-out movers and static pixels: the mean motion mask
and the median distance in pixels between where the complete flow and the ego-motion send a pixel.

Rungs, combinable:

* ``--set model.depth_source=ground_truth model.ground_truth_depth_scale=0.01``: ground-truth depth;
* ``--stages R,F,M,J``: the four stages' shares (default Dynamo-Depth's 1,1,5,20);
* ``--stage-lr-factors R,F,M,J``: the four stages' learning-rate factors (default 1,1,1,0.5): at the release's
  1e-4 the complete flow leaves the image within ten steps of its stage (docs/accuracy.md);
* ``--flow-from-translation``: the complete-flow decoder starts as the ego-motion's translation
  (its seed maps the translation through, its refinements start at zero): the static world's flow of a
  camera that does not turn, instead of a random field;
* ``--mask-teacher W``: an oracle term, ``W`` times the binary cross-entropy of the finest mask
  against the ground-truth moving pixels (needs the ground-truth depth rung, which loads the labels).

    python scripts/scene_flow_ladder.py --data outputs/accuracy_city2/data --out /tmp/sf/gt \\
        --set model.depth_source=ground_truth model.ground_truth_depth_scale=0.01
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mds_core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mds_core.config import SCENE_FLOW_STAGES, DataConfig, LossConfig, ModelConfig, apply_overrides
from mds_core.data.factory import build_dataset
from mds_core.data.sample import Batch, collate_samples
from mds_core.evaluation.evaluate import EvaluationRequest, run_evaluation
from mds_core.method.geometry import backproject, project, transform_points
from mds_core.method.losses import SelfSupervisedObjective
from mds_core.method.losses.objective import LossOutput
from mds_core.method.model import ModelOutput
from mds_core.method.motion_models import create_model
from mds_core.tools.accuracy import PRESETS, VARIANTS, training_config
from mds_core.tools.synth import MOTION_MOVING, MOTION_STATIC, MOTION_UNLABELLED
from mds_core.training.loop import build_model, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with train/ and heldout/ sequence folders")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--set", nargs="*", default=[], help="config overrides section.key=value")
    parser.add_argument("--stages", help="the stages' shares, e.g. 1,5,5,16")
    parser.add_argument("--stage-lr-factors", help="the stages' learning-rate factors, e.g. 1,0.1,0.1,0.05")
    parser.add_argument("--flow-from-translation", action="store_true")
    parser.add_argument("--mask-teacher", type=float, default=0.0)
    args = parser.parse_args()

    data, out = Path(args.data), Path(args.out)
    preset = dataclasses.replace(PRESETS["cpu"], steps=args.steps)
    scene_flow = next(v for v in VARIANTS if v.motion_model == "scene_flow")
    samples = len(build_dataset(DataConfig(root=str(data / "train")), ModelConfig(height=64, width=192), training=True))
    config = apply_overrides(training_config(preset, scene_flow, data / "train", out, samples), args.set)
    config.logging.progress = False
    if args.stages:
        shares = [float(share) for share in args.stages.split(",")]
        config.stages = [dataclasses.replace(stage, fraction=share)
                         for stage, share in zip(SCENE_FLOW_STAGES, shares, strict=True)]
    if args.stage_lr_factors:
        factors = [float(factor) for factor in args.stage_lr_factors.split(",")]
        config.stages = [dataclasses.replace(stage, learning_rate_factor=factor)
                         for stage, factor in zip(config.stages or SCENE_FLOW_STAGES, factors, strict=True)]
    init_from = None
    if args.flow_from_translation:
        torch.manual_seed(config.seed)
        model = build_model(config)
        start_flow_at_translation(model.scene_flow_net.flow_decoder)
        init_from = out.parent / f"{out.name}_init.pt"
        save_checkpoint(init_from, Checkpoint(model=model.state_dict(), config=config))
    objective = SelfSupervisedObjective(config.loss, config.model)
    if args.mask_teacher > 0:
        objective = MaskTeacher(config.loss, config.model, args.mask_teacher)
    started = time.perf_counter()
    result = train(config, init_from=init_from, overwrite=True, objective=objective)
    report = run_evaluation(EvaluationRequest(checkpoint=str(result.checkpoint), data=str(data / "heldout"), device="cpu"))
    report.save(out / "evaluation.json")
    summary = report.to_json_dict(include_curve=False)
    line = {"run": out.name, "set": args.set, "stages": args.stages or "1,1,5,20",
            "stage_lr_factors": args.stage_lr_factors or "1,1,1,0.5",
            "flow_from_translation": args.flow_from_translation, "mask_teacher": args.mask_teacher,
            "minutes": round((time.perf_counter() - started) / 60, 1)}
    for key in ("mask/all", "mask/relative"):
        scores = summary["motion_scores"].get(key)
        if scores:
            line[key] = {"ap": round(scores["average_precision"], 3), "prevalence": round(scores["prevalence"], 3),
                         "best_f1": round(scores["best_f1"], 3)}
    line["situations_ap_prevalence"] = {name: [round(s["average_precision"], 3), round(s["prevalence"], 3)]
                                        for name, s in summary["situations"].items()}
    line["held_out"] = mask_and_residual(result.checkpoint, data / "heldout")
    print(json.dumps(line))
    with open(out.parent / "ladder.jsonl", "a") as log:
        log.write(json.dumps(line) + "\n")


def start_flow_at_translation(decoder: torch.nn.Module) -> None:
    """The refinement decoder's output starts as the conditioning translation: seed = [I | 0] on the
    translation channels (the network divides the ego-motion by the pose scale and multiplies its field
    by the same 0.01), every level's residual at zero."""
    with torch.no_grad():
        decoder.seed.weight.zero_()
        decoder.seed.bias.zero_()
        decoder.seed.weight[:, :3, 0, 0] = torch.eye(3)
        for level in decoder.levels:
            level.residual.weight.zero_()
            level.residual.bias.zero_()


class MaskTeacher(SelfSupervisedObjective):
    """The self-supervised objective plus ``weight`` x BCE(finest mask logits, ground-truth moving pixels)."""

    def __init__(self, loss: LossConfig, model: ModelConfig, weight: float):
        super().__init__(loss, model)
        self.weight = weight

    def __call__(self, batch: Batch, output: ModelOutput, **kwargs) -> LossOutput:
        result = super().__call__(batch, output, **kwargs)
        logits = output.sources[0].mask_logits
        if logits is None or batch.motion is None:  # before the mask stage
            return result
        size = logits[0].shape[-2:]
        labels = torch.stack([F.interpolate(m[None].float(), size=size, mode="nearest")[0] for m in batch.motion])
        known = labels != MOTION_UNLABELLED
        term = F.binary_cross_entropy_with_logits(logits[0][known], (labels[known] == MOTION_MOVING).float())
        return dataclasses.replace(result, total=result.total + self.weight * term)


def mask_and_residual(checkpoint: Path, heldout: Path) -> dict[str, float]:
    """Mean motion mask and median |complete - rigid| projection distance (pixels) toward the next frame,
    on the held-out movers and static background (every frame's scale-0 outputs)."""
    loaded = load_checkpoint(checkpoint)
    config = loaded.config
    model = create_model(config.model)
    model.load_state_dict(loaded.model)
    model.eval()
    config.data.root = str(heldout)
    dataset = build_dataset(config.data, config.model, training=False)
    values: dict[str, list[float]] = {"mask_movers": [], "mask_static": [], "residual_px_movers": [], "residual_px_static": []}
    following = config.data.source_offsets.index(1)
    for index in range(len(dataset)):
        batch = collate_samples([dataset[index]])
        depth = None
        if config.model.depth_source == "ground_truth":
            depth = F.interpolate(batch.depth[0][None].float(), size=batch.target.shape[-2:], mode="nearest")
        with torch.no_grad():
            output = model(batch.network_images, config.data.source_offsets, depth)
        motion = output.sources[following].motion
        points = backproject((output.warp_depth if output.warp_depth is not None else output.depth).float(),
                             torch.linalg.inv(batch.intrinsics))
        rigid = project(transform_points(motion.ego, points), batch.intrinsics)
        complete = project(points + motion.complete_flow[0], batch.intrinsics)
        residual = (complete - rigid).norm(dim=-1)[0]
        mask = motion.mask[0][0, 0]
        labels = F.interpolate(batch.motion[0][None].float(), size=mask.shape, mode="nearest")[0, 0]
        for name, region in (("movers", labels == MOTION_MOVING), ("static", labels == MOTION_STATIC)):
            if region.any():
                values[f"mask_{name}"].append(float(mask[region].mean()))
                values[f"residual_px_{name}"].append(float(residual[region].median()))
    return {name: round(sum(v) / len(v), 4) if v else float("nan") for name, v in values.items()}

if __name__ == "__main__":
    main()
