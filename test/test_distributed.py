"""Multi-process training through torchrun with the gloo backend on CPU (2 processes)."""

import os
import re
import subprocess
import sys
from pathlib import Path

from synthetic import make_sequences

from mds_core.checkpoint import load_checkpoint


def test_torchrun_two_processes_stay_in_sync(tmp_path):
    data = make_sequences(tmp_path / "data", count=1, frames=10)  # 8 targets
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(Path(__file__).parent / "ddp_worker.py"), str(data), str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = re.findall(r"RANK (\d) STEPS (\d+) CHECKSUM ([-+0-9.eE]+)", done.stdout)  # ranks may interleave
    lines = {rank: (int(steps), float(checksum)) for rank, steps, checksum in found}
    assert set(lines) == {"0", "1"}, done.stdout
    # 8 samples / (batch 2 x 2 processes) = 2 steps per epoch, 2 epochs
    assert lines["0"][0] == lines["1"][0] == 4
    assert lines["0"][1] == lines["1"][1], "DDP ranks diverged"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt").step == 4
