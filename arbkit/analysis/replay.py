"""Replay a capture through the live path (normalizers → book → detector → executor with
paper fills), deterministically and as fast as the machine allows; sweep a parameter grid.

The normalizers' output does not depend on detector, fee or risk parameters, so a capture
is parsed and normalized once (``prepare``) and every sweep combination replays the
prepared tick batches. Worker processes are forked after preparation and share it
copy-on-write: nothing is re-parsed per combination.

Time in a replay is the capture's receive time; paper venues fill instantly from the book
as it stands at that event (no wall-clock sleeps), so the same input gives the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import gc
import itertools
import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from arbkit.arbitrage.arbitrage import ArbitrageDetector
from arbkit.arbitrage.fee_model import FeeModel
from arbkit.arbitrage.pipeline import DetectionPipeline
from arbkit.book.order_book import CentralOrderBook, Combo, SymbolBook
from arbkit.config.execution_loader import DetectorParams, ExecutionConfig, apply_overrides
from arbkit.config.loader import SymbolMap
from arbkit.execution.executor import Decision, Executor
from arbkit.execution.journal import ExecState, Journal, MemoryJournal
from arbkit.execution.paper import PaperVenue
from arbkit.model import Mode, Money, NormalizedTick, Opportunity, Outcome, Price, Qty, Venue
from arbkit.normalizers.ibkr_normalizer import IbkrNormalizer
from arbkit.normalizers.kalshi_normalizer import KalshiNormalizer, LifecycleEvent
from arbkit.normalizers.market_status import KALSHI_LIFECYCLE, MarketClock, MarketStatus
from arbkit.storage.capture import CaptureEvent, CaptureReader
from arbkit.storage.records import SettlementRow, paper_settlement


@dataclass(slots=True)
class PreparedCapture:
    """Normalized tick batches, one per captured venue message, in capture order."""

    batches: list[tuple[int, Venue, list[NormalizedTick]]]
    # Kalshi market_lifecycle_v2 events of mapped markets, in capture order (close-date
    # changes, pauses, determination, settlement): replayed between the batches.
    lifecycle: list[LifecycleEvent] = field(default_factory=list)
    events: int = 0
    bad_frames: int = 0
    source: str = ""
    # Lines of the file that could not be read (a capture cut off by a crash: a
    # half-written last line, a gzip stream without its end), with the first problems.
    damaged_lines: int = 0
    damage: list[str] = field(default_factory=list)

    @property
    def first_ts_ns(self) -> int:
        return self.batches[0][0] if self.batches else 0


def con_id_map_for(
    symbol_map: SymbolMap, extra: dict[int, tuple[str, Outcome]] | None = None
) -> dict[int, tuple[str, Outcome]]:
    out: dict[int, tuple[str, Outcome]] = dict(extra or {})
    for name, spec in symbol_map.symbols.items():
        fx = spec.forecastex
        if fx.yes_con_id is not None and fx.no_con_id is not None:
            out[fx.yes_con_id] = (name, Outcome.YES)
            out[fx.no_con_id] = (name, Outcome.NO)
    return out


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Building millions of long-lived, acyclic objects (events, ticks) triggers full
    collections that re-walk everything built so far; nothing here makes cycles, so the
    collector is paused meanwhile (refcounting still frees everything)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def prepare(
    events: Iterable[CaptureEvent],
    symbol_map: SymbolMap,
    *,
    use_yes_price: bool = False,
    con_id_map: dict[int, tuple[str, Outcome]] | None = None,
    source: str = "",
) -> PreparedCapture:
    kn = KalshiNormalizer(
        {s.kalshi_ticker: n for n, s in symbol_map.symbols.items()}, use_yes_price=use_yes_price
    )
    ibn = IbkrNormalizer(con_id_map if con_id_map is not None else con_id_map_for(symbol_map))
    out = PreparedCapture([], source=source)
    with _gc_paused():
        _prepare_into(out, events, kn, ibn)
    return out


def _prepare_into(
    out: PreparedCapture,
    events: Iterable[CaptureEvent],
    kn: KalshiNormalizer,
    ibn: IbkrNormalizer,
) -> None:
    for ev in events:
        out.events += 1
        if ev.venue == "kalshi" and ev.raw is not None:
            upd = kn.on_message(ev.raw, ev.t)
            out.bad_frames += len(upd.errors)
            if upd.ticks:
                out.batches.append((ev.t, Venue.KALSHI, upd.ticks))
            out.lifecycle.extend(e for e in upd.lifecycle if e.ticker)
        elif ev.venue == "ibkr" and ev.con_id is not None:
            ticks = ibn.on_quote(ev.con_id, ev.bid, ev.bid_size, ev.ask, ev.ask_size, ev.t)
            if ticks:
                out.batches.append((ev.t, Venue.IBKR, ticks))


def prepare_file(
    path: str | Path,
    symbol_map: SymbolMap,
    *,
    on_error: Literal["raise", "skip"] = "raise",
    **kw: Any,
) -> PreparedCapture:
    """A capture file, prepared. ``on_error="skip"`` reads up to (and past) damaged lines
    and records them in ``damaged_lines``/``damage``; ``"raise"`` refuses the file."""
    reader = CaptureReader(path, on_error)
    with _gc_paused():
        events = list(reader)
    out = prepare(events, symbol_map, source=str(path), **kw)
    out.damaged_lines = reader.skipped
    out.damage = [str(e) for e in reader.errors]
    return out


@dataclass(slots=True)
class ReplayResult:
    events: int = 0
    batches: int = 0
    opportunities: int = 0  # times the detector found one (monotone in every threshold)
    episodes: int = 0  # distinct opportunity episodes (starts)
    decisions_taken: int = 0  # episode starts + re-decisions handed to the executor
    executed: int = 0
    executions_done: int = 0
    executions_hedged: int = 0
    executions_unhedged: int = 0
    contracts_filled: int = 0
    realized_pnl: Money = Money(0)
    expected_profit: Money = Money(0)
    hedge_cost: Money = Money(0)
    max_exposure: Money = Money(0)
    episodes_ended: int = 0
    decisions: list[tuple[int, str, str, int, int]] = field(default_factory=list)
    executions: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    starts: list[tuple[int, str, str, int, int, int, int]] = field(default_factory=list)
    observed: set[tuple[str, str, int, int, int, int]] = field(default_factory=set)
    settlements: list[SettlementRow] = field(default_factory=list)  # markets paid out

    def count(self, t: int, found: int, started: list[Opportunity]) -> None:
        self.opportunities += found
        self.episodes += len(started)
        for o in started:
            self.starts.append(
                (
                    t,
                    o.symbol,
                    o.combo,
                    o.contracts,
                    o.expected_profit,
                    o.kalshi.limit_price,
                    o.ibkr.limit_price,
                )
            )


class _Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


OnDecision = Callable[[Opportunity, str, str, str | None], int | None]


def _executor(
    config: ExecutionConfig,
    symbol_map: SymbolMap,
    book: CentralOrderBook,
    clock: _Clock,
    journal: Journal,
) -> Executor:
    """An executor whose two venues paper-fill from ``book`` as it stands at ``clock``."""
    fees = FeeModel(config.fees)
    specs = symbol_map.symbols

    def view(venue: Venue) -> Callable[[str, Outcome], list[tuple[Price, Qty]]]:
        def v(symbol: str, outcome: Outcome) -> list[tuple[Price, Qty]]:
            lad = book[symbol].ladder(venue, outcome)
            return list(lad.levels()) if lad.valid else []

        return v

    def kalshi_fee(symbol: str, fills: Sequence[tuple[Price, Qty]]) -> Money:
        spec = specs[symbol]
        return fees.kalshi_fee(fills, spec.kalshi_series, ticker=spec.kalshi_ticker)

    kalshi = PaperVenue(Venue.KALSHI, view(Venue.KALSHI), kalshi_fee, clock=clock)
    ibkr = PaperVenue(
        Venue.IBKR,
        view(Venue.IBKR),
        lambda s, f: fees.forecastex_fee(Qty(sum(q for _, q in f))),
        clock=clock,
        whole_contracts=True,
    )
    mode = Mode.MONITOR if config.mode is Mode.MONITOR else Mode.PAPER
    return Executor(
        config,
        symbol_map,
        kalshi,
        ibkr,
        journal,
        quote=lambda s, v, o: (kalshi if v is Venue.KALSHI else ibkr).effective_levels(s, o),
        clock=clock,
        mode=mode,
        id_prefix="rp",
    )


async def _decide(
    t: int,
    decide: list[Opportunity],
    ex: Executor,
    res: ReplayResult,
    on_decision: OnDecision | None,
) -> None:
    """Decide (and paper-execute) one batch's opportunities, in order."""
    mode = ex.mode
    for opp in decide:
        res.decisions_taken += 1
        got = ex.begin(opp)
        if isinstance(got, Decision):
            decision = "logged" if mode is Mode.MONITOR else "skipped"
            oid = on_decision(opp, decision, got.reason, None) if on_decision else None
            res.decisions.append((t, opp.symbol, decision, opp.contracts, opp.expected_profit))
            continue
        oid = on_decision(opp, "executed", "", got.execution_id) if on_decision else None
        got.opportunity_id = oid
        res.decisions.append((t, opp.symbol, "executed", opp.contracts, opp.expected_profit))
        res.executed += 1
        rec = await ex.run(got)
        res.executions.append(
            (
                rec.execution_id,
                rec.state.value,
                rec.planned_qty,
                rec.realized_pnl,
                rec.hedge_cost,
            )
        )
        res.realized_pnl = Money(res.realized_pnl + rec.realized_pnl)
        res.expected_profit = Money(res.expected_profit + rec.expected_profit)
        res.hedge_cost = Money(res.hedge_cost + rec.hedge_cost)
        res.contracts_filled += sum(o.filled_qty for o in rec.orders) // 100
        if rec.state is ExecState.DONE:
            res.executions_done += 1
        elif rec.state is ExecState.HEDGED:
            res.executions_hedged += 1
        elif rec.state is ExecState.UNHEDGED:
            res.executions_unhedged += 1
        res.max_exposure = Money(max(res.max_exposure, ex.state.exposure))


