"""mds_core: MonoDepthSeg networks, geometry, losses, training, evaluation and data.

Imports nothing from ROS.
"""

__version__ = "0.1.0"
