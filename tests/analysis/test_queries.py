"""Every named query over the sample database: non-empty, exact where worked out by hand,
and the same over the SQLite file and its Parquet export."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections import Counter
from decimal import Decimal as D
from pathlib import Path

import pytest

from arbkit.analysis.duck import connect
from arbkit.analysis.export import export_main, export_parquet
from arbkit.analysis.queries import QUERIES, Analysis
from arbkit.storage.database import Database, DatabaseWriter
from arbkit.storage.schema import TABLES

from .sample_db import SYMBOLS, spread_samples


@pytest.fixture(scope="module", params=["sqlite", "parquet"])
def analysis(request: pytest.FixtureRequest, sample_db: Path, parquet_dir: Path) -> Analysis:
    a = Analysis(sample_db if request.param == "sqlite" else parquet_dir)
    request.addfinalizer(a.close)
    return a


def _rows(a: Analysis, name: str, **params: int | str | None) -> list[dict[str, object]]:
    return a.records(name, **params)


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_query_returns_rows(analysis: Analysis, name: str) -> None:
    df = analysis.frame(name)
    assert not df.empty, name
    assert len(df) == len(analysis.records(name))


def test_cost_to_arb_distribution_counts_every_sample(analysis: Analysis) -> None:
    for cents in (1, 5):
        expected: Counter[tuple[str, str, int]] = Counter()
        for s in spread_samples():
            for combo, cost in (("kalshi_yes", s.cost_kalshi_yes), ("kalshi_no", s.cost_kalshi_no)):
                if cost is not None:  # an empty book side is no sample
                    expected[(s.symbol, combo, cost // (cents * 100) * cents * 100)] += 1
        rows = _rows(analysis, "cost_to_arb_distribution", bucket_cents=cents)
        got = {
            (r["symbol"], r["combo"], int(D(str(r["cost_usd"])) * 10_000)): r["samples"]
            for r in rows
        }
        assert got == dict(expected)
        for r in rows:
            assert r["cost_to_usd"] == r["cost_usd"] + D(cents) / 100  # type: ignore[operator]
            assert r["below_one_dollar"] == (r["cost_to_usd"] <= 1)  # type: ignore[operator]
    r0 = _rows(analysis, "cost_to_arb_distribution")[0]
    assert isinstance(r0["cost_usd"], D)


def test_cost_to_arb_percentiles(analysis: Analysis) -> None:
    rows = {(r["symbol"], r["combo"]): r for r in _rows(analysis, "cost_to_arb_percentiles")}
    assert len(rows) == 2 * len(SYMBOLS)
    for sym in SYMBOLS:
        yes = [s.cost_kalshi_yes for s in spread_samples() if s.symbol == sym]
        costs = [c for c in yes if c is not None]
        r = rows[(sym, "kalshi_yes")]
        assert r["samples"] == len(costs) == 180
        assert r["min_usd"] == D(min(costs)) / 10_000
        assert r["max_usd"] == D(max(costs)) / 10_000
        assert r["samples_below_one_dollar"] == sum(c < 10_000 for c in costs)
        ranked = sorted(costs)
        for p in (5, 25, 50, 75, 95):  # nearest rank: the ceil(p% · n)-th smallest
            assert r[f"p{p:02d}_usd"] == D(ranked[math.ceil(p * len(ranked) / 100) - 1]) / 10_000
        # Kalshi NO + ForecastEx YES never goes below $1 here; 4 samples had no Kalshi NO
        assert rows[(sym, "kalshi_no")]["samples"] == 176
        assert rows[(sym, "kalshi_no")]["samples_below_one_dollar"] == 0


def test_opportunities_by_hour(analysis: Analysis) -> None:
    rows = _rows(analysis, "opportunities_by_hour")
    assert [(str(r["hour"]), r["symbol"]) for r in rows] == [
        ("2027-01-15 08:00:00", "FED-25DEC"),
        ("2027-01-15 09:00:00", "CPI-26JAN"),
        ("2027-01-15 10:00:00", "GDP-26Q1"),
    ]
    fed = rows[0]
    assert (fed["opportunities"], fed["executed"], fed["skipped"], fed["logged"]) == (4, 1, 2, 1)
    # edges $0.01, $0.01, $0.01, $0.02 per contract
    assert fed["mean_net_edge_usd"] == D("0.0125")
    assert fed["max_net_edge_usd"] == D("0.02")
    assert fed["expected_profit_usd"] == D("0.15")


def test_opportunity_duration_episodes(analysis: Analysis) -> None:
    rows = _rows(analysis, "opportunity_duration")
    fed = [r for r in rows if r["symbol"] == "FED-25DEC"]
    assert [(r["duration_s"], r["detections"], r["executed"]) for r in fed] == [
        (2.0, 3, 1),
        (0.0, 1, 0),
    ]
    assert fed[1]["max_net_edge_usd"] == D("0.02")
    cpi = [r for r in rows if r["symbol"] == "CPI-26JAN"]
    assert [(r["combo"], r["duration_s"], r["detections"]) for r in cpi] == [
        ("kalshi_no+ibkr_yes", 1.0, 2)
    ]
    # a longer gap joins FED's two episodes (20 s apart) into one
    fed = [
        r
        for r in _rows(analysis, "opportunity_duration", gap_ms=30_000)
        if r["symbol"] == "FED-25DEC"
    ]
    assert [(r["duration_s"], r["detections"]) for r in fed] == [(22.0, 4)]


def test_fee_drag(analysis: Analysis) -> None:
    fed = next(r for r in _rows(analysis, "fee_drag") if r["symbol"] == "FED-25DEC")
    # 3 × ($3 − $2.88) + ($3 − $2.85) gross; 4 × $0.09 fees
    assert (fed["gross_edge_usd"], fed["fees_usd"], fed["net_edge_usd"]) == (
        D("0.51"),
        D("0.36"),
        D("0.15"),
    )
    assert fed["contracts"] == D(12)
    assert fed["fee_share_of_gross"] == pytest.approx(0.36 / 0.51)
    executed = _rows(analysis, "fee_drag", decision="executed")
    assert [(r["symbol"], r["gross_edge_usd"], r["net_edge_usd"]) for r in executed] == [
        ("CPI-26JAN", D("0.06"), D("0.03")),
        ("FED-25DEC", D("0.12"), D("0.03")),
    ]


def test_pnl_over_time(analysis: Analysis) -> None:
    rows = _rows(analysis, "pnl_over_time")
    assert [(r["mode"], r["execution_id"], r["cumulative_pnl_usd"]) for r in rows] == [
        ("live", "e3", D("0.12")),
        ("paper", "e1", D("0.03")),
        ("paper", "e2", D("-0.02")),
        ("paper", "e4", D("-0.02")),
    ]
    assert rows[-1]["cumulative_hedge_cost_usd"] == D("0.08")


def test_hedge_costs(analysis: Analysis) -> None:
    (r,) = _rows(analysis, "hedge_costs")
    assert (r["execution_id"], r["state"], r["hedge_cost_usd"]) == ("e2", "hedged", D("0.08"))
    assert (r["hedge_orders"], r["hedge_filled"], r["hedge_fees_usd"]) == (1, D(2), D("0.02"))
    assert r["hedge_filled_cost_usd"] == D("1.12")
    assert r["hedge_ms"] == 150.0


def test_latency_by_stage(analysis: Analysis) -> None:
    rows = {(r["mode"], r["stage"]): r for r in _rows(analysis, "latency_by_stage")}
    assert rows[("paper", "leg1_ack_ms")]["executions"] == 3
    assert rows[("paper", "leg2_ack_ms")]["executions"] == 2  # e4 never sent leg 2
    assert rows[("paper", "leg2_ack_ms")]["p50_ms"] == pytest.approx(34.0)
    assert rows[("paper", "decide_to_submit_ms")]["p99_ms"] == pytest.approx(0.3)
    assert rows[("paper", "hedge_ms")]["max_ms"] == pytest.approx(150.0)
    assert ("live", "hedge_ms") not in rows  # a stage not reached is no sample
    stages = [s for m, s in rows if m == "live"]
    assert stages[0] == "detect_to_decide_ms" and stages[-1] == "leg2_fill_ms"


def test_executions_summary(analysis: Analysis) -> None:
    rows = {(r["mode"], r["state"]): r for r in _rows(analysis, "executions_summary")}
    assert set(rows) == {
        ("live", "done"),
        ("paper", "done"),
        ("paper", "failed"),
        ("paper", "hedged"),
    }
    hedged = rows[("paper", "hedged")]
    assert (hedged["orders"], hedged["fees_usd"], hedged["realized_pnl_usd"]) == (
        3,
        D("0.043"),
        D("-0.05"),
    )


def test_summary(analysis: Analysis) -> None:
    s = analysis.summary()
    assert s["rows"] == {
        "opportunities": 7,
        "spreads": 540,
        "arb_executions": 4,
        "executions": 8,
        "positions": 3,
    }
    assert s["realized_pnl_usd"] == D("0.10") and s["hedge_cost_usd"] == D("0.08")
    assert s["realized_pnl_usd_by_mode"] == {"live": D("0.12"), "paper": D("-0.02")}
    assert s["opportunities_by_decision"] == {"executed": 2, "logged": 2, "skipped": 3}
    assert s["executions_by_state"] == {"done": 2, "failed": 1, "hedged": 1}
    assert s["open_positions"] == 2
    fed = s["by_symbol"]["FED-25DEC"]
    assert fed["best_net_edge_per_contract_usd"] == D("0.02") and fed["opportunities"] == 4
    lowest = min(
        c
        for x in spread_samples()
        if x.symbol == "FED-25DEC"
        for c in (x.cost_kalshi_yes, x.cost_kalshi_no)
        if c is not None
    )
    assert fed["lowest_cost_to_arb_usd"] == D(lowest) / 10_000


def test_parquet_export_round_trip(sample_db: Path, parquet_dir: Path) -> None:
    """Same exact answers from the Parquet files; integers stay exact INT64."""
    con = connect()
    for table in TABLES:
        path = parquet_dir / f"{table}.parquet"
        assert path.is_file()
    types = dict(
        con.execute(
            f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
            f"read_parquet('{parquet_dir / 'spreads.parquet'}'))"
        ).fetchall()
    )
    assert types["cost_kalshi_yes_e4"] == "BIGINT" and types["sampled_ns"] == "BIGINT"
    with Analysis(sample_db) as a, Analysis(parquet_dir) as b:
        for name in QUERIES:
            assert a.records(name) == b.records(name), name
        assert {k: v for k, v in a.summary().items() if k != "source"} == {
            k: v for k, v in b.summary().items() if k != "source"
        }
    assert not list(parquet_dir.glob(".*.tmp"))  # no partial files left behind


def test_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"

    async def create() -> None:
        async with Database(path):
            pass

    asyncio.run(create())
    export_parquet(path, tmp_path / "pq")
    for source in (path, tmp_path / "pq"):
        with Analysis(source) as a:
            for name in QUERIES:
                assert a.frame(name).empty, name
            s = a.summary()
            assert s["realized_pnl_usd"] == 0 and s["rows"]["spreads"] == 0


def test_bad_source_and_params(tmp_path: Path, sample_db: Path) -> None:
    with pytest.raises(FileNotFoundError, match="arbkit demo"):
        Analysis(tmp_path / "missing.sqlite")
    (tmp_path / "notanexport").mkdir()
    with pytest.raises(FileNotFoundError, match=r"spreads\.parquet"):
        Analysis(tmp_path / "notanexport")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as c:
        c.execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(ValueError, match="not an arbkit database"):
        Analysis(other)
    with Analysis(sample_db) as a:
        with pytest.raises(KeyError, match="unknown query"):
            a.frame("nope")
        with pytest.raises(TypeError, match="bucket_cents"):
            a.frame("cost_to_arb_distribution", gap_ms=3)


def test_cli_bodies(tmp_path: Path, sample_db: Path) -> None:
    """The export command's body (analyze's is arbkit.analysis.report: test_report)."""
    out: list[str] = []
    out.clear()
    assert export_main(sample_db, tmp_path / "export", out.append) == 0
    assert len(out) == len(TABLES)
    assert {p.name for p in (tmp_path / "export").iterdir()} == {f"{t}.parquet" for t in TABLES}
    assert export_main(tmp_path / "missing.sqlite", tmp_path / "x", out.append) == 2
    assert not (tmp_path / "x").exists()


async def test_reads_a_database_in_use(tmp_path: Path) -> None:
    """The notebook may run while the monitor writes: a read-only attach sees committed
    rows and never blocks the writer."""
    path = tmp_path / "live.sqlite"
    samples = spread_samples()
    async with Database(path) as db:
        async with DatabaseWriter(db, flush_interval_ms=1) as w:
            for s in samples[:100]:
                w.spread(s)
        with Analysis(path) as a:
            assert a.summary()["rows"]["spreads"] == 100
            async with DatabaseWriter(db, flush_interval_ms=1) as w:
                for s in samples[100:150]:
                    w.spread(s)
            assert w.stats.written_spreads == 50
        with Analysis(path) as a:
            assert a.summary()["rows"]["spreads"] == 150
