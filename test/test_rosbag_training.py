"""Training from rosbag2 bags: reading, decoding, stationary stretches, damage, cache, bag-info."""

from __future__ import annotations

import dataclasses
import gc
import logging
import pickle
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from synthetic import (
    HEIGHT,
    LOSS_DROP_LEARNING_RATE,
    WIDTH,
    photometric_before_and_after,
    tiny_config,
    truncate_storage,
    use_published_objective,
)

from mds_core.cli.main import main
from mds_core.config import BagConfig, ConfigError, DataConfig, TrainConfig
from mds_core.data.factory import build_dataset
from mds_core.data.rosbag import BagReader, FrameCache, load_bag_sequences, prepare_bag
from mds_core.data.rosbag.camera import training_camera
from mds_core.data.rosbag.decode import Calibration, FrameDecodeError, compressed_to_rgb, raw_image_to_rgb
from mds_core.data.rosbag.prepare import DROP_RATE, DROP_SHORT, DROP_STATIONARY
from mds_core.data.rosbag.reader import TopicEntry
from mds_core.data.rosbag.topics import choose_camera_info_topic, choose_image_topic
from mds_core.data.sample import collate_samples
from mds_core.data.sequence_folder import DataError
from mds_core.inference.predictor import Predictor
from mds_core.method.losses import SelfSupervisedObjective
from mds_core.tools.synth import SynthConfig, generate_sequence, write_rosbag
from mds_core.tools.synth.writers import camera_info_message, image_message
from mds_core.training.distributed import DistributedContext
from mds_core.training.loop import build_training_state, train_step

FRAMES = 10
SYNTH = SynthConfig(width=WIDTH, height=HEIGHT, num_frames=FRAMES, seed=5)
VARIANTS = [("mcap", "raw"), ("sqlite3", "raw"), ("mcap", "jpeg"), ("sqlite3", "jpeg")]
IMAGE_TYPE = "sensor_msgs/msg/Image"
INFO_TYPE = "sensor_msgs/msg/CameraInfo"


@pytest.fixture(scope="module")
def frames():
    return list(generate_sequence(SYNTH))


@pytest.fixture(scope="module")
def bags(tmp_path_factory, frames):
    root = tmp_path_factory.mktemp("bags")
    return {(storage, fmt): write_rosbag(root / f"{storage}_{fmt}", SYNTH, storage=storage, image_format=fmt,
                                         frames=frames)
            for storage, fmt in VARIANTS}


def bag_data(*paths, **bag) -> DataConfig:
    data = DataConfig(format="rosbag", bag=BagConfig(paths=[str(p) for p in paths], **bag))
    data.augmentation.enabled = False
    return data


