"""IbkrNormalizer: ib_async-style quote values → ask-side ticks (pure)."""

from __future__ import annotations

import math
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from arbkit.model import BookSide, Outcome, Price, Qty, TickKind, Venue
from arbkit.normalizers.ibkr_normalizer import IbkrNormalizer

YES, NO = 11, 12


def norm() -> IbkrNormalizer:
    return IbkrNormalizer({YES: ("FED", Outcome.YES), NO: ("FED", Outcome.NO)})


def test_quote_is_reset_then_one_ask_level() -> None:
    ticks = norm().on_quote(YES, 0.45, 10.0, 0.48, 8.0, 123)
    assert [t.kind for t in ticks] == [TickKind.RESET, TickKind.LEVEL]
    reset, level = ticks
    assert reset.valid and reset.outcome is Outcome.YES and reset.venue is Venue.IBKR
    assert reset.recv_ts_ns == 123
    assert (level.side, level.price, level.size) == (BookSide.ASK, Price(4800), Qty(800))
    assert level.symbol == "FED" and level.outcome is Outcome.YES


def test_no_contract_maps_to_no_outcome() -> None:
    ticks = norm().on_quote(NO, None, None, 0.55, 10, 1)
    assert ticks[-1].outcome is Outcome.NO and ticks[-1].price == Price(5500)


def test_absent_ask_is_empty_valid_snapshot() -> None:
    n = norm()
    for ask, size in ((math.nan, math.nan), (-1.0, 0.0), (None, None), (0.5, 0.0)):
        ticks = n.on_quote(YES, 0.45, 10.0, ask, size, 1)
        assert len(ticks) == 1 and ticks[0].kind is TickKind.RESET and ticks[0].valid
    assert n.errors == 0


def test_decimal_sizes_and_prices() -> None:
    ticks = norm().on_quote(YES, None, None, Decimal("0.07"), Decimal("3"), 1)
    assert ticks[-1].price == Price(700) and ticks[-1].size == Qty(300)


def test_bad_values_give_invalid_reset_and_count() -> None:
    n = norm()
    bad = [
        (0.45, 10.0, 0.485, 5.0),  # off the $0.01 grid
        (0.45, 10.0, 0.48, -5.0),  # negative size
        (0.45, 10.0, 1.0, 5.0),  # outside (0, 1)
        (0.45, 10.0, 0.0, 5.0),
        (0.45, 10.0, 0.48, 2.5),  # fractional contracts
        (1.5, 10.0, 0.48, 5.0),  # garbage bid: bad feed
        (0.45, 10.0, math.inf, 5.0),
        (0.45, 10.0, "x", 5.0),
    ]
    for bid, bs, ask, az in bad:
        ticks = n.on_quote(YES, bid, bs, ask, az, 7)  # type: ignore[arg-type]
        assert len(ticks) == 1
        assert ticks[0].kind is TickKind.RESET and not ticks[0].valid
        assert ticks[0].outcome is Outcome.YES
    assert n.errors == len(bad)


def test_unknown_con_id_is_ignored_and_counted() -> None:
    n = norm()
    assert n.on_quote(999, 0.4, 1, 0.5, 1, 1) == []
    assert n.unknown_con_ids == 1


def test_stale_and_invalidate_all() -> None:
    n = norm()
    (t,) = n.on_stale(NO, 5)
    assert not t.valid and t.outcome is Outcome.NO and t.kind is TickKind.RESET
    ticks = n.invalidate_all(6)
    assert {(t.symbol, t.outcome) for t in ticks} == {("FED", Outcome.YES), ("FED", Outcome.NO)}
    assert all(not t.valid for t in ticks)


@given(cents=st.integers(2, 99), size=st.integers(1, 10_000))
def test_every_grid_price_is_exact(cents: int, size: int) -> None:
    ticks = norm().on_quote(YES, None, None, cents / 100, float(size), 1)
    assert ticks[-1].price == Price(cents * 100) and ticks[-1].size == Qty(size * 100)


def test_forecastex_quote_sanity() -> None:
    """Issue 12: prices inside $0.02–$0.99, bid below ask, YES ask + NO ask ≥ $1.00, no
    absurd sizes; otherwise that book is invalid (and counted)."""
    n = norm()
    for bid, ask, size in [
        (None, 0.01, 5.0),  # below ForecastEx's $0.02 floor
        (0.40, 0.40, 5.0),  # bid not below ask
        (None, 0.40, 2_000_000.0),  # absurd size
    ]:
        [t] = n.on_quote(YES, bid, None if bid is None else 5.0, ask, size, 1)
        assert not t.valid and t.outcome is Outcome.YES, (bid, ask, size)
    assert n.errors == 3
    assert n.on_quote(YES, None, None, 0.45, 5.0, 2)[0].valid
    # NO asked at 0.50 with YES asked at 0.45: the pair costs $0.95 — both books invalid
    ticks = n.on_quote(NO, None, None, 0.50, 5.0, 3)
    assert {(t.outcome, t.valid) for t in ticks} == {(Outcome.YES, False), (Outcome.NO, False)}
    assert n.errors == 4
    # a sane pair is fine again
    assert n.on_quote(YES, None, None, 0.45, 5.0, 4)[0].valid
    assert n.on_quote(NO, None, None, 0.56, 5.0, 5)[0].valid
