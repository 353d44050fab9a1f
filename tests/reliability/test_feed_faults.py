"""Market-data faults against the local venues: WebSocket dropped mid-stream 50 times,
1,000 injected seq gaps, duplicated and reordered frames, TWS connection drops.

Asserted: every gap detected (the normalizer's count equals the injected count), every
book rebuilt (at each quiescent point the normalizer's book equals the exchange's true
book and is valid), and zero opportunities decided on an invalid book (the rig records
any decision made while a ladder, the Kalshi feed or the IBKR connection was invalid) —
while the books keep moving through arb-able states so decisions do happen.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Outcome, Price, Qty, Venue
from tests.integration.rig import SYMBOL, TICKER, Rig, Venues

FAST_WS = {"reconnect_base_s": 0.005, "reconnect_max_s": 0.02, "resync_retry_s": 0.2}


@pytest.fixture
async def frig(venues: Venues, auth: KalshiAuth, tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(
        venues.exchange.rest_url,
        venues.exchange.ws_url,
        auth,
        venues.tws.port,
        tmp_path / "journal.sqlite",
        ws_kwargs=FAST_WS,
    )
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


def truth(venues: Venues) -> tuple[list[tuple[Price, Qty]], list[tuple[Price, Qty]]]:
    m = venues.exchange.engine.markets[TICKER]
    yes = [(Price(p), Qty(q)) for p, q in sorted(m.ladder("yes"), reverse=True)]
    no = [(Price(p), Qty(q)) for p, q in sorted(m.ladder("no"), reverse=True)]
    return yes, no


class Churn:
    """Moves the Kalshi book through random states, about a third of them arb-able
    (NO bid 0.60 → YES ask 0.40 against the ForecastEx NO ask 0.51)."""

    def __init__(self, venues: Venues, seed: int) -> None:
        self.venues = venues
        self.rng = random.Random(seed)
        self.i = 0

    def step(self) -> None:
        self.i += 1
        r = self.rng
        yes = [(f"0.{30 + k}", r.randint(1, 40)) for k in range(r.randint(1, 4))]
        top_no = "0.60" if r.random() < 0.35 else "0.55"
        no = [(top_no, r.randint(1, 40))] + [(f"0.{50 - k}", r.randint(1, 40)) for k in range(2)]
        self.venues.kalshi_book(yes=yes, no=no)


async def quiescent(rig: Rig, venues: Venues, what: str) -> None:
    n = rig.ws.normalizer
    await rig.until(
        lambda: n.is_valid(TICKER) and n.book(TICKER) == truth(venues),
        timeout_s=5.0,
        what=f"book rebuilt after {what}",
    )
    lad = rig.pipeline.book[SYMBOL].ladder(Venue.KALSHI, Outcome.YES)
    assert lad.valid


async def test_websocket_dropped_50_times(frig: Rig, venues: Venues) -> None:
    churn = Churn(venues, 1)
    await quiescent(frig, venues, "start")
    for i in range(50):
        for _ in range(5):
            churn.step()
        assert venues.exchange.drop_sockets() >= 1  # the market feed (+ the user stream)
        for _ in range(3):  # changes while the client is away: only a snapshot shows them
            churn.step()
        await quiescent(frig, venues, f"drop {i}")
    assert frig.ws.health.reconnects >= 50
    assert not frig.bad_decisions, frig.bad_decisions[:5]
    assert frig.decisions > 0
    print(f"\nWS-DROPS 50: reconnects={frig.ws.health.reconnects} decisions={frig.decisions}")


async def test_1000_injected_seq_gaps(frig: Rig, venues: Venues) -> None:
    churn = Churn(venues, 2)
    await quiescent(frig, venues, "start")
    n = frig.ws.normalizer
    base = n.gaps
    for i in range(1_000):
        venues.exchange.skip_seq(1)
        churn.step()  # the next sequenced frame skips a number
        if i % 4 == 3:
            await quiescent(frig, venues, f"gap {i}")
    await quiescent(frig, venues, "the last gap")
    assert n.gaps - base == 1_000
    assert not frig.bad_decisions, frig.bad_decisions[:5]
    assert frig.decisions > 0
    print(f"\nGAPS 1000: detected={n.gaps - base} resyncs={n.resyncs} decisions={frig.decisions}")


def _sub(venues: Venues) -> tuple[int, int]:
    # the market-data connection (the user stream has its own, without orderbook_delta)
    [sub] = [
        s for c in venues.exchange._conns for s in c.subs.values() if s.channel == "orderbook_delta"
    ]
    return sub.sid, sub.seq


def _delta(sid: int, seq: int, price: str, delta: str) -> str:
    msg = {"market_ticker": TICKER, "price_dollars": price, "delta_fp": delta, "side": "no"}
    return orjson.dumps({"type": "orderbook_delta", "sid": sid, "seq": seq, "msg": msg}).decode()


async def test_duplicated_and_reordered_frames(frig: Rig, venues: Venues) -> None:
    churn = Churn(venues, 3)
    await quiescent(frig, venues, "start")
    n = frig.ws.normalizer
    base = n.gaps
    for i in range(200):
        churn.step()
        await quiescent(frig, venues, f"churn {i}")
        sid, seq = _sub(venues)
        # a duplicate of the last frame's seq, carrying a change that must NOT be applied
        venues.exchange.inject_frame(_delta(sid, seq, "0.60", "5.00"))
        await quiescent(frig, venues, f"duplicate {i}")
        sid, seq = _sub(venues)
        # reordered: seq+2 arrives before seq+1 (the exchange's next real frame)
        venues.exchange.inject_frame(_delta(sid, seq + 2, "0.45", "3.00"))
        churn.step()
        await quiescent(frig, venues, f"reorder {i}")
    assert n.gaps - base == 600  # a duplicate is one gap; a reorder two (jump, then decrease)
    assert not frig.bad_decisions, frig.bad_decisions[:5]
    assert frig.decisions > 0
    print(f"\nDUP/REORDER 200+200: gaps={n.gaps - base} decisions={frig.decisions}")


async def test_tws_dropped_20_times(frig: Rig, venues: Venues) -> None:
    churn = Churn(venues, 4)
    b = frig.pipeline.book[SYMBOL]
    for i in range(20):
        churn.step()
        venues.tws.drop_connections()
        await frig.until(lambda: not b.ladder(Venue.IBKR, Outcome.NO).valid, what="invalid")
        venues.fx_book(yes=[("0.50", 10 + i)], no=[("0.45", 10)])
        want = [(5100, (10 + i) * 100)]
        await frig.until(
            lambda w=want: (
                frig.gw.connected and frig.quote(SYMBOL, Venue.IBKR, Outcome.NO)[:1] == w
            ),  # type: ignore[misc]
            what=f"TWS book rebuilt {i}",
        )
    assert frig.gw.health.reconnects >= 20
    assert not frig.bad_decisions, frig.bad_decisions[:5]
    print(f"\nTWS-DROPS 20: reconnects={frig.gw.health.reconnects} decisions={frig.decisions}")
