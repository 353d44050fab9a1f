"""Reconciliation: the journal against what the venues hold — at start, after reconnects
and on a timer. Venue truth wins: a journal state the venue contradicts is corrected with
an audit row; exposure nobody can explain, or an order whose fate is UNKNOWN, halts.

Two halves:

* pure comparisons (no IO, no clock): :func:`position_mismatches`, :func:`residuals`,
  :func:`lingering_orders`, :func:`foreign_orders`, :func:`foreign_fills`,
  :func:`order_corrections`, :func:`settled_state`;
* :class:`Reconciler`, which talks to the venues only through ``VenueOrderClient`` and to
  the journal only through ``Journal``. Venue reads lag writes, so one ``order_status``
  miss is never proof of absence: an order counts as absent only after
  ``ReconcileConfig.misses`` consecutive misses spread over at least
  ``ReconcileConfig.miss_window_s``. At runtime a position mismatch must show on
  ``confirm_passes`` consecutive passes (with no execution touching the symbol in
  between) before it halts.

Hedged inventory is not exposure: a position whose Kalshi and ForecastEx legs offset per
the symbol's orientation (``SymbolSpec.ibkr_equivalent``) is fine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from arbkit.config.execution_loader import ExecutionParams
from arbkit.config.loader import SymbolSpec
from arbkit.execution import risk
from arbkit.execution.journal import (
    AuditRecord,
    ExecState,
    ExecutionRecord,
    Journal,
    Leg,
    LegOrderRecord,
)
from arbkit.execution.venue import Fill, OrderResult, OrderState, VenueError, VenueOrderClient
from arbkit.model import QTY_SCALE, Outcome, Qty, Venue

log = logging.getLogger(__name__)

PosKey = tuple[str, Venue, Outcome]
Positions = Mapping[PosKey, int]
_READ_ERRORS = (TimeoutError, VenueError, OSError)


@dataclass(frozen=True, slots=True)
class ReconcileConfig:
    """Knobs (units in the names)."""

    misses: int = 3  # consecutive order_status misses before an order counts as absent
    miss_window_s: float = 1.5  # ... spread over at least this long (the venue's read lag)
    read_timeout_s: float = 2.0  # one venue read
    read_attempts: int = 3  # a read that errors (not a miss) is retried this often
    cancel_timeout_s: float = 2.0
    cancel_confirm_s: float = 5.0  # a cancelled order must read terminal within this
    confirm_passes: int = 2  # runtime mismatches must persist this many passes
    id_prefix: str = "ak-"  # client order ids arbkit creates start with this

    @classmethod
    def from_params(cls, p: ExecutionParams, id_prefix: str = "ak-") -> ReconcileConfig:
        """The executor's lag tolerance, so start-up and runtime lookups agree."""
        return cls(
            misses=p.status_max_misses,
            miss_window_s=p.status_lag_tolerance_ms / 1000,
            cancel_confirm_s=p.cancel_confirm_ms / 1000,
            id_prefix=id_prefix,
        )


# ------------------------------------------------------------------ findings ---
@dataclass(frozen=True, slots=True)
class PositionMismatch:
    symbol: str
    venue: Venue
    outcome: Outcome
    expected: int  # Qty units (0.01 contracts)
    actual: int

    def __str__(self) -> str:
        return (
            f"{self.symbol} {self.venue.value} {self.outcome.value}: journal expects "
            f"{self.expected / QTY_SCALE:g}, venue holds {self.actual / QTY_SCALE:g}"
        )


@dataclass(frozen=True, slots=True)
class OrderFinding:
    venue: Venue
    client_order_id: str
    venue_order_id: str
    state: OrderState
    what: str  # "working after its execution ended", "not created by arbkit", ...

    def __str__(self) -> str:
        ident = self.client_order_id or f"venue id {self.venue_order_id}"
        return f"{self.venue.value} order {ident} ({self.state.value}): {self.what}"


