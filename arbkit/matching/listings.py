"""What each venue lists, as plain records named like the venues' own fields.

Kalshi: a market (``GET /markets``) with its event and series (rules text, strike fields,
close and expected expiration times, settlement sources). ForecastEx: one YES/NO contract
pair of an underlier (``reqMatchingSymbols`` → IND underlier; ``reqContractDetails`` →
OPT rows, YES = right C, NO = right P, same strike and date). Both round-trip through JSON
so a catalogue on disk can be refreshed incrementally.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from typing import Any


@dataclass(frozen=True, slots=True)
class KalshiListing:
    ticker: str
    event_ticker: str
    series_ticker: str
    title: str
    yes_sub_title: str = ""
    rules_primary: str = ""
    rules_secondary: str = ""
    strike_type: str = ""
    floor_strike: Decimal | None = None
    cap_strike: Decimal | None = None
    close_time_ns: int = 0
    expected_expiration_ns: int = 0
    settlement_sources: tuple[str, ...] = ()  # names as the event/series gives them
    status: str = ""
    price_level_structure: str = "linear_cent"

    @property
    def observed_ns(self) -> int:
        """When the measured value is taken: the expected expiration, else the close."""
        return self.expected_expiration_ns or self.close_time_ns

    @property
    def text(self) -> str:
        return " ".join(p for p in (self.title, self.yes_sub_title, self.rules_primary) if p)


@dataclass(frozen=True, slots=True)
class ForecastExListing:
    symbol: str  # the underlier's product code (IND symbol)
    long_name: str  # the underlier's longName
    description: str  # the contract's question
    strike: Decimal
    yes_con_id: int
    no_con_id: int
    last_trade_date: str  # YYYYMMDD
    last_trade_ns: int = 0  # last trade date + time in the contract's time zone
    resolution_source: str = ""
    category: str = ""
    trading_hours: str = ""
    time_zone_id: str = ""

    @property
    def observed_ns(self) -> int:
        return self.last_trade_ns

    @property
    def text(self) -> str:
        return " ".join(p for p in (self.long_name, self.description) if p)


def to_json(x: KalshiListing | ForecastExListing) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(x):
        v = getattr(x, f.name)
        out[f.name] = str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple) else v
    return out


def kalshi_from_json(d: dict[str, Any]) -> KalshiListing:
    return KalshiListing(**_typed(KalshiListing, d))


def forecastex_from_json(d: dict[str, Any]) -> ForecastExListing:
    return ForecastExListing(**_typed(ForecastExListing, d))


def _typed(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k not in names:
            continue
        t = str(names[k].type)
        if "Decimal" in t and v is not None:
            v = Decimal(str(v))
        elif "tuple" in t:
            v = tuple(v or ())
        out[k] = v
    return out
