"""The local Kalshi exchange serves per-series fee schedules and charges by them:
``GET /series/{t}``, ``GET /series/fee_changes`` (scheduled changes take effect by the
venue clock), event-level overrides (``GET /events/{t}`` and ``event_fee_update`` frames on
``market_lifecycle_v2``) and fee types outside the spec's enum. Driven through the real
clients (KalshiRestClient over httpx, websockets) and checked against Kalshi's published
OpenAPI / AsyncAPI documents."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_core import OpenAPI
from websockets.asyncio.client import ClientConnection, connect

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.config.execution_loader import FeeParams
from arbkit.gateways.kalshi_auth import KalshiAuth, generate_key_pair
from arbkit.gateways.kalshi_rest import KalshiRestClient
from arbkit.model import MONEY_SCALE, Money, Outcome, Price, Qty, parse_money
from arbkit.sim.kalshi_exchange import KalshiExchange
from tests.openapi_check import ApiRequest, ApiResponse, load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT / "fixtures" / "kalshi" / "spec"
SAMPLES = ROOT / "fixtures" / "kalshi" / "samples"
WS = "/trade-api/ws/v2"
FEE_T = "KXFEE-26DEC-T50"  # series KXFEE, event KXFEE-26DEC
FEE_T2 = "KXFEE-26DEC-T60"  # same event
FEE_NOV = "KXFEE-26NOV-T50"  # same series, another event
PLAIN_T = "KXPLAIN-26DEC-T50"  # no explicit fee schedule: arbkit's FeeModel
PERP_T = "KXPERP-26DEC-T50"
MARKETS = (FEE_T, FEE_T2, FEE_NOV, PLAIN_T, PERP_T)


class Clock:
    """Wall time plus a test-controlled offset (the venue's ``clock_ns``)."""

    def __init__(self) -> None:
        self.offset_ns = 0

    def __call__(self) -> int:
        return time.time_ns() + self.offset_ns

    def advance_s(self, s: float) -> None:
        self.offset_ns += int(s * 1e9)

    def now_s(self) -> int:
        return self() // 1_000_000_000


@dataclass
class Rig:
    ex: KalshiExchange
    clock: Clock
    auth: KalshiAuth
    rest: KalshiRestClient
    anon: httpx.AsyncClient  # no auth headers at all
    seen: list[httpx.Response]


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("keys") / "fees.pem"
    _, public_pem = generate_key_pair(path, key_type="ed25519")
    return path, public_pem


@pytest.fixture(scope="module")
def openapi_dict() -> dict[str, Any]:
    return load_spec(SPEC_DIR / "openapi.yaml")


@pytest.fixture(scope="module")
def asyncapi_dict() -> dict[str, Any]:
    return load_spec(SPEC_DIR / "asyncapi.yaml")


def _validator(doc: dict[str, Any], name: str) -> jsonschema.protocols.Validator:
    schema = dict(doc["components"]["schemas"][name])
    schema["components"] = doc["components"]
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema, format_checker=jsonschema.FormatChecker())


@pytest.fixture
async def rig(key: tuple[Path, str]) -> AsyncIterator[Rig]:
    clock = Clock()
    # The clock is moved by hours; requests are signed with wall time.
    ex = KalshiExchange(max_clock_skew_ms=30 * 86_400_000, heartbeat_s=1.0, clock_ns=clock)
    key_id = str(uuid.uuid4())
    ex.register_key(key_id, key[1])
    ex.fund(key_id, Money(1_000 * MONEY_SCALE))
    for t in MARKETS:
        ex.add_market(t)
        ex.set_bids(t, Outcome.NO, [(Price(6000), Qty(1_000_000))])  # YES offered at 0.40
    await ex.start()
    seen: list[httpx.Response] = []

    async def keep(resp: httpx.Response) -> None:
        await resp.aread()
        seen.append(resp)

    auth = KalshiAuth.from_key_file(key_id, key[0])
    rest = KalshiRestClient(
        ex.rest_url,
        auth,
        read_tokens_per_s=1_000,
        write_tokens_per_s=1_000,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        event_hooks={"response": [keep]},
    )
    anon = httpx.AsyncClient(base_url=ex.rest_url, event_hooks={"response": [keep]})
    try:
        yield Rig(ex, clock, auth, rest, anon, seen)
    finally:
        await rest.aclose()
        await anon.aclose()
        await ex.stop()


