"""KalshiNormalizer: every orderbook sample (current + legacy), seq rules, bad frames, fuzz."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbkit.model import NormalizedTick, Outcome, TickKind
from arbkit.normalizers.kalshi_normalizer import KalshiNormalizer

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi" / "samples"
TICKER = "FED-23DEC-T3.00"
SYM = "FED-DEC-3"


def load(name: str) -> str:
    return (SAMPLES / name).read_text()


def norm(use_yes_price: bool = False) -> KalshiNormalizer:
    return KalshiNormalizer({TICKER: SYM}, use_yes_price=use_yes_price)


def levels(ticks: list[NormalizedTick], outcome: Outcome) -> list[tuple[int, int]]:
    return [(t.price, t.size) for t in ticks if t.kind is TickKind.LEVEL and t.outcome is outcome]


def frame(typ: str, sid: int, seq: int, **msg: Any) -> str:
    return json.dumps(
        {"type": typ, "sid": sid, "seq": seq, "msg": {"market_ticker": TICKER, **msg}}
    )


def delta(sid: int, seq: int, price: str, d: str, side: str) -> str:
    return frame("orderbook_delta", sid, seq, price_dollars=price, delta_fp=d, side=side)


SNAPSHOTS = [
    "ws_orderbook_snapshot_current.json",
    "ws_orderbook_snapshot_docs_page.json",
    "ws_orderbook_snapshot_legacy_2026-03.json",
]


@pytest.mark.parametrize("name", SNAPSHOTS)
def test_snapshot_samples_give_expected_book(name: str) -> None:
    n = norm()
    upd = n.on_message(load(name), 7)
    assert upd.errors == [] and n.bad_frames == 0
    assert upd.ticks[0].kind is TickKind.RESET and upd.ticks[0].valid
    # YES asks = 1 − NO bids (0.56 → 0.44, 0.54 → 0.46); NO asks = 1 − YES bids.
    assert levels(upd.ticks, Outcome.YES) == [(4400, 14600), (4600, 2000)]
    assert levels(upd.ticks, Outcome.NO) == [(7800, 33300), (9200, 30000)]
    assert n.book(TICKER) == ([(2200, 33300), (800, 30000)], [(5600, 14600), (5400, 2000)])
    assert n.is_valid(TICKER)


def test_legacy_cents_only_snapshot_parses() -> None:
    raw = json.loads(load("ws_orderbook_snapshot_legacy_2026-03.json"))
    for k in ("yes_dollars", "no_dollars", "yes_dollars_fp", "no_dollars_fp"):
        del raw["msg"][k]
    n = norm()
    n.on_message(json.dumps(raw), 1)
    assert n.book(TICKER) == ([(2200, 33300), (800, 30000)], [(5600, 14600), (5400, 2000)])


@pytest.mark.parametrize(
    "name",
    [
        "ws_orderbook_delta_current.json",
        "ws_orderbook_delta_docs_page.json",
        "ws_orderbook_delta_legacy_2026-03.json",
    ],
)
def test_delta_samples(name: str) -> None:
    # The sample removes 54 contracts at YES 0.96, a level the sample snapshot lacks: it is a
    # negative resulting level, so the book must be invalidated and resynced.
    n = norm()
    n.on_message(load("ws_orderbook_snapshot_current.json"), 1)
    upd = n.on_message(load(name), 2)
    assert n.bad_frames == 1 and not n.is_valid(TICKER)
    assert upd.ticks[0].kind is TickKind.RESET and not upd.ticks[0].valid
    assert upd.resync and upd.resync[0].tickers == (TICKER,) and upd.resync[0].sid == 2
    # With the level present it applies exactly: 100 − 54 = 46 → NO ask at 0.04.
    n2 = norm()
    n2.on_message(load("ws_orderbook_snapshot_current.json"), 1)
    # seq 3 after snapshot seq 2 — but first add 100 at 0.96? that would cross; use NO side.
    raw = json.loads(load(name))
    raw["msg"]["side"] = "no"
    raw["msg"]["price_dollars"] = "0.5600"
    raw["msg"].pop("price", None)
    raw["msg"]["delta_fp"] = "-54.00"
    raw["msg"].pop("delta", None)
    upd2 = n2.on_message(json.dumps(raw), 3)
    assert n2.bad_frames == 0
    assert levels(upd2.ticks, Outcome.YES) == [(4400, 9200)]
    if "ts_ms" in raw["msg"]:
        assert upd2.ticks[0].venue_ts_ns == 1669149841000 * 1_000_000


def test_rest_orderbook_sample_as_snapshot() -> None:
    body = json.loads(load("rest_get_market_orderbook_response.json"))["orderbook_fp"]
    snap = {
        "type": "orderbook_snapshot",
        "sid": 1,
        "seq": 1,
        "msg": {
            "market_ticker": TICKER,
            "market_id": "x",
            "yes_dollars_fp": body["yes_dollars"],
            "no_dollars_fp": body["no_dollars"],
        },
    }
    n = norm()
    upd = n.on_message(json.dumps(snap), 1)
    assert n.bad_frames == 0
    yes_asks = levels(upd.ticks, Outcome.YES)
    assert yes_asks[0] == (4400, 1700)  # 1 − 0.56
    assert levels(upd.ticks, Outcome.NO)[0] == (5800, 1300)  # 1 − 0.42


def test_delta_stream_exact_and_removal() -> None:
    n = norm()
    n.on_message(load("ws_orderbook_snapshot_current.json"), 1)  # seq 2
    u = n.on_message(delta(2, 3, "0.2200", "-333.00", "yes"), 2)
    assert levels(u.ticks, Outcome.NO) == [(7800, 0)]
    u = n.on_message(delta(2, 4, "0.3", "0.01", "yes"), 3)
    assert levels(u.ticks, Outcome.NO) == [(7000, 1)]
    u = n.on_message(delta(2, 5, "0.3000", "2.5", "yes"), 3)
    assert levels(u.ticks, Outcome.NO) == [(7000, 251)]
    assert n.book(TICKER)[0] == [(3000, 251), (800, 30000)]


def test_use_yes_price_mirrors_no_side() -> None:
    raw = json.loads(load("ws_orderbook_snapshot_current.json"))
    raw["msg"]["no_dollars_fp"] = [["0.4600", "20.00"], ["0.4400", "146.00"]]  # yes-leg pricing
    n = norm(use_yes_price=True)
    upd = n.on_message(json.dumps(raw), 1)
    assert levels(upd.ticks, Outcome.YES) == [(4400, 14600), (4600, 2000)]
    u = n.on_message(delta(2, 3, "0.4400", "-46.00", "no"), 2)  # no-leg 0.56
    assert levels(u.ticks, Outcome.YES) == [(4400, 10000)]


@pytest.mark.parametrize("bad_seq", [2, 1, 5])  # duplicate, decrease, gap
def test_seq_problems_invalidate_every_book_on_the_sid(bad_seq: int) -> None:
    n = KalshiNormalizer({"A": "a", "B": "b", "C": "c"}, use_yes_price=False)
    for seq, t in ((1, "A"), (2, "B")):
        n.on_message(
            json.dumps(
                {
                    "type": "orderbook_snapshot",
                    "sid": 1,
                    "seq": seq,
                    "msg": {"market_ticker": t, "market_id": "m", "yes_dollars_fp": []},
                }
            ),
            0,
        )
    n.on_message(
        json.dumps(
            {
                "type": "orderbook_snapshot",
                "sid": 9,
                "seq": 1,
                "msg": {"market_ticker": "C", "market_id": "m"},
            }
        ),
        0,
    )
    bad = {
        "type": "orderbook_delta",
        "sid": 1,
        "seq": bad_seq,
        "msg": {"market_ticker": "A", "price_dollars": "0.5", "delta_fp": "1.00", "side": "yes"},
    }
    upd = n.on_message(json.dumps(bad), 5)
    assert n.gaps == 1
    resets = {t.symbol for t in upd.ticks if t.kind is TickKind.RESET and not t.valid}
    assert resets == {"a", "b"}
    assert not n.is_valid("A") and not n.is_valid("B") and n.is_valid("C")
    assert upd.resync[0].sid == 1 and upd.resync[0].tickers == ("A", "B")
    # Deltas on the invalid book are ignored, not applied.
    bad["seq"] = bad_seq + 1
    u2 = n.on_message(json.dumps(bad), 6)
    assert [t for t in u2.ticks if t.kind is TickKind.LEVEL] == []
    # A fresh snapshot (get_snapshot reply, same sid, next seq) makes A valid again.
    snap = {
        "type": "orderbook_snapshot",
        "sid": 1,
        "seq": bad_seq + 2,
        "id": 7,
        "msg": {"market_ticker": "A", "market_id": "m", "no_dollars_fp": [["0.4", "3"]]},
    }
    u3 = n.on_message(json.dumps(snap), 7)
    assert n.is_valid("A") and not n.is_valid("B")
    assert levels(u3.ticks, Outcome.YES) == [(6000, 300)]


def test_ok_frames_consume_seq_and_delete_markets_invalidates() -> None:
    n = KalshiNormalizer({"A": "a", "B": "b"}, use_yes_price=False)
    n.on_message('{"id":1,"type":"subscribed","msg":{"channel":"orderbook_delta","sid":1}}', 0)
    for seq, t in ((1, "A"), (2, "B")):
        n.on_message(
            json.dumps(
                {
                    "type": "orderbook_snapshot",
                    "sid": 1,
                    "seq": seq,
                    "msg": {"market_ticker": t, "market_id": "m"},
                }
            ),
            0,
        )
    upd = n.on_message('{"id":2,"sid":1,"seq":3,"type":"ok","msg":{"market_tickers":["A"]}}', 1)
    assert n.gaps == 0
    assert [(t.symbol, t.valid) for t in upd.ticks] == [("b", False)]
    assert n.is_valid("A")


def test_terminal_error_resubscribes() -> None:
    n = norm()
    n.on_message(load("ws_orderbook_snapshot_current.json"), 1)
    upd = n.on_message('{"id":0,"type":"error","sid":2,"msg":{"code":25,"msg":"overflow"}}', 2)
    assert upd.resync[0].resubscribe and upd.resync[0].tickers == (TICKER,)
    assert not n.is_valid(TICKER)


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        "[]",
        '{"type":"mystery","sid":2,"seq":3,"msg":{}}',
        '{"type":"orderbook_delta","sid":2,"seq":3,"msg":{}}',
        '{"type":"orderbook_delta","sid":2,"seq":3}',
        frame("orderbook_delta", 2, 3, price_dollars="0.5", side="yes"),
        frame("orderbook_delta", 2, 3, price_dollars="1.5", delta_fp="1.00", side="yes"),
        frame("orderbook_delta", 2, 3, price_dollars="0.5", delta_fp="1.001", side="yes"),
        frame("orderbook_delta", 2, 3, price_dollars="0.5", delta_fp="1.00", side="maybe"),
        frame("orderbook_delta", 2, 3, price_dollars="0.0800", delta_fp="-301.00", side="yes"),
        frame("orderbook_delta", 2, 3, price_dollars="0.9000", delta_fp="1.00", side="yes"),
        frame(
            "orderbook_snapshot", 2, 3, yes_dollars_fp=[["0.6", "1"]], no_dollars_fp=[["0.5", "1"]]
        ),
        frame("orderbook_snapshot", 2, 3, yes_dollars_fp=[["0.6", "-1"]]),
        frame("orderbook_snapshot", 2, 3, yes_dollars_fp="x"),
    ],
)
def test_bad_frames_are_counted_not_raised(raw: str) -> None:
    n = norm()
    n.on_message(load("ws_orderbook_snapshot_current.json"), 1)
    upd = n.on_message(raw, 2)
    assert n.bad_frames == 1, upd.errors
    assert upd.errors
    if TICKER in raw and "sid" in raw:
        assert not n.is_valid(TICKER)
        assert upd.resync, "the affected book must resync"


def test_invalidate_all() -> None:
    n = norm()
    n.on_message(load("ws_orderbook_snapshot_current.json"), 1)
    ticks = n.invalidate_all(5)
    assert [(t.symbol, t.kind, t.valid) for t in ticks] == [(SYM, TickKind.RESET, False)]
    assert not n.is_valid(TICKER)
    # After reconnect sids/seqs restart: seq 1 on sid 1 is fine.
    raw = json.loads(load("ws_orderbook_snapshot_current.json"))
    raw["sid"], raw["seq"] = 1, 1
    n.on_message(json.dumps(raw), 6)
    assert n.is_valid(TICKER) and n.gaps == 0


# ------------------------------------------------------------------- fuzz ------------

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["0.5", "0.9999", "1.00", "-1.00", "0.0000", "1e3", "NaN", "١٢.٠٠", "1_0.00"]),
)
_json = st.recursive(
    _json_leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)


def _mutations() -> st.SearchStrategy[str]:
    base = [json.loads(load(n)) for n in SNAPSHOTS] + [
        json.loads(load("ws_orderbook_delta_current.json")),
        json.loads(load("ws_orderbook_delta_legacy_2026-03.json")),
        json.loads(load("ws_ok_update_subscription.json")),
        json.loads(load("ws_error_code14_market_ticker_required.json")),
    ]
    keys = st.sampled_from(
        [
            *("type", "sid", "seq", "msg", "price_dollars", "delta_fp", "side", "market_ticker"),
            *("yes_dollars_fp", "no_dollars_fp", "yes", "no", "price", "delta", "code"),
        ]
    )

    @st.composite
    def mutate(draw: st.DrawFn) -> str:
        obj = json.loads(json.dumps(draw(st.sampled_from(base))))
        for _ in range(draw(st.integers(1, 4))):
            target = (
                obj if draw(st.booleans()) or not isinstance(obj.get("msg"), dict) else obj["msg"]
            )
            key = draw(keys)
            if draw(st.booleans()):
                target.pop(key, None)
            else:
                target[key] = draw(_json)
        text = json.dumps(obj)
        if draw(st.integers(0, 9)) == 0:
            cut = draw(st.integers(0, len(text)))
            text = text[:cut]
        return text

    return mutate()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(
        st.one_of(_mutations(), _json.map(json.dumps), st.binary(max_size=40)), max_size=8
    )
)
def test_fuzz_never_raises(frames: list[str | bytes]) -> None:
    n = norm()
    n.on_message(load("ws_orderbook_snapshot_current.json"), 1)
    for i, f in enumerate(frames):
        upd = n.on_message(f, i)
        assert isinstance(upd.ticks, list)
    yes, no = n.book(TICKER)
    assert all(q > 0 for _, q in yes + no)
    if n.is_valid(TICKER) and yes and no:
        assert yes[0][0] + no[0][0] < 10_000  # a valid book is never crossed


def test_legacy_integer_only_delta() -> None:
    n = norm()
    n.on_message(load("ws_orderbook_snapshot_current.json"), 1)
    raw = {
        "type": "orderbook_delta",
        "sid": 2,
        "seq": 3,
        "msg": {
            "market_ticker": TICKER,
            "market_id": "m",
            "price": 22,
            "delta": -33,
            "side": "yes",
        },
    }
    u = n.on_message(json.dumps(raw), 2)
    assert n.bad_frames == 0 and levels(u.ticks, Outcome.NO) == [(7800, 30000)]


def test_replayed_reconnect_without_invalidate_all_recovers() -> None:
    """A capture holds no disconnect marker: the new connection's seq restart is a decrease,
    which invalidates the sid's books until the new snapshots arrive."""
    n = KalshiNormalizer({"A": "a", "B": "b"}, use_yes_price=False)

    def snap(seq: int, t: str, yes: str) -> str:
        return json.dumps(
            {
                "type": "orderbook_snapshot",
                "sid": 1,
                "seq": seq,
                "msg": {"market_ticker": t, "market_id": "m", "yes_dollars_fp": [[yes, "1.00"]]},
            }
        )

    sub = '{"id":1,"type":"subscribed","msg":{"channel":"orderbook_delta","sid":1}}'
    for raw in (sub, snap(1, "A", "0.10"), snap(2, "B", "0.20")):
        n.on_message(raw, 0)
    for seq in range(3, 9):
        n.on_message(
            json.dumps(
                {
                    "type": "orderbook_delta",
                    "sid": 1,
                    "seq": seq,
                    "msg": {"market_ticker": "A", "price_dollars": "0.3", "delta_fp": "1.00",
                            "side": "yes"},
                }
            ),
            0,
        )  # fmt: skip
    # Reconnect: subscribed again, seq restarts at 1.
    n.on_message(sub, 1)
    upd = n.on_message(snap(1, "A", "0.15"), 1)
    assert not n.is_valid("B") and n.is_valid("A")
    assert ("b", False) in [(t.symbol, t.valid) for t in upd.ticks if t.kind is TickKind.RESET]
    n.on_message(snap(2, "B", "0.25"), 1)
    assert n.is_valid("B")
    assert n.book("A") == ([(1500, 100)], []) and n.book("B") == ([(2500, 100)], [])


