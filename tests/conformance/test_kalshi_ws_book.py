"""A Kalshi WebSocket order book kept by a client nobody here wrote, compared with REST.

No third-party Kalshi WebSocket client on PyPI fits (docs/conformance.md says which were
looked at and why not), so this is a "foreign-style" client: written here from Kalshi's
AsyncAPI document only, with the ``websockets`` library and none of arbkit's gateway,
normalizer or book code. It signs the handshake (GET /trade-api/ws/v2), subscribes to
``orderbook_delta`` for one market, validates every frame against the AsyncAPI payload
schema, checks ``seq`` is gapless per ``sid``, and applies orderbook_snapshot +
orderbook_delta to a local book. After each step of a sequence of orders (resting bids on
both sides, a taker order that crosses, a cancel, a maker ladder moved by the driver) the
local book must equal ``GET /markets/{ticker}/orderbook`` exactly.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import websockets
import yaml

from .conftest import STATS, TICKERS, KalshiVenue

ASYNCAPI = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi" / "spec" / "asyncapi.yaml"
TICKER = TICKERS[0]


def _validator(doc: dict[str, Any], name: str) -> jsonschema.protocols.Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema.Draft7Validator(schema)


class ForeignBook:
    """The local book: side → {price string (normalised) → contracts (Decimal)}."""

    def __init__(self) -> None:
        doc = yaml.safe_load(ASYNCAPI.read_text())
        self.validators = {
            "orderbook_snapshot": _validator(doc, "orderbookSnapshotPayload"),
            "orderbook_delta": _validator(doc, "orderbookDeltaPayload"),
        }
        self.levels: dict[str, dict[Decimal, Decimal]] = {"yes": {}, "no": {}}
        self.seq: dict[int, int] = {}
        self.snapshots = 0
        self.deltas = 0
        self.last_frame = time.monotonic()

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        self.last_frame = time.monotonic()
        if kind in self.validators:
            self.validators[kind].validate(frame)
            sid, seq = frame["sid"], frame["seq"]
            if sid in self.seq:
                assert seq == self.seq[sid] + 1, f"seq gap on sid {sid}: {self.seq[sid]} → {seq}"
            self.seq[sid] = seq
        msg = frame.get("msg", {})
        if kind == "orderbook_snapshot":
            self.snapshots += 1
            self.levels = {
                "yes": {Decimal(p): Decimal(n) for p, n in msg.get("yes_dollars_fp", [])},
                "no": {Decimal(p): Decimal(n) for p, n in msg.get("no_dollars_fp", [])},
            }
        elif kind == "orderbook_delta":
            self.deltas += 1
            assert self.snapshots, "delta before snapshot"
            side = self.levels[msg["side"]]
            price = Decimal(msg["price_dollars"])
            n = side.get(price, Decimal(0)) + Decimal(msg["delta_fp"])
            assert n >= 0, f"level {msg['side']} {price} went negative: {n}"
            if n == 0:
                side.pop(price, None)
            else:
                side[price] = n
        elif kind == "error":
            raise AssertionError(f"server error frame: {frame}")

    def as_rest(self) -> dict[str, list[tuple[Decimal, Decimal]]]:
        return {s: sorted(v.items()) for s, v in self.levels.items()}


def _rest_book(body: dict[str, Any]) -> dict[str, list[tuple[Decimal, Decimal]]]:
    ob = body["orderbook_fp"]
    return {
        s: sorted((Decimal(p), Decimal(n)) for p, n in ob.get(f"{s}_dollars") or [])
        for s in ("yes", "no")
    }


async def test_ws_book_equals_rest_book(kalshi: KalshiVenue) -> None:
    book = ForeignBook()
    base = kalshi.exchange.rest_url
    ws_path = "/trade-api/ws/v2"
    rest_path = "/trade-api/v2"

    def signed(method: str, path: str) -> dict[str, str]:
        return kalshi.key.sign(method, path)

    async with (
        httpx.AsyncClient(timeout=10) as http,
        websockets.connect(kalshi.exchange.ws_url, additional_headers=signed("GET", ws_path)) as ws,
    ):

        async def reader() -> None:
            async for raw in ws:
                book.on_frame(json.loads(raw))

        task = asyncio.create_task(reader())

        async def settle() -> None:
            """Wait until no frame arrived for 150 ms (the sim publishes at once)."""
            await asyncio.sleep(0.05)
            while time.monotonic() - book.last_frame < 0.15:
                await asyncio.sleep(0.05)
            assert not task.done() or task.exception() is None, task.exception()

        async def compare(step: str) -> None:
            await settle()
            path = f"{rest_path}/markets/{TICKER}/orderbook"
            r = await http.get(base + f"/markets/{TICKER}/orderbook", headers=signed("GET", path))
            assert r.status_code == 200, r.text
            assert book.as_rest() == _rest_book(r.json()), step
            STATS.counts["ws book comparisons"] += 1

        async def order(side: str, price: str, count: int) -> dict[str, Any]:
            path = f"{rest_path}/portfolio/events/orders"
            body = {
                "ticker": TICKER,
                "client_order_id": str(uuid.uuid4()),
                "side": side,
                "count": str(count),
                "price": price,
                "time_in_force": "good_till_canceled",
                "self_trade_prevention_type": "taker_at_cross",
            }
            r = await http.post(base + "/portfolio/events/orders", json=body,
                                headers=signed("POST", path))  # fmt: skip
            assert r.status_code == 201, r.text
            return dict(r.json())

        await ws.send(
            json.dumps(
                {
                    "id": 1,
                    "cmd": "subscribe",
                    "params": {"channels": ["orderbook_delta"], "market_ticker": TICKER},
                }
            )
        )
        await compare("snapshot")
        assert book.snapshots == 1

        # resting YES bid below the best, resting NO-side interest (a YES ask = NO bid)
        await order("bid", "0.39", 7)
        await compare("resting yes bid at 0.39")
        await order("ask", "0.47", 4)  # a YES ask at 0.47 rests as a NO bid at 0.53
        await compare("resting yes ask at 0.47")
        # a taker that crosses the best YES bid 0.40 (10) and walks into 0.39
        await order("ask", "0.39", 12)
        await compare("yes ask 0.39 x12 crossing the bids")
        # a resting order, then its cancel
        resting = await order("bid", "0.21", 5)
        await compare("resting yes bid at 0.21")
        oid = resting["order_id"]
        path = f"{rest_path}/portfolio/events/orders/{oid}"
        r = await http.delete(base + f"/portfolio/events/orders/{oid}",
                              headers=signed("DELETE", path))  # fmt: skip
        assert r.status_code == 200, r.text
        await compare("cancel of the 0.21 bid")
        # the market model moves the maker ladders
        kalshi.book(TICKER, yes=[("0.41", 9), ("0.36", 2)], no=[("0.52", 6)])
        await compare("driver moved the maker ladders")
        # a YES bid that crosses the NO ladder (YES ask 0.48) and leaves a remainder
        await order("bid", "0.49", 10)
        await compare("yes bid 0.49 x10 crossing the asks")

        task.cancel()
    STATS.counts["ws snapshots"] += book.snapshots
    STATS.counts["ws deltas applied"] += book.deltas
    assert book.deltas >= 6
