"""Order truth against the local exchange over real sockets (issue 11, findings 1 and 3):
a 409 means the order exists, a lost response leaves an order the venue knows, reads lag
writes, fills come from the ``fill``/``user_orders`` stream (deduplicated by trade_id), own
book changes carry our client_order_id, old orders live in the historical tier, and the
pre-signed create headers are accepted by a venue that verifies signatures and skew."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from kalshi_helpers import TICKERS, Venue, eventually
from websockets.asyncio.client import connect

from arbkit.execution.venue import (
    Fill,
    OrderExists,
    OrderRequest,
    OrderResult,
    OrderState,
    TimeInForce,
    VenueError,
)
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.gateways.kalshi_orders import KalshiOrderClient
from arbkit.gateways.kalshi_rest import KalshiRestClient
from arbkit.gateways.kalshi_user_stream import KalshiUserStream
from arbkit.model import Outcome, Price, Qty

T0, T1, T2 = TICKERS


def seed(v: Venue) -> None:
    v.ladder(T0, Outcome.YES, ("0.40", "10"), ("0.41", "5"))
    v.ladder(T0, Outcome.NO, ("0.55", "7"), ("0.56", "3.5"))


def req(
    qty: int = 100, price: int = 4400, coid: str = "", outcome: Outcome = Outcome.YES
) -> OrderRequest:
    return OrderRequest(
        "fed",
        outcome,
        Price(price),
        Qty(qty),
        TimeInForce.IOC,
        coid or f"ak-{uuid.uuid4().hex[:12]}-l1-0",
    )


def fast_rest(v: Venue, **kw: object) -> KalshiRestClient:
    return KalshiRestClient(
        v.exchange.rest_url,
        v.auth,
        read_tokens_per_s=1e6,
        write_tokens_per_s=1e6,
        backoff_base_s=0.001,
        backoff_max_s=0.01,
        **kw,  # type: ignore[arg-type]
    )


def second_user(v: Venue) -> KalshiAuth:
    """Another account at the same venue (same key material, different key id = user)."""
    key_id = str(uuid.uuid4())
    v.exchange.register_key(key_id, v.auth.public_key_pem())
    v.exchange.fund(key_id, 1_000 * 1_000_000)  # type: ignore[arg-type]
    return KalshiAuth.from_key_file(key_id, v.key_path)


@pytest.fixture
async def streamed(venue: Venue, rest: KalshiRestClient) -> AsyncIterator[KalshiOrderClient]:
    oc = KalshiOrderClient(rest, {"fed": T0}, ws_url=venue.exchange.ws_url)
    await oc.start_stream()
    try:
        yield oc
    finally:
        await oc.stop_stream()


# ------------------------------------------------------------ finding 1: 409 / lag ------


async def test_409_with_a_lagging_order_list_raises_order_exists(
    venue: Venue, rest: KalshiRestClient
) -> None:
    """Old code: "409 but not listed" → non-retryable VenueError, booked REJECTED."""
    seed(venue)
    ex = venue.exchange
    ex.set_read_lag_ms(400)
    r = req()
    first = await KalshiOrderClient(rest, {"fed": T0}).place_limit(r, 5)
    assert first.state is OrderState.FILLED and first.filled_qty == 100
    # A restarted process resends the same deterministic id inside the lag window.
    fresh = KalshiOrderClient(rest, {"fed": T0})
    with pytest.raises(OrderExists) as ei:
        await fresh.place_limit(r, 5)
    assert ei.value.status == 409 and not ei.value.retryable
    assert ex.orders_created[r.client_order_id] == 1
    assert ex.posts_by_client_order_id[r.client_order_id] == 2
    # One miss is not proof: a later read (after the lag) sees it, filled.
    assert await fresh.order_status(r.client_order_id) is None
    await asyncio.sleep(0.45)
    st = await fresh.order_status(r.client_order_id)
    assert st is not None and st.filled_qty == 100 and st.venue_order_id == first.venue_order_id
    assert st.filled_cost == 4400 * 100


async def test_read_lag_hides_new_orders_fills_and_positions(
    venue: Venue, rest: KalshiRestClient
) -> None:
    seed(venue)
    ex = venue.exchange
    oc = KalshiOrderClient(rest, {"fed": T0})
    before = await oc.place_limit(req(100), 5)  # placed before the lag is switched on
    await asyncio.sleep(0.35)
    ex.set_read_lag_ms(300)
    r = req(200)
    placed = await oc.place_limit(r, 5)
    assert placed.filled_qty == 200
    assert await oc.order_status(r.client_order_id) is None  # by id: 404 during the lag
    assert await KalshiOrderClient(rest, {"fed": T0}).order_status(r.client_order_id) is None
    assert {f.venue_order_id for f in await oc.fills()} == {before.venue_order_id}
    assert await oc.positions() == {("fed", Outcome.YES): Qty(100)}
    st_old = await oc.order_status(before.client_order_id)
    assert st_old is not None and st_old.filled_qty == 100
    await asyncio.sleep(0.35)
    st = await oc.order_status(r.client_order_id)
    assert st is not None and st.filled_qty == 200
    assert await oc.positions() == {("fed", Outcome.YES): Qty(300)}
    assert len(await oc.fills(r.client_order_id)) >= 1


@pytest.mark.parametrize("mode", ["hang", "reset"])
async def test_lost_response_order_exists_and_is_found_after_the_lag(
    venue: Venue, rest: KalshiRestClient, mode: str
) -> None:
    seed(venue)
    ex = venue.exchange
    ex.set_read_lag_ms(300)
    ex.lose_next_order_responses(1, mode=mode)
    oc = KalshiOrderClient(rest, {"fed": T0})
    r = req(150)
    t0 = time.monotonic()
    with pytest.raises((TimeoutError, OSError, VenueError)) as ei:
        await oc.place_limit(r, 0.5)
    if isinstance(ei.value, VenueError):
        assert ei.value.retryable and not isinstance(ei.value, OrderExists)
    if mode == "reset":
        assert time.monotonic() - t0 < 0.45
    # The venue has it (created and matched) although the client never heard back.
    assert ex.orders_created[r.client_order_id] == 1 and ex.lost_responses == 1
    assert ex.posts_by_client_order_id[r.client_order_id] == 1  # no hidden resend
    o = ex.engine.by_client_id[(venue.auth.key_id, r.client_order_id)]
    assert o.fill == 150
    await asyncio.sleep(0.35)
    st = await oc.order_status(r.client_order_id)
    assert st is not None and st.filled_qty == 150 and st.state is OrderState.FILLED


async def test_ambiguous_create_raises_without_lookups(
    venue: Venue, rest: KalshiRestClient
) -> None:
    seed(venue)
    ex = venue.exchange
    oc = KalshiOrderClient(rest, {"fed": T0})
    ex.fail_next_requests(1, status=503)
    with pytest.raises(VenueError) as ei:
        await oc.place_limit(req(), 5)
    assert ei.value.retryable and ei.value.status == 503
    assert ex.requests["GET /trade-api/v2/portfolio/orders"] == 0  # no hidden look


async def test_per_leg_counting_sees_a_retry_under_a_new_id(
    venue: Venue, rest: KalshiRestClient
) -> None:
    seed(venue)
    ex = venue.exchange
    oc = KalshiOrderClient(rest, {"fed": T0})
    base = f"ak-{uuid.uuid4().hex[:16]}"
    await oc.place_limit(req(100, coid=f"{base}-l1-0"), 5)
    await oc.place_limit(req(100, coid=f"{base}-l1-1"), 5)  # a resend under a NEW id
    with pytest.raises(OrderExists):
        ex.set_read_lag_ms(1000)
        await oc.place_limit(req(100, coid=f"{base}-l1-1"), 5)  # refused duplicate
    ex.reject_next_order(400, "invalid_parameters", "test")
    rej = await oc.place_limit(req(100, coid=f"{base}-h-3"), 5)
    assert rej.state is OrderState.REJECTED
    assert ex.orders_created_by_leg()[f"{base}-l1"] == 2
    assert ex.posts_by_leg()[f"{base}-l1"] == 3
    assert ex.posts_by_leg()[f"{base}-h"] == 1 and ex.orders_created_by_leg()[f"{base}-h"] == 0
    assert ex.orders_created_with_prefix(base) == 2 and ex.posts_with_prefix(base) == 4
    assert ex.orders_created_by_client_order_id[f"{base}-l1-1"] == 1


# ----------------------------------------------------------- finding 3: the stream ------


async def test_fill_and_user_order_stream_with_duplicate_frames(
    venue: Venue, streamed: KalshiOrderClient
) -> None:
    seed(venue)
    oc = streamed
    got_fills: list[Fill] = []
    got_orders: list[OrderResult] = []
    oc.subscribe(got_fills.append, got_orders.append)
    venue.exchange.duplicate_next_fill_frames(5)
    r = req(1000, 4500)  # sweeps 0.44 × 3.5 and 0.45 × 6.5: two trades
    res = await oc.place_limit(r, 5)
    assert res.filled_qty == 1000 and res.state is OrderState.FILLED
    await eventually(lambda: len(got_fills) == 2 and len(got_orders) >= 1)
    await asyncio.sleep(0.05)
    assert len(got_fills) == 2  # duplicates dropped by trade_id
    assert oc.stream is not None and oc.stream.duplicate_fills == 2
    assert len({f.trade_id for f in got_fills}) == 2
    assert all(f.client_order_id == r.client_order_id and f.symbol == "fed" for f in got_fills)
    assert sorted((f.price, f.qty) for f in got_fills) == [(4400, 350), (4500, 650)]
    last = got_orders[-1]
    assert last.client_order_id == r.client_order_id and last.state is OrderState.FILLED
    assert last.filled_cost == 4400 * 350 + 4500 * 650
    assert sum(f.fee for f in got_fills) == last.fees
    # REST agrees with the stream (exact totals), and REST fills carry the trade ids.
    st = await oc.order_status(r.client_order_id)
    assert st is not None and (st.filled_cost, st.fees) == (last.filled_cost, last.fees)
    rest_fills = await oc.fills(r.client_order_id)
    assert {f.trade_id for f in rest_fills} == {f.trade_id for f in got_fills}
    # Once the stream has the fills, place_limit's costs are exact.
    seed(venue)
    r2 = req(300, 4400)
    res2 = await oc.place_limit(r2, 5)
    await eventually(lambda: len(oc.stream_fills(res2.venue_order_id)) == 1)
    again = await oc.place_limit(r2, 5)  # 409 → lookup (exact REST totals)
    assert again.filled_cost == 4400 * 300 and again.costs_final
    exact = oc._exact_costs(res2.venue_order_id, res2.filled_qty)
    assert exact == (4400 * 300, again.fees)


async def test_place_limit_costs_final_when_the_stream_was_first(
    venue: Venue, rest: KalshiRestClient
) -> None:
    """The sim's frames are queued before the HTTP response is written, so with a short
    pause in the response path the stream's fills are known when place_limit returns."""
    seed(venue)
    oc = KalshiOrderClient(rest, {"fed": T0}, ws_url=venue.exchange.ws_url)
    await oc.start_stream()
    try:
        seen: list[Fill] = []
        oc.subscribe(seen.append, lambda r: None)

        async def slow_response(resp: httpx.Response) -> None:
            if resp.request.method == "POST":
                await eventually(lambda: len(seen) >= 1, 2.0)

        rest._http.event_hooks["response"].append(slow_response)
        res = await oc.place_limit(req(200, 4400), 5)
        assert res.costs_final and res.filled_cost == 4400 * 200 and res.fees > 0
        assert res.sent_ns and res.ack_ts_ns >= res.sent_ns
    finally:
        rest._http.event_hooks["response"].clear()
        await oc.stop_stream()


