"""Plain rows the database stores and returns (besides the journal records, which are
``arbkit.execution.journal``'s ``ExecutionRecord`` / ``LegOrderRecord``).

Every money, price and quantity field is an exact integer in the model's units
(``Price`` $0.0001, ``Qty`` 0.01 contract, ``Money`` $0.000001); times are ns since the
epoch. The database columns carry the unit in their name (``qty_e2``, ``cost_e6``).
"""

from __future__ import annotations

from dataclasses import dataclass

from arbkit.arbitrage.pipeline import SpreadSample
from arbkit.config.loader import SymbolSpec
from arbkit.model import MONEY_SCALE, QTY_SCALE, Money, Outcome, Qty, Venue

DECISIONS = frozenset({"executed", "skipped", "logged"})
__all__ = [
    "DECISIONS",
    "DbSummary",
    "PositionRow",
    "RiskHistory",
    "RunRow",
    "SettledExecution",
    "SettlementRow",
    "SpreadSample",
    "TradingStateRow",  # the detection pipeline's sample, stored as-is in ``spreads``
    "WriterStats",
]


@dataclass(frozen=True, slots=True)
class PositionRow:
    symbol: str
    venue: Venue
    outcome: Outcome
    qty: Qty
    cost: Money
    updated_ns: int


@dataclass(slots=True)
class WriterStats:
    """Counters of the telemetry writer; ``dropped`` > 0 means rows were lost (and logged)."""

    queued: int = 0
    written_opportunities: int = 0
    written_spreads: int = 0
    dropped: int = 0
    failed: int = 0  # rows in batches the database refused (logged with the error)
    flushes: int = 0
    max_batch: int = 0
    last_flush_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class DbSummary:
    user_version: int
    counts: dict[str, int]  # rows per table
    executions_by_state: dict[str, int]
    opportunities_by_decision: dict[str, int]
    realized_pnl: Money
    hedge_cost: Money
    open_positions: int  # (symbol, venue, outcome) rows with qty != 0


@dataclass(frozen=True, slots=True)
class TradingStateRow:
    """One change of the trading state: when, from, to, why, and who (``limit``,
    ``reconciliation``, ``user``, ...)."""

    ts_ns: int
    from_state: str
    to_state: str
    reason: str
    actor: str


@dataclass(frozen=True, slots=True)
class RiskHistory:
    loss_today: Money  # realised losses since the trading day began (>= 0)
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class SettlementRow:
    """What one venue paid for one symbol's market at resolution (``result`` is the
    winning outcome in that venue's terms; ``source``: ``kalshi`` = the venue's own
    settlement record, ``ibkr`` = the position left and the cash moved, ``paper``)."""

    ts_ns: int
    settled_ns: int
    mode: str
    venue: Venue
    symbol: str
    instrument: str
    result: Outcome
    yes_qty: Qty
    no_qty: Qty
    payout: Money
    cost: Money
    fees: Money
    source: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CouponAccrual:
    """One UTC day's ForecastEx coupon on one position (``coupon_accruals``)."""

    day: str  # YYYY-MM-DD
    mode: str
    symbol: str
    outcome: Outcome
    qty: Qty
    value: Money  # what it accrued on: the lower of cost basis and mark
    rate_bps: int  # the dated APY used
    accrued: Money
    ts_ns: int


@dataclass(frozen=True, slots=True)
class SettledExecution:
    """An execution whose every filled leg's market has settled."""

    execution_id: str
    symbol: str
    mode: str
    state: str
    expected_profit: Money
    cost: Money
    payout: Money
    settled_pnl: Money
    settled_ns: int


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run: a monitor start/stop, a replay, a demo (``ended_ns`` 0 = still running
    or it crashed)."""

    run_id: str
    started_ns: int
    ended_ns: int
    mode: str  # monitor | paper | live | replay
    config_digest: str
    command: str


KALSHI_RESULTS = {"yes": Outcome.YES, "no": Outcome.NO}  # Kalshi ``result`` → outcome


def paper_settlement(
    spec: SymbolSpec,
    venue: Venue,
    kalshi_result: str,
    positions: dict[tuple[str, Venue, Outcome], Qty],
    cost_basis: dict[tuple[str, Venue, Outcome], Money],
    *,
    now_ns: int,
    mode: str,
    source: str = "paper",
) -> SettlementRow | None:
    """Paper positions paid at Kalshi's result; ForecastEx's winner is the map's
    equivalent outcome (paper cannot see ForecastEx resolve). None: result not yes/no."""
    k = KALSHI_RESULTS.get(kalshi_result)
    if k is None:
        return None
    result = k if venue is Venue.KALSHI else spec.ibkr_equivalent(k)
    s = spec.symbol
    qty = {o: Qty(positions.get((s, venue, o), 0)) for o in Outcome}
    cost = sum(cost_basis.get((s, venue, o), 0) for o in Outcome)
    return SettlementRow(
        now_ns,
        now_ns,
        mode,
        venue,
        s,
        spec.kalshi_ticker if venue is Venue.KALSHI else "forecastex",
        result,
        qty[Outcome.YES],
        qty[Outcome.NO],
        Money(qty[result] * (MONEY_SCALE // QTY_SCALE)),
        Money(cost),
        Money(0),
        source,
        "" if venue is Venue.KALSHI else "winner taken from the Kalshi result via the map",
    )
