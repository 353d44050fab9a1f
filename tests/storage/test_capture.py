"""Capture files: exact round trips, NaN → null, precise errors, fast bulk load."""

from __future__ import annotations

import gzip
import logging
import math
import time
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbkit.storage.capture import (
    CaptureError,
    CaptureEvent,
    CaptureWriter,
    ibkr_line,
    kalshi_line,
    load_capture,
    read_capture,
)
from arbkit.storage.capture import _parse_line as parse_line

RAW = [
    '{"type":"orderbook_snapshot","sid":1,"seq":1,"msg":{"market_ticker":"FED-25DEC",'
    '"yes_dollars_fp":[["0.4100","10.00"]]}}',
    '{ "type" : "orderbook_delta" ,\t"seq": 2,\n "msg": {"note": "naïve — 東京 🚀", '
    '"esc": "\\u00e9\\n", "price_dollars": "0.4200"} }\r\n',
    "   leading and trailing spaces   ",
    "",
]


@pytest.mark.parametrize("name", ["cap.jsonl", "cap.jsonl.gz"])
async def test_round_trip_plain_and_gzip(tmp_path: Path, name: str) -> None:
    path = tmp_path / "captures" / name
    w = CaptureWriter(path)
    w.start()
    for n, raw in enumerate(RAW):
        assert w.record_kalshi(raw, 1_700_000_000_000_000_000 + n)
    ib = {"conId": 754_123_456, "bid": 0.57, "bidSize": 12.0, "ask": 0.59, "askSize": 3.0}
    assert w.record_ibkr(ib, 1_700_000_000_000_000_100)
    await w.close()
    assert (w.stats.recorded, w.stats.written, w.stats.dropped, w.stats.errors) == (5, 5, 0, 0)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")

    events = load_capture(path)
    assert [e.raw for e in events[:4]] == RAW  # the exact text, byte for byte
    assert [e.t for e in events] == [1_700_000_000_000_000_000 + n for n in range(4)] + [
        1_700_000_000_000_000_100
    ]
    assert events[4] == CaptureEvent(
        1_700_000_000_000_000_100, "ibkr", None, 754_123_456, 0.57, 12.0, 0.59, 3.0
    )
    assert list(read_capture(path)) == events


def test_line_format_is_the_contract() -> None:
    assert kalshi_line('{"a": 1}', 5) == b'{"t":5,"venue":"kalshi","raw":"{\\"a\\": 1}"}\n'
    ev = {"conId": 7, "bid": math.nan, "bidSize": Decimal("0"), "ask": 0.6, "askSize": math.inf}
    with pytest.raises(TypeError, match="receive time"):
        kalshi_line("x", 1.5)  # type: ignore[arg-type]
    assert ibkr_line(ev, 6) == (
        b'{"t":6,"venue":"ibkr","conId":7,"bid":null,"bidSize":0,"ask":0.6,"askSize":null}\n'
    )


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_any_raw_text_round_trips(raw: str) -> None:
    line = kalshi_line(raw, 1)
    assert line.count(b"\n") == 1  # one event per line whatever the text holds
    assert parse_line(line, "mem", 1).raw == raw


async def test_nan_becomes_null(tmp_path: Path) -> None:
    path = tmp_path / "nan.jsonl"
    async with CaptureWriter(path) as w:
        w.record_ibkr(
            {"conId": 1, "bid": math.nan, "bidSize": math.nan, "ask": 0.3, "askSize": 5}, 9
        )
        w.record_ibkr({"conId": 2, "bid": -math.inf, "ask": None}, 10)  # absent keys → null
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    a, b = load_capture(path)
    assert (a.bid, a.bid_size, a.ask, a.ask_size) == (None, None, 0.3, 5)
    assert (b.con_id, b.bid, b.bid_size, b.ask, b.ask_size) == (2, None, None, None, None)


BAD_LINES = [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'{"venue": "kalshi", "raw": "x"}', "t"),
    (b'{"t": 1.5, "venue": "kalshi", "raw": "x"}', "t"),
    (b'{"t": 1, "venue": "polymarket", "raw": "x"}', "venue"),
    (b'{"t": 1, "venue": "kalshi", "raw": {"type": "x"}}', "raw"),
    (
        b'{"t": 1, "venue": "ibkr", "conId": "7", "bid": 1, "bidSize": 1, "ask": 1, "askSize": 1}',
        "conId",
    ),
    (b'{"t": 1, "venue": "ibkr", "conId": 7, "bid": 0.5, "ask": 0.6, "askSize": 1}', "bidSize"),
    (
        b'{"t":1,"venue":"ibkr","conId":7,"bid":"0.5","bidSize":1,"ask":1,"askSize":1}',
        "bid",
    ),
    (
        b'{"t": 1, "venue": "ibkr", "conId": 7, "bid": true, "bidSize": 1, "ask": 1, "askSize": 1}',
        "bid",
    ),
]
GOOD = kalshi_line("ok", 1)


