"""The one staleness rule: the detector and the pre-trade risk check both ask here.

A quote is fresh when its ladder is valid and was last *proven current* within
``max_quote_age_ms``. What proves a quiet book current differs by venue:

- Kalshi is a sequenced stream: a gap invalidates the book, so while the stream is in
  sequence and its messages arrive within ``max_venue_lag_ms`` of Kalshi's own ``ts_ms``,
  silence means "no change" and the stream's last in-sequence message proves every book
  on it (``alive``). A ladder whose last update lagged past the bound is not fresh.
- ForecastEx quotes prove only themselves: the gateway re-requests a quiet contract and
  its answer refreshes that ladder; a broken market-data farm (TWS 2103, 1100, 10197)
  invalidates the books. The socket being up (heartbeats) proves nothing about a quote.
"""

from __future__ import annotations

from collections.abc import Mapping

from arbkit.book.order_book import AskLadder
from arbkit.config.execution_loader import DetectorParams
from arbkit.model import Venue

# Venues whose stream-wide "alive" time may stand in for a quiet ladder's own update.
STREAM_PROVES_QUIET_BOOKS: Mapping[Venue, bool] = {Venue.KALSHI: True, Venue.IBKR: False}


def quote_seen_ns(lad: AskLadder, venue: Venue, alive: Mapping[Venue, int] | None) -> int:
    """When this ladder was last proven current."""
    seen = lad.updated_ns
    if alive is not None and STREAM_PROVES_QUIET_BOOKS[venue]:
        seen = max(seen, alive.get(venue, 0))
    return seen


def venue_lag_ok(lad: AskLadder, p: DetectorParams) -> bool:
    """The venue stamped this update no more than ``max_venue_lag_ms`` before we got it."""
    if lad.venue_ts_ns <= 0:  # venue gave no timestamp (ForecastEx, snapshots)
        return True
    return lad.updated_ns - lad.venue_ts_ns <= p.max_venue_lag_ms * 1_000_000


def check_quote_age_ns(seen_ns: int, now_ns: int, p: DetectorParams) -> tuple[bool, str]:
    age_ms = (now_ns - seen_ns) // 1_000_000
    if age_ms > p.max_quote_age_ms:
        return False, f"quote {age_ms} ms old > max_quote_age_ms {p.max_quote_age_ms}"
    return True, ""


def quote_fresh(
    lad: AskLadder,
    venue: Venue,
    now_ns: int,
    alive: Mapping[Venue, int] | None,
    p: DetectorParams,
) -> bool:
    if not lad.valid or not lad.prices or not venue_lag_ok(lad, p):
        return False
    return check_quote_age_ns(quote_seen_ns(lad, venue, alive), now_ns, p)[0]
