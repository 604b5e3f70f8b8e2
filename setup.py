"""mds: self-supervised monocular depth and scene decomposition (MonoDepthSeg) for ROS 2.

One package, installable with pip (``pip install -e .[ros,onnx,dev]``) and buildable by colcon as
an ament_python package on a ROS 2 Jazzy install.
"""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "mds"
# colcon --symlink-install runs this file from its build directory (through a symlink): every path
# is taken relative to the source tree, never to the working directory.
HERE = Path(__file__).resolve().parent


def package_files(*patterns: str) -> list[str]:
    """Files of the source tree matching ``patterns``, as paths relative to it (for data_files)."""
    return sorted(str(p.relative_to(HERE)) for pattern in patterns for p in HERE.glob(pattern))


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Self-supervised monocular depth and scene decomposition (MonoDepthSeg) for ROS 2",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["mds_core", "mds_core.*", "mds_ros", "mds_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", package_files("launch/*.launch.py", "launch/*.launch.xml")),
        (f"share/{PACKAGE}/config", package_files("config/*.yaml", "config/*.rviz", "config/*.xml")),
    ],
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "numpy>=1.24",
        "opencv-python>=4.8",
        "pyyaml>=6",
        "tqdm>=4.60",
        "tensorboard>=2.14",
        "rosbags>=0.10",
        "setuptools",
    ],
    extras_require={
        "ros": [
            "ros-jazzy-rclpy[fastrtps]",
            "ros-jazzy-sensor-msgs",
            "ros-jazzy-geometry-msgs",
            "ros-jazzy-std-msgs",
            "ros-jazzy-diagnostic-msgs",
            "ros-jazzy-nav-msgs",
            "ros-jazzy-visualization-msgs",
            "ros-jazzy-lifecycle-msgs",
        ],
        "onnx": ["onnx>=1.17", "onnxruntime>=1.20", "onnxscript>=0.5"],
        # the same with onnxruntime built with OpenVINO (x86 CPUs; replaces onnxruntime: install one of the two)
        "openvino": ["onnx>=1.17", "onnxruntime-openvino>=1.20", "onnxscript>=0.5"],
        "dev": ["pytest>=8", "mcap>=1.1", "mcap-ros2-support>=0.5", "ruff>=0.6", "colcon-common-extensions>=0.3"],
    },
    entry_points={
        "console_scripts": [
            "mds = mds_core.cli:main",
            "mds_node = mds_ros.perception_node:main",
            "mds_replay = mds_ros.tools.replay:main",
            "mds_launch = mds_ros.tools.runner:main",
            "mds_trainer = mds_ros.training_node:main",
            "mds_online = mds_ros.training_node:main_online",
        ],
        "mds.commands": [
            "ros = mds_ros.tools.cli:register",
        ],
    },
    zip_safe=False,
)
