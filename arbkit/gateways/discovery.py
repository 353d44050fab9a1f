"""Both venues' listings, pulled for contract matching (``arbkit match``).

Kalshi: ``GET /markets`` (paged, per series when given) and ``GET /events/{t}`` for the
settlement sources. IBKR: ``reqMatchingSymbols`` for the FORECASTX underliers, then one
``reqContractDetails`` per underlier for its YES (C) / NO (P) rows, paced (``Pacer``) and
cached on disk as a catalogue: a later run re-reads only underliers older than
``max_age_s`` or new ones. Listings are plain records (``arbkit.matching.listings``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import string
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from ib_async import IB, Contract, ContractDetails

from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.gateways.kalshi_rest import KalshiRestClient
from arbkit.matching.listings import (
    ForecastExListing,
    KalshiListing,
    forecastex_from_json,
    kalshi_from_json,
    to_json,
)
from arbkit.matching.pacing import Pacer
from arbkit.normalizers.market_status import ibkr_last_trade_ns

log = logging.getLogger(__name__)

CATALOGUE_VERSION = 1


def _ns(iso: object) -> int:
    if not isinstance(iso, str) or not iso:
        return 0
    try:
        d = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(d.timestamp()) * 1_000_000_000


def _dec(v: object) -> Decimal | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return Decimal(str(v))
    except ArithmeticError:
        return None


def _sources(event: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for s in event.get("settlement_sources") or []:
        if isinstance(s, dict) and s.get("name"):
            out.append(str(s["name"]))
    return tuple(out)


async def kalshi_listings(
    rest: KalshiRestClient, series: Sequence[str] = (), *, status: str = "open"
) -> list[KalshiListing]:
    """Every market (of these series; all when empty) with its event's sources."""
    markets: list[dict[str, Any]] = []
    for s in series or [""]:
        cursor = ""
        while True:
            params: dict[str, Any] = {"limit": 1000, "status": status}
            if s:
                params["series_ticker"] = s
            if cursor:
                params["cursor"] = cursor
            d = await rest.request("GET", "/markets", params=params)
            markets += d.get("markets") or []
            cursor = d.get("cursor") or ""
            if not cursor:
                break
    events: dict[str, dict[str, Any]] = {}
    out = []
    for m in markets:
        et = str(m.get("event_ticker") or "")
        if et and et not in events:
            try:
                events[et] = (await rest.request("GET", f"/events/{et}")).get("event") or {}
            except Exception as exc:  # a market without its event still lists
                log.warning("kalshi event %s unreadable (%s): no settlement sources", et, exc)
                events[et] = {}
        ev = events.get(et, {})
        out.append(
            KalshiListing(
                ticker=str(m.get("ticker")),
                event_ticker=et,
                series_ticker=str(ev.get("series_ticker") or et.split("-", 1)[0]),
                title=str(m.get("title") or ev.get("title") or ""),
                yes_sub_title=str(m.get("yes_sub_title") or m.get("subtitle") or ""),
                rules_primary=str(m.get("rules_primary") or ""),
                rules_secondary=str(m.get("rules_secondary") or ""),
                strike_type=str(m.get("strike_type") or ""),
                floor_strike=_dec(m.get("floor_strike")),
                cap_strike=_dec(m.get("cap_strike")),
                close_time_ns=_ns(m.get("close_time")),
                expected_expiration_ns=_ns(m.get("expected_expiration_time")),
                settlement_sources=_sources(ev),
                status=str(m.get("status") or ""),
                price_level_structure=str(m.get("price_level_structure") or "linear_cent"),
            )
        )
    return out


def _last_trade_ns(d: ContractDetails) -> int:
    c = d.contract
    if c is None:
        return 0
    try:
        return ibkr_last_trade_ns(
            c.lastTradeDateOrContractMonth, d.lastTradeTime, d.timeZoneId or "UTC"
        )
    except (ValueError, KeyError):
        return 0


