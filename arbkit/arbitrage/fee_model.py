"""Venue fees in exact integer arithmetic, always rounded up.

Kalshi: fee = round_up(coefficient × multiplier × C × P × (1 − P)), C contracts, P dollars.
In model units (qty = 100·C, price = 10⁴·P, money = 10⁶·$):

    fee_money = k × qty × price × (10⁴ − price) / 10⁴        with k = coefficient × multiplier

k is an exact rational (num/den), so the unrounded fee is the rational
``k.num × Σ qty·price·(10⁴−price)  /  (k.den × 10⁴)`` and rounding up is one ceil-division.

Granularity (reference/kalshi.md §6): ``fee_rounding`` (default) — Kalshi's current
rule, per order, as the bound of its net fee (``KalshiOrderFees`` below);
``cent_per_order`` — the legacy schedule, one ceil to the cent over the whole order
(conservative); ``centicent_per_fill`` — ceil to $0.0001 on every fill, no rebate.

Kalshi's current rule (fee_rounding page: per-fill trade fee at $0.0001, per-fill rounding
fee to the balance precision, per-order whole-cent rebates) is ``KalshiOrderFees`` below, with
``kalshi_order_fee_bound`` as the split-independent upper bound a detector may use.

ForecastEx: a flat per-contract fee (default 0: the $0.01 per pair is built into the
$1.01 pair price; 0.01 is the conservative setting), ForecastEx trades whole contracts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, localcontext
from fractions import Fraction

from arbkit.config.execution_loader import FeeParams
from arbkit.model import PRICE_SCALE, QTY_SCALE, Money, Price, Qty

CENT = 10_000  # Money units
CENTICENT = 100

_GRANULARITY = {
    "cent_per_order": (CENT, False),
    "centicent_per_fill": (CENTICENT, True),
    # Kalshi's current rule: its order-level bound is never below a cent-per-order fee on
    # whole cents, so the detector's cent-per-order search bounds stay valid lower bounds.
    "fee_rounding": (CENT, False),
}


def _day_start_ns(day: str) -> int:
    import datetime as dt

    d = dt.date.fromisoformat(day)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 1_000_000_000


def _ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def fee_term(price: Price, qty: Qty) -> int:
    """qty × price × (1 − price) in model units; exact, summable across fills."""
    return qty * price * (PRICE_SCALE - price)


@dataclass(frozen=True, slots=True)
class KalshiFeeSchedule:
    """One (coefficient × multiplier) rate with its rounding rule, pre-reduced to integers."""

    num: int
    den: int  # includes the 10⁴ price scale
    granularity: int  # Money units
    per_fill: bool
    balance_precision: int = 0  # > 0: Kalshi's current fee_rounding rule at this precision

    @classmethod
    def make(
        cls,
        coefficient: Decimal,
        multiplier: Decimal,
        rounding: str,
        balance_precision: int = CENT,
    ) -> KalshiFeeSchedule:
        k = Fraction(coefficient) * Fraction(multiplier)
        gran, per_fill = _GRANULARITY[rounding]
        bp = balance_precision if rounding == "fee_rounding" else 0
        return cls(k.numerator, k.denominator * PRICE_SCALE, gran, per_fill, bp)

    def order_fee(self, term_sum: int, cost: int) -> Money:
        """Fee of one order with these summed fee terms and cost. Under the current rule,
        the bound of the accumulator's net fee whatever the split into fills (it depends
        only on the totals): what the detector and the estimates use."""
        if not self.balance_precision:
            return self.round_up(term_sum)
        exact = Fraction(self.num * term_sum, self.den)
        ideal = ideal_fee(exact, Money(cost), DEFAULT_FEE_GRANULARITY, self.balance_precision)
        return Money(ideal + REBATE_UNIT - math.gcd(self.balance_precision, REBATE_UNIT))

    def round_up(self, term_sum: int) -> Money:
        g = self.granularity
        return Money(_ceil_div(self.num * term_sum, self.den * g) * g)

    def fee(self, fills: Iterable[tuple[Price, Qty]]) -> Money:
        """Fee for one order whose fills are (price, qty) pairs."""
        if self.per_fill:
            return Money(sum(self.round_up(fee_term(p, q)) for p, q in fills))
        if self.balance_precision:
            fills = list(fills)
            if not fills:
                return Money(0)
            terms = sum(fee_term(p, q) for p, q in fills)
            return self.order_fee(terms, sum(p * q for p, q in fills))
        return self.round_up(sum(fee_term(p, q) for p, q in fills))

    def exact_fee_lower_bound(self, price: Price, qty: Qty) -> int:
        """Unrounded fee floored to Money — a lower bound used for cheap rejection."""
        return self.num * fee_term(price, qty) // self.den


# Kalshi ``Series.fee_type`` → does a maker pay (the taker always pays the quadratic
# fee). ``flat`` ("Specific Trading Fees Table") and types outside the spec's enum (the
# wire sends e.g. ``margin_market_maker_program_fees``) are not modelled: never traded.
KALSHI_FEE_TYPES: dict[str, bool] = {
    "quadratic": False,
    "quadratic_with_maker_fees": True,
    "quadratic_with_combo_maker_fees": True,
}


class UnknownFeeType(ValueError):
    """A series whose fee the model cannot compute: trading it would guess the fee."""


@dataclass(frozen=True, slots=True)
class SeriesFee:
    """What Kalshi says a series charges (``GET /series/{t}``, fee changes, overrides)."""

    fee_type: str
    multiplier: Decimal


def _check_fee(what: str, fee: SeriesFee) -> None:
    if fee.fee_type not in KALSHI_FEE_TYPES:
        raise UnknownFeeType(
            f"{what} has fee_type {fee.fee_type!r}, which the fee model "
            f"does not compute (known: {', '.join(KALSHI_FEE_TYPES)}): not traded"
        )
    if fee.multiplier < 0:
        raise UnknownFeeType(f"{what}: fee_multiplier {fee.multiplier} < 0")


class FeeModel:
    """Fees for both venues from the execution config's FeeParams, with the venue's own
    per-series fee type and multiplier taking precedence where it has said them."""

    def __init__(self, params: FeeParams) -> None:
        self.params = params
        self._taker: dict[tuple[str, str], KalshiFeeSchedule] = {}  # (series, ticker)
        self._maker: dict[tuple[str, str], KalshiFeeSchedule] = {}
        self.series_fees: dict[str, SeriesFee] = {}  # what the venue said, by series
        # Kalshi event-level overrides (``event_fee_update``), put on each market of the
        # event by its ticker: they beat the series' fee for those markets only.
        self.market_fees: dict[str, SeriesFee] = {}
        self.forecastex_fee_per_contract: Money = Money(params.forecastex_fee_per_contract_usd)
        # (effective from, bps), oldest first: the coupon rate in force at a time
        self._coupon_dated = sorted(
            (_day_start_ns(day), bps) for day, bps in params.forecastex_coupon_rates_bps.items()
        )

    def coupon_bps_at(self, now_ns: int) -> int:
        """The ForecastEx coupon rate (APY, bps) in force at ``now_ns``."""
        rate = self.params.forecastex_coupon_apy_bps
        for since, bps in self._coupon_dated:
            if since > now_ns:
                break
            rate = bps
        return rate

    def coupon_day(self, value: Money, day_start_ns: int) -> tuple[Money, int]:
        """One day's ForecastEx coupon on ``value`` at the rate in force that day, and the
        rate (APY, bps). The quoted rate is an APY, so the daily rate is the compounding
        one, (1 + APY)^(1/365) − 1 (below APY/365), and the amount is rounded down:
        accrued income is never overstated."""
        bps = self.coupon_bps_at(day_start_ns)
        if bps <= 0 or value <= 0:
            return Money(0), bps
        with localcontext() as ctx:
            ctx.prec = 50
            daily = (1 + Decimal(bps) / 10_000) ** (Decimal(1) / 365) - 1
            return Money(int((value * daily).to_integral_value(ROUND_FLOOR))), bps

    def set_series_fee(self, series: str, fee: SeriesFee) -> None:
        """The venue's fee for ``series`` (raises UnknownFeeType for a type not modelled)."""
        _check_fee(f"Kalshi series {series}", fee)
        self.series_fees[series] = fee
        self._taker.clear()
        self._maker.clear()

    def set_market_fee(self, ticker: str, fee: SeriesFee | None) -> None:
        """An event's fee override on one of its markets (None clears it); raises
        UnknownFeeType for a type not modelled."""
        if fee is None:
            self.market_fees.pop(ticker, None)
        else:
            _check_fee(f"Kalshi market {ticker}", fee)
            self.market_fees[ticker] = fee
        self._taker.clear()
        self._maker.clear()

    def kalshi_schedule(
        self, series: str = "", *, maker: bool = False, ticker: str = ""
    ) -> KalshiFeeSchedule:
        cache = self._maker if maker else self._taker
        key = (series, ticker)
        sched = cache.get(key)
        if sched is None:
            p = self.params
            coef = p.kalshi_maker_coefficient if maker else p.kalshi_taker_coefficient
            venue = self.market_fees.get(ticker) or self.series_fees.get(series)
            if venue is not None:
                mult = venue.multiplier
                if maker and not KALSHI_FEE_TYPES[venue.fee_type]:
                    coef = Decimal(0)  # "quadratic": makers pay nothing
            else:
                mult = p.kalshi_series_multipliers.get(series, Decimal(1))
            sched = KalshiFeeSchedule.make(
                coef, mult, p.kalshi_fee_rounding, p.kalshi_balance_precision_usd
            )
            cache[key] = sched
        return sched

    def kalshi_fee(
        self,
        fills: Iterable[tuple[Price, Qty]],
        series: str = "",
        *,
        maker: bool = False,
        ticker: str = "",
    ) -> Money:
        return self.kalshi_schedule(series, maker=maker, ticker=ticker).fee(fills)

    def forecastex_fee(self, qty: Qty) -> Money:
        """Per-contract fee; ForecastEx quantities are whole contracts (rounded up if not)."""
        contracts = _ceil_div(qty, QTY_SCALE)
        return Money(contracts * self.forecastex_fee_per_contract)


