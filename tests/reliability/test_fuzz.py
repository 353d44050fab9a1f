"""Fuzz: mutated and random venue frames through the gateways' parsing — zero exceptions
escaping, no decision except on the positive control (valid arbitrage quotes mixed into
the garbage, so the run fails if the detector is removed), a valid book is always a sane
book (no crossed, empty or absurd level). The fast run is
20k frames; the ≥ 1M run is ``slow`` (``make fuzz`` / ``make soak``)."""

from __future__ import annotations

import pytest

from .fuzz import FuzzStats, fuzz


def check(s: FuzzStats) -> None:
    assert not s.escaped, s.escaped[:5]
    assert not s.invariant_violations, s.invariant_violations[:5]
    assert s.bad_decisions == 0 and s.unexpected_decisions == 0
    assert s.controls > 0 and s.controls_found > 0, (s.controls, s.controls_found)
    assert s.bad_frames > 0 and s.gaps > 0 and s.ibkr_errors > 0  # the fuzz did bite
    assert s.frames_on_valid_book > s.frames // 10  # and it hit live books, not only dead ones


@pytest.mark.parametrize("seed", [1, 2])
async def test_fuzz_fast(seed: int) -> None:
    s = await fuzz(20_000, seed)
    check(s)
    print(f"\nFUZZ {s.frames} frames at {s.frames_per_s:,.0f}/s: bad {s.bad_frames} gaps {s.gaps}")


@pytest.mark.slow
async def test_fuzz_one_million() -> None:
    s = await fuzz(1_000_000, 7)
    check(s)
    print(f"\nFUZZ {s.frames} frames at {s.frames_per_s:,.0f}/s: bad {s.bad_frames} gaps {s.gaps}")
