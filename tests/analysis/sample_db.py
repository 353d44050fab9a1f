"""A small, deterministic, realistic arbkit database written through the real storage API.

Three symbols, spreads every minute for three hours, opportunities in three episodes and
three hours, four executions (paper done / hedged / failed, live done) and positions.
The expected numbers in the tests are worked out by hand from the constants here.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from arbkit.arbitrage.pipeline import SpreadSample
from arbkit.execution.journal import ExecState, ExecutionRecord, Leg, LegOrderRecord
from arbkit.execution.venue import OrderState
from arbkit.model import Leg as OppLeg
from arbkit.model import Mode, Money, Opportunity, Outcome, Price, Qty, Venue
from arbkit.storage.database import Database, DatabaseWriter

T0_NS = 1_800_000_000 * 10**9  # 2027-01-15 08:00:00 UTC, on the hour
S = 10**9
MS = 10**6
SYMBOLS = ("FED-25DEC", "CPI-26JAN", "GDP-26Q1")
SPREAD_INTERVAL_NS = 60 * S
SPREAD_SAMPLES = 180  # per symbol: three hours


def spread_samples() -> list[SpreadSample]:
    """Kalshi YES + ForecastEx NO costs straddle $1; Kalshi NO + YES never goes below."""
    out = []
    for i in range(SPREAD_SAMPLES):
        for s, sym in enumerate(SYMBOLS):
            ky = 4000 + (i * 7 + s * 3) % 200
            ino = 5750 + (i * 11 + s * 5) % 200
            kno = 5900 + (i * 13 + s) % 200
            iyes = 4150 + (i * 3 + s * 7) % 100
            no_side = i % 45 != 0  # an empty Kalshi NO book now and then
            out.append(
                SpreadSample(
                    ts_ns=T0_NS + i * SPREAD_INTERVAL_NS + s * MS,
                    symbol=sym,
                    kalshi_yes_ask=Price(ky),
                    kalshi_yes_size=Qty(1000),
                    kalshi_no_ask=Price(kno) if no_side else None,
                    kalshi_no_size=Qty(500) if no_side else None,
                    ibkr_yes_ask=Price(iyes),
                    ibkr_yes_size=Qty(2000),
                    ibkr_no_ask=Price(ino),
                    ibkr_no_size=Qty(700),
                    cost_kalshi_yes=ky + ino,
                    cost_kalshi_no=kno + iyes if no_side else None,
                )
            )
    return out


def opportunity(
    symbol: str,
    detected_ns: int,
    k_price: int,
    i_price: int,
    k_fee: int,
    i_fee: int,
    combo: str = "kalshi_yes+ibkr_no",
) -> Opportunity:
    """3 contracts on both legs at one price level each."""
    k_out, i_out = (
        (Outcome.YES, Outcome.NO)
        if combo.startswith("kalshi_yes")
        else (
            Outcome.NO,
            Outcome.YES,
        )
    )
    size = Qty(300)
    k = OppLeg(Venue.KALSHI, k_out, Price(k_price), size, Money(k_price * 300), Money(k_fee))
    i = OppLeg(Venue.IBKR, i_out, Price(i_price), size, Money(i_price * 300), Money(i_fee))
    gross = k.cost + i.cost
    fees = k_fee + i_fee
    profit = 300 * 10_000 - gross - fees
    return Opportunity(
        symbol=symbol,
        combo=combo,
        kalshi=k,
        ibkr=i,
        size=size,
        gross_cost=Money(gross),
        total_fees=Money(fees),
        expected_profit=Money(profit),
        net_edge_per_contract=Money(profit // 3),
        annualized_return_bps=500,
        kalshi_book_ts_ns=detected_ns - 3 * MS,
        ibkr_book_ts_ns=detected_ns - 4 * MS,
        detected_ts_ns=detected_ns,
    )


# (symbol, detected_ns, k_price, i_price, k_fee, i_fee, combo, mode, decision, reason, exec id)
_YN, _NY = "kalshi_yes+ibkr_no", "kalshi_no+ibkr_yes"
_BUSY = "execution in flight"
_P, _M = Mode.PAPER, Mode.MONITOR
# fmt: off
OPPORTUNITIES = (
    # FED, hour 0: an episode of three detections over 2 s, then a lone one 20 s later
    ("FED-25DEC", T0_NS + 600 * S, 4100, 5500, 60000, 30000, _YN, _P, "executed", "", "e1"),
    ("FED-25DEC", T0_NS + 601 * S, 4100, 5500, 60000, 30000, _YN, _P, "skipped", _BUSY, None),
    ("FED-25DEC", T0_NS + 602 * S, 4100, 5500, 60000, 30000, _YN, _P, "skipped", _BUSY, None),
    ("FED-25DEC", T0_NS + 622 * S, 4000, 5500, 60000, 30000, _YN, _P, "logged", "", None),
    # CPI, hour 1: two detections 1 s apart on the other combination
    ("CPI-26JAN", T0_NS + 4200 * S, 4500, 5300, 20000, 10000, _NY, _P, "executed", "", "e2"),
    ("CPI-26JAN", T0_NS + 4201 * S, 4500, 5300, 20000, 10000, _NY, _P, "skipped", _BUSY, None),
    # GDP, hour 2: one detection, only watched
    ("GDP-26Q1", T0_NS + 7800 * S, 3000, 6500, 40000, 20000, _YN, _M, "logged", "", None),
)
# fmt: on


def _order(
    eid: str,
    leg: Leg,
    mode: Mode,
    venue: Venue,
    symbol: str,
    outcome: Outcome,
    price: int,
    qty: int,
    t_ns: int,
    attempt: int = 0,
) -> LegOrderRecord:
    return LegOrderRecord(
        execution_id=eid,
        leg=leg,
        attempt=attempt,
        mode=mode,
        venue=venue,
        symbol=symbol,
        outcome=outcome,
        limit_price=Price(price),
        requested_qty=Qty(qty),
        client_order_id=f"{eid}-{leg.value}-{attempt}",
        decided_ns=t_ns,
    )


def _stages(t: int, *, leg2: bool = True, hedge_ms: int = 0) -> dict[str, int]:
    st = {
        "detected": t,
        "decided": t + 200_000,  # 0.2 ms
        "leg1_submit": t + 500_000,
        "leg1_ack": t + 20 * MS + 500_000,
        "leg1_fill": t + 25 * MS + 500_000,
    }
    if leg2:
        st |= {
            "leg2_submit": t + 26 * MS + 500_000,
            "leg2_ack": t + 60 * MS + 500_000,
            "leg2_fill": t + 80 * MS + 500_000,
        }
    if hedge_ms:
        st |= {"hedge_start": t + 100 * MS, "hedge_end": t + (100 + hedge_ms) * MS}
    return st


async def _fill(db: Database, o: LegOrderRecord, qty: int, cost: int, fee: int, t: int) -> None:
    o.state = OrderState.FILLED if qty == o.requested_qty else OrderState.CANCELLED
    o.filled_qty, o.filled_cost, o.fees = Qty(qty), Money(cost), Money(fee)
    o.submitted_ns, o.acked_ns, o.filled_ns = t, t + 10 * MS, t + 20 * MS
    o.venue_order_id = f"v-{o.client_order_id}"
    await db.record_order(o)


async def _execution(
    db: Database,
    eid: str,
    symbol: str,
    combo: str,
    mode: Mode,
    t: int,
    opp_id: int | None,
    expected: int,
) -> tuple[ExecutionRecord, LegOrderRecord]:
    k_out = Outcome.YES if combo.startswith("kalshi_yes") else Outcome.NO
    ex = ExecutionRecord(
        execution_id=eid,
        symbol=symbol,
        combo=combo,
        mode=mode,
        state=ExecState.INTENT,
        created_ns=t,
        updated_ns=t,
        planned_qty=Qty(300),
        expected_profit=Money(expected),
        opportunity_id=opp_id,
    )
    leg1 = _order(eid, Leg.LEG1, mode, Venue.KALSHI, symbol, k_out, 4100, 300, t)
    await db.record_intent(ex, leg1)
    ex.state = ExecState.LEG1_SENT
    await db.record_state(ex)
    return ex, leg1


async def build(path: Path) -> None:
    """Write the sample database at ``path`` (which must not exist)."""
    async with Database(path) as db:
        async with DatabaseWriter(db, batch_size=200) as w:
            for sample in spread_samples():
                assert w.spread(sample)
            for sym, t, kp, ip, kf, i_f, combo, mode, decision, reason, eid in OPPORTUNITIES:
                oid = w.opportunity(
                    opportunity(sym, t, kp, ip, kf, i_f, combo), mode, decision, reason, eid
                )
                assert oid is not None

        # e1: FED paper, both legs filled: done, +$0.03
        t = T0_NS + 600 * S
        ex, leg1 = await _execution(
            db, "e1", "FED-25DEC", "kalshi_yes+ibkr_no", Mode.PAPER, t, 1, 30_000
        )
        await _fill(db, leg1, 300, 1_230_000, 60_000, t)
        leg2 = _order("e1", Leg.LEG2, Mode.PAPER, Venue.IBKR, "FED-25DEC", Outcome.NO, 5500, 300, t)
        await db.record_order(leg2)
        await _fill(db, leg2, 300, 1_650_000, 30_000, t)
        ex.state, ex.realized_pnl, ex.stages_ns = ExecState.DONE, Money(30_000), _stages(t)
        ex.updated_ns = t + 1 * S
        await db.record_state(ex)

        # e2: CPI paper, leg 2 filled 1 of 3: the other 2 hedged at a cost of $0.08
        t = T0_NS + 4200 * S
        ex, leg1 = await _execution(
            db, "e2", "CPI-26JAN", "kalshi_no+ibkr_yes", Mode.PAPER, t, 5, 30_000
        )
        await _fill(db, leg1, 300, 1_350_000, 20_000, t)
        leg2 = _order(
            "e2", Leg.LEG2, Mode.PAPER, Venue.IBKR, "CPI-26JAN", Outcome.YES, 5300, 300, t
        )
        await db.record_order(leg2)
        await _fill(db, leg2, 100, 530_000, 3_000, t)
        ex.state = ExecState.HEDGING
        await db.record_state(ex)
        hedge = _order(
            "e2", Leg.HEDGE, Mode.PAPER, Venue.IBKR, "CPI-26JAN", Outcome.YES, 5600, 200, t
        )
        await db.record_order(hedge)
        await _fill(db, hedge, 200, 1_120_000, 20_000, t)
        ex.state, ex.realized_pnl, ex.hedge_cost = ExecState.HEDGED, Money(-50_000), Money(80_000)
        ex.stages_ns = _stages(t, hedge_ms=150)
        ex.updated_ns = t + 2 * S
        await db.record_state(ex)

        # e3: FED live, done, +$0.12
        t = T0_NS + 7500 * S
        ex, leg1 = await _execution(
            db, "e3", "FED-25DEC", "kalshi_yes+ibkr_no", Mode.LIVE, t, None, 120_000
        )
        await _fill(db, leg1, 300, 1_230_000, 60_000, t)
        leg2 = _order("e3", Leg.LEG2, Mode.LIVE, Venue.IBKR, "FED-25DEC", Outcome.NO, 5300, 300, t)
        await db.record_order(leg2)
        await _fill(db, leg2, 300, 1_590_000, 0, t)
        ex.state, ex.realized_pnl, ex.stages_ns = ExecState.DONE, Money(120_000), _stages(t)
        ex.updated_ns = t + 1 * S
        await db.record_state(ex)

        # e4: GDP paper, leg 1 rejected: failed, nothing filled
        t = T0_NS + 9000 * S
        ex, leg1 = await _execution(
            db, "e4", "GDP-26Q1", "kalshi_yes+ibkr_no", Mode.PAPER, t, None, 90_000
        )
        leg1.state, leg1.reason = OrderState.REJECTED, "insufficient balance"
        await db.record_order(leg1)
        ex.state, ex.error = ExecState.FAILED, "leg 1 rejected: insufficient balance"
        ex.stages_ns = _stages(t, leg2=False)
        ex.updated_ns = t + 1 * S
        await db.record_state(ex)

        await db.set_position(
            "FED-25DEC", Venue.KALSHI, Outcome.YES, Qty(600), Money(2_460_000), T0_NS + 7501 * S
        )
        await db.set_position(
            "FED-25DEC", Venue.IBKR, Outcome.NO, Qty(600), Money(3_240_000), T0_NS + 7501 * S
        )
        await db.set_position(
            "CPI-26JAN", Venue.KALSHI, Outcome.NO, Qty(0), Money(0), T0_NS + 4202 * S
        )


def build_sync(path: Path) -> Path:
    asyncio.run(build(path))
    return path
