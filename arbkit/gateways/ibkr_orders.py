"""IBKR ForecastEx order client: the executor's ``VenueOrderClient`` over ib_async.

ForecastEx rules are checked before anything leaves the process: BUY only, LIMIT only,
whole contracts, $0.01 ticks, $0.02–$0.99, TIF IOC or DAY (DAY is cancelled after the
timeout, then verified). ``order.orderRef`` carries the client order id, so an order can
be found again after a restart (TWS echoes it in openOrder, completed orders and
executions). Fills come from execDetails; fees from their commissionReports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from ib_async import Fill as IbFill
from ib_async import LimitOrder, Trade

from arbkit.execution.venue import (
    Fill,
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
    "Inactive": OrderState.REJECTED,  # "received but no longer active: rejected or cancelled"
}
TERMINAL_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
#: error codes that mean TWS refused a new order (nothing can have filled)
REJECT_CODES = frozenset({103, 110, 200, 201, 203, 321, 10147, 10148})
TIF_OF = {TimeInForce.IOC: "IOC", TimeInForce.DAY: "DAY"}


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


def _filled(trade: Trade) -> float:
    return float(sum(f.execution.shares for f in trade.fills))


def _final(trade: Trade) -> bool:
    """Terminal with every execution in (commission reports may still be on their way)."""
    st = trade.orderStatus
    if st.status not in TERMINAL_STATUSES:
        return False
    if _filled(trade) < st.filled:
        return False
    return not (st.status == "Filled" and _filled(trade) < float(trade.order.totalQuantity))


def _commissions_in(trade: Trade) -> bool:
    return all(f.commissionReport.execId for f in trade.fills)


def _settled(trade: Trade) -> bool:
    """Terminal, every execution in, every commission report in."""
    return _final(trade) and _commissions_in(trade)


def state_of(trade: Trade) -> OrderState:
    """One OrderState from IBKR's status, the fills and the error codes in the trade log."""
    status = trade.orderStatus.status
    state = IBKR_STATUS.get(status, OrderState.UNKNOWN)
    if state in (OrderState.CANCELLED, OrderState.REJECTED):
        if _filled(trade) > 0:
            return OrderState.CANCELLED
        if any(e.errorCode in REJECT_CODES for e in trade.log):
            return OrderState.REJECTED
    if state is OrderState.FILLED and _filled(trade) < float(trade.order.totalQuantity):
        return OrderState.OPEN  # status ahead of its execDetails
    return state


class IbkrOrderClient:
    """``VenueOrderClient`` for ForecastEx through an ``IbkrGateway``'s connection."""

    venue = Venue.IBKR

    def __init__(
        self,
        gateway: IbkrGateway,
        *,
        cancel_timeout_s: float = 5.0,
        commission_wait_ms: int = 500,
    ) -> None:
        self.gateway = gateway
        self.cancel_timeout_s = cancel_timeout_s
        self.commission_wait_ms = commission_wait_ms
        self._inflight: dict[str, Trade] = {}
        self.sent: dict[str, int] = {}  # client order id → placeOrder calls (should be ≤ 1)

    @property
    def ib(self) -> Any:
        return self.gateway.ib

    # ------------------------------------------------------------------ lookup

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
        if trade is None:
            state = OrderState.UNKNOWN
            requested = Qty(qty)
            perm_id = fills[0].execution.permId if fills else 0
            reason = "order not in this session; executions only"
        else:
            state = state_of(trade)
            requested = qty_from_ibkr(float(trade.order.totalQuantity))
            perm_id = trade.order.permId or trade.orderStatus.permId
            reason = next((e.message for e in reversed(trade.log) if e.errorCode), "")
        if missing_fee:
            reason = (reason + "; " if reason else "") + "commission report missing (fee counted 0)"
        return OrderResult(
            client_order_id=client_order_id,
            venue_order_id=str(perm_id) if perm_id else "",
            state=state,
            requested_qty=requested,
            filled_qty=Qty(qty),
            filled_cost=Money(cost),
            fees=Money(fees),
            reason=reason,
            ack_ts_ns=time.time_ns(),
        )

    async def _await_settled(self, client_order_id: str, trade: Trade, timeout_s: float) -> Trade:
        """Wait until ``trade`` is terminal with all fills/commissions in, or the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
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
        try:
            while not _settled(trade):
                if _final(trade):
                    # The outcome is known; late commission reports get a short grace only.
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
        return trade

    # ------------------------------------------------------------------ VenueOrderClient

    async def place_limit(self, req: OrderRequest, timeout_s: float) -> OrderResult:
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
            trade = self.ib.placeOrder(contract, order)
            self._inflight[req.client_order_id] = trade
            self.sent[req.client_order_id] = self.sent.get(req.client_order_id, 0) + 1
        trade = await self._await_settled(req.client_order_id, trade, timeout_s)
        if not _final(trade) and trade.orderStatus.status not in TERMINAL_STATUSES:
            # DAY past its timeout, or an IOC the venue never finished: cancel, then verify.
            trade = await self._cancel_trade(req.client_order_id, trade, self.cancel_timeout_s)
        return self._result(req.client_order_id, trade)

    async def _cancel_trade(self, client_order_id: str, trade: Trade, timeout_s: float) -> Trade:
        if trade.orderStatus.status not in TERMINAL_STATUSES and self.gateway.connected:
            try:
                self.ib.cancelOrder(trade.order)
            except ConnectionError as exc:
                log.warning("ibkr: cancel of %s failed: %r", client_order_id, exc)
        return await self._await_settled(client_order_id, trade, timeout_s)

    async def cancel(self, client_order_id: str, timeout_s: float) -> OrderResult:
        if not self.gateway.connected:
            raise VenueError("IBKR gateway is not connected", retryable=True)
        trade = self._find_trade(client_order_id)
        if trade is None:
            raise VenueError(f"{client_order_id}: unknown to IBKR (never placed?)")
        trade = await self._cancel_trade(client_order_id, trade, timeout_s)
        return self._result(client_order_id, trade)

    async def order_status(self, client_order_id: str) -> OrderResult | None:
        if not self.gateway.connected:
            raise VenueError("IBKR gateway is not connected: order status unknown", retryable=True)
        trade = self._find_trade(client_order_id)
        if trade is None and not self._fills_for(client_order_id):
            # Not in this session's view: ask TWS for completed orders and executions.
            await self.ib.reqCompletedOrdersAsync(False)
            await self.ib.reqExecutionsAsync()
            trade = self._find_trade(client_order_id)
            if trade is None and not self._fills_for(client_order_id):
                return None
        return self._result(client_order_id, trade)

    async def fills(self, client_order_id: str | None = None) -> list[Fill]:
        out = []
        for f in self.ib.fills():
            ref = f.execution.orderRef
            if client_order_id is not None and ref != client_order_id:
                continue
            mapped = self.gateway.symbol_of.get(f.contract.conId) if f.contract else None
            if mapped is None:
                continue
            symbol, outcome = mapped
            out.append(
                Fill(
                    client_order_id=ref,
                    venue_order_id=str(f.execution.permId),
                    symbol=symbol,
                    outcome=outcome,
                    price=price_from_ibkr(f.execution.price),
                    qty=qty_from_ibkr(f.execution.shares),
                    fee=parse_money(f.commissionReport.commission, "commission"),
                    ts_ns=int(f.execution.time.timestamp() * 1_000_000_000),
                )
            )
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
