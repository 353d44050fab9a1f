"""Sweep of 100 parameter combinations over the replay capture with 2 processes, through
``arbkit.analysis.replay.sweep`` (what ``arbkit sweep --jobs 2`` runs)."""

from __future__ import annotations

import time

from arbkit.analysis.replay import prepare_file, sweep
from benchmarks.capture_gen import ensure_capture
from benchmarks.common import Figure
from benchmarks.replay_bench import paper_config

GRID = {
    "detector.min_edge_usd": [f"{c / 1000:.3f}" for c in range(0, 50, 5)],  # $0.000..$0.045
    "detector.max_contracts_per_trade": [
        str(n) for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    ],
}


def run(quick: bool = False) -> list[Figure]:
    n = 100_000 if quick else 1_000_000
    path, symbols, _ = ensure_capture(n)
    t0 = time.perf_counter()
    prepared = prepare_file(path, symbols)
    t1 = time.perf_counter()
    rows = sweep(prepared, symbols, paper_config(), GRID, jobs=2)
    t2 = time.perf_counter()
    combos = len(rows)
    executed = sorted(r.result.executed for r in rows)
    return [
        Figure(
            "sweep",
            f"sweep {combos} combos × {prepared.events // 1000}k events, 2 jobs",
            "s",
            value=t2 - t0,
            target="< 30",
            met=(t2 - t0) < 30,
            note=(
                f"prepare {t1 - t0:.1f} s once, replays {t2 - t1:.1f} s "
                f"({combos * prepared.events / (t2 - t1):,.0f} combo-events/s); "
                f"executions per combo {executed[0]}..{executed[-1]}"
            ),
            extra={"prepare_s": t1 - t0, "replay_s": t2 - t1, "combos": combos},
        )
    ]
