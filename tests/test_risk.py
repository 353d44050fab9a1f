"""The pure risk rules of issue 12: the trading day, the false-opportunity guards,
exposure from positions and cost basis, balances, and who may change the trading state."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from arbkit.config._toml import ConfigError
from arbkit.config.execution_loader import RiskLimits, parse_execution_config
from arbkit.execution import risk
from arbkit.execution.risk import RiskState, TradingState
from arbkit.model import Money, Outcome, Qty, Venue

ET = ZoneInfo("America/New_York")


def ns(d: dt.datetime) -> int:
    return int(d.timestamp()) * 1_000_000_000


@pytest.mark.parametrize(
    ("local", "start"),
    [
        # default: US/Eastern midnight, in winter (UTC-5) and in summer (UTC-4)
        (dt.datetime(2026, 12, 3, 0, 30, tzinfo=ET), dt.datetime(2026, 12, 3, tzinfo=ET)),
        (dt.datetime(2026, 12, 2, 23, 59, tzinfo=ET), dt.datetime(2026, 12, 2, tzinfo=ET)),
        (dt.datetime(2026, 7, 1, 12, 0, tzinfo=ET), dt.datetime(2026, 7, 1, tzinfo=ET)),
        # the day after the spring-forward night still starts at local midnight
        (dt.datetime(2026, 3, 8, 10, 0, tzinfo=ET), dt.datetime(2026, 3, 8, tzinfo=ET)),
    ],
)
def test_trading_day_starts_at_eastern_midnight(local: dt.datetime, start: dt.datetime) -> None:
    assert risk.trading_day_start_ns(ns(local), RiskLimits()) == ns(start)


def test_trading_day_boundary_and_zone_are_configurable() -> None:
    limits = RiskLimits(trading_day_tz="UTC", trading_day_start_hhmm=1700)
    utc = dt.UTC
    before = dt.datetime(2026, 12, 3, 16, 59, tzinfo=utc)
    after = dt.datetime(2026, 12, 3, 17, 0, tzinfo=utc)
    assert risk.trading_day_start_ns(ns(before), limits) == ns(
        dt.datetime(2026, 12, 2, 17, tzinfo=utc)
    )
    assert risk.trading_day_start_ns(ns(after), limits) == ns(after)


def test_trading_day_config_is_validated() -> None:
    with pytest.raises(ConfigError, match=r"risk\.trading_day_tz.*IANA"):
        parse_execution_config({"risk": {"trading_day_tz": "Eastern"}}, "x.toml")
    with pytest.raises(ConfigError, match=r"risk\.trading_day_start_hhmm"):
        parse_execution_config({"risk": {"trading_day_start_hhmm": 2460}}, "x.toml")


def test_mid_agreement_catches_an_inverted_pairing() -> None:
    limits = RiskLimits()  # max_mid_gap_usd 0.20
    # YES asked 0.31 / NO asked 0.71 on both venues: the YES mid is 0.30 on both.
    k_mid = risk.implied_yes_mid(3_100, 7_100)
    assert k_mid == 3_000
    right = risk.implied_yes_mid(3_100, 7_100)  # kalshi_yes_is = yes: the FX YES book
    wrong = risk.implied_yes_mid(7_100, 3_100)  # kalshi_yes_is = no: the FX NO book
    assert risk.check_mid_agreement(k_mid, right, limits) == risk.OK
    ok, why = risk.check_mid_agreement(k_mid, wrong, limits)
    assert not ok and "0.3 vs forecastex equivalent 0.7" in why and "kalshi_yes_is" in why
    # exactly at the bound passes; a one-sided book has no mid and is not judged here
    assert risk.check_mid_agreement(3_000, 5_000, limits) == risk.OK
    assert not risk.check_mid_agreement(3_000, 5_001, limits)[0]
    assert risk.check_mid_agreement(None, 5_000, limits) == risk.OK


def test_exposure_is_cost_basis_of_held_positions_and_released_when_gone() -> None:
    st = RiskState()
    k = ("S", Venue.KALSHI, Outcome.YES)
    f = ("S", Venue.IBKR, Outcome.NO)
    st.positions[k], st.cost_basis[k] = Qty(1_000), Money(4_170_000)
    st.positions[f], st.cost_basis[f] = Qty(1_000), Money(5_200_000)
    assert st.exposure == 9_370_000
    assert st.exposure_by(Venue.KALSHI) == 4_170_000
    assert st.exposure_by(symbol="other") == 0
    st.positions[k] = Qty(0)  # closed / settled at the venue: its capital is released
    assert st.exposure == 5_200_000
    # a position the venue shows with no known cost counts at $1 per contract
    st.positions[("T", Venue.IBKR, Outcome.YES)] = Qty(300)
    assert st.exposure == 5_200_000 + 3_000_000


def test_balance_must_be_known_and_fresh_and_above_the_floor() -> None:
    limits = RiskLimits(max_balance_age_ms=1_000, min_balance_usd_ibkr=50_000_000)
    now = 10_000_000_000
    ok, why = risk.check_balance_fresh({Venue.KALSHI: now}, limits, now)
    assert not ok and why == "ibkr balance unknown"
    fresh = {Venue.KALSHI: now, Venue.IBKR: now - 1_000_000_000}
    assert risk.check_balance_fresh(fresh, limits, now) == risk.OK
    ok, why = risk.check_balance_fresh(fresh, limits, now + 1_000_000)
    assert not ok and "max_balance_age_ms" in why
    ok, why = risk.check_min_balance({Venue.KALSHI: 1, Venue.IBKR: 49_990_000}, limits)
    assert not ok and why == "ibkr balance 49.99 USD < min_balance_usd_ibkr 50"


def test_new_executions_only_when_active() -> None:
    st = RiskState()
    assert risk.check_kill_switch(st) == risk.OK
    st.trading_state, st.state_reason = TradingState.REDUCING, "kalshi balance low"
    assert risk.check_kill_switch(st) == (False, "reducing (no new exposure): kalshi balance low")
    st.trading_state = TradingState.HALTED
    assert not risk.check_kill_switch(st)[0] and st.kill_switch


class _Balance:
    """A venue client that only answers balance()."""

    def __init__(self, amount: int) -> None:
        self.amount = amount

    async def balance(self) -> Money:
        return Money(self.amount)


async def test_who_may_change_the_trading_state() -> None:
    from arbkit.config.execution_loader import ExecutionConfig
    from arbkit.config.loader import SymbolMap
    from arbkit.execution.executor import Executor
    from arbkit.execution.journal import MemoryJournal

    changes: list[tuple[str, str, str]] = []
    kalshi, ibkr = _Balance(100_000_000), _Balance(100_000_000)
    cfg = ExecutionConfig(risk=RiskLimits(min_balance_usd_kalshi=50_000_000))
    ex = Executor(
        cfg,
        SymbolMap({}),
        kalshi,  # type: ignore[arg-type]
        ibkr,  # type: ignore[arg-type]
        MemoryJournal(),
        quote=lambda s, v, o: [],
        clock=lambda: 1,
        on_state_change=lambda ts, a, b, why, actor: changes.append((a.value, b.value, actor)),
    )
    await ex.refresh_balances()
    assert ex.state.trading_state is TradingState.ACTIVE and not changes
    kalshi.amount = 40_000_000  # below the floor: reducing, and back when it recovers
    await ex.refresh_balances()
    assert ex.state.trading_state is TradingState.REDUCING
    kalshi.amount = 60_000_000
    await ex.refresh_balances()
    assert ex.state.trading_state is TradingState.ACTIVE
    ex.kill("limit breached")
    kalshi.amount = 40_000_000
    await ex.refresh_balances()  # reducing never replaces halted
    ex.set_state(TradingState.ACTIVE, "a limit tries to lift", "limit")
    assert ex.state.trading_state is TradingState.HALTED
    ex.reset_kill_switch("checked")  # only the user lifts it
    assert ex.state.trading_state is TradingState.ACTIVE
    assert changes == [
        ("active", "reducing", "limit"),
        ("reducing", "active", "limit"),
        ("active", "halted", "limit"),
        ("halted", "active", "user"),
    ]


def test_cooldown_after_failure_and_min_size() -> None:
    from arbkit.config.execution_loader import ExecutionParams
    from arbkit.execution.risk import RiskState, check_cooldown, check_min_size

    limits = RiskLimits(symbol_cooldown_ms=0, cooldown_ms_after_failure=5_000)
    st_ = RiskState()
    assert check_cooldown("S", st_, limits, 10**18)[0]
    st_.last_failure_ns["S"] = 10**18
    ok, why = check_cooldown("S", st_, limits, 10**18 + 4_999_000_000)
    assert not ok and "cooldown_ms_after_failure 5000" in why
    assert check_cooldown("S", st_, limits, 10**18 + 5_000_000_000)[0]
    assert check_cooldown("OTHER", st_, limits, 10**18)[0]
    from .test_machine import _opportunity

    opp = _opportunity(Outcome.YES)  # 10 contracts
    ok, why = check_min_size(opp, ExecutionParams(min_partial_fill_contracts=11))
    assert not ok and why == "10 contracts < min_partial_fill_contracts 11"
    assert check_min_size(opp, ExecutionParams(min_partial_fill_contracts=10))[0]


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("detector", "book_depth_fraction", "0", "0 < x <= 1"),
        ("detector", "book_depth_fraction", "1.5", "0 < x <= 1"),
        ("detector", "slippage_buffer_usd_per_leg", "-0.01", "negative"),
        ("execution", "min_partial_fill_contracts", 0, ">= 1"),
        ("execution", "max_unhedged_ms", -1, "negative"),
        ("risk", "cooldown_ms_after_failure", -5, "negative"),
    ],
)
def test_legging_knobs_are_validated(section: str, key: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_execution_config({section: {key: value}}, "exec.toml")
    assert f"{section}.{key}" in str(err.value) and fragment in str(err.value)


def test_mark_to_market_is_one_dollar_minus_the_opposite_ask() -> None:
    from arbkit.execution.risk import mark_to_market

    pos = {
        ("S", Venue.KALSHI, Outcome.YES): Qty(1_000),  # 10 contracts
        ("S", Venue.IBKR, Outcome.NO): Qty(1_000),
        ("T", Venue.IBKR, Outcome.YES): Qty(500),  # no opposite ask: marks at 0
    }
    asks = {
        ("S", Venue.KALSHI, Outcome.NO): [(6_500, 100)],
        ("S", Venue.IBKR, Outcome.YES): [(4_900, 5)],
    }
    got = mark_to_market(pos, lambda s, v, o: asks.get((s, v, o), []))
    assert got == {Venue.KALSHI: Money(3_500_000), Venue.IBKR: Money(5_100_000)}
