"""Two TWS clients nobody here wrote against the local TWS: ib_insync 0.9.86 (the ancestor
of ib_async; negotiates server versions 157–176) and IBKR's official ``ibapi`` 10.46.1
(EClient + EWrapper in a thread; negotiates up to 225, so it gets the simulator's own
maximum). Each runs the ForecastEx session a trader runs: connect, contract details,
top of book, a BUY LMT that fills, positions, executions, a resting order cancelled,
account summary — at the lowest (157) and highest server version the simulator supports.

"Decodes without exception": for ib_insync every ERROR record its loggers write (its
decoder logs, not raises, a message it cannot parse) fails the test; for ibapi an
exception escaping ``EClient.run`` (the decoder raises into it) or an error callback with
a code outside the expected set fails it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from arbkit.sim import tws_wire

from .conftest import (
    FX_LAST_TRADE,
    FX_NO,
    FX_STRIKE,
    FX_SYMBOL,
    FX_YES,
    STATS,
    LoopThread,
    TwsVenue,
    start_tws,
)

LOW, HIGH = tws_wire.MIN_CLIENT_VERSION, tws_wire.MAX_CLIENT_VERSION
# Status codes TWS sends on a healthy session: farm connection notices, and 202 for an
# order the client cancelled. 10167/10089 would mean the data were delayed/not subscribed.
EXPECTED_CODES = {2104, 2106, 2107, 2108, 2119, 2158, 202}


@pytest.fixture(params=[LOW, HIGH], ids=lambda v: f"sv{v}")
def tws(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[TwsVenue]:
    venue = start_tws(loop_thread, request.param)
    try:
        yield venue
    finally:
        loop_thread.run(venue.server.stop())


class _ErrorLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _wait(cond: Callable[[], bool], timeout: float, sleep: Callable[[float], Any]) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        sleep(0.05)
    return cond()


# --------------------------------------------------------------------------- ib_insync


def test_ib_insync_session(tws: TwsVenue) -> None:
    pytest.importorskip(
        "ib_insync", reason="ib_insync is installed by the Makefile (--no-deps), see pyproject"
    )
    from ib_insync import IB, Contract, LimitOrder

    # ib_insync's sync API drives the thread's current event loop; an earlier async test
    # (pytest-asyncio) leaves none set, so give it its own.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    logs = _ErrorLogs()
    logging.getLogger("ib_insync").addHandler(logs)
    errors: list[tuple[int, int, str]] = []
    ib = IB()
    ib.errorEvent += lambda req_id, code, msg, *rest: errors.append((req_id, code, msg))
    try:
        ib.connect("127.0.0.1", tws.server.port, clientId=11, timeout=10)
        assert ib.client.serverVersion() == min(tws.server.server_version, 176)
        STATS.counts["ib_insync sessions"] += 1

        # contract details, by description (what a trader types) and by conId
        want = Contract(
            symbol=FX_SYMBOL, secType="OPT", exchange="FORECASTX", currency="USD",
            lastTradeDateOrContractMonth=FX_LAST_TRADE, strike=float(FX_STRIKE), right="C",
        )  # fmt: skip
        details = ib.reqContractDetails(want)
        assert [d.contract.conId for d in details] == [FX_YES]
        d = details[0]
        assert d.contract.exchange == "FORECASTX" and d.minTick == 0.01
        assert d.contract.right == "C" and d.contract.strike == float(FX_STRIKE)
        (no_details,) = ib.reqContractDetails(Contract(conId=FX_NO, exchange="FORECASTX"))
        assert no_details.contract.right == "P"
        yes, no = d.contract, no_details.contract

        # top of book: YES bid 0.45 x 10, asked at 1.01 − 0.53 = 0.48 x 8
        ticker = ib.reqMktData(yes, "", False, False)
        assert _wait(lambda: ticker.bid == 0.45 and ticker.ask == 0.48, 5, ib.sleep), ticker
        assert ticker.bidSize == 10 and ticker.askSize == 8
        ib.cancelMktData(yes)

        # a BUY LMT at the ask fills
        trade = ib.placeOrder(yes, LimitOrder("BUY", 3, 0.48, tif="DAY"))
        assert _wait(trade.isDone, 5, ib.sleep), trade.log
        assert trade.orderStatus.status == "Filled", trade.log
        assert trade.orderStatus.filled == 3 and trade.orderStatus.avgFillPrice == 0.48
        assert sum(f.execution.shares for f in trade.fills) == 3

        # positions and executions
        assert _wait(lambda: any(p.contract.conId == FX_YES for p in ib.positions()), 5, ib.sleep)
        pos = {p.contract.conId: p.position for p in ib.positions()}
        assert pos[FX_YES] == 3
        fills = ib.reqExecutions()
        assert sum(f.execution.shares for f in fills if f.contract.conId == FX_YES) == 3

        # a resting order, then its cancel
        resting = ib.placeOrder(no, LimitOrder("BUY", 1, 0.10, tif="DAY"))
        assert _wait(lambda: resting.orderStatus.status == "Submitted", 5, ib.sleep), resting.log
        ib.cancelOrder(resting.order)
        assert _wait(lambda: resting.orderStatus.status == "Cancelled", 5, ib.sleep), resting.log

        # account summary
        summary = {v.tag: v.value for v in ib.accountSummary()}
        for tag in ("NetLiquidation", "TotalCashValue", "AvailableFunds", "BuyingPower"):
            assert tag in summary, summary
        float(summary["NetLiquidation"])
    finally:
        ib.disconnect()
        logging.getLogger("ib_insync").removeHandler(logs)
        asyncio.set_event_loop(None)
        loop.close()
    unexpected = [e for e in errors if e[1] not in EXPECTED_CODES]
    assert not unexpected, unexpected
    assert not logs.records, [r.getMessage() for r in logs.records]


# --------------------------------------------------------------------------- ibapi


def _ibapi_app() -> Any:
    pytest.importorskip("ibapi", reason="nautilus-ibapi is in the conformance extra")
    from ibapi.client import EClient
    from ibapi.wrapper import EWrapper

    class App(EWrapper, EClient):  # type: ignore[misc]
        def __init__(self) -> None:
            EWrapper.__init__(self)
            EClient.__init__(self, self)
            self.cond = threading.Condition()
            self.errors: list[tuple[int, int, str]] = []
            self.next_id = 0
            self.details: dict[int, list[Any]] = {}
            self.ends: set[tuple[str, int]] = set()
            self.ticks: dict[tuple[int, int], Any] = {}
            self.status: dict[int, tuple[str, Decimal, float]] = {}
            self.open_orders: dict[int, Any] = {}
            self.execs: list[Any] = []
            self.fees: list[Any] = []
            self.positions: dict[int, Decimal] = {}
            self.summary: dict[str, str] = {}
            self.run_error: BaseException | None = None
            self.callbacks = 0

        def _note(self) -> None:
            with self.cond:
                self.callbacks += 1
                self.cond.notify_all()

        def wait(self, pred: Callable[[], bool], timeout: float = 5.0) -> bool:
            with self.cond:
                return self.cond.wait_for(pred, timeout)

        def error(
            self,
            reqId: int,
            errorTime: int,
            errorCode: int,
            errorString: str,
            advancedOrderRejectJson: str = "",
        ) -> None:
            self.errors.append((reqId, errorCode, errorString))
            self._note()

        def nextValidId(self, orderId: int) -> None:
            self.next_id = orderId
            self._note()

        def contractDetails(self, reqId: int, contractDetails: Any) -> None:
            self.details.setdefault(reqId, []).append(contractDetails)
            self._note()

        def contractDetailsEnd(self, reqId: int) -> None:
            self.ends.add(("details", reqId))
            self._note()

        def tickPrice(self, reqId: int, tickType: int, price: float, attrib: Any) -> None:
            self.ticks[(reqId, tickType)] = price
            self._note()

        def tickSize(self, reqId: int, tickType: int, size: Decimal) -> None:
            self.ticks[(reqId, 100 + tickType)] = size
            self._note()

        def orderStatus(
            self,
            orderId: int,
            status: str,
            filled: Decimal,
            remaining: Decimal,
            avgFillPrice: float,
            *rest: Any,
        ) -> None:
            self.status[orderId] = (status, filled, avgFillPrice)
            self._note()

        def openOrder(self, orderId: int, contract: Any, order: Any, orderState: Any) -> None:
            self.open_orders[orderId] = (contract, order, orderState)
            self._note()

        def execDetails(self, reqId: int, contract: Any, execution: Any) -> None:
            self.execs.append((reqId, contract, execution))
            self._note()

        def execDetailsEnd(self, reqId: int) -> None:
            self.ends.add(("execs", reqId))
            self._note()

        def commissionAndFeesReport(self, commissionAndFeesReport: Any) -> None:
            self.fees.append(commissionAndFeesReport)
            self._note()

        def position(self, account: str, contract: Any, position: Decimal, avgCost: float) -> None:
            self.positions[contract.conId] = position
            self._note()

        def positionEnd(self) -> None:
            self.ends.add(("positions", 0))
            self._note()

        def accountSummary(
            self, reqId: int, account: str, tag: str, value: str, currency: str
        ) -> None:
            self.summary[tag] = value
            self._note()

        def accountSummaryEnd(self, reqId: int) -> None:
            self.ends.add(("summary", reqId))
            self._note()

        def safe_run(self) -> None:
            try:
                self.run()
            except BaseException as exc:  # a decode failure surfaces here
                self.run_error = exc
                self._note()

    return App()


def test_ibapi_session(tws: TwsVenue) -> None:
    from ibapi.contract import Contract
    from ibapi.order import Order

    logs = _ErrorLogs()
    logging.getLogger("ibapi").addHandler(logs)
    app = _ibapi_app()
    app.connect("127.0.0.1", tws.server.port, clientId=12)
    thread = threading.Thread(target=app.safe_run, daemon=True)
    thread.start()
    try:
        assert app.wait(lambda: app.next_id > 0), "no nextValidId"
        assert app.serverVersion() == tws.server.server_version
        STATS.counts["ibapi sessions"] += 1

        want = Contract()
        want.symbol, want.secType, want.exchange, want.currency = (
            FX_SYMBOL, "OPT", "FORECASTX", "USD",
        )  # fmt: skip
        want.lastTradeDateOrContractMonth, want.strike, want.right = (
            FX_LAST_TRADE, float(FX_STRIKE), "C",
        )  # fmt: skip
        app.reqContractDetails(1, want)
        assert app.wait(lambda: ("details", 1) in app.ends)
        (d,) = app.details[1]
        assert d.contract.conId == FX_YES and d.minTick == 0.01
        by_id = Contract()
        by_id.conId, by_id.exchange = FX_NO, "FORECASTX"
        app.reqContractDetails(2, by_id)
        assert app.wait(lambda: ("details", 2) in app.ends)
        assert app.details[2][0].contract.right == "P"
        yes = d.contract
        no = app.details[2][0].contract

        # top of book (tick types 1 bid, 2 ask, 0 bid size, 3 ask size)
        app.reqMktData(3, yes, "", False, False, [])
        assert app.wait(lambda: app.ticks.get((3, 1)) == 0.45 and app.ticks.get((3, 2)) == 0.48)
        assert app.wait(lambda: app.ticks.get((3, 100)) == 10 and app.ticks.get((3, 103)) == 8)
        app.cancelMktData(3)

        def lmt(qty: int, price: float) -> Any:
            o = Order()
            o.action, o.orderType, o.totalQuantity, o.lmtPrice, o.tif = (
                "BUY", "LMT", Decimal(qty), price, "DAY",
            )  # fmt: skip
            return o

        fill_id = app.next_id
        app.placeOrder(fill_id, yes, lmt(2, 0.48))
        assert app.wait(lambda: app.status.get(fill_id, ("",))[0] == "Filled"), app.status
        assert app.status[fill_id][1] == 2 and app.status[fill_id][2] == 0.48
        assert app.wait(lambda: len(app.execs) >= 1 and len(app.fees) >= 1)

        app.reqPositions()
        assert app.wait(lambda: ("positions", 0) in app.ends)
        assert app.positions[FX_YES] == 2
        app.cancelPositions()

        from ibapi.execution import ExecutionFilter

        app.execs.clear()
        app.reqExecutions(4, ExecutionFilter())
        assert app.wait(lambda: ("execs", 4) in app.ends)
        assert sum(e.shares for r, c, e in app.execs if c.conId == FX_YES) == 2

        rest_id = fill_id + 1
        app.placeOrder(rest_id, no, lmt(1, 0.10))
        assert app.wait(lambda: app.status.get(rest_id, ("",))[0] == "Submitted"), app.status
        from ibapi.order_cancel import OrderCancel

        app.cancelOrder(rest_id, OrderCancel())
        assert app.wait(lambda: app.status.get(rest_id, ("",))[0] == "Cancelled"), app.status

        app.reqAccountSummary(5, "All", "NetLiquidation,TotalCashValue,AvailableFunds")
        assert app.wait(lambda: ("summary", 5) in app.ends)
        assert {"NetLiquidation", "TotalCashValue", "AvailableFunds"} <= set(app.summary)
        app.cancelAccountSummary(5)
        time.sleep(0.2)  # let the last frames decode
    finally:
        app.disconnect()
        thread.join(5)
        logging.getLogger("ibapi").removeHandler(logs)
    STATS.counts["ibapi callbacks decoded"] += app.callbacks
    assert app.run_error is None, repr(app.run_error)
    unexpected = [e for e in app.errors if e[1] not in EXPECTED_CODES]
    assert not unexpected, unexpected
    assert not logs.records, [r.getMessage() for r in logs.records]
