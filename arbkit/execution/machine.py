"""The executor's sequencing as a pure state machine: events in, commands out, no IO.

One ``ExecutionMachine`` runs one execution. The async shell (``executor.py``) performs its
commands (journal writes, place, cancel, query, timers, halt) and feeds back what happened
as events (answers, errors, pushed fills and order updates, timer expiries). Because the
machine never waits, sleeps or reads a clock, the same code runs live, paper and replay,
and stateful property tests can drive it through event orders no scenario list covers.

The money rule it keeps: an execution ends flat at the venues, or UNHEDGED with a Halt
command — never a third outcome. Ambiguity is never booked as a rejection:

* an order whose create timed out / 5xx'd is *looked for* (by client order id) until it is
  seen or has been missed ``status_max_misses`` times spanning ``status_lag_tolerance_ms``
  (venue reads lag writes), then re-sent ONCE under the same id; a second ambiguity ends
  in UNKNOWN;
* a 409 "already exists" means it exists: looked for until seen, never re-sent;
* a live order is cancelled, and a cancel that is not confirmed is followed up until the
  order is terminal or ``cancel_confirm_ms`` passes (UNKNOWN) — nothing is hedged while an
  order of the execution may still fill;
* UNKNOWN halts trading.

Legs are addressed by role (first, second): which venue goes first is per-symbol config.
Leg 2 is limited at break-even (1 − leg-1 cost − fees − ``min_residual_edge_usd``), not
at the price seen at detection. A short leg 2 is recovered by completing on the second
venue or unwinding on the first, whichever costs less, bounded per contract by
``max_unwind_loss_usd_per_contract`` and by ``hedge_max_ms`` / ``hedge_max_steps``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.config.execution_loader import ExecutionParams
from arbkit.config.loader import LegOrder, SymbolSpec
from arbkit.execution import risk
from arbkit.execution.journal import ExecState, ExecutionRecord, Leg, LegOrderRecord
from arbkit.execution.ticks import VenueGrid
from arbkit.execution.venue import Fill, OrderResult, OrderState, TimeInForce
from arbkit.model import (
    PAYOUT_PER_CONTRACT,
    QTY_SCALE,
    Mode,
    Money,
    Opportunity,
    Outcome,
    Price,
    Qty,
    Venue,
)

QuoteFn = Callable[[str, Venue, Outcome], Sequence[tuple[Price, Qty]]]
_LEG_CODE = {Leg.LEG1: "l1", Leg.LEG2: "l2", Leg.HEDGE: "h"}


def client_order_id(execution_id: str, leg: Leg, attempt: int) -> str:
    return f"{execution_id}-{_LEG_CODE[leg]}-{attempt}"


# ---------------------------------------------------------------------- commands ---
@dataclass(frozen=True, slots=True)
class JournalIntent:
    """Durably store the execution and its first order before anything is sent."""

    order: LegOrderRecord


@dataclass(frozen=True, slots=True)
class JournalStep:
    """One durable commit of the execution's state and a new order row, before it is sent."""

    order: LegOrderRecord


@dataclass(frozen=True, slots=True)
class JournalOrder:
    order: LegOrderRecord


@dataclass(frozen=True, slots=True)
class JournalState:
    pass


@dataclass(frozen=True, slots=True)
class Place:
    order: LegOrderRecord
    tif: TimeInForce
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Cancel:
    venue: Venue
    client_order_id: str
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Query:
    venue: Venue
    client_order_id: str


@dataclass(frozen=True, slots=True)
class SetTimer:
    key: str
    at_ns: int


@dataclass(frozen=True, slots=True)
class Halt:
    reason: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The execution is terminal: the shell saves it and releases its reservation."""


Command = (
    JournalIntent
    | JournalStep
    | JournalOrder
    | JournalState
    | Place
    | Cancel
    | Query
    | SetTimer
    | Halt
    | Finished
)


# ------------------------------------------------------------------------ events ---
@dataclass(frozen=True, slots=True)
class Journaled:
    """The intent is durable; ``took_ns`` is how long the write took."""

    took_ns: int


@dataclass(frozen=True, slots=True)
class Answered:
    """The venue answered a place (any state, incl. REJECTED)."""

    result: OrderResult


@dataclass(frozen=True, slots=True)
class PlaceAmbiguous:
    """Timeout, connection error, 5xx: the order may or may not exist."""

    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class PlaceExists:
    """409: the order exists (and may have filled) but was not readable."""

    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class StatusRead:
    client_order_id: str
    result: OrderResult | None  # None: not seen in this read


@dataclass(frozen=True, slots=True)
class ReadFailed:
    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class CancelAnswered:
    result: OrderResult


@dataclass(frozen=True, slots=True)
class CancelFailed:
    client_order_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Pushed:
    """An order update from the venue's own stream (Kalshi user_orders, TWS orderStatus)."""

    result: OrderResult


