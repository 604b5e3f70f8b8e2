"""The XML launch files of ``launch/``, read without ROS 2's ``launch`` packages.

``launch/mds.launch.xml`` and ``launch/mds_replay.launch.xml`` say which nodes start with which
parameters. ``ros2 launch`` runs them on a ROS install; where it is missing (pip-only machines,
CI, the tests, the demo) :func:`load_launch` reads the same files into :class:`NodeSpec` lists
that :mod:`mds_ros.tools.runner` starts as processes. So the two cannot drift apart.

The subset understood is the one these files use, with ``ros2 launch``'s meaning:

* ``<arg name default description>``: an argument without ``default`` is required;
* ``<let name value>``; ``if``/``unless`` conditions on ``let``, ``node`` and ``include``;
* ``<node pkg exec name namespace args on_exit>`` with ``<param name value>``, ``<param from>``
  and ``<remap from to>``; ``on_exit="shutdown"`` marks a node whose exit ends the launch;
* ``<include file>`` with ``<arg name value>`` children (launch configurations are global, as
  in ROS 2);
* substitutions ``$(var NAME)``, ``$(env NAME [DEFAULT])`` and ``$(find-pkg-share mds)``.

Anything else is refused with :class:`LaunchFileError` rather than silently ignored.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

PACKAGE = "mds"
#: Executables whose exit with an error ends the launch with an error, in ``ros2 launch`` and
#: ``mds_launch`` alike: the required nodes, and the replayer (a bag it cannot play leaves nothing to
#: do; a replay that ends normally leaves the node running).
FAILURE_ENDS_LAUNCH = ("mds_node", "mds_trainer", "mds_replay")
_SUBSTITUTION = re.compile(r"\$\(([a-z-]+)((?:\s+[^()\s]+)*)\s*\)")


class LaunchFileError(ValueError):
    """A launch file cannot be read, or its arguments are missing or malformed."""


def share_path(relative: str) -> Path:
    """A file of the package's share directory: the source tree when running from a checkout (an
    editable or ``--symlink-install`` install), else the installed one: found through the ament
    index (colcon, or ``AMENT_PREFIX_PATH``), or in ``<sys.prefix>/share/mds`` (a pip install)."""
    source = Path(__file__).resolve().parents[2]
    if (source / "package.xml").is_file():
        return source / relative
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE)) / relative
    except (ImportError, LookupError, OSError):  # no index with this package: a plain pip install
        installed = Path(sys.prefix) / "share" / PACKAGE
        if (installed / "package.xml").is_file():
            return installed / relative
        raise LaunchFileError(f"the package's share directory is not found: not in a checkout, not in the ament "
                              f"index (AMENT_PREFIX_PATH) and not in {installed}") from None


def launch_file_path(name: str | Path) -> Path:
    """``name`` itself if it is an existing file, else ``launch/<name>`` of the package."""
    path = Path(name)
    if path.is_file():
        return path
    candidate = share_path(f"launch/{path.name}")
    if candidate.is_file():
        return candidate
    available = sorted(p.name for p in share_path("launch").glob("*.launch.xml"))
    raise LaunchFileError(f"launch file {name} not found (the package has: {', '.join(available)})")


@dataclass
class NodeSpec:
    """One process of a launch: a ROS executable of this package (or another, e.g. rviz2)."""

    executable: str
    name: str
    package: str = PACKAGE
    namespace: str = ""
    parameter_files: list[str] = field(default_factory=list)
    parameters: dict[str, object] = field(default_factory=dict)  # name -> value (text as written: rcl parses it)
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    required: bool = False  # on_exit="shutdown": its exit ends the launch

    def ends_launch(self, return_code: int) -> bool:
        """Whether this node's exit with ``return_code`` ends the launch."""
        return self.required or (return_code != 0 and self.package == PACKAGE and self.executable in FAILURE_ENDS_LAUNCH)

    def ros_arguments(self) -> list[str]:
        """The ``--ros-args`` list equivalent to the launch description of this node."""
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            args += ["-r", f"__ns:={self.namespace}"]
        for path in self.parameter_files:
            args += ["--params-file", str(path)]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_parameter_text(value)}"]
        for old, new in self.remappings:
            args += ["-r", f"{old}:={new}"]
        return args

    def command(self, python: str) -> list[str] | None:
        """The command line that starts this node, or None when its executable is not installed.

        As ``ros2 launch`` does, an executable installed under ``lib/<package>`` of an ament
        prefix (a colcon install) is run as it is. Otherwise this package's executables run
        through their entry points with ``python`` (the interpreter that has the package)."""
        installed = _ament_executable(self.package, self.executable)
        if installed is not None:
            return [installed, *self.arguments, *self.ros_arguments()]
        if self.package == PACKAGE:
            target = _entry_points().get(self.executable)
            if target is None:
                return None
            module, function = target.split(":")
            code = f"import sys; from {module} import {function}; sys.exit({function}())"
            return [python, "-c", code, *self.arguments, *self.ros_arguments()]
        found = shutil.which(self.executable)
        return [found, *self.arguments, *self.ros_arguments()] if found else None


