"""Randomly damaged rosbag2 bags for fault tests, and a driver that runs ``mds bag-info`` on many.

:func:`write_base_bags` writes small intact bags of every storage kind (MCAP with plain or zstd
chunks, sqlite3 with plain or zstd-compressed messages, raw and JPEG images).
:func:`damage_bag` copies one and damages it the way disks, cut recordings and careless edits
do: bit flips, truncation, a corrupt chunk (MCAP) or page (sqlite3), or a wrong ``metadata.yaml``,
sometimes several at once. Everything is drawn from a ``random.Random``, so a seed names a case.

Run as a script, this module is the driver: ``python damaged_bags.py CASES.json RESULTS.jsonl``
runs ``mds bag-info`` (:func:`mds_core.cli.main.main`, in this one process, to keep hundreds of
cases cheap) on every case of ``CASES.json`` (a list of ``{"name": ..., "args": [...]}``) and
appends one JSON line per case to ``RESULTS.jsonl`` *before* running it (``started``) and after
(exit status, stdout, stderr, traceback if any, seconds, peak memory), so a case that hangs or
crashes the process is known by its last ``started`` line.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import resource
import shutil
import signal
import struct
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MCAP_MAGIC = b"\x89MCAP0\r\n"
CASE_TIME_LIMIT = 20  # seconds one bag-info case may take in the driver before it counts as hung
STORAGE_SUFFIXES = (".mcap", ".db3")
DAMAGES = ("bitflip", "truncate", "corrupt_chunk", "metadata", "combined")


@dataclass(frozen=True)
class BaseBag:
    """How an intact base bag is written."""

    name: str
    storage: str  # "mcap" or "sqlite3"
    image_format: str  # "raw" or "jpeg"
    compression: str  # "", "storage" (zstd chunks, MCAP) or "message" (zstd per message)


BASE_BAGS = (
    BaseBag("mcap_raw", "mcap", "raw", ""),
    BaseBag("mcap_jpeg", "mcap", "jpeg", ""),
    BaseBag("mcap_zstd", "mcap", "raw", "storage"),
    BaseBag("sqlite_raw", "sqlite3", "raw", ""),
    BaseBag("sqlite_zstd", "sqlite3", "jpeg", "message"),
)


# ----------------------------------------------------------------------------- base bags
def write_base_bag(path: Path, base: BaseBag, width: int = 96, height: int = 64, frames: int = 8) -> Path:
    """An intact bag of ``frames`` synthetic camera frames with CameraInfo, written by rosbags."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from mds_core.tools.synth import SynthConfig, generate_sequence
    from mds_core.tools.synth.writers import camera_info_message, compressed_image_message, image_message

    store = get_typestore(Stores.ROS2_JAZZY)
    plugin = StoragePlugin.MCAP if base.storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
    if base.compression:
        mode = CompressionMode.STORAGE if base.compression == "storage" else CompressionMode.MESSAGE
        writer.set_compression(mode, CompressionFormat.ZSTD)
    raw = base.image_format == "raw"
    image_type = "sensor_msgs/msg/Image" if raw else "sensor_msgs/msg/CompressedImage"
    info_type = "sensor_msgs/msg/CameraInfo"
    with writer:
        images = writer.add_connection("/camera/image_raw" if raw else "/camera/image_raw/compressed", image_type,
                                       typestore=store)
        infos = writer.add_connection("/camera/camera_info", info_type, typestore=store)
        for frame in generate_sequence(SynthConfig(width=width, height=height, num_frames=frames, seed=7)):
            image = image_message(store, frame, "cam") if raw else compressed_image_message(store, frame, "cam", "jpeg")
            writer.write(images, frame.timestamp_ns, store.serialize_cdr(image, image_type))
            writer.write(infos, frame.timestamp_ns, store.serialize_cdr(camera_info_message(store, frame, "cam"),
                                                                        info_type))
    return path


def write_base_bags(root: Path) -> dict[str, Path]:
    """Every :data:`BASE_BAGS` kind, written under ``root``."""
    return {base.name: write_base_bag(root / base.name, base) for base in BASE_BAGS}


def storage_file(bag: Path) -> Path:
    """The one storage file of a one-file bag directory."""
    (found,) = [p for p in sorted(bag.iterdir()) if p.suffix in STORAGE_SUFFIXES]
    return found


# ----------------------------------------------------------------------------- damage
def flip_bits(data: bytearray, rng: random.Random) -> str:
    """Flip 1..64 random bits (anywhere, or bunched in one 256-byte stretch)."""
    count = rng.randint(1, 64)
    if rng.random() < 0.5:
        start = rng.randrange(len(data))
        positions = [min(len(data) - 1, start + rng.randrange(256)) for _ in range(count)]
    else:
        positions = [rng.randrange(len(data)) for _ in range(count)]
    for position in positions:
        data[position] ^= 1 << rng.randrange(8)
    return f"{count} bit flip(s) from byte {min(positions)}"


