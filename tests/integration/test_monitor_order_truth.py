"""Order truth through the REAL ArbitrageMonitor.start()/stop() in live mode against the
local venues (issue 11, findings 1–3 and the orientation rule): the gateways' ticks
decide, the executor trades over loopback, and every test asserts what the simulators
hold — not only what the journal says.

* a create whose response is lost (connection reset) meets a lagging order list: the
  same-id resend gets 409, and 409 means the order exists — never "rejected";
* a create whose response never arrives: the order is looked up by client order id;
* TWS acknowledges a cancel as PendingCancel and fills later: arbkit never hedges over
  the live order — it waits for the fill, or halts loudly (UNKNOWN) and then sees the
  late fill at reconciliation;
* an inverted symbol (``kalshi_yes_is = "no"``): the executor buys the right contracts,
  hedged inventory is not exposure, and a restart reconciles it without a halt.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from arbkit.config.loader import SymbolMap
from arbkit.execution.journal import ExecState, ExecutionRecord, Leg
from arbkit.execution.venue import OrderState
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Outcome, Venue
from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor, IbkrEndpoint, KalshiEndpoint

from .rig import FX_NO, FX_YES, SYMBOL, TICKER, Venues, default_config, n, symbol_map
from .test_monitor_lifecycle import FAST, no_arb, rows, running, until


def inverted_map() -> SymbolMap:
    """Kalshi's YES is the symbol's NO (the same market asked the other way round)."""
    return symbol_map(kalshi_yes_is="no")


def live_monitor(
    venues: Venues,
    auth: KalshiAuth,
    tmp_path: Path,
    *,
    smap: SymbolMap | None = None,
    db_name: str = "live.sqlite",
    execution: dict[str, Any] | None = None,
    **kw: Any,
) -> ArbitrageMonitor:
    kw.setdefault("reconcile_config", FAST)
    return ArbitrageMonitor(
        smap or symbol_map(),
        default_config(**(execution or {})),
        kalshi=KalshiEndpoint(venues.exchange.rest_url, venues.exchange.ws_url, auth),
        ibkr=IbkrEndpoint(port=venues.tws.port, client_id=31, cache_path=None),
        db_path=tmp_path / db_name,
        confirm_live=True,
        lock_dir=tmp_path / "locks",
        **kw,
    )


async def one_execution(mon: ArbitrageMonitor, timeout_s: float = 30.0) -> ExecutionRecord:
    """Wait for the first execution to end (the monitor decided it from the ticks)."""
    assert mon.executor is not None
    ex = mon.executor
    await until(lambda: bool(ex.completed), timeout_s, "an execution to end")
    return ex.completed[0]


def legs(ex: ExecutionRecord, leg: Leg) -> list[Any]:
    return [o for o in ex.orders if o.leg is leg]


async def ready(mon: ArbitrageMonitor) -> None:
    assert mon.executor is not None
    ex = mon.executor
    await until(lambda: all(ex.venue_up.values()), 15, "both venues up and reconciled")
    assert not mon.kill_switch, ex.state.kill_reason


# ------------------------------------------------------------------ finding 1 ---
@pytest.mark.parametrize("fault", ["reset+lag", "hang"])
async def test_lost_create_response_is_found_not_rejected(
    venues: Venues, auth: KalshiAuth, tmp_path: Path, fault: str
) -> None:
    """``reset+lag``: the create lands, its response is lost, reads lag 2.5 s (longer
    than the 1.5 s lookup tolerance), so the one same-id resend gets 409 while the order
    list still does not show it. ``hang``: the response never comes (client timeout).
    Either way leg 1 is found by client order id, filled, and leg 2 is sized from it."""
    no_arb(venues)
    async with running(live_monitor(venues, auth, tmp_path)) as mon:
        await ready(mon)
        if fault == "reset+lag":
            venues.exchange.set_read_lag_ms(2_500)
            venues.exchange.delay_private_frames_ms(2_500)  # the stream lags as well
            venues.exchange.lose_next_order_responses(1, "reset")
        else:
            venues.exchange.faults.hang_s = 5.0
            venues.exchange.lose_next_order_responses(1, "hang")
        venues.arb_books()
        ex = await one_execution(mon)
        [l1] = legs(ex, Leg.LEG1)
        assert l1.state is OrderState.FILLED and l1.filled_qty == n(10), l1
        assert ex.state is ExecState.DONE, ex
        assert not mon.kill_switch
        key = l1.client_order_id.rsplit("-", 1)[0]
        # one order at the venue for leg 1; the resend (reset case) was the SAME id
        assert venues.exchange.orders_created_by_leg()[key] == 1
        assert venues.exchange.posts_by_leg()[key] == (2 if fault == "reset+lag" else 1)
    venues.exchange.set_read_lag_ms(0)
    venues.exchange.delay_private_frames_ms(0)
    # venue truth: the pair is matched
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
    assert venues.fx_positions() == {FX_NO: 10}
    db = tmp_path / "live.sqlite"
    sql = f"SELECT state FROM executions WHERE client_order_id = '{l1.client_order_id}'"
    assert rows(db, sql) == [("filled",)]
    assert rows(db, "SELECT count(*) FROM executions WHERE state = 'rejected'") == [(0,)]


# ------------------------------------------------------------------ finding 2 ---
async def test_pending_cancel_then_fill_is_waited_for_not_hedged_over(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """Leg 2 rests, its cancel is only PendingCancel, and it fills 1.2 s later: arbkit
    waits for the terminal status (cancel_confirm_ms 5 s) and books the pair DONE. A
    recovery order placed over the live leg 2 would show as a second ForecastEx order
    or as a Kalshi unwind."""
    no_arb(venues)
    async with running(live_monitor(venues, auth, tmp_path)) as mon:
        await ready(mon)
        venues.tws.never_fill_next_order()
        venues.tws.ignore_next_cancel(fill_after_ms=1_200)
        venues.arb_books()
        ex = await one_execution(mon)
        assert ex.state is ExecState.DONE, ex
        [l2] = legs(ex, Leg.LEG2)
        assert l2.state is OrderState.FILLED and l2.filled_qty == n(10), l2
        assert not [h for h in legs(ex, Leg.HEDGE) if h.filled_qty]
        assert venues.tws.cancels_ignored >= 1
        assert not mon.kill_switch
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
    assert venues.fx_positions() == {FX_NO: 10}


async def test_cancel_never_confirmed_halts_unknown_then_late_fill_is_seen(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """The cancel stays PendingCancel past cancel_confirm_ms (1 s) and the order fills
    3 s later: the leg is UNKNOWN, the execution UNHEDGED, trading halted — and leg 1 is
    NOT unwound (that would leave the late ForecastEx fill naked). Periodic
    reconciliation then sees the late fill at the venue and says so."""
    no_arb(venues)
    mon = live_monitor(
        venues, auth, tmp_path, execution={"cancel_confirm_ms": 1_000}, reconcile_interval_s=0.3
    )
    async with running(mon):
        await ready(mon)
        venues.tws.never_fill_next_order()
        venues.tws.ignore_next_cancel(fill_after_ms=3_000)
        venues.arb_books()
        ex = await one_execution(mon)
        assert ex.state is ExecState.UNHEDGED, ex
        [l2] = legs(ex, Leg.LEG2)
        assert l2.state is OrderState.UNKNOWN, l2
        assert mon.kill_switch
        assert not legs(ex, Leg.HEDGE), "recovery placed over a live order"
        # before the late fill: leg 1 stands alone, loudly
        assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
        await until(lambda: venues.fx_positions() == {FX_NO: 10}, 10, "the late fill")
        assert mon.executor is not None
        pos = mon.executor.state.positions
        await until(
            lambda: pos.get((SYMBOL, Venue.IBKR, Outcome.NO)) == n(10),
            10,
            "reconciliation to see the late fill",
        )
        # the report lands once its pass is over (just after the positions it loaded)
        reports = mon.reconcile_reports
        await until(lambda: any(r.mismatches for r in reports), 10, "the mismatch reported")
        assert venues.exchange.orders_created_by_leg()  # leg 1 only: no unwind
        assert all(k.endswith("-l1") for k in venues.exchange.orders_created_by_leg())
    db = tmp_path / "live.sqlite"
    sql = f"SELECT state FROM arb_executions WHERE execution_id = '{ex.execution_id}'"
    assert rows(db, sql) == [("unhedged",)]
    audit = rows(db, "SELECT field, new FROM audit WHERE field LIKE 'position:%'")
    assert (f"position:{SYMBOL}/ibkr/no", str(n(10))) in audit


# ------------------------------------------------------------------ finding 8 ---
@pytest.mark.parametrize("quote", ["gone", "still there"])
async def test_slow_journal_rechecks_the_quote_before_leg1(
    venues: Venues, auth: KalshiAuth, tmp_path: Path, quote: str
) -> None:
    """Another process holds the SQLite write lock for 1.5 s while the intent is written
    (max_journal_delay_ms 50). ``gone``: the book moved meanwhile, so leg 1 is never sent.
    ``still there``: it is sent, and the recorded latency says 1.5 s, not 0.3 ms — the
    stamp is taken where the bytes leave."""
    no_arb(venues)
    async with running(live_monitor(venues, auth, tmp_path)) as mon:
        await ready(mon)
        assert mon.executor is not None
        exe = mon.executor
        hold = sqlite3.connect(tmp_path / "live.sqlite", isolation_level=None)
        try:
            hold.execute("BEGIN IMMEDIATE")  # the write lock: the intent write waits
            venues.arb_books()
            await until(lambda: bool(exe._running), 10, "an execution to begin")
            if quote == "gone":
                no_arb(venues)
            await asyncio.sleep(1.5)
            assert not venues.exchange.order_posts, "leg 1 went out before its intent"
        finally:
            hold.execute("COMMIT")
            hold.close()
        ex = await one_execution(mon)
        [l1] = legs(ex, Leg.LEG1)
        if quote == "gone":
            assert l1.state is OrderState.REJECTED, l1
            assert "not sent: quote gone after a" in l1.reason, l1.reason
            assert not venues.exchange.order_posts
            assert not mon.kill_switch
        else:
            assert ex.state is ExecState.DONE, ex
            waited_ms = (ex.stages_ns["leg1_submit"] - ex.stages_ns["decided"]) / 1e6
            assert waited_ms >= 1_400, waited_ms
    if quote == "gone":
        assert venues.kalshi_positions() == {} and venues.fx_positions() == {}
    else:
        assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
        assert venues.fx_positions() == {FX_NO: 10}


# ------------------------------------------------------------------ leg order ---
@pytest.mark.parametrize("kalshi", ["fills", "refuses once"])
async def test_forecastex_first_symbol(
    venues: Venues, auth: KalshiAuth, tmp_path: Path, kalshi: str
) -> None:
    """``leg_order = "forecastex_first"``: the ForecastEx IOC goes first, then the Kalshi
    FOK. When Kalshi refuses the second leg, recovery completes or unwinds: either way
    the venues end flat (matched pairs only) and trading goes on."""
    smap = symbol_map(leg_order="forecastex_first")
    no_arb(venues)
    async with running(live_monitor(venues, auth, tmp_path, smap=smap)) as mon:
        await ready(mon)
        if kalshi == "refuses once":
            venues.exchange.reject_next_order(400, "invalid_order", "refused for the test")
        venues.arb_books()
        ex = await one_execution(mon)
        [first] = legs(ex, Leg.LEG1)
        [second] = legs(ex, Leg.LEG2)
        assert first.venue is Venue.IBKR and second.venue is Venue.KALSHI
        assert first.filled_ns <= second.submitted_ns or not second.submitted_ns
        if kalshi == "fills":
            assert ex.state is ExecState.DONE, ex
        else:
            assert second.state is OrderState.REJECTED, second
            assert ex.state in (ExecState.DONE, ExecState.HEDGED), ex
        assert not mon.kill_switch, mon.executor and mon.executor.state.kill_reason
    k = venues.kalshi_positions().get((TICKER, Outcome.YES), 0)
    f = venues.fx_positions()
    fx_net = (f.get(FX_NO, 0) - f.get(FX_YES, 0)) * 100  # Kalshi YES pairs with FX NO
    assert k == fx_net, (venues.kalshi_positions(), f)
    if kalshi == "fills":
        assert k == n(10)


# --------------------------------------------------------------- orientation ---
async def test_inverted_symbol_end_to_end(venues: Venues, auth: KalshiAuth, tmp_path: Path) -> None:
    """``kalshi_yes_is = "no"``: Kalshi YES at 0.40 pairs with ForecastEx YES at 0.51.
    Kalshi YES + ForecastEx NO (0.96) looks like an arb only if orientation is ignored —
    it would be a doubled bet. The executor buys ForecastEx YES, the pair is hedged
    inventory, and a restart reconciles it without a halt."""
    smap = inverted_map()
    no_arb(venues)
    async with running(live_monitor(venues, auth, tmp_path, smap=smap)) as mon:
        await ready(mon)
        venues.kalshi_book(yes=[("0.35", 50)], no=[("0.60", 10)])  # Kalshi YES ask 0.40
        venues.fx_book(yes=[("0.45", 10)], no=[("0.50", 10)])  # FX YES ask 0.51, NO ask 0.56
        ex = await one_execution(mon)
        assert ex.state is ExecState.DONE, ex
        assert not mon.kill_switch, mon.executor and mon.executor.state.kill_reason
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
    assert venues.fx_positions() == {FX_YES: 10}
    no_arb(venues)
    # restart: the held pair is hedged inventory under this orientation, not exposure
    async with running(live_monitor(venues, auth, tmp_path, smap=smap)) as mon:
        await ready(mon)
        report = mon.reconcile_reports[0]
        assert report.kind == "start" and report.ok and not report.residual_contracts
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
    assert venues.fx_positions() == {FX_YES: 10}


async def test_headline_hedge_cost_counts_every_execution_not_the_recent_window(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """Leg 2 and its completion are refused: the pair is unwound on Kalshi at a real
    cost. The headline hedge cost (like PnL) sums every execution of the run, so it
    stays when the execution falls out of the recent-executions window (200 rows)."""
    no_arb(venues)
    async with running(live_monitor(venues, auth, tmp_path)) as mon:
        await ready(mon)
        venues.tws.reject_next_order()
        venues.tws.reject_next_order()
        venues.arb_books()
        ex = await one_execution(mon)
        assert ex.state is ExecState.HEDGED and ex.hedge_cost > 0, ex
        mon.recent_executions.clear()  # as after 200 later executions
        snap = mon.snapshot()
        assert snap.hedge_cost == ex.hedge_cost
        assert snap.realized_pnl == ex.realized_pnl
    assert venues.fx_positions() == {}
    assert venues.kalshi_positions() == {}