def validate_rest(openapi_dict: dict[str, Any], rig: Rig, path_part: str) -> int:
    """Every captured 2xx response on a path containing ``path_part`` matches the OpenAPI."""
    spec = copy.deepcopy(openapi_dict)
    spec["servers"] = [{"url": rig.ex.rest_url}]
    api = OpenAPI.from_dict(spec)
    n = 0
    for r in rig.seen:
        if path_part in r.request.url.path and r.status_code < 300:
            api.validate_request(ApiRequest(r.request))
            api.validate_response(ApiRequest(r.request), ApiResponse(r))
            n += 1
    return n


def kalshi_fee(multiplier: str, contracts: int, price: str) -> Money:
    """The published formula, independently: ceil to the cent of 0.07·M·C·P·(1−P)."""
    p = Decimal(price)
    raw = Decimal("0.07") * Decimal(multiplier) * contracts * p * (1 - p)
    cents = (raw * 100).to_integral_value(rounding=ROUND_CEILING)
    return Money(int(cents) * MONEY_SCALE // 100)


async def take(rig: Rig, ticker: str, contracts: int) -> tuple[Money, Money]:
    """Buy ``contracts`` YES at 0.40 (IOC, taker); (fill fee_cost sum, balance change)."""
    before = await balance(rig)
    r = await rig.rest.create_order_v2(
        ticker=ticker,
        side="bid",
        count=Qty(contracts * 100),
        price=Price(4000),
        time_in_force="immediate_or_cancel",
        client_order_id=str(uuid.uuid4()),
    )
    assert r.fill_count == contracts * 100
    fills = (await rig.rest.request("GET", "/portfolio/fills", params={"order_id": r.order_id}))[
        "fills"
    ]
    assert fills and all(f["is_taker"] for f in fills)
    fee = Money(sum(parse_money(f["fee_cost"]) for f in fills))
    order = (await rig.rest.request("GET", f"/portfolio/orders/{r.order_id}"))["order"]
    assert parse_money(order["taker_fees_dollars"]) == fee
    return fee, Money(before - await balance(rig))


async def balance(rig: Rig) -> Money:
    d = await rig.rest.request("GET", "/portfolio/balance")
    return parse_money(d["balance_dollars"])


def cost(contracts: int) -> Money:
    return Money(contracts * 400_000)  # $0.40 each


async def recv(ws: ClientConnection, timeout_s: float = 5.0) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout_s))
    return obj


async def nothing_more(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.2)


async def ws_sub(rig: Rig, **params: Any) -> ClientConnection:
    ws = await connect(rig.ex.ws_url, additional_headers=rig.auth.headers("GET", WS))
    await ws.send(json.dumps({"id": 1, "cmd": "subscribe", "params": params}))
    ack = await recv(ws)
    assert ack["type"] == "subscribed", ack
    return ws


