"""Value types shared by every layer.

Money is never a float here. Three integer fixed-point units cover everything:

* ``Price``  — $0.0001 units (Kalshi has sub-cent ticks): 0.56 → 5600
* ``Qty``    — 0.01-contract units (Kalshi fractional contracts): 3 → 300
* ``Money``  — $0.000001 units, so ``price * qty`` lands there exactly

They are ``NewType`` ints: mypy keeps the units apart, the hot path pays nothing.
Conversions happen at the edges only and reject anything that is not exact.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import NewType

Price = NewType("Price", int)
Qty = NewType("Qty", int)
Money = NewType("Money", int)

PRICE_SCALE = 10_000  # units per dollar
QTY_SCALE = 100  # units per contract
MONEY_SCALE = 1_000_000  # units per dollar
ONE_DOLLAR = Price(PRICE_SCALE)
ONE_CONTRACT = Qty(QTY_SCALE)
PAYOUT_PER_CONTRACT = Money(MONEY_SCALE)  # a binary contract pays $1


class ConversionError(ValueError):
    """A venue or config value that does not convert exactly; names field and value."""

    def __init__(self, field_name: str, value: object, problem: str) -> None:
        self.field_name = field_name
        self.value = value
        self.problem = problem
        super().__init__(f"{field_name}={value!r}: {problem}")


# ---------------------------------------------------------------- parsing ---------


def _parse_fixed(value: object, digits: int, field_name: str) -> int:
    """Parse a decimal string / int / JSON number into an integer of 10**-digits units.

    Strings take a fast path (no Decimal) because the Kalshi hot path parses every level.
    """
    if isinstance(value, str):
        s = value.strip()
        neg = s.startswith("-")
        if neg or s.startswith("+"):
            s = s[1:]
        whole, dot, frac = s.partition(".")
        if (
            not (whole.isdigit() or (whole == "" and frac))
            or (dot and not frac.isdigit())
            or not whole.isascii()
            or not frac.isascii()
        ):
            raise ConversionError(field_name, value, "not a decimal number")
        if len(frac) > digits:
            extra = frac[digits:]
            if extra.strip("0"):
                raise ConversionError(
                    field_name, value, f"has more than {digits} decimal places (not exact)"
                )
            frac = frac[:digits]
        n: int = int(whole or "0") * 10**digits + int(frac.ljust(digits, "0") or "0")
        return -n if neg else n
    if isinstance(value, bool):
        raise ConversionError(field_name, value, "is a boolean, expected a number")
    if isinstance(value, int):
        scale: int = 10**digits
        return value * scale
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConversionError(field_name, value, "is not finite")
        # JSON numbers arrive as floats; their shortest repr is the decimal the sender wrote.
        return _parse_fixed(repr(value), digits, field_name)
    if isinstance(value, Decimal):
        try:
            scaled = value.scaleb(digits)
            if scaled != scaled.to_integral_value():
                raise ConversionError(
                    field_name, value, f"has more than {digits} decimal places (not exact)"
                )
            return int(scaled)
        except InvalidOperation as exc:
            raise ConversionError(field_name, value, "is not a finite decimal") from exc
    raise ConversionError(field_name, value, f"unsupported type {type(value).__name__}")


def parse_price(value: object, field_name: str = "price") -> Price:
    """A binary-contract price in dollars, strictly inside (0, 1)."""
    p = _parse_fixed(value, 4, field_name)
    if not 0 < p < PRICE_SCALE:
        raise ConversionError(field_name, value, "binary price must be strictly between 0 and 1")
    return Price(p)


def parse_qty(value: object, field_name: str = "count", *, signed: bool = False) -> Qty:
    """A contract count with up to 2 decimals; ``signed`` allows deltas."""
    q = _parse_fixed(value, 2, field_name)
    if q < 0 and not signed:
        raise ConversionError(field_name, value, "must not be negative")
    return Qty(q)


def parse_money(value: object, field_name: str = "amount", *, signed: bool = True) -> Money:
    """A dollar amount with up to 6 decimals."""
    m = _parse_fixed(value, 6, field_name)
    if m < 0 and not signed:
        raise ConversionError(field_name, value, "must not be negative")
    return Money(m)


def price_from_ibkr(value: float, field_name: str = "price") -> Price:
    """IBKR sends binary floats (0.57); map to the nearest $0.0001 and insist it was exact."""
    if not math.isfinite(value):
        raise ConversionError(field_name, value, "is not finite")
    scaled = value * PRICE_SCALE
    p = round(scaled)
    if abs(scaled - p) > 1e-6:
        raise ConversionError(field_name, value, "is not on a $0.0001 grid")
    if not 0 < p < PRICE_SCALE:
        raise ConversionError(field_name, value, "binary price must be strictly between 0 and 1")
    return Price(p)


def qty_from_ibkr(value: float | int | Decimal, field_name: str = "size") -> Qty:
    """IBKR sizes are whole contracts (floats or Decimals in ib_async)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConversionError(field_name, value, "is not finite")
    whole = int(value)
    if whole != value:
        raise ConversionError(field_name, value, "ForecastEx sizes are whole contracts")
    if whole < 0:
        raise ConversionError(field_name, value, "must not be negative")
    return Qty(whole * QTY_SCALE)


