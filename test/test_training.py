"""Training: the loss goes down, resume is bit-identical, checkpoints are safe and atomic."""

import os
import pickle

import pytest
import torch
from synthetic import LOSS_DROP_LEARNING_RATE, make_sequences, photometric_before_and_after, tiny_config, use_published_objective

from mds_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mds_core.data.factory import build_dataset
from mds_core.data.sample import collate_samples
from mds_core.training.loop import train

pytestmark = pytest.mark.numerics  # run again under other CPU kernels in CI (docs/testing.md)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_sequences(tmp_path_factory.mktemp("synth"), count=1, frames=6)


def test_short_training_run_lowers_the_loss_clearly(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path, components=2, learning_rate=LOSS_DROP_LEARNING_RATE)
    config.data.augmentation.enabled = False
    use_published_objective(config)
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


def test_training_minimises_the_objective_it_is_given(data_root, tmp_path):
    from mds_core.method.losses import SelfSupervisedObjective

    class Counted(SelfSupervisedObjective):  # a ladder's oracle rung adds a term this way
        calls = 0

        def __call__(self, batch, output, **kwargs):
            Counted.calls += 1
            return super().__call__(batch, output, **kwargs)

    config = tiny_config(data_root, tmp_path / "run", max_steps=2)
    assert train(config, objective=Counted(config.loss, config.model)).steps == 2
    assert Counted.calls == 2


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


# ---- issue 17: one-line checkpoint errors, last.pt kept current, resume from a run folder ----


class _NotPlainData:  # a class a weights-only load must refuse
    pass


def _bad_checkpoint_files(directory, good):
    """(file, expected words) for files mds must refuse with a one-line reason."""
    cases = []
    pickled = directory / "pickled.pt"
    torch.save({"format": "mds-checkpoint", "extra": _NotPlainData()}, pickled)
    cases.append((pickled, "contains pickled Python objects; mds loads tensors and plain data only"))
    module = directory / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)
    cases.append((module, "contains pickled Python objects"))
    zeros = directory / "zeros.pt"
    zeros.write_bytes(b"\x00" * 100)
    cases.append((zeros, "not a PyTorch checkpoint"))
    text = directory / "notes.pt"
    text.write_text("hello world\n")
    cases.append((text, "not a PyTorch checkpoint"))
    empty = directory / "empty.pt"
    empty.write_bytes(b"")
    cases.append((empty, "empty"))
    raw_pickle = directory / "raw.pt"
    raw_pickle.write_bytes(pickle.dumps({"step": 1}))
    cases.append((raw_pickle, "not a PyTorch checkpoint"))
    truncated = directory / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases.append((truncated, "truncated or corrupt"))
    foreign = directory / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    cases.append((foreign, "not an mds checkpoint"))
    return cases


def test_checkpoint_errors_are_one_line_and_say_what_is_wrong(data_root, tmp_path):
    good = train(tiny_config(data_root, tmp_path / "run", max_steps=1)).checkpoint
    for path, words in _bad_checkpoint_files(tmp_path, good):
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert words in message, (path.name, message)
        assert "\n" not in message and str(path) in message, (path.name, message)
        assert "174812789" not in message and "weights_only" not in message, message


def test_a_shape_mismatch_is_one_line(data_root, tmp_path):
    from mds_core.checkpoint import load_model_state
    from mds_core.training.loop import build_model

    config = tiny_config(data_root, tmp_path)
    model = build_model(config)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    name = next(name for name, tensor in state.items() if tensor.dim() == 4)
    state[name] = torch.zeros(1, 1, 1, 1)
    with pytest.raises(CheckpointError, match="does not match the model") as caught:
        load_model_state(model, state, config.model, config.model, "x.pt")
    assert "\n" not in str(caught.value) and name in str(caught.value)


def _interrupt_after(monkeypatch, steps):
    """Make training stop with KeyboardInterrupt (as when killed) when step ``steps + 1`` starts."""
    from mds_core.training import loop

    real_step = loop.train_step
    calls = []

    def train_step(state, objective, batch):
        calls.append(state.step)
        if len(calls) > steps:
            raise KeyboardInterrupt
        return real_step(state, objective, batch)

    monkeypatch.setattr(loop, "train_step", train_step)


