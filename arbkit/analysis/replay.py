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
import gc
import itertools
import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.arbitrage.pipeline import DetectionPipeline
from arbkit.config.execution_loader import ExecutionConfig, apply_overrides
from arbkit.config.loader import SymbolMap
from arbkit.execution.executor import Decision, Executor
from arbkit.execution.journal import ExecState, Journal, MemoryJournal
from arbkit.execution.paper import PaperVenue
from arbkit.model import Mode, Money, NormalizedTick, Opportunity, Outcome, Price, Qty, Venue
from arbkit.normalizers.ibkr_normalizer import IbkrNormalizer
from arbkit.normalizers.kalshi_normalizer import KalshiNormalizer
from arbkit.storage.capture import CaptureEvent, load_capture


@dataclass(slots=True)
class PreparedCapture:
    """Normalized tick batches, one per captured venue message, in capture order."""

    batches: list[tuple[int, Venue, list[NormalizedTick]]]
    events: int = 0
    bad_frames: int = 0
    source: str = ""

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
        elif ev.venue == "ibkr" and ev.con_id is not None:
            ticks = ibn.on_quote(ev.con_id, ev.bid, ev.bid_size, ev.ask, ev.ask_size, ev.t)
            if ticks:
                out.batches.append((ev.t, Venue.IBKR, ticks))


def prepare_file(path: str | Path, symbol_map: SymbolMap, **kw: Any) -> PreparedCapture:
    with _gc_paused():
        events = load_capture(path)
    return prepare(events, symbol_map, source=str(path), **kw)


@dataclass(slots=True)
class ReplayResult:
    events: int = 0
    batches: int = 0
    opportunities: int = 0  # decisions taken (episode starts and re-decisions)
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


class _Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


OnDecision = Callable[[Opportunity, str, str, str | None], int | None]


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
) -> ReplayResult:
    """Replay prepared batches; ``mode`` monitor only logs, paper/live both paper-fill."""
    clock = _Clock()
    pipe = DetectionPipeline(symbol_map, config.fees, config.detector)
    fees = FeeModel(config.fees)
    series = {n: s.kalshi_series for n, s in symbol_map.symbols.items()}
    book = pipe.book

    def view(venue: Venue) -> Callable[[str, Outcome], list[tuple[Price, Qty]]]:
        def v(symbol: str, outcome: Outcome) -> list[tuple[Price, Qty]]:
            lad = book[symbol].ladder(venue, outcome)
            return list(lad.levels()) if lad.valid else []

        return v

    kalshi = PaperVenue(
        Venue.KALSHI, view(Venue.KALSHI), lambda s, f: fees.kalshi_fee(f, series[s]), clock=clock
    )
    ibkr = PaperVenue(
        Venue.IBKR,
        view(Venue.IBKR),
        lambda s, f: fees.forecastex_fee(Qty(sum(q for _, q in f))),
        clock=clock,
        whole_contracts=True,
    )
    mode = Mode.MONITOR if config.mode is Mode.MONITOR else Mode.PAPER
    ex = Executor(
        config,
        symbol_map,
        kalshi,
        ibkr,
        journal or MemoryJournal(),
        quote=lambda s, v, o: view(v)(s, o),
        clock=clock,
        mode=mode,
        id_prefix="rp",
    )
    res = ReplayResult(events=prepared.events)
    next_spread = 0
    interval = spread_interval_ms * 1_000_000
    symbols = list(symbol_map.symbols)
    for i, (t, venue, ticks) in enumerate(prepared.batches):
        clock.now = t
        pipe.mark_alive(venue, t)
        out = pipe.on_ticks(ticks, t)
        res.batches += 1
        res.episodes_ended += len(out.ended)
        if on_spread is not None and t >= next_spread:
            next_spread = t + interval
            for sym in symbols:
                on_spread(pipe.spread(sym, t))
        for opp in out.decide:
            res.opportunities += 1
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
        if progress is not None and i % 10_000 == 0:
            progress(i)
    return res


# ------------------------------------------------------------------- sweep ---------

_PREPARED: PreparedCapture | None = None
_SWEEP_CTX: tuple[SymbolMap, ExecutionConfig] | None = None

SWEEP_COLUMNS = (
    "combination",
    "opportunities",
    "executed",
    "contracts_filled",
    "realized_pnl_usd",
    "expected_profit_usd",
    "hedge_cost_usd",
    "max_exposure_usd",
    "executions_hedged",
    "executions_unhedged",
)


@dataclass(frozen=True, slots=True)
class SweepRow:
    params: dict[str, str]
    result: ReplayResult

    def as_dict(self) -> dict[str, object]:
        r = self.result
        d: dict[str, object] = dict(self.params)
        d.update(
            combination=" ".join(f"{k}={v}" for k, v in self.params.items()),
            opportunities=r.opportunities,
            executed=r.executed,
            contracts_filled=r.contracts_filled,
            realized_pnl_usd=f"{r.realized_pnl / 1e6:.6f}",
            expected_profit_usd=f"{r.expected_profit / 1e6:.6f}",
            hedge_cost_usd=f"{r.hedge_cost / 1e6:.6f}",
            max_exposure_usd=f"{r.max_exposure / 1e6:.6f}",
            executions_hedged=r.executions_hedged,
            executions_unhedged=r.executions_unhedged,
        )
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


def _run_one(params: dict[str, str]) -> SweepRow:
    assert _PREPARED is not None and _SWEEP_CTX is not None
    symbol_map, base = _SWEEP_CTX
    cfg = apply_overrides(base, params, "--grid")
    return SweepRow(params, asyncio.run(replay(_PREPARED, symbol_map, cfg)))


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
        if jobs <= 1 or len(combos) == 1:
            for i, c in enumerate(combos):
                rows.append(_run_one(c))
                if progress:
                    progress(i + 1, len(combos))
        else:
            ctx = mp.get_context("fork")
            with ctx.Pool(jobs) as pool:
                for i, row in enumerate(pool.imap(_run_one, combos)):
                    rows.append(row)
                    if progress:
                        progress(i + 1, len(combos))
    finally:
        _PREPARED = _SWEEP_CTX = None
    return rows


def write_table(rows: Sequence[SweepRow], path: str | Path) -> Path:
    """CSV, or Parquet (via DuckDB) when the path ends in .parquet."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    dicts = [r.as_dict() for r in rows]
    keys = list(dicts[0]) if dicts else list(SWEEP_COLUMNS)
    csv_path = p if p.suffix != ".parquet" else p.with_suffix(".csv")
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(dicts)
    if p.suffix == ".parquet":
        from arbkit.analysis.duck import connect

        con = connect()
        con.execute(f"COPY (SELECT * FROM read_csv_auto('{csv_path}')) TO '{p}' (FORMAT PARQUET)")
        csv_path.unlink()
    return p