@dataclass(frozen=True, slots=True)
class FillPushed:
    """A fill from the venue's own stream (Kalshi ``fill``, TWS execDetails)."""

    fill: Fill


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: str


Event = (
    Journaled
    | Answered
    | PlaceAmbiguous
    | PlaceExists
    | StatusRead
    | ReadFailed
    | CancelAnswered
    | CancelFailed
    | Pushed
    | FillPushed
    | TimerFired
)


# ------------------------------------------------------------------ order tracker ---
class Phase(enum.Enum):
    SENDING = "sending"  # a place is in flight
    LOOKING = "looking"  # ambiguous or 409: asking the venue until it is seen
    CANCELLING = "cancelling"  # live: cancel sent, waiting for a terminal status
    TERMINAL = "terminal"
    UNKNOWN = "unknown"  # the venue would not say: assume exposure


@dataclass(slots=True)
class _Track:
    rec: LegOrderRecord
    tif: TimeInForce
    timeout_ms: int
    phase: Phase = Phase.SENDING
    exists: bool = False  # the venue said so (409) or showed it
    resent: bool = False
    rejected_on_resend: bool = False
    misses: int = 0
    first_miss_ns: int = 0
    give_up_ns: int = 0
    polls: int = 0
    timer_gen: int = 0
    fills: dict[str, Fill] = field(default_factory=dict)
    venue_filled: int = 0  # the venue's own count from its answers
    costs_final: bool = True
    purpose: str = ""  # "complete" | "unwind" | "fraction" for recovery orders


@dataclass(slots=True)
class Plan:
    """An opportunity seen by role: which venue goes first, and what each leg buys."""

    first_venue: Venue
    first_outcome: Outcome
    first_limit: Price
    second_venue: Venue
    second_outcome: Outcome
    second_limit: Price
    qty: Qty


def plan_for(opp: Opportunity, leg_order: LegOrder) -> Plan:
    k, i = opp.kalshi, opp.ibkr
    if leg_order is LegOrder.FORECASTEX_FIRST:
        return Plan(i.venue, i.outcome, i.limit_price, k.venue, k.outcome, k.limit_price, opp.size)
    return Plan(k.venue, k.outcome, k.limit_price, i.venue, i.outcome, i.limit_price, opp.size)


class Stage(enum.Enum):
    INTENT = "intent"
    FIRST = "first"
    SECOND = "second"
    RECOVERY = "recovery"
    END = "end"


def execution_bound_ms(p: ExecutionParams) -> int:
    """Worst-case wall time of one execution: every inner wait summed (outer timeouts,
    e.g. the monitor's wait at stop, must be at least this)."""
    order = max(p.leg1_timeout_ms, p.leg2_timeout_ms) + p.order_lookup_max_ms
    return 2 * (order + p.cancel_confirm_ms) + p.hedge_max_ms + order + p.cancel_confirm_ms


