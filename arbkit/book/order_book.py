"""CentralOrderBook: one SymbolBook per unified symbol, one ask ladder per venue × outcome.

Ladders hold *asks* in each venue's own outcome terms (the normalizers convert Kalshi's
bids-only books). ``apply`` answers one question cheaply for the hot path: can this tick
change what the detector would decide? A level priced at or above $1 − the best ask it
pairs with can never be part of a profitable pair, so such ticks skip detection.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from arbkit.config.loader import SymbolMap, SymbolSpec
from arbkit.model import (
    PRICE_SCALE,
    NormalizedTick,
    Outcome,
    Price,
    Qty,
    TickKind,
    Venue,
)

_RESET = TickKind.RESET


class AskLadder:
    """Price → size for one venue × outcome; prices kept sorted for best/walk."""

    __slots__ = ("prices", "sizes", "updated_ns", "valid", "venue_ts_ns")

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.prices: list[int] = []  # ascending: best ask first
        self.valid = False  # nothing is tradable until a snapshot arrives
        self.updated_ns = 0
        self.venue_ts_ns = 0

    def clear(self, valid: bool) -> None:
        self.sizes.clear()
        self.prices.clear()
        self.valid = valid

    def set(self, price: int, size: int) -> None:
        sizes = self.sizes
        if size > 0:
            if price not in sizes:
                insort(self.prices, price)
            sizes[price] = size
        elif price in sizes:
            del sizes[price]
            prices = self.prices
            del prices[bisect_left(prices, price)]

    @property
    def best(self) -> int | None:
        return self.prices[0] if self.prices else None

    def levels(self) -> Iterator[tuple[Price, Qty]]:
        sizes = self.sizes
        for p in self.prices:
            yield Price(p), Qty(sizes[p])

    def depth(self) -> int:
        return sum(self.sizes.values())

    def __repr__(self) -> str:
        top = list(self.levels())[:3]
        return f"AskLadder(valid={self.valid}, top={top})"


@dataclass(frozen=True, slots=True)
class Combo:
    """One cross-venue pair: buying both outcomes pays exactly $1 per contract."""

    label: str
    kalshi_outcome: Outcome
    ibkr_outcome: Outcome


class SymbolBook:
    """Four ladders for one unified symbol, plus the orientation that pairs them."""

    __slots__ = ("_ladders", "_pair", "combos", "spec", "symbol", "version")

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.version = 0
        self._ladders: dict[tuple[Venue, Outcome], AskLadder] = {
            (v, o): AskLadder() for v in Venue for o in Outcome
        }
        # Each ladder's arbitrage partner: Kalshi X pairs with the ForecastEx outcome
        # that pays exactly when Kalshi X does *not*.
        pair: dict[tuple[Venue, Outcome], AskLadder] = {}
        combos: list[Combo] = []
        for ko in (Outcome.YES, Outcome.NO):
            fx = spec.ibkr_equivalent(ko.opposite)
            pair[(Venue.KALSHI, ko)] = self._ladders[(Venue.IBKR, fx)]
            pair[(Venue.IBKR, fx)] = self._ladders[(Venue.KALSHI, ko)]
            combos.append(Combo(f"kalshi_{ko.value}+ibkr_{fx.value}", ko, fx))
        self._pair = pair
        self.combos = (combos[0], combos[1])

    def ladder(self, venue: Venue, outcome: Outcome) -> AskLadder:
        return self._ladders[(venue, outcome)]

    def partner(self, venue: Venue, outcome: Outcome) -> AskLadder:
        return self._pair[(venue, outcome)]

    def apply(self, tick: NormalizedTick) -> bool:
        """Apply one tick; True if it may change the detector's answer."""
        self.version += 1
        if tick.kind is _RESET:
            outcomes = (tick.outcome,) if tick.outcome is not None else tuple(Outcome)
            for o in outcomes:
                lad = self._ladders[(tick.venue, o)]
                lad.clear(tick.valid)
                lad.updated_ns = tick.recv_ts_ns
                lad.venue_ts_ns = tick.venue_ts_ns
            return True
        assert tick.outcome is not None
        key = (tick.venue, tick.outcome)
        lad = self._ladders[key]
        price = tick.price
        # AskLadder.set inlined (the hot path: one call per tick saved)
        sizes = lad.sizes
        size = tick.size
        if size > 0:
            if price not in sizes:
                insort(lad.prices, price)
            sizes[price] = size
        elif price in sizes:
            del sizes[price]
            prices = lad.prices
            del prices[bisect_left(prices, price)]
        lad.updated_ns = tick.recv_ts_ns
        lad.venue_ts_ns = tick.venue_ts_ns
        if not lad.valid:
            return False
        other = self._pair[key]
        # Relevant only if this price could pair profitably with the partner's best ask.
        return other.valid and bool(other.prices) and price + other.prices[0] < PRICE_SCALE

    def valid(self) -> bool:
        return all(lad.valid for lad in self._ladders.values())


class CentralOrderBook:
    """All symbols' books, fed by NormalizedTicks from every venue."""

    def __init__(self, symbol_map: SymbolMap) -> None:
        self.books: dict[str, SymbolBook] = {
            name: SymbolBook(spec) for name, spec in symbol_map.symbols.items()
        }
        self.unknown_symbol_ticks = 0

    def __getitem__(self, symbol: str) -> SymbolBook:
        return self.books[symbol]

    def apply(self, tick: NormalizedTick) -> SymbolBook | None:
        """Apply a tick; return the book if detection should re-run for it."""
        book = self.books.get(tick.symbol)
        if book is None:
            self.unknown_symbol_ticks += 1
            return None
        return book if book.apply(tick) else None

    def apply_batch(self, ticks: Iterable[NormalizedTick]) -> list[SymbolBook]:
        """Apply one venue message's ticks; the books to re-evaluate, each once."""
        dirty: list[SymbolBook] = []
        for t in ticks:
            b = self.apply(t)
            if b is not None and b not in dirty:
                dirty.append(b)
        return dirty

    def invalidate_venue(self, venue: Venue, recv_ts_ns: int) -> None:
        for book in self.books.values():
            book.apply(NormalizedTick.reset(book.symbol, venue, valid=False, recv_ts_ns=recv_ts_ns))
