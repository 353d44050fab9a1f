"""Shared fixtures: a local TWS on 127.0.0.1:0 with two ForecastEx questions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arbkit.config.loader import SymbolMap, parse_symbol_map
from arbkit.model import NormalizedTick, Outcome, Price, Qty
from arbkit.sim.tws_server import TwsServer

FF_YES, FF_NO = 713921696, 713921701
WX_YES, WX_NO = 720000001, 720000002


def add_markets(server: TwsServer) -> None:
    server.add_market(
        "FF-DEC", symbol="FF", last_trade_date="20271209", strike="3.625",
        yes_con_id=FF_YES, no_con_id=FF_NO, under_con_id=658663572,
    )  # fmt: skip
    server.add_market(
        "WX-NYC", symbol="NYCHI", last_trade_date="20261201", strike="60",
        yes_con_id=WX_YES, no_con_id=WX_NO,
    )  # fmt: skip


def set_book(
    server: TwsServer, market: str, yes: list[tuple[str, int]], no: list[tuple[str, int]]
) -> None:
    """Bid ladders given as ("0.45", contracts)."""
    for outcome, levels in ((Outcome.YES, yes), (Outcome.NO, no)):
        ladder = [(Price(round(float(p) * 10_000)), Qty(n * 100)) for p, n in levels]
        server.set_bids(market, outcome, ladder)


def symbol_map() -> SymbolMap:
    return parse_symbol_map(
        {
            "symbols": {
                "FED-DEC": {
                    "kalshi_ticker": "KXFED-26DEC-T3.75",
                    "kalshi_yes_is": "yes",
                    "resolution": "2027-12-10",
                    "forecastex": {
                        "symbol": "FF",
                        "last_trade_date": "20271209",
                        "strike": "3.625",
                    },
                },
                "NYC-HIGH": {
                    "kalshi_ticker": "KXHIGHNY-26DEC01-T60",
                    "kalshi_yes_is": "no",
                    "resolution": "2026-12-02",
                    "forecastex": {"yes_con_id": WX_YES, "no_con_id": WX_NO},
                },
            }
        }
    )


@pytest.fixture(params=[178, 157], ids=["sv178", "sv157"])
async def tws(request: pytest.FixtureRequest) -> AsyncIterator[TwsServer]:
    server = TwsServer(server_version=request.param)
    add_markets(server)
    set_book(server, "FF-DEC", [("0.45", 10), ("0.44", 25)], [("0.53", 8), ("0.52", 30)])
    set_book(server, "WX-NYC", [("0.30", 5)], [("0.60", 7)])
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def cache_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "contracts_cache.json"


class TickSink:
    """Collects on_ticks batches and on_raw events."""

    def __init__(self) -> None:
        self.batches: list[list[NormalizedTick]] = []
        self.raw: list[dict[str, object]] = []

    def on_ticks(self, ticks: list[NormalizedTick]) -> None:
        self.batches.append(ticks)

    def on_raw(self, event: dict[str, object], recv_ts_ns: int) -> None:
        self.raw.append(event)

    @property
    def ticks(self) -> list[NormalizedTick]:
        return [t for b in self.batches for t in b]
