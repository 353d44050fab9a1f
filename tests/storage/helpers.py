"""Shared builders for the storage tests."""

from __future__ import annotations

from arbkit.model import Leg, Money, Opportunity, Outcome, Price, Qty, Venue


def make_opportunity(
    symbol: str = "FED-25DEC", detected_ns: int = 1_700_000_000_123_456_789, scale: int = 1
) -> Opportunity:
    """A plausible opportunity: 3 contracts, Kalshi YES 0.4100 + IBKR NO 0.55."""
    k = Leg(Venue.KALSHI, Outcome.YES, Price(4100), Qty(300), Money(1_230_000), Money(60_000))
    i = Leg(Venue.IBKR, Outcome.NO, Price(5500), Qty(300), Money(1_650_000), Money(30_000))
    return Opportunity(
        symbol=symbol,
        combo="kalshi_yes+ibkr_no",
        kalshi=k,
        ibkr=i,
        size=Qty(300),
        gross_cost=Money(2_880_000 * scale),
        total_fees=Money(90_000),
        expected_profit=Money(30_000 * scale),
        net_edge_per_contract=Money(10_000),
        annualized_return_bps=1234,
        kalshi_book_ts_ns=detected_ns - 5_000,
        ibkr_book_ts_ns=detected_ns - 7_000,
        detected_ts_ns=detected_ns,
    )
