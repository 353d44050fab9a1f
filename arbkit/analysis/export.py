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
from pathlib import Path
from typing import Any

from arbkit.analysis.duck import attach_sqlite, connect
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
