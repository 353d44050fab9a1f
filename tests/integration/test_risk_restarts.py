"""Risk state that survives restarts (issue 12), through the REAL ArbitrageMonitor
start()/stop() in live mode against the local venues, and the `arbkit state` CLI.

Each probe restarts the monitor on the same database and asserts what the venues hold
(orders the exchange accepted, positions) as well as the journal's rows:

* ``halted`` survives a restart; only the user lifts it (CLI ``arbkit state --resume``);
* the exposure cap holds across a restart (exposure comes from venue positions and the
  journal's cost basis, not from a counter that restarts at zero);
* the daily realised loss is rebuilt from the journal: a restart (even after the user
  lifts the halt) halts again before any order;
* capital spent by an execution is re-read: the next leg 1 is never sent unfunded;
* a wrong pairing (inverted ``kalshi_yes_is``) shows a 36.5¢ "edge": the symbol is
  blocked with an alert row, and no order reaches either venue.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from arbkit.config.execution_loader import ExecutionConfig
from arbkit.execution.journal import ExecState
from arbkit.execution.risk import TradingState
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Money, Outcome

from .rig import FX_NO, TICKER, Venues, default_config, n, symbol_map
from .test_monitor_lifecycle import monitor, no_arb, rows, running, until
from .test_monitor_order_truth import live_monitor, one_execution, ready


def config(**risk: Any) -> ExecutionConfig:
    cfg = default_config()
    return replace(cfg, risk=replace(cfg.risk, **risk))


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arbkit.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def kalshi_orders(venues: Venues) -> int:
    return sum(venues.exchange.orders_created_by_leg().values())


async def quiet(seconds: float = 1.5) -> None:
    """Long enough for the monitor to see the books and decide (it decides in ms)."""
    await asyncio.sleep(seconds)


async def test_halted_survives_restart_and_only_the_user_lifts_it(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    db, locks = tmp_path / "risk.sqlite", tmp_path / "locks"
    no_arb(venues)
    async with running(monitor(venues, auth, db, locks)) as mon:
        await ready(mon)
        mon.kill("probe: operator pressed the kill switch")
        assert mon.trading_state is TradingState.HALTED
    # a fresh process: still halted, with the reason, and it does not trade
    async with running(monitor(venues, auth, db, locks)) as mon:
        assert mon.kill_switch and "operator pressed" in mon.snapshot().state_reason
        assert mon.snapshot().trading_state == "halted"
        venues.arb_books()
        await quiet()
        assert mon.executor is not None and not mon.executor.completed
        # the CLI refuses while this monitor holds the database
        code, _, err = await cli("state", "--db", str(db), "--resume", "checked")
        assert code == 2 and "in use by a running monitor" in err
    assert kalshi_orders(venues) == 0 and venues.kalshi_positions() == {}
    assert venues.fx_positions() == {}
    code, out, _ = await cli("state", "--db", str(db))
    assert code == 0 and out.startswith("trading state: halted (probe: operator pressed")
    code, out, _ = await cli("state", "--db", str(db), "--resume", "checked the books")
    assert code == 0 and out.startswith("trading state: active"), out
    assert rows(db, "SELECT from_state, to_state, actor FROM trading_state ORDER BY id") == [
        ("active", "halted", "user"),
        ("halted", "active", "user"),
    ]
    no_arb(venues)
    async with running(monitor(venues, auth, db, locks)) as mon:
        await ready(mon)
        assert mon.trading_state is TradingState.ACTIVE
        venues.arb_books()
        assert mon.executor is not None
        ex = mon.executor
        await until(lambda: bool(ex.completed), 20, "an execution after the lift")
        assert ex.completed[0].state is ExecState.DONE
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
    assert venues.fx_positions() == {FX_NO: 10}


async def test_exposure_cap_holds_across_a_restart(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """One execution costs ~$9.31 (10 × $0.40 + fee on Kalshi, 10 × $0.51 + $0.01 each on
    ForecastEx); the cap is $15. After a restart the same books must not deploy more."""
    db, locks = tmp_path / "risk.sqlite", tmp_path / "locks"
    cfg = config(max_total_exposure_usd=15_000_000)
    no_arb(venues)
    async with running(monitor(venues, auth, db, locks, config=cfg)) as mon:
        await ready(mon)
        venues.arb_books()
        assert (await one_execution(mon, 20)).state is ExecState.DONE
        first = mon.snapshot().exposure
        assert 9_000_000 < first < 10_000_000, first
    no_arb(venues)
    async with running(monitor(venues, auth, db, locks, config=cfg)) as mon:
        await ready(mon)
        # rebuilt from venue positions + the journal's cost basis, not from zero
        assert mon.snapshot().exposure == first
        venues.arb_books()
        await quiet()
        assert mon.executor is not None and not mon.executor.completed
        reasons = {o.reason for o in mon.recent_opportunities}
        assert any("max_total_exposure_usd" in r for r in reasons), reasons
    assert kalshi_orders(venues) == 1  # leg 1 of the first execution only
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
    assert venues.fx_positions() == {FX_NO: 10}


async def lose_and_halt(
    venues: Venues, auth: KalshiAuth, db: Path, locks: Path, **risk: Any
) -> ExecutionConfig:
    """One run that loses more than a $0.01 daily-loss cap and halts: leg 2 is rejected
    and, with no leg-2 re-pricing, the Kalshi leg is unwound at a loss. Returns the config."""
    cfg = config(max_daily_realized_loss_usd=10_000, **risk)
    cfg = replace(cfg, execution=replace(cfg.execution, min_residual_edge_usd=1_000_000))
    no_arb(venues)
    async with running(monitor(venues, auth, db, locks, config=cfg)) as mon:
        await ready(mon)
        venues.tws.reject_next_order()
        venues.arb_books()
        assert mon.executor is not None
        ex = mon.executor
        await until(lambda: bool(ex.completed), 20, "the losing execution")
        assert ex.completed[0].realized_pnl < 0, ex.completed[0]
        await until(lambda: mon.kill_switch, 5, "the daily-loss halt")
        assert "max_daily_realized_loss_usd" in ex.state.state_reason
    return cfg


async def test_daily_loss_is_rebuilt_from_the_journal_after_a_restart(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """Leg 2 is rejected, so the Kalshi leg is unwound at a loss (> the $0.01 cap): halted.
    The user lifts the halt while stopped, but today's loss is still in the journal, so
    the next start halts again before a single order."""
    db, locks = tmp_path / "risk.sqlite", tmp_path / "locks"
    cfg = await lose_and_halt(venues, auth, db, locks)
    posts = kalshi_orders(venues)
    code, _, _ = await cli("state", "--db", str(db), "--resume", "try again")
    assert code == 0
    no_arb(venues)
    async with running(monitor(venues, auth, db, locks, config=cfg)) as mon:
        assert mon.kill_switch, "the loss was forgotten across the restart"
        assert "max_daily_realized_loss_usd" in mon.snapshot().state_reason
        venues.arb_books()
        await quiet()
        assert mon.executor is not None and not mon.executor.completed
    assert kalshi_orders(venues) == posts
    assert rows(db, "SELECT actor FROM trading_state WHERE to_state = 'halted'") == [
        ("limit",),
        ("limit",),
    ]


async def test_yesterdays_loss_does_not_count_after_the_day_boundary(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """The same loss as above, but journaled before today's trading-day boundary (its
    rows moved back 24 h, as if the session had ended yesterday): after the user lifts
    the halt, a restart counts nothing for today and trades. The control is the test
    above, where the same loss today halts the restart."""
    db, locks = tmp_path / "risk.sqlite", tmp_path / "locks"
    cfg = await lose_and_halt(venues, auth, db, locks, trading_day_tz="UTC")
    day_ns = 86_400 * 1_000_000_000
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE arb_executions SET created_ns = created_ns - ?", (day_ns,))
    code, _, _ = await cli("state", "--db", str(db), "--resume", "new day")
    assert code == 0
    posts = kalshi_orders(venues)
    no_arb(venues)
    async with running(monitor(venues, auth, db, locks, config=cfg)) as mon:
        await ready(mon)
        assert mon.trading_state is TradingState.ACTIVE
        venues.arb_books()
        assert (await one_execution(mon, 20)).state is ExecState.DONE
    assert kalshi_orders(venues) == posts + 1
    assert venues.fx_positions() == {FX_NO: 10}


async def test_spent_capital_is_reread_so_no_leg_is_sent_unfunded(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """Kalshi holds $6: the first execution spends ~$4.21 of it. Read once at start, the
    $6 would fund a second leg 1 the account cannot pay for; re-read after the execution,
    the second opportunity is refused before anything is sent."""
    acct = venues.exchange.engine.account(venues.key_id)
    acct.balance = Money(6_000_000)
    db, locks = tmp_path / "risk.sqlite", tmp_path / "locks"
    no_arb(venues)
    async with running(monitor(venues, auth, db, locks)) as mon:
        await ready(mon)
        venues.arb_books()
        assert (await one_execution(mon, 20)).state is ExecState.DONE
        assert mon.executor is not None
        ex = mon.executor
        venues.arb_books()  # the same opportunity again, fresh depth
        await until(
            lambda: any(
                "insufficient kalshi balance" in o.reason for o in mon.recent_opportunities
            ),
            10,
            "the unfunded opportunity refused",
        )
        assert len(ex.completed) == 1
    assert kalshi_orders(venues) == 1
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(10)}
    assert venues.fx_positions() == {FX_NO: 10}


async def test_kalshi_shard_balances_fund_no_order_beyond_the_smallest_shard(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """Kalshi's balance_breakdown: $100,000 in total, but shard 0 (where these markets
    trade) holds $0.30. The total would fund the ~$4.21 leg 1; the shard cannot. Refused
    before anything is sent, and the snapshot shows the shards."""
    total = venues.exchange.engine.account(venues.key_id).balance
    venues.exchange.set_shards(venues.key_id, {1: Money(total - 300_000)})
    no_arb(venues)
    async with running(monitor(venues, auth, tmp_path / "s.sqlite", tmp_path / "l")) as mon:
        await ready(mon)
        snap = mon.snapshot()
        assert snap.kalshi_balance_breakdown == {0: Money(300_000), 1: Money(total - 300_000)}
        assert snap.balances["kalshi"] == Money(300_000)
        venues.arb_books()
        await until(
            lambda: any(
                "insufficient kalshi balance" in o.reason for o in mon.recent_opportunities
            ),
            10,
            "the opportunity the shard cannot fund refused",
        )
    assert kalshi_orders(venues) == 0 and venues.tws.orders_received == 0


def mispriced_books(venues: Venues) -> None:
    """Both venues price YES at ~30¢ (the same question, same orientation). Read with an
    inverted ``kalshi_yes_is``, Kalshi YES (0.31) + ForecastEx YES (0.31) looks like a
    $0.38 gross edge, ~36.5¢ after fees — a doubled directional bet, not an arbitrage."""
    venues.kalshi_book(yes=[("0.29", 100)], no=[("0.69", 100)])
    venues.fx_book(yes=[("0.30", 100)], no=[("0.70", 100)])


async def test_wrong_orientation_is_blocked_with_an_alert_and_no_orders(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    db = tmp_path / "risk.sqlite"
    mispriced_books(venues)  # before start: no half-updated book in between
    mon = live_monitor(venues, auth, tmp_path, smap=symbol_map(kalshi_yes_is="no"), db_name=db.name)
    async with running(mon):
        await ready(mon)
        await until(lambda: bool(mon.alerts), 10, "the false-opportunity alert")
        await quiet(1.0)
        _, symbol, why = mon.alerts[0]
        assert "check the pairing" in why
        snap = mon.snapshot()
        assert symbol in snap.blocked_symbols
        assert mon.executor is not None and not mon.executor.completed
        edges = [o.net_edge_per_contract for o in mon.recent_opportunities]
        assert max(edges) > 300_000, edges  # the tempting "edge" was there
    assert kalshi_orders(venues) == 0
    assert venues.kalshi_positions() == {} and venues.fx_positions() == {}
    assert rows(db, "SELECT field, new FROM audit WHERE source = 'risk'") == [
        ("symbol_blocked", symbol)
    ]


async def test_live_trades_only_verified_pairs(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """An equivalence block without ``verified_by``/``verified_on``: live sees the arb,
    refuses it and says why; no order reaches either venue."""
    smap = symbol_map(
        equivalence={"relation": "identical", "resolution_source": "FOMC", "cutoff_time": "x"}
    )
    no_arb(venues)
    mon = live_monitor(venues, auth, tmp_path, smap=smap)
    async with running(mon):
        await ready(mon)
        assert mon.unverified == {"FED": ["verified_by", "verified_on"]}
        venues.arb_books()
        await until(lambda: bool(mon.recent_opportunities), 10, "the opportunity")
        await quiet(1.0)
        why = {o.reason for o in mon.recent_opportunities}
        assert why == {
            "FED is not verified for live trading: its equivalence block lacks verified_by, "
            "verified_on"
        }, why
        assert mon.executor is not None and not mon.executor.completed
    assert kalshi_orders(venues) == 0
    assert venues.kalshi_positions() == {} and venues.fx_positions() == {}
