from __future__ import annotations

import datetime as dt

import pytest

from arbkit.config.loader import ForecastExSpec, SymbolMap, SymbolSpec
from arbkit.model import Outcome

NOW_NS = 1_800_000_000 * 1_000_000_000


def make_spec(
    symbol: str = "SYM", kalshi_yes_is: Outcome = Outcome.YES, days_to_resolution: int = 30
) -> SymbolSpec:
    return SymbolSpec(
        symbol=symbol,
        kalshi_ticker=f"KX{symbol}-T1",
        forecastex=ForecastExSpec(yes_con_id=101, no_con_id=102),
        kalshi_yes_is=kalshi_yes_is,
        resolution_ts_ns=NOW_NS
        + int(dt.timedelta(days=days_to_resolution).total_seconds()) * 10**9,
        kalshi_series=f"KX{symbol}",
    )


@pytest.fixture
def symbol_map() -> SymbolMap:
    return SymbolMap({"SYM": make_spec()})
