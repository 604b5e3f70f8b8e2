"""Run one or more of the package's nodes in this process until Ctrl-C, with clean start-up errors."""

from __future__ import annotations

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

from mds_ros.middleware import use_package_profile
from mds_ros.parameters import StartupError


def spin_nodes(factories: list, args: list[str] | None = None) -> int:
    """Start the nodes made by ``factories`` in one process and spin them until Ctrl-C (or until a
    node shuts the context down). Returns the largest ``exit_code`` a node set (0 by default)."""
    profile = use_package_profile()
    rclpy.init(args=args)
    rclpy.logging.get_logger("mds").info(profile.describe())
    nodes = []
    try:
        for factory in factories:
            nodes.append(factory())
    except StartupError as error:
        rclpy.logging.get_logger("mds").fatal(f"{error}; exiting with status 2")  # once: rclpy logs to stderr
        for node in nodes:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # Ctrl-C shut the context down while a callback was publishing (a timer's status): that is the
        # shutdown under way, not a failure of the node
    finally:
        for node in nodes:
            node.shutdown()
        executor.shutdown()
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return max((int(getattr(node, "exit_code", 0)) for node in nodes), default=0)
