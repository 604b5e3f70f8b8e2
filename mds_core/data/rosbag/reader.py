"""Raw messages of a rosbag2 bag, read with ``rosbags``, surviving damaged files.

A bag is a rosbag2 directory (``metadata.yaml`` plus ``.mcap`` or ``.db3`` files) or a single
``.mcap`` / ``.db3`` file. :class:`BagReader` reads it with ``rosbags``. When ``rosbags``
cannot open it (a truncated file has lost its index or its database header no longer matches)
or stops part-way (a corrupt chunk or page), the storage files are scanned by
:mod:`mds_core.data.rosbag.salvage`, which keeps every intact message; reading continues after
the last message ``rosbags`` delivered on each topic. Every such event is a note in
:attr:`BagReader.notes` (nothing is skipped silently); the caller logs them.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from mds_core.data.rosbag.salvage import McapSalvage, SalvagedMessage, SqliteSalvage, decompress, one_line
from mds_core.data.sequence_folder import DataError

STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}


@dataclass(frozen=True)
class TopicEntry:
    """A topic as the bag declares it; ``count`` is None when the bag does not say."""

    name: str
    msgtype: str
    count: int | None


@dataclass(frozen=True)
class RawMessage:
    """One serialised (CDR) message and its bag log time (ns)."""

    topic: str
    msgtype: str
    log_time: int
    data: bytes | memoryview


def topic_entry(name: object, msgtype: object, count: object) -> TopicEntry:
    """A :class:`TopicEntry` from what a bag's index or ``metadata.yaml`` says; ValueError when it makes no sense
    (a name that is not a ROS topic name, a type that is not text; a count that is not a whole number >= 0
    becomes None, unknown)."""
    if not isinstance(name, str) or not name.startswith("/") or not isinstance(msgtype, str):
        raise ValueError(f"invalid topic entry (name {str(name)[:80]!r}, type {str(msgtype)[:80]!r})")
    known = isinstance(count, int) and not isinstance(count, bool) and count >= 0
    return TopicEntry(name, msgtype, count if known else None)


def _storage_files(path: Path) -> tuple[list[Path], dict | None]:
    """Storage files of a bag and its parsed ``metadata.yaml`` (None when absent/unreadable)."""
    if path.is_file():
        if path.suffix not in STORAGE_SUFFIXES:
            raise DataError(f"{path} is not a rosbag2 bag: expected a directory, an .mcap or a .db3 file")
        return [path], None
    metadata = None
    meta_path = path / "metadata.yaml"
    if meta_path.is_file():
        import yaml

        try:
            metadata = yaml.safe_load(meta_path.read_text())["rosbag2_bagfile_information"]
            files = [path / Path(name).name for name in metadata["relative_file_paths"]]
            return [f for f in files if f.is_file()], metadata
        except Exception:
            metadata = None
    files = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES)
    return files, metadata


class BagReader:
    """Topics and messages of one bag (module docstring). ``path`` must exist."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"bag {self.path} does not exist")
        self.notes: list[str] = []
        self.files, self._metadata = _storage_files(self.path)
        if not self.files:
            raise DataError(f"{self.path} is not a rosbag2 bag: no metadata.yaml, .mcap or .db3 file in it")
        self.storage = STORAGE_SUFFIXES.get(self.files[0].suffix, "?")
        self.salvaged = False
        self.topics: dict[str, TopicEntry] = {}
        self.start_time: int | None = None
        self.end_time: int | None = None
        self._rosbags_path = self.path
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            if len(self.files) != 1:
                raise DataError(f"{self.path}: no metadata.yaml and {len(self.files)} storage files; give one file")
            self._rosbags_path = self.files[0]
            self.notes.append(f"no metadata.yaml: reading {self.files[0].name} directly")
        try:
            self._open_with_rosbags()
        except Exception as error:
            self.salvaged = True
            self.notes.append(f"rosbags cannot open the bag ({one_line(error)}); reading what is intact")
            self._open_salvage()

    # ------------------------------------------------------------------------ opening
    def _open_with_rosbags(self) -> None:
        from rosbags.rosbag2 import Reader

        with Reader(self._rosbags_path) as reader:
            for name, info in reader.topics.items():
                self.topics[name] = topic_entry(name, info.msgtype or "", info.msgcount)
            if reader.message_count:
                self.start_time, self.end_time = int(reader.start_time), int(reader.end_time)

    def _compression_mode(self) -> str:
        mode = str((self._metadata or {}).get("compression_mode") or "").lower()
        return "" if mode == "none" else mode

    def _open_salvage(self) -> None:
        if self._compression_mode() == "file":
            raise DataError(f"bag {self.path} is unreadable ({'; '.join(self.notes)}) and its files are compressed "
                            f"whole, so nothing can be recovered from them")
        if self._metadata is not None:
            try:
                for entry in self._metadata["topics_with_message_count"]:
                    meta = entry["topic_metadata"]
                    self.topics[meta["name"]] = topic_entry(meta["name"], meta["type"], entry["message_count"])
                if self.topics:
                    return
            except (KeyError, TypeError, ValueError):
                self.notes.append("metadata.yaml lists no valid topics: reading the topics from the storage files")
            self.topics.clear()
        for file in self.files:  # no usable metadata: list what the files hold
            try:
                if self.storage == "mcap":
                    scan = McapSalvage(file, [])  # damage is noted when the messages are read
                    for _ in scan.scan(None):
                        pass
                    for topic, msgtype in scan.channels.values():
                        previous = self.topics.get(topic)
                        count = scan.message_counts.get(topic, 0) + ((previous.count or 0) if previous else 0)
                        self.topics[topic] = TopicEntry(topic, msgtype, count)
                else:
                    db = SqliteSalvage(file, self.notes)
                    for topic, msgtype in db.topics.values():
                        self.topics.setdefault(topic, TopicEntry(topic, msgtype, None))
                    db.close()
            except (OSError, ValueError) as error:
                self.notes.append(f"{file.name}: unreadable ({one_line(error)})")
        if not self.topics:
            raise DataError(f"bag {self.path} is unreadable: {'; '.join(self.notes)}")

    @property
    def duration(self) -> float | None:
        """Seconds between the first and the last message, when the bag's index says."""
        if self.start_time is None or self.end_time is None:
            return None
        return max(0.0, (self.end_time - self.start_time) / 1e9)

    # ------------------------------------------------------------------------ reading
    def messages(self, topics: Collection[str]) -> Iterator[RawMessage]:
        """Messages on ``topics``, in log-time order (file order for salvaged files)."""
        wanted = set(topics)
        last: dict[str, int] = {}
        if not self.salvaged:
            delivered = 0
            try:
                from rosbags.rosbag2 import Reader

                with Reader(self._rosbags_path) as reader:
                    connections = [c for c in reader.connections if c.topic in wanted]
                    for connection, log_time, data in reader.messages(connections):
                        last[connection.topic] = log_time
                        delivered += 1
                        yield RawMessage(connection.topic, connection.msgtype, log_time, data)
                return
            except Exception as error:
                self.notes.append(f"reading stopped after {delivered} message(s) ({one_line(error)}); "
                                  f"scanning the rest of the file for intact messages")
        compressed = self._compression_mode() == "message"
        for message in self._salvaged_messages(wanted):
            if message.log_time > last.get(message.topic, -math.inf):
                data = message.data
                if compressed:
                    try:
                        data = decompress(data, "zstd")
                    except Exception:
                        data = b""
                yield RawMessage(message.topic, message.msgtype, message.log_time, data)

    def _salvaged_messages(self, topics: set[str]) -> Iterator[SalvagedMessage]:
        for file in self.files:
            try:
                if self.storage == "mcap":
                    yield from McapSalvage(file, self.notes).scan(topics)
                else:
                    db = SqliteSalvage(file, self.notes)
                    try:
                        yield from db.scan(topics)
                    finally:
                        db.close()
            except (OSError, ValueError) as error:
                self.notes.append(f"{file.name}: unreadable ({one_line(error)})")
