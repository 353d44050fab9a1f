"""DuckDB over the SQLite file with 10M ``spreads`` rows (the real schema, created by
``Database``'s migrations), and over its Parquet export.

Uses the named spread queries of ``arbkit.analysis.queries`` when that module exists,
else a built-in representative set over ``arbkit.storage.schema.duckdb_views()``.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from arbkit.analysis.duck import attach_sqlite, connect
from arbkit.storage.database import Database
from arbkit.storage.schema import duckdb_views
from benchmarks.common import BENCH_DIR, Figure

START_NS = 1_780_000_000 * 10**9
N_SYMBOLS = 20

BUILTIN_QUERIES = {
    # Cost to arb (before fees) per symbol × combination: distribution summary.
    "cost_distribution": """
        WITH s AS {materialized} (  -- SQLite: one scan for both combinations
            SELECT symbol, cost_kalshi_yes_e4 AS y, cost_kalshi_no_e4 AS n FROM v_spreads
        ), c AS (
            SELECT symbol, 'kalshi_yes' AS combo, y AS cost, count(*) AS n
            FROM s WHERE y IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT symbol, 'kalshi_no', n, count(*) FROM s WHERE n IS NOT NULL GROUP BY ALL
        ), r AS (
            SELECT *, sum(n) OVER (PARTITION BY symbol, combo ORDER BY cost) AS cum,
                   sum(n) OVER (PARTITION BY symbol, combo) AS total
            FROM c
        )
        SELECT symbol, combo, max(total) AS samples,
               CAST(min(cost) AS DECIMAL(38, 0)) * 0.0001 AS min_cost_usd,
               CAST(min(cost) FILTER (WHERE cum * 2 >= total) AS DECIMAL(38, 0)) * 0.0001
                   AS median_cost_usd,
               CAST(min(cost) FILTER (WHERE cum * 100 >= total) AS DECIMAL(38, 0)) * 0.0001
                   AS p1_cost_usd,
               coalesce(sum(n) FILTER (WHERE cost < 10000), 0) AS below_one_dollar
        FROM r GROUP BY ALL ORDER BY ALL""",
    # Hourly aggregates per symbol: best and mean cost, samples with an edge.
    "hourly_cost": """
        SELECT make_timestamp_ns(h * 3600000000000) AS hour, symbol,
               CAST(best AS DECIMAL(38, 0)) * 0.0001 AS best_cost_usd,
               CAST(sum_yes AS DECIMAL(38, 0)) * 0.0001 / samples AS mean_cost_yes_usd,
               samples, edge_samples
        FROM (
            SELECT sampled_ns // 3600000000000 AS h, symbol,
                   min(least(cost_kalshi_yes_e4, cost_kalshi_no_e4)) AS best,
                   sum(cost_kalshi_yes_e4) AS sum_yes, count(*) AS samples,
                   count(*) FILTER (WHERE cost_kalshi_yes_e4 < 10000
                                     OR cost_kalshi_no_e4 < 10000) AS edge_samples
            FROM v_spreads GROUP BY ALL
        ) ORDER BY ALL""",
    # Exact cost histogram (integer price units) per combination.
    "cost_histogram": """
        SELECT cost_kalshi_yes_e4 AS cost_e4, count(*) AS n FROM v_spreads
        WHERE cost_kalshi_yes_e4 IS NOT NULL GROUP BY ALL ORDER BY ALL""",
}


def _rows(n: int, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    syms = [f"SYM{i:02d}" for i in range(N_SYMBOLS)]
    mid = [rng.randrange(2000, 8000) for _ in syms]
    per = n // N_SYMBOLS
    for k in range(per):
        t = START_NS + k * 1_000_000_000
        for i, s in enumerate(syms):
            m = mid[i] = min(9500, max(500, mid[i] + rng.choice((-100, 0, 0, 0, 100))))
            ky = m + 100 * rng.randrange(1, 3)
            kn = 10_000 - m + 100 * rng.randrange(1, 3)
            fy = m + 100 * rng.randrange(-2, 4)
            fn = 10_100 - m + 100 * rng.randrange(-2, 4)
            yield (
                t + i,
                s,
                ky,
                100 * rng.randrange(1, 200),
                kn,
                100 * rng.randrange(1, 200),
                fy,
                100 * rng.randrange(1, 50),
                fn,
                100 * rng.randrange(1, 50),
                ky + fn,
                kn + fy,
            )


def ensure_db(n_rows: int) -> tuple[Path, float]:
    path = BENCH_DIR / f"spreads-{n_rows // 1_000_000}M.sqlite"
    if path.exists():
        return path, 0.0
    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp.sqlite")
    tmp.unlink(missing_ok=True)

    async def migrate() -> None:
        async with Database(tmp):
            pass

    asyncio.run(migrate())  # the real schema, through the real migrations
    con = sqlite3.connect(tmp)
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.executemany(
        "INSERT INTO spreads (sampled_ns, symbol, kalshi_yes_ask_e4, kalshi_yes_size_e2, "
        "kalshi_no_ask_e4, kalshi_no_size_e2, ibkr_yes_ask_e4, ibkr_yes_size_e2, ibkr_no_ask_e4, "
        "ibkr_no_size_e2, cost_kalshi_yes_e4, cost_kalshi_no_e4) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        _rows(n_rows, 11),
    )
    con.commit()
    con.execute("PRAGMA journal_mode = WAL")
    con.close()
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    tmp.rename(path)
    return path, time.perf_counter() - t0


def _time(fn: Callable[[], Any], runs: int) -> list[float]:
    fn()  # warm (catalog, file cache)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _named_queries() -> tuple[list[str], Any, Any] | None:
    try:
        from arbkit.analysis import queries  # type: ignore[attr-defined]
    except ImportError:
        return None
    names = [q.name for q in queries._QUERIES if "v_spreads" in q.sql or "_COST" in q.sql]
    names = names or ["cost_to_arb_distribution", "cost_to_arb_percentiles"]
    try:
        from arbkit.analysis.export import export_parquet  # type: ignore[import-not-found]
    except ImportError:
        export_parquet = None
    return names, queries.Analysis, export_parquet


def run(quick: bool = False) -> list[Figure]:
    n = 1_000_000 if quick else 10_000_000
    runs = 3
    db_path, build_s = ensure_db(n)
    pq_dir = BENCH_DIR / f"spreads-{n // 1_000_000}M-parquet"
    results: list[tuple[str, str, list[float]]] = []
    named = _named_queries()
    if named is not None:
        names, analysis_cls, export_parquet = named
        if not (pq_dir / "spreads.parquet").exists():
            pq_dir.mkdir(parents=True, exist_ok=True)
            if export_parquet is not None:
                export_parquet(db_path, pq_dir)
        for label, src in (("SQLite", db_path), ("Parquet", pq_dir)):
            a = analysis_cls(src)
            try:
                for q in names:
                    results.append((label, q, _time(lambda a=a, q=q: a.records(q), runs)))
            finally:
                a.close()
        source = "arbkit.analysis.queries"
    else:
        con = connect()
        attach_sqlite(con, db_path)
        if not (pq_dir / "spreads.parquet").exists():
            pq_dir.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            out = pq_dir / "spreads.parquet"
            con.execute(f"COPY (SELECT * FROM db.spreads) TO '{out}' (FORMAT PARQUET)")
            build_s += time.perf_counter() - t0
        for v in duckdb_views("db"):
            con.execute(v)
        for q, sql in BUILTIN_QUERIES.items():
            sql = sql.replace("{materialized}", "MATERIALIZED")
            results.append(("SQLite", q, _time(lambda sql=sql: con.execute(sql).fetchall(), runs)))
        con.execute("CREATE SCHEMA pq")
        con.execute(
            f"CREATE VIEW pq.spreads AS SELECT * FROM read_parquet('{pq_dir / 'spreads.parquet'}')"
        )
        for v in duckdb_views("pq"):
            if "VIEW v_spreads " in v:  # only spreads was exported
                con.execute(v)
        for q, sql in BUILTIN_QUERIES.items():
            sql = sql.replace("{materialized}", "NOT MATERIALIZED")  # Parquet: columns where used
            results.append(("Parquet", q, _time(lambda sql=sql: con.execute(sql).fetchall(), runs)))
        con.close()
        source = "built-in queries"
    figs = []
    for label, q, times in results:
        limit = 2.0 if label == "SQLite" else 0.2
        worst = max(times)
        figs.append(
            Figure(
                "duckdb",
                f"{q} over {label} ({n // 1_000_000}M rows)",
                "s",
                median=statistics.median(times),
                p99=worst,
                target=f"≤ {limit}",
                met=worst <= limit,
                note=f"{source}; {runs} runs after a warm-up, p99 column = worst run"
                + (f"; DB built in {build_s:.0f} s (cached)" if build_s else ""),
            )
        )
    return figs
