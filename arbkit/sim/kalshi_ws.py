"""WebSocket side of the local Kalshi exchange (``/trade-api/ws/v2``): sessions, the command
protocol, the ``orderbook_delta`` / private / lifecycle channels and the per-connection
limits (error 26 market limit, 27 command rate, 18 command timeout via a fault switch).

Binary frames get error 1 ("Unable to process message"): AsyncAPI says "All messages are
encoded in JSON format", lists no close code, and error 1 is its "General processing error".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web

from arbkit.model import PRICE_SCALE, price_str, qty_str
from arbkit.sim.kalshi_portfolio import USER

if TYPE_CHECKING:
    from arbkit.sim.kalshi_exchange import KalshiExchange

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
# AsyncAPI "Error Codes Reference" (6, 16, 17 are retired and never sent).
WS_ERRORS = {
    1: "Unable to process message",
    2: "Params required",
    3: "Channels required",
    4: "Subscription IDs required",
    5: "Unknown command",
    7: "Unknown subscription ID",
    8: "Unknown channel name",
    9: "Authentication required",
    10: "Channel error",
    11: "Invalid parameter",
    12: "Exactly one subscription ID is required",
    13: "Unsupported action",
    14: "Market Ticker required",
    15: "Action required",
    18: "Command timeout",
    25: "Subscription buffer overflow",
    26: "Subscription market limit exceeded",
    27: "Too many requests",
}
# "market_id/market_ids ... (ticker only)" (subscribeCommandPayload).
_ID_CHANNELS = frozenset({"ticker"})


@dataclass(slots=True)
class Sub:
    sid: int
    channel: str
    tickers: list[str] = field(default_factory=list)
    seq: int = 0
    use_yes_price: bool = False
    skip_ticker_ack: bool = False
    by_id: bool = False


@dataclass(slots=True)
class Conn:
    user: str
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    subs: dict[int, Sub] = field(default_factory=dict)
    next_sid: int = 1
    pongs: int = 0
    command_times: deque[float] = field(default_factory=deque)


class _Refused(Exception):
    def __init__(self, code: int, **extra: Any) -> None:
        super().__init__(code)
        self.code = code
        self.extra = extra


class WsHub:
    """Every open session; publishing helpers the exchange calls after engine changes."""

    def __init__(self, ex: KalshiExchange) -> None:
        self.ex = ex
        self.conns: list[Conn] = []
        self.tasks: set[asyncio.Task[None]] = set()

    # --------------------------------------------------------------- sessions -----

    async def handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False, max_msg_size=1 << 20)
        await ws.prepare(request)
        transport = request.transport
        conn = Conn(
            user=request[USER],
            ws=ws,
            transport=transport if isinstance(transport, asyncio.Transport) else None,
        )
        self.conns.append(conn)
        self.ex.ws_connections += 1
        writer = asyncio.create_task(self._writer(conn))
        pinger = asyncio.create_task(self._pinger(conn))
        self.tasks.update((writer, pinger))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.on_command(conn, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self.ws_error(conn, None, 1)
                elif msg.type == WSMsgType.PING:
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    conn.pongs += 1
                elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.conns.remove(conn)
            conn.queue.put_nowait(None)
            pinger.cancel()
            self.tasks.discard(pinger)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, 1.0)
            self.tasks.discard(writer)
        return ws

    async def _writer(self, conn: Conn) -> None:
        while True:
            text = await conn.queue.get()
            if text is None or conn.ws.closed:
                return
            if self.ex.faults.delay_frames_ms:
                await asyncio.sleep(self.ex.faults.delay_frames_ms / 1000)
            try:
                await conn.ws.send_str(text)
                self.ex.frames_sent += 1
            except (ConnectionError, RuntimeError):
                return

    async def _pinger(self, conn: Conn) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError, asyncio.CancelledError):
            while not conn.ws.closed:
                await asyncio.sleep(self.ex.heartbeat_s)
                await conn.ws.ping(b"heartbeat")

    # ------------------------------------------------------------ primitives ------

    def send(self, conn: Conn, obj: dict[str, Any]) -> None:
        conn.queue.put_nowait(orjson.dumps(obj).decode())

    def next_seq(self, sub: Sub) -> int:
        sub.seq += 1
        if self.ex.faults.skip_seq > 0:
            self.ex.faults.skip_seq -= 1
            sub.seq += 1
        return sub.seq

    def ws_error(self, conn: Conn, cid: Any, code: int, **extra: Any) -> None:
        msg: dict[str, Any] = {"code": code, "msg": WS_ERRORS.get(code, "error")}
        msg.update(extra)
        out: dict[str, Any] = {"type": "error", "msg": msg}
        if type(cid) is int:
            out = {"id": cid, **out}
        self.send(conn, out)

    def kill_sub(self, conn: Conn, sub: Sub, code: int) -> None:
        conn.subs.pop(sub.sid, None)
        msg = {"code": code, "msg": WS_ERRORS.get(code, "error")}
        self.send(conn, {"type": "error", "sid": sub.sid, "seq": self.next_seq(sub), "msg": msg})

    # -------------------------------------------------------------- channels ------

    def snapshot(self, conn: Conn, sub: Sub, ticker: str, cid: int | None = None) -> None:
        m = self.ex.engine.markets[ticker]
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
        out["seq"] = self.next_seq(sub)
        out["msg"] = msg
        self.send(conn, out)

    def on_level(self, ticker: str, side: str, price: int, delta: int, new: int) -> None:
        """One ``orderbook_delta`` per subscription holding ``ticker``. ``client_order_id`` /
        ``subaccount``: "Present only when you caused this orderbook change" (AsyncAPI) —
        so only on the connections of the user whose order caused it."""
        if not self.conns:
            return
        m = self.ex.engine.markets[ticker]
        ts_ms = self.ex.clock_ns() // 1_000_000
        cause = self.ex.engine.cause
        for conn in self.conns:
            for sub in list(conn.subs.values()):
                if sub.channel != "orderbook_delta" or ticker not in sub.tickers:
                    continue
                if conn.queue.qsize() >= self.ex.max_queue_frames:
                    self.kill_sub(conn, sub, 25)  # slow consumer: terminal, like Kalshi
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
                    if cause.client_order_id:
                        msg["client_order_id"] = cause.client_order_id
                    if cause.subaccount:
                        msg["subaccount"] = cause.subaccount
                frame = {"type": "orderbook_delta", "sid": sub.sid, "seq": self.next_seq(sub)}
                self.send(conn, {**frame, "msg": msg})

    def publish(self, user: str, channel: str, ticker: str, kind: str, msg: dict[str, Any]) -> None:
        """A private frame to the owner's subscriptions of ``channel`` (unsequenced)."""
        ex = self.ex
        for conn in self.conns:
            if conn.user != user:
                continue
            for sub in conn.subs.values():
                if sub.channel != channel or (sub.tickers and ticker not in sub.tickers):
                    continue
                frame = {"type": kind, "sid": sub.sid, "msg": msg}
                if ex.faults.private_delay_ms:
                    delay_s = ex.faults.private_delay_ms / 1000
                    asyncio.get_running_loop().call_later(delay_s, self.send, conn, frame)
                else:
                    self.send(conn, frame)
                if kind == "fill":
                    ex.fill_frames_sent += 1
                else:
                    ex.user_order_frames_sent += 1

    def lifecycle_frame(self, kind: str, msg: dict[str, Any], wants: Callable[[Sub], bool]) -> None:
        """One frame of type ``kind`` on every ``market_lifecycle_v2`` subscription that
        ``wants`` it, sequenced per subscription (the channel's frames share the counter)."""
        for conn in self.conns:
            for sub in conn.subs.values():
                if sub.channel != "market_lifecycle_v2" or not wants(sub):
                    continue
                frame = {"type": kind, "sid": sub.sid, "seq": self.next_seq(sub), "msg": msg}
                self.send(conn, frame)

    # -------------------------------------------------------------- commands ------

    def _rate_ok(self, conn: Conn) -> bool:
        """Sliding window of ``ws_max_commands`` per ``ws_command_window_s`` per session."""
        limit = self.ex.ws_max_commands
        if limit is None:
            return True
        now = time.monotonic()
        times = conn.command_times
        while times and now - times[0] >= self.ex.ws_command_window_s:
            times.popleft()
        if len(times) >= limit:
            return False
        times.append(now)
        return True

    def on_command(self, conn: Conn, text: str) -> None:
        try:
            cmd = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.ws_error(conn, None, 1)
            return
        if type(cmd) is not dict:
            self.ws_error(conn, None, 1)
            return
        self.ex.ws_commands.append(cmd)
        cid = cmd.get("id")
        name = cmd.get("cmd")
        params = cmd.get("params")
        if not self._rate_ok(conn):
            self.ws_error(conn, cid, 27)
            return
        if name == "list_subscriptions":
            subs = [{"channel": s.channel, "sid": s.sid} for s in conn.subs.values()]
            self.send(conn, {"id": cid, "type": "ok", "msg": subs})
            return
        if name not in ("subscribe", "unsubscribe", "update_subscription"):
            self.ws_error(conn, cid, 5)
            return
        if type(params) is not dict:
            self.ws_error(conn, cid, 2)
            return
        if name != "unsubscribe" and self.ex.faults.timeout_commands > 0:
            self.ex.faults.timeout_commands -= 1
            self.ws_error(conn, cid, 18)  # nothing was applied
            return
        try:
            if name == "subscribe":
                self._subscribe(conn, cid, params)
            elif name == "unsubscribe":
                self._unsubscribe(conn, cid, params)
            else:
                self._update(conn, cid, params)
        except _Refused as r:
            self.ws_error(conn, cid, r.code, **r.extra)

    def _markets(self, params: dict[str, Any], channel: str | None) -> tuple[list[str], bool]:
        """Tickers named by ``market_ticker(s)`` or (ticker channel only) ``market_id(s)``;
        ``True`` when named by id. The four keys are mutually exclusive."""
        given = [
            k for k in ("market_ticker", "market_tickers", "market_id", "market_ids") if k in params
        ]
        if len(given) > 1:
            raise _Refused(11)
        if not given:
            return [], False
        key = given[0]
        raw = params[key]
        values = raw if key.endswith("s") else [raw]
        if type(values) is not list or not values or any(type(v) is not str for v in values):
            raise _Refused(11)
        if key.startswith("market_id"):
            if channel not in _ID_CHANNELS:
                raise _Refused(11)
            by_id = {m.market_id: t for t, m in self.ex.engine.markets.items()}
            unknown = [v for v in values if v not in by_id]
            if unknown:
                raise _Refused(11)
            return [by_id[v] for v in values], True
        return [str(v) for v in values], False

    def _check_known(self, tickers: list[str]) -> None:
        unknown = [t for t in tickers if t not in self.ex.engine.markets]
        if unknown:
            raise _Refused(11, market_tickers=unknown)

    def _check_limit(self, tickers: list[str]) -> None:
        """Error 26: one command may add at most ``ws_market_limit`` markets (refused whole)."""
        limit = self.ex.ws_market_limit
        if limit is not None and len(set(tickers)) > limit:
            raise _Refused(26)

    def _subscribe(self, conn: Conn, cid: Any, params: dict[str, Any]) -> None:
        channels = params.get("channels")
        if type(channels) is not list or not channels:
            raise _Refused(3)
        if any(ch not in CHANNELS for ch in channels):
            raise _Refused(8)
        skip_ack = params.get("skip_ticker_ack") is True
        plan: list[tuple[str, list[str], bool]] = []
        for ch in channels:  # validate every channel before changing anything
            tickers, by_id = self._markets(params, ch)
            if ch == "orderbook_delta" and not tickers:
                raise _Refused(14)
            self._check_known(tickers)
            self._check_limit(tickers)
            plan.append((ch, tickers, by_id))
        for ch, tickers, by_id in plan:
            if ch != "orderbook_delta":
                # fill / user_orders are published (owner only, optional market filter),
                # market_lifecycle_v2 to everyone (optional market filter); the others
                # are accepted for wire compatibility and stay silent.
                sub = Sub(conn.next_sid, ch, list(tickers), skip_ticker_ack=skip_ack, by_id=by_id)
                conn.next_sid += 1
                conn.subs[sub.sid] = sub
                self._subscribed(conn, cid, sub)
                continue
            existing = next((s for s in conn.subs.values() if s.channel == ch), None)
            if existing is None:
                existing = Sub(
                    conn.next_sid,
                    ch,
                    use_yes_price=params.get("use_yes_price") is True,
                    skip_ticker_ack=skip_ack,
                )
                conn.next_sid += 1
                conn.subs[existing.sid] = existing
            self._subscribed(conn, cid, existing)
            for t in tickers:
                if t not in existing.tickers:
                    existing.tickers.append(t)
                self.snapshot(conn, existing, t)

    def _subscribed(self, conn: Conn, cid: Any, sub: Sub) -> None:
        msg = {"channel": sub.channel, "sid": sub.sid}
        self.send(conn, {"id": cid, "type": "subscribed", "msg": msg})

    def _unsubscribe(self, conn: Conn, cid: Any, params: dict[str, Any]) -> None:
        sids = params.get("sids")
        if type(sids) is not list or not sids:
            raise _Refused(4)
        for sid in sids:
            sub = conn.subs.pop(sid, None) if type(sid) is int else None
            if sub is None:
                self.ws_error(conn, cid, 7)
                continue
            self.send(conn, {"id": cid, "sid": sid, "seq": sub.seq + 1, "type": "unsubscribed"})

    def _update(self, conn: Conn, cid: Any, params: dict[str, Any]) -> None:
        sid, sids = params.get("sid"), params.get("sids")
        if (sid is None) == (sids is None) or (
            sids is not None and (type(sids) is not list or len(sids) != 1)
        ):
            raise _Refused(12)
        if sid is None:
            assert type(sids) is list
            sid = sids[0]
        action = params.get("action")
        if action is None:
            raise _Refused(15)
        if action not in ("add_markets", "delete_markets", "get_snapshot"):
            raise _Refused(13)
        sub = conn.subs.get(sid) if type(sid) is int else None
        if sub is None:
            raise _Refused(7)
        tickers, _ = self._markets(params, sub.channel)
        if not tickers:
            raise _Refused(14)
        self._check_known(tickers)
        if action == "get_snapshot":
            for t in tickers:
                if t in sub.tickers:
                    self.snapshot(conn, sub, t, cid if type(cid) is int else None)
            return
        added = []
        if action == "add_markets":
            self._check_limit(tickers)
            for t in tickers:
                if t not in sub.tickers:
                    sub.tickers.append(t)
                    added.append(t)
        else:
            sub.tickers = [t for t in sub.tickers if t not in tickers]
        ok: dict[str, Any] = {"id": cid, "sid": sub.sid, "seq": self.next_seq(sub), "type": "ok"}
        if not sub.skip_ticker_ack:
            # "If true, OK responses omit the market_tickers/market_ids lists"
            ok["msg"] = {"market_tickers": list(sub.tickers)}
            if sub.by_id:
                markets = self.ex.engine.markets
                ok["msg"]["market_ids"] = [markets[t].market_id for t in sub.tickers]
        self.send(conn, ok)
        if sub.channel == "orderbook_delta":
            for t in added:
                self.snapshot(conn, sub, t)
