"""The C heap of a long-running inference process (glibc): keep freed memory for the next frame.

PyTorch frees a frame's activations when the frame is done. With glibc's defaults a large block
goes back to the kernel when it is freed (``munmap``, or ``madvise`` on a worker thread's arena),
and the next frame faults the same memory in again, page by page. In the perception node, whose
networks run in a worker thread, that was ~29,000 page faults per 640x192 frame, a third of the
frame's time on 2 CPU cores. :func:`retain_freed_memory` raises glibc's thresholds so freed
blocks stay in the heap and are reused; :func:`trim_heap` gives them back when asked (a lifecycle
cleanup). Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

LOG = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc has both
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory(limit_bytes: int = 1 << 30) -> bool:
    """Blocks up to ``limit_bytes`` come from the heap and stay there when freed (no unmapping, no
    trimming below that much free memory). True when glibc took the settings.

    The process keeps its peak working set (a node's is steady from its first frames on);
    :func:`trim_heap` releases it.
    """
    libc = _glibc()
    if libc is None:
        return False
    value = ctypes.c_int(min(int(limit_bytes), 2**31 - 1))
    accepted = bool(libc.mallopt(M_MMAP_THRESHOLD, value)) and bool(libc.mallopt(M_TRIM_THRESHOLD, value))
    if not accepted:
        LOG.warning("glibc refused the heap thresholds (mallopt): freed memory is returned to the system")
    return accepted


def trim_heap() -> None:
    """Return the heap's free memory to the system (``malloc_trim(0)``), whatever the thresholds."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