def pair_contracts(
    symbol: str, long_name: str, details: Iterable[ContractDetails], category: str = ""
) -> list[ForecastExListing]:
    """YES (right C) and NO (right P) rows of one underlier paired by date and strike."""
    # (date, strike, time): one underlier may list the same strike at several times
    rows: dict[tuple[str, str, str], dict[str, ContractDetails]] = {}
    for d in details:
        c = d.contract
        if c is None or c.right not in ("C", "P"):
            continue
        key = (c.lastTradeDateOrContractMonth[:8], _strike_text(c.strike), d.lastTradeTime)
        rows.setdefault(key, {})[c.right] = d
    out = []
    for (day, strike, _), pair in sorted(rows.items()):
        yes, no = pair.get("C"), pair.get("P")
        if yes is None or no is None or yes.contract is None or no.contract is None:
            continue
        out.append(
            ForecastExListing(
                symbol=symbol,
                long_name=long_name,
                # the local TWS carries the question in the contract's longName; real TWS
                # gives the underlier's name there (the rules text lives at ForecastEx)
                description=yes.longName or long_name,
                strike=Decimal(strike),
                yes_con_id=yes.contract.conId,
                no_con_id=no.contract.conId,
                last_trade_date=day,
                last_trade_ns=_last_trade_ns(yes),
                category=category or yes.category,
                trading_hours=yes.tradingHours,
                time_zone_id=yes.timeZoneId,
            )
        )
    return out


def _strike_text(x: float) -> str:
    return format(Decimal(repr(x)).normalize(), "f")