async def replay(
    prepared: PreparedCapture,
    symbol_map: SymbolMap,
    config: ExecutionConfig,
    *,
    journal: Journal | None = None,
    on_decision: OnDecision | None = None,
    on_spread: Callable[[Any], object] | None = None,
    spread_interval_ms: int = 1_000,
    progress: Callable[[int], None] | None = None,
    collect_observations: bool = False,
) -> ReplayResult:
    """Replay prepared batches; ``mode`` monitor only logs, paper/live both paper-fill."""
    clock = _Clock()
    pipe = DetectionPipeline(symbol_map, config.fees, config.detector)
    ex = _executor(config, symbol_map, pipe.book, clock, journal or MemoryJournal())
    res = ReplayResult(events=prepared.events)
    next_spread = 0
    interval = spread_interval_ms * 1_000_000
    symbols = list(symbol_map.symbols)
    by_ticker = {s.kalshi_ticker: n for n, s in symbol_map.symbols.items()}
    pending = prepared.lifecycle
    li = 0
    for i, (t, venue, ticks) in enumerate(prepared.batches):
        while li < len(pending) and pending[li].recv_ts_ns <= t:
            clock.now = pending[li].recv_ts_ns
            await _lifecycle(pending[li], by_ticker, symbol_map, ex, journal, res)
            li += 1
        clock.now = t
        pipe.mark_alive(venue, t)
        out = pipe.on_ticks(ticks, t)
        res.batches += 1
        res.episodes_ended += len(out.ended)
        res.count(t, out.found, out.started)
        if collect_observations:
            for o in pipe.last_found:
                res.observed.add(
                    (
                        o.symbol,
                        o.combo,
                        o.contracts,
                        o.expected_profit,
                        o.kalshi.limit_price,
                        o.ibkr.limit_price,
                    )
                )
        if on_spread is not None and t >= next_spread:
            next_spread = t + interval
            for sym in symbols:
                on_spread(pipe.spread(sym, t))
        if out.decide:
            await _decide(t, out.decide, ex, res, on_decision)
        if progress is not None and i % 10_000 == 0:
            progress(i)
    for ev in pending[li:]:
        clock.now = max(clock.now, ev.recv_ts_ns)
        await _lifecycle(ev, by_ticker, symbol_map, ex, journal, res)
    return res


