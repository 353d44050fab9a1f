from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arbkit.storage.database import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    d = await Database(tmp_path / "db" / "arbkit.sqlite").open()
    try:
        yield d
    finally:
        await d.close()
