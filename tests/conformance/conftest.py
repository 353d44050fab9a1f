"""Shared set-up for the conformance suite: the local venues run in a background thread
with their own event loop, so that synchronous third-party clients (schemathesis over
requests, ib_insync, IBKR's ibapi, the official Kalshi SDK in a subprocess) can talk to
them from the test's thread. Keys are generated at run time; none is ever written into
the repository (the private PEM lives in pytest's tmp dir, mode 0600).

The request signer here is written from Kalshi's documentation (RSA-PSS/SHA-256, salt =
digest length, over timestamp_ms + METHOD + path-without-query), not taken from arbkit.
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from arbkit.model import Money, Outcome, Price, Qty
from arbkit.sim.kalshi_exchange import KalshiExchange
from arbkit.sim.tws_server import TwsServer

T = TypeVar("T")


@dataclass
class Stats:
    """What the suite did, printed at the end of the run (docs/conformance.md quotes it)."""

    counts: Counter[str] = field(default_factory=Counter)
    operations: set[str] = field(default_factory=set)


STATS = Stats()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not STATS.counts and not STATS.operations:
        return
    tr = terminalreporter
    tr.section("conformance counts")
    tr.write_line(f"schemathesis operations covered: {len(STATS.operations)}")
    for k, v in sorted(STATS.counts.items()):
        tr.write_line(f"{k}: {v}")


TICKERS = ("KXCONF-26DEC31-T50", "KXCONF-26DEC31-T60")
FX_MARKET = "FF-CONF"
FX_YES, FX_NO = 713921696, 713921701
FX_SYMBOL, FX_LAST_TRADE, FX_STRIKE = "FF", "20271209", "3.625"


class LoopThread:
    """An asyncio loop in a daemon thread; ``run`` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run a plain (non-thread-safe) callable on the loop's thread."""

        async def _call() -> T:
            return fn()

        return self.run(_call(), timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


@dataclass
class RsaKey:
    key_id: str
    private: rsa.RSAPrivateKey
    public_pem: str
    private_path: Path

    def sign(self, method: str, url_or_path: str) -> dict[str, str]:
        path = urlsplit(url_or_path).path
        ts = str(int(time.time() * 1000))
        sig = self.private.sign(
            f"{ts}{method.upper()}{path}".encode(),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
            hashes.SHA256(),
        )
        return {
            "KALSHI-ACCESS-KEY": self.key_id,
            "KALSHI-ACCESS-TIMESTAMP": ts,
            "KALSHI-ACCESS-SIGNATURE": base64.b64encode(sig).decode(),
        }


def make_key(directory: Path) -> RsaKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path = directory / "kalshi-conformance.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return RsaKey(str(uuid.uuid4()), private, public_pem, path)


def px(p: str) -> Price:
    return Price(round(float(p) * 10_000))


def qty(n: int) -> Qty:
    return Qty(n * 100)


@dataclass
class KalshiVenue:
    loop: LoopThread
    exchange: KalshiExchange
    key: RsaKey

    def book(self, ticker: str, yes: list[tuple[str, int]], no: list[tuple[str, int]]) -> None:
        def _set() -> None:
            self.exchange.set_bids(ticker, Outcome.YES, [(px(p), qty(n)) for p, n in yes])
            self.exchange.set_bids(ticker, Outcome.NO, [(px(p), qty(n)) for p, n in no])

        self.loop.call(_set)


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


@pytest.fixture(scope="session")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> RsaKey:
    return make_key(tmp_path_factory.mktemp("conformance-keys"))


def start_kalshi(lt: LoopThread, key: RsaKey) -> KalshiExchange:
    async def _start() -> KalshiExchange:
        ex = KalshiExchange(max_clock_skew_ms=30_000, heartbeat_s=1.0)
        ex.register_key(key.key_id, key.public_pem)
        ex.fund(key.key_id, Money(1_000_000 * 1_000_000))
        for t in TICKERS:
            ex.add_market(t)
        await ex.start()
        return ex

    return lt.run(_start())


@pytest.fixture
def kalshi(loop_thread: LoopThread, rsa_key: RsaKey) -> Iterator[KalshiVenue]:
    ex = start_kalshi(loop_thread, rsa_key)
    venue = KalshiVenue(loop_thread, ex, rsa_key)
    venue.book(TICKERS[0], yes=[("0.40", 10), ("0.38", 20)], no=[("0.55", 15), ("0.50", 5)])
    venue.book(TICKERS[1], yes=[("0.20", 3)], no=[("0.70", 4)])
    try:
        yield venue
    finally:
        loop_thread.run(ex.stop())


@dataclass
class TwsVenue:
    loop: LoopThread
    server: TwsServer

    def book(self, yes: list[tuple[str, int]], no: list[tuple[str, int]]) -> None:
        def _set() -> None:
            self.server.set_bids(FX_MARKET, Outcome.YES, [(px(p), qty(n)) for p, n in yes])
            self.server.set_bids(FX_MARKET, Outcome.NO, [(px(p), qty(n)) for p, n in no])

        self.loop.call(_set)


def start_tws(lt: LoopThread, server_version: int) -> TwsVenue:
    async def _start() -> TwsServer:
        server = TwsServer(server_version=server_version)
        server.add_market(
            FX_MARKET, symbol=FX_SYMBOL, last_trade_date=FX_LAST_TRADE, strike=FX_STRIKE,
            yes_con_id=FX_YES, no_con_id=FX_NO, long_name="Fed funds target above 3.625%?",
        )  # fmt: skip
        await server.start()
        return server

    venue = TwsVenue(lt, lt.run(_start()))
    # YES bid 0.45 / NO bid 0.53: YES asked at 1.01 − 0.53 = 0.48, NO asked at 0.56
    venue.book(yes=[("0.45", 10), ("0.44", 25)], no=[("0.53", 8), ("0.52", 30)])
    return venue
