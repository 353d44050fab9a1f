"""Live mode is refused without confirmation (monitor and CLI); paper fills never exceed
the depth the real feeds show."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbkit.cli import main
from arbkit.config.execution_loader import LIVE_CONFIRM_ENV, ExecutionConfig
from arbkit.execution.paper import PaperVenue
from arbkit.execution.venue import OrderRequest, TimeInForce
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Mode, Money, Outcome, Price, Qty, Venue
from arbkit.monitor.arbitrage_monitor import (
    ArbitrageMonitor,
    IbkrEndpoint,
    KalshiEndpoint,
    LiveNotConfirmed,
)

from .rig import SYMBOL, Rig, Venues, n, symbol_map

SYMBOLS_TOML = """
[symbols.FED]
kalshi_ticker = "KXFED-27JUN-T4"
kalshi_yes_is = "yes"
resolution = "2027-06-30"
[symbols.FED.forecastex]
yes_con_id = 731000001
no_con_id = 731000002
"""


async def test_monitor_refuses_live_without_confirmation(
    venues: Venues, auth: KalshiAuth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LIVE_CONFIRM_ENV, raising=False)
    mon = ArbitrageMonitor(
        symbol_map(),
        ExecutionConfig(mode=Mode.LIVE),
        kalshi=KalshiEndpoint(venues.exchange.rest_url, venues.exchange.ws_url, auth),
        ibkr=IbkrEndpoint(port=venues.tws.port, cache_path=None),
        db_path=tmp_path / "db.sqlite",
    )
    with pytest.raises(LiveNotConfirmed, match="confirm-live"):
        await mon.start()
    assert venues.exchange.ws_connections == 0 and venues.tws.connections == 0
    assert sum(venues.exchange.requests.values()) == 0  # not a single request went out


def test_cli_monitor_refuses_live_and_says_how_to_confirm(
    test_key: tuple[str, Path, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(LIVE_CONFIRM_ENV, raising=False)
    monkeypatch.setenv("KALSHI_API_KEY_ID", test_key[0])
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_PATH", str(test_key[1]))
    (tmp_path / "symbols.toml").write_text(SYMBOLS_TOML)
    (tmp_path / "execution.toml").write_text('mode = "live"\n')
    code = main(
        [
            "monitor",
            "--symbols",
            str(tmp_path / "symbols.toml"),
            "--execution",
            str(tmp_path / "execution.toml"),
            "--kalshi-env",
            "custom",
            "--kalshi-rest",
            "http://127.0.0.1:9/trade-api/v2",
            "--kalshi-ws",
            "ws://127.0.0.1:9/trade-api/ws/v2",
            "--ibkr-port",
            "9",
            "--db",
            str(tmp_path / "db.sqlite"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "--confirm-live" in err and LIVE_CONFIRM_ENV in err
    assert not (tmp_path / "db.sqlite").exists()  # refused before anything was opened


def _paper(rig: Rig) -> PaperVenue:
    return PaperVenue(
        Venue.KALSHI,
        lambda s, o: rig.quote(s, Venue.KALSHI, o),
        lambda s, f: Money(0),
        clock=time.time_ns,
    )


async def test_paper_fills_never_exceed_the_depth_the_feed_shows(rig: Rig, venues: Venues) -> None:
    await rig.next_opportunity()
    venues.kalshi_book(yes=[("0.35", 50)], no=[("0.60", 3), ("0.59", 2), ("0.50", 100)])
    await rig.until(lambda: len(rig.quote(SYMBOL, Venue.KALSHI, Outcome.YES)) == 3)
    paper = _paper(rig)
    req = OrderRequest(SYMBOL, Outcome.YES, Price(4100), n(100), TimeInForce.IOC, "p1")
    r1 = await paper.place_limit(req, 1)
    assert r1.filled_qty == n(5) and r1.filled_cost == 4000 * n(3) + 4100 * n(2)
    r2 = await paper.place_limit(replace(req, client_order_id="p2"), 1)
    assert r2.filled_qty == 0  # the visible liquidity was already taken
    venues.kalshi_book(yes=[("0.35", 50)], no=[("0.60", 7), ("0.50", 100)])
    await rig.until(lambda: rig.quote(SYMBOL, Venue.KALSHI, Outcome.YES)[0] == (4000, n(7)))
    r3 = await paper.place_limit(replace(req, client_order_id="p3"), 1)
    assert r3.filled_qty == n(7)  # fresh size at 0.40, nothing at 0.41 any more
    venues.kalshi_book(yes=[("0.35", 50)], no=[("0.60", 9)])
    await asyncio.sleep(0)
    venues.exchange.drop_sockets()  # the book goes invalid: paper sees no depth at all
    await rig.until(lambda: not rig.books_valid())
    r4 = await paper.place_limit(replace(req, client_order_id="p4"), 1)
    assert r4.filled_qty == 0


levels = st.lists(
    st.tuples(st.integers(1, 99).map(lambda c: Price(c * 100)), st.integers(1, 5_000)),
    max_size=6,
    unique_by=lambda t: t[0],
)


@settings(max_examples=200, deadline=None)
@given(
    book=levels,
    orders=st.lists(st.tuples(st.integers(1, 99), st.integers(1, 20_000)), max_size=8),
)
async def test_paper_fills_never_exceed_visible_depth_property(
    book: list[tuple[Price, int]], orders: list[tuple[int, int]]
) -> None:
    ladder = sorted((p, Qty(q)) for p, q in book)
    paper = PaperVenue(Venue.KALSHI, lambda s, o: ladder, lambda s, f: Money(0), clock=time.time_ns)
    total = 0
    for i, (limit_c, qty) in enumerate(orders):
        limit = Price(limit_c * 100)
        req = OrderRequest("S", Outcome.YES, limit, Qty(qty), TimeInForce.IOC, f"o{i}")
        r = await paper.place_limit(req, 1)
        visible = sum(q for p, q in ladder if p <= limit_c * 100)
        assert r.filled_qty <= min(qty, visible)
        total += r.filled_qty
    assert total <= sum(q for _, q in ladder)  # liquidity is never used twice
