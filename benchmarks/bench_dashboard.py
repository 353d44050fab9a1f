"""Dashboard refresh cost per snapshot (issue 7). Run by hand:
python benchmarks/bench_dashboard.py [n_symbols]

Runs the local demo, attaches a Dashboard, fills its history to the full window first
(steady state: every trace at its point cap), then times ``monitor.snapshot()`` and the
dashboard's refresh separately. Outside a kernel the widgets' comm messages go nowhere,
so this is the Python-side cost that blocks the event loop; serialising to a real
frontend adds to it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time

from arbkit.ui.notebook import start_local_demo


async def main(n_symbols: int) -> dict[str, object]:
    session = await start_local_demo(n_symbols, 7)
    try:
        dash = session.dashboard(refresh_hz=4)
        dash.stop()  # drive refreshes by hand below
        await asyncio.sleep(2)
        snap = session.monitor.snapshot()
        step = int(0.25e9)
        for i in range(dash.history.max_points):  # a full 300 s window
            dash.history.add(snap.books, snap.ts_ns - (dash.history.max_points - i) * step)
        snap_ms: list[float] = []
        refresh_ms: list[float] = []
        for _ in range(40):
            await asyncio.sleep(0.25)
            t0 = time.perf_counter()
            s = session.monitor.snapshot()
            t1 = time.perf_counter()
            dash._on_snapshot(s)
            refresh_ms.append((time.perf_counter() - t1) * 1e3)
            snap_ms.append((t1 - t0) * 1e3)
        points = sum(len(t.x) for t in dash.cost_fig.data)
        return {
            "symbols": n_symbols,
            "cost_traces": len(dash.cost_fig.data),
            "points_plotted": points,
            "snapshot_ms_p50": round(statistics.median(snap_ms), 2),
            "refresh_ms_p50": round(statistics.median(refresh_ms), 2),
            "refresh_ms_max": round(max(refresh_ms), 2),
        }
    finally:
        await session.stop()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    print(json.dumps(asyncio.run(main(n)), indent=1))
