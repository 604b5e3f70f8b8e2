"""The package as users install it, not as the editable checkout the other tests import.

An editable install hides install bugs (its import hook finds what a plain install leaves out), so
these tests use an interpreter without it: a copy of the test virtualenv (hard links, so it costs
no disk) from which the editable package is removed. Into it go, in turn:

* the wheel (``pip install``, no ``-e``): every module imports, ``mds --help`` runs, the launch
  files, parameter files, RViz config, package.xml and the ament index marker land under
  ``share/``, and the installed node serves depth on a replayed bag;
* colcon builds of the checkout in fresh workspaces, plain and ``--symlink-install``: the
  executables under ``install/mds/lib/mds``, and ``lib/mds/mds_node`` (started by the installed
  ``mds_launch`` from ``install/setup.bash``'s environment, as on a robot) serves depth on a
  replayed bag;
* where ROS 2's ``launch`` packages are importable (a ROS install), ``ros2 launch`` itself runs
  the installed ``mds_replay.launch.py``; here they are not, and that test is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from ros_support import REPO_ROOT, Probe, RosProcess, ros_environment
from sensor_msgs.msg import Image

from mds_core.checkpoint import write_untrained_checkpoint
from mds_core.config import ModelConfig
from mds_core.tools.synth import SynthConfig, write_rosbag

pytestmark = [pytest.mark.ros, pytest.mark.slow]

DEPTH = "/mds_perception/depth/image"
# The ament prefixes of a ROS install, read before the tests' probes set the variable for themselves.
OUTER_AMENT_PREFIX_PATH = os.environ.get("AMENT_PREFIX_PATH", "")
SHARED = ["launch/mds.launch.xml", "launch/mds_replay.launch.xml", "launch/mds.launch.py",
          "launch/mds_replay.launch.py", "config/mds_node.yaml", "config/mds_trainer.yaml", "config/mds.rviz",
          "config/fastdds.xml", "package.xml"]


@pytest.fixture(scope="module")
def plain_python(tmp_path_factory) -> Iterator[Path]:
    """A copy of this virtualenv without the editable mds: its ``bin/python``. Hard links need the
    same file system: where the temporary directory is on another one, the copy goes beside the venv."""
    venv = tmp_path_factory.mktemp("install") / "venv"
    beside = Path(f"{sys.prefix}-install-test")
    if subprocess.run(["cp", "-al", sys.prefix, str(venv)], capture_output=True).returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        shutil.rmtree(beside, ignore_errors=True)
        subprocess.run(["cp", "-al", sys.prefix, str(beside)], check=True)
        venv = beside
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "mds"], check=True, capture_output=True)
    found = subprocess.run([str(python), "-c", "import mds_core"], cwd=venv, capture_output=True)
    assert found.returncode != 0, "the copied interpreter still finds the checkout"
    yield python
    shutil.rmtree(beside, ignore_errors=True)


@pytest.fixture(scope="module")
def model_and_bag(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    checkpoint = write_untrained_checkpoint(root / "untrained.pt", ModelConfig(
        width=96, height=64, depth_encoder="resnet18", pose_mask_encoder="resnet18", num_components=2))
    bag = write_rosbag(root / "bag", SynthConfig(width=96, height=64, num_frames=6, seed=4),
                       depth_topic="/camera/depth_gt")
    return checkpoint, bag


def source_tree(target: Path) -> Path:
    """The checkout's files as git sees them (tracked, and new ones not ignored), copied to ``target``:
    a build there cannot pick up stale build outputs of the checkout."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        if (REPO_ROOT / relative).is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / relative, target / relative)
    return target


