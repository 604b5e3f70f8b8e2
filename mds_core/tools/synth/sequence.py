"""Sequence generation: a scene, a renderer and a frame iterator."""

from __future__ import annotations

from collections.abc import Iterator

from mds_core.tools.synth.config import SynthConfig
from mds_core.tools.synth.frame import SynthFrame
from mds_core.tools.synth.render import Renderer
from mds_core.tools.synth.scene import Scene


def generate_sequence(config: SynthConfig) -> Iterator[SynthFrame]:
    """Yield ``config.num_frames`` frames (index ``i`` at time ``i / fps``), lazily.

    Deterministic: the same config always yields bit-identical frames.
    """
    config.validate()
    renderer = Renderer(Scene(config))
    for index in range(config.num_frames):
        yield renderer.render(index)
