"""Kalshi market-data WebSocket: a thin async shell around :class:`KalshiNormalizer`.

Signed handshake → ``subscribe`` to ``orderbook_delta`` (``use_yes_price`` always sent) →
every frame goes to ``on_raw`` (captures) and the normalizer, whose ticks go to ``on_ticks``
synchronously, one call per frame. Resync requests become ``update_subscription``
``get_snapshot`` (or a fresh ``subscribe`` after terminal errors). On any disconnect every
book is invalidated and the client reconnects with exponential backoff + jitter; sids and
seqs restart with the new connection. Input never kills the receive loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
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
        sid = self.normalizer.orderbook_sid
        if sid is None:
            await self._send({"cmd": "subscribe", "params": self._sub_params(wanted)})
        else:
            await self._send(
                {
                    "cmd": "update_subscription",
                    "params": {"sid": sid, "market_tickers": wanted, "action": "add_markets"},
                }
            )

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

    async def _send(self, cmd: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return
        cmd = {"id": self._next_id, **cmd}
        self._next_id += 1
        try:
            await ws.send(orjson.dumps(cmd).decode())
        except WebSocketException as exc:
            log.warning("kalshi ws: send failed: %s", exc)

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
                    self.health.connected = True
                    self._connected.set()
                    tickers = self.tickers
                    if tickers:
                        await self._send({"cmd": "subscribe", "params": self._sub_params(tickers)})
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
        now = time.monotonic()
        for t in r.tickers:
            self._resync_at[t] = now
        tickers = [t for t in r.tickers if t in self.normalizer.ticker_to_symbol]
        if not tickers:
            return
        if r.resubscribe or r.sid is None:
            await self._send({"cmd": "subscribe", "params": self._sub_params(tickers)})
        else:
            await self._send(
                {
                    "cmd": "update_subscription",
                    "params": {"sid": r.sid, "market_tickers": tickers, "action": "get_snapshot"},
                }
            )

    async def _watchdog(self) -> None:
        """Re-ask for snapshots that never came (a lost reply must not leave a book dead)."""
        while True:
            await asyncio.sleep(self.resync_retry_s)
            now = time.monotonic()
            late = [
                t
                for t, at in self._resync_at.items()
                if now - at >= self.resync_retry_s and not self.normalizer.is_valid(t)
            ]
            self._resync_at = {
                t: at for t, at in self._resync_at.items() if not self.normalizer.is_valid(t)
            }
            if late:
                sid = self.normalizer.orderbook_sid
                await self._resync(KalshiResync(sid, tuple(late), "snapshot overdue", sid is None))
