"""``mds ros-benchmark``: the perception node on a long replay, as a robot would run it.

The node runs in its own process with every output subscribed (so the point cloud and the
overlay are computed too); a synthetic bag is replayed at camera rate. Reported: frames/s in
and out, dropped frames, latency median/p99 split into conversion, networks and publishing (the
node's own diagnostics), and the node process's resident memory over the replay. Several
backends (torch, onnxruntime) and model sizes in one run (:func:`compare_backends`) add a table of
the output rates, their ratio and the share of the node's own work (conversion and publishing)
in the time of a frame.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, replace
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
    backend: str = "torch"  # or "onnxruntime" (the node exports the checkpoint at start-up)


@dataclass
class NodeBenchmarkResult:
    spec: NodeBenchmark
    text: str
    rate_out: float  # frames/s published, between the first and the last depth image
    latency_ms: dict[str, float]  # median per stage: conversion, network, publish, total

    @property
    def own_work_share(self) -> float:
        """Conversion and publishing as a fraction of conversion + networks + publishing (medians)."""
        own = self.latency_ms["conversion"] + self.latency_ms["publish"]
        return own / max(own + self.latency_ms["network"], 1e-9)


def _unsettled(values: dict[str, str]) -> str:
    """``; failed N`` and ``; N accepted but not yet processed ...`` where there are such frames, else ``""``."""
    from mds_ros.tools.session import unsettled_frames

    failed, unsettled = int(values.get("failed_frames", 0)), unsettled_frames(values)
    return (f"; failed {failed}" if failed else "") + (f"; {unsettled} accepted but not yet processed when the "
                                                       "report was taken" if unsettled else "")


def resident_mib(pid: int) -> float | None:
    """VmRSS of a process in MiB (Linux), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def run_node_benchmark(spec: NodeBenchmark) -> NodeBenchmarkResult:
    from mds_ros.tools.demo import output_topics
    from mds_ros.tools.launch_file import load_launch
    from mds_ros.tools.session import NodeSession, output_delivery

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
                                           "backend": spec.backend, "online": str(spec.online).lower(),
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
        rate_out = session.recorder.arrival_rate("/mds_perception/depth/image")
        delivery = output_delivery(session.recorder)
    rows = [("stage", "median ms", "p99 ms")]
    for stage in ("conversion", "network", "publish", "total"):
        rows.append((stage, values.get(f"latency_{stage}_median_ms", "-"), values.get(f"latency_{stage}_p99_ms", "-")))
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows[:1]) + "\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows[1:])
    processed = int(values.get("frames_processed", 0))
    latency = {stage: _float(values.get(f"latency_{stage}_median_ms")) for stage in ("conversion", "network",
                                                                                     "publish", "total")}
    text = "\n".join([
        f"# mds ros-benchmark ({values.get('device')}, {values.get('backend', spec.backend)}, model input "
        f"{values.get('input_size')}, K={values.get('components')}, camera {spec.camera_width}x{spec.camera_height} "
        f"at {spec.fps:g} Hz)",
        "",
        f"frames replayed {spec.frames}; received {values.get('frames_received')}; processed {processed}; "
        f"dropped {values.get('frames_dropped')} (newest kept){_unsettled(values)}; depth messages recorded {outputs}",
        f"rate in {spec.frames / max(synth.duration, 1e-9):.2f} frames/s (camera); "
        f"rate out {rate_out:.2f} frames/s (between the first and the last output; {processed} frames in "
        f"{wall:.1f} s from the replay's start)",
        "",
        table,
        "",
        f"node resident memory: start {memory[0]:.0f} MiB, peak {max(memory):.0f} MiB, end {memory[-1]:.0f} MiB "
        f"({len(memory)} samples)" if memory else "node resident memory: not measured",
        "(total = from arrival of the image to the last output published; includes waiting in the mailbox)",
        delivery,
        *([f"online training in a second process: {training.get('steps')} steps of batch "
           f"{training.get('batch', '4')} ({training.get('step_median_ms')} ms median), "
           f"{training.get('checkpoints_written')} checkpoints written, {values.get('checkpoints_swapped')} "
           f"swapped into the node"] if spec.online else []),
    ])
    return NodeBenchmarkResult(spec, text, rate_out, latency)


def _float(value: str | None) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def compare_backends(spec: NodeBenchmark, backends: list[str], sizes: list[tuple[int, int]]) -> str:
    """Every backend at every model size (an untrained model of that size unless ``spec.checkpoint``),
    one after the other on the same replay; the reports, then a table with the ratio of the
    output rates to the first backend's."""
    results = {}
    for width, height in sizes:
        for backend in backends:
            run = replace(spec, width=width, height=height, backend=backend,
                          output=spec.output / f"{width}x{height}_{backend}")
            LOG.info("ros-benchmark: %s at %dx%d", backend, width, height)
            results[(width, height, backend)] = run_node_benchmark(run)
    reports = [r.text for r in results.values()]
    if len(backends) < 2:
        return "\n\n".join(reports)
    base = backends[0]
    lines = ["| model input | " + " | ".join(f"{b} frames/s" for b in backends) + " | "
             + " | ".join(f"{b} / {base}" for b in backends[1:]) + " | "
             + " | ".join(f"{b} network ms" for b in backends) + " | "
             + " | ".join(f"{b} own work" for b in backends) + " |",
             "|---" * (1 + 3 * len(backends) + len(backends) - 1) + "|"]
    for width, height in sizes:
        row = [results[(width, height, b)] for b in backends]
        lines.append(f"| {width}x{height} | " + " | ".join(f"{r.rate_out:.2f}" for r in row) + " | "
                     + " | ".join(f"{r.rate_out / max(row[0].rate_out, 1e-9):.2f}x" for r in row[1:]) + " | "
                     + " | ".join(f"{r.latency_ms['network']:.0f}" for r in row) + " | "
                     + " | ".join(f"{100 * r.own_work_share:.1f}%" for r in row) + " |")
    note = ("own work: the node's conversion and publishing as a share of conversion + networks + publishing "
            "(medians per frame)")
    return "\n\n".join([*reports, "# backends compared", "\n".join(lines), note])
