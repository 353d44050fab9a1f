"""Live-mode consumption (issue 12), through the REAL ArbitrageMonitor in live mode.

Our taker fill empties a level at once; the venue's book message saying so comes later.
Here ForecastEx's publication is held back (ticks paused) right after its book is seen,
so after the first execution the monitor still shows ForecastEx liquidity that we took.
Kalshi still shows 10 more contracts. Without live consumption the re-decision trades
that phantom liquidity: leg 1 fills on Kalshi, leg 2 finds nothing on ForecastEx, and the
recovery unwinds at a loss. With it, the second execution is refused and the venues hold
exactly the first pair.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from arbkit.execution.journal import ExecState
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Outcome, Venue

from .rig import FX_NO, SYMBOL, TICKER, Venues, n, px
from .test_monitor_lifecycle import no_arb, until
from .test_monitor_order_truth import live_monitor, one_execution, ready


async def test_own_fills_are_not_traded_twice_before_the_venue_shows_them(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    no_arb(venues)
    venues.fx_book(yes=[("0.50", 10)], no=[("0.45", 10)])  # ForecastEx NO ask 0.51 x 10
    mon = live_monitor(venues, auth, tmp_path)
    await mon.start()
    try:
        await ready(mon)
        assert mon.executor is not None
        ex = mon.executor
        fx_no = mon.pipeline.book[SYMBOL].ladder(Venue.IBKR, Outcome.NO)
        await until(lambda: fx_no.valid and fx_no.best == px("0.51"), 10, "FX NO ask seen")
        venues.tws.pause_ticks()  # from here ForecastEx's book updates are held back
        # Kalshi YES ask 0.40 x 20: the first execution takes 10 + 10 (ForecastEx's depth)
        venues.kalshi_book(yes=[("0.35", 50)], no=[("0.60", 20)])
        rec = await one_execution(mon, 15)
        assert rec.state is ExecState.DONE and rec.planned_qty == n(10), rec
        # Kalshi's remaining 10 arrive; the monitor still shows ForecastEx NO 0.51 x 10
        await asyncio.sleep(1.5)  # > redecide_ms: the pipeline re-decides at least once
        assert fx_no.valid and dict(fx_no.levels()).get(px("0.51")) == n(10)
        assert len(ex.completed) == 1, [(r.state, r.error) for r in ex.completed]
        assert sum(venues.exchange.orders_created_by_leg().values()) == 1
        assert venues.tws.orders_received == 1
        assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
        assert venues.fx_positions() == {FX_NO: 10}  # whole contracts
        assert len(mon.own_fills[Venue.IBKR]) == 1  # held until ForecastEx shows it
        venues.tws.pause_ticks(False)
        await until(lambda: dict(fx_no.levels()).get(px("0.51")) is None, 5, "FX book shows it")
        assert mon.executor.quote(SYMBOL, Venue.IBKR, Outcome.NO) == list(fx_no.levels())
    finally:
        await mon.stop()
