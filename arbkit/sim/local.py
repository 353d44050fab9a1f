"""Both local venues plus the market model, ready for the monitor to connect to.

Used by ``arbkit demo``, ``arbkit sim``, the notebooks' default and the tests. Everything
goes over real loopback sockets with real signatures: a fresh RSA key pair is generated
at start (the private key written 0600 under ``data_dir``), its public half registered
with the local Kalshi exchange, exactly as with a real Kalshi API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from arbkit.config.loader import SymbolMap
from arbkit.gateways.kalshi_auth import KalshiAuth, generate_key_pair
from arbkit.matching.listings import ForecastExListing, KalshiListing
from arbkit.model import Money, Outcome
from arbkit.sim.kalshi_exchange import KalshiExchange
from arbkit.sim.listings import universe_listings, venue_listings
from arbkit.sim.market_model import DriveStats, MarketModel, SimUniverse, drive, generate_universe
from arbkit.sim.tws_server import TwsServer


@dataclass(slots=True)
class LocalVenuesInfo:
    kalshi_rest_url: str
    kalshi_ws_url: str
    kalshi_key_id: str
    kalshi_key_file: Path
    tws_host: str
    tws_port: int
    symbols_file: Path
    extra: dict[str, str] = field(default_factory=dict)


class LocalVenues:
    def __init__(
        self,
        n_symbols: int = 6,
        *,
        seed: int = 7,
        updates_per_s: float = 300.0,
        dislocation_rate_per_min: float = 4.0,
        data_dir: str | Path | None = None,
        kalshi_port: int = 0,
        tws_port: int = 0,
        tws_server_version: int = 178,
        starting_balance_usd: Money = Money(100_000 * 1_000_000),
        drive_market: bool = True,
        resolve_after_s: float | None = None,
        resolve_pick: Callable[[], str | None] | None = None,
        listings: bool = True,
    ) -> None:
        self.n_symbols = n_symbols
        self.seed = seed
        self.updates_per_s = updates_per_s
        self.dislocation_rate_per_min = dislocation_rate_per_min
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="arbkit-sim-")
            data_dir = self._tmp.name
        self.data_dir = Path(data_dir)
        self.kalshi_port = kalshi_port
        self.tws_port = tws_port
        self.tws_server_version = tws_server_version
        self.starting_balance = starting_balance_usd
        self.drive_market = drive_market
        self.listings = listings  # also list the decoys contract matching must reject
        self.universe: SimUniverse = generate_universe(n_symbols, seed)
        self.model = MarketModel(
            self.universe,
            seed=seed,
            updates_per_s=updates_per_s,
            dislocation_rate_per_min=dislocation_rate_per_min,
        )
        self.exchange: KalshiExchange | None = None
        self.tws: TwsServer | None = None
        self.auth: KalshiAuth | None = None
        self.info: LocalVenuesInfo | None = None
        self.stats: DriveStats | None = None
        self._stop = asyncio.Event()
        self._driver: asyncio.Task[DriveStats] | None = None
        # The demo's market lifecycle: the first symbol closes after this many seconds,
        # is determined 2 s later from the model's probability, and pays out 1 s after.
        self.resolve_after_s = resolve_after_s
        self.resolve_pick = resolve_pick  # which symbol resolves (None: the first)
        self.events: list[str] = []  # what the lifecycle did, for the demo to print
        self._resolver: asyncio.Task[None] | None = None

    @property
    def symbol_map(self) -> SymbolMap:
        return self.universe.symbol_map

    def _list_markets(self) -> None:
        """The universe's markets (quoted by the model) and, with ``listings``, the decoy
        listings of ``arbkit.sim.listings`` (no quotes): what ``arbkit match`` discovers."""
        assert self.exchange is not None and self.tws is not None
        Row = tuple[KalshiListing | None, ForecastExListing | None, str, int, str, int | None, str]
        pairs: list[Row] = [
            (
                k,
                f,
                m.kalshi_title,
                m.open_ts_ns,
                m.fx_pair_id,
                m.under_con_id,
                m.real_expiration_date,
            )
            for m, (k, f) in zip(
                self.universe.markets, universe_listings(self.universe.markets), strict=True
            )
        ]
        if self.listings:
            day = dt.datetime.fromtimestamp(self.universe.now_ns // 1_000_000_000, dt.UTC).date()
            kalshi, fx = venue_listings(day + dt.timedelta(days=30))
            opened = self.universe.now_ns - 7 * 86_400 * 1_000_000_000
            listed = {r[0].ticker for r in pairs if r[0] is not None}
            pairs += [
                (k, None, k.title, opened, "", None, "") for k in kalshi if k.ticker not in listed
            ]
            pairs += [(None, f, "", 0, f"FX-LIST-{f.yes_con_id}", None, "") for f in fx]
        for k, f, title, opened_ns, pair_id, under, real_exp in pairs:
            if k is not None:
                self.exchange.add_market(
                    k.ticker,
                    series=k.series_ticker,
                    event_ticker=k.event_ticker,
                    close_time=k.close_time_ns // 1_000_000_000,
                    open_time=opened_ns // 1_000_000_000,
                    title=title,
                    expected_expiration_time=k.expected_expiration_ns // 1_000_000_000,
                    listing=k,
                )
            if f is not None and pair_id:
                at = dt.datetime.fromtimestamp(f.last_trade_ns // 1_000_000_000, dt.UTC)
                self.tws.add_market(
                    pair_id,
                    symbol=f.symbol,
                    last_trade_date=at.strftime("%Y%m%d"),
                    last_trade_time=at.strftime("%H:%M:%S"),
                    time_zone_id="UTC",
                    strike=f.strike,
                    yes_con_id=f.yes_con_id,
                    no_con_id=f.no_con_id,
                    under_con_id=under,
                    real_expiration_date=real_exp or None,
                    long_name=f.description,
                    underlier_name=f.long_name,
                )

    async def start(self) -> LocalVenuesInfo:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_id = str(uuid.uuid4())
        key_file = self.data_dir / "kalshi-demo-key.pem"
        private, public_pem = generate_key_pair(key_file)
        self.auth = KalshiAuth(key_id, private)
        self.exchange = KalshiExchange(port=self.kalshi_port)
        await self.exchange.start()
        self.exchange.register_key(key_id, public_pem)
        self.exchange.fund(key_id, self.starting_balance)
        self.tws = TwsServer(
            port=self.tws_port,
            server_version=self.tws_server_version,
            starting_cash_usd=self.starting_balance,
        )
        await self.tws.start()
        self._list_markets()
        symbols_file = self.data_dir / "symbols.toml"
        self.universe.write_symbol_map(symbols_file)
        if not self.drive_market:  # drive() publishes the initial books itself
            for u in self.model.initial_books():
                sink = self.exchange if u.venue.value == "kalshi" else self.tws
                sink.set_bids(u.market, u.outcome, u.levels)
        else:
            self._stop.clear()
            self._driver = asyncio.create_task(
                drive(self.model, self.exchange, self.tws, stop=self._stop), name="arbkit-market"
            )
        if self.resolve_after_s is not None and self.universe.markets:
            self._resolver = asyncio.create_task(self._resolve_first(), name="arbkit-resolve")
        self.info = LocalVenuesInfo(
            self.exchange.rest_url,
            self.exchange.ws_url,
            key_id,
            key_file,
            "127.0.0.1",
            self.tws.port,
            symbols_file,
        )
        return self.info

    async def _resolve_first(self) -> None:
        """Close, determine and settle one symbol's market on both venues."""
        assert self.exchange is not None and self.tws is not None
        assert self.resolve_after_s is not None
        await asyncio.sleep(self.resolve_after_s)
        chosen = None
        for _ in range(int(self.resolve_after_s * 2)):  # wait a while for a held position
            chosen = self.resolve_pick() if self.resolve_pick is not None else None
            if chosen is not None or self.resolve_pick is None:
                break
            await asyncio.sleep(0.5)
        by_symbol = {m.symbol: m for m in self.universe.markets}
        m = by_symbol.get(chosen or "", self.universe.markets[0])
        now_s = int(time.time())
        self.exchange.set_close_time(m.kalshi_ticker, now_s)
        self.tws.close_trading(m.fx_pair_id)
        self.events.append(f"{m.symbol}: trading closed on both venues")
        await asyncio.sleep(2)
        yes = self.model.probability(m.symbol) >= 0.5
        kalshi_result = Outcome.YES if yes else Outcome.NO
        self.exchange.determine(m.kalshi_ticker, kalshi_result.value)
        self.events.append(f"{m.symbol}: resolved {kalshi_result.value.upper()} (Kalshi terms)")
        await asyncio.sleep(1)
        self.exchange.settle(m.kalshi_ticker)
        self.tws.settle(m.fx_pair_id, m.ibkr_equivalent(kalshi_result))
        self.events.append(f"{m.symbol}: paid out on Kalshi and ForecastEx")

    async def stop(self) -> None:
        if self._resolver is not None:
            self._resolver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._resolver
            self._resolver = None
        self._stop.set()
        if self._driver is not None:
            with contextlib.suppress(Exception):
                self.stats = await asyncio.wait_for(self._driver, 5)
            self._driver = None
        if self.tws is not None:
            await self.tws.stop()
        if self.exchange is not None:
            await self.exchange.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> LocalVenues:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