def write_custom_bag(path: Path, messages, storage="mcap") -> Path:
    """A bag of ``(topic, msgtype, message)`` items (stamps are the messages' header stamps)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin) as writer:
        connections = {}
        for topic, msgtype, message in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            stamp = message.header.stamp.sec * 10**9 + message.header.stamp.nanosec
            writer.write(connections[topic], stamp, store.serialize_cdr(message, msgtype))
    return path


def camera_messages(frames, image_topic="/cam/image_raw", info_topic: str | None = "/cam/camera_info"):
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    for frame in frames:
        yield image_topic, IMAGE_TYPE, image_message(store, frame, "cam")
        if info_topic:
            yield info_topic, INFO_TYPE, camera_info_message(store, frame, "cam")


# ---------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v))
def test_every_kind_of_bag_gives_the_frames_stamps_and_intrinsics(bags, frames, variant):
    dataset = build_dataset(bag_data(bags[variant]), tiny_config(Path("."), Path(".")).model)
    (sequence,) = dataset.sequences
    assert len(sequence) == FRAMES and len(dataset) == FRAMES - 2
    for i, frame in enumerate(frames):
        image = sequence.image(i)
        assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
        expected = frame.image
        if variant[1] == "jpeg":  # what the writer's quality-95 JPEG decodes to
            encoded = cv2.imencode(".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
            expected = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert np.array_equal(image, expected), i
        assert sequence.frame_id(i) == f"{frame.timestamp_ns // 10**9}.{frame.timestamp_ns % 10**9:09d}"
    matrix, size = sequence.intrinsics()
    assert size == (WIDTH, HEIGHT) and np.allclose(matrix, frames[0].intrinsics)
    sample = dataset[0]
    assert sample.images.shape == (3, 3, HEIGHT, WIDTH)
    assert torch.allclose(sample.intrinsics, torch.as_tensor(frames[0].intrinsics, dtype=torch.float32))


@pytest.mark.parametrize("fmt", ["raw", "jpeg"])
def test_frames_are_resized_to_the_model_and_intrinsics_follow(bags, frames, fmt):
    # JPEGs twice the model size are decoded at half size by libjpeg; K still follows the full size
    sequences, _, _ = load_bag_sequences(BagConfig(paths=[str(bags[("mcap", fmt)])]), 32, 48, [-1, 1])
    matrix, size = sequences[0].intrinsics()
    assert size == (48, 32) and sequences[0].image(3).shape == (32, 48, 3)
    expected = frames[0].intrinsics.copy()
    expected[0] *= 48 / WIDTH
    expected[1] *= 32 / HEIGHT
    assert np.allclose(matrix, expected)
    resized = cv2.resize(frames[3].image, (48, 32), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(sequences[0].image(3) - resized).mean() < (0.01 if fmt == "raw" else 4.0)


def test_target_rate_skips_frames_before_decoding(bags):
    _, (report,), _ = load_bag_sequences(BagConfig(paths=[str(bags[("mcap", "raw")])], target_rate=5.0),
                                         HEIGHT, WIDTH, [-1, 1])
    assert report.frames == 5 and report.dropped[DROP_RATE] == 5 and report.decoded == 5


def test_gaps_split_sequences_and_short_stretches_are_reported(tmp_path, frames):
    later = [dataclasses.replace(f, timestamp_ns=f.timestamp_ns + 10**9) for f in frames[2:]]  # 1 s gap
    bag = write_rosbag(tmp_path / "gap", SYNTH, frames=frames[:2] + later)
    sequences, (report,), _ = load_bag_sequences(BagConfig(paths=[str(bag)]), HEIGHT, WIDTH, [-1, 1])
    assert [len(s) for s in sequences] == [8] and report.dropped == {DROP_SHORT: 2}
    sequences, _, _ = load_bag_sequences(BagConfig(paths=[str(bag)], max_gap=1.5), HEIGHT, WIDTH, [-1, 1])
    assert [len(s) for s in sequences] == [10]


def test_intrinsics_override_and_clear_error_without_camera_info(tmp_path, frames):
    bag = write_custom_bag(tmp_path / "no_info", camera_messages(frames[:5], info_topic=None))
    with pytest.raises(DataError, match="no CameraInfo topic.*--intrinsics FX FY CX CY"):
        load_bag_sequences(BagConfig(paths=[str(bag)]), HEIGHT, WIDTH, [-1, 1])
    sequences, (report,), _ = load_bag_sequences(
        BagConfig(paths=[str(bag)], intrinsics=[100.0, 90.0, 50.0, 30.0]), HEIGHT // 2, WIDTH // 2, [-1, 1])
    assert np.allclose(sequences[0].intrinsics()[0], [[50, 0, 25], [0, 45, 15], [0, 0, 1]])
    assert "data.bag.intrinsics" in report.camera[0]


# --------------------------------------------------------------------------------------- training
def test_training_on_bags_of_every_kind_lowers_the_loss(bags):
    config = use_published_objective(tiny_config(Path("."), Path("."), components=2, learning_rate=LOSS_DROP_LEARNING_RATE))
    config.data = bag_data(*bags.values())
    torch.manual_seed(0)
    dataset = build_dataset(config.data, config.model, training=True)
    assert len(dataset.sequences) == len(VARIANTS) and len(dataset) == len(VARIANTS) * (FRAMES - 2)
    batch = collate_samples([dataset[i * (FRAMES - 2) + 3] for i in range(len(VARIANTS))])  # one per bag
    before, after = photometric_before_and_after(config, batch)
    assert after < 0.8 * before, (before, after)


def test_train_command_takes_bags_topics_and_intrinsics(bags, tmp_path, capsys):
    tiny = ["--set", f"model.height={HEIGHT}", "--set", f"model.width={WIDTH}", "--set", "model.depth_encoder=resnet18",
            "--set", "model.pose_mask_encoder=resnet18", "--set", "model.num_components=2", "--set", "optim.batch_size=2",
            "--set", "logging.progress=false", "--set", "logging.tensorboard=false", "--device", "cpu"]
    bag = bags[("sqlite3", "jpeg")]
    code = main(["train", "--bag", str(bag), "--image-topic", "/camera/image_raw/compressed",
                 "--intrinsics", "60", "120", "48", "32", "--output", str(tmp_path / "run"), *tiny,
                 "--set", "optim.max_steps=2"])
    assert code == 0 and "trained 2 steps" in capsys.readouterr().out
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["config"]["data"]
    assert saved["format"] == "rosbag" and saved["bag"]["paths"] == [str(bag)]
    assert saved["bag"]["intrinsics"] == [60.0, 120.0, 48.0, 32.0]

    cases = [
        (["train", "--bag", str(tmp_path / "nowhere"), *tiny], "does not exist"),
        (["train", "--bag", str(bag), "--image-topic", "/nope", *tiny], "image topic /nope is not in the bag"),
        (["train", "--bag", str(bag), "--intrinsics", "0", "1", "2", "3", *tiny], "fx and fy must be > 0"),
        (["train", "--bag", str(bag), "--set", "data.bag.target_rate=1", *tiny], "must exceed the frame interval"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        assert message in capsys.readouterr().err, args


def test_the_scene_flow_model_trains_on_a_bag_through_its_stages(bags, tmp_path, capsys):
    bag = bags[("sqlite3", "jpeg")]
    code = main(["train", "--bag", str(bag), "--image-topic", "/camera/image_raw/compressed",
                 "--intrinsics", "60", "120", "48", "32", "--output", str(tmp_path / "run"), "--device", "cpu",
                 *[arg for setting in (f"model.height={HEIGHT}", f"model.width={WIDTH}", "model.depth_encoder=resnet18",
                                       "model.pose_mask_encoder=resnet18", "model.motion_model=scene_flow",
                                       "optim.batch_size=2", "optim.max_steps=4", "logging.progress=false",
                                       "logging.tensorboard=false") for arg in ("--set", setting)]])
    assert code == 0 and "trained 4 steps" in capsys.readouterr().out
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", device="cpu")
    assert predictor.uses_scene_flow and predictor.checkpoint_step == 4
    frames = np.random.default_rng(0).integers(0, 255, (3, HEIGHT, WIDTH, 3), dtype=np.uint8)
    k = np.array([[60.0, 0, 48], [0, 120.0, 32], [0, 0, 1]])
    prediction = predictor.predict(frames[1], k, frames[0], following=frames[2])
    assert prediction.moving_probability.shape == (HEIGHT, WIDTH) and np.isfinite(prediction.independent_flow).all()


# ------------------------------------------------------------------------------------- stationary
def test_stationary_stretch_is_kept_up_to_a_count_then_dropped_reported_and_splits_the_sequence(tmp_path, frames, caplog):
    period = 100_000_000
    rng = np.random.default_rng(0)
    waiting = [dataclasses.replace(frames[4], index=5 + k, timestamp_ns=frames[4].timestamp_ns + (k + 1) * period,
                                   image=np.clip(frames[4].image + rng.normal(0, 2, frames[4].image.shape), 0, 255)
                                   .astype(np.uint8))
               for k in range(6)]  # the camera waits 0.6 s: the same view with sensor noise
    after = [dataclasses.replace(f, timestamp_ns=f.timestamp_ns + 6 * period) for f in frames[5:]]
    bag = write_rosbag(tmp_path / "waiting", SYNTH, frames=frames[:5] + waiting + after)

    # by default the first frames of a stop are kept: the decomposition learns a standing camera from them
    sequences, (report,), _ = load_bag_sequences(BagConfig(paths=[str(bag)]), HEIGHT, WIDTH, [-1, 1])
    assert [len(s) for s in sequences] == [16] and not report.dropped[DROP_STATIONARY]
    assert report.stationary_stretches == 1 and report.stationary_kept == 6
    sequences, (report,), _ = load_bag_sequences(BagConfig(paths=[str(bag)], stationary_keep=1), HEIGHT, WIDTH,
                                                 [-1, 1])
    assert report.stationary_kept == 1 and report.dropped[DROP_STATIONARY] == 5
    assert [len(s) for s in sequences] == [6, 5]  # 0.6 s from the kept standing frame to the next: split

    with caplog.at_level(logging.INFO, logger="mds_core"):
        sequences, (report,), _ = load_bag_sequences(BagConfig(paths=[str(bag)], stationary_keep=0), HEIGHT, WIDTH,
                                                     [-1, 1])
    assert report.image_messages == 16 and report.dropped[DROP_STATIONARY] == 6
    assert report.stationary_stretches == 1 and report.longest_stationary_s == pytest.approx(0.6)
    # the stop (0.7 s from the last frame before it to the first after it) is longer than max_gap
    assert [len(s) for s in sequences] == [5, 5]
    assert [s.frame_id(0) for s in sequences] == [sequences[0].frame_id(0), f"{after[0].timestamp_ns // 10**9}."
                                                  f"{after[0].timestamp_ns % 10**9:09d}"]
    assert "6  stationary: camera not moving" in caplog.text

    # with a longer max_gap the frames around the stop are neighbours; with the detection off all are kept
    sequences, _, _ = load_bag_sequences(BagConfig(paths=[str(bag)], max_gap=1.0, stationary_keep=0), HEIGHT, WIDTH,
                                         [-1, 1])
    assert [len(s) for s in sequences] == [10]
    sequences, (report,), _ = load_bag_sequences(BagConfig(paths=[str(bag)], stationary_threshold=0.0),
                                                 HEIGHT, WIDTH, [-1, 1])
    assert [len(s) for s in sequences] == [16] and not report.dropped


def test_static_targets_of_sequence_folders_are_kept_up_to_a_count_per_run():
    """The folder formats' data.static_threshold: the first data.static_keep targets of each run of static ones stay."""
    from mds_core.data.dataset import TargetFrame, remove_static_frames

    rng = np.random.default_rng(1)
    moving = [rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(8)]
    still = moving[3]  # frames 3..8 show one view: the camera stands
    images = moving[:3] + [still] * 6 + moving[4:]

    class Frames:
        def image(self, index):
            return images[index]

    targets = [TargetFrame(0, f) for f in range(1, len(images) - 1)]
    # targets 3..8 have a source with the same view (3's next, 8's previous)
    kept, dropped = remove_static_frames([Frames()], targets, [-1, 1], 0.01, keep=2)
    assert [t.frame for t in kept] == [1, 2, 3, 4, 9, 10, 11] and dropped == 4
    kept, dropped = remove_static_frames([Frames()], targets, [-1, 1], 0.01, keep=0)
    assert [t.frame for t in kept] == [1, 2, 9, 10, 11] and dropped == 6
    assert remove_static_frames([Frames()], targets, [-1, 1], 0.0, keep=0) == (targets, 0)


