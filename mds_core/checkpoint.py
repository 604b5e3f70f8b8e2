"""Checkpoints: atomic writes, safe loading (``weights_only``), exact resume.

A checkpoint is a plain dict of tensors, numbers, strings and lists -- no pickled classes --
so it loads with ``torch.load(weights_only=True)``. It carries the full :class:`TrainConfig`
(as plain data), the model, optimiser, scheduler and gradient-scaler states, the position in
training (step, epoch, batch within the epoch) and every random-number generator state.

Writes go to a temporary file in the same directory, are flushed to disk, then renamed over
the destination, so an interrupted save never leaves a truncated checkpoint behind.

Every checkpoint records the id of the run that wrote it (``run_id``: new for a fresh run, kept
when a run is resumed). :func:`latest_checkpoint` finds the newest complete checkpoint of a run's
folder, and :func:`resolve_resume` turns what ``--resume`` names (a file, a run's output folder or
``latest``) into one file. Every :class:`CheckpointError` is one line saying what is wrong with
which file and what to do.
"""

from __future__ import annotations

import logging
import os
import random
import re
import shutil
import tempfile
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mds_core.config import ConfigError, ModelConfig, TrainConfig, config_from_dict, config_to_dict

LOG = logging.getLogger(__name__)

FORMAT = "mds-checkpoint"
FORMAT_VERSION = 1
LAST = "last.pt"  # a run's current checkpoint, next to its periodic step_NNNNNNN.pt ones
PERIODIC = "step_*.pt"
LATEST = "latest"  # --resume latest: the newest checkpoint in the configured output_dir
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_PROTOCOL = b"\x80"  # first byte of a pickle of protocol 2 or later (torch's legacy format)


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or belongs to another architecture."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file."""

    config: TrainConfig
    model: dict[str, torch.Tensor]
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    rng: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str = ""  # the training run that wrote it ("" for checkpoints from before run ids)


def new_run_id() -> str:
    """A fresh, unique id for a new training run (not drawn from the seeded RNGs)."""
    return uuid.uuid4().hex


