"""The small async interface every venue order client implements (Kalshi REST, IBKR
gateway, paper venue), so the executor has one path for live, paper and replay."""

from __future__ import annotations

import enum
from collections.abc import Callable
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
    # False when ``filled_qty`` is the venue's word but cost/fees are not yet exact (the
    # fills that carry them have not arrived): sizing may use the qty, accounting waits.
    costs_final: bool = True
    sent_ns: int = 0  # wall clock when the request bytes left for the venue (0: unknown)

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
    trade_id: str = ""  # the venue's execution id: fills are deduplicated by it


class VenueError(Exception):
    """A venue refused or failed a request; ``retryable`` says whether resending is safe."""

    def __init__(self, message: str, *, retryable: bool = False, status: int = 0) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class OrderExists(VenueError):
    """The venue says this client order id already exists (Kalshi 409) but the order is not
    readable yet: it exists and may have filled. Never resend; look again until it is seen."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False, status=409)


FillListener = Callable[[Fill], None]
OrderListener = Callable[[OrderResult], None]


class VenueOrderClient(Protocol):
    """One venue's orders. Every method does ONE thing once; the executor owns the policy
    (when to look again, resend, cancel, give up and halt).

    Errors: ``TimeoutError``/``OSError``/``VenueError(retryable=True)`` mean *ambiguous* (the
    request may have reached the venue); ``OrderExists`` means the order exists; a definite
    refusal of a new order comes back as an ``OrderResult`` in state REJECTED.
    """

    venue: Venue

    async def place_limit(self, req: OrderRequest, timeout_s: float) -> OrderResult:
        """Send the order once and report the venue's answer within ``timeout_s``: an IOC/FOK
        answer is final; a resting order comes back OPEN (the caller decides to cancel).
        ``filled_qty`` is the venue's own count from its answer (Kalshi ``fill_count``)."""
        ...

    async def cancel(self, client_order_id: str, timeout_s: float) -> OrderResult:
        """Ask for the cancel and return the order's state within ``timeout_s``; the state may
        still be live (cancel not confirmed) — the caller keeps asking until it is terminal."""
        ...

    async def order_status(self, client_order_id: str) -> OrderResult | None:
        """One read. None = not seen *in this read* (venue reads lag writes: one miss is not
        proof of absence)."""
        ...

    async def open_orders(self) -> list[OrderResult]:
        """Working (non-terminal) orders at the venue on this account."""
        ...

    def subscribe(self, on_fill: FillListener, on_order: OrderListener) -> None:
        """Push the venue's own fill and order-update stream (Kalshi WS ``fill`` /
        ``user_orders``; TWS execDetails / orderStatus) to the listeners."""
        ...

    async def fills(self, client_order_id: str | None = None) -> list[Fill]: ...

    async def balance(self) -> Money: ...

    async def positions(self) -> dict[tuple[str, Outcome], Qty]:
        """Net position per (unified symbol, outcome) in whole/fractional contracts."""
        ...
