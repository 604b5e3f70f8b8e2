"""Settings that make a training step faster on CPU (measured in docs/performance.md).

* :func:`use_channels_last`: the networks' weights (hence their activations) in channels-last
  layout. oneDNN's CPU convolutions run about 15% faster; part of that is lost again because the
  fused Adam takes a strided path over such weights and some weight gradients come back contiguous
  and are copied: about 5% of a step at the ``cpu`` accuracy preset, net.
* :func:`keep_freed_memory`: glibc hands freed blocks of more than a few MB back to the system, so
  every step's large temporaries (activations, gradients, the loss's batched warps) page-fault
  anew: about 7% of a step at the ``cpu`` preset. Raising the thresholds keeps them in the process.
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
