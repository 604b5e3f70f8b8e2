"""Managed (lifecycle) nodes: what each ROS 2 lifecycle transition means for the package's nodes.

Both ``mds_node`` and ``mds_trainer`` are :class:`rclpy.lifecycle.LifecycleNode` s with the
standard states (``ros2 lifecycle set /mds_perception configure`` and so on):

============  ==========================================================================
state         the node
============  ==========================================================================
unconfigured  parameters declared, ``/diagnostics`` published, no model in memory
inactive      parameters validated and the checkpoint loaded (configure); nothing
              subscribed, nothing published but ``/diagnostics``
active        subscribed to the camera, inferring (or training) and publishing
finalized     threads stopped, ready to exit
============  ==========================================================================

configure validates the parameters together and loads the model: a refused value or a broken
checkpoint fails the transition with the reason (logged, in ``/diagnostics``' ``last_problem``),
the node stays unconfigured and can be configured again, e.g. after ``ros2 param set`` of the
checkpoint. Parameters that are fixed while the model runs may change only while unconfigured.
activate subscribes and starts the worker; deactivate unsubscribes, lets the frame in flight
finish and keeps the model; cleanup releases the model and its memory; shutdown (from any state,
also Ctrl-C) stops every thread.

``autostart`` (default true) configures and activates at start-up, as the launch files'
``autostart`` argument sets it; a failure then stops the process with status 2, as before
lifecycle states existed.
"""

from __future__ import annotations

import dataclasses
import gc

import torch
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from mds_core.inference.heap import trim_heap
from mds_ros.parameters import StartupError, declare_parameters, refusal, validate

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def release_memory() -> None:
    """Give freed model memory back: collect garbage, empty the CUDA cache, trim the C heap (glibc)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    trim_heap()


class ManagedNode(LifecycleNode):
    """A lifecycle node: subclasses say what configure, activate, deactivate and cleanup do
    (:meth:`configure`, :meth:`activate`, :meth:`deactivate`, :meth:`cleanup`, :meth:`shutdown`);
    this class keeps the state, validates parameters, gates parameter changes and autostarts."""

    parameters_class: type

    def __init__(self, node_name: str, **node_kwargs):
        super().__init__(node_name, **node_kwargs)
        self.lifecycle_state = "unconfigured"
        self.configure_problem = ""
        self._autostarting = False
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.settings = declare_parameters(self, self.parameters_class)

    # -- what subclasses do ------------------------------------------------------------------
    def configure(self) -> None:
        """Load what the node needs (the parameters are valid). Raises StartupError with the reason."""

    def activate(self) -> None:
        """Subscribe and start working (lifecycle publishers are enabled already)."""

    def deactivate(self) -> None:
        """Stop taking input and finish the work in flight (publishers are still enabled)."""

    def cleanup(self) -> None:
        """Drop what :meth:`configure` loaded."""

    def shutdown(self) -> None:
        """Stop every thread (any state; called again at process exit)."""

    def parameters_changed(self, changed: dict) -> None:
        """Accepted new values (already in :attr:`settings`)."""

    # -- the transitions -----------------------------------------------------------------------
    def autostart(self) -> None:
        """Configure and activate now when the ``autostart`` parameter says so.

        Raises:
            StartupError: a transition failed (the process should exit with status 2).
        """
        if not self.settings.autostart:
            self.get_logger().info("unconfigured, waiting for a lifecycle transition (autostart is false)")
            return
        self._autostarting = True  # the process reports a failure once, as it exits (spin_nodes)
        try:
            configured = self.trigger_configure() == SUCCESS
        finally:
            self._autostarting = False
        if not configured:
            raise StartupError(self.configure_problem)
        if self.trigger_activate() != SUCCESS:
            raise StartupError(f"activating failed: {self.configure_problem}")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        problems = validate(self.settings)
        if problems:
            return self._configure_failed("invalid parameters: " + "; ".join(problems))
        try:
            self.configure()
        except StartupError as error:
            self.cleanup()
            return self._configure_failed(str(error))
        self.configure_problem = ""
        self._enter("inactive")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # enables the lifecycle publishers
        self.activate()
        self._enter("active")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.deactivate()
        self._enter("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_cleanup(state)
        self.cleanup()
        release_memory()
        self._enter("unconfigured")
        return result

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.shutdown()
        self._enter("finalized")
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop, drop the model, and go back to unconfigured."""
        self.get_logger().error(f"a transition from {state.label} failed; back to unconfigured")
        self.shutdown()
        self.cleanup()
        self._enter("unconfigured")
        return SUCCESS

    def _configure_failed(self, reason: str) -> TransitionCallbackReturn:
        self.configure_problem = reason
        if not self._autostarting:
            self.get_logger().error(f"configure failed, still unconfigured: {reason}")
        self._enter("unconfigured")
        return FAILURE

    def _enter(self, state: str) -> None:
        self.lifecycle_state = state
        self.get_logger().info(f"lifecycle state: {state}")

    # -- parameters ----------------------------------------------------------------------------
    def _on_set_parameters(self, parameters: list) -> SetParametersResult:
        cls = self.parameters_class
        reason = refusal(cls, parameters)
        changed = {p.name: p.value for p in parameters if p.name in cls.names()}
        if not reason and hasattr(self, "settings"):  # not while declaring
            fixed = [name for name in changed if not cls.spec(name)["dynamic"] and changed[name] !=
                     getattr(self.settings, name)]
            if fixed and self.lifecycle_state != "unconfigured":
                reason = (f"{', '.join(fixed)} can change only while the node is unconfigured (it is "
                          f"{self.lifecycle_state}: deactivate and clean it up first)")
            elif self.lifecycle_state != "unconfigured":  # the values together (e.g. a mode and what it needs)
                reason = "; ".join(validate(dataclasses.replace(self.settings, **changed)))
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        if hasattr(self, "settings"):
            for name, value in changed.items():
                setattr(self.settings, name, value)
            self.parameters_changed(changed)
        return SetParametersResult(successful=True)
