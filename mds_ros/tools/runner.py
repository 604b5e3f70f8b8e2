"""``mds_launch``: start the launch files' nodes without ``ros2 launch``.

Where ``launch``/``ros2`` are not installed (pip-only machines, CI, this project's tests), this
starts the same :class:`~mds_ros.tools.launch_spec.NodeSpec` list as ``launch/mds.launch.py`` (and,
with ``--bag``, ``launch/mds_replay.launch.py``) as child processes with the same parameter
files and arguments, forwards Ctrl-C to them and stops everything when a required one exits::

    mds_launch --checkpoint model.pt --camera-namespace /camera
    mds_launch --checkpoint model.pt --bag recording.mcap --rate 1.0 --loop 3
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from mds_ros.tools.launch_spec import NodeSpec, PerceptionLaunch, ReplayLaunch


class ProcessGroup:
    """Child processes started from specs; ``stop`` sends SIGINT, then SIGTERM, then SIGKILL."""

    def __init__(self, specs: list[NodeSpec], env: dict[str, str] | None = None, log_dir: Path | None = None):
        self.specs = specs
        self.env = env
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list[IO] = []

    def start(self) -> ProcessGroup:
        for spec in self.specs:
            command = spec.command(sys.executable)
            if command is None:
                print(f"mds_launch: {spec.executable} is not installed here; not starting {spec.name}",
                      file=sys.stderr)
                continue
            output = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                output = open(self.log_dir / f"{spec.name}.log", "w")
                self._logs.append(output)
            self.processes[spec.name] = subprocess.Popen(command, env=self.env, stdout=output,
                                                         stderr=subprocess.STDOUT if output else None)
        return self

    def finished_required(self) -> tuple[str, int] | None:
        """(name, return code) of a required process that has exited, if any."""
        for spec in self.specs:
            process = self.processes.get(spec.name)
            if spec.required and process is not None and process.poll() is not None:
                return spec.name, process.returncode
        return None

    def stop(self, timeout: float = 10.0) -> None:
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            alive = [p for p in self.processes.values() if p.poll() is None]
            for process in alive:
                process.send_signal(sig)
            deadline = time.monotonic() + wait
            for process in alive:
                try:
                    process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for log in self._logs:
            log.close()

    def __enter__(self) -> ProcessGroup:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mds_launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults, replay = PerceptionLaunch(), ReplayLaunch()
    parser.add_argument("--camera-namespace", default=defaults.camera_namespace)
    parser.add_argument("--image-topic", default=defaults.image_topic)
    parser.add_argument("--camera-info-topic", default=defaults.camera_info_topic)
    parser.add_argument("--params-file", default=defaults.params_file, help="default: config/mds_node.yaml")
    parser.add_argument("--checkpoint", default=defaults.checkpoint)
    parser.add_argument("--device", default=defaults.device)
    parser.add_argument("--rviz", action="store_true", help="also start rviz2 with config/mds.rviz (if installed)")
    parser.add_argument("--online", action="store_true", help="also adapt the model on the stream (mds_trainer) "
                        "and hot-swap the adapted weights into the node")
    parser.add_argument("--online-output", default="", help="adapted weights (default: online.pt beside --checkpoint)")
    parser.add_argument("--bag", help="replay this rosbag2 into the node (mds_replay.launch.py)")
    parser.add_argument("--rate", type=float, default=replay.rate)
    parser.add_argument("--loop", type=int, default=replay.loop)
    parser.add_argument("--clock", action="store_true")
    return parser


def specs_from_args(args: argparse.Namespace) -> list[NodeSpec]:
    specs = PerceptionLaunch(camera_namespace=args.camera_namespace, image_topic=args.image_topic,
                             camera_info_topic=args.camera_info_topic, params_file=args.params_file,
                             checkpoint=args.checkpoint, device=args.device, rviz=args.rviz,
                             online=args.online, online_output=args.online_output).nodes()
    if args.bag:
        for spec in ReplayLaunch(bag=args.bag, rate=args.rate, loop=args.loop, clock=args.clock).nodes():
            spec.required = False  # the node keeps running after the bag ends, as with ros2 launch
            specs.append(spec)
    return specs


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.bag and not Path(args.bag).exists():
        print(f"mds_launch: error: bag {args.bag} does not exist", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM too, as ros2 launch does
    group = ProcessGroup(specs_from_args(args), env=dict(os.environ)).start()
    try:
        while (ended := group.finished_required()) is None:
            time.sleep(0.2)
        name, code = ended
        print(f"mds_launch: {name} exited with status {code}; stopping the others", file=sys.stderr)
        return code or 0
    except KeyboardInterrupt:
        return 0
    finally:
        group.stop()


if __name__ == "__main__":
    sys.exit(main())
