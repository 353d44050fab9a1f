"""Symbol map: unified symbol ↔ Kalshi market ticker ↔ ForecastEx YES/NO contracts.

The orientation is explicit (``kalshi_yes_is``): the same question can be phrased
oppositely on the two venues, and the detector must never assume YES == YES.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from arbkit.config._toml import ConfigError, read_toml
from arbkit.model import Outcome

EXAMPLE_SYMBOLS = Path(__file__).resolve().parent.parent / "examples" / "symbols.toml"


@dataclass(frozen=True, slots=True)
class ForecastExSpec:
    """Either both conIds, or product symbol + last trade date + strike (YES=C, NO=P)."""

    yes_con_id: int | None = None
    no_con_id: int | None = None
    symbol: str | None = None
    last_trade_date: str | None = None  # YYYYMMDD
    strike: Decimal | None = None

    @property
    def by_con_id(self) -> bool:
        return self.yes_con_id is not None


#: How the two venues' questions relate. Live trades only ``identical`` (Kalshi YES pays
#: exactly when ForecastEx YES pays) and ``complement`` (the same question asked the
#: other way round: Kalshi YES pays exactly when ForecastEx NO pays).
RELATIONS = ("identical", "complement", "subset", "superset", "overlap", "disjoint")
LIVE_RELATIONS = ("identical", "complement")


@dataclass(frozen=True, slots=True)
class Equivalence:
    relation: str = ""
    resolution_source: str = ""
    cutoff_time: str = ""
    verified_by: str = ""
    verified_on: str = ""
    notes: str = ""

    def missing_for_live(self) -> list[str]:
        """What keeps this pair from trading live (empty: verified)."""
        out = [
            k
            for k in ("relation", "resolution_source", "cutoff_time", "verified_by", "verified_on")
            if not getattr(self, k).strip()
        ]
        if self.relation and self.relation not in LIVE_RELATIONS:
            out.append(f"relation {self.relation!r} (live needs identical or complement)")
        return out


class LegOrder(enum.Enum):
    """Which venue's leg goes first: usually the one most likely to fail."""

    KALSHI_FIRST = "kalshi_first"
    FORECASTEX_FIRST = "forecastex_first"


#: Kalshi ``price_level_structure`` values arbkit knows the grid of (execution/ticks.py).
KALSHI_PRICE_STRUCTURES = ("linear_cent", "deci_cent", "tapered_deci_cent")


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    symbol: str
    kalshi_ticker: str
    forecastex: ForecastExSpec
    kalshi_yes_is: Outcome  # the ForecastEx outcome that pays when Kalshi YES pays
    resolution_ts_ns: int  # when both legs pay out: capital is locked until then
    kalshi_series: str = ""
    equivalence: Equivalence = Equivalence()
    leg_order: LegOrder = LegOrder.KALSHI_FIRST
    kalshi_price_level_structure: str = "linear_cent"

    def ibkr_equivalent(self, kalshi_outcome: Outcome) -> Outcome:
        """ForecastEx outcome that pays exactly when ``kalshi_outcome`` pays."""
        return self.kalshi_yes_is if kalshi_outcome is Outcome.YES else self.kalshi_yes_is.opposite


@dataclass(frozen=True, slots=True)
class SymbolMap:
    symbols: dict[str, SymbolSpec]
    source: str = ""

    def by_kalshi_ticker(self) -> dict[str, SymbolSpec]:
        return {s.kalshi_ticker: s for s in self.symbols.values()}

    def __len__(self) -> int:
        return len(self.symbols)


def _parse_ts(value: Any, file: Path, field: str) -> int:
    if isinstance(value, dt.datetime):
        d = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    elif isinstance(value, dt.date):
        d = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
    elif isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(file, field, f"{value!r} is not an ISO date or datetime") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.UTC)
    else:
        raise ConfigError(file, field, f"{value!r}: expected a date like 2026-12-31")
    return int(d.timestamp()) * 1_000_000_000


def _req_str(t: dict[str, Any], key: str, file: Path, prefix: str) -> str:
    v = t.get(key)
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(file, f"{prefix}{key}", f"required non-empty string, got {v!r}")
    return v.strip()


