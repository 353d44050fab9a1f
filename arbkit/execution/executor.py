"""The executor: risk → reserve → a pure state machine per execution, driven by a thin
async shell.

``begin`` checks (pure risk functions) and reserves synchronously, so one batch of
decisions can never over-commit a limit; ``run`` drives one ``ExecutionMachine``
(``machine.py``: the sequencing, the order-truth rules and the recovery policy) by
performing its commands against the venue clients and the journal and feeding back what
the venues said. Nothing here decides what to do next: the machine does.

Client order ids are deterministic per (execution, leg, attempt): a retry after a
timeout or a crash re-sends the *same* id, which the venues resolve to the existing order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.config.execution_loader import ExecutionConfig
from arbkit.config.loader import SymbolMap, SymbolSpec
from arbkit.execution import risk
from arbkit.execution.consumption import OwnFills
from arbkit.execution.journal import (
    ExecState,
    ExecutionRecord,
    Journal,
    Leg,
    LegOrderRecord,
)
from arbkit.execution.machine import (
    Answered,
    Cancel,
    CancelAnswered,
    CancelFailed,
    Command,
    Event,
    ExecutionMachine,
    FillPushed,
    Finished,
    Halt,
    Journaled,
    JournalIntent,
    JournalOrder,
    JournalState,
    JournalStep,
    Place,
    PlaceAmbiguous,
    PlaceExists,
    Pushed,
    Query,
    ReadFailed,
    SetTimer,
    StatusRead,
    TimerFired,
    client_order_id,
)
from arbkit.execution.reconcile import ReconcileConfig, Reconciler, ReconcileReport
from arbkit.execution.venue import (
    Fill,
    OrderExists,
    OrderRequest,
    OrderResult,
    OrderState,
    VenueError,
    VenueOrderClient,
)
from arbkit.model import (
    QTY_SCALE,
    Mode,
    Money,
    Opportunity,
    Outcome,
    Price,
    Qty,
    Venue,
)
from arbkit.normalizers.market_status import MarketClock

log = logging.getLogger(__name__)

QuoteFn = Callable[[str, Venue, Outcome], Sequence[tuple[Price, Qty]]]
# (ts_ns, from, to, reason, actor)
StateChangeFn = Callable[[int, risk.TradingState, risk.TradingState, str, str], None]
_IBKR_MIN_PRICE, _IBKR_MAX_PRICE, _IBKR_TICK = 200, 9900, 100
_MARGIN_S = 1.0  # outer timeout = the client's own timeout + this, never less
_READ_S = 2.0  # one status read

__all__ = ["Decision", "Executor", "ReconcileReport", "Reservation", "client_order_id"]


def execution_id_for(opp: Opportunity, prefix: str = "ak") -> str:
    digest = hashlib.blake2b(
        f"{opp.symbol}|{opp.combo}|{opp.detected_ts_ns}".encode(), digest_size=8
    ).hexdigest()
    return f"{prefix}-{digest}"


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
        on_update: Callable[[ExecutionRecord], None] | None = None,
        on_state_change: StateChangeFn | None = None,
        on_alert: Callable[[str, str], None] | None = None,
        own_fills: Mapping[Venue, OwnFills] | None = None,
        raw_quote: QuoteFn | None = None,
    ) -> None:
        self.config = config
        # Live: our taker fills, kept off ``quote`` until the venue's book shows them
        # (``raw_quote`` is the book as published; ``quote`` is it net of ``own_fills``).
        self.own_fills = own_fills
        self.raw_quote = raw_quote
        self.mode = mode or config.mode
        self.symbols = symbol_map
        self.kalshi = kalshi
        self.ibkr = ibkr
        self.journal = journal
        self.quote = quote
        self.clock = clock
        self.id_prefix = id_prefix
        # What the venues say about each market (state, real close times); the monitor
        # keeps them current from REST, the lifecycle channel and contract details.
        self.market_clocks: dict[str, MarketClock] = {}
        self.on_update = on_update
        self.fees = FeeModel(config.fees)
        self.state = risk.RiskState()
        self.reserved: dict[Venue, int] = {Venue.KALSHI: 0, Venue.IBKR: 0}
        self.balances: dict[Venue, int | None] = {Venue.KALSHI: None, Venue.IBKR: None}
        self.balance_ts_ns: dict[Venue, int] = {}  # when each balance was read
        self.on_state_change = on_state_change
        self.on_alert = on_alert
        self._reducing_for_balance = False
        self.completed: list[ExecutionRecord] = []
        # Gates the monitor sets: no execution starts while stopping or a venue is down.
        self.stopping = False
        self.venue_up: dict[Venue, bool] = {Venue.KALSHI: True, Venue.IBKR: True}
        self._running: dict[str, tuple[ExecutionMachine, asyncio.Queue[Event]]] = {}
        for client in (kalshi, ibkr):
            subscribe = getattr(client, "subscribe", None)  # the venue's own fill stream
            if subscribe is not None:
                subscribe(self._on_push_fill, self._on_push_order)

    # ------------------------------------------------------------------ control ---
    def set_state(self, to: risk.TradingState, reason: str, actor: str) -> None:
        """Change the trading state; every change goes to ``on_state_change`` (the monitor
        makes it a database row). Only the user leaves ``halted``."""
        st = self.state
        if st.trading_state is to:
            return
        if st.trading_state is risk.TradingState.HALTED and actor != "user":
            return  # a limit may halt, never un-halt
        lifts_reducing = (
            st.trading_state is risk.TradingState.REDUCING and to is risk.TradingState.ACTIVE
        )
        if lifts_reducing and actor != "user" and not self._reducing_for_balance:
            return  # only the balance rule that set reducing may clear it
        if to is risk.TradingState.REDUCING and st.trading_state is risk.TradingState.HALTED:
            return
        change = (self.clock(), st.trading_state, to, reason, actor)
        (log.error if to is not risk.TradingState.ACTIVE else log.warning)(
            "trading state %s -> %s (%s): %s", st.trading_state.value, to.value, actor, reason
        )
        st.trading_state, st.state_reason = to, reason
        if to is risk.TradingState.ACTIVE:
            st.state_reason = ""
        if self.on_state_change is not None:
            self.on_state_change(*change)

    def kill(self, reason: str, actor: str = "limit") -> None:
        self.set_state(risk.TradingState.HALTED, reason, actor)

    def reset_kill_switch(self, reason: str = "lifted by the user") -> None:
        """The user's explicit lift; also clears the failure streak that may have tripped
        it. A symbol blocked as a false opportunity stays blocked (``unblock_symbol``)."""
        self.state.consecutive_failures = 0
        self.set_state(risk.TradingState.ACTIVE, reason, "user")

    def block_symbol(self, symbol: str, reason: str) -> None:
        if symbol in self.state.blocked_symbols:
            return
        log.error("ALERT: %s blocked: %s", symbol, reason)
        self.state.blocked_symbols[symbol] = reason
        if self.on_alert is not None:
            self.on_alert(symbol, reason)

    def unblock_symbol(self, symbol: str) -> None:
        self.state.blocked_symbols.pop(symbol, None)

    async def refresh_balances(self) -> None:
        for venue, client in ((Venue.KALSHI, self.kalshi), (Venue.IBKR, self.ibkr)):
            try:
                self.balances[venue] = await client.balance()
                self.balance_ts_ns[venue] = self.clock()
            except (TimeoutError, VenueError, OSError) as exc:
                log.warning("balance of %s unavailable: %s", venue.value, exc)
        ok, reason = risk.check_min_balance(self.balances, self.config.risk)
        if not ok:
            self.set_state(risk.TradingState.REDUCING, reason, "limit")
            self._reducing_for_balance = self.state.trading_state is risk.TradingState.REDUCING
        elif self._reducing_for_balance:
            self.set_state(risk.TradingState.ACTIVE, "balances back above their floors", "limit")
            self._reducing_for_balance = False

    def _roll_day(self, now_ns: int) -> None:
        start = risk.trading_day_start_ns(now_ns, self.config.risk)
        if start != self.state.trading_day_start_ns:
            self.state.trading_day_start_ns = start
            self.state.realized_pnl_today = Money(0)

    def _false_opportunity(self, opp: Opportunity, spec: SymbolSpec) -> str:
        """Why ``opp`` looks like a wrong pairing rather than an arbitrage ("" if not)."""
        ok, reason = risk.check_plausible_edge(opp, self.config.risk)
        if not ok:
            return reason

        def top(v: Venue, o: Outcome) -> int | None:
            levels = self.quote(opp.symbol, v, o)
            return int(levels[0][0]) if levels else None

        k_mid = risk.implied_yes_mid(top(Venue.KALSHI, Outcome.YES), top(Venue.KALSHI, Outcome.NO))
        eq = spec.ibkr_equivalent(Outcome.YES)
        f_mid = risk.implied_yes_mid(top(Venue.IBKR, eq), top(Venue.IBKR, eq.opposite))
        ok, reason = risk.check_mid_agreement(k_mid, f_mid, self.config.risk)
        return "" if ok else reason

    def check(self, opp: Opportunity, now_ns: int | None = None) -> Decision:
        now = self.clock() if now_ns is None else now_ns
        spec = self.symbols.symbols[opp.symbol]
        self._roll_day(now)
        ok, reason, breach = risk.pre_trade(
            opp,
            spec,
            self.state,
            self.config.detector,
            self.config.risk,
            now,
            self.market_clocks.get(opp.symbol),
        )
        if not ok:
            if breach:
                self.kill(reason)
            return Decision(False, reason, breach)
        ok, reason = risk.check_min_size(opp, self.config.execution)
        if not ok:
            return Decision(False, reason)
        false_opp = self._false_opportunity(opp, spec)
        if false_opp:
            self.block_symbol(opp.symbol, false_opp)
            return Decision(False, f"{opp.symbol} blocked: {false_opp}")
        if self.mode is Mode.MONITOR:
            return Decision(False, "monitor mode: logged only")
        if self.mode is Mode.LIVE:
            missing = spec.equivalence.missing_for_live()
            if missing:
                return Decision(
                    False,
                    f"{opp.symbol} is not verified for live trading: its equivalence block "
                    f"lacks {', '.join(missing)}",
                )
        if self.stopping:
            return Decision(False, "monitor is stopping: no new executions")
        down = [v.value for v, up in self.venue_up.items() if not up]
        if down:
            return Decision(False, f"venue unreachable or not synced: {', '.join(down)}")
        live = self.mode is Mode.LIVE
        if live:  # a paper venue is its own (in-process) truth; a real one must be read
            ok, reason = risk.check_balance_fresh(self.balance_ts_ns, self.config.risk, now)
            if not ok:
                return Decision(False, reason)
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
            if (bal is None and live) or (bal is not None and self.reserved[venue] + need > bal):
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
        spec = self.symbols.symbols[opp.symbol]
        machine = ExecutionMachine(ex, opp, spec, self.config.execution, self.fees, self.quote)
        sent: set[str] = set()
        try:
            await self._drive(machine, sent)
        except Exception as exc:  # never leave an execution without a terminal journal row
            if not sent:
                raise  # nothing left the process (e.g. the intent write was refused): loud
            log.exception("execution %s crashed", ex.execution_id)
            ex.error = f"{type(exc).__name__}: {exc}"
            live = [r for r in machine.live_orders() if r.client_order_id in sent]
            exposure = machine.residual()
            ex.state = ExecState.UNHEDGED if (exposure or live) else ExecState.FAILED
            if ex.state is ExecState.UNHEDGED:
                self.kill(
                    f"{ex.execution_id}: crashed with {exposure // QTY_SCALE} contracts "
                    f"exposed and {len(live)} orders unconfirmed"
                )
            with contextlib.suppress(Exception):
                await self._save(ex)
        finally:
            for v, amount in res.need.items():
                self.reserved[v] -= amount
            # What the fills cost is gone from the balance now, not at the next read:
            # until then the cached balance is debited (conservative: netting refunds
            # are not credited), so the next decision cannot spend it twice.
            for r in ex.orders:
                bal = self.balances.get(r.venue)
                if bal is not None and r.filled_qty:
                    self.balances[r.venue] = Money(bal - r.filled_cost - r.fees)
            self.state.open_executions -= 1
            self._running.pop(ex.execution_id, None)
        self._book(machine)
        self.completed.append(ex)
        return ex

    # ------------------------------------------------------------------- shell ---
    async def _drive(self, m: ExecutionMachine, sent: set[str]) -> None:
        """Perform the machine's commands, feed back what happened, until it finishes.

        Journal writes are awaited in order before the next command; place/cancel/query
        run one at a time under an outer timeout that is their inner timeout plus a margin
        (never less). Pushed fills/updates and timers arrive through the inbox.
        """
        inbox: asyncio.Queue[Event] = asyncio.Queue()
        self._running[m.ex.execution_id] = (m, inbox)
        timers: list[tuple[float, str]] = []
        loop = asyncio.get_running_loop()
        pending: list[Command] = list(m.start(self.clock()))
        while True:
            while pending:
                cmd = pending.pop(0)
                if isinstance(cmd, Place):
                    sent.add(cmd.order.client_order_id)
                ev = await self._perform(m, cmd, timers, loop.time())
                if isinstance(cmd, Finished):
                    await self._settle_costs(m, inbox)
                    return
                if ev is not None:
                    pending.extend(m.on_event(ev, self.clock()))
            # Nothing to do until the venue pushes something or a timer is due.
            timeout = None
            if timers:
                timers.sort()
                timeout = max(0.0, timers[0][0] - loop.time())
            try:
                ev = await asyncio.wait_for(inbox.get(), timeout)
            except TimeoutError:
                _, key = timers.pop(0)
                ev = TimerFired(key)
            pending.extend(m.on_event(ev, self.clock()))
            if not pending and not timers and inbox.empty() and not m.done:
                raise RuntimeError(f"execution {m.ex.execution_id} stalled in {m.stage.value}")

    async def _perform(
        self, m: ExecutionMachine, cmd: Command, timers: list[tuple[float, str]], t: float
    ) -> Event | None:
        ex = m.ex
        if isinstance(cmd, JournalIntent):
            t0 = time.perf_counter_ns()
            await self.journal.record_intent(ex, cmd.order)
            took = time.perf_counter_ns() - t0
            if self.on_update is not None:
                self.on_update(ex)
            return Journaled(took)
        if isinstance(cmd, JournalStep):
            ex.updated_ns = self.clock()
            await self.journal.record_step(ex, cmd.order)
            if self.on_update is not None:
                self.on_update(ex)
            return None
        if isinstance(cmd, JournalOrder):
            await self.journal.record_order(cmd.order)
            return None
        if isinstance(cmd, JournalState):
            await self._save(ex)
            return None
        if isinstance(cmd, Halt):
            self.kill(cmd.reason)
            return None
        if isinstance(cmd, SetTimer):
            delay_s = max(0, cmd.at_ns - self.clock()) / 1e9
            timers.append((t + delay_s, cmd.key))
            return None
        if isinstance(cmd, Finished):
            return None
        client = self._client(cmd.venue if not isinstance(cmd, Place) else cmd.order.venue)
        if isinstance(cmd, Place):
            return await self._place(client, m, cmd)
        if isinstance(cmd, Cancel):
            try:
                res = await asyncio.wait_for(
                    client.cancel(cmd.client_order_id, cmd.timeout_ms / 1000),
                    cmd.timeout_ms / 1000 + _MARGIN_S,
                )
                return CancelAnswered(res)
            except (TimeoutError, VenueError, OSError) as exc:
                return CancelFailed(cmd.client_order_id, f"cancel: {type(exc).__name__}: {exc}")
        assert isinstance(cmd, Query)
        try:
            got = await asyncio.wait_for(client.order_status(cmd.client_order_id), _READ_S)
            return StatusRead(cmd.client_order_id, got)
        except (TimeoutError, VenueError, OSError) as exc:
            return ReadFailed(cmd.client_order_id, f"status: {type(exc).__name__}: {exc}")

    async def _place(self, client: VenueOrderClient, m: ExecutionMachine, cmd: Place) -> Event:
        rec = cmd.order
        req = OrderRequest(
            rec.symbol,
            rec.outcome,
            rec.limit_price,
            rec.requested_qty,
            cmd.tif,
            rec.client_order_id,
        )
        timeout_s = cmd.timeout_ms / 1000
        shown = self._shown(rec)
        role = {Leg.LEG1: "leg1", Leg.LEG2: "leg2"}.get(rec.leg)
        if role is not None and f"{role}_submit" not in m.ex.stages_ns:
            m.ex.stages_ns[f"{role}_submit"] = self.clock()
        try:
            res = await asyncio.wait_for(client.place_limit(req, timeout_s), timeout_s + _MARGIN_S)
        except OrderExists as exc:
            return PlaceExists(rec.client_order_id, str(exc))
        except (TimeoutError, VenueError, OSError) as exc:
            if isinstance(exc, VenueError) and not exc.retryable:
                # Refused before it left (e.g. not connected, validation in the client).
                return Answered(
                    OrderResult(
                        rec.client_order_id,
                        "",
                        OrderState.REJECTED,
                        rec.requested_qty,
                        Qty(0),
                        Money(0),
                        Money(0),
                        reason=str(exc),
                        ack_ts_ns=self.clock(),
                    )
                )
            return PlaceAmbiguous(rec.client_order_id, f"{type(exc).__name__}: {exc}")
        if role is not None and res.sent_ns:
            m.ex.stages_ns[f"{role}_submit"] = res.sent_ns  # where the bytes left
        if shown is not None and res.filled_qty:
            self._consumed(rec, shown, res.filled_qty)
        return Answered(res)

    def _shown(self, rec: LegOrderRecord) -> list[tuple[Price, Qty]] | None:
        """The published levels our order can take (live with a ledger only)."""
        if self.own_fills is None or self.raw_quote is None:
            return None
        return [
            lv
            for lv in self.raw_quote(rec.symbol, rec.venue, rec.outcome)
            if lv[0] <= rec.limit_price
        ]

    def _consumed(self, rec: LegOrderRecord, shown: list[tuple[Price, Qty]], filled: int) -> None:
        """A taker fill took the best levels it could reach, in price order. A level whose
        published size already changed since we sent shows our trade: nothing to hold."""
        assert self.own_fills is not None and self.raw_quote is not None
        ledger = self.own_fills[rec.venue]
        now_sizes = dict(self.raw_quote(rec.symbol, rec.venue, rec.outcome))
        now = self.clock()
        left = filled
        for price, size in shown:
            if left <= 0:
                break
            take = min(left, size)
            left -= take
            if now_sizes.get(price) == size:
                ledger.take(rec.symbol, rec.outcome, price, take, size, now)

    async def _settle_costs(self, m: ExecutionMachine, inbox: asyncio.Queue[Event]) -> None:
        """Fills the venue counted but whose exact costs have not arrived: give the push
        stream a short grace, then one read each; the journal gets the exact figures."""
        if not m.costs_pending():
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.execution.status_poll_ms / 1000
        while m.costs_pending() and loop.time() < deadline:
            try:
                ev = await asyncio.wait_for(inbox.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
            m.absorb_late(ev)
        for rec in m.costs_pending():
            with contextlib.suppress(TimeoutError, VenueError, OSError):
                got = await asyncio.wait_for(
                    self._client(rec.venue).order_status(rec.client_order_id), _READ_S
                )
                if got is not None:
                    m.absorb_late(StatusRead(rec.client_order_id, got))
        m.reaccount()
        for rec in m.ex.orders:
            await self.journal.record_order(rec)
        await self._save(m.ex)

    def _client(self, venue: Venue) -> VenueOrderClient:
        return self.kalshi if venue is Venue.KALSHI else self.ibkr

    def _on_push_fill(self, fill: Fill) -> None:
        got = self._route(fill.client_order_id)
        if got is not None:
            got.put_nowait(FillPushed(fill))

    def _on_push_order(self, res: OrderResult) -> None:
        got = self._route(res.client_order_id)
        if got is not None:
            got.put_nowait(Pushed(res))

    def _route(self, coid: str) -> asyncio.Queue[Event] | None:
        for m, inbox in self._running.values():
            if coid in m.tracks:
                return inbox
        return None

    def _book(self, m: ExecutionMachine) -> None:
        """Fold a finished execution into the risk state the limits read."""
        ex = m.ex
        for rec in ex.orders:
            if rec.filled_qty:
                key = (rec.symbol, rec.venue, rec.outcome)
                pos, basis = self.state.positions, self.state.cost_basis
                pos[key] = Qty(pos.get(key, 0) + rec.filled_qty)
                basis[key] = Money(basis.get(key, 0) + rec.filled_cost + rec.fees)
                self._net(rec.symbol, rec.venue)
        if ex.state is ExecState.DONE and any(r.filled_qty for r in ex.orders) and not m.failed:
            self.state.consecutive_failures = 0
        elif m.failed:
            self.state.consecutive_failures += 1
        if ex.state is not ExecState.DONE:  # FAILED, HEDGED, UNHEDGED, UNKNOWN
            self.state.last_failure_ns[ex.symbol] = self.clock()
        if ex.realized_pnl < 0:  # losses only: locked arb profit is paid at settlement
            self._roll_day(self.clock())
            self.state.realized_pnl_today = Money(self.state.realized_pnl_today + ex.realized_pnl)
        for check in risk.BREACHES:
            ok, reason = check(self.state, self.config.risk)
            if not ok:
                self.kill(reason)

    def settle_positions(self, symbol: str, venue: Venue) -> dict[Outcome, tuple[Qty, Money]]:
        """The venue paid this symbol's market out: its positions leave (exposure and
        committed capital released). Returns what was held: outcome → (qty, cost basis)."""
        st = self.state
        held: dict[Outcome, tuple[Qty, Money]] = {}
        for outcome in (Outcome.YES, Outcome.NO):
            key = (symbol, venue, outcome)
            qty = st.positions.pop(key, None)
            cost = st.cost_basis.pop(key, None)
            if qty:
                held[outcome] = (Qty(qty), Money(cost or 0))
        return held

    def _net(self, symbol: str, venue: Venue) -> None:
        pos = self.state.positions
        y = pos.get((symbol, venue, Outcome.YES), 0)
        n = pos.get((symbol, venue, Outcome.NO), 0)
        m = min(y, n)
        if m:
            basis = self.state.cost_basis
            for o, held in ((Outcome.YES, y), (Outcome.NO, n)):
                key = (symbol, venue, o)
                pos[key] = Qty(held - m)
                # the netted pair pays $1 whatever happens: its cost is released
                c = basis.get(key, 0)
                basis[key] = Money(c - c * m // held)

    def _residual(self, symbol: str) -> int:
        return risk.residual_exposure(self.symbols.symbols[symbol], self.state.positions)

    def _depth(self, symbol: str, venue: Venue, outcome: Outcome, limit: int) -> int:
        """Visible quantity at or better than ``limit`` (per the quote source)."""
        avail = 0
        for price, size in self.quote(symbol, venue, outcome):
            if price > limit:
                break
            avail += size
        return avail

    async def _save(self, ex: ExecutionRecord) -> None:
        ex.updated_ns = self.clock()
        await self.journal.record_state(ex)
        if self.on_update is not None:
            self.on_update(ex)

    # ----------------------------------------------------------- reconciliation ---
    async def reconcile(self) -> ReconcileReport:
        """At start: settle every non-terminal journaled execution by client order id
        (lag-tolerant: one miss is never proof), cancel our live orders, load the venues'
        positions and put the kill switch on for exposure. The monitor drives the same
        :class:`Reconciler` with its periodic passes."""
        rc = Reconciler(
            {Venue.KALSHI: self.kalshi, Venue.IBKR: self.ibkr},
            self.journal,
            self.symbols.symbols,
            self.state.positions,
            halt=self.kill,
            clock=self.clock,
            config=ReconcileConfig.from_params(self.config.execution, f"{self.id_prefix}-"),
        )
        return await rc.at_start()


def ibkr_order_ok(price: int, qty: int) -> tuple[bool, str]:
    """ForecastEx rules: whole contracts, $0.01 ticks, $0.02–$0.99."""
    if qty <= 0 or qty % QTY_SCALE:
        return False, "ForecastEx orders are whole contracts"
    if price % _IBKR_TICK:
        return False, "ForecastEx prices are on a $0.01 grid"
    if not _IBKR_MIN_PRICE <= price <= _IBKR_MAX_PRICE:
        return False, "ForecastEx prices are $0.02–$0.99"
    return True, ""
