"""Training: the loss goes down, resume is bit-identical, checkpoints are safe and atomic."""

import os
import pickle

import pytest
import torch
from synthetic import make_sequences, photometric_before_and_after, tiny_config

from mds_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mds_core.data.factory import build_dataset
from mds_core.data.sample import collate_samples
from mds_core.training.loop import train


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_sequences(tmp_path_factory.mktemp("synth"), count=1, frames=6)


def test_short_training_run_lowers_the_loss_clearly(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path, components=2, learning_rate=1e-3)
    config.data.augmentation.enabled = False
    torch.manual_seed(0)
    dataset = build_dataset(config.data, config.model, training=True)
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    before, after = photometric_before_and_after(config, batch)
    assert after < 0.8 * before, (before, after)


def test_resume_continues_bit_identically(data_root, tmp_path):
    # 4 samples, batch 2 -> 2 steps per epoch; 4 steps cross an epoch boundary and the lr decay.
    full = tiny_config(data_root, tmp_path / "full", epochs=2, lr_decay_epochs=1)
    full.logging.checkpoint_every = 1
    full.logging.keep_checkpoints = 10
    result = train(full)
    assert result.steps == 4
    reference = load_checkpoint(result.checkpoint)

    for resume_step in (1, 2, 3):
        resumed_config = tiny_config(data_root, tmp_path / f"resumed{resume_step}", epochs=2, lr_decay_epochs=1)
        middle = tmp_path / "full" / "checkpoints" / f"step_{resume_step:07d}.pt"
        resumed = load_checkpoint(train(resumed_config, resume=middle).checkpoint)
        assert resumed.step == reference.step and resumed.epoch == reference.epoch
        for name, tensor in reference.model.items():
            assert torch.equal(tensor, resumed.model[name]), f"{name} differs after resuming at {resume_step}"
        exp_avg = reference.optimizer["state"][0]["exp_avg"]
        assert torch.equal(exp_avg, resumed.optimizer["state"][0]["exp_avg"])
        assert reference.scheduler == resumed.scheduler


def test_checkpoint_loading_is_safe_and_errors_are_clear(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path / "run", max_steps=1)
    path = train(config).checkpoint
    checkpoint = load_checkpoint(path)
    assert checkpoint.config.model.num_components == 2

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)

    class Payload:  # an arbitrary pickled object must never be executed/loaded
        def __reduce__(self):
            return (os.system, ("echo unsafe",))

    unsafe = tmp_path / "unsafe.pt"
    unsafe.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(CheckpointError):
        load_checkpoint(unsafe)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")

    other = tiny_config(data_root, tmp_path / "other", components=3, max_steps=1)
    with pytest.raises(CheckpointError, match="another architecture.*num_components"):
        train(other, init_from=path)


def test_interrupted_save_leaves_the_previous_checkpoint_intact(data_root, tmp_path, monkeypatch):
    config = tiny_config(data_root, tmp_path / "run", max_steps=1)
    path = train(config).checkpoint
    original = path.read_bytes()
    checkpoint = load_checkpoint(path)

    def failing_save(obj, handle, *args, **kwargs):
        handle.write(b"partial data")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, checkpoint)
    assert path.read_bytes() == original
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