# ------------------------------------------------ Kalshi's current fee rounding ---------
#
# reference/kalshi.md §6 and §9, docs.kalshi.com getting_started/fee_rounding (as relayed).
# The pieces below are small pure functions so that a different reading of the rule is a
# one-function change; ``KalshiOrderFees`` only sequences them.
#
# Readings chosen where the rule text is ambiguous:
#
# 1. Trade fee, per fill: the exact model fee (coefficient × multiplier × C × P × (1 − P)) of
#    that fill, rounded UP to ``fee_granularity`` (Money units: 100 = $0.0001, the default;
#    1 = $0.000001 for the conflicting later copy of the page).
# 2. Rounding fee, per fill: the rule floors ``balance_change = revenue − trade_fee`` to the
#    member's balance precision and calls the amount removed the rounding fee.  Every fill
#    modelled here is a purchase (Kalshi exits by buying the other side), so
#    ``revenue = −cost`` with ``cost = C × P`` (= qty × price in Money units, exact), and
#    flooring ``−(cost + trade_fee)`` is rounding the charge ``cost + trade_fee`` UP:
#    ``rounding_fee = ceil_B(cost + trade_fee) − (cost + trade_fee)`` (0 ≤ it < B).
# 3. Rebates, per order: "a single equivalent fill" is one fill carrying the order's summed
#    exact fee term and summed cost so far (for one price level that is literally one fill
#    of the total quantity at that price; across levels — or across taker and maker fills —
#    the exact fee terms are added before any rounding).  Its fee under rules 1–2 is the
#    ``ideal``.  After every fill: ``excess = charged − rebated − ideal`` and, when positive,
#    ``rebate = floor(excess / $0.01) × $0.01`` (clamped so the net never goes below $0.00).
#
# Why the net converges (the invariant ``ideal ≤ net < ideal + $0.01`` after every fill):
#   Write ceil_B for rounding up to the balance precision B, tf(x) for rounding the exact fee x
#   up to the granularity, K for the summed cost and X for the summed exact fee.
#   ideal = ceil_B(K + tf(X)) − K, and one fill's charge is ceil_B(c + tf(x)) − c.
#   Base: before any fill net = 0 = ideal.
#   Step: ceilings are superadditive upward — tf(X) + tf(x) ≥ tf(X + x) and
#   ceil_B(a) + ceil_B(b) ≥ ceil_B(a + b), and ceil_B is monotone — so
#     ideal_old + charge = ceil_B(K + tf(X)) + ceil_B(c + tf(x)) − (K + c)
#                        ≥ ceil_B(K + c + tf(X + x)) − (K + c) = ideal_new.
#   Hence, if net_old ≥ ideal_old, the net before this fill's rebate is ≥ ideal_new; a rebate
#   of floor(excess / ¢)·¢ leaves excess mod ¢ ∈ [0, ¢), and no rebate means excess ≤ 0,
#   i.e. net = ideal.  So ideal ≤ net < ideal + ¢ after every fill (the clamp at $0.00 never
#   binds because ideal ≥ 0).
#   Moreover net − ideal = Σ ceil_B(…) − ceil_B(…) − rebates is a multiple of
#   gcd(B, ¢), so net ≤ ideal + ¢ − gcd(B, ¢): for non-direct members (B = ¢) the net equals
#   the ideal exactly; for direct members (B = $0.0001) it exceeds it by at most $0.0099.
#   ``ideal`` depends only on the summed exact fee and cost, which are linear in the quantity
#   at a fixed price, so it is the same for every split of the same (price, qty) levels, in
#   any order: that is ``kalshi_order_fee_bound``.

