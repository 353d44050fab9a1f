from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbkit.model import (
    ConversionError,
    complement,
    money_str,
    notional,
    parse_money,
    parse_price,
    parse_qty,
    price_from_ibkr,
    price_str,
    qty_from_ibkr,
    qty_str,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.5600", 5600),
        ("0.56", 5600),
        ("0.960", 9600),
        ("0.0001", 1),
        (0.56, 5600),
        ("0.99990", 9999),
    ],
)
def test_parse_price_kalshi_shapes(raw: object, expected: int) -> None:
    assert parse_price(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"), [("10.00", 1000), ("3", 300), (3, 300), ("0.01", 1), ("146.00", 14600)]
)
def test_parse_qty(raw: object, expected: int) -> None:
    assert parse_qty(raw) == expected


def test_signed_qty_for_deltas() -> None:
    assert parse_qty("-54.00", "delta_fp", signed=True) == -5400
    with pytest.raises(ConversionError, match=r"delta_fp.*negative"):
        parse_qty("-54.00", "delta_fp")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("0.56001", "decimal places"),
        ("1.0000", "between 0 and 1"),
        ("0", "between 0 and 1"),
        ("-0.5", "between 0 and 1"),
        ("abc", "not a decimal"),
        ("", "not a decimal"),
        ("1e-2", "not a decimal"),
        (True, "boolean"),
        (None, "unsupported"),
        (float("nan"), "finite"),
    ],
)
def test_parse_price_rejects_with_field_and_value(raw: object, problem: str) -> None:
    with pytest.raises(ConversionError) as exc:
        parse_price(raw, "yes_dollars_fp[0][0]")
    assert "yes_dollars_fp[0][0]" in str(exc.value)
    assert problem in str(exc.value)


def test_qty_rejects_inexact() -> None:
    with pytest.raises(ConversionError, match="decimal places"):
        parse_qty("1.001")


def test_ibkr_floats() -> None:
    assert price_from_ibkr(0.57) == 5700
    assert price_from_ibkr(0.1 + 0.2) == 3000  # binary float noise is absorbed, not rounded away
    with pytest.raises(ConversionError):
        price_from_ibkr(0.571234567)
    with pytest.raises(ConversionError):
        price_from_ibkr(-1.0)
    assert qty_from_ibkr(12.0) == 1200
    assert qty_from_ibkr(Decimal("7")) == 700
    with pytest.raises(ConversionError, match="whole"):
        qty_from_ibkr(1.5)


def test_money_and_formatting() -> None:
    assert parse_money("1.75") == 1_750_000
    assert notional(parse_price("0.56"), parse_qty("3")) == 1_680_000  # $1.68
    assert complement(parse_price("0.42")) == 5800
    assert price_str(5600) == "0.5600"
    assert qty_str(-5400) == "-54.00"
    assert money_str(1_750_000, 2) == "1.75"


@given(st.integers(min_value=1, max_value=9999))
def test_price_roundtrip(p: int) -> None:
    assert parse_price(price_str(p)) == p
    assert parse_price(Decimal(p).scaleb(-4)) == p
    assert price_from_ibkr(p / 10_000) == p


@given(st.integers(min_value=0, max_value=10**12))
def test_qty_roundtrip(q: int) -> None:
    assert parse_qty(qty_str(q)) == q
