"""Parquet export of the arbkit database, and the ``arbkit analyze`` / ``arbkit export
parquet`` command bodies.

DuckDB copies each base table as-is (integers stay exact INT64: the same unit-suffixed
columns as SQLite), one ``<table>.parquet`` per table. :class:`~arbkit.analysis.queries.
Analysis` reads such a directory with the same views and queries as the SQLite file, and
columnar files make large histories an order of magnitude faster to analyse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from arbkit.analysis.duck import attach_sqlite, connect
from arbkit.analysis.queries import Analysis
from arbkit.storage.schema import TABLES

DEFAULT_EXPORT_DIR = Path("data/parquet")


def export_parquet(db_path: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write one Parquet file per table of the SQLite file into ``out_dir``.

    Each file is written under a temporary name and renamed, so an interrupted export
    never leaves a truncated ``<table>.parquet`` that looks complete. Tables are copied one
    after the other: exporting while the monitor writes gives each table as of its own copy
    (journal rows are never half-written; a later table may hold a few newer rows).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    con = connect()
    written: dict[str, Path] = {}
    try:
        attach_sqlite(con, db_path, "db")
        for table in TABLES:
            final = out / f"{table}.parquet"
            tmp = out / f".{table}.parquet.tmp"
            target = str(tmp).replace("'", "''")
            con.execute(
                f"COPY (SELECT * FROM db.{table}) TO '{target}' (FORMAT PARQUET, COMPRESSION ZSTD)"
            )
            os.replace(tmp, final)
            written[table] = final
    finally:
        con.close()
    return written


def _missing(db: Path, console_print: Callable[..., Any]) -> bool:
    if db.is_file():
        return False
    console_print(f"error: {db}: database not found; run `arbkit demo` first or pass --db")
    return True


def export_main(
    db: Path, out: Path | None = None, console_print: Callable[..., Any] = print
) -> int:
    """``arbkit export parquet [--db PATH] [--out DIR]`` (default ``data/parquet``)."""
    if _missing(db, console_print):
        return 2
    files = export_parquet(db, out or DEFAULT_EXPORT_DIR)
    for table, path in files.items():
        console_print(f"{table:<16} {path}  ({path.stat().st_size:,} bytes)")
    return 0


def _money(v: Decimal | None) -> str:
    """Dollars with 2 to 6 decimals: exact to the micro-dollar, no noise digits."""
    if v is None:
        return "-"
    text = f"{abs(v):,.6f}"
    while text.endswith("0") and len(text.split(".")[1]) > 2:
        text = text[:-1]
    return f"-${text}" if v < 0 else f"${text}"


def summary_lines(s: dict[str, Any]) -> list[str]:
    """The analysis summary as plain text lines (works with print and rich alike)."""
    lines = [f"arbkit database: {s['source']}", "", "rows"]
    lines += [f"  {t:<16} {n:>12,}" for t, n in s["rows"].items()]
    lines += ["", f"realized PnL      {_money(s['realized_pnl_usd'])}"]
    for mode, v in s["realized_pnl_usd_by_mode"].items():
        lines.append(f"  {mode:<15} {_money(v)}")
    lines.append(f"hedge cost        {_money(s['hedge_cost_usd'])}")
    lines.append(f"open positions    {s['open_positions']}")
    lines += ["", "opportunities by decision"]
    lines += [f"  {k:<16} {n:>12,}" for k, n in s["opportunities_by_decision"].items()]
    lines += ["", "executions by state"]
    lines += [f"  {k:<16} {n:>12,}" for k, n in s["executions_by_state"].items()]
    lines += [
        "",
        f"  {'symbol':<16} {'opportunities':>13} {'best edge/ct':>13} "
        f"{'best profit':>12} {'lowest cost':>12}",
    ]
    for sym, b in s["by_symbol"].items():
        lines.append(
            f"  {sym:<16} {b.get('opportunities', 0):>13,} "
            f"{_money(b.get('best_net_edge_per_contract_usd')):>13} "
            f"{_money(b.get('best_expected_profit_usd')):>12} "
            f"{_money(b.get('lowest_cost_to_arb_usd')):>12}"
        )
    return lines


def analyze_main(
    db: Path,
    console_print: Callable[..., Any] = print,
    *,
    run: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    list_runs: bool = False,
) -> int:
    """``arbkit analyze [--db PATH] [--run ID] [--since T] [--until T] [--runs]``: the
    headline numbers of a database (or export), for one run and/or a time window."""
    if not db.is_dir() and _missing(db, console_print):
        return 2
    try:
        with Analysis(db, run=run, since_ns=since_ns, until_ns=until_ns) as analysis:
            if list_runs:
                runs = analysis.runs()
                for r in runs:
                    ended = r["ended_at"] or "running or crashed"
                    console_print(
                        f"{r['run_id']}  {r['mode']:<7} {r['started_at']} → {ended}  "
                        f"config {r['config_digest']}  {r['command']}"
                    )
                if not runs:
                    console_print(f"{db}: no runs recorded")
                return 0
            summary = analysis.summary()
    except ValueError as exc:
        console_print(f"error: {exc}")
        return 2
    if run is not None or since_ns is not None or until_ns is not None:
        window = ", ".join(
            part
            for part in (
                f"run {run}" if run else "",
                f"since {_iso(since_ns)}" if since_ns is not None else "",
                f"until {_iso(until_ns)}" if until_ns is not None else "",
            )
            if part
        )
        console_print(f"filtered: {window}")
    for line in summary_lines(summary):
        console_print(line)
    return 0


def _iso(ns: int | None) -> str:
    import datetime as dt

    assert ns is not None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="seconds")
