"""ros2 launch mds mds.launch.py checkpoint:=/path/model.pt [camera_namespace:=/camera] [rviz:=true]

Starts the perception node (and optionally RViz) from ``mds_ros.launch_spec.PerceptionLaunch``,
the same node list that ``mds_launch`` runs where the ROS launch tools are not installed.
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction

from mds_ros.launch_actions import declare_arguments, node_actions, resolve_arguments
from mds_ros.launch_spec import PerceptionLaunch


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(PerceptionLaunch()),
        OpaqueFunction(function=lambda context: node_actions(resolve_arguments(PerceptionLaunch, context).nodes())),
    ])