class ExecutionMachine:
    """One execution: ``start()`` then ``on_event()`` until ``done``."""

    def __init__(
        self,
        ex: ExecutionRecord,
        opp: Opportunity,
        spec: SymbolSpec,
        params: ExecutionParams,
        fees: FeeModel,
        quote: QuoteFn,
        *,
        leg_order: LegOrder | None = None,
        recheck_after_ns: int | None = None,
    ) -> None:
        self.ex = ex
        self.opp = opp
        self.spec = spec
        self.p = params
        self.fees = fees
        self.quote = quote
        self.plan = plan_for(opp, leg_order or spec.leg_order)
        self.grid = {
            Venue.KALSHI: VenueGrid.kalshi(spec.kalshi_price_level_structure),
            Venue.IBKR: VenueGrid.forecastex(),
        }
        self.stage = Stage.INTENT
        self.tracks: dict[str, _Track] = {}
        self.first: _Track | None = None
        self.second: _Track | None = None
        self.recovery: list[_Track] = []
        self.recovery_deadline_ns = 0
        self.recovery_attempt = 0
        self.halted = ""
        self.done = False
        self.fraction_only = True  # recovery was only a fractional Kalshi remainder
        self._dry: dict[str, bool] = {}  # recovery purpose → its last IOC filled nothing
        self._recheck_after_ns = (
            recheck_after_ns
            if recheck_after_ns is not None
            else params.max_journal_delay_ms * 1_000_000
        )

    # ----------------------------------------------------------------- helpers ---
    @property
    def mode(self) -> Mode:
        return self.ex.mode

    def _new_order(
        self,
        leg: Leg,
        attempt: int,
        venue: Venue,
        outcome: Outcome,
        limit: int,
        qty: int,
        tif: TimeInForce,
        timeout_ms: int,
        now: int,
        purpose: str = "",
    ) -> _Track:
        rec = LegOrderRecord(
            execution_id=self.ex.execution_id,
            leg=leg,
            attempt=attempt,
            mode=self.ex.mode,
            venue=venue,
            symbol=self.ex.symbol,
            outcome=outcome,
            limit_price=Price(limit),
            requested_qty=Qty(qty),
            client_order_id=client_order_id(self.ex.execution_id, leg, attempt),
            decided_ns=now,
            reason=purpose,
        )
        self.ex.orders.append(rec)
        t = _Track(rec, tif, timeout_ms, purpose=purpose)
        self.tracks[rec.client_order_id] = t
        return t

    def _tif_for(self, venue: Venue, role: str) -> TimeInForce:
        if venue is Venue.IBKR:
            return TimeInForce.IOC
        if role == "first":
            return TimeInForce(self.p.leg1_time_in_force)
        if role == "second":
            return TimeInForce(self.p.kalshi_second_leg_time_in_force)
        return TimeInForce.IOC

    def _depth(self, venue: Venue, outcome: Outcome, limit: int) -> int:
        avail = 0
        for price, size in self.quote(self.ex.symbol, venue, outcome):
            if price > limit:
                break
            avail += size
        return avail

    def _fee(self, venue: Venue, price: int, qty: int) -> int:
        if qty <= 0:
            return 0
        if venue is Venue.KALSHI:
            return self.fees.kalshi_fee(
                [(Price(price), Qty(qty))], self.spec.kalshi_series, ticker=self.spec.kalshi_ticker
            )
        return self.fees.forecastex_fee(Qty(qty))

    def _max_price_within(self, venue: Venue, budget_per_contract: int, qty: int) -> int:
        """Largest price on ``venue``'s grid whose cost + fee for ``qty`` stays within
        ``budget_per_contract`` (Money per contract) × contracts; 0 when none."""
        grid = self.grid[venue]
        p = grid.floor(min(budget_per_contract // 100, grid.max_price))
        while p >= grid.min_price:
            if p * qty + self._fee(venue, p, qty) <= budget_per_contract * qty // QTY_SCALE:
                return p
            p = grid.step_down(p)
        return 0

    def _own_positions(self) -> dict[tuple[str, Venue, Outcome], Qty]:
        own: dict[tuple[str, Venue, Outcome], Qty] = {}
        for t in self.tracks.values():
            if t.rec.filled_qty:
                key = (t.rec.symbol, t.rec.venue, t.rec.outcome)
                own[key] = Qty(own.get(key, 0) + t.rec.filled_qty)
        return own

    def residual(self) -> int:
        """Contracts whose payout depends on the outcome (orientation-aware)."""
        return risk.residual_exposure(self.spec, self._own_positions())

    def _cost(self, t: _Track) -> int:
        """Cost incl. fees of an order's fills; conservative (limit + fee) where the exact
        fills are not in yet."""
        r = t.rec
        if not r.filled_qty:
            return 0
        if t.costs_final:
            return r.filled_cost + r.fees
        return r.limit_price * r.filled_qty + self._fee(r.venue, r.limit_price, r.filled_qty)

    def _first_cost_per_contract(self) -> int:
        assert self.first is not None
        q = self.first.rec.filled_qty
        return -((-self._cost(self.first) * QTY_SCALE) // q) if q else 0

    # --------------------------------------------------------------- lifecycle ---
    def start(self, now: int) -> list[Command]:
        pl = self.plan
        t = self._new_order(
            Leg.LEG1,
            0,
            pl.first_venue,
            pl.first_outcome,
            pl.first_limit,
            pl.qty,
            self._tif_for(pl.first_venue, "first"),
            self.p.leg1_timeout_ms,
            now,
        )
        self.first = t
        self.ex.state = ExecState.LEG1_SENT
        t.rec.submitted_ns = now
        return [JournalIntent(t.rec)]

    def on_event(self, ev: Event, now: int) -> list[Command]:
        if self.done:
            return []
        out: list[Command] = []
        if isinstance(ev, Journaled):
            self._on_journaled(ev, now, out)
            return out
        if isinstance(ev, TimerFired):
            coid, _, gen = ev.key.rpartition(":")
            t = self.tracks.get(coid)
            if t is not None and str(t.timer_gen) == gen:
                self._poll_due(t, now, out)
            return out
        coid = _coid_of(ev)
        t = self.tracks.get(coid)
        if t is None:
            return out
        if isinstance(ev, Answered | StatusRead | CancelAnswered | Pushed):
            res = ev.result
            if res is None:  # StatusRead miss
                self._on_miss(t, now, out)
            else:
                self._on_result(t, res, now, out, pushed=isinstance(ev, Pushed))
        elif isinstance(ev, FillPushed):
            self._on_fill(t, ev.fill, now, out)
        elif isinstance(ev, PlaceAmbiguous):
            if t.phase is Phase.SENDING:
                t.rec.reason = _join(t.rec.reason, ev.reason)
                self._look(t, now, out, exists=False)
        elif isinstance(ev, PlaceExists):
            if t.phase in (Phase.SENDING, Phase.LOOKING):
                t.rec.reason = _join(t.rec.reason, ev.reason)
                self._look(t, now, out, exists=True)
        elif isinstance(ev, ReadFailed | CancelFailed) and t.phase in (
            Phase.LOOKING,
            Phase.CANCELLING,
        ):
            t.rec.reason = _join(t.rec.reason, ev.reason)
            self._schedule_poll(t, now, out)
        return out

    def _on_journaled(self, ev: Journaled, now: int, out: list[Command]) -> None:
        if self.stage is not Stage.INTENT:
            return
        assert self.first is not None
        self.stage = Stage.FIRST
        if ev.took_ns > self._recheck_after_ns:
            # A slow journal is not a fresh quote: look again before sending.
            pl = self.plan
            gone = self._depth(pl.first_venue, pl.first_outcome, pl.first_limit) < pl.qty or (
                self._depth(pl.second_venue, pl.second_outcome, pl.second_limit) < pl.qty
            )
            if gone:
                r = self.first.rec
                r.state = OrderState.REJECTED
                ms = ev.took_ns // 1_000_000
                r.reason = f"not sent: quote gone after a {ms} ms journal write"
                self.first.phase = Phase.TERMINAL
                self.ex.error = r.reason
                out.append(JournalOrder(r))
                self._finish(ExecState.DONE, now, out)
                return
        out.append(Place(self.first.rec, self.first.tif, self.first.timeout_ms))

    # ------------------------------------------------------------ order protocol ---
    def _look(self, t: _Track, now: int, out: list[Command], *, exists: bool) -> None:
        if exists:
            t.exists = True
        if t.phase is not Phase.LOOKING:
            t.phase = Phase.LOOKING
            t.misses = 0
            t.first_miss_ns = 0
            t.give_up_ns = now + self.p.order_lookup_max_ms * 1_000_000
        t.timer_gen += 1
        t.polls += 1
        out.append(Query(t.rec.venue, t.rec.client_order_id))

    def _schedule_poll(self, t: _Track, now: int, out: list[Command]) -> None:
        if now >= t.give_up_ns or t.polls > self._max_polls(t):
            self._unknown(t, now, out)
            return
        t.timer_gen += 1
        out.append(
            SetTimer(f"{t.rec.client_order_id}:{t.timer_gen}", now + self.p.status_poll_ms * 10**6)
        )

    def _max_polls(self, t: _Track) -> int:
        window = (
            self.p.cancel_confirm_ms if t.phase is Phase.CANCELLING else self.p.order_lookup_max_ms
        )
        return window // max(1, self.p.status_poll_ms) + self.p.status_max_misses + 2

    def _poll_due(self, t: _Track, now: int, out: list[Command]) -> None:
        if t.phase not in (Phase.LOOKING, Phase.CANCELLING):
            return
        if now >= t.give_up_ns and t.phase is Phase.CANCELLING:
            self._unknown(t, now, out)
            return
        t.polls += 1
        out.append(Query(t.rec.venue, t.rec.client_order_id))

    def _on_miss(self, t: _Track, now: int, out: list[Command]) -> None:
        if t.phase is Phase.CANCELLING:
            # We cancelled an order the venue had shown us; a miss now proves nothing.
            self._schedule_poll(t, now, out)
            return
        if t.phase is not Phase.LOOKING:
            return
        t.misses += 1
        if t.misses == 1:
            t.first_miss_ns = now
        enough = (
            t.misses >= self.p.status_max_misses
            and now - t.first_miss_ns >= self.p.status_lag_tolerance_ms * 1_000_000
        )
        if t.exists or not enough:
            self._schedule_poll(t, now, out)
            return
        if not t.resent:
            # Not seen over the lag window: re-send the SAME id (created at most once; if
            # the first request did land, the venue answers 409 and we keep looking).
            t.resent = True
            t.phase = Phase.SENDING
            out.append(Place(t.rec, t.tif, t.timeout_ms))
            return
        if t.rejected_on_resend:
            # Refused under its id and unseen over two lag windows: it does not exist.
            t.rec.state = OrderState.REJECTED
            t.phase = Phase.TERMINAL
            self._order_terminal(t, now, out)
            return
        self._unknown(t, now, out)

    def _on_fill(self, t: _Track, fill: Fill, now: int, out: list[Command]) -> None:
        key = fill.trade_id or f"{fill.venue_order_id}:{fill.ts_ns}:{fill.price}:{fill.qty}"
        if key in t.fills:
            return  # the stream repeated itself
        t.fills[key] = fill
        self._recount(t)
        t.exists = True

    def _recount(self, t: _Track) -> None:
        r = t.rec
        fq = sum(f.qty for f in t.fills.values())
        if fq and fq >= max(t.venue_filled, r.filled_qty):
            r.filled_qty = Qty(fq)
            r.filled_cost = Money(sum(f.price * f.qty for f in t.fills.values()))
            r.fees = Money(sum(f.fee for f in t.fills.values()))
            t.costs_final = True
        elif t.venue_filled > r.filled_qty:
            r.filled_qty = Qty(t.venue_filled)

    def _on_result(
        self, t: _Track, res: OrderResult, now: int, out: list[Command], *, pushed: bool
    ) -> None:
        if t.phase in (Phase.TERMINAL, Phase.UNKNOWN):
            return
        if pushed and not res.state.terminal and t.phase is Phase.SENDING:
            # The stream runs ahead of the place answer: wait for it (an IOC ends by itself).
            t.exists = True
            return
        if res.state is OrderState.REJECTED and t.resent and t.phase is Phase.SENDING:
            # A refusal of the re-send does not prove the first request never landed.
            t.rejected_on_resend = True
            t.rec.reason = _join(t.rec.reason, f"re-send refused: {res.reason}")
            self._look(t, now, out, exists=False)
            return
        r = t.rec
        t.exists = t.exists or res.state is not OrderState.REJECTED
        if res.venue_order_id:
            r.venue_order_id = res.venue_order_id
        if res.sent_ns and not r.submitted_ns:
            r.submitted_ns = res.sent_ns
        if res.filled_qty >= r.filled_qty:
            t.venue_filled = max(t.venue_filled, res.filled_qty)
            if not (t.fills and sum(f.qty for f in t.fills.values()) >= res.filled_qty):
                r.filled_qty = res.filled_qty
                r.filled_cost = res.filled_cost
                r.fees = res.fees
                t.costs_final = res.costs_final
        if res.reason and res.reason not in r.reason:
            r.reason = _join(r.reason, res.reason)
        r.acked_ns = r.acked_ns or res.ack_ts_ns or now
        if r.filled_qty and not r.filled_ns:
            r.filled_ns = r.acked_ns
        if res.state.terminal:
            r.state = res.state
            t.phase = Phase.TERMINAL
            self._order_terminal(t, now, out)
            return
        # Live (OPEN/PENDING) or the venue's own "unknown": never treat as unfilled.
        r.state = res.state if res.state is not OrderState.UNKNOWN else r.state
        if t.phase is Phase.CANCELLING:
            self._schedule_poll(t, now, out)
            return
        if res.state is OrderState.UNKNOWN:
            self._look(t, now, out, exists=True)
            return
        t.phase = Phase.CANCELLING
        t.give_up_ns = now + self.p.cancel_confirm_ms * 1_000_000
        t.polls = 0
        t.timer_gen += 1
        out.append(Cancel(r.venue, r.client_order_id, min(t.timeout_ms, self.p.cancel_confirm_ms)))

    def _unknown(self, t: _Track, now: int, out: list[Command]) -> None:
        t.phase = Phase.UNKNOWN
        t.rec.state = OrderState.UNKNOWN
        t.rec.reason = _join(t.rec.reason, "venue never confirmed this order's fate")
        out.append(JournalOrder(t.rec))
        what = {Leg.LEG1: "leg 1", Leg.LEG2: "leg 2", Leg.HEDGE: "recovery order"}[t.rec.leg]
        self.ex.error = _join(self.ex.error, f"{what} outcome unknown")
        self._finish(
            ExecState.UNHEDGED,
            now,
            out,
            halt=f"{self.ex.execution_id}: {what} {t.rec.client_order_id} state unknown at "
            f"{t.rec.venue.value}",
        )

    # --------------------------------------------------------------- the legs ---
    def _estimate_fees(self, t: _Track) -> None:
        """The fee model on this order's fills, kept beside the fees the venue charged:
        exact per price level when the fills are known, else at the average price."""
        r = t.rec
        if not r.filled_qty:
            r.fees_estimated = Money(0)
            return
        levels: dict[int, int] = {}
        if t.fills and sum(f.qty for f in t.fills.values()) == r.filled_qty:
            for f in t.fills.values():
                levels[f.price] = levels.get(f.price, 0) + f.qty
        else:
            levels[-((-r.filled_cost) // r.filled_qty)] = r.filled_qty
        fills = [(Price(p), Qty(q)) for p, q in sorted(levels.items())]
        if r.venue is Venue.KALSHI:
            r.fees_estimated = self.fees.kalshi_fee(
                fills, self.spec.kalshi_series, ticker=self.spec.kalshi_ticker
            )
        else:
            r.fees_estimated = self.fees.forecastex_fee(r.filled_qty)

    def _order_terminal(self, t: _Track, now: int, out: list[Command]) -> None:
        self._estimate_fees(t)
        out.append(JournalOrder(t.rec))
        if t is self.first:
            self._after_first(now, out)
        elif t is self.second:
            self._after_second(now, out)
        elif t in self.recovery:
            self._dry[t.purpose] = not t.rec.filled_qty
            self._recover(now, out)

    def _after_first(self, now: int, out: list[Command]) -> None:
        assert self.first is not None
        r = self.first.rec
        self.ex.stages_ns["leg1_ack"] = r.acked_ns
        if r.filled_qty:
            self.ex.stages_ns["leg1_fill"] = r.filled_ns
        if not r.filled_qty:
            self.ex.error = r.reason if r.state is OrderState.REJECTED else self.ex.error
            state = ExecState.FAILED if r.state is OrderState.REJECTED else ExecState.DONE
            self._finish(state, now, out)
            return
        pl = self.plan
        f1 = r.filled_qty
        if f1 < self.p.min_partial_fill_contracts * QTY_SCALE:
            self.ex.error = _join(
                self.ex.error,
                f"leg 1 filled {f1 / QTY_SCALE:g} < min_partial_fill_contracts "
                f"{self.p.min_partial_fill_contracts}; recovering",
            )
            self._start_recovery(now, out)
            return
        q2 = f1 - f1 % QTY_SCALE if pl.second_venue is Venue.IBKR else f1
        limit2 = 0
        if q2:
            # Break-even: what leg 1 cost, both fees and the residual edge we insist on.
            budget = PAYOUT_PER_CONTRACT - self._first_cost_per_contract()
            budget -= self.p.min_residual_edge_usd
            limit2 = self._max_price_within(pl.second_venue, budget, q2)
        moved = (
            self.p.recheck_leg2_quote
            and limit2
            and self._depth(pl.second_venue, pl.second_outcome, limit2) < q2
        )
        if not q2 or not limit2 or moved:
            if q2:
                self.ex.error = _join(
                    self.ex.error, "leg-2 quote moved past break-even; recovering leg 1"
                )
            self._start_recovery(now, out)
            return
        t = self._new_order(
            Leg.LEG2,
            0,
            pl.second_venue,
            pl.second_outcome,
            limit2,
            q2,
            self._tif_for(pl.second_venue, "second"),
            max(1, min(self.p.leg2_timeout_ms, self.p.max_unhedged_ms)),
            now,
        )
        self.second = t
        self.stage = Stage.SECOND
        self.ex.state = ExecState.LEG2_SENT
        self.ex.stages_ns["leg2_submit"] = now
        t.rec.submitted_ns = now
        out.append(JournalStep(t.rec))
        out.append(Place(t.rec, t.tif, t.timeout_ms))

    def _after_second(self, now: int, out: list[Command]) -> None:
        assert self.second is not None
        r = self.second.rec
        self.ex.stages_ns["leg2_ack"] = r.acked_ns
        if r.filled_qty:
            self.ex.stages_ns["leg2_fill"] = r.filled_ns
        if self.residual() == 0:
            self._finish(ExecState.DONE, now, out)
            return
        self._start_recovery(now, out)

    # --------------------------------------------------------------- recovery ---
    def _start_recovery(self, now: int, out: list[Command]) -> None:
        self.stage = Stage.RECOVERY
        self.ex.state = ExecState.HEDGING
        self.ex.stages_ns["hedge_start"] = now
        # Two bounds: the recovery window, and the time naked since leg 1 first filled.
        naked_since = self.ex.stages_ns.get("leg1_fill") or now
        self.recovery_deadline_ns = min(
            now + self.p.hedge_max_ms * 1_000_000,
            naked_since + self.p.max_unhedged_ms * 1_000_000,
        )
        out.append(JournalState())
        self._recover(now, out)

    def _short(self) -> tuple[int, int]:
        """(whole contracts the second venue can still take, fractional remainder)."""
        res = self.residual()
        if self.plan.second_venue is Venue.IBKR:
            return res - res % QTY_SCALE, res % QTY_SCALE
        return res, 0

    def _recover(self, now: int, out: list[Command]) -> None:
        live = [t for t in self.recovery if t.phase not in (Phase.TERMINAL, Phase.UNKNOWN)]
        if live:
            return  # never two recovery orders at once: one may still fill
        res = self.residual()
        if res == 0:
            self._finish(self._flat_state(), now, out)
            return
        # One recovery order is always tried, even when leg 2 used up the naked-time bound.
        late = self.recovery_attempt > 0 and now >= self.recovery_deadline_ns
        if late or self.recovery_attempt > self.p.hedge_max_steps:
            self.ex.error = _join(self.ex.error, f"{res / QTY_SCALE:g} contracts left unhedged")
            self._finish(
                ExecState.UNHEDGED,
                now,
                out,
                halt=f"{self.ex.execution_id}: unhedged exposure past the bound "
                f"(hedge_max_ms {self.p.hedge_max_ms}, max_unhedged_ms {self.p.max_unhedged_ms})",
            )
            return
        whole, frac = self._short()
        choice = self._choose(whole, frac)
        if choice is None:
            self.ex.error = _join(
                self.ex.error, f"no recovery within max_unwind_loss_usd_per_contract ({res})"
            )
            self._finish(
                ExecState.UNHEDGED,
                now,
                out,
                halt=f"{self.ex.execution_id}: {res / QTY_SCALE:g} contracts unhedged, "
                "no price within the loss cap",
            )
            return
        purpose, venue, outcome, limit, qty = choice
        if purpose != "fraction":
            self.fraction_only = False
        remaining_ms = max(1, (self.recovery_deadline_ns - now) // 1_000_000)
        timeout = min(
            self.p.leg1_timeout_ms if venue is Venue.KALSHI else self.p.leg2_timeout_ms,
            remaining_ms,
        )
        t = self._new_order(
            Leg.HEDGE,
            self.recovery_attempt,
            venue,
            outcome,
            limit,
            qty,
            TimeInForce.IOC,
            timeout,
            now,
            purpose=purpose,
        )
        self.recovery_attempt += 1
        self.recovery.append(t)
        t.rec.submitted_ns = now
        out.append(JournalOrder(t.rec))
        out.append(Place(t.rec, t.tif, t.timeout_ms))

    def _choose(self, whole: int, frac: int) -> tuple[str, Venue, Outcome, int, int] | None:
        """Complete on the second venue or unwind on the first: the cheaper per contract,
        priced on the venue's grid and capped by the loss limit."""
        pl = self.plan
        c1 = self._first_cost_per_contract()
        cap_budget = PAYOUT_PER_CONTRACT - c1 + self.p.max_unwind_loss_usd_per_contract
        step_units = self.recovery_attempt * self.p.hedge_price_step_usd // 100
        options: list[tuple[int, int, str, Venue, Outcome, int, int]] = []
        legs: list[tuple[str, Venue, Outcome, int]] = []
        if whole:
            legs.append(("complete", pl.second_venue, pl.second_outcome, whole))
        unwind_qty = whole + frac
        if pl.first_venue is Venue.IBKR:
            unwind_qty -= unwind_qty % QTY_SCALE
        if unwind_qty:
            legs.append(
                (
                    "unwind" if whole else "fraction",
                    pl.first_venue,
                    pl.first_outcome.opposite,
                    unwind_qty,
                )
            )
        elif frac and not whole:
            return None
        for purpose, venue, outcome, qty in legs:
            cap_limit = self._max_price_within(venue, cap_budget, qty)
            if not cap_limit:
                continue
            asks = self.quote(self.ex.symbol, venue, outcome)
            if asks:
                best = asks[0][0]
                limit = self.grid[venue].floor(min(best + step_units, cap_limit))
                limit = max(limit, self.grid[venue].min_price)
                per = (best * qty + self._fee(venue, best, qty)) * QTY_SCALE // qty
                in_cap = best <= cap_limit
            else:
                limit, per, in_cap = cap_limit, 10**12, False
            # An IOC that just found nothing says that quote is stale: try the other first.
            rank = (0 if in_cap else 1) + (2 if self._dry.get(purpose) else 0)
            options.append((rank, per, purpose, venue, outcome, limit, qty))
        if not options:
            return None
        options.sort(key=lambda o: (o[0], o[1], o[2] != "complete"))
        _, _, purpose, venue, outcome, limit, qty = options[0]
        if purpose == "complete" and frac:
            qty = whole  # the fractional part follows as an unwind on the next step
        return purpose, venue, outcome, limit, qty

    def _flat_state(self) -> ExecState:
        """DONE when every recovery fill completed the pair; HEDGED when any unwound."""
        unwound = any(t.rec.filled_qty and t.purpose != "complete" for t in self.recovery)
        return ExecState.HEDGED if unwound else ExecState.DONE

    # ------------------------------------------------------------------ finish ---
    def _finish(self, state: ExecState, now: int, out: list[Command], halt: str = "") -> None:
        if self.done:
            return
        if self.stage is Stage.RECOVERY:
            self.ex.stages_ns["hedge_end"] = now
        self.stage = Stage.END
        self.ex.state = state
        self._account()
        if halt:
            self.halted = halt
            out.append(Halt(halt))
        out.append(JournalState())
        out.append(Finished())
        self.done = True

    def _account(self) -> None:
        """Realised PnL: payout locked by the flat pairs minus everything paid; the hedge
        cost is what recovery cost relative to the arbitrage on the matched part."""
        own = self._own_positions()
        s = self.spec

        def q(v: Venue, o: Outcome) -> int:
            return own.get((s.symbol, v, o), 0)

        if_yes = q(Venue.KALSHI, Outcome.YES) + q(Venue.IBKR, s.ibkr_equivalent(Outcome.YES))
        if_no = q(Venue.KALSHI, Outcome.NO) + q(Venue.IBKR, s.ibkr_equivalent(Outcome.NO))
        pairs = min(if_yes, if_no)
        total = sum(self._cost(t) for t in self.tracks.values())
        residual = abs(if_yes - if_no)
        open_cost = (
            -((-self._cost(self.first) * residual) // self.first.rec.filled_qty)
            if residual and self.first is not None and self.first.rec.filled_qty
            else 0
        )
        realized = pairs * PAYOUT_PER_CONTRACT // QTY_SCALE - (total - open_cost)
        # Kalshi nets YES against NO at once: an unwind's pair pays back now, not later.
        arb = 0
        if self.first is not None and self.second is not None:
            matched = min(self.first.rec.filled_qty, self.second.rec.filled_qty)
            if matched:
                c1 = -((-self._cost(self.first) * matched) // self.first.rec.filled_qty)
                c2 = -((-self._cost(self.second) * matched) // self.second.rec.filled_qty)
                arb = matched * PAYOUT_PER_CONTRACT // QTY_SCALE - c1 - c2
        self.ex.realized_pnl = Money(realized)
        self.ex.hedge_cost = Money(arb - realized) if self.recovery else Money(0)

    # ------------------------------------------------------------ for the shell ---
    @property
    def failed(self) -> bool:
        """Counts toward ``max_consecutive_failures``: recovery beyond a fraction, or worse."""
        if self.ex.state is ExecState.UNHEDGED:
            return True
        return bool(self.recovery) and not self.fraction_only

    @property
    def capital(self) -> int:
        """Cost of the flat pairs (capital locked until settlement)."""
        return sum(self._cost(t) for t in self.tracks.values() if t.rec.leg is not Leg.HEDGE)

    def costs_pending(self) -> list[LegOrderRecord]:
        """Orders that filled but whose exact cost/fees have not arrived yet."""
        return [t.rec for t in self.tracks.values() if t.rec.filled_qty and not t.costs_final]

    def absorb_late(self, ev: Event) -> None:
        """After the finish: exact costs from late fills or a read (never a new decision).
        A read may not lower a count the venue already gave us."""
        t = self.tracks.get(_coid_of(ev))
        if t is None:
            return
        if isinstance(ev, FillPushed):
            key = ev.fill.trade_id or f"{ev.fill.venue_order_id}:{ev.fill.ts_ns}"
            t.fills.setdefault(key, ev.fill)
            fq = sum(f.qty for f in t.fills.values())
            if fq == t.rec.filled_qty:
                self._recount(t)
        elif isinstance(ev, StatusRead | Pushed | Answered) and ev.result is not None:
            res = ev.result
            if res.costs_final and res.filled_qty == t.rec.filled_qty:
                t.rec.filled_cost = res.filled_cost
                t.rec.fees = res.fees
                t.costs_final = True

    def reaccount(self) -> None:
        for t in self.tracks.values():
            self._estimate_fees(t)
        self._account()

    def live_orders(self) -> list[LegOrderRecord]:
        return [
            t.rec
            for t in self.tracks.values()
            if t.phase in (Phase.SENDING, Phase.LOOKING, Phase.CANCELLING)
        ]


def _coid_of(ev: Event) -> str:
    if isinstance(ev, Answered | CancelAnswered | Pushed):
        return ev.result.client_order_id
    if isinstance(ev, StatusRead | PlaceAmbiguous | PlaceExists | ReadFailed | CancelFailed):
        return ev.client_order_id
    if isinstance(ev, FillPushed):
        return ev.fill.client_order_id
    return ""


def _join(a: str, b: str) -> str:
    if not b or b in a:
        return a
    return f"{a}; {b}" if a else b