REBATE_UNIT = CENT  # rebates are whole multiples of $0.01
DEFAULT_FEE_GRANULARITY = CENTICENT  # $0.0001
DEFAULT_BALANCE_PRECISION = CENT  # non-direct members: $0.01 (direct members: CENTICENT)


def _ceil_to(amount: Fraction | int, unit: int) -> int:
    """``amount`` (Money units, exact) rounded up to a whole multiple of ``unit``."""
    f = Fraction(amount)
    return _ceil_div(f.numerator, f.denominator * unit) * unit


def _check_unit(name: str, unit: int) -> None:
    if isinstance(unit, bool) or not isinstance(unit, int) or unit <= 0:
        raise ValueError(f"{name}={unit!r}: must be a positive integer of Money units")


def _check_fill(price: Price, qty: Qty) -> None:
    if not 0 <= price <= PRICE_SCALE:
        raise ValueError(f"price={price!r}: must be within 0..{PRICE_SCALE} ($0..$1)")
    if qty <= 0:
        raise ValueError(f"qty={qty!r}: a fill has a positive quantity")


def exact_fee(schedule: KalshiFeeSchedule, price: Price, qty: Qty) -> Fraction:
    """The unrounded model fee of one fill, in Money units (exact rational)."""
    return Fraction(schedule.num * fee_term(price, qty), schedule.den)


