"""``mds infer``: run a checkpoint over a sequence (a sequence folder, or any ``FrameSequence``, e.g.
a video or a DAVIS sequence) and write depth, masks and panels.

For every frame ``NNNNNN`` of the sequence (the first frame has no previous frame, so it
gets depth only)::

    OUT/depth/NNNNNN.npy     float32 depth at the input image size (network units)
    OUT/masks/NNNNNN.npy     float32 (K, h, w) soft masks at the model resolution
    OUT/labels/NNNNNN.png    uint8 argmax component at the input image size
    OUT/panels/NNNNNN.png    image | depth | decomposition
    OUT/transforms.json      per frame: K 4x4 motions (previous -> current camera frame)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mds_core.data.sequence_folder import DataError, FrameSequence, SequenceFolder
from mds_core.inference.predictor import Predictor, resize_disparity_to_depth
from mds_core.progress import progress as progress_bar
from mds_core.visualization import colourise_depth, colourise_masks, overlay, panel, save_png


@dataclass
class InferenceSummary:
    frames: int
    output: Path


def infer_sequence(predictor: Predictor, sequence_path: str | Path | FrameSequence, output: str | Path,
                   progress: bool = True, max_frames: int | None = None) -> InferenceSummary:
    """Write the outputs of the module docstring for ``sequence_path``: a sequence folder's path, or a
    sequence already opened (:func:`mds_core.data.factory.open_sequence`)."""
    sequence = SequenceFolder(Path(sequence_path)) if isinstance(sequence_path, (str, Path)) else sequence_path
    output = Path(output)
    for sub in ("depth", "masks", "labels", "panels"):
        (output / sub).mkdir(parents=True, exist_ok=True)
    intrinsics, (native_w, native_h) = sequence.intrinsics()
    count = len(sequence) if max_frames is None else min(len(sequence), max_frames)
    cfg = predictor.config
    transforms: dict[str, list] = {}
    previous = None
    for index in progress_bar(range(count), desc="infer", enabled=progress):
        image = sequence.image(index)
        height, width = image.shape[:2]
        if (width, height) != (native_w, native_h):
            raise DataError(
                f"{getattr(sequence, 'path', sequence.name)}: frame {sequence.frame_id(index)} is {width}x{height}, "
                f"its calibration says {native_w}x{native_h}"
            )
        current = predictor.prepare(image)
        prediction = predictor.predict(current, intrinsics, previous)
        previous = current
        frame = sequence.frame_id(index)
        depth = resize_disparity_to_depth(prediction.disparity, (width, height), cfg.min_depth, cfg.max_depth)
        np.save(output / "depth" / f"{frame}.npy", depth.astype(np.float32))
        small = cv2.resize(image, predictor.size, interpolation=cv2.INTER_AREA)
        tiles = [small, colourise_depth(prediction.depth)]
        if prediction.masks is not None:
            np.save(output / "masks" / f"{frame}.npy", prediction.masks.astype(np.float32))
            labels = cv2.resize(prediction.labels, (width, height), interpolation=cv2.INTER_NEAREST)
            cv2.imwrite(str(output / "labels" / f"{frame}.png"), labels)
            tiles.append(overlay(small, colourise_masks(prediction.masks), 0.6))
            transforms[frame] = prediction.transforms.tolist()
        else:
            tiles.append(np.zeros_like(small))
        save_png(output / "panels" / f"{frame}.png",
                 panel(tiles, columns=1, labels=["image", "depth", "decomposition"]))
    (output / "transforms.json").write_text(json.dumps(
        {"description": "per frame, K 4x4 rigid motions from the previous to the current camera frame",
         "frames": transforms}, indent=1))
    return InferenceSummary(frames=count, output=output)
