"""Schema, migrations, exact round trips and the execution journal."""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbkit.execution.journal import ExecState, ExecutionRecord, Leg, LegOrderRecord
from arbkit.execution.venue import OrderState
from arbkit.model import Mode, Money, Outcome, Price, Qty, Venue
from arbkit.storage.database import Database, JournalError, StorageError
from arbkit.storage.schema import EXEC_STATES, ORDER_STATES, SCHEMA_VERSION, TABLES

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
VIEWS = tuple(f"v_{t}" for t in TABLES)


def record(eid: str = "e1", state: ExecState = ExecState.INTENT, **kw: object) -> ExecutionRecord:
    ex = ExecutionRecord(
        execution_id=eid,
        symbol="FED-25DEC",
        combo="kalshi_yes+ibkr_no",
        mode=Mode.PAPER,
        state=state,
        created_ns=1_000,
        updated_ns=1_000,
        planned_qty=Qty(300),
        expected_profit=Money(30_000),
        opportunity_id=7,
        stages_ns={"detected": 900, "decided": 1_000},
    )
    return dataclasses.replace(ex, **kw)  # type: ignore[arg-type]


def order(eid: str = "e1", leg: Leg = Leg.LEG1, attempt: int = 0, **kw: object) -> LegOrderRecord:
    rec = LegOrderRecord(
        execution_id=eid,
        leg=leg,
        attempt=attempt,
        mode=Mode.PAPER,
        venue=Venue.KALSHI if leg is not Leg.LEG2 else Venue.IBKR,
        symbol="FED-25DEC",
        outcome=Outcome.YES if leg is not Leg.LEG2 else Outcome.NO,
        limit_price=Price(4100),
        requested_qty=Qty(300),
        client_order_id=f"{eid}-{leg.value}-{attempt}",
        decided_ns=1_000,
    )
    return dataclasses.replace(rec, **kw)  # type: ignore[arg-type]


async def intent(db: Database, eid: str = "e1", **kw: object) -> ExecutionRecord:
    ex = record(eid, **kw)
    await db.record_intent(ex, order(eid))
    return ex


# ---------------------------------------------------------------- schema ----------


async def test_open_creates_dir_migrates_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "arbkit.sqlite"
    db = await Database(path).open()
    try:
        assert db.user_version == SCHEMA_VERSION >= 1
        assert db._journal is not None and db._telemetry is not None
        # journal commits are fsynced (FULL=2), telemetry batches NORMAL=1
        async with db._journal.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone()) == (2,)
        async with db._telemetry.execute("PRAGMA synchronous") as cur:
            assert (await cur.fetchone()) == (1,)
    finally:
        await db.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert set(TABLES) <= names
    assert set(VIEWS) <= names
    assert "schema_migrations" not in names  # user_version is the version


async def test_reopen_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "arbkit.sqlite"
    async with Database(path) as db:
        await intent(db)
        await db.set_position("FED-25DEC", Venue.KALSHI, Outcome.YES, Qty(300), Money(1), 5)
    for _ in range(2):
        async with Database(path) as db:
            assert db.user_version == SCHEMA_VERSION
            assert [e.execution_id for e in await db.open_executions()] == ["e1"]
            assert len(await db.positions()) == 1


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "arbkit.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="upgrade arbkit"):
        await Database(path).open()


async def test_use_before_open_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not open"):
        await Database(tmp_path / "x.sqlite").positions()


async def test_migration_from_empty_matches_docs() -> None:
    """Every table and view in the schema is documented in docs/schema.md."""
    doc = (Path(__file__).parents[2] / "docs" / "schema.md").read_text()
    for name in (*TABLES, *VIEWS):
        assert f"`{name}`" in doc, name


def test_schema_enums_match_the_executor() -> None:
    """A new ExecState/OrderState value needs a migration: the CHECKs would refuse it."""
    assert set(EXEC_STATES) == {s.value for s in ExecState}
    assert set(ORDER_STATES) == {s.value for s in OrderState}


