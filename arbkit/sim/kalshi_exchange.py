"""A local Kalshi exchange: REST ``/trade-api/v2`` + WebSocket ``/trade-api/ws/v2`` on one
loopback port, same wire shapes as the real API (OpenAPI 3.31 / AsyncAPI 2.0.0).

This module is the control surface tests and :mod:`arbkit.sim.local` drive (markets, keys,
fees, lifecycle, fault switches) plus auth and app wiring. The wire lives beside it:
:mod:`~arbkit.sim.kalshi_markets` (public market data), :mod:`~arbkit.sim.kalshi_portfolio`
(authenticated portfolio), :mod:`~arbkit.sim.kalshi_ws` (WebSocket), with
:mod:`~arbkit.sim.kalshi_params` (operation table, query validation) and
:mod:`~arbkit.sim.kalshi_json` (wire shapes). docs/kalshi.md lists what is simulated.

Every signed request is verified against registered public keys; operations the spec
declares without ``security`` answer unsigned requests (a request carrying any auth header
is verified all the same). Books are driven by a :class:`arbkit.sim.driver.BookSink` caller
(``set_bids``) and by users' orders through :mod:`arbkit.sim.kalshi_engine`. Fault switches
drop sockets, skip a seq, delay frames, reject/delay orders, fail the next N requests, lag
portfolio reads, lose order responses, duplicate fill frames, time out WS commands and move
old orders/fills to the historical tier.

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
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

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
from arbkit.matching.listings import KalshiListing
from arbkit.model import PRICE_SCALE, Money, Outcome, Price, Qty, money_str
from arbkit.sim.driver import BookSink
from arbkit.sim.kalshi_engine import (
    LINEAR_CENT,
    FeeSetting,
    MatchingEngine,
    OrderError,
    SimMarket,
    to_multiplier,
)
from arbkit.sim.kalshi_json import (
    error_response,
    fill_frame_json,
    json_response,
    number,
    order_json,
    position_json,
    price_ranges_json,
    settlement_value,
    user_order_json,
)
from arbkit.sim.kalshi_markets import MarketsApi
from arbkit.sim.kalshi_params import REST_PREFIX, WS_PATH, operation
from arbkit.sim.kalshi_portfolio import USER, PortfolioApi
from arbkit.sim.kalshi_ws import CHANNELS, WS_ERRORS, Conn, Sub, WsHub

log = logging.getLogger(__name__)

__all__ = [
    "CHANNELS",
    "REST_PREFIX",
    "USER",
    "WS_ERRORS",
    "WS_PATH",
    "Faults",
    "KalshiExchange",
    "execution_key",
    "leg_key",
]


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
    timeout_commands: int = 0  # the next N WS (un)subscribe/update commands get error 18


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
    """See the module docstring. Implements ``BookSink.set_bids``.

    WebSocket limits: ``ws_market_limit`` — the most markets one ``subscribe`` or
    ``update_subscription``/``add_markets`` command may add (more → error 26, nothing added;
    Kalshi states no number, None = unlimited); ``ws_max_commands`` commands per
    ``ws_command_window_s`` per connection (more → error 27; None = unlimited)."""

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
        ws_market_limit: int | None = 1_000,
        ws_max_commands: int | None = None,
        ws_command_window_s: float = 1.0,
    ) -> None:
        self.host = host
        self._shards: dict[str, dict[int, Money]] = {}  # key → balance on shards >= 1
        self.max_queue_frames = max_queue_frames
        self._port = port
        self.max_clock_skew_ms = max_clock_skew_ms
        self.heartbeat_s = heartbeat_s
        self.clock_ns = clock_ns
        self.ws_market_limit = ws_market_limit
        self.ws_max_commands = ws_max_commands
        self.ws_command_window_s = ws_command_window_s
        self.ws = WsHub(self)
        self._conns: list[Conn] = self.ws.conns  # the same list (tests read it)
        self.engine = MatchingEngine(
            FeeModel(fee_params or FeeParams()),
            netting=netting,
            on_level=self.ws.on_level,
            clock_ns=clock_ns,
            maker_fee_series=maker_fee_series,
        )
        self.faults = Faults()
        self._keys: dict[str, PublicKey] = {}
        self._runner: web.AppRunner | None = None
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
        self.order_hist: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self.pos_hist: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
        self._fills_flushed = 0
        self.historical_cutoff_ns: int | None = None
        self._meta_ns: dict[str, int] = {}  # ticker → last non-trading metadata change
        self.closing = asyncio.Event()
        # "METHOD /path" of requests that passed auth (unsigned public reads included)
        self.requests: Counter[str] = Counter()
        self.auth_failures: Counter[str] = Counter()
        self.ws_connections = 0
        self.frames_sent = 0
        self.ws_commands: list[Any] = []  # every parsed client command, in arrival order
        self.markets_api = MarketsApi(self)
        self.portfolio_api = PortfolioApi(self)

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
        app.router.add_get(WS_PATH, self.ws.handler)
        self.markets_api.routes(app, REST_PREFIX)
        self.portfolio_api.routes(app, REST_PREFIX)
        self.closing = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.closing.set()  # wake handlers held by a "hang" fault
        for c in list(self._conns):
            c.queue.put_nowait(None)
            with contextlib.suppress(Exception):
                await c.ws.close()
        for t in list(self.ws.tasks):
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

    def balance_breakdown(self, key_id: str) -> list[dict[str, Any]]:
        """``IndexedBalance`` rows per shard, plus ``balance_money`` (exact, not on the wire)."""
        total = self.engine.account(key_id).balance
        others = self._shards.get(key_id, {})
        shards = {0: total - sum(others.values()), **others}
        return [
            {"exchange_index": i, "balance": money_str(Money(b)), "balance_money": b}
            for i, b in sorted(shards.items())
        ]

    def metadata_updated_ns(self, ticker: str) -> int:
        """When the market's non-trading metadata last changed (``Market.updated_time``)."""
        return self._meta_ns.get(ticker, 0)

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
        listing: KalshiListing | None = None,
    ) -> None:
        """List a market; ``listing`` adds its rules text, strike fields and its event's
        settlement sources (what ``arbkit match`` reads)."""
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
        if listing is not None:
            m.listing = _listing_fields(listing)
            m.settlement_sources = listing.settlement_sources
        self.engine.add_market(m)
        self._meta_ns[ticker] = self.clock_ns()
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
            "fee_multiplier_override": number(fee.multiplier) if fee else None,
        }

        def wants(sub: Sub) -> bool:
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
        self._meta_ns[ticker] = self.clock_ns()

    # ------------------------------------------------------- market lifecycle ------

    def pause_market(self, ticker: str, paused: bool = True) -> None:
        """Trading paused (``inactive``) or resumed (``active``) on an open market."""
        try:
            changed = self.engine.pause(ticker, paused)
        finally:
            self.flush()
        if changed:
            kind = "deactivated" if paused else "activated"
            self._lifecycle(ticker, kind, is_deactivated=paused)

    def set_close_time(self, ticker: str, close_s: int) -> None:
        """Move the close time (Unix seconds); a time already passed closes it at once."""
        try:
            self.engine.set_close_time(ticker, close_s)
        finally:
            self.flush()
        self._lifecycle(ticker, "close_date_updated", close_ts=int(close_s))

    def determine(self, ticker: str, result: str) -> None:
        """The result is known ("yes" | "no"): resting orders are cancelled."""
        try:
            m = self.engine.determine(ticker, result)
        finally:
            self.flush()
        self._lifecycle(
            ticker,
            "determined",
            result=m.result,
            settlement_value=settlement_value(m.result),
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
                **{
                    k: v
                    for k, v in m.listing.items()
                    if k in ("yes_sub_title", "rules_primary", "rules_secondary")
                },
                "can_close_early": False,
                "event_ticker": m.event_ticker,
                "expected_expiration_ts": m.expected_expiration_s,
            },
            "price_level_structure": m.price_level_structure,
            "price_ranges": price_ranges_json(m),
        }

    def _lifecycle(self, ticker: str, event_type: str, **fields: Any) -> None:
        """A public ``market_lifecycle_v2`` frame to every subscription that wants ``ticker``
        (any user; an empty ``market_tickers`` filter means every market)."""
        self._meta_ns[ticker] = self.clock_ns()
        msg = {"market_ticker": ticker, "event_type": event_type, **fields}
        self._lifecycle_frame(
            "market_lifecycle_v2", msg, lambda sub: not sub.tickers or ticker in sub.tickers
        )

    def _lifecycle_frame(
        self, kind: str, msg: dict[str, Any], wants: Callable[[Sub], bool]
    ) -> None:
        """One frame of type ``kind`` on every lifecycle subscription that ``wants`` it."""
        self.ws.lifecycle_frame(kind, msg, wants)

    def _close_due(self, markets: Iterable[SimMarket]) -> None:
        """Apply close times that have passed (before every REST request: no timer)."""
        try:
            for m in markets:
                self.engine.close_if_due(m)
        finally:
            self.flush()

    def set_bids(self, market: str, outcome: Outcome, levels: Iterable[tuple[Price, Qty]]) -> None:
        try:
            self.engine.set_bids(market, outcome, levels)
        finally:
            self.flush()

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
                self.ws.kill_sub(c, sub, code)
                n += 1
        return n

    def time_out_next_commands(self, n: int = 1) -> None:
        """The next ``n`` WS subscribe / update_subscription commands answer error 18
        ("Command timeout") and change nothing."""
        self.faults.timeout_commands += n

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
                self.order_hist.setdefault(o.order_id, []).append((o.updated_ns, order_json(o)))
            for user, acct in self.engine.accounts.items():
                for t, pos in acct.positions.items():
                    self.pos_hist.setdefault((user, t), []).append(
                        (pos.updated_ns, position_json(t, pos))
                    )
        elif ms <= 0:
            self.order_hist.clear()
            self.pos_hist.clear()
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
            self.historical_cutoff_ns = None
        elif isinstance(ts, datetime):
            self.historical_cutoff_ns = int(ts.timestamp() * 1e9)
        else:
            self.historical_cutoff_ns = int(ts * 1e9)

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
            return json_response({"code": "token_authentication_failure"}, 401)
        return error_response(
            401, "authentication_error", "authentication_error", problem, wrap=True
        )

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        unmatched = request.match_info.http_exception
        if unmatched is not None:
            # Unknown path (404) or method (405): the spec's flat ErrorResponse, as JSON.
            code = "not_found" if unmatched.status == 404 else "method_not_allowed"
            resp = error_response(unmatched.status, code, unmatched.reason, request.path)
            if "Allow" in unmatched.headers:
                resp.headers["Allow"] = unmatched.headers["Allow"]
            return resp
        found = operation(request)
        public = found is not None and found[1].public
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
                return error_response(429, "too_many_requests", "too many requests", wrap=True)
            status = self.faults.fail_status
            return error_response(status, "internal_server_error", "internal error")
        try:
            return await handler(request)
        except OrderError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.details)

    # ------------------------------------------- after every engine operation ------

    def flush(self) -> None:
        """Publish what the last engine operation changed: ``user_order`` frames for changed
        orders and ``fill`` frames for new fills (to the owner only), and record the
        read-lag history."""
        now = self.clock_ns()
        lag = self.faults.read_lag_ms > 0
        dirty = self.engine.dirty
        publish = self.ws.publish
        if dirty:
            self.engine.dirty = {}
            for o in dirty.values():
                if o.order_id not in self.engine.orders:
                    continue  # refused before it was booked
                if lag:
                    self.order_hist.setdefault(o.order_id, []).append((now, order_json(o)))
                publish(o.user, "user_orders", o.ticker, "user_order", user_order_json(o))
        fills = self.engine.fills
        if self._fills_flushed < len(fills):
            new = fills[self._fills_flushed :]
            self._fills_flushed = len(fills)
            touched: set[tuple[str, str]] = set()
            for f in new:
                touched.add((f.user, f.ticker))
                body = fill_frame_json(f)
                publish(f.user, "fill", f.ticker, "fill", body)
                if self.faults.duplicate_fill_frames > 0:
                    self.faults.duplicate_fill_frames -= 1
                    publish(f.user, "fill", f.ticker, "fill", body)
            if lag:
                for user, t in touched:
                    pos = self.engine.account(user).positions.get(t)
                    if pos is not None:
                        self.pos_hist.setdefault((user, t), []).append((now, position_json(t, pos)))


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


def _listing_fields(k: KalshiListing) -> dict[str, object]:
    """A listing as Market wire fields (strikes are JSON numbers; omitted when unset)."""
    out: dict[str, object] = {
        "yes_sub_title": k.yes_sub_title or k.title,
        "no_sub_title": k.yes_sub_title or k.title,
        "rules_primary": k.rules_primary,
        "rules_secondary": k.rules_secondary,
    }
    if k.strike_type:
        out["strike_type"] = k.strike_type
    if k.floor_strike is not None:
        out["floor_strike"] = number(k.floor_strike)
    if k.cap_strike is not None:
        out["cap_strike"] = number(k.cap_strike)
    return out
