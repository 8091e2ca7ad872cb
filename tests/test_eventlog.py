"""Event files: what the writer flushes is readable at once; bad lines and broken gzip tails
cost only themselves."""

from __future__ import annotations

import gzip
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from swimctl.core.model import Envelope
from swimctl.recordings import EventWriter, GzipDecoder, ReadReport, decode_events, read_events

TS = "2026-11-26T18:30:02.512Z"


def env(i: int) -> Envelope:
    return Envelope("flight.departed", TS, {"callsign": f"AAL{i}", "n": i}, seq=i,
                    event_id=f"e-{i}")


def test_plain_roundtrip_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with EventWriter(path) as writer:
        for i in range(1, 4):
            writer.write(env(i))
    with open(path, "ab") as raw:
        raw.write(b"not json\n\n")
        raw.write(b'{"type":"nope","timestamp":"x","data":{}}\n')
        raw.write(env(4).encode() + b"\n")
        raw.write(b'{"type":"flight.deleted","timest')  # cut off mid-line
    report = ReadReport()
    got = list(read_events(path, report))
    assert [(n, e.seq) for n, e in got] == [(1, 1), (2, 2), (3, 3), (7, 4)]
    assert got[0][1] == env(1)
    assert report.bad == 3
    assert [n for n, _ in report.samples] == [4, 6, 8]
    assert "line 4" in report.summary() and "truncated last line" in report.summary()


def test_gzip_is_readable_while_open_and_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl.gz"
    writer = EventWriter(path)
    for i in range(1, 101):
        writer.write(env(i))
    report = ReadReport()
    assert len(list(read_events(path, report))) == 100  # no trailer yet: all flushed lines
    assert report.tail_error is not None
    writer._raw.close()  # the process died here: the member has no trailer
    with EventWriter(path) as again:  # restarted writer appends a new member
        for i in range(101, 151):
            again.write(env(i))
    report = ReadReport()
    assert [e.seq for _, e in read_events(path, report)] == list(range(1, 151))
    # A clean file reads with the standard library too.
    clean = tmp_path / "c.jsonl.gz"
    with EventWriter(clean) as writer:
        writer.write(env(1))
    assert gzip.decompress(clean.read_bytes()) == env(1).encode() + b"\n"


def test_truncated_gzip_tail_keeps_everything_before_it(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl.gz"
    with EventWriter(path) as writer:
        writer.write_payloads(env(i).encode() for i in range(1, 2001))
    data = path.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    report = ReadReport()
    seqs = [e.seq for _, e in read_events(cut, report)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) > 1000
    assert report.tail_error and "trailer" in report.tail_error


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=40), st.integers(1, 5000),
       st.data())
def test_decoder_any_chunking_any_cut(values: list[int], chunk: int, data: st.DataObject) -> None:
    import io

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        for v in values:
            gz.write(env(v).encode() + b"\n")
    raw = buf.getvalue()
    cut = data.draw(st.integers(0, len(raw)))
    raw = raw[:cut]
    report = ReadReport()
    chunks = [raw[i : i + chunk] for i in range(0, len(raw), chunk)]
    got = [e.seq for _, e in decode_events(chunks, report, gz=True)]
    assert got == values[: len(got)]  # a prefix, never garbage, never an exception
    assert GzipDecoder().feed(b"") == b""
