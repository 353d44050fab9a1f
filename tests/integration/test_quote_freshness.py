"""One staleness rule (issue 12), through the REAL ArbitrageMonitor in live mode.

A ForecastEx quote proves only itself: with the TWS socket up and heartbeats answered
but no quotes flowing (a frozen feed), the book ages out within ``max_quote_age_ms`` and
is invalidated once the gateway's re-request goes unanswered; nothing trades on it. A
quiet but healthy book (no changes, the feed answering re-requests) keeps trading.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from arbkit.execution.journal import ExecState
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Outcome, Venue

from .rig import FX_NO, SYMBOL, TICKER, Venues, default_config
from .test_monitor_lifecycle import monitor, no_arb, running, until
from .test_monitor_order_truth import one_execution, ready


def kalshi_arb(venues: Venues) -> None:
    """Kalshi YES ask 0.40 against the ForecastEx NO ask no_arb() leaves (0.52)."""
    venues.kalshi_book(yes=[("0.35", 50)], no=[("0.60", 10)])


async def test_frozen_forecastex_quote_never_trades_quiet_healthy_one_does(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    cfg = default_config()
    cfg = replace(cfg, detector=replace(cfg.detector, max_quote_age_ms=1_000))
    no_arb(venues)
    mon = monitor(venues, auth, tmp_path / "f.sqlite", tmp_path / "l", config=cfg)
    async with running(mon):
        await ready(mon)
        assert mon.ibkr_gw is not None and mon.executor is not None
        gw, ex = mon.ibkr_gw, mon.executor
        book = mon.pipeline.book[SYMBOL]

        # 1. Frozen: the socket and heartbeats stay up, quotes stop. Past the quote-age
        # bound but before the unanswered re-request invalidates the book, the quote
        # is already unusable: the stream's liveness does not vouch for it.
        venues.tws.pause_ticks()
        await asyncio.sleep(1.2)
        kalshi_arb(venues)
        await asyncio.sleep(1.0)
        assert gw.connected and venues.tws.orders_received == 0
        assert sum(venues.exchange.orders_created_by_leg().values()) == 0
        assert not ex.completed and mon.counters.executed == 0
        await until(lambda: not book.ladder(Venue.IBKR, Outcome.NO).valid, 5, "frozen book invalid")
        assert gw.normalizer.stale_resets >= 1

        # 2. Quiet but healthy: the feed answers re-requests; nothing changes on
        # ForecastEx for several quote-age periods, and the arbitrage still trades.
        no_arb(venues)
        await asyncio.sleep(0.5)  # Kalshi's deltas land before ForecastEx comes back
        venues.tws.pause_ticks(False)
        await asyncio.sleep(2.5)
        assert gw.health.extra.get("quote_probes", 0) >= 2
        kalshi_arb(venues)
        rec = await one_execution(mon, 15)
        assert rec.state is ExecState.DONE, rec
        assert venues.fx_positions().get(FX_NO, 0) > 0
        assert venues.kalshi_positions().get((TICKER, Outcome.YES), 0) > 0
