"""IBKR ForecastEx order client: the executor's ``VenueOrderClient`` over ib_async.

ForecastEx rules are checked before anything leaves the process: BUY only, LIMIT only,
whole contracts, $0.01 ticks, $0.02–$0.99, TIF IOC or DAY. ``order.orderRef`` carries the
client order id, so an order can be found again after a restart (TWS echoes it in
openOrder, completed orders and executions). Fills come from execDetails; fees from their
commissionReports.

Every method does one thing once (the executor owns the policy): ``place_limit`` places
(or finds the order already placed under that client order id) and waits; it never
cancels. ``cancel`` asks once and reports what TWS says within its timeout, which may
still be a live order. State comes from what TWS *sent*: ib_async also sets an order's
status itself (``PendingCancel`` when we ask to cancel, ``Cancelled`` on any error for the
order, e.g. 10147/10148 answering a cancel), and those local guesses are not venue truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ib_async import Fill as IbFill
from ib_async import LimitOrder, Trade

from arbkit.execution.venue import (
    Fill,
    FillListener,
    OrderListener,
    OrderRequest,
    OrderResult,
    OrderState,
    TimeInForce,
    VenueError,
    VenueOrderClient,
)
from arbkit.gateways.ibkr_client import IbkrGateway
from arbkit.model import (
    QTY_SCALE,
    ConversionError,
    Money,
    Outcome,
    Price,
    Qty,
    Venue,
    parse_money,
    price_from_ibkr,
    qty_from_ibkr,
)

log = logging.getLogger(__name__)

CENT = 100  # $0.01 in Price units
MIN_LIMIT = Price(200)  # $0.02
MAX_LIMIT = Price(9_900)  # $0.99

#: IBKR order status → arbkit order state (refined by fills and error codes in ``state_of``).
IBKR_STATUS: dict[str, OrderState] = {
    "PendingSubmit": OrderState.PENDING,
    "ApiPending": OrderState.PENDING,
    "PreSubmitted": OrderState.OPEN,
    "Submitted": OrderState.OPEN,
    "ApiUpdate": OrderState.OPEN,
    "PendingCancel": OrderState.OPEN,  # still live until TWS confirms
    "ValidationError": OrderState.OPEN,  # ib_async: a warning on a live order
    "Filled": OrderState.FILLED,
    "Cancelled": OrderState.CANCELLED,
    "ApiCancelled": OrderState.CANCELLED,
    # "received but not active": rejected *with an error that says so* (see state_of);
    # without one it is not proof of a dead order (IBKR can hold and re-activate it).
    "Inactive": OrderState.UNKNOWN,
}
CANCELLED_STATUSES = frozenset({"Cancelled", "ApiCancelled"})
#: error codes that mean TWS refused a new order (nothing can have filled)
REJECT_CODES = frozenset({103, 110, 200, 201, 203})
#: "Order Canceled - reason:": TWS confirms the order is gone (by request or by the venue)
CANCEL_CONFIRM_CODES = frozenset({202})
#: answers to a cancel *request* (not found / cannot be cancelled): they say nothing about
#: the order's state, yet ib_async flips a live trade to Cancelled on them
CANCEL_ERROR_CODES = frozenset({10147, 10148, 135, 161})
TIF_OF = {TimeInForce.IOC: "IOC", TimeInForce.DAY: "DAY"}
UNSET = 1e300  # ib_async's UNSET_DOUBLE is 1.797e308
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def validate_request(req: OrderRequest) -> tuple[int, float, str]:
    """(whole contracts, limit as float, TIF) or VenueError before anything is sent."""
    tif = TIF_OF.get(req.tif)
    if tif is None:
        raise VenueError(f"{req.client_order_id}: ForecastEx supports IOC/DAY here, not {req.tif}")
    if req.qty <= 0 or req.qty % QTY_SCALE:
        raise VenueError(f"{req.client_order_id}: qty must be whole contracts > 0, got {req.qty}")
    if req.limit_price % CENT:
        raise VenueError(f"{req.client_order_id}: limit {req.limit_price} is off the $0.01 grid")
    if not MIN_LIMIT <= req.limit_price <= MAX_LIMIT:
        raise VenueError(f"{req.client_order_id}: limit {req.limit_price} outside $0.02–$0.99")
    return req.qty // QTY_SCALE, (req.limit_price // CENT) / 100, tif


def _ns(t: dt.datetime) -> int:
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return (t - _EPOCH) // dt.timedelta(microseconds=1) * 1000


def _exec_qty(trade: Trade) -> Qty:
    return Qty(sum(qty_from_ibkr(f.execution.shares) for f in trade.fills))


def _venue_filled(trade: Trade) -> Qty:
    """The venue's own filled count: executions, orderStatus.filled, completed order."""
    best = int(_exec_qty(trade))
    for v in (trade.orderStatus.filled, trade.order.filledQuantity):
        with contextlib.suppress(ConversionError, ValueError, TypeError, OverflowError):
            if 0 < float(v) < UNSET:
                best = max(best, int(qty_from_ibkr(v)))
    return Qty(best)


