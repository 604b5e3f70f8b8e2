"""Issue 12: fault tests beyond the node -- killed training, killed checkpoint writes, damaged bags.

* ``mds train`` killed with SIGKILL at random points (fixed seed) and resumed each time ends with
  weights bit-identical to an uninterrupted run; after every kill each checkpoint in the folder loads.
* The online trainer's checkpoint write killed part-way: a perception node process watching the file
  never sees a partial file and keeps publishing with the weights of the last complete one.
* Randomly damaged bags (bit flips, truncation, corrupt chunks or pages, wrong ``metadata.yaml``)
  through ``mds bag-info`` and ``mds train --bag``: a result or a one-line error every time, never a
  traceback, never a hang past a time limit, bounded memory.

Every case is drawn from a fixed seed; failure messages name the seed and the case.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from damaged_bags import damaged_bags, write_base_bags
from ros_support import wait_until
from synthetic import make_sequences, tiny_config

from mds_core.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    readable_checkpoints,
    save_checkpoint,
    stale_temporaries,
    write_untrained_checkpoint,
)
from mds_core.config import ModelConfig, config_to_dict

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TEST_DIR = Path(__file__).resolve().parent

# ---- killed training
KILL_SEED = 1212
KILL_KINDS = ("saving", "training", "startup", "saving", "training")  # what each kill waits for (see KillPoint)
KILL_MAX_DELAY_S = {"startup": 6.0, "training": 2.0, "saving": 0.6}  # then a random delay up to this
RUN_TIME_LIMIT_S = 300.0

# ---- killed checkpoint writer
WRITER_SEED = 1213
WRITER_ROUNDS = (0, 1, 0)  # complete writes before the write that is killed, per round

# ---- damaged bags
DAMAGE_SEED = 1214
BAG_INFO_CASES = 1000  # ~20 ms each in one driver process
BAG_INFO_TIME_LIMIT_S = 300.0  # the whole driver; one case alone may take damaged_bags.CASE_TIME_LIMIT
BAG_INFO_MEMORY_GROWTH_MIB = 256  # over the driver's peak after an intact bag
TRAIN_DAMAGE_SEED = 1215
TRAIN_CASES = 5  # one per kind of damage
TRAIN_TIME_LIMIT_S = 180.0
TRAIN_MEMORY_LIMIT_MIB = 3072
TINY_TRAINING = ["--set", "model.height=64", "--set", "model.width=96", "--set", "model.depth_encoder=resnet18",
                 "--set", "model.pose_mask_encoder=resnet18", "--set", "model.num_components=2",
                 "--set", "optim.batch_size=2", "--set", "optim.max_steps=2", "--set", "logging.checkpoint_every=1000",
                 "--set", "logging.progress=false", "--set", "logging.tensorboard=false", "--device", "cpu"]


# ----------------------------------------------------------------------------- processes
def child_env() -> dict[str, str]:
    """The environment of child processes: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def mds(*args: str) -> list[str]:
    return [sys.executable, "-m", "mds_core.cli", *args]


@dataclass
class Finished:
    """How a child process ended; ``code`` None: it was killed at its time limit."""

    code: int | None
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mib: float


