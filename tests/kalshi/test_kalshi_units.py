"""Signing, error parsing, typed results (current + legacy shapes), and the CLI entry point."""

from __future__ import annotations

import asyncio
import base64
import json
import pickle
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kalshi_helpers import FIXTURES

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.config.execution_loader import FeeParams
from arbkit.gateways.kalshi_auth import (
    KalshiAuth,
    KalshiAuthError,
    generate_key_pair,
    load_public_key,
    message,
    verify,
)
from arbkit.gateways.kalshi_rest import (
    Balance,
    KalshiApiError,
    KalshiFill,
    KalshiOrder,
    KalshiRestClient,
    Orderbook,
)
from arbkit.model import Money, Outcome, Price, Qty
from arbkit.sim.kalshi_engine import LINEAR_CENT, MatchingEngine, OrderError, SimMarket

SAMPLES = FIXTURES / "samples"
_PEM = Ed25519PrivateKey.generate().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def test_signature_is_rsa_pss_sha256_over_ts_method_path(key_files: tuple[Path, str]) -> None:
    path, public_pem = key_files
    auth = KalshiAuth.from_key_file("key-1", path)
    h = auth.headers("get", "/trade-api/v2/portfolio/orders?limit=5", timestamp_ms=1703123456789)
    assert h["KALSHI-ACCESS-KEY"] == "key-1"
    assert h["KALSHI-ACCESS-TIMESTAMP"] == "1703123456789"
    msg = b"1703123456789GET/trade-api/v2/portfolio/orders"
    assert message(1703123456789, "get", "/trade-api/v2/portfolio/orders?limit=5") == msg
    pub = load_public_key(public_pem)
    # Verified independently with the documented parameters (salt = digest length).
    pub.verify(  # type: ignore[call-arg]
        base64.b64decode(h["KALSHI-ACCESS-SIGNATURE"]),
        msg,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )
    assert verify(pub, h["KALSHI-ACCESS-SIGNATURE"], msg)
    assert not verify(pub, h["KALSHI-ACCESS-SIGNATURE"], msg + b"x")
    assert not verify(pub, "not base64!!", msg)


