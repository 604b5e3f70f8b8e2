"""A process that writes the online trainer's checkpoint over and over until it is killed.

``python checkpoint_writer.py SOURCE OUTPUT``: builds an :class:`~mds_core.training.online.OnlineTrainer`
from the checkpoint ``SOURCE`` and calls its ``save()`` (the atomic write the training node does every
``checkpoint_every`` steps) on ``OUTPUT`` in a loop, logging each completed write. Fault tests kill it
with SIGKILL in the middle of a write and check what a reader of ``OUTPUT`` sees.
"""

from __future__ import annotations

import logging
import sys

from mds_core.training.online import OnlineSettings, OnlineTrainer


def write_forever(source: str, output: str) -> None:
    """Save ``source``'s model to ``output`` with :meth:`OnlineTrainer.save`, again and again."""
    trainer = OnlineTrainer(source, output, OnlineSettings(batch_size=2), device="cpu")
    while True:
        trainer.save()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    write_forever(sys.argv[1], sys.argv[2])
