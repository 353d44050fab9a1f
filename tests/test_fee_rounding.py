"""Kalshi's current fee rounding (reference/kalshi.md §6, §9; docs.kalshi.com fee_rounding).

The integer model in ``arbkit.arbitrage.fee_model`` is checked against a Decimal reference
written here straight from the rule text:

* trade fee  = fee model (coef × mult × C × P × (1 − P)) rounded UP to the fee granularity;
* balance_change = revenue − trade_fee, FLOORED to the balance precision; for a purchase
  revenue = −C × P; rounding_fee = balance_change − floored (what the floor removed);
* per order, after each fill: ideal = trade fee + rounding fee of one fill carrying the summed
  exact fee and the summed cost; rebate = floor((charged − rebated − ideal) / $0.01) × $0.01
  when positive, never taking the net below $0.00.

Units of the model: Price 10⁻⁴ $, Qty 10⁻² contract, Money 10⁻⁶ $.
"""

from __future__ import annotations

import itertools
import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, Inexact, localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbkit.arbitrage.arbitrage import ArbitrageDetector
from arbkit.arbitrage.fee_model import (
    CENT,
    CENTICENT,
    FeeModel,
    FillFee,
    KalshiFeeSchedule,
    KalshiOrderFees,
    kalshi_order_fee_bound,
)
from arbkit.config.execution_loader import DetectorParams, FeeParams
from arbkit.model import Money, Outcome, Price, Qty

from .conftest import NOW_NS as NOW
from .test_arbitrage import _book, _consume

D = Decimal
GRANULARITIES = [CENTICENT, 1]  # $0.0001 (current page), $0.000001 (the conflicting copy)
PRECISIONS = [CENT, CENTICENT]  # non-direct $0.01, direct $0.0001


def _sched(coef: str = "0.07", mult: str = "1") -> KalshiFeeSchedule:
    # the rounding argument only concerns the legacy FeeModel path; irrelevant here
    return KalshiFeeSchedule.make(D(coef), D(mult), "centicent_per_fill")


# ------------------------------------------------------------ Decimal reference ---------

Fill = tuple[Decimal, int, int]  # (coef × mult as Decimal, price in Price units, qty in Qty)


def _usd(money_units: int) -> Decimal:
    return D(money_units).scaleb(-6)


def _ceil(x: Decimal, step: Decimal) -> Decimal:
    return (x / step).to_integral_value(ROUND_CEILING) * step


def _floor(x: Decimal, step: Decimal) -> Decimal:
    return (x / step).to_integral_value(ROUND_FLOOR) * step


def reference_order(
    fills: list[Fill], gran: Decimal, prec: Decimal
) -> list[tuple[Decimal, Decimal, Decimal]]:
    """(trade_fee, rounding_fee, rebate) in dollars per fill, straight from the rule text."""
    out = []
    with localcontext() as ctx:
        ctx.prec = 100
        ctx.traps[Inexact] = True  # any inexact step would be a bug in the reference
        fee_sum = cost_sum = charged = rebated = D(0)
        for k, price, qty in fills:
            p = D(price).scaleb(-4)  # dollars
            c = D(qty).scaleb(-2)  # contracts
            fee = k * c * p * (1 - p)
            trade_fee = _ceil(fee, gran)
            balance_change = -(c * p) - trade_fee  # purchase: revenue = −cost
            rounding_fee = balance_change - _floor(balance_change, prec)
            # the single equivalent fill, under the same rule
            fee_sum += fee
            cost_sum += c * p
            ideal_trade = _ceil(fee_sum, gran)
            ideal_change = -cost_sum - ideal_trade
            ideal = ideal_trade + (ideal_change - _floor(ideal_change, prec))
            charged += trade_fee + rounding_fee
            owed = charged - rebated - ideal
            rebate = _floor(owed, D("0.01")) if owed > 0 else D(0)
            rebate = min(rebate, charged - rebated)
            rebated += rebate
            out.append((trade_fee, rounding_fee, rebate))
    return out


