"""Device selection with a CPU fallback that says what it did."""

from __future__ import annotations

import logging

import torch

LOG = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; an unavailable CUDA request falls back to CPU.

    Raises ``ValueError`` for a string that is not a device name.
    """
    name = (name or "auto").strip().lower()
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        LOG.info("device auto -> %s", device)
        return device
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"invalid device {name!r}: use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            LOG.warning("device %s requested but CUDA is not available: falling back to cpu", name)
            return torch.device("cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            LOG.warning("device %s does not exist (%d GPUs): using cuda:0", name, torch.cuda.device_count())
            return torch.device("cuda:0")
    elif device.type not in ("cpu", "mps"):
        raise ValueError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    return device