async def _lifecycle(
    ev: LifecycleEvent,
    by_ticker: dict[str, str],
    symbol_map: SymbolMap,
    ex: Executor,
    journal: Journal | None,
    res: ReplayResult,
) -> None:
    """A recorded lifecycle frame, as the live monitor applies it: the market's state and
    close time gate new executions; at settlement the paper positions are paid out
    (``settlements`` rows when replaying into a database)."""
    symbol = by_ticker.get(ev.ticker)
    if symbol is None:
        return
    clock = ex.market_clocks.setdefault(
        symbol, MarketClock(kalshi_status=MarketStatus.OPEN, ibkr_known=True)
    )
    if ev.close_ns:
        clock.kalshi_close_ns = ev.close_ns
    if ev.result:
        clock.kalshi_result = ev.result
    to = KALSHI_LIFECYCLE.get(ev.event_type)
    if to is not None:
        clock.kalshi_status = to
    if to is not MarketStatus.SETTLED:
        return
    spec = symbol_map.symbols[symbol]
    st = ex.state
    for venue in (Venue.KALSHI, Venue.IBKR):
        row = paper_settlement(
            spec, venue, clock.kalshi_result, st.positions, st.cost_basis,
            now_ns=ev.recv_ts_ns, mode=ex.mode.value, source="replay",
        )  # fmt: skip
        if row is None:
            return
        ex.settle_positions(symbol, venue)
        res.settlements.append(row)
        record = getattr(journal, "record_settlement", None)
        if record is not None:  # a Database: the same table the live monitor writes
            await record(row)


