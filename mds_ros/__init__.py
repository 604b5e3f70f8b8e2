"""ROS 2 adapters around :mod:`mds_core` (rclpy nodes)."""
