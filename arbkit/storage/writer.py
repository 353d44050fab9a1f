"""The batched telemetry writer: opportunities and spreads off the hot path, on the
database's telemetry connection (see :mod:`arbkit.storage.database` for the durability
design)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import sqlite3
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import aiosqlite

from arbkit.model import Mode, Opportunity
from arbkit.storage.records import (
    DECISIONS,
    SpreadSample,
    WriterStats,
)
from arbkit.storage.rows import INSERT_OPP, INSERT_SPREAD, opp_params, spread_params

if TYPE_CHECKING:
    from arbkit.storage.database import Database

log = logging.getLogger(__name__)

# ------------------------------------------------------------- writer -------------

_OPP = 0
_SPREAD = 1


class DatabaseWriter:
    """Batches telemetry rows (opportunities, spreads) off the hot path.

    ``opportunity()`` and ``spread()`` never await: they append to a bounded queue that one
    task flushes every ``flush_interval_ms`` or as soon as ``batch_size`` rows wait. A full
    queue (or a stopped writer) drops the row, counts it in ``stats.dropped`` and logs a
    warning (at most one per second while it lasts): reported, never silent.
    """

    def __init__(
        self,
        db: Database,
        max_queue: int = 100_000,
        flush_interval_ms: int = 100,
        batch_size: int = 1000,
    ) -> None:
        if max_queue < 1 or batch_size < 1 or flush_interval_ms < 0:
            raise ValueError("max_queue and batch_size must be >= 1, flush_interval_ms >= 0")
        self._db = db
        self._max_queue = max_queue
        self._interval_s = max(flush_interval_ms, 1) / 1000  # 0 would spin
        self._batch_size = batch_size
        self._q: deque[tuple[Any, ...]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_warn = -math.inf
        self._stats = WriterStats()

    @property
    def stats(self) -> WriterStats:
        self._stats.queued = len(self._q)
        return self._stats

    @property
    def dropped(self) -> int:
        return self._stats.dropped

    def start(self) -> None:
        """Start the flushing task on the running loop (the database must be open)."""
        if self._task is not None:
            return
        self._db._conn(telemetry=True)  # fail now, not in the background
        self._task = asyncio.get_running_loop().create_task(self._run(), name="arbkit-db-writer")

    async def stop(self) -> None:
        """Stop accepting rows and flush everything queued."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        else:
            await self._flush_all()

    async def __aenter__(self) -> DatabaseWriter:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- hot path

    def opportunity(
        self,
        opp: Opportunity,
        mode: Mode,
        decision: str,
        reason: str = "",
        execution_id: str | None = None,
    ) -> int | None:
        """Queue one detected opportunity; returns its row id, or None if it was dropped."""
        if decision not in DECISIONS:
            raise ValueError(f"decision {decision!r}: expected one of {sorted(DECISIONS)}")
        if not self._accept():
            return None
        oid = self._db._alloc_opportunity_id()
        self._q.append((_OPP, oid, opp, mode, decision, reason, execution_id))
        self._kick()
        return oid

    def spread(self, sample: SpreadSample) -> bool:
        """Queue one spread sample (the caller samples at its interval, not per tick)."""
        if not self._accept():
            return False
        self._q.append((_SPREAD, sample))
        self._kick()
        return True

    def _accept(self) -> bool:
        if not self._stopping and len(self._q) < self._max_queue:
            return True
        self._stats.dropped += 1
        now = time.monotonic()
        if now - self._last_warn >= 1.0:
            self._last_warn = now
            log.warning(
                "database writer %s: row dropped (%d dropped so far, queue %d/%d)",
                "stopped" if self._stopping else "queue full",
                self._stats.dropped,
                len(self._q),
                self._max_queue,
            )
        return False

    def _kick(self) -> None:
        if len(self._q) >= self._batch_size:
            self._wake.set()

    # -- background

    async def _run(self) -> None:
        while True:
            if len(self._q) < self._batch_size and not self._stopping:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval_s)
            try:
                await self._flush_all()
            except Exception:  # e.g. the database was closed under us: keep reporting
                log.exception("database writer: flush failed")
                if self._stopping:
                    raise
                await asyncio.sleep(max(self._interval_s, 0.1))
            if self._stopping:
                return

    async def _flush_all(self) -> None:
        while self._q:
            n = min(len(self._q), self._batch_size)
            await self._flush([self._q.popleft() for _ in range(n)])

    async def _flush(self, batch: list[tuple[Any, ...]]) -> None:
        t0 = time.perf_counter()
        opps: list[tuple[Any, ...]] = []
        spreads: list[tuple[Any, ...]] = []
        for item in batch:
            try:
                if item[0] == _OPP:
                    opps.append((*opp_params(*item[1:]), self._db.run_id))
                else:
                    spreads.append((*spread_params(item[1]), self._db.run_id))
            except Exception:
                self._stats.failed += 1
                log.exception("database writer: cannot convert %r", item[1:])
        conn = self._db._conn(telemetry=True)
        try:
            await conn.execute("BEGIN IMMEDIATE")  # take the write lock up front
            if opps:
                await conn.executemany(INSERT_OPP, opps)
            if spreads:
                await conn.executemany(INSERT_SPREAD, spreads)
            await conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            log.warning(
                "database writer: batch of %d refused (%s); retrying row by row", len(batch), exc
            )
            await self._flush_rows(conn, opps, spreads)
        else:
            self._stats.written_opportunities += len(opps)
            self._stats.written_spreads += len(spreads)
        self._stats.flushes += 1
        self._stats.max_batch = max(self._stats.max_batch, len(batch))
        self._stats.last_flush_ms = (time.perf_counter() - t0) * 1000

    async def _flush_rows(
        self,
        conn: aiosqlite.Connection,
        opps: list[tuple[Any, ...]],
        spreads: list[tuple[Any, ...]],
    ) -> None:
        """Fallback after a refused batch: keep every row the database accepts."""
        written = {"written_opportunities": 0, "written_spreads": 0}
        failed = 0
        try:
            await conn.execute("BEGIN IMMEDIATE")  # take the write lock up front
            for sql, rows, attr in (
                (INSERT_OPP, opps, "written_opportunities"),
                (INSERT_SPREAD, spreads, "written_spreads"),
            ):
                for params in rows:
                    try:
                        await conn.execute(sql, params)
                    except (sqlite3.IntegrityError, OverflowError, sqlite3.InterfaceError) as exc:
                        failed += 1
                        log.error("database writer: row refused (%s): %r", exc, params)
                    else:
                        written[attr] += 1
            await conn.execute("COMMIT")
        except Exception:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            self._stats.failed += len(opps) + len(spreads)
            log.exception("database writer: batch of %d rows lost", len(opps) + len(spreads))
        else:
            self._stats.failed += failed
            self._stats.written_opportunities += written["written_opportunities"]
            self._stats.written_spreads += written["written_spreads"]
