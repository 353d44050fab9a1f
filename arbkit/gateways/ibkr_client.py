"""IBKR ForecastEx gateway: ib_async connection, contract discovery, market data.

Thin async shell around the pure ``IbkrNormalizer``. Only ib_async's ``*Async``
coroutines and its non-blocking calls are used, so it runs inside a Jupyter kernel's
loop without nest_asyncio. TWS / IB Gateway ports: 7497 (TWS paper), 7496 (TWS live),
4002 (Gateway paper), 4001 (Gateway live).

Safety: while disconnected every mapped book is marked invalid; a contract that stays
silent past ``stale_after_ms`` is re-requested (a probe: TWS answers a new subscription
with the current top of book, which refreshes that quote) and, if still silent after
``stale_grace_ms``, marked invalid until its next quote. TWS's connectivity and farm
codes (``FEED_STATUS``) invalidate every book while market data cannot be trusted. A
heartbeat (reqCurrentTime) that goes unanswered forces a reconnect; an answered one
proves the socket only, never a quote (book/freshness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ib_async import IB, Contract, Ticker

from arbkit.config.loader import SymbolMap, SymbolSpec
from arbkit.model import NormalizedTick, Outcome, Venue, VenueHealth
from arbkit.normalizers.ibkr_normalizer import IbkrNormalizer

log = logging.getLogger(__name__)

EXCHANGE = "FORECASTX"
RIGHT_OF = {Outcome.YES: "C", Outcome.NO: "P"}  # ForecastEx: YES = call, NO = put
CACHE_VERSION = 1
PAPER_PORTS = {"tws": 7497, "gateway": 4002}


class Feed(enum.Enum):
    """What a TWS status code says about market data (../shared/reference/ibkr.md)."""

    LOST = "lost"  # 1100: connectivity to IB lost
    RESTORED = "restored"  # 1101 (data lost) / 1102 (data kept): resubscribe either way
    FARM_DOWN = "farm_down"  # 2103: a market data farm broken
    FARM_UP = "farm_up"  # 2104 OK, 2108 inactive but available on demand
    BLOCKED = "blocked"  # 10197: no market data during a competing live session
    INFO = "info"  # HMDS / sec-def farms (2105-2107, 2157, 2158): no live quotes ride on them


FEED_STATUS: dict[int, Feed] = {
    1100: Feed.LOST,
    1101: Feed.RESTORED,
    1102: Feed.RESTORED,
    2103: Feed.FARM_DOWN,
    2104: Feed.FARM_UP,
    2108: Feed.FARM_UP,
    10197: Feed.BLOCKED,
    2105: Feed.INFO,
    2106: Feed.INFO,
    2107: Feed.INFO,
    2157: Feed.INFO,
    2158: Feed.INFO,
}

OnTicks = Callable[[list[NormalizedTick]], None]
OnRaw = Callable[[dict[str, Any], int], None]


def _capture_value(v: Any) -> Any:
    """JSON-safe capture value: nan → None, whole Decimals/floats of sizes kept as numbers."""
    if v is None:
        return None
    if isinstance(v, Decimal):
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _side(price: Any, size: Any) -> tuple[Any, Any]:
    """An absent side (nan, or ib_async's -1 price / 0 size) is recorded as nulls."""
    p, s = _capture_value(price), _capture_value(size)
    if p is None or s is None or p == -1 or s == 0:
        return None, None
    return p, s


def _cache_key(spec: SymbolSpec, outcome: Outcome) -> str:
    fx = spec.forecastex
    if fx.by_con_id:
        con_id = fx.yes_con_id if outcome is Outcome.YES else fx.no_con_id
        return f"conId:{con_id}"
    return f"{fx.symbol}|{fx.last_trade_date}|{fx.strike}|{RIGHT_OF[outcome]}"


@dataclass(frozen=True, slots=True)
class ContractSchedule:
    """When a contract stops trading, from its ContractDetails (normalizers/market_status)."""

    last_trade_date: str
    last_trade_time: str
    time_zone_id: str
    trading_hours: str | None  # None: not known (from the cache); "" = none (settled)


def _contract_to_json(c: Contract) -> dict[str, Any]:
    return {
        "conId": c.conId,
        "symbol": c.symbol,
        "secType": c.secType,
        "lastTradeDateOrContractMonth": c.lastTradeDateOrContractMonth,
        "strike": c.strike,
        "right": c.right,
        "multiplier": c.multiplier,
        "exchange": c.exchange,
        "currency": c.currency,
        "localSymbol": c.localSymbol,
        "tradingClass": c.tradingClass,
    }


def _contract_from_json(d: dict[str, Any]) -> Contract:
    return Contract(
        conId=int(d["conId"]),
        symbol=str(d.get("symbol", "")),
        secType=str(d.get("secType", "OPT")),
        lastTradeDateOrContractMonth=str(d.get("lastTradeDateOrContractMonth", "")),
        strike=float(d.get("strike", 0.0)),
        right=str(d.get("right", "")),
        multiplier=str(d.get("multiplier", "")),
        exchange=str(d.get("exchange", EXCHANGE)),
        currency=str(d.get("currency", "USD")),
        localSymbol=str(d.get("localSymbol", "")),
        tradingClass=str(d.get("tradingClass", "")),
    )


class ContractError(Exception):
    """A configured ForecastEx contract is unknown, ambiguous or not what the map says."""


def check_contract(c: Contract, outcome: Outcome) -> None:
    """The resolved contract must be a FORECASTX option with the outcome's right."""
    if c.secType != "OPT":
        raise ContractError(f"conId {c.conId}: secType {c.secType!r}, expected 'OPT'")
    if c.exchange != EXCHANGE:
        raise ContractError(f"conId {c.conId}: exchange {c.exchange!r}, expected {EXCHANGE!r}")
    if c.right != RIGHT_OF[outcome]:
        raise ContractError(
            f"conId {c.conId}: right {c.right!r} but {outcome.value.upper()} is "
            f"{RIGHT_OF[outcome]!r} on ForecastEx (check yes_con_id / no_con_id)"
        )


class IbkrGateway:
    """One ib_async connection: resolves the symbol map's contracts, streams their quotes."""

    venue = Venue.IBKR

    def __init__(
        self,
        host: str,
        port: int,
        client_id: int,
        symbol_map: SymbolMap,
        on_ticks: OnTicks,
        *,
        account: str | None = None,
        on_raw: OnRaw | None = None,
        cache_path: Path | None = Path("data/contracts_cache.json"),
        stale_after_ms: int = 5_000,
        stale_grace_ms: int = 2_000,
        reconnect_initial_ms: int = 250,
        reconnect_max_ms: int = 30_000,
        connect_timeout_s: float = 4.0,
        contract_request_interval_ms: int = 50,
        heartbeat_interval_ms: int = 2_000,
        heartbeat_timeout_ms: int = 3_000,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.symbol_map = symbol_map
        self.on_ticks = on_ticks
        self.on_raw = on_raw
        self.account = account
        self.cache_path = cache_path
        self.stale_after_ms = stale_after_ms
        self.stale_grace_ms = stale_grace_ms
        self.reconnect_initial_ms = reconnect_initial_ms
        self.reconnect_max_ms = reconnect_max_ms
        self.connect_timeout_s = connect_timeout_s
        self.contract_request_interval_ms = contract_request_interval_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.ib = IB()
        self.health = VenueHealth(Venue.IBKR)
        self.normalizer = IbkrNormalizer({})
        self.contracts: dict[tuple[str, Outcome], int] = {}
        self.contract_objs: dict[int, Contract] = {}
        self.symbol_of: dict[int, tuple[str, Outcome]] = {}
        self.contract_errors: dict[str, str] = {}
        self.schedule: dict[int, ContractSchedule] = {}  # conId → last trade, hours
        self.contract_queries = 0
        self._tickers: dict[int, Ticker] = {}
        self._last_quote_ns: dict[int, int] = {}
        self._probe_ns: dict[int, int] = {}
        self._stale: set[int] = set()
        self._stopping = False
        self._down: asyncio.Event | None = None
        self._up: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._last_contract_req = 0.0
        self._errors_seen = 0
        self._farms_down: set[str] = set()
        self._link_lost = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, resolve contracts, subscribe; raises if the first connect fails."""
        self._stopping = False
        self._down = asyncio.Event()
        self._up = asyncio.Event()
        self.ib.pendingTickersEvent += self._on_pending
        self.ib.disconnectedEvent += self._on_disconnected
        self.ib.errorEvent += self._on_status
        try:
            await self._connect_once()
        except BaseException:
            self._stopping = True
            self._unhook()
            raise
        self._tasks = [
            asyncio.create_task(self._supervise(), name="ibkr-reconnect"),
            asyncio.create_task(self._watchdog(), name="ibkr-watchdog"),
        ]

    async def stop(self) -> None:
        self._stopping = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        self.ib.disconnect()
        self._unhook()
        self.health.connected = False

    def _unhook(self) -> None:
        with contextlib.suppress(ValueError):
            self.ib.pendingTickersEvent -= self._on_pending
        with contextlib.suppress(ValueError):
            self.ib.disconnectedEvent -= self._on_disconnected
        with contextlib.suppress(ValueError):
            self.ib.errorEvent -= self._on_status

    @property
    def data_ok(self) -> bool:
        """TWS has not told us market data is down (1100, 2103 not yet cleared)."""
        return not self._link_lost and not self._farms_down

    def _bump(self, key: str) -> None:
        self.health.extra[key] = self.health.extra.get(key, 0) + 1

    def _on_status(self, req_id: int, code: int, text: str, contract: Any = None) -> None:
        """Connectivity and farm codes: a quote is only fresh while its farm is OK."""
        feed = FEED_STATUS.get(code)
        if feed is None or feed is Feed.INFO:
            return
        now = time.time_ns()
        farm = text.rsplit(":", 1)[-1].strip() if ":" in text else "?"
        was_ok = self.data_ok
        if feed is Feed.LOST:
            self._link_lost = True
        elif feed is Feed.RESTORED:
            self._link_lost = False
        elif feed is Feed.FARM_DOWN:
            self._farms_down.add(farm)
        elif feed is Feed.FARM_UP:
            self._farms_down.discard(farm)
        elif feed is Feed.BLOCKED:
            self._bump("market_data_blocked")
            con_id = getattr(contract, "conId", 0) or 0
            log.warning("ibkr: %s %s (conId %s): quotes unusable", code, text, con_id or "all")
            ticks = (
                self.normalizer.on_stale(con_id, now)
                if con_id in self.normalizer.con_id_map
                else self.normalizer.invalidate_all(now)
            )
            self._emit(ticks)
            return
        self.health.extra["market_data_down"] = 0 if self.data_ok else 1
        if was_ok and not self.data_ok:
            self._bump("market_data_outages")
            log.warning("ibkr: %s %s: every ForecastEx book invalid until it recovers", code, text)
            self._emit(self.normalizer.invalidate_all(now))
        elif (not was_ok and self.data_ok) or feed is Feed.RESTORED:
            log.info("ibkr: %s %s: market data back; resubscribing", code, text)
            if self.ib.isConnected():
                self._subscribe_all(renew=True)

    @property
    def connected(self) -> bool:
        return self.health.connected and self.ib.isConnected()

    async def wait_connected(self, timeout_s: float) -> bool:
        """Wait until the gateway is connected and subscribed again (after a drop)."""
        if self.connected:
            return True
        if self._up is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout_s)
        return self.connected

    async def _connect_once(self) -> None:
        await self.ib.connectAsync(
            self.host,
            self.port,
            clientId=self.client_id,
            timeout=self.connect_timeout_s,
            account=self.account or "",
        )
        if self.account is None:
            accounts = self.ib.managedAccounts()
            self.account = accounts[0] if accounts else None
        await self._resolve_contracts()
        self._subscribe_all()
        self.health.connected = True
        if self._up is not None:
            self._up.set()
        if self._down is not None and self.ib.isConnected():
            self._down.clear()

    def _on_disconnected(self) -> None:
        now = time.time_ns()
        was = self.health.connected
        self.health.connected = False
        if self._up is not None:
            self._up.clear()
        if was:
            level = logging.INFO if self._stopping else logging.WARNING
            log.log(level, "ibkr: disconnected from %s:%s", self.host, self.port)
            self._emit(self.normalizer.invalidate_all(now))
        self._tickers.clear()
        self._probe_ns.clear()
        if not self._stopping and self._down is not None:
            self._down.set()

    async def _supervise(self) -> None:
        """Reconnect with exponential backoff whenever the connection drops."""
        assert self._down is not None
        while not self._stopping:
            await self._down.wait()
            self._down.clear()
            backoff_ms = self.reconnect_initial_ms
            while not self._stopping and not self.connected:
                await asyncio.sleep(backoff_ms / 1000)
                try:
                    await self._connect_once()
                    self.health.reconnects += 1
                    log.info("ibkr: reconnected")
                except Exception as exc:  # any failure: drop the half-open session, back off
                    log.warning("ibkr: reconnect failed (%r); next try in %s ms", exc, backoff_ms)
                    self.health.connected = False
                    self.ib.disconnect()
                    backoff_ms = min(backoff_ms * 2, self.reconnect_max_ms)

    async def _watchdog(self) -> None:
        """Stale-contract probes and the connection heartbeat."""
        period_s = max(0.02, min(self.stale_after_ms or 1000, self.stale_grace_ms, 1000) / 4000)
        next_beat = time.monotonic() + self.heartbeat_interval_ms / 1000
        while not self._stopping:
            await asyncio.sleep(period_s)
            if not self.connected:
                continue
            self._check_stale(time.time_ns())
            if self.heartbeat_interval_ms and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.heartbeat_interval_ms / 1000
                try:
                    await asyncio.wait_for(
                        self.ib.reqCurrentTimeAsync(), self.heartbeat_timeout_ms / 1000
                    )
                    self.health.last_message_ns = time.time_ns()  # venue alive, even if quiet
                except (TimeoutError, ConnectionError) as exc:
                    log.warning("ibkr: heartbeat failed (%r); reconnecting", exc)
                    self.ib.disconnect()

    def _check_stale(self, now: int) -> None:
        if not self.stale_after_ms:
            return
        limit = self.stale_after_ms * 1_000_000
        grace = self.stale_grace_ms * 1_000_000
        for con_id in list(self._tickers):
            if con_id in self._stale:
                continue
            probe = self._probe_ns.get(con_id)
            if probe is not None:
                if now - probe >= grace:
                    self._stale.add(con_id)
                    self._probe_ns.pop(con_id, None)
                    self.health.resyncs += 1
                    log.warning("ibkr: conId %s silent; marking its book invalid", con_id)
                    self._emit(self.normalizer.on_stale(con_id, now))
            elif now - self._last_quote_ns.get(con_id, now) >= limit:
                self._probe_ns[con_id] = now
                self._resubscribe(con_id)

    def _resubscribe(self, con_id: int) -> None:
        """Re-request market data: a live feed answers with a fresh top of book."""
        c = self.contract_objs.get(con_id)
        if c is None or not self.ib.isConnected():
            return
        self._bump("quote_probes")
        self.ib.cancelMktData(c)
        self._tickers[con_id] = self.ib.reqMktData(c, "", False, False)

    # ------------------------------------------------------------------ contracts

    def _load_cache(self) -> dict[str, dict[str, Any]]:
        if self.cache_path is None or not self.cache_path.exists():
            return {}
        try:
            data = json.loads(self.cache_path.read_text())
            if data.get("version") != CACHE_VERSION:
                return {}
            contracts = data.get("contracts", {})
            return contracts if isinstance(contracts, dict) else {}
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("ibkr: ignoring unreadable contract cache %s: %r", self.cache_path, exc)
            return {}

    def _save_cache(self, entries: dict[str, dict[str, Any]]) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_suffix(self.cache_path.suffix + ".tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "contracts": entries}, indent=1))
        os.replace(tmp, self.cache_path)

    async def _query(self, spec: SymbolSpec, outcome: Outcome) -> Contract:
        """reqContractDetails, paced: IBKR penalises bursts of contract queries."""
        fx = spec.forecastex
        if fx.by_con_id:
            con_id = fx.yes_con_id if outcome is Outcome.YES else fx.no_con_id
            want = Contract(conId=con_id or 0, exchange=EXCHANGE)
        else:
            want = Contract(
                symbol=fx.symbol or "",
                secType="OPT",
                exchange=EXCHANGE,
                currency="USD",
                lastTradeDateOrContractMonth=fx.last_trade_date or "",
                strike=float(fx.strike or 0),
                right=RIGHT_OF[outcome],
            )
        gap = self.contract_request_interval_ms / 1000 - (
            time.monotonic() - self._last_contract_req
        )
        if gap > 0:
            await asyncio.sleep(gap)
        self._last_contract_req = time.monotonic()
        self.contract_queries += 1
        details = await self.ib.reqContractDetailsAsync(want)
        if not details:
            raise ContractError(f"{spec.symbol} {outcome.value}: no ForecastEx contract found")
        if len(details) > 1:
            raise ContractError(
                f"{spec.symbol} {outcome.value}: ambiguous ({len(details)} contracts)"
            )
        d = details[0]
        c = d.contract
        if c is None:
            raise ContractError(f"{spec.symbol} {outcome.value}: empty contract details")
        self.schedule[c.conId] = ContractSchedule(
            c.lastTradeDateOrContractMonth, d.lastTradeTime, d.timeZoneId, d.tradingHours
        )
        return c

    async def _resolve_contracts(self) -> None:
        """Resolve every mapped (symbol, outcome) once: from the cache, else from TWS."""
        cache = self._load_cache()
        dirty = False
        for spec in self.symbol_map.symbols.values():
            pair: dict[Outcome, Contract] = {}
            for outcome in (Outcome.YES, Outcome.NO):
                if (spec.symbol, outcome) in self.contracts:
                    pair[outcome] = self.contract_objs[self.contracts[spec.symbol, outcome]]
                    continue
                key = _cache_key(spec, outcome)
                try:
                    if key in cache:
                        c = _contract_from_json(cache[key])
                        self.schedule.setdefault(
                            c.conId,
                            ContractSchedule(
                                c.lastTradeDateOrContractMonth,
                                str(cache[key].get("lastTradeTime", "")),
                                str(cache[key].get("timeZoneId", "")),
                                None,  # trading hours go stale: not cached
                            ),
                        )
                    else:
                        c = await self._query(spec, outcome)
                        sch = self.schedule[c.conId]
                        cache[key] = {
                            **_contract_to_json(c),
                            "lastTradeTime": sch.last_trade_time,
                            "timeZoneId": sch.time_zone_id,
                        }
                        dirty = True
                    check_contract(c, outcome)
                    pair[outcome] = c
                except ContractError as exc:
                    cache.pop(key, None)
                    self.contract_errors[spec.symbol] = str(exc)
                    self.health.extra["contract_errors"] = len(self.contract_errors)
                    log.error("ibkr: %s", exc)
            if len(pair) != 2:
                continue
            y, n = pair[Outcome.YES], pair[Outcome.NO]
            if (y.symbol, y.lastTradeDateOrContractMonth, y.strike) != (
                n.symbol,
                n.lastTradeDateOrContractMonth,
                n.strike,
            ):
                msg = f"{spec.symbol}: YES {y.conId} and NO {n.conId} are different questions"
                self.contract_errors[spec.symbol] = msg
                self.health.extra["contract_errors"] = len(self.contract_errors)
                log.error("ibkr: %s", msg)
                continue
            self.contract_errors.pop(spec.symbol, None)
            for outcome, c in pair.items():
                self.contracts[spec.symbol, outcome] = c.conId
                self.contract_objs[c.conId] = c
                self.symbol_of[c.conId] = (spec.symbol, outcome)
        self.normalizer.update_map(self.symbol_of)
        if dirty:
            self._save_cache(cache)

    def contract_for(self, symbol: str, outcome: Outcome) -> Contract | None:
        con_id = self.contracts.get((symbol, outcome))
        return self.contract_objs.get(con_id) if con_id is not None else None

    # ------------------------------------------------------------------ market data

    def _subscribe_all(self, *, renew: bool = False) -> None:
        """Subscribe every contract; ``renew`` cancels first (the answer is a fresh top)."""
        now = time.time_ns()
        self._stale.clear()
        self._probe_ns.clear()
        for con_id, c in self.contract_objs.items():
            self._last_quote_ns[con_id] = now
            if renew and con_id in self._tickers:
                self.ib.cancelMktData(c)
            self._tickers[con_id] = self.ib.reqMktData(c, "", False, False)

    def _emit(self, ticks: list[NormalizedTick]) -> None:
        if not ticks:
            return
        try:
            self.on_ticks(ticks)
        except Exception:
            log.exception("ibkr: on_ticks callback failed")

    def _on_pending(self, tickers: set[Ticker]) -> None:
        now = time.time_ns()
        normalizer = self.normalizer
        for t in tickers:
            c = t.contract
            con_id = c.conId if c is not None else 0
            if con_id not in normalizer.con_id_map:
                continue
            if not self.data_ok:  # TWS said the farm is down: nothing it shows is current
                self._bump("quotes_ignored_feed_down")
                continue
            self.health.ticks += 1
            self.health.last_message_ns = now
            self._last_quote_ns[con_id] = now
            self._probe_ns.pop(con_id, None)
            self._stale.discard(con_id)
            bid, bid_size = _side(t.bid, t.bidSize)
            ask, ask_size = _side(t.ask, t.askSize)
            if self.on_raw is not None:
                event = {
                    "t": now,
                    "venue": "ibkr",
                    "conId": con_id,
                    "bid": bid,
                    "bidSize": bid_size,
                    "ask": ask,
                    "askSize": ask_size,
                }
                try:
                    self.on_raw(event, now)
                except Exception:
                    log.exception("ibkr: on_raw callback failed")
            ticks = normalizer.on_quote(con_id, bid, bid_size, ask, ask_size, now)
            if normalizer.errors != self._errors_seen:
                self.health.bad_frames += normalizer.errors - self._errors_seen
                self._errors_seen = normalizer.errors
            self._emit(ticks)
