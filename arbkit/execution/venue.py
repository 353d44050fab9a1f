"""The small async interface every venue order client implements (Kalshi REST, IBKR
gateway, paper venue), so the executor has one path for live, paper and replay."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from arbkit.model import Money, Outcome, Price, Qty, Venue


class TimeInForce(enum.Enum):
    IOC = "immediate_or_cancel"
    FOK = "fill_or_kill"
    DAY = "day"  # IBKR only: rests, the executor cancels after a timeout


class OrderState(enum.Enum):
    PENDING = "pending"  # sent, not yet acknowledged
    OPEN = "open"  # resting (possibly partially filled)
    FILLED = "filled"
    CANCELLED = "cancelled"  # terminal; may carry a partial fill
    REJECTED = "rejected"  # terminal; nothing filled
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in (OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED)


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """Buy ``qty`` of ``outcome`` of unified ``symbol`` at no worse than ``limit_price``.

    Both venues are buy-only for arbkit: exits are purchases of the opposite outcome.
    ``client_order_id`` is deterministic per (execution, leg, attempt).
    """

    symbol: str
    outcome: Outcome
    limit_price: Price
    qty: Qty
    tif: TimeInForce
    client_order_id: str


@dataclass(frozen=True, slots=True)
class OrderResult:
    client_order_id: str
    venue_order_id: str
    state: OrderState
    requested_qty: Qty
    filled_qty: Qty
    filled_cost: Money  # Σ price × qty of the fills (exact)
    fees: Money
    reason: str = ""
    ack_ts_ns: int = 0

    @property
    def avg_price(self) -> Price | None:
        if not self.filled_qty:
            return None
        return Price(self.filled_cost // self.filled_qty)


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: str
    venue_order_id: str
    symbol: str
    outcome: Outcome
    price: Price
    qty: Qty
    fee: Money
    ts_ns: int


class VenueError(Exception):
    """A venue refused or failed a request; ``retryable`` says whether resending is safe."""

    def __init__(self, message: str, *, retryable: bool = False, status: int = 0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class VenueOrderClient(Protocol):
    venue: Venue

    async def place_limit(self, req: OrderRequest, timeout_s: float) -> OrderResult:
        """Send (or, if this client_order_id exists, look up) the order and wait until it
        is terminal or ``timeout_s`` passes; an IOC/FOK result is final."""
        ...

    async def cancel(self, client_order_id: str, timeout_s: float) -> OrderResult:
        """Cancel, then verify: returns the order's state after the cancel settled."""
        ...

    async def order_status(self, client_order_id: str) -> OrderResult | None:
        """None when the venue has never seen this client_order_id (safe to send)."""
        ...

    async def fills(self, client_order_id: str | None = None) -> list[Fill]: ...

    async def balance(self) -> Money: ...

    async def positions(self) -> dict[tuple[str, Outcome], Qty]:
        """Net position per (unified symbol, outcome) in whole/fractional contracts."""
        ...
