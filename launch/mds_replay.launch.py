"""ros2 launch mds mds_replay.launch.py bag:=/path/recording checkpoint:=/path/model.pt [rate:=1.0] [loop:=1]

The perception node (all of mds.launch.py's arguments) plus ``mds_replay`` playing a rosbag2
into it; the same node list as ``mds_launch --bag``.
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction

from mds_ros.launch_actions import declare_arguments, node_actions, resolve_arguments
from mds_ros.launch_spec import PerceptionLaunch, ReplayLaunch


def _nodes(context):
    return node_actions(resolve_arguments(PerceptionLaunch, context).nodes()
                        + resolve_arguments(ReplayLaunch, context).nodes())


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(PerceptionLaunch()),
        *declare_arguments(ReplayLaunch()),
        OpaqueFunction(function=_nodes),
    ])
