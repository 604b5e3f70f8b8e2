"""The ``mds`` command: end to end on generated data, and clear errors for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from synthetic import HEIGHT, WIDTH, make_sequences

MDS = [sys.executable, "-m", "mds_core.cli"]
TINY = ["--set", f"model.height={HEIGHT}", "--set", f"model.width={WIDTH}", "--set", "model.depth_encoder=resnet18",
        "--set", "model.pose_mask_encoder=resnet18", "--set", "model.num_components=3",
        "--set", "optim.batch_size=2", "--set", "logging.progress=false", "--device", "cpu"]


def mds(*args, check=True):
    done = subprocess.run([*MDS, *map(str, args)], capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_sequences(root / "data", count=1, frames=6)
    mds("train", "--data", data, "--output", root / "run", *TINY, "--set", "optim.max_steps=2")
    return root, data, root / "run" / "checkpoints" / "last.pt"


@pytest.mark.parametrize("command", ["train", "eval", "infer", "synth", "benchmark", "demo"])
def test_every_subcommand_has_help(command):
    assert "usage: mds" in mds(command, "--help").stdout


def test_train_eval_infer_end_to_end(trained, tmp_path):
    root, data, checkpoint = trained
    assert checkpoint.is_file()
    assert list((root / "run" / "panels").glob("*.png"))

    report_path = tmp_path / "report.json"
    out = mds("eval", "--checkpoint", checkpoint, "--data", data, "--output", report_path, "--quiet", "--device", "cpu")
    assert "| overall |" in out.stdout and "best F1" in out.stdout
    report = json.loads(report_path.read_text())
    assert report["depth"]["num_images"] == 6
    assert (tmp_path / "report.md").is_file()

    out_dir = tmp_path / "infer"
    mds("infer", "--checkpoint", checkpoint, "--input", data / "seq0", "--output", out_dir, "--quiet", "--device", "cpu")
    depth = np.load(out_dir / "depth" / "000001.npy")
    assert depth.shape == (HEIGHT, WIDTH) and np.isfinite(depth).all() and (depth > 0).all()
    masks = np.load(out_dir / "masks" / "000001.npy")
    assert masks.shape == (3, HEIGHT, WIDTH) and np.allclose(masks.sum(0), 1, atol=1e-4)
    assert not (out_dir / "masks" / "000000.npy").exists()  # first frame: no previous frame
    assert len(list((out_dir / "panels").glob("*.png"))) == 6
    transforms = json.loads((out_dir / "transforms.json").read_text())["frames"]
    assert np.array(transforms["000001"]).shape == (3, 4, 4)


def test_resume_through_the_command_line(trained, tmp_path):
    root, data, checkpoint = trained
    done = mds("train", "--resume", checkpoint, "--set", "optim.max_steps=3", "--set", f"output_dir={tmp_path}")
    assert "trained 3 steps" in done.stdout


def test_user_errors_are_one_clear_line(trained, tmp_path):
    root, data, checkpoint = trained
    cases = [
        (["train", "--data", tmp_path / "nowhere", *TINY], "does not exist"),
        (["train", "--data", data, "--set", "optim.batch_size=-1"], "optim.batch_size must be >= 1"),
        (["train", "--config", tmp_path / "missing.yaml"], "does not exist"),
        (["eval", "--checkpoint", tmp_path / "nope.pt", "--data", data], "does not exist"),
        (["infer", "--checkpoint", checkpoint, "--input", tmp_path, "--output", tmp_path / "o"], "no images/ directory"),
    ]
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases.append((["synth", blocker / "sub", "--frames", "3", "--no-progress"], "not a directory"))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00" * 100)
    cases.append((["eval", "--checkpoint", corrupt, "--data", data], "not a PyTorch checkpoint"))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(checkpoint.read_bytes()[:1000])
    cases.append((["infer", "--checkpoint", truncated, "--input", data / "seq0", "--output", tmp_path / "o"],
                  "truncated or corrupt"))
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "mds-checkpoint", "model": torch.nn.Linear(2, 2)}, pickled)
    cases.append((["train", "--resume", pickled],
                  "contains pickled Python objects; mds loads tensors and plain data only"))
    broken = tmp_path / "config.yaml"
    broken.write_text("seed: 1\ndevice: cpu\nmodel: {height: 64\noptim: {}\n")
    cases.append((["train", "--config", broken], f"{broken} line 3: unclosed flow mapping"))
    cases.append((["train", "--data", data, "--set", "model=[1"], "unclosed flow sequence"))
    cases.append((["train", "--resume", tmp_path], "holds no checkpoints"))
    for args, message in cases:
        done = mds(*args, check=False)
        assert done.returncode == 2, (args, done.stderr[-1500:])
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower() or line.startswith((" ", "\t"))]
        assert len(errors) == 1 and errors[0].startswith(f"mds {args[0]}: error: "), (args, done.stderr)


def test_scientific_notation_on_the_command_line(trained, tmp_path):
    root, data, checkpoint = trained
    config = tmp_path / "train.yaml"
    config.write_text("optim:\n  learning_rate: 5E-4\n  eps: 1e-7\n")
    mds("train", "--config", config, "--data", data, "--output", tmp_path / "run", *TINY,
        "--set", "optim.max_steps=1", "--set", "loss.smoothness_weight=2e-3")
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["config"]
    assert saved["optim"]["learning_rate"] == 5e-4 and saved["optim"]["eps"] == 1e-7
    assert saved["loss"]["smoothness_weight"] == 2e-3


def test_resume_from_a_run_folder_or_latest_and_no_silent_overwrite(trained, tmp_path):
    import shutil

    root, data, checkpoint = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)  # a copy: the fixture's run stays as it is for the other tests

    done = mds("train", "--resume", run, "--set", "optim.max_steps=3")
    assert f"trained 3 steps; checkpoint: {run / 'checkpoints' / 'last.pt'}" in done.stdout  # continued in the folder
    assert f"resuming from {run / 'checkpoints' / 'last.pt'} (step 2)" in done.stderr
    done = mds("train", "--resume", "latest", "--output", run, "--set", "optim.max_steps=4")
    assert "trained 4 steps" in done.stdout and "(step 3), the newest complete checkpoint" in done.stderr

    before = (run / "checkpoints" / "last.pt").read_bytes()
    done = mds("train", "--data", data, "--output", run, *TINY, "--set", "optim.max_steps=1", check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "already holds checkpoints of another run" in done.stderr and f"--resume {run}" in done.stderr
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_predictor_matches_the_model_run_directly(trained):
    from mds_core.data.sequence_folder import SequenceFolder
    from mds_core.inference.predictor import Predictor

    _, data, checkpoint = trained
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    sequence = SequenceFolder(data / "seq0")
    intrinsics, _ = sequence.intrinsics()
    prediction = predictor.predict(sequence.image(2), intrinsics, sequence.image(1))
    frames = torch.stack([predictor.prepare(sequence.image(i)).tensor[0] for i in (2, 1)])[None]
    with torch.no_grad():
        out = predictor.model(frames, [-1])
    assert np.allclose(prediction.depth, out.depth[0, 0].numpy(), atol=1e-5)
    assert np.allclose(prediction.masks, out.sources[0].motion.masks[0].numpy(), atol=1e-5)
    assert np.allclose(prediction.transforms, out.sources[0].component_transforms[0].numpy(), atol=1e-5)
    assert prediction.labels.dtype == np.uint8 and prediction.labels.max() < 3


def test_benchmark_measures_the_overridden_config():
    from mds_core.tools.benchmark import TrainStepBenchmark, run_train_step_benchmark

    aids = ["model.motion_hypotheses=[2,0]", "loss.assigned_reprojection_weight=0.5", "loss.mask_assignment_weight=0.1"]
    spec = TrainStepBenchmark(width=WIDTH, height=HEIGHT, num_components=3, batch_size=1, steps=1, warmup=0, device="cpu",
                              overrides=aids)
    result = run_train_step_benchmark(spec)
    assert result.config.model.motion_hypotheses == [2, 0] and result.config.loss.assigned_reprojection_weight == 0.5
    assert result.config.model.width == WIDTH and len(result.step_times) == 1
    # timed past the K=1 warm-up and the auto-masking start: the assignment terms are in the step
    assert result.step == max(result.config.decomposition.warmup_steps, result.config.loss.automask_start_step) > 0
    assert result.loss_terms["masks/assigned_reprojection"] > 0 and result.loss_terms["automask/fraction_kept"] < 1
    assert "overrides   " + " ".join(aids) in result.to_text()
    done = mds("benchmark", "--device", "cpu", "--set", "loss.no_such_weight=1", check=False)
    assert done.returncode == 2 and "unknown key 'loss.no_such_weight'" in done.stderr, done.stderr


def test_benchmark_times_the_steps_that_continue_a_trained_checkpoint(trained):
    from mds_core.checkpoint import load_checkpoint

    _, _, checkpoint = trained
    saved = load_checkpoint(checkpoint)
    out = mds("benchmark", "--checkpoint", checkpoint, "--device", "cpu", "--steps", "1", "--warmup", "0",
              "--batch-size", "2", "--keep-denormals").stdout
    model = saved.config.model
    assert f"train step  {model.width}x{model.height}  {model.depth_encoder}  K={model.num_components}  batch 2" in out
    assert f"timed as    training step {saved.step} " in out and f"checkpoint  {checkpoint}" in out
    assert "denormals   kept" in out
    done = mds("benchmark", "--checkpoint", checkpoint.parent / "missing.pt", "--device", "cpu", check=False)
    assert done.returncode != 0 and "missing.pt" in done.stderr
