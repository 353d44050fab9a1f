"""The batched telemetry writer: batches, flushes on stop, reports every dropped row."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

import pytest

from arbkit.model import Mode, Money, Price, Qty
from arbkit.storage.database import Database, DatabaseWriter
from arbkit.storage.records import SpreadSample

from .helpers import make_opportunity
from .test_database import intent


async def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll a condition (generous bound: this is not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def count(db: Database, table: str) -> int:
    s = await db.summary()
    return s.counts[table]


def sample(symbol: str = "S", ts_ns: int = 1) -> SpreadSample:
    return SpreadSample(
        ts_ns=ts_ns,
        symbol=symbol,
        kalshi_yes_ask=Price(4100),
        kalshi_yes_size=Qty(1000),
        kalshi_no_ask=Price(6000),
        kalshi_no_size=Qty(250),
        ibkr_yes_ask=Price(4200),
        ibkr_yes_size=Qty(500),
        ibkr_no_ask=None,
        ibkr_no_size=None,
        cost_kalshi_yes=None,
        cost_kalshi_no=10_200,
    )


async def test_batches_by_size_and_flushes_everything_on_stop(db: Database) -> None:
    w = DatabaseWriter(db, flush_interval_ms=60_000, batch_size=10)
    w.start()
    ids = [w.opportunity(make_opportunity(detected_ns=n), Mode.PAPER, "logged") for n in range(25)]
    assert ids == list(range(1, 26))  # ids are known before the row hits the disk
    await until(lambda: w.stats.written_opportunities >= 20)  # two full batches, no timer
    await w.stop()
    st = w.stats
    assert (st.written_opportunities, st.dropped, st.failed, st.queued) == (25, 0, 0, 0)
    assert st.max_batch == 10 and st.flushes >= 3
    assert await count(db, "opportunities") == 25


async def test_flushes_on_interval(db: Database) -> None:
    w = DatabaseWriter(db, flush_interval_ms=20, batch_size=1000)
    w.start()
    for n in range(3):
        assert w.spread(sample(ts_ns=n))
    await until(lambda: w.stats.written_spreads == 3)
    assert await count(db, "spreads") == 3
    await w.stop()


async def test_rows_are_stored_exactly(db: Database) -> None:
    opp = make_opportunity()
    async with DatabaseWriter(db) as w:
        oid = w.opportunity(opp, Mode.LIVE, "executed", "edge ok", execution_id="e1")
        w.spread(sample())
    conn = db._journal
    assert conn is not None
    async with conn.execute(
        "SELECT id, symbol, combo, kalshi_outcome, kalshi_limit_price_e4, kalshi_size_e2, "
        "kalshi_cost_e6, kalshi_fee_e6, ibkr_outcome, ibkr_limit_price_e4, ibkr_cost_e6, "
        "gross_cost_e6, total_fees_e6, expected_profit_e6, net_edge_per_contract_e6, "
        "annualized_return_bps, detected_ns, kalshi_book_ns, ibkr_book_ns, mode, decision, "
        "reason, execution_id, expected_profit_usd, detected_at FROM v_opportunities"
    ) as cur:
        row = await cur.fetchone()
    assert row == (
        oid,
        opp.symbol,
        opp.combo,
        "yes",
        4100,
        300,
        1_230_000,
        60_000,
        "no",
        5500,
        1_650_000,
        2_880_000,
        90_000,
        30_000,
        10_000,
        1234,
        opp.detected_ts_ns,
        opp.kalshi_book_ts_ns,
        opp.ibkr_book_ts_ns,
        "live",
        "executed",
        "edge ok",
        "e1",
        0.03,
        "2023-11-14T22:13:20.123456789Z",
    )
    async with conn.execute(
        "SELECT kalshi_yes_ask_e4, kalshi_yes_ask_usd, ibkr_no_ask_e4, cost_kalshi_yes_e4, "
        "cost_kalshi_no_e4, cost_kalshi_no_usd, kalshi_no_size FROM v_spreads"
    ) as cur:
        assert await cur.fetchone() == (4100, 0.41, None, None, 10_200, 1.02, 2.5)


async def test_full_queue_is_counted_and_logged(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    w = DatabaseWriter(db, max_queue=5)  # not started: nothing drains the queue
    with caplog.at_level(logging.WARNING, logger="arbkit.storage.database"):
        got = [w.opportunity(make_opportunity(), Mode.MONITOR, "logged") for _ in range(8)]
        assert not w.spread(sample())
    assert got[:5] == [1, 2, 3, 4, 5] and got[5:] == [None, None, None]
    assert w.dropped == 4 and w.stats.queued == 5
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited, but never silent
    assert "queue full" in warnings[0].getMessage()
    w.start()
    await w.stop()
    assert w.stats.written_opportunities == 5 and w.dropped == 4
    # after stop nothing is accepted, and that is reported too
    assert w.opportunity(make_opportunity(), Mode.MONITOR, "logged") is None
    assert w.dropped == 5


async def test_bad_row_does_not_lose_its_batch(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    bad = dataclasses.replace(make_opportunity(), expected_profit=Money(2**70))
    async with DatabaseWriter(db, batch_size=100) as w:
        w.opportunity(make_opportunity(), Mode.PAPER, "skipped", "risk")
        w.opportunity(bad, Mode.PAPER, "skipped", "risk")
        w.opportunity(make_opportunity(), Mode.PAPER, "skipped", "risk")
    assert (w.stats.written_opportunities, w.stats.failed) == (2, 1)
    assert await count(db, "opportunities") == 2
    assert any("row refused" in r.getMessage() for r in caplog.records)


async def test_decision_is_validated(db: Database) -> None:
    w = DatabaseWriter(db)
    with pytest.raises(ValueError, match="decision"):
        w.opportunity(make_opportunity(), Mode.PAPER, "maybe")


async def test_opportunity_ids_continue_after_reopen(db: Database) -> None:
    async with DatabaseWriter(db) as w:
        assert w.opportunity(make_opportunity(), Mode.PAPER, "logged") == 1
        assert w.opportunity(make_opportunity(), Mode.PAPER, "logged") == 2
    await db.close()
    await db.open()
    async with DatabaseWriter(db) as w:
        assert w.opportunity(make_opportunity(), Mode.PAPER, "logged") == 3


async def test_journal_commits_while_writer_is_busy(db: Database) -> None:
    """Telemetry batches and journal commits share the file without blocking each other."""
    async with DatabaseWriter(db, batch_size=500, flush_interval_ms=1) as w:
        for n in range(5_000):
            w.spread(sample(ts_ns=n))
        for n in range(20):
            await intent(db, f"e{n}")
    assert w.stats.written_spreads == 5_000
    assert len(await db.open_executions()) == 20


async def test_two_writers_on_one_file_lose_no_rows(tmp_path: object) -> None:
    """A replay --db next to a running monitor: two runs write opportunities into one
    file at the same time. Each run allocates ids from its own block, so no insert
    collides (``UNIQUE constraint failed``) and every row of both runs is kept."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "shared.sqlite"
    a, b = Database(path), Database(path)
    await a.open()
    await b.open()  # both read the same MAX(id) here
    try:
        runs = [await a.begin_run("paper", "x"), await b.begin_run("replay", "y")]
        wa = DatabaseWriter(a, flush_interval_ms=5, batch_size=7)
        wb = DatabaseWriter(b, flush_interval_ms=5, batch_size=5)
        wa.start()
        wb.start()
        ids = []
        for i in range(60):
            ids.append(wa.opportunity(make_opportunity("A", 1_000 + i), Mode.PAPER, "executed"))
            ids.append(wb.opportunity(make_opportunity("B", 2_000 + i), Mode.PAPER, "skipped"))
            await asyncio.sleep(0)
        await wa.stop()
        await wb.stop()
        assert len(set(ids)) == 120 and None not in ids
        assert (wa.stats.dropped, wb.stats.dropped) == (0, 0)
        for db in (a, b):
            assert await count(db, "opportunities") == 120
    finally:
        await a.close()
        await b.close()
    import sqlite3

    con = sqlite3.connect(path)
    got = dict(con.execute("SELECT run_id, count(*) FROM opportunities GROUP BY run_id"))
    con.close()
    assert got == {runs[0]: 60, runs[1]: 60}
