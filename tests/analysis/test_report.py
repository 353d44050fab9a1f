"""The summary behind ``arbkit analyze`` and notebook 02: open positions without the rows
that are no longer held, and the time bucket for a history of any length."""

from __future__ import annotations

import asyncio
import shutil
from decimal import Decimal
from pathlib import Path

from arbkit.analysis.queries import Analysis, bucket_seconds
from arbkit.analysis.report import money, summary_lines
from arbkit.model import Money, Outcome, Qty, Venue
from arbkit.storage.database import Database
from arbkit.storage.records import SettlementRow

from .sample_db import T0_NS, S


def test_money_has_one_precision() -> None:
    assert money(Decimal("4.43")) == "$4.430000"
    assert money(Decimal("-0.000001")) == "-$0.000001"
    assert money(Decimal("1234567.5")) == "$1,234,567.500000"
    assert money(None) == "-"


def test_bucket_seconds() -> None:
    assert bucket_seconds(None, None) == 1
    assert bucket_seconds(0, 30 * S) == 1
    assert bucket_seconds(0, 3 * 3600 * S) == 300
    assert bucket_seconds(0, 90 * 86400 * S) == 7 * 86400


def test_held_positions_leave_settled_and_old_paper_rows_out(
    sample_db: Path, tmp_path: Path
) -> None:
    db_path = tmp_path / "copy.sqlite"
    shutil.copy(sample_db, db_path)

    async def settle_and_run() -> None:
        async with Database(db_path) as db:
            # Kalshi paid FED out after the position row was written: not held any more
            await db.record_settlement(
                SettlementRow(
                    ts_ns=T0_NS + 7600 * S, settled_ns=T0_NS + 7600 * S, mode="paper",
                    venue=Venue.KALSHI, symbol="FED-25DEC", instrument="KXFED", result=Outcome.YES,
                    yes_qty=Qty(600), no_qty=Qty(0), payout=Money(6_000_000),
                    cost=Money(2_460_000), fees=Money(0), source="paper",
                )
            )  # fmt: skip
            # an older paper run's row, then a newer paper run that wrote another one
            await db.begin_run("paper", "digest-a", "old")
            await db.set_position("GDP-26Q1", Venue.KALSHI, Outcome.NO, Qty(100),
                                  Money(50_000), T0_NS + 7700 * S)  # fmt: skip
            await db.begin_run("paper", "digest-b", "new")
            await db.set_position("CPI-26JAN", Venue.IBKR, Outcome.YES, Qty(200),
                                  Money(90_000), T0_NS + 7800 * S)  # fmt: skip

    asyncio.run(settle_and_run())
    with Analysis(db_path) as a:
        s = a.summary()
    held = [(p["symbol"], p["venue"]) for p in s["positions"]]
    assert held == [("CPI-26JAN", "ibkr"), ("FED-25DEC", "ibkr")]
    stale = {(p["symbol"], p["venue"]): p["why"] for p in s["stale_positions"]}
    assert set(stale) == {("FED-25DEC", "kalshi"), ("GDP-26Q1", "kalshi")}
    assert "settled" in stale[("FED-25DEC", "kalshi")]
    assert "older run" in stale[("GDP-26Q1", "kalshi")]
    lines = summary_lines(s)
    assert "open positions    2 (2 legs); 2 stale rows not counted" in lines
