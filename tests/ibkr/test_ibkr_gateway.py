"""IbkrGateway: discovery, cache, ticks into the normalizer, reconnect, staleness."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path

from arbkit.gateways.ibkr_client import IbkrGateway
from arbkit.model import Outcome, Price, Qty, TickKind
from arbkit.normalizers.ibkr_normalizer import IbkrNormalizer
from arbkit.sim.tws_server import TwsServer

from .conftest import FF_NO, FF_YES, WX_NO, WX_YES, TickSink, set_book, symbol_map


def gateway(tws: TwsServer, sink: TickSink, cache_path: Path | None, **kw: object) -> IbkrGateway:
    kw.setdefault("contract_request_interval_ms", 1)
    return IbkrGateway(
        "127.0.0.1", tws.port, 5, symbol_map(), sink.on_ticks, on_raw=sink.on_raw,
        cache_path=cache_path, reconnect_initial_ms=20, reconnect_max_ms=200,
        **kw,  # type: ignore[arg-type]
    )  # fmt: skip


async def until(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def last_ask(sink: TickSink, symbol: str, outcome: Outcome) -> tuple[Price, Qty] | str | None:
    """The state the last snapshot for (symbol, outcome) leaves: level, None (empty), 'invalid'."""
    state: tuple[Price, Qty] | str | None = "unseen"
    for t in sink.ticks:
        if t.symbol != symbol or t.outcome is not outcome:
            continue
        is_reset = t.kind is TickKind.RESET
        state = (None if t.valid else "invalid") if is_reset else (t.price, t.size)
    return state


async def test_discovery_both_ways_and_startup_time(tws: TwsServer, cache_path: Path) -> None:
    sink = TickSink()
    gw = gateway(tws, sink, cache_path, contract_request_interval_ms=50)  # the default pacing
    t0 = time.perf_counter()
    await gw.start()
    startup_s = time.perf_counter() - t0
    try:
        assert startup_s < 1.0
        assert gw.contracts == {
            ("FED-DEC", Outcome.YES): FF_YES,
            ("FED-DEC", Outcome.NO): FF_NO,
            ("NYC-HIGH", Outcome.YES): WX_YES,
            ("NYC-HIGH", Outcome.NO): WX_NO,
        }
        assert gw.health.connected and gw.account == "DU1234567"
        assert gw.contract_queries == 4
        cached = json.loads(cache_path.read_text())["contracts"]
        assert cached["FF|20271209|3.625|C"]["conId"] == FF_YES
        assert cached[f"conId:{WX_NO}"]["right"] == "P"
    finally:
        await gw.stop()
    # a restart uses the cache: no contract queries at all
    gw2 = gateway(tws, TickSink(), cache_path)
    await gw2.start()
    try:
        assert gw2.contract_queries == 0 and gw2.contracts[("NYC-HIGH", Outcome.YES)] == WX_YES
    finally:
        await gw2.stop()


async def test_ticks_stream_into_normalizer_and_capture(tws: TwsServer) -> None:
    sink = TickSink()
    gw = gateway(tws, sink, None)
    await gw.start()
    try:
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.NO) == (Price(5600), Qty(1000)))
        assert last_ask(sink, "FED-DEC", Outcome.YES) == (Price(4800), Qty(800))
        assert last_ask(sink, "NYC-HIGH", Outcome.YES) == (Price(4100), Qty(700))
        set_book(tws, "FF-DEC", [("0.45", 10)], [])
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) is None)
        assert last_ask(sink, "FED-DEC", Outcome.NO) == (Price(5600), Qty(1000))
        # each on_ticks batch is one snapshot: a valid RESET then at most one level
        for batch in sink.batches:
            assert batch[0].kind is TickKind.RESET and len(batch) <= 2
        # capture events replay through a fresh normalizer to the same state
        ev = [e for e in sink.raw if e["conId"] == FF_YES][-1]
        assert ev["venue"] == "ibkr" and ev["ask"] is None and ev["askSize"] is None
        assert ev["bid"] == 0.45 and ev["bidSize"] == 10
        replay = IbkrNormalizer(gw.symbol_of)
        ticks = replay.on_quote(FF_YES, ev["bid"], ev["bidSize"], ev["ask"], ev["askSize"], 1)  # type: ignore[arg-type]
        assert len(ticks) == 1 and ticks[0].valid
        json.dumps(sink.raw)  # capture events are JSON-serialisable
        assert gw.health.ticks >= 4 and gw.health.bad_frames == 0
    finally:
        await gw.stop()


async def test_disconnect_invalidates_then_reconnects_and_resumes(tws: TwsServer) -> None:
    sink = TickSink()
    gw = gateway(tws, sink, None)
    await gw.start()
    try:
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == (Price(4800), Qty(800)))
        tws.drop_connections()
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == "invalid")
        assert last_ask(sink, "NYC-HIGH", Outcome.NO) == "invalid"
        assert not gw.health.connected
        set_book(tws, "FF-DEC", [("0.45", 10)], [("0.55", 3)])
        await until(lambda: gw.health.connected and gw.health.reconnects == 1)
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == (Price(4600), Qty(300)))
        set_book(tws, "FF-DEC", [("0.45", 10)], [("0.54", 2)])
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == (Price(4700), Qty(200)))
    finally:
        await gw.stop()


async def test_server_down_backoff_then_back(tws: TwsServer) -> None:
    sink = TickSink()
    gw = gateway(tws, sink, None)
    await gw.start()
    port = tws.port
    try:
        await tws.stop()  # nothing listens: reconnect attempts fail and back off
        await until(lambda: not gw.health.connected)
        await asyncio.sleep(0.3)
        assert not gw.health.connected
        restarted = TwsServer(port=port, server_version=tws.server_version)
        from .conftest import add_markets

        add_markets(restarted)
        set_book(restarted, "FF-DEC", [("0.40", 1)], [("0.50", 4)])
        await restarted.start()
        try:
            await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == (Price(5100), Qty(400)))
            assert gw.health.reconnects >= 1
        finally:
            await gw.stop()
            await restarted.stop()
    finally:
        await gw.stop()


async def test_silent_feed_goes_stale_then_recovers(tws: TwsServer) -> None:
    sink = TickSink()
    gw = gateway(tws, sink, None, stale_after_ms=100, stale_grace_ms=100)
    await gw.start()
    try:
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == (Price(4800), Qty(800)))
        # a quiet but live market: the re-request brings a fresh snapshot, no invalid blip
        await asyncio.sleep(0.4)
        assert last_ask(sink, "FED-DEC", Outcome.YES) == (Price(4800), Qty(800))
        assert gw.health.extra["quote_probes"] >= 1 and gw.health.resyncs == 0
        tws.pause_ticks()
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == "invalid")
        assert gw.normalizer.stale_resets >= 1
        tws.pause_ticks(False)
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == (Price(4800), Qty(800)))
    finally:
        await gw.stop()


async def test_farm_and_connectivity_codes_invalidate_then_resubscribe(tws: TwsServer) -> None:
    """TWS's own word beats the socket: 2103/1100/10197 invalidate at once (no probe
    needed: the silence probe is set to a minute), 2104/1102 bring a fresh top back."""
    sink = TickSink()
    gw = gateway(tws, sink, None, stale_after_ms=60_000)
    await gw.start()
    try:
        fresh = (Price(4800), Qty(800))
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == fresh)
        tws.set_farm(False)
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == "invalid")
        assert not gw.data_ok and gw.connected  # the socket is up; the data is not
        assert gw.health.extra["market_data_outages"] == 1
        tws.send_status(2106, "HMDS data farm connection is OK:ushmds")  # another farm
        await asyncio.sleep(0.1)
        assert last_ask(sink, "FED-DEC", Outcome.YES) == "invalid"
        tws.set_farm(True)
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == fresh)
        assert gw.data_ok
        tws.send_status(1100, "Connectivity between IB and Trader Workstation has been lost.")
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == "invalid")
        tws.send_status(1102, "Connectivity restored - data maintained.")
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == fresh)
        tws.send_status(10197, "No market data during competing live session")
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == "invalid")
        assert gw.health.extra["market_data_blocked"] == 1
    finally:
        await gw.stop()


async def test_wrong_orientation_in_map_is_refused(tws: TwsServer) -> None:
    from arbkit.config.loader import parse_symbol_map

    swapped = parse_symbol_map(
        {
            "symbols": {
                "BAD": {
                    "kalshi_ticker": "KX-BAD",
                    "kalshi_yes_is": "yes",
                    "resolution": "2026-12-02",
                    "forecastex": {"yes_con_id": WX_NO, "no_con_id": WX_YES},
                }
            }
        }
    )
    gw = IbkrGateway("127.0.0.1", tws.port, 6, swapped, lambda t: None, cache_path=None)
    await gw.start()
    try:
        assert gw.contracts == {}
        assert "check yes_con_id / no_con_id" in gw.contract_errors["BAD"]
    finally:
        await gw.stop()


async def test_heartbeat_keeps_venue_alive_time_fresh(tws: TwsServer) -> None:
    gw = gateway(tws, TickSink(), None, heartbeat_interval_ms=50)
    await gw.start()
    try:
        await until(lambda: gw.health.last_message_ns > 0)
        first = gw.health.last_message_ns
        await until(lambda: gw.health.last_message_ns > first)  # no quotes: the heartbeat
    finally:
        await gw.stop()


async def test_hung_tws_heartbeat_forces_reconnect(tws: TwsServer) -> None:
    sink = TickSink()
    gw = gateway(
        tws, sink, None, heartbeat_interval_ms=50, heartbeat_timeout_ms=100, connect_timeout_s=0.3
    )
    await gw.start()
    try:
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == (Price(4800), Qty(800)))
        tws.mute()
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == "invalid")
        assert not gw.health.connected
        tws.mute(False)
        await until(lambda: last_ask(sink, "FED-DEC", Outcome.YES) == (Price(4800), Qty(800)))
        assert gw.health.reconnects >= 1
    finally:
        await gw.stop()