# ---------------------------------------------------------- exactness -------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(qty=INT64, cost=INT64, price=INT64, filled=INT64, fees=INT64, ts=INT64)
async def test_int64_round_trip_exact(
    tmp_path: Path, qty: int, cost: int, price: int, filled: int, fees: int, ts: int
) -> None:
    async with Database(tmp_path / f"{uuid.uuid4().hex}.sqlite") as db:
        await db.set_position("S", Venue.IBKR, Outcome.NO, Qty(qty), Money(cost), ts)
        [pos] = await db.positions()
        assert (pos.qty, pos.cost, pos.updated_ns) == (qty, cost, ts)

        ex = record(
            planned_qty=Qty(qty),
            expected_profit=Money(cost),
            created_ns=ts,
            stages_ns={"detected": ts, "custom_stage": ts},
        )
        leg = order(
            limit_price=Price(price),
            requested_qty=Qty(qty),
            filled_qty=Qty(filled),
            filled_cost=Money(cost),
            fees=Money(fees),
            acked_ns=ts,
        )
        await db.record_intent(ex, leg)
        ex.state, ex.realized_pnl, ex.hedge_cost = ExecState.LEG1_SENT, Money(fees), Money(cost)
        await db.record_state(ex)
        got = await db.execution("e1")
        assert got is not None
        assert got.orders == [leg]
        assert dataclasses.replace(got, orders=[]) == ex
        # the view's dollar columns are the exact integers scaled, computed only there
        conn = db._journal
        assert conn is not None
        async with conn.execute(
            "SELECT fees_e6, fees_usd, limit_price_usd, filled_qty FROM v_executions"
        ) as cur:
            r = await cur.fetchone()
        assert r is not None
        assert r[0] == fees and r[1] == fees / 1e6 and r[2] == price / 1e4 and r[3] == filled / 1e2


async def test_values_outside_int64_or_inexact_are_refused(db: Database) -> None:
    with pytest.raises(OverflowError):
        await db.set_position("S", Venue.IBKR, Outcome.NO, Qty(2**63), Money(0), 1)
    # STRICT tables: a fractional float cannot sneak into an integer column
    with pytest.raises(sqlite3.IntegrityError):
        await db.set_position("S", Venue.IBKR, Outcome.NO, Qty(1), Money(0.5), 1)  # type: ignore[arg-type]
    with pytest.raises(JournalError, match="expected int ns"):
        await db.record_intent(record(stages_ns={"decided": 1.5}), order())  # type: ignore[dict-item]
    assert await db.positions() == []
    assert await db.execution("e1") is None


async def test_views_show_dollars_and_iso_times(db: Database) -> None:
    await db.set_position(
        "S", Venue.KALSHI, Outcome.YES, Qty(250), Money(1_234_567), 1_700_000_000_000_000_001
    )
    await intent(db)
    await db.record_order(
        order(state=OrderState.FILLED, filled_qty=Qty(300), filled_cost=Money(1_230_000))
    )
    conn = db._journal
    assert conn is not None
    async with conn.execute("SELECT qty, cost_usd, updated_at FROM v_positions") as cur:
        assert await cur.fetchone() == (2.5, 1.234567, "2023-11-14T22:13:20.000000001Z")
    async with conn.execute("SELECT avg_price_usd, submitted_at FROM v_executions") as cur:
        assert await cur.fetchone() == (0.41, None)
    async with conn.execute(
        "SELECT detect_to_decide_ms, leg1_ack_ms, expected_profit_usd FROM v_arb_executions"
    ) as cur:
        assert await cur.fetchone() == (0.0001, None, 0.03)


# ------------------------------------------------------------- journal ------------


async def test_intent_is_listed_for_reconciliation(db: Database) -> None:
    ex = await intent(db)
    [got] = await db.open_executions()
    assert dataclasses.replace(got, orders=[]) == ex
    [o] = got.orders
    assert o == order()
    assert (o.state, o.submitted_ns) == (OrderState.PENDING, 0)  # 0 = not yet, stored NULL