def test_last_pt_is_current_after_a_killed_run_and_resume_from_the_folder_is_exact(data_root, tmp_path, monkeypatch,
                                                                                     caplog):
    def config(name):
        run = tiny_config(data_root, tmp_path / name, epochs=2, lr_decay_epochs=1)
        run.logging.checkpoint_every = 1
        return run

    reference = load_checkpoint(train(config("full")).checkpoint)

    with monkeypatch.context() as patch:
        _interrupt_after(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            train(config("killed"))
    checkpoints = tmp_path / "killed" / "checkpoints"
    last = load_checkpoint(checkpoints / "last.pt")
    assert last.step == 3  # written at every periodic checkpoint, not only at the end
    assert (checkpoints / "last.pt").read_bytes() == (checkpoints / "step_0000003.pt").read_bytes()
    assert not [p for p in checkpoints.iterdir() if p.name.endswith(".tmp")]
    (checkpoints / "step_0000009.pt").write_bytes(b"\x00" * 64)  # not a complete checkpoint: skipped

    with caplog.at_level("INFO"):
        resumed = load_checkpoint(train(config("killed"), resume=tmp_path / "killed").checkpoint)
    assert f"{checkpoints / 'last.pt'} (step 3)" in caplog.text and "newest complete checkpoint" in caplog.text
    assert resumed.step == reference.step == 4 and resumed.run_id == last.run_id
    for name, tensor in reference.model.items():
        assert torch.equal(tensor, resumed.model[name]), name


def test_resume_latest_means_the_configured_output_folder(data_root, tmp_path, caplog):
    run = tiny_config(data_root, tmp_path / "run", epochs=2, lr_decay_epochs=1, max_steps=2)
    run.logging.checkpoint_every = 1
    train(run)
    run.optim.max_steps = 3
    with caplog.at_level("INFO"):
        assert train(run, resume="latest").steps == 3
    assert "step_0000002.pt (step 2)" in caplog.text or "last.pt (step 2)" in caplog.text
    with pytest.raises(CheckpointError, match="holds no checkpoints"):
        train(tiny_config(data_root, tmp_path / "empty"), resume=tmp_path)


def test_a_fresh_run_refuses_to_overwrite_another_runs_checkpoints(data_root, tmp_path):
    first = train(tiny_config(data_root, tmp_path / "run", max_steps=1)).checkpoint
    before = first.read_bytes()
    with pytest.raises(CheckpointError) as caught:
        train(tiny_config(data_root, tmp_path / "run", components=3, max_steps=1))
    message = str(caught.value)
    assert "\n" not in message and "another run" in message and str(tmp_path / "run" / "checkpoints") in message
    assert "--resume" in message and "--output" in message and "delete" in message
    assert first.read_bytes() == before

    # resuming another run's checkpoint into this folder is refused too ...
    other = train(tiny_config(data_root, tmp_path / "other", max_steps=1)).checkpoint
    with pytest.raises(CheckpointError, match="another run"):
        train(tiny_config(data_root, tmp_path / "run", max_steps=2), resume=other)
    # ... while continuing the same run in its own folder, or replacing on purpose, is not
    assert train(tiny_config(data_root, tmp_path / "run", max_steps=2), resume=first).steps == 2
    assert train(tiny_config(data_root, tmp_path / "run", max_steps=1), overwrite=True).steps == 1
    assert first.read_bytes() != before


def test_ground_truth_rung_loads_mirrored_depth_and_trains_only_the_pose_mask_network(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path, components=2, max_steps=2)
    config.model.depth_source = "ground_truth"
    config.data.augmentation.flip_probability = 1.0
    flipped = build_dataset(config.data, config.model, training=True)[0]
    config.data.augmentation.enabled = False
    plain = build_dataset(config.data, config.model, training=True)[0]
    assert plain.depth is not None and torch.equal(flipped.depth, torch.flip(plain.depth, dims=[-1]))
    config.data.augmentation.enabled = True
    result = train(config)
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    model = load_checkpoint(result.checkpoint).model
    assert model and not any(key.startswith("depth_net.") for key in model)


def test_warmup_switches_the_components_on_after_the_configured_steps(data_root, tmp_path):
    from mds_core.training.distributed import DistributedContext
    from mds_core.training.loop import apply_decomposition_schedule, build_training_state

    config = tiny_config(data_root, tmp_path, components=2)
    config.decomposition.warmup_steps = 3
    state = build_training_state(config, torch.device("cpu"), DistributedContext())
    seen = []
    for step in (0, 2, 3, 10):
        state.step = step
        apply_decomposition_schedule(state)
        seen.append(state.model.components_enabled)
    assert seen == [False, False, True, True]


def test_training_on_the_cpu_computes_subnormal_floats_as_zero():
    """Trained networks make subnormal floats, which x86 CPUs compute many times slower (docs/performance.md)."""
    from mds_core.config import ModelConfig, TrainConfig
    from mds_core.training.distributed import DistributedContext
    from mds_core.training.loop import build_training_state

    torch.set_flush_denormal(False)
    assert torch.tensor([1e-39]).item() > 0
    config = TrainConfig(model=ModelConfig(height=32, width=64, depth_encoder="resnet18", pose_mask_encoder="resnet18",
                                           num_components=1), device="cpu")
    try:
        build_training_state(config, torch.device("cpu"), DistributedContext())
        flushed = torch.tensor([1e-39]).item() == 0
        supported = torch.set_flush_denormal(True)  # x86's FTZ/DAZ; where the CPU has no such mode nothing changes
        assert flushed == supported
    finally:
        torch.set_flush_denormal(False)


def test_the_fused_adam_steps_like_the_default_adam():
    import copy

    from mds_core.config import OptimConfig
    from mds_core.training.schedule import build_optimizer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 3))
    reference, initial = copy.deepcopy(net), copy.deepcopy(net)
    config = OptimConfig()
    fused = build_optimizer(net.parameters(), config)
    plain = torch.optim.Adam(reference.parameters(), lr=config.learning_rate, betas=tuple(config.betas),
                             eps=config.eps, fused=False, foreach=False)
    assert fused.param_groups[0]["fused"]
    images = torch.rand(2, 3, 16, 16)
    for _ in range(20):
        for model, optimizer in ((net, fused), (reference, plain)):
            optimizer.zero_grad()
            model(images).square().mean().backward()
            optimizer.step()
    for p, q, start in zip(net.parameters(), reference.parameters(), initial.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-7) and not torch.allclose(p, start, rtol=0, atol=1e-4)


