"""Async Kalshi REST client (V2 orders, portfolio, markets) over one kept-alive httpx pool.

* Every request is signed (``KalshiAuth.headers``) with the full path incl. ``/trade-api/v2``.
* Client-side read/write token buckets keep us under the venue's limits.
* Only idempotent GETs are retried on 5xx/transport errors. A 429 means "rejected, not
  executed", so it is waited out (backoff + jitter) and resent for reads and writes alike;
  a write that fails any other way is never resent here — the caller resolves it through
  its deterministic ``client_order_id`` (a 409 on resend is resolved by fetching, too).
* Both error shapes (flat ``{code,message,details}`` and ``{"error": {...}}``) become one
  :class:`KalshiApiError`. Exact ints everywhere; legacy cent/int fields are accepted.
* The create-order POST's headers are pre-signed in the background (``presign_orders``), and
  ``create_order_v2(on_sent=...)`` reports the wall clock at which the request bytes were
  handed to the socket (httpcore trace ``send_request_headers.started``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import (
    PRICE_SCALE,
    ConversionError,
    Money,
    Outcome,
    Price,
    Qty,
    parse_money,
    parse_price,
    parse_qty,
    price_str,
    qty_str,
)

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OUTCOMES = {"yes": Outcome.YES, "no": Outcome.NO}
_BOOK_SIDE_OUTCOME = {"bid": Outcome.YES, "ask": Outcome.NO}


class KalshiApiError(Exception):
    """A non-2xx answer (or an unusable body). ``status`` 0 = transport failure."""

    def __init__(self, status: int, code: str, message: str, details: str = "") -> None:
        super().__init__(f"HTTP {status} {code}: {message}" + (f" ({details})" if details else ""))
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @classmethod
    def from_response(cls, status: int, body: bytes) -> KalshiApiError:
        try:
            obj = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            return cls(status, "", body[:200].decode("utf-8", "replace"))
        if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
            obj = obj["error"]
        if not isinstance(obj, dict):
            return cls(status, "", str(obj)[:200])
        return cls(
            status,
            str(obj.get("code") or ""),
            str(obj.get("message") or ""),
            str(obj.get("details") or ""),
        )

    @property
    def already_exists(self) -> bool:
        return self.status == 409


# ------------------------------------------------------------------ parsing helpers ----


def _money(d: dict[str, Any], key: str, legacy_cents_key: str = "") -> Money:
    v = d.get(key)
    if v is not None:
        return parse_money(v, key)
    if legacy_cents_key and type(d.get(legacy_cents_key)) is int:
        return Money(d[legacy_cents_key] * 10_000)
    return Money(0)


def _count(d: dict[str, Any], key: str, legacy_key: str = "", *, signed: bool = False) -> Qty:
    v = d.get(key)
    if v is not None:
        return parse_qty(v, key, signed=signed)
    if legacy_key and type(d.get(legacy_key)) is int:
        return Qty(d[legacy_key] * 100)
    return Qty(0)


def _price(d: dict[str, Any], key: str, legacy_cents_key: str = "") -> Price:
    v = d.get(key)
    if v is not None:
        return parse_price(v, key)
    if legacy_cents_key and type(d.get(legacy_cents_key)) is int:
        cents = d[legacy_cents_key]
        if not 0 < cents < 100:
            raise ConversionError(legacy_cents_key, cents, "legacy cent price must be 1..99")
        return Price(cents * 100)
    raise ConversionError(key, None, "missing")


def _quote(v: object, key: str) -> Price:
    """A market quote in [0, 1] (0 = no bid, 1 = no ask), exact to $0.0001."""
    m = parse_money(v, key)
    if m % 100 or not 0 <= m <= 1_000_000:
        raise ConversionError(key, v, "not a $0.0001 price in [0, 1]")
    return Price(m // 100)


def _time(v: object) -> datetime | None:
    if not isinstance(v, str) or not v:
        return None
    t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)  # Kalshi times are UTC


# ----------------------------------------------------------------- typed results -------


@dataclass(frozen=True, slots=True)
class CreateOrderResult:
    order_id: str
    client_order_id: str
    fill_count: Qty
    remaining_count: Qty
    average_fill_price: str  # informational (rounded by the venue); use get_order for costs
    average_fee_paid: str
    ts_ms: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CreateOrderResult:
        return cls(
            order_id=str(d["order_id"]),
            client_order_id=str(d.get("client_order_id") or ""),
            fill_count=_count(d, "fill_count"),
            remaining_count=_count(d, "remaining_count"),
            average_fill_price=str(d.get("average_fill_price") or ""),
            average_fee_paid=str(d.get("average_fee_paid") or ""),
            ts_ms=int(d.get("ts_ms") or 0),
        )


@dataclass(frozen=True, slots=True)
class CancelResult:
    order_id: str
    client_order_id: str
    reduced_by: Qty
    ts_ms: int


@dataclass(frozen=True, slots=True)
class KalshiOrder:
    order_id: str
    client_order_id: str
    ticker: str
    outcome_side: Outcome
    book_side: str
    status: str  # resting | canceled | executed
    yes_price: Price
    no_price: Price
    fill_count: Qty
    remaining_count: Qty
    initial_count: Qty
    taker_fill_cost: Money
    maker_fill_cost: Money
    taker_fees: Money
    maker_fees: Money
    created_time: datetime | None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KalshiOrder:
        book_side = str(d.get("book_side") or "")
        if book_side in _BOOK_SIDE_OUTCOME:
            outcome = _BOOK_SIDE_OUTCOME[book_side]
        else:  # legacy: side yes/no + action buy/sell
            outcome = _OUTCOMES[str(d.get("outcome_side") or d.get("side"))]
            if d.get("action") == "sell":
                outcome = outcome.opposite
            book_side = "bid" if outcome is Outcome.YES else "ask"
        fill = _count(d, "fill_count_fp", "fill_count")
        remaining = _count(d, "remaining_count_fp", "remaining_count")
        yes = _price(d, "yes_price_dollars", "yes_price")
        return cls(
            order_id=str(d["order_id"]),
            client_order_id=str(d.get("client_order_id") or ""),
            ticker=str(d["ticker"]),
            outcome_side=outcome,
            book_side=book_side,
            status=str(d["status"]),
            yes_price=yes,
            no_price=(
                _price(d, "no_price_dollars", "no_price")
                if d.get("no_price_dollars") is not None or d.get("no_price") is not None
                else Price(PRICE_SCALE - yes)  # user_order frames carry the YES price only
            ),
            fill_count=fill,
            remaining_count=remaining,
            initial_count=_count(d, "initial_count_fp", "initial_count") or Qty(fill + remaining),
            taker_fill_cost=_money(d, "taker_fill_cost_dollars", "taker_fill_cost"),
            maker_fill_cost=_money(d, "maker_fill_cost_dollars", "maker_fill_cost"),
            taker_fees=_money(d, "taker_fees_dollars", "taker_fees"),
            maker_fees=_money(d, "maker_fees_dollars", "maker_fees"),
            created_time=_time(d.get("created_time")),
        )


@dataclass(frozen=True, slots=True)
class KalshiFill:
    fill_id: str
    trade_id: str
    order_id: str
    ticker: str
    outcome_side: Outcome
    book_side: str
    count: Qty
    yes_price: Price
    no_price: Price
    is_taker: bool
    fee_cost: Money
    ts_ns: int

    @property
    def price(self) -> Price:
        """What was paid for the outcome bought."""
        return self.yes_price if self.outcome_side is Outcome.YES else self.no_price

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KalshiFill:
        outcome = _OUTCOMES[str(d.get("outcome_side") or d.get("side"))]
        if "outcome_side" not in d and d.get("action") == "sell":
            outcome = outcome.opposite
        ts = d.get("ts")
        created = _time(d.get("created_time"))
        # the most precise stamp first: ``ts`` is whole seconds, which would put a fill
        # before an instant inside the same second (reconciliation compares them)
        if type(d.get("ts_ms")) is int:
            ts_ns = d["ts_ms"] * 1_000_000
        elif created is not None:
            ts_ns = (created - _EPOCH) // timedelta(microseconds=1) * 1_000
        elif type(ts) is int:
            ts_ns = ts * 1_000_000_000
        else:
            ts_ns = 0
        yes = _price(d, "yes_price_dollars", "yes_price")
        no_v = d.get("no_price_dollars")
        return cls(
            fill_id=str(d.get("fill_id") or d.get("trade_id") or ""),
            trade_id=str(d.get("trade_id") or ""),
            order_id=str(d["order_id"]),
            ticker=str(d.get("market_ticker") or d["ticker"]),
            outcome_side=outcome,
            book_side=str(d.get("book_side") or ("bid" if outcome is Outcome.YES else "ask")),
            count=_count(d, "count_fp", "count"),
            yes_price=yes,
            no_price=parse_price(no_v) if no_v is not None else Price(PRICE_SCALE - yes),
            is_taker=bool(d.get("is_taker")),
            fee_cost=_money(d, "fee_cost"),
            ts_ns=ts_ns,
        )


def _multiplier(v: object, key: str) -> Decimal:
    """``fee_multiplier`` is a JSON number on the wire: read it exactly as printed."""
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise KalshiApiError(0, "bad_field", f"{key}: {v!r} is not a number")
    try:
        return Decimal(str(v))
    except ArithmeticError:
        raise KalshiApiError(0, "bad_field", f"{key}: {v!r} is not a number") from None


@dataclass(frozen=True, slots=True)
class KalshiSeriesFee:
    """A series' fee schedule (``GET /series/{t}``) or a scheduled change of it."""

    series_ticker: str
    fee_type: str
    fee_multiplier: Decimal
    scheduled_ns: int = 0  # 0: in force now

    @classmethod
    def from_json(cls, d: dict[str, Any], series: str = "") -> KalshiSeriesFee:
        when = _time(d.get("scheduled_ts"))
        return cls(
            str(d.get("series_ticker") or d.get("ticker") or series),
            str(d.get("fee_type") or ""),
            _multiplier(d.get("fee_multiplier", 1), "fee_multiplier"),
            (when - _EPOCH) // timedelta(microseconds=1) * 1_000 if when else 0,
        )


