"""Live monitor under load: the local venues (``arbkit sim`` in its own process, so on
the other core) stream 20 symbols at ~10k messages/s; the monitor (paper mode, DB on)
ingests them while a 5 Hz subscriber does the notebook dashboard's work.

The dashboard is ``arbkit.ui.dashboard.Dashboard`` run headless when it (and ipywidgets)
import, else a stand-in that builds the same figure data (cost history per symbol ×
combination, depth bars and a best-ask table for one symbol) from each snapshot.
Reported: the monitor's own latency rings (tick_to_decision, receive_to_tick), the
ingest rate, the subscriber's refresh cost and the event-loop lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from arbkit.config.execution_loader import ExecutionConfig, apply_overrides
from arbkit.config.loader import load_symbol_map
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Outcome, Venue
from arbkit.monitor.arbitrage_monitor import (
    ArbitrageMonitor,
    IbkrEndpoint,
    KalshiEndpoint,
    MonitorSnapshot,
)
from arbkit.monitor.metrics import StageLatency
from benchmarks.common import BENCH_DIR, Figure, lat_us

N_SYMBOLS = 20
RATE = 10_500  # market-model updates/s; ~0.91 monitor batches per update measured → ~10k msg/s


class StandInDashboard:
    """What the notebook dashboard computes per refresh, without the widgets."""

    def __init__(self, mon: ArbitrageMonitor, rate_hz: float, history_s: float = 300) -> None:
        self.mon = mon
        self.symbols = list(mon.symbol_map.symbols)
        n = int(history_s * rate_hz)
        self.hist: dict[tuple[str, str], deque[tuple[int, float | None]]] = {
            (s, c): deque(maxlen=n) for s in self.symbols for c in ("yes", "no")
        }
        self.refresh_ms: list[float] = []
        self.figure: dict[str, Any] = {}
        self.task = mon.subscribe(self.on_snapshot, rate_hz=rate_hz)

    def on_snapshot(self, snap: MonitorSnapshot) -> None:
        t0 = time.perf_counter()
        for s, sample in snap.books.items():
            for c, cost in (("yes", sample.cost_kalshi_yes), ("no", sample.cost_kalshi_no)):
                self.hist[(s, c)].append((snap.ts_ns, None if cost is None else cost / 10_000))
        traces = {}
        for key, h in self.hist.items():
            pts = list(h)[-400:]
            traces[key] = ([t for t, _ in pts], [y for _, y in pts])
        sel = self.symbols[0]
        book = self.mon.pipeline.book[sel]
        bars = {}
        for v in Venue:
            for o in Outcome:
                lad = book.ladder(v, o)
                levels = list(lad.levels())[:10] if lad.valid else []
                bars[(v.value, o.value)] = (
                    [p / 10_000 for p, _ in levels],
                    [q / 100 for _, q in levels],
                )
        sample = snap.books.get(sel)
        table = (
            "<table>"
            + "".join(
                f"<tr><td>{k}</td><td>{v}</td></tr>"
                for k, v in (vars(sample) if hasattr(sample, "__dict__") else {}).items()
            )
            + "</table>"
        )
        self.figure = {"traces": traces, "bars": bars, "table": table, "counters": snap.counters}
        self.refresh_ms.append((time.perf_counter() - t0) * 1e3)


def _dashboard(mon: ArbitrageMonitor) -> tuple[Any, str]:
    try:
        from arbkit.ui.dashboard import Dashboard  # type: ignore[import-not-found]

        d = Dashboard(mon, refresh_hz=5.0)
        return d, "arbkit.ui.dashboard (headless)"
    except ImportError:
        return StandInDashboard(mon, 5.0), "stand-in dashboard (arbkit.ui.dashboard not importable)"


def _start_sim(data: Path, seconds: int) -> tuple[subprocess.Popen[str], dict[str, str]]:
    exe = Path(sys.executable).parent / "arbkit"
    cmd = [
        str(exe),
        "sim",
        "--symbols",
        str(N_SYMBOLS),
        "--rate",
        str(RATE),
        "--data-dir",
        str(data),
        "--seconds",
        str(seconds),
    ]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    info: dict[str, str] = {}
    assert p.stdout is not None
    end = time.monotonic() + 30
    while time.monotonic() < end and len(info) < 6:
        line = p.stdout.readline()
        if not line:
            break
        if m := re.match(r"Kalshi REST : (\S+)", line):
            info["rest"] = m[1]
        elif m := re.match(r"Kalshi WS   : (\S+)", line):
            info["ws"] = m[1]
        elif m := re.match(r"Kalshi key  : id (\S+)\s+file (\S+)", line):
            info["key_id"], info["key_file"] = m[1], m[2]
        elif m := re.match(r"TWS         : ([\d.]+):(\d+)", line):
            info["tws_port"] = m[2]
        elif m := re.match(r"Symbol map  : (\S+)", line):
            info["symbols"] = m[1]
    if len(info) < 6:
        p.kill()
        raise RuntimeError(f"arbkit sim did not start: {info}")
    return p, info


async def _bench(measure_s: float) -> dict[str, Any]:
    data = BENCH_DIR / "live-monitor"
    data.mkdir(parents=True, exist_ok=True)
    db_path = data / "live.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    warm_s = 4.0
    sim, info = _start_sim(data / "venues", int(warm_s + measure_s + 30))
    try:
        symbols = load_symbol_map(info["symbols"])
        auth = KalshiAuth.from_key_file(info["key_id"], info["key_file"])
        cfg: ExecutionConfig = apply_overrides(ExecutionConfig(), {"mode": "paper"})
        mon = ArbitrageMonitor(
            symbols,
            cfg,
            kalshi=KalshiEndpoint(info["rest"], info["ws"], auth),
            ibkr=IbkrEndpoint(port=int(info["tws_port"]), cache_path=data / "contracts_cache.json"),
            db_path=db_path,
        )
        await mon.start()
        try:
            dash, dash_kind = _dashboard(mon)
            lags: list[int] = []
            stop = asyncio.Event()

            async def lag_probe() -> None:
                period = 0.01
                while not stop.is_set():
                    t0 = time.perf_counter_ns()
                    await asyncio.sleep(period)
                    lags.append(time.perf_counter_ns() - t0 - int(period * 1e9))

            probe = asyncio.create_task(lag_probe())
            await asyncio.sleep(warm_s)
            mon.latency = StageLatency()
            lags.clear()
            if hasattr(dash, "refresh_ms"):
                dash.refresh_ms.clear()
            b0, t0 = mon.counters.batches, time.perf_counter()
            await asyncio.sleep(measure_s)
            b1, t1 = mon.counters.batches, time.perf_counter()
            stop.set()
            await probe
            summ = mon.latency.summary()
            refresh = sorted(dash.refresh_ms)
            snap = mon.snapshot()
            return {
                "rate": (b1 - b0) / (t1 - t0),
                "latency": summ,
                "lags": lags,
                "refresh_ms": refresh,
                "dash": dash_kind,
                "counters": snap.counters,
                "venues": {
                    k: (v.connected, v.books_valid if hasattr(v, "books_valid") else None)
                    for k, v in snap.venues.items()
                },
            }
        finally:
            with contextlib.suppress(Exception):
                await mon.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sim.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(10)
        if sim.poll() is None:
            sim.kill()


def run(quick: bool = False) -> list[Figure]:
    logging.getLogger("arbkit").setLevel(logging.ERROR)
    got = asyncio.run(_bench(6.0 if quick else 20.0))
    lat = got["latency"]
    ttd, rtt = lat["tick_to_decision"], lat["receive_to_tick"]
    lag50, lag99 = lat_us(got["lags"]) if got["lags"] else (float("nan"), float("nan"))
    r = got["refresh_ms"]
    note = f"{got['dash']}; ingest {got['rate']:,.0f} msg/s; counters {got['counters']}"
    return [
        Figure(
            "live_monitor",
            "ingest rate from local venues",
            "msg/s",
            value=got["rate"],
            target="~10,000",
            met=got["rate"] >= 9_000,
            note=f"{N_SYMBOLS} symbols, arbkit sim --rate {RATE} in its own process",
        ),
        Figure(
            "live_monitor",
            "tick_to_decision (monitor ring)",
            "µs",
            median=ttd.p50_us,
            p99=ttd.p99_us,
            target="p99 < 1,000",
            met=ttd.p99_us < 1000,
            note=f"{ttd.count:,} samples, max {ttd.max_us:,.0f} µs",
        ),
        Figure(
            "live_monitor",
            "receive_to_tick (monitor ring)",
            "µs",
            median=rtt.p50_us,
            p99=rtt.p99_us,
            note=f"{rtt.count:,} samples; includes waiting behind the event loop",
        ),
        Figure(
            "live_monitor",
            "event-loop lag (10 ms sleeper)",
            "µs",
            median=lag50,
            p99=lag99,
            note=note[:160],
        ),
        Figure(
            "live_monitor",
            "dashboard refresh cost (5 Hz)",
            "ms",
            median=r[len(r) // 2] if r else None,
            p99=r[-1] if r else None,
            note=f"{len(r)} refreshes; p99 column = worst",
        ),
    ]