# ------------------------------------------------------------ hand-worked examples ------


@pytest.mark.parametrize(
    ("gran", "prec", "trade", "rounding"),
    [
        # 1 contract at $0.055, taker, multiplier 1:
        #   exact fee 0.07 · 0.055 · 0.945 = 0.07 · 0.051975 = $0.00363825
        #   g = $0.0001 → trade fee $0.0037; cost $0.055, charge $0.0587
        #     non-direct: ceil to $0.01 = $0.06 → rounding fee $0.0013, net fee $0.005
        #     direct: $0.0587 already on the $0.0001 grid → rounding fee 0, net $0.0037
        (CENTICENT, CENT, 3_700, 1_300),
        (CENTICENT, CENTICENT, 3_700, 0),
        #   g = $0.000001 → trade fee $0.003639; charge $0.058639
        #     non-direct: → $0.06, rounding fee $0.001361; direct: → $0.0587, rounding $0.000061
        (1, CENT, 3_639, 1_361),
        (1, CENTICENT, 3_639, 61),
    ],
)
def test_one_contract_at_5_5_cents(gran: int, prec: int, trade: int, rounding: int) -> None:
    acc = KalshiOrderFees(_sched(), fee_granularity=gran, balance_precision=prec)
    f = acc.fill(Price(550), Qty(100))
    assert f == FillFee(Money(trade), Money(rounding), Money(0))
    assert f.net == acc.net_fee == acc.ideal_fee == trade + rounding


def test_defaults_are_centicent_fee_and_cent_balance() -> None:
    assert KalshiOrderFees(_sched()).fill(Price(550), Qty(100)) == FillFee(
        Money(3_700), Money(1_300), Money(0)
    )


def test_fractional_contract() -> None:
    # 0.01 contract at $0.55: 0.07 · 0.01 · 0.55 · 0.45 = $0.00017325 → trade fee $0.0002;
    # cost $0.0055, charge $0.0057 → $0.01 for a non-direct member: rounding fee $0.0043.
    f = KalshiOrderFees(_sched()).fill(Price(5_500), Qty(1))
    assert f == FillFee(Money(200), Money(4_300), Money(0))


def test_maker_multiplier_two() -> None:
    # maker 0.0175 × 2 at $0.50, 1 contract: 0.035 · 0.25 = $0.00875 → $0.0088;
    # cost $0.50 → charge $0.5088 → $0.51: rounding fee $0.0012.
    f = KalshiOrderFees(_sched("0.0175", "2")).fill(Price(5_000), Qty(100))
    assert f == FillFee(Money(8_800), Money(1_200), Money(0))


def test_ten_fills_at_50_cents_rebate_back_to_single_fill() -> None:
    # Each 1-contract fill at $0.50: trade fee 0.07 · 0.25 = $0.0175, cost $0.50, charge $0.5175
    # → $0.52, so $0.02 per fill.  Single equivalent fill of n contracts: ceil¢(0.5175 n) − 0.5 n:
    #   n=1 0.02, 2 0.04, 3 0.06, 4 0.07 (2.07 exact) → charged 0.08: rebate $0.01 at fill 4,
    #   5 0.09, 6 0.11, 7 0.13, 8 0.14 (4.14 exact) → charged 0.16 − 0.01: rebate at fill 8,
    #   9 0.16, 10 0.18 → net $0.18 = one fill of 10 contracts (0.175 + 5 → 5.18).
    acc = KalshiOrderFees(_sched())
    rebates = [acc.fill(Price(5_000), Qty(100)).rebate for _ in range(10)]
    assert rebates == [0, 0, 0, CENT, 0, 0, 0, CENT, 0, 0]
    assert acc.trade_fees == 175_000
    assert acc.rounding_fees == 25_000
    assert acc.rebates == 20_000
    assert acc.net_fee == acc.ideal_fee == 180_000
    single = KalshiOrderFees(_sched())
    single.fill(Price(5_000), Qty(1_000))
    assert single.net_fee == 180_000


