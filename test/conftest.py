"""Settings shared by every test; helpers live in importable modules beside this file
(``synthetic``, ``ros_support``, ``kitti_fake``: the ``pythonpath`` setting in pyproject.toml)."""

from __future__ import annotations

import torch

torch.set_num_threads(max(1, torch.get_num_threads()))
