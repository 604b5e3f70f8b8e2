"""ros2 launch mds mds.launch.py checkpoint:=/path/model.pt [camera_namespace:=/camera] [rviz:=true] [online:=true]

The nodes and parameters are those of mds.launch.xml (read it for the full list of arguments, or
``--show-args``). This file adds RViz where it is installed and a non-zero exit status when a
required node fails. ``mds_launch mds.launch.xml ...`` does the same without ROS 2's launch tools.
"""

from launch import LaunchDescription
from mds_ros.tools.launch_actions import fail_when_a_required_node_fails, include_xml, optional_rviz


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *optional_rviz(),
        *include_xml("mds.launch.xml", required=("checkpoint",)),
        *fail_when_a_required_node_fails(),
    ])
