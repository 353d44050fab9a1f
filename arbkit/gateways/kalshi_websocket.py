"""Kalshi market-data WebSocket: a thin async shell around :class:`KalshiNormalizer`.

Signed handshake → ``subscribe`` to ``orderbook_delta`` (``use_yes_price`` always sent) →
every frame goes to ``on_raw`` (captures) and the normalizer, whose ticks go to ``on_ticks``
synchronously, one call per frame. Resync requests become ``update_subscription``
``get_snapshot`` (or a fresh ``subscribe`` after terminal errors). On any disconnect every
book is invalidated and the client reconnects with exponential backoff + jitter; sids and
seqs restart with the new connection. Input never kills the receive loop.

Commands leave through one sender task per connection, so venue refusals can be answered
without stalling the receive loop: markets are subscribed in chunks of ``subscribe_chunk``;
error 26 (market limit) halves the chunk and resends, 27 (too many requests) pauses every
command with growing backoff and resends, 18 (command timeout) resends after a backoff. A
watchdog re-asks for any mapped book still invalid after ``resync_retry_s`` that no command in
flight covers, so a failed subscription never leaves a book invalid for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import NormalizedTick, Venue, VenueHealth
from arbkit.normalizers.kalshi_normalizer import KalshiNormalizer, KalshiResync, LifecycleEvent

log = logging.getLogger(__name__)

LIFECYCLE = "market_lifecycle_v2"
# (events for mapped markets, gap): gap=True means "re-read every market's state".
OnLifecycle = Callable[[list[LifecycleEvent], bool], None]


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets logs every handshake header at DEBUG; the signed auth headers (key id,
    signature) must never reach a log."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if args and isinstance(args[0], str) and args[0].upper().startswith("KALSHI-ACCESS"):
            args = (args[0], "<redacted>", *args[2:])
        super().log(level, msg, *args, **kwargs)


_ws_logger = _RedactingLogger(logging.getLogger("websockets.client"), {})

CHANNEL = "orderbook_delta"
# AsyncAPI error codes the client answers by resending (see the module docstring).
ERR_UNKNOWN_SID, ERR_INVALID, ERR_TIMEOUT, ERR_MARKET_LIMIT, ERR_RATE = 7, 11, 18, 26, 27


@dataclass(slots=True)
class _Command:
    body: dict[str, Any]  # {"cmd": ..., "params": ...}; the id is given when it is sent
    tickers: tuple[str, ...] = ()  # the books that wait on it
    attempts: int = 0
    sent_at: float = 0.0  # monotonic

    def again(self, tickers: tuple[str, ...] | None = None) -> _Command:
        """The same command once more (optionally for fewer markets)."""
        if tickers is None:
            return _Command(self.body, self.tickers, self.attempts + 1)
        params = {**self.body["params"], "market_tickers": list(tickers)}
        return _Command({**self.body, "params": params}, tickers, self.attempts + 1)


class KalshiWebSocket:
    def __init__(
        self,
        ws_url: str,
        auth: KalshiAuth,
        ticker_to_symbol: Mapping[str, str],
        on_ticks: Callable[[list[NormalizedTick]], None],
        *,
        use_yes_price: bool = False,
        on_raw: Callable[[str, int], None] | None = None,
        on_lifecycle: OnLifecycle | None = None,
        reconnect_base_s: float = 0.25,
        reconnect_max_s: float = 15.0,
        ping_interval_s: float | None = 10.0,
        ping_timeout_s: float | None = 20.0,
        open_timeout_s: float = 10.0,
        resync_retry_s: float = 5.0,
        max_frame_bytes: int = 8 << 20,
        subscribe_chunk: int = 100,
        command_retry_base_s: float = 0.2,
        command_retry_max_s: float = 10.0,
    ) -> None:
        self.ws_url = ws_url
        self.auth = auth
        self.on_ticks = on_ticks
        self.on_raw = on_raw
        self.on_lifecycle = on_lifecycle
        self.use_yes_price = use_yes_price
        self.normalizer = KalshiNormalizer(ticker_to_symbol, use_yes_price=use_yes_price)
        self.health = VenueHealth(Venue.KALSHI)
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_max_s = reconnect_max_s
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.open_timeout_s = open_timeout_s
        self.resync_retry_s = resync_retry_s
        self.max_frame_bytes = max_frame_bytes
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_id = 1
        self._connected = asyncio.Event()
        self._resync_at: dict[str, float] = {}  # ticker → monotonic time of the last request
        self.last_error = ""
        self.subscribe_chunk = max(1, subscribe_chunk)  # shrinks on error 26
        self.command_retry_base_s = command_retry_base_s
        self.command_retry_max_s = command_retry_max_s
        self._outbox: asyncio.Queue[_Command] = asyncio.Queue()
        self._pending: dict[int, _Command] = {}  # command id → command, until answered
        self._cooldown_until = 0.0  # monotonic: no command leaves before (error 27)
        self._rate_strikes = 0
        self.command_errors: dict[int, int] = {}  # error code → times seen

    # ------------------------------------------------------------------ public ----

    @property
    def books_valid(self) -> dict[str, bool]:
        return self.normalizer.books_valid

    @property
    def tickers(self) -> list[str]:
        return list(self.normalizer.ticker_to_symbol)

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="kalshi-ws")

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

    async def wait_connected(self, timeout_s: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def add_markets(self, tickers: Iterable[str] | Mapping[str, str]) -> None:
        """Add markets live. A Mapping adds ticker → symbol entries; an iterable of tickers
        must already be in (or is added to) the map under the ticker's own name."""
        if isinstance(tickers, Mapping):
            pairs = dict(tickers)
        else:
            pairs = {t: self.normalizer.ticker_to_symbol.get(t, t) for t in tickers}
        new = [t for t in pairs if t not in self.normalizer.ticker_to_symbol]
        for t, s in pairs.items():
            self.normalizer.add_ticker(t, s)
        wanted = new or list(pairs)
        if self._ws is None or not wanted:
            return  # the next (re)connect subscribes everything in the map
        await self._subscribe(wanted)

    async def remove_markets(self, tickers: Iterable[str]) -> None:
        gone = [t for t in tickers if t in self.normalizer.ticker_to_symbol]
        if not gone:
            return
        sid = self.normalizer.orderbook_sid
        if self._ws is not None and sid is not None:
            await self._send(
                {
                    "cmd": "update_subscription",
                    "params": {"sid": sid, "market_tickers": gone, "action": "delete_markets"},
                }
            )
        ticks = self.normalizer.invalidate(gone, time.time_ns())
        for t in gone:
            self.normalizer.remove_ticker(t)
            self._resync_at.pop(t, None)
        self._emit(ticks)

    # ----------------------------------------------------------------- internals ----

    def _sub_params(self, tickers: list[str]) -> dict[str, Any]:
        return {
            "channels": [CHANNEL],
            "market_tickers": tickers,
            "use_yes_price": self.use_yes_price,
        }

    async def _subscribe(self, tickers: list[str], *, fresh: bool = False) -> None:
        """Books for ``tickers``, in chunks: onto the orderbook sid when there is one, with a
        new ``subscribe`` when ``fresh`` (the sid died: terminal error)."""
        sid = None if fresh else self.normalizer.orderbook_sid
        n = self.subscribe_chunk
        for i in range(0, len(tickers), n):
            chunk = tickers[i : i + n]
            if sid is None:
                body = {"cmd": "subscribe", "params": self._sub_params(chunk)}
            else:
                params = {"sid": sid, "market_tickers": chunk, "action": "add_markets"}
                body = {"cmd": "update_subscription", "params": params}
            await self._send(body, chunk)

    async def _send(self, cmd: dict[str, Any], tickers: Iterable[str] = ()) -> None:
        """Queue a command for this connection's sender (dropped when not connected)."""
        if self._ws is not None:
            self._outbox.put_nowait(_Command(cmd, tuple(tickers)))

    async def _sender(self, ws: ClientConnection) -> None:
        while True:
            c = await self._outbox.get()
            wait = self._cooldown_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            cid = self._next_id
            self._next_id += 1
            now = time.monotonic()
            for t in c.tickers:
                self._resync_at[t] = now
            c.sent_at = now
            self._pending[cid] = c
            try:
                await ws.send(orjson.dumps({"id": cid, **c.body}).decode())
            except WebSocketException as exc:
                log.warning("kalshi ws: send failed: %s", exc)
                return

    def _retry_delay(self, attempt: int) -> float:
        cap = min(self.command_retry_max_s, self.command_retry_base_s * (2**attempt))
        return random.uniform(cap / 2, cap)

    def _later(self, c: _Command) -> None:
        outbox = self._outbox

        def put() -> None:
            if self._ws is not None and self._outbox is outbox:
                outbox.put_nowait(c)

        asyncio.get_running_loop().call_later(self._retry_delay(c.attempts), put)

    def _on_reply(self, text: str) -> None:
        """Answers to our commands (they carry its ``id``): done, or a refusal to resend."""
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError:
            return
        if type(obj) is not dict or type(obj.get("id")) is not int:
            return
        c = self._pending.pop(obj["id"], None)
        if c is None:
            return
        if obj.get("type") != "error":
            self._rate_strikes = 0
            return
        msg = obj.get("msg")
        code = msg.get("code") if type(msg) is dict else None
        if type(msg) is not dict or type(code) is not int:
            return
        self.command_errors[code] = self.command_errors.get(code, 0) + 1
        if code == ERR_RATE:
            self._rate_strikes += 1
            pause = self._retry_delay(self._rate_strikes)
            self._cooldown_until = max(self._cooldown_until, time.monotonic() + pause)
            self._outbox.put_nowait(c.again())
        elif code == ERR_MARKET_LIMIT and len(c.tickers) > 1:
            self.subscribe_chunk = max(1, min(self.subscribe_chunk, len(c.tickers) // 2))
            n = self.subscribe_chunk
            for i in range(0, len(c.tickers), n):
                self._outbox.put_nowait(c.again(c.tickers[i : i + n]))
        elif code == ERR_INVALID and c.tickers and type(msg.get("market_tickers")) is list:
            # Markets the venue does not know (yet): the rest go again at once; the watchdog
            # keeps asking for the unknown ones.
            unknown = set(msg["market_tickers"])
            rest = tuple(t for t in c.tickers if t not in unknown)
            if rest and len(rest) < len(c.tickers):
                self._outbox.put_nowait(c.again(rest))
        elif code == ERR_UNKNOWN_SID and c.tickers and c.body.get("cmd") == "update_subscription":
            if c.body["params"].get("action") == "add_markets":
                body = {"cmd": "subscribe", "params": self._sub_params(list(c.tickers))}
                self._outbox.put_nowait(_Command(body, c.tickers, c.attempts + 1))
        elif code in (ERR_MARKET_LIMIT, ERR_TIMEOUT):
            self._later(c.again())  # 26 on a single market: the limit is elsewhere

    def _emit(self, ticks: list[NormalizedTick]) -> None:
        if not ticks:
            return
        self.health.ticks += len(ticks)
        try:
            self.on_ticks(ticks)
        except Exception:  # a consumer bug must not kill market data
            log.exception("kalshi ws: on_ticks raised")

    def _lifecycle(self, events: list[LifecycleEvent], *, gap: bool) -> None:
        if self.on_lifecycle is None:
            return
        try:
            self.on_lifecycle(events, gap)
        except Exception:
            log.exception("kalshi ws: on_lifecycle raised")

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
                    self._resync_at.clear()
                    self._pending.clear()
                    self._outbox = asyncio.Queue()
                    self._cooldown_until = 0.0
                    sender = asyncio.create_task(self._sender(ws))
                    self.health.connected = True
                    self._connected.set()
                    tickers = self.tickers
                    if tickers:
                        await self._subscribe(tickers)
                    if self.on_lifecycle is not None:
                        # All markets, as Kalshi documents it; the normalizer keeps ours.
                        # Whatever changed while we were away: re-read (gap=True).
                        await self._send({"cmd": "subscribe", "params": {"channels": [LIFECYCLE]}})
                        self._lifecycle([], gap=True)
                    watchdog = asyncio.create_task(self._watchdog())
                    try:
                        async for raw in ws:
                            attempt = 0
                            await self._on_frame(raw)
                    finally:
                        watchdog.cancel()
                        sender.cancel()
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                self.last_error = f"handshake rejected: HTTP {exc.response.status_code}"
                log.warning("kalshi ws: %s", self.last_error)
            except (OSError, WebSocketException, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("kalshi ws: connection lost: %s", self.last_error)
            finally:
                self._ws = None
                self._connected.clear()
                if self.health.connected:
                    self.health.connected = False
                self._emit(self.normalizer.invalidate_all(time.time_ns()))
            if self._stopping:
                break
            self.health.reconnects += 1
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1

    async def _on_frame(self, raw: str | bytes) -> None:
        recv = time.time_ns()
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        if '"id"' in text and self._pending:
            self._on_reply(text)
        if self.on_raw is not None:
            try:
                self.on_raw(text, recv)
            except Exception:
                log.exception("kalshi ws: on_raw raised")
        n = self.normalizer
        upd = n.on_message(raw, recv)
        h = self.health
        h.last_message_ns = recv
        h.bad_frames = n.bad_frames
        h.resyncs = n.resyncs
        h.extra["gaps"] = n.gaps
        h.extra["messages"] = n.messages
        self._emit(upd.ticks)
        if upd.lifecycle or upd.lifecycle_gap:
            self._lifecycle(upd.lifecycle, gap=upd.lifecycle_gap)
        for err in upd.errors:
            log.warning("kalshi ws: %s", err)
        for r in upd.resync:
            await self._resync(r)

    async def _resync(self, r: KalshiResync) -> None:
        tickers = [t for t in r.tickers if t in self.normalizer.ticker_to_symbol]
        if not tickers:
            return
        now = time.monotonic()
        for t in tickers:
            self._resync_at[t] = now
        if r.resubscribe or r.sid is None:
            await self._subscribe(tickers, fresh=r.resubscribe)
            return
        n = self.subscribe_chunk
        for i in range(0, len(tickers), n):
            chunk = tickers[i : i + n]
            params = {"sid": r.sid, "market_tickers": chunk, "action": "get_snapshot"}
            await self._send({"cmd": "update_subscription", "params": params}, chunk)

    async def _watchdog(self) -> None:
        """Re-ask for every mapped book still invalid ``resync_retry_s`` after the last ask,
        with no command in flight for it: a lost reply or a refused subscription must not
        leave a book dead."""
        while True:
            await asyncio.sleep(self.resync_retry_s)
            now = time.monotonic()
            # An answer overdue by resync_retry_s is taken as lost.
            self._pending = {
                i: c for i, c in self._pending.items() if now - c.sent_at < self.resync_retry_s
            }
            waiting = {t for c in self._pending.values() for t in c.tickers}
            late = [
                t
                for t in self.normalizer.ticker_to_symbol
                if not self.normalizer.is_valid(t)
                and t not in waiting
                and now - self._resync_at.get(t, 0.0) >= self.resync_retry_s
            ]
            self._resync_at = {
                t: at for t, at in self._resync_at.items() if not self.normalizer.is_valid(t)
            }
            by_sid: dict[int | None, list[str]] = {}
            for t in late:
                by_sid.setdefault(self.normalizer.sid_of(t), []).append(t)
            for sid, tickers in by_sid.items():
                why = "snapshot overdue"
                await self._resync(KalshiResync(sid, tuple(tickers), why, sid is None))