def _parameter_text(value: object) -> str:
    """``value`` as rcl reads a ``-p name:=value`` override (YAML): an empty string must be quoted."""
    if value == "":
        return "''"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_parameter_text(v) for v in value) + "]"
    return str(value)


def _ament_executable(package: str, executable: str) -> str | None:
    """``<prefix>/lib/<package>/<executable>`` of the ament prefix that has ``package``, if any."""
    try:
        from ament_index_python.packages import get_package_prefix
    except ImportError:
        return None
    try:
        path = Path(get_package_prefix(package)) / "lib" / package / executable
    except (LookupError, OSError):  # not in the index, or no AMENT_PREFIX_PATH at all
        return None
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def _entry_points() -> dict[str, str]:
    return {e.name: e.value for e in metadata.entry_points(group="console_scripts")
            if e.value.startswith(("mds_ros.", "mds_core."))}


@dataclass(frozen=True)
class LaunchArgument:
    """A declared ``<arg>``: ``default`` None means required."""

    name: str
    default: str | None
    description: str


def declared_arguments(name: str | Path) -> list[LaunchArgument]:
    """The arguments a launch file declares, its includes' included (as ``--show-args`` lists them)."""
    declared: dict[str, LaunchArgument] = {}

    def walk(path: Path) -> None:
        for element in _root(path):
            if element.tag == "arg":
                arg = LaunchArgument(element.get("name", ""), element.get("default"), element.get("description", ""))
                declared.setdefault(arg.name, arg)
            elif element.tag == "include":
                file = _substitute(element.get("file", ""), {}, lenient=True)
                if "$(" not in file:
                    walk(launch_file_path(file))

    walk(launch_file_path(name))
    return list(declared.values())


def load_launch(name: str | Path, arguments: Mapping[str, str] | None = None) -> list[NodeSpec]:
    """The nodes that ``ros2 launch`` would start for launch file ``name`` with ``arguments``.

    Raises:
        LaunchFileError: a required argument is missing, a condition is not a boolean, or the
            file uses launch features this reader does not know.
    """
    configurations = {key: str(value) for key, value in (arguments or {}).items()}
    nodes: list[NodeSpec] = []
    _run(launch_file_path(name), configurations, set(configurations), nodes)
    return nodes


def _root(path: Path) -> ET.Element:
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as error:
        raise LaunchFileError(f"cannot read launch file {path}: {error}") from error
    if root.tag != "launch":
        raise LaunchFileError(f"{path}: the root element is <{root.tag}>, not <launch>")
    return root


def _run(path: Path, configurations: dict[str, str], given: set[str], nodes: list[NodeSpec]) -> None:
    for element in _root(path):
        where = f"{path.name}: <{element.tag} name={element.get('name', '')!r}>"
        if element.tag == "arg":
            name = element.get("name", "")
            if name in given:
                continue
            default = element.get("default")
            if default is None:
                description = element.get("description", "")
                raise LaunchFileError(f"missing required argument {name}:=... ({description})" if description
                                      else f"missing required argument {name}:=...")
            configurations[name] = _substitute(default, configurations)
        elif not _condition(element, configurations, where):
            continue
        elif element.tag == "let":
            configurations[element.get("name", "")] = _substitute(element.get("value", ""), configurations)
        elif element.tag == "node":
            nodes.append(_node(element, configurations, where))
        elif element.tag == "include":
            for child in element:
                if child.tag != "arg" or child.get("value") is None:
                    raise LaunchFileError(f"{where}: only <arg name value> may appear inside <include>")
                configurations[child.get("name", "")] = _substitute(child.get("value", ""), configurations)
                given.add(child.get("name", ""))
            _run(launch_file_path(_substitute(element.get("file", ""), configurations)), configurations, given, nodes)
        else:
            raise LaunchFileError(f"{path.name}: <{element.tag}> is not supported here (see mds_ros.tools.launch_file)")


