"""Video files (.mp4, .avi, ...) as frame sequences, decoded with OpenCV (``cv2.VideoCapture``).

``ROOT`` is one video file, or a folder whose video files (:data:`VIDEO_EXTENSIONS`) are one
sequence each, named by their file stem.

* **Subsampling.** With ``fps``, every k-th frame is kept, the k whose rate ``video fps / k`` is
  closest to ``fps`` (25 fps at ``--fps 10``: every 3rd frame, 8.3 fps, not 12.5). Frame ids are
  the indices in the video (``000000``, ``000003``, ...).
* **Decoding and memory.** A video is decoded once, from start to end, when its sequence is made: the
  frame count is then exact (containers often misstate it) and a broken file fails at once. Kept
  frames stay in memory as RGB arrays, up to :data:`RAW_MEMORY_MB` per video (a 221-frame 960x540
  clip is 340 MB); frames beyond that are kept PNG-compressed in memory (lossless, about a quarter of
  the size) and decoded again when read. Training and evaluation read frames in random order, which
  seeking in a compressed video cannot do quickly or reliably.
* **Camera.** Videos carry no calibration: ``K`` comes from the focal length in pixels or the
  horizontal field of view (:func:`mds_core.data.footage.centred_intrinsics`).

Importing this module silences FFmpeg's own messages on stderr (``OPENCV_FFMPEG_LOGLEVEL=-8``, unless
that is set already): an unreadable file is reported once, as a :class:`DataError`.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from mds_core.data.footage import centred_intrinsics, select_by_name
from mds_core.data.sequence_folder import DataError

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET: read by OpenCV when it first opens a video

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")
#: A video that decodes to fewer than this fraction of the frames its header states is refused as
#: truncated (headers often misstate the count a little, never by half).
TRUNCATED_FRACTION = 0.9
#: Decoded frames kept as RGB arrays per video, in MB; frames beyond are kept PNG-compressed.
RAW_MEMORY_MB = 1024


def frame_step(video_fps: float, fps: float | None, path: Path) -> int:
    """Keep every k-th frame for about ``fps`` frames per second (1: every frame)."""
    if fps is None:
        return 1
    if not video_fps > 0:
        raise DataError(f"video {path} does not state its frame rate, so --fps cannot subsample it")
    ratio = video_fps / fps
    candidates = {max(1, int(np.floor(ratio))), max(1, int(np.ceil(ratio)))}
    return min(sorted(candidates), key=lambda k: abs(video_fps / k - fps))


class VideoSequence:
    """The frames of one video file (module docstring); implements ``FrameSequence``.

    ``focal`` (pixels) or ``fov`` (horizontal degrees) give ``K``; ``fps`` subsamples.
    ``depth`` and ``motion`` are always None.
    """

    def __init__(self, path: str | Path, focal: float | None = None, fov: float | None = None,
                 fps: float | None = None, raw_memory_mb: float = RAW_MEMORY_MB):
        self.path = Path(path)
        self.name = self.path.stem
        if not self.path.is_file():
            raise DataError(f"video {self.path} does not exist or is not a file")
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise DataError(f"cannot read video {self.path} (not a video, or a codec this OpenCV cannot decode)")
            self.video_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            self.step = frame_step(self.video_fps, fps, self.path)
            ok, first = capture.read()
            if not ok or first is None:
                raise DataError(f"cannot read any frame of video {self.path} (empty, truncated or an unsupported codec)")
            height, width = first.shape[:2]
            self._intrinsics = (centred_intrinsics((width, height), focal, fov, f"video {self.path}"), (width, height))
            self._frames: list[np.ndarray | bytes] = []
            self._indices: list[int] = []
            self._raw_bytes = 0
            budget = raw_memory_mb * 1024 * 1024
            self._keep(0, first, budget)
            index = 1
            while capture.grab():
                if index % self.step == 0:
                    ok, frame = capture.retrieve()
                    if not ok or frame is None:
                        break  # an undecodable tail: what was decoded is checked against the header below
                    if frame.shape[:2] != (height, width):
                        raise DataError(f"video {self.path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
                                        f"the first {width}x{height}")
                    self._keep(index, frame, budget)
                index += 1
            self.video_frames = index
            stated = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            if stated > 0 and index < TRUNCATED_FRACTION * stated:
                raise DataError(f"video {self.path}: only {index} of the {stated} frames its header states could be "
                                f"decoded (a truncated or damaged file)")
        finally:
            capture.release()

    def _keep(self, index: int, bgr: np.ndarray, budget: float) -> None:
        if self._raw_bytes + bgr.nbytes <= budget:
            self._frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            self._raw_bytes += bgr.nbytes
        else:
            ok, encoded = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            if not ok:
                raise DataError(f"video {self.path}: cannot keep frame {index} (PNG encoding failed)")
            self._frames.append(encoded.tobytes())
        self._indices.append(index)

    def __len__(self) -> int:
        return len(self._frames)

    def __repr__(self) -> str:
        return f"VideoSequence({str(self.path)!r}, {len(self)} frames, every {self.step})"

    def frame_id(self, index: int) -> str:
        """The frame's index in the video, six digits."""
        return f"{self._indices[index]:06d}"

    def image(self, index: int) -> np.ndarray:
        frame = self._frames[index]
        if isinstance(frame, np.ndarray):
            return frame.copy()
        return cv2.cvtColor(cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def intrinsics(self) -> tuple[np.ndarray, tuple[int, int]]:
        matrix, size = self._intrinsics
        return matrix.copy(), size

    def depth(self, index: int) -> np.ndarray | None:
        return None

    def motion(self, index: int) -> np.ndarray | None:
        return None

    def timestamps(self) -> list[float] | None:
        """Seconds of every kept frame from the start of the video; None when its frame rate is unknown."""
        if not self.video_fps > 0:
            return None
        return [i / self.video_fps for i in self._indices]


def find_video_sequences(path: str | Path, names: list[str] | None = None, focal: float | None = None,
                         fov: float | None = None, fps: float | None = None) -> list[VideoSequence]:
    """One sequence per video: ``path`` itself, or the video files in the folder ``path`` (module
    docstring), those whose stems are in ``names`` only when given."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"video {path} does not exist")
    if path.is_file():
        files = [path]
    else:
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
        if not files:
            raise DataError(f"{path} holds no videos ({', '.join(VIDEO_EXTENSIONS)})")
    files = select_by_name(files, names, lambda p: p.stem, str(path))
    return [VideoSequence(p, focal, fov, fps) for p in files]
