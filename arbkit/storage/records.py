"""Plain rows the database stores and returns.

Every money, price and quantity field is an exact integer in the model's units
(``Price`` $0.0001, ``Qty`` 0.01 contract, ``Money`` $0.000001); times are ns since the
epoch, ``None`` when not (yet) known. The database columns carry the unit in their name
(``limit_price_e4``, ``filled_qty_e2``, ``fees_e6``, ``acked_ns``).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from arbkit.execution.venue import OrderResult, OrderState
from arbkit.model import Mode, Money, Outcome, Price, Qty, Venue


class ExecState(enum.Enum):
    """Journal state of one arbitrage execution (the ``arb_executions.state`` column).

    Per-order facts (sent? filled how much?) live in the ``executions`` rows; the parent
    state only says which phase the executor reached, so a restart knows what to ask.
    """

    INTENT = "intent"  # committed; leg-1 order may or may not have been sent
    LEG1_SENT = "leg1_sent"  # leg-1 order handed to the venue
    LEG2_SENT = "leg2_sent"  # leg-2 order handed to the venue (leg 1 filled something)
    HEDGING = "hedging"  # unwinding / completing an unmatched leg
    DONE = "done"  # terminal: flat or fully matched (pnl recorded)
    FAILED = "failed"  # terminal: nothing filled, no exposure
    UNHEDGED = "unhedged"  # exposure left open: kill switch on, needs reconciliation

    @property
    def terminal(self) -> bool:
        return self in (ExecState.DONE, ExecState.FAILED)


# Allowed transitions (a same-state update, i.e. new fields only, is always allowed).
TRANSITIONS: dict[ExecState, frozenset[ExecState]] = {
    ExecState.INTENT: frozenset({ExecState.LEG1_SENT, ExecState.FAILED, ExecState.UNHEDGED}),
    ExecState.LEG1_SENT: frozenset(
        {ExecState.LEG2_SENT, ExecState.HEDGING, ExecState.FAILED, ExecState.UNHEDGED}
    ),
    ExecState.LEG2_SENT: frozenset({ExecState.DONE, ExecState.HEDGING, ExecState.UNHEDGED}),
    ExecState.HEDGING: frozenset({ExecState.DONE, ExecState.UNHEDGED}),
    ExecState.UNHEDGED: frozenset({ExecState.HEDGING, ExecState.DONE}),
    ExecState.DONE: frozenset(),
    ExecState.FAILED: frozenset(),
}

LEGS = frozenset({"leg1", "leg2", "hedge"})
PLANNED = "planned"  # order row committed, not yet sent
ORDER_STATUSES = frozenset({PLANNED} | {s.value for s in OrderState})
DECISIONS = frozenset({"executed", "skipped", "logged"})
_NO_QTY = Qty(0)
_NO_MONEY = Money(0)


@dataclass(frozen=True, slots=True)
class LegIntent:
    """An order the executor is about to send; journaled (status ``planned``) first."""

    client_order_id: str
    venue: Venue
    outcome: Outcome  # in the venue's own terms
    limit_price: Price
    qty: Qty
    leg: str = "leg1"
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class ExecutionRow:
    """One order of one execution (``executions`` table); keyed by ``client_order_id``.

    ``execution_id, leg, attempt, venue, symbol, outcome, limit_price, requested_qty`` are
    the order's identity and never change once journaled; the rest is its progress.
    """

    execution_id: str
    leg: str  # 'leg1' | 'leg2' | 'hedge'
    attempt: int
    mode: Mode
    venue: Venue
    symbol: str
    outcome: Outcome
    limit_price: Price
    requested_qty: Qty
    client_order_id: str
    status: str = PLANNED  # 'planned' or an OrderState value
    filled_qty: Qty = _NO_QTY
    filled_cost: Money = _NO_MONEY
    fees: Money = _NO_MONEY
    avg_price: Price | None = None
    venue_order_id: str = ""
    decided_ns: int | None = None
    submitted_ns: int | None = None
    acked_ns: int | None = None
    filled_ns: int | None = None
    reason: str = ""
    id: int | None = None  # rowid, set when read back

    @property
    def hedge(self) -> bool:
        return self.leg == "hedge"

    def with_result(self, result: OrderResult, now_ns: int) -> ExecutionRow:
        """This row updated from a venue's answer (ack time defaults to ``now_ns``)."""
        return dataclasses.replace(
            self,
            status=result.state.value,
            filled_qty=result.filled_qty,
            filled_cost=result.filled_cost,
            fees=result.fees,
            avg_price=result.avg_price,
            venue_order_id=result.venue_order_id or self.venue_order_id,
            acked_ns=self.acked_ns or result.ack_ts_ns or now_ns,
            filled_ns=(self.filled_ns or now_ns) if result.filled_qty else self.filled_ns,
            reason=result.reason or self.reason,
        )


@dataclass(frozen=True, slots=True)
class ArbExecution:
    """One journaled arbitrage execution (``arb_executions``) with its orders."""

    execution_id: str
    symbol: str
    mode: Mode
    state: ExecState
    opportunity_id: int | None
    created_ns: int
    updated_ns: int
    realized_pnl: Money | None = None
    hedge_cost: Money | None = None
    detected_ns: int | None = None
    decision_ns: int | None = None
    submit_ns: int | None = None
    ack_ns: int | None = None
    fill_ns: int | None = None
    done_ns: int | None = None
    error: str = ""
    orders: tuple[ExecutionRow, ...] = ()


@dataclass(frozen=True, slots=True)
class PositionRow:
    symbol: str
    venue: Venue
    outcome: Outcome
    qty: Qty
    cost: Money
    updated_ns: int


@dataclass(frozen=True, slots=True)
class SpreadSample:
    """Best asks on both venues for one symbol at one moment (each venue's own terms).

    ``cost_kalshi_yes`` = Kalshi YES ask + the ForecastEx ask of the outcome that pays when
    Kalshi NO pays (orientation applied by the caller); ``cost_kalshi_no`` likewise. Both
    are sums of asks in Price units (may exceed $1), ``None`` when a side is empty.
    """

    ts_ns: int
    symbol: str
    kalshi_yes_ask: Price | None = None
    kalshi_yes_size: Qty | None = None
    kalshi_no_ask: Price | None = None
    kalshi_no_size: Qty | None = None
    ibkr_yes_ask: Price | None = None
    ibkr_yes_size: Qty | None = None
    ibkr_no_ask: Price | None = None
    ibkr_no_size: Qty | None = None
    cost_kalshi_yes: int | None = None
    cost_kalshi_no: int | None = None


@dataclass(slots=True)
class WriterStats:
    """Counters of the telemetry writer; ``dropped`` > 0 means rows were lost (and logged)."""

    queued: int = 0
    written_opportunities: int = 0
    written_spreads: int = 0
    dropped: int = 0
    failed: int = 0  # rows in batches the database refused (logged with the error)
    flushes: int = 0
    max_batch: int = 0
    last_flush_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class DbSummary:
    user_version: int
    counts: dict[str, int]  # rows per table
    executions_by_state: dict[str, int]
    opportunities_by_decision: dict[str, int]
    realized_pnl: Money
    hedge_cost: Money
    open_positions: int  # (symbol, venue, outcome) rows with qty != 0