@dataclass(frozen=True, slots=True)
class KalshiSettlement:
    """One row of ``/portfolio/settlements``: what a market paid this account."""

    ticker: str
    market_result: str
    yes_count: Qty
    yes_total_cost: Money
    no_count: Qty
    no_total_cost: Money
    revenue: Money  # paid out (the venue sends whole cents)
    fee_cost: Money
    settled_ns: int

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KalshiSettlement:
        settled = _time(d.get("settled_time"))
        return cls(
            ticker=str(d["ticker"]),
            market_result=str(d.get("market_result") or ""),
            yes_count=_count(d, "yes_count_fp", "yes_count"),
            yes_total_cost=_money(d, "yes_total_cost_dollars", "yes_total_cost"),
            no_count=_count(d, "no_count_fp", "no_count"),
            no_total_cost=_money(d, "no_total_cost_dollars", "no_total_cost"),
            revenue=Money(int(d.get("revenue") or 0) * 10_000),
            fee_cost=parse_money(d.get("fee_cost") or "0", "fee_cost"),
            settled_ns=(settled - _EPOCH) // timedelta(microseconds=1) * 1_000 if settled else 0,
        )


@dataclass(frozen=True, slots=True)
class MarketPosition:
    ticker: str
    position: Qty  # signed: + YES, − NO
    total_traded: Money
    market_exposure: Money
    realized_pnl: Money
    fees_paid: Money

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MarketPosition:
        return cls(
            ticker=str(d["ticker"]),
            position=_count(d, "position_fp", "position", signed=True),
            total_traded=_money(d, "total_traded_dollars", "total_traded"),
            market_exposure=_money(d, "market_exposure_dollars", "market_exposure"),
            realized_pnl=_money(d, "realized_pnl_dollars", "realized_pnl"),
            fees_paid=_money(d, "fees_paid_dollars", "fees_paid"),
        )


