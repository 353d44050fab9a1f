"""Latency per pipeline stage: a bounded ring of recent samples per stage.

Percentiles come from the last ``capacity`` samples (exact over that window), which is
what a trader watching a live dashboard wants; totals are kept separately.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

STAGES = (
    "receive_to_tick",  # venue message received → normalized ticks
    "tick_to_decision",  # ticks → book → detector answer
    "decision_to_submit",  # opportunity decided → leg-1 request handed to the venue client
    "submit_to_ack",  # leg 1 submitted → venue acknowledgement
    "leg1_fill_to_leg2_submit",
    "leg2_submit_to_fill",
)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_us: float
    p99_us: float
    max_us: float


class LatencyRing:
    __slots__ = ("_buf", "_i", "capacity", "count")

    def __init__(self, capacity: int = 65_536) -> None:
        self.capacity = capacity
        self._buf = array("q")
        self._i = 0
        self.count = 0

    def add(self, ns: int) -> None:
        self.count += 1
        if len(self._buf) < self.capacity:
            self._buf.append(ns)
        else:
            self._buf[self._i] = ns
            self._i = (self._i + 1) % self.capacity

    def summary(self) -> LatencySummary:
        if not self._buf:
            return LatencySummary(0, 0.0, 0.0, 0.0)
        v = sorted(self._buf)
        n = len(v)
        return LatencySummary(
            self.count, v[n // 2] / 1000, v[min(n - 1, int(n * 0.99))] / 1000, v[-1] / 1000
        )


class StageLatency:
    def __init__(self, capacity: int = 65_536) -> None:
        self.rings = {s: LatencyRing(capacity) for s in STAGES}

    def add(self, stage: str, ns: int) -> None:
        if ns >= 0:
            self.rings[stage].add(ns)

    def summary(self) -> dict[str, LatencySummary]:
        return {s: r.summary() for s, r in self.rings.items()}