def _loosest(configs: Sequence[ExecutionConfig]) -> DetectorParams | None:
    """Detector parameters under which an opportunity exists whenever one exists under any
    of ``configs`` (lowest min edge and min return, highest caps and quote age), or None
    when the configs differ in something that bound does not cover (e.g. fees)."""
    first = configs[0]
    if any(c.fees != first.fees for c in configs):
        return None
    merge = {
        "min_edge_usd": min,
        "max_contracts_per_trade": max,
        "max_notional_usd_per_trade": max,
        "min_annualized_return_bps": min,
        "max_quote_age_ms": max,
        "max_venue_lag_ms": max,
        "book_depth_fraction": max,  # more of the book: at least as many opportunities
        "slippage_buffer_usd_per_leg": min,
    }
    loose: dict[str, Any] = {}
    for f in dataclasses.fields(DetectorParams):
        values = [getattr(c.detector, f.name) for c in configs]
        if f.name in merge:
            loose[f.name] = merge[f.name](values)
        elif any(v != values[0] for v in values):
            return None
    return DetectorParams(**loose)


async def replay_many(
    prepared: PreparedCapture, symbol_map: SymbolMap, configs: Sequence[ExecutionConfig]
) -> list[ReplayResult]:
    """``replay`` of every config in one pass, same results as one replay per config.

    Books do not depend on parameters (paper fills never change them), so the ticks are
    applied once to a shared book; each config keeps its own episodes, executor and paper
    venues. When the configs differ only in detector parameters, a book is first
    evaluated once with the loosest of them (the detector is exact, so if that finds
    nothing no config can): only then, or to end open episodes, is each config evaluated.
    """
    clock = _Clock()
    shared = CentralOrderBook(symbol_map)
    alive: dict[Venue, int] = {}
    pipes: list[DetectionPipeline] = []
    runs: list[tuple[DetectionPipeline, Executor, ReplayResult]] = []
    for cfg in configs:
        pipe = DetectionPipeline(symbol_map, cfg.fees, cfg.detector)
        pipe.book = shared
        pipe.venue_alive_ns = alive
        pipes.append(pipe)
        ex = _executor(cfg, symbol_map, shared, clock, MemoryJournal())
        runs.append((pipe, ex, ReplayResult(events=prepared.events)))
    loose = _loosest(configs) if configs else None
    probe = ArbitrageDetector(FeeModel(configs[0].fees), loose) if loose is not None else None
    apply = shared.apply
    by_ticker = {s.kalshi_ticker: n for n, s in symbol_map.symbols.items()}
    pending = prepared.lifecycle
    li = 0
    for t, venue, ticks in prepared.batches:
        while li < len(pending) and pending[li].recv_ts_ns <= t:
            clock.now = pending[li].recv_ts_ns
            for _, ex, res in runs:
                await _lifecycle(pending[li], by_ticker, symbol_map, ex, None, res)
            li += 1
        clock.now = t
        alive[venue] = t
        dirty: list[SymbolBook] = []
        for tick in ticks:
            b = apply(tick)
            if b is not None and b not in dirty:
                dirty.append(b)
        if not dirty:
            continue
        every: list[tuple[SymbolBook, tuple[Combo, ...] | None]] = [(b, None) for b in dirty]
        hits: list[tuple[SymbolBook, set[str]]] = []
        if probe is not None:
            for b in dirty:
                labels = {o.combo for o in probe.evaluate(b, t, alive)}
                hits.append((b, labels))
        for pipe, ex, res in runs:
            books = every
            if probe is not None:
                # Skipping a combination no parameter set can trade and with no open
                # episode changes nothing: it would neither decide nor end anything.
                eps = pipe.episodes
                books = []
                for b, labels in hits:
                    if not labels and not eps:
                        continue
                    combos = tuple(
                        c for c in b.combos if c.label in labels or (b.symbol, c.label) in eps
                    )
                    if combos:
                        books.append((b, combos))
                if not books:
                    continue
            out = pipe.evaluate_books(books, t)
            res.episodes_ended += len(out.ended)
            res.count(t, out.found, out.started)
            if out.decide:
                await _decide(t, out.decide, ex, res, None)
    for ev in pending[li:]:
        clock.now = max(clock.now, ev.recv_ts_ns)
        for _, ex, res in runs:
            await _lifecycle(ev, by_ticker, symbol_map, ex, None, res)
    for _, _, res in runs:
        res.batches = len(prepared.batches)
    return [res for _, _, res in runs]


