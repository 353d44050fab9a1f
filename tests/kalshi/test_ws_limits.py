"""arbkit's KalshiWebSocket against a venue that enforces a small per-command market limit
(error 26), a command rate limit (27) and times commands out (18): it subscribes in chunks,
backs off, resends, and every book ends up valid and equal to the venue's."""

from __future__ import annotations

from kalshi_helpers import Venue, eventually

from arbkit.gateways.kalshi_websocket import KalshiWebSocket
from arbkit.model import NormalizedTick, Outcome, Price, Qty
from arbkit.sim.kalshi_exchange import KalshiExchange

MANY = tuple(f"KXLIM-26DEC-T{i:02d}" for i in range(12))


def _venue(venue: Venue) -> KalshiExchange:
    ex = venue.exchange
    ex.ws_market_limit = 3
    ex.ws_max_commands = 2
    ex.ws_command_window_s = 0.3
    for i, t in enumerate(MANY):
        ex.add_market(t)
        ex.set_bids(t, Outcome.YES, [(Price(3000 + 100 * i), Qty(500))])
    return ex


def _client(
    venue: Venue, chunk: int, *, resync_retry_s: float = 60.0, tickers: tuple[str, ...] = MANY
) -> KalshiWebSocket:
    """``resync_retry_s`` long by default: recovery must come from answering the refusals,
    not from the watchdog."""

    def sink(_: list[NormalizedTick]) -> None:
        pass

    return KalshiWebSocket(
        venue.exchange.ws_url,
        venue.auth,
        {t: t.lower() for t in tickers},
        sink,
        reconnect_base_s=0.05,
        reconnect_max_s=0.2,
        resync_retry_s=resync_retry_s,
        subscribe_chunk=chunk,
        command_retry_base_s=0.05,
        command_retry_max_s=0.4,
    )


def _valid(ws: KalshiWebSocket, ex: KalshiExchange) -> bool:
    return all(
        ws.normalizer.is_valid(t) and ws.normalizer.book(t)[0][-1][0] == 3000 + 100 * i
        for i, t in enumerate(MANY)
    )


async def test_every_book_valid_despite_market_limit_rate_limit_and_timeouts(
    venue: Venue,
) -> None:
    ex = _venue(venue)
    ex.time_out_next_commands(2)
    ws = _client(venue, chunk=10)  # above the venue's limit: 26 makes it shrink
    await ws.start()
    try:
        await eventually(lambda: _valid(ws, ex), timeout_s=15, what="every book valid")
        errors = ws.command_errors
        assert errors.get(26, 0) >= 1 and errors.get(27, 0) >= 1 and errors.get(18) == 2
        assert ws.subscribe_chunk <= 3
        [sub] = [s for c in ex._conns for s in c.subs.values() if s.channel == "orderbook_delta"]
        assert sorted(sub.tickers) == sorted(MANY)
        # Markets added live go in chunks below the learnt limit, too.
        more = {f"KXLIM-26DEC-T{i}": f"late{i}" for i in range(50, 57)}
        for t in more:
            ex.add_market(t)
        await ws.add_markets(more)
        await eventually(
            lambda: all(ws.normalizer.is_valid(t) for t in more), timeout_s=15, what="added"
        )
    finally:
        await ws.stop()


async def test_timeouts_are_resent_until_the_books_are_valid(venue: Venue) -> None:
    ex = _venue(venue)
    ex.ws_max_commands = None
    ex.time_out_next_commands(25)
    ws = _client(venue, chunk=3)
    await ws.start()
    try:
        await eventually(lambda: _valid(ws, ex), timeout_s=20, what="every book valid")
        assert ws.command_errors.get(18) == 25
        assert 26 not in ws.command_errors  # chunks of 3 fit the venue's limit of 3
    finally:
        await ws.stop()


async def test_a_market_the_venue_did_not_know_is_retried_until_valid(venue: Venue) -> None:
    """Subscribing a market before the venue lists it fails (error 11 naming it); the other
    markets of that command are resent at once, and the watchdog keeps asking for the
    missing one until it is listed: its book is invalid only until then."""
    ex = _venue(venue)
    ex.ws_max_commands = None
    late = "KXLIM-26DEC-T99"
    ws = _client(venue, chunk=4, resync_retry_s=0.3, tickers=(late, *MANY))  # late shares a chunk
    await ws.start()
    try:
        await eventually(lambda: _valid(ws, ex), timeout_s=10, what="the known books")
        assert ws.command_errors.get(11, 0) >= 1 and not ws.normalizer.is_valid(late)
        ex.add_market(late)
        ex.set_bids(late, Outcome.NO, [(Price(5000), Qty(100))])
        await eventually(lambda: ws.normalizer.is_valid(late), timeout_s=10, what="late book")
        assert ws.normalizer.book(late)[1] == [(Price(5000), Qty(100))]
    finally:
        await ws.stop()
