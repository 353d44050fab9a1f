"""Market state and close times from both venues, as pure tables and parsers.

Kalshi says a market's state three ways: REST ``status`` (``initialized`` … ``finalized``),
the ``market_lifecycle_v2`` channel's ``event_type`` (``activated``, ``deactivated``,
``close_date_updated``, ``determined``, ``settled`` …; there is no "closed" event: a market
closes when ``close_ts`` passes), and the clock against ``close_time``. ForecastEx says it
through contract details: ``lastTradeDateOrContractMonth`` + ``lastTradeTime`` in
``timeZoneId``, and ``tradingHours`` sessions (``YYYYMMDD:HHMM-YYYYMMDD:HHMM`` or
``YYYYMMDD:CLOSED``; settled contracts come back with an empty string).

``MarketClock`` folds both into one answer per symbol: may a new execution start now, and
when is the earlier of the two venues' closes.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arbkit.model import Venue

NS = 1_000_000_000


class MarketStatus(enum.Enum):
    OPEN = "open"
    PAUSED = "paused"  # trading halted on an open market
    UNOPENED = "unopened"
    CLOSED = "closed"
    DETERMINED = "determined"  # result known, payout pending
    SETTLED = "settled"
    UNKNOWN = "unknown"


# Kalshi REST Market.status (OpenAPI enum) → state. Unknown strings are UNKNOWN (no trade).
KALSHI_STATUS: Mapping[str, MarketStatus] = {
    "initialized": MarketStatus.UNOPENED,
    "inactive": MarketStatus.PAUSED,
    "active": MarketStatus.OPEN,
    "open": MarketStatus.OPEN,  # the list filter's spelling
    "closed": MarketStatus.CLOSED,
    "determined": MarketStatus.DETERMINED,
    "disputed": MarketStatus.DETERMINED,
    "amended": MarketStatus.DETERMINED,
    "finalized": MarketStatus.SETTLED,
    "settled": MarketStatus.SETTLED,
}

# Kalshi market_lifecycle_v2 event_type → the state it moves to (None: no state change).
KALSHI_LIFECYCLE: Mapping[str, MarketStatus | None] = {
    "created": None,
    "activated": MarketStatus.OPEN,
    "deactivated": MarketStatus.PAUSED,
    "close_date_updated": None,
    "determined": MarketStatus.DETERMINED,
    "settled": MarketStatus.SETTLED,
    "price_level_structure_updated": None,
    "metadata_updated": None,
}


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}") from None


def ibkr_last_trade_ns(date: str, time: str, tz: str) -> int:
    """``20270629`` + ``10:00:00`` (or empty: end of day) in ``US/Central`` → epoch ns.
    A date that carries its own time (``"20270629 10:00:00 US/Central"``) is split first."""
    parts = date.split()
    if len(parts) >= 2:
        date, time = parts[0], parts[1]
        tz = parts[2] if len(parts) > 2 else tz
    day = dt.datetime.strptime(date[:8], "%Y%m%d")
    if time:
        hh, mm, *ss = (int(x) for x in time.split(":"))
        at = day.replace(hour=hh, minute=mm, second=ss[0] if ss else 0)
    else:
        at = day.replace(hour=23, minute=59, second=59)
    return int(at.replace(tzinfo=_zone(tz)).timestamp()) * NS


def ibkr_sessions(trading_hours: str, tz: str) -> list[tuple[int, int]]:
    """TWS ``tradingHours`` → [(start_ns, end_ns)], closed days dropped."""
    zone = _zone(tz)
    out: list[tuple[int, int]] = []
    for part in trading_hours.split(";"):
        part = part.strip()
        if not part or part.endswith(":CLOSED"):
            continue
        start, _, end = part.partition("-")

        def at(s: str) -> int:
            d = dt.datetime.strptime(s, "%Y%m%d:%H%M").replace(tzinfo=zone)
            return int(d.timestamp()) * NS

        out.append((at(start), at(end)))
    return out


@dataclass(slots=True)
class MarketClock:
    """What both venues said about one symbol's market; ``tradable`` answers from it."""

    kalshi_status: MarketStatus = MarketStatus.UNKNOWN
    kalshi_close_ns: int = 0
    kalshi_expected_expiration_ns: int = 0
    kalshi_result: str = ""  # "yes" | "no" once determined (Kalshi outcome terms)
    kalshi_event: str = ""  # the market's event ticker (event-level fee overrides)
    ibkr_close_ns: int = 0
    ibkr_sessions: list[tuple[int, int]] = field(default_factory=list)
    ibkr_known: bool = False
    ibkr_hours_listed: bool = True  # False: TWS gave no tradingHours (settled contract)
    fee_problem: str = ""  # the venue's fee for this market cannot be computed: no trade

    def close_ns(self) -> int:
        """The earlier real close of the two (0: neither venue said)."""
        known = [c for c in (self.kalshi_close_ns, self.ibkr_close_ns) if c]
        return min(known) if known else 0

    def status(self, venue: Venue, now_ns: int) -> MarketStatus:
        if venue is Venue.KALSHI:
            st = self.kalshi_status
            if st is MarketStatus.OPEN and self.kalshi_close_ns and now_ns >= self.kalshi_close_ns:
                return MarketStatus.CLOSED
            return st
        if not self.ibkr_known:
            return MarketStatus.UNKNOWN
        if self.ibkr_close_ns and now_ns >= self.ibkr_close_ns:
            return MarketStatus.CLOSED
        if not self.ibkr_hours_listed:
            return MarketStatus.CLOSED
        if self.ibkr_sessions and not any(a <= now_ns < b for a, b in self.ibkr_sessions):
            return MarketStatus.PAUSED  # outside its trading hours
        return MarketStatus.OPEN

    def tradable(self, now_ns: int) -> tuple[bool, str]:
        if self.fee_problem:
            return False, self.fee_problem
        for venue in (Venue.KALSHI, Venue.IBKR):
            st = self.status(venue, now_ns)
            if st is not MarketStatus.OPEN:
                return False, f"{venue.value} market {st.value}"
        return True, ""