def run_limited(command: list[str], time_limit: float) -> Finished:
    """Run ``command`` to its end or ``time_limit`` seconds (then kill its process group); with its peak memory."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=child_env(),
                                   cwd=REPO, start_new_session=True)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > time_limit:
                os.killpg(process.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(process.pid, 0)
                timed_out = True
                break
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Finished(None if timed_out else process.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), time.monotonic() - started, usage.ru_maxrss / 1024)


def outcome_problem(command: str, code: int | None, stdout: str, stderr: str, escaped: str = "") -> str | None:
    """What is wrong with how ``mds COMMAND`` ended on a damaged bag, or None when it is a result or a one-line error.

    Allowed: exit 0 with a result, bag-info's exit 1 (a bag is unusable) with its report, or exit 2 with
    exactly one ``mds COMMAND: error: ...`` line, the last one on stderr. Never a traceback.
    """
    if code is None:
        return "no result within the time limit (hung?)"
    if escaped or "Traceback (most recent call last)" in stderr:
        return "traceback: " + (escaped or stderr)[-1500:]
    allowed = (0, 1, 2) if command == "bag-info" else (0, 2)
    if code not in allowed:
        return f"exit status {code}; stderr: {stderr[-800:]}"
    errors = [line for line in stderr.splitlines() if line.startswith(f"mds {command}: error: ")]
    if code == 2:
        lines = stderr.rstrip("\n").splitlines()
        if len(errors) != 1 or lines[-1] != errors[0]:
            return f"exit 2 without exactly one error line at the end of stderr: {stderr[-800:]!r}"
        return None
    if errors:
        return f"exit {code} with an error line: {errors}"
    expected = "usable for training:" if command == "bag-info" else "trained 2 steps"
    if expected not in stdout:
        return f"exit {code} without {expected!r} on stdout: {stdout[-800:]!r}"
    return None


# ----------------------------------------------------------------------------- killed training
@pytest.fixture(scope="module")
def training_config(tmp_path_factory) -> Path:
    """A tiny run as a config file: 4 samples, 2 steps per epoch, 2 epochs (an epoch boundary and an lr
    decay), a checkpoint at every step."""
    root = tmp_path_factory.mktemp("killed_training")
    config = tiny_config(make_sequences(root / "data", count=1, frames=6), root / "unused", epochs=2,
                         lr_decay_epochs=1)
    config.logging.checkpoint_every = 1
    config.logging.keep_checkpoints = 2
    path = root / "config.json"
    path.write_text(json.dumps(config_to_dict(config)))
    return path


def checkpoint_folder_problems(folder: Path) -> list[str]:
    """Files in a run's checkpoint folder that are neither a complete checkpoint nor a checkpoint write's
    temporary file (``.NAME.*.tmp``, what a killed write leaves; the next run deletes them)."""
    problems = []
    temporaries = set(stale_temporaries(folder))
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path in temporaries:
            continue
        if path.name != "last.pt" and not re.fullmatch(r"step_\d{7}\.pt", path.name):
            problems.append(f"unexpected file {path.name}")
            continue
        try:
            load_checkpoint(path, mmap=True)
        except CheckpointError as error:
            problems.append(f"{path.name} does not load: {error}")
    return problems


@dataclass(frozen=True)
class KillPoint:
    """Where a run is killed: ``delay`` s after it reaches ``kind`` at training step ``step``.

    ``startup``: the process started; ``training``: step ``step`` began (the run logged that it trains,
    and step ``step - 1``'s checkpoint, if any, was written by this process); ``saving``: the write of
    step ``step``'s checkpoint began (of ``last.pt`` when the run has no step left to train).
    """

    kind: str
    step: int
    delay: float

    def __str__(self) -> str:
        return f"{self.kind} step {self.step} + {self.delay:.2f} s"


def draw_kill_point(rng: random.Random, kind: str, done: int, total: int) -> KillPoint:
    """A random point of ``kind`` in a run that resumes after ``done`` of ``total`` steps."""
    return KillPoint(kind, rng.randint(min(done + 1, total), total), rng.uniform(0.0, KILL_MAX_DELAY_S[kind]))


def reached(point: KillPoint, log: Path, checkpoints: Path, before: set[str], done: int) -> bool:
    """Whether a run started with the files ``before`` in ``checkpoints`` has reached ``point``."""
    new = {p.name for p in checkpoints.iterdir()} - before if checkpoints.is_dir() else set()
    if point.kind == "startup":
        return True
    if point.kind == "saving":
        name = "last.pt" if point.step <= done else f"step_{point.step:07d}.pt"
        return any(n.startswith(f".{name}.") and n.endswith(".tmp") for n in new)
    started = "training on " in log.read_text(errors="replace")
    return started and (point.step <= done + 1 or f"step_{point.step - 1:07d}.pt" in new)


def kill_at(command: list[str], point: KillPoint, log: Path, checkpoints: Path, done: int) -> str:
    """Start ``command`` (a run resuming after ``done`` steps) and SIGKILL it at ``point``; returns what happened."""
    before = {p.name for p in checkpoints.iterdir()} if checkpoints.is_dir() else set()
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=child_env(), cwd=REPO, start_new_session=True)
    try:
        interval = 0.005 if point.kind == "saving" else 0.05
        wait_until(lambda: process.poll() is not None or reached(point, log, checkpoints, before, done),
                   RUN_TIME_LIMIT_S, interval=interval, message=f"the run never reached {point}:\n{log.read_text()}")
        if process.poll() is None:
            time.sleep(point.delay)  # the random point itself, not a synchronisation
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
            left = {p.name for p in stale_temporaries(checkpoints)} - before
            return "killed" + (" during a checkpoint write" if left else "")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
    assert process.returncode == 0, f"the run failed by itself ({process.returncode}):\n{log.read_text()}"
    return "finished before the kill"


def train_or_resume(config: Path, run: Path) -> tuple[list[str], int]:
    """The ``mds train`` arguments that continue the run in ``run`` (a fresh start when it has no complete
    checkpoint yet), and the steps it has done."""
    found = readable_checkpoints(run / "checkpoints") if (run / "checkpoints").is_dir() else []
    if not found:
        return ["train", "--config", str(config), "--output", str(run)], 0
    return ["train", "--resume", str(run)], max(checkpoint.step for _, checkpoint in found)


def assert_same_training_state(reference: Checkpoint, resumed: Checkpoint, context: str) -> None:
    assert resumed.step == reference.step and resumed.epoch == reference.epoch, context
    assert reference.model.keys() == resumed.model.keys(), context
    for name, tensor in reference.model.items():
        assert torch.equal(tensor, resumed.model[name]), f"{context}: weight {name} differs"
    for index, state in reference.optimizer["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(resumed.optimizer["state"][index][key])), \
                f"{context}: optimizer state {index}.{key} differs"
    assert reference.scheduler == resumed.scheduler, context


def test_mds_train_killed_at_random_points_resumes_to_bit_identical_weights(training_config, tmp_path):
    reference = run_limited(mds("train", "--config", str(training_config), "--output", str(tmp_path / "reference")),
                            RUN_TIME_LIMIT_S)
    assert reference.code == 0, reference.stderr[-3000:]
    total = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt", mmap=True).step

    run = tmp_path / "killed"
    checkpoints = run / "checkpoints"
    rng = random.Random(KILL_SEED)
    history: list[str] = []
    outcomes: list[str] = []
    for index, kind in enumerate(KILL_KINDS):
        args, done = train_or_resume(training_config, run)
        point = draw_kill_point(rng, kind, done, total)
        outcome = kill_at(mds(*args), point, tmp_path / f"run{index}.log", checkpoints, done)
        outcomes.append(outcome)
        history.append(f"kill {index + 1} (after step {done}, at {point}): {outcome}")
        problems = checkpoint_folder_problems(checkpoints)
        assert not problems, f"seed {KILL_SEED}, " + " | ".join(history) + f": {problems}"
    context = f"seed {KILL_SEED}, " + " | ".join(history)
    print(context)  # shown with -rP or on failure: where the kills landed
    assert sum(outcome.startswith("killed") for outcome in outcomes) >= 3, context

    args, _ = train_or_resume(training_config, run)
    final = run_limited(mds(*args), RUN_TIME_LIMIT_S)
    assert final.code == 0, f"{context}: the last run failed: {final.stderr[-3000:]}"
    assert not stale_temporaries(checkpoints), f"{context}: partial files left: {stale_temporaries(checkpoints)}"
    assert_same_training_state(load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt"),
                               load_checkpoint(checkpoints / "last.pt"), context)


# ----------------------------------------------------------------------------- killed checkpoint writer
NODE = "/mds_perception"
CAMERA_W, CAMERA_H = 96, 64


def write_version(path: Path, seed: int, step: int) -> Path:
    """An untrained checkpoint whose weights depend on ``seed``, marked with ``step`` (the node reports it)."""
    write_untrained_checkpoint(path, ModelConfig(width=CAMERA_W, height=CAMERA_H, depth_encoder="resnet18",
                                                 pose_mask_encoder="resnet18", num_components=2), seed=seed)
    checkpoint = load_checkpoint(path)
    checkpoint.step = step
    return save_checkpoint(path, checkpoint)


def camera_messages(stamp: float, rgb: np.ndarray, intrinsics: np.ndarray):
    from sensor_msgs.msg import CameraInfo, Image

    image, info = Image(), CameraInfo()
    for message in (image, info):
        message.header.stamp.sec, message.header.stamp.nanosec = int(stamp), int(round(stamp % 1 * 1e9))
        message.header.frame_id = "cam"
        message.height, message.width = rgb.shape[:2]
    image.encoding, image.step, image.data = "rgb8", rgb.shape[1] * 3, rgb.tobytes()
    info.k = intrinsics.flatten().tolist()
    return image, info


def kill_during_write(writer, folder: Path, size: int, complete_writes: int, fraction: float) -> None:
    """SIGKILL ``writer`` once its write number ``complete_writes + 1`` has reached ``fraction`` of ``size`` bytes."""
    old = {p.name for p in stale_temporaries(folder)}
    seen: list[str] = []

    def in_the_write() -> bool:
        if not writer.running:
            raise AssertionError(f"the writer exited ({writer.returncode}):\n{writer.log()}")
        for path in stale_temporaries(folder):
            if path.name in old:
                continue
            if path.name not in seen:
                seen.append(path.name)
            try:
                big_enough = path.stat().st_size >= fraction * size
            except FileNotFoundError:  # renamed in the meantime
                continue
            if len(seen) > complete_writes and path.name == seen[complete_writes] and big_enough:
                return True
        return False

    wait_until(in_the_write, 120, interval=0.002, message=f"write {complete_writes + 1} never reached {fraction:.2f}")
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(30)


@pytest.mark.ros
def test_online_trainer_killed_while_writing_never_shows_the_node_a_partial_checkpoint(tmp_path):
    pytest.importorskip("rclpy")
    from diagnostic_msgs.msg import DiagnosticArray
    from ros_support import Probe, RosProcess, ros_environment
    from sensor_msgs.msg import CameraInfo, Image

    from mds_core.inference.predictor import Predictor
    from mds_ros.tools.launch_file import load_launch

    versions = {0: write_version(tmp_path / "start.pt", seed=0, step=0)}
    for round_index in range(len(WRITER_ROUNDS)):
        step = 100 * (round_index + 1)
        versions[step] = write_version(tmp_path / f"version{step}.pt", seed=round_index + 1, step=step)
    watched = tmp_path / "watched" / "online.pt"
    watched.parent.mkdir()
    rgb = np.random.default_rng(3).integers(0, 255, (CAMERA_H, CAMERA_W, 3), dtype=np.uint8)
    intrinsics = np.array([[80.0, 0, CAMERA_W / 2], [0, 80.0, CAMERA_H / 2], [0, 0, 1]])
    depth = {step: Predictor.from_checkpoint(path, device="cpu").predict(rgb, intrinsics).depth
             for step, path in versions.items()}
    assert not np.allclose(depth[0], depth[100], rtol=1e-3), "the versions must give different outputs"

    spec = load_launch("mds.launch.xml", {"checkpoint": str(versions[0]), "device": "cpu"})[0]
    spec.parameters.update(watch_checkpoint=str(watched), checkpoint_poll_period=0.1, diagnostics_period=0.1)
    env = ros_environment(child_env())
    rng = random.Random(WRITER_SEED)
    history: list[str] = []
    with RosProcess(spec.command(sys.executable), env=env, log_path=tmp_path / "node.log") as node, \
            Probe(env) as probe:
        probe.subscribe(f"{NODE}/depth/image", Image)
        probe.subscribe("/diagnostics", DiagnosticArray)
        images, infos = probe.publisher("/camera/image_raw", Image), probe.publisher("/camera/camera_info", CameraInfo)
        probe.wait_for_subscribers("/camera/image_raw", 1, timeout=90)
        stop = threading.Event()

        def camera() -> None:  # a steady 10 Hz stream of the same picture
            index = 0
            while not stop.wait(0.1):
                image, info = camera_messages(100.0 + 0.1 * index, rgb, intrinsics)
                infos.publish(info)
                images.publish(image)
                index += 1

        def diagnostics() -> dict[str, str]:
            messages = [m for m in probe.messages("/diagnostics") if m.status and m.status[0].name.startswith("mds_p")]
            return {kv.key: kv.value for kv in messages[-1].status[0].values} if messages else {}

        def serves(step: int) -> bool:
            outputs = probe.messages(f"{NODE}/depth/image")
            if not outputs or not diagnostics().get("model", "").endswith(f"(step {step})"):
                return False
            published = np.frombuffer(bytes(outputs[-1].data), np.float32).reshape(CAMERA_H, CAMERA_W)
            return np.allclose(published, depth[step], rtol=1e-4, atol=1e-5)

        thread = threading.Thread(target=camera, daemon=True)
        thread.start()
        try:
            serving = 0
            wait_until(lambda: serves(serving), 90, message=f"the node never served the start weights:\n{node.log()}")
            for round_index, complete_writes in enumerate(WRITER_ROUNDS):
                step = 100 * (round_index + 1)
                fraction = rng.uniform(0.05, 0.95)
                writer = RosProcess([sys.executable, str(TEST_DIR / "checkpoint_writer.py"), str(versions[step]),
                                     str(watched)], env=env, log_path=tmp_path / f"writer{round_index}.log").start()
                try:
                    kill_during_write(writer, watched.parent, versions[step].stat().st_size, complete_writes, fraction)
                finally:
                    writer.stop()
                expected = step if complete_writes else serving
                found = load_checkpoint(watched).step if watched.exists() else 0
                history.append(f"round {round_index + 1}: killed write {complete_writes + 1} at {fraction:.0%}, "
                               f"file holds step {found if watched.exists() else '(none)'}")
                context = f"seed {WRITER_SEED}, " + " | ".join(history)
                assert found == expected, f"{context}: expected step {expected}"
                received = len(probe.messages("/diagnostics"))
                polled = lambda received=received: len(probe.messages("/diagnostics")) >= received + 5
                wait_until(polled, 30, message=f"{context}: no diagnostics")  # >= 5 checkpoint polls since the kill
                wait_until(lambda expected=expected: serves(expected), 60,
                           message=f"{context}: the node does not serve step {expected} "
                                   f"(diagnostics {diagnostics()}):\n{node.log()[-3000:]}")
                assert diagnostics().get("checkpoints_refused") == "0", f"{context}: {diagnostics()}"
                serving = expected
        finally:
            stop.set()
            thread.join()
        assert node.running, node.log()
    assert "Traceback" not in node.log(), node.log()


# ----------------------------------------------------------------------------- damaged bags
@pytest.fixture(scope="module")
def base_bags(tmp_path_factory) -> dict[str, Path]:
    return write_base_bags(tmp_path_factory.mktemp("base_bags"))


def read_driver_results(path: Path) -> tuple[dict[str, dict], str | None]:
    """The driver's results by case name, and the case it started without finishing (hung or crashed)."""
    results, unfinished = {}, None
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("started"):
            unfinished = entry["name"]
        else:
            results[entry["name"]] = entry
            unfinished = None
    return results, unfinished


def test_bag_info_on_randomly_damaged_bags_gives_a_result_or_one_line_error(base_bags, tmp_path):
    cases = damaged_bags(base_bags, tmp_path / "damaged", BAG_INFO_CASES, DAMAGE_SEED)
    described = {case.name: f"seed {DAMAGE_SEED} {case.name}: {case.description}" for case in cases}
    spec = [{"name": "intact", "args": ["bag-info", str(base_bags["mcap_raw"])]}]
    spec += [{"name": case.name, "args": ["bag-info", str(case.path)]} for case in cases]
    (tmp_path / "cases.json").write_text(json.dumps(spec))
    results_file = tmp_path / "results.jsonl"
    driver = run_limited([sys.executable, str(TEST_DIR / "damaged_bags.py"), str(tmp_path / "cases.json"),
                          str(results_file)], BAG_INFO_TIME_LIMIT_S)
    results, unfinished = read_driver_results(results_file)
    assert unfinished is None, f"{described.get(unfinished, unfinished)}: hung or crashed the process " \
                               f"(driver exit {driver.code}): {driver.stderr[-2000:]}"
    assert driver.code == 0 and len(results) == len(spec), driver.stderr[-2000:]
    assert results["intact"]["code"] == 0, results["intact"]

    problems = []
    for case in cases:
        result = results[case.name]
        problem = outcome_problem("bag-info", result["code"], result["stdout"], result["stderr"], result["traceback"])
        if problem:
            problems.append(f"{described[case.name]} -> {problem}")
    assert not problems, f"{len(problems)} of {len(cases)} damaged bags:\n" + "\n".join(problems[:10])
    growth = max(r["peak_rss_mib"] for r in results.values()) - results["intact"]["peak_rss_mib"]
    worst = max(cases, key=lambda c: results[c.name]["peak_rss_mib"])
    assert growth < BAG_INFO_MEMORY_GROWTH_MIB, f"peak memory grew {growth:.0f} MiB (first at {described[worst.name]})"
    codes = {results[case.name]["code"] for case in cases}
    assert codes == {0, 1, 2}, f"seed {DAMAGE_SEED}: expected usable, unusable and unreadable bags, got {codes}"

    # the same in real processes: one case of each exit status
    for code in (0, 1, 2):
        case = next(c for c in cases if results[c.name]["code"] == code)
        real = run_limited(mds("bag-info", str(case.path)), 60)
        assert real.code == code, f"{described[case.name]}: exit {real.code} in a process, {code} in the driver"
        problem = outcome_problem("bag-info", real.code, real.stdout, real.stderr)
        assert problem is None, f"{described[case.name]}: {problem}"


def test_mds_train_on_randomly_damaged_bags_trains_or_gives_a_one_line_error(base_bags, tmp_path):
    cases = damaged_bags(base_bags, tmp_path / "damaged", TRAIN_CASES, TRAIN_DAMAGE_SEED)
    outcomes = []
    for case in cases:
        context = f"seed {TRAIN_DAMAGE_SEED} {case.name}: {case.description}"
        result = run_limited(mds("train", "--bag", str(case.path), "--output", str(tmp_path / case.name / "run"),
                                 *TINY_TRAINING), TRAIN_TIME_LIMIT_S)
        problem = outcome_problem("train", result.code, result.stdout, result.stderr)
        assert problem is None, f"{context} -> {problem}"
        assert result.peak_rss_mib < TRAIN_MEMORY_LIMIT_MIB, f"{context}: peak memory {result.peak_rss_mib:.0f} MiB"
        outcomes.append(result.code)
    assert 0 in outcomes, f"seed {TRAIN_DAMAGE_SEED}: no damaged bag trained ({outcomes}); pick cases that can"
