"""Kalshi's VenueOrderClient: the executor's one path to Kalshi orders.

Buy YES at p → V2 ``side="bid"`` at p; buy NO at p → ``side="ask"`` at 1 − p (selling YES
is buying NO on the single YES book).

Every method does ONE thing once (``arbkit.execution.venue``); the executor owns the policy:

* ``place_limit`` sends the create once. A definite 4xx refusal → ``REJECTED``. A 409 ("this
  client_order_id already exists") → at most one quick lookup, returned if it finds the
  order, else :class:`OrderExists` (the order exists and may have filled; the list lags).
  A timeout, 5xx, transport error or 429-after-retries is *ambiguous* and raises — no
  lookups, no resends here. ``filled_qty`` is the create response's ``fill_count``.
* Costs/fees are exact (``costs_final=True``) when the ``fill``/``user_orders`` stream has
  already delivered that order's fills (or its final totals); otherwise they are a
  conservative estimate (limit × filled; the venue's average fee × filled, rounded up) with
  ``costs_final=False`` — the executor takes exact costs from the stream or a later read.
* Reads are one read each: ``order_status`` looks in ``/portfolio/orders`` and then in
  ``/historical/orders``; None means "not seen in this read" (reads lag writes).
* The user stream (:class:`KalshiUserStream`) is the source of truth for fills; REST reads
  are for reconciliation. Fills arriving on it are kept per order so ``place_limit`` and
  ``cancel`` can attach exact costs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from arbkit.execution.venue import (
    Fill,
    FillListener,
    OrderExists,
    OrderListener,
    OrderRequest,
    OrderResult,
    OrderState,
    TimeInForce,
    VenueError,
    VenueOrderClient,
)
from arbkit.gateways.kalshi_rest import (
    CreateOrderResult,
    KalshiApiError,
    KalshiFill,
    KalshiOrder,
    KalshiRestClient,
)
from arbkit.gateways.kalshi_user_stream import KalshiUserStream, fill_from, order_result
from arbkit.model import PRICE_SCALE, Money, Outcome, Price, Qty, Venue, parse_money


@dataclass(slots=True)
class _Known:
    """What this client knows about one of its orders (without reading the venue)."""

    order_id: str
    ticker: str = ""
    initial: Qty | None = None
    limit: Price | None = None  # in the bought outcome's own terms
    last: KalshiOrder | None = None  # the last REST read of it


_TIF = {TimeInForce.IOC: "immediate_or_cancel", TimeInForce.FOK: "fill_or_kill"}
# 4xx answers to a create that are ambiguous or mean "exists", not a refusal.
_NOT_A_REFUSAL = frozenset({408, 409, 425, 429})


def _result(o: KalshiOrder, requested: Qty | None = None, reason: str = "") -> OrderResult:
    r = order_result(o, reason=reason)
    if requested is not None and requested != r.requested_qty:
        r = OrderResult(
            r.client_order_id,
            r.venue_order_id,
            r.state,
            requested,
            r.filled_qty,
            r.filled_cost,
            r.fees,
            r.reason,
            r.ack_ts_ns,
        )
    return r


def _retryable(status: int) -> bool:
    return status == 0 or status == 429 or status >= 500


@contextmanager
def _venue_errors(what: str) -> Iterator[None]:
    """The executor speaks VenueError; map the REST client's error onto it."""
    try:
        yield
    except KalshiApiError as exc:
        raise VenueError(
            f"{what}: {exc}", retryable=_retryable(exc.status), status=exc.status
        ) from exc


