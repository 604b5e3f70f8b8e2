"""The middleware settings the package's nodes start with: its Fast DDS profile (``config/fastdds.xml``).

One frame of the perception node's outputs is larger than Fast DDS's default shared-memory segment
(512 KB): messages that find no room there are lost, and reliable delivery repairs them only at the
writer's next heartbeat (every 3 s by default), holding back every later message of that topic until
then. Subscribers on the same machine got odometry, labels and markers seconds late, and lost some.
The package's profile gives each node a 16 MB segment and a 100 ms heartbeat. A node loads it in
its own process, before ROS starts, unless Fast DDS is already configured otherwise (a profile
file named in the environment, or the default one in the working directory) or another middleware
is selected.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path

#: Environment variables Fast DDS takes a profile file's name from (older releases only the second).
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
#: Profile files Fast DDS loads from the working directory by itself.
WORKING_DIRECTORY_PROFILES = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
FAST_DDS = ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")
PACKAGE_PROFILE = "config/fastdds.xml"
#: Fast DDS's shared-memory segment without a profile that sets one.
DEFAULT_SEGMENT_BYTES = 512 * 1024


@dataclass(frozen=True)
class MiddlewareProfile:
    """Which Fast DDS profile this process runs with, and why (for the start-up log)."""

    path: Path | None  # the profile file in effect, None: Fast DDS's defaults or another middleware
    reason: str

    def describe(self) -> str:
        return f"middleware profile: {self.path if self.path else 'none'} ({self.reason})"


def use_package_profile(environ: MutableMapping[str, str] | None = None,
                        working_directory: Path | None = None) -> MiddlewareProfile:
    """Point Fast DDS at ``config/fastdds.xml`` in ``environ`` (``os.environ``: this process and those it
    starts), unless it is configured already or not in use. Call before ``rclpy.init``: Fast DDS reads
    the variable when it creates the process's participant."""
    from mds_ros.tools.launch_file import LaunchFileError, share_path

    environ = os.environ if environ is None else environ
    if not uses_fast_dds(environ):
        return MiddlewareProfile(None, f"RMW_IMPLEMENTATION={environ['RMW_IMPLEMENTATION']}, not Fast DDS")
    for variable in PROFILE_VARIABLES:
        if environ.get(variable):
            return MiddlewareProfile(Path(environ[variable]), f"{variable} set")
    directory = Path.cwd() if working_directory is None else working_directory
    for name in WORKING_DIRECTORY_PROFILES:
        if (directory / name).is_file():
            return MiddlewareProfile(directory / name, "Fast DDS's default profile in the working directory")
    try:
        profile = share_path(PACKAGE_PROFILE)
    except LaunchFileError as error:
        return MiddlewareProfile(None, f"the package's profile is not found: {error}")
    if not profile.is_file():
        return MiddlewareProfile(None, f"the package's profile {profile} is missing")
    for variable in PROFILE_VARIABLES:
        environ[variable] = str(profile)
    return MiddlewareProfile(profile, f"the package's: {shared_memory_segment_bytes(environ) / 2**20:g} MB shared "
                                      "memory, 100 ms heartbeat")


def uses_fast_dds(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ROS runs on Fast DDS here (``RMW_IMPLEMENTATION``, unset: Jazzy's default, Fast DDS)."""
    environ = os.environ if environ is None else environ
    return (environ.get("RMW_IMPLEMENTATION") or FAST_DDS[0]) in FAST_DDS


def shared_memory_segment_bytes(environ: Mapping[str, str] | None = None) -> int:
    """The shared-memory segment this process's messages get: the ``segment_size`` of the first SHM
    transport in the profile file the environment names, else Fast DDS's default (also for a file that
    cannot be read: Fast DDS then falls back to its defaults too)."""
    environ = os.environ if environ is None else environ
    path = next((environ[v] for v in PROFILE_VARIABLES if environ.get(v)), None)
    if path is None:
        return DEFAULT_SEGMENT_BYTES
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError):
        return DEFAULT_SEGMENT_BYTES
    for descriptor in root.iter():
        if not descriptor.tag.endswith("transport_descriptor"):
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in descriptor}
        if fields.get("type") == "SHM" and fields.get("segment_size", "").isdigit():
            return int(fields["segment_size"])
    return DEFAULT_SEGMENT_BYTES