async def test_private_channels_go_to_the_owner_only(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)
    other = second_user(venue)
    theirs: list[Fill] = []
    their_orders: list[OrderResult] = []
    spy = KalshiUserStream(
        venue.exchange.ws_url,
        other,
        {T0: "fed"},
        on_fill=theirs.append,
        on_order=their_orders.append,
    )
    mine: list[Fill] = []
    me = KalshiUserStream(venue.exchange.ws_url, venue.auth, {T0: "fed"}, on_fill=mine.append)
    await spy.start()
    await me.start()
    try:
        await spy.wait_subscribed()
        await me.wait_subscribed()
        await KalshiOrderClient(rest, {"fed": T0}).place_limit(req(100), 5)
        await eventually(lambda: len(mine) == 1)
        await asyncio.sleep(0.1)
        assert theirs == [] and their_orders == []
        # A market filter on the subscription is honoured.
        venue.ladder(T1, Outcome.NO, ("0.50", "5"))
        filt: list[Fill] = []
        only_t1 = KalshiUserStream(
            venue.exchange.ws_url, venue.auth, {}, on_fill=filt.append, market_tickers=[T1]
        )
        await only_t1.start()
        await only_t1.wait_subscribed()
        await KalshiOrderClient(rest, {"fed": T0}).place_limit(req(100), 5)
        await KalshiOrderClient(rest, {"x": T1}).place_limit(
            OrderRequest("x", Outcome.YES, Price(5000), Qty(100), TimeInForce.IOC, "t1-order"), 5
        )
        await eventually(lambda: len(filt) == 1)
        assert filt[0].client_order_id == "t1-order" and filt[0].symbol == ""
        await only_t1.stop()
    finally:
        await spy.stop()
        await me.stop()