@dataclass(slots=True)
class Catalogue:
    """Listings on disk (JSON): refreshed incrementally, readable without the venues."""

    path: Path
    kalshi: dict[str, KalshiListing] = field(default_factory=dict)
    forecastex: dict[int, ForecastExListing] = field(default_factory=dict)
    underliers: dict[str, dict[str, Any]] = field(default_factory=dict)  # symbol → meta
    updated_ns: int = 0

    @classmethod
    def load(cls, path: str | Path) -> Catalogue:
        p = Path(path)
        cat = cls(p)
        if not p.exists():
            return cat
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"{p}: not a readable catalogue ({exc}); delete it or pass --refresh"
            ) from None
        if d.get("version") != CATALOGUE_VERSION:
            raise ValueError(f"{p}: catalogue version {d.get('version')!r}; pass --refresh")
        cat.kalshi = {x["ticker"]: kalshi_from_json(x) for x in d.get("kalshi", [])}
        cat.forecastex = {
            int(x["yes_con_id"]): forecastex_from_json(x) for x in d.get("forecastex", [])
        }
        cat.underliers = dict(d.get("underliers", {}))
        cat.updated_ns = int(d.get("updated_ns", 0))
        return cat

    def save(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        body = {
            "version": CATALOGUE_VERSION,
            "updated_ns": self.updated_ns,
            "underliers": self.underliers,
            "kalshi": [to_json(x) for x in sorted(self.kalshi.values(), key=lambda x: x.ticker)],
            "forecastex": [
                to_json(x) for x in sorted(self.forecastex.values(), key=lambda x: x.yes_con_id)
            ],
        }
        tmp.write_text(json.dumps(body, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)
        return self.path


@dataclass(slots=True)
class IbkrDiscoveryStats:
    searches: int = 0
    detail_requests: int = 0
    underliers_cached: int = 0
    waited_ms: int = 0


async def ibkr_listings(
    ib: IB,
    catalogue: Catalogue,
    patterns: Sequence[str],
    *,
    pacer: Pacer | None = None,
    search_pacer: Pacer | None = None,
    max_age_s: int = 86_400,
    now_ns: int | None = None,
    timeout_s: float = 30.0,
) -> IbkrDiscoveryStats:
    """FORECASTX underliers found by ``patterns`` and their contracts, into ``catalogue``;
    an underlier read less than ``max_age_s`` ago is not asked again. Contract details
    are paced by ``pacer`` (the request IBKR penalises for bursts), symbol searches by
    ``search_pacer`` (IBKR: about one per second). The underlier's name comes from the
    search's description (server version ≥ 176), else from one IND details request."""
    pacer = pacer or Pacer()
    search_pacer = search_pacer or Pacer(min_interval_ms=1_000, max_per_window=1_000)
    stats = IbkrDiscoveryStats()
    now = now_ns if now_ns is not None else time.time_ns()

    async def paced(p: Pacer) -> None:
        wait = p.wait_ms(time.monotonic_ns() // 1_000_000)
        if wait:
            stats.waited_ms += wait
            await asyncio.sleep(wait / 1000)
        p.sent(time.monotonic_ns() // 1_000_000)

    found: dict[str, Contract] = {}
    for pattern in patterns:
        await paced(search_pacer)
        stats.searches += 1
        rows = await asyncio.wait_for(ib.reqMatchingSymbolsAsync(pattern), timeout_s) or []
        for r in rows:
            c = r.contract
            if c is None or c.secType != "IND":
                continue
            if c.primaryExchange not in ("FORECASTX", "") and "EC" not in r.derivativeSecTypes:
                continue
            found.setdefault(c.symbol, c)
    for symbol, under in sorted(found.items()):
        meta = catalogue.underliers.get(symbol, {})
        if meta and now - int(meta.get("fetched_ns", 0)) < max_age_s * 1_000_000_000:
            stats.underliers_cached += 1
            continue
        long_name, category = under.description, ""
        if not long_name:
            await paced(pacer)
            stats.detail_requests += 1
            ind = await asyncio.wait_for(
                ib.reqContractDetailsAsync(
                    Contract(symbol=symbol, secType="IND", exchange="FORECASTX", currency="USD")
                ),
                timeout_s,
            )
            long_name = ind[0].longName if ind else symbol
            category = ind[0].category if ind else ""
        await paced(pacer)
        stats.detail_requests += 1
        opts = await asyncio.wait_for(
            ib.reqContractDetailsAsync(
                Contract(symbol=symbol, secType="OPT", exchange="FORECASTX", currency="USD")
            ),
            timeout_s,
        )
        for old in [k for k, v in catalogue.forecastex.items() if v.symbol == symbol]:
            del catalogue.forecastex[old]
        for listing in pair_contracts(symbol, long_name, opts, category):
            catalogue.forecastex[listing.yes_con_id] = listing
        catalogue.underliers[symbol] = {
            "con_id": under.conId,
            "long_name": long_name,
            "fetched_ns": now,
            "contracts": len(opts),
        }
    catalogue.updated_ns = now
    return stats


async def pull(
    catalogue_path: str | Path,
    rest_url: str,
    auth: KalshiAuth,
    *,
    ibkr_host: str = "127.0.0.1",
    ibkr_port: int = 7497,
    client_id: int = 7,
    series: Sequence[str] = (),
    patterns: Sequence[str] = (),
    max_age_s: int = 86_400,
) -> tuple[Catalogue, str]:
    """Both venues into the catalogue at ``catalogue_path`` (saved); with a one-line
    summary of what was read. Patterns default to A..Z (TWS needs one per search)."""
    cat = Catalogue.load(catalogue_path)
    async with KalshiRestClient(rest_url, auth) as rest:
        listings = await kalshi_listings(rest, series)
    cat.kalshi = {x.ticker: x for x in listings}
    ib = IB()
    await ib.connectAsync(ibkr_host, ibkr_port, clientId=client_id, timeout=10)
    try:
        stats = await ibkr_listings(
            ib, cat, list(patterns) or list(string.ascii_uppercase), max_age_s=max_age_s
        )
    finally:
        ib.disconnect()
    cat.save()
    return cat, (
        f"catalogue {catalogue_path}: {len(cat.kalshi)} Kalshi markets, "
        f"{len(cat.forecastex)} ForecastEx pairs ({stats.searches} searches, "
        f"{stats.detail_requests} contract-detail requests, {stats.underliers_cached} "
        "underliers from cache)"
    )