def notional(price: Price, qty: Qty) -> Money:
    """price × qty is exactly in Money units by construction of the scales."""
    return Money(price * qty)


def complement(price: Price) -> Price:
    """$1 − p: the ask of one outcome from the bid of the other on a bids-only book."""
    return Price(PRICE_SCALE - price)


def price_str(p: int) -> str:
    """Kalshi-style 4-decimal dollar string (exact)."""
    sign = "-" if p < 0 else ""
    p = abs(p)
    return f"{sign}{p // PRICE_SCALE}.{p % PRICE_SCALE:04d}"


def qty_str(q: int) -> str:
    sign = "-" if q < 0 else ""
    q = abs(q)
    return f"{sign}{q // QTY_SCALE}.{q % QTY_SCALE:02d}"


def money_str(m: int, places: int = 6) -> str:
    sign = "-" if m < 0 else ""
    m = abs(m)
    s = f"{sign}{m // MONEY_SCALE}.{m % MONEY_SCALE:06d}"
    return s[: len(s) - (6 - places)] if places < 6 else s


def money_to_decimal(m: int) -> Decimal:
    return Decimal(m).scaleb(-6)


def price_to_decimal(p: int) -> Decimal:
    return Decimal(p).scaleb(-4)


def qty_to_decimal(q: int) -> Decimal:
    return Decimal(q).scaleb(-2)


# ----------------------------------------------------------------- enums ----------


class Venue(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; C-level hash for hot-path dict keys

    KALSHI = "kalshi"
    IBKR = "ibkr"


class Outcome(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; C-level hash for hot-path dict keys

    YES = "yes"
    NO = "no"

    @property
    def opposite(self) -> Outcome:
        return Outcome.NO if self is Outcome.YES else Outcome.YES


class BookSide(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; C-level hash for hot-path dict keys

    BID = "bid"
    ASK = "ask"


class TickKind(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; C-level hash for hot-path dict keys

    LEVEL = "level"  # set the absolute size at one price (0 removes the level)
    RESET = "reset"  # clear the side(s); ``valid`` says whether the book is usable afterwards


class Mode(enum.Enum):
    MONITOR = "monitor"
    PAPER = "paper"
    LIVE = "live"


# ----------------------------------------------------------------- ticks ----------


@dataclass(slots=True)
class NormalizedTick:
    """One change to one venue's ask ladder for one unified symbol.

    A RESET tick clears the venue's ladders for ``outcome`` (or both when ``outcome`` is
    None). ``valid=True`` starts a snapshot (level ticks follow in the same batch);
    ``valid=False`` marks the side unusable until the next snapshot (gap, disconnect,
    bad frame).
    """

    symbol: str
    venue: Venue
    outcome: Outcome | None
    side: BookSide
    price: Price
    size: Qty
    venue_ts_ns: int
    recv_ts_ns: int
    kind: TickKind = TickKind.LEVEL
    valid: bool = True

    @classmethod
    def reset(
        cls,
        symbol: str,
        venue: Venue,
        *,
        valid: bool,
        recv_ts_ns: int,
        venue_ts_ns: int = 0,
        outcome: Outcome | None = None,
    ) -> NormalizedTick:
        return cls(
            symbol,
            venue,
            outcome,
            BookSide.ASK,
            Price(0),
            Qty(0),
            venue_ts_ns,
            recv_ts_ns,
            TickKind.RESET,
            valid,
        )


# ---------------------------------------------------------- opportunities ---------


@dataclass(frozen=True, slots=True)
class Leg:
    venue: Venue
    outcome: Outcome  # in the venue's own terms
    limit_price: Price  # worst price walked on the ladder: the IOC limit
    size: Qty
    cost: Money  # sum of price × qty over the levels walked (before fees)
    fee: Money


@dataclass(frozen=True, slots=True)
class Opportunity:
    """A sized, fee-aware cross-venue arbitrage computed from one book state."""

    symbol: str
    combo: str  # "kalshi_yes+ibkr_no" style label
    kalshi: Leg
    ibkr: Leg
    size: Qty  # whole contracts, both legs
    gross_cost: Money  # both legs before fees
    total_fees: Money
    expected_profit: Money  # payout − gross cost − fees
    net_edge_per_contract: Money  # expected_profit / contracts (floored)
    annualized_return_bps: int  # on capital locked until resolution (incl. coupon)
    kalshi_book_ts_ns: int
    ibkr_book_ts_ns: int
    detected_ts_ns: int
    # When the older leg's quote was last proven current (book/freshness.py); 0 = book ts.
    quote_seen_ns: int = 0
    # The ForecastEx coupon rate (APY, bps) annualized_return_bps was computed with.
    coupon_bps: int = 0

    @property
    def contracts(self) -> int:
        return self.size // QTY_SCALE

    @property
    def capital(self) -> Money:
        return Money(self.gross_cost + self.total_fees)


@dataclass(slots=True)
class VenueHealth:
    venue: Venue
    connected: bool = False
    ticks: int = 0
    bad_frames: int = 0
    resyncs: int = 0
    reconnects: int = 0
    last_message_ns: int = 0
    extra: dict[str, int] = field(default_factory=dict)