async def test_stream_counts_bad_frames_and_reconnects(
    venue: Venue, rest: KalshiRestClient
) -> None:
    seed(venue)
    s = KalshiUserStream(venue.exchange.ws_url, venue.auth, {T0: "fed"}, reconnect_base_s=0.02)
    got: list[Fill] = []
    s.add_listeners(on_fill=got.append)
    await s.start()
    try:
        await s.wait_subscribed()
        venue.exchange.inject_frame("{not json")
        venue.exchange.inject_frame('{"type":"fill","sid":1,"msg":{"order_id":"x"}}')
        await eventually(lambda: s.bad_frames == 2)
        venue.exchange.drop_sockets()
        await eventually(lambda: s.reconnects >= 1 and s.connected)
        await s.wait_subscribed()
        await KalshiOrderClient(rest, {"fed": T0}).place_limit(req(100), 5)
        await eventually(lambda: len(got) == 1)
    finally:
        await s.stop()


async def test_own_orderbook_delta_carries_client_order_id(
    venue: Venue, rest: KalshiRestClient
) -> None:
    seed(venue)
    other = second_user(venue)
    sub = {
        "id": 1,
        "cmd": "subscribe",
        "params": {"channels": ["orderbook_delta"], "market_ticker": T0},
    }
    path = "/trade-api/ws/v2"
    async with (
        connect(venue.exchange.ws_url, additional_headers=venue.auth.headers("GET", path)) as mine,
        connect(venue.exchange.ws_url, additional_headers=other.headers("GET", path)) as theirs,
    ):
        for ws in (mine, theirs):
            await ws.send(json.dumps(sub))
            for _ in range(2):  # subscribed + snapshot
                await asyncio.wait_for(ws.recv(), 5)
        r = req(100)
        await KalshiOrderClient(rest, {"fed": T0}).place_limit(r, 5)
        # A driver (maker) change afterwards: nobody "caused" it.
        venue.ladder(T0, Outcome.YES, ("0.40", "11"), ("0.41", "5"))
        for ws, own in ((mine, True), (theirs, False)):
            d1 = json.loads(await asyncio.wait_for(ws.recv(), 5))
            d2 = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert d1["type"] == d2["type"] == "orderbook_delta"
            assert d1["msg"]["delta_fp"] == "-1.00" and d1["msg"]["price_dollars"] == "0.5600"
            assert ("client_order_id" in d1["msg"]) is own
            if own:
                assert d1["msg"]["client_order_id"] == r.client_order_id
            assert "client_order_id" not in d2["msg"]
            assert "subaccount" not in d1["msg"]


