"""Replay of a 1M-event capture through the full pipeline (normalizers → book → detector →
executor with paper fills) with DB writes through Database/DatabaseWriter — what
``arbkit replay --db`` does. Events/s counts parse + normalize + replay + DB flush."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from arbkit.analysis.replay import ReplayResult, prepare_file, replay
from arbkit.config.execution_loader import ExecutionConfig, apply_overrides
from arbkit.config.loader import SymbolMap
from arbkit.storage.database import Database, DatabaseWriter
from benchmarks.capture_gen import ensure_capture
from benchmarks.common import BENCH_DIR, Figure


def paper_config() -> ExecutionConfig:
    return apply_overrides(ExecutionConfig(), {"mode": "paper"})


async def replay_to_db(
    prepared: Any, symbols: SymbolMap, cfg: ExecutionConfig, db_path: Path
) -> tuple[ReplayResult, Any]:
    async with Database(db_path) as db:
        writer = DatabaseWriter(db)
        writer.start()
        try:
            res = await replay(
                prepared,
                symbols,
                cfg,
                journal=db,
                on_decision=lambda o, d, r, e: writer.opportunity(o, cfg.mode, d, r, e),
                on_spread=writer.spread,
            )
        finally:
            await writer.stop()
        return res, writer.stats


def run(quick: bool = False) -> list[Figure]:
    n = 100_000 if quick else 1_000_000
    path, symbols, gen_s = ensure_capture(n)
    cfg = paper_config()
    db_path = BENCH_DIR / "replay-bench.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    prepared = prepare_file(path, symbols)
    t1 = time.perf_counter()
    res, stats = asyncio.run(replay_to_db(prepared, symbols, cfg, db_path))
    t2 = time.perf_counter()
    rate = prepared.events / (t2 - t0)
    note = (
        f"{prepared.events:,} events ({len(prepared.batches):,} tick batches): parse+normalize "
        f"{t1 - t0:.1f} s, replay+DB {t2 - t1:.1f} s; {res.opportunities} decisions, "
        f"{res.executed} paper executions, {prepared.bad_frames} bad frames"
    )
    if gen_s:
        note += f"; capture generated in {gen_s:.0f} s (cached)"
    return [
        Figure(
            "replay",
            f"replay {prepared.events // 1000}k events, paper + DB",
            "events/s",
            value=rate,
            target="≥ 100,000",
            met=rate >= 100_000,
            note=note,
            extra={
                "parse_s": t1 - t0,
                "replay_s": t2 - t1,
                "opportunities": res.opportunities,
                "executed": res.executed,
                "episodes_ended": res.episodes_ended,
                "writer": repr(stats),
            },
        ),
        Figure(
            "replay",
            "  parse + normalize only",
            "events/s",
            value=prepared.events / (t1 - t0),
        ),
        Figure(
            "replay",
            "  replay + paper + DB only",
            "events/s",
            value=prepared.events / (t2 - t1),
        ),
    ]
