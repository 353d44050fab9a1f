"""The local TWS speaks the protocol ib_async expects, at server versions 178 and 157."""

from __future__ import annotations

import asyncio
import time

from ib_async import IB, Contract, LimitOrder, Ticker

from arbkit.model import MONEY_SCALE, Money, Outcome
from arbkit.sim.tws_server import TwsServer

from .conftest import FF_NO, FF_YES, set_book


async def connect(server: TwsServer, client_id: int = 1) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", server.port, clientId=client_id, timeout=5)
    return ib


async def until(cond: object, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def test_connect_completes_quickly_at_negotiated_version(tws: TwsServer) -> None:
    t0 = time.perf_counter()
    ib = await connect(tws)
    elapsed = time.perf_counter() - t0
    try:
        assert elapsed < 1.0  # every startup request got its end marker (else 4 s each)
        assert ib.client.serverVersion() == tws.server_version
        assert ib.managedAccounts() == ["DU1234567"]
        assert {v.tag for v in ib.accountValues()} >= {"AvailableFunds", "NetLiquidation"}
    finally:
        ib.disconnect()


async def test_contract_details_match_unknown_ambiguous(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        yes = Contract(
            symbol="FF", secType="OPT", exchange="FORECASTX", currency="USD",
            lastTradeDateOrContractMonth="20271209", strike=3.625, right="C",
        )  # fmt: skip
        no = Contract(conId=FF_NO, exchange="FORECASTX")
        unknown = Contract(symbol="FF", secType="OPT", exchange="FORECASTX", strike=9.0, right="C")
        both = Contract(symbol="FF", secType="OPT", exchange="FORECASTX", strike=3.625)
        q = await ib.qualifyContractsAsync(yes, no, unknown, both)
        assert q[0] is not None and q[0].conId == FF_YES and q[0].right == "C"
        assert q[1] is not None and q[1].right == "P" and q[1].symbol == "FF"
        assert q[2] is None  # error 200
        assert q[3] is None  # ambiguous: YES and NO both match
        [cd] = await ib.reqContractDetailsAsync(Contract(conId=FF_YES, exchange="FORECASTX"))
        assert (
            cd.underConId == 658663572
            and cd.minTick == 0.01
            and cd.realExpirationDate == "20271209"
        )
        assert cd.contract is not None and cd.contract.localSymbol == "FF Dec09'27 3.625 YES"
        assert cd.timeZoneId == "US/Central" and cd.tradingHours
        chain = await ib.reqContractDetailsAsync(
            Contract(symbol="FF", secType="OPT", exchange="FORECASTX")
        )
        assert {d.contract.right for d in chain if d.contract} == {"C", "P"}
    finally:
        ib.disconnect()


async def test_market_data_top_of_book_and_pushes(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        yes = Contract(conId=FF_YES, exchange="FORECASTX")
        no = Contract(conId=FF_NO, exchange="FORECASTX")
        ty: Ticker = ib.reqMktData(yes)
        tn: Ticker = ib.reqMktData(no)
        await until(lambda: ty.ask == 0.48 and tn.ask == 0.56)
        # YES: bid = best YES bid; ask = 1.01 − best NO bid, size at that NO bid
        assert (ty.bid, ty.bidSize, ty.ask, ty.askSize) == (0.45, 10, 0.48, 8)
        assert (tn.bid, tn.bidSize, tn.ask, tn.askSize) == (0.53, 8, 0.56, 10)
        set_book(tws, "FF-DEC", [("0.47", 4)], [("0.50", 9)])
        await until(lambda: ty.ask == 0.51 and tn.ask == 0.54)
        assert (ty.bid, ty.bidSize, ty.askSize, tn.bid, tn.askSize) == (0.47, 4, 9, 0.50, 4)
        set_book(tws, "FF-DEC", [], [("0.50", 9)])
        await until(lambda: ty.bid == -1 and tn.ask == -1)
        assert tn.askSize == 0
    finally:
        ib.disconnect()


async def test_crossed_maker_bids_pair_off(tws: TwsServer) -> None:
    set_book(tws, "FF-DEC", [], [])
    set_book(tws, "FF-DEC", [("0.50", 10)], [("0.52", 4), ("0.40", 5)])
    bid_yes, ask_yes = tws.top(FF_YES)
    assert bid_yes == ("0.5", 6) and ask_yes == ("0.61", 5)
    assert tws.maker_pairs == 4


async def test_order_fill_reject_cancel_and_netting(tws: TwsServer) -> None:
    tws.commission_per_contract_usd = Money(10_000)  # $0.01
    ib = await connect(tws)
    try:
        [yes, no] = await ib.qualifyContractsAsync(
            Contract(conId=FF_YES, exchange="FORECASTX"),
            Contract(conId=FF_NO, exchange="FORECASTX"),
        )
        assert yes is not None and no is not None
        t = ib.placeOrder(yes, LimitOrder("BUY", 10, 0.49, tif="IOC", orderRef="a"))
        await until(lambda: t.isDone() and all(f.commissionReport.execId for f in t.fills))
        assert t.orderStatus.status == "Filled"
        assert [(f.execution.shares, f.execution.price) for f in t.fills] == [(8, 0.48), (2, 0.49)]
        assert [f.execution.orderRef for f in t.fills] == ["a", "a"]
        assert sum(f.commissionReport.commission for f in t.fills) == 0.10
        await until(lambda: any(p.position == 10 for p in ib.positions()))

        # buying the opposite side nets: hold 10 YES, buy 4 NO → 6 YES, no NO position
        t2 = ib.placeOrder(no, LimitOrder("BUY", 4, 0.60, tif="IOC", orderRef="b"))
        await until(lambda: t2.isDone())
        await until(lambda: {p.contract.conId: p.position for p in ib.positions()} == {FF_YES: 6})

        for bad in (
            LimitOrder("SELL", 1, 0.5),
            LimitOrder("BUY", 1, 0.505),
            LimitOrder("BUY", 1, 0.01),
        ):
            bad.orderRef = "bad"
            tb = ib.placeOrder(yes, bad)
            await until(lambda tb=tb: tb.isDone())  # type: ignore[misc]
            assert tb.orderStatus.status == "Cancelled"
            assert tb.log[-1].errorCode == 201

        # a resting DAY order cancels with 202
        set_book(tws, "FF-DEC", [("0.45", 10)], [("0.30", 10)])
        td = ib.placeOrder(yes, LimitOrder("BUY", 3, 0.50, tif="DAY", orderRef="c"))
        await until(lambda: td.orderStatus.status == "Submitted")
        ib.cancelOrder(td.order)
        await until(lambda: td.isDone())
        assert td.orderStatus.status == "Cancelled" and td.orderStatus.filled == 0
        assert tws.orders_by_ref == {"a": 1, "b": 1, "bad": 3, "c": 1}
    finally:
        ib.disconnect()
    assert tws.cash < Money(100_000 * MONEY_SCALE)


async def test_orders_survive_reconnect_via_completed_orders_and_executions(tws: TwsServer) -> None:
    ib = await connect(tws, client_id=3)
    c = Contract(conId=FF_YES, exchange="FORECASTX")
    t = ib.placeOrder(c, LimitOrder("BUY", 2, 0.48, tif="IOC", orderRef="ref-1"))
    await until(lambda: t.isDone())
    ib.disconnect()
    ib2 = await connect(tws, client_id=3)
    try:
        trades = [x for x in ib2.trades() if x.order.orderRef == "ref-1"]
        assert len(trades) == 1 and trades[0].orderStatus.status == "Filled"
        assert [f.execution.shares for f in trades[0].fills] == [2]
        assert ib2.client.getReqId() > t.order.orderId  # ids move on past the old order
    finally:
        ib2.disconnect()


async def test_duplicate_client_id_is_refused(tws: TwsServer) -> None:
    ib = await connect(tws, client_id=9)
    try:
        ib2 = IB()
        try:
            await ib2.connectAsync("127.0.0.1", tws.port, clientId=9, timeout=0.3)
            raise AssertionError("second connect with the same clientId succeeded")
        except (ConnectionError, TimeoutError):
            pass
        assert ib.isConnected()
    finally:
        ib.disconnect()


async def test_pause_ticks_then_resume(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        ty = ib.reqMktData(Contract(conId=FF_YES, exchange="FORECASTX"))
        await until(lambda: ty.ask == 0.48)
        tws.pause_ticks()
        tws.set_bids("FF-DEC", Outcome.NO, [])
        await asyncio.sleep(0.05)
        assert ty.ask == 0.48
        tws.pause_ticks(False)
        await until(lambda: ty.ask == -1)
    finally:
        ib.disconnect()


async def test_sec_def_opt_params_market_rule_and_time(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        [chain] = await ib.reqSecDefOptParamsAsync("FF", "", "IND", 658663572)
        assert chain.exchange == "FORECASTX" and chain.expirations == ["20271209"]
        assert chain.strikes == [3.625]
        [inc] = await ib.reqMarketRuleAsync(26)
        assert inc.increment == 0.01
        assert (await ib.reqCurrentTimeAsync()).year >= 2024
    finally:
        ib.disconnect()
