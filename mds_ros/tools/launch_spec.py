"""What the launch files start, in one place, independent of the ``launch`` package.

``launch/mds.launch.py`` and ``launch/mds_replay.launch.py`` turn these :class:`NodeSpec` lists
into ``launch_ros`` actions on a ROS install; :mod:`mds_ros.tools.runner` starts the very same
specs as processes where ``ros2 launch`` is not available (this machine, the tests, the demo).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "mds"


def share_path(relative: str) -> Path:
    """A file of the package's share directory: the source tree's copy when running from a
    checkout or an editable install, else the installed one (ament index)."""
    source = Path(__file__).resolve().parents[2] / relative
    if source.exists():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE)) / relative


@dataclass
class NodeSpec:
    """One process: a ROS executable of this package (or another, e.g. rviz2)."""

    executable: str
    name: str
    module: str | None = None  # python -m entry for the runner; None for non-Python executables
    package: str = PACKAGE
    parameter_files: list[str] = field(default_factory=list)
    parameters: dict[str, object] = field(default_factory=dict)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    required: bool = True

    def ros_arguments(self) -> list[str]:
        """The ``--ros-args`` list equivalent to the launch description of this node."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        for path in self.parameter_files:
            args += ["--params-file", str(path)]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_parameter_text(value)}"]
        for old, new in self.remappings:
            args += ["-r", f"{old}:={new}"]
        return args

    def command(self, python: str) -> list[str] | None:
        """The command line for the runner, or None when the executable is not installed here."""
        if self.module is not None:
            return [python, "-m", self.module, *self.arguments, *self.ros_arguments()]
        found = shutil.which(self.executable)
        return [found, *self.arguments, *self.ros_arguments()] if found else None


def _parameter_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_parameter_text(v) for v in value) + "]"
    return str(value)


@dataclass
class PerceptionLaunch:
    """The launch arguments of ``mds.launch.py`` (same names, same defaults)."""

    camera_namespace: str = "/camera"
    image_topic: str = "image_raw"
    camera_info_topic: str = "camera_info"
    params_file: str = ""  # default: config/mds_node.yaml
    checkpoint: str = ""
    device: str = "auto"
    rviz: bool = False
    online: bool = False  # also adapt the model on the stream (mds_trainer) and hot-swap its weights
    online_output: str = ""  # default: online.pt beside the checkpoint

    def online_checkpoint(self) -> str:
        return self.online_output or str(Path(self.checkpoint).with_name("online.pt"))

    def nodes(self) -> list[NodeSpec]:
        namespace = "/" + self.camera_namespace.strip("/") if self.camera_namespace.strip("/") else ""
        parameters: dict[str, object] = {
            "image_topic": f"{namespace}/{self.image_topic}",
            "camera_info_topic": f"{namespace}/{self.camera_info_topic}",
            "device": self.device,
        }
        if self.checkpoint:
            parameters["checkpoint"] = self.checkpoint
        specs = [NodeSpec(executable="mds_node", name="mds_perception", module="mds_ros.perception_node",
                          parameter_files=[self.params_file or str(share_path("config/mds_node.yaml"))],
                          parameters=parameters)]
        if self.online:
            specs[0].parameters["watch_checkpoint"] = self.online_checkpoint()
            trainer = {**parameters, "output_checkpoint": self.online_checkpoint()}
            specs.append(NodeSpec(executable="mds_trainer", name="mds_trainer", module="mds_ros.training_node",
                                  parameter_files=[str(share_path("config/mds_trainer.yaml"))],
                                  parameters=trainer))
        if self.rviz:
            specs.append(NodeSpec(executable="rviz2", name="rviz2", package="rviz2", required=False,
                                  arguments=["-d", str(share_path("config/mds.rviz"))]))
        return specs


@dataclass
class ReplayLaunch:
    """The extra launch arguments of ``mds_replay.launch.py``: a bag replayed into the node."""

    bag: str = ""
    rate: float = 1.0
    loop: int = 1
    clock: bool = False

    def nodes(self) -> list[NodeSpec]:
        arguments = [self.bag, "--rate", str(self.rate), "--loop", str(self.loop), "--wait-for-subscribers", "1"]
        if self.clock:
            arguments.append("--clock")
        return [NodeSpec(executable="mds_replay", name="mds_replay", module="mds_ros.tools.replay", arguments=arguments)]
