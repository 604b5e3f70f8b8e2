"""Drive a lifecycle node through its services: ``mds ros-lifecycle NODE TRANSITION``.

What ``ros2 lifecycle get|set`` does on a ROS install, for machines without the ros2 CLI: calls
``<node>/get_state`` and ``<node>/change_state`` (``lifecycle_msgs``) and prints the state.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

TRANSITIONS = ("configure", "activate", "deactivate", "cleanup", "shutdown")


class LifecycleError(RuntimeError):
    """A lifecycle service did not answer, or refused the transition."""


class LifecycleClient:
    """The lifecycle services of node ``target`` (e.g. ``/mds_perception``), called from ``node``, which
    something else spins (an executor thread)."""

    def __init__(self, node: Any, target: str):
        self.target = target.rstrip("/")
        self._get = node.create_client(GetState, f"{self.target}/get_state")
        self._change = node.create_client(ChangeState, f"{self.target}/change_state")

    def _call(self, client: Any, request: Any, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        if not client.wait_for_service(timeout_sec=timeout):
            raise LifecycleError(f"{client.srv_name} did not appear within {timeout:g} s: is {self.target} running "
                                 f"and a lifecycle node?")
        future = client.call_async(request)
        while not future.done():
            if time.monotonic() > deadline:
                raise LifecycleError(f"{client.srv_name} did not answer within {timeout:g} s")
            time.sleep(0.01)
        return future.result()

    def state(self, timeout: float = 10.0) -> str:
        """The node's current state label (unconfigured, inactive, active, finalized)."""
        return self._call(self._get, GetState.Request(), timeout).current_state.label

    def change(self, transition: str, timeout: float = 60.0) -> bool:
        """Request ``transition`` (one of :data:`TRANSITIONS`); True when the node made it."""
        if transition not in TRANSITIONS:
            raise ValueError(f"transition must be one of {', '.join(TRANSITIONS)}, got {transition!r}")
        request = ChangeState.Request(transition=Transition(label=transition))
        return bool(self._call(self._change, request, timeout).success)


def run(target: str, transition: str, timeout: float) -> int:
    """The command: print the state after ``transition`` (or the state, for ``get``); 1 when refused."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("mds_lifecycle_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    done = threading.Event()

    def spin() -> None:
        while not done.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        client = LifecycleClient(node, target)
        if transition == "get":
            print(client.state(timeout))
            return 0
        made = client.change(transition, timeout)
        state = client.state(timeout)
        print(f"{transition}: {'done' if made else 'refused (see the node log and /diagnostics)'}; state {state}")
        return 0 if made else 1
    finally:
        done.set()
        spinner.join()
        executor.shutdown(timeout_sec=1)
        node.destroy_node()
        context.try_shutdown()