def _condition(element: ET.Element, configurations: dict[str, str], where: str) -> bool:
    for attribute, wanted in (("if", True), ("unless", False)):
        text = element.get(attribute)
        if text is None:
            continue
        value = _substitute(text, configurations).strip().lower()
        if value not in ("true", "false", "1", "0"):
            raise LaunchFileError(f"{where}: {attribute}={text!r} is {value!r}, expected true or false")
        if (value in ("true", "1")) != wanted:
            return False
    return True


def _node(element: ET.Element, configurations: dict[str, str], where: str) -> NodeSpec:
    unknown = set(element.attrib) - {"pkg", "exec", "name", "namespace", "args", "on_exit", "output", "if", "unless"}
    if unknown:
        raise LaunchFileError(f"{where}: unsupported attributes {sorted(unknown)}")
    on_exit = element.get("on_exit")
    if on_exit not in (None, "shutdown"):
        raise LaunchFileError(f"{where}: on_exit must be 'shutdown', got {on_exit!r}")
    spec = NodeSpec(
        executable=_substitute(element.get("exec", ""), configurations),
        name=_substitute(element.get("name", ""), configurations),
        package=_substitute(element.get("pkg", ""), configurations),
        namespace=_substitute(element.get("namespace", ""), configurations),
        arguments=shlex.split(_substitute(element.get("args", ""), configurations)),
        required=on_exit == "shutdown",
    )
    for child in element:
        if child.tag == "param" and child.get("from") is not None:
            spec.parameter_files.append(_substitute(child.get("from", ""), configurations))
        elif child.tag == "param" and child.get("name") and child.get("value") is not None:
            spec.parameters[child.get("name", "")] = _substitute(child.get("value", ""), configurations)
        elif child.tag == "remap":
            spec.remappings.append((_substitute(child.get("from", ""), configurations),
                                    _substitute(child.get("to", ""), configurations)))
        else:
            raise LaunchFileError(f"{where}: unsupported child <{child.tag}>")
    return spec


def _substitute(text: str, configurations: Mapping[str, str], lenient: bool = False) -> str:
    """Resolve ``$(var X)``, ``$(env X [DEFAULT])`` and ``$(find-pkg-share mds)`` in ``text``."""

    def replace(match: re.Match[str]) -> str:
        kind, words = match.group(1), match.group(2).split()
        if kind == "var" and len(words) == 1:
            if words[0] in configurations:
                return configurations[words[0]]
            if lenient:
                return match.group(0)
            raise LaunchFileError(f"launch configuration {words[0]!r} is not set (used in {text!r})")
        if kind == "env" and len(words) in (1, 2):
            value = os.environ.get(words[0], words[1] if len(words) == 2 else None)
            if value is None:
                raise LaunchFileError(f"environment variable {words[0]} is not set (used in {text!r})")
            return value
        if kind == "find-pkg-share" and words == [PACKAGE]:
            return str(share_path(""))
        raise LaunchFileError(f"unsupported substitution {match.group(0)!r}")

    return _SUBSTITUTION.sub(replace, text)


def rviz_node(config: str | None = None) -> NodeSpec:
    """RViz with the package's display configuration (not required: closing it ends nothing)."""
    return NodeSpec(executable="rviz2", name="rviz2", package="rviz2",
                    arguments=["-d", config or str(share_path("config/mds.rviz"))])


def python_launch_equivalent(name: str) -> str:
    """``mds.launch.py`` -> ``mds.launch.xml``: the Python launch files include the XML ones."""
    return name[: -len(".py")] + ".xml" if name.endswith(".launch.py") else name


if __name__ == "__main__":  # print the nodes of a launch file: python -m mds_ros.tools.launch_file FILE a:=b
    for spec in load_launch(sys.argv[1], dict(a.split(":=", 1) for a in sys.argv[2:])):
        print(spec.executable, " ".join(spec.ros_arguments()))