def test_direct_member_sub_cent_excess_waits_for_a_whole_cent() -> None:
    # Direct member, g = $0.0001: each 1-contract fill at $0.055 costs trade fee $0.0037 and
    # no rounding fee ($0.0587 is on the grid).  The ideal after n fills is
    # ceil(0.00363825 n) at $0.0001; the excess 0.0037 n − ideal reaches a whole cent first at
    #   n = 161: 0.5957 − ceil(0.58575825) = 0.5957 − 0.5858 = $0.0099 (no rebate)
    #   n = 162: 0.5994 − ceil(0.5893965)  = 0.5994 − 0.5894 = $0.0100 → rebate $0.01
    acc = KalshiOrderFees(_sched(), balance_precision=CENTICENT)
    rebates = [acc.fill(Price(550), Qty(100)).rebate for _ in range(162)]
    assert rebates == [0] * 161 + [CENT]
    assert acc.ideal_fee == 589_400
    assert acc.net_fee == 589_400
    assert acc.net_fee <= kalshi_order_fee_bound(
        _sched(), [(Price(550), Qty(16_200))], balance_precision=CENTICENT
    )


def test_bound_hand_values() -> None:
    s = _sched()
    levels = [(Price(550), Qty(100))]
    # non-direct: the net always equals the ideal ($0.005 for 1 contract at $0.055)
    assert kalshi_order_fee_bound(s, levels) == 5_000
    # direct: ideal $0.0037 + at most $0.0099 left unrebated
    assert kalshi_order_fee_bound(s, levels, balance_precision=CENTICENT) == 3_700 + 9_900
    assert kalshi_order_fee_bound(s, []) == 0


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        KalshiOrderFees(_sched(), fee_granularity=0)
    with pytest.raises(ValueError):
        KalshiOrderFees(_sched(), balance_precision=-100)
    acc = KalshiOrderFees(_sched())
    with pytest.raises(ValueError):
        acc.fill(Price(5_000), Qty(0))
    with pytest.raises(ValueError):
        acc.fill(Price(10_001), Qty(100))
    with pytest.raises(ValueError):
        kalshi_order_fee_bound(_sched(), [(Price(5_000), Qty(-1))])
    assert acc.net_fee == 0


# ------------------------------------------------------------ random orders -------------

price_st = st.one_of(
    st.integers(1, 99).map(lambda c: c * 100),  # 1-cent grid
    st.integers(1, 999).map(lambda m: m * 10),  # 0.1-cent grid
)
qty_st = st.one_of(
    st.integers(1, 300).map(lambda c: c * 100),  # whole contracts
    st.integers(1, 5_000),  # fractional contracts
)
levels_st = st.lists(st.tuples(price_st, qty_st), min_size=1, max_size=4)
mult_st = st.sampled_from(["0.5", "1", "2"])


def _split(
    data: st.DataObject, levels: list[tuple[int, int]], max_parts: int
) -> list[tuple[int, int]]:
    """Split every level into random pieces and interleave them: [(level index, qty), ...]."""
    pieces: list[tuple[int, int]] = []
    for i, (_, qty) in enumerate(levels):
        if qty > 1:
            cuts = data.draw(
                st.lists(st.integers(1, qty - 1), max_size=max_parts - 1, unique=True), "cuts"
            )
        else:
            cuts = []
        bounds = [0, *sorted(cuts), qty]
        pieces += [(i, b - a) for a, b in itertools.pairwise(bounds)]
    data.draw(st.randoms(use_true_random=False), "order").shuffle(pieces)
    return pieces


Order = list[tuple[int, int, int]]  # (level index, price, qty)


