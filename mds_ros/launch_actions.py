"""``launch``/``launch_ros`` actions from :mod:`mds_ros.launch_spec` (imported by launch/*.launch.py only;
it needs the ``launch`` packages of a ROS install)."""

from __future__ import annotations

from dataclasses import fields

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mds_ros.launch_spec import NodeSpec


def declare_arguments(defaults) -> list[DeclareLaunchArgument]:
    """One launch argument per field of a launch dataclass, with the same default."""
    declared = []
    for f in fields(defaults):
        value = getattr(defaults, f.name)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        declared.append(DeclareLaunchArgument(f.name, default_value=text))
    return declared


def resolve_arguments(cls, context):
    """The launch dataclass ``cls`` filled from the evaluated launch arguments."""
    values = {}
    for f in fields(cls):
        text = LaunchConfiguration(f.name).perform(context)
        default = getattr(cls(), f.name)
        if isinstance(default, bool):
            values[f.name] = text.lower() in ("true", "1", "yes", "on")
        else:
            values[f.name] = type(default)(text)
    return cls(**values)


def node_actions(specs: list[NodeSpec]) -> list[Node]:
    actions = []
    for spec in specs:
        parameters = [*spec.parameter_files, *([spec.parameters] if spec.parameters else [])]
        actions.append(Node(package=spec.package, executable=spec.executable, name=spec.name,
                            parameters=parameters, remappings=spec.remappings, arguments=spec.arguments,
                            output="screen"))
    return actions
