"""Liquidity we took, kept off the quote until the venue's book shows it gone.

A taker fill empties (part of) a level the moment it happens; the venue's next book
message saying so comes later. A re-decision in between would see the old size and
trade the same liquidity twice. So each fill is remembered against the displayed size
of its level when it was recorded, and subtracted from that level while the venue keeps
showing exactly that size. Any change of the level's size (the venue's delta, which
includes our trade) or ``memory_ms`` passing drops the entry. The error is one-sided: a
delta that arrived before our fill was recorded makes us under-size once, never over-size.

Paper venues and live quotes share this one ledger rule.
"""

from __future__ import annotations

from collections.abc import Iterable

from arbkit.model import Outcome, Price, Qty

Key = tuple[str, Outcome, int]  # (symbol, outcome, price)


class OwnFills:
    def __init__(self, memory_ms: int = 10_000) -> None:
        self.memory_ns = memory_ms * 1_000_000
        self._taken: dict[Key, tuple[int, int, int]] = {}  # → (size seen, taken, ts)

    def __len__(self) -> int:
        return len(self._taken)

    def available(self, symbol: str, outcome: Outcome, price: int, size: int, now: int) -> int:
        seen = self._taken.get((symbol, outcome, price))
        if seen is None:
            return size
        if seen[0] != size or now - seen[2] > self.memory_ns:
            del self._taken[(symbol, outcome, price)]  # the venue's book moved on
            return size
        return max(0, size - seen[1])

    def take(
        self, symbol: str, outcome: Outcome, price: int, qty: int, size_now: int, now: int
    ) -> None:
        """Record ``qty`` taken at ``price`` while the venue shows ``size_now`` there."""
        key = (symbol, outcome, price)
        seen = self._taken.get(key)
        prev = seen[1] if seen is not None and seen[0] == size_now else 0
        self._taken[key] = (size_now, prev + qty, now)

    def net(
        self,
        symbol: str,
        outcome: Outcome,
        levels: Iterable[tuple[Price, Qty]],
        now: int,
    ) -> list[tuple[Price, Qty]]:
        """The venue's ladder as it will look once our fills show."""
        if not self._taken:
            return list(levels)
        out = []
        for price, size in levels:
            avail = self.available(symbol, outcome, price, size, now)
            if avail > 0:
                out.append((price, Qty(avail)))
        return out
