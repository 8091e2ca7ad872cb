"""The TMI lifecycle rules of core/tmi.py, without a hub."""

from __future__ import annotations

import datetime as dt

import pytest

from swimctl.core.tmi import TmiBook, TmiError, prepare_publish

GS = {"program_id": "GS-KJFK-1", "program_type": "GS", "airport": "kjfk",
      "start_time": "2026-11-26T18:00:00Z", "end_time": "2026-11-26T20:00:00Z",
      "reason": "WX"}


def test_issue_then_modify_release_carries_the_full_record() -> None:
    book = TmiBook()
    issued = prepare_publish(book, "tmi.issued", GS)
    assert issued["airport"] == "KJFK" and issued["status"] == "ACTIVE"
    book.apply("tmi.issued", issued)
    with pytest.raises(TmiError, match="already active"):
        prepare_publish(book, "tmi.issued", GS)
    modified = prepare_publish(book, "tmi.modified", {"program_id": "GS-KJFK-1",
                                                      "reason": "STORM"})
    assert modified["airport"] == "KJFK" and modified["reason"] == "STORM"
    book.apply("tmi.modified", modified)
    released = prepare_publish(book, "tmi.released", {"program_id": "GS-KJFK-1"})
    assert released["status"] == "RELEASED" and released["end_time"] == GS["end_time"]
    cancelled = prepare_publish(book, "tmi.released", {"program_id": "GS-KJFK-1",
                                                       "status": "CANCELLED"})
    assert cancelled["status"] == "CANCELLED"
    book.apply("tmi.released", released)
    assert book.active() == []
    with pytest.raises(TmiError, match="no active program"):
        prepare_publish(book, "tmi.modified", {"program_id": "GS-KJFK-1"})


def test_expiry_is_due_at_end_time() -> None:
    book = TmiBook()
    book.apply("tmi.issued", prepare_publish(book, "tmi.issued", GS))
    end = dt.datetime(2026, 11, 26, 20, tzinfo=dt.UTC)
    assert book.due(end - dt.timedelta(seconds=1)) == []
    assert [p["program_id"] for p in book.due(end)] == ["GS-KJFK-1"]
