"""Rows ↔ records: the column lists, SQL statements and conversions between the
database's rows and arbkit's records (the "parsing" part of the storage adapter, kept
apart so :mod:`arbkit.storage.database` reads as the journal's logic)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from arbkit.execution.journal import (
    ExecState,
    ExecutionRecord,
    Leg,
    LegOrderRecord,
)
from arbkit.execution.venue import OrderState
from arbkit.model import Mode, Money, Opportunity, Outcome, Price, Qty, Venue
from arbkit.storage.errors import JournalError
from arbkit.storage.records import (
    SpreadSample,
)
from arbkit.storage.schema import STAGES

MODES = {m.value: m for m in Mode}
VENUES = {v.value: v for v in Venue}
OUTCOMES = {o.value: o for o in Outcome}
STATES = {s.value: s for s in ExecState}
ORDER_STATES = {s.value: s for s in OrderState}
LEGS = {leg.value: leg for leg in Leg}
NON_TERMINAL = tuple(s.value for s in ExecState if not s.terminal)

ORDER_COLS = (
    "execution_id",
    "leg",
    "attempt",
    "mode",
    "venue",
    "symbol",
    "outcome",
    "limit_price_e4",
    "requested_qty_e2",
    "client_order_id",
    "state",
    "venue_order_id",
    "filled_qty_e2",
    "filled_cost_e6",
    "fees_e6",
    "decided_ns",
    "submitted_ns",
    "acked_ns",
    "filled_ns",
    "reason",
    "fees_estimated_e6",
    "run_id",
)
# An order's identity: fixed once journaled under its client order id.
ORDER_IDENTITY = ORDER_COLS[:9]
ORDER_PROGRESS = ("state", "filled_qty_e2", "filled_cost_e6", "fees_e6", "fees_estimated_e6")
# Unknown ('' / 0 → NULL) in an update keeps what was recorded.
ORDER_KEEP_OLD = (
    "venue_order_id",
    "decided_ns",
    "submitted_ns",
    "acked_ns",
    "filled_ns",
    "reason",
)
INSERT_ORDER = (
    f"INSERT INTO executions ({', '.join(ORDER_COLS)}) VALUES ({', '.join('?' * len(ORDER_COLS))})"
)
UPSERT_ORDER = (
    INSERT_ORDER
    + " ON CONFLICT (client_order_id) DO UPDATE SET "
    + ", ".join(
        [f"{c} = excluded.{c}" for c in ORDER_PROGRESS]
        + [f"{c} = COALESCE(NULLIF(excluded.{c}, ''), {c})" for c in ORDER_KEEP_OLD]
    )
    + " WHERE "
    + " AND ".join(f"{c} = excluded.{c}" for c in ORDER_IDENTITY)
)
SELECT_ORDERS = f"SELECT {', '.join(ORDER_COLS)} FROM executions"

STAGE_COLS = tuple(f"{s}_ns" for s in STAGES)
EXEC_COLS = (
    "execution_id",
    "symbol",
    "combo",
    "mode",
    "state",
    "opportunity_id",
    "created_ns",
    "updated_ns",
    "planned_qty_e2",
    "expected_profit_e6",
    "realized_pnl_e6",
    "hedge_cost_e6",
    "error",
    "stages_extra",
    *STAGE_COLS,
)
SELECT_EXECS = f"SELECT {', '.join(EXEC_COLS)} FROM arb_executions"


def config_digest(*parts: object) -> str:
    """A short stable digest of the effective config (and symbol map) a run used."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def null_if_zero(v: int) -> int | None:
    """0 means 'not yet' in the executor's records: store NULL (shown as NULL in views)."""
    return v or None


def order_params(r: LegOrderRecord, run_id: str) -> tuple[Any, ...]:
    return (
        r.execution_id,
        r.leg.value,
        r.attempt,
        r.mode.value,
        r.venue.value,
        r.symbol,
        r.outcome.value,
        r.limit_price,
        r.requested_qty,
        r.client_order_id,
        r.state.value,
        r.venue_order_id,
        r.filled_qty,
        r.filled_cost,
        r.fees,
        null_if_zero(r.decided_ns),
        null_if_zero(r.submitted_ns),
        null_if_zero(r.acked_ns),
        null_if_zero(r.filled_ns),
        r.reason,
        r.fees_estimated,
        run_id,
    )


def order_from_row(row: Sequence[Any]) -> LegOrderRecord:
    d = dict(zip(ORDER_COLS, row, strict=True))
    return LegOrderRecord(
        execution_id=d["execution_id"],
        leg=LEGS[d["leg"]],
        attempt=d["attempt"],
        mode=MODES[d["mode"]],
        venue=VENUES[d["venue"]],
        symbol=d["symbol"],
        outcome=OUTCOMES[d["outcome"]],
        limit_price=Price(d["limit_price_e4"]),
        requested_qty=Qty(d["requested_qty_e2"]),
        client_order_id=d["client_order_id"],
        state=ORDER_STATES[d["state"]],
        venue_order_id=d["venue_order_id"],
        filled_qty=Qty(d["filled_qty_e2"]),
        filled_cost=Money(d["filled_cost_e6"]),
        fees=Money(d["fees_e6"]),
        decided_ns=d["decided_ns"] or 0,
        submitted_ns=d["submitted_ns"] or 0,
        acked_ns=d["acked_ns"] or 0,
        filled_ns=d["filled_ns"] or 0,
        reason=d["reason"],
        fees_estimated=Money(d["fees_estimated_e6"]),
    )