@dataclass(frozen=True, slots=True)
class Balance:
    balance: Money
    portfolio_value_cents: int
    updated_ts: int
    # balance_breakdown: the available balance per exchange shard (exchange_index)
    balance_breakdown: tuple[tuple[int, Money], ...] = ()

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Balance:
        if d.get("balance_dollars") is not None:
            bal = parse_money(d["balance_dollars"], "balance_dollars")
        else:
            bal = Money(int(d["balance"]) * 10_000)
        shards = tuple(
            (int(b["exchange_index"]), parse_money(b["balance"], "balance_breakdown.balance"))
            for b in d.get("balance_breakdown") or ()
        )
        return cls(bal, int(d.get("portfolio_value") or 0), int(d.get("updated_ts") or 0), shards)

    @property
    def spendable(self) -> Money:
        """What one order can be sure to use. An order spends on its market's shard, and a
        market does not say which shard it is on, so the safe reading is the smallest
        shard's balance (never more than the total)."""
        if not self.balance_breakdown:
            return self.balance
        return Money(min(self.balance, *(b for _, b in self.balance_breakdown)))


@dataclass(frozen=True, slots=True)
class KalshiMarket:
    ticker: str
    event_ticker: str
    status: str
    open_time: datetime | None
    close_time: datetime | None
    price_level_structure: str
    price_ranges: tuple[tuple[Price, Price, Price], ...]  # (start, end, step)
    yes_bid: Price
    yes_ask: Price
    no_bid: Price
    no_ask: Price
    raw: dict[str, Any]
    expected_expiration_time: datetime | None = None
    result: str = ""  # "yes" | "no" | "scalar" once determined
    settlement_value: Money | None = None  # per YES contract, once determined

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KalshiMarket:
        ranges = tuple(
            (
                _quote(r["start"], "start"),
                _quote(r["end"], "end"),
                _quote(r["step"], "step"),
            )
            for r in d.get("price_ranges") or ()
        )

        def q(key: str, legacy: str) -> Price:
            if d.get(key) is not None:
                return _quote(d[key], key)
            if type(d.get(legacy)) is int:
                return Price(d[legacy] * 100)
            return Price(0)

        return cls(
            ticker=str(d["ticker"]),
            event_ticker=str(d.get("event_ticker") or ""),
            status=str(d.get("status") or ""),
            open_time=_time(d.get("open_time")),
            close_time=_time(d.get("close_time")),
            price_level_structure=str(d.get("price_level_structure") or ""),
            price_ranges=ranges,
            yes_bid=q("yes_bid_dollars", "yes_bid"),
            yes_ask=q("yes_ask_dollars", "yes_ask"),
            no_bid=q("no_bid_dollars", "no_bid"),
            no_ask=q("no_ask_dollars", "no_ask"),
            raw=d,
            expected_expiration_time=_time(d.get("expected_expiration_time")),
            result=str(d.get("result") or ""),
            settlement_value=(
                parse_money(d["settlement_value_dollars"], "settlement_value_dollars")
                if d.get("settlement_value_dollars") is not None
                else None
            ),
        )


