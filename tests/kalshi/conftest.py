"""Fixtures: a started local Kalshi exchange on 127.0.0.1:0 and keys generated at run time."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kalshi_helpers import TICKERS, Venue

from arbkit.gateways.kalshi_auth import KalshiAuth, generate_key_pair
from arbkit.gateways.kalshi_rest import KalshiRestClient
from arbkit.model import Money
from arbkit.sim.kalshi_exchange import KalshiExchange


@pytest.fixture(scope="session")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One RSA key pair per test session (2048-bit generation is the slow part)."""
    path = tmp_path_factory.mktemp("keys") / "kalshi.pem"
    _, public_pem = generate_key_pair(path)
    return path, public_pem


@pytest.fixture
async def venue(key_files: tuple[Path, str]) -> AsyncIterator[Venue]:
    path, public_pem = key_files
    key_id = str(uuid.uuid4())
    ex = KalshiExchange(max_clock_skew_ms=5_000, heartbeat_s=0.2)
    ex.register_key(key_id, public_pem)
    ex.fund(key_id, Money(1_000 * 1_000_000))
    for t in TICKERS:
        ex.add_market(t)
    await ex.start()
    v = Venue(ex, KalshiAuth.from_key_file(key_id, path), path)
    try:
        yield v
    finally:
        await ex.stop()


@pytest.fixture
async def rest(venue: Venue) -> AsyncIterator[KalshiRestClient]:
    client = KalshiRestClient(
        venue.exchange.rest_url,
        venue.auth,
        read_tokens_per_s=1_000,
        write_tokens_per_s=1_000,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
    )
    try:
        yield client
    finally:
        await client.aclose()
