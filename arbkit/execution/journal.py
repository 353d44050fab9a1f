"""The execution journal as the executor sees it: plain records and a small protocol.

The SQLite implementation lives at the edge (``arbkit.storage``); the executor only knows
this interface, so live, paper and replay share one path. The rule that makes crashes
safe: an execution's intent (with its leg-1 client order id) is committed *before* the
first order is sent, and every state change after that is journaled.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Protocol

from arbkit.execution.venue import OrderState
from arbkit.model import Mode, Money, Outcome, Price, Qty, Venue


class ExecState(enum.Enum):
    INTENT = "intent"  # committed before any order; leg-1 id reserved
    LEG1_SENT = "leg1_sent"
    LEG2_SENT = "leg2_sent"
    HEDGING = "hedging"
    DONE = "done"  # both legs matched (or leg 1 never filled): no exposure
    HEDGED = "hedged"  # leg 2 short, remainder hedged: no exposure, a realised cost
    UNHEDGED = "unhedged"  # exposure left: kill switch on, needs a human
    FAILED = "failed"  # nothing filled; an error ended it

    @property
    def terminal(self) -> bool:
        return self in (ExecState.DONE, ExecState.HEDGED, ExecState.UNHEDGED, ExecState.FAILED)


class Leg(enum.Enum):
    LEG1 = "leg1"
    LEG2 = "leg2"
    HEDGE = "hedge"


@dataclass(slots=True)
class LegOrderRecord:
    """One order sent (or about to be sent) to a venue: one ``executions`` row."""

    execution_id: str
    leg: Leg
    attempt: int
    mode: Mode
    venue: Venue
    symbol: str
    outcome: Outcome
    limit_price: Price
    requested_qty: Qty
    client_order_id: str
    state: OrderState = OrderState.PENDING
    venue_order_id: str = ""
    filled_qty: Qty = Qty(0)
    filled_cost: Money = Money(0)
    fees: Money = Money(0)  # as the venue charged them
    decided_ns: int = 0
    submitted_ns: int = 0
    acked_ns: int = 0
    filled_ns: int = 0
    reason: str = ""
    # What the fee model says these fills cost (beside ``fees``: the fee-drift check)
    fees_estimated: Money = Money(0)

    @property
    def hedge(self) -> bool:
        return self.leg is Leg.HEDGE


@dataclass(slots=True)
class ExecutionRecord:
    """The parent journal row of one two-leg execution."""

    execution_id: str
    symbol: str
    combo: str
    mode: Mode
    state: ExecState
    created_ns: int
    updated_ns: int
    planned_qty: Qty
    expected_profit: Money
    opportunity_id: int | None = None
    realized_pnl: Money = Money(0)  # locked-in arb profit (at settlement) minus hedge costs
    hedge_cost: Money = Money(0)
    error: str = ""
    stages_ns: dict[str, int] = field(default_factory=dict)  # decision/submit/ack/fill per leg
    orders: list[LegOrderRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One correction of the journal by venue truth (or a halt the reconciler called):
    what changed (``field``), from ``old`` to ``new``, and why. ``source`` names who said
    so (``"kalshi"``, ``"ibkr"``, ``"reconciler"``)."""

    ts_ns: int
    execution_id: str
    client_order_id: str
    field: str
    old: str
    new: str
    reason: str
    source: str


class Journal(Protocol):
    async def record_intent(self, ex: ExecutionRecord, leg1: LegOrderRecord) -> None:
        """Durably store the intent and the planned leg-1 order before anything is sent."""
        ...

    async def record_order(self, order: LegOrderRecord) -> None: ...

    async def record_state(self, ex: ExecutionRecord) -> None: ...

    async def record_step(self, ex: ExecutionRecord, order: LegOrderRecord) -> None:
        """The execution's state and a new order row in ONE durable commit (leg 2 pays one
        fsync between leg 1's fill and leg 2's bytes, not two)."""
        ...

    async def open_executions(self) -> list[ExecutionRecord]:
        """Non-terminal executions with their orders (for reconciliation at start)."""
        ...

    async def record_audit(self, row: AuditRecord) -> None:
        """Durably store one correction made by reconciliation (append-only)."""
        ...


class MemoryJournal:
    """In-process journal for replay, sweeps and unit tests (no durability needed)."""

    def __init__(self) -> None:
        self.executions: dict[str, ExecutionRecord] = {}
        self.orders: dict[str, LegOrderRecord] = {}
        self.audit: list[AuditRecord] = []

    async def record_intent(self, ex: ExecutionRecord, leg1: LegOrderRecord) -> None:
        self.executions[ex.execution_id] = replace(ex, orders=[], stages_ns=dict(ex.stages_ns))
        self.orders[leg1.client_order_id] = replace(leg1)

    async def record_order(self, order: LegOrderRecord) -> None:
        self.orders[order.client_order_id] = replace(order)

    async def record_state(self, ex: ExecutionRecord) -> None:
        self.executions[ex.execution_id] = replace(ex, orders=[], stages_ns=dict(ex.stages_ns))

    async def record_step(self, ex: ExecutionRecord, order: LegOrderRecord) -> None:
        await self.record_state(ex)
        await self.record_order(order)

    async def open_executions(self) -> list[ExecutionRecord]:
        out = []
        for ex in self.executions.values():
            if not ex.state.terminal:
                orders = [o for o in self.orders.values() if o.execution_id == ex.execution_id]
                out.append(replace(ex, orders=orders))
        return out

    async def record_audit(self, row: AuditRecord) -> None:
        self.audit.append(row)
