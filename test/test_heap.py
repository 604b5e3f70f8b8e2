"""The C heap settings of the perception node (glibc): freed memory is reused, and trimmed on request.

Each check runs in a fresh interpreter: the settings are process-wide.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc heap settings")

ALLOCATIONS_IN_A_THREAD = """
import resource, sys, threading
import numpy as np
from mds_core.inference.heap import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
result = {}
def frames():  # like the node's worker thread: the same large blocks allocated and freed again and again
    for _ in range(3):
        np.ones(12 << 20, dtype=np.float32).sum()
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(10):
        np.ones(12 << 20, dtype=np.float32).sum()
    result["faults"] = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
thread = threading.Thread(target=frames)
thread.start()
thread.join()
print(result["faults"])
"""

TRIM = """
import numpy as np
from mds_core.inference.heap import retain_freed_memory, trim_heap
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
assert retain_freed_memory()
blocks = [np.ones(16 << 20, dtype=np.float32) for _ in range(4)]  # 256 MiB
del blocks
kept = rss_mib()
trim_heap()
print(kept, rss_mib())
"""


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default = int(_run(ALLOCATIONS_IN_A_THREAD, "default"))
    retained = int(_run(ALLOCATIONS_IN_A_THREAD, "retain"))
    # ten 48 MiB blocks, above the most glibc keeps by default (32 MiB): each is mapped anew and faulted
    # in (page by page, or by 2 MiB with transparent huge pages); retained, they come back from the heap
    assert default >= 10 * 24
    assert retained < default / 10


def test_trim_returns_the_retained_memory():
    kept, trimmed = (float(v) for v in _run(TRIM).split())
    assert kept - trimmed > 200  # of the 256 MiB freed and kept in the heap