def venue_status(trade: Trade, local: Iterable[int] = ()) -> str:
    """The last order status TWS itself reported for ``trade``.

    Skips what ib_async wrote on its own: log entries at indices in ``local`` (our cancel
    request's PendingCancel/Cancelled), fill and modify notes, and statuses it set because
    of an error that is not about the order's fate (warnings, cancel-request errors).
    "" when an error overwrote the status and nothing the venue said is left to go by.
    """
    skip = set(local)
    overwritten = False
    for i in range(len(trade.log) - 1, -1, -1):
        e = trade.log[i]
        if i in skip or e.message.startswith(("Fill ", "Modify")):
            continue
        if e.errorCode == 0 or e.errorCode in REJECT_CODES or e.errorCode in CANCEL_CONFIRM_CODES:
            return e.status
        overwritten = True
    return "" if overwritten else trade.orderStatus.status


Reported = Sequence[tuple[str, int]]  # (status, 0) or ("", error code), oldest first


def reported_status(reported: Reported, fallback: str) -> str:
    """The last status TWS reported in raw messages, else ``fallback``."""
    for status, code in reversed(reported):
        if code == 0 and status:
            return status
        if code in REJECT_CODES or code in CANCEL_CONFIRM_CODES:
            return "Cancelled"
    return fallback


def state_of(trade: Trade, local: Iterable[int] = (), reported: Reported = ()) -> OrderState:
    """One OrderState from what TWS reported (raw messages in ``reported``, else the trade
    log without ib_async's own guesses), the fills and the error codes."""
    status = reported_status(reported, venue_status(trade, local))
    filled = _venue_filled(trade)
    rejected = any(e.errorCode in REJECT_CODES for e in trade.log) or any(
        c in REJECT_CODES for _, c in reported
    )
    if status in CANCELLED_STATUSES:
        if filled:
            return OrderState.CANCELLED
        return OrderState.REJECTED if rejected else OrderState.CANCELLED
    if status == "Inactive":
        if rejected:
            return OrderState.CANCELLED if filled else OrderState.REJECTED
        return OrderState.UNKNOWN
    state = IBKR_STATUS.get(status, OrderState.UNKNOWN)
    if state is OrderState.FILLED and filled < qty_from_ibkr(float(trade.order.totalQuantity)):
        return OrderState.OPEN  # status ahead of its quantities (cannot be, but never FILLED)
    return state


def _commissions_in(trade: Trade) -> bool:
    return all(f.commissionReport.execId for f in trade.fills)


