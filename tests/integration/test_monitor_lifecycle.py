"""The monitor's lifecycle in live mode, through the REAL ArbitrageMonitor.start()/stop()
against the local venues over loopback (issue 11, findings 4–7): start-up syncs both
venues before reconciling, hedged inventory is not exposure, one miss is not proof,
continuous reconciliation halts on a position nobody journaled, stop means stop, one
writer per database and per account. Each test asserts the simulators' own state too."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from arbkit.config.execution_loader import ExecutionConfig
from arbkit.execution.journal import ExecState, ExecutionRecord, Leg, LegOrderRecord
from arbkit.execution.reconcile import ReconcileConfig
from arbkit.execution.venue import OrderResult, VenueOrderClient
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Mode, Money, Outcome, Price, Venue
from arbkit.monitor.arbitrage_monitor import (
    ArbitrageMonitor,
    IbkrEndpoint,
    KalshiEndpoint,
    LiveNeedsJournal,
    MonitorLocked,
)
from arbkit.storage.database import Database

from .rig import FX_NO, SYMBOL, TICKER, Venues, default_config, n, px, symbol_map

FAST = ReconcileConfig(misses=3, miss_window_s=0.3, cancel_confirm_s=2.0)


def monitor(
    venues: Venues,
    auth: KalshiAuth,
    db: Path | None,
    locks: Path,
    *,
    client_id: int = 21,
    config: ExecutionConfig | None = None,
    **kw: Any,
) -> ArbitrageMonitor:
    kw.setdefault("reconcile_config", FAST)
    return ArbitrageMonitor(
        symbol_map(),
        config or default_config(),
        kalshi=KalshiEndpoint(venues.exchange.rest_url, venues.exchange.ws_url, auth),
        ibkr=IbkrEndpoint(port=venues.tws.port, client_id=client_id, cache_path=None),
        db_path=db,
        confirm_live=True,
        lock_dir=locks,
        **kw,
    )


def no_arb(venues: Venues) -> None:
    """Books with no opportunity (Kalshi YES ask 0.60 + ForecastEx NO ask 0.51 > $1)."""
    venues.kalshi_book(yes=[("0.35", 50)], no=[("0.40", 10)])
    venues.fx_book(yes=[("0.49", 10)], no=[("0.45", 10)])


def kalshi_buy_yes(venues: Venues, contracts: int, client_order_id: str) -> None:
    """An order placed straight into the exchange (as a human or another program would)."""
    venues.exchange.engine.place(
        venues.key_id,
        ticker=TICKER,
        book_side="bid",
        yes_price=px("0.65"),
        count=n(contracts),
        tif="immediate_or_cancel",
        client_order_id=client_order_id,
    )


@contextlib.asynccontextmanager
async def running(mon: ArbitrageMonitor) -> AsyncIterator[ArbitrageMonitor]:
    await mon.start()
    try:
        yield mon
    finally:
        await mon.stop()


async def until(pred: Any, timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.02)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


# ------------------------------------------------------------------- finding 4 ---
async def test_live_restart_with_hedged_positions_is_not_exposure(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """Hedged inventory from an earlier run (Kalshi YES 5 + ForecastEx NO 5): a restart
    connects both venues before reconciling, loads the IBKR positions, does not halt."""
    venues.kalshi_book(yes=[("0.35", 50)], no=[("0.60", 10)])
    kalshi_buy_yes(venues, 5, "ak-earlier-l1-0")
    venues.tws.positions[FX_NO] = (5, Money(5 * 510_000))
    no_arb(venues)
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(5)}
    db = tmp_path / "live.sqlite"
    async with running(monitor(venues, auth, db, tmp_path / "locks")) as mon:
        assert mon.executor is not None
        assert not mon.kill_switch, mon.executor.state.kill_reason
        pos = mon.executor.state.positions
        assert pos.get((SYMBOL, Venue.IBKR, Outcome.NO)) == n(5)  # IBKR was synced first
        assert pos.get((SYMBOL, Venue.KALSHI, Outcome.YES)) == n(5)
        assert mon.executor.venue_up == {Venue.KALSHI: True, Venue.IBKR: True}
        report = mon.reconcile_reports[0]
        assert report.kind == "start" and report.ok and not report.residual_contracts
    # venue truth unchanged, nothing booked unhedged, positions journaled
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(5)}
    assert venues.fx_positions() == {FX_NO: 5}
    assert rows(db, "SELECT count(*) FROM arb_executions WHERE state = 'unhedged'") == [(0,)]
    held = rows(db, "SELECT venue, outcome, qty_e2 FROM positions WHERE qty_e2 != 0")
    assert sorted(held) == [("ibkr", "no", n(5)), ("kalshi", "yes", n(5))]


async def test_unhedged_position_at_start_halts_and_says_what(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """The other side of the same rule: a naked ForecastEx position halts at start."""
    venues.tws.positions[FX_NO] = (4, Money(4 * 510_000))
    no_arb(venues)
    async with running(monitor(venues, auth, tmp_path / "db.sqlite", tmp_path / "l")) as mon:
        assert mon.kill_switch
        assert mon.executor is not None
        assert "FED 4 contracts" in mon.executor.state.kill_reason
    assert venues.fx_positions() == {FX_NO: 4}


async def test_no_trading_until_both_venues_are_up_and_reconciled(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """IBKR unreachable at start: trading is refused; once TWS is back the monitor syncs,
    reconciles and only then opens the gate."""
    await venues.tws.stop()
    no_arb(venues)
    mon = monitor(venues, auth, tmp_path / "db.sqlite", tmp_path / "l", venue_connect_timeout_s=1)
    async with running(mon):
        assert mon.executor is not None
        assert mon.executor.venue_up[Venue.IBKR] is False
        assert not mon.reconcile_reports  # nothing reconciled against half the truth
        await venues.tws.start()  # same port: the gateway's retry finds it
        await until(lambda: all(mon.executor.venue_up.values()), 20, "venues up")  # type: ignore[union-attr]
        assert mon.reconcile_reports and mon.reconcile_reports[0].kind == "start"


# --------------------------------------------------- one miss is not proof (1) ---
class MissOnce:
    """A real VenueOrderClient whose first order_status per id says 'not seen' (a lagging
    read), as Kalshi's GetOrder(s) does right after a write."""

    def __init__(self, inner: VenueOrderClient) -> None:
        self.inner = inner
        self.venue = inner.venue
        self.missed: set[str] = set()

    async def order_status(self, client_order_id: str) -> OrderResult | None:
        if client_order_id not in self.missed:
            self.missed.add(client_order_id)
            return None
        return await self.inner.order_status(client_order_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_order_missed_once_at_start_is_not_booked_rejected(
    venues: Venues, auth: KalshiAuth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "crashed.sqlite"
    coid = "ak-00000000000000aa-l1-0"
    now = time.time_ns()
    ex = ExecutionRecord(
        "ak-00000000000000aa",
        SYMBOL,
        "kalshi_yes+ibkr_no",
        Mode.LIVE,
        ExecState.LEG1_SENT,
        now,
        now,
        n(5),
        Money(0),
    )
    leg1 = LegOrderRecord(
        ex.execution_id,
        Leg.LEG1,
        0,
        Mode.LIVE,
        Venue.KALSHI,
        SYMBOL,
        Outcome.YES,
        Price(4000),
        n(5),
        coid,
        submitted_ns=now,
    )
    async with Database(db) as d:
        await d.record_intent(ex, leg1)
    # the crashed process's leg 1 did reach the venue and filled
    venues.kalshi_book(yes=[("0.35", 50)], no=[("0.60", 10)])
    kalshi_buy_yes(venues, 5, coid)
    no_arb(venues)
    wrapped: list[MissOnce] = []
    real = ArbitrageMonitor._venue_clients

    def wrap(self: ArbitrageMonitor, mode: Mode) -> tuple[Any, Any]:
        k, i = real(self, mode)
        wrapped.append(MissOnce(k))
        return wrapped[0], i

    monkeypatch.setattr(ArbitrageMonitor, "_venue_clients", wrap)
    async with running(monitor(venues, auth, db, tmp_path / "l")) as mon:
        assert wrapped and coid in wrapped[0].missed  # the lagging read did happen
        assert mon.kill_switch  # leg 1 filled, no leg 2: exposure, loudly
    state, filled = rows(
        db, f"SELECT state, filled_qty_e2 FROM executions WHERE client_order_id = '{coid}'"
    )[0]
    assert (state, filled) == ("filled", n(5))  # not 'rejected'
    assert rows(
        db, f"SELECT state FROM arb_executions WHERE execution_id = '{ex.execution_id}'"
    ) == [("unhedged",)]
    audit = rows(db, "SELECT field, old, new, source FROM audit WHERE client_order_id != ''")
    assert ("state", "pending", "filled", "kalshi") in audit
    assert ("filled_qty_e2", "0", str(n(5)), "kalshi") in audit
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(5)}


# ------------------------------------------------------------------- finding 5 ---
async def test_continuous_reconciliation_halts_on_unjournaled_position(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    no_arb(venues)
    db = tmp_path / "db.sqlite"
    mon = monitor(venues, auth, db, tmp_path / "l", reconcile_interval_s=0.2)
    async with running(mon):
        assert mon.executor is not None
        await asyncio.sleep(0.5)
        assert not mon.kill_switch
        kalshi_buy_yes(venues, 3, "manual-1")  # straight into the exchange (YES ask 0.60)
        await until(lambda: mon.kill_switch, 10, "halt on the unknown position")
        # two findings, whichever pass sees it first: the foreign fill, then (on the
        # second pass, read lag ruled out) the position nobody journaled
        await until(lambda: any(r.mismatches for r in mon.reconcile_reports), 10, "the mismatch")
        said = "; ".join(r.halt_reason for r in mon.reconcile_reports if r.halted)
        assert "FED kalshi yes: journal expects 0, venue holds 3" in said
        assert "fills of orders arbkit did not create: manual-1 3" in said
        # venue truth wins in the executor's view (limits computed from it)
        assert mon.executor.state.positions[(SYMBOL, Venue.KALSHI, Outcome.YES)] == n(3)
    assert venues.kalshi_positions() == {(TICKER, Outcome.YES): n(3)}
    audit = rows(db, "SELECT field, old, new FROM audit")
    assert ("position:FED/kalshi/yes", "0", str(n(3))) in audit
    assert any(f == "trading_state" and new == "halted" for f, _, new in audit)


# ------------------------------------------------------------------- finding 6 ---
async def test_stop_under_load_starts_nothing_and_closes_the_journal_last(
    venues: Venues, auth: KalshiAuth, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    db = tmp_path / "db.sqlite"
    cfg = default_config()
    # several executions may run at once, so the gateways' callbacks can start new ones
    # while stop() waits for the running ones (what the probe saw: 1–2 per round)
    # (no cooldown: a decision during the wait would be let through by the limits alone)
    cfg = replace(cfg, risk=replace(cfg.risk, max_open_executions=3, symbol_cooldown_ms=0))
    mon = monitor(venues, auth, db, tmp_path / "l", redecide_ms=20, config=cfg)
    keep_going = True

    async def refill() -> None:  # books that keep presenting the opportunity
        while keep_going:
            venues.arb_books()
            await asyncio.sleep(0.03)

    await mon.start()
    feeder = asyncio.create_task(refill())
    try:
        await until(lambda: mon.counters.executed >= 2, 30, "executions under load")
        venues.tws.fill_delay_ms = 800  # each leg 2 now takes 0.8 s: stop() must wait
        # stop while one is in flight: the gateways keep deciding during the wait
        await until(lambda: bool(mon._exec_tasks), 30, "an execution in flight")
        venues.tws.never_fill_next_order()  # the running execution waits out its leg 2
        stop_ns = time.time_ns()
        await mon.stop()
    finally:
        keep_going = False
        await feeder
    created = rows(db, "SELECT execution_id, created_ns, state FROM arb_executions")
    assert created
    late = [r for r in created if r[1] >= stop_ns]
    assert not late, f"executions started after stop began: {late}"
    assert all(r[2] in ("done", "hedged", "failed", "unhedged") for r in created), created
    # venue truth: every order at both venues belongs to an execution begun before stop
    ids = {r[0] for r in created}
    kalshi_refs = {o.client_order_id for o in venues.exchange.engine.orders.values()}
    assert {c.rsplit("-", 2)[0] for c in kalshi_refs} <= ids
    assert {r.rsplit("-", 2)[0] for r in venues.tws.orders_by_ref} <= ids
    assert all(c == 1 for c in venues.tws.orders_by_ref.values())
    assert not [o for o in venues.exchange.engine.orders.values() if o.status == "resting"]
    assert "database is not open" not in caplog.text


# ------------------------------------------------------------------- finding 7 ---
async def test_second_monitor_on_same_database_is_refused(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    no_arb(venues)
    db = tmp_path / "db.sqlite"
    async with running(monitor(venues, auth, db, tmp_path / "l")):
        ws_before, tws_before = venues.exchange.ws_connections, venues.tws.connections
        second = monitor(venues, auth, db, tmp_path / "other-locks", client_id=22)
        with pytest.raises(MonitorLocked, match=r"database .* in use by another arbkit monitor"):
            await second.start()
        # another DB, same Kalshi key: refused as the same account
        third = monitor(venues, auth, tmp_path / "db2.sqlite", tmp_path / "l", client_id=23)
        with pytest.raises(MonitorLocked, match="Kalshi account"):
            await third.start()
        assert (venues.exchange.ws_connections, venues.tws.connections) == (
            ws_before,
            tws_before,
        )  # refused before connecting anything
    # once the first one stopped, the lock is free again
    async with running(monitor(venues, auth, db, tmp_path / "l")) as again:
        assert again.executor is not None


async def test_live_without_durable_journal_is_refused(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    mon = monitor(venues, auth, None, tmp_path / "l")
    with pytest.raises(LiveNeedsJournal, match="durable journal"):
        await mon.start()
    assert venues.exchange.ws_connections == 0 and venues.tws.connections == 0


async def test_run_time_setters_refuse_values_out_of_bounds(
    venues: Venues, auth: KalshiAuth, tmp_path: Path
) -> None:
    """A fee typed as 5 instead of 0.05, or zero contracts per trade, at run time: the
    running monitor refuses it (as a file or --set would) and keeps trading on the old
    values — the executor's config included."""
    from decimal import Decimal

    from arbkit.config._toml import ConfigError

    no_arb(venues)
    async with running(monitor(venues, auth, tmp_path / "b.sqlite", tmp_path / "l")) as mon:
        assert mon.executor is not None
        before = mon.config
        with pytest.raises(ConfigError, match="kalshi_taker_coefficient"):
            mon.set_fee_params(kalshi_taker_coefficient=Decimal(5))
        with pytest.raises(ConfigError, match="max_contracts_per_trade"):
            mon.set_detector_params(max_contracts_per_trade=0)
        assert mon.config == before
        assert mon.executor.config.fees == before.fees
        mon.set_fee_params(kalshi_taker_coefficient=Decimal("0.05"))  # in bounds: applied
        assert mon.executor.config.fees.kalshi_taker_coefficient == Decimal("0.05")
