"""Pre-trade risk checks: pure functions of (opportunity, state, limits, now) → (ok, reason).

Every order passes these first. The kill switch blocks new executions (cancels are still
allowed) until the user resets it; limit *breaches* trip it, ordinary "not now" answers
(cooldown, an execution already open) just skip the opportunity.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from arbkit.config.execution_loader import DetectorParams, RiskLimits
from arbkit.config.loader import SymbolSpec
from arbkit.model import QTY_SCALE, Money, Opportunity, Outcome, Qty, Venue

Check = tuple[bool, str]
OK: Check = (True, "")


@dataclass(slots=True)
class RiskState:
    """What the checks need to know; the executor keeps it current."""

    positions: dict[tuple[str, Venue, Outcome], Qty] = field(default_factory=dict)
    exposure: Money = Money(0)  # capital tied up in open positions (cost + fees)
    open_executions: int = 0
    last_execution_ns: dict[str, int] = field(default_factory=dict)
    realized_pnl_today: Money = Money(0)  # negative is a loss
    consecutive_failures: int = 0
    kill_switch: bool = False
    kill_reason: str = ""

    def venue_contracts(self, venue: Venue) -> int:
        return sum(q for (_, v, _), q in self.positions.items() if v is venue) // QTY_SCALE

    def symbol_contracts(self, symbol: str, venue: Venue) -> int:
        return (
            sum(q for (s, v, _), q in self.positions.items() if s == symbol and v is venue)
            // QTY_SCALE
        )


def check_kill_switch(state: RiskState) -> Check:
    return (False, f"kill switch on: {state.kill_reason}") if state.kill_switch else OK


def check_trade_size(opp: Opportunity, p: DetectorParams) -> Check:
    if opp.contracts > p.max_contracts_per_trade:
        return (
            False,
            f"{opp.contracts} contracts > max_contracts_per_trade {p.max_contracts_per_trade}",
        )
    if opp.gross_cost > p.max_notional_usd_per_trade:
        return False, "notional above max_notional_usd_per_trade"
    return OK


def check_min_edge(opp: Opportunity, p: DetectorParams) -> Check:
    if opp.net_edge_per_contract < p.min_edge_usd or opp.expected_profit <= 0:
        return False, "net edge below min_edge_usd"
    if opp.annualized_return_bps < p.min_annualized_return_bps:
        return False, "annualized return below min_annualized_return_bps"
    return OK


def check_quote_age(opp: Opportunity, p: DetectorParams, now_ns: int) -> Check:
    oldest = min(opp.kalshi_book_ts_ns, opp.ibkr_book_ts_ns)
    age_ms = (now_ns - oldest) // 1_000_000
    if age_ms > p.max_quote_age_ms:
        return False, f"quote {age_ms} ms old > max_quote_age_ms {p.max_quote_age_ms}"
    return OK


def check_time_to_close(close_ts_ns: int, limits: RiskLimits, now_ns: int) -> Check:
    left_s = (close_ts_ns - now_ns) // 1_000_000_000
    if left_s < limits.min_time_to_close_s:
        return False, f"{left_s} s to close < min_time_to_close_s {limits.min_time_to_close_s}"
    return OK


def check_positions(opp: Opportunity, state: RiskState, limits: RiskLimits) -> Check:
    n = opp.contracts
    for venue in (Venue.KALSHI, Venue.IBKR):
        after = state.symbol_contracts(opp.symbol, venue) + n
        if after > limits.max_position_contracts_per_symbol:
            return False, (
                f"{venue.value} position in {opp.symbol} would be {after} > "
                f"max_position_contracts_per_symbol {limits.max_position_contracts_per_symbol}"
            )
        total = state.venue_contracts(venue) + n
        if total > limits.max_position_contracts_per_venue:
            return False, (
                f"{venue.value} position would be {total} > "
                f"max_position_contracts_per_venue {limits.max_position_contracts_per_venue}"
            )
    return OK


def check_exposure(opp: Opportunity, state: RiskState, limits: RiskLimits) -> Check:
    if state.exposure + opp.capital > limits.max_total_exposure_usd:
        return False, "total exposure would exceed max_total_exposure_usd"
    return OK


def check_open_executions(state: RiskState, limits: RiskLimits) -> Check:
    if state.open_executions >= limits.max_open_executions:
        return False, f"{state.open_executions} executions open (max_open_executions)"
    return OK


def check_cooldown(symbol: str, state: RiskState, limits: RiskLimits, now_ns: int) -> Check:
    last = state.last_execution_ns.get(symbol)
    if last is not None and now_ns - last < limits.symbol_cooldown_ms * 1_000_000:
        return False, f"{symbol} in cooldown (symbol_cooldown_ms {limits.symbol_cooldown_ms})"
    return OK


def check_daily_loss(state: RiskState, limits: RiskLimits) -> Check:
    if -state.realized_pnl_today >= limits.max_daily_realized_loss_usd:
        return False, "daily realized loss reached max_daily_realized_loss_usd"
    return OK


def check_consecutive_failures(state: RiskState, limits: RiskLimits) -> Check:
    if state.consecutive_failures >= limits.max_consecutive_failures:
        return (
            False,
            f"{state.consecutive_failures} consecutive failures (max_consecutive_failures)",
        )
    return OK


# Checks whose failure is a breach: they trip the kill switch, not just skip.
BREACHES = (check_daily_loss, check_consecutive_failures)


def pre_trade(
    opp: Opportunity,
    spec: SymbolSpec,
    state: RiskState,
    detector: DetectorParams,
    limits: RiskLimits,
    now_ns: int,
    close_ts_ns: int | None = None,
) -> tuple[bool, str, bool]:
    """All checks in order; (ok, reason, is_breach)."""
    checks: Iterable[tuple[Callable[[], Check], bool]] = (
        (lambda: check_kill_switch(state), False),
        (lambda: check_daily_loss(state, limits), True),
        (lambda: check_consecutive_failures(state, limits), True),
        (lambda: check_trade_size(opp, detector), False),
        (lambda: check_min_edge(opp, detector), False),
        (lambda: check_quote_age(opp, detector, now_ns), False),
        (
            lambda: check_time_to_close(
                close_ts_ns if close_ts_ns is not None else spec.resolution_ts_ns, limits, now_ns
            ),
            False,
        ),
        (lambda: check_open_executions(state, limits), False),
        (lambda: check_cooldown(opp.symbol, state, limits, now_ns), False),
        (lambda: check_positions(opp, state, limits), False),
        (lambda: check_exposure(opp, state, limits), False),
    )
    for check, breach in checks:
        ok, reason = check()
        if not ok:
            return False, reason, breach
    return True, "", False


def residual_exposure(spec: SymbolSpec, positions: dict[tuple[str, Venue, Outcome], Qty]) -> int:
    """Contracts whose payout depends on the outcome (0 = fully hedged).

    Pays-if-YES (Kalshi terms) = Kalshi YES + the ForecastEx outcome equal to Kalshi YES;
    pays-if-NO likewise. A hedged book pays the same either way.
    """
    s = spec.symbol

    def q(v: Venue, o: Outcome) -> int:
        return positions.get((s, v, o), 0)

    if_yes = q(Venue.KALSHI, Outcome.YES) + q(Venue.IBKR, spec.ibkr_equivalent(Outcome.YES))
    if_no = q(Venue.KALSHI, Outcome.NO) + q(Venue.IBKR, spec.ibkr_equivalent(Outcome.NO))
    return abs(if_yes - if_no)
