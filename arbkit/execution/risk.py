"""Pre-trade risk checks: pure functions of (opportunity, state, limits, now) → (ok, reason).

Every order passes these first. The trading state (``active`` / ``reducing`` /
``halted``, as NautilusTrader's RiskEngine has it) gates new executions: ``reducing`` allows
only exposure-reducing orders (the hedges and unwinds of executions already running),
``halted`` (the kill switch) none — cancels are always allowed. Limit *breaches* halt;
ordinary "not now" answers (cooldown, an execution already open) just skip.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from arbkit.book.freshness import check_quote_age_ns
from arbkit.config.execution_loader import DetectorParams, ExecutionParams, RiskLimits
from arbkit.config.execution_loader import usd_text as usd
from arbkit.config.loader import SymbolSpec
from arbkit.model import (
    MONEY_SCALE,
    PRICE_SCALE,
    QTY_SCALE,
    Money,
    Opportunity,
    Outcome,
    Qty,
    Venue,
)
from arbkit.normalizers.market_status import MarketClock

Check = tuple[bool, str]
_P2M = MONEY_SCALE // PRICE_SCALE  # price units → money units
OK: Check = (True, "")


class TradingState(enum.Enum):
    ACTIVE = "active"
    REDUCING = "reducing"  # only exposure-reducing orders (hedges, unwinds)
    HALTED = "halted"  # no new orders; cancels allowed; only the user lifts it


PositionKey = tuple[str, Venue, Outcome]


@dataclass(slots=True)
class RiskState:
    """What the checks need to know; the executor keeps it current and a restart rebuilds
    it from the journal plus the venues' positions (never from zero)."""

    positions: dict[PositionKey, Qty] = field(default_factory=dict)
    # Cost basis (fills + fees) of each held position: exposure is derived from it and is
    # released when the position leaves the venue (closed, netted or settled).
    cost_basis: dict[PositionKey, Money] = field(default_factory=dict)
    open_executions: int = 0
    last_execution_ns: dict[str, int] = field(default_factory=dict)
    last_failure_ns: dict[str, int] = field(default_factory=dict)  # ended not DONE
    realized_pnl_today: Money = Money(0)  # negative is a loss
    trading_day_start_ns: int = 0  # what realized_pnl_today counts from
    consecutive_failures: int = 0
    trading_state: TradingState = TradingState.ACTIVE
    state_reason: str = ""
    blocked_symbols: dict[str, str] = field(default_factory=dict)  # symbol → why

    @property
    def kill_switch(self) -> bool:
        return self.trading_state is TradingState.HALTED

    @property
    def kill_reason(self) -> str:
        return self.state_reason if self.kill_switch else ""

    @property
    def exposure(self) -> Money:
        """Capital in open positions: the cost basis of every position still held (a
        position with no known cost counts at $1 per contract, the most it can cost)."""
        return self.exposure_by()

    def exposure_by(self, venue: Venue | None = None, symbol: str | None = None) -> Money:
        total = 0
        for (s, v, o), qty in self.positions.items():
            if qty <= 0 or (venue is not None and v is not venue):
                continue
            if symbol is not None and s != symbol:
                continue
            cost = self.cost_basis.get((s, v, o))
            total += cost if cost is not None else qty * (MONEY_SCALE // QTY_SCALE)
        return Money(total)

    def venue_contracts(self, venue: Venue) -> int:
        return sum(q for (_, v, _), q in self.positions.items() if v is venue) // QTY_SCALE

    def symbol_contracts(self, symbol: str, venue: Venue) -> int:
        return (
            sum(q for (s, v, _), q in self.positions.items() if s == symbol and v is venue)
            // QTY_SCALE
        )


def check_kill_switch(state: RiskState) -> Check:
    """New executions only when ``active`` (a new execution never reduces exposure)."""
    if state.trading_state is TradingState.HALTED:
        return False, f"kill switch on (halted): {state.state_reason}"
    if state.trading_state is TradingState.REDUCING:
        return False, f"reducing (no new exposure): {state.state_reason}"
    return OK


def check_symbol_blocked(symbol: str, state: RiskState) -> Check:
    why = state.blocked_symbols.get(symbol)
    return (False, f"{symbol} blocked: {why}") if why is not None else OK


def check_plausible_edge(opp: Opportunity, limits: RiskLimits) -> Check:
    """An edge this large is far likelier a wrong pairing (an inverted ``kalshi_yes_is``,
    a different question) than free money: block the symbol, do not trade it."""
    if opp.net_edge_per_contract > limits.max_plausible_edge_usd:
        return False, (
            f"net edge {usd(opp.net_edge_per_contract)} USD per contract > "
            f"max_plausible_edge_usd {usd(limits.max_plausible_edge_usd)}: "
            "check the pairing and kalshi_yes_is"
        )
    return OK


def implied_yes_mid(yes_ask: int | None, no_ask: int | None) -> int | None:
    """Mid of the YES price in price units from the two asks (YES bid = $1 − NO ask)."""
    if yes_ask is None or no_ask is None:
        return None
    return (yes_ask + PRICE_SCALE - no_ask) // 2


def check_mid_agreement(
    kalshi_yes_mid: int | None, ibkr_equiv_mid: int | None, limits: RiskLimits
) -> Check:
    """The two venues price one question: the Kalshi YES mid and the orientation-corrected
    ForecastEx mid must agree within ``max_mid_gap_usd`` (an inverted orientation shows as
    mids on opposite sides of 50¢)."""
    if kalshi_yes_mid is None or ibkr_equiv_mid is None:
        return OK  # a one-sided book has no mid; the edge cap still applies
    gap = abs(kalshi_yes_mid - ibkr_equiv_mid) * _P2M
    if gap > limits.max_mid_gap_usd:
        return False, (
            f"mids disagree: kalshi YES {usd(kalshi_yes_mid * _P2M)} vs forecastex "
            f"equivalent {usd(ibkr_equiv_mid * _P2M)} (gap > max_mid_gap_usd "
            f"{usd(limits.max_mid_gap_usd)}): check the pairing and kalshi_yes_is"
        )
    return OK


def trading_day_start_ns(now_ns: int, limits: RiskLimits) -> int:
    """Start of the trading day containing ``now_ns``: the configured boundary
    (``trading_day_start_hhmm``) in ``trading_day_tz``."""
    tz = ZoneInfo(limits.trading_day_tz)
    local = dt.datetime.fromtimestamp(now_ns // 1_000_000_000, tz)
    hh, mm = divmod(limits.trading_day_start_hhmm, 100)
    start = local.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if start > local:  # wall-clock arithmetic: the boundary stays at hh:mm across DST
        start = (local - dt.timedelta(days=1)).replace(hour=hh, minute=mm, second=0)
    return int(start.timestamp()) * 1_000_000_000


def check_balance_fresh(balance_ts_ns: dict[Venue, int], limits: RiskLimits, now_ns: int) -> Check:
    """An unknown or stale balance is not a balance: refuse rather than guess."""
    for venue in (Venue.KALSHI, Venue.IBKR):
        ts = balance_ts_ns.get(venue)
        if ts is None:
            return False, f"{venue.value} balance unknown"
        age_ms = (now_ns - ts) // 1_000_000
        if age_ms > limits.max_balance_age_ms:
            return False, (
                f"{venue.value} balance {age_ms} ms old > max_balance_age_ms "
                f"{limits.max_balance_age_ms}"
            )
    return OK


def check_min_balance(balances: dict[Venue, int | None], limits: RiskLimits) -> Check:
    """Below the floor on either venue: ``reducing`` (a breach of its own kind)."""
    for venue, floor in (
        (Venue.KALSHI, limits.min_balance_usd_kalshi),
        (Venue.IBKR, limits.min_balance_usd_ibkr),
    ):
        bal = balances.get(venue)
        if bal is not None and bal < floor:
            return False, (
                f"{venue.value} balance {usd(bal)} USD < min_balance_usd_{venue.value} {usd(floor)}"
            )
    return OK


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
    """The detector's rule (book/freshness.py) again at send time, on the same proof."""
    seen = opp.quote_seen_ns or min(opp.kalshi_book_ts_ns, opp.ibkr_book_ts_ns)
    return check_quote_age_ns(seen, now_ns, p)


def check_time_to_close(close_ts_ns: int, limits: RiskLimits, now_ns: int) -> Check:
    left_s = (close_ts_ns - now_ns) // 1_000_000_000
    if left_s < limits.min_time_to_close_s:
        return False, f"{left_s} s to close < min_time_to_close_s {limits.min_time_to_close_s}"
    return OK


def check_market_open(market: MarketClock | None, now_ns: int) -> Check:
    """Both venues' markets open now (a paused, closed or determined one blocks at once).
    No clock (replay) = no venue said anything: the symbol map's dates alone apply."""
    if market is None:
        return OK
    return market.tradable(now_ns)


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
    failed = state.last_failure_ns.get(symbol)
    if failed is not None and now_ns - failed < limits.cooldown_ms_after_failure * 1_000_000:
        return False, (
            f"{symbol} in cooldown after a failed execution "
            f"(cooldown_ms_after_failure {limits.cooldown_ms_after_failure})"
        )
    return OK


def check_min_size(opp: Opportunity, p: ExecutionParams) -> Check:
    """Below ``min_partial_fill_contracts`` even a full fill is not worth the legging."""
    if opp.contracts < p.min_partial_fill_contracts:
        return False, (
            f"{opp.contracts} contracts < min_partial_fill_contracts {p.min_partial_fill_contracts}"
        )
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
    market: MarketClock | None = None,
) -> tuple[bool, str, bool]:
    """All checks in order; (ok, reason, is_breach). ``min_time_to_close_s`` is measured
    to the earlier of the venues' real closes when they are known (``market``), else to
    the symbol map's resolution time."""
    close_ts_ns = (market.close_ns() if market is not None else 0) or spec.resolution_ts_ns
    checks: Iterable[tuple[Callable[[], Check], bool]] = (
        (lambda: check_kill_switch(state), False),
        (lambda: check_symbol_blocked(opp.symbol, state), False),
        (lambda: check_daily_loss(state, limits), True),
        (lambda: check_consecutive_failures(state, limits), True),
        (lambda: check_trade_size(opp, detector), False),
        (lambda: check_min_edge(opp, detector), False),
        (lambda: check_quote_age(opp, detector, now_ns), False),
        (
            lambda: check_time_to_close(close_ts_ns, limits, now_ns),
            False,
        ),
        (lambda: check_market_open(market, now_ns), False),
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


def mark_to_market(
    positions: dict[tuple[str, Venue, Outcome], Qty],
    quote: Callable[[str, Venue, Outcome], Sequence[tuple[int, int]]],
) -> dict[Venue, Money]:
    """What the held positions would fetch now, per venue: each contract at $1 minus the
    best ask of the opposite outcome (on both venues a position is closed by buying the
    opposite, which nets the pair into $1). A contract with no opposite ask marks at 0
    (conservative: nothing to close against). Truncated to the Money unit."""
    out = {Venue.KALSHI: 0, Venue.IBKR: 0}
    for (symbol, venue, outcome), qty in positions.items():
        if qty <= 0:
            continue
        asks = quote(symbol, venue, outcome.opposite)
        if asks:
            out[venue] += qty * (PRICE_SCALE - asks[0][0])
    return {v: Money(m) for v, m in out.items()}


def coupon_values(
    state: RiskState,
    quote: Callable[[str, Venue, Outcome], Sequence[tuple[int, int]]],
) -> dict[PositionKey, Money]:
    """The value each held ForecastEx position earns its coupon on. The sources differ
    (ForecastEx Rule 612: on collateral; IBKR: on the closing market value), so each
    position is valued at the lower of its cost basis and its mark ($1 − the opposite
    best ask; 0 with no ask): the coupon counted is never more than either reading."""
    out: dict[PositionKey, Money] = {}
    for key, qty in state.positions.items():
        symbol, venue, outcome = key
        if venue is not Venue.IBKR or qty <= 0:
            continue
        asks = quote(symbol, venue, outcome.opposite)
        mark = qty * (PRICE_SCALE - asks[0][0]) if asks else 0
        cost = state.cost_basis.get(key)
        out[key] = Money(min(mark, cost) if cost is not None else mark)
    return out


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