class VenueLedger:
    """What TWS itself said about each order, message by message, in arrival order.

    ib_async drops an orderStatus that does not change its (possibly self-made) status and
    a 202 for a trade it already thinks done, so after it guessed "Cancelled" from a
    cancel-request error the venue's real confirmation would be lost. The ledger taps the
    wrapper's orderStatus/openOrder/completedOrder/error callbacks (recording first, then
    calling ib_async's own code) and keeps the raw statuses and error codes per order.
    """

    def __init__(self, ib: Any) -> None:
        self.ib = ib
        self.events: dict[Any, list[tuple[int, str, int]]] = {}
        self.listeners: list[Callable[[], None]] = []
        self.last_keys: list[Any] = []
        self._seq = 0
        wrapper = ib.wrapper
        for name, tap in (
            ("orderStatus", self._order_status),
            ("openOrder", self._open_order),
            ("completedOrder", self._completed_order),
            ("error", self._error),
        ):
            original = getattr(wrapper, name)
            setattr(wrapper, name, self._chain(tap, original))

    def _chain(
        self, tap: Callable[..., None], original: Callable[..., None]
    ) -> Callable[..., None]:
        def both(*args: Any, **kw: Any) -> None:
            try:
                tap(*args, **kw)
            except Exception:  # never break ib_async's own handling
                log.exception("ibkr: venue ledger tap failed")
            original(*args, **kw)
            self.notify()  # ib_async may have swallowed it: wake the waiters anyway

        return both

    @classmethod
    def of(cls, ib: Any) -> VenueLedger:
        ledger = getattr(ib.wrapper, "_arbkit_ledger", None)
        if not isinstance(ledger, VenueLedger):
            ledger = cls(ib)
            ib.wrapper._arbkit_ledger = ledger
        return ledger

    def _add(self, keys: Iterable[Any], status: str, code: int) -> None:
        self._seq += 1
        self.last_keys = list(keys)
        for k in keys:
            self.events.setdefault(k, []).append((self._seq, status, code))

    @staticmethod
    def _keys(client_id: int, order_id: int, perm_id: int) -> list[Any]:
        keys: list[Any] = []
        if order_id > 0:
            keys.append((client_id, order_id))
        if perm_id:
            keys.append(perm_id)
        return keys

    def _order_status(self, orderId: int, status: str, filled: float, remaining: float,
                      avgFillPrice: float, permId: int, parentId: int, lastFillPrice: float,
                      clientId: int, *rest: Any) -> None:  # fmt: skip
        self._add(self._keys(clientId, orderId, permId), status, 0)

    def _open_order(self, orderId: int, contract: Any, order: Any, orderState: Any) -> None:
        if not order.whatIf and orderState.status:
            self._add(self._keys(order.clientId, orderId, order.permId), orderState.status, 0)

    def _completed_order(self, contract: Any, order: Any, orderState: Any) -> None:
        if orderState.status:
            self._add(self._keys(order.clientId, order.orderId, order.permId), orderState.status, 0)

    def _error(self, reqId: int, errorCode: int, *rest: Any) -> None:
        if reqId > 0 and not 2100 <= errorCode < 2200:
            self._add([(self.ib.wrapper.clientId, reqId)], "", errorCode)

    def notify(self) -> None:
        for fn in list(self.listeners):
            fn()
        self.last_keys = []

    def trade_of_last(self) -> Trade | None:
        w = self.ib.wrapper
        for k in self.last_keys:
            t = w.permId2Trade.get(k) if isinstance(k, int) else w.trades.get(k)
            if t is not None:
                return t  # type: ignore[no-any-return]
        return None

    def reported(self, trade: Trade) -> list[tuple[str, int]]:
        o = trade.order
        seen: dict[int, tuple[str, int]] = {}
        for k in self._keys(o.clientId, o.orderId, o.permId or trade.orderStatus.permId):
            for seq, status, code in self.events.get(k, ()):
                seen[seq] = (status, code)
        return [seen[q] for q in sorted(seen)]


def _final(trade: Trade, local: Iterable[int] = (), reported: Reported = ()) -> bool:
    """Terminal at the venue with every execution in (commission reports may still come)."""
    return state_of(trade, local, reported).terminal and _exec_qty(trade) >= _venue_filled(trade)


@dataclass(slots=True)
class SyncResult:
    """What TWS holds for the account after ``IbkrOrderClient.sync``."""

    positions: dict[tuple[str, Outcome], Qty]
    open_orders: list[OrderResult]
    completed_orders: list[OrderResult]
    fills: list[Fill]
    unmapped_positions: dict[int, int] = field(default_factory=dict)  # conId → contracts


