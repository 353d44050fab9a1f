"""The local exchange speaks Kalshi's published shapes: every REST exchange our client makes
is validated (request and response) with openapi-core against OpenAPI 3.31, and every WS
frame either side sends is validated with jsonschema against the AsyncAPI 2.0.0 payloads.
The spec files are vendored under tests/fixtures/kalshi/spec (see SOURCE.txt there)."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import httpx
import jsonschema
import pytest
from kalshi_helpers import FIXTURES, TICKERS, Venue, eventually
from openapi_core import OpenAPI
from websockets.asyncio.client import connect

from arbkit.execution.venue import OrderRequest, TimeInForce
from arbkit.gateways.kalshi_orders import KalshiOrderClient
from arbkit.gateways.kalshi_rest import KalshiApiError, KalshiRestClient
from arbkit.gateways.kalshi_websocket import KalshiWebSocket
from arbkit.model import Outcome, Price, Qty
from tests.openapi_check import ApiRequest, ApiResponse, load_spec

SPEC_DIR = FIXTURES / "spec"
T0, T1, T2 = TICKERS


@pytest.fixture(scope="module")
def openapi_dict() -> dict[str, Any]:
    return load_spec(SPEC_DIR / "openapi.yaml")


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    return load_spec(SPEC_DIR / "asyncapi.yaml")


async def test_rest_requests_and_responses_match_openapi(
    venue: Venue, openapi_dict: dict[str, Any]
) -> None:
    spec = copy.deepcopy(openapi_dict)
    spec["servers"] = [{"url": venue.exchange.rest_url}]
    api = OpenAPI.from_dict(spec)
    seen: list[httpx.Response] = []

    async def keep(resp: httpx.Response) -> None:
        await resp.aread()
        seen.append(resp)

    rest = KalshiRestClient(
        venue.exchange.rest_url,
        venue.auth,
        read_tokens_per_s=1e6,
        write_tokens_per_s=1e6,
        backoff_base_s=0.001,
        max_retries=2,
        event_hooks={"response": [keep]},
    )
    venue.ladder(T0, Outcome.YES, ("0.40", "10"), ("0.41", "5"))
    venue.ladder(T0, Outcome.NO, ("0.55", "7"), ("0.56", "3.5"))
    oc = KalshiOrderClient(rest, {"fed": T0})
    try:
        await rest.get_balance()
        await rest.get_markets()
        await rest.get_markets(status="open", tickers=[T0, T1])
        await rest.get_market(T0)
        await rest.get_orderbook(T0)
        await rest.get_orderbook(T0, depth=1)
        req = OrderRequest("fed", Outcome.YES, Price(4400), Qty(500), TimeInForce.IOC, "s-1")
        await oc.place_limit(req, 5)  # create 201 + get order
        await oc.place_limit(req, 5)  # 409 → list orders
        await oc.place_limit(
            OrderRequest("fed", Outcome.NO, Price(6000), Qty(300), TimeInForce.FOK, "s-2"), 5
        )
        gtc = await rest.create_order_v2(
            ticker=T0,
            side="bid",
            count=Qty(100),
            price=Price(3000),
            time_in_force="good_till_canceled",
            client_order_id="s-3",
        )
        await rest.cancel_order(gtc.order_id, ticker=T0)
        await rest.get_orders(ticker=T0, status="canceled")
        await oc.fills("s-1")
        await rest.get_fills(ticker=T0)
        await rest.get_positions()
        venue.exchange.set_historical_cutoff(10**10)  # everything terminal is historical
        await rest.get_historical_cutoff()
        await rest.get_orders(historical=True)
        await rest.get_fills(historical=True)
        venue.exchange.set_historical_cutoff(None)
        venue.exchange.fail_next_requests(1, 429)  # 429 is declared for create, not GETs
        await oc.place_limit(
            OrderRequest("fed", Outcome.YES, Price(4500), Qty(100), TimeInForce.IOC, "s-5"), 5
        )
        with pytest.raises(KalshiApiError):  # 400: off-grid price
            await rest.create_order_v2(
                ticker=T0,
                side="bid",
                count=Qty(100),
                price=Price(3005),
                time_in_force="immediate_or_cancel",
                client_order_id="s-4",
            )
        with pytest.raises(KalshiApiError):  # 404
            await rest.get_order("no-such-order")
    finally:
        await rest.aclose()

    statuses = sorted({(r.request.method, r.status_code) for r in seen})
    assert {("POST", 201), ("POST", 409), ("POST", 400), ("POST", 429), ("GET", 404)} <= set(
        statuses
    )
    for r in seen:
        api.validate_request(ApiRequest(r.request))
        api.validate_response(ApiRequest(r.request), ApiResponse(r))

    # An auth failure (wrapped error body) also matches the declared 401 response.
    async with httpx.AsyncClient() as http:
        bad = await http.get(venue.exchange.rest_url + "/portfolio/balance")
    assert bad.status_code == 401
    api.validate_response(ApiRequest(bad.request), ApiResponse(bad))


def _ws_validator(asyncapi: dict[str, Any], name: str) -> jsonschema.protocols.Validator:
    schema = dict(asyncapi["components"]["schemas"][name])
    schema["components"] = asyncapi["components"]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=jsonschema.FormatChecker())


def _schema_for(frame: dict[str, Any]) -> str:
    t = frame.get("type")
    if t == "ok":
        return (
            "listSubscriptionsResponsePayload"
            if isinstance(frame.get("msg"), list)
            else "okResponsePayload"
        )
    return {
        "subscribed": "subscribedResponsePayload",
        "unsubscribed": "unsubscribedResponsePayload",
        "error": "errorResponsePayload",
        "orderbook_snapshot": "orderbookSnapshotPayload",
        "orderbook_delta": "orderbookDeltaPayload",
        "fill": "fillPayload",
        "user_order": "userOrderPayload",
    }[str(t)]


_COMMANDS = {
    "subscribe": "subscribeCommandPayload",
    "unsubscribe": "unsubscribeCommandPayload",
    "list_subscriptions": "listSubscriptionsCommandPayload",
    "update_subscription": "updateSubscriptionCommandPayload",
}


async def test_ws_frames_match_asyncapi(venue: Venue, asyncapi: dict[str, Any]) -> None:
    ex = venue.exchange
    venue.ladder(T0, Outcome.YES, ("0.40", "10"))
    venue.ladder(T0, Outcome.NO, ("0.55", "7"))
    venue.ladder(T1, Outcome.NO, ("0.12", "1.5"))
    frames: list[str] = []

    # 1. Our gateway: subscribe, deltas, a forced gap → get_snapshot, add/remove markets.
    ws = KalshiWebSocket(
        ex.ws_url,
        venue.auth,
        {T0: "a", T1: "b"},
        lambda ticks: None,
        on_raw=lambda text, ns: frames.append(text),
    )
    await ws.start()
    try:
        await eventually(lambda: ws.normalizer.is_valid(T0) and ws.normalizer.is_valid(T1))
        venue.ladder(T0, Outcome.YES, ("0.40", "12"), ("0.39", "1"))
        ex.skip_seq(1)
        venue.ladder(T0, Outcome.NO, ("0.54", "7"))
        await eventually(lambda: ws.normalizer.gaps == 1 and ws.normalizer.is_valid(T0))
        await ws.add_markets({T2: "c"})
        await eventually(lambda: ws.normalizer.is_valid(T2))
        await ws.remove_markets([T1])
        await eventually(lambda: any(json.loads(f).get("type") == "ok" for f in frames[-3:]))
    finally:
        await ws.stop()

    # 2. Raw commands that provoke the other replies (list, unsubscribe, errors).
    async with connect(
        ex.ws_url, additional_headers=venue.auth.headers("GET", "/trade-api/ws/v2")
    ) as raw:
        cmds = [
            {
                "id": 1,
                "cmd": "subscribe",
                "params": {
                    "channels": ["orderbook_delta"],
                    "market_ticker": T0,
                    "use_yes_price": True,
                },
            },
            {"id": 2, "cmd": "list_subscriptions"},
            {
                "id": 3,
                "cmd": "update_subscription",
                "params": {"sids": [1], "market_tickers": [T0], "action": "get_snapshot"},
            },
            {"id": 4, "cmd": "unsubscribe", "params": {"sids": [1]}},
            {"id": 5, "cmd": "unsubscribe", "params": {"sids": [42]}},
            {"id": 6, "cmd": "subscribe", "params": {"channels": ["nope"]}},
            {"id": 7, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}},
            {"id": 8, "cmd": "frobnicate", "params": {}},
            {
                "id": 9,
                "cmd": "update_subscription",
                "params": {"sid": 1, "sids": [1], "action": "add_markets"},
            },
        ]
        for c in cmds:
            await raw.send(json.dumps(c))
        await raw.send("{not json")
        got: list[str] = []
        while len(got) < 11:
            got.append(str(await asyncio.wait_for(raw.recv(), 5)))
        frames.extend(got)

    kinds = {(json.loads(f)["type"]) for f in frames}
    assert kinds == {
        "subscribed",
        "orderbook_snapshot",
        "orderbook_delta",
        "ok",
        "unsubscribed",
        "error",
    }
    for f in frames:
        obj = json.loads(f)
        _ws_validator(asyncapi, _schema_for(obj)).validate(obj)
    codes = sorted(json.loads(f)["msg"]["code"] for f in frames if '"error"' in f)
    assert codes == [1, 5, 7, 8, 12, 14]
    # Snapshot replies to get_snapshot carry the command id.
    assert any(json.loads(f).get("id") == 3 for f in got if "orderbook_snapshot" in f)

    # 3. Every command our gateway sent is a valid AsyncAPI command.
    gateway_cmds = ex.ws_commands[: len(ex.ws_commands) - len(cmds)]
    assert {c["cmd"] for c in gateway_cmds} == {"subscribe", "update_subscription"}
    for c in gateway_cmds:
        _ws_validator(asyncapi, _COMMANDS[c["cmd"]]).validate(c)
    assert all(
        c["params"]["use_yes_price"] is False for c in gateway_cmds if c["cmd"] == "subscribe"
    )


def test_samples_match_asyncapi_where_current(asyncapi: dict[str, Any]) -> None:
    """Sanity check of the validator itself on Kalshi's current-shape samples."""
    samples = FIXTURES / "samples"
    for name in (
        "ws_orderbook_delta_current.json",
        "ws_subscribed.json",
        "ws_ok_update_subscription.json",
        "ws_unsubscribed.json",
        "ws_list_subscriptions_response.json",
        "ws_error_code7_unknown_subscription.json",
    ):
        obj = json.loads((samples / name).read_text())
        schema = _schema_for(obj)
        if schema == "orderbookDeltaPayload":
            obj["msg"]["market_ticker"] = "FED-23DEC-T300"  # the spec's own pattern rejects "."
        _ws_validator(asyncapi, schema).validate(obj)