@dataclass(frozen=True, slots=True)
class Orderbook:
    """Bids only, ascending like the wire (best bid last), NO in NO-leg prices."""

    yes: tuple[tuple[Price, Qty], ...]
    no: tuple[tuple[Price, Qty], ...]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Orderbook:
        ob = d.get("orderbook_fp")
        if isinstance(ob, dict):
            yes, no = ob.get("yes_dollars") or [], ob.get("no_dollars") or []
        else:  # legacy {"orderbook": {"yes": [[cents, n]], "yes_dollars": ...}}
            ob = d.get("orderbook") or {}
            yes = ob.get("yes_dollars") or [[f"0.{c:02d}", n] for c, n in ob.get("yes") or []]
            no = ob.get("no_dollars") or [[f"0.{c:02d}", n] for c, n in ob.get("no") or []]

        def lv(rows: list[Any]) -> tuple[tuple[Price, Qty], ...]:
            out = [(parse_price(p), parse_qty(q)) for p, q in rows]
            return tuple(sorted(out))

        return cls(lv(yes), lv(no))


# ------------------------------------------------------------------- rate limiting -----


class TokenBucket:
    """Refills ``rate_per_s`` tokens per second up to ``capacity``; ``acquire`` waits."""

    def __init__(self, rate_per_s: float, capacity: float | None = None) -> None:
        self.rate = rate_per_s
        self.capacity = capacity if capacity is not None else max(1.0, rate_per_s)
        self.tokens = self.capacity
        self.t = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, cost: float = 1.0) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.t) * self.rate)
                self.t = now
                if self.tokens >= cost:
                    self.tokens -= cost
                    return
                await asyncio.sleep((cost - self.tokens) / self.rate)


