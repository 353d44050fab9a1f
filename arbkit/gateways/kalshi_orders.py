"""Kalshi's VenueOrderClient: the executor's one path to Kalshi orders.

Buy YES at p → V2 ``side="bid"`` at p; buy NO at p → ``side="ask"`` at 1 − p (selling YES
is buying NO on the single YES book). The ``client_order_id`` is the caller's and is
deterministic, so a 409 "already exists" (or an ambiguous failure) is resolved by fetching
that order — never by sending it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from arbkit.execution.venue import (
    Fill,
    OrderRequest,
    OrderResult,
    OrderState,
    TimeInForce,
    VenueError,
    VenueOrderClient,
)
from arbkit.gateways.kalshi_rest import KalshiApiError, KalshiOrder, KalshiRestClient
from arbkit.model import PRICE_SCALE, Money, Outcome, Price, Qty, Venue

_TIF = {TimeInForce.IOC: "immediate_or_cancel", TimeInForce.FOK: "fill_or_kill"}
_STATE = {
    "resting": OrderState.OPEN,
    "executed": OrderState.FILLED,
    "canceled": OrderState.CANCELLED,
}
_REJECT_STATUSES = frozenset({400, 403, 404, 422})


def _result(o: KalshiOrder, requested: Qty | None = None, reason: str = "") -> OrderResult:
    state = _STATE.get(o.status, OrderState.UNKNOWN)
    return OrderResult(
        client_order_id=o.client_order_id,
        venue_order_id=o.order_id,
        state=state,
        requested_qty=requested if requested is not None else o.initial_count,
        filled_qty=o.fill_count,
        filled_cost=Money(o.taker_fill_cost + o.maker_fill_cost),
        fees=Money(o.taker_fees + o.maker_fees),
        reason=reason or o.status,
        ack_ts_ns=time.time_ns(),
    )


@contextmanager
def _venue_errors(what: str) -> Iterator[None]:
    """The executor speaks VenueError; map the REST client's error onto it."""
    try:
        yield
    except KalshiApiError as exc:
        retryable = exc.status == 0 or exc.status == 429 or exc.status >= 500
        raise VenueError(f"{what}: {exc}", retryable=retryable, status=exc.status) from exc


