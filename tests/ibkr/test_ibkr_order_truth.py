"""Issue 11 for IBKR: never hedge over a live order, start-up sync, one order per leg.

Real loopback sockets, real ib_async, the local TWS's fault switches. Each test asserts
venue truth (the simulator's own orders, executions and positions), not only the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from arbkit.execution.venue import (
    Fill,
    OrderRequest,
    OrderResult,
    OrderState,
    TimeInForce,
    VenueError,
)
from arbkit.gateways.ibkr_client import IbkrGateway
from arbkit.gateways.ibkr_orders import IbkrOrderClient
from arbkit.model import Money, Outcome, Price, Qty
from arbkit.sim.tws_server import TwsServer

from .conftest import FF_NO, FF_YES, TickSink, symbol_map

FED = "FED-DEC"
RESTING = 4000  # a YES limit the FF book (YES ask 0.48) does not reach


def req(coid: str, outcome: Outcome = Outcome.YES, price: int = RESTING, qty: int = 4,
        tif: TimeInForce = TimeInForce.DAY) -> OrderRequest:  # fmt: skip
    return OrderRequest(FED, outcome, Price(price), Qty(qty * 100), tif, coid)


def gateway(tws: TwsServer, client_id: int = 11) -> IbkrGateway:
    return IbkrGateway("127.0.0.1", tws.port, client_id, symbol_map(), TickSink().on_ticks,
                       cache_path=None, reconnect_initial_ms=20, reconnect_max_ms=100)  # fmt: skip


class Stream:
    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.orders: list[OrderResult] = []
        self.got_fill = asyncio.Event()

    def on_fill(self, f: Fill) -> None:
        self.fills.append(f)
        self.got_fill.set()

    def on_order(self, r: OrderResult) -> None:
        self.orders.append(r)


@pytest.fixture
async def client(tws: TwsServer) -> AsyncIterator[IbkrOrderClient]:
    gw = gateway(tws)
    await gw.start()
    try:
        yield IbkrOrderClient(gw, commission_wait_ms=200)
    finally:
        await gw.stop()


def venue_position(tws: TwsServer, con_id: int) -> int:
    return tws.positions.get(con_id, (0, Money(0)))[0]


@pytest.mark.parametrize("silent", [False, True], ids=["pending_cancel", "silent"])
async def test_ignored_cancel_returns_live_then_the_late_fill_is_reported(
    tws: TwsServer, client: IbkrOrderClient, silent: bool
) -> None:
    """The bug: the cancel of leg 2 is not carried out, the order fills later. cancel()
    must not say CANCELLED; the fill must reach the stream and order_status."""
    stream = Stream()
    client.subscribe(stream.on_fill, stream.on_order)
    r = await client.place_limit(req("ex1-l2-0"), timeout_s=0.2)
    assert r.state is OrderState.OPEN
    tws.ignore_next_cancel(fill_after_ms=400, silent=silent)
    t0 = time.monotonic()
    c = await client.cancel("ex1-l2-0", timeout_s=0.15)
    assert time.monotonic() - t0 < 0.4  # bounded by its timeout
    assert c.state is OrderState.OPEN and c.filled_qty == 0, c
    # asking again does not cancel it either (TWS is still "processing" the first cancel)
    c2 = await client.cancel("ex1-l2-0", timeout_s=0.05)
    assert c2.state is OrderState.OPEN
    await asyncio.wait_for(stream.got_fill.wait(), 3)
    assert [(f.client_order_id, f.qty, f.price) for f in stream.fills] == [
        ("ex1-l2-0", Qty(400), Price(RESTING))
    ]
    assert stream.fills[0].trade_id == tws.executions[0].exec_id
    s = await client.order_status("ex1-l2-0")
    assert s is not None and s.state is OrderState.FILLED and s.filled_qty == Qty(400)
    assert s.filled_cost == Money(4 * 400_000) and s.costs_final
    assert stream.orders[-1].state is OrderState.FILLED
    assert venue_position(tws, FF_YES) == 4  # the exposure is at the venue
    assert tws.orders_by_ref["ex1-l2-0"] == 1 and tws.cancels_ignored >= 1


async def test_ignored_cancel_without_fill_keeps_the_order_working(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    await client.place_limit(req("ex2-l2-0"), timeout_s=0.1)
    tws.ignore_next_cancel(silent=True)
    c = await client.cancel("ex2-l2-0", timeout_s=0.1)
    assert c.state is OrderState.OPEN
    assert [o.view.order_ref for o in tws._orders.values() if not o.done] == ["ex2-l2-0"]
    working = await client.open_orders()
    assert [o.client_order_id for o in working] == ["ex2-l2-0"]
    c = await client.cancel("ex2-l2-0", timeout_s=2)  # the next cancel is carried out
    assert c.state is OrderState.CANCELLED
    assert await client.open_orders() == []


async def test_delayed_cancel_confirmation_is_reported_late(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    stream = Stream()
    client.subscribe(stream.on_fill, stream.on_order)
    await client.place_limit(req("ex3-l2-0"), timeout_s=0.1)
    tws.delay_cancel_ms(300)
    c = await client.cancel("ex3-l2-0", timeout_s=0.05)
    assert c.state is OrderState.OPEN  # PendingCancel: not confirmed yet
    t0 = time.monotonic()
    c = await client.cancel("ex3-l2-0", timeout_s=2)  # the executor asks again and waits
    assert c.state is OrderState.CANCELLED and c.filled_qty == 0
    assert 0.1 < time.monotonic() - t0 < 1.5
    assert stream.orders[-1].state is OrderState.CANCELLED
    s = await client.order_status("ex3-l2-0")
    assert s is not None and s.state is OrderState.CANCELLED


async def test_subscribe_pushes_each_fill_once_across_reconnect_and_sync(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    tws.commission_per_contract_usd = Money(10_000)
    stream = Stream()
    client.subscribe(stream.on_fill, stream.on_order)
    r = await client.place_limit(req("ex4-l1-0", price=4900, qty=10, tif=TimeInForce.IOC), 2)
    assert r.state is OrderState.FILLED
    assert len(stream.fills) == 2  # two levels, two executions
    tws.drop_connections()  # ib_async re-fetches every execution at reconnect
    await asyncio.sleep(0.05)
    assert await client.gateway.wait_connected(3)
    await client.sync()  # and sync asks for them once more
    await client.order_status("ex4-l1-0")
    ids = [f.trade_id for f in stream.fills]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert set(ids) == {e.exec_id for e in tws.executions}
    assert [f.fee for f in stream.fills] == [Money(80_000), Money(20_000)]


async def test_fill_while_disconnected_is_pushed_after_reconnect(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    stream = Stream()
    client.subscribe(stream.on_fill, stream.on_order)
    await client.place_limit(req("ex5-l2-0"), timeout_s=0.1)
    tws.ignore_next_cancel(fill_after_ms=150, silent=True)
    await client.cancel("ex5-l2-0", timeout_s=0.02)
    tws.drop_connections()  # the fill happens while the client is away
    await asyncio.sleep(0.3)
    assert await client.gateway.wait_connected(3)
    await asyncio.wait_for(stream.got_fill.wait(), 3)
    assert [f.client_order_id for f in stream.fills] == ["ex5-l2-0"]
    s = await client.order_status("ex5-l2-0")
    assert s is not None and s.state is OrderState.FILLED and s.filled_qty == Qty(400)


async def test_sync_after_restart_shows_the_previous_session(tws: TwsServer) -> None:
    gw1 = gateway(tws)
    await gw1.start()
    c1 = IbkrOrderClient(gw1)
    filled = await c1.place_limit(req("ex6-l1-0", price=4900, qty=3, tif=TimeInForce.IOC), 2)
    assert filled.state is OrderState.FILLED
    resting = await c1.place_limit(req("ex6-l2-0", Outcome.NO, price=3000, qty=2), 0.1)
    assert resting.state is OrderState.OPEN
    await gw1.stop()  # the process dies; the resting order stays at TWS

    gw2 = gateway(tws)
    await gw2.start()
    try:
        c2 = IbkrOrderClient(gw2)
        stream = Stream()
        c2.subscribe(stream.on_fill, stream.on_order)
        s = await c2.sync()
        assert s.positions == {(FED, Outcome.YES): Qty(300)}
        assert [(o.client_order_id, o.state) for o in s.open_orders] == [
            ("ex6-l2-0", OrderState.OPEN)
        ]
        done = {o.client_order_id: o for o in s.completed_orders}
        assert done["ex6-l1-0"].state is OrderState.FILLED
        assert done["ex6-l1-0"].filled_qty == Qty(300)
        assert done["ex6-l1-0"].venue_order_id == filled.venue_order_id
        assert {f.trade_id for f in s.fills} == {e.exec_id for e in tws.executions}
        assert {f.trade_id for f in stream.fills} == {e.exec_id for e in tws.executions}
        # the previous session's working order can be cancelled from this one
        c = await c2.cancel("ex6-l2-0", timeout_s=2)
        assert c.state is OrderState.CANCELLED
        assert venue_position(tws, FF_NO) == 0
        # and a re-sent leg is found, not placed again
        again = await c2.place_limit(req("ex6-l1-0", price=4900, qty=3, tif=TimeInForce.IOC), 1)
        assert again.state is OrderState.FILLED and tws.orders_by_ref["ex6-l1-0"] == 1
    finally:
        await gw2.stop()


async def test_open_orders_lists_a_foreign_order(tws: TwsServer, client: IbkrOrderClient) -> None:
    perm = tws.place_foreign_order("FF-DEC", Outcome.NO, Price(3000), 5)
    ours = await client.place_limit(req("ex7-l2-0"), timeout_s=0.1)
    working = {o.venue_order_id: o for o in await client.open_orders()}
    assert set(working) == {str(perm), ours.venue_order_id}
    foreign = working[str(perm)]
    assert foreign.client_order_id == "" and foreign.state is OrderState.OPEN
    assert foreign.requested_qty == Qty(500)


async def test_not_connected_raises_before_anything_is_sent(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    tws.mute()
    client.gateway.ib.disconnect()
    for call in (
        client.place_limit(req("ex8-l1-0"), 0.1),
        client.cancel("ex8-l1-0", 0.1),
        client.order_status("ex8-l1-0"),
        client.open_orders(),
        client.sync(),
    ):
        with pytest.raises(VenueError) as err:
            await call
        assert err.value.retryable
    assert "ex8-l1-0" not in tws.orders_by_ref


async def test_one_place_order_per_client_order_id(tws: TwsServer, client: IbkrOrderClient) -> None:
    """The venue counts every placeOrder by orderRef (a retry under any id is counted)."""
    r1 = await client.place_limit(req("ex9-l2-0"), timeout_s=0.1)
    r2 = await client.place_limit(req("ex9-l2-0"), timeout_s=0.1)  # the executor retries
    assert r1.venue_order_id == r2.venue_order_id and r2.state is OrderState.OPEN
    assert tws.orders_by_ref["ex9-l2-0"] == 1 and tws.orders_received == 1
