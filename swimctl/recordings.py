"""Event files (PROTOCOL.md section 7): JSON Lines, one envelope per line, optionally gzip.

Writers flush after every write so a reader (or a crash) sees every complete line; for gzip
that is a sync flush, which keeps the stream decodable up to the last flushed line even when the
process dies before writing the gzip trailer. Readers never stop on a bad line: they count it,
remember the first few with their line numbers, and read a truncated or corrupted gzip tail as
far as it decodes, then say so in the report.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs

from swimctl.core.channels import READ_ANY_FAMILY
from swimctl.core.model import Envelope, EnvelopeError, dumps, envelope_from_line
from swimctl.hub.sources.events_file import LineSplitter

READ_CHUNK = 1 << 16
BAD_SAMPLES = 5
MAX_LINE = 1 << 20  # a "line" this long without a newline is garbage


def is_gzip_path(path: str | os.PathLike[str]) -> bool:
    return str(path).endswith(".gz")


# -- writing ---------------------------------------------------------------------------------


class EventWriter:
    """Appends encoded envelopes to a `.jsonl` or `.jsonl.gz` file, flushed per write call.

    Appending to an existing `.gz` adds a gzip member; readers (ours and gzip's) read every
    member in turn, so a restarted recorder continues the same hourly file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw: IO[bytes] = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self._gz: gzip.GzipFile | None = None
        if is_gzip_path(self.path):
            self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)
        self.lines = 0

    def write_payloads(self, payloads: Iterable[bytes]) -> int:
        """Write already-encoded envelopes (no newline), one per line, then flush."""
        buf = bytearray()
        count = 0
        for payload in payloads:
            buf += payload
            buf += b"\n"
            count += 1
        if count:
            (self._gz or self._raw).write(bytes(buf))
            self.flush()
            self.lines += count
        return count

    def write(self, envelope: Envelope | dict[str, Any] | bytes) -> None:
        """One event, one line, flushed."""
        if isinstance(envelope, Envelope):
            payload = envelope.encode()
        elif isinstance(envelope, bytes):
            payload = envelope
        else:
            payload = dumps(envelope)
        self.write_payloads([payload])

    def flush(self) -> None:
        if self._gz is not None:
            self._gz.flush(zlib.Z_SYNC_FLUSH)
        self._raw.flush()

    def close(self) -> None:
        """Finish the gzip member (trailer) and close; safe to call twice."""
        try:
            if self._gz is not None:
                self._gz.close()
        finally:
            self._raw.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemberWriter:
    """Appends batches to a `.jsonl.gz` file, each batch one complete gzip member.

    The hub's recorder uses this instead of one sync-flushed member: a file then ends at a
    member boundary after every write, so a `kill -9` leaves it readable by `zcat` and
    `gzip -t`, and a restart appends cleanly. A write that fails part-way (a full disk) is cut
    back off, so a failed write leaves the file as it was. The cost is a reset compression
    window per member: a few percent at a batch every 0.1 s.
    """

    def __init__(self, path: str | os.PathLike[str], *, compresslevel: int = 6) -> None:
        self.path = Path(path)
        self.compresslevel = compresslevel
        self.lines = 0
        self.torn = False  # a failed write could not be cut back off: reopen (and repair)
        self.repair: RepairReport | None = None
        if self.path.exists():
            self.repair = repair_gzip_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write_payloads(self, payloads: Iterable[bytes]) -> int:
        """Write already-encoded envelopes as one member; all of it lands or none of it."""
        lines = list(payloads)
        if not lines:
            return 0
        member = gzip.compress(b"\n".join(lines) + b"\n", self.compresslevel, mtime=0)
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(member)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError:
            # Cut the part-written member off; if even that fails, the next open repairs it.
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                self.torn = True
            raise
        self.lines += len(lines)
        return len(lines)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


@attrs.define
class RepairReport:
    """What `repair_gzip_tail` did to a file that did not end at a member boundary."""

    kept_bytes: int = 0  # the clean prefix, left untouched
    cut_bytes: int = 0  # the damaged tail that was replaced
    salvaged_lines: int = 0  # complete lines of that tail, rewritten as one member

    @property
    def changed(self) -> bool:
        return self.cut_bytes > 0