def fill_cost(price: Price, qty: Qty) -> Money:
    """What a purchase of ``qty`` at ``price`` costs before fees: C × P, exact in Money."""
    return Money(qty * price)


def trade_fee(exact: Fraction | int, fee_granularity: int) -> Money:
    """Rule 1: the exact fee rounded up to the fee granularity."""
    return Money(_ceil_to(exact, fee_granularity))


def rounding_fee(cost: Money, fee: Money, balance_precision: int) -> Money:
    """Rule 2 (purchase): what rounding the charge ``cost + fee`` up to the balance adds.

    Equal to what flooring ``balance_change = −cost − fee`` removes; always in [0, B).
    """
    charge = cost + fee
    return Money(_ceil_to(charge, balance_precision) - charge)


def ideal_fee(
    exact_total: Fraction | int, cost_total: Money, fee_granularity: int, balance_precision: int
) -> Money:
    """Rule 3: the fee of a single fill carrying the summed exact fee and summed cost."""
    tf = trade_fee(exact_total, fee_granularity)
    return Money(tf + rounding_fee(cost_total, tf, balance_precision))


def rebate_due(charged: Money, rebated: Money, ideal: Money) -> Money:
    """Rule 3: the whole-cent rebate that brings the order's net fee down toward ``ideal``."""
    excess = charged - rebated - ideal
    if excess <= 0:
        return Money(0)
    rebate = excess // REBATE_UNIT * REBATE_UNIT
    return Money(min(rebate, charged - rebated))  # the net fee never goes below $0.00


@dataclass(frozen=True, slots=True)
class FillFee:
    """What one fill was charged under Kalshi's current rounding rule (Money units)."""

    trade_fee: Money
    rounding_fee: Money
    rebate: Money  # issued by the order's accumulator after this fill (>= 0, whole cents)

    @property
    def net(self) -> Money:
        """trade_fee + rounding_fee − rebate (may be negative when a rebate lands here)."""
        return Money(self.trade_fee + self.rounding_fee - self.rebate)