def truncate(data: bytearray, rng: random.Random) -> str:
    """Cut the file at a random length (sometimes within its first 100 bytes)."""
    size = rng.randrange(min(100, len(data))) if rng.random() < 0.1 else rng.randrange(len(data))
    del data[size:]
    return f"truncated to {size} bytes"


def mcap_chunks(data: bytes | bytearray) -> list[tuple[int, int]]:
    """(offset, length) of the chunk records of an MCAP file, walking top-level records from the front."""
    chunks, position = [], len(MCAP_MAGIC)
    while position + 9 <= len(data):
        op, length = data[position], struct.unpack_from("<Q", data, position + 1)[0]
        if op == 0x06:
            chunks.append((position, 9 + length))
        if op in (0x02, 0x0F) or length > len(data):
            break
        position += 9 + length
    return chunks


def _overwrite(data: bytearray, start: int, length: int, rng: random.Random) -> str:
    """Overwrite ``length`` bytes from ``start`` with zeros, 0xFF or random bytes."""
    length = max(1, min(length, len(data) - start))
    fill = rng.choice(("zeros", "ones", "random"))
    if fill == "zeros":
        data[start: start + length] = bytes(length)
    elif fill == "ones":
        data[start: start + length] = b"\xff" * length
    else:
        data[start: start + length] = rng.randbytes(length)
    return f"{length} bytes of {fill} at {start}"


