"""Kalshi's official Python SDK (PyPI ``kalshi-python-sync``, the current generated client;
it needs Python >= 3.13) against the local exchange, each response deserialised into the
SDK's typed pydantic models. The SDK lives in its own venv, ``.venv-conformance-313/`` in
the repository root (git-ignored), built by ``make`` (the ``$(SDK313)`` step that ``make
test`` and ``make conformance`` depend on), so this test never downloads anything under
``make test``. With ``CONFORMANCE_ALLOW_INSTALL=1`` (set by ``make conformance``) a missing
venv is built here. Without a Python 3.13 interpreter the test skips, saying so.

The script (kalshi_sdk_script.py) runs every call once; each call is one test here, so a
call whose response the SDK rejects can be marked with its own finding.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import STATS, TICKERS, KalshiVenue, LoopThread, RsaKey, start_kalshi

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-conformance-313"
SDK_PIN = "kalshi-python-sync==3.34.0"
SCRIPT = Path(__file__).with_name("kalshi_sdk_script.py")
CALLS = [
    "get_exchange_status",
    "get_series_fee_changes",
    "get_markets",
    "get_market",
    "get_market_orderbook",
    "get_trades",
    "get_series",
    "get_event",
    "get_historical_cutoff",
    "create_order_v2 (resting)",
    "get_order",
    "get_orders",
    "cancel_order_v2",
    "create_order_v2 (filling)",
    "get_balance",
    "get_positions",
    "get_fills",
    "get_settlements",
    "get_historical_orders",
    "get_fills_historical",
]
# call → the SDK's finding, for calls whose response the official client rejects today.
KNOWN: dict[str, str] = {}


def find_python313() -> str | None:
    """A working python3.13: on PATH, or a pyenv build (the shim fails when 3.13 is not the
    selected pyenv version)."""
    candidates = [shutil.which("python3.13") or ""]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.13*/bin/python3.13"))
    for c in candidates:
        if c and subprocess.run([c, "-c", ""], capture_output=True).returncode == 0:
            return c
    return None


def sdk_python() -> Path:
    py = VENV / "bin" / "python"
    ready = (
        py.exists()
        and subprocess.run(
            [str(py), "-c", "import kalshi_python_sync"], capture_output=True
        ).returncode
        == 0
    )
    if ready:
        return py
    interpreter = find_python313()
    if interpreter is None:
        pytest.skip("no Python 3.13 interpreter here: kalshi-python-sync needs Python >= 3.13")
    if os.environ.get("CONFORMANCE_ALLOW_INSTALL") != "1":
        pytest.skip(f"{VENV.name}/ is not built: run `make conformance-sdk` (or make test)")
    subprocess.run([interpreter, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", SDK_PIN], check=True)
    return py


@pytest.fixture(scope="module")
def sdk_results(loop_thread: LoopThread, rsa_key: RsaKey) -> Iterator[dict[str, str]]:
    py = sdk_python()
    exchange = start_kalshi(loop_thread, rsa_key)
    venue = KalshiVenue(loop_thread, exchange, rsa_key)
    venue.book(TICKERS[0], yes=[("0.40", 10), ("0.38", 20)], no=[("0.55", 15)])
    try:
        proc = subprocess.run(
            [str(py), str(SCRIPT), exchange.rest_url, rsa_key.key_id,
             str(rsa_key.private_path), TICKERS[0]],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        loop_thread.run(exchange.stop())
    assert proc.returncode == 0, proc.stderr[-3000:]
    results: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    STATS.counts["official SDK calls"] += len(results)
    STATS.counts["official SDK calls ok"] += sum(v == "ok" for v in results.values())
    yield results


def test_script_ran_every_call(sdk_results: dict[str, str]) -> None:
    assert sorted(sdk_results) == sorted(CALLS)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(
            c, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[c])] if c in KNOWN else []
        )
        for c in CALLS
    ],
)
def test_sdk_call_deserialises(sdk_results: dict[str, str], call: str) -> None:
    assert sdk_results.get(call) == "ok", sdk_results.get(call)
