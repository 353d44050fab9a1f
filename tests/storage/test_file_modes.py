"""Journal databases and captures hold account activity: written owner-only (0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from arbkit.storage.capture import CaptureWriter
from arbkit.storage.database import Database


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


async def test_database_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "a.sqlite"
        async with Database(db) as d:
            await d.begin_run("paper", "digest")
            assert mode(db) == 0o600
            wal = tmp_path / "a.sqlite-wal"
            assert wal.exists() and mode(wal) == 0o600
        loose = tmp_path / "b.sqlite"
        loose.touch(mode=0o644)
        async with Database(loose):
            pass
        assert mode(loose) == 0o600  # an existing file is tightened too
    finally:
        os.umask(old)


def test_capture_is_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        for name in ("c.jsonl", "c.jsonl.gz"):
            w = CaptureWriter(tmp_path / name)
            w.start()
            w.record_kalshi('{"type":"x"}', 1)
            w.close_sync()
            assert mode(tmp_path / name) == 0o600
    finally:
        os.umask(old)
