"""The execution state machine under random venue behaviour (hypothesis, stateful).

A model of both venues (books, orders by client order id, read lag, lost and late answers,
409s, rejects, resting orders, ignored cancels that fill later, duplicated and reordered
pushes, read failures) answers the machine's commands; hypothesis chooses every fault and
every delivery order. On every path the money rule must hold, judged on the VENUES' truth:

* the machine finishes (no stall, bounded steps);
* an execution that ends DONE or HEDGED leaves zero orientation-aware exposure at the
  venues and no working order there — even after every late event has landed;
* an execution that leaves anything else ends UNHEDGED with a Halt command;
* no recovery order is placed while another order of the execution is working;
* every order the machine booked terminal carries the venue's own filled quantity.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.config.execution_loader import ExecutionParams, FeeParams
from arbkit.config.loader import LegOrder
from arbkit.execution import machine as mm
from arbkit.execution.journal import ExecState, ExecutionRecord, Leg
from arbkit.execution.risk import residual_exposure
from arbkit.execution.venue import Fill, OrderResult, OrderState, TimeInForce
from arbkit.model import Leg as OppLeg
from arbkit.model import Mode, Money, Opportunity, Outcome, Price, Qty, Venue

from .conftest import NOW_NS, make_spec

FEES = FeeModel(FeeParams())
PARAMS = ExecutionParams(
    leg1_timeout_ms=200,
    leg2_timeout_ms=200,
    hedge_max_ms=3_000,
    status_poll_ms=50,
    status_lag_tolerance_ms=150,
    status_max_misses=3,
    order_lookup_max_ms=2_000,
    cancel_confirm_ms=500,
)


@dataclass
class VOrder:
    coid: str
    venue: Venue
    outcome: Outcome
    limit: int
    qty: int
    tif: TimeInForce
    filled: int = 0
    cost: int = 0
    fee: int = 0
    live: bool = False
    cancelled: bool = False
    hidden_reads: int = 0  # read lag: this many reads do not see it yet
    ignore_cancel: bool = False
    fills: list[Fill] = field(default_factory=list)

    def state(self) -> OrderState:
        if self.live:
            return OrderState.OPEN
        if self.filled == self.qty:
            return OrderState.FILLED
        return OrderState.CANCELLED

    def result(self, *, costs_final: bool = True) -> OrderResult:
        return OrderResult(
            self.coid,
            f"v-{self.coid}",
            self.state(),
            Qty(self.qty),
            Qty(self.filled),
            Money(self.cost),
            Money(self.fee),
            costs_final=costs_final,
        )


class World:
    """Both venues as a model, faults chosen by hypothesis."""

    def __init__(self, data: st.DataObject, yes_is: Outcome) -> None:
        self.data = data
        self.now = NOW_NS
        self.orders: dict[str, VOrder] = {}
        self.inbox: list[mm.Event] = []
        self.timers: list[tuple[int, str]] = []
        self.halted: list[str] = []
        self.violations: list[str] = []
        self.spec = make_spec("SYM", yes_is)
        k_frac = data.draw(st.sampled_from([0, 50]), label="kalshi fractional size")
        self.asks: dict[tuple[Venue, Outcome], list[list[int]]] = {
            (Venue.KALSHI, Outcome.YES): [[4000, 1000 + k_frac]],
            (Venue.KALSHI, Outcome.NO): [[5900, data.draw(st.sampled_from([0, 300, 2000]))]],
            (Venue.IBKR, self.spec.ibkr_equivalent(Outcome.NO)): [
                [5000, data.draw(st.sampled_from([0, 300, 1000, 2000]), label="fx depth")]
            ],
            (Venue.IBKR, self.spec.ibkr_equivalent(Outcome.YES)): [
                [6000, data.draw(st.sampled_from([0, 1000, 2000]))]
            ],
        }
        self.machine: mm.ExecutionMachine | None = None

    # the venues' books as the machine's quote source
    def quote(self, symbol: str, venue: Venue, outcome: Outcome) -> list[tuple[Price, Qty]]:
        return [(Price(p), Qty(q)) for p, q in self.asks.get((venue, outcome), []) if q > 0]

    def _match(self, o: VOrder, want: int) -> None:
        whole = o.venue is Venue.IBKR
        fills: list[tuple[int, int]] = []
        for lvl in self.asks.get((o.venue, o.outcome), []):
            if lvl[0] > o.limit or want <= 0:
                break
            take = min(lvl[1], want)
            if whole:
                take -= take % 100
            if take > 0:
                fills.append((lvl[0], take))
                want -= take
        got = sum(q for _, q in fills)
        if o.tif is TimeInForce.FOK and got < o.qty - o.filled:
            return
        for price, q in fills:
            for lvl in self.asks[(o.venue, o.outcome)]:
                if lvl[0] == price:
                    lvl[1] -= q
            fee = (
                FEES.kalshi_fee([(Price(price), Qty(q))])
                if o.venue is Venue.KALSHI
                else FEES.forecastex_fee(Qty(q))
            )
            o.filled += q
            o.cost += price * q
            o.fee += fee
            o.fills.append(
                Fill(
                    o.coid,
                    f"v-{o.coid}",
                    "SYM",
                    o.outcome,
                    Price(price),
                    Qty(q),
                    Money(fee),
                    self.now,
                    trade_id=f"t{len(o.fills)}-{o.coid}",
                )
            )

    def _push_maybe(self, o: VOrder) -> None:
        if self.data.draw(st.booleans(), label="push fills"):
            for f in o.fills:
                self.inbox.append(mm.FillPushed(f))
                if self.data.draw(st.booleans(), label="duplicate push"):
                    self.inbox.append(mm.FillPushed(f))
        if self.data.draw(st.booleans(), label="push order update"):
            self.inbox.append(mm.Pushed(o.result()))

    def _live_of_execution(self, except_coid: str) -> list[str]:
        return [c for c, o in self.orders.items() if o.live and c != except_coid]

    # ------------------------------------------------------------ commands
    def perform(self, cmd: mm.Command) -> None:
        d = self.data
        if isinstance(cmd, mm.JournalIntent):
            slow = d.draw(st.sampled_from([0, 0, 0, 10**9]), label="journal ns")
            self.inbox.append(mm.Journaled(slow))
        elif isinstance(cmd, mm.Halt):
            self.halted.append(cmd.reason)
        elif isinstance(cmd, mm.SetTimer):
            self.timers.append((cmd.at_ns, cmd.key))
        elif isinstance(cmd, mm.Place):
            self._place(cmd)
        elif isinstance(cmd, mm.Cancel):
            o = self.orders.get(cmd.client_order_id)
            mode = d.draw(st.sampled_from(["ok", "ok", "fail", "silent"]), label="cancel")
            if o is None or mode == "fail":
                self.inbox.append(mm.CancelFailed(cmd.client_order_id, "cancel failed"))
                return
            if o.live and not o.ignore_cancel:
                o.live = False
                o.cancelled = True
            if mode == "silent":
                self.inbox.append(mm.CancelFailed(cmd.client_order_id, "timeout"))
            else:
                self.inbox.append(mm.CancelAnswered(o.result()))
        elif isinstance(cmd, mm.Query):
            o = self.orders.get(cmd.client_order_id)
            if d.draw(st.integers(0, 9), label="read fails") == 0:
                self.inbox.append(mm.ReadFailed(cmd.client_order_id, "503"))
            elif o is None or o.hidden_reads > 0:
                if o is not None:
                    o.hidden_reads -= 1
                self.inbox.append(mm.StatusRead(cmd.client_order_id, None))
            else:
                self.inbox.append(mm.StatusRead(cmd.client_order_id, o.result()))

    def _place(self, cmd: mm.Place) -> None:
        d = self.data
        rec = cmd.order
        if rec.leg is Leg.HEDGE:
            live = self._live_of_execution(rec.client_order_id)
            if live:
                self.violations.append(f"recovery {rec.client_order_id} sent over live {live}")
        existing = self.orders.get(rec.client_order_id)
        fate = d.draw(
            st.sampled_from(["ok", "ok", "ok", "lost", "not_landed", "late", "reject"]),
            label=f"fate of {rec.client_order_id}",
        )
        if existing is not None:
            # the venue dedupes on client order id: 409
            self.inbox.append(mm.PlaceExists(rec.client_order_id, "409 already exists"))
            return
        if fate == "not_landed":
            self.inbox.append(mm.PlaceAmbiguous(rec.client_order_id, "timeout"))
            return
        if fate == "reject":
            self.inbox.append(
                mm.Answered(
                    OrderResult(
                        rec.client_order_id,
                        "",
                        OrderState.REJECTED,
                        rec.requested_qty,
                        Qty(0),
                        Money(0),
                        Money(0),
                        reason="400 invalid",
                    )
                )
            )
            return
        o = VOrder(
            rec.client_order_id,
            rec.venue,
            rec.outcome,
            rec.limit_price,
            rec.requested_qty,
            cmd.tif,
            hidden_reads=d.draw(st.integers(0, 4), label="read lag"),
        )
        self.orders[o.coid] = o
        rests = rec.venue is Venue.IBKR and d.draw(st.integers(0, 3), label="rests") == 0
        if rests:
            o.live = True
            o.ignore_cancel = d.draw(st.booleans(), label="ignores cancel")
            if d.draw(st.booleans(), label="partial now"):
                self._match(o, (o.qty - o.filled) // 2)
        else:
            self._match(o, o.qty)
        self._push_maybe(o)
        costs_final = d.draw(st.booleans(), label="costs final")
        if fate == "ok":
            self.inbox.append(mm.Answered(o.result(costs_final=costs_final)))
        elif fate == "lost":
            self.inbox.append(mm.PlaceAmbiguous(o.coid, "response lost"))
        else:  # the answer arrives after the client gave up
            self.inbox.append(mm.PlaceAmbiguous(o.coid, "timeout"))
            self.inbox.append(mm.Answered(o.result()))

    # ------------------------------------------------------------ run
    def run(self, m: mm.ExecutionMachine) -> None:
        self.machine = m
        pending = list(m.start(self.now))
        for _ in range(600):
            while pending:
                cmd = pending.pop(0)
                self.perform(cmd)
            if m.done:
                return
            # live orders at the venue may trade by themselves
            for o in self.orders.values():
                if o.live and self.data.draw(st.integers(0, 5), label="live fills") == 0:
                    self._match(o, o.qty - o.filled)
                    if o.filled == o.qty:
                        o.live = False
                    self._push_maybe(o)
            self.now += self.data.draw(st.integers(1, 120), label="ms passes") * 1_000_000
            if self.inbox:
                i = self.data.draw(st.integers(0, len(self.inbox) - 1), label="deliver")
                ev = self.inbox.pop(i)
            elif self.timers:
                self.timers.sort()
                at, key = self.timers.pop(0)
                self.now = max(self.now, at)
                ev = mm.TimerFired(key)
            else:
                raise AssertionError(f"machine stalled in {m.stage} with nothing pending")
            due = [t for t in self.timers if t[0] <= self.now]
            for t in due:
                self.timers.remove(t)
                self.inbox.append(mm.TimerFired(t[1]))
            pending = list(m.on_event(ev, self.now))
        raise AssertionError("machine did not finish within 600 steps")

    def settle_late(self) -> None:
        """After the machine finished: everything still working at the venues trades."""
        for o in self.orders.values():
            if o.live:
                self._match(o, o.qty - o.filled)
                o.live = False

    def venue_positions(self) -> dict[tuple[str, Venue, Outcome], Qty]:
        pos: dict[tuple[str, Venue, Outcome], Qty] = {}
        for o in self.orders.values():
            if o.filled:
                k = ("SYM", o.venue, o.outcome)
                pos[k] = Qty(pos.get(k, 0) + o.filled)
        return pos


def _opportunity(spec_yes_is: Outcome) -> Opportunity:
    spec = make_spec("SYM", spec_yes_is)
    k_fee = FEES.kalshi_fee([(Price(4000), Qty(1000))])
    f_fee = FEES.forecastex_fee(Qty(1000))
    k = OppLeg(Venue.KALSHI, Outcome.YES, Price(4000), Qty(1000), Money(4000 * 1000), k_fee)
    i = OppLeg(
        Venue.IBKR,
        spec.ibkr_equivalent(Outcome.NO),
        Price(5000),
        Qty(1000),
        Money(5000 * 1000),
        f_fee,
    )
    gross = 9000 * 1000
    fees = k_fee + f_fee
    profit = 10 * 1_000_000 - gross - fees
    return Opportunity(
        "SYM",
        "kalshi_yes+ibkr_x",
        k,
        i,
        Qty(1000),
        Money(gross),
        Money(fees),
        Money(profit),
        Money(profit // 10),
        0,
        NOW_NS,
        NOW_NS,
        NOW_NS,
    )


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=st.data(),
    yes_is=st.sampled_from([Outcome.YES, Outcome.NO]),
    leg_order=st.sampled_from(list(LegOrder)),
    tif=st.sampled_from(["immediate_or_cancel", "fill_or_kill"]),
)
def test_money_rule_holds_on_every_path(
    data: st.DataObject, yes_is: Outcome, leg_order: LegOrder, tif: str
) -> None:
    world = World(data, yes_is)
    spec = replace(world.spec, leg_order=leg_order)
    opp = _opportunity(yes_is)
    ex = ExecutionRecord(
        "ak-test",
        "SYM",
        opp.combo,
        Mode.LIVE,
        ExecState.INTENT,
        NOW_NS,
        NOW_NS,
        opp.size,
        opp.expected_profit,
    )
    params = replace(
        PARAMS,
        leg1_time_in_force=tif,
        # legging knobs: a partial leg 1 below the minimum goes straight to recovery; the
        # naked-time bound may be tighter than the recovery window
        min_partial_fill_contracts=data.draw(st.sampled_from([1, 4, 20]), label="min partial"),
        max_unhedged_ms=data.draw(st.sampled_from([5_000, 300]), label="max_unhedged_ms"),
    )
    m = mm.ExecutionMachine(ex, opp, spec, params, FEES, world.quote)
    world.run(m)
    assert m.done and ex.state.terminal
    event(f"{ex.state.value}, {len(ex.orders)} orders")
    assert not world.violations, world.violations
    # what the machine booked for terminal orders is what the venue holds
    for rec in ex.orders:
        o = world.orders.get(rec.client_order_id)
        if rec.state.terminal and rec.state is not OrderState.REJECTED:
            assert o is not None and rec.filled_qty == o.filled, (rec, o)
        if rec.state is OrderState.REJECTED:
            assert o is None or o.filled == 0, (rec, o)
    working = [o.coid for o in world.orders.values() if o.live]
    world.settle_late()
    exposure = residual_exposure(spec, world.venue_positions())
    if ex.state is ExecState.UNHEDGED:
        assert world.halted, "UNHEDGED without a halt"
    else:
        assert exposure == 0, (ex.state, exposure, world.venue_positions(), ex.orders)
        assert not world.halted
        assert not working, working


def _first_place_after_partial_leg1(params: ExecutionParams, filled_contracts: int) -> mm.Place:
    """Drive one execution to a leg-1 partial fill; return the next order the machine sends."""
    spec = make_spec("SYM", Outcome.YES)
    opp = _opportunity(Outcome.YES)
    ex = ExecutionRecord(
        "ak-p", "SYM", opp.combo, Mode.LIVE, ExecState.INTENT, NOW_NS, NOW_NS, opp.size, 0
    )
    asks = {
        (Venue.KALSHI, Outcome.NO): [(Price(5900), Qty(2000))],
        (Venue.IBKR, spec.ibkr_equivalent(Outcome.NO)): [(Price(5000), Qty(2000))],
    }
    m = mm.ExecutionMachine(ex, opp, spec, params, FEES, lambda s, v, o: asks.get((v, o), []))
    m.start(NOW_NS)
    [leg1] = [c for c in m.on_event(mm.Journaled(0), NOW_NS) if isinstance(c, mm.Place)]
    q = Qty(filled_contracts * 100)
    res = OrderResult(
        leg1.order.client_order_id,
        "v1",
        OrderState.CANCELLED,
        leg1.order.requested_qty,
        q,
        Money(4000 * q),
        FEES.kalshi_fee([(Price(4000), q)]),
    )
    [nxt] = [c for c in m.on_event(mm.Answered(res), NOW_NS + 1_000) if isinstance(c, mm.Place)]
    return nxt


def test_leg1_partial_below_min_partial_fill_goes_to_recovery_not_leg2() -> None:
    """min_partial_fill_contracts: 2 contracts of a planned 10 are not sent as a
    break-even leg 2; recovery takes the cheaper way back to flat."""
    assert _first_place_after_partial_leg1(PARAMS, 2).order.leg is Leg.LEG2
    small = replace(PARAMS, min_partial_fill_contracts=3)
    assert _first_place_after_partial_leg1(small, 2).order.leg is Leg.HEDGE
    assert _first_place_after_partial_leg1(small, 3).order.leg is Leg.LEG2


def test_leg2_timeout_is_capped_by_max_unhedged_ms() -> None:
    tight = replace(PARAMS, leg2_timeout_ms=1_500, max_unhedged_ms=300)
    assert _first_place_after_partial_leg1(tight, 10).timeout_ms == 300
    assert _first_place_after_partial_leg1(PARAMS, 10).timeout_ms == PARAMS.leg2_timeout_ms