# ------------------------------------------------------------------- sweep ---------

_PREPARED: PreparedCapture | None = None
_SWEEP_CTX: tuple[SymbolMap, ExecutionConfig] | None = None

SWEEP_COLUMNS = (
    "combination",
    "opportunities",
    "episodes",
    "executed",
    "contracts_filled",
    "realized_pnl_usd",
    "expected_profit_usd",
    "hedge_cost_usd",
    "max_exposure_usd",
    "executions_hedged",
    "executions_unhedged",
)


def _usd6(money: int) -> str:
    """Money units as exact dollars with 6 decimals (no float on the way)."""
    return f"{Decimal(money).scaleb(-6):.6f}"


@dataclass(frozen=True, slots=True)
class SweepRow:
    params: dict[str, str]
    result: ReplayResult
    capture: str = ""  # which capture (a sweep over several); "" leaves the column out

    def as_dict(self) -> dict[str, object]:
        r = self.result
        d: dict[str, object] = dict(self.params)
        d.update(
            combination=" ".join(f"{k}={v}" for k, v in self.params.items()),
            opportunities=r.opportunities,
            episodes=r.episodes,
            executed=r.executed,
            contracts_filled=r.contracts_filled,
            realized_pnl_usd=_usd6(r.realized_pnl),
            expected_profit_usd=_usd6(r.expected_profit),
            hedge_cost_usd=_usd6(r.hedge_cost),
            max_exposure_usd=_usd6(r.max_exposure),
            executions_hedged=r.executions_hedged,
            executions_unhedged=r.executions_unhedged,
        )
        if self.capture:
            d["capture"] = self.capture
        return d