def test_market_lifecycle_v2_events_and_gaps() -> None:
    """Lifecycle frames become events for mapped markets (their own seq: a gap asks for a
    re-read, books are not touched); Kalshi's own sample (another market) is ignored."""
    n = norm()
    upd = n.on_message(load("ws_market_lifecycle_v2_created.json"), 1)
    assert not upd.lifecycle and not upd.lifecycle_gap and not upd.errors
    first = n.on_message(frame("market_lifecycle_v2", 9, 1, event_type="deactivated",
                               is_deactivated=True), 2)  # fmt: skip
    [ev] = first.lifecycle
    assert (ev.ticker, ev.event_type, ev.is_deactivated) == (TICKER, "deactivated", True)
    det = n.on_message(
        frame("market_lifecycle_v2", 9, 2, event_type="determined", result="yes",
              settlement_value="1.0000", determination_ts=1_800_000_000), 3,
    )  # fmt: skip
    [ev] = det.lifecycle
    assert ev.result == "yes" and ev.settlement_value == 1_000_000
    assert ev.determination_ns == 1_800_000_000 * 1_000_000_000 and not det.lifecycle_gap
    gap = n.on_message(frame("market_lifecycle_v2", 9, 4, event_type="settled"), 4)
    assert gap.lifecycle_gap and gap.lifecycle[0].event_type == "settled"
    assert not gap.ticks  # books untouched