def clean_gzip_prefix(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(bytes of whole, valid gzip members at the start of the file, file size)."""
    good = 0
    pos = 0
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        d = zlib.decompressobj(wbits=31)
        while True:
            chunk = handle.read(READ_CHUNK)
            if not chunk:
                break
            data = chunk
            while data:
                try:
                    d.decompress(data)
                except zlib.error:
                    return good, size
                if not d.eof:
                    pos += len(data)
                    break
                rest = d.unused_data
                pos += len(data) - len(rest)
                good = pos
                d = zlib.decompressobj(wbits=31)
                if rest and not rest.strip(b"\x00"):
                    pos += len(rest)
                    good = pos  # zero padding after a member is allowed
                    rest = b""
                data = rest
    return good, size


def repair_gzip_tail(path: str | os.PathLike[str]) -> RepairReport:
    """Make a `.gz` file end at a member boundary again, losing nothing a reader could read.

    A writer killed part-way leaves an incomplete member (or, from older versions, an
    unterminated one with more members after it). The damaged tail is decoded as far as it
    goes, its complete lines rewritten as one new member, and the file cut to its clean prefix
    plus that member. A file that already ends cleanly is not touched.
    """
    path = Path(path)
    good, size = clean_gzip_prefix(path)
    if good == size:
        return RepairReport(kept_bytes=good)
    decoder = GzipDecoder()
    splitter = LineSplitter()
    salvage = path.with_name(path.name + ".repair")
    lines = 0
    with open(path, "rb") as src, open(salvage, "wb") as raw:
        src.seek(good)
        with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
            for chunk in _chunks(src):
                for line, _ in splitter.feed(decoder.feed(chunk)):
                    if line.strip():
                        out.write(line + b"\n")
                        lines += 1
            for line, _ in splitter.feed(decoder.finish()):
                if line.strip():
                    out.write(line + b"\n")
                    lines += 1
    with open(path, "r+b") as dst, open(salvage, "rb") as src:
        dst.truncate(good)
        dst.seek(good)
        if lines:
            for chunk in _chunks(src):
                dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    salvage.unlink()
    return RepairReport(kept_bytes=good, cut_bytes=size - good, salvaged_lines=lines)


# -- reading ---------------------------------------------------------------------------------


@attrs.define
class ReadReport:
    """What a reader saw: good events, bad lines (first few kept), and how the file ended."""

    path: str = ""
    lines: int = 0
    events: int = 0
    bad: int = 0
    samples: list[tuple[int, str]] = attrs.field(factory=list)
    tail_error: str | None = None  # truncated / corrupted compressed tail
    bytes_read: int = 0  # raw (compressed) bytes consumed: position for progress bars
    size: int = 0

    def add_bad(self, line_no: int, reason: str) -> None:
        self.bad += 1
        if len(self.samples) < BAD_SAMPLES:
            self.samples.append((line_no, reason))

    def summary(self) -> str:
        """One or two lines a user can act on."""
        text = f"{self.path}: {self.events} events"
        if self.bad:
            where = ", ".join(f"line {n} ({why})" for n, why in self.samples)
            more = f" and {self.bad - len(self.samples)} more" if self.bad > len(self.samples) \
                else ""
            text += f", {self.bad} bad line(s) skipped: {where}{more}"
        if self.tail_error:
            text += f"; {self.tail_error}"
        return text


class GzipDecoder:
    """Incremental multi-member gzip decoding (pure). Keeps what decoded before an error.

    After corrupt data (say a recorder killed mid-member, then restarted and appending a new
    member), it skips to the next gzip header and goes on, so one bad spot costs only the lines
    inside it.
    """

    MAGIC = b"\x1f\x8b\x08"

    def __init__(self) -> None:
        self._d = zlib.decompressobj(wbits=31)
        self._started = False  # the current member has consumed input
        self._searching = False
        self._carry = b""
        self.error: str | None = None
        self.skipped_sections = 0

    def feed(self, chunk: bytes) -> bytes:
        out = bytearray()
        data = chunk
        while data:
            if self._searching:
                data = self._carry + data
                at = data.find(self.MAGIC)
                if at < 0:
                    self._carry = data[-2:]
                    return bytes(out)
                self._carry = b""
                self._searching = False
                data = data[at:]
            piece, data = data[:self.SLICE], data[self.SLICE:]
            rest = self._decode(piece, out)
            if rest is not None:
                data = rest + data
        return bytes(out)

    SLICE = 4096

    def _decode(self, piece: bytes, out: bytearray) -> bytes | None:
        """Decode one slice into `out`; returns input left over (after a member's end, or
        after corrupt data, then in search mode), else None. zlib drops a call's output when
        it raises, so on error the slice is re-fed byte by byte from a copy to keep every
        byte that decodes before the bad spot."""
        snapshot = self._d.copy()
        fresh = not self._started
        try:
            out += self._d.decompress(piece)
        except zlib.error:
            self._d = snapshot
            for i in range(len(piece)):
                try:
                    out += self._d.decompress(piece[i : i + 1])
                except zlib.error as exc:
                    # The failing byte may be the next member's header (a writer that died
                    # mid-member, then appended): search from it, unless it is where we began.
                    skip = 1 if fresh and i == 0 else 0
                    self.skipped_sections += 1
                    self.error = f"corrupted compressed data skipped ({exc})"
                    self._d = zlib.decompressobj(wbits=31)
                    self._started = False
                    self._searching = True
                    return piece[i + skip :] or None
                fresh = False
                self._started = True
                if self._d.eof:
                    return self._next_member(self._d.unused_data + piece[i + 1 :])
            return None
        self._started = True
        if self._d.eof:
            return self._next_member(self._d.unused_data)
        return None

    def _next_member(self, rest: bytes) -> bytes | None:
        self._d = zlib.decompressobj(wbits=31)
        self._started = False
        if not rest.strip(b"\x00"):
            return None  # zero padding after the last member is allowed
        return rest

    def finish(self) -> bytes:
        """Flush at end of input; note a member that never reached its end."""
        try:
            out = self._d.flush()
        except zlib.error:
            out = b""
        if self._started and not self._d.eof:
            self.error = "the gzip stream ends without its trailer (still being written, or " \
                "cut off): read everything before the cut"
        return out


def decode_events(
    chunks: Iterable[bytes], report: ReadReport, *, gz: bool = False
) -> Iterator[tuple[int, Envelope]]:
    """Raw file chunks in, (line number, envelope) out; bad lines go to `report` (pure)."""
    decoder = GzipDecoder() if gz else None
    splitter = LineSplitter()
    line_no = 0
    discarding = False  # inside an oversized line: drop bytes up to its newline

    def handle(lines: list[tuple[bytes, int]]) -> Iterator[tuple[int, Envelope]]:
        nonlocal line_no
        for line, _ in lines:
            line_no += 1
            report.lines += 1
            if not line.strip():
                continue
            try:
                env = envelope_from_line(line, READ_ANY_FAMILY)
            except EnvelopeError as exc:
                report.add_bad(line_no, str(exc))
                continue
            report.events += 1
            yield line_no, env

    for chunk in chunks:
        report.bytes_read += len(chunk)
        data = decoder.feed(chunk) if decoder is not None else chunk
        if discarding:
            cut = data.find(b"\n")
            if cut < 0:
                continue
            data = data[cut + 1 :]
            discarding = False
        yield from handle(splitter.feed(data))
        if len(splitter.buffer) > MAX_LINE:
            line_no += 1
            report.lines += 1
            report.add_bad(line_no, f"longer than {MAX_LINE} bytes")
            splitter.buffer.clear()
            discarding = True
    if decoder is not None:
        yield from handle(splitter.feed(decoder.finish()))
        report.tail_error = decoder.error
    tail = bytes(splitter.buffer)
    if tail.strip():
        # The last line has no newline: fine when it parses, else it was cut off.
        line_no += 1
        report.lines += 1
        try:
            env = envelope_from_line(tail, READ_ANY_FAMILY)
        except EnvelopeError as exc:
            report.add_bad(line_no, f"truncated last line ({exc})")
        else:
            report.events += 1
            yield line_no, env


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = handle.read(READ_CHUNK)
        if not chunk:
            return
        yield chunk


def read_events(
    path: str | os.PathLike[str], report: ReadReport | None = None
) -> Iterator[tuple[int, Envelope]]:
    """Every readable event of a file, lazily; pass a ReadReport to learn what was skipped."""
    report = report if report is not None else ReadReport()
    report.path = str(path)
    with open(path, "rb") as handle:
        report.size = os.fstat(handle.fileno()).st_size
        yield from decode_events(_chunks(handle), report, gz=is_gzip_path(path))
