"""DAVIS video object segmentation sequences, with their object masks as motion labels.

Layout (DAVIS 2016 and 2017, as downloaded)::

    ROOT/JPEGImages/480p/<sequence>/00000.jpg    frames (24 fps)
    ROOT/Annotations/480p/<sequence>/00000.png   0 background, > 0 the annotated object(s)

Motion labels: DAVIS 2016 annotates the main moving object of every frame, so a pixel inside the
annotation is :data:`~mds_core.evaluation.motion_segmentation.POSITIVE_LABEL` (moving) and every
other pixel 0 (static background). (DAVIS 2017 annotates several objects, not all of them moving;
its masks are read the same way.) A sequence without an annotation folder has no labels; one whose
annotations are not one per frame is a :class:`DataError`.

DAVIS has no calibration: ``K`` comes from a focal length or a horizontal field of view
(:func:`mds_core.data.footage.centred_intrinsics`), with the principal point at the image centre.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mds_core.data.footage import ImageFileSequence, centred_intrinsics, select_by_name
from mds_core.data.sequence_folder import DataError

#: Frames per second of every DAVIS sequence.
DAVIS_FPS = 24.0
#: The label of annotated pixels (moving; the evaluation's POSITIVE_LABEL) and of the rest (static).
MOVING_LABEL, STATIC_LABEL = 1, 0
RESOLUTION = "480p"


class DavisSequence(ImageFileSequence):
    """One DAVIS sequence: the frames in ``image_dir`` (.jpg, sorted by name), their annotations in
    ``annotation_dir`` (one .png per frame, same names; None: no labels), and ``focal`` (pixels) or
    ``fov`` (horizontal degrees). Implements ``FrameSequence``; ``depth`` is always None."""

    def __init__(self, image_dir: str | Path, annotation_dir: str | Path | None = None,
                 focal: float | None = None, fov: float | None = None):
        image_dir = Path(image_dir)
        self.name = image_dir.name
        self._images = _files(image_dir, (".jpg", ".jpeg", ".png"))
        if not self._images:
            raise DataError(f"DAVIS sequence {image_dir}: no .jpg images")
        self._annotations = None
        if annotation_dir is not None:
            annotation_dir = Path(annotation_dir)
            annotations = _files(annotation_dir, (".png",))
            if len(annotations) != len(self._images):
                raise DataError(f"DAVIS sequence {self.name!r}: {len(self._images)} images in {image_dir} but "
                                f"{len(annotations)} annotations in {annotation_dir} (expected one per image)")
            unmatched = next((i for i, (a, f) in enumerate(zip(annotations, self._images)) if a.stem != f.stem), None)
            if unmatched is not None:
                raise DataError(f"DAVIS sequence {self.name!r}: annotation {annotations[unmatched].name} does not "
                                f"match image {self._images[unmatched].name}")
            self._annotations = annotations
        self._focal, self._fov = focal, fov

    def _camera_matrix(self, size: tuple[int, int]) -> np.ndarray:
        """``K`` from the focal length or field of view, principal point at the centre of the frames."""
        return centred_intrinsics(size, self._focal, self._fov, f"DAVIS sequence {self.name!r}")

    def depth(self, index: int) -> np.ndarray | None:
        return None

    def motion(self, index: int) -> np.ndarray | None:
        """``(H, W)`` uint8: :data:`MOVING_LABEL` inside the annotation, :data:`STATIC_LABEL` elsewhere."""
        if self._annotations is None:
            return None
        path = self._annotations[index]
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # palette PNGs come as colour: any channel counts
        if mask is None:
            raise DataError(f"cannot read annotation {path} (missing, truncated or not an image)")
        annotated = mask > 0 if mask.ndim == 2 else (mask[..., :3] > 0).any(axis=2)
        labels = np.where(annotated, MOVING_LABEL, STATIC_LABEL).astype(np.uint8)
        _, (width, height) = self.intrinsics()
        if labels.shape != (height, width):
            raise DataError(f"annotation {path} is {labels.shape[1]}x{labels.shape[0]}, the frames {width}x{height}")
        return labels

    def timestamps(self) -> list[float]:
        """Seconds of every frame (DAVIS is filmed at :data:`DAVIS_FPS`)."""
        return [i / DAVIS_FPS for i in range(len(self))]


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes) if folder.is_dir() else []


def find_davis_sequences(root: str | Path, names: list[str] | None = None, focal: float | None = None,
                         fov: float | None = None, resolution: str = RESOLUTION) -> list[DavisSequence]:
    """The sequences of the DAVIS root ``root`` (module docstring), those named in ``names`` only when
    given. Without ``focal`` or ``fov`` this is a :class:`DataError` (DAVIS has no calibration)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"DAVIS root {root} does not exist or is not a directory")
    frames_dir = root / "JPEGImages" / resolution
    folders = sorted(p for p in frames_dir.iterdir() if p.is_dir()) if frames_dir.is_dir() else []
    if not folders:
        raise DataError(f"{root} holds no DAVIS sequences: expected ROOT/JPEGImages/{resolution}/<sequence>/00000.jpg "
                        f"(and ROOT/Annotations/{resolution}/<sequence>/00000.png)")
    folders = select_by_name(folders, names, lambda p: p.name, str(root))
    sequences = []
    for folder in folders:
        labels_dir = root / "Annotations" / resolution / folder.name
        sequence = DavisSequence(folder, labels_dir if labels_dir.is_dir() else None, focal, fov)
        sequence.intrinsics()  # a missing --focal / --fov or an unreadable first frame shows now
        sequences.append(sequence)
    return sequences
