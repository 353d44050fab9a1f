"""DuckDB (the analysis engine) reads every table of the arbkit file, and the v_* views
defined for it give exact decimals and ns timestamps."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from arbkit.analysis.duck import attach_sqlite, connect
from arbkit.execution.journal import ExecState
from arbkit.execution.venue import OrderState
from arbkit.model import Mode, Money, Outcome, Qty, Venue
from arbkit.storage.database import Database, DatabaseWriter
from arbkit.storage.schema import TABLES, duckdb_views

from .helpers import make_opportunity
from .test_database import intent, order
from .test_writer import sample


async def test_duckdb_reads_tables_and_views(tmp_path: Path) -> None:
    path = tmp_path / "arbkit.sqlite"
    async with Database(path) as db:
        async with DatabaseWriter(db) as w:
            w.opportunity(make_opportunity(), Mode.PAPER, "executed", execution_id="e1")
            w.spread(sample())
        ex = await intent(db)
        await db.record_order(
            order(state=OrderState.FILLED, filled_qty=Qty(300), filled_cost=Money(1_230_000))
        )
        ex.state, ex.realized_pnl = ExecState.DONE, Money(30_000)
        ex.stages_ns["leg1_submit"] = 1_500
        await db.record_state(ex)
        await db.set_position("FED-25DEC", Venue.KALSHI, Outcome.YES, Qty(300), Money(1), 2)

    con = connect()
    attach_sqlite(con, path)
    for table in TABLES:  # base tables keep their integer types in DuckDB
        assert con.execute(f"SELECT count(*) FROM db.{table}").fetchone() == (1,), table
    assert con.execute("SELECT typeof(fees_e6) FROM db.executions").fetchone() == ("BIGINT",)
    for stmt in duckdb_views("db"):
        con.execute(stmt)
    assert con.execute(
        "SELECT expected_profit_e6, expected_profit_usd, detected_at FROM v_opportunities"
    ).fetchone() == (
        30_000,
        Decimal("0.030000"),
        dt.datetime(2023, 11, 14, 22, 13, 20, 123456),  # TIMESTAMP_NS (python shows µs)
    )
    assert con.execute(
        "SELECT epoch_ns(detected_at) = detected_ns FROM v_opportunities"
    ).fetchone() == (True,)
    assert con.execute(
        "SELECT avg_price_usd, filled_qty, limit_price_usd, hedge FROM v_executions"
    ).fetchone() == (0.41, Decimal("3.00"), Decimal("0.4100"), 0)
    assert con.execute(
        "SELECT state, realized_pnl_usd, decide_to_submit_ms FROM v_arb_executions"
    ).fetchone() == ("done", Decimal("0.030000"), 0.0005)
    assert con.execute("SELECT cost_kalshi_no_usd, kalshi_no_size FROM v_spreads").fetchone() == (
        Decimal("1.0200"),
        Decimal("2.50"),
    )
    assert con.execute("SELECT count(*) FROM v_positions").fetchone() == (1,)