class KalshiOrderClient:
    venue = Venue.KALSHI

    def __init__(
        self,
        rest: KalshiRestClient,
        symbol_to_ticker: Mapping[str, str],
        *,
        self_trade_prevention_type: str = "taker_at_cross",
        ws_url: str | None = None,
        stream: KalshiUserStream | None = None,
        exists_lookup_timeout_s: float = 1.0,
    ) -> None:
        """``ws_url`` (or a ready ``stream``) enables the ``fill``/``user_orders`` stream;
        call :meth:`start_stream` to connect it."""
        self.rest = rest
        self.symbol_to_ticker = dict(symbol_to_ticker)
        self.ticker_to_symbol = {t: s for s, t in self.symbol_to_ticker.items()}
        self.stp = self_trade_prevention_type
        self.exists_lookup_timeout_s = exists_lookup_timeout_s
        self._known: dict[str, _Known] = {}  # client_order_id → what we know
        self._coid_of: dict[str, str] = {}  # order_id → client_order_id
        self.balance_breakdown: dict[int, Money] = {}  # exchange_index → balance, last read
        self._stream_fills: dict[str, dict[str, Fill]] = {}  # order_id → trade_id → fill
        self._stream_orders: dict[str, OrderResult] = {}  # order_id → latest user_order
        self._fill_listeners: list[FillListener] = []
        self._order_listeners: list[OrderListener] = []
        self.last_place_ns = 0  # call → response, for the last place_limit (perf counter)
        self.last_send_gap_ns = 0  # call → request bytes handed to the socket (wall clock)
        if stream is None and ws_url is not None:
            stream = KalshiUserStream(ws_url, rest.auth, self.ticker_to_symbol)
        self.stream = stream
        if stream is not None:
            stream.add_listeners(self._on_stream_fill, self._on_stream_order)

    # ----------------------------------------------------------------- stream ------

    async def start_stream(self, wait_s: float | None = 10.0) -> None:
        """Connect the user stream; with ``wait_s`` wait until both channels are acked."""
        if self.stream is None:
            raise VenueError("no Kalshi user stream configured (pass ws_url or stream)")
        await self.stream.start()
        if wait_s is not None:
            await self.stream.wait_subscribed(wait_s)

    async def stop_stream(self) -> None:
        if self.stream is not None:
            await self.stream.stop()

    @property
    def stream_connected(self) -> bool:
        return self.stream is not None and self.stream.connected

    def subscribe(self, on_fill: FillListener, on_order: OrderListener) -> None:
        """Stream fills (deduplicated by trade_id) and order updates to the listeners.
        Nothing arrives unless a stream is configured and started."""
        self._fill_listeners.append(on_fill)
        self._order_listeners.append(on_order)

    def _remember(
        self,
        client_order_id: str,
        order_id: str,
        ticker: str = "",
        *,
        initial: Qty | None = None,
        limit: Price | None = None,
        read: KalshiOrder | None = None,
    ) -> None:
        if not client_order_id:
            return
        k = self._known.get(client_order_id)
        if k is None or k.order_id != order_id:
            k = self._known[client_order_id] = _Known(order_id)
        k.ticker = ticker or k.ticker
        if read is not None:
            k.last = read
            k.initial = read.initial_count
            k.limit = read.yes_price if read.outcome_side is Outcome.YES else read.no_price
        else:
            k.initial = initial if initial is not None else k.initial
            k.limit = limit if limit is not None else k.limit
        self._coid_of[order_id] = client_order_id

    def _on_stream_fill(self, f: Fill) -> None:
        if not f.client_order_id and f.venue_order_id in self._coid_of:
            f = Fill(
                self._coid_of[f.venue_order_id],
                f.venue_order_id,
                f.symbol,
                f.outcome,
                f.price,
                f.qty,
                f.fee,
                f.ts_ns,
                f.trade_id,
            )
        elif f.client_order_id:
            self._coid_of.setdefault(f.venue_order_id, f.client_order_id)
        self._stream_fills.setdefault(f.venue_order_id, {})[f.trade_id] = f
        for cb in self._fill_listeners:
            cb(f)

    def _on_stream_order(self, r: OrderResult) -> None:
        if r.client_order_id:
            self._coid_of.setdefault(r.venue_order_id, r.client_order_id)
            if r.client_order_id not in self._known:
                self._remember(r.client_order_id, r.venue_order_id, initial=r.requested_qty)
        self._stream_orders[r.venue_order_id] = r
        for cb in self._order_listeners:
            cb(r)

    def stream_fills(self, order_id: str) -> list[Fill]:
        return list(self._stream_fills.get(order_id, {}).values())

    def _exact_costs(self, order_id: str, filled: Qty) -> tuple[Money, Money] | None:
        """(cost, fees) of ``filled`` contracts of the order, if the stream has shown all
        of them; None otherwise."""
        if filled == 0:
            return Money(0), Money(0)
        fills = self._stream_fills.get(order_id)
        if fills and sum(f.qty for f in fills.values()) == filled:
            return (
                Money(sum(f.price * f.qty for f in fills.values())),
                Money(sum(f.fee for f in fills.values())),
            )
        so = self._stream_orders.get(order_id)
        if so is not None and so.filled_qty == filled:
            return so.filled_cost, so.fees
        return None

    # ----------------------------------------------------------------- orders -----

    def _ticker(self, symbol: str) -> str:
        t = self.symbol_to_ticker.get(symbol)
        if t is None:
            raise VenueError(f"no Kalshi ticker for symbol {symbol!r}")
        return t

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
        sent = [0]

        def on_sent(ns: int) -> None:
            sent[0] = ns

        call_ns = time.time_ns()
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
                    on_sent=on_sent,
                ),
                timeout_s,
            )
        except KalshiApiError as exc:
            if exc.status == 409:
                return await self._after_409(req, ticker, exc)
            if 400 <= exc.status < 500 and exc.status not in _NOT_A_REFUSAL:
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
                    sent_ns=sent[0],
                )
            # 5xx, transport failure, 429 after the client's retries: the order may exist.
            raise VenueError(
                f"create {req.client_order_id}: outcome unknown ({exc})",
                retryable=True,
                status=exc.status,
            ) from exc
        finally:
            self.last_place_ns = time.perf_counter_ns() - t0
            if sent[0]:
                self.last_send_gap_ns = sent[0] - call_ns
        return self._placed(req, ticker, created, sent[0])

    def _placed(
        self, req: OrderRequest, ticker: str, c: CreateOrderResult, sent_ns: int
    ) -> OrderResult:
        ack = time.time_ns()
        self._remember(
            req.client_order_id, c.order_id, ticker, initial=req.qty, limit=req.limit_price
        )
        filled = c.fill_count
        if c.remaining_count > 0:
            state = OrderState.OPEN
            reason = "resting"
        elif filled >= req.qty:
            state, reason = OrderState.FILLED, "filled"
        else:
            state = OrderState.CANCELLED
            reason = "partial fill, rest cancelled" if filled else "no fill"
        exact = self._exact_costs(c.order_id, filled)
        if exact is not None:
            cost, fees = exact
            final = True
        else:
            # Fills are at or better than the limit: limit × filled bounds the cost.
            cost = Money(req.limit_price * filled)
            fees = self._fee_estimate(c.average_fee_paid, filled)
            final = False
        return OrderResult(
            req.client_order_id,
            c.order_id,
            state,
            req.qty,
            filled,
            cost,
            fees,
            reason=reason,
            ack_ts_ns=ack,
            costs_final=final,
            sent_ns=sent_ns,
        )

    @staticmethod
    def _fee_estimate(average_fee_paid: str, filled: Qty) -> Money:
        """The venue's (rounded) average fee per contract × contracts, rounded up to $0.0001."""
        if not filled or not average_fee_paid:
            return Money(0)
        try:
            per_contract = parse_money(average_fee_paid, "average_fee_paid")
        except ValueError:
            return Money(0)
        raw = per_contract * filled  # in $1e-8 (Money × 0.01 contract)
        return Money(-(-raw // 10_000) * 100)  # ceil to $0.0001

    async def _after_409(self, req: OrderRequest, ticker: str, exc: KalshiApiError) -> OrderResult:
        """The order exists. One quick look; if the (lagging) list does not show it yet the
        executor must look again — never resend, never book it as rejected."""
        try:
            found = await asyncio.wait_for(
                self.rest.find_order_by_client_id(req.client_order_id, ticker=ticker),
                self.exists_lookup_timeout_s,
            )
        except (KalshiApiError, TimeoutError, OSError):
            found = None
        if found is None:
            raise OrderExists(
                f"409 for {req.client_order_id}: the order exists but is not readable yet"
            ) from exc
        self._remember(found.client_order_id, found.order_id, found.ticker, read=found)
        return _result(found, req.qty, "already existed")

    async def _read(self, client_order_id: str) -> KalshiOrder | None:
        """One read: by order id when known, else the orders list (per ticker when known);
        then ``/historical/orders`` if the live tier does not have it."""
        known = self._known.get(client_order_id)
        ticker = known.ticker if known and known.ticker else None
        o: KalshiOrder | None = None
        if known is not None:
            try:
                o = await self.rest.get_order(known.order_id)
            except KalshiApiError as exc:
                if exc.status != 404:
                    raise
        else:
            o = await self.rest.find_order_by_client_id(client_order_id, ticker=ticker)
        if o is None:
            o = await self.rest.find_order_by_client_id(
                client_order_id, ticker=ticker, historical=True
            )
        if o is not None:
            self._remember(client_order_id, o.order_id, o.ticker, read=o)
        return o

    async def order_status(self, client_order_id: str) -> OrderResult | None:
        with _venue_errors(f"status of {client_order_id}"):
            o = await self._read(client_order_id)
        return None if o is None else _result(o)

    async def cancel(self, client_order_id: str, timeout_s: float) -> OrderResult:
        with _venue_errors(f"cancel {client_order_id}"):
            return await asyncio.wait_for(self._cancel(client_order_id), timeout_s)

    async def _cancel(self, client_order_id: str) -> OrderResult:
        """Known order (id + size): DELETE at once, no lagging read first. Unknown: one read
        to find it. A 400/404 from the DELETE means it is already gone: read its final state."""
        k = self._known.get(client_order_id)
        if k is None or k.initial is None:
            o = await self._read(client_order_id)
            if o is None:
                raise VenueError(
                    f"cancel {client_order_id}: order not seen (reads lag; look again)",
                    retryable=True,
                    status=404,
                )
            if o.status != "resting":
                return _result(o)
            k = self._known[client_order_id]
        assert k.initial is not None
        try:
            c = await self.rest.cancel_order(k.order_id, ticker=k.ticker or None)
        except KalshiApiError as exc:
            if exc.status not in (400, 404):
                raise
            again = await self._read(client_order_id)
            if again is None:
                raise VenueError(
                    f"cancel {client_order_id}: {exc}; final state not readable yet",
                    retryable=True,
                    status=exc.status,
                ) from exc
            return _result(again)
        # The cancel removed what was resting; everything else had filled.
        filled = Qty(k.initial - c.reduced_by)
        exact = self._exact_costs(k.order_id, filled)
        o = k.last
        if exact is None and o is not None and o.fill_count == filled:
            exact = (
                Money(o.taker_fill_cost + o.maker_fill_cost),
                Money(o.taker_fees + o.maker_fees),
            )
        if exact is not None:
            cost, fees = exact
        else:  # estimate: the limit bounds the cost of fills not seen in a read
            limit = k.limit or Price(PRICE_SCALE)
            seen_q, seen_cost, seen_fees = 0, 0, 0
            if o is not None and o.fill_count <= filled:
                seen_q = o.fill_count
                seen_cost = o.taker_fill_cost + o.maker_fill_cost
                seen_fees = o.taker_fees + o.maker_fees
            cost = Money(seen_cost + limit * (filled - seen_q))
            fees = Money(seen_fees)
        return OrderResult(
            client_order_id,
            k.order_id,
            OrderState.CANCELLED,
            k.initial,
            filled,
            cost,
            fees,
            reason="cancelled",
            ack_ts_ns=time.time_ns(),
            costs_final=exact is not None,
        )

    async def open_orders(self) -> list[OrderResult]:
        """Every resting order on the account, including orders arbkit did not create or
        whose ticker is not in the symbol map (see :meth:`open_orders_by_symbol`)."""
        return [r for _, r in await self.open_orders_by_symbol()]

    async def open_orders_by_symbol(self) -> list[tuple[str, OrderResult]]:
        """(unified symbol, order) per resting order; symbol "" for tickers not in the map
        (OrderResult carries no symbol, so reconciliation sees foreign orders this way)."""
        with _venue_errors("open orders"):
            rows = await self.rest.get_orders(status="resting")
        out = []
        for o in rows:
            self._remember(o.client_order_id, o.order_id, o.ticker, read=o)
            out.append((self.ticker_to_symbol.get(o.ticker, ""), _result(o)))
        return out

    async def fills(self, client_order_id: str | None = None) -> list[Fill]:
        """REST fills (live tier + ``/historical/fills``), deduplicated by trade_id. Fills of
        tickers outside the symbol map are included with symbol ""; REST fills carry no
        client_order_id, so it is mapped from order_id (known orders, else one orders list)."""
        with _venue_errors("fills"):
            return await self._fills(client_order_id)

    async def _fills(self, client_order_id: str | None) -> list[Fill]:
        raw: list[KalshiFill]
        if client_order_id is not None:
            o = await self._read(client_order_id)
            if o is None:
                return []
            raw = await self.rest.get_fills(order_id=o.order_id)
            hist = await self.rest.get_fills(ticker=o.ticker, historical=True)
            raw += [f for f in hist if f.order_id == o.order_id]
        else:
            raw = await self.rest.get_fills()
            raw += await self.rest.get_fills(historical=True)
            if any(f.order_id not in self._coid_of for f in raw):
                for archived in (False, True):
                    for ko in await self.rest.get_orders(historical=archived):
                        self._remember(ko.client_order_id, ko.order_id, ko.ticker, read=ko)
        out: list[Fill] = []
        seen: set[str] = set()
        for f in raw:
            key = f.trade_id or f.fill_id
            if key in seen:
                continue
            seen.add(key)
            out.append(
                fill_from(
                    f, self._coid_of.get(f.order_id, ""), self.ticker_to_symbol.get(f.ticker, "")
                )
            )
        return out

    async def balance(self) -> Money:
        """The spendable balance (kalshi_rest.Balance.spendable); shards kept for display."""
        with _venue_errors("balance"):
            got = await self.rest.get_balance()
        self.balance_breakdown = dict(got.balance_breakdown)
        return got.spendable

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
