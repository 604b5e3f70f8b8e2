"""Reading what is left of a damaged rosbag2 storage file (truncated or partly corrupt).

``rosbags`` refuses a truncated MCAP file (its footer and index are at the end) and a
truncated sqlite3 file (the database header promises pages that are gone). These scanners read
such files from the front and keep every message that is intact:

* MCAP: records are walked in file order from the magic bytes: schemas, channels, messages
  and chunks (uncompressed, zstd or lz4; a chunk whose checksum or decompression fails is
  skipped whole). The scan stops at the first record that runs past the end of the file; an
  uncompressed chunk cut off by the end still yields its complete messages.
* sqlite3: the database is opened through a read-only virtual file system that shows only the
  whole pages present and fixes the page count in the header; messages are read in ``id``
  order; when a damaged page stops the scan, the next id that can be read is found with a few
  dozen lookups (ids at growing distances, then bisection), and reading goes on from there.

Every problem is appended to a list of one-line notes for the caller to report.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_DATA_END = 0x02, 0x03, 0x04, 0x05, 0x06, 0x0F
_MAX_ROWID = 2**63 - 1  # sqlite3 rowids are signed 64-bit integers
_MAX_DAMAGED_RANGES = 200  # damaged stretches skipped in one sqlite3 file before giving up on the rest
_VFS_NUMBERS = itertools.count()


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line (its first line, at most ``limit`` characters)."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    text = lines[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class SalvagedMessage:
    topic: str
    msgtype: str
    log_time: int
    data: bytes


def decompress(data: bytes, compression: str) -> bytes:
    """``data`` decompressed with an MCAP compression name: ``""``, ``"zstd"`` or ``"lz4"``."""
    if compression == "":
        return data
    if compression == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]  # Python >= 3.14
        except ImportError:
            from backports import zstd  # a dependency of rosbags
        return zstd.decompress(data)
    if compression == "lz4":
        import lz4.frame  # a dependency of rosbags

        return lz4.frame.decompress(data)
    raise ValueError(f"unsupported chunk compression {compression!r}")


class _Cursor:
    """Little-endian fields from a bytes-like record body."""

    def __init__(self, data: bytes | memoryview):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, size: int) -> memoryview:
        if self.pos + size > len(self.data):
            raise ValueError("record shorter than its fields")
        out = self.data[self.pos: self.pos + size]
        self.pos += size
        return out

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> str:
        return bytes(self.take(self.u32())).decode("utf-8", errors="replace")

    def rest(self) -> bytes:
        out = bytes(self.data[self.pos:])
        self.pos = len(self.data)
        return out


class McapSalvage:
    """Walk an MCAP file's records from the front (module docstring)."""

    def __init__(self, path: Path, notes: list[str]):
        self.path = Path(path)
        self.notes = notes
        self.schemas: dict[int, str] = {}
        self.channels: dict[int, tuple[str, str]] = {}  # id -> (topic, msgtype)
        self.message_counts: dict[str, int] = {}

    def _note(self, text: str) -> None:
        self.notes.append(f"{self.path.name}: {text}")

    def _record(self, op: int, body: bytes | memoryview, topics: set[str] | None) -> Iterator[SalvagedMessage]:
        """Handle one record (top level or inside a chunk); yields a message record's message."""
        cursor = _Cursor(body)
        if op == _OP_SCHEMA:
            schema_id = cursor.u16()
            self.schemas[schema_id] = cursor.string()
        elif op == _OP_CHANNEL:
            channel_id, schema_id = cursor.u16(), cursor.u16()
            topic = cursor.string()
            self.channels[channel_id] = (topic, self.schemas.get(schema_id, ""))
        elif op == _OP_MESSAGE:
            channel_id = cursor.u16()
            cursor.take(4)  # sequence
            log_time = cursor.u64()
            cursor.take(8)  # publish time
            channel = self.channels.get(channel_id)
            if channel is None:
                self.message_counts["<unknown channel>"] = self.message_counts.get("<unknown channel>", 0) + 1
                return
            self.message_counts[channel[0]] = self.message_counts.get(channel[0], 0) + 1
            if topics is not None and channel[0] in topics:
                yield SalvagedMessage(channel[0], channel[1], log_time, cursor.rest())

    def _chunk(self, body: bytes, complete: bool, offset: int, topics: set[str] | None) -> Iterator[SalvagedMessage]:
        cursor = _Cursor(body)
        cursor.take(16)  # message start / end time
        uncompressed_size, crc = cursor.u64(), cursor.u32()
        compression = cursor.string()
        records_size = cursor.u64()
        records = cursor.rest()
        if not complete and compression != "":
            self._note(f"a {compression} chunk at byte {offset} is cut off by the end of the file; its messages are lost")
            return
        if complete:
            try:
                records = decompress(records[:records_size], compression)
            except Exception as error:
                self._note(f"chunk at byte {offset} could not be decompressed ({one_line(error)}); skipped")
                return
            if len(records) != uncompressed_size or (crc and zlib.crc32(records) != crc):
                self._note(f"chunk at byte {offset} failed its checksum; skipped")
                return
        inner = _Cursor(records)
        found = 0
        while inner.pos + 9 <= len(inner.data):
            op = inner.data[inner.pos]
            inner.pos += 1
            length = inner.u64()
            if inner.pos + length > len(inner.data):
                if complete:
                    self._note(f"chunk at byte {offset} holds a malformed record; rest of the chunk skipped")
                break
            try:
                for message in self._record(op, inner.take(length), topics):
                    found += 1
                    yield message
            except ValueError:
                self._note(f"malformed record in the chunk at byte {offset}; skipped")
        if not complete:
            self._note(f"the chunk at byte {offset} is cut off by the end of the file (truncated); "
                       f"its {found} complete message(s) on the topics read were kept")

    def scan(self, topics: set[str] | None = None) -> Iterator[SalvagedMessage]:
        """Messages of ``topics`` in file order (``None``: yield nothing, only count per topic)."""
        self.message_counts.clear()
        size = self.path.stat().st_size
        with self.path.open("rb") as handle:
            if handle.read(8) != MCAP_MAGIC:
                raise ValueError(f"{self.path} is not an MCAP file (bad magic bytes)")
            while True:
                offset = handle.tell()
                head = handle.read(9)
                if len(head) < 9:
                    self._note(f"file ends at byte {size} without the MCAP end records: truncated")
                    return
                op, length = head[0], struct.unpack("<Q", head[1:])[0]
                if op in (_OP_DATA_END, _OP_FOOTER):
                    return
                remaining = size - handle.tell()
                if op not in (_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK):
                    if length > remaining:
                        self._note(f"record at byte {offset} runs past the end of the file ({size} bytes): truncated")
                        return
                    handle.seek(length, 1)
                    continue
                body = handle.read(min(length, remaining))
                complete = len(body) == length
                try:
                    if op == _OP_CHUNK:
                        yield from self._chunk(body, complete, offset, topics)
                    elif complete:
                        yield from self._record(op, body, topics)
                except ValueError:
                    self._note(f"malformed record at byte {offset}; skipped")
                if not complete:
                    if op != _OP_CHUNK:
                        self._note(f"record at byte {offset} runs past the end of the file ({size} bytes): truncated")
                    return