@pytest.mark.parametrize(("line", "field"), BAD_LINES)
def test_malformed_line_names_file_line_and_field(
    tmp_path: Path, line: bytes, field: str | None
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(GOOD + b"\n" + line + b"\n" + GOOD)  # blank line 2 is fine
    with pytest.raises(CaptureError) as info:
        load_capture(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    assert str(err).startswith(f"{path}:3: ")
    if field:
        assert f"field {field!r}" in str(err)


def test_skip_mode_counts_and_keeps_the_good(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"".join(GOOD + line + b"\n" for line, _ in BAD_LINES) + GOOD)
    reader = read_capture(path, on_error="skip")
    events = list(reader)
    assert len(events) == len(BAD_LINES) + 1
    assert reader.skipped == len(BAD_LINES) and reader.lines == 2 * len(BAD_LINES) + 1
    assert [e.line for e in reader.errors] == [2 * n + 2 for n in range(len(BAD_LINES))]
    assert [e.field for e in reader.errors] == [f for _, f in BAD_LINES]
    with pytest.raises(ValueError):
        read_capture(path, on_error="ignore")  # type: ignore[arg-type]


def test_crashed_recorder_truncated_files(tmp_path: Path) -> None:
    """A recorder killed mid-write: the complete events are still readable."""
    lines = b"".join(kalshi_line(f"m{n}", n) for n in range(50))
    gz = tmp_path / "cut.jsonl.gz"
    gz.write_bytes(gzip.compress(lines)[:-8])  # no gzip trailer
    reader = read_capture(gz, on_error="skip")
    assert [e.raw for e in reader] == [f"m{n}" for n in range(50)]
    assert reader.skipped == 1 and "truncated" in reader.errors[0].problem
    with pytest.raises(CaptureError, match="truncated"):
        load_capture(gz)
    plain = tmp_path / "cut.jsonl"
    plain.write_bytes(lines[:-7])  # half a last line
    reader = read_capture(plain, on_error="skip")
    assert len(list(reader)) == 49 and reader.skipped == 1 and reader.errors[0].line == 50


async def test_writer_never_clobbers_and_can_append(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    async with CaptureWriter(path) as w:
        w.record_kalshi("one", 1)
    with pytest.raises(FileExistsError):
        CaptureWriter(path).start()
    async with CaptureWriter(path, if_exists="append") as w:
        w.record_kalshi("two", 2)
    assert [e.raw for e in load_capture(path)] == ["one", "two"]
    async with CaptureWriter(path, if_exists="overwrite") as w:
        w.record_kalshi("three", 3)
    assert [e.raw for e in load_capture(path)] == ["three"]


async def test_full_queue_and_bad_events_are_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = CaptureWriter(tmp_path / "q.jsonl", max_queue=2)  # not started: nothing drains
    with caplog.at_level(logging.WARNING, logger="arbkit.storage.capture"):
        assert w.record_kalshi("a", 1)
        assert w.record_ibkr({"conId": "not-an-int"}, 2)  # accepted, fails to serialise
        assert not w.record_kalshi("c", 3)
        w.start()
        await w.close()
        assert not w.record_kalshi("d", 4)  # closed: dropped, reported
    assert (w.stats.recorded, w.stats.written, w.stats.dropped, w.stats.errors) == (2, 1, 2, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert any("queue full" in m for m in messages)
    assert any("not recorded" in m for m in messages)
    assert [e.raw for e in load_capture(tmp_path / "q.jsonl")] == ["a"]


async def test_writer_keeps_up_and_load_is_fast(tmp_path: Path) -> None:
    """100k events through the writer and back; timing is printed, not asserted."""
    path = tmp_path / "big.jsonl.gz"
    raw = RAW[0]
    t0 = time.perf_counter()
    async with CaptureWriter(path, flush_interval_ms=20) as w:
        for n in range(50_000):
            w.record_kalshi(raw, n)
            w.record_ibkr({"conId": 5, "bid": 0.41, "bidSize": 3.0, "ask": 0.43, "askSize": 1.0}, n)
    t_write = time.perf_counter() - t0
    assert w.stats.written == 100_000 and w.stats.dropped == 0
    t0 = time.perf_counter()
    events = load_capture(path)
    t_load = time.perf_counter() - t0
    assert len(events) == 100_000 and events[-1].con_id == 5 and events[-2].raw == raw
    print(f"100k events: record+write {t_write:.2f}s, load {t_load:.2f}s")