@dataclass(slots=True)
class ReconcileReport:
    kind: str  # "start" | "periodic"
    executions_checked: int = 0
    orders_found: int = 0
    orders_absent: int = 0  # absent after the full miss tolerance
    orders_unknown: list[str] = field(default_factory=list)
    corrections: list[AuditRecord] = field(default_factory=list)
    positions: dict[PosKey, Qty] = field(default_factory=dict)  # what the venues hold
    residual_contracts: dict[str, float] = field(default_factory=dict)
    mismatches: list[PositionMismatch] = field(default_factory=list)
    suspected: list[PositionMismatch] = field(default_factory=list)  # seen once, not yet sure
    order_findings: list[OrderFinding] = field(default_factory=list)
    foreign_fills: list[Fill] = field(default_factory=list)
    skipped_symbols: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    halted: bool = False
    halt_reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.halted


# --------------------------------------------------------- pure comparisons ---
def net(positions: Positions) -> dict[PosKey, Qty]:
    """YES against NO per (symbol, venue), zero rows dropped: a pair on one venue pays $1
    whatever happens, so it is no position (both venues report netted positions)."""
    out: dict[PosKey, Qty] = {}
    pairs = {(s, v) for s, v, _ in positions}
    for s, v in pairs:
        y = positions.get((s, v, Outcome.YES), 0)
        n = positions.get((s, v, Outcome.NO), 0)
        if y > n:
            out[(s, v, Outcome.YES)] = Qty(y - n)
        elif n > y:
            out[(s, v, Outcome.NO)] = Qty(n - y)
    return out


def position_mismatches(
    expected: Positions, actual: Positions, skip: Collection[str] = ()
) -> list[PositionMismatch]:
    """Every (symbol, venue, outcome) whose netted quantity differs, sorted; symbols in
    ``skip`` (an execution in flight) are left out."""
    e, a = net(expected), net(actual)
    out = []
    for key in sorted(set(e) | set(a), key=lambda k: (k[0], k[1].value, k[2].value)):
        if key[0] in skip:
            continue
        if e.get(key, 0) != a.get(key, 0):
            out.append(PositionMismatch(key[0], key[1], key[2], e.get(key, 0), a.get(key, 0)))
    return out


def residuals(
    symbols: Mapping[str, SymbolSpec], positions: Positions, skip: Collection[str] = ()
) -> dict[str, int]:
    """Unhedged contracts (Qty units) per symbol, orientation-aware; hedged inventory (Kalshi
    and ForecastEx legs that offset) is 0. A position in a symbol the map does not know is
    exposure nobody can hedge: counted in full."""
    pos = {k: Qty(v) for k, v in positions.items()}
    out: dict[str, int] = {}
    for name in sorted({s for s, _, _ in pos} | set(symbols)):
        if name in skip:
            continue
        spec = symbols.get(name)
        if spec is None:
            r: int = sum(q for (s, _, _), q in net(pos).items() if s == name)
        else:
            r = risk.residual_exposure(spec, pos)
        if r:
            out[name] = r
    return out


def execution_of(client_order_id: str) -> str:
    """``<execution_id>-<leg>-<attempt>`` → ``<execution_id>`` (the id scheme of the
    executor's ``client_order_id``)."""
    parts = client_order_id.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else client_order_id


def lingering_orders(
    venue: Venue, working: Iterable[OrderResult], open_execution_ids: Collection[str], prefix: str
) -> list[OrderFinding]:
    """arbkit's own orders still working although their execution is not in flight."""
    return [
        OrderFinding(
            venue,
            o.client_order_id,
            o.venue_order_id,
            o.state,
            "working, but its execution has ended",
        )
        for o in working
        if o.client_order_id.startswith(prefix)
        and not o.state.terminal
        and execution_of(o.client_order_id) not in open_execution_ids
    ]


