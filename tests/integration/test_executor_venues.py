"""Issue 5: the executor with the real Kalshi REST and ib_async clients against the local
venues on loopback, journaling to SQLite; opportunities come from the real pipeline fed by
the real gateways' ticks."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from arbkit.config.execution_loader import RiskLimits
from arbkit.execution.journal import ExecState, ExecutionRecord, Leg, LegOrderRecord
from arbkit.execution.risk import residual_exposure
from arbkit.execution.venue import OrderState
from arbkit.model import Outcome, Venue

from .rig import FX_NO, FX_YES, SYMBOL, TICKER, Rig, Venues, n


def legs(ex: ExecutionRecord, leg: Leg) -> list[LegOrderRecord]:
    return [o for o in ex.orders if o.leg is leg]


async def journaled(rig: Rig, ex: ExecutionRecord) -> ExecutionRecord:
    got = await rig.db.execution(ex.execution_id)
    assert got is not None
    return got


async def assert_flat_and_consistent(rig: Rig, venues: Venues, ex: ExecutionRecord) -> None:
    """Net exposure zero at the venues, and the journal's fills equal the venues' fills."""
    assert rig.executor is not None
    k = venues.kalshi_positions()
    f = venues.fx_positions()
    k_yes = k.get((TICKER, Outcome.YES), 0) - k.get((TICKER, Outcome.NO), 0)
    f_yes = f.get(FX_YES, 0) * 100 - f.get(FX_NO, 0) * 100
    assert k_yes + f_yes == 0, (k, f)  # Kalshi YES vs ForecastEx NO (or hedged on Kalshi)
    assert residual_exposure(rig.sm.symbols[SYMBOL], rig.executor.state.positions) == 0
    jex = await journaled(rig, ex)
    assert jex.state is ex.state
    for o in jex.orders:
        if o.venue is Venue.KALSHI:
            filled = sum(
                x.fill for x in venues.exchange.engine.orders.values()
                if x.client_order_id == o.client_order_id
            )  # fmt: skip
        else:
            filled = sum(
                e.shares * 100
                for e in venues.tws.executions
                if e.order.view.order_ref == o.client_order_id
            )
        assert o.filled_qty == filled, o
        assert o.state.terminal, o


async def test_happy_path_both_legs(rig: Rig, venues: Venues) -> None:
    opp = await rig.next_opportunity()
    assert opp.symbol == SYMBOL and opp.kalshi.outcome is Outcome.YES
    assert opp.ibkr.outcome is Outcome.NO and opp.size == n(10)
    assert rig.executor is not None
    ex = await rig.executor.execute(opp)
    assert ex is not None and ex.state is ExecState.DONE, ex
    [l1], [l2] = legs(ex, Leg.LEG1), legs(ex, Leg.LEG2)
    assert l1.filled_qty == n(10) and l2.filled_qty == n(10)
    assert not legs(ex, Leg.HEDGE)
    assert ex.realized_pnl == opp.expected_profit
    await assert_flat_and_consistent(rig, venues, ex)
    assert venues.exchange.orders_created[l1.client_order_id] == 1
    assert venues.tws.orders_by_ref[l2.client_order_id] == 1
    assert {"decided", "leg1_submit", "leg1_fill", "leg2_submit", "leg2_fill"} <= set(ex.stages_ns)


async def test_leg1_partial_sizes_leg2(rig: Rig, venues: Venues) -> None:
    opp = await rig.next_opportunity()
    venues.kalshi_book(yes=[("0.35", 50)], no=[("0.60", 4)])  # depth shrank before we got there
    assert rig.executor is not None
    ex = await rig.executor.execute(opp)
    assert ex is not None and ex.state is ExecState.DONE, ex
    [l1], [l2] = legs(ex, Leg.LEG1), legs(ex, Leg.LEG2)
    assert l1.filled_qty == n(4) and l2.requested_qty == n(4) and l2.filled_qty == n(4)
    await assert_flat_and_consistent(rig, venues, ex)


async def test_leg1_unfilled_sends_nothing_else(rig: Rig, venues: Venues) -> None:
    opp = await rig.next_opportunity()
    venues.kalshi_book(yes=[("0.35", 50)], no=[])
    assert rig.executor is not None
    ex = await rig.executor.execute(opp)
    assert ex is not None and ex.state is ExecState.DONE
    assert [o.leg for o in ex.orders] == [Leg.LEG1] and venues.tws.orders_received == 0


@pytest.mark.parametrize("fault", ["reject", "partial", "timeout", "moved", "unwind"])
async def test_leg2_failure_is_recovered(rig: Rig, venues: Venues, fault: str) -> None:
    opp = await rig.next_opportunity()
    assert rig.executor is not None
    if fault == "reject":
        venues.tws.reject_next_order()
    elif fault == "unwind":  # leg 2 and the completion refused: unwind on Kalshi
        venues.tws.reject_next_order()
        venues.tws.reject_next_order()
    elif fault == "partial":
        venues.tws.partial_fill_next_order(4)
    elif fault == "timeout":
        venues.tws.never_fill_next_order()
    else:  # the ForecastEx NO ask moves from 0.50 to 0.61 while leg 1 is in flight
        kalshi = rig.executor.kalshi
        place = kalshi.place_limit

        async def place_then_move(req: Any, timeout_s: float) -> Any:
            res = await place(req, timeout_s)
            venues.fx_book(yes=[("0.40", 10)], no=[("0.45", 10)])
            await rig.until(
                lambda: rig.quote(SYMBOL, Venue.IBKR, Outcome.NO)[:1] == [(6100, n(10))],
                what="the moved quote",
            )
            return res

        kalshi.place_limit = place_then_move  # type: ignore[method-assign]
    ex = await rig.executor.execute(opp)
    [l1] = legs(ex, Leg.LEG1)
    recovery = [h for h in legs(ex, Leg.HEDGE) if h.filled_qty]
    leg2_fill = sum(o.filled_qty for o in legs(ex, Leg.LEG2))
    assert leg2_fill == {"reject": 0, "partial": n(4), "timeout": 0, "moved": 0, "unwind": 0}[fault]
    assert sum(h.filled_qty for h in recovery) == l1.filled_qty - leg2_fill
    if fault == "unwind":
        # the cheaper way left: buy Kalshi NO at 0.65 against YES at 0.40 — a real loss
        assert ex.state is ExecState.HEDGED, ex
        assert all(h.venue is Venue.KALSHI and h.outcome is Outcome.NO for h in recovery)
        assert ex.hedge_cost > 0
    else:
        # completing on ForecastEx (NO at 0.51, or 0.61 after the move) beats unwinding
        # at 0.65 + fee on Kalshi: the pair is matched
        assert ex.state is ExecState.DONE, ex
        assert all(h.venue is Venue.IBKR and h.outcome is Outcome.NO for h in recovery)
    if fault == "moved":
        assert ex.hedge_cost > 0 and ex.realized_pnl < 0  # 0.40 + 0.61 + fees > $1
    assert (await journaled(rig, ex)).hedge_cost == ex.hedge_cost
    assert rig.executor.state.realized_pnl_today == min(0, ex.realized_pnl)  # losses only
    await assert_flat_and_consistent(rig, venues, ex)
    if fault == "moved":
        assert not legs(ex, Leg.LEG2)  # past break-even: no leg 2 at the detected price
    if fault == "timeout":
        [l2] = legs(ex, Leg.LEG2)
        assert l2.state is OrderState.CANCELLED and l2.filled_qty == 0
    assert "hedge_end" in ex.stages_ns
    assert (ex.stages_ns["hedge_end"] - ex.stages_ns["leg1_fill"]) < 3_000_000_000


LIMITS = [
    (RiskLimits(max_position_contracts_per_symbol=5), "max_position_contracts_per_symbol"),
    (RiskLimits(max_position_contracts_per_venue=5), "max_position_contracts_per_venue"),
    (RiskLimits(max_total_exposure_usd=1_000_000), "max_total_exposure_usd"),
    (RiskLimits(min_time_to_close_s=3 * 365 * 86400), "min_time_to_close_s"),
    (RiskLimits(max_open_executions=0), "max_open_executions"),
    (RiskLimits(max_daily_realized_loss_usd=0), "max_daily_realized_loss_usd"),
    (RiskLimits(max_consecutive_failures=0), "consecutive failures"),
]


async def test_each_risk_limit_blocks_then_kill_switch_resets(rig: Rig, venues: Venues) -> None:
    opp = await rig.next_opportunity()
    ex = rig.executor
    assert ex is not None
    base = ex.config
    for limits, words in LIMITS:
        ex.config = replace(base, risk=limits)
        d = ex.check(opp)
        assert not d.ok and words in d.reason, (words, d)
        assert await ex.execute(opp) is None
        if "loss" in words or "consecutive" in words:
            assert ex.state.kill_switch, words  # a breach trips the kill switch
        ex.reset_kill_switch()
    assert sum(venues.exchange.order_posts.values()) == 0 and venues.tws.orders_received == 0
    ex.config = base
    ex.kill("pressed by the test")
    d = ex.check(opp)
    assert not d.ok and "kill switch" in d.reason
    assert await ex.execute(opp) is None
    assert sum(venues.exchange.order_posts.values()) == 0
    ex.reset_kill_switch()
    done = await ex.execute(opp)
    assert done is not None and done.state is ExecState.DONE
