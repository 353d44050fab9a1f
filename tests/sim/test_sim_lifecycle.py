"""The local venues close and settle markets: Kalshi's ``market_lifecycle_v2`` frames, close
by clock, determination, settlement payouts and ``/portfolio/settlements``; the local TWS's
settlement (cash, positions, orders, books, contract hours) and last-trade-time refusals.
Driven through the real clients (httpx via KalshiRestClient, websockets, ib_async)."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from ib_async import IB, Contract, LimitOrder, Trade
from openapi_core import OpenAPI
from websockets.asyncio.client import ClientConnection, connect

from arbkit.gateways.kalshi_auth import KalshiAuth, generate_key_pair
from arbkit.gateways.kalshi_rest import KalshiApiError, KalshiRestClient
from arbkit.model import MONEY_SCALE, Money, Outcome, Price, Qty, money_str, parse_money
from arbkit.sim.kalshi_exchange import KalshiExchange
from arbkit.sim.tws_server import TwsServer
from tests.openapi_check import ApiRequest, ApiResponse, load_spec

SPEC_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi" / "spec"
T0, T1, T2 = "KXFED-26DEC-T375", "KXFED-26DEC-T400", "KXCPI-26NOV-T03"
WS = "/trade-api/ws/v2"
CLOSED_TEXT = "Order rejected - reason: trading is closed for this contract"


async def until(cond: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.005)


class Clock:
    """Wall time plus a test-controlled offset (the venue's ``clock_ns``)."""

    def __init__(self, start_ns: int | None = None) -> None:
        self.offset_ns = 0 if start_ns is None else start_ns - time.time_ns()

    def __call__(self) -> int:
        return time.time_ns() + self.offset_ns

    def advance_s(self, s: float) -> None:
        self.offset_ns += int(s * 1e9)


# ------------------------------------------------------------------- Kalshi rig -------


@dataclass
class Kalshi:
    ex: KalshiExchange
    clock: Clock
    auth_a: KalshiAuth
    auth_b: KalshiAuth
    a: KalshiRestClient
    b: KalshiRestClient
    seen: list[httpx.Response]

    def ladder(self, ticker: str, outcome: Outcome, *levels: tuple[int, int]) -> None:
        self.ex.set_bids(ticker, outcome, [(Price(p), Qty(q)) for p, q in levels])


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    out = []
    for name in ("a", "b"):
        path = tmp_path_factory.mktemp("keys") / f"{name}.pem"
        _, public_pem = generate_key_pair(path, key_type="ed25519")
        out.append((path, public_pem))
    return out


@pytest.fixture(scope="module")
def openapi_dict() -> dict[str, Any]:
    return load_spec(SPEC_DIR / "openapi.yaml")


@pytest.fixture(scope="module")
def lifecycle_schema() -> jsonschema.protocols.Validator:
    with open(SPEC_DIR / "asyncapi.yaml") as f:
        d: dict[str, Any] = yaml.safe_load(f)
    schema = dict(d["components"]["schemas"]["marketLifecycleV2Payload"])
    schema["components"] = d["components"]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=jsonschema.FormatChecker())


def _rest(url: str, auth: KalshiAuth, seen: list[httpx.Response]) -> KalshiRestClient:
    async def keep(resp: httpx.Response) -> None:
        await resp.aread()
        seen.append(resp)

    return KalshiRestClient(
        url,
        auth,
        read_tokens_per_s=1_000,
        write_tokens_per_s=1_000,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        event_hooks={"response": [keep]},
    )


@pytest.fixture
async def kx(keys: list[tuple[Path, str]]) -> AsyncIterator[Kalshi]:
    clock = Clock()
    # The clock is moved by hours in these tests; requests are signed with wall time.
    ex = KalshiExchange(max_clock_skew_ms=30 * 86_400_000, heartbeat_s=1.0, clock_ns=clock)
    auths = []
    for path, public_pem in keys:
        key_id = str(uuid.uuid4())
        ex.register_key(key_id, public_pem)
        ex.fund(key_id, Money(1_000 * MONEY_SCALE))
        auths.append(KalshiAuth.from_key_file(key_id, path))
    for t in (T0, T1, T2):
        ex.add_market(t)
    await ex.start()
    seen: list[httpx.Response] = []
    a, b = (_rest(ex.rest_url, auth, seen) for auth in auths)
    try:
        yield Kalshi(ex, clock, auths[0], auths[1], a, b, seen)
    finally:
        await a.aclose()
        await b.aclose()
        await ex.stop()