# ------------------------------------------------------------------ other methods ------


async def test_cancel_open_orders_and_foreign_tickers(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)
    oc = KalshiOrderClient(rest, {"fed": T0})
    gtc = await rest.create_order_v2(
        ticker=T0, side="bid", count=Qty(300), price=Price(4300),
        time_in_force="good_till_canceled", client_order_id="gtc-a",
    )  # fmt: skip
    await rest.create_order_v2(
        ticker=T2, side="bid", count=Qty(100), price=Price(1000),
        time_in_force="good_till_canceled", client_order_id="foreign-1",
    )  # fmt: skip
    venue.ladder(T0, Outcome.NO, ("0.57", "1"))  # a maker crosses 1 of our 3 contracts
    by_sym = dict((r.client_order_id, s) for s, r in await oc.open_orders_by_symbol())
    assert by_sym == {"gtc-a": "fed", "foreign-1": ""}
    assert {r.client_order_id for r in await oc.open_orders()} == {"gtc-a", "foreign-1"}
    venue.exchange.set_read_lag_ms(5_000)  # the cancel's result must not depend on reads
    c = await oc.cancel("gtc-a", 5)
    assert c.state is OrderState.CANCELLED and c.filled_qty == 100
    assert c.venue_order_id == gtc.order_id and c.filled_cost == 4300 * 100 and c.costs_final
    venue.exchange.set_read_lag_ms(0)
    again = await oc.cancel("gtc-a", 5)  # already gone → the final state
    assert again.state is OrderState.CANCELLED and again.filled_qty == 100
    with pytest.raises(VenueError) as ei:
        await oc.cancel("never-sent", 5)
    assert ei.value.retryable and ei.value.status == 404


