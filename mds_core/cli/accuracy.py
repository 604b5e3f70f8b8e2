"""``mds accuracy``: the command line of :mod:`mds_core.tools.accuracy`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mds_core.tools import accuracy as _accuracy
from mds_core.tools.accuracy import PRESETS, AccuracyPreset, run_accuracy_benchmark
from mds_core.tools.synth.config import SCENES


def preset_from_args(args: argparse.Namespace) -> AccuracyPreset:
    """The named preset with the command line's explicit overrides applied."""
    overrides = {
        "steps": args.steps, "device": args.device, "seed": args.seed, "width": args.width,
        "height": args.height, "train_sequences": args.train_sequences, "frames_per_sequence": args.frames,
        "heldout_sequences": args.heldout_sequences, "heldout_frames": args.heldout_frames,
        "batch_size": args.batch_size, "seeds": args.seeds,
        "rungs": tuple(args.rungs.split(",")) if args.rungs else None, "scene": args.scene,
        "scene_flow": False if args.no_scene_flow else None,
        "overrides": tuple(args.set) if args.set else None, "checkpoint_every": args.checkpoint_every, "jobs": args.jobs,
    }
    return dataclasses.replace(PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace) -> int:
    try:
        preset = preset_from_args(args)
        preset.validate()
    except ValueError as error:
        raise SystemExit(f"accuracy: error: {error}") from error
    result = run_accuracy_benchmark(preset, args.output, reuse=args.reuse)
    print(result.markdown_path.read_text())
    print(f"wrote {result.markdown_path}, {result.json_path}, {result.png_path}")
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``accuracy`` subcommand to an ``argparse`` subparsers object; ``func`` runs it."""
    parser = subparsers.add_parser(
        "accuracy", help="K=1 vs K=5 (and K=5 with GT depth) on generated scenes, over seeds",
        description=_accuracy.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="quick",
                        help="quick: 192x64, one seed, about 15 min on 2 cores; cpu: three seeds, under an hour; "
                             "long: 20 city drives, 6,000 steps, one seed, hours (resumable with --reuse); "
                             "gpu: 640x192, three seeds, for a CUDA GPU")
    parser.add_argument("--output", default="outputs/accuracy", help="output directory")
    parser.add_argument("--scene", choices=sorted(SCENES),
                        help="generated scenes: road (traffic along the road; the presets' default) or city (also "
                             "an intersection with crossing traffic, pedestrians, cyclists, drives that stop)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="a training setting for every model, e.g. --set model.hypothesis_scene_rate=0.02 "
                             "(repeatable; as in mds train)")
    parser.add_argument("--steps", type=int, help="training steps per model (overrides the preset)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides the preset)")
    parser.add_argument("--seed", type=int, help="seed of the data and of the first training run (overrides the preset)")
    parser.add_argument("--seeds", type=int, help="training repetitions, seeds SEED, SEED+1, ... (overrides the preset)")
    parser.add_argument("--rungs", help="comma-separated: full (K=1 and K=5 as published), depth (K=5 with "
                                        "ground-truth depth, the oracle rung), motion (depth learnt with the scene's "
                                        "true motions: the camera's alone, and every object's), movers (K=5 whose "
                                        "component assignment is told the truly moving pixels); default full,depth")
    parser.add_argument("--no-scene-flow", action="store_true", help="leave out the scene-flow model (Dynamo-Depth)")
    parser.add_argument("--width", type=int, help="model and data width, a multiple of 32")
    parser.add_argument("--height", type=int, help="model and data height, a multiple of 32")
    parser.add_argument("--train-sequences", type=int, help="generated training sequences")
    parser.add_argument("--frames", type=int, help="frames per training sequence")
    parser.add_argument("--heldout-sequences", type=int, help="generated held-out sequences")
    parser.add_argument("--heldout-frames", type=int, help="frames per held-out sequence")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                        help="steps between the checkpoints a stopped run resumes from (0: only at the end)")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="models trained at once on the CPU, each in its own process with its share of the "
                             "threads (default 1; on 2 cores, 2 trains two models in about the time of one)")
    parser.add_argument("--reuse", action="store_true",
                        help="evaluate again, instead of retraining, every model of an earlier run in OUTPUT "
                             "that finished training with exactly this run's config (re-scores a finished run), "
                             "and resume exactly, from its last checkpoint, every model that did not finish")
    parser.set_defaults(func=run)
    return parser
