"""Listings both local venues publish, with true pairs and decoys, and their labels.

Modelled on the venues' real conventions: Kalshi series/events/markets with
``strike_type`` + ``floor_strike``/``cap_strike``, a title, ``yes_sub_title`` and
``rules_primary`` ("If … then the market resolves to Yes"), settlement sources on the
event; ForecastEx products (an IND underlier with a ``longName``) whose YES (right C) /
NO (right P) contracts ask "above <strike>" at a last trade date and time, with the
resolution source in the description. For every product and date:

* ``identical``  — the same question (Kalshi ``greater`` X, ForecastEx above X);
* ``complement`` — the same question the other way round (Kalshi ``less_or_equal`` X);
* decoys a careless matcher confuses: a neighbouring strike, "X or above" against
  "above X" (they part exactly at X), "below X" against "above X" (both lose at X), a
  different cutoff, a different resolution source, and a different measure of the same
  thing (core CPI, the day's low).

``labelled_pairs()`` is the evaluation set (tests/test_matching_quality.py);
``venue_listings()`` is what the local venues list (true pairs and decoys mixed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from arbkit.matching.listings import ForecastExListing, KalshiListing

if TYPE_CHECKING:
    from arbkit.sim.market_model import SimMarket

NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Product:
    fx_symbol: str
    fx_long_name: str
    kalshi_series: str
    measure: str  # what the question asks about, in Kalshi's words
    fx_measure: str  # the same in ForecastEx's words
    unit: str  # "%", "$", "°F", ""
    strikes: tuple[Decimal, ...]
    step: Decimal
    observe_utc: dt.time  # when the value is taken
    source: str  # the Kalshi settlement source
    fx_source: str  # the same source as ForecastEx names it
    other_source: str  # a plausible but different source (decoy)
    modifier_measure: str  # a different measure of the same thing (decoy)
    category: str


PRODUCTS: tuple[Product, ...] = (
    Product(
        "FF", "Fed Funds Target Rate", "KXFED",
        "the upper bound of the federal funds target range",
        "the upper bound of the Fed funds target range", "%",
        (Decimal("3.75"), Decimal("4.00"), Decimal("4.25")), Decimal("0.25"),
        dt.time(19, 0), "Federal Reserve", "the Federal Reserve Board",
        "CME FedWatch", "the effective federal funds rate", "Economics",
    ),
    Product(
        "CPIY", "US CPI Year-over-Year", "KXCPIYOY",
        "the year-over-year change in the Consumer Price Index (CPI-U)",
        "the CPI year-over-year change", "%",
        (Decimal("2.7"), Decimal("2.8"), Decimal("2.9")), Decimal("0.1"),
        dt.time(12, 30), "Bureau of Labor Statistics", "the BLS",
        "Cleveland Fed Nowcast", "the core CPI year-over-year change", "Economics",
    ),
    Product(
        "UR", "US Unemployment Rate", "KXU3",
        "the U-3 unemployment rate", "the US unemployment rate", "%",
        (Decimal("4.2"), Decimal("4.3"), Decimal("4.4")), Decimal("0.1"),
        dt.time(12, 30), "Bureau of Labor Statistics", "the Bureau of Labor Statistics",
        "ADP National Employment Report", "the U-6 underemployment rate", "Economics",
    ),
    Product(
        "BTC", "Bitcoin Price", "KXBTCD",
        "the Bitcoin price (CF Benchmarks BRTI)", "the Bitcoin reference rate", "$",
        (Decimal("95000"), Decimal("100000"), Decimal("105000")), Decimal("2500"),
        dt.time(21, 0), "CF Benchmarks", "CF Benchmarks BRTI",
        "Coinbase", "the Bitcoin intraday high", "Crypto",
    ),
    Product(
        "NYHT", "NYC High Temperature", "KXHIGHNY",
        "the high temperature in Central Park, New York", "the NYC Central Park high temperature",
        "°F", (Decimal("58"), Decimal("60"), Decimal("62")), Decimal("1"),
        dt.time(23, 59), "National Weather Service", "the NWS Climatological Report",
        "AccuWeather", "the low temperature in Central Park, New York", "Climate",
    ),
    Product(
        "GASP", "US Average Gas Price", "KXAAAGASW",
        "the US national average price of regular gasoline", "the US average regular gas price",
        "$", (Decimal("3.00"), Decimal("3.10"), Decimal("3.20")), Decimal("0.01"),
        dt.time(14, 0), "AAA", "AAA",
        "EIA", "the US national average price of diesel", "Economics",
    ),
    Product(
        "NFP", "US Nonfarm Payrolls", "KXPAYROLLS",
        "the change in nonfarm payrolls (thousands)", "nonfarm payrolls change (thousands)", "",
        (Decimal("50"), Decimal("100"), Decimal("150")), Decimal("1"),
        dt.time(12, 30), "Bureau of Labor Statistics", "the BLS Employment Situation report",
        "ADP National Employment Report", "the change in private payrolls (thousands)", "Economics",
    ),
    Product(
        "SPX", "S&P 500 Close", "KXINX",
        "the S&P 500 index closing value", "the S&P 500 closing value", "",
        (Decimal("6800"), Decimal("6900"), Decimal("7000")), Decimal("0.01"),
        dt.time(21, 0), "S&P Dow Jones Indices", "S&P Dow Jones Indices",
        "Yahoo Finance", "the S&P 500 intraday high", "Markets",
    ),
    Product(
        "GDPQ", "US GDP Growth", "KXGDP",
        "annualized real GDP growth (advance estimate)", "US real GDP growth, annualized", "%",
        (Decimal("1.5"), Decimal("2.0"), Decimal("2.5")), Decimal("0.1"),
        dt.time(12, 30), "Bureau of Economic Analysis", "the BEA",
        "Atlanta Fed GDPNow", "nominal GDP growth, annualized", "Economics",
    ),
    Product(
        "TNX", "10-Year Treasury Yield", "KXTNOTE",
        "the 10-year Treasury constant maturity yield", "the 10-year Treasury yield", "%",
        (Decimal("4.0"), Decimal("4.2"), Decimal("4.4")), Decimal("0.01"),
        dt.time(21, 0), "U.S. Department of the Treasury", "the US Treasury",
        "CNBC", "the 2-year Treasury constant maturity yield", "Markets",
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class LabelledPair:
    kalshi: KalshiListing
    forecastex: ForecastExListing
    relation: str  # the truth: identical, complement, subset, superset, overlap, disjoint
    kind: str  # identical, complement, neighbour, inclusive, inverted, cutoff, source, measure

    @property
    def tradable(self) -> bool:
        return self.kind in ("identical", "complement")


def _fmt(p: Product, x: Decimal) -> str:
    if p.unit == "$":
        return f"${x:,}"
    return f"{x}{p.unit}"


def _ns(day: dt.date, t: dt.time) -> int:
    return int(dt.datetime.combine(day, t, dt.UTC).timestamp()) * NS


def _kalshi(
    p: Product,
    day: dt.date,
    strike: Decimal,
    strike_type: str,
    *,
    measure: str | None = None,
    source: str | None = None,
    observe: dt.time | None = None,
    tag: str = "",
    series_tag: str = "",
) -> KalshiListing:
    measure = measure or p.measure
    code = day.strftime("%y%b%d").upper()
    series = p.kalshi_series + series_tag
    event = f"{series}-{code}"
    v = _fmt(p, strike)
    variant = PRODUCTS.index(p) % 4  # the venues phrase the same bound several ways
    words = {
        "greater": (f"above {v}", f"above {v}", f"more than {v}", f"greater than {v}"),
        "greater_or_equal": (f"{v} or above", f"at least {v}", f"{v} or more", f"at or above {v}"),
        "less": (f"below {v}", f"less than {v}", f"below {v}", f"under {v}"),
        "less_or_equal": (f"{v} or below", f"at or below {v}", f"at most {v}", f"{v} or less"),
    }[strike_type][variant]
    side = {"greater": "T", "greater_or_equal": "G", "less": "L", "less_or_equal": "B"}
    ticker = f"{event}-{side[strike_type]}{strike}{tag}"
    when = day.strftime("%B %-d, %Y")
    obs = observe or p.observe_utc
    is_floor = strike_type.startswith("greater")
    return KalshiListing(
        ticker=ticker,
        event_ticker=event,
        series_ticker=series,
        title=f"Will {measure} be {words} on {when}?",
        yes_sub_title=words,
        rules_primary=(
            f"If {measure} is {words} as reported for {when}, then the market resolves to Yes."
        ),
        rules_secondary=f"Outcomes are determined by {source or p.source}.",
        strike_type=strike_type,
        floor_strike=strike if is_floor else None,
        cap_strike=None if is_floor else strike,
        close_time_ns=_ns(day, obs) - 60 * NS,
        expected_expiration_ns=_ns(day, obs),
        settlement_sources=(source or p.source,),
        status="active",
    )


def _fx(
    p: Product,
    day: dt.date,
    strike: Decimal,
    con_base: int,
    *,
    observe: dt.time | None = None,
    source: str | None = None,
) -> ForecastExListing:
    when = day.strftime("%B %-d, %Y")
    verb = ("be above", "exceed", "be greater than", "be higher than")[PRODUCTS.index(p) % 4]
    return ForecastExListing(
        symbol=p.fx_symbol,
        long_name=p.fx_long_name,
        description=(
            f"Will {p.fx_measure} {verb} {_fmt(p, strike)} on {when}? "
            f"Resolves according to {source or p.fx_source}."
        ),
        strike=strike,
        yes_con_id=con_base,
        no_con_id=con_base + 1,
        last_trade_date=day.strftime("%Y%m%d"),
        # ForecastEx stops trading before the value is taken on some products
        last_trade_ns=_ns(day, observe or p.observe_utc) - (PRODUCTS.index(p) % 2) * 1800 * NS,
        category=p.category,
    )


def labelled_pairs(day: dt.date = dt.date(2026, 12, 18)) -> list[LabelledPair]:
    """Eight labelled pairs per product (2 true pairs, 6 decoys): 80 in all."""
    out: list[LabelledPair] = []
    for i, p in enumerate(PRODUCTS):
        base = 900_000_000 + i * 1_000
        lo, mid, hi = p.strikes
        fx_mid = _fx(p, day, mid, base)
        fx_hi = _fx(p, day, hi, base + 10)
        late = (dt.datetime.combine(day, p.observe_utc) + dt.timedelta(hours=5)).time()
        same_day_later = late if late > p.observe_utc else dt.time(23, 59)
        out += [
            LabelledPair(_kalshi(p, day, mid, "greater"), fx_mid, "identical", "identical"),
            LabelledPair(_kalshi(p, day, hi, "less_or_equal"), fx_hi, "complement", "complement"),
            # a neighbouring strike: Kalshi above lo is wider than ForecastEx above mid
            LabelledPair(_kalshi(p, day, lo, "greater"), fx_mid, "superset", "neighbour"),
            # "mid or above" pays at exactly mid; "above mid" does not
            LabelledPair(_kalshi(p, day, mid, "greater_or_equal"), fx_mid, "superset", "inclusive"),
            # "below mid" and "above mid" both lose at exactly mid
            LabelledPair(_kalshi(p, day, mid, "less"), fx_mid, "disjoint", "inverted"),
            # the same strike observed at another time
            LabelledPair(
                _kalshi(p, day, mid, "greater"),
                _fx(p, day, mid, base + 20, observe=same_day_later)
                if same_day_later != p.observe_utc
                else _fx(p, day + dt.timedelta(days=1), mid, base + 20),
                "overlap",
                "cutoff",
            ),
            LabelledPair(
                # Kalshi names sources per event: another source is another series
                _kalshi(p, day, mid, "greater", source=p.other_source, series_tag="X"),
                fx_mid,
                "overlap",
                "source",
            ),
            LabelledPair(
                _kalshi(p, day, mid, "greater", measure=p.modifier_measure, tag="M"),
                fx_mid,
                "overlap",
                "measure",
            ),
        ]
    return out


def venue_listings(
    day: dt.date = dt.date(2026, 12, 18),
) -> tuple[list[KalshiListing], list[ForecastExListing]]:
    """Every distinct listing of the labelled set: what the local venues publish."""
    ks: dict[str, KalshiListing] = {}
    fs: dict[int, ForecastExListing] = {}
    for lp in labelled_pairs(day):
        ks.setdefault(lp.kalshi.ticker, lp.kalshi)
        fs.setdefault(lp.forecastex.yes_con_id, lp.forecastex)
    return list(ks.values()), list(fs.values())


SIM_SOURCE = "arbkit simulated data service"


def universe_listings(
    markets: Sequence[SimMarket],
) -> list[tuple[KalshiListing, ForecastExListing]]:
    """How the local venues list the simulated universe's own markets (the pairs the
    demo trades): Kalshi asks "above" (``greater``) or, for an inverted symbol, "at or
    below" (``less_or_equal``); ForecastEx always asks "above". The value is observed at
    the Kalshi close, which is also the ForecastEx last trade time."""
    out = []
    for m in markets:
        when = dt.datetime.fromtimestamp(m.close_ts_ns // NS, dt.UTC)
        day = when.strftime("%B %-d, %Y")
        what = m.kalshi_title.split(" above ")[0].split(" at or below ")[0]
        bound = f"at or below {m.strike}" if m.inverted else f"above {m.strike}"
        k = KalshiListing(
            ticker=m.kalshi_ticker,
            event_ticker=m.kalshi_event_ticker,
            series_ticker=m.kalshi_series,
            title=f"Will the {what} be {bound} on {day}?",
            yes_sub_title=bound,
            rules_primary=(
                f"If the {what} is {bound} as reported for {day}, then the market resolves to Yes."
            ),
            rules_secondary=f"Outcomes are determined by the {SIM_SOURCE}.",
            strike_type="less_or_equal" if m.inverted else "greater",
            floor_strike=None if m.inverted else m.strike,
            cap_strike=m.strike if m.inverted else None,
            close_time_ns=m.close_ts_ns,
            expected_expiration_ns=m.close_ts_ns,
            settlement_sources=(SIM_SOURCE,),
            status="active",
        )
        f = ForecastExListing(
            symbol=m.fx_symbol,
            long_name=what,
            description=(
                f"Will the {what} be above {m.strike} on {day}? Resolves according to the "
                f"{SIM_SOURCE}."
            ),
            strike=m.strike,
            yes_con_id=m.yes_con_id,
            no_con_id=m.no_con_id,
            last_trade_date=m.last_trade_date,
            last_trade_ns=m.close_ts_ns,
        )
        out.append((k, f))
    return out
