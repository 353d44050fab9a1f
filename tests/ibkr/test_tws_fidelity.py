"""The local TWS behaves like a real one where arbkit (or a ForecastEx trader) could tell
the difference: whatIf, modify/transmit, execution filters, error replies, versions,
symbol search, history, PnL, account summary, funds, DAY expiry and size-only ticks.
Every test drives ib_async's ``IB`` over a real loopback socket."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from ib_async import IB, Contract, ExecutionFilter, LimitOrder, Trade

from arbkit.model import MONEY_SCALE, Money
from arbkit.sim import tws_wire as w
from arbkit.sim.tws_server import TwsServer

from .conftest import FF_NO, FF_YES, add_markets, set_book
from .test_ibkr_tws import connect, until

YES = Contract(conId=FF_YES, exchange="FORECASTX")
NO = Contract(conId=FF_NO, exchange="FORECASTX")
NS = 1_000_000_000


def errors_of(ib: IB) -> list[tuple[int, int, str]]:
    out: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: out.append((req_id, code, text))
    return out


async def done(t: Trade) -> Trade:
    await until(lambda: t.isDone())
    return t


# ---------------------------------------------------------------------- 1. whatIf


async def test_what_if_previews_margin_and_never_trades(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        before = (tws.top(FF_YES), tws.top(FF_NO), tws.cash)
        preview = ib.whatIfOrderAsync(YES, LimitOrder("BUY", 5, 0.48, tif="IOC"))
        state = await asyncio.wait_for(preview, 2)
        assert float(state.initMarginChange) == pytest.approx(2.40)
        assert float(state.maintMarginChange) == pytest.approx(2.40)
        assert float(state.equityWithLoanBefore) == pytest.approx(100_000.0)
        assert state.commission == 0.0 and state.commissionCurrency == "USD"
        await asyncio.sleep(0.05)
        assert tws.executions == [] and tws.positions == {}
        assert (tws.top(FF_YES), tws.top(FF_NO), tws.cash) == before
        assert ib.trades() == [] and not any(not o.done for o in tws._orders.values())
    finally:
        ib.disconnect()


# ---------------------------------------------------------------------- 2. modify / transmit


async def test_modify_live_order_price_that_now_crosses_fills(tws: TwsServer) -> None:
    ib = await connect(tws)
    errs = errors_of(ib)
    try:
        order = LimitOrder("BUY", 5, 0.40, tif="GTC")
        t = ib.placeOrder(YES, order)
        await until(lambda: t.orderStatus.status == "Submitted")
        order.lmtPrice = 0.48  # YES ask is 1.01 - 0.53 = 0.48
        ib.placeOrder(YES, order)
        await done(t)
        assert t.orderStatus.status == "Filled" and t.orderStatus.avgFillPrice == 0.48
        assert [e[1] for e in errs if e[1] not in (2104, 2106, 2158)] == []
        assert len(tws.executions) == 1
    finally:
        ib.disconnect()


async def test_modify_size_is_what_later_matches(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        order = LimitOrder("BUY", 10, 0.48, tif="GTC")
        t = ib.placeOrder(YES, order)
        await until(lambda: t.orderStatus.filled == 8)  # only 8 NO at 0.53
        order.totalQuantity = 12
        ib.placeOrder(YES, order)
        await until(lambda: t.orderStatus.remaining == 4)
        set_book(tws, "FF-DEC", [("0.45", 10)], [("0.53", 10)])
        await done(t)
        assert t.orderStatus.status == "Filled" and t.orderStatus.filled == 12
        assert tws.positions[FF_YES][0] == 12
    finally:
        ib.disconnect()


async def test_reused_id_of_finished_order_is_103(tws: TwsServer) -> None:
    ib = await connect(tws)
    errs = errors_of(ib)
    try:
        order = LimitOrder("BUY", 1, 0.48, tif="IOC")
        t = await done(ib.placeOrder(YES, order))
        assert t.orderStatus.status == "Filled"
        ib.client.placeOrder(order.orderId, YES, order)  # ib_async itself refuses a done one
        await until(lambda: any(e[1] == 103 for e in errs))
        assert len(tws.executions) == 1
    finally:
        ib.disconnect()


async def test_transmit_false_stages_until_transmitted(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        order = LimitOrder("BUY", 3, 0.48, tif="GTC", transmit=False)
        t = ib.placeOrder(YES, order)
        await until(lambda: t.orderStatus.status == "PreSubmitted")
        set_book(tws, "FF-DEC", [("0.45", 10)], [("0.53", 8)])  # a book move: still nothing
        await asyncio.sleep(0.05)
        assert tws.executions == [] and t.orderStatus.filled == 0
        order.transmit = True
        ib.placeOrder(YES, order)
        await done(t)
        assert t.orderStatus.status == "Filled" and t.orderStatus.filled == 3
    finally:
        ib.disconnect()


# ---------------------------------------------------------------------- 3. execution filter


async def test_req_executions_honours_every_filter_field(tws: TwsServer) -> None:
    ib1, ib2 = await connect(tws, 1), await connect(tws, 2)
    try:
        t0 = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
        await done(ib1.placeOrder(YES, LimitOrder("BUY", 2, 0.48, tif="IOC")))
        await done(ib2.placeOrder(NO, LimitOrder("BUY", 1, 0.56, tif="IOC")))

        async def syms(**kw: object) -> list[str]:
            """YES (client 1's fill) / NO (client 2's) of the executions the filter passes."""
            fills = await ib1.reqExecutionsAsync(ExecutionFilter(**kw))  # type: ignore[arg-type]
            return sorted("YES" if f.contract.conId == FF_YES else "NO" for f in fills)

        both = ["NO", "YES"]
        assert await syms() == both
        assert await syms(clientId=2) == ["NO"]
        assert await syms(clientId=1) == ["YES"]
        assert await syms(symbol="FF") == both
        assert await syms(symbol="NYCHI") == []
        assert await syms(secType="OPT") == both
        assert await syms(secType="STK") == []
        assert await syms(exchange="FORECASTX") == both
        assert await syms(exchange="NYSE") == []
        assert await syms(side="BUY") == both
        assert await syms(side="SELL") == []
        assert await syms(acctCode="DU1234567") == both
        assert await syms(acctCode="DU7654321") == []
        later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
        assert await syms(time=f"{t0:%Y%m%d %H:%M:%S} UTC") == both
        assert await syms(time=f"{t0:%Y%m%d-%H:%M:%S}") == both
        assert await syms(time=f"{later:%Y%m%d-%H:%M:%S}") == []
        assert await syms(time=f"{later:%Y%m%d %H:%M:%S}") == []  # TWS zone (UTC here)
    finally:
        ib1.disconnect()
        ib2.disconnect()


# ---------------------------------------------------------------------- 4. cancel codes


async def test_cancel_errors_are_10147_and_10148(tws: TwsServer) -> None:
    ib = await connect(tws)
    errs = errors_of(ib)
    try:
        t = await done(ib.placeOrder(YES, LimitOrder("BUY", 1, 0.48, tif="IOC")))
        ib.client.cancelOrder(t.order.orderId, "")
        ib.client.cancelOrder(9_999, "")
        await until(lambda: len([e for e in errs if e[1] >= 10_000]) == 2)
        codes = {e[0]: e[1] for e in errs if e[1] >= 10_000}
        assert codes == {t.order.orderId: 10148, 9_999: 10147}
    finally:
        ib.disconnect()


# ---------------------------------------------------------------------- 5. every request answered


async def test_unsupported_request_and_handler_failure_get_error_replies(
    tws: TwsServer, caplog: pytest.LogCaptureFixture
) -> None:
    ib = await connect(tws)
    errs = errors_of(ib)
    try:
        bars = ib.reqRealTimeBars(YES, 5, "MIDPOINT", False)  # not served: 503 to its reqId
        await until(lambda: any(e[1] == 503 for e in errs))
        assert [e[0] for e in errs if e[1] == 503] == [bars.reqId]

        def broken(s: object, f: list[str]) -> None:
            raise RuntimeError("boom")

        tws._handlers[81] = broken
        assert not await ib.reqMatchingSymbolsAsync("FF")  # ended by the error, no rows
        assert [e[1] for e in errs if e[1] == 320] == [320] and tws.handler_errors == 1
        assert "boom" in caplog.text
    finally:
        ib.disconnect()


# ---------------------------------------------------------------------- 6. server versions


def test_duration_field_starts_at_server_version_158() -> None:
    c = w.TwsContract(1, "FF", "OPT", "20271209", "3.625", "C", "1", "FORECASTX", "USD", "x", "FF")
    v = w.OrderView(1, 1, 1, c, "BUY", 1, "LMT", "0.5", "DAY", "DU1", "", True, "Submitted")
    n = {sv: len(w.open_order(sv, v)) for sv in (157, 158, 159, 160)}
    assert n[158] == n[157] + 1  # MIN_SERVER_VER_DURATION = 158 (ibapi server_versions.py)
    assert n[159] == n[158] and n[160] == n[159] + 1


async def test_handshake_below_minimum_version_is_closed(tws: TwsServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", tws.port)
    try:
        hello = b"v100..156"
        writer.write(b"API\0" + len(hello).to_bytes(4, "big") + hello)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, no version sent
    finally:
        writer.close()
    assert tws.connections == 0


async def test_server_version_158_orders_round_trip() -> None:
    async with TwsServer(server_version=158) as server:
        add_markets(server)
        set_book(server, "FF-DEC", [("0.45", 10)], [("0.53", 8)])
        ib = await connect(server)
        try:
            assert ib.client.serverVersion() == 158
            t = await done(ib.placeOrder(YES, LimitOrder("BUY", 2, 0.48, tif="IOC")))
            assert t.orderStatus.status == "Filled" and t.order.permId
        finally:
            ib.disconnect()


# ---------------------------------------------------------------------- 7. new operations


async def test_matching_symbols_by_prefix_and_description(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        found = await ib.reqMatchingSymbolsAsync("f")
        assert found is not None
        assert [(d.contract.symbol, d.contract.secType) for d in found if d.contract] == [
            ("FF", "IND")
        ]
        assert found[0].derivativeSecTypes == ["OPT"]
        assert found[0].contract and found[0].contract.conId == 658663572
        nyc = await ib.reqMatchingSymbolsAsync("NYC")
        assert nyc is not None and [d.contract.symbol for d in nyc if d.contract] == ["NYCHI"]
        assert await ib.reqMatchingSymbolsAsync("ZZZ") == []
    finally:
        ib.disconnect()


class Clock:
    def __init__(self, t_ns: int) -> None:
        self.t = t_ns

    def __call__(self) -> int:
        return self.t


@pytest.fixture
async def clocked() -> AsyncIterator[tuple[TwsServer, Clock]]:
    start = int(dt.datetime(2027, 6, 1, 9, 0, tzinfo=dt.UTC).timestamp()) * NS
    clock = Clock(start)
    server = TwsServer(clock_ns=clock)
    add_markets(server)
    server.add_market(
        "DAY-T", symbol="DAYT", last_trade_date="20270605", strike="1", yes_con_id=740000001,
        no_con_id=740000002, time_zone_id="UTC",
        trading_hours="20270601:0800-20270601:1000;20270602:0800-20270602:1000",
    )  # fmt: skip
    set_book(server, "FF-DEC", [("0.45", 10)], [("0.53", 8)])  # at 09:00:00
    await server.start()
    try:
        yield server, clock
    finally:
        await server.stop()


async def test_historical_bars_from_recorded_quotes_and_trades(
    clocked: tuple[TwsServer, Clock],
) -> None:
    tws, clock = clocked
    t0 = clock.t
    clock.t = t0 + 30 * NS
    set_book(tws, "FF-DEC", [("0.47", 10)], [("0.53", 8)])  # YES bid up at 09:00:30
    clock.t = t0 + 90 * NS
    ib = await connect(tws)
    try:
        await done(ib.placeOrder(YES, LimitOrder("BUY", 3, 0.48, tif="IOC")))  # trade 09:01:30
        clock.t = t0 + 120 * NS
        end = "20270601-09:02:00"

        async def bars(what: str) -> list[tuple[object, float, float, float, float]]:
            got = await ib.reqHistoricalDataAsync(YES, end, "120 S", "1 min", what, False, 2)
            return [(b.date, b.open, b.high, b.low, b.close) for b in got]

        minute0 = dt.datetime(2027, 6, 1, 9, 0, tzinfo=dt.UTC)
        minute1 = minute0 + dt.timedelta(minutes=1)
        # ask 0.48 throughout; bid 0.45 for 30 s then 0.47 for 30 s
        assert await bars("MIDPOINT") == [(minute0, 0.465, 0.475, 0.465, 0.475),
                                          (minute1, 0.475, 0.475, 0.475, 0.475)]  # fmt: skip
        assert await bars("BID_ASK") == [(minute0, 0.46, 0.48, 0.45, 0.48),
                                         (minute1, 0.47, 0.48, 0.47, 0.48)]  # fmt: skip
        assert await bars("TRADES") == [(minute1, 0.48, 0.48, 0.48, 0.48)]
        head = await ib.reqHeadTimeStampAsync(YES, "MIDPOINT", False, 2)
        assert head == minute0
        assert await ib.reqHeadTimeStampAsync(YES, "TRADES", False, 1) == dt.datetime(
            2027, 6, 1, 9, 1, 30
        )
        errs = errors_of(ib)
        live = await ib.reqHistoricalDataAsync(YES, "", "60 S", "1 min", "MIDPOINT", False, 2,
                                               keepUpToDate=True)  # fmt: skip
        assert list(live) == [] and [e[1] for e in errs] == [162]
    finally:
        ib.disconnect()


async def test_day_order_expires_at_session_close(clocked: tuple[TwsServer, Clock]) -> None:
    tws, clock = clocked
    tws.set_bids("DAY-T", next(iter(tws.markets["DAY-T"].bids)), [])
    ib = await connect(tws)
    try:
        c = Contract(conId=740000001, exchange="FORECASTX")
        day = ib.placeOrder(c, LimitOrder("BUY", 1, 0.30, tif="DAY"))
        gtc = ib.placeOrder(c, LimitOrder("BUY", 1, 0.30, tif="GTC"))
        await until(lambda: gtc.orderStatus.status == "Submitted")
        await until(lambda: day.orderStatus.status == "Submitted")
        clock.t += 59 * 60 * NS  # 09:59: still open
        await ib.reqCurrentTimeAsync()
        assert day.orderStatus.status == "Submitted"
        clock.t += 2 * 60 * NS  # 10:01: the session closed at 10:00
        await ib.reqCurrentTimeAsync()
        await until(lambda: day.orderStatus.status == "Cancelled")
        assert gtc.orderStatus.status == "Submitted"
    finally:
        ib.disconnect()


async def test_pnl_and_pnl_single_follow_fills_and_netting(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        pnl = ib.reqPnL("DU1234567")
        single = ib.reqPnLSingle("DU1234567", "", FF_YES)
        await until(lambda: pnl.dailyPnL == 0.0 and single.position == 0)
        await done(ib.placeOrder(YES, LimitOrder("BUY", 5, 0.48, tif="IOC")))
        # 5 YES cost 2.40; marked at mid(0.45, 0.48) = 0.465 → value 2.325
        await until(lambda: single.position == 5)
        assert single.value == pytest.approx(2.325)
        assert single.unrealizedPnL == pytest.approx(-0.075)
        assert pnl.unrealizedPnL == pytest.approx(-0.075) and pnl.realizedPnL == 0.0
        await done(ib.placeOrder(NO, LimitOrder("BUY", 5, 0.56, tif="IOC")))  # nets 5 pairs
        await until(lambda: single.position == 0)
        # $5 back for 2.40 + 2.80 paid
        await until(lambda: pnl.realizedPnL == pytest.approx(-0.20))
        assert pnl.unrealizedPnL == 0.0 and pnl.dailyPnL == pytest.approx(-0.20)
        ib.cancelPnL("DU1234567")
        ib.cancelPnLSingle("DU1234567", "", FF_YES)
    finally:
        ib.disconnect()


async def test_account_summary_tags_and_ledger_groups(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        await done(ib.placeOrder(YES, LimitOrder("BUY", 5, 0.48, tif="IOC")))
        vals = {v.tag: v.value for v in await ib.accountSummaryAsync()}
        for tag in ("NetLiquidation", "TotalCashValue", "SettledCash", "AvailableFunds",
                    "BuyingPower", "ExcessLiquidity", "GrossPositionValue",
                    "EquityWithLoanValue", "InitMarginReq", "MaintMarginReq"):  # fmt: skip
            assert tag in vals, tag
        assert vals["TotalCashValue"] == vals["AvailableFunds"] == "99997.60"
        assert vals["GrossPositionValue"] == vals["InitMarginReq"] == "2.325"
        assert vals["NetLiquidation"] == "99999.925"

        async def ledger(spec: str) -> set[tuple[str, str]]:
            ib.wrapper.acctSummary.clear()
            ib.client.reqAccountSummary(ib.client.getReqId(), "All", spec)
            await asyncio.sleep(0.1)
            return {(v.tag, v.currency) for v in ib.wrapper.acctSummary.values()}

        got = await ledger("$LEDGER")
        assert ("CashBalance", "USD") in got and ("Currency", "USD") in got
        assert ("OptionMarketValue", "USD") in got and not any(c == "BASE" for _, c in got)
        assert await ledger("$LEDGER:USD") == got
        everything = await ledger("$LEDGER:ALL")
        assert {("CashBalance", "BASE"), ("CashBalance", "USD")} <= everything
        assert await ledger("$LEDGER:EUR") == set()  # a currency the account does not hold
    finally:
        ib.disconnect()


async def test_insufficient_funds_and_unknown_account_are_rejected_201(tws: TwsServer) -> None:
    ib = await connect(tws)
    errs = errors_of(ib)
    try:
        tws.cash = Money(2 * MONEY_SCALE)
        rich = await done(ib.placeOrder(YES, LimitOrder("BUY", 5, 0.48, tif="IOC")))  # $2.40
        assert rich.orderStatus.status == "Cancelled"
        [(_, code, text)] = [e for e in errs if e[0] == rich.order.orderId]
        assert code == 201 and "NOT ACCEPTED" in text and "[2.40 USD]" in text
        tws.cash = Money(100 * MONEY_SCALE)
        other = LimitOrder("BUY", 1, 0.48, tif="IOC", account="DU7654321")
        t = await done(ib.placeOrder(YES, other))
        assert t.orderStatus.status == "Cancelled"
        assert [e[1] for e in errs if e[0] == t.order.orderId] == [201]
        assert tws.executions == []
    finally:
        ib.disconnect()


async def test_size_only_top_of_book_change_is_a_tick_size(tws: TwsServer) -> None:
    ib = await connect(tws)
    try:
        seen: list[int] = []
        ticker = ib.reqMktData(YES)
        await until(lambda: ticker.ask == 0.48)
        ib.pendingTickersEvent += lambda ts: seen.extend(t.tickType for tk in ts for t in tk.ticks)
        set_book(tws, "FF-DEC", [("0.45", 10), ("0.44", 25)], [("0.53", 20), ("0.52", 30)])
        await until(lambda: ticker.askSize == 20)
        assert ticker.ask == 0.48 and seen == [3]  # ASK_SIZE only, no tickPrice re-send
        set_book(tws, "FF-DEC", [("0.45", 11), ("0.44", 25)], [("0.54", 20)])
        await until(lambda: ticker.ask == 0.47 and ticker.bidSize == 11)
        assert seen[1:] == [0, 2] or sorted(seen[1:]) == [0, 2]
    finally:
        ib.disconnect()
