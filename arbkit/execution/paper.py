"""Paper venue: fills from the current L2 book, never beyond visible depth.

It implements the same VenueOrderClient interface as the real venues, so paper trading
runs the real executor. Liquidity it has taken stays taken until the venue's book shows a
new size at that price — repeated paper orders cannot eat the same level twice.
Latency is simulated through an injected ``sleep`` (asyncio.sleep live, a no-op in replay).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from arbkit.execution.consumption import OwnFills
from arbkit.execution.venue import (
    Fill,
    FillListener,
    OrderListener,
    OrderRequest,
    OrderResult,
    OrderState,
    TimeInForce,
    VenueError,
)
from arbkit.model import PAYOUT_PER_CONTRACT, QTY_SCALE, Money, Outcome, Price, Qty, Venue

BookView = Callable[[str, Outcome], Sequence[tuple[Price, Qty]]]
FeeFn = Callable[[str, Sequence[tuple[Price, Qty]]], Money]


async def _no_sleep(_: float) -> None:
    return None


class PaperVenue:
    def __init__(
        self,
        venue: Venue,
        book_view: BookView,
        fee_fn: FeeFn,
        *,
        clock: Callable[[], int],
        latency_ms: int = 0,
        sleep: Callable[[float], Awaitable[None]] = _no_sleep,
        starting_balance: Money = Money(1_000_000 * 1_000_000),
        whole_contracts: bool = False,
    ) -> None:
        self.venue = venue
        self._book_view = book_view
        self._fee_fn = fee_fn
        self._clock = clock
        self.latency_ms = latency_ms
        self._sleep = sleep
        self._balance = starting_balance
        self._whole = whole_contracts
        self._orders: dict[str, OrderResult] = {}
        self._fills: list[Fill] = []
        self._positions: dict[tuple[str, Outcome], int] = {}
        self._taken = OwnFills(memory_ms=24 * 3_600_000)  # paper: until the book moves
        self.orders_received: dict[str, int] = {}
        self.reject_next: str | None = None  # test switch: reject the next order with reason

    def effective_levels(self, symbol: str, outcome: Outcome) -> list[tuple[Price, Qty]]:
        """The venue's ask ladder net of what this paper venue has already taken: what a
        real venue's book would show after our fills."""
        return self._taken.net(symbol, outcome, self._book_view(symbol, outcome), self._clock())

    async def place_limit(self, req: OrderRequest, timeout_s: float) -> OrderResult:
        self.orders_received[req.client_order_id] = (
            self.orders_received.get(req.client_order_id, 0) + 1
        )
        prior = self._orders.get(req.client_order_id)
        if prior is not None:  # idempotent by client order id: never a second fill
            return prior
        if self.latency_ms:
            await self._sleep(self.latency_ms / 1000)
        if self.reject_next is not None:
            reason, self.reject_next = self.reject_next, None
            return self._store(req, OrderState.REJECTED, [], reason)
        if self._whole and req.qty % QTY_SCALE:
            raise VenueError(f"{self.venue.value} trades whole contracts only")
        want: int = req.qty
        now = self._clock()
        fills: list[tuple[Price, Qty]] = []
        for price, size in self._book_view(req.symbol, req.outcome):
            if price > req.limit_price or want <= 0:
                break
            avail = self._taken.available(req.symbol, req.outcome, price, size, now)
            take = min(avail, want)
            if self._whole:
                take -= take % QTY_SCALE
            if take > 0:
                fills.append((price, Qty(take)))
                want -= take
        filled = sum(q for _, q in fills)
        if req.tif is TimeInForce.FOK and filled < req.qty:
            return self._store(req, OrderState.CANCELLED, [], "fill_or_kill: not enough depth")
        # commit taken liquidity against the book sizes seen now
        book = dict(self._book_view(req.symbol, req.outcome))
        for price, q in fills:
            self._taken.take(req.symbol, req.outcome, price, q, book[price], now)
        state = OrderState.FILLED if filled == req.qty else OrderState.CANCELLED
        return self._store(req, state, fills, "" if filled else "no liquidity at limit")

    def _store(
        self,
        req: OrderRequest,
        state: OrderState,
        fills: list[tuple[Price, Qty]],
        reason: str,
    ) -> OrderResult:
        now = self._clock()
        cost = sum(p * q for p, q in fills)
        fee = self._fee_fn(req.symbol, fills) if fills else Money(0)
        filled = sum(q for _, q in fills)
        vid = f"paper-{self.venue.value}-{len(self._orders) + 1}"
        res = OrderResult(
            req.client_order_id, vid, state, req.qty, Qty(filled), Money(cost), fee, reason, now
        )
        self._orders[req.client_order_id] = res
        for i, (p, q) in enumerate(fills):
            self._fills.append(
                Fill(
                    req.client_order_id,
                    vid,
                    req.symbol,
                    req.outcome,
                    p,
                    q,
                    fee if i == 0 else Money(0),
                    now,
                )
            )
        if filled:
            self._balance = Money(self._balance - cost - fee)
            self._add_position(req.symbol, req.outcome, filled)
        return res

    def _add_position(self, symbol: str, outcome: Outcome, qty: int) -> None:
        """Both venues net YES against NO: a pair pays $1 back at once."""
        pos = self._positions
        pos[(symbol, outcome)] = pos.get((symbol, outcome), 0) + qty
        y, n = pos.get((symbol, Outcome.YES), 0), pos.get((symbol, Outcome.NO), 0)
        m = min(y, n)
        if m:
            pos[(symbol, Outcome.YES)] = y - m
            pos[(symbol, Outcome.NO)] = n - m
            self._balance = Money(self._balance + m * PAYOUT_PER_CONTRACT // QTY_SCALE)

    async def cancel(self, client_order_id: str, timeout_s: float) -> OrderResult:
        res = self._orders.get(client_order_id)
        if res is None:
            raise VenueError(f"unknown order {client_order_id}")
        return res  # paper orders are IOC/FOK: always already terminal

    async def order_status(self, client_order_id: str) -> OrderResult | None:
        return self._orders.get(client_order_id)

    async def open_orders(self) -> list[OrderResult]:
        return []  # paper orders are IOC/FOK: never working

    def subscribe(self, on_fill: FillListener, on_order: OrderListener) -> None:
        return None  # the place answer carries the fills: nothing is pushed later

    async def fills(self, client_order_id: str | None = None) -> list[Fill]:
        return [f for f in self._fills if client_order_id in (None, f.client_order_id)]

    async def balance(self) -> Money:
        return self._balance

    async def positions(self) -> dict[tuple[str, Outcome], Qty]:
        return {k: Qty(v) for k, v in self._positions.items() if v}