async def test_intent_is_never_journaled_twice(db: Database) -> None:
    await intent(db)
    with pytest.raises(JournalError, match="never reused"):
        await intent(db)
    # a reused client order id rolls the whole second intent back
    with pytest.raises(JournalError, match="e1-leg1-0"):
        await db.record_intent(record("e2"), order("e1"))
    with pytest.raises(JournalError, match="belongs to"):
        await db.record_intent(record("e3"), order("e2"))
    assert await db.execution("e2") is None
    assert [e.execution_id for e in await db.open_executions()] == ["e1"]


async def test_order_upsert_progress_and_identity(db: Database) -> None:
    await intent(db)
    leg2 = order(leg=Leg.LEG2, decided_ns=2_000)
    await db.record_order(leg2)  # planned leg 2, committed before sending
    leg2.submitted_ns = 3_000
    await db.record_order(leg2)
    leg2.state, leg2.venue_order_id, leg2.acked_ns, leg2.filled_ns = (
        OrderState.FILLED,
        "V-9",
        4_000,
        4_000,
    )
    leg2.filled_qty, leg2.filled_cost, leg2.fees = Qty(200), Money(1_100_000), Money(20_000)
    await db.record_order(leg2)
    # an update that does not know the timestamps (0) keeps the recorded ones
    await db.record_order(dataclasses.replace(leg2, decided_ns=0, submitted_ns=0, reason=""))
    ex = await db.execution("e1")
    assert ex is not None
    assert [o.leg for o in ex.orders] == [Leg.LEG1, Leg.LEG2]
    assert ex.orders[1] == leg2
    # identity is immutable: same client order id with other terms is refused
    with pytest.raises(JournalError, match="different terms"):
        await db.record_order(dataclasses.replace(leg2, limit_price=Price(5600)))
    with pytest.raises(JournalError, match="different terms"):
        await db.record_order(dataclasses.replace(leg2, requested_qty=Qty(1)))
    # an order of an execution that was never journaled
    with pytest.raises(JournalError, match="journaled"):
        await db.record_order(order("nope"))


async def test_state_updates_and_guards(db: Database) -> None:
    ex = await intent(db)
    ex.state = ExecState.LEG1_SENT
    ex.stages_ns["leg1_submit"] = 1_900
    ex.stages_ns["exotic"] = 5
    await db.record_state(ex)
    ex.state, ex.updated_ns, ex.error = ExecState.HEDGING, 3_000, "leg 2 rejected"
    ex.stages_ns = {"hedge_start": 3_000}  # a record missing old stages does not erase them
    await db.record_state(ex)
    ex.state, ex.hedge_cost, ex.realized_pnl = ExecState.HEDGED, Money(12_345), Money(-12_345)
    await db.record_state(ex)
    got = await db.execution("e1")
    assert got is not None
    assert got.state is ExecState.HEDGED and got.error == "leg 2 rejected"
    assert (got.hedge_cost, got.realized_pnl, got.updated_ns) == (12_345, -12_345, 3_000)
    assert got.stages_ns == {
        "detected": 900,
        "decided": 1_000,
        "leg1_submit": 1_900,
        "exotic": 5,
        "hedge_start": 3_000,
    }
    assert await db.open_executions() == []
    await db.record_state(ex)  # same terminal state again: fields only, fine
    ex.state = ExecState.FAILED
    with pytest.raises(JournalError, match="terminal states are final"):
        await db.record_state(ex)
    with pytest.raises(JournalError, match="not journaled"):
        await db.record_state(record("zz"))
    back = await intent(db, "e2")
    back.state = ExecState.LEG1_SENT
    await db.record_state(back)
    back.state = ExecState.INTENT
    with pytest.raises(JournalError, match="nothing returns to intent"):
        await db.record_state(back)