def split_stages(stages: dict[str, int]) -> tuple[list[int | None], str]:
    """stages_ns → (one value per STAGES column, JSON of the other keys)."""
    for name, v in stages.items():
        if type(v) is not int:
            raise JournalError(f"stages_ns[{name!r}] = {v!r}: expected int ns")
    extra = {k: v for k, v in stages.items() if k not in STAGES}
    return [stages.get(s) for s in STAGES], json.dumps(extra, sort_keys=True)


def exec_from_row(row: Sequence[Any], orders: list[LegOrderRecord]) -> ExecutionRecord:
    d = dict(zip(EXEC_COLS, row, strict=True))
    stages: dict[str, int] = {
        s: d[c] for s, c in zip(STAGES, STAGE_COLS, strict=True) if d[c] is not None
    }
    stages.update(json.loads(d["stages_extra"]))
    return ExecutionRecord(
        execution_id=d["execution_id"],
        symbol=d["symbol"],
        combo=d["combo"],
        mode=MODES[d["mode"]],
        state=STATES[d["state"]],
        created_ns=d["created_ns"],
        updated_ns=d["updated_ns"],
        planned_qty=Qty(d["planned_qty_e2"]),
        expected_profit=Money(d["expected_profit_e6"]),
        opportunity_id=d["opportunity_id"],
        realized_pnl=Money(d["realized_pnl_e6"]),
        hedge_cost=Money(d["hedge_cost_e6"]),
        error=d["error"],
        stages_ns=stages,
        orders=orders,
    )


OPP_COLS = (
    "id",
    "detected_ns",
    "symbol",
    "combo",
    "kalshi_outcome",
    "kalshi_limit_price_e4",
    "kalshi_size_e2",
    "kalshi_cost_e6",
    "kalshi_fee_e6",
    "ibkr_outcome",
    "ibkr_limit_price_e4",
    "ibkr_size_e2",
    "ibkr_cost_e6",
    "ibkr_fee_e6",
    "size_e2",
    "gross_cost_e6",
    "total_fees_e6",
    "expected_profit_e6",
    "net_edge_per_contract_e6",
    "annualized_return_bps",
    "kalshi_book_ns",
    "ibkr_book_ns",
    "mode",
    "decision",
    "reason",
    "execution_id",
    "coupon_bps",
    "run_id",
)
INSERT_OPP = (
    f"INSERT INTO opportunities ({', '.join(OPP_COLS)}) VALUES ({', '.join('?' * len(OPP_COLS))})"
)
SPREAD_COLS = (
    "sampled_ns",
    "symbol",
    "kalshi_yes_ask_e4",
    "kalshi_yes_size_e2",
    "kalshi_no_ask_e4",
    "kalshi_no_size_e2",
    "ibkr_yes_ask_e4",
    "ibkr_yes_size_e2",
    "ibkr_no_ask_e4",
    "ibkr_no_size_e2",
    "cost_kalshi_yes_e4",
    "cost_kalshi_no_e4",
    "run_id",
)
INSERT_SPREAD = (
    f"INSERT INTO spreads ({', '.join(SPREAD_COLS)}) VALUES ({', '.join('?' * len(SPREAD_COLS))})"
)


def opp_params(
    oid: int, o: Opportunity, mode: Mode, decision: str, reason: str, execution_id: str | None
) -> tuple[Any, ...]:
    k, i = o.kalshi, o.ibkr
    return (
        oid,
        o.detected_ts_ns,
        o.symbol,
        o.combo,
        k.outcome.value,
        k.limit_price,
        k.size,
        k.cost,
        k.fee,
        i.outcome.value,
        i.limit_price,
        i.size,
        i.cost,
        i.fee,
        o.size,
        o.gross_cost,
        o.total_fees,
        o.expected_profit,
        o.net_edge_per_contract,
        o.annualized_return_bps,
        o.kalshi_book_ts_ns,
        o.ibkr_book_ts_ns,
        mode.value,
        decision,
        reason,
        execution_id,
        o.coupon_bps,
    )


def spread_params(s: SpreadSample) -> tuple[Any, ...]:
    return (
        s.ts_ns,
        s.symbol,
        s.kalshi_yes_ask,
        s.kalshi_yes_size,
        s.kalshi_no_ask,
        s.kalshi_no_size,
        s.ibkr_yes_ask,
        s.ibkr_yes_size,
        s.ibkr_no_ask,
        s.ibkr_no_size,
        s.cost_kalshi_yes,
        s.cost_kalshi_no,
    )


# ------------------------------------------------------------ database ------------
