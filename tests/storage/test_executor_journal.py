"""The real executor with the SQLite journal (main's Executor + PaperVenue): every record
it journals reads back equal, and a restart reconciles from the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbkit.execution.executor import client_order_id, execution_id_for
from arbkit.execution.journal import ExecState, ExecutionRecord, Leg, LegOrderRecord
from arbkit.execution.venue import OrderRequest, OrderState, TimeInForce
from arbkit.model import Mode, Outcome, Price, Qty, Venue
from arbkit.storage.database import Database, JournalError

from ..test_executor import F, K, Rig
from ..test_order_book import lvl


def sqlite_rig(db: Database) -> Rig:
    rig = Rig()
    rig.journal = db  # type: ignore[assignment]
    rig.ex.journal = db
    rig.books(K, F)
    return rig


async def test_happy_path_reads_back_equal(db: Database) -> None:
    rig = sqlite_rig(db)
    ex = await rig.ex.execute(rig.opportunity())
    assert ex is not None and ex.state is ExecState.DONE
    got = await db.execution(ex.execution_id)
    assert got == ex  # state, pnl, stages and both orders, field for field
    assert [o.leg for o in got.orders] == [Leg.LEG1, Leg.LEG2]
    assert all(o.state is OrderState.FILLED for o in got.orders)
    assert await db.open_executions() == []


async def test_hedged_and_unhedged_paths(db: Database) -> None:
    rig = sqlite_rig(db)
    opp0 = rig.opportunity()
    # ForecastEx moved past break-even while leg 1 was in flight: unwound on Kalshi.
    rig.during_leg1(lvl(Venue.IBKR, Outcome.NO, 5000, 0), lvl(Venue.IBKR, Outcome.NO, 6200, 1000))
    ex = await rig.ex.execute(opp0)
    assert ex is not None and ex.state is ExecState.HEDGED
    got = await db.execution(ex.execution_id)
    assert got == ex and got.hedge_cost > 0
    assert Leg.HEDGE in {o.leg for o in got.orders}

    rig = sqlite_rig(db)
    rig.ex.id_prefix = "other"  # same opportunity, a new execution id
    rig.ibkr.reject_next = "rejected"
    opp = rig.opportunity()
    # nothing to complete or unwind with
    rig.during_leg1(lvl(Venue.KALSHI, Outcome.NO, 5900, 0), lvl(Venue.IBKR, Outcome.NO, 5000, 0))
    ex = await rig.ex.execute(opp)
    assert ex is not None and ex.state is ExecState.UNHEDGED
    [u] = await db.executions_in_state(ExecState.UNHEDGED)
    assert u == ex


async def test_restart_reconciles_from_the_file(tmp_path: Path) -> None:
    path = tmp_path / "arbkit.sqlite"
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    eid = execution_id_for(opp)
    leg1 = LegOrderRecord(
        eid,
        Leg.LEG1,
        0,
        Mode.PAPER,
        Venue.KALSHI,
        "SYM",
        Outcome.YES,
        Price(4000),
        Qty(1000),
        client_order_id(eid, Leg.LEG1, 0),
    )
    intent = ExecutionRecord(
        eid, "SYM", opp.combo, Mode.PAPER, ExecState.LEG1_SENT, 1, 1, opp.size, opp.expected_profit
    )
    # before the "crash": intent journaled, leg 1 reached the venue and filled
    async with Database(path) as db:
        await db.record_intent(intent, leg1)
    req = OrderRequest(
        "SYM", Outcome.YES, Price(4000), Qty(1000), TimeInForce.IOC, leg1.client_order_id
    )
    await rig.kalshi.place_limit(req, 1)
    # after the restart: a fresh Database on the same file
    async with Database(path) as db:
        rig.ex.journal = db
        report = await rig.ex.reconcile()
        assert report.executions_checked == 1 and report.orders_found == 1
        assert report.residual_contracts == {"SYM": 10} and rig.ex.state.kill_switch
        assert await db.open_executions() == []
        got = await db.execution(eid)
        assert got is not None and got.state is ExecState.UNHEDGED  # leg 1 filled, unmatched
        assert got.orders[0].filled_qty == 1000 and got.orders[0].state is OrderState.FILLED


async def test_duplicate_execution_sends_nothing_and_keeps_the_journal(db: Database) -> None:
    """The same deterministic execution id twice: refused before any order is sent, and
    the executor's crash handler cannot overwrite the recorded outcome."""
    first = sqlite_rig(db)
    ex = await first.ex.execute(first.opportunity())
    assert ex is not None and ex.state is ExecState.DONE
    again = sqlite_rig(db)
    with pytest.raises(JournalError):
        await again.ex.execute(again.opportunity())
    assert again.kalshi.orders_received == {} and again.ibkr.orders_received == {}
    assert await db.execution(ex.execution_id) == ex
