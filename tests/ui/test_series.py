"""Pure snapshot → series/rows helpers and the dashboard's unit conversions."""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from arbkit.arbitrage.pipeline import SpreadSample
from arbkit.execution.journal import ExecState, ExecutionRecord
from arbkit.model import Mode, Money, Outcome, Price, Qty, Venue
from arbkit.monitor.arbitrage_monitor import MonitorSnapshot, OpportunityView, VenueStatus
from arbkit.monitor.metrics import LatencySummary
from arbkit.ui import series as S
from arbkit.ui.dashboard import cents_to_money, coefficient, money_to_cents

T0 = 1_800_000_000 * 10**9


def sample(sym: str, t: int, yes: int | None, no: int | None) -> SpreadSample:
    return SpreadSample(
        t,
        sym,
        kalshi_yes_ask=Price(4_000),
        kalshi_yes_size=Qty(1_000),
        kalshi_no_ask=Price(6_100),
        kalshi_no_size=Qty(250),
        ibkr_yes_ask=None,
        ibkr_no_ask=Price(5_800),
        ibkr_no_size=Qty(300),
        cost_kalshi_yes=yes,
        cost_kalshi_no=no,
    )


def snapshot(**kw: object) -> MonitorSnapshot:
    base: dict[str, object] = dict(
        ts_ns=T0,
        mode=Mode.PAPER,
        paused=False,
        kill_switch=False,
        kill_reason="",
        venues={"kalshi": VenueStatus("kalshi", True, 10, 1, 0, 0, 12, 2, 2)},
        books={"A": sample("A", T0, 9_800, None)},
        opportunities=[
            OpportunityView(
                T0,
                "A",
                "kalshi_yes+ibkr_no",
                5,
                Price(4_000),
                Price(5_800),
                Money(500_000),
                Money(100_000),
                1234,
                "executed",
                "",
                "ex-1",
            )
        ],
        executions=[
            ExecutionRecord(
                "ex-1",
                "A",
                "kalshi_yes+ibkr_no",
                Mode.PAPER,
                ExecState.DONE,
                T0,
                T0,
                Qty(500),
                Money(500_000),
                realized_pnl=Money(-1_250_000),
            )
        ],
        counters={
            "ticks": 1234,
            "opportunities": 1,
            "executed": 1,
            "skipped": 0,
            "executions_done": 1,
            "executions_hedged": 0,
            "executions_unhedged": 0,
        },
        realized_pnl=Money(2_500_000),
        hedge_cost=Money(0),
        positions={("A", Venue.KALSHI, Outcome.YES): Qty(500)},
        latency={
            "tick_to_decision": LatencySummary(3, 10.0, 20.0, 30.0),
            "submit_to_ack": LatencySummary(0, 0.0, 0.0, 0.0),
        },
        active_episodes=1,
    )
    base.update(kw)
    return MonitorSnapshot(**base)  # type: ignore[arg-type]


def test_cost_history_bounded_by_time_and_count() -> None:
    h = S.CostHistory(history_s=10.0, max_points=5)
    for i in range(8):
        t = T0 + i * 10**9
        h.add({"A": sample("A", t, 9_900 + i, None)}, t)
    xs, ys = h.series("A", "kalshi_yes")
    assert len(xs) == 5 and ys[-1] == 0.9907 and ys[0] == 0.9903
    assert str(xs[0]) == "2027-01-15T08:00:03.000"
    assert np.isnan(h.series("A", "kalshi_no")[1]).all()
    for i in range(3):  # 30 s later everything older than 10 s is gone
        t = T0 + (40 + i) * 10**9
        h.add({"A": sample("A", t, 9_000, 9_100)}, t)
    assert len(h) == 3 and list(h.series("A", "kalshi_no")[1]) == [0.91] * 3
    assert [len(a) for a in h.series("missing", "kalshi_yes")] == [0, 0]