async def ws_sub(ex: KalshiExchange, auth: KalshiAuth, **params: Any) -> ClientConnection:
    ws = await connect(ex.ws_url, additional_headers=auth.headers("GET", WS))
    await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": params}))
    for _ in params["channels"]:  # one ack per channel
        ack = await recv(ws)
        assert ack["type"] == "subscribed", ack
    return ws


async def recv(ws: ClientConnection, timeout_s: float = 5.0) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return obj


async def nothing_more(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.2)


async def balance(rest: KalshiRestClient) -> Money:
    d = await rest.request("GET", "/portfolio/balance")
    return parse_money(d["balance_dollars"])


async def buy(rest: KalshiRestClient, ticker: str, side: str, yes_price: int, qty: int) -> None:
    r = await rest.create_order_v2(
        ticker=ticker,
        side=side,
        count=Qty(qty),
        price=Price(yes_price),
        time_in_force="immediate_or_cancel",
        client_order_id=str(uuid.uuid4()),
    )
    assert r.fill_count == qty


def validate_rest(openapi_dict: dict[str, Any], kx: Kalshi, path_part: str) -> int:
    """Every captured response on a path containing ``path_part`` matches the OpenAPI."""
    spec = copy.deepcopy(openapi_dict)
    spec["servers"] = [{"url": kx.ex.rest_url}]
    api = OpenAPI.from_dict(spec)
    n = 0
    for r in kx.seen:
        if path_part in r.request.url.path:
            api.validate_response(ApiRequest(r.request), ApiResponse(r))
            n += 1
    return n


# ------------------------------------------------------------------- Kalshi tests -----


