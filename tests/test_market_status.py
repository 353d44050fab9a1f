"""Market state and close times from both venues (normalizers/market_status.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from arbkit.model import Venue
from arbkit.normalizers.market_status import (
    KALSHI_LIFECYCLE,
    KALSHI_STATUS,
    MarketClock,
    MarketStatus,
    ibkr_last_trade_ns,
    ibkr_sessions,
)

NS = 1_000_000_000


def ns(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: str = "UTC") -> int:
    from zoneinfo import ZoneInfo

    return int(dt.datetime(y, mo, d, h, mi, tzinfo=ZoneInfo(tz)).timestamp()) * NS


def test_ibkr_last_trade_time_in_the_contracts_zone() -> None:
    # 10:00 Central in June is 15:00 UTC (CDT); both spellings of the field agree
    assert ibkr_last_trade_ns("20270629", "10:00:00", "US/Central") == ns(2027, 6, 29, 15)
    assert ibkr_last_trade_ns("20270629 10:00:00 US/Central", "", "") == ns(2027, 6, 29, 15)
    assert ibkr_last_trade_ns("20270629", "", "UTC") == ns(2027, 6, 29, 23, 59) + 59 * NS
    with pytest.raises(ValueError, match="time zone"):
        ibkr_last_trade_ns("20270629", "10:00:00", "Mars/Olympus")


def test_ibkr_trading_hours_sessions() -> None:
    s = ibkr_sessions(
        "20261203:0700-20261203:1600;20261204:CLOSED;20261205:0700-20261205:1600", "US/Central"
    )
    assert s == [
        (ns(2026, 12, 3, 7, tz="US/Central"), ns(2026, 12, 3, 16, tz="US/Central")),
        (ns(2026, 12, 5, 7, tz="US/Central"), ns(2026, 12, 5, 16, tz="US/Central")),
    ]
    assert ibkr_sessions("", "US/Central") == []


def test_market_clock_uses_the_earlier_close_and_blocks_any_non_open_state() -> None:
    c = MarketClock(
        kalshi_status=MarketStatus.OPEN,
        kalshi_close_ns=ns(2027, 6, 30, 18),
        ibkr_close_ns=ns(2027, 6, 29, 15),
        ibkr_known=True,
    )
    assert c.close_ns() == ns(2027, 6, 29, 15)
    assert c.tradable(ns(2027, 6, 1)) == (True, "")
    assert c.tradable(ns(2027, 6, 29, 16)) == (False, "ibkr market closed")
    c.kalshi_status = MarketStatus.PAUSED
    assert c.tradable(ns(2027, 6, 1)) == (False, "kalshi market paused")
    c.kalshi_status = MarketStatus.OPEN
    assert c.status(Venue.KALSHI, ns(2027, 6, 30, 18)) is MarketStatus.CLOSED  # by the clock
    c.ibkr_sessions = [(ns(2027, 6, 1, 12), ns(2027, 6, 1, 21))]
    assert c.tradable(ns(2027, 6, 1, 22)) == (False, "ibkr market paused")  # out of hours
    c.ibkr_hours_listed = False  # TWS gave no trading hours: a settled contract
    assert c.tradable(ns(2027, 6, 1, 13)) == (False, "ibkr market closed")
    assert not MarketClock().tradable(0)[0]  # nothing known: not open


def test_status_tables_cover_the_spec_enums() -> None:
    rest = ["initialized", "inactive", "active", "closed", "determined", "disputed", "amended"]
    assert all(KALSHI_STATUS[s] is not MarketStatus.OPEN for s in rest if s != "active")
    assert KALSHI_STATUS["finalized"] is MarketStatus.SETTLED
    events = ["created", "deactivated", "activated", "close_date_updated", "determined"]
    assert {*events, "settled", "price_level_structure_updated"} <= set(KALSHI_LIFECYCLE)
