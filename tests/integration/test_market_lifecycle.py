"""Market lifecycle (issue 13), through the REAL ArbitrageMonitor in live mode against the
local venues: a pause on Kalshi (market_lifecycle_v2) blocks new executions at once, the
close-time check uses the earlier of the two venues' real closes, and a settlement on both
venues pays out, releases the positions and gives settled PnL per execution that equals
the hand-computed payout minus costs and the fees charged — with no reconciliation halt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from arbkit.execution.journal import ExecState
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Money, Outcome
from arbkit.normalizers.market_status import MarketStatus

from .rig import FX_MARKET, FX_NO, FX_YES, SYMBOL, TICKER, Venues, default_config
from .test_monitor_lifecycle import monitor, no_arb, rows, running, until
from .test_monitor_order_truth import one_execution, ready
from .test_risk_restarts import kalshi_orders, quiet


def fx_last_trade(venues: Venues, at: dt.datetime) -> None:
    """Move the ForecastEx pair's last trade time (before the monitor reads details)."""
    tws = venues.tws
    for con_id in (FX_YES, FX_NO):
        tws.contracts[con_id] = dataclasses.replace(
            tws.contracts[con_id],
            last_trade_date=at.strftime("%Y%m%d"),
            last_trade_time=at.strftime("%H:%M:%S"),
            time_zone_id="UTC",
        )
    m = tws.markets[FX_MARKET]
    m.yes, m.no = tws.contracts[FX_YES], tws.contracts[FX_NO]


