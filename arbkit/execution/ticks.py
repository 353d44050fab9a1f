"""Price grids: the prices a venue accepts, so recovery steps never leave the tick grid.

Kalshi publishes a market's grid as ``price_level_structure`` with ``price_ranges``
(``[{start, end, step}]``); the common structures are tabled here by name. ForecastEx is
$0.01 from $0.02 to $0.99. Prices are in $0.0001 units.
"""

from __future__ import annotations

from dataclasses import dataclass

from arbkit.model import PRICE_SCALE

#: Kalshi price_level_structure → [(start, end, step)] in $0.0001 units (docs:
#: fixed_point_migration). Unknown structures are refused at config load.
KALSHI_STRUCTURES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "linear_cent": ((0, PRICE_SCALE, 100),),
    "deci_cent": ((0, PRICE_SCALE, 10),),
    "tapered_deci_cent": ((0, 1_000, 10), (1_000, 9_000, 100), (9_000, PRICE_SCALE, 10)),
}


@dataclass(frozen=True, slots=True)
class VenueGrid:
    ranges: tuple[tuple[int, int, int], ...]
    min_price: int
    max_price: int

    @classmethod
    def kalshi(cls, structure: str = "linear_cent") -> VenueGrid:
        ranges = KALSHI_STRUCTURES[structure]
        return cls(ranges, ranges[0][2], PRICE_SCALE - ranges[-1][2])

    @classmethod
    def forecastex(cls) -> VenueGrid:
        return cls(((0, PRICE_SCALE, 100),), 200, 9_900)

    def floor(self, price: int) -> int:
        """The highest grid price ≤ ``price`` (``min_price − 1`` region gives 0)."""
        if price < self.min_price:
            return 0
        price = min(price, self.max_price)
        for start, end, step in self.ranges:
            if start <= price < end or (price == end and end == self.ranges[-1][1]):
                return start + (price - start) // step * step
        return 0

    def step_down(self, price: int) -> int:
        return self.floor(price - 1)

    def on_grid(self, price: int) -> bool:
        return self.min_price <= price <= self.max_price and self.floor(price) == price
