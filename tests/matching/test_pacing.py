"""IBKR discovery pacing: never a burst (spacing) and never more than the window allows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from arbkit.matching.pacing import Pacer


def test_spacing_and_window_ceiling() -> None:
    p = Pacer(min_interval_ms=250, max_per_window=3, window_ms=10_000)
    now = 0
    sent = []
    for _ in range(5):
        now += p.wait_ms(now)
        p.sent(now)
        sent.append(now)
    assert sent[:3] == [0, 250, 500]
    assert sent[3] == 10_000  # the fourth waits for the first to leave the window
    assert sent[4] == 10_250


@given(st.lists(st.integers(0, 2_000), min_size=1, max_size=60))
def test_a_paced_caller_never_exceeds_the_window(gaps: list[int]) -> None:
    p = Pacer(min_interval_ms=100, max_per_window=5, window_ms=3_000)
    now, sent = 0, []
    for g in gaps:
        now += g
        now += p.wait_ms(now)
        p.sent(now)
        sent.append(now)
    for i, t in enumerate(sent):
        assert sum(1 for u in sent[: i + 1] if t - u < 3_000) <= 5
        if i:
            assert t - sent[i - 1] >= 100