# ----------------------------------------------------------------------------------- sqlite3
def _open_whole_pages(path: Path):
    """An apsw connection to ``path`` that sees only whole pages, with a matching page count."""
    import apsw

    header = path.open("rb").read(100)
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise ValueError(f"{path} is not an sqlite3 database")
    page_size = struct.unpack(">H", header[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    usable = path.stat().st_size // page_size * page_size
    patched_count = struct.pack(">I", usable // page_size)

    class WholePagesFile(apsw.VFSFile):
        def __init__(self, *_args: object) -> None:
            self.handle = path.open("rb")

        def xRead(self, amount: int, offset: int) -> bytes:
            amount = max(0, min(amount, usable - offset))
            self.handle.seek(offset)
            data = bytearray(self.handle.read(amount))
            if offset < 32 and offset + len(data) > 28:  # the "database size in pages" field
                for i in range(4):
                    if 0 <= 28 + i - offset < len(data):
                        data[28 + i - offset] = patched_count[i]
            return bytes(data)

        def xFileSize(self) -> int:
            return usable

        def xClose(self) -> None:
            self.handle.close()

        def xDeviceCharacteristics(self) -> int:
            return 0

        def xSectorSize(self) -> int:
            return 0

        def xFileControl(self, op: int, ptr: int) -> bool:
            return False

        def xLock(self, level: int) -> None:
            return None

        def xUnlock(self, level: int) -> None:
            return None

        def xCheckReservedLock(self) -> bool:
            return False

    name = f"mds-salvage-{next(_VFS_NUMBERS)}"

    class WholePagesVFS(apsw.VFS):
        def __init__(self) -> None:
            super().__init__(name, "")

        def xOpen(self, filename, flags):
            return WholePagesFile()

    vfs = WholePagesVFS()
    connection = apsw.Connection(f"file:{path}?immutable=1", flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI,
                                 vfs=name)
    return connection, vfs


class SqliteSalvage:
    """Read the intact messages of a damaged rosbag2 sqlite3 file (module docstring)."""

    def __init__(self, path: Path, notes: list[str]):
        self.path = Path(path)
        self.notes = notes
        self.connection, self._vfs = _open_whole_pages(self.path)
        try:
            rows = self.connection.execute("SELECT id, name, type FROM topics ORDER BY id").fetchall()
        except Exception as error:
            raise ValueError(f"{self.path}: the topics table is unreadable ({one_line(error)})") from error
        self.topics: dict[int, tuple[str, str]] = {int(i): (str(n), str(t)) for i, n, t in rows}

    def _note(self, text: str) -> None:
        self.notes.append(f"{self.path.name}: {text}")

    def _first_id_from(self, lowest: int) -> int | None:
        """The first message id >= ``lowest`` (None: there is none); raises where damage stops the lookup."""
        row = self.connection.execute("SELECT id FROM messages WHERE id >= ? ORDER BY id LIMIT 1", (lowest,)).fetchone()
        return None if row is None else int(row[0])

    def _lookup(self, lowest: int) -> tuple[bool, int | None]:
        """(whether the lookup of the first id >= ``lowest`` worked, that id)."""
        try:
            return True, self._first_id_from(lowest)
        except Exception:
            return False, None

    def _next_readable_id(self, last: int) -> int | None:
        """The first id after ``last`` from which reading works again, or None (nothing readable after it).

        Ids are looked up at ``last`` + 1, 2, 4, 8, ... (damaged pages cover a range of ids) until a lookup
        works; then the first bound that works is narrowed by bisection. At most about 2 x 64 lookups, however
        large the ids are, so a damaged file can never make this probe for long.
        """
        failed, step = last, 1
        while True:
            bound = last + step
            if bound > _MAX_ROWID:
                return None
            worked, found = self._lookup(bound)
            if worked:
                break
            failed, step = bound, step * 2
        if found is None:
            return None
        while bound - failed > 1:  # narrow: the smallest bound in (failed, bound] whose lookup works
            middle = (failed + bound) // 2
            worked, candidate = self._lookup(middle)
            if worked and candidate is not None:
                bound, found = middle, candidate
            else:
                failed = middle
        return found

    def _row_readable(self, row_id: int) -> bool:
        """Whether the whole row ``row_id`` (its data too, which may lie on overflow pages) can be read."""
        try:
            self.connection.execute("SELECT id, topic_id, timestamp, data FROM messages WHERE id = ?", (row_id,)).fetchone()
            return True
        except Exception:
            return False

    def scan(self, topics: set[str]) -> Iterator[SalvagedMessage]:
        """Messages of ``topics`` in ``id`` order; damaged rows and pages are noted and skipped.

        After a failure at id ``last`` the next id whose lookup works is found (:meth:`_next_readable_id`);
        a row that cannot be read whole there, or where reading failed again without getting past it,
        is skipped. Every failure gets reading past at least one id, and after
        :data:`_MAX_DAMAGED_RANGES` failures the rest of the file is given up.
        """
        wanted = {tid: info for tid, info in self.topics.items() if info[0] in topics}
        if not wanted:
            return
        last, failures, retried = 0, 0, None
        skipped: list[str] = []
        while True:
            try:
                cursor = self.connection.execute(
                    "SELECT id, topic_id, timestamp, data FROM messages WHERE id > ? ORDER BY id", (last,))
                for row_id, topic_id, timestamp, data in cursor:
                    last = int(row_id)
                    if topic_id in wanted:
                        topic, msgtype = wanted[topic_id]
                        yield SalvagedMessage(topic, msgtype, int(timestamp), bytes(data))
                break
            except Exception as error:
                failures += 1
                resume = self._next_readable_id(last) if failures <= _MAX_DAMAGED_RANGES else None
                if resume is None:
                    self._note(f"reading stopped after message id {last} ({one_line(error)}); "
                               f"nothing after it could be read")
                    break
                if resume == retried or not self._row_readable(resume):
                    skipped.append(f"{last + 1}..{resume}" if resume > last + 1 else f"{resume}")
                    last = resume
                else:
                    if resume > last + 1:
                        skipped.append(f"{last + 1}..{resume - 1}")
                    retried, last = resume, resume - 1
                if len(skipped) == 1:
                    self._note(f"damaged pages: message id(s) {skipped[0]} unreadable ({one_line(error)}); skipped")
        if len(skipped) > 1:
            shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
            self._note(f"{len(skipped)} damaged stretches skipped in all (message ids {shown})")

    def close(self) -> None:
        self.connection.close()
        self._vfs.unregister()
