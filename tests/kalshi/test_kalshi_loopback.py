"""The real clients (websockets, httpx) against the local exchange over 127.0.0.1."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from kalshi_helpers import TICKERS, Venue, eventually
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from arbkit.execution.venue import OrderRequest, OrderState, TimeInForce, VenueError
from arbkit.gateways.kalshi_auth import KalshiAuth, generate_key_pair
from arbkit.gateways.kalshi_orders import KalshiOrderClient
from arbkit.gateways.kalshi_rest import KalshiApiError, KalshiRestClient
from arbkit.gateways.kalshi_websocket import KalshiWebSocket
from arbkit.model import NormalizedTick, Outcome, Price, Qty, TickKind

T0, T1, T2 = TICKERS


def expected_book(v: Venue, ticker: str) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    m = v.exchange.engine.markets[ticker]
    return (sorted(m.ladder("yes"), reverse=True), sorted(m.ladder("no"), reverse=True))


class Feed:
    """Collects ticks like the monitor would and keeps an ask-ladder per (symbol, outcome)."""

    def __init__(self) -> None:
        self.asks: dict[tuple[str, Outcome], dict[int, int]] = {}
        self.valid: dict[str, bool] = {}
        self.batches = 0
        self.invalidations: list[str] = []

    def __call__(self, ticks: list[NormalizedTick]) -> None:
        self.batches += 1
        for t in ticks:
            if t.kind is TickKind.RESET:
                for o in (Outcome.YES, Outcome.NO):
                    if t.outcome in (None, o):
                        self.asks[(t.symbol, o)] = {}
                self.valid[t.symbol] = t.valid
                if not t.valid:
                    self.invalidations.append(t.symbol)
            else:
                assert t.outcome is not None
                lad = self.asks.setdefault((t.symbol, t.outcome), {})
                if t.size:
                    lad[t.price] = t.size
                else:
                    lad.pop(t.price, None)


def ws_client(
    v: Venue, feed: Feed, tickers: tuple[str, ...] = TICKERS, **kw: object
) -> KalshiWebSocket:
    return KalshiWebSocket(
        v.exchange.ws_url,
        v.auth,
        {t: t.lower() for t in tickers},
        feed,
        reconnect_base_s=0.05,
        reconnect_max_s=0.2,
        resync_retry_s=0.5,
        **kw,  # type: ignore[arg-type]
    )


def seed(v: Venue) -> None:
    v.ladder(T0, Outcome.YES, ("0.40", "10"), ("0.41", "5"))
    v.ladder(T0, Outcome.NO, ("0.55", "7"), ("0.56", "3.5"))
    v.ladder(T1, Outcome.YES, ("0.20", "1"))


def books_match(v: Venue, ws: KalshiWebSocket, tickers: tuple[str, ...] = (T0, T1)) -> bool:
    return all(
        ws.normalizer.is_valid(t) and ws.normalizer.book(t) == expected_book(v, t) for t in tickers
    )


# ---------------------------------------------------------------------------- auth ----


async def test_auth_accepted_and_each_fault_rejected(venue: Venue, tmp_path: Path) -> None:
    ex = venue.exchange
    base = f"http://127.0.0.1:{ex.port}"
    path = "/trade-api/v2/portfolio/balance"
    async with httpx.AsyncClient(base_url=base) as http:
        ok = await http.get(path, headers=venue.auth.headers("GET", path))
        assert ok.status_code == 200
        # Query string is not signed.
        ok2 = await http.get(path + "?subaccount=0", headers=venue.auth.headers("GET", path))
        assert ok2.status_code == 200

        other = KalshiAuth.from_key_file(venue.auth.key_id, _other_key(tmp_path))
        now_ms = time.time_ns() // 1_000_000
        cases = {
            "wrong key": other.headers("GET", path),
            "unknown key id": KalshiAuth.from_key_file("nope", venue.key_path).headers("GET", path),
            "wrong path": venue.auth.headers("GET", "/trade-api/v2/portfolio/positions"),
            "path without prefix": venue.auth.headers("GET", "/portfolio/balance"),
            "old timestamp": venue.auth.headers("GET", path, timestamp_ms=now_ms - 60_000),
            "seconds not ms": venue.auth.headers("GET", path, timestamp_ms=now_ms // 1000),
            "wrong method": venue.auth.headers("POST", path),
            "no headers": {},
        }
        for name, headers in cases.items():
            r = await http.get(path, headers=headers)
            assert r.status_code == 401, name
            assert r.json()["error"]["code"] == "authentication_error", name

    # Through the REST client the same failure is one typed error.
    bad = KalshiRestClient(ex.rest_url, other)
    with pytest.raises(KalshiApiError) as ei:
        await bad.get_balance()
    await bad.aclose()
    assert ei.value.status == 401 and "INCORRECT_API_KEY_SIGNATURE" in ei.value.details

    # WebSocket handshake: rejected with 401 when the signature is wrong.
    with pytest.raises(InvalidStatus) as wi:
        async with connect(ex.ws_url, additional_headers=other.headers("GET", "/trade-api/ws/v2")):
            pass
    assert wi.value.response.status_code == 401
    async with connect(
        ex.ws_url, additional_headers=venue.auth.headers("GET", "/trade-api/ws/v2")
    ) as ws:
        await ws.send('{"id":1,"cmd":"list_subscriptions"}')
        assert '"type":"ok"' in str(await ws.recv())


def _other_key(tmp_path: Path) -> Path:
    p = tmp_path / "other.pem"
    generate_key_pair(p, key_type="ed25519")
    return p


async def test_ws_auth_failure_retries_then_recovers(venue: Venue, tmp_path: Path) -> None:
    seed(venue)
    feed = Feed()
    good_pem = venue.auth.public_key_pem()
    venue.exchange.register_key(venue.auth.key_id, KalshiAuth.from_key_file(
        "x", _other_key(tmp_path)).public_key_pem())  # fmt: skip
    ws = ws_client(venue, feed)
    await ws.start()
    try:
        await eventually(lambda: ws.health.reconnects >= 2, what="handshake retries")
        assert "401" in ws.last_error and not ws.health.connected
        assert not any(ws.books_valid.values())
        venue.exchange.register_key(venue.auth.key_id, good_pem)
        await eventually(lambda: books_match(venue, ws), what="recovered")
    finally:
        await ws.stop()


async def test_ed25519_keys_work(venue: Venue, tmp_path: Path) -> None:
    p = tmp_path / "ed.pem"
    _, pub = generate_key_pair(p, key_type="ed25519")
    assert (p.stat().st_mode & 0o777) == 0o600
    venue.exchange.register_key("ed-key", pub)
    auth = KalshiAuth.from_env({"KALSHI_API_KEY_ID": "ed-key", "KALSHI_PRIVATE_KEY": p.read_text()})
    assert "PRIVATE" not in repr(auth) and "ed-key" not in repr(auth)
    async with KalshiRestClient(venue.exchange.rest_url, auth) as rest:
        assert (await rest.get_balance()).balance == 0


# ------------------------------------------------------------------------- market data ----


async def test_snapshot_and_deltas_give_the_right_asks(venue: Venue) -> None:
    seed(venue)
    feed = Feed()
    raws: list[str] = []
    ws = ws_client(venue, feed, on_raw=lambda text, ns: raws.append(text))
    await ws.start()
    try:
        await eventually(lambda: books_match(venue, ws), what="initial snapshots")
        # YES asks = 1 − NO bids; NO asks = 1 − YES bids.
        assert feed.asks[(T0.lower(), Outcome.YES)] == {4400: 350, 4500: 700}
        assert feed.asks[(T0.lower(), Outcome.NO)] == {5900: 500, 6000: 1000}
        venue.ladder(T0, Outcome.YES, ("0.40", "12.25"), ("0.42", "1"))
        venue.ladder(T0, Outcome.NO, ("0.56", "3.5"))
        await eventually(lambda: books_match(venue, ws), what="deltas applied")
        assert feed.asks[(T0.lower(), Outcome.NO)] == {5800: 100, 6000: 1225}
        assert feed.asks[(T0.lower(), Outcome.YES)] == {4400: 350}
        assert feed.valid[T0.lower()] is True
        assert ws.health.connected and ws.health.bad_frames == 0
        assert venue.exchange.ws_commands[0]["params"]["use_yes_price"] is False
        assert raws and raws[0].startswith('{"id":1,"type":"subscribed"')
        # Heartbeat pings from the server are answered.
        await eventually(lambda: venue.exchange.pongs_received > 0, what="pong")
    finally:
        await ws.stop()


async def test_use_yes_price_true_gives_the_same_book(venue: Venue) -> None:
    seed(venue)
    feed = Feed()
    ws = ws_client(venue, feed, use_yes_price=True)
    await ws.start()
    try:
        await eventually(lambda: books_match(venue, ws), what="snapshots")
        venue.ladder(T0, Outcome.NO, ("0.57", "2"))
        await eventually(lambda: books_match(venue, ws), what="deltas")
        assert feed.asks[(T0.lower(), Outcome.YES)] == {4300: 200}
    finally:
        await ws.stop()


async def test_seq_gap_invalidates_and_resyncs(venue: Venue) -> None:
    seed(venue)
    feed = Feed()
    ws = ws_client(venue, feed)
    await ws.start()
    try:
        await eventually(lambda: books_match(venue, ws), what="snapshots")
        invalid_seen: list[str] = []
        orig = ws.on_ticks

        def spy(ticks: list[NormalizedTick]) -> None:
            invalid_seen.extend(t.symbol for t in ticks if t.kind is TickKind.RESET and not t.valid)
            orig(ticks)

        ws.on_ticks = spy
        venue.exchange.skip_seq(1)
        venue.ladder(T0, Outcome.YES, ("0.40", "11"))  # this delta arrives with a gap
        await eventually(lambda: ws.normalizer.gaps == 1, what="gap detected")
        # Every book on the sid was invalidated, then fresh snapshots restored them.
        assert set(invalid_seen) >= {t.lower() for t in TICKERS}
        await eventually(lambda: books_match(venue, ws, TICKERS), what="resynced")
        assert any(
            c.get("cmd") == "update_subscription" and c["params"]["action"] == "get_snapshot"
            for c in venue.exchange.ws_commands
        )
        venue.ladder(T0, Outcome.NO, ("0.50", "1"))
        await eventually(lambda: books_match(venue, ws), what="deltas after resync")
        assert feed.asks[(T0.lower(), Outcome.YES)] == {5000: 100}
        # Delayed frames still arrive in order and build the same book.
        venue.exchange.delay_frames(5)
        for size in ("2", "3", "4"):
            venue.ladder(T0, Outcome.NO, ("0.50", size), ("0.49", size))
        await eventually(lambda: books_match(venue, ws), what="delayed deltas")
        assert ws.normalizer.gaps == 1 and ws.health.bad_frames == 0
    finally:
        await ws.stop()


async def test_socket_drop_reconnects_with_correct_book(venue: Venue) -> None:
    seed(venue)
    feed = Feed()
    ws = ws_client(venue, feed)
    await ws.start()
    try:
        await eventually(lambda: books_match(venue, ws), what="snapshots")
        assert venue.exchange.drop_sockets() == 1
        await eventually(lambda: ws.health.reconnects >= 1, what="reconnect attempt")
        # While disconnected the book changes; the new connection's snapshot must show it.
        venue.ladder(T0, Outcome.YES, ("0.30", "9"))
        await eventually(
            lambda: ws.health.connected and books_match(venue, ws), what="book after reconnect"
        )
        assert feed.valid[T0.lower()] is True
        assert feed.asks[(T0.lower(), Outcome.NO)] == {7000: 900}
    finally:
        await ws.stop()


@pytest.mark.parametrize("code", [10, 25])
async def test_terminal_errors_resubscribe(venue: Venue, code: int) -> None:
    seed(venue)
    feed = Feed()
    ws = ws_client(venue, feed)
    await ws.start()
    try:
        await eventually(lambda: books_match(venue, ws, TICKERS), what="snapshots")
        assert venue.exchange.terminal_error(code) == 1
        await eventually(lambda: T0.lower() in feed.invalidations, what="invalidated")
        venue.ladder(T0, Outcome.YES, ("0.33", "3"))
        await eventually(lambda: books_match(venue, ws, TICKERS), what="resubscribed")
        subs = [c for c in venue.exchange.ws_commands if c.get("cmd") == "subscribe"]
        assert len(subs) == 2 and ws.health.connected
    finally:
        await ws.stop()


async def test_bad_frames_from_the_wire_are_counted_and_resynced(venue: Venue) -> None:
    seed(venue)
    feed = Feed()
    ws = ws_client(venue, feed)
    await ws.start()
    try:
        await eventually(lambda: books_match(venue, ws), what="snapshots")
        for junk in ("{oops", "[]", '{"type":"mystery"}', "\x00\xff"):
            venue.exchange.inject_frame(junk)
        await eventually(lambda: ws.health.bad_frames == 4, what="bad frames counted")
        # A frame that would drive a level negative: the market resyncs, the loop survives.
        sub = next(iter(venue.exchange._conns[0].subs.values()))
        sub.seq += 1
        venue.exchange.inject_frame(
            json.dumps(
                {
                    "type": "orderbook_delta",
                    "sid": sub.sid,
                    "seq": sub.seq,
                    "msg": {
                        "market_ticker": T0,
                        "market_id": "x",
                        "price_dollars": "0.4000",
                        "delta_fp": "-99.00",
                        "side": "yes",
                    },
                }
            )
        )
        await eventually(lambda: ws.health.bad_frames == 5, what="negative level")
        await eventually(lambda: books_match(venue, ws), what="resync after bad frame")
        assert ws.health.connected
    finally:
        await ws.stop()


async def test_add_and_remove_markets_live(venue: Venue) -> None:
    seed(venue)
    venue.ladder(T2, Outcome.NO, ("0.10", "4"))
    feed = Feed()
    ws = ws_client(venue, feed, tickers=(T0,))
    await ws.start()
    try:
        await eventually(lambda: books_match(venue, ws, (T0,)), what="first market")
        await ws.add_markets({T2: "cpi"})
        await eventually(lambda: books_match(venue, ws, (T0, T2)), what="added market")
        assert feed.asks[("cpi", Outcome.YES)] == {9000: 400}
        await ws.remove_markets([T0])
        await eventually(
            lambda: any(
                c.get("cmd") == "update_subscription" and c["params"]["action"] == "delete_markets"
                for c in venue.exchange.ws_commands
            ),
            what="delete_markets sent",
        )
        assert feed.valid[T0.lower()] is False
        venue.ladder(T2, Outcome.NO, ("0.11", "4"))
        await eventually(lambda: books_match(venue, ws, (T2,)), what="still updating")
        assert T0 not in ws.books_valid
    finally:
        await ws.stop()


# ------------------------------------------------------------------------------ orders ----


def order(symbol: str, outcome: Outcome, price: int, qty: int, tif: TimeInForce) -> OrderRequest:
    return OrderRequest(symbol, outcome, Price(price), Qty(qty), tif, f"arb-{uuid.uuid4()}")


async def test_ioc_partial_fill_exact_costs_and_fees(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)  # NO bids 0.56×3.5, 0.55×7 → YES asks 0.44×3.5, 0.45×7
    oc = KalshiOrderClient(rest, {"fed": T0}, ws_url=venue.exchange.ws_url)
    await oc.start_stream()
    req = order("fed", Outcome.YES, 4400, 1000, TimeInForce.IOC)
    r = await oc.place_limit(req, 5)
    assert r.state is OrderState.CANCELLED and r.filled_qty == 350
    await eventually(lambda: len(oc.stream_fills(r.venue_order_id)) == 1)
    st0 = await oc.order_status(req.client_order_id)  # REST order totals are exact too
    assert st0 is not None and st0.filled_cost == 4400 * 350
    # 0.07 × 3.5 × 0.44 × 0.56 = 0.060368 → rounded up to the cent.
    assert st0.fees == 70_000
    # Buying NO at 0.60 takes the YES bid at 0.41 (NO ask 0.59) and 0.40 (NO ask 0.60).
    req2 = order("fed", Outcome.NO, 6000, 1200, TimeInForce.IOC)
    r2 = await oc.place_limit(req2, 5)
    assert r2.state is OrderState.FILLED and r2.filled_qty == 1200
    if not r2.costs_final:  # the stream's fills had not arrived before the response
        assert r2.filled_cost == 6000 * 1200  # conservative: limit × filled
        await eventually(lambda: len(oc.stream_fills(r2.venue_order_id)) == 2)
        r2 = await oc.place_limit(req2, 5)  # 409 → one lookup finds it
    st2 = await oc.order_status(req2.client_order_id)
    assert st2 is not None and st2.filled_cost == 5900 * 500 + 6000 * 700
    assert sum(f.price * f.qty for f in oc.stream_fills(r2.venue_order_id)) == st2.filled_cost
    await oc.stop_stream()
    fills = await oc.fills(req.client_order_id)
    assert [(f.price, f.qty, f.outcome) for f in fills] == [(4400, 350, Outcome.YES)]
    assert sum(f.fee for f in fills) == r.fees
    # Netted: 3.5 YES vs 12 NO → 8.5 NO.
    assert await oc.positions() == {("fed", Outcome.NO): Qty(850)}
    bal = await oc.balance()
    pair_payout = 350 * 10_000
    spent = r.filled_cost + r.fees + r2.filled_cost + r2.fees
    assert bal == 1_000 * 1_000_000 - spent + pair_payout
    st = await oc.order_status(req.client_order_id)
    assert st is not None and st.filled_qty == 350 and st.venue_order_id == r.venue_order_id
    assert await oc.order_status("never-sent") is None


async def test_fok_is_all_or_nothing(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)
    oc = KalshiOrderClient(rest, {"fed": T0})
    r = await oc.place_limit(order("fed", Outcome.YES, 4500, 1100, TimeInForce.FOK), 5)
    assert r.state is OrderState.CANCELLED and r.filled_qty == 0 and r.filled_cost == 0
    assert venue.exchange.engine.markets[T0].ladder("no") == [(5500, 700), (5600, 350)]
    r2 = await oc.place_limit(order("fed", Outcome.YES, 4500, 1050, TimeInForce.FOK), 5)
    assert r2.state is OrderState.FILLED and r2.filled_qty == 1050
    assert venue.exchange.engine.markets[T0].ladder("no") == []


async def test_409_is_resolved_by_fetching_never_resent(
    venue: Venue, rest: KalshiRestClient
) -> None:
    seed(venue)
    oc = KalshiOrderClient(rest, {"fed": T0})
    req = order("fed", Outcome.YES, 4400, 100, TimeInForce.IOC)
    first = await oc.place_limit(req, 5)
    # A fresh client (e.g. after a restart) sends the same deterministic id again.
    oc2 = KalshiOrderClient(rest, {"fed": T0})
    again = await oc2.place_limit(req, 5)
    assert again.venue_order_id == first.venue_order_id
    assert again.filled_qty == first.filled_qty == 100
    assert venue.exchange.orders_created[req.client_order_id] == 1
    assert venue.exchange.order_posts[req.client_order_id] == 2


async def test_429_backs_off_without_duplicating(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)
    oc = KalshiOrderClient(rest, {"fed": T0})
    venue.exchange.fail_next_requests(3, status=429)
    req = order("fed", Outcome.YES, 4400, 100, TimeInForce.IOC)
    r = await oc.place_limit(req, 5)
    assert r.filled_qty == 100
    assert rest.rate_limited == 3
    assert venue.exchange.orders_created[req.client_order_id] == 1


async def test_500_on_a_write_is_not_resent(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)
    oc = KalshiOrderClient(rest, {"fed": T0})
    venue.exchange.fail_next_requests(1, status=500)
    req = order("fed", Outcome.YES, 4400, 100, TimeInForce.IOC)
    with pytest.raises(VenueError) as ei:
        await oc.place_limit(req, 5)
    assert ei.value.retryable
    assert venue.exchange.order_posts[req.client_order_id] == 1
    assert venue.exchange.orders_created[req.client_order_id] == 0
    # GETs are retried through a 500.
    venue.exchange.fail_next_requests(2, status=500)
    assert (await rest.get_balance()).balance == 1_000 * 1_000_000


async def test_rejections_and_delays(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)
    oc = KalshiOrderClient(rest, {"fed": T0})
    venue.exchange.reject_next_order(400, "market_closed", "closed")
    r = await oc.place_limit(order("fed", Outcome.YES, 4400, 100, TimeInForce.IOC), 5)
    assert r.state is OrderState.REJECTED and "market_closed" in r.reason
    # Off-grid price (linear_cent) is a 400 from the venue.
    r = await oc.place_limit(order("fed", Outcome.YES, 4405, 100, TimeInForce.IOC), 5)
    assert r.state is OrderState.REJECTED
    # A delayed order that outlives the caller's timeout raises (ambiguous): the client
    # neither looks nor resends; the executor's later read finds it.
    venue.exchange.delay_next_order(300)
    req = order("fed", Outcome.YES, 4400, 100, TimeInForce.IOC)
    with pytest.raises(TimeoutError):
        await oc.place_limit(req, 0.05)
    await eventually(lambda: venue.exchange.orders_created[req.client_order_id] == 1)
    st = await oc.order_status(req.client_order_id)
    assert st is not None and st.filled_qty == 100
    assert venue.exchange.order_posts[req.client_order_id] == 1


async def test_gtc_rests_then_fills_and_cancel(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)
    c = await rest.create_order_v2(
        ticker=T0,
        side="bid",
        count=Qty(200),
        price=Price(4300),
        time_in_force="good_till_canceled",
        client_order_id="gtc-1",
    )
    assert c.fill_count == 0 and c.remaining_count == 200
    assert (await rest.get_orderbook(T0)).yes[-1] == (4300, 200)  # best bid is last
    # A maker NO bid at 0.57 crosses it: the resting order fills at its own price 0.43.
    venue.ladder(T0, Outcome.NO, ("0.57", "1.5"))
    o = await rest.get_order(c.order_id)
    assert o.fill_count == 150 and o.maker_fill_cost == 4300 * 150 and o.status == "resting"
    oc = KalshiOrderClient(rest, {"fed": T0})
    r = await oc.cancel("gtc-1", 5)
    assert r.state is OrderState.CANCELLED and r.filled_qty == 150
    assert (await rest.get_orderbook(T0)).yes[-1] == (4100, 500)


async def test_markets_endpoints(venue: Venue, rest: KalshiRestClient) -> None:
    seed(venue)
    m = await rest.get_market(T0)
    assert m.status == "active" and m.close_time is not None
    assert m.yes_bid == 4100 and m.yes_ask == 4400 and m.price_ranges == ((100, 9900, 100),)
    venue.exchange.set_market_status(T1, "closed")
    open_ = await rest.get_markets(status="open")
    assert {x.ticker for x in open_} == {T0, T2}
    assert [x.ticker for x in await rest.get_markets(tickers=[T1])] == [T1]


async def test_place_limit_latency_figure(venue: Venue, rest: KalshiRestClient) -> None:
    """Not an assertion on speed: records call → first request byte for the report."""
    seed(venue)
    marks: list[int] = []

    async def hook(request: httpx.Request) -> None:
        marks.append(time.perf_counter_ns())

    fast = KalshiRestClient(
        venue.exchange.rest_url, venue.auth, write_tokens_per_s=1e6, event_hooks={"request": [hook]}
    )
    oc = KalshiOrderClient(fast, {"fed": T0})
    samples = []
    for _ in range(20):
        venue.ladder(T0, Outcome.NO, ("0.56", "100"))
        t0 = time.perf_counter_ns()
        marks.clear()
        await oc.place_limit(order("fed", Outcome.YES, 4400, 100, TimeInForce.IOC), 5)
        samples.append(marks[0] - t0)
    await fast.aclose()
    samples.sort()
    print(f"place_limit call → request hook p50 {samples[len(samples) // 2] / 1e3:.0f} µs")
    assert samples[0] > 0


async def test_place_limit_does_not_read_after_a_fill(venue: Venue) -> None:
    """The create response's fill_count is the venue's word: no follow-up GET (which could
    fail or lag) sits between a fill and the executor's next step."""
    seed(venue)

    armed = [True]

    async def after_post(resp: httpx.Response) -> None:
        if resp.request.method == "POST" and armed[0]:
            armed[0] = False
            venue.exchange.fail_next_requests(100, status=500)

    rest = KalshiRestClient(
        venue.exchange.rest_url,
        venue.auth,
        max_retries=1,
        backoff_base_s=0.001,
        event_hooks={"response": [after_post]},
    )
    try:
        oc = KalshiOrderClient(rest, {"fed": T0})
        req = order("fed", Outcome.YES, 4400, 100, TimeInForce.IOC)
        r = await oc.place_limit(req, 5)
        assert r.state is OrderState.FILLED and r.filled_qty == 100
        assert not r.costs_final and r.filled_cost == 4400 * 100  # bound: limit × qty
        assert venue.exchange.requests["GET /trade-api/v2/portfolio/orders/{order_id}"] == 0
        venue.exchange.fail_next_requests(0)
        again = await KalshiOrderClient(rest, {"fed": T0}).place_limit(req, 5)
        assert again.filled_qty == 100 and again.filled_cost == 4400 * 100
        assert venue.exchange.orders_created[req.client_order_id] == 1
    finally:
        await rest.aclose()
