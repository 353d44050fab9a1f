"""Schema, migrations, exact round trips and the execution journal."""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbkit.execution.venue import OrderResult, OrderState
from arbkit.model import Mode, Money, Outcome, Price, Qty, Venue
from arbkit.storage.database import Database, JournalError, StorageError
from arbkit.storage.records import ExecState, ExecutionRow, LegIntent
from arbkit.storage.schema import SCHEMA_VERSION, TABLES

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
VIEWS = tuple(f"v_{t}" for t in TABLES)


def leg1(coid: str = "e1-leg1-0") -> LegIntent:
    return LegIntent(coid, Venue.KALSHI, Outcome.YES, Price(4100), Qty(300))


async def intent(db: Database, eid: str = "e1", coid: str = "e1-leg1-0") -> None:
    await db.journal_intent(eid, "FED-25DEC", Mode.PAPER, 7, [leg1(coid)], now_ns=1_000)


def order(eid: str = "e1", coid: str = "e1-leg2-0", **kw: object) -> ExecutionRow:
    row = ExecutionRow(
        execution_id=eid,
        leg="leg2",
        attempt=0,
        mode=Mode.PAPER,
        venue=Venue.IBKR,
        symbol="FED-25DEC",
        outcome=Outcome.NO,
        limit_price=Price(5500),
        requested_qty=Qty(300),
        client_order_id=coid,
        decided_ns=2_000,
    )
    return dataclasses.replace(row, **kw)  # type: ignore[arg-type]


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
            assert [e.execution_id for e in await db.non_terminal_executions()] == ["e1"]
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

        await intent(db)
        row = order(
            limit_price=Price(price),
            requested_qty=Qty(qty),
            filled_qty=Qty(filled),
            filled_cost=Money(cost),
            fees=Money(fees),
            avg_price=Price(price),
            acked_ns=ts,
        )
        await db.journal_order(row)
        await db.journal_state("e1", ExecState.LEG1_SENT, ts, realized_pnl=Money(cost))
        [ex] = await db.non_terminal_executions()
        got = ex.orders[1]
        assert dataclasses.replace(got, id=None) == row
        assert ex.realized_pnl == cost and ex.updated_ns == ts
        # the view's dollar columns are the exact integers scaled, computed only there
        conn = db._journal
        assert conn is not None
        async with conn.execute(
            "SELECT fees_e6, fees_usd, limit_price_usd, filled_qty FROM v_executions "
            "WHERE client_order_id = 'e1-leg2-0'"
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
    assert await db.positions() == []


async def test_views_show_dollars_and_iso_times(db: Database) -> None:
    await db.set_position(
        "S", Venue.KALSHI, Outcome.YES, Qty(250), Money(1_234_567), 1_700_000_000_000_000_001
    )
    conn = db._journal
    assert conn is not None
    async with conn.execute("SELECT qty, cost_usd, updated_at FROM v_positions") as cur:
        assert await cur.fetchone() == (2.5, 1.234567, "2023-11-14T22:13:20.000000001Z")


# ------------------------------------------------------------- journal ------------


async def test_intent_is_listed_for_reconciliation(db: Database) -> None:
    await intent(db)
    [ex] = await db.non_terminal_executions()
    assert ex.state is ExecState.INTENT and ex.mode is Mode.PAPER and ex.opportunity_id == 7
    assert ex.created_ns == ex.decision_ns == 1_000
    [o] = ex.orders
    assert (o.client_order_id, o.status, o.leg, o.venue, o.limit_price, o.requested_qty) == (
        "e1-leg1-0",
        "planned",
        "leg1",
        Venue.KALSHI,
        4100,
        300,
    )
    assert o.decided_ns == 1_000 and o.submitted_ns is None


async def test_intent_is_never_journaled_twice(db: Database) -> None:
    await intent(db)
    with pytest.raises(JournalError, match="already journaled"):
        await intent(db)
    # a reused client order id rolls the whole second intent back
    with pytest.raises(JournalError, match="e1-leg1-0"):
        await intent(db, eid="e2", coid="e1-leg1-0")
    assert await db.execution("e2") is None
    with pytest.raises(ValueError):
        await db.journal_intent("e3", "S", Mode.PAPER, None, [], 1)


async def test_order_upsert_progress_and_identity(db: Database) -> None:
    await intent(db)
    row = order()
    await db.journal_order(row)  # planned leg 2, committed before sending
    sent = dataclasses.replace(row, status="pending", submitted_ns=3_000)
    await db.journal_order(sent)
    result = OrderResult(
        "e1-leg2-0", "V-9", OrderState.FILLED, Qty(300), Qty(200), Money(1_100_000), Money(20_000)
    )
    await db.journal_order(sent.with_result(result, now_ns=4_000))
    # a later update that omits timestamps keeps the recorded ones
    await db.journal_order(
        dataclasses.replace(row, status="filled", filled_qty=Qty(200), decided_ns=None)
    )
    ex = await db.execution("e1")
    assert ex is not None
    got = ex.orders[1]
    assert (got.status, got.filled_qty, got.venue_order_id) == ("filled", 200, "V-9")
    assert (got.decided_ns, got.submitted_ns, got.acked_ns, got.filled_ns) == (
        2_000,
        3_000,
        4_000,
        4_000,
    )
    # identity is immutable: same client order id with other terms is refused
    with pytest.raises(JournalError, match="different terms"):
        await db.journal_order(dataclasses.replace(row, limit_price=Price(5600)))
    with pytest.raises(JournalError, match="different terms"):
        await db.journal_order(dataclasses.replace(row, execution_id="e1x"))
    # an order of an execution that was never journaled
    with pytest.raises(JournalError, match="journaled"):
        await db.journal_order(order(eid="nope", coid="nope-1"))
    with pytest.raises(ValueError):
        await db.journal_order(dataclasses.replace(row, status="weird"))


async def test_state_machine(db: Database) -> None:
    await intent(db)
    await db.journal_state("e1", ExecState.LEG1_SENT, 2_000, submit_ns=1_900)
    await db.journal_state("e1", ExecState.LEG1_SENT, 2_100, ack_ns=2_050)  # fields only
    await db.journal_state("e1", ExecState.LEG2_SENT, 3_000)
    with pytest.raises(JournalError, match="leg2_sent -> intent is not allowed"):
        await db.journal_state("e1", ExecState.INTENT, 3_100)
    await db.journal_state("e1", ExecState.DONE, 4_000, realized_pnl=Money(30_000), fill_ns=3_900)
    ex = await db.execution("e1")
    assert ex is not None
    assert ex.state is ExecState.DONE and ex.done_ns == 4_000 and ex.realized_pnl == 30_000
    assert (ex.submit_ns, ex.ack_ns, ex.fill_ns, ex.updated_ns) == (1_900, 2_050, 3_900, 4_000)
    assert await db.non_terminal_executions() == []
    with pytest.raises(JournalError, match="terminal"):
        await db.journal_state("e1", ExecState.HEDGING, 5_000)
    with pytest.raises(JournalError, match="not journaled"):
        await db.journal_state("zz", ExecState.DONE, 5_000)
    with pytest.raises(TypeError, match="unknown field"):
        await db.journal_state("e1", ExecState.DONE, 5_000, pnl=1)


async def test_unhedged_stays_non_terminal(db: Database) -> None:
    for eid in ("a", "b", "c"):
        await intent(db, eid=eid, coid=f"{eid}-1")
    await db.journal_state("a", ExecState.FAILED, 2, error="leg 1 rejected")
    await db.journal_state("b", ExecState.LEG1_SENT, 2)
    await db.journal_state("b", ExecState.UNHEDGED, 3, error="hedge failed")
    open_ = {e.execution_id: e.state for e in await db.non_terminal_executions()}
    assert open_ == {"b": ExecState.UNHEDGED, "c": ExecState.INTENT}


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
        await db.journal_intent(f"e{n}", "S", Mode.LIVE, None, [leg1(f"e{n}-1")], now_ns=n)
    await db.journal_state("e0", ExecState.FAILED, 10)
    await db.journal_state("e1", ExecState.LEG1_SENT, 10)
    await db.journal_state("e1", ExecState.LEG2_SENT, 11)
    await db.journal_state(
        "e1", ExecState.DONE, 12, realized_pnl=Money(25_000), hedge_cost=Money(-1)
    )
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