_SYMBOL_KEYS = {
    "kalshi_ticker",
    "kalshi_series",
    "kalshi_yes_is",
    "resolution",
    "forecastex",
    "equivalence",
    "leg_order",
    "kalshi_price_level_structure",
}
_FX_KEYS = {"yes_con_id", "no_con_id", "symbol", "last_trade_date", "strike"}


def parse_symbol_map(data: dict[str, Any], file: str | Path = "<symbols>") -> SymbolMap:
    f = Path(file)
    table = data.get("symbols")
    if not isinstance(table, dict) or not table:
        raise ConfigError(f, "symbols", "add at least one [symbols.NAME] table")
    out: dict[str, SymbolSpec] = {}
    seen_tickers: dict[str, str] = {}
    for name, t in table.items():
        p = f"symbols.{name}."
        if not isinstance(t, dict):
            raise ConfigError(f, f"symbols.{name}", "expected a table")
        unknown = sorted(set(t) - _SYMBOL_KEYS)
        if unknown:
            raise ConfigError(
                f, p + unknown[0], f"unknown key; known: {', '.join(sorted(_SYMBOL_KEYS))}"
            )
        ticker = _req_str(t, "kalshi_ticker", f, p)
        if ticker in seen_tickers:
            raise ConfigError(
                f, p + "kalshi_ticker", f"{ticker!r} is already mapped by {seen_tickers[ticker]!r}"
            )
        seen_tickers[ticker] = name
        yes_is = t.get("kalshi_yes_is")
        if yes_is not in ("yes", "no"):
            raise ConfigError(
                f,
                p + "kalshi_yes_is",
                f'{yes_is!r}: must be "yes" or "no" (the ForecastEx outcome equal to Kalshi YES)',
            )
        if "resolution" not in t:
            raise ConfigError(
                f, p + "resolution", "required: the date both legs pay out (capital lock-up)"
            )
        fx = t.get("forecastex")
        if not isinstance(fx, dict):
            raise ConfigError(
                f,
                p + "forecastex",
                "required table: yes_con_id + no_con_id, or symbol + last_trade_date + strike",
            )
        unknown = sorted(set(fx) - _FX_KEYS)
        if unknown:
            raise ConfigError(
                f,
                p + "forecastex." + unknown[0],
                f"unknown key; known: {', '.join(sorted(_FX_KEYS))}",
            )
        if "yes_con_id" in fx or "no_con_id" in fx:
            ids = []
            for k in ("yes_con_id", "no_con_id"):
                v = fx.get(k)
                if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                    raise ConfigError(
                        f,
                        p + "forecastex." + k,
                        f"{v!r}: expected a positive integer conId (give both)",
                    )
                ids.append(v)
            if ids[0] == ids[1]:
                raise ConfigError(
                    f, p + "forecastex.no_con_id", "YES and NO must be different contracts"
                )
            spec = ForecastExSpec(yes_con_id=ids[0], no_con_id=ids[1])
        else:
            sym = _req_str(fx, "symbol", f, p + "forecastex.")
            ltd = str(fx.get("last_trade_date", ""))
            if not (len(ltd) == 8 and ltd.isdigit()):
                raise ConfigError(
                    f, p + "forecastex.last_trade_date", f"{ltd!r}: expected YYYYMMDD (as a string)"
                )
            raw_strike = fx.get("strike")
            try:
                if isinstance(raw_strike, bool) or raw_strike is None:
                    raise InvalidOperation
                strike = Decimal(
                    repr(raw_strike) if isinstance(raw_strike, float) else str(raw_strike)
                )
            except InvalidOperation:
                raise ConfigError(
                    f, p + "forecastex.strike", f"{raw_strike!r}: expected a number"
                ) from None
            spec = ForecastExSpec(symbol=sym, last_trade_date=ltd, strike=strike)
        eq = t.get("equivalence", {})
        if not isinstance(eq, dict):
            raise ConfigError(f, p + "equivalence", "expected a table")
        try:
            equivalence = Equivalence(**{k: str(v) for k, v in eq.items()})
        except TypeError:
            raise ConfigError(
                f,
                p + "equivalence",
                "known keys: relation, resolution_source, cutoff_time, verified_by, "
                "verified_on, notes",
            ) from None
        rel = equivalence.relation
        if rel and rel not in RELATIONS:
            raise ConfigError(
                f, p + "equivalence.relation", f"{rel!r}: must be one of {', '.join(RELATIONS)}"
            )
        yes_is = t.get("kalshi_yes_is")
        if (rel, yes_is) in (("identical", "no"), ("complement", "yes")):
            raise ConfigError(
                f,
                p + "equivalence.relation",
                f"{rel!r} contradicts kalshi_yes_is = {yes_is!r} (identical: Kalshi YES is "
                'ForecastEx YES, kalshi_yes_is = "yes"; complement: "no"); fix whichever is '
                "wrong",
            )
        order = t.get("leg_order", LegOrder.KALSHI_FIRST.value)
        if order not in {o.value for o in LegOrder}:
            raise ConfigError(
                f, p + "leg_order", f'{order!r}: must be "kalshi_first" or "forecastex_first"'
            )
        structure = t.get("kalshi_price_level_structure", "linear_cent")
        if structure not in KALSHI_PRICE_STRUCTURES:
            raise ConfigError(
                f,
                p + "kalshi_price_level_structure",
                f"{structure!r}: known: {', '.join(KALSHI_PRICE_STRUCTURES)}",
            )
        series = t.get("kalshi_series") or ticker.split("-", 1)[0]
        out[name] = SymbolSpec(
            symbol=name,
            kalshi_ticker=ticker,
            forecastex=spec,
            kalshi_yes_is=Outcome(yes_is),
            resolution_ts_ns=_parse_ts(t["resolution"], f, p + "resolution"),
            kalshi_series=str(series),
            equivalence=equivalence,
            leg_order=LegOrder(order),
            kalshi_price_level_structure=str(structure),
        )
    return SymbolMap(out, str(f))