class IbkrOrderClient:
    """``VenueOrderClient`` for ForecastEx through an ``IbkrGateway``'s connection."""

    venue = Venue.IBKR

    def __init__(
        self,
        gateway: IbkrGateway,
        *,
        commission_wait_ms: int = 500,
        sync_timeout_s: float = 10.0,
    ) -> None:
        self.gateway = gateway
        self.commission_wait_ms = commission_wait_ms
        self.sync_timeout_s = sync_timeout_s
        self._inflight: dict[str, Trade] = {}
        self.sent: dict[str, int] = {}  # client order id → placeOrder calls (should be ≤ 1)
        self.sent_ns: dict[str, int] = {}  # client order id → wall clock at placeOrder
        # ib_async log entries that we caused (our cancel requests), per trade
        self._local: dict[int, tuple[Trade, set[int]]] = {}
        self._on_fill: list[FillListener] = []
        self._on_order: list[OrderListener] = []
        self._emitted: set[str] = set()  # execIds already pushed to on_fill
        self._pushed: dict[int, tuple[Any, ...]] = {}  # permId → last pushed order update
        self._hooked_ib: Any = None
        VenueLedger.of(self.ib)  # before any order: every raw status is recorded

    @property
    def ib(self) -> Any:
        return self.gateway.ib

    # ------------------------------------------------------------------ lookup

    def _local_of(self, trade: Trade) -> set[int]:
        entry = self._local.get(id(trade))
        return entry[1] if entry is not None and entry[0] is trade else set()

    @property
    def ledger(self) -> VenueLedger:
        return VenueLedger.of(self.ib)

    def _state(self, trade: Trade) -> OrderState:
        return state_of(trade, self._local_of(trade), self.ledger.reported(trade))

    def _find_trade(self, client_order_id: str) -> Trade | None:
        """Newest ib_async trade whose orderRef is ``client_order_id`` (this session)."""
        best: Trade | None = None
        for t in self.ib.trades():
            if t.order.orderRef == client_order_id and (
                best is None or t.order.permId >= best.order.permId
            ):
                best = t
        if best is not None:
            return best
        return self._inflight.get(client_order_id) if self.gateway.connected else None

    def _fills_for(self, client_order_id: str) -> list[IbFill]:
        return [f for f in self.ib.fills() if f.execution.orderRef == client_order_id]

    def _result(self, client_order_id: str, trade: Trade | None) -> OrderResult:
        fills = trade.fills if trade is not None else self._fills_for(client_order_id)
        qty = 0
        cost = 0
        fees = 0
        for f in fills:
            q = qty_from_ibkr(f.execution.shares)
            p = price_from_ibkr(f.execution.price)
            qty += q
            cost += p * q
            fees += parse_money(f.commissionReport.commission, "commission")
        missing_fee = any(not f.commissionReport.execId for f in fills)
        ack_ns = 0
        if trade is None:
            state = OrderState.UNKNOWN
            requested = Qty(qty)
            filled = Qty(qty)
            perm_id = fills[0].execution.permId if fills else 0
            reason = "order not in this session; executions only"
        else:
            state = self._state(trade)
            requested = qty_from_ibkr(float(trade.order.totalQuantity))
            filled = max(Qty(qty), _venue_filled(trade))
            perm_id = trade.order.permId or trade.orderStatus.permId
            reason = next((e.message for e in reversed(trade.log) if e.errorCode), "")
            local = self._local_of(trade)
            ack_ns = next(
                (
                    _ns(e.time)
                    for i, e in enumerate(trade.log)
                    if i not in local and e.status not in ("PendingSubmit", "ApiPending")
                ),
                0,
            )
        costs_final = qty == filled and not missing_fee
        if missing_fee:
            reason = (reason + "; " if reason else "") + "commission report missing"
        if qty < filled:
            reason = (reason + "; " if reason else "") + "executions not all in"
        return OrderResult(
            client_order_id=client_order_id,
            venue_order_id=str(perm_id) if perm_id else "",
            state=state,
            requested_qty=requested,
            filled_qty=filled,
            filled_cost=Money(cost),
            fees=Money(fees),
            reason=reason,
            ack_ts_ns=ack_ns,
            costs_final=costs_final,
            sent_ns=self.sent_ns.get(client_order_id, 0),
        )

    async def _await(self, client_order_id: str, trade: Trade, timeout_s: float) -> Trade:
        """Wait until ``trade`` is terminal with every execution and commission in, or the
        timeout. Late commission reports get ``commission_wait_ms`` at most (in the bound)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        wake = asyncio.Event()

        def poke(*_: Any) -> None:
            wake.set()

        hooked: list[Any] = []

        def hook(t: Trade) -> None:
            for ev in (t.statusEvent, t.fillEvent, t.commissionReportEvent):
                ev += poke
                hooked.append(ev)

        hook(trade)
        self.ib.disconnectedEvent += poke
        ledger = self.ledger
        ledger.listeners.append(poke)
        try:
            while not (self._final_trade(trade) and _commissions_in(trade)):
                if self._final_trade(trade):
                    deadline = min(deadline, loop.time() + self.commission_wait_ms / 1000)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if not self.gateway.connected:
                    if not await self.gateway.wait_connected(remaining):
                        break
                    newer = self._find_trade(client_order_id)
                    if newer is not None and newer is not trade:
                        trade = newer
                        hook(trade)
                    continue
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), remaining)
        finally:
            for ev in hooked:
                with contextlib.suppress(ValueError):
                    ev -= poke
            with contextlib.suppress(ValueError):
                self.ib.disconnectedEvent -= poke
            with contextlib.suppress(ValueError):
                ledger.listeners.remove(poke)
        return trade

    def _final_trade(self, trade: Trade) -> bool:
        return _final(trade, self._local_of(trade), self.ledger.reported(trade))

    # ------------------------------------------------------------------ VenueOrderClient

    async def place_limit(self, req: OrderRequest, timeout_s: float) -> OrderResult:
        """Place once (or reuse this session's order with that orderRef) and wait at most
        ``timeout_s`` for a terminal status with its executions in. Never cancels: a
        resting DAY order (or an IOC TWS has not finished) comes back OPEN/PENDING."""
        contracts, limit, tif = validate_request(req)
        contract = self.gateway.contract_for(req.symbol, req.outcome)
        if contract is None:
            raise VenueError(f"{req.symbol} {req.outcome.value}: no resolved ForecastEx contract")
        if not self.gateway.connected:
            raise VenueError("IBKR gateway is not connected", retryable=True)
        trade = self._find_trade(req.client_order_id)
        if trade is None:
            order = LimitOrder(
                "BUY",
                contracts,
                limit,
                tif=tif,
                orderRef=req.client_order_id,
                outsideRth=True,
                account=self.gateway.account or "",
            )
            self.sent_ns[req.client_order_id] = time.time_ns()
            trade = self.ib.placeOrder(contract, order)
            self._inflight[req.client_order_id] = trade
            self.sent[req.client_order_id] = self.sent.get(req.client_order_id, 0) + 1
        trade = await self._await(req.client_order_id, trade, timeout_s)
        return self._result(req.client_order_id, trade)

    async def cancel(self, client_order_id: str, timeout_s: float) -> OrderResult:
        """Send cancelOrder once (unless TWS already reported the order terminal) and
        return its state after at most ``timeout_s``; it may still be live (PendingCancel,
        or TWS silent). An unconfirmed cancel is never reported CANCELLED."""
        if not self.gateway.connected:
            raise VenueError("IBKR gateway is not connected", retryable=True)
        trade = self._find_trade(client_order_id)
        if trade is None:
            raise VenueError(f"{client_order_id}: unknown to IBKR in this session (never placed?)")
        if not self._state(trade).terminal:
            before = len(trade.log)
            try:
                self.ib.cancelOrder(trade.order)
            except ConnectionError as exc:
                msg = f"cancel of {client_order_id} not sent: {exc!r}"
                raise VenueError(msg, retryable=True) from exc
            entry = self._local.setdefault(id(trade), (trade, set()))
            if entry[0] is not trade:  # id reused by a new object
                entry = self._local[id(trade)] = (trade, set())
            entry[1].update(range(before, len(trade.log)))
        trade = await self._await(client_order_id, trade, timeout_s)
        return self._result(client_order_id, trade)

    async def order_status(self, client_order_id: str) -> OrderResult | None:
        """This session's trade, else one round of completed orders + executions from TWS."""
        if not self.gateway.connected:
            raise VenueError("IBKR gateway is not connected: order status unknown", retryable=True)
        trade = self._find_trade(client_order_id)
        if trade is None and not self._fills_for(client_order_id):
            await self.ib.reqCompletedOrdersAsync(False)
            await self.ib.reqExecutionsAsync()
            self._emit_new_fills()
            trade = self._find_trade(client_order_id)
            if trade is None and not self._fills_for(client_order_id):
                return None
        return self._result(client_order_id, trade)

    async def open_orders(self) -> list[OrderResult]:
        """Working orders at TWS on this account from every client (reqAllOpenOrders),
        those arbkit did not create included (``client_order_id`` is their orderRef, often
        ""; ``venue_order_id`` the permId)."""
        if not self.gateway.connected:
            raise VenueError("IBKR gateway is not connected: open orders unknown", retryable=True)
        trades = await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), self.sync_timeout_s)
        return self._working(trades)

    def _working(self, trades: Iterable[Trade]) -> list[OrderResult]:
        account = self.gateway.account or ""
        out: list[OrderResult] = []
        seen: set[int] = set()
        for t in trades:
            if account and t.order.account and t.order.account != account:
                continue
            key = t.order.permId or id(t)
            if key in seen:
                continue
            seen.add(key)
            r = self._result(t.order.orderRef, t)
            if not r.state.terminal:
                out.append(r)
        return out

    async def sync(self) -> SyncResult:
        """Load IBKR truth after connect: positions, every open order, completed orders
        and executions (with their commission reports); returns when all are in.
        Fills new to this client are pushed to ``subscribe``'s listeners."""
        if not self.gateway.connected:
            raise VenueError("IBKR gateway is not connected: cannot sync", retryable=True)
        ib = self.ib

        async def all_in() -> tuple[Any, Any, Any, Any]:
            pos = await ib.reqPositionsAsync()
            opn = await ib.reqAllOpenOrdersAsync()
            done = await ib.reqCompletedOrdersAsync(False)
            fills = await ib.reqExecutionsAsync()
            # commission reports follow their execDetails before execDetailsEnd; a round
            # trip more makes sure nothing sent before the end marker is still unread
            await ib.reqCurrentTimeAsync()
            return pos, opn, done, fills

        _, opn, done, _ = await asyncio.wait_for(all_in(), self.sync_timeout_s)
        self._emit_new_fills()
        unmapped: dict[int, int] = {}
        for p in ib.positions(self.gateway.account or ""):
            if p.contract.conId not in self.gateway.symbol_of and p.position:
                unmapped[p.contract.conId] = int(p.position)
        completed = []
        for t in done:
            r = self._result(t.order.orderRef, self._find_by_perm(t) or t)
            completed.append(r)
        return SyncResult(
            positions=await self.positions(),
            open_orders=self._working(opn),
            completed_orders=completed,
            fills=await self.fills(),
            unmapped_positions=unmapped,
        )

    def _find_by_perm(self, trade: Trade) -> Trade | None:
        perm = trade.order.permId
        if not perm:
            return None
        found: Trade | None = self.ib.wrapper.permId2Trade.get(perm)
        return found

    # ------------------------------------------------------------------ streams

    def subscribe(self, on_fill: FillListener, on_order: OrderListener) -> None:
        """Push fills (one per execId, when its commission report brings the fee) and
        order updates (every status change and every execution; ``costs_final`` False while
        executions or fees are missing). Survives reconnects: fills TWS re-sends after one
        are not pushed twice, fills that happened while away are pushed once they are in."""
        self._on_fill.append(on_fill)
        self._on_order.append(on_order)
        ib = self.ib
        if self._hooked_ib is not ib:
            ib.orderStatusEvent += self._order_event
            ib.execDetailsEvent += self._exec_event
            ib.commissionReportEvent += self._commission_event
            ib.connectedEvent += self._connected_event
            self.ledger.listeners.append(self._ledger_event)
            self._hooked_ib = ib

    def unsubscribe(self) -> None:
        ib = self._hooked_ib
        if ib is not None:
            for ev, fn in (
                (ib.orderStatusEvent, self._order_event),
                (ib.execDetailsEvent, self._exec_event),
                (ib.commissionReportEvent, self._commission_event),
                (ib.connectedEvent, self._connected_event),
            ):
                with contextlib.suppress(ValueError):
                    ev -= fn
            with contextlib.suppress(ValueError):
                self.ledger.listeners.remove(self._ledger_event)
        self._hooked_ib = None
        self._on_fill.clear()
        self._on_order.clear()

    def _push_order(self, trade: Trade) -> None:
        try:
            r = self._result(trade.order.orderRef, trade)
        except ConversionError as exc:
            log.error("ibkr: unreadable order update %s: %s", trade.order.permId, exc)
            return
        key = trade.order.permId or id(trade)
        what = (r.state, r.filled_qty, r.filled_cost, r.fees, r.costs_final)
        if self._pushed.get(key) == what:
            return
        self._pushed[key] = what
        for fn in list(self._on_order):
            try:
                fn(r)
            except Exception:
                log.exception("ibkr: on_order listener failed")

    def _push_fill(self, f: IbFill) -> None:
        exec_id = f.execution.execId
        if not exec_id or exec_id in self._emitted or not f.commissionReport.execId:
            return
        fill = self._fill_of(f)
        if fill is None:
            return
        self._emitted.add(exec_id)
        for fn in list(self._on_fill):
            try:
                fn(fill)
            except Exception:
                log.exception("ibkr: on_fill listener failed")

    def _order_event(self, trade: Trade) -> None:
        self._push_order(trade)

    def _exec_event(self, trade: Trade, fill: IbFill) -> None:
        self._push_order(trade)  # the quantity now, before the fee
        self._push_fill(fill)

    def _commission_event(self, trade: Trade, fill: IbFill, report: Any) -> None:
        self._push_fill(fill)
        self._push_order(trade)

    def _ledger_event(self) -> None:
        # a raw status ib_async may have swallowed (it already guessed that status)
        trade = self.ledger.trade_of_last()
        if trade is not None:
            self._push_order(trade)

    def _connected_event(self) -> None:
        # ib_async re-fetched executions at connect: push the ones that happened while away
        self._emit_new_fills()

    def _emit_new_fills(self) -> None:
        if not self._on_fill:
            return
        for f in list(self.ib.fills()):
            self._push_fill(f)

    def _fill_of(self, f: IbFill) -> Fill | None:
        mapped = self.gateway.symbol_of.get(f.contract.conId) if f.contract else None
        if mapped is None:
            return None
        symbol, outcome = mapped
        return Fill(
            client_order_id=f.execution.orderRef,
            venue_order_id=str(f.execution.permId),
            symbol=symbol,
            outcome=outcome,
            price=price_from_ibkr(f.execution.price),
            qty=qty_from_ibkr(f.execution.shares),
            fee=parse_money(f.commissionReport.commission, "commission"),
            ts_ns=_ns(f.execution.time),
            trade_id=f.execution.execId,
        )

    async def fills(self, client_order_id: str | None = None) -> list[Fill]:
        out = []
        seen: set[str] = set()
        for f in self.ib.fills():
            ref = f.execution.orderRef
            if client_order_id is not None and ref != client_order_id:
                continue
            if f.execution.execId in seen:
                continue
            fill = self._fill_of(f)
            if fill is None:
                continue
            seen.add(f.execution.execId)
            out.append(fill)
        return out

    async def balance(self) -> Money:
        """AvailableFunds (USD), else TotalCashValue, exactly as TWS printed it."""
        values = {
            v.tag: v.value
            for v in self.ib.accountValues(self.gateway.account or "")
            if v.currency == "USD" and v.tag in ("AvailableFunds", "TotalCashValue")
        }
        for tag in ("AvailableFunds", "TotalCashValue"):
            if tag in values:
                try:
                    return parse_money(values[tag], tag)
                except ConversionError as exc:
                    raise VenueError(f"IBKR {tag} unreadable: {exc}") from exc
        raise VenueError("IBKR account values not received yet", retryable=True)

    async def positions(self) -> dict[tuple[str, Outcome], Qty]:
        """Net per symbol: ForecastEx nets YES against NO; net here too if TWS shows both."""
        raw: dict[tuple[str, Outcome], int] = {}
        for p in self.ib.positions(self.gateway.account or ""):
            mapped = self.gateway.symbol_of.get(p.contract.conId)
            if mapped is None:
                continue
            raw[mapped] = raw.get(mapped, 0) + int(qty_from_ibkr(abs(p.position))) * (
                1 if p.position >= 0 else -1
            )
        out: dict[tuple[str, Outcome], Qty] = {}
        for symbol in {s for s, _ in raw}:
            net = raw.get((symbol, Outcome.YES), 0) - raw.get((symbol, Outcome.NO), 0)
            if net > 0:
                out[symbol, Outcome.YES] = Qty(net)
            elif net < 0:
                out[symbol, Outcome.NO] = Qty(-net)
        return out


def _conforms(gateway: IbkrGateway) -> VenueOrderClient:
    """mypy checks here that IbkrOrderClient implements the executor's protocol."""
    return IbkrOrderClient(gateway)