async def test_lifecycle_frames_are_public_sequenced_and_filtered(
    kx: Kalshi, lifecycle_schema: jsonschema.protocols.Validator
) -> None:
    ex = kx.ex
    ws_a = await ws_sub(ex, kx.auth_a, channels=["market_lifecycle_v2"], market_tickers=[T0])
    ws_b = await ws_sub(ex, kx.auth_b, channels=["market_lifecycle_v2"])  # other user, all
    try:
        ex.pause_market(T0)
        with pytest.raises(KalshiApiError) as ei:  # paused: orders refused
            await buy(kx.a, T0, "bid", 4000, 100)
        assert (ei.value.status, ei.value.code) == (400, "market_closed")
        m = (await kx.a.request("GET", f"/markets/{T0}"))["market"]
        assert m["status"] == "inactive"
        ex.pause_market(T1)  # filtered out for A, seen by B
        ex.pause_market(T0, False)
        assert (await kx.a.request("GET", f"/markets/{T0}"))["market"]["status"] == "active"
        kx.clock.advance_s(1)
        ex.determine(T0, "yes")
        ex.settle(T0)
        now_s = kx.clock() // 1_000_000_000

        got = [await recv(ws_a) for _ in range(4)]
        for f in got:
            lifecycle_schema.validate(f)
        assert [(f["type"], f["seq"], f["msg"]["event_type"]) for f in got] == [
            ("market_lifecycle_v2", 1, "deactivated"),
            ("market_lifecycle_v2", 2, "activated"),
            ("market_lifecycle_v2", 3, "determined"),
            ("market_lifecycle_v2", 4, "settled"),
        ]
        assert {f["sid"] for f in got} == {1}
        assert all(f["msg"]["market_ticker"] == T0 for f in got)
        assert got[0]["msg"]["is_deactivated"] is True
        assert got[1]["msg"]["is_deactivated"] is False
        det = got[2]["msg"]
        assert det["result"] == "yes" and det["settlement_value"] == "1.0000"
        assert det["determination_ts"] == now_s
        assert got[3]["msg"]["settled_ts"] == now_s
        assert set(got[3]["msg"]) == {"market_ticker", "event_type", "settled_ts"}
        await nothing_more(ws_a)

        got_b = [await recv(ws_b) for _ in range(5)]
        for f in got_b:
            lifecycle_schema.validate(f)
        assert [(f["seq"], f["msg"]["market_ticker"], f["msg"]["event_type"]) for f in got_b] == [
            (1, T0, "deactivated"),
            (2, T1, "deactivated"),
            (3, T0, "activated"),
            (4, T0, "determined"),
            (5, T0, "settled"),
        ]

        ex.set_close_time(T2, now_s + 3_600)
        f = await recv(ws_b)
        lifecycle_schema.validate(f)
        assert f["seq"] == 6 and f["msg"] == {
            "market_ticker": T2,
            "event_type": "close_date_updated",
            "close_ts": now_s + 3_600,
        }
        m = (await kx.a.request("GET", f"/markets/{T2}"))["market"]
        assert m["close_time"] == dt.datetime.fromtimestamp(now_s + 3_600, dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
        await nothing_more(ws_a)
    finally:
        await ws_a.close()
        await ws_b.close()


async def test_market_closes_at_close_time_without_a_frame(
    kx: Kalshi, lifecycle_schema: jsonschema.protocols.Validator
) -> None:
    ex = kx.ex
    close_s = kx.clock() // 1_000_000_000 + 3_600
    ex.add_market("KXCLOSE-26DEC-T1", close_time=close_s, expected_expiration_time=close_s + 60)
    t = "KXCLOSE-26DEC-T1"
    kx.ladder(t, Outcome.NO, (6000, 1000))
    resting = await kx.a.create_order_v2(
        ticker=t,
        side="bid",
        count=Qty(100),
        price=Price(3000),
        time_in_force="good_till_canceled",
        client_order_id="rest-1",
    )
    await buy(kx.a, t, "bid", 4000, 100)  # open until the close time
    ws = await ws_sub(ex, kx.auth_a, channels=["market_lifecycle_v2", "user_orders"])
    try:
        m = (await kx.a.request("GET", f"/markets/{t}"))["market"]
        assert m["status"] == "active" and m["result"] == "" and m["can_close_early"] is False
        assert "settlement_value_dollars" not in m or m["settlement_value_dollars"] is None
        iso = dt.datetime.fromtimestamp(close_s + 60, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert m["expected_expiration_time"] == iso
        kx.clock.advance_s(3_600)
        with pytest.raises(KalshiApiError) as ei:
            await buy(kx.a, t, "bid", 4000, 100)
        assert (ei.value.status, ei.value.code) == (400, "market_closed")
        m = (await kx.a.request("GET", f"/markets/{t}"))["market"]
        assert m["status"] == "closed"
        listed = await kx.a.request("GET", "/markets", params={"status": "closed"})
        assert [x["ticker"] for x in listed["markets"]] == [t]
        # the resting order was cancelled at close (a user_order frame, no lifecycle frame)
        frame = await recv(ws)
        assert frame["type"] == "user_order" and frame["msg"]["order_id"] == resting.order_id
        assert frame["msg"]["status"] == "canceled"
        assert (await kx.a.get_order(resting.order_id)).status == "canceled"
        ex.determine(t, "no")  # the first lifecycle frame this sid sees
        f = await recv(ws)
        lifecycle_schema.validate(f)
        assert (f["seq"], f["msg"]["event_type"]) == (1, "determined")
        assert f["msg"]["settlement_value"] == "0.0000" and f["msg"]["result"] == "no"
    finally:
        await ws.close()


async def test_settle_pays_one_dollar_per_winning_contract(
    kx: Kalshi, openapi_dict: dict[str, Any]
) -> None:
    ex = kx.ex
    for t in (T0, T1):
        kx.ladder(t, Outcome.YES, (3500, 1000))
        kx.ladder(t, Outcome.NO, (6000, 1000))
    await buy(kx.a, T0, "bid", 4000, 300)  # A: 3 YES at 0.40
    await buy(kx.b, T0, "ask", 3500, 200)  # B: 2 NO at 0.65
    await buy(kx.a, T1, "ask", 3500, 150)  # A: 1.5 NO at 0.65 in another market
    rest_a = await kx.a.create_order_v2(
        ticker=T0,
        side="bid",
        count=Qty(100),
        price=Price(3000),
        time_in_force="good_till_canceled",
        client_order_id="a-rest",
    )
    ws = await ws_sub(ex, kx.auth_a, channels=["user_orders"])
    fills = (await kx.a.request("GET", "/portfolio/fills", params={"ticker": T0}))["fills"]
    fees_a = sum(parse_money(f["fee_cost"]) for f in fills)
    assert fees_a > 0
    bal_a, bal_b = await balance(kx.a), await balance(kx.b)
    try:
        with pytest.raises(ValueError):
            ex.settle(T0)  # not determined yet
        ex.determine(T0, "yes")
        frame = await recv(ws)
        assert frame["msg"]["order_id"] == rest_a.order_id
        assert frame["msg"]["status"] == "canceled"
        assert (await kx.a.get_order(rest_a.order_id)).status == "canceled"
        m = (await kx.a.request("GET", f"/markets/{T0}"))["market"]
        assert (m["status"], m["result"], m["settlement_value_dollars"]) == (
            "determined",
            "yes",
            "1.0000",
        )
        with pytest.raises(KalshiApiError) as ei:
            await buy(kx.a, T0, "bid", 4000, 100)
        assert ei.value.code == "market_closed"
        assert await balance(kx.a) == bal_a  # determination pays nothing yet

        ex.settle(T0)
        assert await balance(kx.a) == bal_a + 3 * MONEY_SCALE  # exactly $1 × 3 YES
        assert await balance(kx.b) == bal_b  # NO lost
        m = (await kx.a.request("GET", f"/markets/{T0}"))["market"]
        assert m["status"] == "finalized"
        pos = (await kx.a.request("GET", "/portfolio/positions"))["market_positions"]
        assert {p["ticker"]: p["position_fp"] for p in pos} == {T1: "-1.50"}

        [rec] = (await kx.a.request("GET", "/portfolio/settlements"))["settlements"]
        settled = dt.datetime.fromisoformat(rec.pop("settled_time"))
        assert abs(settled.timestamp() - kx.clock() / 1e9) < 5
        assert rec == {
            "ticker": T0,
            "exchange_index": 0,
            "event_ticker": "KXFED-26DEC",
            "market_result": "yes",
            "yes_count_fp": "3.00",
            "yes_total_cost_dollars": money_str(Money(1_200_000)),
            "no_count_fp": "0.00",
            "no_total_cost_dollars": money_str(Money(0)),
            "revenue": 300,
            "fee_cost": money_str(fees_a),
            "value": 100,
        }
        [rec_b] = (await kx.b.request("GET", "/portfolio/settlements"))["settlements"]
        got_b = (rec_b["revenue"], rec_b["no_count_fp"], rec_b["yes_count_fp"])
        assert got_b == (0, "2.00", "0.00")
        assert rec_b["no_total_cost_dollars"] == money_str(Money(1_300_000))

        # A NO holder wins when the result is no; paging and the ticker filter.
        ex.determine(T1, "no")
        ex.settle(T1)
        assert await balance(kx.a) == bal_a + 3 * MONEY_SCALE + MONEY_SCALE * 3 // 2
        p1 = await kx.a.request("GET", "/portfolio/settlements", params={"limit": 1})
        assert [r["ticker"] for r in p1["settlements"]] == [T1] and p1["cursor"]
        assert p1["settlements"][0]["revenue"] == 150
        p2 = await kx.a.request(
            "GET", "/portfolio/settlements", params={"limit": 1, "cursor": p1["cursor"]}
        )
        assert [r["ticker"] for r in p2["settlements"]] == [T0] and p2["cursor"] == ""
        only = await kx.a.request("GET", "/portfolio/settlements", params={"ticker": T1})
        assert [r["ticker"] for r in only["settlements"]] == [T1]
        assert only["cursor"] == ""
    finally:
        await ws.close()
    assert validate_rest(openapi_dict, kx, "/portfolio/settlements") == 5
    assert validate_rest(openapi_dict, kx, "/markets/") >= 2


# ------------------------------------------------------------------- TWS --------------

FX_YES, FX_NO = 730000001, 730000002
FX2_YES, FX2_NO = 730000003, 730000004


async def ib_connect(server: TwsServer, client_id: int = 1) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", server.port, clientId=client_id, timeout=5)
    return ib


def tws_book(server: TwsServer, market: str, yes: int, no: int, n: int = 20) -> None:
    server.set_bids(market, Outcome.YES, [(Price(yes), Qty(n * 100))])
    server.set_bids(market, Outcome.NO, [(Price(no), Qty(n * 100))])


@pytest.fixture
async def tws() -> AsyncIterator[TwsServer]:
    server = TwsServer(clock_ns=Clock(), starting_cash_usd=Money(1_000 * MONEY_SCALE))
    server.add_market(
        "FX-A", symbol="FXA", last_trade_date="20991230", strike="4",
        yes_con_id=FX_YES, no_con_id=FX_NO,
    )  # fmt: skip
    server.add_market(
        "FX-B", symbol="FXB", last_trade_date="20991230", strike="5",
        yes_con_id=FX2_YES, no_con_id=FX2_NO,
    )  # fmt: skip
    tws_book(server, "FX-A", 4500, 5000)
    tws_book(server, "FX-B", 4500, 5000)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def filled(ib: IB, con_id: int, qty: int, limit: float) -> Trade:
    t = ib.placeOrder(
        Contract(conId=con_id, exchange="FORECASTX"), LimitOrder("BUY", qty, limit, tif="IOC")
    )
    await until(lambda: t.isDone())
    assert t.orderStatus.status == "Filled", t.log
    return t


async def test_tws_settle_pays_cash_clears_positions_and_refuses_orders(tws: TwsServer) -> None:
    ib = await ib_connect(tws)
    errors: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
    try:
        await filled(ib, FX_YES, 5, 0.51)  # 5 YES at 0.51 (1.01 − NO bid 0.50)
        await filled(ib, FX_NO, 2, 0.56)  # nets 2 of them: 3 YES left
        await filled(ib, FX2_NO, 4, 0.56)  # 4 NO in the other market
        await until(
            lambda: (
                {p.contract.conId: p.position for p in ib.positions()} == {FX_YES: 3, FX2_NO: 4}
            ),
            what="positions",
        )
        resting = ib.placeOrder(
            Contract(conId=FX_NO, exchange="FORECASTX"), LimitOrder("BUY", 2, 0.30, tif="GTC")
        )
        await until(lambda: resting.orderStatus.status == "Submitted")
        ty = ib.reqMktData(Contract(conId=FX_YES, exchange="FORECASTX"))
        await until(lambda: ty.bid == 0.45, what="quote")
        cash = tws.cash

        tws.settle("FX-A", Outcome.YES)
        assert tws.cash == cash + 3 * MONEY_SCALE  # $1 × 3 held YES, exactly
        assert tws.settled == {"FX-A": Outcome.YES}
        await until(lambda: resting.orderStatus.status == "Cancelled", what="cancel")
        await until(
            lambda: {p.contract.conId: p.position for p in ib.positions()} == {FX2_NO: 4},
            what="position 0",
        )
        await until(lambda: ty.bid == -1 and ty.ask == -1, what="empty quote")
        tws.set_bids("FX-A", Outcome.YES, [(Price(4000), Qty(1000))])  # no more quotes
        await asyncio.sleep(0.05)
        assert ty.bid == -1
        fresh = await ib.reqPositionsAsync()
        assert {p.contract.conId: p.position for p in fresh} == {FX2_NO: 4}
        [cd] = await ib.reqContractDetailsAsync(Contract(conId=FX_YES, exchange="FORECASTX"))
        assert cd.tradingHours == "" and cd.liquidHours == ""
        [other] = await ib.reqContractDetailsAsync(Contract(conId=FX2_YES, exchange="FORECASTX"))
        assert other.tradingHours

        late = ib.placeOrder(
            Contract(conId=FX_NO, exchange="FORECASTX"), LimitOrder("BUY", 1, 0.56, tif="IOC")
        )
        await until(lambda: late.isDone())
        assert late.orderStatus.status == "Cancelled" and late.log[-1].errorCode == 201
        assert (late.order.orderId, 201, CLOSED_TEXT) in errors

        # The losing side pays nothing: 4 NO in FX-B resolve YES.
        cash = tws.cash
        tws.settle("FX-B", Outcome.YES)
        assert tws.cash == cash
        await until(lambda: not ib.positions(), what="no positions")
        with pytest.raises(ValueError):
            tws.settle("FX-B", Outcome.NO)
    finally:
        ib.disconnect()


async def test_tws_refuses_orders_after_last_trade_time() -> None:
    # 2027-01-05 10:00 US/Central is 16:00 UTC (CST, UTC−6)
    last_ns = int(dt.datetime(2027, 1, 5, 16, 0, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
    clock = Clock(last_ns - 2_000_000_000)
    server = TwsServer(clock_ns=clock)
    server.add_market(
        "FX-L", symbol="FXL", last_trade_date="20270105", strike="1",
        yes_con_id=FX_YES, no_con_id=FX_NO, last_trade_time="10:00:00", time_zone_id="US/Central",
    )  # fmt: skip
    tws_book(server, "FX-L", 4500, 5000)
    await server.start()
    ib = await ib_connect(server)
    errors: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
    try:
        await filled(ib, FX_YES, 1, 0.51)  # two seconds before the last trade time
        clock.advance_s(2)
        t = ib.placeOrder(
            Contract(conId=FX_YES, exchange="FORECASTX"), LimitOrder("BUY", 1, 0.51, tif="IOC")
        )
        await until(lambda: t.isDone())
        assert t.orderStatus.status == "Cancelled" and not t.fills
        assert t.log[-1].errorCode == 201
        assert (t.order.orderId, 201, CLOSED_TEXT) in errors
        assert server.orders_received == 2
    finally:
        ib.disconnect()
        await server.stop()
