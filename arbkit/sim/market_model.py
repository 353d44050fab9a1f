"""Simulated market that drives both local venues (Kalshi exchange and the ForecastEx TWS).

One latent probability per symbol moves as a random walk in log-odds with jumps. Each
venue quotes bid ladders around its own *view* of it: Kalshi catches up with the latent
almost fully on every refresh, ForecastEx only partly and less often, so jumps open
short-lived cross-venue gaps on their own. On top of that, dislocations push one venue's
quotes a chosen gross edge past the other's for 0.3–3 s, in three kinds: ``top`` (a small
stray order at the top of book), ``depth`` (the whole ladder shifts) and ``fee`` (a gross
edge of 1–2 cents, which the fees of both venues always remove).

Everything is integer and seeded: same seed and the same ``now_ns`` sequence give the same
updates. ``step`` is pure (time passed in); ``drive`` is the thin async shell.

Prices are handled internally in whole cents in the Kalshi-YES orientation (``center`` is
the Kalshi-YES probability in cents on both venues). Per venue the pair total is $1.00 on
Kalshi and $1.01 on ForecastEx (YES bid + NO bid executes at $1.01 there), and a bid ladder
for outcome X is what makes the *ask* of the other outcome: ask(not X) = total − best bid(X).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import random
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import cast

from arbkit.config.loader import (
    Equivalence,
    ForecastExSpec,
    SymbolMap,
    SymbolSpec,
    symbol_map_toml,
)
from arbkit.model import QTY_SCALE, Outcome, Price, Qty, Venue
from arbkit.sim.driver import BookSink

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
DAY_NS = 86_400 * NS_PER_S
CENT = 100  # Price units per cent

Levels = tuple[tuple[Price, Qty], ...]

# ------------------------------------------------------------------ universe ----------

# (ForecastEx product code, Kalshi series, what is measured, first strike, strike step)
_PRODUCTS: tuple[tuple[str, str, str, Decimal, Decimal], ...] = (
    ("SFF", "KXSIMFED", "Fed funds target rate upper bound", Decimal("3.625"), Decimal("0.125")),
    ("SCPI", "KXSIMCPI", "CPI year-over-year change", Decimal("2.8"), Decimal("0.1")),
    ("SUR", "KXSIMUR", "US unemployment rate", Decimal("4.2"), Decimal("0.1")),
    ("SBTC", "KXSIMBTC", "Bitcoin reference rate", Decimal("95000"), Decimal("2500")),
    ("SNYH", "KXSIMHIGHNY", "NYC Central Park high temperature", Decimal("60"), Decimal("2")),
    ("SGAS", "KXSIMGAS", "US average regular gas price", Decimal("3.10"), Decimal("0.05")),
)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass(frozen=True, slots=True)
class SimMarket:
    """One symbol as both local venues list it.

    ForecastEx: YES = right ``C`` (``yes_con_id``), NO = right ``P`` (``no_con_id``), secType
    OPT, exchange FORECASTX, underlying IND ``under_con_id``. The ForecastEx contract asks
    "above strike"; when ``kalshi_yes_is`` is NO the Kalshi market asks "at or below".
    """

    symbol: str
    kalshi_ticker: str
    kalshi_series: str
    kalshi_event_ticker: str
    kalshi_title: str
    kalshi_yes_is: Outcome  # the ForecastEx outcome that pays when Kalshi YES pays
    open_ts_ns: int
    close_ts_ns: int  # Kalshi close time; ForecastEx last trade date is its UTC day
    resolution_ts_ns: int
    fx_pair_id: str  # the ``market`` the TWS sink is driven with
    fx_symbol: str  # ForecastEx product code (= the IND underlying's symbol)
    fx_long_name: str
    last_trade_date: str  # YYYYMMDD
    real_expiration_date: str  # YYYYMMDD
    strike: Decimal
    yes_con_id: int
    no_con_id: int
    under_con_id: int

    @property
    def inverted(self) -> bool:
        return self.kalshi_yes_is is Outcome.NO

    def con_id(self, outcome: Outcome) -> int:
        return self.yes_con_id if outcome is Outcome.YES else self.no_con_id

    @staticmethod
    def right(outcome: Outcome) -> str:
        return "C" if outcome is Outcome.YES else "P"

    def local_symbol(self, outcome: Outcome) -> str:
        """``PRODUCT MmmDD'YY STRIKE YES|NO`` (spacing per reference/ibkr.md, unverified)."""
        d = dt.datetime.strptime(self.last_trade_date, "%Y%m%d")
        exp = f"{d.strftime('%b')}{d.day:02d}'{d.year % 100:02d}"
        return f"{self.fx_symbol} {exp} {self.strike} {outcome.value.upper()}"

    def ibkr_equivalent(self, kalshi_outcome: Outcome) -> Outcome:
        return self.kalshi_yes_is if kalshi_outcome is Outcome.YES else self.kalshi_yes_is.opposite


