"""Settings that make a training step faster on CPU (measured in docs/performance.md).

* :func:`use_channels_last`: the networks' weights (hence their activations) in channels-last
  layout, which oneDNN's CPU convolutions run faster (about 15% of the networks' time);
* :func:`keep_freed_memory`: glibc hands freed blocks of more than a few MB back to the system, so
  every step's large temporaries (activations, the loss's batched warps) page-fault anew; this
  cost about as much as the loss's arithmetic. Raising the thresholds keeps them in the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import torch
from torch import nn

LOG = logging.getLogger(__name__)

# mallopt parameters (malloc.h) and the largest mmap threshold glibc accepts on 64-bit systems
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MAX_MMAP_THRESHOLD = 32 * 2**20
_TRIM_THRESHOLD = 2**30


def use_channels_last(model: nn.Module) -> None:
    """Store the 4-D weights of ``model`` channels-last (in place)."""
    model.to(memory_format=torch.channels_last)


def keep_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MB, and up to 1 GB of free heap, in the process (glibc only).

    Returns whether the setting was applied (False on systems without glibc's ``mallopt``).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    applied = bool(mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    LOG.debug("glibc malloc thresholds raised: %s", applied)
    return applied
