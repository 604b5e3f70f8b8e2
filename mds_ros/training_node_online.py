"""``python -m mds_ros.training_node_online``: ``mds_online`` (perception + online training in one process)."""

import sys

from mds_ros.training_node import main_online

if __name__ == "__main__":
    sys.exit(main_online())