def _iso(ts_ns: int) -> str:
    return dt.datetime.fromtimestamp(ts_ns // NS_PER_S, tz=dt.UTC).isoformat()


@dataclass(slots=True)
class SimUniverse:
    """All simulated markets plus the symbol map the rest of arbkit loads."""

    markets: tuple[SimMarket, ...]
    symbol_map: SymbolMap
    seed: int
    now_ns: int
    by_symbol: dict[str, SimMarket] = field(init=False)
    by_kalshi_ticker: dict[str, SimMarket] = field(init=False)
    by_fx_pair_id: dict[str, SimMarket] = field(init=False)
    by_con_id: dict[int, tuple[SimMarket, Outcome]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_symbol = {m.symbol: m for m in self.markets}
        self.by_kalshi_ticker = {m.kalshi_ticker: m for m in self.markets}
        self.by_fx_pair_id = {m.fx_pair_id: m for m in self.markets}
        self.by_con_id = {}
        for m in self.markets:
            self.by_con_id[m.yes_con_id] = (m, Outcome.YES)
            self.by_con_id[m.no_con_id] = (m, Outcome.NO)

    def __len__(self) -> int:
        return len(self.markets)

    def symbol_map_toml(self) -> str:
        """The symbol map as TOML that ``load_symbol_map`` reads back identically."""
        return symbol_map_toml(
            self.symbol_map,
            (
                "Simulated universe (arbkit.sim.market_model.generate_universe, "
                f"seed={self.seed}, {len(self.markets)} symbols).",
            ),
        )

    def write_symbol_map(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(self.symbol_map_toml(), encoding="utf-8")
        return p


def generate_universe(
    n_symbols: int, seed: int, *, resolution_days: int = 30, now_ns: int | None = None
) -> SimUniverse:
    """Symbols over a few fictional products (several strikes each); every third symbol
    (index 1, 4, 7, …) is phrased oppositely on Kalshi (``kalshi_yes_is = "no"``).

    Dates derive from ``now_ns`` (default: the wall clock) floored to the UTC day, so the
    universe is reproducible within a day for a fixed seed.
    """
    if n_symbols < 1:
        raise ValueError(f"n_symbols={n_symbols}: need at least one symbol")
    if resolution_days < 1:
        raise ValueError(f"resolution_days={resolution_days}: must be at least 1")
    now = time.time_ns() if now_ns is None else now_ns
    rng = random.Random(f"arbkit-universe:{seed}")
    day0 = now - now % DAY_NS
    under_base = 650_000_000 + rng.randrange(1_000_000) * 10
    con_base = 720_000_000 + rng.randrange(1_000_000) * 10
    markets: list[SimMarket] = []
    specs: dict[str, SymbolSpec] = {}
    for i in range(n_symbols):
        pi = i % len(_PRODUCTS)
        code, series, what, strike0, step = _PRODUCTS[pi]
        k = i // len(_PRODUCTS)
        strike = strike0 + step * k
        inverted = i % 3 == 1
        res_ns = day0 + (resolution_days + i % 3) * DAY_NS + 21 * 3600 * NS_PER_S
        close_ns = res_ns - 3600 * NS_PER_S
        close_d = dt.datetime.fromtimestamp(close_ns // NS_PER_S, tz=dt.UTC)
        res_d = dt.datetime.fromtimestamp(res_ns // NS_PER_S, tz=dt.UTC)
        date_tag = f"{close_d.year % 100:02d}{_MONTHS[close_d.month - 1]}{close_d.day:02d}"
        symbol = f"SIM{i:03d}-{code[1:]}"
        ticker = f"{series}-{date_tag}-T{strike}"
        above = f"{what} above {strike} on {close_d.date().isoformat()}?"
        title = (
            f"{what} at or below {strike} on {close_d.date().isoformat()}?" if inverted else above
        )
        m = SimMarket(
            symbol=symbol,
            kalshi_ticker=ticker,
            kalshi_series=series,
            kalshi_event_ticker=f"{series}-{date_tag}",
            kalshi_title=title,
            kalshi_yes_is=Outcome.NO if inverted else Outcome.YES,
            open_ts_ns=day0 - 7 * DAY_NS,
            close_ts_ns=close_ns,
            resolution_ts_ns=res_ns,
            fx_pair_id=f"FX-{symbol}",
            fx_symbol=code,
            fx_long_name=above,
            last_trade_date=close_d.strftime("%Y%m%d"),
            real_expiration_date=res_d.strftime("%Y%m%d"),
            strike=strike,
            yes_con_id=con_base + 2 * i,
            no_con_id=con_base + 2 * i + 1,
            under_con_id=under_base + pi,
        )
        markets.append(m)
        specs[symbol] = SymbolSpec(
            symbol=symbol,
            kalshi_ticker=ticker,
            forecastex=ForecastExSpec(yes_con_id=m.yes_con_id, no_con_id=m.no_con_id),
            kalshi_yes_is=m.kalshi_yes_is,
            resolution_ts_ns=res_ns,
            kalshi_series=series,
            equivalence=Equivalence(
                relation="complement" if inverted else "identical",
                resolution_source=f"simulated: {what}",
                cutoff_time=_iso(close_ns),
                verified_by="arbkit.sim.market_model",
                verified_on=dt.datetime.fromtimestamp(day0 // NS_PER_S, tz=dt.UTC)
                .date()
                .isoformat(),
                notes=(
                    "Kalshi asks 'at or below', ForecastEx asks 'above': Kalshi YES == FX NO"
                    if inverted
                    else ""
                ),
            ),
        )
    return SimUniverse(tuple(markets), SymbolMap(specs, "<sim>"), seed, now)


# --------------------------------------------------------------------- model ----------


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """The full bid ladder (best first, absolute sizes) of one outcome on one venue."""

    venue: Venue
    market: str  # Kalshi ticker, or the ForecastEx pair id
    outcome: Outcome  # in the venue's own terms
    levels: Levels


_KALSHI, _FX = 0, 1
_VENUES = (Venue.KALSHI, Venue.IBKR)
_PAIR_TOTAL_C = (100, 101)  # cents: a YES bid + NO bid at this total executes
_MIN_BID_C = (1, 2)
_CENTER_MIN_C, _CENTER_MAX_C = 4, 96  # keeps every top bid within both venues' ranges
_P_MIN, _P_MAX = 0.05, 0.95
_MAX_STEP_NS = NS_PER_S  # a stalled caller does not get a burst of catch-up updates
DISLOCATION_KINDS = ("top", "depth", "fee")


@dataclass(frozen=True, slots=True)
class DislocationInfo:
    """An active dislocation, for monitors and tests (the model's own state is private)."""

    symbol: str
    kind: str  # "top" | "depth" | "fee"
    venue: Venue  # the venue whose quotes are off
    kalshi_outcome: Outcome  # the Kalshi side of the cheap combination
    edge_usd: Decimal  # intended gross edge at top of book
    end_ns: int


@dataclass(slots=True)
class _Dislocation:
    kind: str
    venue: int  # which venue is off
    combo: int  # 0: Kalshi YES is cheap (+ FX Kalshi-NO-equivalent), 1: Kalshi NO is cheap
    edge_c: int  # gross edge at top of book, cents
    end_ns: int
    top_size: int  # Qty of the aggressive top level: small for "top", at least this for "depth"


class _Sym:
    """Per-symbol state. ``side`` 0 = bids for the outcome equivalent to Kalshi YES,
    1 = bids for the one equivalent to Kalshi NO (mapped to venue outcomes by ``outcomes``)."""

    __slots__ = (
        "centers",
        "disloc",
        "half_spread_c",
        "last_emitted",
        "last_ns",
        "market",
        "names",
        "offsets",
        "outcomes",
        "sizes",
        "views",
        "x",
    )

    def __init__(self, market: SimMarket) -> None:
        self.market = market
        self.names = (market.kalshi_ticker, market.fx_pair_id)
        ky = market.kalshi_yes_is
        self.outcomes = ((Outcome.YES, Outcome.NO), (ky, ky.opposite))
        self.x = 0.0  # latent log-odds of Kalshi YES
        self.last_ns: int | None = None
        self.views = [0.0, 0.0]  # each venue's log-odds
        self.centers = [50, 50]  # cents, as last quoted
        self.half_spread_c = [1, 1]
        self.offsets: list[list[list[int]]] = [[[], []], [[], []]]  # [venue][side] cents
        self.sizes: list[list[list[int]]] = [[[], []], [[], []]]  # [venue][side] Qty
        self.last_emitted: list[list[Levels | None]] = [[None, None], [None, None]]
        self.disloc: _Dislocation | None = None


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


_X_MIN, _X_MAX = _logit(_P_MIN), _logit(_P_MAX)


def _cents(x: float) -> int:
    c = round(100.0 / (1.0 + math.exp(-x)))
    return _CENTER_MIN_C if c < _CENTER_MIN_C else _CENTER_MAX_C if c > _CENTER_MAX_C else c


class MarketModel:
    """Pure, seeded generator of bid-ladder updates for both venues.

    ``updates_per_s`` is the target total of emitted BookUpdates (a market refresh usually
    changes both outcomes' ladders); ``kalshi_share`` of it goes to Kalshi.
    ``dislocation_rate_per_min`` and ``jump_rate_per_min`` are per symbol. Half-spreads are
    drawn per market: Kalshi 1–2¢, ForecastEx 1–3¢ (so with no dislocation the cross-venue
    pair costs at least $1.02 unless the latent just jumped and ForecastEx has not caught up).
    """

    def __init__(
        self,
        universe: SimUniverse,
        *,
        seed: int,
        updates_per_s: float = 300.0,
        dislocation_rate_per_min: float = 0.5,
        kalshi_share: float = 0.7,
        dislocation_ms: tuple[int, int] = (300, 3_000),
        dislocation_kind_weights: tuple[float, float, float] = (0.35, 0.3, 0.35),
        vol_logit_per_sqrt_s: float = 0.015,
        jump_rate_per_min: float = 0.5,
        jump_logit_sd: float = 0.3,
        kalshi_catch_up: float = 0.9,
        fx_catch_up: float = 0.35,
        kalshi_levels: int = 8,
        fx_levels: int = 6,
        kalshi_mean_size: int = 40,
        fx_mean_size: int = 15,
        fractional_size_prob: float = 0.05,
        start_ns: int | None = None,
    ) -> None:
        if updates_per_s < 0 or not 0.0 <= kalshi_share <= 1.0:
            raise ValueError("updates_per_s must be ≥ 0 and kalshi_share within [0, 1]")
        if kalshi_levels < 1 or fx_levels < 1:
            raise ValueError("kalshi_levels and fx_levels must be at least 1")
        if not (0.0 < kalshi_catch_up <= 1.0 and 0.0 < fx_catch_up <= 1.0):
            raise ValueError("catch-up factors must be within (0, 1]")
        if not 0 < dislocation_ms[0] <= dislocation_ms[1]:
            raise ValueError(f"dislocation_ms={dislocation_ms}: need 0 < low ≤ high")
        self.universe = universe
        self.seed = seed
        self.updates_per_s = updates_per_s
        self._rng = random.Random(f"arbkit-market-model:{seed}")
        rng = self._rng
        # ~1.6 emitted updates per refresh (measured: often both sides change).
        per_refresh = 1.6
        self._refresh_rate = (
            updates_per_s * kalshi_share / per_refresh,
            updates_per_s * (1.0 - kalshi_share) / per_refresh,
        )
        self._acc = [0.0, 0.0]
        self._disloc_rate_per_s = dislocation_rate_per_min * len(universe) / 60.0
        self._disloc_ms = dislocation_ms
        w = dislocation_kind_weights
        self._kind_cum = (w[0], w[0] + w[1], w[0] + w[1] + w[2])
        self._vol = vol_logit_per_sqrt_s
        self._jump_rate_per_s = jump_rate_per_min / 60.0
        self._jump_sd = jump_logit_sd
        self._catch_up = (kalshi_catch_up, fx_catch_up)
        self._levels = (kalshi_levels, fx_levels)
        self._mean_size = (kalshi_mean_size, fx_mean_size)
        self._frac_p = fractional_size_prob
        self._last_ns = start_ns
        self.dislocations: dict[str, int] = dict.fromkeys(DISLOCATION_KINDS, 0)
        self.updates_emitted: dict[Venue, int] = dict.fromkeys(Venue, 0)
        self._syms = [_Sym(m) for m in universe.markets]
        self._by_symbol = {s.market.symbol: s for s in self._syms}
        cum = 0.0
        self._cum_weights: list[float] = []
        for s in self._syms:
            s.x = rng.uniform(_logit(0.15), _logit(0.85))
            s.views = [s.x, s.x]
            s.centers = [_cents(s.x), _cents(s.x)]
            s.half_spread_c = [rng.choice((1, 1, 2)), rng.choice((1, 2, 2, 3))]
            for v in (_KALSHI, _FX):
                for side in (0, 1):
                    s.offsets[v][side] = self._new_offsets(v)
                    s.sizes[v][side] = [self._new_size(v, j) for j in range(self._levels[v])]
            cum += rng.uniform(0.5, 2.0)  # some markets are busier than others
            self._cum_weights.append(cum)
        self._weight_total = cum

    # ------------------------------------------------------------ generation ------

    def _new_offsets(self, v: int) -> list[int]:
        rng = self._rng
        out = [0]
        for _ in range(self._levels[v] - 1):
            out.append(out[-1] + (2 if rng.random() < 0.2 else 1))
        return out

    def _new_size(self, v: int, level: int) -> int:
        rng = self._rng
        whole = 1 + int(rng.expovariate(1.0 / self._mean_size[v]) * (1.0 + 0.3 * level))
        q = whole * QTY_SCALE
        if v == _KALSHI and rng.random() < self._frac_p:
            q += rng.randrange(1, QTY_SCALE)  # Kalshi allows 0.01-contract sizes
        return q

    def _ladder(self, v: int, s: _Sym, side: int, best_c: int, start: int = 0) -> list[int]:
        """Flat [price, size, …] for levels from index ``start``, best first, in range."""
        out: list[int] = []
        lo = _MIN_BID_C[v]
        for off, size in zip(s.offsets[v][side][start:], s.sizes[v][side][start:], strict=True):
            p = best_c - off
            if p < lo:
                break
            out.append(p * CENT)
            out.append(size)
        return out

    def _build(self, v: int, s: _Sym, center_c: int) -> tuple[list[int], list[int]]:
        """Both sides' ladders for venue ``v`` quoting around ``center_c`` (Kalshi-YES cents),
        with the active dislocation (if it is on this venue) applied."""
        hs = s.half_spread_c[v]
        total = _PAIR_TOTAL_C[v]
        d = s.disloc
        if d is None or d.venue != v:
            # ask(KY) = c + hs  ⇒ best KN bid = total − c − hs; symmetrically for KY bids.
            return (
                self._ladder(v, s, 0, total - 100 + center_c - hs),
                self._ladder(v, s, 1, total - center_c - hs),
            )
        other = _FX if v == _KALSHI else _KALSHI
        gap = s.half_spread_c[_KALSHI] + s.half_spread_c[_FX] + d.edge_c
        # combo 0 needs center_FX − center_K = gap; combo 1 needs center_K − center_FX = gap.
        sign = 1 if (v == _FX) == (d.combo == 0) else -1
        dc = s.centers[other] + sign * gap
        dc = _CENTER_MIN_C if dc < _CENTER_MIN_C else _CENTER_MAX_C if dc > _CENTER_MAX_C else dc
        b0 = total - 100 + dc - hs
        b1 = total - dc - hs
        lad0 = self._ladder(v, s, 0, b0)
        lad1 = self._ladder(v, s, 1, b1)
        # sign > 0: this venue's center moved up, so its KY-side bids are the aggressive ones.
        aggressive = 0 if sign > 0 else 1
        if d.kind == "depth":
            # A real size behind the mispriced top, so the opportunity holds at depth.
            lad = lad0 if aggressive == 0 else lad1
            lad[1] = max(lad[1], d.top_size)
        elif d.kind == "top":
            # Only a small stray order is off; behind it the venue's normal ladder.
            top = b0 if aggressive == 0 else b1
            normal = total - 100 + center_c - hs if aggressive == 0 else total - center_c - hs
            rest = self._ladder(v, s, aggressive, normal)
            lad = [top * CENT, d.top_size]
            for i in range(0, len(rest), 2):
                if rest[i] < top * CENT:
                    lad.append(rest[i])
                    lad.append(rest[i + 1])
            if aggressive == 0:
                lad0 = lad
            else:
                lad1 = lad
            # The stray top must not cross the other side's bids: on either venue a YES
            # bid and a NO bid summing to the pair total would trade at once.
            limit = (total - 1) * CENT - (lad0[0] if aggressive == 0 else lad1[0])
            other_lad = lad1 if aggressive == 0 else lad0
            kept = [x for i in range(0, len(other_lad), 2) if other_lad[i] <= limit
                    for x in other_lad[i:i + 2]]  # fmt: skip
            if aggressive == 0:
                lad1 = kept
            else:
                lad0 = kept
        return lad0, lad1

    # ------------------------------------------------------------------ api --------

    def initial_books(self) -> list[BookUpdate]:
        """Full books for every market and outcome on both venues (also resets what
        ``step`` diffs against, so every later update is relative to these)."""
        out: list[BookUpdate] = []
        for s in self._syms:
            for v in (_KALSHI, _FX):
                lad0, lad1 = self._build(v, s, s.centers[v])
                for side, flat in ((0, lad0), (1, lad1)):
                    levels = _pairs(flat)
                    s.last_emitted[v][side] = levels
                    out.append(BookUpdate(_VENUES[v], s.names[v], s.outcomes[v][side], levels))
                    self.updates_emitted[_VENUES[v]] += 1
        return out

    def probability(self, symbol: str) -> float:
        """The latent probability of Kalshi YES (as of that symbol's last refresh)."""
        x = self._by_symbol[symbol].x
        return 1.0 / (1.0 + math.exp(-x))

    def active_dislocations(self) -> list[DislocationInfo]:
        out = []
        for s in self._syms:
            d = s.disloc
            if d is not None:
                out.append(
                    DislocationInfo(
                        s.market.symbol,
                        d.kind,
                        _VENUES[d.venue],
                        Outcome.YES if d.combo == 0 else Outcome.NO,
                        Decimal(d.edge_c).scaleb(-2),
                        d.end_ns,
                    )
                )
        return out

    def step(self, now_ns: int) -> list[BookUpdate]:
        """Advance to ``now_ns``; the ladders that changed, in an order that never crosses
        a venue's book between two consecutive updates."""
        if self._last_ns is None:
            self._last_ns = now_ns
            return []
        elapsed = now_ns - self._last_ns
        if elapsed <= 0:
            return []
        self._last_ns = now_ns
        dt_s = min(elapsed, _MAX_STEP_NS) / NS_PER_S
        rng = self._rng
        out: list[BookUpdate] = []
        for s in self._syms:
            d = s.disloc
            if d is not None and d.end_ns <= now_ns:
                s.disloc = None
                self._refresh(s, d.venue, now_ns, out)
        for _ in range(_poisson(rng, self._disloc_rate_per_s * dt_s)):
            self._start_dislocation(now_ns, out)
        cum, total = self._cum_weights, self._weight_total
        syms = self._syms
        last = len(syms) - 1
        for v in (_KALSHI, _FX):
            acc = self._acc[v] + self._refresh_rate[v] * dt_s
            n = int(acc)
            self._acc[v] = acc - n
            for _ in range(n):
                i = bisect_right(cum, rng.random() * total)
                self._refresh(syms[i if i <= last else last], v, now_ns, out, noise=True)
        return out

    # -------------------------------------------------------------- internals ------

    def _advance_latent(self, s: _Sym, now_ns: int) -> None:
        if s.last_ns is None:
            s.last_ns = now_ns
            return
        elapsed = now_ns - s.last_ns
        if elapsed <= 0:
            return
        s.last_ns = now_ns
        dt_s = elapsed / NS_PER_S
        rng = self._rng
        x = s.x + self._vol * math.sqrt(dt_s) * rng.gauss(0.0, 1.0)
        if rng.random() < self._jump_rate_per_s * dt_s:
            x += rng.gauss(0.0, self._jump_sd)
        if x > _X_MAX:  # reflect: keeps the probability within [0.05, 0.95]
            x = max(_X_MIN, 2 * _X_MAX - x)
        elif x < _X_MIN:
            x = min(_X_MAX, 2 * _X_MIN - x)
        s.x = x

    def _start_dislocation(self, now_ns: int, out: list[BookUpdate]) -> None:
        rng = self._rng
        s = self._syms[rng.randrange(len(self._syms))]
        if s.disloc is not None:
            return
        r = rng.random() * self._kind_cum[2]
        kind = DISLOCATION_KINDS[bisect_right(self._kind_cum, r)]
        lo, hi = self._disloc_ms
        dur_ms = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        s.disloc = _Dislocation(
            kind=kind,
            venue=_FX if rng.random() < 0.6 else _KALSHI,
            combo=rng.randrange(2),
            edge_c=rng.randint(1, 2) if kind == "fee" else rng.randint(5, 9),
            end_ns=now_ns + int(dur_ms * 1_000_000),
            top_size=(rng.randint(1, 3) if kind == "top" else rng.randint(10, 60)) * QTY_SCALE,
        )
        self.dislocations[kind] += 1
        self._refresh(s, s.disloc.venue, now_ns, out)

    def _refresh(
        self, s: _Sym, v: int, now_ns: int, out: list[BookUpdate], *, noise: bool = False
    ) -> None:
        """Re-quote venue ``v`` for one symbol; emit the outcomes whose ladder changed."""
        self._advance_latent(s, now_ns)
        view = s.views[v] + self._catch_up[v] * (s.x - s.views[v])
        s.views[v] = view
        center = _cents(view)
        s.centers[v] = center
        if noise:
            rng = self._rng
            n_levels = self._levels[v]
            for side in (0, 1):
                if rng.random() < 0.8:
                    j = rng.randrange(n_levels)
                    s.sizes[v][side][j] = self._new_size(v, j)
                if rng.random() < 0.02:
                    s.offsets[v][side] = self._new_offsets(v)
        lad0, lad1 = self._build(v, s, center)
        prev = s.last_emitted[v]
        new0, new1 = _pairs(lad0), _pairs(lad1)
        ch0, ch1 = new0 != prev[0], new1 != prev[1]
        if not (ch0 or ch1):
            return
        # Apply first the side whose best bid falls: the intermediate book stays uncrossed.
        old1 = prev[1]
        side1_first = ch1 and old1 is not None and bool(old1) and new1[:1] < old1[:1]
        order = (
            ((1, new1, ch1), (0, new0, ch0)) if side1_first else ((0, new0, ch0), (1, new1, ch1))
        )
        venue, name, outcomes = _VENUES[v], s.names[v], s.outcomes[v]
        for side, levels, changed in order:
            if changed:
                prev[side] = levels
                out.append(BookUpdate(venue, name, outcomes[side], levels))
                self.updates_emitted[_VENUES[v]] += 1


def _pairs(flat: list[int]) -> Levels:
    it = iter(flat)
    return cast(Levels, tuple(zip(it, it, strict=True)))


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method; lam here is well below 1 per step."""
    if lam <= 0.0:
        return 0
    limit = math.exp(-lam)
    k = 0
    p = rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


# --------------------------------------------------------------------- drive ----------


@dataclass(slots=True)
class DriveStats:
    """What ``drive`` has sent, for a monitor or a load test."""

    steps: int = 0
    updates: dict[Venue, int] = field(default_factory=lambda: dict.fromkeys(Venue, 0))
    sink_errors: int = 0
    max_step_ns: int = 0  # longest step + dispatch, wall time


async def drive(
    model: MarketModel,
    kalshi: BookSink,
    tws: BookSink,
    *,
    stop: asyncio.Event,
    tick_interval_ms: int = 10,
    clock: Callable[[], int] = time.time_ns,
    stats: DriveStats | None = None,
) -> DriveStats:
    """Apply the initial books, then step the model every ``tick_interval_ms`` until
    ``stop`` is set. A sink that raises is counted and logged, not fatal: the other
    markets keep moving."""
    st = stats if stats is not None else DriveStats()
    sinks = {Venue.KALSHI: kalshi, Venue.IBKR: tws}

    def dispatch(updates: list[BookUpdate]) -> None:
        for u in updates:
            try:
                sinks[u.venue].set_bids(u.market, u.outcome, u.levels)
            except Exception:
                st.sink_errors += 1
                if st.sink_errors <= 10:
                    log.exception("sim driver: %s sink rejected %s %s", u.venue.value, u.market, u)
                continue
            st.updates[u.venue] += 1

    dispatch(model.initial_books())
    dispatch(model.step(clock()))  # the first call only sets the time origin (unless start_ns)
    interval_s = tick_interval_ms / 1000.0
    while not stop.is_set():
        await asyncio.sleep(interval_s)
        if stop.is_set():
            break
        t0 = time.perf_counter_ns()
        dispatch(model.step(clock()))
        st.steps += 1
        spent = time.perf_counter_ns() - t0
        if spent > st.max_step_ns:
            st.max_step_ns = spent
    return st
