"""Figures for the report (not a test): create call → request bytes handed to the socket,
with and without pre-signed create headers, against the local exchange running in its own
process (so its work does not share the client's event loop).

    PYTHONPATH=. python tests/kalshi/presign_figures.py [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from arbkit.execution.venue import OrderRequest, TimeInForce
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.gateways.kalshi_orders import KalshiOrderClient
from arbkit.gateways.kalshi_rest import KalshiRestClient
from arbkit.model import Outcome, Price, Qty

TICKER = "KXDEMO-26DEC31-T50"


def pct(v: list[int], q: float) -> float:
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * q))] / 1e3


async def measure(url: str, auth: KalshiAuth, presign: bool, n: int) -> dict[str, list[int]]:
    marks: dict[str, int] = {}

    async def hook(_: httpx.Request) -> None:
        marks["hook"] = time.time_ns()

    rest = KalshiRestClient(
        url,
        auth,
        read_tokens_per_s=1e6,
        write_tokens_per_s=1e6,
        presign_orders=presign,
        event_hooks={"request": [hook]},
    )
    oc = KalshiOrderClient(rest, {"d": TICKER})
    out: dict[str, list[int]] = {"call→hook": [], "call→bytes": [], "call→response": []}
    try:
        await asyncio.sleep(0.1)
        for i in range(n + 20):
            # Resting far from the market: an accepted order that never fills (no state
            # build-up in the book), answered by the venue like any create.
            req = OrderRequest(
                "d", Outcome.YES, Price(100), Qty(100), TimeInForce.IOC, f"fig-{uuid.uuid4()}"
            )
            t0 = time.time_ns()
            r = await oc.place_limit(req, 5)
            t1 = time.time_ns()
            if i >= 20:
                out["call→hook"].append(marks["hook"] - t0)
                out["call→bytes"].append(r.sent_ns - t0)
                out["call→response"].append(t1 - t0)
            await asyncio.sleep(0.01)
    finally:
        await rest.aclose()
    return out


async def main(n: int) -> None:
    d = Path(tempfile.mkdtemp(prefix="arbkit-fig-"))
    port = 18_000 + uuid.uuid4().int % 20_000
    proc = subprocess.Popen(
        [sys.executable, "-m", "arbkit.sim.kalshi_exchange", "--port", str(port),
         "--key-file", str(d / "k.pem"), "--market", TICKER],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        key_id = ""
        for line in proc.stdout:
            m = re.search(r"demo key id: (\S+)", line)
            if m:
                key_id = m.group(1)
            if line.startswith("export"):
                break
        auth = KalshiAuth.from_key_file(key_id, d / "k.pem")
        url = f"http://127.0.0.1:{port}/trade-api/v2"
        t = time.perf_counter()
        for _ in range(200):
            auth.headers("POST", "/trade-api/v2/portfolio/events/orders")
        print(f"RSA-PSS sign + headers: {(time.perf_counter() - t) / 200 * 1e6:.0f} µs")
        for presign in (False, True, False, True):
            res = await measure(url, auth, presign, n)
            line = ", ".join(
                f"{k} p50 {pct(v, 0.5):.0f} µs p99 {pct(v, 0.99):.0f} µs" for k, v in res.items()
            )
            print(f"presign={presign!s:5}: {line}")
    finally:
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    asyncio.run(main(ap.parse_args().n))