async def test_open_and_unhedged_executions(db: Database) -> None:
    for n, state in enumerate(
        [ExecState.FAILED, ExecState.UNHEDGED, ExecState.INTENT, ExecState.HEDGING]
    ):
        ex = await intent(db, f"e{n}", created_ns=10 - n)
        ex.state = state
        await db.record_state(ex)
    assert [e.execution_id for e in await db.open_executions()] == ["e3", "e2"]  # oldest first
    [u] = await db.executions_in_state(ExecState.UNHEDGED)
    assert u.execution_id == "e1" and len(u.orders) == 1


async def test_positions_upsert(db: Database) -> None:
    await db.set_position("S", Venue.KALSHI, Outcome.YES, Qty(300), Money(1_230_000), 1)
    await db.set_position("S", Venue.IBKR, Outcome.NO, Qty(300), Money(1_650_000), 1)
    await db.set_position("S", Venue.KALSHI, Outcome.YES, Qty(0), Money(0), 2)
    pos = await db.positions()
    assert [(p.venue, p.outcome, p.qty, p.cost, p.updated_ns) for p in pos] == [
        (Venue.IBKR, Outcome.NO, 300, 1_650_000, 1),
        (Venue.KALSHI, Outcome.YES, 0, 0, 2),
    ]


async def test_recent_executions_and_summary(db: Database) -> None:
    for n in range(5):
        await intent(db, f"e{n}", created_ns=n)
    done = record("e1", ExecState.DONE, realized_pnl=Money(25_000), hedge_cost=Money(-1))
    await db.record_state(done)
    await db.record_state(record("e0", ExecState.FAILED))
    await db.set_position("S", Venue.KALSHI, Outcome.YES, Qty(100), Money(1), 1)
    recent = await db.recent_executions(3)
    assert [e.execution_id for e in recent] == ["e4", "e3", "e2"]
    assert all(len(e.orders) == 1 for e in recent)
    s = await db.summary()
    assert s.user_version == SCHEMA_VERSION
    assert s.counts == {
        "opportunities": 0,
        "spreads": 0,
        "arb_executions": 5,
        "executions": 5,
        "positions": 1,
    }
    assert s.executions_by_state == {"done": 1, "failed": 1, "intent": 3}
    assert (s.realized_pnl, s.hedge_cost, s.open_positions) == (25_000, -1, 1)


async def test_risk_history_rebuilds_daily_loss_and_failure_streak(tmp_path: Path) -> None:
    """What a restart reads back (issue 12): losses since the trading day began (profits
    never offset them), and the failure streak since the last success or user lift."""
    from arbkit.storage.records import TradingStateRow

    path = tmp_path / "risk.sqlite"
    async with Database(path) as db:
        await db.record_trading_state(TradingStateRow(50, "active", "halted", "x", "limit"))
        await db.record_trading_state(TradingStateRow(150, "halted", "active", "ok", "user"))
    day = 1_000
    execs = [  # (id, mode, state, created_ns, realized_pnl_e6, hedge_cost_e6)
        ("a", "live", "unhedged", 100, -900_000, 0),  # before the user's lift at 150
        ("b", "live", "done", 900, -50_000, 0),  # yesterday: not today's loss
        ("c", "live", "hedged", 1_100, -300_000, 200_000),
        ("d", "live", "done", 1_200, 700_000, 0),  # a profit: never offsets a loss
        ("e", "live", "hedged", 1_300, -200_000, 100_000),
        ("f", "live", "failed", 1_350, 0, 0),  # nothing filled: neither counts nor resets
        ("g", "live", "unhedged", 1_400, -100_000, 0),
        ("h", "paper", "unhedged", 1_500, -5_000_000, 0),  # another mode
    ]
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            "INSERT INTO arb_executions (execution_id, symbol, combo, mode, state, created_ns, "
            "updated_ns, planned_qty_e2, expected_profit_e6, realized_pnl_e6, hedge_cost_e6) "
            "VALUES (?, 'S', 'c', ?, ?, ?, ?, 100, 0, ?, ?)",
            [(i, m, s, t, t, p, h) for i, m, s, t, p, h in execs],
        )
    con.close()
    async with Database(path) as db:
        live = await db.risk_history(Mode.LIVE, day)
        assert live.loss_today == 300_000 + 200_000 + 100_000
        assert live.consecutive_failures == 2  # g and e, back to the success d
        assert (await db.risk_history(Mode.LIVE, 0)).loss_today == 1_550_000
        assert (await db.risk_history(Mode.PAPER, day)).loss_today == 5_000_000
        rows = await db.trading_state_rows()
        assert [(r.to_state, r.actor) for r in rows] == [("halted", "limit"), ("active", "user")]


