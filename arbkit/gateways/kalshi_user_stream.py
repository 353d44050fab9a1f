"""Kalshi's private WebSocket channels ``fill`` and ``user_orders``: the venue's own word on
this account's executions and order updates, pushed as they happen.

Signed handshake (same headers as :mod:`kalshi_websocket`) → ``subscribe`` to both channels
(optionally per market) → every ``fill`` frame becomes one :class:`Fill` (deduplicated by
``trade_id``: a fill seen twice is delivered once), every ``user_order`` frame one
:class:`OrderResult` mapped like a REST order. Bad frames are counted and logged, never
fatal. On a disconnect it reconnects with exponential backoff + jitter and re-subscribes;
Kalshi has no replay, so fills made while disconnected come only from REST (reconciliation):
``connected``, ``reconnects`` and ``on_connect`` tell the owner when to look.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from arbkit.execution.venue import Fill, OrderResult, OrderState
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.gateways.kalshi_rest import KalshiFill, KalshiOrder
from arbkit.gateways.kalshi_websocket import _ws_logger
from arbkit.model import ConversionError, Money, Qty

log = logging.getLogger(__name__)

CHANNELS = ("fill", "user_orders")
_STATE = {
    "resting": OrderState.OPEN,
    "executed": OrderState.FILLED,
    "canceled": OrderState.CANCELLED,
}


def order_result(o: KalshiOrder, *, ack_ts_ns: int = 0, reason: str = "") -> OrderResult:
    """A Kalshi order (REST object or ``user_order`` frame) as the executor's OrderResult.
    Costs and fees come from the order's own exact ``*_dollars`` totals."""
    state = _STATE.get(o.status, OrderState.UNKNOWN)
    return OrderResult(
        client_order_id=o.client_order_id,
        venue_order_id=o.order_id,
        state=state,
        requested_qty=o.initial_count,
        filled_qty=o.fill_count,
        filled_cost=Money(o.taker_fill_cost + o.maker_fill_cost),
        fees=Money(o.taker_fees + o.maker_fees),
        reason=reason or o.status,
        ack_ts_ns=ack_ts_ns or time.time_ns(),
    )


def fill_from(f: KalshiFill, client_order_id: str, symbol: str) -> Fill:
    return Fill(
        client_order_id=client_order_id,
        venue_order_id=f.order_id,
        symbol=symbol,
        outcome=f.outcome_side,
        price=f.price,
        qty=f.count,
        fee=f.fee_cost,
        ts_ns=f.ts_ns,
        trade_id=f.trade_id,
    )