# ----------------------------------------------------------------------------------------- damage
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_truncated_bag_trains_on_what_is_readable_with_a_warning(tmp_path, frames, storage, caplog):
    bag = write_rosbag(tmp_path / "cut", SYNTH, storage=storage, frames=frames)
    truncate_storage(bag, 0.6)
    config = tiny_config(Path("."), tmp_path / "run", components=2, max_steps=1)
    config.data = bag_data(bag)
    with caplog.at_level(logging.WARNING, logger="mds_core"):
        dataset = build_dataset(config.data, config.model, training=True)
    assert 3 <= len(dataset.sequences[0]) < FRAMES
    for i in range(len(dataset.sequences[0])):  # the readable frames are intact
        assert np.array_equal(dataset.sequences[0].image(i), frames[i].image)
    assert "is damaged: training on the" in caplog.text and f"of the {FRAMES} its index declares" in caplog.text
    assert "truncated" in caplog.text or "unreadable" in caplog.text
    state = build_training_state(config, torch.device("cpu"), DistributedContext())
    loss, _ = train_step(state, SelfSupervisedObjective(config.loss, config.model), collate_samples([dataset[0], dataset[1]]))
    assert torch.isfinite(loss.total)


def test_damaged_mcap_chunks_are_skipped_and_reading_goes_on(tmp_path):
    """zstd chunks: a truncated file loses its cut chunk; a corrupt chunk with an intact index is skipped."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    rng = np.random.default_rng(1)
    noise = [dataclasses.replace(f, image=rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), timestamp_ns=10**18 + i * 10**8)
             for i, f in enumerate([generate_sequence(SynthConfig(width=8, height=8, num_frames=1)).__next__()] * 12)]
    writer = Writer(tmp_path / "z", version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP)
    writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:  # incompressible 230 kB frames: a new 1 MiB chunk every 5 frames
        connection = writer.add_connection("/cam/image_raw", IMAGE_TYPE, typestore=store)
        for frame in noise:
            writer.write(connection, frame.timestamp_ns, store.serialize_cdr(image_message(store, frame, "c"), IMAGE_TYPE))
    (mcap,) = (tmp_path / "z").glob("*.mcap")
    data = mcap.read_bytes()

    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    reader = BagReader(cut)
    stamps = [m.log_time for m in reader.messages(["/cam/image_raw"])]
    assert reader.salvaged and 0 < len(stamps) < 12 and stamps == [f.timestamp_ns for f in noise[: len(stamps)]]
    assert any("cut off by the end of the file" in note for note in reader.notes)

    zstd_frames = [i for i in range(len(data)) if data[i: i + 4] == b"\x28\xb5\x2f\xfd"]
    corrupt = bytearray(data)
    corrupt[zstd_frames[1]: zstd_frames[1] + 4] = b"XXXX"  # the second chunk cannot be decompressed
    (tmp_path / "corrupt.mcap").write_bytes(bytes(corrupt))
    reader = BagReader(tmp_path / "corrupt.mcap")
    stamps = [m.log_time for m in reader.messages(["/cam/image_raw"])]
    assert not reader.salvaged and len(stamps) < 12 and stamps[-1] == noise[-1].timestamp_ns  # went on after it
    assert any("reading stopped after" in note for note in reader.notes)
    assert any("could not be decompressed" in note for note in reader.notes)


# ------------------------------------------------------------------------------------------ cache
def test_frames_beyond_the_memory_budget_go_to_disk(bags, tmp_path):
    path = str(bags[("mcap", "raw")])
    in_memory, _, _ = load_bag_sequences(BagConfig(paths=[path]), HEIGHT, WIDTH, [-1, 1])
    budget = 4 * HEIGHT * WIDTH * 3 / 2**20  # room for 4 frames
    cache = FrameCache(HEIGHT, WIDTH, budget, tmp_path / "cache")
    sequences, _ = prepare_bag(path, BagConfig(), cache, 3)
    cache.finish()
    assert (cache.memory_frames, cache.disk_frames) == (4, FRAMES - 4)
    assert cache.disk_path.parent.parent == tmp_path / "cache"
    copy = pickle.loads(pickle.dumps(sequences[0]))  # what a spawned data-loader worker gets
    for i in range(FRAMES):
        assert np.array_equal(sequences[0].image(i), in_memory[0].image(i))
        assert np.array_equal(copy.image(i), in_memory[0].image(i))
    folder = cache.disk_path.parent
    del sequences, copy, cache
    gc.collect()
    assert not folder.exists()


# -------------------------------------------------------------------------------- topics, decoding
def test_image_and_camera_info_topics_are_found_or_asked_for():
    def topics(*entries):
        return {name: TopicEntry(name, kind, 10) for name, kind in entries}

    image, compressed = IMAGE_TYPE, "sensor_msgs/msg/CompressedImage"
    one = topics(("/cam/image_raw", image), ("/cam/image_raw/compressed", compressed), ("/cam/depth/image", image),
                 ("/cam/camera_info", INFO_TYPE), ("/other/camera_info", INFO_TYPE))
    assert choose_image_topic(one, "", "b") == "/cam/image_raw"
    assert choose_camera_info_topic(one, "/cam/image_raw/compressed", "", "b") == "/cam/camera_info"
    assert choose_image_topic(topics(("/c/image/compressed", compressed)), "", "b") == "/c/image/compressed"
    two = topics(("/left/image_raw", image), ("/right/image_raw", image), ("/a/camera_info", INFO_TYPE),
                 ("/b/camera_info", INFO_TYPE))
    with pytest.raises(DataError, match="2 image streams.*--image-topic"):
        choose_image_topic(two, "", "b")
    with pytest.raises(DataError, match="2 CameraInfo topics.*--camera-info-topic"):
        choose_camera_info_topic(two, "/left/image_raw", "", "b")
    with pytest.raises(DataError, match="is a sensor_msgs/msg/CameraInfo, not an image topic"):
        choose_image_topic(two, "/a/camera_info", "b")
    with pytest.raises(DataError, match="no sensor_msgs/Image or CompressedImage"):
        choose_image_topic(topics(("/a/camera_info", INFO_TYPE)), "", "b")


def test_raw_encodings_padding_and_compressed_images_decode_to_rgb():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)

    def message(encoding, pixels, pad=0, bigendian=0):
        rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
        padded = np.concatenate([rows, np.zeros((rows.shape[0], pad), np.uint8)], axis=1)
        return SimpleNamespace(encoding=encoding, width=7, height=5, step=padded.shape[1], is_bigendian=bigendian,
                               data=padded.reshape(-1))

    assert np.array_equal(raw_image_to_rgb(message("rgb8", rgb, pad=3)), rgb)
    assert np.array_equal(raw_image_to_rgb(message("bgr8", rgb[..., ::-1].copy())), rgb)
    gray = rgb[..., 0].copy()
    assert np.array_equal(raw_image_to_rgb(message("mono8", gray)), np.repeat(gray[..., None], 3, axis=2))
    wide = (gray.astype(np.uint16) * 256 + 17).astype(">u2")
    assert np.array_equal(raw_image_to_rgb(message("mono16", wide, bigendian=1))[..., 0], gray)
    # ROS bayer_rggb8: R at (0, 0), G at (0, 1) and (1, 0), B at (1, 1); a flat colour stays that colour
    colour = np.array([200, 120, 40], np.uint8)
    mosaic = np.empty((6, 8), np.uint8)
    mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2], mosaic[1::2, 1::2] = colour[0], colour[1], colour[1], colour[2]
    bayer = SimpleNamespace(encoding="bayer_rggb8", width=8, height=6, step=8, is_bigendian=0, data=mosaic.reshape(-1))
    assert np.abs(raw_image_to_rgb(bayer)[2:4, 2:6].astype(int) - colour).max() <= 1
    with pytest.raises(FrameDecodeError, match="unsupported encoding '32FC1'"):
        raw_image_to_rgb(message("32FC1", rgb))
    with pytest.raises(FrameDecodeError, match="needed"):
        raw_image_to_rgb(SimpleNamespace(encoding="rgb8", width=7, height=5, step=21, is_bigendian=0,
                                          data=np.zeros(50, np.uint8)))
    png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1]
    assert np.array_equal(compressed_to_rgb(SimpleNamespace(format="png", data=png.reshape(-1))), rgb)
    with pytest.raises(FrameDecodeError, match="undecodable"):
        compressed_to_rgb(SimpleNamespace(format="jpeg", data=np.arange(50, dtype=np.uint8)))


def test_a_bag_with_lens_distortion_trains_on_undistorted_frames(tmp_path, frames):
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    messages = []
    for frame in frames[:4]:
        info = camera_info_message(store, frame, "cam")
        messages += [("/cam/image_raw", IMAGE_TYPE, image_message(store, frame, "cam")),
                     ("/cam/camera_info", INFO_TYPE, dataclasses.replace(info, d=np.array([-0.25, 0.05, 0, 0, 0.0])))]
    bag = write_custom_bag(tmp_path / "distorted", messages, storage="sqlite3")
    (sequence,), (report,), _ = load_bag_sequences(BagConfig(paths=[str(bag)]), HEIGHT, WIDTH, [-1, 1])
    assert sequence.undistort is not None and report.camera == ["CameraInfo K; plumb_bob distortion removed"]
    assert not np.allclose(sequence.intrinsics()[0], frames[0].intrinsics)
    assert sequence.image(1).shape == (HEIGHT, WIDTH, 3) and not np.array_equal(sequence.image(1), frames[1].image)


def test_distortion_is_removed_rectified_topics_use_p():
    K = [100.0, 0, 48, 0, 100.0, 32, 0, 0, 1]
    P = [90.0, 0, 47, 0, 0, 90.0, 31, 0, 0, 0, 1, 0]
    distorted = Calibration(tuple(K), tuple(P), (-0.3, 0.1, 0, 0, 0), "plumb_bob", 96, 64)
    camera = training_camera((96, 64), (96, 64), distorted, None, rectified=False, undistort=True, where="b")
    assert camera.undistort is not None and "distortion removed" in camera.description
    assert camera.matrix[0, 0] != 100.0 and np.all(np.isfinite(camera.matrix))
    grid = np.zeros((64, 96, 3), np.uint8)
    grid[::8] = 255
    assert camera.undistort(grid).shape == (64, 96, 3)
    kept = training_camera((96, 64), (48, 32), distorted, None, rectified=False, undistort=False, where="b")
    assert kept.undistort is None and "NOT removed" in kept.description and kept.matrix[0, 0] == 50.0
    rect = training_camera((96, 64), (96, 64), distorted, None, rectified=True, undistort=True, where="b")
    assert rect.undistort is None and np.allclose(rect.matrix, np.reshape(P, (3, 4))[:, :3])
    with pytest.raises(DataError, match="CameraInfo is for 96x64 images but the images are 192x128"):
        training_camera((192, 128), (96, 64), distorted, None, rectified=False, undistort=True, where="b")


# --------------------------------------------------------------------------------------- bag-info
def test_bag_info_reports_topics_counts_rates_and_usability(bags, tmp_path, frames, capsys):
    assert main(["bag-info", str(bags[("mcap", "raw")]), str(bags[("sqlite3", "jpeg")])]) == 0
    out = capsys.readouterr().out
    assert "/camera/image_raw    sensor_msgs/msg/Image" in out and "rgb8 96x64  <- training images" in out
    assert "/camera/image_raw/compressed" in out and "rgb8; jpeg compressed bgr8 96x64" in out
    assert out.count("10.0 Hz") == 4 and "plumb_bob (no distortion)  <- intrinsics" in out
    assert out.count("usable for training: yes (10 frames in 1 stretch(es)") == 2

    cut = write_rosbag(tmp_path / "cut", SYNTH, storage="sqlite3", frames=frames)
    truncate_storage(cut, 0.5)
    no_info = write_custom_bag(tmp_path / "no_info", camera_messages(frames[:4], info_topic=None))
    short = write_custom_bag(tmp_path / "short", camera_messages(frames[:2]))
    stereo = write_custom_bag(tmp_path / "stereo", [*camera_messages(frames[:3], "/left/image_raw", "/left/camera_info"),
                                                    *camera_messages(frames[:3], "/right/image_raw", "/right/camera_info")])
    assert main(["bag-info", str(cut), str(no_info), str(short), str(stereo), "--decode", "--width", "64",
                 "--height", "32"]) == 1
    out = capsys.readouterr().out
    sections = out.split("\n\n")
    assert "of 10" in sections[0] and "damage:" in sections[0] and "usable for training: yes" in sections[0]
    assert "preparation as in training (--decode)" in sections[0]
    assert "usable for training: NO" in sections[1] and "--intrinsics FX FY CX CY" in sections[1]
    assert "too few frames" in sections[2]
    assert "2 image streams (/left/image_raw, /right/image_raw)" in sections[3]
    assert main(["bag-info", str(no_info), "--intrinsics", "50", "50", "48", "32"]) == 0
    assert main(["bag-info", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bag_config_is_strict_and_round_trips():
    from mds_core.config import apply_overrides

    config = apply_overrides(TrainConfig(), ["data.format=rosbag", 'data.bag.paths=["/a b/c", "d.mcap"]',
                                             "data.bag.target_rate=5", "data.bag.intrinsics=[1, 2, 3, 4]"])
    assert config.data.bag.paths == ["/a b/c", "d.mcap"] and config.data.bag.intrinsics == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ConfigError, match="data.bag.intrinsics must be 4 finite numbers"):
        apply_overrides(TrainConfig(), ["data.bag.intrinsics=[1, 2]"])
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(TrainConfig(), ["data.bag.topic=/x"])
    with pytest.raises(DataError, match="no bags given"):
        build_dataset(DataConfig(format="rosbag"), tiny_config(Path("."), Path(".")).model)
