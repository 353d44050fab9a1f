"""IbkrOrderClient against the local TWS: fills, partials, rejects, timeouts, netting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from ib_async import CommissionReport, Contract, Execution, LimitOrder, OrderStatus, Trade
from ib_async import Fill as IbFill
from ib_async.order import TradeLogEntry

from arbkit.execution.venue import OrderRequest, OrderState, TimeInForce, VenueError
from arbkit.gateways.ibkr_client import IbkrGateway
from arbkit.gateways.ibkr_orders import IBKR_STATUS, IbkrOrderClient, state_of
from arbkit.model import MONEY_SCALE, Money, Outcome, Price, Qty
from arbkit.sim.tws_server import TwsServer

from .conftest import TickSink, set_book, symbol_map

FED = "FED-DEC"


def req(coid: str, outcome: Outcome = Outcome.YES, price: int = 4900, qty: int = 10,
        tif: TimeInForce = TimeInForce.IOC) -> OrderRequest:  # fmt: skip
    return OrderRequest(FED, outcome, Price(price), Qty(qty * 100), tif, coid)


@pytest.fixture
async def client(tws: TwsServer) -> AsyncIterator[IbkrOrderClient]:
    gw = IbkrGateway("127.0.0.1", tws.port, 11, symbol_map(), TickSink().on_ticks, cache_path=None,
                     reconnect_initial_ms=20, reconnect_max_ms=100)  # fmt: skip
    await gw.start()
    try:
        yield IbkrOrderClient(gw)
    finally:
        await gw.stop()


async def test_ioc_fills_across_levels_with_fees(tws: TwsServer, client: IbkrOrderClient) -> None:
    tws.commission_per_contract_usd = Money(10_000)  # $0.01 per contract
    r = await client.place_limit(req("e1-k-1", price=4900, qty=10), timeout_s=2)
    assert r.state is OrderState.FILLED
    assert r.filled_qty == Qty(1000) and r.requested_qty == Qty(1000)
    assert r.filled_cost == Money(8 * 480_000 + 2 * 490_000)  # 8 @ 0.48, 2 @ 0.49
    assert r.fees == Money(100_000) and r.venue_order_id
    fills = await client.fills("e1-k-1")
    assert [(f.price, f.qty, f.fee) for f in fills] == [
        (Price(4800), Qty(800), Money(80_000)),
        (Price(4900), Qty(200), Money(20_000)),
    ]
    assert all(f.symbol == FED and f.outcome is Outcome.YES for f in fills)
    assert tws.orders_by_ref["e1-k-1"] == 1


async def test_ioc_partial_fill_leaves_rest_cancelled(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    tws.partial_fill_next_order(3)
    r = await client.place_limit(req("e2-k-1", qty=10), timeout_s=2)
    assert r.state is OrderState.CANCELLED and r.filled_qty == Qty(300)
    assert r.filled_cost == Money(3 * 480_000)
    # natural partial: only 8 + 30 contracts of NO bids at prices the limit reaches
    r2 = await client.place_limit(req("e2-k-2", price=4900, qty=50), timeout_s=2)
    assert r2.state is OrderState.CANCELLED and r2.filled_qty == Qty((5 + 30) * 100)


async def test_reject_by_venue_and_before_sending(tws: TwsServer, client: IbkrOrderClient) -> None:
    tws.reject_next_order()
    r = await client.place_limit(req("e3-k-1"), timeout_s=2)
    assert r.state is OrderState.REJECTED and r.filled_qty == 0 and "201" in r.reason
    bad = [
        req("x1", price=4950),  # off the $0.01 grid
        req("x2", price=100),  # below $0.02
        req("x3", qty=0),
        OrderRequest(FED, Outcome.YES, Price(4900), Qty(150), TimeInForce.IOC, "x4"),  # 1.5
        req("x5", tif=TimeInForce.FOK),
    ]
    for b in bad:
        with pytest.raises(VenueError):
            await client.place_limit(b, timeout_s=1)
    assert not any(ref.startswith("x") for ref in tws.orders_by_ref)


async def test_unfinished_ioc_comes_back_live_and_the_caller_cancels(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    tws.never_fill_next_order()
    r = await client.place_limit(req("e4-k-1"), timeout_s=0.2)
    assert r.state is OrderState.OPEN and r.filled_qty == 0
    assert tws.cancels_received == 0  # place_limit does not cancel on its own
    c = await client.cancel("e4-k-1", timeout_s=2)
    assert c.state is OrderState.CANCELLED and c.filled_qty == 0
    assert tws.orders_by_ref["e4-k-1"] == 1 and tws.cancels_received == 1


async def test_day_order_that_does_not_fill_stays_open(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    """Old behaviour: place_limit cancelled inside (its own 5 s wait under the executor's
    outer timeout). Now the order is left working and the executor decides."""
    r = await client.place_limit(req("e5-k-1", price=4000, tif=TimeInForce.DAY), timeout_s=0.2)
    assert r.state is OrderState.OPEN and r.filled_qty == 0 and r.venue_order_id
    assert tws.cancels_received == 0
    live = [o for o in tws._orders.values() if not o.done]
    assert [o.view.order_ref for o in live] == ["e5-k-1"]
    assert r.sent_ns and r.ack_ts_ns and r.sent_ns <= r.ack_ts_ns
    c = await client.cancel("e5-k-1", timeout_s=2)
    assert c.state is OrderState.CANCELLED and not any(not o.done for o in tws._orders.values())


async def test_delayed_fill_is_awaited(tws: TwsServer, client: IbkrOrderClient) -> None:
    tws.fill_delay_ms = 100
    r = await client.place_limit(req("e6-k-1", qty=2), timeout_s=2)
    assert r.state is OrderState.FILLED and r.filled_qty == Qty(200)


async def test_positions_net_after_buying_opposite(tws: TwsServer, client: IbkrOrderClient) -> None:
    start = await client.balance()
    assert start == Money(100_000 * MONEY_SCALE)
    await client.place_limit(req("e7-k-1", price=4800, qty=8), timeout_s=2)
    assert await client.positions() == {(FED, Outcome.YES): Qty(800)}
    assert await client.balance() == Money(start - 8 * 480_000)
    set_book(tws, "FF-DEC", [("0.45", 10)], [("0.40", 10)])
    r = await client.place_limit(req("e7-k-2", Outcome.NO, price=5600, qty=5), timeout_s=2)
    assert r.state is OrderState.FILLED
    assert await client.positions() == {(FED, Outcome.YES): Qty(300)}
    r = await client.place_limit(req("e7-k-3", Outcome.NO, price=5600, qty=5), timeout_s=2)
    assert await client.positions() == {(FED, Outcome.NO): Qty(200)}
    # 8 YES @0.48, 10 NO @0.56; 8 pairs netted into $8
    assert await client.balance() == Money(start - 8 * 480_000 - 10 * 560_000 + 8 * MONEY_SCALE)


async def test_order_found_by_client_id_after_restart(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    assert await client.order_status("e8-k-1") is None
    r = await client.place_limit(req("e8-k-1", qty=3), timeout_s=2)
    assert r.state is OrderState.FILLED
    await client.gateway.stop()
    gw2 = IbkrGateway("127.0.0.1", tws.port, 11, symbol_map(), TickSink().on_ticks, cache_path=None)
    await gw2.start()
    try:
        c2 = IbkrOrderClient(gw2)
        found = await c2.order_status("e8-k-1")
        assert found is not None and found.state is OrderState.FILLED
        assert found.filled_qty == Qty(300) and found.venue_order_id == r.venue_order_id
        # re-placing the same client order id looks it up instead of sending it again
        again = await c2.place_limit(req("e8-k-1", qty=3), timeout_s=1)
        assert again.state is OrderState.FILLED
        assert tws.orders_by_ref["e8-k-1"] == 1
        assert await c2.order_status("never-sent") is None
    finally:
        await gw2.stop()


async def test_reconnect_mid_order_then_lookup(tws: TwsServer, client: IbkrOrderClient) -> None:
    tws.fill_delay_ms = 150
    import asyncio

    task = asyncio.create_task(client.place_limit(req("e9-k-1", qty=2), timeout_s=3))
    await asyncio.sleep(0.05)
    tws.drop_connections()  # the fill happens while the client is away
    r = await task
    assert r.state is OrderState.FILLED and r.filled_qty == Qty(200)
    assert tws.orders_by_ref["e9-k-1"] == 1


async def test_cancel_unknown_and_status_table() -> None:
    assert IBKR_STATUS["Inactive"] is OrderState.UNKNOWN  # only an error code makes it final
    assert IBKR_STATUS["PendingCancel"] is OrderState.OPEN
    assert IBKR_STATUS["ApiCancelled"] is OrderState.CANCELLED


def _trade(status: str, qty: float, fills: list[float], codes: list[int] = []) -> Trade:  # noqa: B006
    t = Trade(order=LimitOrder("BUY", qty, 0.5), orderStatus=OrderStatus(status=status))
    for i, n in enumerate(fills):
        ex = Execution(execId=f"x{i}", shares=n, price=0.5)
        t.fills.append(IbFill(Contract(), ex, CommissionReport(execId=f"x{i}"), datetime.now()))
    t.log = [TradeLogEntry(datetime.now(), status, "", c) for c in codes]
    return t


def _logged(*entries: tuple[str, int]) -> Trade:
    t = Trade(order=LimitOrder("BUY", 5, 0.5), orderStatus=OrderStatus(status=entries[-1][0]))
    t.log = [TradeLogEntry(datetime.now(), st, "", code) for st, code in entries]
    return t


def test_state_comes_from_what_tws_said_not_from_ib_async_guesses() -> None:
    # ib_async flips a live trade to Cancelled on a cancel-request error: still live
    assert state_of(_logged(("Submitted", 0), ("Cancelled", 10148))) is OrderState.OPEN
    assert state_of(_logged(("Submitted", 0), ("Cancelled", 10147))) is OrderState.OPEN
    # ... and on an error it does not know: nothing the venue said is left → UNKNOWN
    assert state_of(_logged(("Cancelled", 9999))) is OrderState.UNKNOWN
    # our own cancel request's local entries are not the venue's word
    t = _logged(("Submitted", 0), ("Inactive", 0), ("Cancelled", 0))
    assert state_of(t, local={2}) is OrderState.UNKNOWN  # Inactive without a reason
    assert state_of(t) is OrderState.CANCELLED
    # venue confirmations
    assert state_of(_logged(("Submitted", 0), ("Cancelled", 202))) is OrderState.CANCELLED
    assert state_of(_logged(("PendingSubmit", 0), ("Cancelled", 201))) is OrderState.REJECTED
    assert state_of(_logged(("Submitted", 0), ("PendingCancel", 0))) is OrderState.OPEN


def test_state_table_with_fills_and_error_codes() -> None:
    assert state_of(_trade("Inactive", 5, [])) is OrderState.UNKNOWN
    assert state_of(_trade("Inactive", 5, [], [201])) is OrderState.REJECTED
    assert state_of(_trade("Inactive", 5, [2], [201])) is OrderState.CANCELLED
    assert state_of(_trade("Cancelled", 5, [], [201])) is OrderState.REJECTED
    assert state_of(_trade("Cancelled", 5, [], [202])) is OrderState.CANCELLED
    assert state_of(_trade("Cancelled", 5, [3], [201])) is OrderState.CANCELLED
    assert state_of(_trade("Filled", 5, [5])) is OrderState.FILLED
    assert state_of(_trade("Filled", 5, [2])) is OrderState.OPEN  # status ahead of fills
    assert state_of(_trade("ValidationError", 5, [])) is OrderState.OPEN
    assert state_of(_trade("PendingSubmit", 5, [])) is OrderState.PENDING
    assert state_of(_trade("SomethingNew", 5, [])) is OrderState.UNKNOWN


async def test_resting_day_order_fills_when_book_reaches_it(
    tws: TwsServer, client: IbkrOrderClient
) -> None:
    import asyncio

    set_book(tws, "FF-DEC", [("0.45", 10)], [("0.40", 10)])  # YES ask 0.61
    task = asyncio.create_task(
        client.place_limit(req("e10-k-1", price=5000, qty=4, tif=TimeInForce.DAY), timeout_s=3)
    )
    await asyncio.sleep(0.1)
    set_book(tws, "FF-DEC", [("0.45", 10)], [("0.52", 3), ("0.51", 5)])  # reaches 0.49, 0.50
    r = await task
    assert r.state is OrderState.FILLED
    assert r.filled_cost == Money(3 * 490_000 + 1 * 500_000)
