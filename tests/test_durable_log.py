"""The journaled memory log (stream/durable.py) and the memory log's byte bound: what survives
a restart, what is refused, what a failing disk costs, and what history really weighs."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest

from swimctl.stream.base import Draft, LogEvent
from swimctl.stream.durable import STATE_FILE, DurableLog, StateDirError
from swimctl.stream.memory import MemoryLog

BOOT = "boot-a"


def opened(path: Path, boot: str = BOOT, **bounds: Any) -> tuple[DurableLog, list[LogEvent]]:
    log = DurableLog(path, boot_id=boot, **bounds)
    delivered: list[LogEvent] = []
    log.set_delivery(delivered.extend)
    return log, delivered


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("journal-*.jsonl"))


async def test_a_reopened_log_continues_its_epoch_seq_history_and_ids(tmp_path: Path) -> None:
    log, _ = opened(tmp_path)
    for i in range(10):
        await log.append(Draft("ctp.n", {"i": i}, event_id=f"id-{i}" if i % 2 else None))
    epoch = log.epoch
    log.close(clean=False)  # as after kill -9: no clean mark, same boot
    again, delivered = opened(tmp_path)
    assert (again.epoch, again.head, again.held, again.recovered) == (epoch, 10, 10, 10)
    assert [e.data["i"] for e in again.since(epoch, 6) or []] == [6, 7, 8, 9]
    assert (await again.append(Draft("ctp.n", {"i": 99}, event_id="id-3"))).duplicate
    assert (await again.append(Draft("ctp.n", {"i": 10}))).seq == 11
    assert [e.seq for e in delivered] == [11]
    again.close()
    third, _ = opened(tmp_path, boot="boot-b")  # closed cleanly: a reboot changes nothing
    assert (third.epoch, third.head) == (epoch, 11)
    third.close()


async def test_unclean_stop_then_a_reboot_opens_a_new_epoch(tmp_path: Path) -> None:
    log, _ = opened(tmp_path)
    await log.append(Draft("ctp.n", {}))
    epoch = log.epoch
    log.close(clean=False)
    again, _ = opened(tmp_path, boot="boot-b")
    assert again.epoch != epoch and again.head == 0 and not segments(tmp_path)
    again.close()


async def test_a_torn_last_record_is_cut_and_damage_elsewhere_is_not_trusted(
        tmp_path: Path) -> None:
    log, _ = opened(tmp_path)
    for i in range(5):
        await log.append(Draft("ctp.n", {"i": i}))
    epoch = log.epoch
    log.close(clean=False)
    [journal] = segments(tmp_path)
    whole = journal.read_bytes()
    with journal.open("ab") as handle:
        handle.write(b"0badc0de 0 1 {\"type\":")  # the process died inside a write
    again, _ = opened(tmp_path)
    assert (again.epoch, again.head) == (epoch, 5)
    assert journal.read_bytes() == whole
    assert (await again.append(Draft("ctp.n", {"i": 5}))).seq == 6
    again.close(clean=False)
    lines = journal.read_bytes().split(b"\n")
    lines[2] = lines[2].replace(b'"i":2', b'"i":7')  # a flipped byte in the middle
    journal.write_bytes(b"\n".join(lines))
    third, _ = opened(tmp_path)
    assert third.epoch != epoch and third.head == 0
    third.close()


async def test_a_second_hub_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    log, _ = opened(tmp_path)
    with pytest.raises(StateDirError, match="in use by another hub"):
        DurableLog(tmp_path)
    log.close()
    DurableLog(tmp_path).close()  # free again


def test_an_unwritable_directory_is_one_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("not a directory")
    with pytest.raises(StateDirError, match="state directory"):
        DurableLog(target)


async def test_a_failing_write_keeps_serving_and_forgets_the_state(tmp_path: Path) -> None:
    problems: list[str] = []

    class Trouble:
        def fail(self, problem: str, consequence: str = "") -> None:
            problems.append(f"{problem}; {consequence}")

    log = DurableLog(tmp_path, boot_id=BOOT, trouble=Trouble())
    delivered: list[LogEvent] = []
    log.set_delivery(delivered.extend)
    await log.append(Draft("ctp.n", {"i": 0}))
    assert log._fd is not None
    os.close(log._fd)  # the journal's descriptor goes bad under it (EBADF on write)
    for i in range(1, 4):
        await log.append(Draft("ctp.n", {"i": i}))
    assert [e.seq for e in delivered] == [1, 2, 3, 4] and log.held == 4
    assert len(problems) == 1 and "next start opens a new epoch" in problems[0]
    assert not (tmp_path / STATE_FILE).exists()
    epoch = log.epoch
    log._fd = None
    log.close()
    again, _ = opened(tmp_path)
    assert again.epoch != epoch and again.head == 0
    again.close()


async def test_disk_use_follows_the_history_bounds(tmp_path: Path) -> None:
    payload = "x" * 60_000
    log, _ = opened(tmp_path, history_bytes=4 << 20)  # segments of 1 MiB
    for i in range(400):  # 24 MB published
        await log.append(Draft("ctp.big", {"i": i, "pad": payload}))
    assert log.held_bytes <= 4 << 20
    on_disk = sum(p.stat().st_size for p in segments(tmp_path))
    assert on_disk == log.disk_bytes
    assert on_disk <= (4 << 20) + 2 * (1 << 20), on_disk
    first = log.since(log.epoch, log.head - log.held)
    assert first is not None and len(first) == log.held
    log.close(clean=False)
    again, _ = opened(tmp_path, history_bytes=4 << 20)
    assert again.head == 400 and again.held == log.held
    again.close()


def rss_bytes() -> int:
    fields = Path("/proc/self/statm").read_text().split()
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_history_is_bounded_by_payload_bytes_and_real_memory_follows() -> None:
    """Issue 19 item 11: 10,000 publishes of 60 KB against a 64 MiB byte bound."""
    bound = 64 << 20
    log = MemoryLog(history_bytes=bound)
    log.set_delivery(lambda events: [e.frame() for e in events])  # as fan-out would
    gc.collect()
    before = rss_bytes()
    for i in range(10_000):
        await log.append(Draft("ctp.big", {"i": i, "pad": f"{i:08d}" * 7_500}))
    gc.collect()
    grown = rss_bytes() - before
    assert log.held_bytes <= bound and log.held < 10_000
    assert log.since(log.epoch, log.head - log.held) is not None
    assert log.since(log.epoch, log.head - log.held - 1) is None
    assert grown < 2 * bound, f"history costs {grown / 2**20:.0f} MiB for {bound >> 20} MiB"
    oldest = log.since(log.epoch, log.head - log.held) or []
    assert oldest[0].data["i"] == 10_000 - log.held  # compacted, decoded again on demand
