"""DuckDB connections that never touch the network.

DuckDB downloads its sqlite extension at first use by default, which fails offline and
behind many firewalls. arbkit pins ``duckdb`` with the matching ``duckdb-ext-sqlite``
wheel and points DuckDB's extension directory at that wheel's files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb


def extension_directory() -> Path:
    """``duckdb_ext/extensions`` from the duckdb-ext-sqlite wheel (a namespace package)."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("duckdb-ext-sqlite is not installed: pip install 'arbkit[analysis]'")
    for loc in spec.submodule_search_locations:
        ext = Path(loc) / "extensions"
        if ext.is_dir():
            return ext
    raise RuntimeError("duckdb-ext-sqlite has no extensions folder; reinstall it")


def connect(database: str = ":memory:", *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        database,
        read_only=read_only,
        config={
            "extension_directory": str(extension_directory()),
            "autoinstall_known_extensions": "false",
            "autoload_known_extensions": "false",
        },
    )
    con.execute("LOAD sqlite")
    return con


def attach_sqlite(con: duckdb.DuckDBPyConnection, path: str | Path, alias: str = "db") -> None:
    """Attach the arbkit SQLite file read-only under ``alias``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: database not found; run `arbkit demo` or pass --db")
    con.execute(f"ATTACH '{p}' AS {alias} (TYPE sqlite, READ_ONLY)")