# ------------------------------------------------------------------------ client -------


class KalshiRestClient:
    def __init__(
        self,
        base_url: str,
        auth: KalshiAuth,
        *,
        read_tokens_per_s: float = 20.0,
        write_tokens_per_s: float = 10.0,
        timeout_s: float = 10.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
        max_connections: int = 8,
        event_hooks: dict[str, list[Any]] | None = None,
        presign_orders: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._path_prefix = urlsplit(self.base_url).path
        self.auth = auth
        self.read_bucket = TokenBucket(read_tokens_per_s)
        self.write_bucket = TokenBucket(write_tokens_per_s)
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.rate_limited = 0  # 429s seen
        self.retries = 0
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=60.0,
            ),
            headers={"Accept": "application/json"},
            event_hooks=event_hooks or {},
        )
        self._presigning = presign_orders
        if presign_orders:
            auth.presign("POST", self._path_prefix + "/portfolio/events/orders")

    async def aclose(self) -> None:
        if self._presigning:
            self._presigning = False
            self.auth.stop_presign()
        await self._http.aclose()

    async def __aenter__(self) -> KalshiRestClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"KalshiRestClient({self.base_url!r}, auth={self.auth!r})"

    def _backoff(self, attempt: int) -> float:
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        return random.uniform(cap / 2, cap)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> Any:
        """``on_sent(time.time_ns())`` is called when the request bytes are handed to the
        socket (each attempt, so the last call is the attempt that was answered)."""
        write = method != "GET"
        extensions: dict[str, Any] | None = None
        if on_sent is not None:

            async def trace(event: str, info: dict[str, Any]) -> None:
                if event == "http11.send_request_headers.started":
                    on_sent(time.time_ns())

            extensions = {"trace": trace}
        bucket = self.write_bucket if write else self.read_bucket
        content = orjson.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else {}
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            retry_after_s = 0.0
            await bucket.acquire()
            headers.update(self.auth.headers(method, self._path_prefix + path))
            try:
                resp = await self._http.request(
                    method,
                    path,
                    params=clean,
                    content=content,
                    headers=headers,
                    extensions=extensions,
                )
            except httpx.ConnectError as exc:
                # Nothing reached the venue: safe to retry even a write.
                if attempt >= self.max_retries:
                    raise KalshiApiError(0, "connect_error", str(exc)) from exc
            except httpx.TransportError as exc:
                if write or attempt >= self.max_retries:
                    raise KalshiApiError(0, type(exc).__name__, str(exc)) from exc
            else:
                if resp.status_code < 300:
                    return orjson.loads(resp.content) if resp.content else {}
                err = KalshiApiError.from_response(resp.status_code, resp.content)
                if resp.status_code == 429:
                    self.rate_limited += 1
                    if attempt >= self.max_retries:
                        raise err
                    ra = resp.headers.get("Retry-After", "")
                    if ra.isdigit():  # Kalshi sends none today; honour one if it appears
                        retry_after_s = min(float(ra), self.backoff_max_s)
                elif write or resp.status_code < 500 or attempt >= self.max_retries:
                    raise err
                log.debug("kalshi %s %s → %s; retrying", method, path, resp.status_code)
            self.retries += 1
            await asyncio.sleep(max(retry_after_s, self._backoff(attempt)))
            attempt += 1

    # --------------------------------------------------------------- orders -------

    async def create_order_v2(
        self,
        *,
        ticker: str,
        side: str,
        count: Qty,
        price: Price,
        time_in_force: str,
        client_order_id: str,
        self_trade_prevention_type: str = "taker_at_cross",
        post_only: bool | None = None,
        reduce_only: bool | None = None,
        on_sent: Callable[[int], None] | None = None,
    ) -> CreateOrderResult:
        """``side`` is the YES book side: "bid" buys YES at ``price``; "ask" sells YES at
        ``price`` (≡ buys NO at 1 − price)."""
        body: dict[str, Any] = {
            "ticker": ticker,
            "client_order_id": client_order_id,
            "side": side,
            "count": qty_str(count),
            "price": price_str(price),
            "time_in_force": time_in_force,
            "self_trade_prevention_type": self_trade_prevention_type,
        }
        if post_only is not None:
            body["post_only"] = post_only
        if reduce_only is not None:
            body["reduce_only"] = reduce_only
        d = await self.request("POST", "/portfolio/events/orders", body=body, on_sent=on_sent)
        return CreateOrderResult.from_json(d)

    async def cancel_order(self, order_id: str, *, ticker: str | None = None) -> CancelResult:
        d = await self.request(
            "DELETE", f"/portfolio/events/orders/{order_id}", params={"market_ticker": ticker}
        )
        return CancelResult(
            str(d["order_id"]),
            str(d.get("client_order_id") or ""),
            _count(d, "reduced_by", "reduced_by_fp"),
            int(d.get("ts_ms") or 0),
        )

    async def get_order(self, order_id: str) -> KalshiOrder:
        d = await self.request("GET", f"/portfolio/orders/{order_id}")
        return KalshiOrder.from_json(d["order"])

    async def get_orders(
        self,
        *,
        ticker: str | None = None,
        status: str | None = None,
        limit: int = 1000,
        max_pages: int = 20,
        historical: bool = False,
    ) -> list[KalshiOrder]:
        """``historical=True`` reads ``/historical/orders`` (orders canceled/executed before
        the cutoff, see :meth:`get_historical_cutoff`)."""
        out: list[KalshiOrder] = []
        cursor: str | None = None
        path = "/historical/orders" if historical else "/portfolio/orders"
        for _ in range(max_pages):
            params = {"ticker": ticker, "limit": limit, "cursor": cursor}
            if not historical:
                params["status"] = status
            d = await self.request("GET", path, params=params)
            out.extend(KalshiOrder.from_json(o) for o in d.get("orders") or [])
            cursor = d.get("cursor") or None
            if not cursor:
                break
        return out

    async def find_order_by_client_id(
        self, client_order_id: str, *, ticker: str | None = None, historical: bool = False
    ) -> KalshiOrder | None:
        """The API has no client_order_id filter: list (optionally per ticker) and match."""
        for o in await self.get_orders(ticker=ticker, historical=historical):
            if o.client_order_id == client_order_id:
                return o
        return None

    async def get_historical_cutoff(self) -> dict[str, datetime | None]:
        """``orders_updated_ts``, ``trades_created_ts``, ... as datetimes."""
        d = await self.request("GET", "/historical/cutoff")
        return {k: _time(v) for k, v in d.items()}

    async def get_fills(
        self,
        *,
        ticker: str | None = None,
        order_id: str | None = None,
        limit: int = 1000,
        max_pages: int = 20,
        historical: bool = False,
    ) -> list[KalshiFill]:
        """``historical=True`` reads ``/historical/fills`` (no ``order_id`` filter there:
        filter the result by ``order_id`` yourself)."""
        out: list[KalshiFill] = []
        cursor: str | None = None
        path = "/historical/fills" if historical else "/portfolio/fills"
        for _ in range(max_pages):
            params = {"ticker": ticker, "limit": limit, "cursor": cursor}
            if not historical:
                params["order_id"] = order_id
            d = await self.request("GET", path, params=params)
            out.extend(KalshiFill.from_json(f) for f in d.get("fills") or [])
            cursor = d.get("cursor") or None
            if not cursor:
                break
        return out

    async def get_positions(
        self, *, ticker: str | None = None, max_pages: int = 20
    ) -> list[MarketPosition]:
        out: list[MarketPosition] = []
        cursor: str | None = None
        for _ in range(max_pages):
            params = {"ticker": ticker, "limit": 1000, "cursor": cursor}
            d = await self.request("GET", "/portfolio/positions", params=params)
            out.extend(MarketPosition.from_json(p) for p in d.get("market_positions") or [])
            cursor = d.get("cursor") or None
            if not cursor:
                break
        return out

    async def get_balance(self) -> Balance:
        return Balance.from_json(await self.request("GET", "/portfolio/balance"))

    async def get_settlements(
        self, *, ticker: str | None = None, max_pages: int = 20
    ) -> list[KalshiSettlement]:
        out: list[KalshiSettlement] = []
        cursor: str | None = None
        for _ in range(max_pages):
            params = {"ticker": ticker, "limit": 200, "cursor": cursor}
            d = await self.request("GET", "/portfolio/settlements", params=params)
            out.extend(KalshiSettlement.from_json(x) for x in d.get("settlements") or [])
            cursor = d.get("cursor") or None
            if not cursor:
                break
        return out

    # ---------------------------------------------------------------- series -------

    async def get_series_fee(self, series_ticker: str) -> KalshiSeriesFee:
        d = await self.request("GET", f"/series/{series_ticker}")
        return KalshiSeriesFee.from_json(d["series"], series_ticker)

    async def get_series_fee_changes(self, series_ticker: str) -> list[KalshiSeriesFee]:
        """Scheduled (future) fee changes of one series."""
        d = await self.request(
            "GET", "/series/fee_changes", params={"series_ticker": series_ticker}
        )
        return [
            KalshiSeriesFee.from_json(x, series_ticker)
            for x in d.get("series_fee_change_arr") or []
        ]

    async def get_event_fee_override(self, event_ticker: str) -> KalshiSeriesFee | None:
        """The event's fee override (``GET /events/{t}``), None when it has none: it takes
        precedence over the series' fee for the event's markets."""
        d = await self.request("GET", f"/events/{event_ticker}")
        ev = d.get("event") or {}
        fee_type = ev.get("fee_type_override")
        if not fee_type:
            return None
        mult = ev.get("fee_multiplier_override")
        return KalshiSeriesFee(
            str(ev.get("series_ticker") or ""),
            str(fee_type),
            _multiplier(1 if mult is None else mult, "fee_multiplier_override"),
        )

    # ---------------------------------------------------------------- markets ------

    async def get_market(self, ticker: str) -> KalshiMarket:
        d = await self.request("GET", f"/markets/{ticker}")
        return KalshiMarket.from_json(d["market"])

    async def get_markets(
        self,
        *,
        tickers: list[str] | None = None,
        status: str | None = None,
        series_ticker: str | None = None,
        event_ticker: str | None = None,
        max_pages: int = 20,
    ) -> list[KalshiMarket]:
        out: list[KalshiMarket] = []
        cursor: str | None = None
        for _ in range(max_pages):
            params = {
                "tickers": ",".join(tickers) if tickers else None,
                "status": status,
                "series_ticker": series_ticker,
                "event_ticker": event_ticker,
                "limit": 1000,
                "cursor": cursor,
            }
            d = await self.request("GET", "/markets", params=params)
            out.extend(KalshiMarket.from_json(m) for m in d.get("markets") or [])
            cursor = d.get("cursor") or None
            if not cursor:
                break
        return out

    async def get_orderbook(self, ticker: str, *, depth: int | None = None) -> Orderbook:
        d = await self.request("GET", f"/markets/{ticker}/orderbook", params={"depth": depth})
        return Orderbook.from_json(d)
