"""Detector vs a brute-force oracle that tries every size on both combinations."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from arbkit.arbitrage.arbitrage import YEAR_NS, ArbitrageDetector, combos_for
from arbkit.arbitrage.fee_model import FeeModel
from arbkit.book.order_book import CentralOrderBook, SymbolBook
from arbkit.config.execution_loader import DetectorParams, FeeParams
from arbkit.config.loader import SymbolMap
from arbkit.model import NormalizedTick, Outcome, Venue

from .conftest import NOW_NS, make_spec
from .test_order_book import lvl, snapshot


def _book(
    k: dict[Outcome, list[tuple[int, int]]],
    f: dict[Outcome, list[tuple[int, int]]],
    yes_is: Outcome = Outcome.YES,
) -> SymbolBook:
    cob = CentralOrderBook(SymbolMap({"SYM": make_spec("SYM", yes_is)}))
    cob.apply_batch(snapshot(Venue.KALSHI, k))
    cob.apply_batch(snapshot(Venue.IBKR, f))
    return cob["SYM"]


def _consume(levels: list[tuple[int, int]], q: int) -> list[tuple[int, int]]:
    out = []
    for p, s in sorted(levels):
        take = min(s, q)
        if take:
            out.append((p, take))
        q -= take
        if not q:
            break
    return out


def oracle(
    book: SymbolBook, fm: FeeModel, params: DetectorParams, now_ns: int
) -> dict[str, tuple[int, int]]:
    """{combo: (contracts, profit_e6)} by trying every whole size."""
    out: dict[str, tuple[int, int]] = {}
    ttr = book.spec.resolution_ts_ns - now_ns
    for combo in combos_for(book):
        kl = list(book.ladder(Venue.KALSHI, combo.kalshi_outcome).levels())
        fl = list(book.ladder(Venue.IBKR, combo.ibkr_outcome).levels())
        n_max = min(
            params.max_contracts_per_trade,
            sum(s for _, s in kl) // 100,
            sum(s for _, s in fl) // 100,
        )
        best: tuple[int, int] | None = None
        for n in range(1, n_max + 1):
            fk, ff = _consume(kl, n * 100), _consume(fl, n * 100)
            ck, cf = sum(p * q for p, q in fk), sum(p * q for p, q in ff)
            fee_k = fm.kalshi_fee(fk, book.spec.kalshi_series)
            fee_f = fm.forecastex_fee(n * 100)
            g = n * 1_000_000 - ck - cf - fee_k - fee_f
            if (
                ck + cf > params.max_notional_usd_per_trade
                or g <= 0
                or g <= n * params.min_edge_usd
            ):
                continue
            if params.min_annualized_return_bps:
                cap = ck + cf + fee_k + fee_f
                coupon = fm.params.forecastex_coupon_apy_bps
                ann = (g * 10_000 * YEAR_NS + cf * coupon * ttr) // (cap * ttr)
                if ann < params.min_annualized_return_bps:
                    continue
            if best is None or g > best[1]:
                best = (n, g)
        if best is not None:
            out[combo.label] = best
    return out


def test_hand_computed_single_level() -> None:
    # Kalshi YES ask 0.40 ×10, ForecastEx NO ask 0.50 ×10: 10 contracts cost $9.00,
    # Kalshi fee ceil(0.07·10·0.4·0.6 = 0.168) = $0.17, ForecastEx 10 × $0.01 = $0.10
    # (the conservative setting; the default 0 takes the cent as inside the pair price).
    book = _book({Outcome.YES: [(4000, 1000)]}, {Outcome.NO: [(5000, 1000)]})
    det = ArbitrageDetector(
        FeeModel(FeeParams(forecastex_fee_per_contract_usd=10_000)), DetectorParams()
    )
    [opp] = det.evaluate(book, NOW_NS)
    assert opp.combo == "kalshi_yes+ibkr_no"
    assert opp.contracts == 10
    assert opp.gross_cost == 9_000_000
    assert opp.kalshi.fee == 170_000 and opp.ibkr.fee == 100_000
    assert opp.expected_profit == 730_000
    assert opp.net_edge_per_contract == 73_000
    assert opp.kalshi.limit_price == 4000 and opp.ibkr.limit_price == 5000
    # 30 days to resolution: 0.73 / 9.27 per 30 days ≈ 95.8 %/yr
    assert 9500 < opp.annualized_return_bps < 9700


def test_depth_walk_stops_where_edge_ends() -> None:
    # Second Kalshi level at 0.49 leaves 0.01 gross, eaten by fees → only the first level.
    book = _book({Outcome.YES: [(4000, 500), (4900, 5000)]}, {Outcome.NO: [(5000, 10_000)]})
    det = ArbitrageDetector(FeeModel(FeeParams()), DetectorParams(min_edge_usd=0))
    [opp] = det.evaluate(book, NOW_NS)
    assert opp.contracts == 5


def test_inverted_orientation_never_assumes_yes_equals_yes() -> None:
    # Kalshi YES == ForecastEx NO here, so Kalshi YES pairs with ForecastEx YES.
    k = {Outcome.YES: [(4000, 1000)]}
    f = {Outcome.YES: [(5000, 1000)], Outcome.NO: [(5000, 1000)]}
    det = ArbitrageDetector(FeeModel(FeeParams()), DetectorParams())
    [opp] = det.evaluate(_book(k, f, Outcome.NO), NOW_NS)
    assert opp.ibkr.outcome is Outcome.YES
    [opp2] = det.evaluate(_book(k, f, Outcome.YES), NOW_NS)
    assert opp2.ibkr.outcome is Outcome.NO


def test_invalid_or_stale_never_trades() -> None:
    book = _book({Outcome.YES: [(4000, 1000)]}, {Outcome.NO: [(5000, 1000)]})
    det = ArbitrageDetector(FeeModel(FeeParams()), DetectorParams(max_quote_age_ms=1000))
    assert det.evaluate(book, NOW_NS)
    later = NOW_NS + 2_000_000_000
    assert not det.evaluate(book, later)  # stale
    # Kalshi's in-sequence stream vouches for its quiet book; ForecastEx's liveness
    # (socket, heartbeats) never vouches for a quote (book/freshness.py).
    alive = {Venue.KALSHI: later, Venue.IBKR: later}
    assert not det.evaluate(book, later, alive)
    for t in snapshot(Venue.IBKR, {Outcome.NO: [(5000, 1000)]}):
        book.apply(replace(t, recv_ts_ns=later - 500_000_000))  # a re-request answered
    [opp] = det.evaluate(book, later, alive)
    assert opp.quote_seen_ns == later - 500_000_000  # the older proof of the two legs
    book.apply(NormalizedTick.reset("SYM", Venue.KALSHI, valid=False, recv_ts_ns=NOW_NS))
    book.apply(lvl(Venue.KALSHI, Outcome.YES, 4000, 1000))  # delta on an invalid book
    assert not det.evaluate(book, NOW_NS)


def test_locked_capital_filter() -> None:
    # 0.5 cent net edge per contract, resolution a year out → tiny annual return.
    spec_book = _book({Outcome.YES: [(4000, 10_000)]}, {Outcome.NO: [(5800, 10_000)]})
    fm = FeeModel(FeeParams(forecastex_fee_per_contract_usd=0))
    det = ArbitrageDetector(fm, DetectorParams(min_edge_usd=0))
    [opp] = det.evaluate(spec_book, NOW_NS)
    strict = ArbitrageDetector(
        fm, DetectorParams(min_edge_usd=0, min_annualized_return_bps=opp.annualized_return_bps + 1)
    )
    assert not strict.evaluate(spec_book, NOW_NS)
    with_coupon = ArbitrageDetector(
        FeeModel(FeeParams(forecastex_fee_per_contract_usd=0, forecastex_coupon_apy_bps=383)),
        DetectorParams(min_edge_usd=0),
    )
    [opp_c] = with_coupon.evaluate(spec_book, NOW_NS)
    assert opp_c.annualized_return_bps > opp.annualized_return_bps


prices = st.integers(min_value=1, max_value=99).map(lambda c: c * 100) | st.integers(
    min_value=1, max_value=9999
)


@st.composite
def ladders(draw: st.DrawFn, whole: bool) -> list[tuple[int, int]]:
    n = draw(st.integers(min_value=0, max_value=6))
    ps = draw(st.lists(prices, min_size=n, max_size=n, unique=True))
    if whole:
        sizes = draw(st.lists(st.integers(min_value=1, max_value=60), min_size=n, max_size=n))
        return [(p, s * 100) for p, s in zip(ps, sizes, strict=True)]
    sizes = draw(st.lists(st.integers(min_value=1, max_value=6000), min_size=n, max_size=n))
    return list(zip(ps, sizes, strict=True))


@settings(max_examples=600, deadline=None)
@given(
    kyes=ladders(False),
    kno=ladders(False),
    fyes=ladders(True),
    fno=ladders(True),
    yes_is=st.sampled_from(list(Outcome)),
    min_edge=st.sampled_from([0, 1_000, 5_000, 10_000, 30_000]),
    max_contracts=st.sampled_from([1, 3, 20, 100, 500]),
    max_notional=st.sampled_from([500_000, 20_000_000, 10**12]),
    rounding=st.sampled_from(["cent_per_order", "centicent_per_fill"]),
    fx_fee=st.sampled_from([0, 10_000]),
    coef=st.sampled_from([Decimal("0.07"), Decimal("0.0175"), Decimal("0")]),
    min_ann=st.sampled_from([0, 0, 2_000, 50_000]),
    coupon=st.sampled_from([0, 383]),
)
def test_detector_matches_brute_force_oracle(
    kyes: list[tuple[int, int]],
    kno: list[tuple[int, int]],
    fyes: list[tuple[int, int]],
    fno: list[tuple[int, int]],
    yes_is: Outcome,
    min_edge: int,
    max_contracts: int,
    max_notional: int,
    rounding: str,
    fx_fee: int,
    coef: Decimal,
    min_ann: int,
    coupon: int,
) -> None:
    book = _book({Outcome.YES: kyes, Outcome.NO: kno}, {Outcome.YES: fyes, Outcome.NO: fno}, yes_is)
    fm = FeeModel(
        FeeParams(
            kalshi_taker_coefficient=coef,
            kalshi_fee_rounding=rounding,
            forecastex_fee_per_contract_usd=fx_fee,
            forecastex_coupon_apy_bps=coupon,
        )
    )
    params = DetectorParams(
        min_edge_usd=min_edge,
        max_contracts_per_trade=max_contracts,
        max_notional_usd_per_trade=max_notional,
        min_annualized_return_bps=min_ann,
    )
    got = {o.combo: o for o in ArbitrageDetector(fm, params).evaluate(book, NOW_NS)}
    want = oracle(book, fm, params, NOW_NS)
    assert {k: (o.contracts, o.expected_profit) for k, o in got.items()} == want
    for o in got.values():
        n = o.contracts
        # never: total cost + fees ≥ $1 − min edge (per contract)
        assert o.gross_cost + o.total_fees < n * 1_000_000 - n * min_edge
        assert o.expected_profit == n * 1_000_000 - o.gross_cost - o.total_fees
        assert o.kalshi.size == o.ibkr.size == o.size
        assert o.gross_cost <= max_notional


def test_replace_params_at_runtime() -> None:
    book = _book({Outcome.YES: [(4000, 1000)]}, {Outcome.NO: [(5000, 1000)]})
    det = ArbitrageDetector(FeeModel(FeeParams()), DetectorParams())
    assert det.evaluate(book, NOW_NS)  # edge $0.083 per contract
    det.params = replace(det.params, min_edge_usd=90_000)
    assert not det.evaluate(book, NOW_NS)


def test_kalshi_message_lagging_its_own_timestamp_is_stale() -> None:
    """A Kalshi update that reached us later than max_venue_lag_ms after Kalshi stamped
    it (ts_ms) is a backlog, not a quote: not fresh, however recently it arrived."""
    det = ArbitrageDetector(FeeModel(FeeParams()), DetectorParams(max_venue_lag_ms=3_000))

    def book_with_kalshi_lag(lag_ms: int) -> SymbolBook:
        book = _book({Outcome.YES: [(4000, 1000)]}, {Outcome.NO: [(5000, 1000)]})
        t = lvl(Venue.KALSHI, Outcome.YES, 4000, 1000)
        book.apply(replace(t, venue_ts_ns=NOW_NS - lag_ms * 1_000_000, recv_ts_ns=NOW_NS))
        return book

    assert det.evaluate(book_with_kalshi_lag(2_999), NOW_NS)
    assert not det.evaluate(book_with_kalshi_lag(3_001), NOW_NS)


@settings(max_examples=150, deadline=None)
@given(
    k=st.lists(st.tuples(st.integers(3000, 5500), st.integers(1, 30)), min_size=1, max_size=4),
    f=st.lists(st.tuples(st.integers(3000, 5500), st.integers(1, 30)), min_size=1, max_size=4),
    buffer=st.integers(0, 120),
)
def test_slippage_buffer_is_a_per_contract_cost_on_each_leg(
    k: list[tuple[int, int]], f: list[tuple[int, int]], buffer: int
) -> None:
    """Sizing and expected profit with a buffer b per leg = those with ForecastEx's fee
    raised by 2b (both are a constant cost per contract); fees reported stay the real ones."""
    book = _book(
        {Outcome.YES: [(p, s * 100) for p, s in k]}, {Outcome.NO: [(p, s * 100) for p, s in f]}
    )
    fx = FeeParams().forecastex_fee_per_contract_usd
    with_buf = ArbitrageDetector(
        FeeModel(FeeParams()), DetectorParams(slippage_buffer_usd_per_leg=buffer * 100)
    ).evaluate(book, NOW_NS)
    as_fee = ArbitrageDetector(
        FeeModel(FeeParams(forecastex_fee_per_contract_usd=fx + 2 * buffer * 100)),
        DetectorParams(),
    ).evaluate(book, NOW_NS)
    assert [(o.contracts, o.expected_profit) for o in with_buf] == [
        (o.contracts, o.expected_profit) for o in as_fee
    ]
    for o in with_buf:
        assert o.total_fees == o.kalshi.fee + o.ibkr.fee
        assert o.ibkr.fee == FeeModel(FeeParams()).forecastex_fee(o.size)


def test_book_depth_fraction_sizes_to_a_share_of_each_level() -> None:
    book = _book({Outcome.YES: [(4000, 1000), (4100, 700)]}, {Outcome.NO: [(5000, 3000)]})
    full = ArbitrageDetector(FeeModel(FeeParams()), DetectorParams()).evaluate(book, NOW_NS)
    half = ArbitrageDetector(
        FeeModel(FeeParams()), DetectorParams(book_depth_fraction=Decimal("0.5"))
    ).evaluate(book, NOW_NS)
    assert full[0].contracts == 17 and half[0].contracts == 8  # 5 + 3.5 → 8 whole


def test_coupon_rate_is_the_dated_one_in_force_and_reported() -> None:
    """The ForecastEx coupon follows EFFR: the config gives dated rates; the annualised
    return uses the one in force at detection and says which (Opportunity.coupon_bps)."""
    import datetime as dt

    book = _book({Outcome.YES: [(4000, 1000)]}, {Outcome.NO: [(5000, 1000)]})
    day = dt.datetime.fromtimestamp(NOW_NS // 1_000_000_000, dt.UTC).date()
    rates = {
        (day - dt.timedelta(days=30)).isoformat(): 383,
        (day - dt.timedelta(days=1)).isoformat(): 358,
        (day + dt.timedelta(days=1)).isoformat(): 333,  # not yet in force
    }
    fees = FeeParams(forecastex_coupon_apy_bps=400, forecastex_coupon_rates_bps=rates)
    [opp] = ArbitrageDetector(FeeModel(fees), DetectorParams()).evaluate(book, NOW_NS)
    [flat] = ArbitrageDetector(
        FeeModel(FeeParams(forecastex_coupon_apy_bps=358)), DetectorParams()
    ).evaluate(book, NOW_NS)
    assert opp.coupon_bps == 358 and opp.annualized_return_bps == flat.annualized_return_bps
    assert FeeModel(fees).coupon_bps_at(0) == 400  # before the first dated rate
