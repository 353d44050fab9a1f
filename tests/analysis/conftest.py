from __future__ import annotations

from pathlib import Path

import pytest

from arbkit.analysis.export import export_parquet

from .sample_db import build_sync


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample database, written once per module through Database / DatabaseWriter."""
    return build_sync(tmp_path_factory.mktemp("analysis") / "arbkit.sqlite")


@pytest.fixture(scope="module")
def parquet_dir(sample_db: Path) -> Path:
    out = sample_db.parent / "parquet"
    export_parquet(sample_db, out)
    return out
