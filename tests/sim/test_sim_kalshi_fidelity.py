"""The local Kalshi exchange behaves as Kalshi's published specs declare: public operations
answer unsigned requests, documented query parameters are applied or refused (never
ignored), status codes are the spec's, errors are JSON ``ErrorResponse`` bodies, and the
WebSocket answers binary frames, market ids, ``skip_ticker_ack`` and its limits (26, 27, 18)
with the AsyncAPI error frames. Driven over loopback sockets with the real signing code."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_core import OpenAPI
from websockets.asyncio.client import ClientConnection, connect

from arbkit.gateways.kalshi_auth import KalshiAuth, generate_key_pair
from arbkit.model import MONEY_SCALE, Money, Outcome, Price, Qty
from arbkit.sim.kalshi_exchange import KalshiExchange
from arbkit.sim.kalshi_params import OPERATIONS
from tests.openapi_check import ApiRequest, ApiResponse, load_spec

SPEC_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi" / "spec"
PREFIX = "/trade-api/v2"
WS = "/trade-api/ws/v2"
A = "KXFID-26DEC-T50"  # event KXFID-26DEC
B = "KXFID-26DEC-T60"
C = "KXOTHER-26NOV-T10"
MARKETS = (A, B, C)


@pytest.fixture(scope="module")
def openapi_dict() -> dict[str, Any]:
    return load_spec(SPEC_DIR / "openapi.yaml")


@pytest.fixture(scope="module")
def asyncapi_dict() -> dict[str, Any]:
    return load_spec(SPEC_DIR / "asyncapi.yaml")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str]]:
    out = []
    for name in ("a", "b"):
        path = tmp_path_factory.mktemp("keys") / f"{name}.pem"
        _, public_pem = generate_key_pair(path, key_type="ed25519")
        out.append((path, public_pem))
    return out


@dataclass
class Rig:
    ex: KalshiExchange
    auth: KalshiAuth
    other: KalshiAuth  # a second user
    http: httpx.AsyncClient
    seen: list[httpx.Response]

    async def get(
        self, path: str, params: dict[str, Any] | None = None, *, auth: KalshiAuth | None = None
    ) -> httpx.Response:
        return await self.call("GET", path, params, auth=auth)

    async def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        auth: KalshiAuth | None = None,
        body: dict[str, Any] | None = None,
        signed: bool = True,
    ) -> httpx.Response:
        headers = (auth or self.auth).headers(method, PREFIX + path) if signed else {}
        return await self.http.request(
            method, PREFIX + path, params=params, headers=headers, json=body
        )

    async def order(
        self,
        ticker: str,
        price: str,
        count: str = "1",
        *,
        auth: KalshiAuth | None = None,
        **kw: Any,
    ) -> httpx.Response:
        body = {
            "ticker": ticker,
            "side": "bid",
            "count": count,
            "price": price,
            "time_in_force": "good_till_canceled",
            "self_trade_prevention_type": "taker_at_cross",
            "client_order_id": f"ak-{uuid.uuid4().hex[:8]}-l1-0",
            **kw,
        }
        return await self.call("POST", "/portfolio/events/orders", auth=auth, body=body)


@pytest.fixture
async def rig(keys: list[tuple[Path, str]]) -> AsyncIterator[Rig]:
    ex = KalshiExchange(heartbeat_s=1.0, ws_market_limit=3, ws_max_commands=4)
    auths = []
    for path, pem in keys:
        key_id = str(uuid.uuid4())
        ex.register_key(key_id, pem)
        ex.fund(key_id, Money(1_000 * MONEY_SCALE))
        auths.append(KalshiAuth.from_key_file(key_id, path))
    ex.add_market(A, close_time=2_000_000_000)
    ex.add_market(B, close_time=2_100_000_000)
    ex.add_market(C, close_time=1_900_000_000)
    for t in MARKETS:
        ex.set_bids(t, Outcome.NO, [(Price(6000), Qty(100_000))])  # YES offered at 0.40
    await ex.start()
    seen: list[httpx.Response] = []

    async def keep(resp: httpx.Response) -> None:
        await resp.aread()
        seen.append(resp)

    http = httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{ex.port}", event_hooks={"response": [keep]}
    )
    try:
        yield Rig(ex, auths[0], auths[1], http, seen)
    finally:
        await http.aclose()
        await ex.stop()


def _error_schema(doc: dict[str, Any]) -> jsonschema.protocols.Validator:
    schema = dict(doc["components"]["schemas"]["ErrorResponse"])
    schema["components"] = doc["components"]
    schema["required"] = ["code", "message"]
    return jsonschema.Draft7Validator(schema)


def validate_ok(openapi_dict: dict[str, Any], rig: Rig) -> int:
    """Every captured 2xx response matches the OpenAPI (request and response)."""
    spec = copy.deepcopy(openapi_dict)
    spec["servers"] = [{"url": rig.ex.rest_url}]
    api = OpenAPI.from_dict(spec)
    n = 0
    for r in rig.seen:
        if r.status_code < 300:
            api.validate_response(ApiRequest(r.request), ApiResponse(r))
            n += 1
    return n


def _spec_params(doc: dict[str, Any], op: dict[str, Any]) -> set[str]:
    out = set()
    for p in op.get("parameters", []):
        if "$ref" in p:
            p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
        if p["in"] == "query":
            out.add(p["name"])
    return out


# ------------------------------------------------------------- operation table ----


def test_operation_table_matches_the_spec(openapi_dict: dict[str, Any]) -> None:
    """Public exactly where the spec has no ``security``; every documented query parameter
    of an implemented operation is handled (the handlers refuse what they cannot do)."""
    checked = 0
    for (method, path), op in OPERATIONS.items():
        spec_op = openapi_dict["paths"][path][method.lower()]
        assert op.public == (not spec_op.get("security")), (method, path)
        assert op.params == _spec_params(openapi_dict, spec_op), (method, path)
        checked += 1
    assert checked == len(OPERATIONS) >= 19


async def test_public_operations_answer_unsigned_and_private_ones_do_not(
    rig: Rig, openapi_dict: dict[str, Any]
) -> None:
    public = [
        "/exchange/status",
        "/markets",
        f"/markets/{A}",
        f"/markets/{A}/orderbook",
        "/markets/trades",
        "/series/fee_changes",
        "/series/KXFID",
        "/events/KXFID-26DEC",
        "/historical/cutoff",
    ]
    for path in public:
        r = await rig.call("GET", path, signed=False)
        assert r.status_code == 200, (path, r.text)
    private = ["/portfolio/orders", "/portfolio/balance", "/portfolio/fills", "/historical/fills"]
    for path in private:
        r = await rig.call("GET", path, signed=False)
        assert r.status_code == 401, path
    # A public read with a bad signature is still refused.
    bad = rig.auth.headers("GET", PREFIX + "/somewhere/else")
    assert (await rig.http.get(PREFIX + "/markets", headers=bad)).status_code == 401
    assert validate_ok(openapi_dict, rig) == len(public)


# ------------------------------------------------------------------ status codes ----


async def test_status_codes_and_json_errors_as_the_spec_lists(
    rig: Rig, openapi_dict: dict[str, Any]
) -> None:
    err = _error_schema(openapi_dict)
    # CreateOrderV2 lists no 404: an unknown ticker is a 400.
    r = await rig.order("KXNOPE-1", "0.30")
    assert r.status_code == 400 and r.json()["code"] == "market_not_found"
    err.validate(r.json())
    # CancelOrderV2 lists 200/401/404/500: a canceled (not resting) order is a 404.
    made = await rig.order(A, "0.30")
    oid = made.json()["order_id"]
    assert (await rig.call("DELETE", f"/portfolio/events/orders/{oid}")).status_code == 200
    r = await rig.call("DELETE", f"/portfolio/events/orders/{oid}")
    assert r.status_code == 404
    err.validate(r.json())
    # Another user's order, another subaccount, another market: 404 too.
    oid = (await rig.order(A, "0.31")).json()["order_id"]
    path = f"/portfolio/events/orders/{oid}"
    assert (await rig.call("DELETE", path, auth=rig.other)).status_code == 404
    assert (await rig.call("DELETE", path, {"subaccount": 2})).status_code == 404
    assert (await rig.call("DELETE", path, {"market_ticker": B})).status_code == 404
    assert (await rig.call("DELETE", path, {"exchange_index": -1})).status_code == 400
    r = await rig.call("DELETE", path, {"exchange_index": -1, "market_ticker": A})
    assert r.status_code == 200
    # MarketLimitQuery is minimum 0 ("omitempty"): 0 = the default page; LimitQuery min 1.
    r = await rig.get("/markets", {"limit": 0})
    assert r.status_code == 200 and len(r.json()["markets"]) == 3
    assert (await rig.get("/markets", {"limit": -1})).status_code == 400
    assert (await rig.get("/markets", {"limit": 1001})).status_code == 400
    assert (await rig.get("/portfolio/orders", {"limit": 0})).status_code == 400
    # Orderbook depth 0..100.
    assert (await rig.get(f"/markets/{A}/orderbook", {"depth": 100})).status_code == 200
    for depth in (-1, 101, "x"):
        r = await rig.get(f"/markets/{A}/orderbook", {"depth": depth})
        assert r.status_code == 400, depth
        err.validate(r.json())
    # Unknown path: 404; wrong method on a known path: 405 — both JSON ErrorResponse.
    r = await rig.get("/no/such/thing")
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("application/json")
    err.validate(r.json())
    r = await rig.call("PUT", "/markets")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    err.validate(r.json())
    assert "GET" in r.headers["Allow"]
    validate_ok(openapi_dict, rig)


# ------------------------------------------------------------------ query filters ----


async def test_market_filters_applied_or_refused(rig: Rig, openapi_dict: dict[str, Any]) -> None:
    async def tickers(**params: Any) -> list[str]:
        r = await rig.get("/markets", params)
        assert r.status_code == 200, r.text
        return sorted(m["ticker"] for m in r.json()["markets"])

    assert await tickers(min_close_ts=1_950_000_000) == [A, B]
    assert await tickers(max_close_ts=2_050_000_000) == [A, C]
    assert await tickers(min_close_ts=1_950_000_000, status="closed") == []
    assert await tickers(event_ticker="KXFID-26DEC") == [A, B]
    assert await tickers(series_ticker="KXOTHER") == [C]
    assert await tickers(tickers=f"{A},{C}") == [A, C]
    assert await tickers(mve_filter="only") == []
    assert await tickers(mve_filter="exclude") == [A, B, C]
    assert await tickers(min_settled_ts=0) == []  # nothing settled yet
    rig.ex.determine(C, "yes")
    rig.ex.settle(C)
    assert await tickers(min_settled_ts=0, status="settled") == [C]
    assert await tickers(min_created_ts=0, status="open") == [A, B]
    assert await tickers(min_updated_ts=0, mve_filter="exclude") == [A, B, C]
    refused = [
        {"min_close_ts": 1, "min_created_ts": 1},  # two timestamp groups
        {"min_close_ts": 1, "status": "open"},  # close window only with closed / empty
        {"min_created_ts": 1, "status": "closed"},
        {"min_settled_ts": 1, "status": "open"},
        {"min_updated_ts": 1, "status": "open"},
        {"min_updated_ts": 1, "tickers": A},
        {"min_updated_ts": 1, "series_ticker": "KXFID"},  # needs mve_filter=exclude
        {"status": "sleepy"},
        {"mve_filter": "maybe"},
        {"min_close_ts": "soon"},
        {"event_ticker": "E1,E2"},  # a single event ticker
    ]
    for params in refused:
        r = await rig.get("/markets", params)
        assert r.status_code == 400, params
    validate_ok(openapi_dict, rig)


async def test_portfolio_filters_applied_or_refused(rig: Rig, openapi_dict: dict[str, Any]) -> None:
    resting = (await rig.order(A, "0.30")).json()["order_id"]
    taken = (await rig.order(B, "0.40", subaccount=3)).json()["order_id"]  # fills at once

    async def ids(path: str, key: str, field: str = "order_id", **params: Any) -> set[str]:
        r = await rig.get(path, params)
        assert r.status_code == 200, (path, params, r.text)
        return {row[field] for row in r.json()[key]}

    assert await ids("/portfolio/orders", "orders", event_ticker="KXFID-26DEC") == {
        resting,
        taken,
    }
    assert await ids("/portfolio/orders", "orders", event_ticker="KXOTHER-26NOV") == set()
    assert await ids("/portfolio/orders", "orders", status="resting") == {resting}
    assert await ids("/portfolio/orders", "orders", subaccount=3) == {taken}
    assert await ids("/portfolio/orders", "orders", min_ts=4_000_000_000) == set()
    assert await ids("/portfolio/orders", "orders", max_ts=4_000_000_000) == {resting, taken}
    assert await ids("/portfolio/orders", "orders", exchange_index=1) == set()
    assert await ids("/portfolio/fills", "fills", order_id=taken) == {taken}
    assert await ids("/portfolio/fills", "fills", order_id=resting) == set()
    assert await ids("/portfolio/fills", "fills", min_ts=4_000_000_000) == set()
    assert await ids("/portfolio/fills", "fills", subaccount=3) == {taken}
    assert await ids("/portfolio/fills", "fills", subaccount=0) == set()
    # A position netted back to zero: traded, but no contracts held.
    await rig.order(C, "0.40")  # buy 1 YES against the NO bids
    rig.ex.set_bids(C, Outcome.YES, [(Price(3500), Qty(100_000))])
    assert (await rig.order(C, "0.35", side="ask")).status_code == 201  # buy 1 NO
    pos = "/portfolio/positions"
    assert await ids(pos, "market_positions", "ticker", count_filter="total_traded") == {B, C}
    assert await ids(pos, "market_positions", "ticker", count_filter="position") == {B}
    assert await ids(pos, "market_positions", "ticker", event_ticker="KXOTHER-26NOV") == {C}
    assert await ids(pos, "market_positions", "ticker", ticker=B) == {B}
    assert await ids("/markets/trades", "trades", "ticker") == {B, C}
    assert await ids("/markets/trades", "trades", "ticker", ticker=C) == {C}
    assert await ids("/markets/trades", "trades", "ticker", is_block_trade="true") == set()
    bal = await rig.get("/portfolio/balance", {"exchange_index": 0})
    assert bal.status_code == 200
    assert (await rig.get("/portfolio/balance", {"exchange_index": 5})).json()["balance"] == 0
    refused = [
        ("/portfolio/orders", {"status": "sleeping"}),
        ("/portfolio/orders", {"event_ticker": ",".join(f"E{i}" for i in range(11))}),
        ("/portfolio/orders", {"min_ts": 5, "max_ts": 4}),
        ("/portfolio/orders", {"subaccount": 64}),
        ("/portfolio/orders", {"exchange_index": -1}),
        ("/portfolio/fills", {"min_ts": "yesterday"}),
        ("/portfolio/positions", {"count_filter": "volume"}),
        ("/portfolio/positions", {"subaccount": 3}),  # one pooled position set
        ("/portfolio/balance", {"subaccount": 3}),
        ("/portfolio/settlements", {"subaccount": 1}),
        ("/portfolio/orders", {"cursor": "not-a-cursor"}),
        ("/series/fee_changes", {"show_historical": "perhaps"}),
    ]
    for path, params in refused:
        r = await rig.get(path, params)
        assert r.status_code == 400, (path, params, r.text)
    assert validate_ok(openapi_dict, rig) >= 18


# --------------------------------------------------------------------- WebSocket ----


async def _ws(rig: Rig, auth: KalshiAuth | None = None) -> ClientConnection:
    return await connect(
        rig.ex.ws_url, additional_headers=(auth or rig.auth).headers("GET", WS), compression=None
    )


async def _recv(ws: ClientConnection, pred: Any = None, timeout_s: float = 3.0) -> dict[str, Any]:
    while True:
        obj: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
        if pred is None or pred(obj):
            return obj


def _ws_messages(doc: dict[str, Any]) -> dict[int, str]:
    """code → message from the AsyncAPI "Error Codes Reference" table."""
    out = {}
    for line in doc["info"]["description"].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            out[int(cells[0])] = cells[1]
    return out


async def test_binary_frame_gets_error_1(rig: Rig, asyncapi_dict: dict[str, Any]) -> None:
    async with await _ws(rig) as ws:
        await ws.send(b"\x01\x02binary")
        got = await _recv(ws)
        assert got == {"type": "error", "msg": {"code": 1, "msg": _ws_messages(asyncapi_dict)[1]}}
        # The session is still usable.
        await ws.send(json.dumps({"id": 2, "cmd": "list_subscriptions"}))
        assert (await _recv(ws))["type"] == "ok"


async def test_own_orderbook_delta_carries_client_order_id_only_for_the_owner(rig: Rig) -> None:
    sub = {"id": 1, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}
    sub["params"]["market_ticker"] = A  # type: ignore[index]
    async with await _ws(rig) as mine, await _ws(rig, rig.other) as theirs:
        for ws in (mine, theirs):
            await ws.send(json.dumps(sub))
            await _recv(ws, lambda o: o["type"] == "orderbook_snapshot")
        r = await rig.order(A, "0.30", subaccount=2)
        coid = r.json()["client_order_id"]
        own = await _recv(mine, lambda o: o["type"] == "orderbook_delta")
        other = await _recv(theirs, lambda o: o["type"] == "orderbook_delta")
        assert own["msg"]["client_order_id"] == coid and own["msg"]["subaccount"] == 2
        assert "client_order_id" not in other["msg"] and "subaccount" not in other["msg"]
        # A change nobody's order caused carries neither.
        rig.ex.set_bids(A, Outcome.YES, [(Price(2000), Qty(100))])
        drv = await _recv(mine, lambda o: o["type"] == "orderbook_delta")
        assert "client_order_id" not in drv["msg"]


async def test_market_ids_and_skip_ticker_ack(rig: Rig) -> None:
    rig.ex.ws_max_commands = None  # this test is about the parameters, not the rate
    ids = {t: rig.ex.engine.markets[t].market_id for t in MARKETS}
    assert all(str(uuid.UUID(i)) == i for i in ids.values())
    again = KalshiExchange()
    again.add_market(A)
    assert again.engine.markets[A].market_id == ids[A]  # stable across venues/runs
    async with await _ws(rig) as ws:
        cmd = {"channels": ["ticker"], "market_ids": [ids[A]], "skip_ticker_ack": True}
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": cmd}))
        sid = (await _recv(ws))["msg"]["sid"]
        await ws.send(
            json.dumps(
                {
                    "id": 2,
                    "cmd": "update_subscription",
                    "params": {"sid": sid, "action": "add_markets", "market_id": ids[B]},
                }
            )
        )
        ok = await _recv(ws)
        assert ok["type"] == "ok" and ok["sid"] == sid and "msg" not in ok
        conn = rig.ex._conns[0]
        assert conn.subs[sid].tickers == [A, B]
        # Without skip_ticker_ack the ok lists the markets, by ticker and by id.
        cmd = {"channels": ["ticker"], "market_ids": [ids[C]]}
        await ws.send(json.dumps({"id": 3, "cmd": "subscribe", "params": cmd}))
        sid2 = (await _recv(ws))["msg"]["sid"]
        upd = {"sid": sid2, "action": "add_markets", "market_ids": [ids[A]]}
        await ws.send(json.dumps({"id": 4, "cmd": "update_subscription", "params": upd}))
        ok = await _recv(ws)
        assert ok["msg"] == {"market_tickers": [C, A], "market_ids": [ids[C], ids[A]]}
        # market_id(s): "ticker only"; unknown ids and mixed keys are invalid parameters.
        for params in (
            {"channels": ["orderbook_delta"], "market_ids": [ids[A]]},
            {"channels": ["ticker"], "market_ids": [str(uuid.uuid4())]},
            {"channels": ["ticker"], "market_id": ids[A], "market_ticker": A},
        ):
            await ws.send(json.dumps({"id": 5, "cmd": "subscribe", "params": params}))
            got = await _recv(ws)
            assert got["type"] == "error" and got["msg"]["code"] == 11, params


async def test_ws_limits_answer_26_27_18(rig: Rig, asyncapi_dict: dict[str, Any]) -> None:
    text = _ws_messages(asyncapi_dict)
    async with await _ws(rig) as ws:
        # 26: more markets in one command than ws_market_limit (3); nothing is added.
        rig.ex.add_market("KXFID-26DEC-T70")
        four = {"channels": ["orderbook_delta"], "market_tickers": [A, B, C, "KXFID-26DEC-T70"]}
        await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": four}))
        got = await _recv(ws)
        assert got == {"id": 1, "type": "error", "msg": {"code": 26, "msg": text[26]}}
        assert rig.ex._conns[0].subs == {}
        # 18: the command timed out; nothing applied.
        rig.ex.time_out_next_commands(1)
        three = {"channels": ["orderbook_delta"], "market_tickers": [A, B, C]}
        await ws.send(json.dumps({"id": 2, "cmd": "subscribe", "params": three}))
        got = await _recv(ws)
        assert got == {"id": 2, "type": "error", "msg": {"code": 18, "msg": text[18]}}
        # 27: the 5th command inside the window (ws_max_commands=4).
        await ws.send(json.dumps({"id": 3, "cmd": "list_subscriptions"}))
        await _recv(ws)
        await ws.send(json.dumps({"id": 4, "cmd": "list_subscriptions"}))
        await _recv(ws)
        await ws.send(json.dumps({"id": 5, "cmd": "list_subscriptions"}))
        got = await _recv(ws)
        assert got == {"id": 5, "type": "error", "msg": {"code": 27, "msg": text[27]}}
        await asyncio.sleep(rig.ex.ws_command_window_s + 0.05)
        await ws.send(json.dumps({"id": 6, "cmd": "subscribe", "params": three}))
        assert (await _recv(ws))["type"] == "subscribed"
