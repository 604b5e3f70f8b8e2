"""What the Python launch files add to the XML ones on a ROS install (needs ``launch``/``launch_ros``).

* :func:`include_xml`: include ``launch/<name>.xml`` with the required arguments passed through;
* :func:`optional_rviz`: RViz with ``config/mds.rviz`` when ``rviz:=true``; where rviz2 is not
  installed, a warning and nothing else (the other nodes still start, nothing is orphaned);
* :func:`fail_when_a_required_node_fails`: ``ros2 launch`` exits non-zero when a node marked
  ``on_exit="shutdown"`` or the replayer exits with an error (a ``Shutdown`` action alone would
  end the launch with status 0; a replayer that fails would leave an idle node running).

``mds_launch`` (:mod:`mds_ros.tools.runner`) does the same three things without ``launch``.
"""

from __future__ import annotations

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import AnyLaunchDescriptionSource
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from mds_ros.tools.launch_file import FAILURE_ENDS_LAUNCH, PACKAGE, declared_arguments


def include_xml(name: str, required: tuple[str, ...]) -> list:
    """Declare ``required`` (with the XML file's descriptions) and include ``launch/<name>`` with them.

    ``ros2 launch`` checks an include's required arguments against those passed to it, so the
    required ones are declared here (a missing one stops the launch before any node starts) and
    passed on; every other argument reaches the XML file as a global launch configuration."""
    path = f"{get_package_share_directory(PACKAGE)}/launch/{name}"
    descriptions = {arg.name: arg.description for arg in declared_arguments(path)}
    return [*(DeclareLaunchArgument(arg, description=descriptions.get(arg, "")) for arg in required),
            IncludeLaunchDescription(AnyLaunchDescriptionSource(path),
                                     launch_arguments={arg: LaunchConfiguration(arg) for arg in required}.items())]


def optional_rviz() -> list:
    """``rviz`` argument, and RViz when it is true and installed."""

    def start(context) -> list:
        try:
            get_package_share_directory("rviz2")
        except PackageNotFoundError:
            # a warning, as mds_launch gives (launch's LogInfo action has no other level)
            get_logger("launch").warning("rviz:=true but rviz2 is not installed: starting everything else without it")
            return []
        config = f"{get_package_share_directory(PACKAGE)}/config/mds.rviz"
        return [Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", config], output="screen")]

    return [DeclareLaunchArgument("rviz", default_value="false",
                                  description="Also start RViz with config/mds.rviz (skipped with a warning where "
                                              "rviz2 is not installed)"),
            OpaqueFunction(function=start, condition=IfCondition(LaunchConfiguration("rviz")))]


def fail_when_a_required_node_fails() -> list:
    """An exit handler that turns a required node's or the replayer's non-zero exit into a failed launch."""

    def check(event, context) -> None:
        executable = event.process_name.rsplit("-", 1)[0]
        if executable in FAILURE_ENDS_LAUNCH and event.returncode != 0 and not context.is_shutdown:
            raise RuntimeError(f"{executable} exited with status {event.returncode}; stopping the launch")

    return [RegisterEventHandler(OnProcessExit(on_exit=check))]
