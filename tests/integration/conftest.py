"""Fixtures: both local venues on loopback with a key generated at run time, and the rig."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from arbkit.gateways.kalshi_auth import KalshiAuth

from .rig import Rig, Venues, new_key


@pytest.fixture(scope="session")
def test_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, str]:
    """One RSA key pair per session (generation is the slow part); never committed."""
    return new_key(tmp_path_factory.mktemp("integration-keys"))


@pytest.fixture
async def venues(test_key: tuple[str, Path, str]) -> AsyncIterator[Venues]:
    key_id, path, pem = test_key
    v = await Venues(key_id, path, pem).start()
    try:
        yield v
    finally:
        await v.stop()


@pytest.fixture
def auth(test_key: tuple[str, Path, str]) -> KalshiAuth:
    return KalshiAuth.from_key_file(test_key[0], test_key[1])


@pytest.fixture
async def rig(venues: Venues, auth: KalshiAuth, tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(
        venues.exchange.rest_url,
        venues.exchange.ws_url,
        auth,
        venues.tws.port,
        tmp_path / "journal.sqlite",
    )
    await r.start()
    try:
        yield r
    finally:
        await r.stop()
