"""Pictures people would rather see than read: depth, decompositions and panels (uint8 RGB)."""

from __future__ import annotations

import functools

import cv2
import numpy as np

_GOLDEN = 0.618033988749895


#: The static scene in every picture: the background component and the static part of a motion mask.
STATIC_COLOUR = (90, 90, 90)


@functools.lru_cache(maxsize=64)
def component_colours(num_components: int, background: int | None = None) -> np.ndarray:
    """``(K, 3)`` uint8 distinct colours (golden-ratio hues, the same for every frame; read-only), the
    ``background`` component's grey: the static scene stays neutral and what moves stands out."""
    colours = []
    for i in range(num_components):
        hue = int(((i * _GOLDEN) % 1.0) * 179)
        hsv = np.uint8([[[hue, 200, 255]]])
        colours.append(STATIC_COLOUR if i == background else cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])
    colours = np.stack(colours).astype(np.uint8)
    colours.flags.writeable = False
    return colours


def largest_component(masks: np.ndarray) -> int:
    """The component with the largest total mask mass: the background, as the predictor defines it."""
    return int(np.argmax(masks.reshape(masks.shape[0], -1).sum(axis=1)))


def colourise_depth(depth: np.ndarray, max_percentile: float = 95.0) -> np.ndarray:
    """Depth ``(H, W)`` -> ``(H, W, 3)`` uint8 RGB; near is bright (magma on normalised disparity)."""
    valid = np.isfinite(depth) & (depth > 0)
    disparity = np.zeros_like(depth, dtype=np.float32)
    disparity[valid] = 1.0 / depth[valid]
    top = np.percentile(disparity[valid], max_percentile) if valid.any() else 1.0
    normalised = np.clip(disparity / max(top, 1e-8), 0.0, 1.0)
    coloured = cv2.applyColorMap((normalised * 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
    coloured = cv2.cvtColor(coloured, cv2.COLOR_BGR2RGB)
    coloured[~valid] = 0
    return coloured


def colourise_masks(masks: np.ndarray, background: int | None = None) -> np.ndarray:
    """Soft masks ``(K, H, W)`` -> ``(H, W, 3)``: each component's colour weighted by its probability,
    the background component (``background``, else the largest) grey (:func:`component_colours`).

    Elementwise sums per colour channel, not a matrix product: NumPy's BLAS threads keep spinning
    after a product and took a core from the networks in the node (0.4 ms either way at 640x192).
    """
    num_components = masks.shape[0]
    background = largest_component(masks) if background is None else background
    colours = component_colours(num_components, background).astype(np.float32)
    masks = masks.astype(np.float32, copy=False)
    term = np.empty(masks.shape[1:], np.float32)
    channels = []
    for channel in range(3):
        total = masks[0] * colours[0, channel]
        for k in range(1, num_components):
            total += np.multiply(masks[k], colours[k, channel], out=term)
        channels.append(cv2.convertScaleAbs(total))  # rounded, saturated to 0..255
    return cv2.merge(channels)


def colourise_moving_probability(probability: np.ndarray) -> np.ndarray:
    """A motion mask ``(H, W)`` in [0, 1] -> ``(H, W, 3)``: static grey, moving red, blended in between."""
    static, moving = np.array(STATIC_COLOUR, np.float32), np.array([230, 40, 40], np.float32)
    p = np.clip(probability.astype(np.float32), 0.0, 1.0)[..., None]
    return ((1.0 - p) * static + p * moving).astype(np.uint8)


def heat_map(values: np.ndarray) -> np.ndarray:
    """Values ``(H, W)`` in [0, 1] -> ``(H, W, 3)`` RGB, inferno: 0 black, 0.5 red, 1 pale yellow. Soft
    probabilities (a moving probability of 0.3 on a car against 0.05 around it) read at a glance."""
    scaled = cv2.convertScaleAbs(np.nan_to_num(values.astype(np.float32)), alpha=255.0)  # clipped to 0..255
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)


def colourise_labels(labels: np.ndarray, num_components: int, background: int | None = None) -> np.ndarray:
    """Argmax labels ``(H, W)`` -> ``(H, W, 3)`` with :func:`component_colours`."""
    return component_colours(num_components, background)[labels]


def colourise_motion_labels(labels: np.ndarray) -> np.ndarray:
    """Ground-truth motion labels: background grey, moving red, static movable blue, unlabelled black."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[0] = (90, 90, 90)
    palette[1] = (230, 40, 40)
    palette[2] = (40, 90, 230)
    return palette[labels]


def overlay(image: np.ndarray, colour: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a colourised map over an RGB image."""
    return cv2.addWeighted(image, 1.0 - alpha, colour, alpha, 0.0)


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` or ``(H, W, 3)`` float in [0, 1] -> ``(H, W, 3)`` uint8."""
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3:
        image = image.transpose(1, 2, 0)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def panel(tiles: list[np.ndarray], columns: int | None = None, labels: list[str] | None = None) -> np.ndarray:
    """Tile equally sized ``(H, W, 3)`` uint8 images into a grid, optionally captioned."""
    if not tiles:
        raise ValueError("panel needs at least one tile")
    height, width = tiles[0].shape[:2]
    tiles = [t if t.shape[:2] == (height, width) else cv2.resize(t, (width, height)) for t in tiles]
    if labels:
        tiles = [_caption(t, text) for t, text in zip(tiles, labels)]
    columns = columns or len(tiles)
    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    blank = np.zeros_like(tiles[0])
    rows = [row + [blank] * (columns - len(row)) for row in rows]
    return np.concatenate([np.concatenate(row, axis=1) for row in rows], axis=0)


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    scale = max(0.3, tile.shape[0] / 320.0)
    cv2.putText(tile, text, (4, int(14 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (4, int(14 * scale) + 2), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def save_png(path, image: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG."""
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
