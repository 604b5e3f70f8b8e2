"""ros2 launch mds mds_replay.launch.py bag:=/path/recording checkpoint:=/path/model.pt [rate:=1.0] [loop:=1] [rviz:=true]

mds.launch.py with mds_replay playing a rosbag2 into the node: the nodes and parameters are those
of mds_replay.launch.xml. ``mds_launch mds_replay.launch.xml ...`` does the same without ROS 2's
launch tools.
"""

from launch import LaunchDescription
from mds_ros.tools.launch_actions import fail_when_a_required_node_fails, include_xml, optional_rviz


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *optional_rviz(),
        *include_xml("mds_replay.launch.xml", required=("bag", "checkpoint")),
        *fail_when_a_required_node_fails(),
    ])