async def test_historical_tier(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)
    ex = venue.exchange
    oc = KalshiOrderClient(rest, {"fed": T0})
    old = req(100)
    placed = await oc.place_limit(old, 5)
    gtc = await rest.create_order_v2(
        ticker=T0, side="bid", count=Qty(100), price=Price(3000),
        time_in_force="good_till_canceled", client_order_id="rests",
    )  # fmt: skip
    await asyncio.sleep(0.01)
    ex.set_historical_cutoff(time.time())
    cut = await rest.get_historical_cutoff()
    assert cut["orders_updated_ts"] is not None
    live = {o.client_order_id for o in await rest.get_orders()}
    assert live == {"rests"}  # resting orders always stay live
    assert {o.client_order_id for o in await rest.get_orders(historical=True)} == {
        old.client_order_id
    }
    assert await rest.get_fills() == []
    assert len(await rest.get_fills(historical=True)) == 1
    # A fresh client (restart) finds the old order and its fills through the archive.
    fresh = KalshiOrderClient(rest, {"fed": T0})
    st = await fresh.order_status(old.client_order_id)
    assert st is not None and st.filled_qty == 100 and st.venue_order_id == placed.venue_order_id
    f = await KalshiOrderClient(rest, {"fed": T0}).fills()
    assert [(x.client_order_id, x.qty) for x in f] == [(old.client_order_id, 100)]
    assert f[0].trade_id
    assert (await fresh.fills(old.client_order_id))[0].trade_id == f[0].trade_id
    # The known-id path too: the by-id GET 404s for an archived order.
    st2 = await oc.order_status(old.client_order_id)
    assert st2 is not None and st2.filled_qty == 100
    assert (await rest.get_order(gtc.order_id)).status == "resting"


# ------------------------------------------------------------------------- speed -------


async def test_presigned_create_headers_are_accepted(venue: Venue) -> None:
    seed(venue)
    ex = venue.exchange
    ex.max_clock_skew_ms = 1_500
    rest = fast_rest(venue)
    try:
        oc = KalshiOrderClient(rest, {"fed": T0})
        await asyncio.sleep(0.05)  # the background signer has one ready
        for _ in range(5):
            venue.ladder(T0, Outcome.NO, ("0.56", "10"))
            r = await oc.place_limit(req(100), 5)
            assert r.filled_qty == 100
            await asyncio.sleep(0.01)
        hits, misses = venue.auth.presign_stats
        assert hits >= 3, (hits, misses)
        assert not ex.auth_failures
        # Never older than the bound: a stale one is refused and signed inline instead.
        p = venue.auth._presigner
        assert p is not None
        await asyncio.sleep(0.02)
        key = next(iter(p.paths))
        with p.lock:
            p.ready[key] = [(t - 2 * p.max_age_ns, h) for t, h in p.ready[key]]
        assert p.take(key) is None
        r = await oc.place_limit(req(100), 5)
        assert r.state is not OrderState.REJECTED and not ex.auth_failures
    finally:
        await rest.aclose()
    assert venue.auth._presigner is None  # aclose stopped the signer


async def test_create_to_bytes_figures(venue: Venue) -> None:
    """Not a timing assertion: prints call → request bytes with and without pre-signing."""
    seed(venue)
    out = {}
    for presign in (False, True):
        rest = fast_rest(venue, presign_orders=presign)
        oc = KalshiOrderClient(rest, {"fed": T0})
        gaps = []
        try:
            await asyncio.sleep(0.05)
            for i in range(60):
                venue.ladder(T0, Outcome.NO, ("0.56", "10"))
                await oc.place_limit(req(100), 5)
                if i >= 10:
                    gaps.append(oc.last_send_gap_ns)
                await asyncio.sleep(0.005)  # let the background signer refill
        finally:
            await rest.aclose()
        gaps.sort()
        out[presign] = (gaps[len(gaps) // 2], gaps[int(len(gaps) * 0.99)])
    for presign, (p50, p99) in out.items():
        print(
            f"\ncreate call → request bytes, presign={presign}: "
            f"p50 {p50 / 1e3:.0f} µs, p99 {p99 / 1e3:.0f} µs"
        )
    assert all(v[0] > 0 for v in out.values())