def _order(data: st.DataObject, max_parts: int) -> tuple[list[tuple[int, int]], Order]:
    levels = data.draw(levels_st, "levels")
    return levels, [(i, levels[i][0], q) for i, q in _split(data, levels, max_parts)]


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    gran=st.sampled_from(GRANULARITIES),
    prec=st.sampled_from(PRECISIONS),
    mult=mult_st,
)
def test_matches_decimal_reference(data: st.DataObject, gran: int, prec: int, mult: str) -> None:
    taker, maker = _sched("0.07", mult), _sched("0.0175", mult)
    k_taker, k_maker = D("0.07") * D(mult), D("0.0175") * D(mult)
    _, order = _order(data, max_parts=12)
    makers = data.draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    acc = KalshiOrderFees(taker, fee_granularity=gran, balance_precision=prec)
    got = [
        acc.fill(Price(p), Qty(q), schedule=maker if m else None)
        for (_, p, q), m in zip(order, makers, strict=True)
    ]
    ref = reference_order(
        [(k_maker if m else k_taker, p, q) for (_, p, q), m in zip(order, makers, strict=True)],
        _usd(gran),
        _usd(prec),
    )
    for f, (tf, rf, rb) in zip(got, ref, strict=True):
        assert (_usd(f.trade_fee), _usd(f.rounding_fee), _usd(f.rebate)) == (tf, rf, rb)
        assert f.net == f.trade_fee + f.rounding_fee - f.rebate
    assert _usd(acc.trade_fees) == sum(r[0] for r in ref)
    assert _usd(acc.rounding_fees) == sum(r[1] for r in ref)
    assert _usd(acc.rebates) == sum(r[2] for r in ref)
    assert acc.net_fee == sum(f.net for f in got)


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    gran=st.sampled_from(GRANULARITIES),
    prec=st.sampled_from(PRECISIONS),
    mult=mult_st,
    coef=st.sampled_from(["0.07", "0.0175"]),
)
def test_net_converges_to_single_fill(
    data: st.DataObject, gran: int, prec: int, mult: str, coef: str
) -> None:
    """After every fill: net ≥ 0, rebates whole cents, ideal ≤ net < ideal + $0.01; at the end
    the ideal is what a single fill per level (same totals) costs."""
    sched = _sched(coef, mult)
    levels, order = _order(data, max_parts=60)
    acc = KalshiOrderFees(sched, fee_granularity=gran, balance_precision=prec)
    slack = CENT - math.gcd(prec, CENT)
    for _, p, q in order:
        f = acc.fill(Price(p), Qty(q))
        assert f.rebate >= 0
        assert f.rebate % CENT == 0
        assert f.trade_fee >= 0
        assert 0 <= f.rounding_fee < prec
        assert acc.net_fee >= 0
        assert acc.ideal_fee <= acc.net_fee <= acc.ideal_fee + slack < acc.ideal_fee + CENT
    if len(levels) == 1:  # the ideal is literally one fill of the whole quantity
        single = KalshiOrderFees(sched, fee_granularity=gran, balance_precision=prec)
        single.fill(Price(levels[0][0]), Qty(levels[0][1]))
        assert single.net_fee == acc.ideal_fee
        assert acc.net_fee - single.net_fee < CENT


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    gran=st.sampled_from(GRANULARITIES),
    prec=st.sampled_from(PRECISIONS),
    mult=mult_st,
    coef=st.sampled_from(["0.07", "0.0175"]),
)
def test_bound_holds_for_every_split(
    data: st.DataObject, gran: int, prec: int, mult: str, coef: str
) -> None:
    sched = _sched(coef, mult)
    levels, order = _order(data, max_parts=80)
    typed = [(Price(p), Qty(q)) for p, q in levels]
    bound = kalshi_order_fee_bound(sched, typed, fee_granularity=gran, balance_precision=prec)
    acc = KalshiOrderFees(sched, fee_granularity=gran, balance_precision=prec)
    for _, p, q in order:
        acc.fill(Price(p), Qty(q))
        # a prefix is itself some order: its net is below its own bound, which is ≤ this one
    assert 0 <= acc.net_fee <= bound
    # the bound is the same whichever way the levels are listed or split up front
    split_levels = [(Price(p), Qty(q)) for _, p, q in order]
    assert (
        kalshi_order_fee_bound(sched, split_levels, fee_granularity=gran, balance_precision=prec)
        == bound
    )
    if prec == CENT:  # non-direct members: no slack at all, the net is the ideal
        assert acc.net_fee == bound


