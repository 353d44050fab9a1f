"""The two-leg executor: risk → reserve → Kalshi leg → ForecastEx leg → hedge the rest.

Sequence per opportunity (the seed design, made safe):

1. pre-trade risk checks (pure, ``risk.py``); a breach trips the kill switch;
2. reserve capital in a local ledger, checked against the venues' balances;
3. journal the intent with leg 1's client order id — committed before anything is sent;
4. leg 1: Kalshi IOC/FOK at the detected limit;
5. leg 2: ForecastEx for exactly leg 1's filled whole contracts, after re-checking the
   quote (abort straight to the hedge if it moved past the detected limit);
6. whatever leg 2 did not cover is hedged by buying the opposite outcome on Kalshi over
   a bounded price ladder within ``hedge_max_ms``; the realised hedge cost is recorded;
   exposure that cannot be hedged trips the kill switch.

Client order ids are deterministic per (execution, leg, attempt): a retry after a
timeout or a crash re-sends the *same* id, which the venues resolve to the existing order.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.config.execution_loader import ExecutionConfig
from arbkit.config.loader import SymbolMap, SymbolSpec
from arbkit.execution import risk
from arbkit.execution.journal import (
    ExecState,
    ExecutionRecord,
    Journal,
    Leg,
    LegOrderRecord,
)
from arbkit.execution.venue import (
    OrderRequest,
    OrderResult,
    OrderState,
    TimeInForce,
    VenueError,
    VenueOrderClient,
)
from arbkit.model import (
    PAYOUT_PER_CONTRACT,
    PRICE_SCALE,
    QTY_SCALE,
    Mode,
    Money,
    Opportunity,
    Outcome,
    Price,
    Qty,
    Venue,
)

log = logging.getLogger(__name__)

QuoteFn = Callable[[str, Venue, Outcome], Sequence[tuple[Price, Qty]]]
_LEG_CODE = {Leg.LEG1: "l1", Leg.LEG2: "l2", Leg.HEDGE: "h"}
_IBKR_MIN_PRICE, _IBKR_MAX_PRICE, _IBKR_TICK = 200, 9900, 100


def execution_id_for(opp: Opportunity, prefix: str = "ak") -> str:
    digest = hashlib.blake2b(
        f"{opp.symbol}|{opp.combo}|{opp.detected_ts_ns}".encode(), digest_size=8
    ).hexdigest()
    return f"{prefix}-{digest}"


def client_order_id(execution_id: str, leg: Leg, attempt: int) -> str:
    return f"{execution_id}-{_LEG_CODE[leg]}-{attempt}"


@dataclass(slots=True)
class Decision:
    ok: bool
    reason: str = ""
    breach: bool = False


@dataclass(slots=True)
class Reservation:
    """Capital and an execution slot held for one opportunity until its run ends."""

    opp: Opportunity
    execution_id: str
    need: dict[Venue, int]
    decided_ns: int
    opportunity_id: int | None = None


@dataclass(slots=True)
class ReconcileReport:
    executions_checked: int = 0
    orders_found: int = 0
    orders_missing: int = 0
    residual_contracts: dict[str, int] = field(default_factory=dict)
    kill_switch: bool = False
    notes: list[str] = field(default_factory=list)


class Executor:
    def __init__(
        self,
        config: ExecutionConfig,
        symbol_map: SymbolMap,
        kalshi: VenueOrderClient,
        ibkr: VenueOrderClient,
        journal: Journal,
        *,
        quote: QuoteFn,
        clock: Callable[[], int],
        mode: Mode | None = None,
        id_prefix: str = "ak",
        close_ts_ns: Mapping[str, int] | None = None,
        on_update: Callable[[ExecutionRecord], None] | None = None,
    ) -> None:
        self.config = config
        self.mode = mode or config.mode
        self.symbols = symbol_map
        self.kalshi = kalshi
        self.ibkr = ibkr
        self.journal = journal
        self.quote = quote
        self.clock = clock
        self.id_prefix = id_prefix
        self.close_ts_ns = dict(close_ts_ns or {})
        self.on_update = on_update
        self.fees = FeeModel(config.fees)
        self.state = risk.RiskState()
        self.reserved: dict[Venue, int] = {Venue.KALSHI: 0, Venue.IBKR: 0}
        self.balances: dict[Venue, int | None] = {Venue.KALSHI: None, Venue.IBKR: None}
        self.completed: list[ExecutionRecord] = []
        # Gates the monitor sets: no execution starts while stopping or a venue is down.
        self.stopping = False
        self.venue_up: dict[Venue, bool] = {Venue.KALSHI: True, Venue.IBKR: True}

    # ------------------------------------------------------------------ control ---
    def kill(self, reason: str) -> None:
        if not self.state.kill_switch:
            log.error("kill switch on: %s", reason)
        self.state.kill_switch = True
        self.state.kill_reason = reason

    def reset_kill_switch(self) -> None:
        """The user's explicit reset; also clears the failure streak that may have tripped it."""
        self.state.kill_switch = False
        self.state.kill_reason = ""
        self.state.consecutive_failures = 0

    async def refresh_balances(self) -> None:
        for venue, client in ((Venue.KALSHI, self.kalshi), (Venue.IBKR, self.ibkr)):
            try:
                self.balances[venue] = await client.balance()
            except (TimeoutError, VenueError, OSError) as exc:
                log.warning("balance of %s unavailable: %s", venue.value, exc)

    def check(self, opp: Opportunity, now_ns: int | None = None) -> Decision:
        now = self.clock() if now_ns is None else now_ns
        spec = self.symbols.symbols[opp.symbol]
        ok, reason, breach = risk.pre_trade(
            opp,
            spec,
            self.state,
            self.config.detector,
            self.config.risk,
            now,
            self.close_ts_ns.get(opp.symbol),
        )
        if not ok:
            if breach:
                self.kill(reason)
            return Decision(False, reason, breach)
        if self.mode is Mode.MONITOR:
            return Decision(False, "monitor mode: logged only")
        if self.stopping:
            return Decision(False, "monitor is stopping: no new executions")
        down = [v.value for v, up in self.venue_up.items() if not up]
        if down:
            return Decision(False, f"venue unreachable or not synced: {', '.join(down)}")
        # The quote source is the book as the venue would show it now (for paper: net of
        # our own paper fills, which the simulated venue cannot know about).
        k_depth = self._depth(opp.symbol, Venue.KALSHI, opp.kalshi.outcome, opp.kalshi.limit_price)
        if k_depth < QTY_SCALE:
            return Decision(False, "kalshi depth at the limit is gone")
        need2 = min(opp.size, k_depth - k_depth % QTY_SCALE)
        if self._depth(opp.symbol, Venue.IBKR, opp.ibkr.outcome, opp.ibkr.limit_price) < need2:
            return Decision(False, "ibkr depth at the limit is gone")
        for venue, need in (
            (Venue.KALSHI, opp.kalshi.cost + opp.kalshi.fee),
            (Venue.IBKR, opp.ibkr.cost + opp.ibkr.fee),
        ):
            bal = self.balances[venue]
            if bal is not None and self.reserved[venue] + need > bal:
                return Decision(False, f"insufficient {venue.value} balance for reservation")
        return Decision(True)

    # ---------------------------------------------------------------- execution ---
    async def execute(self, opp: Opportunity) -> ExecutionRecord | None:
        """Check, reserve and run one opportunity end to end; None when the checks said no."""
        reservation = self.begin(opp)
        if isinstance(reservation, Decision):
            return None
        return await self.run(reservation)

    def begin(self, opp: Opportunity) -> Reservation | Decision:
        """Synchronous check + reservation, so two opportunities decided in one batch can
        never both pass a limit that only one of them fits (``max_open_executions``)."""
        decision = self.check(opp)
        if not decision.ok:
            return decision
        now = self.clock()
        need = {
            Venue.KALSHI: opp.kalshi.cost + opp.kalshi.fee,
            Venue.IBKR: opp.ibkr.cost + opp.ibkr.fee,
        }
        for v, amount in need.items():
            self.reserved[v] += amount
        self.state.open_executions += 1
        self.state.last_execution_ns[opp.symbol] = now
        return Reservation(opp, execution_id_for(opp, self.id_prefix), need, now)

    async def run(self, res: Reservation) -> ExecutionRecord:
        opp = res.opp
        ex = ExecutionRecord(
            execution_id=res.execution_id,
            symbol=opp.symbol,
            combo=opp.combo,
            mode=self.mode,
            state=ExecState.INTENT,
            created_ns=res.decided_ns,
            updated_ns=res.decided_ns,
            planned_qty=opp.size,
            expected_profit=opp.expected_profit,
            opportunity_id=res.opportunity_id,
            stages_ns={"detected": opp.detected_ts_ns, "decided": res.decided_ns},
        )
        try:
            await self._run(ex, opp)
        except Exception as exc:  # never leave an execution without a terminal journal row
            log.exception("execution %s crashed", ex.execution_id)
            ex.error = f"{type(exc).__name__}: {exc}"
            exposure = self._residual(opp.symbol)
            ex.state = ExecState.UNHEDGED if exposure else ExecState.FAILED
            if exposure:
                self.kill(f"{ex.execution_id}: {exposure // QTY_SCALE} contracts unhedged")
            await self._save(ex)
        finally:
            for v, amount in res.need.items():
                self.reserved[v] -= amount
            self.state.open_executions -= 1
        self.completed.append(ex)
        return ex

    async def _save(self, ex: ExecutionRecord) -> None:
        ex.updated_ns = self.clock()
        await self.journal.record_state(ex)
        if self.on_update is not None:
            self.on_update(ex)

    def _order(
        self,
        ex: ExecutionRecord,
        leg: Leg,
        attempt: int,
        venue: Venue,
        outcome: Outcome,
        limit: int,
        qty: int,
    ) -> LegOrderRecord:
        rec = LegOrderRecord(
            execution_id=ex.execution_id,
            leg=leg,
            attempt=attempt,
            mode=self.mode,
            venue=venue,
            symbol=ex.symbol,
            outcome=outcome,
            limit_price=Price(limit),
            requested_qty=Qty(qty),
            client_order_id=client_order_id(ex.execution_id, leg, attempt),
            decided_ns=self.clock(),
        )
        ex.orders.append(rec)
        return rec

    async def _send(
        self,
        client: VenueOrderClient,
        rec: LegOrderRecord,
        tif: TimeInForce,
        timeout_ms: int,
        *,
        journaled: bool = False,
    ) -> OrderResult | None:
        """Send one order and settle its fate. Ambiguity is resolved by asking the venue
        about the same client order id — never by sending a new one."""
        req = OrderRequest(
            rec.symbol, rec.outcome, rec.limit_price, rec.requested_qty, tif, rec.client_order_id
        )
        if not journaled:  # the order row is committed before the order leaves
            rec.submitted_ns = self.clock()
            await self.journal.record_order(rec)
        timeout_s = timeout_ms / 1000
        result: OrderResult | None = None
        try:
            result = await asyncio.wait_for(client.place_limit(req, timeout_s), timeout_s + 2.0)
        except (TimeoutError, VenueError, OSError) as exc:
            # Ambiguous or refused: ask the venue about this very id; it says whether the
            # order exists. Never send a new id for the same intent.
            rec.reason = f"{type(exc).__name__}: {exc}"
            result = await self._resolve(client, rec)
            if result is None and rec.state is not OrderState.UNKNOWN and _ambiguous(exc):
                # "Not found" does not prove absence while the first request may still
                # land: re-send the SAME id, which the venue creates at most once.
                result = await self._resend(client, req, rec, timeout_s)
        if result is not None and not result.state.terminal:
            try:
                result = await client.cancel(rec.client_order_id, timeout_s)
            except (TimeoutError, VenueError, OSError) as exc:
                rec.reason = f"cancel failed: {exc}"
                result = await self._resolve(client, rec)
        self._apply_result(rec, result)
        await self.journal.record_order(rec)
        return result

    def _reconciled_state(self, ex: ExecutionRecord) -> ExecState:
        return _reconciled_state_of(ex, self.symbols.symbols[ex.symbol])

    async def _resend(
        self, client: VenueOrderClient, req: OrderRequest, rec: LegOrderRecord, timeout_s: float
    ) -> OrderResult | None:
        try:
            return await asyncio.wait_for(client.place_limit(req, timeout_s), timeout_s + 2.0)
        except (TimeoutError, VenueError, OSError) as exc:
            rec.reason += f"; resend: {type(exc).__name__}: {exc}"
            result = await self._resolve(client, rec)
            if result is None and _ambiguous(exc):
                rec.state = OrderState.UNKNOWN  # two requests may be in flight: a human looks
            return result

    async def _resolve(self, client: VenueOrderClient, rec: LegOrderRecord) -> OrderResult | None:
        for attempt in range(3):
            try:
                return await asyncio.wait_for(client.order_status(rec.client_order_id), 2.0)
            except (TimeoutError, VenueError, OSError) as exc:
                log.warning("status of %s unknown (try %d): %s", rec.client_order_id, attempt, exc)
                await asyncio.sleep(0.05 * (attempt + 1))
        rec.state = OrderState.UNKNOWN
        return None

    def _apply_result(self, rec: LegOrderRecord, res: OrderResult | None) -> None:
        if res is None:
            if rec.state is not OrderState.UNKNOWN:
                rec.state = OrderState.REJECTED
            return
        rec.state = res.state
        rec.venue_order_id = res.venue_order_id
        rec.filled_qty = res.filled_qty
        rec.filled_cost = res.filled_cost
        rec.fees = res.fees
        rec.acked_ns = res.ack_ts_ns or self.clock()
        if res.filled_qty:
            rec.filled_ns = rec.acked_ns
            key = (rec.symbol, rec.venue, rec.outcome)
            pos = self.state.positions
            pos[key] = Qty(pos.get(key, 0) + res.filled_qty)
            self._net(rec.symbol, rec.venue)
        if res.reason and not rec.reason:
            rec.reason = res.reason

    def _net(self, symbol: str, venue: Venue) -> None:
        pos = self.state.positions
        y = pos.get((symbol, venue, Outcome.YES), 0)
        n = pos.get((symbol, venue, Outcome.NO), 0)
        m = min(y, n)
        if m:
            pos[(symbol, venue, Outcome.YES)] = Qty(y - m)
            pos[(symbol, venue, Outcome.NO)] = Qty(n - m)

    def _residual(self, symbol: str) -> int:
        return risk.residual_exposure(self.symbols.symbols[symbol], self.state.positions)

    async def _run(self, ex: ExecutionRecord, opp: Opportunity) -> None:
        cfg = self.config.execution
        leg1 = self._order(
            ex, Leg.LEG1, 0, Venue.KALSHI, opp.kalshi.outcome, opp.kalshi.limit_price, opp.size
        )
        # One durable write before leg 1 goes out: the intent already says "leg 1 may be in
        # flight" and carries the order row, so a crash at any point after it reconciles by
        # that client order id (decision → first request bytes pays one fsync, not three).
        tif1 = TimeInForce(cfg.leg1_time_in_force)
        ex.state = ExecState.LEG1_SENT
        ex.stages_ns["leg1_submit"] = leg1.submitted_ns = self.clock()
        await self.journal.record_intent(ex, leg1)
        if self.on_update is not None:
            self.on_update(ex)
        await self._send(self.kalshi, leg1, tif1, cfg.leg1_timeout_ms, journaled=True)
        ex.stages_ns["leg1_ack"] = leg1.acked_ns
        if leg1.filled_qty:
            ex.stages_ns["leg1_fill"] = leg1.filled_ns
        if leg1.state is OrderState.UNKNOWN:
            await self._outcome_unknown(ex, "leg 1", "Kalshi")
            return
        if not leg1.filled_qty:
            ex.state = ExecState.DONE if leg1.state is not OrderState.REJECTED else ExecState.FAILED
            ex.error = leg1.reason
            await self._save(ex)
            return

        # Leg 2: exactly leg 1's whole contracts, only if the quote still supports it.
        filled1 = leg1.filled_qty
        qty2 = filled1 - filled1 % QTY_SCALE
        leg2: LegOrderRecord | None = None
        limit2 = opp.ibkr.limit_price
        moved = cfg.recheck_leg2_quote and not self._quote_supports(
            opp.symbol, Venue.IBKR, opp.ibkr.outcome, limit2, qty2
        )
        if qty2 and not moved:
            leg2 = self._order(ex, Leg.LEG2, 0, Venue.IBKR, opp.ibkr.outcome, limit2, qty2)
            ex.state = ExecState.LEG2_SENT
            await self._save(ex)
            ex.stages_ns["leg2_submit"] = self.clock()
            await self._send(self.ibkr, leg2, TimeInForce.IOC, cfg.leg2_timeout_ms)
            ex.stages_ns["leg2_ack"] = leg2.acked_ns
            if leg2.filled_qty:
                ex.stages_ns["leg2_fill"] = leg2.filled_ns
            if leg2.state is OrderState.UNKNOWN:
                await self._outcome_unknown(ex, "leg 2", "IBKR")
                return
        elif moved:
            ex.error = "leg-2 quote moved past the detected limit; hedging leg 1"

        filled2 = leg2.filled_qty if leg2 is not None else 0
        matched = min(filled1, filled2)
        pair_cost = self._cost_of(leg1, matched) + (
            self._cost_of(leg2, matched) if leg2 is not None else 0
        )
        remainder = filled1 - filled2
        if remainder <= 0:
            ex.realized_pnl = Money(matched * PAYOUT_PER_CONTRACT // QTY_SCALE - pair_cost)
            ex.state = ExecState.DONE
            self.state.consecutive_failures = 0
            self.state.exposure = Money(self.state.exposure + pair_cost)
            await self._save(ex)
            return

        # Hedge the unmatched leg-1 contracts by buying the opposite outcome on Kalshi.
        ex.state = ExecState.HEDGING
        await self._save(ex)
        hedged, hedge_cost = await self._hedge(ex, leg1, remainder)
        unhedged = remainder - hedged
        leg1_rest_cost = leg1.filled_cost + leg1.fees - self._cost_of(leg1, matched)
        # Hedged contracts pay $1 per YES/NO pair: cost is realised now.
        ex.hedge_cost = Money(
            hedge_cost + leg1_rest_cost - hedged * PAYOUT_PER_CONTRACT // QTY_SCALE
        )
        arb_pnl = matched * PAYOUT_PER_CONTRACT // QTY_SCALE - pair_cost
        ex.realized_pnl = Money(arb_pnl - ex.hedge_cost)
        self.state.realized_pnl_today = Money(self.state.realized_pnl_today - ex.hedge_cost)
        self.state.exposure = Money(self.state.exposure + pair_cost)
        self.state.consecutive_failures += 1
        if unhedged > 0 or self._residual(ex.symbol):
            ex.state = ExecState.UNHEDGED
            ex.error = (ex.error + "; " if ex.error else "") + (
                f"{unhedged / QTY_SCALE:g} contracts left unhedged"
            )
            self.kill(f"{ex.execution_id}: unhedged exposure after {cfg.hedge_max_ms} ms")
        else:
            ex.state = ExecState.HEDGED
        await self._save(ex)
        for check in risk.BREACHES:
            ok, reason = check(self.state, self.config.risk)
            if not ok:
                self.kill(reason)

    async def _outcome_unknown(self, ex: ExecutionRecord, leg: str, venue: str) -> None:
        """An order whose fate the venue would not tell us: assume exposure, stop trading."""
        ex.state = ExecState.UNHEDGED
        ex.error = f"{leg} outcome unknown"
        self.kill(f"{ex.execution_id}: {leg} state unknown at {venue}")
        await self._save(ex)

    def _cost_of(self, rec: LegOrderRecord, qty: int) -> int:
        """Cost incl. fees of ``qty`` of an order's fill, pro rata (exact, rounded up)."""
        if not rec.filled_qty or qty <= 0:
            return 0
        total = rec.filled_cost + rec.fees
        return -((-total * qty) // rec.filled_qty)

    def _depth(self, symbol: str, venue: Venue, outcome: Outcome, limit: int) -> int:
        """Visible quantity at or better than ``limit`` (per the quote source)."""
        avail = 0
        for price, size in self.quote(symbol, venue, outcome):
            if price > limit:
                break
            avail += size
        return avail

    def _quote_supports(
        self, symbol: str, venue: Venue, outcome: Outcome, limit: int, qty: int
    ) -> bool:
        return self._depth(symbol, venue, outcome, limit) >= qty

    async def _hedge(self, ex: ExecutionRecord, leg1: LegOrderRecord, qty: int) -> tuple[int, int]:
        """Buy ``qty`` of the opposite Kalshi outcome over a bounded price ladder.

        Returns (contracts hedged, cost incl. fees). The ladder starts at the current best
        ask (or the break-even 1 − leg-1 price) and steps up by ``hedge_price_step_usd``.
        """
        cfg = self.config.execution
        outcome = leg1.outcome.opposite
        deadline = self.clock() + cfg.hedge_max_ms * 1_000_000
        asks = self.quote(ex.symbol, Venue.KALSHI, outcome)
        base = asks[0][0] if asks else PRICE_SCALE - leg1.limit_price
        step = cfg.hedge_price_step_usd // 100  # Money → Price units
        hedged = cost = 0
        ex.stages_ns["hedge_start"] = self.clock()
        for attempt in range(cfg.hedge_max_steps + 1):
            left = qty - hedged
            if left <= 0 or self.clock() >= deadline:
                break
            limit = min(base + attempt * step, PRICE_SCALE - 1)
            rec = self._order(ex, Leg.HEDGE, attempt, Venue.KALSHI, outcome, limit, left)
            remaining_ms = max(1, (deadline - self.clock()) // 1_000_000)
            await self._send(
                self.kalshi, rec, TimeInForce.IOC, min(cfg.leg1_timeout_ms, remaining_ms)
            )
            hedged += rec.filled_qty
            cost += rec.filled_cost + rec.fees
        ex.stages_ns["hedge_end"] = self.clock()
        return hedged, cost

    # ----------------------------------------------------------- reconciliation ---
    async def reconcile(self) -> ReconcileReport:
        """At start: settle every non-terminal journaled execution by client order id,
        compare positions with the venues, and put the kill switch on for exposure."""
        report = ReconcileReport()
        for ex in await self.journal.open_executions():
            report.executions_checked += 1
            for rec in ex.orders:
                client = self.kalshi if rec.venue is Venue.KALSHI else self.ibkr
                res = await self._resolve(client, rec)
                if res is None and rec.state is OrderState.UNKNOWN:
                    report.notes.append(f"{rec.client_order_id}: venue unreachable")
                    continue
                if res is None:
                    report.orders_missing += 1  # never reached the venue: nothing to undo
                    rec.state = OrderState.REJECTED
                    rec.reason = rec.reason or "not found at venue after restart"
                else:
                    report.orders_found += 1
                    if not res.state.terminal:
                        try:
                            res = await client.cancel(rec.client_order_id, 2.0)
                        except (TimeoutError, VenueError, OSError) as exc:
                            report.notes.append(f"{rec.client_order_id}: cancel failed: {exc}")
                    self._apply_result(rec, res)
                await self.journal.record_order(rec)
            ex.state = self._reconciled_state(ex)
            ex.error = "reconciled after restart"
            if ex.state is ExecState.UNHEDGED:
                self.kill(f"{ex.execution_id}: exposure or unknown orders after restart")
            await self._save(ex)
        # Positions: the venues are the truth.
        self.state.positions.clear()
        for venue, client in ((Venue.KALSHI, self.kalshi), (Venue.IBKR, self.ibkr)):
            for (symbol, outcome), q in (await client.positions()).items():
                self.state.positions[(symbol, venue, outcome)] = q
        for name, spec in self.symbols.symbols.items():
            r = risk.residual_exposure(spec, self.state.positions)
            if r:
                report.residual_contracts[name] = r // QTY_SCALE
        if report.residual_contracts:
            report.kill_switch = True
            self.kill(f"unhedged exposure found at start: {report.residual_contracts}")
        return report


def _reconciled_state_of(ex: ExecutionRecord, spec: SymbolSpec) -> ExecState:
    """FAILED only when nothing filled; an unknown order or the execution's own fills
    left unmatched make it UNHEDGED (a human looks); otherwise DONE or HEDGED."""
    own: dict[tuple[str, Venue, Outcome], Qty] = {}
    for o in ex.orders:
        own[(o.symbol, o.venue, o.outcome)] = Qty(
            own.get((o.symbol, o.venue, o.outcome), 0) + o.filled_qty
        )
    if any(o.state is OrderState.UNKNOWN for o in ex.orders) or risk.residual_exposure(spec, own):
        return ExecState.UNHEDGED
    if not any(own.values()):
        return ExecState.FAILED
    hedged = any(o.leg is Leg.HEDGE and o.filled_qty for o in ex.orders)
    return ExecState.HEDGED if hedged else ExecState.DONE


def _ambiguous(exc: BaseException) -> bool:
    """The request may have reached the venue (a timeout, a dropped connection, a 5xx)."""
    return not isinstance(exc, VenueError) or exc.retryable


def ibkr_order_ok(price: int, qty: int) -> tuple[bool, str]:
    """ForecastEx rules: whole contracts, $0.01 ticks, $0.02–$0.99."""
    if qty <= 0 or qty % QTY_SCALE:
        return False, "ForecastEx orders are whole contracts"
    if price % _IBKR_TICK:
        return False, "ForecastEx prices are on a $0.01 grid"
    if not _IBKR_MIN_PRICE <= price <= _IBKR_MAX_PRICE:
        return False, "ForecastEx prices are $0.02–$0.99"
    return True, ""
