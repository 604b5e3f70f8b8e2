"""Bag reading and training throughput from rosbag2 bags on this machine (README, "Training from rosbags").

    .venv/bin/python scripts/bag_throughput.py [--frames 200] [--width 640] [--height 192]
        [--camera-width W --camera-height H] [--train-steps 8] [--output /tmp/mds_bag_throughput]

Writes one synthetic drive as four bags (MCAP / sqlite3, rgb8 Image / JPEG CompressedImage),
then measures, with the CPU only:

* the preparation pass (the first epoch's extra cost): read, deserialise, decode, resize,
  stationary check and cache, in frames per second, at the training resolution and at half of it
  (the bag's images are ``--camera-width`` x ``--camera-height``, by default the training size);
* first and later epochs: frames delivered to training (3 per augmented sample; the first epoch
  includes the preparation pass) with the frame cache in RAM and on disk (``cache_memory_mb: 0``),
  and the cache lookups alone, in frames per second;
* training from the MCAP rgb8 bag: ResNet18, K=5, batch 4 at half the bag's resolution, data
  loading included, in samples per second.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch

from mds_core.config import BagConfig, DataConfig, ModelConfig, TrainConfig
from mds_core.data.factory import build_dataset
from mds_core.data.rosbag import load_bag_sequences
from mds_core.data.rosbag.prepare import typestore
from mds_core.data.sample import collate_samples
from mds_core.method.losses import SelfSupervisedObjective
from mds_core.tools.synth import SynthConfig, generate_sequence, write_rosbag
from mds_core.training.distributed import DistributedContext
from mds_core.training.loop import build_training_state, train_step

VARIANTS = [("mcap", "raw"), ("sqlite3", "raw"), ("mcap", "jpeg"), ("sqlite3", "jpeg")]


def write_bags(output: Path, width: int, height: int, frames: int) -> dict[tuple[str, str], Path]:
    bags = {key: output / f"{key[0]}_{key[1]}_{width}x{height}_{frames}" for key in VARIANTS}
    if all(path.exists() for path in bags.values()):
        return bags
    config = SynthConfig(width=width, height=height, num_frames=frames, seed=11)
    generated = list(generate_sequence(config))
    for (storage, fmt), path in bags.items():
        if not path.exists():
            write_rosbag(path, config, storage=storage, image_format=fmt, frames=generated)
    return bags


def preparation(path: Path, width: int, height: int, repeats: int = 3) -> float:
    """Frames/s of the preparation pass (best of ``repeats``: the 2 cores are shared)."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        _, (report,), _ = load_bag_sequences(BagConfig(paths=[str(path)]), height, width, [-1, 1])
        best = max(best, report.decoded / (time.perf_counter() - start))
    return best


def epochs(path: Path, width: int, height: int, memory_mb: int) -> dict[str, float]:
    """Frames/s delivered to training (3 per sample): first epoch, a later one, cache lookups alone."""
    data = DataConfig(format="rosbag", bag=BagConfig(paths=[str(path)], cache_memory_mb=memory_mb))
    start = time.perf_counter()
    dataset = build_dataset(data, ModelConfig(height=height, width=width), training=True)
    prepared = time.perf_counter() - start
    times = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        start = time.perf_counter()
        for i in range(len(dataset)):
            dataset[i]
        times.append(time.perf_counter() - start)
    frames = 3 * len(dataset)
    start = time.perf_counter()
    lookups = sum(len(s) for s in dataset.sequences)
    for sequence in dataset.sequences:
        for i in range(len(sequence)):
            sequence.image(i)
    return {"first": frames / (prepared + times[0]), "later": frames / times[1],
            "lookup": lookups / (time.perf_counter() - start)}


def training(path: Path, width: int, height: int, steps: int) -> tuple[float, float]:
    config = TrainConfig()
    config.model = ModelConfig(height=height, width=width, depth_encoder="resnet18", pose_mask_encoder="resnet18",
                               num_components=5)
    config.data = DataConfig(format="rosbag", bag=BagConfig(paths=[str(path)]))
    config.optim.batch_size = 4
    torch.manual_seed(0)
    dataset = build_dataset(config.data, config.model, training=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, shuffle=True, collate_fn=collate_samples)
    state = build_training_state(config, torch.device("cpu"), DistributedContext())
    objective = SelfSupervisedObjective(config.loss, config.model)
    times, batches = [], iter(loader)
    for _ in range(steps + 2):  # the first two steps warm up
        start = time.perf_counter()
        batch = next(batches)
        train_step(state, objective, batch)
        times.append(time.perf_counter() - start)
    median = sorted(times[2:])[len(times[2:]) // 2]
    return median, 4 / median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--width", type=int, default=640, help="training width")
    parser.add_argument("--height", type=int, default=192, help="training height")
    parser.add_argument("--camera-width", type=int, default=0, help="bag image width (default: --width)")
    parser.add_argument("--camera-height", type=int, default=0, help="bag image height (default: --height)")
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--output", type=Path, default=Path("/tmp/mds_bag_throughput"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    w, h = args.width, args.height
    cw, ch = args.camera_width or w, args.camera_height or h
    bags = write_bags(args.output, cw, ch, args.frames)
    typestore()  # imports and message definitions: once per process, not part of a bag's cost
    print(f"torch threads: {torch.get_num_threads()}; bags of {args.frames} frames of {cw}x{ch}\n")
    print(f"| bag | preparation at {w}x{h} | preparation at {w // 2}x{h // 2} |")
    print("|---|---|---|")
    for (storage, fmt), path in bags.items():
        full = preparation(path, w, h)
        half = preparation(path, w // 2, h // 2)
        kind = "Image rgb8" if fmt == "raw" else "CompressedImage jpeg"
        print(f"| {storage}, {kind} | {full:.0f} frames/s | {half:.0f} frames/s |")
    print()
    raw = bags[("mcap", "raw")]
    print(f"| {raw.name} at {w}x{h}, frames to training (3 per augmented sample) | first epoch | later epochs "
          f"| cache lookups alone |")
    print("|---|---|---|---|")
    for label, memory_mb in (("frame cache in RAM", 4096), ("frame cache on disk (cache_memory_mb: 0)", 0)):
        rates = epochs(raw, w, h, memory_mb)
        print(f"| {label} | {rates['first']:.0f} frames/s | {rates['later']:.0f} frames/s | {rates['lookup']:.0f} frames/s |")
    print()
    step, rate = training(raw, w // 2, h // 2, args.train_steps)
    print(f"training from {raw.name} at {w // 2}x{h // 2}, ResNet18, K=5, batch 4: "
          f"{step:.2f} s/step (median), {rate:.2f} samples/s")


if __name__ == "__main__":
    main()
