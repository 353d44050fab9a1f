import sqlite3
from pathlib import Path

import pytest

from arbkit.analysis.duck import attach_sqlite, connect, extension_directory


def test_sqlite_extension_loads_offline(tmp_path: Path) -> None:
    assert any(extension_directory().rglob("sqlite_scanner.duckdb_extension"))
    db = tmp_path / "x.sqlite"
    c = sqlite3.connect(db)
    c.execute("create table t(a integer)")
    c.execute("insert into t values (42)")
    c.commit()
    con = connect()
    attach_sqlite(con, db)
    assert con.execute("select a from db.t").fetchall() == [(42,)]
    setting = con.execute("select current_setting('autoinstall_known_extensions')").fetchone()
    assert setting is not None and setting[0] is False
    with pytest.raises(FileNotFoundError, match="database not found"):
        attach_sqlite(con, tmp_path / "missing.sqlite")
