"""Run under ``torchrun --nproc_per_node 2``: trains a tiny model with gloo DDP and prints a checksum."""

import os
import sys
from pathlib import Path

from synthetic import tiny_config

from mds_core.training.loop import train

data_root, output = Path(sys.argv[1]), Path(sys.argv[2])
result = train(tiny_config(data_root, output, epochs=2, lr_decay_epochs=1))
print(f"RANK {os.environ['RANK']} STEPS {result.steps} CHECKSUM {result.parameter_checksum!r}", flush=True)
