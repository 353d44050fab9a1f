"""Decision → leg-1 submit and leg-1 fill → leg-2 submit over 30 executions against the
local venues (from ``ExecutionRecord.stages_ns``). Printed for the notes; only a generous
sanity bound is asserted."""

from __future__ import annotations

import os
from dataclasses import replace

from arbkit.execution.journal import ExecState

from .rig import Rig, Venues

RUNS = int(os.environ.get("ARBKIT_LATENCY_RUNS", "30"))


def pct(xs: list[int], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] / 1e3  # µs


async def test_decision_to_submit_latency(rig: Rig, venues: Venues) -> None:
    assert rig.executor is not None
    cfg = rig.executor.config  # many runs: lift the position limits they would reach
    big = 10**9
    risk = replace(
        cfg.risk,
        max_position_contracts_per_symbol=big,
        max_position_contracts_per_venue=big,
        max_total_exposure_usd=big * 10**6,
    )
    rig.executor.config = replace(cfg, risk=risk)
    to_leg1: list[int] = []
    to_leg2: list[int] = []
    for i in range(RUNS):
        opp = await rig.next_opportunity()
        ex = await rig.executor.execute(opp)
        assert ex is not None and ex.state is ExecState.DONE, (i, ex)
        s = ex.stages_ns
        to_leg1.append(s["leg1_submit"] - s["decided"])
        to_leg2.append(s["leg2_submit"] - s["leg1_fill"])
        # the fills emptied the arb: wait for that, then restore the books (a new episode)
        await rig.until(lambda: not rig.pipeline.episodes, what="episode end")
        rig.drain()
        venues.arb_books()
    line = (
        f"decision→leg1 submit p50 {pct(to_leg1, 0.5):.0f} µs p99 {pct(to_leg1, 0.99):.0f} µs; "
        f"leg1 fill→leg2 submit p50 {pct(to_leg2, 0.5):.0f} µs p99 {pct(to_leg2, 0.99):.0f} µs "
        f"(n={RUNS})"
    )
    print("\nLATENCY", line)
    assert max(to_leg1) < 1_000_000_000 and max(to_leg2) < 1_000_000_000