def test_cost_history_decimation_keeps_newest() -> None:
    h = S.CostHistory(history_s=1e6, max_points=1_000)
    for i in range(100):
        h.add({"A": sample("A", T0 + i, i, i)}, T0 + i)
    _xs, ys = h.series("A", "kalshi_yes", max_points=10)
    assert len(ys) <= 10 and ys[-1] == 99 / 10_000 and list(ys) == sorted(ys)


def test_depth_bars_and_best_asks() -> None:
    ladders = {
        (Venue.KALSHI, Outcome.YES): [(Price(4_000), Qty(1_000)), (Price(4_100), Qty(50))],
        (Venue.IBKR, Outcome.NO): iter([(Price(5_800), Qty(300))]),
    }
    bars = S.depth_bars(ladders, max_levels=1)
    assert bars["Kalshi YES"] == ([0.4], [10.0])
    assert bars["ForecastEx NO"] == ([0.58], [3.0])
    assert bars["Kalshi NO"] == ([], []) and bars["ForecastEx YES"] == ([], [])
    cum = S.depth_bars(ladders | {(Venue.IBKR, Outcome.NO): []}, cumulative=True)
    assert cum["Kalshi YES"] == ([0.4, 0.41], [10.0, 10.5])
    rows = S.best_ask_rows(sample("A", T0, 9_800, None))
    assert rows[0] == {"side": "Kalshi YES", "best ask": "0.4", "size": "10"}
    assert rows[2]["best ask"] == "—" and rows[2]["size"] == "—"
    assert rows[4]["best ask"] == "0.98" and rows[5]["best ask"] == "—"
    assert S.best_ask_rows(None) == []


def test_rows_and_texts() -> None:
    s = snapshot()
    (o,) = S.opportunity_rows(s)
    assert o["profit"] == "$0.50" and o["decision"] == "executed" and o["contracts"] == "5"
    (e,) = S.execution_rows(s)
    assert e["pnl"] == "-$1.25" and e["qty"] == "5" and e["state"] == "done"
    assert e["started (UTC)"] == "08:00:00.000" and e["took ms"] == "0.0"
    (v,) = S.venue_rows(s)
    assert v["books valid"] == "2/2" and v["last msg ms"] == "12"
    (lat,) = S.latency_rows(s)
    assert lat["stage"] == "tick_to_decision" and lat["p50 ms"] == "0.010"  # 10 µs, in ms
    assert S.kill_state_text(s) == "kill switch off"
    assert S.kill_state_text(snapshot(kill_switch=True, kill_reason="x")) == "KILL SWITCH ON: x"
    assert "PnL $2.50" in S.status_text(s) and "PAUSED" in S.status_text(snapshot(paused=True))


def test_html_table_escapes() -> None:
    html = S.html_table([{"a": "<b>&"}], cls="c")
    assert "&lt;b&gt;&amp;" in html and 'class="c"' in html
    assert "none yet" in S.html_table([])


def test_unit_conversions_are_exact() -> None:
    assert cents_to_money(1.0) == 10_000
    assert cents_to_money(0.1) == 1_000
    assert cents_to_money(2.3000000000000003) == 23_000
    assert money_to_cents(25_000) == 2.5
    assert coefficient(0.07) == Decimal("0.07")
    assert coefficient(0.0175) == Decimal("0.0175")


def test_kill_state_text_says_reducing_and_blocked_symbols() -> None:
    snap = snapshot(trading_state="reducing", state_reason="ibkr balance 4 USD < floor")
    assert S.kill_state_text(snap) == "REDUCING (no new executions): ibkr balance 4 USD < floor"
    snap = snapshot(blocked_symbols={"FED": "mids disagree"})
    assert S.kill_state_text(snap) == "kill switch off · blocked: FED: mids disagree"