def foreign_orders(venue: Venue, working: Iterable[OrderResult], prefix: str) -> list[OrderFinding]:
    """Working orders on the account that arbkit did not create (no ``prefix``)."""
    return [
        OrderFinding(venue, o.client_order_id, o.venue_order_id, o.state, "not created by arbkit")
        for o in working
        if not o.client_order_id.startswith(prefix) and not o.state.terminal
    ]


def foreign_fills(fills: Iterable[Fill], prefix: str, since_ns: int = 0) -> list[Fill]:
    """Fills (at or after ``since_ns``) of orders that carry a client order id arbkit did not
    create. A fill without any client order id is not attributable from the fill alone: the
    position comparison catches what it did."""
    return [
        f
        for f in fills
        if f.ts_ns >= since_ns and f.client_order_id and not f.client_order_id.startswith(prefix)
    ]


_ORDER_FIELDS = (
    ("state", "state"),
    ("filled_qty_e2", "filled_qty"),
    ("filled_cost_e6", "filled_cost"),
    ("fees_e6", "fees"),
    ("venue_order_id", "venue_order_id"),
)


def _text(v: Any) -> str:
    return v.value if isinstance(v, OrderState | ExecState) else str(v)


def order_corrections(
    rec: LegOrderRecord, res: OrderResult, *, reason: str, source: str, ts_ns: int
) -> list[AuditRecord]:
    """Audit rows for every field in which the venue's answer differs from the journal."""
    out = []
    for column, attr in _ORDER_FIELDS:
        old, new = getattr(rec, attr), getattr(res, attr)
        if attr == "venue_order_id" and not new:
            continue
        if old != new:
            out.append(
                AuditRecord(
                    ts_ns,
                    rec.execution_id,
                    rec.client_order_id,
                    column,
                    _text(old),
                    _text(new),
                    reason,
                    source,
                )
            )
    return out


def settled_state(ex: ExecutionRecord, spec: SymbolSpec | None) -> ExecState:
    """What an interrupted execution's orders add up to: UNHEDGED when an order is UNKNOWN
    or still live, or when the execution's own fills leave exposure; FAILED when nothing
    filled; HEDGED when a hedge filled; else DONE."""
    own: dict[PosKey, Qty] = {}
    for o in ex.orders:
        k = (o.symbol, o.venue, o.outcome)
        own[k] = Qty(own.get(k, 0) + o.filled_qty)
    if any(not o.state.terminal for o in ex.orders):
        return ExecState.UNHEDGED
    exposed = risk.residual_exposure(spec, own) if spec is not None else sum(net(own).values()) > 0
    if exposed:
        return ExecState.UNHEDGED
    if not any(own.values()):
        return ExecState.FAILED
    hedged = any(o.leg is Leg.HEDGE and o.filled_qty for o in ex.orders)
    return ExecState.HEDGED if hedged else ExecState.DONE


# ---------------------------------------------------------------- reconciler ---
class Unresolved(Exception):
    """The venue could not be read (errors, not misses): the order's fate is unknown."""


Sleep = Callable[[float], Awaitable[None]]