class KalshiUserStream:
    """Push this account's fills and order updates. Listeners run synchronously in the
    receive loop; an exception in one is logged and does not stop the stream."""

    def __init__(
        self,
        ws_url: str,
        auth: KalshiAuth,
        ticker_to_symbol: Mapping[str, str],
        *,
        on_fill: Callable[[Fill], None] | None = None,
        on_order: Callable[[OrderResult], None] | None = None,
        on_connect: Callable[[], None] | None = None,
        market_tickers: list[str] | None = None,
        reconnect_base_s: float = 0.25,
        reconnect_max_s: float = 15.0,
        ping_interval_s: float | None = 10.0,
        ping_timeout_s: float | None = 20.0,
        open_timeout_s: float = 10.0,
        max_frame_bytes: int = 1 << 20,
        dedupe_window: int = 200_000,
    ) -> None:
        self.ws_url = ws_url
        self.auth = auth
        self.ticker_to_symbol = dict(ticker_to_symbol)
        self.fill_listeners: list[Callable[[Fill], None]] = [on_fill] if on_fill else []
        self.order_listeners: list[Callable[[OrderResult], None]] = [on_order] if on_order else []
        self.on_connect = on_connect
        self.market_tickers = market_tickers
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_max_s = reconnect_max_s
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.open_timeout_s = open_timeout_s
        self.max_frame_bytes = max_frame_bytes
        self.dedupe_window = dedupe_window
        self._seen: OrderedDict[str, None] = OrderedDict()  # trade ids, oldest first
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._subscribed = asyncio.Event()
        self._next_id = 1
        self._acks: set[str] = set()
        # Counters.
        self.connected = False
        self.reconnects = 0
        self.bad_frames = 0
        self.duplicate_fills = 0
        self.fills_seen = 0
        self.orders_seen = 0
        self.errors: list[dict[str, Any]] = []  # error frames from the venue (kept, logged)
        self.last_error = ""

    # ------------------------------------------------------------------ public ----

    def add_listeners(
        self,
        on_fill: Callable[[Fill], None] | None = None,
        on_order: Callable[[OrderResult], None] | None = None,
    ) -> None:
        if on_fill is not None:
            self.fill_listeners.append(on_fill)
        if on_order is not None:
            self.order_listeners.append(on_order)

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="kalshi-user-stream")

    async def stop(self) -> None:
        self._stopping = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self.connected = False

    async def wait_subscribed(self, timeout_s: float = 10.0) -> None:
        """Until both channels are acknowledged on the current connection."""
        await asyncio.wait_for(self._subscribed.wait(), timeout_s)

    # --------------------------------------------------------------- internals ----

    def _backoff(self, attempt: int) -> float:
        cap = min(self.reconnect_max_s, self.reconnect_base_s * (2**attempt))
        return random.uniform(cap / 2, cap)

    async def _run(self) -> None:
        attempt = 0
        path = urlsplit(self.ws_url).path
        while not self._stopping:
            try:
                async with connect(
                    self.ws_url,
                    additional_headers=self.auth.headers("GET", path),
                    ping_interval=self.ping_interval_s,
                    ping_timeout=self.ping_timeout_s,
                    open_timeout=self.open_timeout_s,
                    max_size=self.max_frame_bytes,
                    compression=None,
                    logger=_ws_logger,
                ) as ws:
                    self._ws = ws
                    self._next_id = 1
                    self._acks = set()
                    params: dict[str, Any] = {"channels": list(CHANNELS)}
                    if self.market_tickers:
                        params["market_tickers"] = list(self.market_tickers)
                    await ws.send(
                        orjson.dumps({"id": 1, "cmd": "subscribe", "params": params}).decode()
                    )
                    self._next_id = 2
                    self.connected = True
                    async for raw in ws:
                        attempt = 0
                        self._on_frame(raw)
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                self.last_error = f"handshake rejected: HTTP {exc.response.status_code}"
                log.warning("kalshi user stream: %s", self.last_error)
            except (OSError, WebSocketException, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("kalshi user stream: connection lost: %s", self.last_error)
            finally:
                self._ws = None
                self.connected = False
                self._subscribed.clear()
            if self._stopping:
                break
            self.reconnects += 1
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    def _bad(self, why: str, text: str) -> None:
        self.bad_frames += 1
        log.warning("kalshi user stream: bad frame (%s): %.200s", why, text)

    def _on_frame(self, raw: str | bytes) -> None:
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._bad("not JSON", text)
            return
        if type(obj) is not dict:
            self._bad("not an object", text)
            return
        kind = obj.get("type")
        msg = obj.get("msg")
        try:
            if kind == "fill" and type(msg) is dict:
                self._on_fill(msg)
            elif kind == "user_order" and type(msg) is dict:
                self._on_order(msg)
            elif kind == "subscribed" and type(msg) is dict:
                self._acks.add(str(msg.get("channel")))
                if all(c in self._acks for c in CHANNELS):
                    self._subscribed.set()
                    if self.on_connect is not None:
                        self.on_connect()
            elif kind == "error":
                self.errors.append(obj)
                log.warning("kalshi user stream: venue error %s", msg)
            elif kind in ("ok", "unsubscribed"):
                pass
            else:
                self._bad(f"unexpected type {kind!r}", text)
        except (KeyError, ValueError, TypeError, ConversionError) as exc:
            self._bad(f"{type(exc).__name__}: {exc}", text)

    def _on_fill(self, msg: dict[str, Any]) -> None:
        f = KalshiFill.from_json(msg)
        if not f.trade_id:
            raise ValueError("fill without trade_id")
        if f.count <= Qty(0):
            raise ValueError("fill with non-positive count")
        if f.trade_id in self._seen:
            self.duplicate_fills += 1
            return
        self._seen[f.trade_id] = None
        if len(self._seen) > self.dedupe_window:
            self._seen.popitem(last=False)
        self.fills_seen += 1
        fill = fill_from(
            f, str(msg.get("client_order_id") or ""), self.ticker_to_symbol.get(f.ticker, "")
        )
        for cb in self.fill_listeners:
            try:
                cb(fill)
            except Exception:
                log.exception("kalshi user stream: fill listener raised")

    def _on_order(self, msg: dict[str, Any]) -> None:
        o = KalshiOrder.from_json(msg)
        self.orders_seen += 1
        ts_ms = msg.get("last_updated_ts_ms")
        r = order_result(o, ack_ts_ns=ts_ms * 1_000_000 if type(ts_ms) is int else 0)
        for cb in self.order_listeners:
            try:
                cb(r)
            except Exception:
                log.exception("kalshi user stream: order listener raised")
