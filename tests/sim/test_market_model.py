"""Market model: determinism, venue invariants, and the opportunities it makes for the
real book + detector (bids converted to asks here; the real normalizers live elsewhere)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from arbkit.arbitrage.arbitrage import ArbitrageDetector
from arbkit.arbitrage.fee_model import FeeModel
from arbkit.book.order_book import CentralOrderBook
from arbkit.config.execution_loader import DetectorParams, FeeParams
from arbkit.config.loader import load_symbol_map
from arbkit.model import BookSide, NormalizedTick, Outcome, Price, Qty, Venue
from arbkit.sim.market_model import (
    BookUpdate,
    DriveStats,
    MarketModel,
    SimUniverse,
    drive,
    generate_universe,
)

from ..conftest import NOW_NS

MS = 1_000_000
PAIR_TOTAL = {Venue.KALSHI: 10_000, Venue.IBKR: 10_100}
MIN_BID = {Venue.KALSHI: 100, Venue.IBKR: 200}


def universe(n: int = 10, seed: int = 7) -> SimUniverse:
    return generate_universe(n, seed, now_ns=NOW_NS)


# ------------------------------------------------------------- bid → ask helper ------


def ask_ticks(update: BookUpdate, symbol: str, now_ns: int) -> list[NormalizedTick]:
    """The ask-side snapshot one bid ladder implies, as NormalizedTicks.

    Kalshi: the ask ladder of X is $1 − each bid of not-X (full depth).
    ForecastEx (what the TWS shows): ask of X = $1.01 − best bid of not-X, that bid's size.
    """
    ask_outcome = update.outcome.opposite
    if update.venue is Venue.KALSHI:
        levels = [(10_000 - p, s) for p, s in update.levels]
    else:
        levels = [(10_100 - p, s) for p, s in update.levels[:1]]
    ticks = [
        NormalizedTick.reset(
            symbol, update.venue, valid=True, recv_ts_ns=now_ns, outcome=ask_outcome
        )
    ]
    ticks += [
        NormalizedTick(
            symbol, update.venue, ask_outcome, BookSide.ASK, Price(p), Qty(s), now_ns, now_ns
        )
        for p, s in levels
    ]
    return ticks


def market_symbol(u: SimUniverse, update: BookUpdate) -> str:
    if update.venue is Venue.KALSHI:
        return u.by_kalshi_ticker[update.market].symbol
    return u.by_fx_pair_id[update.market].symbol


# --------------------------------------------------------------- venue checks --------


class VenueBooks:
    """Bid ladders as the venues would hold them; checks every update as it lands."""

    def __init__(self) -> None:
        self.bids: dict[tuple[Venue, str, Outcome], tuple[tuple[int, int], ...]] = {}

    def apply(self, u: BookUpdate) -> None:
        prices = [p for p, _ in u.levels]
        assert prices == sorted(prices, reverse=True) and len(set(prices)) == len(prices), u
        for p, s in u.levels:
            assert p % 100 == 0, f"off the cent grid: {u}"
            assert MIN_BID[u.venue] <= p <= 9_900, f"out of range: {u}"
            assert s > 0, f"non-positive size: {u}"
            if u.venue is Venue.IBKR:
                assert s % 100 == 0, f"ForecastEx sizes are whole contracts: {u}"
        self.bids[(u.venue, u.market, u.outcome)] = u.levels
        other = self.bids.get((u.venue, u.market, u.outcome.opposite))
        if u.levels and other:
            assert u.levels[0][0] + other[0][0] < PAIR_TOTAL[u.venue], f"crossed: {u} / {other}"

    def best(self, venue: Venue, market: str, outcome: Outcome) -> int:
        return self.bids[(venue, market, outcome)][0][0]

    def mid(self, venue: Venue, market: str, outcome: Outcome) -> float:
        """(bid + ask) / 2 in dollars, ask = pair total − best opposite bid."""
        bid = self.best(venue, market, outcome)
        ask = PAIR_TOTAL[venue] - self.best(venue, market, outcome.opposite)
        return (bid + ask) / 20_000


# ----------------------------------------------------------------- universe ----------


def test_universe_shape_and_ids() -> None:
    u = universe(12)
    assert len(u) == 12 == len(u.symbol_map)
    inverted = [m for m in u.markets if m.kalshi_yes_is is Outcome.NO]
    assert inverted and len(inverted) < len(u)
    con_ids = [c for m in u.markets for c in (m.yes_con_id, m.no_con_id)]
    unders = {m.under_con_id for m in u.markets}
    assert len(set(con_ids)) == len(con_ids) and not unders & set(con_ids)
    assert len(u.by_kalshi_ticker) == len(u.by_fx_pair_id) == len(u.by_con_id) // 2 == 12
    # TWS contract definitions: product + last trade date + strike are unique per pair.
    keys = {(m.fx_symbol, m.last_trade_date, m.strike) for m in u.markets}
    assert len(keys) == 12
    for m in u.markets:
        spec = u.symbol_map.symbols[m.symbol]
        assert spec.kalshi_ticker == m.kalshi_ticker and spec.kalshi_series == m.kalshi_series
        assert spec.forecastex.yes_con_id == m.yes_con_id
        assert spec.forecastex.no_con_id == m.no_con_id
        assert spec.kalshi_yes_is is m.kalshi_yes_is
        assert NOW_NS < m.close_ts_ns < m.resolution_ts_ns == spec.resolution_ts_ns
        assert len(m.last_trade_date) == 8 and m.last_trade_date.isdigit()
        assert m.local_symbol(Outcome.YES).endswith(" YES")
        assert u.by_con_id[m.no_con_id] == (m, Outcome.NO)
    assert generate_universe(12, 7, now_ns=NOW_NS).markets == u.markets


def test_symbol_map_toml_round_trip(tmp_path: pytest.TempPathFactory) -> None:
    u = universe(9)
    path = u.write_symbol_map(tmp_path / "symbols.toml")  # type: ignore[operator]
    loaded = load_symbol_map(path)
    assert loaded.symbols == u.symbol_map.symbols
    assert list(loaded.symbols) == list(u.symbol_map.symbols)


# ---------------------------------------------------------------- determinism --------


def run_updates(seed: int, times: Sequence[int], n: int = 6) -> list[BookUpdate]:
    model = MarketModel(universe(n), seed=seed, updates_per_s=500.0, dislocation_rate_per_min=5)
    out = model.initial_books()
    for t in times:
        out += model.step(t)
    return out


def test_same_seed_same_updates_different_seed_differs() -> None:
    # Irregular step times, as a real loop would produce.
    times = [NOW_NS + i * 10 * MS + (i * 7919 % 13) * MS for i in range(2_000)]
    a, b = run_updates(3, times), run_updates(3, times)
    assert len(a) > 5_000 and a == b
    assert run_updates(4, times) != a


def test_initial_books_cover_every_market_and_outcome() -> None:
    u = universe(5)
    updates = MarketModel(u, seed=1).initial_books()
    keys = {(x.venue, x.market, x.outcome) for x in updates}
    assert len(keys) == len(updates) == 5 * 2 * 2
    books = VenueBooks()
    for x in updates:
        assert x.levels
        books.apply(x)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_books_never_crossed_and_on_grid(seed: int) -> None:
    """Checked after every single update: a venue applies them one by one."""
    model = MarketModel(
        universe(8, seed),
        seed=seed,
        updates_per_s=2_000.0,
        dislocation_rate_per_min=20.0,
        jump_rate_per_min=10.0,
    )
    books = VenueBooks()
    for u in model.initial_books():
        books.apply(u)
    t = NOW_NS
    model.step(t)
    fractional = 0
    for _ in range(6_000):
        t += 10 * MS
        for u in model.step(t):
            books.apply(u)
            fractional += sum(1 for _, s in u.levels if s % 100)
    assert sum(model.dislocations.values()) > 50
    assert fractional > 0  # Kalshi sometimes shows fractional sizes


def test_books_stay_valid_at_the_probability_bounds() -> None:
    """Very high volatility keeps the latent at its 0.05/0.95 bounds; dislocations then
    hit the price clamps. Ladders must stay in range and uncrossed."""
    model = MarketModel(
        universe(6, 9),
        seed=9,
        updates_per_s=3_000.0,
        vol_logit_per_sqrt_s=3.0,
        dislocation_rate_per_min=30.0,
    )
    books = VenueBooks()
    for u in model.initial_books():
        books.apply(u)
    t = NOW_NS
    model.step(t)
    extremes = 0
    for _ in range(3_000):
        t += 10 * MS
        for u in model.step(t):
            books.apply(u)
            extremes += u.levels[0][0] <= 300 or u.levels[0][0] >= 9_500
    assert extremes > 100


def test_dislocation_sets_the_intended_gross_edge() -> None:
    """Without drift, a dislocation's top-of-book gross edge is exactly the intended one,
    and once it ends the venues are back to no gross edge at all."""
    u = universe(6, 4)
    model = MarketModel(
        u,
        seed=4,
        vol_logit_per_sqrt_s=0.0,
        jump_rate_per_min=0.0,
        dislocation_rate_per_min=20.0,
    )
    books = VenueBooks()
    for up in model.initial_books():
        books.apply(up)

    def gross_edge(symbol: str, kalshi_outcome: Outcome) -> int:
        m = u.by_symbol[symbol]
        fx = m.ibkr_equivalent(kalshi_outcome.opposite)
        k_ask = 10_000 - books.best(Venue.KALSHI, m.kalshi_ticker, kalshi_outcome.opposite)
        f_ask = 10_100 - books.best(Venue.IBKR, m.fx_pair_id, fx.opposite)
        return 10_000 - k_ask - f_ask

    t = NOW_NS
    model.step(t)
    checked = 0
    for _ in range(3_000):
        t += 20 * MS
        for up in model.step(t):
            books.apply(up)
        active = {d.symbol: d for d in model.active_dislocations()}
        for m in u.markets:
            d = active.get(m.symbol)
            if d is None:
                assert gross_edge(m.symbol, Outcome.YES) < 0
                assert gross_edge(m.symbol, Outcome.NO) < 0
            else:
                assert gross_edge(m.symbol, d.kalshi_outcome) == int(d.edge_usd * 10_000)
                assert gross_edge(m.symbol, d.kalshi_outcome.opposite) < 0
                checked += 1
    assert checked > 100
    assert {k for k, n in model.dislocations.items() if n} == {"top", "depth", "fee"}


# --------------------------------------------------- opportunities via detector --------


@dataclass
class Episode:
    symbol: str
    combo: str
    start_ns: int
    end_ns: int = 0
    max_contracts: int = 0
    max_profit_e6: int = 0
    walked_kalshi_depth: bool = False  # the Kalshi leg went past its best ask


@dataclass
class SimRun:
    steps: int = 0
    steps_with_opp: int = 0
    updates: int = 0
    episodes: list[Episode] = field(default_factory=list)
    fee_wiped_episodes: int = 0  # top-of-book gross edge > 0 throughout, never an opp
    gross_episodes: int = 0
    mid_diffs_inverted: list[float] = field(default_factory=list)
    mid_diffs_straight: list[float] = field(default_factory=list)
    dislocations: dict[str, int] = field(default_factory=dict)


def simulate(seconds: int = 180, n: int = 10, seed: int = 11, step_ms: int = 20) -> SimRun:
    u = universe(n, seed)
    model = MarketModel(u, seed=seed)
    cob = CentralOrderBook(u.symbol_map)
    det = ArbitrageDetector(FeeModel(FeeParams()), DetectorParams())
    books = VenueBooks()
    run = SimRun()
    t = NOW_NS
    for up in model.initial_books():
        books.apply(up)
        cob.apply_batch(ask_ticks(up, market_symbol(u, up), t))
    model.step(t)
    open_eps: dict[tuple[str, str], Episode] = {}
    gross_open: dict[tuple[str, str], bool] = {}  # key → an opp was seen during it
    alive = {Venue.KALSHI: t, Venue.IBKR: t}
    for i in range(seconds * 1000 // step_ms):
        t += step_ms * MS
        alive = {Venue.KALSHI: t, Venue.IBKR: t}
        for up in model.step(t):
            run.updates += 1
            books.apply(up)
            cob.apply_batch(ask_ticks(up, market_symbol(u, up), t))
        run.steps += 1
        any_opp = False
        for sym, book in cob.books.items():
            found = {o.combo: o for o in det.evaluate(book, t, alive)}
            any_opp |= bool(found)
            for combo in book.combos:
                key = (sym, combo.label)
                opp = found.get(combo.label)
                ep = open_eps.get(key)
                if opp is not None:
                    if ep is None:
                        ep = open_eps[key] = Episode(sym, combo.label, t)
                    ep.max_contracts = max(ep.max_contracts, opp.contracts)
                    ep.max_profit_e6 = max(ep.max_profit_e6, opp.expected_profit)
                    best_k = book.ladder(Venue.KALSHI, combo.kalshi_outcome).best
                    ep.walked_kalshi_depth |= opp.kalshi.limit_price != best_k
                elif ep is not None:
                    ep.end_ns = t
                    run.episodes.append(open_eps.pop(key))
                kl = book.ladder(Venue.KALSHI, combo.kalshi_outcome)
                fl = book.ladder(Venue.IBKR, combo.ibkr_outcome)
                gross = kl.best is not None and fl.best is not None and kl.best + fl.best < 10_000
                if gross:
                    gross_open[key] = gross_open.get(key, False) or opp is not None
                elif key in gross_open:
                    run.gross_episodes += 1
                    run.fee_wiped_episodes += not gross_open.pop(key)
        run.steps_with_opp += any_opp
        if i % 25 == 0:
            for m in u.markets:
                k_yes = books.mid(Venue.KALSHI, m.kalshi_ticker, Outcome.YES)
                fx_eq = books.mid(Venue.IBKR, m.fx_pair_id, m.kalshi_yes_is) - 0.005
                diffs = run.mid_diffs_inverted if m.inverted else run.mid_diffs_straight
                diffs.append(abs(k_yes - fx_eq))
                if m.inverted:  # FX YES is the other side of the question
                    fx_yes = books.mid(Venue.IBKR, m.fx_pair_id, Outcome.YES) - 0.005
                    diffs.append(abs((1.0 - k_yes) - fx_yes))
    run.dislocations = dict(model.dislocations)
    return run


@pytest.fixture(scope="module")
def sim_run() -> SimRun:
    return simulate()


def test_opportunities_appear_and_disappear(sim_run: SimRun) -> None:
    r = sim_run
    eps = r.episodes
    combos = {e.combo.split("+")[0] for e in eps}
    durations_ms = sorted((e.end_ns - e.start_ns) // MS for e in eps)
    print(
        f"\n{r.steps} steps, {r.updates} updates, dislocations {r.dislocations}; "
        f"{len(eps)} opportunity episodes ({sum(e.max_contracts > 1 for e in eps)} with size > 1, "
        f"max {max((e.max_contracts for e in eps), default=0)} contracts, "
        f"{sum(e.walked_kalshi_depth for e in eps)} past the Kalshi top), "
        f"durations ms min/median/max {durations_ms[:1]}/"
        f"{durations_ms[len(durations_ms) // 2] if eps else None}/{durations_ms[-1:]}; "
        f"time with any opportunity {r.steps_with_opp / r.steps:.1%}; "
        f"gross-positive episodes {r.gross_episodes}, wiped out by fees {r.fee_wiped_episodes}"
    )
    assert len(eps) >= 5
    assert combos == {"kalshi_yes", "kalshi_no"}
    assert sum(e.max_contracts > 1 for e in eps) >= 2
    assert any(e.max_contracts <= 3 for e in eps)
    assert any(e.walked_kalshi_depth for e in eps)
    assert len({e.symbol for e in eps}) >= 3
    assert all(e.end_ns > e.start_ns for e in eps)
    assert max(durations_ms) <= 15_000  # short-lived
    assert r.steps_with_opp / r.steps < 0.3  # most of the time: nothing
    assert r.fee_wiped_episodes >= 3


def test_inverted_symbol_prices_consistent(sim_run: SimRun) -> None:
    """Kalshi YES ≈ the ForecastEx outcome it equals (NO on inverted symbols)."""
    for diffs in (sim_run.mid_diffs_inverted, sim_run.mid_diffs_straight):
        assert diffs
        assert statistics.median(diffs) <= 0.02
        assert sorted(diffs)[int(len(diffs) * 0.95)] <= 0.08


# ------------------------------------------------------------------ load/cost --------


def test_step_is_cheap_at_5k_updates_per_s() -> None:
    model = MarketModel(universe(50), seed=5, updates_per_s=5_000.0)
    model.initial_books()
    t = NOW_NS
    model.step(t)
    n = 0
    seconds = 10
    c0 = time.process_time()
    for _ in range(seconds * 100):
        t += 10 * MS
        n += len(model.step(t))
    cpu = time.process_time() - c0
    print(f"\n5k/s target: {n / seconds:.0f} updates/s emitted, {cpu / seconds:.1%} of a core")
    assert 3_500 <= n / seconds <= 6_500
    assert cpu / seconds < 0.25  # generous: measured around 2%


# -------------------------------------------------------------------- drive ---------


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Outcome, tuple[tuple[int, int], ...]]] = []

    def set_bids(self, market: str, outcome: Outcome, levels: Sequence[tuple[int, int]]) -> None:
        self.calls.append((market, outcome, tuple(levels)))


class FailingSink(RecordingSink):
    def set_bids(self, market: str, outcome: Outcome, levels: Sequence[tuple[int, int]]) -> None:
        raise RuntimeError("venue rejected")


async def test_drive_dispatches_to_the_right_sink() -> None:
    u = universe(4)
    model = MarketModel(u, seed=2, updates_per_s=2_000.0)
    kalshi, tws = RecordingSink(), RecordingSink()
    stop = asyncio.Event()
    now = [NOW_NS]

    def clock() -> int:
        now[0] += 10 * MS
        return now[0]

    stats = DriveStats()
    task = asyncio.create_task(
        drive(model, kalshi, tws, stop=stop, tick_interval_ms=1, clock=clock, stats=stats)
    )
    for _ in range(200):
        await asyncio.sleep(0.005)
        if stats.steps >= 30:
            break
    stop.set()
    result = await asyncio.wait_for(task, 2.0)
    assert result is stats and stats.steps >= 30
    assert {m for m, _, _ in kalshi.calls} == set(u.by_kalshi_ticker)
    assert {m for m, _, _ in tws.calls} == set(u.by_fx_pair_id)
    # Initial books come first: every market/outcome once.
    assert len({(m, o) for m, o, _ in kalshi.calls[:8]}) == 8
    assert stats.updates[Venue.KALSHI] == len(kalshi.calls) > 8
    assert stats.updates[Venue.IBKR] == len(tws.calls) > 8
    assert stats.sink_errors == 0


async def test_drive_survives_a_failing_sink() -> None:
    model = MarketModel(universe(2), seed=2, updates_per_s=1_000.0)
    kalshi, tws = RecordingSink(), FailingSink()
    stop = asyncio.Event()
    task = asyncio.create_task(drive(model, kalshi, tws, stop=stop, tick_interval_ms=1))
    await asyncio.sleep(0.05)
    stop.set()
    stats = await asyncio.wait_for(task, 2.0)
    assert stats.sink_errors > 0 and stats.updates[Venue.IBKR] == 0
    assert stats.updates[Venue.KALSHI] == len(kalshi.calls) > 0
