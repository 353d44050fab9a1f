"""Secrets never reach logs, DB rows, capture files or notebook outputs; the local
exchange rejects wrong keys, skewed timestamps and wrong paths (REST and WebSocket)."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from arbkit.config.execution_loader import ExecutionConfig
from arbkit.gateways.kalshi_auth import KalshiAuth, generate_key_pair
from arbkit.gateways.kalshi_rest import KalshiApiError, KalshiRestClient
from arbkit.model import Mode
from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor, IbkrEndpoint, KalshiEndpoint
from arbkit.sim.local import LocalVenues

REPO = Path(__file__).resolve().parents[2]


def secrets_of(key_id: str, key_file: Path) -> list[bytes]:
    """The key id, and distinctive chunks of the private key (PEM body and raw DER)."""
    pem = key_file.read_text()
    body = "".join(line for line in pem.splitlines() if "-----" not in line)
    der = base64.b64decode(body)
    chunks = [body[i : i + 40].encode() for i in range(0, len(body) - 40, 200)]
    chunks += [der[i : i + 24] for i in range(0, len(der) - 24, 300)]
    return [key_id.encode(), b"PRIVATE KEY", *chunks]


def leaks(blob: bytes, secrets: list[bytes]) -> list[str]:
    return [s[:12].decode("latin-1") + "…" for s in secrets if s in blob]


async def test_secrets_never_in_logs_db_or_captures(tmp_path: Path) -> None:
    log_file = tmp_path / "arbkit.log"  # INFO and up: what `arbkit -v` writes
    debug_file = tmp_path / "arbkit-debug.log"  # everything, third-party DEBUG included
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.INFO)
    debug_handler = logging.FileHandler(debug_file)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.addHandler(debug_handler)
    root.setLevel(logging.DEBUG)
    try:
        async with LocalVenues(3, seed=5, updates_per_s=400, dislocation_rate_per_min=120,
                               data_dir=tmp_path / "sim") as lv:  # fmt: skip
            info = lv.info
            assert info is not None and lv.auth is not None
            mon = ArbitrageMonitor(
                lv.symbol_map,
                ExecutionConfig(mode=Mode.PAPER),
                kalshi=KalshiEndpoint(info.kalshi_rest_url, info.kalshi_ws_url, lv.auth),
                ibkr=IbkrEndpoint(port=info.tws_port, cache_path=None),
                db_path=tmp_path / "arbkit.sqlite",
                record_path=tmp_path / "capture.jsonl",
            )
            await mon.start()
            await asyncio.sleep(2.0)
            logging.getLogger("test").info("auth in a log line: %s / %r", lv.auth, mon.kalshi_rest)
            # a failing authenticated request logs and raises: no key material either way
            wrong = KalshiAuth(str(uuid.uuid4()), lv.auth._key)
            bad = KalshiRestClient(info.kalshi_rest_url, wrong, max_retries=0)
            with pytest.raises(KalshiApiError) as err:
                await bad.get_balance()
            logging.getLogger("test").warning("failure: %s", err.value)
            await bad.aclose()
            snap = mon.snapshot()
            await mon.stop()
            secrets = secrets_of(info.kalshi_key_id, info.kalshi_key_file)
            assert snap.counters["ticks"] > 0
    finally:
        for h in (handler, debug_handler):
            root.removeHandler(h)
            h.close()
        root.setLevel(old_level)
    assert b"KALSHI-ACCESS" not in log_file.read_bytes()
    files = [log_file, tmp_path / "capture.jsonl", *sorted(tmp_path.glob("arbkit.sqlite*"))]
    scanned = 0
    for f in files:
        blob = f.read_bytes()
        scanned += len(blob)
        assert not leaks(blob, secrets), (f.name, leaks(blob, secrets))
    assert (tmp_path / "capture.jsonl").stat().st_size > 0 and scanned > 10_000
    assert info.kalshi_key_id[:4] + "…" in log_file.read_text()  # the repr shows 4 chars only
    assert oct(info.kalshi_key_file.stat().st_mode & 0o777) == "0o600"
    debug = debug_file.read_bytes()
    assert b"PRIVATE KEY" not in debug
    # websockets' own DEBUG logger prints every handshake header; the gateway hands it a
    # logger that redacts the KALSHI-ACCESS-* values.
    assert not leaks(debug, secrets), leaks(debug, secrets)
    for line in debug.splitlines():
        if b"KALSHI-ACCESS-" in line:
            assert line.rstrip().endswith(b"<redacted>"), line[:120]


def test_notebook_outputs_carry_no_key_material() -> None:
    for nb in REPO.glob("**/*.ipynb"):
        if ".venv" in nb.parts or ".ipynb_checkpoints" in nb.parts:
            continue
        text = nb.read_bytes()
        for marker in (b"PRIVATE KEY", b"KALSHI-ACCESS-SIGNATURE", b'KALSHI-ACCESS-KEY\\"'):
            assert marker not in text, (nb, marker)


# ------------------------------------------------------------ the exchange's checks ---
async def test_exchange_rejects_wrong_keys_skew_and_paths(
    tmp_path: Path, test_key: tuple[str, Path, str]
) -> None:
    from arbkit.sim.kalshi_exchange import KalshiExchange

    key_id, key_path, pem = test_key
    ex = KalshiExchange(max_clock_skew_ms=5_000)
    ex.register_key(key_id, pem)
    await ex.start()
    good = KalshiAuth.from_key_file(key_id, key_path)
    other_private, _ = generate_key_pair(tmp_path / "other.pem")
    wrong_key = KalshiAuth(key_id, other_private)  # right id, wrong private key
    unknown = KalshiAuth(str(uuid.uuid4()), good._key)
    path = "/trade-api/v2/portfolio/balance"
    url = ex.rest_url + "/portfolio/balance"
    now_ms = time.time_ns() // 1_000_000
    cases = {
        "ok": good.headers("GET", path),
        "wrong private key": wrong_key.headers("GET", path),
        "unknown key id": unknown.headers("GET", path),
        "skewed +10 s": good.headers("GET", path, timestamp_ms=now_ms + 10_000),
        "skewed -10 s": good.headers("GET", path, timestamp_ms=now_ms - 10_000),
        "signed another path": good.headers("GET", "/trade-api/v2/portfolio/positions"),
        "signed another method": good.headers("POST", path),
        "no signature": {k: v for k, v in good.headers("GET", path).items() if "SIGN" not in k},
    }
    try:
        async with httpx.AsyncClient() as http:
            for name, headers in cases.items():
                r = await http.get(url, headers=headers)
                assert r.status_code == (200 if name == "ok" else 401), (name, r.status_code)
        ws_path = "/trade-api/ws/v2"
        async with connect(ex.ws_url, additional_headers=good.headers("GET", ws_path)):
            pass
        for headers in (
            wrong_key.headers("GET", ws_path),
            good.headers("GET", ws_path, timestamp_ms=now_ms - 60_000),
            good.headers("GET", path),
        ):
            with pytest.raises(InvalidStatus) as err:
                async with connect(ex.ws_url, additional_headers=headers):
                    pass
            assert err.value.response.status_code == 401
        assert sum(ex.auth_failures.values()) == len(cases) - 1 + 3
    finally:
        await ex.stop()