def test_secrets_never_in_repr(key_files: tuple[Path, str]) -> None:
    path, _ = key_files
    auth = KalshiAuth.from_key_file("0123456789-secret-key-id", path)
    text = repr(auth) + str(auth) + repr(KalshiRestClient("http://127.0.0.1:1/trade-api/v2", auth))
    assert "secret-key-id" not in text and "BEGIN" not in text
    assert (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(TypeError):
        pickle.dumps(auth)


def test_from_env(key_files: tuple[Path, str]) -> None:
    path, _ = key_files
    a = KalshiAuth.from_env({"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY_PATH": str(path)})
    b = KalshiAuth.from_env({"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": path.read_text()})
    assert a.public_key_pem() == b.public_key_pem()
    with pytest.raises(KalshiAuthError):
        KalshiAuth.from_env({})
    with pytest.raises(KalshiAuthError):
        KalshiAuth.from_env({"KALSHI_API_KEY_ID": "k"})
    with pytest.raises(KalshiAuthError) as ei:
        KalshiAuth.from_env({"KALSHI_API_KEY_ID": "k", "KALSHI_PRIVATE_KEY": "-----BEGIN junk"})
    assert "junk" not in str(ei.value)


@pytest.mark.parametrize(
    ("name", "status", "code", "details"),
    [
        ("rest_error_401_authentication_error_not_found_observed.json", 401,
         "authentication_error", "NOT_FOUND"),
        ("rest_error_429_too_many_requests_observed.json", 429, "too_many_requests", ""),
        ("rest_error_response_schema_placeholder_docs.json", 400, "<string>", "<string>"),
    ],
)  # fmt: skip
def test_both_error_shapes_parse(name: str, status: int, code: str, details: str) -> None:
    e = KalshiApiError.from_response(status, (SAMPLES / name).read_bytes())
    assert (e.status, e.code, e.details) == (status, code, details)
    assert KalshiApiError.from_response(502, b"<html>bad gateway</html>").status == 502


def test_legacy_and_current_order_shapes() -> None:
    current = {
        "order_id": "o1",
        "client_order_id": "c1",
        "ticker": "T",
        "outcome_side": "no",
        "book_side": "ask",
        "status": "executed",
        "yes_price_dollars": "0.4100",
        "no_price_dollars": "0.5900",
        "fill_count_fp": "2.50",
        "remaining_count_fp": "0.00",
        "initial_count_fp": "2.50",
        "taker_fill_cost_dollars": "1.475000",
        "maker_fill_cost_dollars": "0.000000",
        "taker_fees_dollars": "0.0200",
        "maker_fees_dollars": "0",
    }
    o = KalshiOrder.from_json(current)
    assert (o.outcome_side, o.fill_count, o.taker_fill_cost, o.taker_fees) == (
        Outcome.NO,
        250,
        1_475_000,
        20_000,
    )
    legacy = {
        "order_id": "o1",
        "ticker": "T",
        "side": "yes",
        "action": "sell",
        "status": "executed",
        "yes_price": 41,
        "no_price": 59,
        "fill_count": 2,
        "remaining_count": 0,
        "taker_fill_cost": 118,
        "taker_fees": 2,
    }
    lo = KalshiOrder.from_json(legacy)
    assert (lo.outcome_side, lo.book_side, lo.yes_price, lo.fill_count, lo.taker_fees) == (
        Outcome.NO,
        "ask",
        4100,
        200,
        20_000,
    )


def test_fill_time_prefers_the_precise_stamp() -> None:
    """``ts`` is whole seconds: a fill at 12.75 s must not sort before 12.5 s (reconciliation
    filters fills by time), so ``ts_ms`` wins, then ``created_time`` (µs), then ``ts``."""
    base = {
        "trade_id": "t",
        "order_id": "o",
        "ticker": "T",
        "outcome_side": "yes",
        "book_side": "bid",
        "count_fp": "1.00",
        "yes_price_dollars": "0.4100",
        "no_price_dollars": "0.5900",
        "fee_cost": "0.0100",
    }
    created = {**base, "ts": 1700000012, "created_time": "2023-11-14T22:13:32.750001Z"}
    assert KalshiFill.from_json(created).ts_ns == 1700000012_750001_000
    naive = {**base, "created_time": "2023-11-14T22:13:32.750001"}  # no zone: UTC
    assert KalshiFill.from_json(naive).ts_ns == 1700000012_750001_000
    assert KalshiFill.from_json({**created, "ts_ms": 1700000012_760}).ts_ns == (
        1700000012_760_000_000
    )
    assert KalshiFill.from_json({**base, "ts": 1700000012}).ts_ns == 1700000012 * 10**9


def test_fill_balance_orderbook_shapes() -> None:
    f = KalshiFill.from_json(
        {
            "fill_id": "f",
            "trade_id": "t",
            "order_id": "o",
            "ticker": "T",
            "market_ticker": "T",
            "outcome_side": "no",
            "book_side": "ask",
            "count_fp": "1.00",
            "yes_price_dollars": "0.4100",
            "no_price_dollars": "0.5900",
            "is_taker": True,
            "fee_cost": "0.0100",
            "ts": 1700000000,
        }
    )
    assert (f.price, f.count, f.fee_cost, f.ts_ns) == (5900, 100, 10_000, 1700000000 * 10**9)
    assert Balance.from_json({"balance": 1234, "portfolio_value": 0, "updated_ts": 1}).balance == (
        12_340_000
    )
    ob = Orderbook.from_json(
        json.loads((SAMPLES / "rest_get_market_orderbook_response.json").read_text())
    )
    assert ob.yes[-1] == (4200, 1300) and ob.no[-1] == (5600, 1700)
    legacy = Orderbook.from_json({"orderbook": {"yes": [[42, 13]], "no": None}})
    assert legacy.yes == ((4200, 1300),) and legacy.no == ()


async def test_module_runs_standalone(tmp_path: Path) -> None:
    """``python -m arbkit.sim.kalshi_exchange`` prints a key id and serves signed requests."""
    key = tmp_path / "demo.pem"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arbkit.sim.kalshi_exchange",
        "--port",
        "0",
        "--key-file",
        str(key),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode() for _ in range(3)]
        rest_url = lines[0].split(" on ")[1].split(" and ")[0]
        key_id = lines[1].split(": ")[1].strip()
        async with KalshiRestClient(rest_url, KalshiAuth.from_key_file(key_id, key)) as rest:
            assert (await rest.get_balance()).balance == 10_000 * 1_000_000
            assert len(await rest.get_markets(status="open")) == 2
    finally:
        proc.terminate()
        await proc.wait()
    assert (key.stat().st_mode & 0o777) == 0o600


