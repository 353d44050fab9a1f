"""A local Kalshi exchange: REST ``/trade-api/v2`` + WebSocket ``/trade-api/ws/v2`` on one
loopback port, same wire shapes as the real API (OpenAPI 3.31 / AsyncAPI 2.0.0).

Every request's signature is verified against registered public keys. Books are driven by a
:class:`arbkit.sim.driver.BookSink` caller (``set_bids``) and by users' orders through the
matching engine in :mod:`arbkit.sim.kalshi_engine`. Fault switches let tests drop sockets,
skip a seq, delay frames, reject/delay orders, fail the next N requests, make portfolio reads
lag writes (``set_read_lag_ms``), lose order responses after the order landed
(``lose_next_order_responses``), duplicate ``fill`` frames, and move old orders/fills to the
historical tier (``set_historical_cutoff``).

Authenticated connections get the private channels ``fill`` and ``user_orders`` (only the
owner's orders), and ``orderbook_delta`` frames carry ``client_order_id`` (and ``subaccount``
when non-zero) on the connections of the user whose request caused the change.

Market lifecycle controls (``pause_market``, ``set_close_time``, ``determine``, ``settle``)
publish public ``market_lifecycle_v2`` frames; a market closes by itself when the clock
reaches its close time (no frame: Kalshi has no "closed" event). Settling pays $1 per
winning contract and records what ``GET /portfolio/settlements`` serves.

Fee schedules: ``set_series_fee`` (Kalshi ``fee_type`` + ``fee_multiplier``, served by the
public ``GET /series/{series_ticker}``), ``schedule_fee_change`` (served by the public
``GET /series/fee_changes``; takes effect once the clock passes it) and
``set_event_fee_override`` (served by the public ``GET /events/{event_ticker}`` and published
as ``event_fee_update`` on ``market_lifecycle_v2``). The engine charges by them; series
without one keep arbkit's FeeModel. Public endpoints answer unsigned requests; a request
that carries any auth header is verified as everywhere else.

Run it alone: ``python -m arbkit.sim.kalshi_exchange --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.config.execution_loader import FeeParams
from arbkit.gateways.kalshi_auth import (
    KEY_HEADER,
    SIG_HEADER,
    TS_HEADER,
    PublicKey,
    load_public_key,
    message,
    verify,
)
from arbkit.model import (
    PRICE_SCALE,
    ConversionError,
    Money,
    Outcome,
    Price,
    Qty,
    money_str,
    parse_price,
    parse_qty,
    price_str,
    qty_str,
)
from arbkit.sim.driver import BookSink
from arbkit.sim.kalshi_engine import (
    LINEAR_CENT,
    FeeSetting,
    FillRecord,
    MatchingEngine,
    OrderError,
    SettlementRecord,
    SimMarket,
    UserOrder,
    to_multiplier,
)

log = logging.getLogger(__name__)

REST_PREFIX = "/trade-api/v2"
WS_PATH = "/trade-api/ws/v2"
CHANNELS = frozenset(
    {
        "orderbook_delta",
        "ticker",
        "trade",
        "fill",
        "market_positions",
        "market_lifecycle_v2",
        "multivariate_market_lifecycle",
        "communications",
        "order_group_updates",
        "user_orders",
        "cfbenchmarks_value",
        "cfbenchmarks_value_5hz",
        "pyth_value",
    }
)
WS_ERRORS = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Subscription IDs required",
    5: "Unknown command",
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    10: "Channel error",
    25: "Subscription buffer overflow",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
}
_MARKET_STATUS_FILTER = {
    "unopened": {"initialized"},
    "open": {"active"},
    "paused": {"inactive"},
    "closed": {"closed"},
    "settled": {"determined", "finalized", "amended", "disputed"},
}
_MONEY_PER_CENT = 10_000
USER = web.RequestKey("kalshi_user", str)  # "" on an unsigned request to a public endpoint
# Market-data endpoints that Kalshi serves without authentication (the others need a key).
_PUBLIC_PREFIXES = (REST_PREFIX + "/series/", REST_PREFIX + "/events/")


def _number(d: Decimal) -> int | float:
    """A Decimal as a JSON number (``fee_multiplier`` is ``type: number`` on the wire)."""
    return int(d) if d == d.to_integral_value() else float(d)


def _query_bool(request: web.Request, name: str) -> bool:
    v = request.query.get(name, "false").lower()
    if v not in ("true", "false"):
        raise OrderError(400, "invalid_parameters", f"{name} must be true or false")
    return v == "true"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _iso_s(s: int) -> str:
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _settlement_value(result: str) -> str:
    """A YES contract's payout in fixed-point dollars (binary markets: $1 or $0)."""
    return "1.0000" if result == "yes" else "0.0000"


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def _error(
    status: int, code: str, message: str, details: str = "", *, wrap: bool = False
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    # Observed live 401/429 bodies are wrapped in "error"; the spec's ErrorResponse is flat.
    return _json({"error": body} if wrap else body, status)


@dataclass(slots=True)
class _Sub:
    sid: int
    channel: str
    tickers: list[str] = field(default_factory=list)
    seq: int = 0
    use_yes_price: bool = False


@dataclass(slots=True)
class _Conn:
    user: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    subs: dict[int, _Sub] = field(default_factory=dict)
    next_sid: int = 1
    pongs: int = 0


@dataclass(slots=True)
class Faults:
    """Test switches; each is consumed as it fires (``read_lag_ms`` stays until changed)."""

    skip_seq: int = 0  # the next N sequenced frames each skip one seq number
    delay_frames_ms: int = 0  # every outgoing WS frame waits this long
    reject_next_orders: list[tuple[int, str, str]] = field(default_factory=list)
    delay_next_order_ms: int = 0
    fail_next_requests: int = 0
    fail_status: int = 429
    read_lag_ms: int = 0  # portfolio reads show the state as of now − lag
    lose_responses: list[str] = field(default_factory=list)  # "hang" | "reset", per create
    hang_s: float = 30.0  # how long a "hang" holds the response (or until stop)
    duplicate_fill_frames: int = 0  # the next N fill frames are each sent twice
    private_delay_ms: int = 0  # fill / user_order frames leave this much later


def leg_key(client_order_id: str) -> str:
    """``ak-<hex>-l1-0`` → ``ak-<hex>-l1``: the execution leg, without the attempt number."""
    head, sep, tail = client_order_id.rpartition("-")
    return head if sep and tail.isdigit() else client_order_id


def execution_key(client_order_id: str) -> str:
    """``ak-<hex>-l1-0`` → ``ak-<hex>``: the execution an order belongs to."""
    leg = leg_key(client_order_id)
    head, sep, _ = leg.rpartition("-")
    return head if sep else leg


class KalshiExchange:
    """See the module docstring. Implements ``BookSink.set_bids``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_clock_skew_ms: int = 5_000,
        netting: bool = True,
        fee_params: FeeParams | None = None,
        heartbeat_s: float = 10.0,
        maker_fee_series: Iterable[str] = (),
        clock_ns: Callable[[], int] = time.time_ns,
        max_queue_frames: int = 100_000,
    ) -> None:
        self.host = host
        self._shards: dict[str, dict[int, Money]] = {}  # key → balance on shards >= 1
        self.max_queue_frames = max_queue_frames
        self._port = port
        self.max_clock_skew_ms = max_clock_skew_ms
        self.heartbeat_s = heartbeat_s
        self.clock_ns = clock_ns
        self.engine = MatchingEngine(
            FeeModel(fee_params or FeeParams()),
            netting=netting,
            on_level=self._on_level,
            clock_ns=clock_ns,
            maker_fee_series=maker_fee_series,
        )
        self.faults = Faults()
        self._keys: dict[str, PublicKey] = {}
        self._conns: list[_Conn] = []
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Counters tests read. Every create POST that reached the venue counts per
        # client_order_id, including refused duplicates (409), rejects and injected failures.
        self.order_posts: Counter[str] = Counter()
        self.orders_created: Counter[str] = Counter()  # orders the engine accepted
        self.posts_by_client_order_id = self.order_posts  # the same counters, explicit names
        self.orders_created_by_client_order_id = self.orders_created
        self.lost_responses = 0
        self.fill_frames_sent = 0
        self.user_order_frames_sent = 0
        # Read-lag history: (venue time ns, JSON row) per order / per (user, ticker) position;
        # recorded only while a read lag is set.
        self._order_hist: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._pos_hist: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
        self._fills_flushed = 0
        self._historical_cutoff_ns: int | None = None
        self._closing = asyncio.Event()
        # "METHOD /path" of requests that passed auth (unsigned public reads included)
        self.requests: Counter[str] = Counter()
        self.auth_failures: Counter[str] = Counter()
        self.ws_connections = 0
        self.frames_sent = 0
        self.ws_commands: list[Any] = []  # every parsed client command, in arrival order

    # ---------------------------------------------------------------- lifecycle ----

    @property
    def port(self) -> int:
        return self._port

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self._port}{REST_PREFIX}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self._port}{WS_PATH}"

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        p = REST_PREFIX
        app.router.add_get(WS_PATH, self._ws_handler)
        app.router.add_get(p + "/exchange/status", self._exchange_status)
        app.router.add_get(p + "/markets", self._get_markets)
        app.router.add_get(p + "/markets/{ticker}", self._get_market)
        app.router.add_get(p + "/markets/{ticker}/orderbook", self._get_orderbook)
        app.router.add_get(p + "/series/fee_changes", self._get_series_fee_changes)
        app.router.add_get(p + "/series/{series_ticker}", self._get_series)
        app.router.add_get(p + "/events/{event_ticker}", self._get_event)
        app.router.add_post(p + "/portfolio/events/orders", self._create_order)
        app.router.add_delete(p + "/portfolio/events/orders/{order_id}", self._cancel_order)
        app.router.add_get(p + "/portfolio/orders", self._get_orders)
        app.router.add_get(p + "/portfolio/orders/{order_id}", self._get_order)
        app.router.add_get(p + "/portfolio/fills", self._get_fills)
        app.router.add_get(p + "/portfolio/positions", self._get_positions)
        app.router.add_get(p + "/portfolio/balance", self._get_balance)
        app.router.add_get(p + "/portfolio/settlements", self._get_settlements)
        app.router.add_get(p + "/historical/cutoff", self._get_historical_cutoff)
        app.router.add_get(p + "/historical/orders", self._get_historical_orders)
        app.router.add_get(p + "/historical/fills", self._get_historical_fills)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._closing.set()  # wake handlers held by a "hang" fault
        for c in list(self._conns):
            c.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await c.ws.close()
        for t in list(self._tasks):
            t.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------- setup (tests) ---

    def register_key(self, key_id: str, public_key_pem: str | bytes) -> None:
        self._keys[key_id] = load_public_key(public_key_pem)
        self.engine.account(key_id)

    def fund(self, key_id: str, amount: Money) -> None:
        self.engine.account(key_id).balance += amount

    def set_shards(self, key_id: str, other_shards: dict[int, Money]) -> None:
        """Put part of the balance on other exchange shards (indexes >= 1): the markets
        here trade on shard 0, so that part cannot pay for their orders."""
        self._shards[key_id] = dict(other_shards)

    def _breakdown(self, key_id: str) -> list[dict[str, Any]]:
        total = self.engine.account(key_id).balance
        others = self._shards.get(key_id, {})
        rows = [{"exchange_index": 0, "balance": money_str(Money(total - sum(others.values())))}]
        rows += [{"exchange_index": i, "balance": money_str(b)} for i, b in sorted(others.items())]
        return rows

    def add_market(
        self,
        ticker: str,
        *,
        series: str = "",
        event_ticker: str = "",
        close_time: datetime | int | None = None,
        open_time: datetime | int | None = None,
        status: str = "active",
        price_ranges: list[tuple[int, int, int]] | None = None,
        price_level_structure: str = "linear_cent",
        title: str = "",
        expected_expiration_time: datetime | int | None = None,
    ) -> None:
        now_s = self.clock_ns() // 1_000_000_000

        def secs(v: datetime | int | None, default: int) -> int:
            if v is None:
                return default
            return int(v.timestamp()) if isinstance(v, datetime) else int(v)

        ev = event_ticker or ticker.rsplit("-", 1)[0]
        close_s = secs(close_time, now_s + 30 * 86_400)
        m = SimMarket(
            ticker=ticker,
            series=series or ev.split("-", 1)[0],
            event_ticker=ev,
            status=status,
            open_time_s=secs(open_time, now_s - 86_400),
            close_time_s=close_s,
            price_ranges=price_ranges or list(LINEAR_CENT),
            price_level_structure=price_level_structure,
            title=title or ticker,
            market_id=str(uuid.uuid5(uuid.NAMESPACE_URL, "kalshi:" + ticker)),
            expected_expiration_s=secs(expected_expiration_time, close_s),
        )
        self.engine.add_market(m)
        self._lifecycle(ticker, "created", **self._created_fields(m))

    # ------------------------------------------------------------------- fees ------

    def set_series_fee(
        self, series: str, fee_type: str, multiplier: Decimal | str | int | float = 1
    ) -> None:
        """The series' fee schedule. ``fee_type``: Kalshi's ``FeeType`` (``quadratic``,
        ``quadratic_with_maker_fees``, ``quadratic_with_combo_maker_fees``, ``flat``) or any
        other string (served as given; charged like ``flat``, see the engine)."""
        self.engine.set_series_fee(series, self._fee(fee_type, multiplier))

    def schedule_fee_change(
        self, series: str, fee_type: str, multiplier: Decimal | str | int | float, at_s: int
    ) -> str:
        """A fee change taking effect at ``at_s`` (Unix seconds); returns its id."""
        return self.engine.schedule_fee_change(
            series, self._fee(fee_type, multiplier), int(at_s)
        ).change_id

    def set_event_fee_override(
        self,
        event_ticker: str,
        fee_type: str | None,
        multiplier: Decimal | str | int | float | None = 1,
    ) -> None:
        """Override the fee of one event's markets (precedence over the series); None
        clears it. Published as ``event_fee_update`` on ``market_lifecycle_v2``."""
        if not any(m.event_ticker == event_ticker for m in self.engine.markets.values()):
            raise ValueError(f"no listed market belongs to event {event_ticker!r}")
        fee = None
        if fee_type is not None:
            fee = self._fee(fee_type, 1 if multiplier is None else multiplier)
        self.engine.set_event_fee(event_ticker, fee)
        msg = {
            "event_ticker": event_ticker,
            "fee_type_override": fee.fee_type if fee else None,
            "fee_multiplier_override": _number(fee.multiplier) if fee else None,
        }

        def wants(sub: _Sub) -> bool:
            markets = self.engine.markets
            return not sub.tickers or any(
                t in markets and markets[t].event_ticker == event_ticker for t in sub.tickers
            )

        self._lifecycle_frame("event_fee_update", msg, wants)

    @staticmethod
    def _fee(fee_type: str, multiplier: Decimal | str | int | float) -> FeeSetting:
        if not isinstance(fee_type, str) or not fee_type:
            raise ValueError(f"fee_type must be a non-empty string, not {fee_type!r}")
        return FeeSetting(fee_type, to_multiplier(multiplier))

    def set_market_status(self, ticker: str, status: str) -> None:
        """Raw status switch (no lifecycle frame); the controls below are the real flows."""
        self.engine.market(ticker).status = status

    # ------------------------------------------------------- market lifecycle ------

    def pause_market(self, ticker: str, paused: bool = True) -> None:
        """Trading paused (``inactive``) or resumed (``active``) on an open market."""
        try:
            changed = self.engine.pause(ticker, paused)
        finally:
            self._flush()
        if changed:
            kind = "deactivated" if paused else "activated"
            self._lifecycle(ticker, kind, is_deactivated=paused)

    def set_close_time(self, ticker: str, close_s: int) -> None:
        """Move the close time (Unix seconds); a time already passed closes it at once."""
        try:
            self.engine.set_close_time(ticker, close_s)
        finally:
            self._flush()
        self._lifecycle(ticker, "close_date_updated", close_ts=int(close_s))

    def determine(self, ticker: str, result: str) -> None:
        """The result is known ("yes" | "no"): resting orders are cancelled."""
        try:
            m = self.engine.determine(ticker, result)
        finally:
            self._flush()
        self._lifecycle(
            ticker,
            "determined",
            result=m.result,
            settlement_value=_settlement_value(m.result),
            determination_ts=m.determined_s,
        )

    def settle(self, ticker: str) -> None:
        """Pay every holder $1 per winning contract; positions leave the portfolio."""
        self.engine.settle(ticker)
        self._lifecycle(ticker, "settled", settled_ts=self.engine.markets[ticker].settled_s)

    def _created_fields(self, m: SimMarket) -> dict[str, Any]:
        return {
            "exchange_index": 0,
            "open_ts": m.open_time_s,
            "close_ts": m.close_time_s,
            "additional_metadata": {
                "name": m.title,
                "title": m.title,
                "yes_sub_title": m.title,
                "no_sub_title": m.title,
                "rules_primary": f"Simulated market {m.ticker}.",
                "rules_secondary": "",
                "can_close_early": False,
                "event_ticker": m.event_ticker,
                "expected_expiration_ts": m.expected_expiration_s,
            },
            "price_level_structure": m.price_level_structure,
            "price_ranges": self._price_ranges_json(m),
        }

    def _lifecycle(self, ticker: str, event_type: str, **fields: Any) -> None:
        """A public ``market_lifecycle_v2`` frame to every subscription that wants ``ticker``
        (any user; an empty ``market_tickers`` filter means every market)."""
        msg = {"market_ticker": ticker, "event_type": event_type, **fields}
        self._lifecycle_frame(
            "market_lifecycle_v2", msg, lambda sub: not sub.tickers or ticker in sub.tickers
        )

    def _lifecycle_frame(
        self, kind: str, msg: dict[str, Any], wants: Callable[[_Sub], bool]
    ) -> None:
        """One frame of type ``kind`` on every ``market_lifecycle_v2`` subscription that
        ``wants`` it, sequenced per subscription (the channel's frames share the counter)."""
        for conn in self._conns:
            for sub in conn.subs.values():
                if sub.channel != "market_lifecycle_v2" or not wants(sub):
                    continue
                frame = {"type": kind, "sid": sub.sid, "seq": self._next_seq(sub), "msg": msg}
                self._send(conn, frame)

    def _close_due(self, markets: Iterable[SimMarket]) -> None:
        """Apply close times that have passed (before every REST request: no timer)."""
        try:
            for m in markets:
                self.engine.close_if_due(m)
        finally:
            self._flush()

    def set_bids(self, market: str, outcome: Outcome, levels: Iterable[tuple[Price, Qty]]) -> None:
        try:
            self.engine.set_bids(market, outcome, levels)
        finally:
            self._flush()

    # ------------------------------------------------------ per-leg counting ------

    def orders_created_by_leg(self) -> Counter[str]:
        """Orders the venue accepted per execution leg (client id without the attempt
        suffix): a retry of a leg under a NEW id shows up here as a count of 2."""
        out: Counter[str] = Counter()
        for coid, n in self.orders_created.items():
            out[leg_key(coid)] += n
        return out

    def posts_by_leg(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for coid, n in self.order_posts.items():
            out[leg_key(coid)] += n
        return out

    def orders_created_with_prefix(self, prefix: str) -> int:
        """Orders accepted whose client_order_id starts with ``prefix`` (e.g. ``ak-1f2e-l1``)."""
        return sum(n for c, n in self.orders_created.items() if c.startswith(prefix))

    def posts_with_prefix(self, prefix: str) -> int:
        return sum(n for c, n in self.order_posts.items() if c.startswith(prefix))

    # ------------------------------------------------------------- fault switches ---

    def drop_sockets(self) -> int:
        """Abort every WebSocket's TCP connection (no close handshake)."""
        n = 0
        for c in list(self._conns):
            if c.transport is not None:
                c.transport.abort()
                n += 1
        return n

    def inject_frame(self, text: str) -> None:
        """Send an arbitrary (possibly malformed) text frame to every WebSocket client."""
        for c in self._conns:
            c.queue.put_nowait(text)

    def terminal_error(self, code: int = 25) -> int:
        """Kill every orderbook subscription with a terminal error (10 or 25) as Kalshi does
        on a channel error or a slow consumer; clients must resubscribe."""
        n = 0
        for c in self._conns:
            for sub in [s for s in c.subs.values() if s.channel == "orderbook_delta"]:
                self._kill_sub(c, sub, code)
                n += 1
        return n

    def _kill_sub(self, conn: _Conn, sub: _Sub, code: int) -> None:
        conn.subs.pop(sub.sid, None)
        msg = {"code": code, "msg": WS_ERRORS.get(code, "error")}
        self._send(conn, {"type": "error", "sid": sub.sid, "seq": self._next_seq(sub), "msg": msg})

    def skip_seq(self, n: int = 1) -> None:
        self.faults.skip_seq += n

    def delay_frames(self, ms: int) -> None:
        self.faults.delay_frames_ms = ms

    def reject_next_order(
        self, status: int = 400, code: str = "order_rejected", message: str = "rejected by test"
    ) -> None:
        self.faults.reject_next_orders.append((status, code, message))

    def delay_next_order(self, ms: int) -> None:
        self.faults.delay_next_order_ms = ms

    def fail_next_requests(self, n: int, status: int = 429) -> None:
        self.faults.fail_next_requests = n
        self.faults.fail_status = status

    def set_read_lag_ms(self, ms: int) -> None:
        """Portfolio reads (``/portfolio/orders``, ``/orders/{id}``, ``/fills``,
        ``/positions``) show the state as of now − ``ms``: orders created inside the window
        are invisible, later changes are not yet shown. Creates still dedupe on
        client_order_id at once (a resend inside the window gets 409)."""
        if ms > 0 and self.faults.read_lag_ms <= 0:
            # Seed the history so orders/positions from before the switch stay visible.
            for o in self.engine.orders.values():
                self._order_hist.setdefault(o.order_id, []).append(
                    (o.updated_ns, self._order_json(o))
                )
            for user, acct in self.engine.accounts.items():
                for t, pos in acct.positions.items():
                    self._pos_hist.setdefault((user, t), []).append(
                        (pos.updated_ns, self._position_json(t, pos))
                    )
        elif ms <= 0:
            self._order_hist.clear()
            self._pos_hist.clear()
        self.faults.read_lag_ms = max(0, ms)

    def lose_next_order_responses(self, n: int = 1, mode: str = "hang") -> None:
        """The next ``n`` creates that the venue accepts are matched, but their HTTP
        response never arrives: ``hang`` holds it (past any client timeout, until
        ``faults.hang_s`` or stop, then drops the connection); ``reset`` drops the
        connection at once."""
        if mode not in ("hang", "reset"):
            raise ValueError(f"mode must be 'hang' or 'reset', not {mode!r}")
        self.faults.lose_responses.extend([mode] * n)

    def duplicate_next_fill_frames(self, n: int = 1) -> None:
        """The next ``n`` ``fill`` frames are each delivered twice (same trade_id)."""
        self.faults.duplicate_fill_frames += n

    def delay_private_frames_ms(self, ms: int) -> None:
        """``fill`` and ``user_order`` frames leave ``ms`` later than the change that caused
        them (market data is not delayed): the stream lags the write path too."""
        self.faults.private_delay_ms = max(0, ms)

    def set_historical_cutoff(self, ts: datetime | float | None) -> None:
        """Orders canceled/executed and fills made before ``ts`` (datetime or Unix seconds)
        leave ``/portfolio/*`` and are served by ``/historical/orders`` / ``/fills``.
        Resting orders always stay in ``/portfolio/orders``. None = no historical tier."""
        if ts is None:
            self._historical_cutoff_ns = None
        elif isinstance(ts, datetime):
            self._historical_cutoff_ns = int(ts.timestamp() * 1e9)
        else:
            self._historical_cutoff_ns = int(ts * 1e9)

    @property
    def pongs_received(self) -> int:
        return sum(c.pongs for c in self._conns)

    @property
    def connections(self) -> int:
        return len(self._conns)

    # ------------------------------------------------------------------ auth ------

    def _authenticate(self, request: web.Request) -> str | web.Response:
        key_id = request.headers.get(KEY_HEADER, "")
        ts = request.headers.get(TS_HEADER, "")
        sig = request.headers.get(SIG_HEADER, "")
        pub = self._keys.get(key_id)
        problem = ""
        if not key_id or not ts or not sig:
            problem = "MISSING_HEADERS"
        elif pub is None:
            problem = "NOT_FOUND"
        elif not ts.isdigit() or abs(self.clock_ns() // 1_000_000 - int(ts)) > (
            self.max_clock_skew_ms
        ):
            problem = "rpc error: code = Unauthenticated desc = TIMESTAMP_OUT_OF_RANGE"
        elif not verify(pub, sig, message(ts, request.method, request.raw_path)):
            problem = "rpc error: code = Unauthenticated desc = INCORRECT_API_KEY_SIGNATURE"
        if not problem:
            return key_id
        self.auth_failures[problem] += 1
        if request.path == WS_PATH:
            return _json({"code": "token_authentication_failure"}, 401)
        return _error(401, "authentication_error", "authentication_error", problem, wrap=True)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        public = request.method == "GET" and request.path.startswith(_PUBLIC_PREFIXES)
        signed = any(h in request.headers for h in (KEY_HEADER, SIG_HEADER, TS_HEADER))
        who = self._authenticate(request) if signed or not public else ""
        if isinstance(who, web.Response):
            return who
        request[USER] = who
        if request.path != WS_PATH:
            self._close_due(self.engine.markets.values())
        route = request.match_info.route.resource
        self.requests[f"{request.method} {route.canonical if route else request.path}"] += 1
        if request.path != WS_PATH and self.faults.fail_next_requests > 0:
            self.faults.fail_next_requests -= 1
            if request.method == "POST" and request.path.endswith("/portfolio/events/orders"):
                with contextlib.suppress(Exception):
                    body = orjson.loads(await request.read())
                    self.order_posts[str(body.get("client_order_id", ""))] += 1
            if self.faults.fail_status == 429:
                return _error(429, "too_many_requests", "too many requests", wrap=True)
            return _error(self.faults.fail_status, "internal_server_error", "internal error")
        try:
            return await handler(request)
        except OrderError as exc:
            return _error(exc.status, exc.code, exc.message, exc.details)

    # ---------------------------------------------------------- JSON shapes ---------

    def _market_json(self, m: SimMarket) -> dict[str, Any]:
        by, bn = m.best("yes"), m.best("no")
        yes_ask = PRICE_SCALE - bn if bn else PRICE_SCALE
        no_ask = PRICE_SCALE - by if by else PRICE_SCALE
        yes_bid_size = m.yes[by].total if by else 0
        yes_ask_size = m.no[bn].total if bn else 0
        now = self.clock_ns()
        return {
            "ticker": m.ticker,
            "event_ticker": m.event_ticker,
            "market_type": "binary",
            "title": m.title,
            "yes_sub_title": m.title,
            "no_sub_title": m.title,
            "created_time": _iso_s(m.open_time_s),
            "updated_time": _iso(now),
            "open_time": _iso_s(m.open_time_s),
            "close_time": _iso_s(m.close_time_s),
            "expected_expiration_time": _iso_s(m.expected_expiration_s),
            "latest_expiration_time": _iso_s(m.close_time_s + 7 * 86_400),
            "settlement_timer_seconds": 300,
            "status": m.status,
            "notional_value_dollars": "1.0000",
            "yes_bid_dollars": price_str(by),
            "yes_ask_dollars": price_str(yes_ask),
            "no_bid_dollars": price_str(bn),
            "no_ask_dollars": price_str(no_ask),
            "yes_bid_size_fp": qty_str(yes_bid_size),
            "yes_ask_size_fp": qty_str(yes_ask_size),
            "last_price_dollars": price_str(m.last_price),
            "previous_yes_bid_dollars": price_str(by),
            "previous_yes_ask_dollars": price_str(yes_ask),
            "previous_price_dollars": price_str(m.last_price),
            "volume_fp": qty_str(m.volume),
            "volume_24h_fp": qty_str(m.volume),
            "open_interest_fp": "0.00",
            "result": m.result,
            "can_close_early": False,
            "expiration_value": "",
            "rules_primary": f"Simulated market {m.ticker}.",
            "rules_secondary": "",
            "price_level_structure": m.price_level_structure,
            "price_ranges": self._price_ranges_json(m),
            "settlement_bounds_type": "default",
            "exchange_index": 0,
            **self._result_fields(m),
        }

    @staticmethod
    def _price_ranges_json(m: SimMarket) -> list[dict[str, str]]:
        return [
            {"start": price_str(a), "end": price_str(b), "step": price_str(s)}
            for a, b, s in m.price_ranges
        ]

    @staticmethod
    def _result_fields(m: SimMarket) -> dict[str, Any]:
        """Filled only after determination / settlement (omitted before, as Kalshi does)."""
        out: dict[str, Any] = {}
        if m.result:
            out["settlement_value_dollars"] = _settlement_value(m.result)
        if m.settled_s:
            out["settlement_ts"] = _iso_s(m.settled_s)
        return out

    def _settlement_json(self, r: SettlementRecord) -> dict[str, Any]:
        """OpenAPI ``Settlement``: revenue in whole cents, value = a YES contract's payout."""
        return {
            "ticker": r.ticker,
            "exchange_index": 0,
            "event_ticker": r.event_ticker,
            "market_result": r.result,
            "yes_count_fp": qty_str(r.yes_count),
            "yes_total_cost_dollars": money_str(r.yes_cost),
            "no_count_fp": qty_str(r.no_count),
            "no_total_cost_dollars": money_str(r.no_cost),
            "revenue": r.revenue // _MONEY_PER_CENT,
            "settled_time": _iso(r.ts_ns),
            "fee_cost": money_str(r.fees),
            "value": 100 if r.result == "yes" else 0,
        }

    def _order_json(self, o: UserOrder) -> dict[str, Any]:
        return {
            "order_id": o.order_id,
            "user_id": o.user,
            "client_order_id": o.client_order_id,
            "ticker": o.ticker,
            "side": o.outcome_side,
            "action": "buy",
            "outcome_side": o.outcome_side,
            "book_side": o.book_side,
            "type": "limit",
            "status": o.status,
            "yes_price_dollars": price_str(o.yes_price),
            "no_price_dollars": price_str(PRICE_SCALE - o.yes_price),
            "fill_count_fp": qty_str(o.fill),
            "remaining_count_fp": qty_str(o.remaining),
            "initial_count_fp": qty_str(o.initial),
            "taker_fill_cost_dollars": money_str(o.taker_cost),
            "maker_fill_cost_dollars": money_str(o.maker_cost),
            "taker_fees_dollars": money_str(o.taker_fees),
            "maker_fees_dollars": money_str(o.maker_fees),
            "expiration_time": None,
            "created_time": _iso(o.created_ns),
            "last_update_time": _iso(o.updated_ns),
            "self_trade_prevention_type": o.stp,
            "order_group_id": None,
            "cancel_order_on_pause": False,
            "subaccount_number": o.subaccount,
            "exchange_index": 0,
        }

    def _user_order_json(self, o: UserOrder) -> dict[str, Any]:
        """``user_order`` message body (AsyncAPI userOrderPayload)."""
        msg: dict[str, Any] = {
            "order_id": o.order_id,
            "user_id": o.user,
            "ticker": o.ticker,
            "exchange_index": 0,
            "status": o.status,
            "side": o.outcome_side,
            "is_yes": o.outcome_side == "yes",
            "outcome_side": o.outcome_side,
            "book_side": o.book_side,
            "yes_price_dollars": price_str(o.yes_price),
            "fill_count_fp": qty_str(o.fill),
            "remaining_count_fp": qty_str(o.remaining),
            "initial_count_fp": qty_str(o.initial),
            "taker_fill_cost_dollars": money_str(o.taker_cost),
            "maker_fill_cost_dollars": money_str(o.maker_cost),
            "taker_fees_dollars": money_str(o.taker_fees),
            "maker_fees_dollars": money_str(o.maker_fees),
            "client_order_id": o.client_order_id,
            "self_trade_prevention_type": o.stp,
            "created_time": _iso(o.created_ns),
            "created_ts_ms": o.created_ns // 1_000_000,
            "last_update_time": _iso(o.updated_ns),
            "last_updated_ts_ms": o.updated_ns // 1_000_000,
            "subaccount_number": o.subaccount,
        }
        if o.last_update_reason:
            msg["last_update_reason"] = o.last_update_reason
        return msg

    def _fill_frame_json(self, f: FillRecord) -> dict[str, Any]:
        """``fill`` message body (AsyncAPI fillPayload)."""
        msg: dict[str, Any] = {
            "trade_id": f.trade_id,
            "order_id": f.order_id,
            "market_ticker": f.ticker,
            "exchange_index": 0,
            "is_taker": f.is_taker,
            "side": f.outcome_side,
            "yes_price_dollars": price_str(f.yes_price),
            "count_fp": qty_str(f.count),
            "fee_cost": money_str(f.fee),
            "action": "buy",
            "ts": f.ts_ns // 1_000_000_000,
            "ts_ms": f.ts_ns // 1_000_000,
            "post_position_fp": qty_str(f.post_position),
            "purchased_side": f.outcome_side,
            "outcome_side": f.outcome_side,
            "book_side": f.book_side,
        }
        if f.client_order_id:
            msg["client_order_id"] = f.client_order_id
        if f.subaccount:
            msg["subaccount"] = f.subaccount
        return msg

    def _position_json(self, ticker: str, p: Any) -> dict[str, Any]:
        return {
            "ticker": ticker,
            "exchange_index": 0,
            "total_traded_dollars": money_str(p.total_traded),
            "position_fp": qty_str(p.net),
            "market_exposure_dollars": money_str(p.exposure),
            "realized_pnl_dollars": money_str(p.realized_pnl),
            "fees_paid_dollars": money_str(p.fees_paid),
            "last_updated_ts": _iso(p.updated_ns),
        }

    # ------------------------------------------- after every engine operation ------

    def _flush(self) -> None:
        """Publish what the last engine operation changed: ``user_order`` frames for changed
        orders and ``fill`` frames for new fills (to the owner only), and record the
        read-lag history."""
        now = self.clock_ns()
        lag = self.faults.read_lag_ms > 0
        dirty = self.engine.dirty
        if dirty:
            self.engine.dirty = {}
            for o in dirty.values():
                if o.order_id not in self.engine.orders:
                    continue  # refused before it was booked
                if lag:
                    self._order_hist.setdefault(o.order_id, []).append((now, self._order_json(o)))
                self._publish(
                    o.user, "user_orders", o.ticker, "user_order", self._user_order_json(o)
                )
        fills = self.engine.fills
        if self._fills_flushed < len(fills):
            new = fills[self._fills_flushed :]
            self._fills_flushed = len(fills)
            touched: set[tuple[str, str]] = set()
            for f in new:
                touched.add((f.user, f.ticker))
                body = self._fill_frame_json(f)
                self._publish(f.user, "fill", f.ticker, "fill", body)
                if self.faults.duplicate_fill_frames > 0:
                    self.faults.duplicate_fill_frames -= 1
                    self._publish(f.user, "fill", f.ticker, "fill", body)
            if lag:
                for user, t in touched:
                    pos = self.engine.account(user).positions.get(t)
                    if pos is not None:
                        self._pos_hist.setdefault((user, t), []).append(
                            (now, self._position_json(t, pos))
                        )

    def _publish(
        self, user: str, channel: str, ticker: str, kind: str, msg: dict[str, Any]
    ) -> None:
        for conn in self._conns:
            if conn.user != user:
                continue
            for sub in conn.subs.values():
                if sub.channel != channel or (sub.tickers and ticker not in sub.tickers):
                    continue
                frame = {"type": kind, "sid": sub.sid, "msg": msg}
                if self.faults.private_delay_ms:
                    delay_s = self.faults.private_delay_ms / 1000
                    asyncio.get_running_loop().call_later(delay_s, self._send, conn, frame)
                else:
                    self._send(conn, frame)
                if kind == "fill":
                    self.fill_frames_sent += 1
                else:
                    self.user_order_frames_sent += 1

    # ----------------------------------------------------- lagged/archived views ----

    def _lag_cut_ns(self) -> int | None:
        lag = self.faults.read_lag_ms
        return self.clock_ns() - lag * 1_000_000 if lag > 0 else None

    def _archived_order(self, o: UserOrder) -> bool:
        cut = self._historical_cutoff_ns
        return cut is not None and o.status != "resting" and o.updated_ns < cut

    def _archived_fill(self, f: FillRecord) -> bool:
        cut = self._historical_cutoff_ns
        return cut is not None and f.ts_ns < cut

    def _order_view(self, o: UserOrder, cut: int | None) -> dict[str, Any] | None:
        """The order as a read at venue time ``cut`` shows it (None: not visible yet)."""
        if cut is None:
            return self._order_json(o)
        hist = self._order_hist.get(o.order_id)
        if not hist:
            return self._order_json(o) if o.updated_ns <= cut else None
        seen = None
        for ts, row in hist:
            if ts > cut:
                break
            seen = row
        return seen

    def _fill_json(self, f: FillRecord) -> dict[str, Any]:
        return {
            "fill_id": f.fill_id,
            "exchange_index": 0,
            "trade_id": f.trade_id,
            "order_id": f.order_id,
            "ticker": f.ticker,
            "market_ticker": f.ticker,
            "side": f.outcome_side,
            "action": "buy",
            "outcome_side": f.outcome_side,
            "book_side": f.book_side,
            "count_fp": qty_str(f.count),
            "yes_price_dollars": price_str(f.yes_price),
            "no_price_dollars": price_str(PRICE_SCALE - f.yes_price),
            "is_taker": f.is_taker,
            "created_time": _iso(f.ts_ns),
            "fee_cost": money_str(f.fee),
            "subaccount_number": 0,
            "ts": f.ts_ns // 1_000_000_000,
        }

    @staticmethod
    def _page(request: web.Request, items: list[Any], default: int = 100) -> tuple[list[Any], str]:
        try:
            limit = int(request.query.get("limit", default))
            start = int(request.query.get("cursor") or 0)
        except ValueError:
            raise OrderError(400, "invalid_parameters", "bad limit or cursor") from None
        if not 1 <= limit <= 1000 or start < 0:
            raise OrderError(400, "invalid_parameters", "limit must be 1..1000")
        page = items[start : start + limit]
        nxt = start + limit
        return page, (str(nxt) if nxt < len(items) else "")

    # ---------------------------------------------------------------- REST -------

    async def _exchange_status(self, request: web.Request) -> web.Response:
        return _json({"exchange_active": True, "trading_active": True})

    async def _get_markets(self, request: web.Request) -> web.Response:
        q = request.query
        markets = list(self.engine.markets.values())
        if q.get("status"):
            wanted = _MARKET_STATUS_FILTER.get(q["status"])
            if wanted is None:
                raise OrderError(400, "invalid_parameters", "unknown status filter")
            markets = [m for m in markets if m.status in wanted]
        if q.get("tickers"):
            tickers = set(q["tickers"].split(","))
            markets = [m for m in markets if m.ticker in tickers]
        if q.get("series_ticker"):
            markets = [m for m in markets if m.series == q["series_ticker"]]
        if q.get("event_ticker"):
            markets = [m for m in markets if m.event_ticker == q["event_ticker"]]
        page, cursor = self._page(request, markets)
        return _json({"markets": [self._market_json(m) for m in page], "cursor": cursor})

    async def _get_market(self, request: web.Request) -> web.Response:
        m = self.engine.market(request.match_info["ticker"])
        return _json({"market": self._market_json(m)})

    async def _get_orderbook(self, request: web.Request) -> web.Response:
        m = self.engine.market(request.match_info["ticker"])
        try:
            depth = int(request.query.get("depth", 0))
        except ValueError:
            raise OrderError(400, "invalid_parameters", "bad depth") from None

        def side(name: str) -> list[list[str]]:
            lv = m.ladder(name)
            if depth > 0:
                lv = lv[-depth:]
            return [[price_str(p), qty_str(q)] for p, q in lv]

        return _json({"orderbook_fp": {"yes_dollars": side("yes"), "no_dollars": side("no")}})

    def _series_known(self, series: str) -> bool:
        return series in self.engine.series_fees or any(
            m.series == series for m in self.engine.markets.values()
        )

    async def _get_series(self, request: web.Request) -> web.Response:
        """OpenAPI ``GetSeriesResponse`` (every ``Series`` required field)."""
        t = request.match_info["series_ticker"]
        if not self._series_known(t):
            raise OrderError(404, "not_found", "series not found", t)
        fee = self.engine.series_fee(t)
        volume = 0
        if _query_bool(request, "include_volume"):
            volume = sum(m.volume for m in self.engine.markets.values() if m.series == t)
        series: dict[str, Any] = {
            "ticker": t,
            "frequency": "monthly",
            "title": f"Simulated series {t}",
            "category": "",
            "categories": [],
            "tags": [],
            "settlement_sources": [],
            "contract_url": "",
            "contract_terms_url": "",
            "fee_type": fee.fee_type,
            "fee_multiplier": _number(fee.multiplier),
            "additional_prohibitions": [],
            "product_metadata": {},
            "volume_fp": qty_str(Qty(volume)),
            "exchange_index": 0,
        }
        return _json({"series": series})

    async def _get_series_fee_changes(self, request: web.Request) -> web.Response:
        """OpenAPI ``GetSeriesFeeChangesResponse``: future changes only unless
        ``show_historical=true`` (then past ones too), oldest first."""
        series = request.query.get("series_ticker", "")
        historical = _query_bool(request, "show_historical")
        self.engine.apply_due_fee_changes()
        now = self.clock_ns()
        rows = [
            {
                "id": c.change_id,
                "series_ticker": c.series,
                "fee_type": c.fee.fee_type,
                "fee_multiplier": _number(c.fee.multiplier),
                "scheduled_ts": _iso_s(c.at_s),
            }
            for c in sorted(self.engine.fee_changes, key=lambda c: c.at_s)
            if (not series or c.series == series) and (historical or c.at_s * 1_000_000_000 > now)
        ]
        return _json({"series_fee_change_arr": rows})

    async def _get_event(self, request: web.Request) -> web.Response:
        """OpenAPI ``GetEventResponse``: ``EventData`` required fields, the override fields
        when an override is set (omitted otherwise: ``x-omitempty``), and the markets."""
        t = request.match_info["event_ticker"]
        markets = [m for m in self.engine.markets.values() if m.event_ticker == t]
        if not markets:
            raise OrderError(404, "not_found", "event not found", t)
        rows = [self._market_json(m) for m in markets]
        event: dict[str, Any] = {
            "event_ticker": t,
            "series_ticker": markets[0].series,
            "sub_title": "",
            "title": f"Simulated event {t}",
            "collateral_return_type": "",
            "mutually_exclusive": False,
            "category": "",
            "settlement_sources": [],
            "exchange_index": 0,
        }
        override = self.engine.event_fees.get(t)
        if override is not None:
            event["fee_type_override"] = override.fee_type
            event["fee_multiplier_override"] = _number(override.multiplier)
        if _query_bool(request, "with_nested_markets"):
            event["markets"] = rows
        return _json({"event": event, "markets": rows})

    async def _create_order(self, request: web.Request) -> web.Response:
        user = request[USER]
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise OrderError(400, "invalid_parameters", "body is not JSON") from None
        if type(body) is not dict:
            raise OrderError(400, "invalid_parameters", "body must be an object")
        coid = body.get("client_order_id") or ""
        if type(coid) is not str:
            raise OrderError(400, "invalid_parameters", "client_order_id must be a string")
        self.order_posts[coid] += 1
        missing = [
            k
            for k in (
                "ticker",
                "side",
                "count",
                "price",
                "time_in_force",
                "self_trade_prevention_type",
            )
            if k not in body
        ]
        if missing:
            raise OrderError(400, "invalid_parameters", f"missing {', '.join(missing)}")
        if self.faults.delay_next_order_ms:
            ms, self.faults.delay_next_order_ms = self.faults.delay_next_order_ms, 0
            await asyncio.sleep(ms / 1000)
        if self.faults.reject_next_orders:
            status, code, msg = self.faults.reject_next_orders.pop(0)
            raise OrderError(status, code, msg)
        try:
            count = parse_qty(body["count"], "count")
            price = parse_price(body["price"], "price")
        except ConversionError as exc:
            raise OrderError(400, "invalid_parameters", str(exc)) from None
        if body.get("self_trade_prevention_type") not in ("taker_at_cross", "maker"):
            raise OrderError(400, "invalid_parameters", "invalid self_trade_prevention_type")
        sub = body.get("subaccount", 0)
        if type(sub) is not int or not 0 <= sub <= 63:
            raise OrderError(400, "invalid_parameters", "subaccount must be 0..63")
        try:
            o = self._place(user, body, price, count, coid, sub)
        finally:
            self._flush()
        self.orders_created[coid] += 1
        if self.faults.lose_responses:
            mode = self.faults.lose_responses.pop(0)
            self.lost_responses += 1
            if mode == "hang":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self.faults.hang_s)
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPInternalServerError()  # never written: the socket is gone
        resp: dict[str, Any] = {
            "order_id": o.order_id,
            "client_order_id": o.client_order_id,
            "fill_count": qty_str(o.fill),
            "remaining_count": qty_str(o.remaining),
            "ts_ms": self.clock_ns() // 1_000_000,
        }
        if o.fill:
            cost = o.taker_cost + o.maker_cost
            own_avg = cost // o.fill  # Price units (floored)
            yes_avg = own_avg if o.book_side == "bid" else PRICE_SCALE - own_avg
            resp["average_fill_price"] = price_str(yes_avg)
            resp["average_fee_paid"] = money_str((o.taker_fees + o.maker_fees) * 100 // o.fill)
        return _json(resp, 201)

    def _place(
        self, user: str, body: dict[str, Any], price: Price, count: Qty, coid: str, sub: int
    ) -> UserOrder:
        return self.engine.place(
            user,
            ticker=str(body["ticker"]),
            book_side=str(body["side"]),
            yes_price=price,
            count=count,
            tif=str(body["time_in_force"]),
            client_order_id=coid,
            stp=str(body["self_trade_prevention_type"]),
            post_only=bool(body.get("post_only", False)),
            subaccount=sub,
        )

    async def _cancel_order(self, request: web.Request) -> web.Response:
        try:
            o, reduced = self.engine.cancel(request[USER], request.match_info["order_id"])
        finally:
            self._flush()
        return _json(
            {
                "order_id": o.order_id,
                "client_order_id": o.client_order_id,
                "reduced_by": qty_str(reduced),
                "ts_ms": self.clock_ns() // 1_000_000,
            }
        )

    def _orders_rows(self, request: web.Request, *, historical: bool) -> list[dict[str, Any]]:
        user = request[USER]
        q = request.query
        cut = None if historical else self._lag_cut_ns()
        orders = [
            o
            for o in self.engine.orders.values()
            if o.user == user and self._archived_order(o) == historical
        ]
        if q.get("ticker"):
            orders = [o for o in orders if o.ticker == q["ticker"]]
        orders.sort(key=lambda o: o.created_ns, reverse=True)
        rows = [r for r in (self._order_view(o, cut) for o in orders) if r is not None]
        if q.get("status"):
            rows = [r for r in rows if r["status"] == q["status"]]
        return rows

    async def _get_orders(self, request: web.Request) -> web.Response:
        page, cursor = self._page(request, self._orders_rows(request, historical=False))
        return _json({"orders": page, "cursor": cursor})

    async def _get_historical_orders(self, request: web.Request) -> web.Response:
        page, cursor = self._page(request, self._orders_rows(request, historical=True))
        return _json({"orders": page, "cursor": cursor})

    async def _get_order(self, request: web.Request) -> web.Response:
        o = self.engine.orders.get(request.match_info["order_id"])
        if o is None or o.user != request[USER] or self._archived_order(o):
            raise OrderError(404, "not_found", "order not found")
        row = self._order_view(o, self._lag_cut_ns())
        if row is None:
            raise OrderError(404, "not_found", "order not found")
        return _json({"order": row})

    async def _get_historical_cutoff(self, request: web.Request) -> web.Response:
        cut = self._historical_cutoff_ns or 0
        iso = _iso_s(cut // 1_000_000_000) if cut % 1_000_000_000 == 0 else _iso(cut)
        return _json(
            {
                "market_settled_ts": iso,
                "trades_created_ts": iso,
                "orders_updated_ts": iso,
                "market_positions_last_updated_ts": iso,
            }
        )

    async def _get_historical_fills(self, request: web.Request) -> web.Response:
        return self._fills_response(request, historical=True)

    async def _get_fills(self, request: web.Request) -> web.Response:
        return self._fills_response(request, historical=False)

    def _fills_response(self, request: web.Request, *, historical: bool) -> web.Response:
        user = request[USER]
        q = request.query
        cut = None if historical else self._lag_cut_ns()
        fills = [
            f
            for f in self.engine.fills
            if f.user == user
            and self._archived_fill(f) == historical
            and (cut is None or f.ts_ns <= cut)
        ]
        if q.get("ticker"):
            fills = [f for f in fills if f.ticker == q["ticker"]]
        if q.get("order_id"):
            fills = [f for f in fills if f.order_id == q["order_id"]]
        fills.reverse()  # newest first
        page, cursor = self._page(request, fills)
        return _json({"fills": [self._fill_json(f) for f in page], "cursor": cursor})

    async def _get_positions(self, request: web.Request) -> web.Response:
        user = request[USER]
        acct = self.engine.account(user)
        ticker = request.query.get("ticker")
        cut = self._lag_cut_ns()
        rows = []
        for t, p in sorted(acct.positions.items()):
            if ticker and t != ticker:
                continue
            row: dict[str, Any] | None = self._position_json(t, p)
            hist = self._pos_hist.get((user, t)) if cut is not None else None
            if cut is not None and hist:
                row = None
                for ts, r in hist:
                    if ts > cut:
                        break
                    row = r
            elif cut is not None and p.updated_ns > cut:
                row = None
            if row is not None:
                rows.append(row)
        page, cursor = self._page(request, rows)
        return _json({"market_positions": page, "event_positions": [], "cursor": cursor})

    async def _get_settlements(self, request: web.Request) -> web.Response:
        q = request.query
        rows = [r for r in self.engine.settlements if r.user == request[USER]]
        if q.get("ticker"):
            rows = [r for r in rows if r.ticker == q["ticker"]]
        if q.get("event_ticker"):
            rows = [r for r in rows if r.event_ticker == q["event_ticker"]]
        try:
            min_ts, max_ts = int(q.get("min_ts") or 0), int(q.get("max_ts") or 0)
        except ValueError:
            raise OrderError(400, "invalid_parameters", "bad min_ts or max_ts") from None
        rows = [
            r
            for r in rows
            if r.ts_ns >= min_ts * 1_000_000_000
            and (not max_ts or r.ts_ns <= max_ts * 1_000_000_000)
        ]
        rows.reverse()  # newest first
        page, cursor = self._page(request, rows)
        return _json({"settlements": [self._settlement_json(r) for r in page], "cursor": cursor})

    async def _get_balance(self, request: web.Request) -> web.Response:
        acct = self.engine.account(request[USER])
        exposure = sum(p.exposure for p in acct.positions.values())
        return _json(
            {
                "balance": acct.balance // _MONEY_PER_CENT,
                "balance_dollars": money_str(acct.balance),
                "portfolio_value": (acct.balance + exposure) // _MONEY_PER_CENT,
                "updated_ts": self.clock_ns() // 1_000_000_000,
                "balance_breakdown": self._breakdown(request[USER]),
            }
        )

    # ------------------------------------------------------------------ WS -------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        transport = request.transport
        conn = _Conn(
            user=request[USER],
            ws=ws,
            transport=transport if isinstance(transport, asyncio.Transport) else None,
        )
        self._conns.append(conn)
        self.ws_connections += 1
        writer = asyncio.create_task(self._writer(conn))
        pinger = asyncio.create_task(self._pinger(conn))
        self._tasks.update((writer, pinger))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_command(conn, msg.data)
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.pongs += 1
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.remove(conn)
            conn.queue.put_nowait(None)
            pinger.cancel()
            self._tasks.discard(pinger)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, 1.0)
            self._tasks.discard(writer)
        return ws

    async def _writer(self, conn: _Conn) -> None:
        while True:
            text = await conn.queue.get()
            if text is None or conn.ws.closed:
                return
            if self.faults.delay_frames_ms:
                await asyncio.sleep(self.faults.delay_frames_ms / 1000)
            try:
                await conn.ws.send_str(text)
                self.frames_sent += 1
            except (ConnectionError, RuntimeError):
                return

    async def _pinger(self, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.CancelledError):
            while not conn.ws.closed:
                await asyncio.sleep(self.heartbeat_s)
                await conn.ws.ping(b"heartbeat")

    def _send(self, conn: _Conn, obj: dict[str, Any]) -> None:
        conn.queue.put_nowait(orjson.dumps(obj).decode())

    def _next_seq(self, sub: _Sub) -> int:
        sub.seq += 1
        if self.faults.skip_seq > 0:
            self.faults.skip_seq -= 1
            sub.seq += 1
        return sub.seq

    def _ws_error(self, conn: _Conn, cid: Any, code: int, **extra: Any) -> None:
        msg: dict[str, Any] = {"code": code, "msg": WS_ERRORS.get(code, "error")}
        msg.update(extra)
        out: dict[str, Any] = {"type": "error", "msg": msg}
        if type(cid) is int:
            out = {"id": cid, **out}
        self._send(conn, out)

    def _snapshot(self, conn: _Conn, sub: _Sub, ticker: str, cid: int | None = None) -> None:
        m = self.engine.markets[ticker]
        msg: dict[str, Any] = {"market_ticker": ticker, "market_id": m.market_id}
        yes = m.ladder("yes")
        no = m.ladder("no")
        if sub.use_yes_price:
            no = sorted((PRICE_SCALE - p, q) for p, q in no)
        if yes:
            msg["yes_dollars_fp"] = [[price_str(p), qty_str(q)] for p, q in yes]
        if no:
            msg["no_dollars_fp"] = [[price_str(p), qty_str(q)] for p, q in no]
        out: dict[str, Any] = {"type": "orderbook_snapshot", "sid": sub.sid}
        if cid:
            out["id"] = cid
        out["seq"] = self._next_seq(sub)
        out["msg"] = msg
        self._send(conn, out)

    def _on_level(self, ticker: str, side: str, price: int, delta: int, new: int) -> None:
        if not self._conns:
            return
        m = self.engine.markets[ticker]
        ts_ms = self.clock_ns() // 1_000_000
        cause = self.engine.cause
        for conn in self._conns:
            for sub in list(conn.subs.values()):
                if sub.channel != "orderbook_delta" or ticker not in sub.tickers:
                    continue
                if conn.queue.qsize() >= self.max_queue_frames:
                    self._kill_sub(conn, sub, 25)  # slow consumer: terminal, like Kalshi
                    continue
                p = PRICE_SCALE - price if side == "no" and sub.use_yes_price else price
                msg: dict[str, Any] = {
                    "market_ticker": ticker,
                    "market_id": m.market_id,
                    "price_dollars": price_str(p),
                    "delta_fp": qty_str(delta),
                    "side": side,
                    "ts_ms": ts_ms,
                }
                if cause is not None and cause.user == conn.user:
                    # "Present only when you caused this orderbook change" (AsyncAPI).
                    if cause.client_order_id:
                        msg["client_order_id"] = cause.client_order_id
                    if cause.subaccount:
                        msg["subaccount"] = cause.subaccount
                self._send(
                    conn,
                    {
                        "type": "orderbook_delta",
                        "sid": sub.sid,
                        "seq": self._next_seq(sub),
                        "msg": msg,
                    },
                )

    def _tickers(self, params: dict[str, Any]) -> list[str] | None:
        if type(params.get("market_tickers")) is list:
            return [str(t) for t in params["market_tickers"]]
        if type(params.get("market_ticker")) is str:
            return [params["market_ticker"]]
        return None

    def _on_command(self, conn: _Conn, text: str) -> None:
        try:
            cmd = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._ws_error(conn, None, 1)
            return
        if type(cmd) is not dict:
            self._ws_error(conn, None, 1)
            return
        self.ws_commands.append(cmd)
        cid = cmd.get("id")
        name = cmd.get("cmd")
        params = cmd.get("params")
        if name == "list_subscriptions":
            subs = [{"channel": s.channel, "sid": s.sid} for s in conn.subs.values()]
            self._send(conn, {"id": cid, "type": "ok", "msg": subs})
            return
        if name not in ("subscribe", "unsubscribe", "update_subscription"):
            self._ws_error(conn, cid, 5)
            return
        if type(params) is not dict:
            self._ws_error(conn, cid, 2)
            return
        if name == "subscribe":
            self._subscribe(conn, cid, params)
        elif name == "unsubscribe":
            sids = params.get("sids")
            if type(sids) is not list or not sids:
                self._ws_error(conn, cid, 4)
                return
            for sid in sids:
                sub = conn.subs.pop(sid, None) if type(sid) is int else None
                if sub is None:
                    self._ws_error(conn, cid, 7)
                    continue
                self._send(
                    conn, {"id": cid, "sid": sid, "seq": sub.seq + 1, "type": "unsubscribed"}
                )
        else:
            self._update(conn, cid, params)

    def _subscribe(self, conn: _Conn, cid: Any, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if type(channels) is not list or not channels:
            self._ws_error(conn, cid, 3)
            return
        if any(ch not in CHANNELS for ch in channels):
            self._ws_error(conn, cid, 8)
            return
        tickers = self._tickers(params)
        for ch in channels:
            if ch != "orderbook_delta":
                # fill / user_orders are published (owner only, optional market filter),
                # market_lifecycle_v2 to everyone (optional market filter); the others
                # are accepted for wire compatibility and stay silent.
                sub = _Sub(conn.next_sid, ch, tickers=list(tickers or []))
                conn.next_sid += 1
                conn.subs[sub.sid] = sub
                self._send(
                    conn, {"id": cid, "type": "subscribed", "msg": {"channel": ch, "sid": sub.sid}}
                )
                continue
            if not tickers:
                self._ws_error(conn, cid, 14)
                return
            unknown = [t for t in tickers if t not in self.engine.markets]
            if unknown:
                self._ws_error(conn, cid, 11, market_tickers=unknown)
                return
            existing = next((s for s in conn.subs.values() if s.channel == ch), None)
            if existing is None:
                existing = _Sub(
                    conn.next_sid, ch, use_yes_price=params.get("use_yes_price") is True
                )
                conn.next_sid += 1
                conn.subs[existing.sid] = existing
            self._send(
                conn, {"id": cid, "type": "subscribed", "msg": {"channel": ch, "sid": existing.sid}}
            )
            for t in tickers:
                if t not in existing.tickers:
                    existing.tickers.append(t)
                self._snapshot(conn, existing, t)

    def _update(self, conn: _Conn, cid: Any, params: dict[str, Any]) -> None:
        sid, sids = params.get("sid"), params.get("sids")
        if (sid is None) == (sids is None) or (
            sids is not None and (type(sids) is not list or len(sids) != 1)
        ):
            self._ws_error(conn, cid, 12)
            return
        if sid is None:
            assert type(sids) is list
            sid = sids[0]
        action = params.get("action")
        if action is None:
            self._ws_error(conn, cid, 15)
            return
        if action not in ("add_markets", "delete_markets", "get_snapshot"):
            self._ws_error(conn, cid, 13)
            return
        sub = conn.subs.get(sid) if type(sid) is int else None
        if sub is None:
            self._ws_error(conn, cid, 7)
            return
        tickers = self._tickers(params)
        if not tickers:
            self._ws_error(conn, cid, 14)
            return
        unknown = [t for t in tickers if t not in self.engine.markets]
        if unknown:
            self._ws_error(conn, cid, 11, market_tickers=unknown)
            return
        if action == "get_snapshot":
            for t in tickers:
                if t in sub.tickers:
                    self._snapshot(conn, sub, t, cid if type(cid) is int else None)
            return
        added = []
        if action == "add_markets":
            for t in tickers:
                if t not in sub.tickers:
                    sub.tickers.append(t)
                    added.append(t)
        else:
            sub.tickers = [t for t in sub.tickers if t not in tickers]
        ok: dict[str, Any] = {"id": cid, "sid": sub.sid, "seq": self._next_seq(sub), "type": "ok"}
        ok["msg"] = {"market_tickers": list(sub.tickers)}
        self._send(conn, ok)
        for t in added:
            self._snapshot(conn, sub, t)


# ----------------------------------------------------------------------- main -------


def _demo_ladders(exchange: KalshiExchange, tickers: list[str]) -> None:
    for i, t in enumerate(tickers):
        exchange.add_market(t)
        mid = 4000 + 500 * (i % 4)
        exchange.set_bids(
            t, Outcome.YES, [(Price(mid - 100 * k), Qty(1000 * (k + 1))) for k in range(1, 4)]
        )
        exchange.set_bids(
            t,
            Outcome.NO,
            [(Price(PRICE_SCALE - mid - 100 * k), Qty(1000 * (k + 1))) for k in range(1, 4)],
        )


async def _serve(args: argparse.Namespace) -> None:
    from arbkit.gateways.kalshi_auth import generate_key_pair

    ex = KalshiExchange(args.host, args.port, max_clock_skew_ms=args.max_skew_ms)
    _, public_pem = generate_key_pair(args.key_file, key_type=args.key_type)
    key_id = str(uuid.uuid4())
    ex.register_key(key_id, public_pem)
    ex.fund(key_id, Money(args.fund_usd * 1_000_000))
    _demo_ladders(ex, args.market or ["KXDEMO-26DEC31-T50", "KXDEMO-26DEC31-T60"])
    await ex.start()
    print(f"Kalshi simulator on {ex.rest_url} and {ex.ws_url}")
    print(f"demo key id: {key_id}")
    print(f"private key (0600): {args.key_file}")
    print(f"export KALSHI_API_KEY_ID={key_id} KALSHI_PRIVATE_KEY_PATH={args.key_file}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await ex.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Local Kalshi exchange (REST + WS) for demos/tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument(
        "--key-file",
        default=None,
        help="where to write the demo private key (default: a fresh private temp dir, so a "
        "demo key never lands in the repository)",
    )
    ap.add_argument("--key-type", choices=["rsa", "ed25519"], default="rsa")
    ap.add_argument("--fund-usd", type=int, default=10_000)
    ap.add_argument("--max-skew-ms", type=int, default=5_000)
    ap.add_argument("--market", action="append", help="ticker to list (repeatable)")
    args = ap.parse_args(argv)
    if args.key_file is None:
        args.key_file = str(Path(tempfile.mkdtemp(prefix="arbkit-kalshi-sim-")) / "demo-key.pem")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()


if TYPE_CHECKING:  # the exchange is a BookSink (checked by mypy, free at run time)

    def _is_book_sink(x: KalshiExchange) -> BookSink:
        return x
