"""The SQLite database: crash-safe execution journal + batched telemetry.

One file (default ``data/arbkit.sqlite``) in WAL mode, schema version in
``PRAGMA user_version`` (migrations in :mod:`arbkit.storage.schema`, documented in
``docs/schema.md``).

Durability, thought through:

* Two connections to the same file. The **journal** connection (``synchronous=FULL``) is
  used only by the awaited ``record_*`` / ``set_position`` calls: each is one
  ``BEGIN IMMEDIATE … COMMIT`` and returns after the WAL was fsynced, so a row the
  executor saw committed survives SIGKILL *and* power loss. That is the row it relies on
  before sending an order.
* The **telemetry** connection (``synchronous=NORMAL``) is used by :class:`DatabaseWriter`,
  which batches opportunities and spreads so the hot path never awaits the disk. In WAL
  mode NORMAL survives a process crash; a power cut may lose the last batches, never
  corrupt the file. Batches are bounded (``batch_size``) so the write lock is held only
  briefly and journal commits are not starved.
* Each connection runs on its own aiosqlite thread, so a telemetry flush never queues in
  front of a journal commit inside aiosqlite; they only meet at SQLite's write lock
  (``busy_timeout_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from arbkit.execution.journal import (
    AuditRecord,
    ExecState,
    ExecutionRecord,
    Journal,
    LegOrderRecord,
)
from arbkit.model import Mode, Money, Outcome, Qty, Venue
from arbkit.storage.errors import JournalError, StorageError
from arbkit.storage.records import (
    CouponAccrual,
    DbSummary,
    PositionRow,
    RiskHistory,
    RunRow,
    SettledExecution,
    SettlementRow,
    TradingStateRow,
)
from arbkit.storage.rows import (
    EXEC_COLS,
    INSERT_ORDER,
    NON_TERMINAL,
    OUTCOMES,
    SELECT_EXECS,
    SELECT_ORDERS,
    STAGE_COLS,
    STATES,
    UPSERT_ORDER,
    VENUES,
    config_digest,
    exec_from_row,
    order_from_row,
    order_params,
    split_stages,
)
from arbkit.storage.schema import MIGRATIONS, SCHEMA_VERSION, TABLES
from arbkit.storage.writer import DatabaseWriter

__all__ = [
    "DEFAULT_PATH",
    "Database",
    "DatabaseWriter",
    "JournalError",
    "StorageError",
    "config_digest",
]

log = logging.getLogger(__name__)

DEFAULT_PATH = Path("data/arbkit.sqlite")


# ----------------------------------------------------------------- SQL ------------

_RUN_ID_BITS = 32  # opportunity ids: run rowid in the high bits, sequence in the low


class Database:
    """Async handle on the arbkit SQLite file. ``await open()`` before use.

    Implements ``arbkit.execution.journal.Journal`` (``record_intent``, ``record_order``,
    ``record_state``, ``open_executions``) durably, plus positions and analysis reads.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._journal: aiosqlite.Connection | None = None
        self._telemetry: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._user_version = 0
        self._next_opp_id = 1
        self.run_id = ""  # set by begin_run(): every row written carries it

    # -- runs

    async def begin_run(self, mode: str, config_digest: str, command: str = "") -> str:
        """Start a run: one ``runs`` row; every row written from now on carries its id."""
        now = time.time_ns()
        run_id = f"r{now // 1_000_000_000:x}-{os.urandom(3).hex()}"
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO runs (run_id, started_ns, mode, config_digest, command) "
                "VALUES (?, ?, ?, ?, ?)",
                (run_id, now, mode, config_digest, command),
            )
        )
        self.run_id = run_id
        # Opportunity ids are allocated here, ahead of their (batched) insert. Each run owns
        # the block [rowid << 32, (rowid + 1) << 32): another writer on the same file (a
        # replay --db next to a monitor) can never hand out the same id. Ids from before
        # this scheme are all below 1 << 32.
        async with self._lock:
            row = await _fetchone(
                self._conn(), "SELECT rowid FROM runs WHERE run_id = ?", (run_id,)
            )
        self._next_opp_id = int(row[0]) << _RUN_ID_BITS
        return run_id

    async def end_run(self) -> None:
        if not self.run_id or self._journal is None:
            return
        run_id, now = self.run_id, time.time_ns()
        await self._write(
            lambda conn: conn.execute(
                "UPDATE runs SET ended_ns = ? WHERE run_id = ?", (now, run_id)
            )
        )

    async def runs(self) -> list[RunRow]:
        async with self._lock:
            rows = await self._conn().execute_fetchall(
                "SELECT run_id, started_ns, ended_ns, mode, config_digest, command FROM runs "
                "ORDER BY started_ns, run_id"
            )
        return [RunRow(r[0], r[1], r[2] or 0, r[3], r[4], r[5]) for r in rows]

    # -- lifecycle

    async def open(self) -> Database:
        """Create the directory and file if needed, switch to WAL, migrate, connect."""
        if self._journal is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only: the journal holds positions, orders and balances. SQLite creates the
        # -wal and -shm files with the database file's permissions.
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        journal = await self._connect("FULL")
        try:
            self._user_version = await self._migrate(journal)
            row = await _fetchone(journal, "SELECT COALESCE(MAX(id), 0) + 1 FROM opportunities")
            self._next_opp_id = int(row[0])
            telemetry = await self._connect("NORMAL")
        except BaseException:
            await journal.close()
            raise
        self._journal, self._telemetry = journal, telemetry
        return self

    async def close(self) -> None:
        """End the run, close both connections (stop any :class:`DatabaseWriter` first)."""
        await self.end_run()
        journal, telemetry = self._journal, self._telemetry
        self._journal = self._telemetry = None
        for conn in (telemetry, journal):
            if conn is not None:
                await conn.close()

    async def __aenter__(self) -> Database:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def user_version(self) -> int:
        return self._user_version

    @property
    def is_open(self) -> bool:
        return self._journal is not None

    async def _connect(self, synchronous: str) -> aiosqlite.Connection:
        # isolation_level=None: no implicit transactions; every write says BEGIN/COMMIT.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            mode = (await _fetchone(conn, "PRAGMA journal_mode = WAL"))[0]
            if str(mode).lower() != "wal":
                raise StorageError(f"{self.path}: could not switch to WAL (journal_mode={mode})")
            await conn.execute(f"PRAGMA synchronous = {synchronous}")
            await conn.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> int:
        while True:
            await conn.execute("BEGIN IMMEDIATE")  # re-read the version under the lock
            try:
                version = int((await _fetchone(conn, "PRAGMA user_version"))[0])
                if version > SCHEMA_VERSION:
                    raise StorageError(
                        f"{self.path} has schema version {version}; this arbkit knows up to "
                        f"{SCHEMA_VERSION}: upgrade arbkit before opening it"
                    )
                if version == SCHEMA_VERSION:
                    await conn.execute("COMMIT")
                    return version
                for stmt in MIGRATIONS[version]:
                    await conn.execute(stmt)
                await conn.execute(f"PRAGMA user_version = {version + 1}")
                await conn.execute("COMMIT")
                log.info("%s: migrated schema %d -> %d", self.path, version, version + 1)
            except BaseException:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
                raise

    def _conn(self, telemetry: bool = False) -> aiosqlite.Connection:
        conn = self._telemetry if telemetry else self._journal
        if conn is None:
            raise StorageError(f"{self.path}: database is not open (await db.open())")
        return conn

    def _alloc_opportunity_id(self) -> int:
        oid = self._next_opp_id
        self._next_opp_id += 1
        return oid

    async def _write(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """One durable journal transaction — ``BEGIN IMMEDIATE``, ``fn``, ``COMMIT`` — in
        ONE trip to the journal connection's thread (serialised: the connection is shared).

        Each trip to aiosqlite's thread costs an event-loop round trip; statement by
        statement the intent write took four of them (1.5 ms against a 0.4 ms commit), and
        it sits on the order path between the decision and leg 1's bytes."""
        conn = self._conn()

        def txn() -> None:
            raw: sqlite3.Connection = conn._conn  # aiosqlite's own; used on its own thread
            raw.execute("BEGIN IMMEDIATE")
            try:
                fn(raw)
            except BaseException:
                if raw.in_transaction:
                    raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")

        async with self._lock:
            await conn._execute(txn)  # type: ignore[no-untyped-call]

    # -- journal (each call committed and fsynced before it returns)

    async def record_intent(self, ex: ExecutionRecord, leg1: LegOrderRecord) -> None:
        """Store the execution and its planned leg-1 order before anything is sent.

        Refuses (``JournalError``) an execution id or client order id already journaled:
        ids are deterministic, so a repeat means the same order would be sent twice.
        """
        if leg1.execution_id != ex.execution_id:
            raise JournalError(
                f"leg 1 {leg1.client_order_id!r} belongs to {leg1.execution_id!r}, "
                f"not {ex.execution_id!r}"
            )
        stage_values, extra = split_stages(ex.stages_ns)
        cols = (*EXEC_COLS[:14], *STAGE_COLS, "run_id")
        params = (
            ex.execution_id,
            ex.symbol,
            ex.combo,
            ex.mode.value,
            ex.state.value,
            ex.opportunity_id,
            ex.created_ns,
            ex.updated_ns,
            ex.planned_qty,
            ex.expected_profit,
            ex.realized_pnl,
            ex.hedge_cost,
            ex.error,
            extra,
            *stage_values,
            self.run_id,
        )
        marks = ", ".join("?" * len(cols))
        sql = f"INSERT INTO arb_executions ({', '.join(cols)}) VALUES ({marks})"
        order = order_params(leg1, self.run_id)

        def write(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(sql, params)
            except sqlite3.IntegrityError as exc:
                raise JournalError(
                    f"execution {ex.execution_id!r} refused ({exc}); "
                    "an execution id is never reused"
                ) from exc
            try:
                conn.execute(INSERT_ORDER, order)
            except sqlite3.IntegrityError as exc:
                raise JournalError(
                    f"order {leg1.client_order_id!r} of {ex.execution_id!r} refused ({exc}); "
                    "a client order id is never reused"
                ) from exc

        await self._write(write)

    async def record_order(self, order: LegOrderRecord) -> None:
        """Insert or update one order by ``client_order_id`` (before it is sent, and after).

        The identity (execution, leg, attempt, mode, venue, symbol, outcome, limit, qty)
        must match what is recorded. Unknown values (0 timestamps, '' ids/reasons) keep
        what was recorded.
        """
        await self._write(lambda conn: self._upsert_order(conn, order))

    async def record_step(self, ex: ExecutionRecord, order: LegOrderRecord) -> None:
        """State + a new order row in one durable commit (one fsync before leg 2)."""

        def write(conn: sqlite3.Connection) -> None:
            self._update_state(conn, ex)
            self._upsert_order(conn, order)

        await self._write(write)

    def _upsert_order(self, conn: sqlite3.Connection, order: LegOrderRecord) -> None:
        try:
            cur = conn.execute(UPSERT_ORDER, order_params(order, self.run_id))
        except sqlite3.IntegrityError as exc:
            raise JournalError(
                f"order {order.client_order_id!r} of {order.execution_id!r} refused: {exc} "
                "(is the execution journaled?)"
            ) from exc
        if cur.rowcount != 1:
            raise JournalError(
                f"order {order.client_order_id!r} is journaled with different terms "
                "(execution, leg, attempt, mode, venue, symbol, outcome, limit or qty); "
                "a client order id is never reused"
            )

    async def record_state(self, ex: ExecutionRecord) -> None:
        """Store the execution's state, pnl, hedge cost, error and stage times.

        A terminal execution never changes state again and nothing returns to ``intent``
        (``JournalError``); stage times once recorded are kept.
        """
        await self._write(lambda conn: self._update_state(conn, ex))

    @staticmethod
    def _update_state(conn: sqlite3.Connection, ex: ExecutionRecord) -> None:
        stage_values, extra = split_stages(ex.stages_ns)
        row = conn.execute(
            "SELECT state, stages_extra FROM arb_executions WHERE execution_id = ?",
            (ex.execution_id,),
        ).fetchone()
        if row is None:
            raise JournalError(f"execution {ex.execution_id!r} is not journaled")
        current = STATES[row[0]]
        if ex.state is not current and (current.terminal or ex.state is ExecState.INTENT):
            raise JournalError(
                f"execution {ex.execution_id!r}: {current.value} -> {ex.state.value} "
                "refused (terminal states are final; nothing returns to intent)"
            )
        merged = {**json.loads(row[1]), **json.loads(extra)}
        conn.execute(
            "UPDATE arb_executions SET state = ?, updated_ns = ?, opportunity_id = "
            "COALESCE(?, opportunity_id), realized_pnl_e6 = ?, hedge_cost_e6 = ?, "
            "error = ?, stages_extra = ?, "
            + ", ".join(f"{c} = COALESCE(?, {c})" for c in STAGE_COLS)
            + " WHERE execution_id = ?",
            (
                ex.state.value,
                ex.updated_ns,
                ex.opportunity_id,
                ex.realized_pnl,
                ex.hedge_cost,
                ex.error,
                json.dumps(merged, sort_keys=True),
                *stage_values,
                ex.execution_id,
            ),
        )

    async def open_executions(self) -> list[ExecutionRecord]:
        """Non-terminal executions (oldest first) with their orders, for reconciliation."""
        return await self.executions_in_state(*(STATES[s] for s in NON_TERMINAL))

    async def executions_in_state(self, *states: ExecState) -> list[ExecutionRecord]:
        """E.g. ``executions_in_state(ExecState.UNHEDGED)`` for the start-up report."""
        if not states:
            return []
        marks = ", ".join("?" * len(states))
        async with self._lock:
            return await self._executions(
                self._conn(),
                f"WHERE state IN ({marks}) ORDER BY created_ns, execution_id",
                tuple(s.value for s in states),
            )

    async def execution(self, execution_id: str) -> ExecutionRecord | None:
        async with self._lock:
            found = await self._executions(self._conn(), "WHERE execution_id = ?", (execution_id,))
        return found[0] if found else None

    # -- audit (durable, append-only)

    async def record_audit(self, row: AuditRecord) -> None:
        """Append one reconciliation correction (committed and fsynced on return)."""
        values = (
            row.ts_ns,
            row.execution_id,
            row.client_order_id,
            row.field,
            row.old,
            row.new,
            row.reason,
            row.source,
            self.run_id,
        )
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO audit (ts_ns, execution_id, client_order_id, field, old, new, "
                "reason, source, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        )

    async def audit_rows(self, execution_id: str | None = None) -> list[AuditRecord]:
        """Audit rows in the order written (all, or one execution's)."""
        where, params = ("WHERE execution_id = ?", (execution_id,)) if execution_id else ("", ())
        async with self._lock:
            rows = await self._conn().execute_fetchall(
                "SELECT ts_ns, execution_id, client_order_id, field, old, new, reason, source "
                f"FROM audit {where} ORDER BY id",
                params,
            )
        return [AuditRecord(*r) for r in rows]

    # -- trading state (durable, append-only: the newest row is the state)

    async def record_trading_state(self, row: TradingStateRow) -> None:
        values = (row.ts_ns, row.from_state, row.to_state, row.reason, row.actor, self.run_id)
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO trading_state (ts_ns, from_state, to_state, reason, actor, run_id) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
        )

    async def trading_state_rows(self, limit: int | None = None) -> list[TradingStateRow]:
        """State changes, oldest first (the last ``limit`` of them when given)."""
        async with self._lock:
            rows = await self._conn().execute_fetchall(
                "SELECT ts_ns, from_state, to_state, reason, actor FROM (SELECT * FROM "
                "trading_state ORDER BY id DESC LIMIT ?) ORDER BY id",
                (-1 if limit is None else limit,),
            )
        return [TradingStateRow(*r) for r in rows]

    # -- settlements (one row per mode, venue, symbol: a market settles once)

    async def record_settlement(self, row: SettlementRow) -> bool:
        """Store what a market paid; False when that market was already recorded (a
        lifecycle frame and a re-read may both report one settlement)."""
        values = (
            row.ts_ns, row.settled_ns, row.mode, row.venue.value, row.symbol, row.instrument,
            row.result.value, row.yes_qty, row.no_qty, row.payout, row.cost, row.fees,
            row.source, row.detail, self.run_id,
        )  # fmt: skip
        inserted: list[bool] = []

        def write(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "INSERT OR IGNORE INTO settlements (ts_ns, settled_ns, mode, venue, symbol, "
                "instrument, result, yes_qty_e2, no_qty_e2, payout_e6, cost_e6, fees_e6, "
                "source, detail, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            inserted.append(cur.rowcount == 1)

        await self._write(write)
        return bool(inserted and inserted[0])

    async def settlements(self, mode: Mode | None = None) -> list[SettlementRow]:
        where, params = ("WHERE mode = ?", (mode.value,)) if mode else ("", ())
        async with self._lock:
            rows = await self._conn().execute_fetchall(
                "SELECT ts_ns, settled_ns, mode, venue, symbol, instrument, result, yes_qty_e2, "
                f"no_qty_e2, payout_e6, cost_e6, fees_e6, source, detail FROM settlements {where} "
                "ORDER BY id",
                params,
            )
        return [
            SettlementRow(
                r[0],
                r[1],
                r[2],
                Venue(r[3]),
                r[4],
                r[5],
                Outcome(r[6]),
                Qty(r[7]),
                Qty(r[8]),
                Money(r[9]),
                Money(r[10]),
                Money(r[11]),
                r[12],
                r[13],
            )
            for r in rows
        ]

    # -- ForecastEx coupon (one row per mode, day, position)

    async def record_coupon_accruals(self, rows: Sequence[CouponAccrual]) -> None:
        """Store one day's accruals (a day already accrued is not counted twice)."""
        values = [
            (r.day, r.mode, r.symbol, r.outcome.value, r.qty, r.value, r.rate_bps, r.accrued,
             r.ts_ns, self.run_id)
            for r in rows
        ]  # fmt: skip
        if values:
            await self._write(
                lambda conn: conn.executemany(
                    "INSERT OR IGNORE INTO coupon_accruals (day, mode, symbol, outcome, qty_e2, "
                    "value_e6, rate_bps, accrued_e6, ts_ns, run_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
            )

    async def coupon_accruals(self, mode: Mode | None = None) -> list[CouponAccrual]:
        where, params = ("WHERE mode = ?", (mode.value,)) if mode else ("", ())
        async with self._lock:
            rows = await self._conn().execute_fetchall(
                "SELECT day, mode, symbol, outcome, qty_e2, value_e6, rate_bps, accrued_e6, "
                f"ts_ns FROM coupon_accruals {where} ORDER BY day, symbol, outcome",
                params,
            )
        return [
            CouponAccrual(
                r[0], r[1], r[2], OUTCOMES[r[3]], Qty(r[4]), Money(r[5]), r[6], Money(r[7]), r[8]
            )
            for r in rows
        ]

    async def last_coupon_day(self, mode: Mode) -> str | None:
        """The last UTC day accrued in this mode (None: never)."""
        async with self._lock:
            (day,) = await _fetchone(
                self._conn(), "SELECT MAX(day) FROM coupon_accruals WHERE mode = ?", (mode.value,)
            )
        return str(day) if day is not None else None

    async def settled_executions(self, mode: Mode | None = None) -> list[SettledExecution]:
        """Executions whose every filled leg has settled: settled PnL beside the expected."""
        where, params = ("WHERE mode = ?", (mode.value,)) if mode else ("", ())
        async with self._lock:
            rows = await self._conn().execute_fetchall(
                "SELECT execution_id, symbol, mode, state, expected_profit_e6, cost_e6, "
                f"payout_e6, settled_pnl_e6, settled_ns FROM v_settled_executions {where} "
                "ORDER BY created_ns, execution_id",
                params,
            )
        return [
            SettledExecution(
                r[0], r[1], r[2], r[3], Money(r[4]), Money(r[5]), Money(r[6]), Money(r[7]), r[8]
            )
            for r in rows
        ]

    async def risk_history(self, mode: Mode, day_start_ns: int) -> RiskHistory:
        """What the limits need after a restart, from the journal: losses realised since
        the trading day began (losing executions only: an arbitrage's locked profit is
        paid at settlement and never offsets a loss), and the failure streak since the
        last success (or the user's last lift of a halt, which resets it)."""
        async with self._lock:
            conn = self._conn()
            (loss,) = await _fetchone(
                conn,
                "SELECT COALESCE(SUM(-realized_pnl_e6), 0) FROM arb_executions "
                "WHERE mode = ? AND created_ns >= ? AND realized_pnl_e6 < 0",
                (mode.value, day_start_ns),
            )
            lifted = await _fetchone(
                conn,
                "SELECT COALESCE(MAX(ts_ns), 0) FROM trading_state "
                "WHERE actor = 'user' AND to_state = 'active'",
            )
            rows = await conn.execute_fetchall(
                "SELECT state, hedge_cost_e6 FROM arb_executions WHERE mode = ? AND "
                "created_ns >= ? AND state IN ('done', 'hedged', 'unhedged') "
                "ORDER BY created_ns DESC, execution_id DESC LIMIT 1000",
                (mode.value, int(lifted[0])),
            )
        streak = 0
        for state, hedge_cost in rows:
            if state == "done":
                break
            # UNHEDGED always counts; a hedged execution counts when its recovery cost
            # money (conservative: the journal does not keep "fraction only").
            streak += state == "unhedged" or hedge_cost > 0
        return RiskHistory(Money(int(loss)), streak)

    # -- positions (durable, like the journal)

    async def set_position(
        self, symbol: str, venue: Venue, outcome: Outcome, qty: Qty, cost: Money, now_ns: int
    ) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT INTO positions (symbol, venue, outcome, qty_e2, cost_e6, updated_ns, "
                "run_id) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (symbol, venue, outcome) DO "
                "UPDATE SET qty_e2 = excluded.qty_e2, cost_e6 = excluded.cost_e6, "
                "updated_ns = excluded.updated_ns, run_id = excluded.run_id",
                (symbol, venue.value, outcome.value, qty, cost, now_ns, self.run_id),
            )
        )

    async def positions(self) -> list[PositionRow]:
        async with self._lock:
            rows = await self._conn().execute_fetchall(
                "SELECT symbol, venue, outcome, qty_e2, cost_e6, updated_ns FROM positions "
                "ORDER BY symbol, venue, outcome"
            )
        return [
            PositionRow(s, VENUES[v], OUTCOMES[o], Qty(q), Money(c), u) for s, v, o, q, c, u in rows
        ]

    # -- analysis reads (telemetry connection: never hold up the journal)

    async def recent_executions(self, limit: int = 50) -> list[ExecutionRecord]:
        """The newest ``limit`` executions, newest first, with their orders."""
        return await self._executions(
            self._conn(telemetry=True),
            "WHERE execution_id IN (SELECT execution_id FROM arb_executions "
            "ORDER BY created_ns DESC LIMIT ?) ORDER BY created_ns DESC, execution_id",
            (limit,),
        )

    async def summary(self) -> DbSummary:
        """Rows per table, executions per state, opportunities per decision, total pnl."""
        conn = self._conn(telemetry=True)
        counts = {}
        for table in TABLES:
            counts[table] = int((await _fetchone(conn, f"SELECT COUNT(*) FROM {table}"))[0])
        by_state = {
            str(r[0]): int(r[1])
            for r in await conn.execute_fetchall(
                "SELECT state, COUNT(*) FROM arb_executions GROUP BY state ORDER BY state"
            )
        }
        by_decision = {
            str(r[0]): int(r[1])
            for r in await conn.execute_fetchall(
                "SELECT decision, COUNT(*) FROM opportunities GROUP BY decision ORDER BY decision"
            )
        }
        pnl, hedge = await _fetchone(
            conn,
            "SELECT COALESCE(SUM(realized_pnl_e6), 0), COALESCE(SUM(hedge_cost_e6), 0) "
            "FROM arb_executions",
        )
        open_pos = await _fetchone(conn, "SELECT COUNT(*) FROM positions WHERE qty_e2 != 0")
        return DbSummary(
            user_version=self._user_version,
            counts=counts,
            executions_by_state=by_state,
            opportunities_by_decision=by_decision,
            realized_pnl=Money(int(pnl)),
            hedge_cost=Money(int(hedge)),
            open_positions=int(open_pos[0]),
        )

    async def _executions(
        self, conn: aiosqlite.Connection, where: str, params: tuple[Any, ...]
    ) -> list[ExecutionRecord]:
        rows = list(await conn.execute_fetchall(f"{SELECT_EXECS} {where}", params))
        if not rows:
            return []
        ids = [r[0] for r in rows]
        orders: dict[str, list[LegOrderRecord]] = {i: [] for i in ids}
        for start in range(0, len(ids), 500):  # stay under SQLite's variable limit
            chunk = ids[start : start + 500]
            for r in await conn.execute_fetchall(
                f"{SELECT_ORDERS} WHERE execution_id IN ({', '.join('?' * len(chunk))}) "
                "ORDER BY id",
                chunk,
            ):
                o = order_from_row(r)
                orders[o.execution_id].append(o)
        return [exec_from_row(r, orders[r[0]]) for r in rows]


async def _fetchone(
    conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()
) -> sqlite3.Row | tuple[Any, ...]:
    row = await _fetchone_or_none(conn, sql, params)
    if row is None:
        raise StorageError(f"no row from {sql!r}")
    return row


async def _fetchone_or_none(
    conn: aiosqlite.Connection, sql: str, params: tuple[Any, ...] = ()
) -> sqlite3.Row | tuple[Any, ...] | None:
    async with conn.execute(sql, params) as cur:
        row: sqlite3.Row | tuple[Any, ...] | None = await cur.fetchone()
    return row


def _implements_journal(db: Database) -> Journal:
    """mypy checks here that Database satisfies the executor's Journal protocol."""
    return db