class KalshiOrderFees:
    """The per-order fee accumulator: feed it every fill of ONE order, in arrival order.

    Each ``fill`` charges that fill's trade fee and rounding fee (rules 1–2 above) and then
    issues the whole-cent rebate (rule 3) that keeps the order's net fee within
    ``[ideal, ideal + $0.01)`` of what one equivalent fill would have cost.  Taker and maker
    fills of the same order share the accumulator: pass the maker schedule for a maker fill
    (``schedule=``); the default is the schedule given at construction.

    Readings (each one small function above, easy to change):

    * ``trade_fee`` = ceil(exact fee of this fill, ``fee_granularity``);
    * ``rounding_fee`` = ceil(cost + trade_fee, ``balance_precision``) − (cost + trade_fee) — the
      purchase form of "floor ``revenue − trade_fee``", with revenue = −cost = −C × P;
    * ``ideal`` = the fee of one fill carrying the summed exact fee and summed cost so far;
    * ``rebate`` = floor((charged − rebated − ideal) / $0.01) × $0.01 when positive, computed
      after every fill, clamped so that ``net_fee`` ≥ 0.

    Invariant after every fill: ideal ≤ net_fee ≤ ideal + $0.01 − gcd(balance_precision, $0.01).
    """

    __slots__ = (
        "_balance_precision",
        "_cost",
        "_exact",
        "_fee_granularity",
        "_ideal",
        "_rebates",
        "_rounding_fees",
        "_trade_fees",
        "schedule",
    )

    def __init__(
        self,
        schedule: KalshiFeeSchedule,
        *,
        fee_granularity: int = DEFAULT_FEE_GRANULARITY,
        balance_precision: int = DEFAULT_BALANCE_PRECISION,
    ) -> None:
        _check_unit("fee_granularity", fee_granularity)
        _check_unit("balance_precision", balance_precision)
        self.schedule = schedule
        self._fee_granularity = fee_granularity
        self._balance_precision = balance_precision
        self._exact = Fraction(0)  # Σ exact fee of the fills so far
        self._cost = Money(0)  # Σ cost of the fills so far
        self._ideal = Money(0)
        self._trade_fees = Money(0)
        self._rounding_fees = Money(0)
        self._rebates = Money(0)

    def fill(self, price: Price, qty: Qty, *, schedule: KalshiFeeSchedule | None = None) -> FillFee:
        """Apply one fill (a purchase of ``qty`` at ``price``) and return what it was charged."""
        _check_fill(price, qty)
        exact = exact_fee(self.schedule if schedule is None else schedule, price, qty)
        cost = fill_cost(price, qty)
        tf = trade_fee(exact, self._fee_granularity)
        rf = rounding_fee(cost, tf, self._balance_precision)
        self._exact += exact
        self._cost = Money(self._cost + cost)
        self._trade_fees = Money(self._trade_fees + tf)
        self._rounding_fees = Money(self._rounding_fees + rf)
        self._ideal = ideal_fee(
            self._exact, self._cost, self._fee_granularity, self._balance_precision
        )
        charged = Money(self._trade_fees + self._rounding_fees)
        rebate = rebate_due(charged, self._rebates, self._ideal)
        self._rebates = Money(self._rebates + rebate)
        return FillFee(tf, rf, rebate)

    @property
    def trade_fees(self) -> Money:
        return self._trade_fees

    @property
    def rounding_fees(self) -> Money:
        return self._rounding_fees

    @property
    def rebates(self) -> Money:
        return self._rebates

    @property
    def ideal_fee(self) -> Money:
        """The fee one fill equivalent to all fills so far would have cost."""
        return self._ideal

    @property
    def net_fee(self) -> Money:
        """The order's net fee so far: trade fees + rounding fees − rebates (>= 0)."""
        return Money(self._trade_fees + self._rounding_fees - self._rebates)


def kalshi_order_fee_bound(
    schedule: KalshiFeeSchedule,
    fills: Iterable[tuple[Price, Qty]],
    *,
    fee_granularity: int = DEFAULT_FEE_GRANULARITY,
    balance_precision: int = DEFAULT_BALANCE_PRECISION,
) -> Money:
    """An upper bound of the net fee of one order whatever way it is split into fills at these
    (price, qty) levels — what a detector may use so that it never underestimates.

    ``ideal + $0.01 − gcd(balance_precision, $0.01)`` (see the proof above): the ideal itself
    for non-direct members, ideal + $0.0099 for direct members.  No fills: 0.
    """
    _check_unit("fee_granularity", fee_granularity)
    _check_unit("balance_precision", balance_precision)
    exact = Fraction(0)
    cost = 0
    any_fill = False
    for price, qty in fills:
        _check_fill(price, qty)
        exact += exact_fee(schedule, price, qty)
        cost += fill_cost(price, qty)
        any_fill = True
    if not any_fill:
        return Money(0)
    ideal = ideal_fee(exact, Money(cost), fee_granularity, balance_precision)
    return Money(ideal + REBATE_UNIT - math.gcd(balance_precision, REBATE_UNIT))