def _iso(s: int) -> str:
    return dt.datetime.fromtimestamp(s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------ tests -------


async def test_series_endpoint_shape_public_and_404(rig: Rig, openapi_dict: dict[str, Any]) -> None:
    required = openapi_dict["components"]["schemas"]["Series"]["required"]
    assert "categories" in required and "fee_multiplier" in required

    plain = (await rig.rest.request("GET", "/series/KXPLAIN"))["series"]  # signed
    assert set(required) <= set(plain)
    assert plain["ticker"] == "KXPLAIN" and plain["frequency"] == "monthly"
    assert (plain["fee_type"], plain["fee_multiplier"]) == ("quadratic", 1)
    assert type(plain["fee_multiplier"]) is int  # a JSON number, not a string
    assert plain["volume_fp"] == "0.00" and plain["product_metadata"] == {}

    rig.ex.set_series_fee("KXFEE", "quadratic_with_maker_fees", Decimal("0.5"))
    r = await rig.anon.get("/series/KXFEE")  # unsigned: public
    assert r.status_code == 200
    got = r.json()["series"]
    assert (got["fee_type"], got["fee_multiplier"]) == ("quadratic_with_maker_fees", 0.5)
    assert set(required) <= set(got)

    # Series known only through a market's ticker prefix, and include_volume.
    await take(rig, PLAIN_T, 2)
    vol = await rig.rest.request("GET", "/series/KXPLAIN", params={"include_volume": "true"})
    assert vol["series"]["volume_fp"] == "2.00"
    assert validate_rest(openapi_dict, rig, "/series/") == 3

    # Unknown series: 404 with Kalshi's error body (spec ErrorResponse).
    r = await rig.anon.get("/series/KXNOPE")
    assert r.status_code == 404
    _validator(openapi_dict, "ErrorResponse").validate(r.json())
    assert r.json()["code"] == "not_found"
    # Public reads accept signed requests, but a bad signature is still refused; the
    # private endpoints keep requiring a signature (market data is public, as the spec says).
    bad = rig.auth.headers("GET", "/trade-api/v2/series/OTHER")
    assert (await rig.anon.get("/series/KXFEE", headers=bad)).status_code == 401
    assert (await rig.anon.get("/markets")).status_code == 200
    assert (await rig.anon.get("/portfolio/balance")).status_code == 401


async def test_scheduled_fee_change_listed_then_applied(
    rig: Rig, openapi_dict: dict[str, Any]
) -> None:
    ex = rig.ex
    ex.set_series_fee("KXFEE", "quadratic", 1)
    at_s = rig.clock.now_s() + 3_600
    cid = ex.schedule_fee_change("KXFEE", "quadratic", 0.35, at_s)  # a float, taken exactly
    other = ex.schedule_fee_change("KXPLAIN", "quadratic_with_maker_fees", 2, at_s + 60)

    listed = await rig.rest.request("GET", "/series/fee_changes", params={"series_ticker": "KXFEE"})
    assert listed == {
        "series_fee_change_arr": [
            {
                "id": cid,
                "series_ticker": "KXFEE",
                "fee_type": "quadratic",
                "fee_multiplier": 0.35,
                "scheduled_ts": _iso(at_s),
            }
        ]
    }
    both = (await rig.anon.get("/series/fee_changes")).json()["series_fee_change_arr"]
    assert [c["id"] for c in both] == [cid, other]

    # Not in force yet: the series and the charge are still M = 1.
    assert (await rig.rest.request("GET", "/series/KXFEE"))["series"]["fee_multiplier"] == 1
    fee, paid = await take(rig, FEE_T, 100)
    assert fee == kalshi_fee("1", 100, "0.40") == Money(1_680_000)  # $1.68
    assert paid == cost(100) + fee

    rig.clock.advance_s(3_600)  # the scheduled time arrives
    future = await rig.rest.request("GET", "/series/fee_changes", params={"series_ticker": "KXFEE"})
    assert future == {"series_fee_change_arr": []}  # only future changes by default
    hist = await rig.rest.request(
        "GET", "/series/fee_changes", params={"series_ticker": "KXFEE", "show_historical": "true"}
    )
    assert [c["id"] for c in hist["series_fee_change_arr"]] == [cid]
    series = (await rig.rest.request("GET", "/series/KXFEE"))["series"]
    assert (series["fee_type"], Decimal(str(series["fee_multiplier"]))) == (
        "quadratic",
        Decimal("0.35"),
    )
    fee, paid = await take(rig, FEE_T, 100)
    assert fee == kalshi_fee("0.35", 100, "0.40") == Money(590_000)  # 0.588 → $0.59
    assert paid == cost(100) + fee

    # The other series' change is still pending; that series keeps arbkit's FeeModel.
    plain_fee, _ = await take(rig, PLAIN_T, 100)
    assert plain_fee == FeeModel(FeeParams()).kalshi_fee([(Price(4000), Qty(10_000))], "KXPLAIN")
    pending = (await rig.anon.get("/series/fee_changes")).json()["series_fee_change_arr"]
    assert [c["id"] for c in pending] == [other]
    r = await rig.anon.get("/series/fee_changes", params={"show_historical": "maybe"})
    assert r.status_code == 400
    assert validate_rest(openapi_dict, rig, "/series/") >= 7


async def test_event_fee_override_frame_rest_and_charge(
    rig: Rig, openapi_dict: dict[str, Any], asyncapi_dict: dict[str, Any]
) -> None:
    ex = rig.ex
    frame_schema = _validator(asyncapi_dict, "eventFeeUpdatePayload")
    ex.set_series_fee("KXFEE", "quadratic", 1)
    ws_all = await ws_sub(rig, channels=["market_lifecycle_v2"])
    ws_other = await ws_sub(rig, channels=["market_lifecycle_v2"], market_tickers=[PLAIN_T])
    ws_fee = await ws_sub(rig, channels=["market_lifecycle_v2"], market_tickers=[FEE_T2])
    try:
        ex.pause_market(FEE_T)  # a lifecycle frame first: the override shares the seq
        ex.pause_market(FEE_T, False)
        ex.set_event_fee_override("KXFEE-26DEC", "quadratic", Decimal("0.5"))

        got = [await recv(ws_all) for _ in range(3)]
        assert [(f["type"], f["seq"]) for f in got] == [
            ("market_lifecycle_v2", 1),
            ("market_lifecycle_v2", 2),
            ("event_fee_update", 3),
        ]
        frame = got[2]
        frame_schema.validate(frame)
        assert frame == {
            "type": "event_fee_update",
            "sid": frame["sid"],
            "seq": 3,
            "msg": {
                "event_ticker": "KXFEE-26DEC",
                "fee_type_override": "quadratic",
                "fee_multiplier_override": 0.5,
            },
        }
        sample = json.loads((SAMPLES / "ws_event_fee_update_set.json").read_text())
        assert set(frame) == set(sample) and set(frame["msg"]) == set(sample["msg"])
        f2 = await recv(ws_fee)  # a subscription filtered on a market of that event
        assert (f2["type"], f2["seq"]) == ("event_fee_update", 1)
        await nothing_more(ws_other)  # filtered on another event's market

        ev = await rig.rest.request("GET", "/events/KXFEE-26DEC")
        assert ev["event"]["fee_type_override"] == "quadratic"
        assert ev["event"]["fee_multiplier_override"] == 0.5
        assert ev["event"]["series_ticker"] == "KXFEE"
        assert sorted(m["ticker"] for m in ev["markets"]) == [FEE_T, FEE_T2]
        required = openapi_dict["components"]["schemas"]["EventData"]["required"]
        assert set(required) <= set(ev["event"])

        # The override charges this event's markets; the series' other event keeps M = 1.
        fee, paid = await take(rig, FEE_T2, 100)
        assert fee == kalshi_fee("0.5", 100, "0.40") == Money(840_000)
        assert paid == cost(100) + fee
        fee, _ = await take(rig, FEE_NOV, 100)
        assert fee == kalshi_fee("1", 100, "0.40")

        ex.set_event_fee_override("KXFEE-26DEC", None, None)  # cleared
        cleared = await recv(ws_all)
        frame_schema.validate(cleared)
        sample = json.loads((SAMPLES / "ws_event_fee_update_cleared.json").read_text())
        assert cleared["seq"] == 4 and cleared["msg"] == {
            **sample["msg"],
            "event_ticker": "KXFEE-26DEC",
        }
        assert cleared["msg"]["fee_type_override"] is None
        r = await rig.anon.get("/events/KXFEE-26DEC", params={"with_nested_markets": "true"})
        assert r.status_code == 200
        ev = r.json()["event"]
        assert "fee_type_override" not in ev and "fee_multiplier_override" not in ev
        assert sorted(m["ticker"] for m in ev["markets"]) == [FEE_T, FEE_T2]
        fee, _ = await take(rig, FEE_T, 100)
        assert fee == kalshi_fee("1", 100, "0.40")

        r = await rig.anon.get("/events/KXNOPE-26DEC")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        with pytest.raises(ValueError):
            ex.set_event_fee_override("KXNOPE-26DEC", "quadratic", 1)
        assert validate_rest(openapi_dict, rig, "v2/events/") == 2
    finally:
        for ws in (ws_all, ws_other, ws_fee):
            await ws.close()


async def test_unknown_and_flat_fee_types_served_and_charged(
    rig: Rig, openapi_dict: dict[str, Any]
) -> None:
    ex = rig.ex
    enum = openapi_dict["components"]["schemas"]["FeeType"]["enum"]
    assert "margin_market_maker_program_fees" not in enum  # the wire goes beyond the enum
    ex.set_series_fee("KXPERP", "margin_market_maker_program_fees", "1")
    got = (await rig.anon.get("/series/KXPERP")).json()["series"]
    assert (got["fee_type"], got["fee_multiplier"]) == ("margin_market_maker_program_fees", 1)
    # The simulator's stand-in for fee types it has no table for: $0.02 per contract.
    fee, paid = await take(rig, PERP_T, 100)
    assert fee == Money(2 * MONEY_SCALE) and paid == cost(100) + fee

    at_s = rig.clock.now_s() + 60
    cid = ex.schedule_fee_change("KXPERP", "flat", 1, at_s)
    [row] = (await rig.anon.get("/series/fee_changes")).json()["series_fee_change_arr"]
    assert (row["id"], row["fee_type"]) == (cid, "flat")
    rig.clock.advance_s(61)
    assert (await rig.anon.get("/series/KXPERP")).json()["series"]["fee_type"] == "flat"
    fee, _ = await take(rig, PERP_T, 3)
    assert fee == Money(60_000)  # 3 × $0.02

    with pytest.raises(ValueError):
        ex.set_series_fee("KXPERP", "quadratic", -1)
    with pytest.raises(ValueError):
        ex.set_series_fee("KXPERP", "", 1)


async def test_maker_fees_follow_the_fee_type(rig: Rig) -> None:
    """A resting user order filled by the simulated makers' crossing ladder is a maker fill:
    ``quadratic`` makers pay nothing, ``quadratic_with_maker_fees`` pay 0.0175·M·C·P(1−P)."""
    ex = rig.ex

    async def maker_fee(ticker: str) -> Money:
        ex.set_bids(ticker, Outcome.NO, [])
        r = await rig.rest.create_order_v2(
            ticker=ticker,
            side="bid",
            count=Qty(10_000),
            price=Price(4000),
            time_in_force="good_till_canceled",
            client_order_id=str(uuid.uuid4()),
        )
        assert r.fill_count == 0
        ex.set_bids(ticker, Outcome.NO, [(Price(6000), Qty(10_000))])  # crosses the order
        fills = (
            await rig.rest.request("GET", "/portfolio/fills", params={"order_id": r.order_id})
        )["fills"]
        assert fills and not any(f["is_taker"] for f in fills)
        return Money(sum(parse_money(f["fee_cost"]) for f in fills))

    ex.set_series_fee("KXFEE", "quadratic", 1)
    assert await maker_fee(FEE_T) == 0
    ex.set_series_fee("KXFEE", "quadratic_with_maker_fees", 2)
    assert await maker_fee(FEE_T2) == Money(840_000)  # 0.0175 × 2 × 100 × 0.4 × 0.6