async def test_a_paused_kalshi_market_blocks_new_executions_at_once(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    no_arb(venues)
    async with running(monitor(venues, auth, tmp_path / "p.sqlite", tmp_path / "l")) as mon:
        await ready(mon)
        clock = mon.market_clocks[SYMBOL]
        assert clock.kalshi_status is MarketStatus.OPEN and clock.ibkr_known
        venues.exchange.pause_market(TICKER)
        await until(lambda: clock.kalshi_status is MarketStatus.PAUSED, 5, "pause seen")
        venues.arb_books()
        await quiet()
        assert kalshi_orders(venues) == 0 and venues.tws.orders_received == 0
        assert any("kalshi market paused" in o.reason for o in mon.recent_opportunities)
        venues.exchange.pause_market(TICKER, False)
        await until(lambda: clock.kalshi_status is MarketStatus.OPEN, 5, "resume seen")
        venues.arb_books()
        assert (await one_execution(mon, 15)).state is ExecState.DONE
    assert rows(
        tmp_path / "p.sqlite", "SELECT old, new FROM audit WHERE field = 'market_state'"
    ) == [("open", "paused"), ("paused", "open")]


async def test_close_time_check_uses_the_earlier_venue(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """min_time_to_close_s = 1 h. ForecastEx stops trading in 30 min while Kalshi closes
    in a year: refused on ForecastEx's close. (The symbol map's resolution is 2027-06-30,
    which alone would allow it.)"""
    fx_last_trade(venues, dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30))
    cfg = default_config()
    cfg = replace(cfg, risk=replace(cfg.risk, min_time_to_close_s=3_600))
    no_arb(venues)
    mon = monitor(venues, auth, tmp_path / "c.sqlite", tmp_path / "l", config=cfg)
    async with running(mon):
        await ready(mon)
        clock = mon.market_clocks[SYMBOL]
        assert clock.close_ns() == clock.ibkr_close_ns < clock.kalshi_close_ns
        venues.arb_books()
        await until(
            lambda: any("min_time_to_close_s" in o.reason for o in mon.recent_opportunities),
            10,
            "refused on the earlier close",
        )
        assert kalshi_orders(venues) == 0
        # Kalshi moves its close to 20 minutes from now (close_date_updated): still refused
        venues.exchange.set_close_time(TICKER, int(time.time()) + 1_200)
        await until(lambda: clock.close_ns() == clock.kalshi_close_ns, 5, "new Kalshi close")
        assert clock.kalshi_close_ns < clock.ibkr_close_ns


async def test_settlement_on_both_venues_pays_out_and_gives_settled_pnl(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    db = tmp_path / "s.sqlite"
    no_arb(venues)
    mon = monitor(venues, auth, db, tmp_path / "l", reconcile_interval_s=0.2)
    async with running(mon):
        await ready(mon)
        assert mon.executor is not None
        ex = mon.executor
        venues.arb_books()
        rec = await one_execution(mon, 15)
        assert rec.state is ExecState.DONE
        snap = mon.snapshot()  # capital locked until resolution, and what it marks at
        assert snap.committed["kalshi"] > 0 and snap.committed["ibkr"] > 0
        assert set(snap.mark_to_market) == {"kalshi", "ibkr"}
        bal0 = venues.exchange.engine.account(venues.key_id).balance
        cash0 = venues.tws.cash
        assert venues.kalshi_positions() == {(TICKER, Outcome.YES): 1_000}
        assert venues.fx_positions() == {FX_NO: 10}
        # The question resolves YES on both venues (identical pairing): Kalshi YES pays.
        venues.exchange.determine(TICKER, "yes")
        venues.exchange.settle(TICKER)
        await until(lambda: not any(k[1].value == "kalshi" for k in ex.state.positions), 10,
                    "Kalshi positions released")  # fmt: skip
        venues.tws.settle(FX_MARKET, Outcome.YES)
        await until(lambda: not ex.state.positions, 10, "ForecastEx positions released")
        await asyncio.sleep(1.0)  # several reconciliation passes after both payouts
        assert not mon.kill_switch, ex.state.state_reason
        assert ex.state.exposure == 0
        assert mon.snapshot().committed == {"kalshi": 0, "ibkr": 0}
    # venue truth: Kalshi paid $10 into the balance, ForecastEx paid nothing (NO lost)
    assert venues.exchange.engine.account(venues.key_id).balance == bal0 + Money(10_000_000)
    assert venues.tws.cash == cash0
    assert venues.kalshi_positions() == {} and venues.fx_positions() == {}
    got = rows(db, "SELECT venue, result, payout_e6, source FROM settlements ORDER BY venue")
    assert got == [("ibkr", "yes", 0, "ibkr"), ("kalshi", "yes", 10_000_000, "kalshi")]
    eid = rec.execution_id
    [(cost,)] = rows(
        db, f"SELECT SUM(filled_cost_e6 + fees_e6) FROM executions WHERE execution_id = '{eid}'"
    )
    [(pnl, expected)] = rows(
        db,
        "SELECT settled_pnl_e6, expected_profit_e6 FROM v_settled_executions "
        f"WHERE execution_id = '{eid}'",
    )
    assert pnl == 10_000_000 - cost  # $1 × 10 winning contracts − costs − fees charged
    assert pnl == expected == rec.expected_profit


async def test_fee_drift_when_the_local_tws_charges_a_commission(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """The model says ForecastEx charges $0 (the cent is in the $1.01 pair price). A TWS
    that charges $0.01/contract in its commissionReport: the fee as charged is journaled
    beside the estimate, v_fee_drift shows the difference, and an alert is raised."""
    db = tmp_path / "f.sqlite"
    venues.tws.commission_per_contract_usd = Money(10_000)
    no_arb(venues)
    async with running(monitor(venues, auth, db, tmp_path / "l")) as mon:
        await ready(mon)
        venues.arb_books()
        rec = await one_execution(mon, 15)
        assert rec.state is ExecState.DONE
        await until(lambda: mon.counters.extra.get("fee_drift", 0) == 1, 5, "the alert")
        assert any("fee drift" in a[2] for a in mon.alerts)
    assert rows(db, "SELECT venue, fees_e6, fees_estimated_e6, drift_e6 FROM v_fee_drift") == [
        ("ibkr", 100_000, 0, 100_000)
    ]
    assert rows(db, "SELECT field, old, new FROM audit WHERE field = 'fee_drift'") == [
        ("fee_drift", "0", "100000")
    ]
    # Kalshi charged what the model says (the same rule on both sides)
    [(k_fee, k_est)] = rows(
        db, "SELECT fees_e6, fees_estimated_e6 FROM executions WHERE venue = 'kalshi'"
    )
    assert k_fee == k_est > 0


async def test_venue_series_fees_rule_and_unknown_fee_types_are_not_traded(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """Kalshi's `GET /series/{t}` beats the config: the fee multiplier the venue states is
    what the detector and the executor charge (and what the venue then charges: no drift).
    A fee type the model does not compute (`flat`) refuses trading; a scheduled change
    back to `quadratic` lets it trade again when its time comes."""
    series = TICKER.split("-", 1)[0]
    venues.exchange.set_series_fee(series, "flat", 1)
    venues.exchange.schedule_fee_change(series, "quadratic", "0.5", int(time.time()) + 2)
    db = tmp_path / "fees.sqlite"
    no_arb(venues)
    async with running(monitor(venues, auth, db, tmp_path / "l")) as mon:
        await ready(mon)
        clock = mon.market_clocks[SYMBOL]
        assert "fee_type 'flat'" in clock.fee_problem
        venues.arb_books()
        await quiet(1.0)
        assert kalshi_orders(venues) == 0
        await until(lambda: not clock.fee_problem, 5, "the scheduled change in force")
        assert mon.series_fees[series].multiplier == Decimal("0.5")
        venues.arb_books()
        rec = await one_execution(mon, 15)
        assert rec.state is ExecState.DONE
        assert mon.counters.extra.get("fee_drift", 0) == 0
    [(fee, est)] = rows(
        db, "SELECT fees_e6, fees_estimated_e6 FROM executions WHERE venue='kalshi'"
    )
    # 10 contracts at $0.40: ceil(0.5 × 0.07 × 10 × 0.4 × 0.6 = $0.084) = $0.09
    assert fee == est == 90_000


async def test_event_fee_override_applies_to_its_markets_from_start_to_clearing(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """An event's fee override beats its series' fee for the event's markets: read at
    start (`GET /events/{t}`), then kept current by `event_fee_update` frames. An override
    of a type the model cannot compute stops the market at once; a cleared override gives
    the series' fee back. Each fee the model estimates is what the venue then charges."""
    ex = venues.exchange
    event = ex.engine.markets[TICKER].event_ticker
    ex.set_event_fee_override(event, "quadratic", "0.5")
    db = tmp_path / "ev.sqlite"
    no_arb(venues)
    async with running(monitor(venues, auth, db, tmp_path / "l")) as mon:
        await ready(mon)
        clock = mon.market_clocks[SYMBOL]
        assert mon.market_fees[TICKER].multiplier == Decimal("0.5") and not clock.fee_problem
        venues.arb_books()
        assert (await one_execution(mon, 15)).state is ExecState.DONE
        ex.set_event_fee_override(event, "flat", 1)
        await until(lambda: "fee_type 'flat'" in clock.fee_problem, 5, "the flat override")
        venues.arb_books()
        await quiet(1.0)
        assert kalshi_orders(venues) == 1  # the first execution's leg, no more
        ex.set_event_fee_override(event, None, None)
        await until(lambda: not clock.fee_problem, 5, "the override cleared")
        assert TICKER not in mon.market_fees
        venues.arb_books()
        assert mon.executor is not None
        done = mon.executor.completed
        await until(lambda: len(done) == 2, 15, "a second execution")
        assert done[1].state is ExecState.DONE
        assert mon.counters.extra.get("fee_drift", 0) == 0
    got = rows(
        db,
        "SELECT fees_e6, fees_estimated_e6 FROM executions WHERE venue='kalshi' "
        "AND fees_e6 > 0 ORDER BY id",
    )
    # 10 contracts at $0.40: x0.5 → ceil($0.084) = $0.09; the series' x1 → ceil($0.168)
    assert got == [(90_000, 90_000), (170_000, 170_000)]


async def test_forecastex_coupon_accrues_daily_per_position_and_across_a_restart(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """The ForecastEx coupon accrues once per UTC day on each ForecastEx position held at
    the day's end, at the dated rate of that day, on the lower of cost basis and mark,
    rounded down; a restart accrues the days it missed and never a day twice."""
    from arbkit.storage.records import CouponAccrual

    day_ns = 86_400 * 1_000_000_000
    shift = [0]

    def clock() -> int:
        return time.time_ns() + shift[0]

    today = time.time_ns() // day_ns
    first = (dt.date(1970, 1, 1) + dt.timedelta(days=today)).isoformat()
    cfg = default_config()
    # 3.83% APY until tomorrow, then 4.00% (the coupon follows the Fed funds rate)
    tomorrow = (dt.date(1970, 1, 1) + dt.timedelta(days=today + 1)).isoformat()
    cfg = replace(
        cfg,
        fees=replace(
            cfg.fees, forecastex_coupon_apy_bps=383, forecastex_coupon_rates_bps={tomorrow: 400}
        ),
    )
    db = tmp_path / "c.sqlite"
    no_arb(venues)
    async with running(monitor(venues, auth, db, tmp_path / "l", config=cfg, clock=clock)) as mon:
        await ready(mon)
        venues.arb_books()
        assert (await one_execution(mon, 15)).state is ExecState.DONE
        await quiet(0.5)
        assert mon.coupon_accruals == []  # the day has not ended
        shift[0] = day_ns  # the UTC day ends
        await until(lambda: bool(mon.coupon_accruals), 5, "the day's accrual")
        [acc] = mon.coupon_accruals
        assert mon.snapshot().coupon_accrued == acc.accrued
        assert mon.snapshot().coupon_bps == 400
    # ForecastEx NO × 10 bought at $0.51 (cost $5.10); its mark: $1 − the YES ask $0.56
    value = 10 * (1_000_000 - 560_000)
    daily = (Decimal("1.0383") ** (Decimal(1) / 365) - 1) * value
    assert acc == CouponAccrual(
        first, "live", SYMBOL, Outcome.NO, 1_000, Money(value), 383, Money(int(daily)), acc.ts_ns
    )
    assert 0 < acc.accrued < value * 383 // (10_000 * 365)  # below the simple APY/365

    shift[0] = 3 * day_ns  # down for two more day ends
    async with running(monitor(venues, auth, db, tmp_path / "l", config=cfg, clock=clock)) as mon:
        await ready(mon)
        await until(lambda: len(mon.coupon_accruals) == 2, 5, "the missed days")
        assert [a.rate_bps for a in mon.coupon_accruals] == [400, 400]
        total = mon.snapshot().coupon_accrued
    got = rows(db, "SELECT day, rate_bps, accrued_e6 FROM coupon_accruals ORDER BY day")
    assert [d for d, _, _ in got] == [
        (dt.date(1970, 1, 1) + dt.timedelta(days=today + k)).isoformat() for k in range(3)
    ]
    assert total == sum(a for _, _, a in got)
    assert rows(db, "SELECT days, accrued_e6 FROM v_coupon_symbols") == [(3, total)]