def test_generate_key_pair_rejects_unknown_type(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_key_pair(tmp_path / "x.pem", key_type="dsa")


# --------------------------------------------------------------- matching engine -------


def _engine(netting: bool = True) -> MatchingEngine:
    eng = MatchingEngine(FeeModel(FeeParams()), netting=netting, clock_ns=lambda: 1)
    eng.add_market(
        SimMarket("M", "S", "E", "active", 0, 10, list(LINEAR_CENT), "linear_cent", "M", "id")
    )
    for u in ("a", "b", "c"):
        eng.account(u).balance = Money(100 * 1_000_000)
    return eng


def test_price_time_priority_and_maker_fills() -> None:
    eng = _engine()
    first = eng.place("a", ticker="M", book_side="bid", yes_price=4000, count=300,
                      tif="good_till_canceled", client_order_id="a1")  # fmt: skip
    second = eng.place("b", ticker="M", book_side="bid", yes_price=4000, count=300,
                       tif="good_till_canceled", client_order_id="b1")  # fmt: skip
    better = eng.place("b", ticker="M", book_side="bid", yes_price=4100, count=100,
                       tif="good_till_canceled", client_order_id="b2")  # fmt: skip
    # c sells YES (buys NO) 4 contracts down to 0.40: best price first, then FIFO at 0.40.
    taker = eng.place("c", ticker="M", book_side="ask", yes_price=4000, count=400,
                      tif="immediate_or_cancel", client_order_id="c1")  # fmt: skip
    assert taker.fill == 400 and taker.taker_cost == 5900 * 100 + 6000 * 300
    assert (better.fill, first.fill, second.fill) == (100, 300, 0)
    assert first.status == "executed" and second.status == "resting"
    assert first.maker_cost == 4000 * 300 and first.maker_fees == 0  # quadratic: makers pay 0
    assert eng.markets["M"].ladder("yes") == [(4000, 300)]
    # 409 on a reused client_order_id.
    with pytest.raises(OrderError) as ei:
        eng.place("a", ticker="M", book_side="bid", yes_price=4000, count=1,
                  tif="immediate_or_cancel", client_order_id="a1")  # fmt: skip
    assert ei.value.status == 409


def test_netting_switch() -> None:
    for netting, expect in ((True, (0, 0)), (False, (100, 100))):
        eng = _engine(netting)
        eng.set_bids("M", Outcome.NO, [(Price(5000), Qty(100))])
        eng.place("a", ticker="M", book_side="bid", yes_price=5000, count=100,
                  tif="immediate_or_cancel", client_order_id="y")  # fmt: skip
        eng.set_bids("M", Outcome.YES, [(Price(4000), Qty(100))])
        eng.place("a", ticker="M", book_side="ask", yes_price=4000, count=100,
                  tif="immediate_or_cancel", client_order_id="n")  # fmt: skip
        pos = eng.account("a").positions["M"]
        assert (pos.yes, pos.no) == expect
        fees = pos.fees_paid
        paid = 5000 * 100 + 6000 * 100 + fees
        payout = 1_000_000 if netting else 0
        assert eng.account("a").balance == 100 * 1_000_000 - paid + payout


# ------------------------------------------------------------- gateway fuzz ------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frames=st.lists(
        st.one_of(
            st.text(max_size=60),
            st.binary(max_size=60),
            st.builds(
                lambda t, sid, seq, m: json.dumps({"type": t, "sid": sid, "seq": seq, "msg": m}),
                st.sampled_from(["orderbook_snapshot", "orderbook_delta", "ok", "error", "x"]),
                st.integers(-2, 3),
                st.integers(-2, 6),
                st.dictionaries(
                    st.sampled_from(["market_ticker", "price_dollars", "delta_fp", "side", "code",
                                     "yes_dollars_fp", "no_dollars_fp", "market_tickers"]),
                    st.one_of(st.just("KXA"), st.text(max_size=5), st.integers(), st.just([]),
                              st.just([["0.5", "1"]]), st.just(["KXA"])),
                ),
            ),
        ),
        max_size=12,
    )
)  # fmt: skip
def test_gateway_frame_handling_never_raises(frames: list[str | bytes]) -> None:
    from arbkit.gateways.kalshi_websocket import KalshiWebSocket

    got: list[int] = []
    raws: list[str] = []

    async def run() -> None:
        ws = KalshiWebSocket(
            "ws://127.0.0.1:9/trade-api/ws/v2",
            KalshiAuth.from_pem("k", _PEM),
            {"KXA": "a"},
            lambda ticks: got.append(len(ticks)),
            on_raw=lambda text, ns: raws.append(text),
        )
        for f in frames:
            await ws._on_frame(f)  # not connected: resync commands are dropped, not raised
        assert ws.health.bad_frames == ws.normalizer.bad_frames

    asyncio.run(run())
    assert len(raws) == len(frames)
