"""Where the scene-flow model's flow stage sends the pixels, step by step (docs/accuracy.md, the scene-flow ladder).

Trains the scene-flow network alone, as Dynamo-Depth's flow stage does (the warp ``P + C``, no ego-motion, no mask),
on ground-truth depth times ``--depth-scale`` from ``DATA/train``, and prints every ten steps the photometric loss,
the complete flow's median length against the points' median depth, the share of points it moves to less than half
their depth (or behind the camera) and the share it moves outside the image.

    python scripts/flow_stage_probe.py --data outputs/accuracy_city2/data --depth-scale 0.01 --lr 1e-4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mds_core.config import apply_overrides
from mds_core.data.factory import build_dataset
from mds_core.data.sample import collate_samples
from mds_core.method.geometry import backproject, project
from mds_core.method.losses import SelfSupervisedObjective
from mds_core.method.motion_models import create_model
from mds_core.tools.accuracy import PRESETS, VARIANTS, training_config
from mds_core.training.loop import oracle_depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder with a train/ sequence folder")
    parser.add_argument("--depth-scale", type=float, default=0.01, help="model.ground_truth_depth_scale")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--steps", type=int, default=80)
    args = parser.parse_args()

    torch.manual_seed(0)
    scene_flow = next(v for v in VARIANTS if v.motion_model == "scene_flow")
    # the model and loss of the `cpu` preset's scene flow (its schedule, which the sample count sets, is not used)
    config = apply_overrides(training_config(PRESETS["cpu"], scene_flow, Path(args.data) / "train", Path("unused"),
                                             num_samples=228),
                             ["model.depth_source=ground_truth", f"model.ground_truth_depth_scale={args.depth_scale}"])
    dataset = build_dataset(config.data, config.model, training=True)
    model = create_model(config.model).train()
    model.flow_enabled, model.mask_enabled = True, False
    optimizer = torch.optim.Adam(model.scene_flow_net.parameters(), args.lr)
    objective = SelfSupervisedObjective(config.loss, config.model)
    draw = torch.Generator().manual_seed(0)
    for step in range(args.steps + 1):
        batch = collate_samples([dataset[i] for i in torch.randint(len(dataset), (4,), generator=draw).tolist()])
        output = model(batch.network_images, config.data.source_offsets, oracle_depth(config, batch))
        loss = objective(batch, output, step=step, stage_step=step, automask=False, trains_depth=False)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        if step % 10:
            continue
        with torch.no_grad():
            flow = output.sources[config.data.source_offsets.index(1)].motion.complete_flow[0]
            points = backproject(output.warp_depth, torch.linalg.inv(batch.intrinsics))
            moved = points + flow
            pixels = project(moved, batch.intrinsics)
            height, width = points.shape[-2:]
            outside = ((pixels[..., 0] < 0) | (pixels[..., 0] > width - 1) | (pixels[..., 1] < 0)
                       | (pixels[..., 1] > height - 1)).float().mean()
            nearer = (moved[:, 2] < 0.5 * points[:, 2]).float().mean()
            print(f"step {step:4d}  photometric {float(loss.total):.4f}  |C| {float(flow.norm(dim=1).median()):.4f}"
                  f"  depth {float(points[:, 2].median()):.4f}  below half its depth {float(nearer):.3f}"
                  f"  outside {float(outside):.3f}", flush=True)


if __name__ == "__main__":
    main()
