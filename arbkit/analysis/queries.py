"""Named analysis queries over the arbkit database, run by DuckDB (offline).

Every query aggregates in SQL over the ``v_*`` views that
:func:`arbkit.storage.schema.duckdb_views` defines (dollars as exact ``DECIMAL``, times as
``TIMESTAMP_NS``), so a 10M-row history costs one scan, not a Python loop. The same view
names are created over a Parquet export (:mod:`arbkit.analysis.export`), so every query
runs unchanged on either source.

``Analysis.frame()`` returns pandas (DECIMAL arrives as float64: for plots and reading);
``Analysis.records()`` returns exact ``Decimal`` values (for checks and reports).
Means are rounded to $0.000001 in SQL; sums, minima, maxima and quantiles are exact.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pandas as pd

from arbkit.analysis.duck import attach_sqlite, connect
from arbkit.execution.journal import ExecState
from arbkit.storage.schema import TABLES, duckdb_views

ParamValue = int | str | None


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    title: str  # what a trader reads above the chart
    sql: str  # DuckDB SQL over the v_* views; parameters as $name
    params: Mapping[str, ParamValue] = field(default_factory=dict)  # defaults


# Samples per (symbol, combo, exact cost): the one pass over ``spreads`` that both cost
# queries share. combo names the Kalshi side; the ForecastEx leg is the outcome that pays
# when the other Kalshi side pays (orientation applied by the pipeline, not stored per
# row). MATERIALIZED: a SQLite file is read once for both columns (its scan is the cost);
# over Parquet, reading each column where it is used is cheaper (see Analysis._sql).
_SCAN_ONCE = "s AS MATERIALIZED ("
_COST_COUNTS = f"""
        {_SCAN_ONCE}
            SELECT symbol, cost_kalshi_yes_e4 AS kalshi_yes, cost_kalshi_no_e4 AS kalshi_no
            FROM v_spreads
        ), counts AS (
            SELECT symbol, 'kalshi_yes' AS combo, kalshi_yes AS cost_e4, count(*) AS n
            FROM s WHERE kalshi_yes IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT symbol, 'kalshi_no' AS combo, kalshi_no AS cost_e4, count(*) AS n
            FROM s WHERE kalshi_no IS NOT NULL GROUP BY ALL
        )"""
_TERMINAL = "(" + ", ".join(f"'{s.value}'" for s in ExecState if s.terminal) + ")"
LATENCY_STAGES = (
    "detect_to_decide_ms",
    "decide_to_submit_ms",
    "leg1_ack_ms",
    "leg1_fill_ms",
    "leg1_fill_to_leg2_submit_ms",
    "leg2_ack_ms",
    "leg2_fill_ms",
    "hedge_ms",
)


def _usd(expr_e6: str) -> str:
    """An integer amount in $0.000001 as an exact DECIMAL in dollars."""
    return f"CAST({expr_e6} AS DECIMAL(38, 0)) * 0.000001"


def _usd_e4(expr_e4: str) -> str:
    return f"CAST({expr_e4} AS DECIMAL(38, 0)) * 0.0001"


def _pct(p: int) -> str:
    """Nearest-rank p-th percentile over ``c`` (cum = running count, integer arithmetic)."""
    return _usd_e4(f"min(cost_e4) FILTER (WHERE cum * 100 >= {p} * total)")


_QUERIES = (
    Query(
        "cost_to_arb_distribution",
        "Cost to buy both sides (before fees): how often each price occurred",
        f"""
        WITH {_COST_COUNTS}, b AS (
            SELECT symbol, combo,
                   cost_e4 // ($bucket_cents::BIGINT * 100) * ($bucket_cents::BIGINT * 100)
                       AS bucket_e4,
                   sum(n)::BIGINT AS samples
            FROM counts GROUP BY ALL
        )
        SELECT symbol, combo,
               {_usd_e4("bucket_e4")} AS cost_usd,
               {_usd_e4("bucket_e4 + $bucket_cents::BIGINT * 100")} AS cost_to_usd,
               samples,
               samples / sum(samples) OVER (PARTITION BY symbol, combo) AS share,
               bucket_e4 + $bucket_cents::BIGINT * 100 <= 10000 AS below_one_dollar
        FROM b
        ORDER BY symbol, combo, bucket_e4
        """,
        {"bucket_cents": 1},
    ),
    Query(
        # Nearest-rank percentiles (the smallest cost with at least p% of samples at or
        # below it), exact, computed from the per-price counts: no sort of the raw rows.
        "cost_to_arb_percentiles",
        "Cost to buy both sides (before fees): percentiles and time below $1",
        f"""
        WITH {_COST_COUNTS}, c AS (
            SELECT *,
                   sum(n) OVER (PARTITION BY symbol, combo ORDER BY cost_e4
                                ROWS UNBOUNDED PRECEDING) AS cum,
                   sum(n) OVER (PARTITION BY symbol, combo) AS total
            FROM counts
        )
        SELECT symbol, combo, sum(n)::BIGINT AS samples,
               {_usd_e4("min(cost_e4)")} AS min_usd,
               {_pct(5)} AS p05_usd,
               {_pct(25)} AS p25_usd,
               {_pct(50)} AS p50_usd,
               {_pct(75)} AS p75_usd,
               {_pct(95)} AS p95_usd,
               {_usd_e4("max(cost_e4)")} AS max_usd,
               coalesce(sum(n) FILTER (WHERE cost_e4 < 10000), 0)::BIGINT
                   AS samples_below_one_dollar,
               coalesce(sum(n) FILTER (WHERE cost_e4 < 10000), 0) / sum(n)
                   AS share_below_one_dollar
        FROM c GROUP BY ALL
        ORDER BY symbol, combo
        """,
    ),
    Query(
        "opportunities_by_hour",
        "Opportunities per hour and their net edge per contract",
        f"""
        SELECT date_trunc('hour', detected_at) AS hour, symbol,
               count(*) AS opportunities,
               count(*) FILTER (WHERE decision = 'executed') AS executed,
               count(*) FILTER (WHERE decision = 'skipped') AS skipped,
               count(*) FILTER (WHERE decision = 'logged') AS logged,
               {_usd("round(avg(net_edge_per_contract_e6))")} AS mean_net_edge_usd,
               {_usd("max(net_edge_per_contract_e6)")} AS max_net_edge_usd,
               {_usd("sum(expected_profit_e6)")} AS expected_profit_usd
        FROM v_opportunities
        GROUP BY ALL
        ORDER BY hour, symbol
        """,
    ),
    Query(
        # The same counts as opportunities_by_hour in buckets of $bucket_s seconds: a
        # demo-length history (seconds to minutes) gets a readable time axis
        # (bucket_seconds picks the size from the history's span).
        "opportunities_over_time",
        "Opportunities over time and their net edge per contract",
        f"""
        SELECT make_timestamp_ns(detected_ns // ($bucket_s::BIGINT * 1000000000)
                                 * ($bucket_s::BIGINT * 1000000000)) AS bucket,
               symbol,
               count(*) AS opportunities,
               count(*) FILTER (WHERE decision = 'executed') AS executed,
               {_usd("round(avg(net_edge_per_contract_e6))")} AS mean_net_edge_usd,
               {_usd("max(net_edge_per_contract_e6)")} AS max_net_edge_usd,
               {_usd("sum(expected_profit_e6)")} AS expected_profit_usd
        FROM v_opportunities
        GROUP BY ALL
        ORDER BY bucket, symbol
        """,
        {"bucket_s": 3_600},
    ),
    Query(
        # One opportunities row per decision: the pipeline re-decides a live episode every
        # redecide_ms (default 1 s), so detections of one (symbol, combo) less than gap_ms
        # apart belong to one episode. duration = last − first detection: a lower bound
        # (the edge may have lasted up to one re-decision interval longer).
        "opportunity_duration",
        "How long opportunities lasted (after fees), one row per episode",
        f"""
        WITH o AS (
            SELECT symbol, combo, detected_ns, net_edge_per_contract_e6, expected_profit_e6,
                   decision,
                   CASE WHEN detected_ns - lag(detected_ns) OVER w <= $gap_ms::BIGINT * 1000000
                        THEN 0 ELSE 1 END AS starts_episode
            FROM v_opportunities
            WINDOW w AS (PARTITION BY symbol, combo ORDER BY detected_ns)
        ), e AS (
            SELECT *, sum(starts_episode) OVER (
                PARTITION BY symbol, combo ORDER BY detected_ns ROWS UNBOUNDED PRECEDING
            )::BIGINT AS episode
            FROM o
        )
        SELECT symbol, combo, episode,
               make_timestamp_ns(min(detected_ns)) AS started_at,
               make_timestamp_ns(max(detected_ns)) AS last_seen_at,
               (max(detected_ns) - min(detected_ns)) / 1e9 AS duration_s,
               count(*) AS detections,
               count(*) FILTER (WHERE decision = 'executed') AS executed,
               {_usd("max(net_edge_per_contract_e6)")} AS max_net_edge_usd,
               {_usd("max(expected_profit_e6)")} AS max_expected_profit_usd
        FROM e GROUP BY ALL
        ORDER BY started_at, symbol, combo
        """,
        {"gap_ms": 3_000},
    ),
    Query(
        # gross edge = $1 payout per contract − cost of both legs; net = expected profit.
        # Sums over every detection (a long episode counts once per re-decision);
        # decision = 'executed' restricts to what was traded.
        "fee_drag",
        "Edge lost to fees: gross edge vs net edge",
        f"""
        SELECT symbol, combo, count(*) AS detections,
               CAST(sum(size_e2) AS DECIMAL(38, 0)) * 0.01 AS contracts,
               {_usd("sum(size_e2 * 10000 - gross_cost_e6)")} AS gross_edge_usd,
               {_usd("sum(total_fees_e6)")} AS fees_usd,
               {_usd("sum(expected_profit_e6)")} AS net_edge_usd,
               sum(total_fees_e6) / sum(size_e2 * 10000 - gross_cost_e6) AS fee_share_of_gross
        FROM v_opportunities
        WHERE $decision::VARCHAR IS NULL OR decision = $decision::VARCHAR
        GROUP BY ALL
        ORDER BY symbol, combo
        """,
        {"decision": None},
    ),
    Query(
        # Finished executions only (realized pnl is 0 until known), time = last journal write.
        "pnl_over_time",
        "Realized PnL over time (paper and live)",
        f"""
        SELECT mode, updated_at AS at, execution_id, symbol, combo, state,
               realized_pnl_usd, hedge_cost_usd,
               sum(realized_pnl_usd) OVER w AS cumulative_pnl_usd,
               sum(hedge_cost_usd) OVER w AS cumulative_hedge_cost_usd
        FROM v_arb_executions
        WHERE state IN {_TERMINAL}
        WINDOW w AS (PARTITION BY mode ORDER BY updated_ns, execution_id
                     ROWS UNBOUNDED PRECEDING)
        ORDER BY mode, updated_ns, execution_id
        """,
    ),
    Query(
        # Every execution of the window (realized PnL is 0 until known), per symbol and
        # mode: what a trader asks first after "how much?" — "where from?".
        "pnl_by_symbol",
        "Realized PnL per symbol",
        f"""
        SELECT symbol, mode, count(*) AS executions,
               count(*) FILTER (WHERE state = 'done') AS done,
               count(*) FILTER (WHERE state = 'hedged') AS hedged,
               count(*) FILTER (WHERE state = 'unhedged') AS unhedged,
               count(*) FILTER (WHERE state NOT IN {_TERMINAL}) AS open,
               {_usd("sum(expected_profit_e6)")} AS expected_profit_usd,
               {_usd("sum(realized_pnl_e6)")} AS realized_pnl_usd,
               {_usd("sum(hedge_cost_e6)")} AS hedge_cost_usd
        FROM v_arb_executions
        GROUP BY ALL
        ORDER BY symbol, mode
        """,
    ),
    Query(
        "hedge_costs",
        "Hedge costs: executions whose second leg fell short",
        """
        WITH h AS (
            SELECT execution_id, count(*) AS hedge_orders, sum(filled_qty) AS hedge_filled,
                   sum(filled_cost_usd) AS hedge_filled_cost_usd, sum(fees_usd) AS hedge_fees_usd
            FROM v_executions WHERE leg = 'hedge' GROUP BY ALL
        )
        SELECT a.updated_at AS at, a.execution_id, a.symbol, a.combo, a.mode, a.state,
               a.hedge_cost_usd, a.expected_profit_usd, a.realized_pnl_usd, a.hedge_ms,
               coalesce(h.hedge_orders, 0) AS hedge_orders,
               coalesce(h.hedge_filled, 0) AS hedge_filled,
               coalesce(h.hedge_filled_cost_usd, 0) AS hedge_filled_cost_usd,
               coalesce(h.hedge_fees_usd, 0) AS hedge_fees_usd
        FROM v_arb_executions AS a LEFT JOIN h USING (execution_id)
        WHERE a.hedge_cost_e6 <> 0 OR h.execution_id IS NOT NULL
              OR a.state IN ('hedging', 'hedged', 'unhedged')
        ORDER BY a.updated_ns, a.execution_id
        """,
    ),
    Query(
        "latency_by_stage",
        "Execution latency per stage (ms)",
        f"""
        WITH l AS (
            UNPIVOT (SELECT mode, {", ".join(LATENCY_STAGES)} FROM v_arb_executions)
            ON {", ".join(LATENCY_STAGES)} INTO NAME stage VALUE ms
        )
        SELECT mode, stage, count(*) AS executions,
               quantile_cont(ms, 0.5) AS p50_ms, quantile_cont(ms, 0.9) AS p90_ms,
               quantile_cont(ms, 0.99) AS p99_ms, max(ms) AS max_ms, avg(ms) AS mean_ms
        FROM l GROUP BY mode, stage
        ORDER BY mode, list_position({list(LATENCY_STAGES)}, stage)
        """,
    ),
    Query(
        "executions_summary",
        "Executions by mode and outcome",
        """
        WITH o AS (
            SELECT execution_id, count(*) AS orders, sum(fees_usd) AS fees_usd
            FROM v_executions GROUP BY ALL
        )
        SELECT a.mode, a.state, count(*) AS executions,
               sum(a.planned_qty) AS planned_contracts,
               sum(a.expected_profit_usd) AS expected_profit_usd,
               sum(a.realized_pnl_usd) AS realized_pnl_usd,
               sum(a.hedge_cost_usd) AS hedge_cost_usd,
               coalesce(sum(o.orders), 0)::BIGINT AS orders,
               coalesce(sum(o.fees_usd), 0) AS fees_usd
        FROM v_arb_executions AS a LEFT JOIN o USING (execution_id)
        GROUP BY ALL
        ORDER BY a.mode, a.state
        """,
    ),
)

QUERIES: dict[str, Query] = {q.name: q for q in _QUERIES}


class Analysis:
    """DuckDB over an arbkit SQLite file or a Parquet export directory (never the network).

    ``Analysis("data/arbkit.sqlite")`` attaches the file read-only;
    ``Analysis("data/parquet/")`` reads ``<table>.parquet`` files written by
    :func:`arbkit.analysis.export.export_parquet`. Both expose the same ``v_*`` views.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        run: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> None:
        """``run`` (a ``runs.run_id``) and ``since_ns``/``until_ns`` filter every view and
        so every query and the summary."""
        self.source = Path(source)
        self.run = run
        self._since_ns, self._until_ns = since_ns, until_ns
        self.columnar = self.source.is_dir()  # a Parquet export
        if not self.source.exists():
            raise FileNotFoundError(
                f"{self.source}: database not found; run `arbkit demo` first or pass --db"
            )
        self.con = connect()
        try:
            if self.columnar:
                self._create_parquet_tables(self.source)
            else:
                attach_sqlite(self.con, self.source, "db")
            for stmt in duckdb_views("db", run=run, since_ns=since_ns, until_ns=until_ns):
                self.con.execute(stmt)
            if run is not None and run not in {r["run_id"] for r in self.runs()}:
                raise ValueError(f"{self.source}: no run {run!r} (see `arbkit analyze --runs`)")
        except duckdb.CatalogException as exc:
            self.con.close()
            raise ValueError(f"{self.source}: not an arbkit database ({exc})") from exc
        except BaseException:
            self.con.close()
            raise

    def _create_parquet_tables(self, directory: Path) -> None:
        """Schema ``db`` with one view per table over its Parquet file: the same names as
        an attached SQLite file, so ``duckdb_views("db")`` and every query apply as-is."""
        missing = [t for t in TABLES if not (directory / f"{t}.parquet").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{directory}: not an arbkit Parquet export (missing "
                f"{', '.join(t + '.parquet' for t in missing)}); run `arbkit export parquet`"
            )
        self.con.execute("CREATE SCHEMA db")
        for t in TABLES:
            path = str((directory / f"{t}.parquet").resolve()).replace("'", "''")
            self.con.execute(f"CREATE VIEW db.{t} AS SELECT * FROM read_parquet('{path}')")

    # -- queries

    def _run(self, name: str, params: Mapping[str, ParamValue]) -> duckdb.DuckDBPyConnection:
        q = QUERIES.get(name)
        if q is None:
            raise KeyError(f"unknown query {name!r}; known: {', '.join(QUERIES)}")
        unknown = set(params) - set(q.params)
        if unknown:
            raise TypeError(f"query {name!r} takes {sorted(q.params)}, not {sorted(unknown)}")
        values = {**q.params, **params}
        sql = self._sql(q)
        return self.con.execute(sql, values) if values else self.con.execute(sql)

    def _sql(self, q: Query) -> str:
        if self.columnar:
            return q.sql.replace(_SCAN_ONCE, "s AS NOT MATERIALIZED (")
        return q.sql

    def frame(self, name: str, **params: ParamValue) -> pd.DataFrame:
        """The named query as a DataFrame (dollars as float64: for plots and reading)."""
        return self._run(name, params).df()

    def records(self, name: str, **params: ParamValue) -> list[dict[str, Any]]:
        """The named query as rows of exact values (dollars as ``Decimal``)."""
        cur = self._run(name, params)
        cols = [d[0] for d in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def summary(self) -> dict[str, Any]:
        """Headline numbers: rows per table, pnl (total, per mode, per symbol), hedge cost,
        decisions, states, best edges, the runs and time span covered, and the open
        positions (``positions``: rows held; ``stale_positions``: rows with contracts
        that are not held any more, see :meth:`open_positions`; ``open_positions``: how
        many rows are held)."""
        con = self.con
        # the filtered views (run / time window), never the base tables
        counts = {t: _scalar(con, f"SELECT count(*) FROM v_{t}") for t in TABLES if t != "spreads"}
        pnl: dict[str, Decimal] = {}
        hedge: dict[str, Decimal] = {}
        for mode, p, h in con.execute(
            "SELECT mode, sum(realized_pnl_usd), sum(hedge_cost_usd) FROM v_arb_executions "
            "GROUP BY mode ORDER BY mode"
        ).fetchall():
            pnl[mode], hedge[mode] = p, h
        best = {
            r[0]: {
                "best_net_edge_per_contract_usd": r[1],
                "best_expected_profit_usd": r[2],
                "opportunities": r[3],
            }
            for r in con.execute(
                f"SELECT symbol, {_usd('max(net_edge_per_contract_e6)')}, "
                f"{_usd('max(expected_profit_e6)')}, count(*) "
                "FROM v_opportunities GROUP BY symbol ORDER BY symbol"
            ).fetchall()
        }
        positions, stale = self.open_positions()
        counts["spreads"] = 0
        for sym, samples, lowest in con.execute(  # one pass over the biggest table
            "SELECT symbol, count(*), "
            + _usd_e4("least(min(cost_kalshi_yes_e4), min(cost_kalshi_no_e4))")
            + " FROM v_spreads GROUP BY symbol ORDER BY symbol"
        ).fetchall():
            counts["spreads"] += samples
            best.setdefault(sym, {})["lowest_cost_to_arb_usd"] = lowest
        return {
            "source": str(self.source),
            "rows": {t: counts[t] for t in TABLES},
            "realized_pnl_usd": sum(pnl.values(), Decimal(0)),
            "hedge_cost_usd": sum(hedge.values(), Decimal(0)),
            "realized_pnl_usd_by_mode": pnl,
            "hedge_cost_usd_by_mode": hedge,
            "opportunities_by_decision": _by(con, "decision", "v_opportunities"),
            "executions_by_state": _by(con, "state", "v_arb_executions"),
            "open_positions": len(positions),
            "positions": positions,
            "stale_positions": stale,
            "by_symbol": best,
            "pnl_by_symbol": self.records("pnl_by_symbol"),
            "runs": self.run_count(),
            **self.span(),
        }

    def span(self) -> dict[str, int | None]:
        """First and last recorded time (epoch ns) over spreads, opportunities and
        executions in the window; None for an empty window."""
        row = self.con.execute(
            "SELECT min(lo), max(hi) FROM ("
            " SELECT min(sampled_ns) AS lo, max(sampled_ns) AS hi FROM v_spreads"
            " UNION ALL SELECT min(detected_ns), max(detected_ns) FROM v_opportunities"
            " UNION ALL SELECT min(created_ns), max(updated_ns) FROM v_arb_executions)"
        ).fetchone()
        first, last = row if row else (None, None)
        return {
            "first_ns": None if first is None else int(first),
            "last_ns": None if last is None else int(last),
        }

    def run_count(self) -> int:
        """Runs in the window: from the ``runs`` table (a run overlapping the time
        window), or — a Parquet export or a file from before v6 — the distinct run ids
        of the rows."""
        if self.run is not None:
            return 1
        where = []
        if self._since_ns is not None:
            where.append(f"coalesce(ended_ns, 9223372036854775807) >= {self._since_ns}")
        if self._until_ns is not None:
            where.append(f"started_ns < {self._until_ns}")
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        try:
            n = _scalar(self.con, f"SELECT count(*) FROM db.runs{cond}")
        except duckdb.Error:
            n = 0
        if n:
            return n
        return _scalar(
            self.con,
            "SELECT count(DISTINCT run_id) FROM (SELECT run_id FROM v_spreads UNION ALL "
            "SELECT run_id FROM v_opportunities UNION ALL SELECT run_id FROM v_arb_executions)"
            " WHERE run_id <> ''",
        )

    def open_positions(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(held, stale): position rows with contracts, and the ones not counted as held.

        Stale = a market that paid out after the row was last written (a settlements row
        for that symbol and venue), or a paper row written by a paper run older than the
        newest paper run that wrote positions (paper positions exist only in the journal;
        each paper run rewrites the ones it holds). Live rows are never called stale: only
        the venue may say a real position is gone. Without the ``runs`` and
        ``settlements`` tables (a Parquet export) every row with contracts is held.
        """
        cur = self.con.execute(
            "SELECT symbol, venue, outcome, qty_e2, cost_e6, updated_ns, run_id "
            "FROM v_positions WHERE qty_e2 <> 0 ORDER BY symbol, venue, outcome"
        )
        rows = [
            {
                "symbol": r[0],
                "venue": r[1],
                "outcome": r[2],
                "contracts": Decimal(int(r[3])).scaleb(-2),
                "cost_usd": Decimal(int(r[4])).scaleb(-6),
                "updated_ns": int(r[5]),
                "run_id": r[6],
            }
            for r in cur.fetchall()
        ]
        try:
            run_rows = self.con.execute("SELECT run_id, mode, started_ns FROM db.runs").fetchall()
        except duckdb.Error:
            run_rows = []
        modes = {r[0]: r[1] for r in run_rows}
        started = {r[0]: int(r[2]) for r in run_rows}
        try:
            settled = self.con.execute(
                "SELECT symbol, venue, max(settled_ns) FROM db.settlements GROUP BY ALL"
            ).fetchall()
        except duckdb.Error:
            settled = []
        settled_at = {(r[0], r[1]): int(r[2]) for r in settled}
        paper_runs = [x["run_id"] for x in rows if modes.get(x["run_id"]) == "paper"]
        newest_paper = max(paper_runs, key=lambda r: started[r]) if paper_runs else None
        held: list[dict[str, Any]] = []
        stale: list[dict[str, Any]] = []
        for x in rows:
            x["mode"] = modes.get(x["run_id"], "")
            paid = settled_at.get((x["symbol"], x["venue"]))
            if paid is not None and paid >= x["updated_ns"]:
                stale.append({**x, "why": "market settled after this row was written"})
            elif x["mode"] == "paper" and x["run_id"] != newest_paper:
                stale.append({**x, "why": f"paper row of an older run (newest {newest_paper})"})
            else:
                held.append(x)
        return held, stale

    # -- lifecycle

    def runs(self) -> list[dict[str, Any]]:
        """The ``runs`` table (empty for a Parquet export or a file from before v6)."""
        try:
            cur = self.con.execute(
                "SELECT run_id, make_timestamp_ns(started_ns) AS started_at, "
                "make_timestamp_ns(ended_ns) AS ended_at, mode, config_digest, command "
                "FROM db.runs ORDER BY started_ns, run_id"
            )
        except duckdb.Error:
            return []
        cols = [d[0] for d in cur.description or ()]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Analysis:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _scalar(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def _by(con: duckdb.DuckDBPyConnection, col: str, view: str) -> dict[str, int]:
    rows = con.execute(f"SELECT {col}, count(*) FROM {view} GROUP BY 1 ORDER BY 1").fetchall()
    return {str(k): int(n) for k, n in rows}


BUCKETS_S = (1, 5, 15, 60, 300, 900, 3_600, 4 * 3_600, 86_400, 7 * 86_400)


def bucket_seconds(first_ns: int | None, last_ns: int | None, most: int = 60) -> int:
    """The smallest bucket (seconds) that cuts the span into at most ``most`` bars: a
    30-second demo gets 1-second bars, a month of history gets daily ones."""
    if first_ns is None or last_ns is None:
        return BUCKETS_S[0]
    span_s = (last_ns - first_ns) / 1e9
    for b in BUCKETS_S:
        if span_s / b <= most:
            return b
    return BUCKETS_S[-1]


def utc_ns(text: str | None) -> int | None:
    """``2026-12-01`` or ``2026-12-01T09:30`` (UTC unless it says otherwise) → epoch ns."""
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date/time: use 2026-12-01 or 2026-12-01T09:30"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1_000
