"""``mds ros-benchmark``: the perception node on a long replay, as a robot would run it.

The node runs in its own process with every output subscribed (so the point cloud and the
overlay are computed too); a synthetic bag is replayed at camera rate. Reported: frames/s in
and out, dropped frames, latency median/p99 split into conversion, networks and publishing (the
node's own diagnostics), and the node process's resident memory over the replay.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.config import ModelConfig
from mds_core.tools.synth import SynthConfig, write_rosbag

LOG = logging.getLogger(__name__)


@dataclass
class NodeBenchmark:
    checkpoint: str | None = None
    width: int = 320
    height: int = 96
    components: int = 5
    camera_width: int = 640
    camera_height: int = 192
    frames: int = 300
    fps: float = 10.0
    device: str = "auto"
    output: Path = Path("outputs/ros_benchmark")
    online: bool = False  # also run the online training node (mds_trainer) on the same stream


def resident_mib(pid: int) -> float | None:
    """VmRSS of a process in MiB (Linux), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def run_node_benchmark(spec: NodeBenchmark) -> str:
    from mds_ros.tools.demo import output_topics
    from mds_ros.tools.launch_file import load_launch
    from mds_ros.tools.session import NodeSession

    spec.output.mkdir(parents=True, exist_ok=True)
    checkpoint = spec.checkpoint
    if checkpoint is None:
        checkpoint = str(write_untrained_checkpoint(spec.output / "untrained.pt", ModelConfig(
            width=spec.width, height=spec.height, depth_encoder="resnet18", pose_mask_encoder="resnet18",
            num_components=spec.components)))
    synth = SynthConfig(width=spec.camera_width, height=spec.camera_height, num_frames=spec.frames, fps=spec.fps,
                        seed=123)
    bag = spec.output / f"bag_{spec.camera_width}x{spec.camera_height}_{spec.frames}"
    if not bag.exists():
        LOG.info(f"writing {spec.frames} frames of {spec.camera_width}x{spec.camera_height} to {bag}")
        try:
            write_rosbag(bag, synth)
        except BaseException:
            shutil.rmtree(bag, ignore_errors=True)
            raise
    memory: list[float] = []
    specs = load_launch("mds.launch.xml", {"checkpoint": str(checkpoint), "device": spec.device,
                                           "online": str(spec.online).lower(),
                                           "online_output": str(spec.output / "online.pt")})
    with NodeSession(specs, output_topics(), spec.output / "logs") as session:
        pid = session.node_pid

        def sample() -> None:
            rss = resident_mib(pid)
            if rss is not None:
                memory.append(rss)
        sample()
        wall = session.replay(bag, spec.frames, synth.duration, on_poll=sample)
        sample()
        values = session.recorder.latest_status("mds_perception")
        training = session.recorder.latest_status("mds_trainer")
        outputs = session.recorder.count("/mds_perception/depth/image")
    rows = [("stage", "median ms", "p99 ms")]
    for stage in ("conversion", "network", "publish", "total"):
        rows.append((stage, values.get(f"latency_{stage}_median_ms", "-"), values.get(f"latency_{stage}_p99_ms", "-")))
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows[:1]) + "\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows[1:])
    processed = int(values.get("frames_processed", 0))
    return "\n".join([
        f"# mds ros-benchmark ({values.get('device')}, model input {values.get('input_size')}, "
        f"K={values.get('components')}, camera {spec.camera_width}x{spec.camera_height} at {spec.fps:g} Hz)",
        "",
        f"frames replayed {spec.frames}; received {values.get('frames_received')}; processed {processed}; "
        f"dropped {values.get('frames_dropped')} (newest kept); depth messages recorded {outputs}",
        f"rate in {spec.frames / max(synth.duration, 1e-9):.2f} frames/s (camera); "
        f"rate out {processed / max(wall, 1e-9):.2f} frames/s over {wall:.1f} s",
        "",
        table,
        "",
        f"node resident memory: start {memory[0]:.0f} MiB, peak {max(memory):.0f} MiB, end {memory[-1]:.0f} MiB "
        f"({len(memory)} samples)" if memory else "node resident memory: not measured",
        "(total = from arrival of the image to the last output published; includes waiting in the mailbox)",
        *([f"online training in a second process: {training.get('steps')} steps of batch "
           f"{training.get('batch', '4')} ({training.get('step_median_ms')} ms median), "
           f"{training.get('checkpoints_written')} checkpoints written, {values.get('checkpoints_swapped')} "
           f"swapped into the node"] if spec.online else []),
    ])