def test_cost_after_fees_ranks_symbols_closest_to_an_edge() -> None:
    """The chart's N symbols are those whose cheaper combination costs least after fees;
    fees move a symbol down the ranking even when its gross cost is lower."""
    h = S.CostHistory(history_s=1e6, max_points=100)
    books = {
        "A": sample("A", T0, 9_800, 9_900),  # gross 0.98
        "B": sample("B", T0, 9_700, None),  # gross 0.97, but 3¢ of fees
        "C": sample("C", T0, None, None),  # no two-sided quote
        "D": sample("D", T0, 9_950, 9_990),
    }
    fees = {"A": (Money(5_000), Money(5_000)), "B": (Money(30_000), Money(0))}
    h.add(books, T0, fees)
    assert h.latest_after_fees("A") == 985_000 and h.latest_after_fees("B") == 1_000_000
    assert h.latest_after_fees("C") is None
    assert h.closest_to_edge(2) == ["A", "D"]
    assert h.closest_to_edge(10) == ["A", "D", "B", "C"]
    _xs, ys = h.series("A", "kalshi_yes", after_fees=True)
    assert list(ys) == [0.985]
    assert list(h.series("A", "kalshi_yes")[1]) == [0.98]
    assert S.threshold_usd(Money(10_000)) == 0.99


def test_fees_per_contract_match_the_fee_model() -> None:
    from arbkit.arbitrage.fee_model import FeeModel
    from arbkit.config.execution_loader import FeeParams
    from arbkit.sim.market_model import generate_universe

    (spec,) = generate_universe(1, 7).symbol_map.symbols.values()
    fm = FeeModel(FeeParams(forecastex_fee_per_contract_usd=10_000))
    fy, fn = S.fees_per_contract(sample("A", T0, 9_800, 9_900), spec, fm, Money(2_000))
    # Kalshi 0.07 × 0.40 × 0.60 = $0.0168 per contract; + $0.01 ForecastEx + buffers
    assert fy == 16_800 + 10_000 + 2_000
    assert fn == 16_653 + 12_000  # 0.07 × 0.61 × 0.39 = $0.016653 (the detector's bound)


def test_pnl_history_and_drawdown_are_exact() -> None:
    p = S.PnlHistory()
    for i, pnl in enumerate((0, 2_500_000, 2_500_000, 1_000_000, 3_000_000, 2_000_000)):
        p.add(T0 + i, Money(pnl))
    pts = p.points(T0 + 100)
    assert [x[1] for x in pts] == [0, 2_500_000, 1_000_000, 3_000_000, 2_000_000, 2_000_000]
    assert [x[2] for x in pts] == [0, 0, 1_500_000, 0, 1_000_000, 1_000_000]
    assert p.peak == 3_000_000 and p.max_drawdown == 1_500_000
    assert S.PnlHistory().points(T0) == [(T0, 0, 0)]


def test_account_positions_and_ladder() -> None:
    s = snapshot(
        balances={"kalshi": Money(1_234_500_000), "ibkr": None},
        committed={"kalshi": Money(2_000_000), "ibkr": Money(0)},
        mark_to_market={"kalshi": Money(2_100_000)},
    )
    k, f = S.account_rows(s)
    assert k == {
        "venue": "Kalshi",
        "balance": "$1,234.50",
        "capital locked": "$2.00",
        "mark to market": "$2.10",
        "contracts held": "5",
    }
    assert f["balance"] == "—" and f["contracts held"] == "0"
    assert S.position_rows(s) == [
        {"symbol": "A", "venue": "Kalshi", "outcome": "YES", "contracts": "5"}
    ]
    rows = S.ladder_rows(
        [(Price(4_000), Qty(1_000)), (Price(4_100), Qty(50))],
        [(Price(6_100), Qty(250))],  # a NO ask at 0.61 is a YES bid at 0.39
    )
    assert [r["YES price"] for r in rows] == ["0.41", "0.4", "spread 0.01", "0.39"]
    assert rows[1]["ask size"] == "10" and rows[3]["bid size"] == "2.5"
    assert S.latency_hist_labels((0.1, 1.0)) == ["<0.1", "0.1–1", "≥1"]
    assert S.usd_exact(25_000) == "$0.025" and S.usd_exact(-1_500_000) == "-$1.5"