def serves_depth(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
    """Run a launch of the replay launch file; depth must arrive, and Ctrl-C must end it with 0."""
    with Probe(ros_environment() | {"ROS_DOMAIN_ID": env["ROS_DOMAIN_ID"]}) as probe:
        probe.subscribe(DEPTH, Image)
        with RosProcess(command, env=env, log_path=log, cwd=cwd) as launch:
            probe.wait_for_messages(DEPTH, 2, timeout=120)
            assert launch.running, launch.log()
            assert launch.stop(sigint_timeout=60) == 0, launch.log()


def test_wheel_installs_everything_and_the_installed_node_serves_depth(plain_python, model_and_bag, tmp_path):
    dist, source = tmp_path / "dist", source_tree(tmp_path / "src")
    subprocess.run([str(plain_python), "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(dist), str(source)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = dist.glob("mds-*.whl")
    subprocess.run([str(plain_python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True, cwd=tmp_path)
    prefix = plain_python.parent.parent
    env = ros_environment() | {"AMENT_PREFIX_PATH": str(prefix), "PATH": f"{prefix / 'bin'}:{os.environ['PATH']}"}

    imported = subprocess.run([str(plain_python), "-c", (
        "import importlib, pkgutil, mds_core, mds_ros\n"
        "names = [m.name for p in (mds_core, mds_ros) for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.')]\n"
        "skip = {'mds_ros.tools.launch_actions'}  # needs ROS 2's launch packages\n"
        "[importlib.import_module(n) for n in names if n not in skip and not n.endswith('__main__')]\n"
        "assert 'mds_core.training.loop' in names, names\n"
        "print(len(names), mds_core.__file__)")], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr
    assert str(prefix) in imported.stdout  # the installed copy, not the checkout
    for relative in SHARED:
        assert (prefix / "share" / "mds" / relative).is_file(), relative
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "mds").is_file()
    assert subprocess.run([str(prefix / "bin" / "mds"), "--help"], capture_output=True, env=env).returncode == 0

    checkpoint, bag = model_and_bag
    serves_depth([str(prefix / "bin" / "mds_launch"), "mds_replay.launch.xml", f"bag:={bag}",
                  f"checkpoint:={checkpoint}", "device:=cpu", "loop:=0", "rate:=0.5"], env, tmp_path / "launch.log",
                 cwd=tmp_path)


def ament_prefix_path(*prefixes: Path) -> str:
    """``prefixes`` in front of the caller's own (a ROS install's, where there is one)."""
    return os.pathsep.join([*map(str, prefixes), *filter(None, OUTER_AMENT_PREFIX_PATH.split(os.pathsep))])


def colcon_build(python: Path, workspace: Path, *options: str) -> dict[str, str]:
    """Build the checkout in a fresh workspace with ``python``'s colcon; the environment that
    ``install/setup.bash`` gives a shell."""
    (workspace / "src").mkdir(parents=True)
    (workspace / "src" / "mds").symlink_to(REPO_ROOT)
    build = subprocess.run([str(python), "-c", "import sys; from colcon_core.command import main; sys.exit(main())",
                            "build", "--base-paths", "src", *options], cwd=workspace, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    errors = (workspace / "log" / "latest_build" / "mds" / "stderr.log").read_text()
    assert "Error" not in errors and "Traceback" not in errors, errors
    sourced = subprocess.run(["bash", "-c", "source install/setup.bash && env -0"], cwd=workspace,
                             capture_output=True, check=True)
    return dict(line.split("=", 1) for line in sourced.stdout.decode().split("\0") if "=" in line)


@pytest.mark.parametrize("options", [(), ("--symlink-install",)], ids=["plain", "symlink-install"])
def test_colcon_build_runs_the_installed_node_on_a_replayed_bag(plain_python, model_and_bag, tmp_path, options):
    if shutil.which("bash") is None:
        pytest.fail("bash is needed to source install/setup.bash")
    workspace = tmp_path / "ws"
    env = ros_environment(colcon_build(plain_python, workspace, *options))
    env["AMENT_PREFIX_PATH"] = ament_prefix_path(workspace / "install" / "mds", plain_python.parent.parent)
    lib = workspace / "install" / "mds" / "lib" / "mds"
    assert sorted(p.name for p in lib.iterdir()) == ["mds", "mds_launch", "mds_node", "mds_online", "mds_replay",
                                                      "mds_trainer"]
    for relative in SHARED:
        assert (workspace / "install" / "mds" / "share" / "mds" / relative).exists(), relative
    checkpoint, bag = model_and_bag
    serves_depth([str(lib / "mds_launch"), "mds_replay.launch.xml", f"bag:={bag}", f"checkpoint:={checkpoint}",
                  "device:=cpu", "loop:=0", "rate:=0.5", "--log-dir", str(tmp_path / "logs")], env,
                 tmp_path / "launch.log", cwd=tmp_path)
    node_log = (tmp_path / "logs" / "mds_perception.log").read_text()
    assert "Traceback" not in node_log
    assert "config/fastdds.xml (the package's" in node_log  # the middleware profile, found installed
    # what ran is the installed executable, found through the ament index as ros2 launch finds it
    assert f"starting mds_perception: {lib / 'mds_node'} " in (tmp_path / "launch.log").read_text()


@pytest.mark.parametrize("case", ["serves", "required node fails", "replayer fails"])
def test_ros2_launch_runs_the_installed_python_launch_file(plain_python, model_and_bag, tmp_path, case):
    """ros2 launch's own machinery (LaunchService) on the colcon install: needs a ROS install."""
    found = subprocess.run([str(plain_python), "-c", "import launch, launch_ros, launch_xml"], capture_output=True)
    if found.returncode != 0:
        pytest.skip("ROS 2's launch packages are not importable here (see README, 'What was tested where')")
    workspace = tmp_path / "ws"
    env = ros_environment(colcon_build(plain_python, workspace))
    env["AMENT_PREFIX_PATH"] = ament_prefix_path(workspace / "install" / "mds", plain_python.parent.parent)
    checkpoint, bag = model_and_bag
    if case == "required node fails":
        checkpoint = tmp_path / "missing.pt"
    if case == "replayer fails":
        bag = tmp_path / "wrong" / "path"
    command = [str(plain_python), "-c", (
        "import sys\n"
        "from launch import LaunchService\n"
        "from launch.actions import IncludeLaunchDescription\n"
        "from launch.launch_description_sources import AnyLaunchDescriptionSource\n"
        "from ament_index_python.packages import get_package_share_directory\n"
        "arguments = [a.split(':=', 1) for a in sys.argv[1:]]\n"
        "path = get_package_share_directory('mds') + '/launch/mds_replay.launch.py'\n"
        "service = LaunchService(argv=sys.argv[1:])\n"
        "service.include_launch_description(IncludeLaunchDescription(AnyLaunchDescriptionSource(path), "
        "launch_arguments=arguments))\n"
        "sys.exit(service.run())"),
        f"bag:={bag}", f"checkpoint:={checkpoint}", "device:=cpu", "loop:=0", "rate:=0.5", "rviz:=true"]
    if case == "serves":
        serves_depth(command, env, tmp_path / "launch.log", cwd=tmp_path)
        if shutil.which("rviz2") is None:
            assert "[WARNING] [launch]: rviz:=true but rviz2 is not installed" in (tmp_path / "launch.log").read_text()
        return
    with RosProcess(command, env=env, log_path=tmp_path / "launch.log", cwd=tmp_path) as launch:
        assert launch.wait(120) != 0, launch.log()
    failed = "mds_node" if case == "required node fails" else "mds_replay"
    assert f"{failed} exited with status 2" in launch.log()
    if case == "required node fails":
        assert launch.log().count("does not exist") == 1, launch.log()  # the reason once
