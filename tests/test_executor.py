"""Executor sequencing, hedging and risk gates against paper venues (the same interface
the real venue clients implement; the real-venue runs are in tests/integration)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from arbkit.arbitrage.arbitrage import ArbitrageDetector
from arbkit.arbitrage.fee_model import FeeModel
from arbkit.book.order_book import CentralOrderBook
from arbkit.config.execution_loader import ExecutionConfig, ExecutionParams, RiskLimits
from arbkit.config.loader import SymbolMap
from arbkit.execution.executor import Executor, client_order_id, execution_id_for
from arbkit.execution.journal import ExecState, Leg, MemoryJournal
from arbkit.execution.paper import PaperVenue
from arbkit.execution.risk import residual_exposure
from arbkit.execution.venue import OrderRequest, TimeInForce
from arbkit.model import Mode, NormalizedTick, Opportunity, Outcome, Price, Qty, Venue

from .conftest import NOW_NS, make_spec
from .test_order_book import lvl, snapshot


class Rig:
    def __init__(self, cfg: ExecutionConfig | None = None, yes_is: Outcome = Outcome.YES) -> None:
        self.now = NOW_NS
        self.sm = SymbolMap({"SYM": make_spec("SYM", yes_is)})
        self.cob = CentralOrderBook(self.sm)
        self.cfg = cfg or ExecutionConfig(mode=Mode.PAPER)
        fm = FeeModel(self.cfg.fees)
        self.det = ArbitrageDetector(fm, self.cfg.detector)

        def view(venue: Venue):  # type: ignore[no-untyped-def]
            return lambda s, o: list(self.cob[s].ladder(venue, o).levels())

        self.kalshi = PaperVenue(
            Venue.KALSHI, view(Venue.KALSHI), lambda s, f: fm.kalshi_fee(f), clock=self.clock
        )
        self.ibkr = PaperVenue(
            Venue.IBKR,
            view(Venue.IBKR),
            lambda s, f: fm.forecastex_fee(Qty(sum(q for _, q in f))),
            clock=self.clock,
            whole_contracts=True,
        )
        self.journal = MemoryJournal()
        self.ex = Executor(
            self.cfg,
            self.sm,
            self.kalshi,
            self.ibkr,
            self.journal,
            quote=lambda s, v, o: list(self.cob[s].ladder(v, o).levels()),
            clock=self.clock,
        )

    def clock(self) -> int:
        self.now += 1_000
        return self.now

    def books(
        self, k: dict[Outcome, list[tuple[int, int]]], f: dict[Outcome, list[tuple[int, int]]]
    ) -> None:
        self.cob.apply_batch(snapshot(Venue.KALSHI, k))
        self.cob.apply_batch(snapshot(Venue.IBKR, f))

    def during_leg1(self, *ticks: NormalizedTick) -> None:
        """Apply ``ticks`` while leg 1 is in flight (the paper Kalshi venue's latency)."""

        async def race(_: float) -> None:
            for t in ticks:
                self.cob.apply(t)

        self.kalshi.latency_ms = 1
        self.kalshi._sleep = race

    def opportunity(self) -> Opportunity:
        [opp] = self.det.evaluate(self.cob["SYM"], NOW_NS)
        return opp


K = {Outcome.YES: [(4000, 1000)], Outcome.NO: [(5900, 5000)]}
F = {Outcome.NO: [(5000, 1000)], Outcome.YES: [(6500, 1000)]}


async def test_happy_path_both_legs() -> None:
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    ex = await rig.ex.execute(opp)
    assert ex is not None and ex.state is ExecState.DONE
    legs = {o.leg: o for o in rig.journal.orders.values()}
    assert legs[Leg.LEG1].filled_qty == 1000 and legs[Leg.LEG2].filled_qty == 1000
    assert Leg.HEDGE not in legs
    assert ex.realized_pnl == opp.expected_profit
    assert residual_exposure(rig.sm.symbols["SYM"], rig.ex.state.positions) == 0
    assert {"leg1_submit", "leg1_ack", "leg2_submit", "leg2_fill"} <= set(ex.stages_ns)
    # deterministic ids: same opportunity → same ids
    eid = execution_id_for(opp)
    assert legs[Leg.LEG1].client_order_id == client_order_id(eid, Leg.LEG1, 0)


async def test_leg1_partial_sizes_leg2() -> None:
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    rig.cob.apply(lvl(Venue.KALSHI, Outcome.YES, 4000, 400))  # depth shrank before we got there
    ex = await rig.ex.execute(opp)
    assert ex is not None and ex.state is ExecState.DONE
    legs = {o.leg: o for o in rig.journal.orders.values()}
    assert legs[Leg.LEG1].filled_qty == 400
    assert legs[Leg.LEG2].requested_qty == 400 and legs[Leg.LEG2].filled_qty == 400


async def test_leg1_unfilled_sends_nothing_else() -> None:
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    rig.during_leg1(lvl(Venue.KALSHI, Outcome.YES, 4000, 0))  # gone before leg 1 lands
    ex = await rig.ex.execute(opp)
    assert ex is not None and ex.state is ExecState.DONE
    assert [o.leg for o in rig.journal.orders.values()] == [Leg.LEG1]
    assert rig.ibkr.orders_received == {}


async def test_leg2_reject_is_completed_on_the_second_venue() -> None:
    """A rejected leg 2 with the ForecastEx quote still there: completing the pair there
    (up to break-even) beats unwinding leg 1 on Kalshi."""
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    rig.ibkr.reject_next = "Order rejected - reason: test"
    ex = await rig.ex.execute(opp)
    assert ex is not None and ex.state is ExecState.DONE, ex
    [h] = [o for o in rig.journal.orders.values() if o.leg is Leg.HEDGE]
    assert h.venue is Venue.IBKR and h.outcome is Outcome.NO and h.filled_qty == 1000
    assert residual_exposure(rig.sm.symbols["SYM"], rig.ex.state.positions) == 0
    assert ex.realized_pnl == opp.expected_profit  # the same price, just one order later


async def test_leg2_limit_is_break_even_not_the_detected_price() -> None:
    """ForecastEx moved 3¢ against us while leg 1 was in flight: still inside break-even,
    so leg 2 completes the pair at a smaller profit instead of an unwind."""
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    rig.during_leg1(lvl(Venue.IBKR, Outcome.NO, 5000, 0), lvl(Venue.IBKR, Outcome.NO, 5300, 1000))
    ex = await rig.ex.execute(opp)
    assert ex is not None and ex.state is ExecState.DONE, ex
    legs = {o.leg: o for o in rig.journal.orders.values()}
    assert Leg.HEDGE not in legs
    assert legs[Leg.LEG2].filled_qty == 1000 and legs[Leg.LEG2].filled_cost == 5300 * 1000
    assert legs[Leg.LEG2].limit_price > opp.ibkr.limit_price
    assert 0 < ex.realized_pnl < opp.expected_profit


@pytest.mark.parametrize("fault", ["partial", "moved"])
async def test_leg2_failure_is_unwound_when_cheaper(fault: str) -> None:
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    if fault == "partial":
        # ForecastEx only had 3; the quote still shows them after we took them (stale),
        # so the completion IOC finds nothing and the unwind on Kalshi follows.
        rig.during_leg1(lvl(Venue.IBKR, Outcome.NO, 5000, 300))
        rig.ex.config = replace(rig.cfg, execution=ExecutionParams(recheck_leg2_quote=False))
    else:  # past break-even: 0.62 + fee on ForecastEx vs 0.59 + fee on Kalshi
        rig.during_leg1(
            lvl(Venue.IBKR, Outcome.NO, 5000, 0), lvl(Venue.IBKR, Outcome.NO, 6200, 1000)
        )
    ex = await rig.ex.execute(opp)
    assert ex is not None and ex.state is ExecState.HEDGED, ex
    hedges = [o for o in rig.journal.orders.values() if o.leg is Leg.HEDGE and o.filled_qty]
    assert hedges and all(h.venue is Venue.KALSHI and h.outcome is Outcome.NO for h in hedges)
    leg2_fill = sum(o.filled_qty for o in rig.journal.orders.values() if o.leg is Leg.LEG2)
    assert sum(h.filled_qty for h in hedges) == 1000 - leg2_fill
    assert residual_exposure(rig.sm.symbols["SYM"], rig.ex.state.positions) == 0
    assert ex.hedge_cost > 0  # bought YES at 0.40 (+fee) and NO at 0.59 (+fee): a real loss
    assert rig.ex.state.realized_pnl_today == min(0, ex.realized_pnl)  # losses only
    if fault == "moved":
        assert rig.ibkr.orders_received == {}


async def test_depth_gone_before_sending_skips_without_orders() -> None:
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    rig.cob.apply(lvl(Venue.IBKR, Outcome.NO, 5000, 300))  # leg 2 could not cover leg 1
    d = rig.ex.check(opp)
    assert not d.ok and "ibkr depth" in d.reason
    rig.cob.apply(lvl(Venue.IBKR, Outcome.NO, 5000, 1000))
    rig.cob.apply(lvl(Venue.KALSHI, Outcome.YES, 4000, 0))
    assert "kalshi depth" in rig.ex.check(opp).reason
    assert await rig.ex.execute(opp) is None
    assert rig.kalshi.orders_received == {} and rig.ibkr.orders_received == {}


async def test_own_paper_fills_are_not_traded_twice() -> None:
    """A standing opportunity re-decided after our paper fill must not trade the same
    liquidity again (the simulated venue cannot know about paper fills)."""
    rig = Rig()
    rig.ex.quote = lambda s, v, o: (rig.kalshi if v is Venue.KALSHI else rig.ibkr).effective_levels(
        s, o
    )
    rig.books(K, F)
    first = await rig.ex.execute(rig.opportunity())
    assert first is not None and first.state is ExecState.DONE
    rig.ex.state.last_execution_ns.clear()  # past the cooldown; the book still shows it
    again = replace(rig.opportunity(), detected_ts_ns=NOW_NS + 5)
    d = rig.ex.check(again)
    assert not d.ok and "depth" in d.reason


async def test_unhedgeable_trips_kill_switch_and_blocks() -> None:
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    rig.ibkr.reject_next = "rejected"
    # nothing left to complete or unwind with
    rig.during_leg1(lvl(Venue.KALSHI, Outcome.NO, 5900, 0), lvl(Venue.IBKR, Outcome.NO, 5000, 0))
    ex = await rig.ex.execute(opp)
    assert ex is not None and ex.state is ExecState.UNHEDGED
    assert rig.ex.state.kill_switch
    rig.books(K, F)
    assert await rig.ex.execute(replace(rig.opportunity(), detected_ts_ns=NOW_NS + 1)) is None
    assert "kill switch" in rig.ex.check(rig.opportunity()).reason
    rig.ex.reset_kill_switch()
    rig.ex.state.last_execution_ns.clear()
    # the symbol that failed waits cooldown_ms_after_failure before it trades again
    assert "cooldown_ms_after_failure" in rig.ex.check(rig.opportunity()).reason
    rig.ex.state.last_failure_ns.clear()
    assert rig.ex.check(rig.opportunity()).ok


async def test_monitor_mode_never_trades() -> None:
    rig = Rig(ExecutionConfig(mode=Mode.MONITOR))
    rig.books(K, F)
    assert await rig.ex.execute(rig.opportunity()) is None
    assert rig.kalshi.orders_received == {} and rig.ibkr.orders_received == {}


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        (RiskLimits(max_position_contracts_per_symbol=5), "max_position_contracts_per_symbol"),
        (RiskLimits(max_position_contracts_per_venue=5), "max_position_contracts_per_venue"),
        (RiskLimits(max_total_exposure_usd=1_000_000), "max_total_exposure_usd"),
        (RiskLimits(min_time_to_close_s=60 * 86400), "min_time_to_close_s"),
        (RiskLimits(max_open_executions=0), "max_open_executions"),
        (RiskLimits(max_daily_realized_loss_usd=0), "max_daily_realized_loss_usd"),
        (RiskLimits(max_consecutive_failures=0), "consecutive failures"),
    ],
)
async def test_each_risk_limit_blocks(limits: RiskLimits, words: str) -> None:
    rig = Rig(ExecutionConfig(mode=Mode.PAPER, risk=limits))
    rig.books(K, F)
    d = rig.ex.check(rig.opportunity())
    assert not d.ok and words in d.reason
    assert await rig.ex.execute(rig.opportunity()) is None
    assert rig.kalshi.orders_received == {}
    if "loss" in words or "consecutive" in words:
        assert rig.ex.state.kill_switch  # breaches trip the kill switch