class Reconciler:
    """Compares the journal (and the executor's positions) with venue truth.

    ``clients``: one ``VenueOrderClient`` per venue. ``positions``: the executor's
    ``RiskState.positions`` — loaded from the venues at start and then kept by the
    executor as fills arrive; periodic passes compare it with the venues. ``halt``: the
    kill switch (``Executor.kill``). ``busy``: optional, the symbols with an execution in
    flight right now (read at the start AND end of a pass); ``activity``: optional, a
    per-symbol counter/timestamp that changes whenever an execution starts on the symbol
    (``RiskState.last_execution_ns``), so a pass that overlapped an execution is not
    trusted.
    """

    def __init__(
        self,
        clients: Mapping[Venue, VenueOrderClient],
        journal: Journal,
        symbols: Mapping[str, SymbolSpec],
        positions: dict[PosKey, Qty],
        *,
        halt: Callable[[str], None],
        clock: Callable[[], int] = time.time_ns,
        config: ReconcileConfig | None = None,
        busy: Callable[[], Collection[str]] | None = None,
        activity: Mapping[str, int] | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.clients = dict(clients)
        self.journal = journal
        self.symbols = symbols
        self.positions = positions
        self._halt = halt
        self.clock = clock
        self.config = config or ReconcileConfig()
        self._busy = busy or (lambda: ())
        self._activity = activity if activity is not None else {}
        self._sleep = sleep
        self.started_ns = clock()
        self._suspects: dict[PosKey, tuple[PositionMismatch, int]] = {}
        self._order_suspects: set[tuple[Venue, str]] = set()
        self._notified: set[str] = set()
        self._seen_fills: set[tuple[str, str, int, int]] = set()
        self.passes = 0
        self.last: ReconcileReport | None = None

    # ---------------------------------------------------------------- helpers
    async def _audit(self, report: ReconcileReport, row: AuditRecord) -> None:
        report.corrections.append(row)
        await self.journal.record_audit(row)

    async def halt(self, report: ReconcileReport, reason: str) -> None:
        """Halt trading (the kill switch) and leave an audit row saying why."""
        if not report.halted:
            report.halted, report.halt_reason = True, reason
        else:
            report.halt_reason += "; " + reason
        log.error("reconciliation halts trading: %s", reason)
        self._halt(reason)
        await self._audit(
            report,
            AuditRecord(self.clock(), "", "", "trading_state", "", "halted", reason, "reconciler"),
        )

    async def _read(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        last: BaseException | None = None
        for attempt in range(self.config.read_attempts):
            try:
                return await asyncio.wait_for(call(), self.config.read_timeout_s)
            except _READ_ERRORS as exc:
                last = exc
                log.warning("reconcile: %s failed (try %d): %r", what, attempt + 1, exc)
                await self._sleep(0.05 * (attempt + 1))
        raise Unresolved(f"{what}: {type(last).__name__}: {last}")

    async def lookup(self, client: VenueOrderClient, client_order_id: str) -> OrderResult | None:
        """The venue's view of one order. None only after ``misses`` consecutive misses
        spread over at least ``miss_window_s`` (one miss is never proof); ``Unresolved``
        when the venue cannot be read at all."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        first = loop.time()
        gap = cfg.miss_window_s / max(cfg.misses - 1, 1)
        misses = 0
        while True:
            res: OrderResult | None = await self._read(
                f"status of {client_order_id}", lambda: client.order_status(client_order_id)
            )
            if res is not None:
                return res
            misses += 1
            if misses >= cfg.misses and loop.time() - first >= cfg.miss_window_s:
                return None
            await self._sleep(gap)

    async def _cancel_confirmed(
        self, client: VenueOrderClient, client_order_id: str
    ) -> OrderResult | None:
        """Cancel and read until terminal within ``cancel_confirm_s``; None if never seen
        terminal (the caller books UNKNOWN and halts)."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.cancel_confirm_s
        res: OrderResult | None = None
        try:
            res = await asyncio.wait_for(
                client.cancel(client_order_id, cfg.cancel_timeout_s), cfg.cancel_timeout_s + 2.0
            )
        except _READ_ERRORS as exc:
            log.warning("reconcile: cancel of %s: %r", client_order_id, exc)
        while res is None or not res.state.terminal:
            if loop.time() >= deadline:
                return None
            await self._sleep(0.1)
            try:
                res = await asyncio.wait_for(
                    client.order_status(client_order_id), cfg.read_timeout_s
                )
            except _READ_ERRORS as exc:
                log.warning("reconcile: status of %s after cancel: %r", client_order_id, exc)
        return res

    async def _working(self, venue: Venue, client: VenueOrderClient) -> list[OrderResult] | None:
        """``open_orders()`` where the client has it (None: not supported, said once)."""
        fn = getattr(client, "open_orders", None)
        if fn is None:
            if venue.value not in self._notified:
                self._notified.add(venue.value)
                log.warning(
                    "reconcile: %s client has no open_orders(): working/foreign order checks "
                    "skipped for it",
                    venue.value,
                )
            return None
        got: list[OrderResult] = await self._read(f"{venue.value} open orders", fn)
        return got

    async def venue_positions(self) -> dict[PosKey, Qty]:
        out: dict[PosKey, Qty] = {}
        for venue, client in self.clients.items():
            rows = await self._read(f"{venue.value} positions", client.positions)
            for (symbol, outcome), q in rows.items():
                if q:
                    out[(symbol, venue, outcome)] = Qty(q)
        return out

    # ---------------------------------------------------------------- at start
    async def at_start(self, recorded_positions: Positions | None = None) -> ReconcileReport:
        """Settle every non-terminal journaled execution by client order id, cancel (and
        confirm) any live order of ours, load the venues' positions into ``positions`` and
        halt on exposure that is not hedged, on UNKNOWN orders, and on foreign working
        orders. ``recorded_positions`` (the journal's last positions) are corrected to
        venue truth with an audit row per difference."""
        report = ReconcileReport("start")
        for ex in await self.journal.open_executions():
            report.executions_checked += 1
            await self._settle_execution(ex, report)
        # Working orders: ours whose execution is over are cancelled; foreign ones halt.
        for venue, client in self.clients.items():
            try:
                working = await self._working(venue, client)
            except Unresolved as exc:
                await self.halt(report, f"cannot read {venue.value} working orders: {exc}")
                continue
            if working is None:
                continue
            await self._handle_working(venue, client, working, (), report, confirm=False)
        try:
            held = await self.venue_positions()
        except Unresolved as exc:
            await self.halt(report, f"cannot load venue positions: {exc}")
            return self._done(report)
        if recorded_positions is not None:
            now = self.clock()
            for m in position_mismatches(recorded_positions, held):
                await self._audit(
                    report,
                    AuditRecord(
                        now,
                        "",
                        "",
                        f"position:{m.symbol}/{m.venue.value}/{m.outcome.value}",
                        str(m.expected),
                        str(m.actual),
                        "venue truth at start differs from the journal's positions",
                        m.venue.value,
                    ),
                )
        self.positions.clear()
        self.positions.update(held)
        report.positions = dict(held)
        res = residuals(self.symbols, held)
        if res:
            report.residual_contracts = {s: q / QTY_SCALE for s, q in res.items()}
            await self.halt(
                report,
                "unhedged exposure at the venues at start: "
                + ", ".join(f"{s} {q / QTY_SCALE:g} contracts" for s, q in res.items()),
            )
        if report.orders_unknown:
            await self.halt(
                report, "orders whose fate is unknown: " + ", ".join(report.orders_unknown)
            )
        return self._done(report)

    def _done(self, report: ReconcileReport) -> ReconcileReport:
        self.last = report
        return report

    async def _settle_execution(self, ex: ExecutionRecord, report: ReconcileReport) -> None:
        for rec in ex.orders:
            client = self.clients.get(rec.venue)
            if client is None:
                report.orders_unknown.append(f"{rec.client_order_id} (no {rec.venue.value} client)")
                continue
            source = rec.venue.value
            try:
                res = await self.lookup(client, rec.client_order_id)
            except Unresolved as exc:
                report.orders_unknown.append(f"{rec.client_order_id} ({exc})")
                report.notes.append(f"{rec.client_order_id}: venue unreadable: {exc}")
                continue
            if res is None:
                report.orders_absent += 1
                if rec.state in (OrderState.PENDING, OrderState.OPEN):
                    # Never reached the venue: the intent is written before the order leaves,
                    # and the process that would have sent it is gone.
                    reason = (
                        f"not at the venue after {self.config.misses} reads over "
                        f"{self.config.miss_window_s:g} s at start"
                    )
                    await self._apply(rec, OrderState.REJECTED, None, reason, source, report)
                elif rec.state is OrderState.UNKNOWN:
                    report.orders_unknown.append(f"{rec.client_order_id} (unknown, not found)")
                # a terminal journal row the venue no longer lists keeps its recorded fate
                continue
            report.orders_found += 1
            if not res.state.terminal:
                confirmed = await self._cancel_confirmed(client, rec.client_order_id)
                if confirmed is None:
                    await self._apply(
                        rec,
                        OrderState.UNKNOWN,
                        res,
                        "live at start and the cancel was not confirmed",
                        source,
                        report,
                    )
                    report.orders_unknown.append(f"{rec.client_order_id} (cancel unconfirmed)")
                    continue
                res = confirmed
            if res.state is OrderState.UNKNOWN:
                report.orders_unknown.append(f"{rec.client_order_id} (venue says unknown)")
            await self._apply(rec, res.state, res, "venue truth at start", source, report)
        new = settled_state(ex, self.symbols.get(ex.symbol))
        if new is not ex.state:
            await self._audit(
                report,
                AuditRecord(
                    self.clock(),
                    ex.execution_id,
                    "",
                    "exec_state",
                    ex.state.value,
                    new.value,
                    "interrupted execution settled from its orders' venue state at start",
                    "reconciler",
                ),
            )
        ex.state = new
        ex.error = (ex.error + "; " if ex.error else "") + "reconciled at start"
        ex.updated_ns = self.clock()
        await self.journal.record_state(ex)
        if new is ExecState.UNHEDGED:
            await self.halt(report, f"{ex.execution_id}: exposure or unknown orders at start")

    async def _apply(
        self,
        rec: LegOrderRecord,
        state: OrderState,
        res: OrderResult | None,
        reason: str,
        source: str,
        report: ReconcileReport,
    ) -> None:
        now = self.clock()
        if res is not None:
            truth = OrderResult(
                rec.client_order_id,
                res.venue_order_id,
                state,
                res.requested_qty,
                res.filled_qty,
                res.filled_cost,
                res.fees,
            )
            rows = order_corrections(rec, truth, reason=reason, source=source, ts_ns=now)
            rec.venue_order_id = res.venue_order_id or rec.venue_order_id
            rec.filled_qty, rec.filled_cost, rec.fees = res.filled_qty, res.filled_cost, res.fees
            if res.filled_qty and not rec.filled_ns:
                rec.filled_ns = res.ack_ts_ns or now
        else:
            rows = (
                [
                    AuditRecord(
                        now,
                        rec.execution_id,
                        rec.client_order_id,
                        "state",
                        rec.state.value,
                        state.value,
                        reason,
                        source,
                    )
                ]
                if state is not rec.state
                else []
            )
        rec.state = state
        if rows:
            rec.reason = (rec.reason + "; " if rec.reason else "") + reason
        for row in rows:
            await self._audit(report, row)
        await self.journal.record_order(rec)

    async def _handle_working(
        self,
        venue: Venue,
        client: VenueOrderClient,
        working: list[OrderResult],
        open_execution_ids: Collection[str],
        report: ReconcileReport,
        *,
        confirm: bool,
    ) -> None:
        prefix = self.config.id_prefix
        foreign = foreign_orders(venue, working, prefix)
        lingering = lingering_orders(venue, working, open_execution_ids, prefix)
        if confirm:  # runtime: a lagging read may still list an order just cancelled
            seen = {(venue, f.client_order_id or f.venue_order_id) for f in lingering}
            sure = [f for f in lingering if (venue, f.client_order_id) in self._order_suspects]
            self._order_suspects = {k for k in self._order_suspects if k[0] is not venue} | seen
            lingering = sure
        for f in lingering:
            done = await self._cancel_confirmed(client, f.client_order_id)
            if done is None:
                report.order_findings.append(f)
                await self.halt(report, f"{f}; cancel not confirmed")
            else:
                report.notes.append(f"{f}: cancelled ({done.state.value})")
                await self._audit(
                    report,
                    AuditRecord(
                        self.clock(),
                        execution_of(f.client_order_id),
                        f.client_order_id,
                        "state",
                        f.state.value,
                        done.state.value,
                        "working after its execution ended: cancelled",
                        venue.value,
                    ),
                )
                if confirm:  # at runtime a left-over order is a bug somewhere: stop
                    report.order_findings.append(f)
                    await self.halt(report, f"{f} (cancelled)")
        for f in foreign:
            report.order_findings.append(f)
            await self.halt(report, str(f))

    # ---------------------------------------------------------------- at runtime
    async def periodic(self, open_execution_ids: Collection[str] = ()) -> ReconcileReport:
        """One runtime pass: venue positions against ``positions`` (symbols with an
        execution in flight skipped; a mismatch must persist ``confirm_passes`` passes),
        arbkit orders still working after their execution ended, and orders/fills arbkit
        did not create. Halts on a confirmed mismatch and says exactly what differs; the
        executor's positions are then set to venue truth (audit row per change)."""
        report = ReconcileReport("periodic")
        self.passes += 1
        busy0 = set(self._busy())
        activity0 = dict(self._activity)
        try:
            held = await self.venue_positions()
        except Unresolved as exc:
            report.notes.append(f"pass skipped: {exc}")
            return self._done(report)
        report.positions = dict(held)
        busy = busy0 | set(self._busy())
        moved = {
            s
            for s in set(activity0) | set(self._activity)
            if activity0.get(s) != self._activity.get(s)
        }
        skip = busy | moved
        report.skipped_symbols = sorted(skip)
        found = position_mismatches(self.positions, held, skip)
        keep: dict[PosKey, tuple[PositionMismatch, int]] = {}
        confirmed: list[PositionMismatch] = []
        for m in found:
            key = (m.symbol, m.venue, m.outcome)
            prev = self._suspects.get(key)
            count = prev[1] + 1 if prev is not None else 1
            if count >= self.config.confirm_passes:
                confirmed.append(m)
            else:
                keep[key] = (m, count)
                report.suspected.append(m)
        self._suspects = keep
        if confirmed:
            report.mismatches = confirmed
            now = self.clock()
            for m in confirmed:
                await self._audit(
                    report,
                    AuditRecord(
                        now,
                        "",
                        "",
                        f"position:{m.symbol}/{m.venue.value}/{m.outcome.value}",
                        str(m.expected),
                        str(m.actual),
                        f"venue position differs from the journal on {self.config.confirm_passes}"
                        " consecutive passes",
                        m.venue.value,
                    ),
                )
                key = (m.symbol, m.venue, m.outcome)
                opposite = (m.symbol, m.venue, m.outcome.opposite)
                self.positions.pop(opposite, None)
                if m.actual:
                    self.positions[key] = Qty(m.actual)
                else:
                    self.positions.pop(key, None)
            await self.halt(
                report, "positions differ from the journal: " + "; ".join(map(str, confirmed))
            )
        for venue, client in self.clients.items():
            try:
                working = await self._working(venue, client)
                if working is not None:
                    await self._handle_working(
                        venue, client, working, set(open_execution_ids), report, confirm=True
                    )
                fills = await self._read(f"{venue.value} fills", client.fills)
            except Unresolved as exc:
                report.notes.append(f"{venue.value} orders/fills unreadable: {exc}")
                continue
            odd = [
                f
                for f in foreign_fills(fills, self.config.id_prefix, self.started_ns)
                if (f.client_order_id, f.trade_id, f.ts_ns, f.qty) not in self._seen_fills
            ]
            self._seen_fills.update((f.client_order_id, f.trade_id, f.ts_ns, f.qty) for f in odd)
            if odd:
                report.foreign_fills += odd
                await self.halt(
                    report,
                    f"{venue.value} fills of orders arbkit did not create: "
                    + ", ".join(f"{f.client_order_id} {f.qty / QTY_SCALE:g}" for f in odd),
                )
        return self._done(report)
