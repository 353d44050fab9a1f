"""ForecastEx top-of-book quotes (as ib_async reports them) → ask-side NormalizedTicks.

Sans-IO and synchronous: the gateway (live) and replay (capture files) both feed
``on_quote`` with the values of one ticker update. ForecastEx shows one level per
contract, so every quote is a full snapshot of that outcome's ask ladder: a valid RESET
followed by at most one LEVEL tick.

Outcomes are ForecastEx's own (YES = right C, NO = right P); orienting them against
Kalshi is the detector's job.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from decimal import Decimal

from arbkit.model import QTY_SCALE, BookSide, NormalizedTick, Outcome, Price, Qty, Venue

log = logging.getLogger(__name__)

CENT = 100  # $0.01 in Price units: ForecastEx's tick
_MIN_CENTS, _MAX_CENTS = 2, 99  # ForecastEx trades $0.02–$0.99 (reference/ibkr.md)
#: More contracts than any ForecastEx contract shows at one price: a corrupt size.
MAX_SIZE_CONTRACTS = 1_000_000
_DOLLAR = 100 * CENT

Num = float | int | Decimal | None


class BadQuote(ValueError):
    """A venue value the book must not use."""


class UnderpricedPair(BadQuote):
    """YES ask + NO ask under $1.00 on one venue: both outcomes' books are suspect."""


def _absent(price: Num, size: Num) -> bool:
    """ib_async marks an empty side with nan (or -1 price / 0 size); capture files with None."""
    if price is None or size is None:
        return True
    if isinstance(price, float) and math.isnan(price):
        return True
    if isinstance(size, float) and math.isnan(size):
        return True
    return price == -1 or size == 0


def _price(value: float | int | Decimal) -> Price:
    """Exact $0.01-grid price strictly inside (0, 1), else BadQuote."""
    if isinstance(value, Decimal):
        cents_d = value * 100
        if cents_d != cents_d.to_integral_value():
            raise BadQuote(f"price {value!r} is off the $0.01 grid")
        cents = int(cents_d)
    else:
        if not math.isfinite(value):
            raise BadQuote(f"price {value!r} is not finite")
        scaled = value * 100
        cents = round(scaled)
        if abs(scaled - cents) > 1e-6:
            raise BadQuote(f"price {value!r} is off the $0.01 grid")
    if not _MIN_CENTS <= cents <= _MAX_CENTS:
        raise BadQuote(f"price {value!r} is outside ForecastEx's $0.02–$0.99")
    return Price(cents * CENT)


def _size(value: float | int | Decimal) -> Qty:
    """Whole, non-negative contracts, else BadQuote."""
    if isinstance(value, float) and not math.isfinite(value):
        raise BadQuote(f"size {value!r} is not finite")
    whole = int(value)
    if whole != value:
        raise BadQuote(f"size {value!r} is not a whole number of contracts")
    if whole < 0:
        raise BadQuote(f"size {value!r} is negative")
    if whole > MAX_SIZE_CONTRACTS:
        raise BadQuote(f"size {value!r} is absurd (> {MAX_SIZE_CONTRACTS:,} contracts)")
    return Qty(whole * QTY_SCALE)


class IbkrNormalizer:
    """conId → (unified symbol, ForecastEx outcome); quotes → ask-side ticks."""

    def __init__(self, con_id_map: Mapping[int, tuple[str, Outcome]]) -> None:
        self.con_id_map: dict[int, tuple[str, Outcome]] = dict(con_id_map)
        self.quotes = 0
        self.errors = 0
        self.unknown_con_ids = 0
        self.stale_resets = 0
        self.last_error = ""
        self._asks: dict[tuple[str, Outcome], Price] = {}  # last valid ask per outcome

    def update_map(self, con_id_map: Mapping[int, tuple[str, Outcome]]) -> None:
        """Replace the mapping (contracts resolved after construction)."""
        self.con_id_map = dict(con_id_map)

    def on_quote(
        self,
        con_id: int,
        bid: Num,
        bid_size: Num,
        ask: Num,
        ask_size: Num,
        recv_ts_ns: int,
    ) -> list[NormalizedTick]:
        """One ticker update → [valid RESET, ASK LEVEL?] or, on bad values, [invalid RESET]."""
        entry = self.con_id_map.get(con_id)
        if entry is None:
            self.unknown_con_ids += 1
            return []
        symbol, outcome = entry
        self.quotes += 1
        try:
            # The bid is not used by the ask-side book, but a garbage bid means a bad feed.
            bid_price = None
            if not _absent(bid, bid_size):
                _size(bid_size)  # type: ignore[arg-type]
                bid_price = _price(bid)  # type: ignore[arg-type]
            if _absent(ask, ask_size):
                if ask_size is not None and ask_size < 0:
                    raise BadQuote(f"size {ask_size!r} is negative")
                level = None
            else:
                level = (_price(ask), _size(ask_size))  # type: ignore[arg-type]
            if level is not None and bid_price is not None and bid_price >= level[0]:
                raise BadQuote(f"bid {bid!r} is not below ask {ask!r}")
            other = self._asks.get((symbol, outcome.opposite))
            if level is not None and other is not None and level[0] + other < _DOLLAR:
                self._asks.pop((symbol, outcome.opposite), None)
                raise UnderpricedPair(
                    f"YES ask + NO ask {level[0] + other} < $1.00 (in $0.0001 units)"
                )
        except (BadQuote, TypeError, ValueError, OverflowError) as exc:
            self.errors += 1
            self.last_error = f"conId {con_id}: {exc}"
            log.warning("ibkr bad quote conId=%s: %s", con_id, exc)
            self._asks.pop((symbol, outcome), None)
            bad = [outcome, outcome.opposite] if isinstance(exc, UnderpricedPair) else [outcome]
            return [
                NormalizedTick.reset(
                    symbol, Venue.IBKR, valid=False, outcome=o, recv_ts_ns=recv_ts_ns
                )
                for o in bad
            ]
        if level is not None and level[1] > 0:
            self._asks[(symbol, outcome)] = level[0]
        else:
            self._asks.pop((symbol, outcome), None)
        out = [
            NormalizedTick.reset(
                symbol, Venue.IBKR, valid=True, outcome=outcome, recv_ts_ns=recv_ts_ns
            )
        ]
        if level is not None and level[1] > 0:
            out.append(
                NormalizedTick(
                    symbol, Venue.IBKR, outcome, BookSide.ASK, level[0], level[1], 0, recv_ts_ns
                )
            )
        return out

    def on_stale(self, con_id: int, recv_ts_ns: int) -> list[NormalizedTick]:
        """The contract's feed went quiet past its limit: unusable until the next quote."""
        entry = self.con_id_map.get(con_id)
        if entry is None:
            return []
        self.stale_resets += 1
        symbol, outcome = entry
        return [
            NormalizedTick.reset(
                symbol, Venue.IBKR, valid=False, outcome=outcome, recv_ts_ns=recv_ts_ns
            )
        ]

    def invalidate_all(self, recv_ts_ns: int) -> list[NormalizedTick]:
        """Disconnect: every mapped contract is unusable until it quotes again."""
        return [
            NormalizedTick.reset(
                symbol, Venue.IBKR, valid=False, outcome=outcome, recv_ts_ns=recv_ts_ns
            )
            for symbol, outcome in self.con_id_map.values()
        ]