async def test_detector_level_limits_and_cooldown() -> None:
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    small = replace(rig.cfg.detector, max_contracts_per_trade=5)
    rig.ex.config = replace(rig.cfg, detector=small)
    assert "max_contracts_per_trade" in rig.ex.check(opp).reason
    rig.ex.config = replace(rig.cfg, detector=replace(rig.cfg.detector, min_edge_usd=100_000))
    assert "min_edge_usd" in rig.ex.check(opp).reason
    rig.ex.config = replace(rig.cfg, detector=replace(rig.cfg.detector, max_quote_age_ms=0))
    rig.now += 5_000_000
    assert "max_quote_age_ms" in rig.ex.check(opp).reason
    rig.ex.config = rig.cfg
    assert (await rig.ex.execute(opp)) is not None
    rig.books(K, F)
    assert "cooldown" in rig.ex.check(rig.opportunity()).reason


async def test_paper_fills_never_exceed_depth_or_reuse_liquidity() -> None:
    rig = Rig()
    rig.books({Outcome.YES: [(4000, 250), (4100, 100)]}, F)
    req = OrderRequest("SYM", Outcome.YES, Price(4100), Qty(1000), TimeInForce.IOC, "a")
    r1 = await rig.kalshi.place_limit(req, 1)
    assert r1.filled_qty == 350 and r1.filled_cost == 4000 * 250 + 4100 * 100
    r2 = await rig.kalshi.place_limit(replace(req, client_order_id="b"), 1)
    assert r2.filled_qty == 0  # the visible liquidity was already taken
    again = await rig.kalshi.place_limit(req, 1)  # same client id: no second order
    assert again == r1 and rig.kalshi.orders_received["a"] == 2
    fok = await rig.kalshi.place_limit(replace(req, client_order_id="c", tif=TimeInForce.FOK), 1)
    assert fok.filled_qty == 0
    rig.cob.apply(lvl(Venue.KALSHI, Outcome.YES, 4000, 300))  # fresh size at 0.40
    r3 = await rig.kalshi.place_limit(replace(req, client_order_id="d"), 1)
    assert r3.filled_qty == 300


