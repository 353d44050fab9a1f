"""Soak: the demo's pipeline under sustained load with paper trading, for ``SOAK_SECONDS``.

The local venues run in a child process (``arbkit sim``, so the market driver does not
share a core with what is measured); this process runs the ``ArbitrageMonitor`` in paper
mode against them with its SQLite database, exactly as ``arbkit demo`` wires it. Reported:
messages/s received (Kalshi WS frames + IBKR ticks), RSS at start (after warm-up) and end
(and its max), event-loop lag (max and p99 of a 10 ms ticker), the monitor's counters.

    SOAK_SECONDS=3600 python -m tests.reliability.soak [--rate 5100] [--symbols 20]

Exit code 1 when a callback failed, the loop stalled past ``--max-lag-ms`` or RSS grew by
more than ``--max-rss-growth-mb`` between the warm-up and the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from arbkit.config.execution_loader import ExecutionConfig, RiskLimits
from arbkit.config.loader import load_symbol_map
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Mode
from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor, IbkrEndpoint, KalshiEndpoint

_PAGE = os.sysconf("SC_PAGE_SIZE")
_BIG = 10**15
# Paper trading must go on for the whole run: limits that would stop it (hedge streaks,
# accumulated paper positions) are lifted; everything else is the default config.
SOAK_CONFIG = ExecutionConfig(
    mode=Mode.PAPER,
    risk=RiskLimits(
        max_position_contracts_per_symbol=_BIG,
        max_position_contracts_per_venue=_BIG,
        max_total_exposure_usd=_BIG,
        max_daily_realized_loss_usd=_BIG,
        max_consecutive_failures=1_000_000_000,
    ),
)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 1e6


async def _sim(
    args: argparse.Namespace, data_dir: Path
) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "arbkit.cli", "sim", "--symbols", str(args.symbols),
        "--rate", str(args.rate), "--seed", "11", "--data-dir", str(data_dir),
        "--seconds", str(args.seconds + 60),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    info: dict[str, str] = {}
    pats = {
        "rest": r"Kalshi REST : (\S+)",
        "ws": r"Kalshi WS   : (\S+)",
        "key": r"Kalshi key  : id (\S+)  file (\S+)",
        "tws": r"TWS         : (\S+):(\d+)",
        "symbols": r"Symbol map  : (\S+)",
    }
    while len(info) < 6:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line:
            raise RuntimeError("arbkit sim exited before it was ready")
        for name, pat in pats.items():
            m = re.match(pat, line.strip())
            if m and name == "key":
                info["key_id"], info["key_file"] = m.group(1), m.group(2)
            elif m and name == "tws":
                info["tws_port"] = m.group(2)
            elif m:
                info[name] = m.group(1)
    return proc, info


async def soak(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="arbkit-soak-") as tmp:
        proc, info = await _sim(args, Path(tmp) / "sim")
        try:
            return await _run(args, info, Path(tmp))
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)


async def _run(args: argparse.Namespace, info: dict[str, str], tmp: Path) -> dict[str, object]:
    auth = KalshiAuth.from_key_file(info["key_id"], info["key_file"])
    mon = ArbitrageMonitor(
        load_symbol_map(info["symbols"]),
        SOAK_CONFIG,
        kalshi=KalshiEndpoint(info["rest"], info["ws"], auth),
        ibkr=IbkrEndpoint(port=int(info["tws_port"]), cache_path=None, client_id=7),
        db_path=tmp / "soak.sqlite",
    )
    await mon.start()
    lags: list[float] = []
    stop = asyncio.Event()

    async def lag_probe() -> None:
        period = 0.01
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            t = loop.time()
            await asyncio.sleep(period)
            lags.append((loop.time() - t - period) * 1000)

    def messages() -> int:
        k = mon.kalshi_ws.normalizer.messages if mon.kalshi_ws is not None else 0
        i = mon.ibkr_gw.health.ticks if mon.ibkr_gw is not None else 0
        return k + i

    probe = asyncio.create_task(lag_probe())
    warmup = min(30.0, max(5.0, args.seconds / 10))
    await asyncio.sleep(warmup)
    gc.collect()
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(8)
        snap0 = tracemalloc.take_snapshot()
    rss_start = rss_mb()
    rss_max = rss_start
    lags.clear()
    m0, t0 = messages(), time.monotonic()
    rates: list[float] = []
    last_m, last_t = m0, t0
    while time.monotonic() - t0 < args.seconds - warmup:
        await asyncio.sleep(min(10.0, args.seconds))
        now, m = time.monotonic(), messages()
        rates.append((m - last_m) / (now - last_t))
        last_m, last_t = m, now
        rss_max = max(rss_max, rss_mb())
        if args.verbose:
            print(f"  {now - t0:6.0f} s  {rates[-1]:7.0f} msg/s  rss {rss_mb():6.1f} MB  "
                  f"max lag {max(lags, default=0):5.1f} ms", flush=True)  # fmt: skip
    gc.collect()
    rss_end = rss_mb()
    if args.tracemalloc:
        growth = tracemalloc.take_snapshot().compare_to(snap0, "traceback")
        print("largest allocation growth since warm-up:")
        for st in growth[:8]:
            print(f"  {st.size_diff / 1e6:+.2f} MB in {st.count_diff:+d} blocks")
            for line in st.traceback.format()[-6:]:
                print("     ", line)
    elapsed = time.monotonic() - t0
    total = messages() - m0
    stop.set()
    await probe
    snap = mon.snapshot()
    await mon.stop()
    lag_sorted = sorted(lags)
    return {
        "seconds": round(elapsed + warmup, 1),
        "measured_seconds": round(elapsed, 1),
        "messages": total,
        "messages_per_s": round(total / elapsed),
        "min_window_messages_per_s": round(min(rates)) if rates else 0,
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_max_mb": round(rss_max, 1),
        "max_loop_lag_ms": round(max(lag_sorted, default=0), 2),
        "p99_loop_lag_ms": round(lag_sorted[int(0.99 * (len(lag_sorted) - 1))], 2)
        if lag_sorted
        else 0,
        "counters": snap.counters,
        "venues": {
            k: {"bad_frames": v.bad_frames, "resyncs": v.resyncs, "reconnects": v.reconnects}
            for k, v in snap.venues.items()
        },
        "kill_switch": snap.kill_switch,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 3600)))
    ap.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", 5100)),
                    help="market-model book updates/s (each is ≥ 1 venue message)")  # fmt: skip
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--max-lag-ms", type=float, default=500.0)
    ap.add_argument("--max-rss-growth-mb", type=float, default=64.0)
    ap.add_argument("--json", default=None, help="also write the result here")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--tracemalloc", action="store_true", help="print what grew (slower)")
    args = ap.parse_args(argv)
    res = asyncio.run(soak(args))
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    counters = res["counters"]
    assert isinstance(counters, dict)
    ok = (
        counters["callback_errors"] == 0
        and float(res["max_loop_lag_ms"]) <= args.max_lag_ms  # type: ignore[arg-type]
        and float(res["rss_end_mb"]) - float(res["rss_start_mb"])  # type: ignore[arg-type]
        <= args.max_rss_growth_mb
    )
    print("soak:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