def _toml_str(s: str) -> str:
    import json

    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def _iso_ns(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=dt.UTC).isoformat()


def symbol_map_toml(symbol_map: SymbolMap, header: Sequence[str] = ()) -> str:
    """The symbol map as TOML that ``load_symbol_map`` reads back identically."""
    out = [f"# {line}" for line in header]
    out.append("# kalshi_yes_is: the ForecastEx outcome that pays when Kalshi YES pays.")
    for name, spec in symbol_map.symbols.items():
        key = f"symbols.{_toml_str(name)}"
        fx = spec.forecastex
        out += [
            "",
            f"[{key}]",
            f"kalshi_ticker = {_toml_str(spec.kalshi_ticker)}",
            f"kalshi_series = {_toml_str(spec.kalshi_series)}",
            f"kalshi_yes_is = {_toml_str(spec.kalshi_yes_is.value)}",
            f"resolution = {_toml_str(_iso_ns(spec.resolution_ts_ns))}",
        ]
        if spec.leg_order is not LegOrder.KALSHI_FIRST:
            out.append(f"leg_order = {_toml_str(spec.leg_order.value)}")
        if spec.kalshi_price_level_structure != "linear_cent":
            out.append(
                f"kalshi_price_level_structure = {_toml_str(spec.kalshi_price_level_structure)}"
            )
        out += ["", f"[{key}.forecastex]"]
        if fx.by_con_id:
            out += [f"yes_con_id = {fx.yes_con_id}", f"no_con_id = {fx.no_con_id}"]
        else:
            out += [
                f"symbol = {_toml_str(fx.symbol or '')}",
                f"last_trade_date = {_toml_str(fx.last_trade_date or '')}",
                f"strike = {_toml_str(str(fx.strike))}",
            ]
        eq = spec.equivalence
        fields = [
            (k, getattr(eq, k))
            for k in (
                "relation",
                "resolution_source",
                "cutoff_time",
                "verified_by",
                "verified_on",
                "notes",
            )
        ]
        if any(v for _, v in fields):
            out += ["", f"[{key}.equivalence]"]
            out += [f"{k} = {_toml_str(v)}" for k, v in fields if v]
    return "\n".join(out) + "\n"


def load_symbol_map(path: str | Path) -> SymbolMap:
    return parse_symbol_map(read_toml(path), path)
