"""Training data from rosbag2 bags (MCAP or sqlite3), read with ``rosbags``; no ROS install needed.

* :mod:`~mds_core.data.rosbag.reader`: raw messages, with :mod:`~mds_core.data.rosbag.salvage`
  for truncated or corrupt files;
* :mod:`~mds_core.data.rosbag.topics`: which topics hold the images and the CameraInfo;
* :mod:`~mds_core.data.rosbag.decode`: Image / CompressedImage to RGB, CameraInfo;
* :mod:`~mds_core.data.rosbag.camera`: intrinsics at the training resolution, undistortion;
* :mod:`~mds_core.data.rosbag.prepare`: stamps, gaps, rate, stationary stretches -> sequences;
* :mod:`~mds_core.data.rosbag.cache`: decoded frames in RAM up to a budget, then on disk;
* :mod:`~mds_core.data.rosbag.sequence`: the ``FrameSequence`` that training reads;
* :mod:`~mds_core.data.rosbag.info`: ``mds bag-info``.
"""

from mds_core.data.rosbag.cache import FrameCache
from mds_core.data.rosbag.prepare import BagReport, load_bag_sequences, prepare_bag
from mds_core.data.rosbag.reader import BagReader
from mds_core.data.rosbag.sequence import BagSequence

__all__ = ["BagReader", "BagReport", "BagSequence", "FrameCache", "load_bag_sequences", "prepare_bag"]
