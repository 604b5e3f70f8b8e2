"""``mds_launch``: run the package's launch files where ``ros2 launch`` is not installed.

It reads the same XML launch files as ``ros2 launch`` (:mod:`mds_ros.tools.launch_file`), starts
their nodes as child processes, forwards Ctrl-C and SIGTERM to them, and behaves like the Python
launch files on a ROS install::

    mds_launch mds.launch.xml checkpoint:=model.pt [camera_namespace:=/camera] [online:=true] [rviz:=true]
    mds_launch mds_replay.launch.xml bag:=recording.mcap checkpoint:=model.pt [rate:=1.0] [loop:=3]
    mds_launch mds.launch.xml --show-args

* a missing required argument is refused before anything starts (exit 2);
* when a required node (``on_exit="shutdown"``) exits, or the replayer fails, everything stops
  and ``mds_launch`` exits with that node's status;
* ``rviz:=true`` starts rviz2 with ``config/mds.rviz`` where it is installed, and otherwise warns
  and starts everything else.

``mds.launch.py`` / ``mds_replay.launch.py`` may be named instead of the XML files they include.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from mds_ros.tools.launch_file import (
    LaunchFileError,
    NodeSpec,
    declared_arguments,
    launch_file_path,
    load_launch,
    python_launch_equivalent,
    rviz_node,
)

LOG = logging.getLogger(__name__)


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
                LOG.warning("%s (package %s) is not installed here; not starting %s",
                            spec.executable, spec.package, spec.name)
                continue
            LOG.info("starting %s: %s", spec.name, shlex.join(command))
            output = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                output = open(self.log_dir / f"{spec.name}.log", "w")
                self._logs.append(output)
            self.processes[spec.name] = subprocess.Popen(command, env=self.env, stdout=output,
                                                         stderr=subprocess.STDOUT if output else None)
        return self

    def ended_launch(self) -> tuple[str, int] | None:
        """(name, return code) of a process whose exit ends the launch (:meth:`NodeSpec.ends_launch`), if any."""
        for spec in self.specs:
            process = self.processes.get(spec.name)
            if process is not None and process.poll() is not None and spec.ends_launch(process.returncode):
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
    parser.add_argument("launch_file", nargs="?", default="mds.launch.xml",
                        help="a launch file of the package (mds.launch.xml, mds_replay.launch.xml) or a path")
    parser.add_argument("arguments", nargs="*", metavar="NAME:=VALUE", help="launch arguments")
    parser.add_argument("--show-args", action="store_true", help="list the launch file's arguments and exit")
    parser.add_argument("--log-dir", type=Path, help="write each node's output to LOG_DIR/<node>.log")
    return parser


def parse_launch_arguments(items: list[str]) -> dict[str, str]:
    """``["a:=1", "b:=x"]`` -> ``{"a": "1", "b": "x"}``; ``LaunchFileError`` for malformed items."""
    arguments = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise LaunchFileError(f"launch arguments look like NAME:=VALUE, got {item!r}")
        arguments[name] = value
    return arguments


def plan(launch_file: str, arguments: dict[str, str]) -> list[NodeSpec]:
    """The nodes to start: the XML file's, plus RViz for ``rviz:=true`` where it is installed."""
    arguments = dict(arguments)
    rviz = arguments.pop("rviz", "false").strip().lower()
    if rviz not in ("true", "false", "1", "0"):
        raise LaunchFileError(f"rviz must be true or false, got {rviz!r}")
    path = launch_file_path(python_launch_equivalent(launch_file))
    unknown = set(arguments) - {a.name for a in declared_arguments(path)}
    if unknown:
        LOG.warning("%s declares no argument %s (see --show-args)", path.name, ", ".join(sorted(unknown)))
    specs = load_launch(path, arguments)
    if rviz in ("true", "1"):
        if shutil.which("rviz2") is None:
            LOG.warning("rviz:=true but rviz2 is not installed: starting everything else without it")
        else:
            specs.insert(0, rviz_node())
    return specs


def show_arguments(launch_file: str) -> str:
    lines = []
    for arg in declared_arguments(launch_file_path(python_launch_equivalent(launch_file))):
        default = "(required)" if arg.default is None else f"(default: {arg.default!r})"
        lines.append(f"    '{arg.name}':\n        {arg.description}\n        {default}")
    lines.append("    'rviz':\n        Also start RViz with config/mds.rviz (skipped with a warning where rviz2 "
                 "is not installed)\n        (default: 'false')")
    return "Arguments (pass arguments as '<name>:=<value>'):\n\n" + "\n\n".join(lines)


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[mds_launch] %(levelname)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.show_args:
            print(show_arguments(args.launch_file))
            return 0
        specs = plan(args.launch_file, parse_launch_arguments(args.arguments))
    except LaunchFileError as error:
        print(f"mds_launch: error: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # stop the children on SIGTERM too, as ros2 launch does
    group = ProcessGroup(specs, env=dict(os.environ), log_dir=args.log_dir).start()
    try:
        while (ended := group.ended_launch()) is None:
            time.sleep(0.2)
        name, code = ended
        LOG.info("%s exited with status %s; stopping the others", name, code)
        return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell says
    except KeyboardInterrupt:
        return 0
    finally:
        group.stop()


if __name__ == "__main__":
    sys.exit(main())