async def test_private_channel_frames_match_asyncapi(
    venue: Venue, rest: KalshiRestClient, asyncapi: dict[str, Any]
) -> None:
    """``fill`` / ``user_order`` frames and our own ``orderbook_delta`` (with
    ``client_order_id``) are valid AsyncAPI payloads, and the subscribe command is too."""
    venue.ladder(T0, Outcome.YES, ("0.40", "10"))
    venue.ladder(T0, Outcome.NO, ("0.55", "7"), ("0.56", "3.5"))
    sub = {
        "id": 1,
        "cmd": "subscribe",
        "params": {"channels": ["fill", "user_orders", "orderbook_delta"], "market_ticker": T0},
    }
    _ws_validator(asyncapi, "subscribeCommandPayload").validate(sub)
    async with connect(
        venue.exchange.ws_url, additional_headers=venue.auth.headers("GET", "/trade-api/ws/v2")
    ) as raw:
        await raw.send(json.dumps(sub))
        oc = KalshiOrderClient(rest, {"fed": T0})
        venue.exchange.duplicate_next_fill_frames(1)
        await oc.place_limit(
            OrderRequest("fed", Outcome.YES, Price(4500), Qty(500), TimeInForce.IOC, "own-1"), 5
        )
        gtc = await rest.create_order_v2(
            ticker=T0,
            side="ask",
            count=Qty(100),
            price=Price(4700),
            time_in_force="good_till_canceled",
            client_order_id="own-2",
        )
        await rest.cancel_order(gtc.order_id, ticker=T0)
        frames: list[dict[str, Any]] = []
        with pytest.raises(TimeoutError):
            while True:
                frames.append(json.loads(await asyncio.wait_for(raw.recv(), 0.3)))
    kinds = [f["type"] for f in frames]
    assert kinds.count("fill") == 3  # two trades + one duplicate frame
    assert kinds.count("user_order") == 3  # IOC executed, GTC resting, GTC canceled
    own = [f for f in frames if f["type"] == "orderbook_delta"]
    assert {f["msg"].get("client_order_id") for f in own} == {"own-1", "own-2"}
    for f in frames:
        _ws_validator(asyncapi, _schema_for(f)).validate(f)
    fills = [f["msg"] for f in frames if f["type"] == "fill"]
    assert all(m["client_order_id"] == "own-1" for m in fills)
    unique = list({m["trade_id"]: m for m in fills}.values())
    assert [m["post_position_fp"] for m in unique] == ["3.50", "5.00"]
    statuses = [f["msg"]["status"] for f in frames if f["type"] == "user_order"]
    assert statuses == ["executed", "resting", "canceled"]