async def test_reconcile_finds_orders_and_exposure() -> None:
    rig = Rig()
    rig.books(K, F)
    opp = rig.opportunity()
    # Simulate a crash after leg 1 filled: journal intent + a leg-1 fill at the venue.
    from arbkit.execution.journal import ExecutionRecord, LegOrderRecord

    eid = execution_id_for(opp)
    rec = LegOrderRecord(
        eid,
        Leg.LEG1,
        0,
        Mode.PAPER,
        Venue.KALSHI,
        "SYM",
        Outcome.YES,
        Price(4000),
        Qty(1000),
        client_order_id(eid, Leg.LEG1, 0),
    )
    await rig.journal.record_intent(
        ExecutionRecord(
            eid,
            "SYM",
            opp.combo,
            Mode.PAPER,
            ExecState.LEG1_SENT,
            0,
            0,
            opp.size,
            opp.expected_profit,
        ),
        rec,
    )
    await rig.kalshi.place_limit(
        OrderRequest(
            "SYM", Outcome.YES, Price(4000), Qty(1000), TimeInForce.IOC, rec.client_order_id
        ),
        1,
    )
    report = await rig.ex.reconcile()
    assert report.executions_checked == 1 and report.orders_found == 1
    assert report.residual_contracts == {"SYM": 10}
    assert rig.ex.state.kill_switch
    assert not await rig.journal.open_executions()
    assert rig.journal.orders[rec.client_order_id].filled_qty == 1000