def test_adam_over_channels_last_weights_steps_like_adam_and_saves_the_same_state():
    import copy

    from mds_core.config import OptimConfig
    from mds_core.training.cpu import FlatViewAdam, use_channels_last
    from mds_core.training.schedule import build_optimizer

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 1), torch.nn.Conv2d(4, 1, 3))
    use_channels_last(net)
    reference = copy.deepcopy(net)  # the same layout, so the same convolution rounding
    config = OptimConfig()
    views = build_optimizer(net.parameters(), config)
    plain = torch.optim.Adam(reference.parameters(), lr=config.learning_rate, betas=tuple(config.betas),
                             eps=config.eps, fused=True)
    assert isinstance(views, FlatViewAdam) and len(views.views) == 2  # the two 3x3 weights; 1x1 is contiguous
    images = torch.rand(2, 3, 16, 16)

    def train(model, optimizer, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            model(images).square().mean().backward()
            optimizer.step()

    for model, optimizer in ((net, views), (reference, plain)):
        train(model, optimizer, 5)
    for p, q in zip(net.parameters(), reference.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-6)
    views.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    # the state dict is a plain Adam's (moments in the weights' shapes): it resumes either optimiser
    saved = views.state_dict()
    assert saved["state"][0]["exp_avg"].shape == net[0].weight.shape
    assert torch.allclose(saved["state"][0]["exp_avg"], plain.state_dict()["state"][0]["exp_avg"], atol=1e-9)
    resumed_net = copy.deepcopy(net)
    resumed = build_optimizer(resumed_net.parameters(), config)
    resumed.load_state_dict(copy.deepcopy(plain.state_dict()))
    train(resumed_net, resumed, 3)
    train(reference, plain, 3)
    for p, q in zip(resumed_net.parameters(), reference.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-6)


@pytest.mark.parametrize("motion_model", ["components", "scene_flow"])
def test_a_training_step_under_bf16_autocast_warps_with_fp32_poses(data_root, tmp_path, motion_model):
    """Mixed precision: the networks run in bf16 (CPU autocast here, as AMP does on a GPU), the poses
    enter the warp as fp32 transforms, and the loss stays close to the fp32 loss of the same step."""
    from mds_core.method.losses import SelfSupervisedObjective
    from mds_core.training.distributed import DistributedContext
    from mds_core.training.loop import Precision, build_training_state, train_step

    config = tiny_config(data_root, tmp_path, components=2)
    config.model.motion_model = motion_model
    config.data.augmentation.enabled = False
    dataset = build_dataset(config.data, config.model, training=True)
    batch = collate_samples([dataset[i] for i in range(2)])
    losses = {}
    for precision in (Precision(None, "cpu"), Precision(torch.bfloat16, "cpu")):
        torch.manual_seed(0)
        state = build_training_state(config, torch.device("cpu"), DistributedContext())
        state.precision = precision
        before = [p.detach().clone() for p in state.model.parameters()]
        loss, output = train_step(state, SelfSupervisedObjective(config.loss, config.model), batch)
        losses[precision.dtype] = float(loss.total.detach())
        transforms = [s.motion.transforms if motion_model == "components" else s.motion.ego for s in output.sources]
        assert all(t.dtype == torch.float32 for t in transforms)
        assert any(not torch.equal(p, q) for p, q in zip(before, state.model.parameters()))  # it trained
    if motion_model == "components":  # bf16 ran in the networks (their outputs are bf16) ...
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert state.model.pose_mask_net(batch.network_images[:, 1], batch.network_images[:, 0],
                                             output.disparities[0]).mask_logits.dtype == torch.bfloat16
    # ... and the loss of the same batch and weights is close to fp32's
    assert abs(losses[torch.bfloat16] - losses[None]) < 0.05 * losses[None], losses

