from decimal import ROUND_CEILING, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbkit.arbitrage.fee_model import FeeModel, SeriesFee, UnknownFeeType
from arbkit.config.execution_loader import FeeParams
from arbkit.model import Price, Qty


def _fm(**kw: object) -> FeeModel:
    return FeeModel(FeeParams(**kw))


@pytest.mark.parametrize(
    ("price", "qty", "expected_e6"),
    [
        (5000, 10_000, 1_750_000),  # 100 contracts at $0.50 taker = $1.75
        (5000, 100, 20_000),  # 1 contract at $0.50 = $0.0175 → $0.02
        (100, 100, 10_000),  # 1 at $0.01: $0.000693 → $0.01
        (5600, 1_000, 180_000),  # 10 at $0.56: 0.07·10·0.56·0.44 = 0.17248 → $0.18
        (9900, 10_000, 70_000),  # 100 at $0.99: $0.0693 → $0.07
    ],
)
def test_kalshi_taker_hand_computed(price: int, qty: int, expected_e6: int) -> None:
    assert _fm().kalshi_fee([(price, qty)]) == expected_e6


def test_maker_and_multiplier_and_centicent() -> None:
    fm = _fm(kalshi_series_multipliers={"KXINX": Decimal("0.5")})
    assert fm.kalshi_fee([(5000, 10_000)], maker=True) == 440_000  # 0.4375 → 0.44
    assert fm.kalshi_fee([(5000, 10_000)], "KXINX") == 880_000  # 0.875 → 0.88
    cc = _fm(kalshi_fee_rounding="centicent_per_fill")
    assert cc.kalshi_fee([(5000, 100)]) == 17_500
    assert cc.kalshi_fee([(550, 100)]) == 3_700  # $0.00363825 → $0.0037
    # per fill: two fills each rounded up; per order: one rounding over the sum
    fills = [(550, 100), (560, 100)]
    assert cc.kalshi_fee(fills) == 3_700 + 3_800
    assert _fm(kalshi_fee_rounding="cent_per_order").kalshi_fee(fills) == 10_000
    # the default, Kalshi's current rule: trade fee $0.0074 (0.00733 up to $0.0001), the
    # $0.111 + $0.0074 charge rounded up to the cent: $0.12 − $0.111 = $0.009 in all
    assert _fm().kalshi_fee(fills) == 9_000


def test_forecastex_fee() -> None:
    # default 0: the $0.01 per pair is inside ForecastEx's $1.01 pair price
    assert _fm().forecastex_fee(1_000) == 0
    assert _fm(forecastex_fee_per_contract_usd=10_000).forecastex_fee(1_000) == 100_000
    assert _fm(forecastex_fee_per_contract_usd=10_000).forecastex_fee(1_050) == 110_000


def _decimal_fee(coef: Decimal, price: int, qty: int, gran: Decimal) -> Decimal:
    raw = coef * (Decimal(qty) / 100) * (Decimal(price) / 10_000) * (1 - Decimal(price) / 10_000)
    return (raw / gran).to_integral_value(ROUND_CEILING) * gran


@settings(max_examples=3000)
@given(
    price=st.integers(min_value=1, max_value=9999),
    qty=st.integers(min_value=1, max_value=10_000_000),
    coef=st.sampled_from(["0.07", "0.0175", "0.035", "0.07"]),
    rounding=st.sampled_from(["cent_per_order", "centicent_per_fill"]),
)
def test_fee_matches_decimal_reference(price: int, qty: int, coef: str, rounding: str) -> None:
    gran = Decimal("0.01") if rounding == "cent_per_order" else Decimal("0.0001")
    fm = _fm(kalshi_taker_coefficient=Decimal(coef), kalshi_fee_rounding=rounding)
    got = fm.kalshi_fee([(price, qty)])
    assert Decimal(got) / 1_000_000 == _decimal_fee(Decimal(coef), price, qty, gran)


def test_full_grid_whole_contracts_cent() -> None:
    """Every cent price × 1..200 contracts against the Decimal reference."""
    fm = _fm()
    for price in range(100, 10_000, 100):
        for c in range(1, 201):
            got = fm.kalshi_fee([(price, c * 100)])
            assert Decimal(got) / 1_000_000 == _decimal_fee(
                Decimal("0.07"), price, c * 100, Decimal("0.01")
            )


def test_an_event_override_prices_its_markets_only_and_clears_back_to_the_series() -> None:
    """Kalshi's event fee override applies to the event's markets (by ticker); another
    market of the same series keeps the series' fee, and clearing restores it."""
    fm = FeeModel(FeeParams())
    fills = [(Price(4000), Qty(1000))]  # 10 contracts at $0.40: 0.07 × 2.4 = $0.168
    fm.set_series_fee("KXFED", SeriesFee("quadratic", Decimal(1)))
    fm.set_market_fee("KXFED-27JUN-T4", SeriesFee("quadratic", Decimal("0.5")))
    assert fm.kalshi_fee(fills, "KXFED", ticker="KXFED-27JUN-T4") == 90_000
    assert fm.kalshi_fee(fills, "KXFED", ticker="KXFED-27JUL-T4") == 170_000
    fm.set_market_fee("KXFED-27JUN-T4", None)
    assert fm.kalshi_fee(fills, "KXFED", ticker="KXFED-27JUN-T4") == 170_000
    with pytest.raises(UnknownFeeType, match="flat"):
        fm.set_market_fee("KXFED-27JUN-T4", SeriesFee("flat", Decimal(1)))
