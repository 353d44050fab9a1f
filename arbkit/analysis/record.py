"""A short demo database for the analysis notebook when the trader has none yet.

Notebook 02 opened on a fresh clone has no ``data/arbkit.sqlite``; rather than stop, it
records one: the local venues (simulated Kalshi and TWS over loopback) and the monitor
paper-trading through the real gateways for a few seconds, as ``arbkit demo`` does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path


async def record_demo_database(
    db_path: str | Path,
    *,
    seconds: float = 20.0,
    n_symbols: int = 4,
    seed: int = 7,
    dislocation_rate_per_min: float = 20.0,
) -> Path:
    """Paper-trade the local demo for ``seconds`` into ``db_path`` (created); returns it."""
    from arbkit.ui.notebook import start_local_demo

    db = Path(db_path)
    if db.exists():
        raise FileExistsError(f"{db}: exists; pass it as DB_PATH or choose another path")
    db.parent.mkdir(parents=True, exist_ok=True)
    session = await start_local_demo(
        n_symbols,
        seed,
        db_path=db,
        mode="paper",
        dislocation_rate_per_min=dislocation_rate_per_min,
        data_dir=db.parent / (db.stem + "-sim"),
    )
    try:
        await asyncio.sleep(seconds)
    finally:
        await session.stop()
    return db
