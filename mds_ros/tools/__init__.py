"""Stand-ins for ROS tools on machines without a ROS install (replay, recording, a launch runner)
and the ROS demo and benchmark built on them. The nodes themselves live one folder up."""