async def test_settled_pnl_per_execution_from_settlements(db: Database) -> None:
    """Schema v4: a market settles once per (mode, venue, symbol); an execution's settled
    PnL appears when every filled leg's venue has settled, valued $1 per contract of the
    winning outcome (venue terms), beside the PnL expected at decision."""
    from arbkit.storage.records import SettlementRow

    ex = await intent(db, "e1")
    k = order("e1", state=OrderState.FILLED, filled_qty=Qty(300), filled_cost=Money(1_230_000),
              fees=Money(60_000))  # fmt: skip
    f = order("e1", Leg.LEG2, state=OrderState.FILLED, filled_qty=Qty(300),
              filled_cost=Money(1_530_000), fees=Money(30_000))  # fmt: skip
    await db.record_step(dataclasses.replace(ex, state=ExecState.LEG2_SENT), k)
    await db.record_order(f)
    await db.record_state(dataclasses.replace(ex, state=ExecState.DONE, orders=[k, f]))
    assert await db.settled_executions() == []

    def row(venue: Venue, result: Outcome, payout: int) -> SettlementRow:
        return SettlementRow(5, 4, "paper", venue, "FED-25DEC", "x", result, Qty(0), Qty(0),
                             Money(payout), Money(0), Money(0), "paper")  # fmt: skip

    assert await db.record_settlement(row(Venue.KALSHI, Outcome.YES, 3_000_000))
    assert not await db.record_settlement(row(Venue.KALSHI, Outcome.YES, 3_000_000))  # once
    assert await db.settled_executions() == []  # ForecastEx has not settled yet
    assert await db.record_settlement(row(Venue.IBKR, Outcome.YES, 0))
    [s] = await db.settled_executions()
    # Kalshi YES 3 contracts pay $3.00; ForecastEx NO pays 0; costs 2.76 + fees 0.09
    assert (s.payout, s.cost) == (3_000_000, 2_850_000)
    assert s.settled_pnl == 150_000 and s.expected_profit == 30_000
    assert [r.venue for r in await db.settlements()] == [Venue.KALSHI, Venue.IBKR]
    con = sqlite3.connect(db.path)
    try:
        assert con.execute(
            "SELECT symbol, executions, expected_profit_e6, settled_pnl_e6 FROM v_settled_symbols"
        ).fetchall() == [("FED-25DEC", 1, 30_000, 150_000)]
        assert con.execute("SELECT executions, settled_pnl_e6 FROM v_settled_runs").fetchall() == [
            (1, 150_000)
        ]
    finally:
        con.close()


async def test_a_version_3_file_migrates_keeping_its_rows(tmp_path: Path) -> None:
    """What a version-3 arbkit wrote (built by running only its migrations) opens in this
    version: settlements (v4) and fee estimates (v5) are added, the rows stay."""
    from arbkit.storage.schema import MIGRATIONS

    path = tmp_path / "v3.sqlite"
    con = sqlite3.connect(path)
    with con:
        for version, statements in enumerate(MIGRATIONS[:3]):
            for sql in statements:
                con.execute(sql)
            con.execute(f"PRAGMA user_version = {version + 1}")
        con.execute(
            "INSERT INTO arb_executions (execution_id, symbol, combo, mode, state, created_ns, "
            "updated_ns, planned_qty_e2, expected_profit_e6) "
            "VALUES ('old', 'S', 'c', 'live', 'done', 1, 1, 100, 5)"
        )
    con.close()
    async with Database(path) as db:
        assert db.user_version == SCHEMA_VERSION == 7
        assert await db.execution("old") is not None and await db.settlements() == []