def test_many_tiny_fills_without_accumulator_would_overcharge() -> None:
    """Sanity of the scenario the rebates exist for: 100 fills of 0.01 contract at $0.50
    cost $0.005 of fees each before rebates: trade fee $0.000175 → $0.0002, cost $0.005,
    charge $0.0052 → $0.01, rounding fee $0.0048.  Together $0.50; one fill of 1 contract
    costs $0.02, so $0.48 comes back as rebates."""
    acc = KalshiOrderFees(_sched())
    fills = [acc.fill(Price(5_000), Qty(1)) for _ in range(100)]
    assert all(f.trade_fee == 200 and f.rounding_fee == 4_800 for f in fills)
    assert sum(f.trade_fee + f.rounding_fee for f in fills) == 50 * CENT
    # one fill of 1 contract: $0.0175 + rounding $0.0025 = $0.02
    assert acc.ideal_fee == 2 * CENT
    assert acc.net_fee == 2 * CENT
    assert acc.rebates == 48 * CENT


# ------------------------------------------------ the rule inside the detector ----------


@settings(max_examples=150, deadline=None)
@given(
    k=st.lists(st.tuples(st.integers(2000, 5500), st.integers(1, 3000)), min_size=1, max_size=4),
    f=st.lists(st.tuples(st.integers(30, 55), st.integers(1, 30)), min_size=1, max_size=3),
    direct=st.booleans(),
)
def test_detector_under_fee_rounding_charges_the_order_bound(
    k: list[tuple[int, int]], f: list[tuple[int, int]], direct: bool
) -> None:
    """``kalshi_fee_rounding = "fee_rounding"``: the Kalshi fee of every opportunity is the
    order-level bound of the current rule for exactly the levels it takes (sub-penny
    prices, fractional sizes included), so the detector never underestimates it."""
    params = FeeParams(
        kalshi_fee_rounding="fee_rounding",
        kalshi_balance_precision_usd=100 if direct else 10_000,
    )
    kalshi = sorted(dict(k).items())  # one size per price; $0.0001 grid, 0.01-contract sizes
    book = _book({Outcome.YES: kalshi}, {Outcome.NO: [(p * 100, q * 100) for p, q in f]})
    model = FeeModel(params)
    for opp in ArbitrageDetector(model, DetectorParams(min_edge_usd=0)).evaluate(book, NOW):
        levels = [(Price(p), Qty(q)) for p, q in _consume(kalshi, opp.size)]
        bound = kalshi_order_fee_bound(
            model.kalshi_schedule(), levels, balance_precision=params.kalshi_balance_precision_usd
        )
        assert opp.kalshi.fee == bound == model.kalshi_fee(levels)


def test_fee_rounding_equals_cent_per_order_on_cents_for_non_direct_members() -> None:
    """On the 1-cent grid with whole contracts the cost is whole cents, so the current
    rule's net fee (non-direct: $0.01 balance) is the cent-per-order fee exactly."""
    cur = FeeModel(FeeParams(kalshi_fee_rounding="fee_rounding"))
    old = FeeModel(FeeParams())
    for price in range(100, 10_000, 100):
        for n in (1, 3, 10, 77):
            fills = [(Price(price), Qty(n * 100))]
            assert cur.kalshi_fee(fills) == old.kalshi_fee(fills), (price, n)