def parse_grid(specs: Sequence[str]) -> dict[str, list[str]]:
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, eq, values = spec.partition("=")
        if not eq or not key or not values:
            raise ValueError(
                f"--grid {spec!r}: expected key=v1,v2,... e.g. detector.min_edge_usd=0.01,0.02"
            )
        grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def combinations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    keys = list(grid)
    return [
        dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(grid[k] for k in keys))
    ]


def _run_chunk(chunk: list[dict[str, str]]) -> list[SweepRow]:
    assert _PREPARED is not None and _SWEEP_CTX is not None
    symbol_map, base = _SWEEP_CTX
    cfgs = [apply_overrides(base, params, "--grid") for params in chunk]
    results = asyncio.run(replay_many(_PREPARED, symbol_map, cfgs))
    return [SweepRow(p, r) for p, r in zip(chunk, results, strict=True)]


def _chunks(n_combos: int, jobs: int) -> list[list[int]]:
    """One chunk (one replay pass) per worker; round-robin, so that neighbouring (similar,
    similarly costly) combinations spread over the workers."""
    n = max(1, min(n_combos, jobs))
    return [list(range(i, n_combos, n)) for i in range(n)]


def sweep(
    prepared: PreparedCapture,
    symbol_map: SymbolMap,
    base: ExecutionConfig,
    grid: dict[str, list[str]],
    *,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[SweepRow]:
    """Replay every grid combination (validated up front), in ``jobs`` forked processes."""
    global _PREPARED, _SWEEP_CTX
    combos = combinations(grid)
    for c in combos:  # fail on a bad key/value before any work starts
        apply_overrides(base, c, "--grid")
    _PREPARED, _SWEEP_CTX = prepared, (symbol_map, base)
    rows: list[SweepRow] = []
    try:
        chunks = _chunks(len(combos), jobs)
        work = [[combos[i] for i in chunk] for chunk in chunks]
        by_index: dict[int, SweepRow] = {}
        if len(chunks) == 1:
            got_all = iter([_run_chunk(work[0])])
            pool = None
        else:
            gc.freeze()  # children share the prepared capture without gc touching its pages
            pool = mp.get_context("fork").Pool(len(chunks))
            got_all = pool.imap(_run_chunk, work)
        try:
            for chunk, got in zip(chunks, got_all, strict=True):
                by_index.update(zip(chunk, got, strict=True))
                if progress:
                    progress(len(by_index), len(combos))
        finally:
            if pool is not None:
                pool.terminate()  # every result is in (or we are failing): stop the workers
                pool.join()
                gc.unfreeze()
        rows = [by_index[i] for i in range(len(combos))]
    finally:
        _PREPARED = _SWEEP_CTX = None
    return rows


def write_table(rows: Sequence[SweepRow], path: str | Path) -> Path:
    """CSV, or Parquet (via DuckDB) when the path ends in .parquet; dollars exact in both
    (Parquet: DECIMAL(18, 6)). Only ``path`` is written: no side file is made or removed."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    dicts = [r.as_dict() for r in rows]
    keys = list(dicts[0]) if dicts else list(SWEEP_COLUMNS)
    if p.suffix != ".parquet":
        with p.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(dicts)
        return p
    from arbkit.analysis.duck import connect

    def sql_type(k: str) -> str:
        if k.endswith("_usd") and k in SWEEP_COLUMNS:
            return "DECIMAL(18, 6)"
        return "BIGINT" if k in SWEEP_COLUMNS and k != "combination" else "VARCHAR"

    con = connect()
    try:
        cols = ", ".join(f'"{k}" {sql_type(k)}' for k in keys)
        con.execute(f"CREATE TABLE sweep ({cols})")
        if dicts:
            marks = ", ".join("?" for _ in keys)
            con.executemany(
                f"INSERT INTO sweep VALUES ({marks})",
                [[None if d[k] is None else str(d[k]) for k in keys] for d in dicts],
            )
        target = str(p).replace("'", "''")
        con.execute(f"COPY sweep TO '{target}' (FORMAT PARQUET)")
    finally:
        con.close()
    return p