def corrupt_chunk(data: bytearray, rng: random.Random) -> str:
    """Overwrite part of an MCAP chunk (header, start or middle of its records) or a whole sqlite3 page."""
    if data.startswith(b"SQLite format 3\x00"):
        page_size = struct.unpack_from(">H", data, 16)[0]
        page_size = 65536 if page_size == 1 else page_size
        pages = max(1, len(data) // page_size)
        page = rng.randrange(pages)
        return f"sqlite3 page {page}: " + _overwrite(data, page * page_size, page_size, rng)
    chunks = mcap_chunks(data)
    if not chunks:
        return "no chunk: " + _overwrite(data, rng.randrange(len(data)), rng.randint(16, 4096), rng)
    offset, length = rng.choice(chunks)
    where = rng.choice(("header", "records", "anywhere"))
    if where == "header":
        start = offset + rng.randrange(min(60, length))
    elif where == "records":
        start = offset + min(length - 1, 60 + rng.randrange(64))
    else:
        start = offset + rng.randrange(length)
    return f"chunk at {offset} ({where}): " + _overwrite(data, start, rng.randint(1, 4096), rng)


def _damage_storage(path: Path, damage: str, rng: random.Random) -> str:
    data = bytearray(path.read_bytes())
    action = {"bitflip": flip_bits, "truncate": truncate, "corrupt_chunk": corrupt_chunk}[damage]
    text = action(data, rng)
    path.write_bytes(bytes(data))
    return f"{path.name}: {text}"


def _metadata_edits() -> dict[str, Any]:
    """Named edits of the parsed ``rosbag2_bagfile_information`` (each returns nothing, edits in place)."""

    def entry(info: dict, rng: random.Random) -> dict:
        """A random topic entry of the metadata (a throw-away dict when an earlier edit removed them)."""
        entries = info.get("topics_with_message_count")
        entries = [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
        return rng.choice(entries) if entries else {}

    return {
        "message_count huge": lambda info, rng: info.update(message_count=rng.choice((10**12, 2**63 - 1, 10**30))),
        "message_count negative": lambda info, rng: info.update(message_count=-rng.randint(1, 10**6)),
        "message_count text": lambda info, rng: info.update(message_count="many"),
        "topic count wrong": lambda info, rng: entry(info, rng).update(
            message_count=rng.choice((0, -1, 10**12, "x", None, 3.5))),
        "topic type wrong": lambda info, rng: entry(info, rng).get("topic_metadata", {}).update(
            type=rng.choice(("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
                             "foo/msg/Bar", "", 42, None))),
        "topic name wrong": lambda info, rng: entry(info, rng).get("topic_metadata", {}).update(
            name=rng.choice(("", "/other", 7, None, ["/a"]))),
        "topics not a list": lambda info, rng: info.update(topics_with_message_count=rng.choice((None, 5, "x", {}))),
        "file name wrong": lambda info, rng: info.update(
            relative_file_paths=rng.choice((["missing.mcap"], ["missing.db3"], [], None, "x.mcap", [3]))),
        "storage identifier wrong": lambda info, rng: info.update(
            storage_identifier=rng.choice(("mcap", "sqlite3", "rosbag1", "", None))),
        "compression wrong": lambda info, rng: info.update(
            compression_mode=rng.choice(("FILE", "MESSAGE", "STORAGE", "NONE", "", "weird")),
            compression_format=rng.choice(("zstd", "lz4", "", None))),
        "version wrong": lambda info, rng: info.update(version=rng.choice((0, 1, 4, 99, "nine", None))),
        "times wrong": lambda info, rng: info.update(
            starting_time=rng.choice(({"nanoseconds_since_epoch": -5}, None, "now", {})),
            duration=rng.choice(({"nanoseconds": -(10**18)}, None, {"nanoseconds": "long"}))),
        "key removed": lambda info, rng: info.pop(rng.choice(sorted(info)), None),
        "files list wrong": lambda info, rng: info.update(files=rng.choice((None, [], [{"path": "x"}], "x"))),
    }


def damage_metadata(bag: Path, rng: random.Random) -> str:
    """Make ``metadata.yaml`` wrong: edited values (one or several), invalid YAML, garbage, or gone."""
    meta = bag / "metadata.yaml"
    kind = rng.choices(("edit", "invalid", "garbage", "empty", "deleted"), weights=(12, 2, 1, 1, 1))[0]
    if kind == "deleted":
        meta.unlink()
        return "metadata.yaml deleted"
    if kind == "empty":
        meta.write_text("")
        return "metadata.yaml empty"
    if kind == "garbage":
        meta.write_bytes(rng.randbytes(rng.randint(1, 2000)))
        return "metadata.yaml random bytes"
    text = meta.read_text()
    if kind == "invalid":
        cut = rng.randrange(len(text))
        meta.write_text(text[:cut] + rng.choice(("\t: [", "{{", "\x00", ": : :")) + text[cut:])
        return f"metadata.yaml invalid YAML at character {cut}"
    document = yaml.safe_load(text)
    info = document["rosbag2_bagfile_information"]
    edits = _metadata_edits()
    names = rng.sample(sorted(edits), rng.randint(1, 3))
    for name in names:
        edits[name](info, rng)
    meta.write_text(yaml.safe_dump(document))
    return "metadata.yaml: " + ", ".join(names)


def damage_bag(source: Path, target: Path, damage: str, rng: random.Random) -> str:
    """Copy the bag ``source`` to ``target`` and damage it (``damage``: one of :data:`DAMAGES`); returns what was done."""
    shutil.copytree(source, target)
    if damage == "metadata":
        return damage_metadata(target, rng)
    if damage == "combined":
        first, second = rng.sample(("bitflip", "truncate", "corrupt_chunk"), 2)
        return "; ".join((_damage_storage(storage_file(target), first, rng),
                          _damage_storage(storage_file(target), second, rng), damage_metadata(target, rng)))
    return _damage_storage(storage_file(target), damage, rng)


@dataclass(frozen=True)
class DamagedBag:
    """One fault-test case: a damaged copy of a base bag."""

    name: str
    path: Path  # what to pass to ``mds``: usually the bag directory, sometimes its storage file alone
    base: str
    description: str


def damaged_bags(bases: dict[str, Path], root: Path, count: int, seed: int) -> list[DamagedBag]:
    """``count`` damaged copies of ``bases`` under ``root``; case ``i`` depends only on ``seed`` and ``i``."""
    cases = []
    for index in range(count):
        rng = random.Random(f"{seed}-{index}")
        base = rng.choice(sorted(bases))
        damage = DAMAGES[index % len(DAMAGES)]
        name = f"case{index:03d}_{base}_{damage}"
        description = damage_bag(bases[base], root / name, damage, rng)
        target = root / name
        if damage != "metadata" and rng.random() < 0.15:
            target = storage_file(target)  # the storage file alone: no metadata.yaml help
            description += "; passed as the storage file"
        cases.append(DamagedBag(name, target, base, description))
    return cases


# ----------------------------------------------------------------------------- driver
class CaseTimeout(BaseException):
    """A case ran past :data:`CASE_TIME_LIMIT` (a BaseException, so that no ``except Exception`` swallows it)."""


def _alarm(_signum: int, _frame: Any) -> None:
    raise CaseTimeout(f"no result within {CASE_TIME_LIMIT} s")


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(args: list[str]) -> dict[str, Any]:
    """``mds ARGS`` in this process: exit status, what it printed, and any escaped exception's traceback."""
    from mds_core.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root.handlers[:] = [handler]
    started = time.perf_counter()
    escaped = ""
    signal.alarm(CASE_TIME_LIMIT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(args)
    except BaseException:  # noqa: B036 - everything that escapes main() is what the test looks for
        code = None
        escaped = traceback.format_exc()
    finally:
        signal.alarm(0)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "traceback": escaped,
            "seconds": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib()}


def drive(cases_file: Path, results_file: Path) -> None:
    """Run every case of ``cases_file``, one JSON line per start and per result in ``results_file``."""
    signal.signal(signal.SIGALRM, _alarm)
    cases = json.loads(cases_file.read_text())
    with results_file.open("a") as results:
        for case in cases:
            results.write(json.dumps({"name": case["name"], "started": True}) + "\n")
            results.flush()
            result = run_case(case["args"])
            results.write(json.dumps({"name": case["name"], **result}) + "\n")
            results.flush()


if __name__ == "__main__":
    drive(Path(sys.argv[1]), Path(sys.argv[2]))
