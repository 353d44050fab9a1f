"""Venue fees in exact integer arithmetic, always rounded up.

Kalshi: fee = round_up(coefficient × multiplier × C × P × (1 − P)), C contracts, P dollars.
In model units (qty = 100·C, price = 10⁴·P, money = 10⁶·$):

    fee_money = k × qty × price × (10⁴ − price) / 10⁴        with k = coefficient × multiplier

k is an exact rational (num/den), so the unrounded fee is the rational
``k.num × Σ qty·price·(10⁴−price)  /  (k.den × 10⁴)`` and rounding up is one ceil-division.

Granularity (reference/kalshi.md §6): ``cent_per_order`` — the published schedule, one
ceil to the cent over the whole order (default: never underestimates);
``centicent_per_fill`` — the newer rule, ceil to $0.0001 on every fill (price level).

ForecastEx: a flat per-contract fee (default $0.01; 0 if it is taken as built into the
$1.01 pair price), ForecastEx trades whole contracts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from arbkit.config.execution_loader import FeeParams
from arbkit.model import PRICE_SCALE, QTY_SCALE, Money, Price, Qty

CENT = 10_000  # Money units
CENTICENT = 100

_GRANULARITY = {"cent_per_order": (CENT, False), "centicent_per_fill": (CENTICENT, True)}


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

    @classmethod
    def make(cls, coefficient: Decimal, multiplier: Decimal, rounding: str) -> KalshiFeeSchedule:
        k = Fraction(coefficient) * Fraction(multiplier)
        gran, per_fill = _GRANULARITY[rounding]
        return cls(k.numerator, k.denominator * PRICE_SCALE, gran, per_fill)

    def round_up(self, term_sum: int) -> Money:
        g = self.granularity
        return Money(_ceil_div(self.num * term_sum, self.den * g) * g)

    def fee(self, fills: Iterable[tuple[Price, Qty]]) -> Money:
        """Fee for one order whose fills are (price, qty) pairs."""
        if self.per_fill:
            return Money(sum(self.round_up(fee_term(p, q)) for p, q in fills))
        return self.round_up(sum(fee_term(p, q) for p, q in fills))

    def exact_fee_lower_bound(self, price: Price, qty: Qty) -> int:
        """Unrounded fee floored to Money — a lower bound used for cheap rejection."""
        return self.num * fee_term(price, qty) // self.den


class FeeModel:
    """Fees for both venues from the execution config's FeeParams."""

    def __init__(self, params: FeeParams) -> None:
        self.params = params
        self._taker: dict[str, KalshiFeeSchedule] = {}
        self._maker: dict[str, KalshiFeeSchedule] = {}
        self.forecastex_fee_per_contract: Money = Money(params.forecastex_fee_per_contract_usd)

    def kalshi_schedule(self, series: str = "", *, maker: bool = False) -> KalshiFeeSchedule:
        cache = self._maker if maker else self._taker
        sched = cache.get(series)
        if sched is None:
            p = self.params
            coef = p.kalshi_maker_coefficient if maker else p.kalshi_taker_coefficient
            mult = p.kalshi_series_multipliers.get(series, Decimal(1))
            sched = KalshiFeeSchedule.make(coef, mult, p.kalshi_fee_rounding)
            cache[series] = sched
        return sched

    def kalshi_fee(
        self, fills: Iterable[tuple[Price, Qty]], series: str = "", *, maker: bool = False
    ) -> Money:
        return self.kalshi_schedule(series, maker=maker).fee(fills)

    def forecastex_fee(self, qty: Qty) -> Money:
        """Per-contract fee; ForecastEx quantities are whole contracts (rounded up if not)."""
        contracts = _ceil_div(qty, QTY_SCALE)
        return Money(contracts * self.forecastex_fee_per_contract)
