"""The one interface a market driver (tests, the market model) uses to move a local venue.

Both local venues take the same call: the full bid ladder of one outcome of one market.
Kalshi books are bids-only natively; the local TWS derives its top-of-book quotes from the
two bid ladders (ForecastEx "buy YES now at" = $1.01 − best NO bid). A venue diffs the new
ladder against the old one and publishes what changed in its own wire format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from arbkit.model import Outcome, Price, Qty

Ladder = Sequence[tuple[Price, Qty]]


class BookSink(Protocol):
    def set_bids(self, market: str, outcome: Outcome, levels: Ladder) -> None:
        """Replace the maker liquidity bidding for ``outcome`` in ``market``.

        ``market`` is the Kalshi ticker, or for the TWS the ForecastEx pair id the
        contracts were registered under. Sizes are absolute; a missing price removes it.
        """
        ...