class KalshiOrderClient:
    venue = Venue.KALSHI

    def __init__(
        self,
        rest: KalshiRestClient,
        symbol_to_ticker: Mapping[str, str],
        *,
        self_trade_prevention_type: str = "taker_at_cross",
    ) -> None:
        self.rest = rest
        self.symbol_to_ticker = dict(symbol_to_ticker)
        self.ticker_to_symbol = {t: s for s, t in self.symbol_to_ticker.items()}
        self.stp = self_trade_prevention_type
        self._known: dict[str, tuple[str, str]] = {}  # client_order_id → (order_id, ticker)
        self.last_place_ns = 0  # call → response, for the last place_limit

    def _ticker(self, symbol: str) -> str:
        t = self.symbol_to_ticker.get(symbol)
        if t is None:
            raise VenueError(f"no Kalshi ticker for symbol {symbol!r}")
        return t

    async def _find(self, client_order_id: str, ticker: str | None = None) -> KalshiOrder | None:
        known = self._known.get(client_order_id)
        if known is not None:
            return await self.rest.get_order(known[0])
        o = await self.rest.find_order_by_client_id(client_order_id, ticker=ticker)
        if o is not None:
            self._known[client_order_id] = (o.order_id, o.ticker)
        return o

    async def place_limit(self, req: OrderRequest, timeout_s: float) -> OrderResult:
        t0 = time.perf_counter_ns()
        tif = _TIF.get(req.tif)
        if tif is None:
            raise VenueError(f"Kalshi client supports IOC/FOK only, not {req.tif.name}")
        ticker = self._ticker(req.symbol)
        if req.outcome is Outcome.YES:
            side, yes_price = "bid", req.limit_price
        else:
            side, yes_price = "ask", Price(PRICE_SCALE - req.limit_price)
        try:
            created = await asyncio.wait_for(
                self.rest.create_order_v2(
                    ticker=ticker,
                    side=side,
                    count=req.qty,
                    price=yes_price,
                    time_in_force=tif,
                    client_order_id=req.client_order_id,
                    self_trade_prevention_type=self.stp,
                ),
                timeout_s,
            )
        except KalshiApiError as exc:
            if exc.status == 409:
                with _venue_errors(f"looking up {req.client_order_id} after 409"):
                    found = await self._find(req.client_order_id, ticker)
                if found is None:
                    raise VenueError(
                        f"409 for {req.client_order_id} but the order is not listed",
                        retryable=False,
                        status=409,
                    ) from exc
                return _result(found, req.qty, "already existed")
            if exc.status in _REJECT_STATUSES:
                return OrderResult(
                    req.client_order_id,
                    "",
                    OrderState.REJECTED,
                    req.qty,
                    Qty(0),
                    Money(0),
                    Money(0),
                    reason=f"{exc.status} {exc.code}: {exc.message}",
                    ack_ts_ns=time.time_ns(),
                )
            return await self._resolve_ambiguous(req, ticker, exc)
        except TimeoutError as exc:
            return await self._resolve_ambiguous(req, ticker, exc)
        finally:
            self.last_place_ns = time.perf_counter_ns() - t0
        self._known[req.client_order_id] = (created.order_id, ticker)
        if created.fill_count:
            # Exact costs/fees live on the order object, not in the create response. If this
            # read fails the order still exists: a resend of the same id resolves via 409.
            with _venue_errors(f"reading filled order {req.client_order_id}"):
                return _result(await self.rest.get_order(created.order_id), req.qty)
        state = OrderState.CANCELLED if created.remaining_count == 0 else OrderState.OPEN
        return OrderResult(
            req.client_order_id,
            created.order_id,
            state,
            req.qty,
            Qty(0),
            Money(0),
            Money(0),
            reason="no fill" if state is OrderState.CANCELLED else "resting",
            ack_ts_ns=time.time_ns(),
        )

    async def _resolve_ambiguous(
        self, req: OrderRequest, ticker: str, exc: BaseException
    ) -> OrderResult:
        """The POST may or may not have landed: look, never resend here."""
        try:
            found = await self._find(req.client_order_id, ticker)
        except KalshiApiError as exc2:
            raise VenueError(
                f"order {req.client_order_id} state unknown: {exc}; lookup failed: {exc2}",
                retryable=True,
                status=getattr(exc, "status", 0),
            ) from exc2
        if found is not None:
            return _result(found, req.qty, "resolved after error")
        raise VenueError(
            f"order {req.client_order_id} not accepted ({exc}); resending the same id is safe",
            retryable=True,
            status=getattr(exc, "status", 0),
        ) from exc

    async def cancel(self, client_order_id: str, timeout_s: float) -> OrderResult:
        with _venue_errors(f"cancel {client_order_id}"):
            return await self._cancel(client_order_id, timeout_s)

    async def _cancel(self, client_order_id: str, timeout_s: float) -> OrderResult:
        o = await asyncio.wait_for(self._find(client_order_id), timeout_s)
        if o is None:
            raise VenueError(f"unknown order {client_order_id}", status=404)
        if o.status == "resting":
            try:
                await asyncio.wait_for(
                    self.rest.cancel_order(o.order_id, ticker=o.ticker), timeout_s
                )
            except KalshiApiError as exc:
                if exc.status not in (400, 404):  # already gone → read the final state
                    raise VenueError(
                        str(exc), retryable=exc.status >= 500, status=exc.status
                    ) from exc
            o = await self.rest.get_order(o.order_id)
        return _result(o)

    async def order_status(self, client_order_id: str) -> OrderResult | None:
        with _venue_errors(f"status of {client_order_id}"):
            o = await self._find(client_order_id)
        return None if o is None else _result(o)

    async def fills(self, client_order_id: str | None = None) -> list[Fill]:
        with _venue_errors("fills"):
            return await self._fills(client_order_id)

    async def _fills(self, client_order_id: str | None) -> list[Fill]:
        if client_order_id is not None:
            o = await self._find(client_order_id)
            if o is None:
                return []
            raw = await self.rest.get_fills(order_id=o.order_id)
            coids = {o.order_id: client_order_id}
        else:
            raw = await self.rest.get_fills()
            coids = {oid: c for c, (oid, _) in self._known.items()}
        out = []
        for f in raw:
            symbol = self.ticker_to_symbol.get(f.ticker)
            if symbol is None:
                continue
            out.append(
                Fill(
                    client_order_id=coids.get(f.order_id, ""),
                    venue_order_id=f.order_id,
                    symbol=symbol,
                    outcome=f.outcome_side,
                    price=f.price,
                    qty=f.count,
                    fee=f.fee_cost,
                    ts_ns=f.ts_ns,
                )
            )
        return out

    async def balance(self) -> Money:
        with _venue_errors("balance"):
            return (await self.rest.get_balance()).balance

    async def positions(self) -> dict[tuple[str, Outcome], Qty]:
        """Kalshi reports one signed position per market (+YES / −NO): netted."""
        out: dict[tuple[str, Outcome], Qty] = {}
        with _venue_errors("positions"):
            rows = await self.rest.get_positions()
        for p in rows:
            symbol = self.ticker_to_symbol.get(p.ticker)
            if symbol is None or p.position == 0:
                continue
            if p.position > 0:
                out[(symbol, Outcome.YES)] = p.position
            else:
                out[(symbol, Outcome.NO)] = Qty(-p.position)
        return out


if TYPE_CHECKING:  # structural check by mypy: this is a VenueOrderClient

    def _is_venue_order_client(x: KalshiOrderClient) -> VenueOrderClient:
        return x