def capture_rng_state() -> dict[str, Any]:
    """Every global RNG the training loop touches, as weights-only-loadable data."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, checkpoint: Checkpoint) -> Path:
    """Atomically write ``checkpoint`` to ``path`` (creating parent directories)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_to_dict(checkpoint.config),
        "model": checkpoint.model,
        "step": checkpoint.step,
        "epoch": checkpoint.epoch,
        "batch_in_epoch": checkpoint.batch_in_epoch,
        "optimizer": checkpoint.optimizer,
        "scheduler": checkpoint.scheduler,
        "scaler": checkpoint.scaler,
        "rng": checkpoint.rng,
        "metrics": checkpoint.metrics,
        "run_id": checkpoint.run_id,
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def stale_temporaries(directory: str | Path) -> list[Path]:
    """Temporary files of checkpoint writes in ``directory`` (``.NAME.*.tmp``, from :func:`save_checkpoint`
    and :func:`publish_checkpoint`): left behind only by a writer that was killed before it could rename
    or delete them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(path for path in directory.glob(".*.tmp") if path.is_file())


def remove_stale_temporaries(directory: str | Path) -> int:
    """Delete what killed checkpoint writes left in ``directory`` (:func:`stale_temporaries`); returns the count.

    Only the one process that writes checkpoints into ``directory`` may call this, before it writes:
    a live writer's temporary file would be deleted too.
    """
    removed, size = 0, 0
    for path in stale_temporaries(directory):
        try:
            size += path.stat().st_size
            path.unlink()
            removed += 1
        except OSError as error:
            LOG.warning("cannot delete %s, left by an interrupted checkpoint write: %s", path, error.strerror or error)
    if removed:
        LOG.warning("deleted %d partial checkpoint file(s) (%.1f MB) left in %s by an interrupted run",
                    removed, size / 2**20, directory)
    return removed


def publish_checkpoint(source: str | Path, destination: str | Path) -> Path:
    """Atomically make ``destination`` hold the checkpoint ``source`` (both in one directory).

    A hard link where the file system allows one (no second copy on disk; checkpoint files are
    never modified in place, only replaced), otherwise a flushed copy; either is renamed over
    ``destination``, so a reader always finds the old or the new checkpoint complete.
    """
    source, destination = Path(source), Path(destination)
    temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copyfile(source, temporary)
            with open(temporary, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return destination


def _file_head(path: Path) -> bytes:
    """The first bytes of ``path`` (empty when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(8)
    except OSError:
        return b""


def _unreadable_reason(path: Path, error: BaseException) -> str:
    """One line: why ``torch.load`` could not read ``path``, and what to do."""
    if isinstance(error, OSError):
        return f"checkpoint {path} cannot be read: {error.strerror or error}"
    text = str(error)
    head = _file_head(path)
    unsafe = re.search(r"GLOBAL ([\w.]+)", text)
    if unsafe or "Unsupported class" in text:
        found = f" (found {unsafe.group(1)})" if unsafe else ""
        return (f"checkpoint {path} contains pickled Python objects; mds loads tensors and plain data only{found}: "
                f"use a checkpoint written by mds, or save plain tensors (e.g. a state_dict) instead of objects")
    if not head:
        return f"checkpoint {path} is empty, not a PyTorch checkpoint (an interrupted copy?): pick another file"
    if head.startswith(_ZIP_MAGIC):
        if "zip archive" in text or "central directory" in text:
            return (f"checkpoint {path} is truncated or corrupt (its zip archive cannot be read): "
                    f"pick another checkpoint, e.g. an earlier step_NNNNNNN.pt")
        return f"checkpoint {path} is a zip file but not a PyTorch checkpoint: pass a .pt file written by mds train"
    if head.startswith(_PICKLE_PROTOCOL):
        if isinstance(error, EOFError):
            return f"checkpoint {path} is truncated or corrupt: pick another checkpoint"
        return (f"checkpoint {path} is a plain Python pickle, not a PyTorch checkpoint "
                f"(mds loads tensors and plain data only): pass a .pt file written by mds train")
    return f"checkpoint {path} is not a PyTorch checkpoint: pass a .pt file written by mds train"


def _torch_load(path: Path, mmap: bool) -> Any:
    """``torch.load`` with ``weights_only``; every failure becomes a one-line :class:`CheckpointError`."""
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": we explain failures ourselves
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:
        raise CheckpointError(_unreadable_reason(path, error)) from error


def _with_older_defaults(config: object) -> object:
    """A checkpoint's config with the meaning it had when written: keys added since, whose default
    changes the model, get the value that reproduces the older model (checkpoints written before
    motion hypotheses existed used K independent motions, those written before the own-motion set the
    ego-scaled one)."""
    if not (isinstance(config, dict) and isinstance(config.get("model"), dict)):
        return config
    model = config["model"]
    if "motion_hypotheses" not in model:
        model = {**model, "motion_hypotheses": []}
    loss = config.get("loss")
    if "hypothesis_set" not in model:  # written before own-motion hypotheses were the default
        model = {**model, "hypothesis_set": "ego_scaled", "hypothesis_scene_rate": model.get("hypothesis_scene_rate", 0.0)}
        if isinstance(loss, dict):  # ... and before the crossing aids: a resumed run trains on as it began
            loss = {"motion_evidence_threshold": 0.0, "background_reprojection_weight": 0.0, **loss}
    if isinstance(loss, dict) and "standing_camera_weight" not in loss:  # written before the standing-camera term
        loss = {**loss, "standing_camera_weight": 0.0}
    return {**config, "model": model, **({"loss": loss} if isinstance(loss, dict) else {})}


def load_checkpoint(path: str | Path, mmap: bool = False) -> Checkpoint:
    """Read a checkpoint safely (no arbitrary unpickling) and validate its structure.

    ``mmap=True`` maps the tensors from the file instead of reading them (cheap when only the
    step, run id or config are needed). Errors are one-line :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    payload = _torch_load(path, mmap=mmap and _file_head(path).startswith(_ZIP_MAGIC))
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not an mds checkpoint (no '{FORMAT}' marker): "
                              f"pass a checkpoint written by mds train")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')}, "
            f"this mds reads version {FORMAT_VERSION}: use the mds version that wrote it"
        )
    try:
        config = config_from_dict(TrainConfig, _with_older_defaults(payload["config"]))
        config.validate()
    except (ConfigError, KeyError) as error:
        raise CheckpointError(f"{path} carries an invalid config ({error}); was it written by another mds version?") from error
    model = payload.get("model")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise CheckpointError(f"{path} has no model state")
    return Checkpoint(
        config=config,
        model=model,
        step=int(payload.get("step", 0)),
        epoch=int(payload.get("epoch", 0)),
        batch_in_epoch=int(payload.get("batch_in_epoch", 0)),
        optimizer=payload.get("optimizer"),
        scheduler=payload.get("scheduler"),
        scaler=payload.get("scaler"),
        rng=payload.get("rng") or {},
        metrics=payload.get("metrics") or {},
        run_id=str(payload.get("run_id") or ""),
    )


def checkpoint_folder(folder: str | Path) -> Path:
    """Where a run's checkpoints are: ``FOLDER/checkpoints`` when it exists, else ``FOLDER`` itself."""
    folder = Path(folder)
    return folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder


def checkpoint_files(directory: str | Path) -> list[Path]:
    """``last.pt`` and the periodic ``step_NNNNNNN.pt`` files in ``directory`` (those that exist)."""
    directory = Path(directory)
    files = [directory / LAST, *sorted(directory.glob(PERIODIC))]
    return [path for path in files if path.is_file()]


def readable_checkpoints(directory: str | Path) -> list[tuple[Path, Checkpoint]]:
    """Every complete checkpoint in ``directory`` (tensors mapped, not read); unreadable ones are logged."""
    found = []
    for path in checkpoint_files(directory):
        try:
            found.append((path, load_checkpoint(path, mmap=True)))
        except CheckpointError as error:
            LOG.warning("ignoring %s", error)
    return found


def latest_checkpoint(folder: str | Path) -> tuple[Path, Checkpoint]:
    """The newest complete checkpoint of the run in ``folder`` (its output folder or checkpoints folder).

    Newest = highest step; ``last.pt`` wins a tie with ``step_NNNNNNN.pt`` (at the end of an epoch it
    is the later state). Files that do not load (truncated, foreign) are skipped with a warning.
    """
    directory = checkpoint_folder(folder)
    candidates = checkpoint_files(directory)
    if not candidates:
        raise CheckpointError(f"{folder} holds no checkpoints (no {LAST} or step_NNNNNNN.pt in {directory}): "
                              f"pass a checkpoint file or the output folder of a run")
    readable = readable_checkpoints(directory)
    if not readable:
        raise CheckpointError(f"{folder} holds no complete checkpoint ({len(candidates)} file(s) could not be read, "
                              f"see the warnings above): pass a checkpoint file instead")
    return max(readable, key=lambda item: (item[1].step, item[0].name == LAST))


def resolve_resume(resume: str | Path, output_dir: str | Path) -> Path:
    """The checkpoint file ``--resume`` names, logging which one it picked for a folder.

    A file is taken as it is; a folder (a run's output folder, or its ``checkpoints`` folder)
    means its newest complete checkpoint (:func:`latest_checkpoint`); ``latest`` means the newest
    complete checkpoint in ``output_dir``. Anything else is returned unchanged (loading it reports
    that it does not exist).
    """
    path = Path(resume)
    if path.is_file():
        return path
    if str(resume) == LATEST:
        path = Path(output_dir)
        if not path.is_dir():
            raise CheckpointError(f"--resume {LATEST}: the output folder {path} does not exist, so there is no run "
                                  f"to resume there; set --output (or output_dir) to the run's folder")
    if not path.is_dir():
        return path
    found, checkpoint = latest_checkpoint(path)
    LOG.info("resuming from %s (step %d), the newest complete checkpoint in %s", found, checkpoint.step, path)
    return found


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], expected: ModelConfig,
                     found: ModelConfig, source: str) -> None:
    """Load weights, with a clear error when the checkpoint's architecture differs."""
    architecture = ("motion_model", "depth_encoder", "pose_mask_encoder", "num_components", "num_scales")
    differences = [
        f"{name}: checkpoint {getattr(found, name)!r} vs model {getattr(expected, name)!r}"
        for name in architecture
        if getattr(found, name) != getattr(expected, name)
    ]
    if differences:
        raise CheckpointError(f"{source} is a checkpoint of another architecture ({'; '.join(differences)})")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(f"{source} does not match the model: {_first_mismatch(error)}") from error
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{source} does not match the model: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def _first_mismatch(error: RuntimeError) -> str:
    """The first specific line of PyTorch's multi-line ``load_state_dict`` error, and how many there are."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    details = [line for line in lines if not line.startswith("Error(s) in loading state_dict")] or lines or ["?"]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return details[0].rstrip(".") + more


def write_untrained_checkpoint(path: str | Path, model: ModelConfig, seed: int = 0) -> Path:
    """A checkpoint of a freshly initialised model: what speed benchmarks (and plumbing tests)
    need when the weights do not matter. Loads like any trained checkpoint."""
    from mds_core.method.motion_models import create_model

    torch.manual_seed(seed)
    config = TrainConfig()
    config.model = model
    if model.motion_model == "scene_flow":
        config.data.source_offsets = [-1, 1]
    network = create_model(model)
    return save_checkpoint(path, Checkpoint(config=config, model={k: v.detach().cpu() for k, v in
                                                                  network.state_dict().items()}))
