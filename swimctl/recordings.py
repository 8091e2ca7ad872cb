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
                env = envelope_from_line(line)
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
            env = envelope_from_line(tail)
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
