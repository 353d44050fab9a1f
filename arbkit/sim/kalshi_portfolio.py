"""Authenticated portfolio REST operations of the local Kalshi exchange: create / cancel
orders, orders, fills, positions, balance, settlements and the historical tier. Reads honour
the read-lag and historical-cutoff fault switches kept on :class:`KalshiExchange`."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from arbkit.model import (
    PRICE_SCALE,
    ConversionError,
    Money,
    Price,
    Qty,
    money_str,
    parse_price,
    parse_qty,
    price_str,
    qty_str,
)
from arbkit.sim.kalshi_engine import FillRecord, OrderError, UserOrder
from arbkit.sim.kalshi_json import (
    MONEY_PER_CENT,
    fill_json,
    json_response,
    order_json,
    position_json,
    settlement_json,
)
from arbkit.sim.kalshi_params import Query, bad

if TYPE_CHECKING:
    from arbkit.sim.kalshi_exchange import KalshiExchange

USER = web.RequestKey("kalshi_user", str)  # "" on an unsigned request to a public endpoint
_NS = 1_000_000_000
_ORDER_STATUSES = frozenset({"resting", "canceled", "executed"})
_REQUIRED = ("ticker", "side", "count", "price", "time_in_force", "self_trade_prevention_type")


def _in(ts_ns: int, lo: int | None, hi: int | None) -> bool:
    """``min_ts`` / ``max_ts`` in Unix seconds, both inclusive."""
    return (lo is None or ts_ns >= lo * _NS) and (hi is None or ts_ns <= hi * _NS)


class PortfolioApi:
    def __init__(self, ex: KalshiExchange) -> None:
        self.ex = ex

    def routes(self, app: web.Application, p: str) -> None:
        r = app.router
        r.add_post(p + "/portfolio/events/orders", self.create_order)
        r.add_delete(p + "/portfolio/events/orders/{order_id}", self.cancel_order)
        r.add_get(p + "/portfolio/orders", self.get_orders)
        r.add_get(p + "/portfolio/orders/{order_id}", self.get_order)
        r.add_get(p + "/portfolio/fills", self.get_fills)
        r.add_get(p + "/portfolio/positions", self.get_positions)
        r.add_get(p + "/portfolio/balance", self.get_balance)
        r.add_get(p + "/portfolio/settlements", self.get_settlements)
        r.add_get(p + "/historical/orders", self.get_historical_orders)
        r.add_get(p + "/historical/fills", self.get_historical_fills)

    # ------------------------------------------------------------ lagged views ----

    def lag_cut_ns(self) -> int | None:
        lag = self.ex.faults.read_lag_ms
        return self.ex.clock_ns() - lag * 1_000_000 if lag > 0 else None

    def archived_order(self, o: UserOrder) -> bool:
        cut = self.ex.historical_cutoff_ns
        return cut is not None and o.status != "resting" and o.updated_ns < cut

    def archived_fill(self, f: FillRecord) -> bool:
        cut = self.ex.historical_cutoff_ns
        return cut is not None and f.ts_ns < cut

    def order_view(self, o: UserOrder, cut: int | None) -> dict[str, Any] | None:
        """The order as a read at venue time ``cut`` shows it (None: not visible yet)."""
        if cut is None:
            return order_json(o)
        hist = self.ex.order_hist.get(o.order_id)
        if not hist:
            return order_json(o) if o.updated_ns <= cut else None
        seen = None
        for ts, row in hist:
            if ts > cut:
                break
            seen = row
        return seen

    # ----------------------------------------------------------------- orders -----

    async def create_order(self, request: web.Request) -> web.Response:
        ex = self.ex
        user = request[USER]
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise bad("body is not JSON") from None
        if type(body) is not dict:
            raise bad("body must be an object")
        coid = body.get("client_order_id") or ""
        if type(coid) is not str:
            raise bad("client_order_id must be a string")
        ex.order_posts[coid] += 1
        missing = [k for k in _REQUIRED if k not in body]
        if missing:
            raise bad(f"missing {', '.join(missing)}")
        if ex.faults.delay_next_order_ms:
            ms, ex.faults.delay_next_order_ms = ex.faults.delay_next_order_ms, 0
            await asyncio.sleep(ms / 1000)
        if ex.faults.reject_next_orders:
            status, code, msg = ex.faults.reject_next_orders.pop(0)
            raise OrderError(status, code, msg)
        try:
            count = parse_qty(body["count"], "count")
            price = parse_price(body["price"], "price")
        except ConversionError as exc:
            raise bad(str(exc)) from None
        if body.get("self_trade_prevention_type") not in ("taker_at_cross", "maker"):
            raise bad("invalid self_trade_prevention_type")
        sub = body.get("subaccount", 0)
        if type(sub) is not int or not 0 <= sub <= 63:
            raise bad("subaccount must be 0..63")
        ticker = str(body["ticker"])
        if ticker not in ex.engine.markets:
            # CreateOrderV2 lists no 404: an unknown ticker is a bad request.
            raise OrderError(400, "market_not_found", "market not found", ticker)
        try:
            o = ex.engine.place(
                user,
                ticker=ticker,
                book_side=str(body["side"]),
                yes_price=Price(price),
                count=Qty(count),
                tif=str(body["time_in_force"]),
                client_order_id=coid,
                stp=str(body["self_trade_prevention_type"]),
                post_only=bool(body.get("post_only", False)),
                subaccount=sub,
            )
        finally:
            ex.flush()
        ex.orders_created[coid] += 1
        if ex.faults.lose_responses:
            mode = ex.faults.lose_responses.pop(0)
            ex.lost_responses += 1
            if mode == "hang":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ex.closing.wait(), ex.faults.hang_s)
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError()  # never written: the socket is gone
        resp: dict[str, Any] = {
            "order_id": o.order_id,
            "client_order_id": o.client_order_id,
            "fill_count": qty_str(o.fill),
            "remaining_count": qty_str(o.remaining),
            "ts_ms": ex.clock_ns() // 1_000_000,
        }
        if o.fill:
            cost = o.taker_cost + o.maker_cost
            own_avg = cost // o.fill  # Price units (floored)
            yes_avg = own_avg if o.book_side == "bid" else PRICE_SCALE - own_avg
            resp["average_fill_price"] = price_str(yes_avg)
            resp["average_fee_paid"] = money_str(
                Money((o.taker_fees + o.maker_fees) * 100 // o.fill)
            )
        return json_response(resp, 201)

    async def cancel_order(self, request: web.Request) -> web.Response:
        """CancelOrderV2 answers 200, 401, 404 or 500 only: an order that is not resting, on
        another subaccount / shard / market, or unknown is a 404."""
        ex = self.ex
        q = Query(request)
        sub = q.subaccount() or 0  # SubaccountQueryDefaultPrimary
        ticker = q.text("market_ticker")
        index = q.integer("exchange_index")
        if index is not None and index < -1:
            raise bad("exchange_index must be >= -1")
        if index == -1 and ticker is None:
            raise bad("exchange_index=-1 (auto-routing) requires market_ticker")
        order_id = request.match_info["order_id"]
        o = ex.engine.orders.get(order_id)
        if (
            o is None
            or o.user != request[USER]
            or o.subaccount != sub
            or (ticker is not None and o.ticker != ticker)
            or (index is not None and index not in (-1, 0))
        ):
            raise OrderError(404, "not_found", "order not found", order_id)
        if o.status != "resting":
            raise OrderError(404, "not_found", "order is not resting", o.status)
        try:
            o, reduced = ex.engine.cancel(request[USER], order_id)
        finally:
            ex.flush()
        return json_response(
            {
                "order_id": o.order_id,
                "client_order_id": o.client_order_id,
                "reduced_by": qty_str(reduced),
                "ts_ms": ex.clock_ns() // 1_000_000,
            }
        )

    def _orders_rows(self, request: web.Request, *, historical: bool) -> list[dict[str, Any]]:
        q = Query(request)
        user = request[USER]
        ticker = q.text("ticker")
        lo, hi = q.ts_window("min_ts", "max_ts")
        sub = q.subaccount()  # SubaccountQuery: omitted = all subaccounts
        events: list[str] | None = None
        status: str | None = None
        shard: int | None = None
        if not historical:
            events = q.csv("event_ticker", 10)
            status = q.choice("status", _ORDER_STATUSES)
            shard = q.exchange_index()
        cut = None if historical else self.lag_cut_ns()
        markets = self.ex.engine.markets
        orders = [
            o
            for o in self.ex.engine.orders.values()
            if o.user == user
            and self.archived_order(o) == historical
            and (ticker is None or o.ticker == ticker)
            and (sub is None or o.subaccount == sub)
            and (events is None or markets[o.ticker].event_ticker in events)
            and _in(o.created_ns, lo, hi)
            and shard in (None, 0)
        ]
        orders.sort(key=lambda o: o.created_ns, reverse=True)
        rows = [r for r in (self.order_view(o, cut) for o in orders) if r is not None]
        if status is not None:
            rows = [r for r in rows if r["status"] == status]
        return rows

    async def get_orders(self, request: web.Request) -> web.Response:
        page, cursor = Query(request).page(self._orders_rows(request, historical=False))
        return json_response({"orders": page, "cursor": cursor})

    async def get_historical_orders(self, request: web.Request) -> web.Response:
        page, cursor = Query(request).page(self._orders_rows(request, historical=True))
        return json_response({"orders": page, "cursor": cursor})

    async def get_order(self, request: web.Request) -> web.Response:
        o = self.ex.engine.orders.get(request.match_info["order_id"])
        if o is None or o.user != request[USER] or self.archived_order(o):
            raise OrderError(404, "not_found", "order not found")
        row = self.order_view(o, self.lag_cut_ns())
        if row is None:
            raise OrderError(404, "not_found", "order not found")
        return json_response({"order": row})

    # ------------------------------------------------------------------ fills -----

    async def get_fills(self, request: web.Request) -> web.Response:
        return self._fills(request, historical=False)

    async def get_historical_fills(self, request: web.Request) -> web.Response:
        return self._fills(request, historical=True)

    def _fills(self, request: web.Request, *, historical: bool) -> web.Response:
        q = Query(request)
        user = request[USER]
        ticker = q.text("ticker")
        lo, hi = q.ts_window("min_ts", "max_ts")
        sub = q.subaccount()
        order_id = None if historical else q.text("order_id")
        shard = None if historical else q.exchange_index()
        cut = None if historical else self.lag_cut_ns()
        fills = [
            f
            for f in self.ex.engine.fills
            if f.user == user
            and self.archived_fill(f) == historical
            and (cut is None or f.ts_ns <= cut)
            and (ticker is None or f.ticker == ticker)
            and (order_id is None or f.order_id == order_id)
            and (sub is None or f.subaccount == sub)
            and _in(f.ts_ns, lo, hi)
            and shard in (None, 0)
        ]
        fills.reverse()  # newest first
        page, cursor = q.page(fills)
        return json_response({"fills": [fill_json(f) for f in page], "cursor": cursor})

    # -------------------------------------------------------------- positions -----

    async def get_positions(self, request: web.Request) -> web.Response:
        q = Query(request)
        user = request[USER]
        ticker = q.text("ticker")
        event = q.text("event_ticker")
        if event is not None and "," in event:
            raise bad("event_ticker takes a single event ticker")
        count_filter = q.csv("count_filter")
        if count_filter is not None:
            unknown = set(count_filter) - {"position", "total_traded"}
            if unknown:
                raise bad(f"count_filter accepts position, total_traded; not {sorted(unknown)}")
        q.subaccount(pooled=True)
        shard = q.exchange_index()
        acct = self.ex.engine.account(user)
        markets = self.ex.engine.markets
        cut = self.lag_cut_ns()
        rows = []
        for t, p in sorted(acct.positions.items()):
            if ticker is not None and t != ticker:
                continue
            if event is not None and (t not in markets or markets[t].event_ticker != event):
                continue
            if shard not in (None, 0):
                continue
            row: dict[str, Any] | None = position_json(t, p)
            hist = self.ex.pos_hist.get((user, t)) if cut is not None else None
            if cut is not None and hist:
                row = None
                for ts, r in hist:
                    if ts > cut:
                        break
                    row = r
            elif cut is not None and p.updated_ns > cut:
                row = None
            if row is None:
                continue
            if count_filter is not None and not any(
                (f == "position" and row["position_fp"] != "0.00")
                or (f == "total_traded" and p.total_traded != 0)
                for f in count_filter
            ):
                continue
            rows.append(row)
        page, cursor = q.page(rows)
        return json_response({"market_positions": page, "event_positions": [], "cursor": cursor})

    async def get_settlements(self, request: web.Request) -> web.Response:
        q = Query(request)
        ticker = q.text("ticker")
        event = q.text("event_ticker")
        lo, hi = q.ts_window("min_ts", "max_ts")
        q.subaccount(pooled=True)
        rows = [
            r
            for r in self.ex.engine.settlements
            if r.user == request[USER]
            and (ticker is None or r.ticker == ticker)
            and (event is None or r.event_ticker == event)
            and _in(r.ts_ns, lo, hi)
        ]
        rows.reverse()  # newest first
        page, cursor = q.page(rows)
        return json_response({"settlements": [settlement_json(r) for r in page], "cursor": cursor})

    async def get_balance(self, request: web.Request) -> web.Response:
        q = Query(request)
        q.subaccount(pooled=True)
        index = q.integer("exchange_index")
        user = request[USER]
        acct = self.ex.engine.account(user)
        exposure = sum(p.exposure for p in acct.positions.values())
        breakdown = self.ex.balance_breakdown(user)
        balance, value = acct.balance, acct.balance + exposure
        if index is not None:
            shard = {int(r["exchange_index"]): r["balance_money"] for r in breakdown}
            balance = shard.get(index, 0)
            value = balance + (exposure if index == 0 else 0)
        return json_response(
            {
                "balance": balance // MONEY_PER_CENT,
                "balance_dollars": money_str(Money(balance)),
                "portfolio_value": value // MONEY_PER_CENT,
                "updated_ts": self.ex.clock_ns() // _NS,
                "balance_breakdown": [
                    {"exchange_index": r["exchange_index"], "balance": r["balance"]}
                    for r in breakdown
                ],
            }
        )
