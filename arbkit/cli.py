"""The ``arbkit`` command line: demo, sim, monitor, match, replay, sweep, analyze, export."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbkit.config._toml import ConfigError
from arbkit.config.execution_loader import (
    EXAMPLE_EXECUTION,
    LIVE_CONFIRM_ENV,
    ExecutionConfig,
    apply_overrides,
    load_execution_config,
)
from arbkit.config.loader import load_symbol_map
from arbkit.model import ConversionError, Mode, Money
from arbkit.storage.capture import CaptureError

if TYPE_CHECKING:
    from rich.console import Console

    from arbkit.gateways.kalshi_auth import KalshiAuth
    from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor

DEFAULT_DB = Path("data/arbkit.sqlite")
DEFAULT_KALSHI_ENV = "demo"  # never prod by default
KALSHI_ENVIRONMENTS = {
    "prod": (
        "https://external-api.kalshi.com/trade-api/v2",
        "wss://external-api-ws.kalshi.com/trade-api/ws/v2",
    ),
    "demo": (
        "https://external-api.demo.kalshi.co/trade-api/v2",
        "wss://external-api-ws.demo.kalshi.co/trade-api/ws/v2",
    ),
}


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _usd(m: int) -> str:
    return f"${m / 1e6:,.2f}"


def _parse_sets(pairs: Sequence[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CliError(
                f"{flag} {pair!r}: expected section.key=value, e.g. detector.min_edge_usd=0.02"
            )
        out[key.strip()] = value.strip()
    return out


def _execution_config(
    path: str | None,
    mode: str | None,
    sets: Sequence[str] | None,
    *,
    default_mode: str | None = None,
    no_live: str = "",
) -> ExecutionConfig:
    """The file, then ``--set``, then ``--mode`` (else ``default_mode`` unless ``--set``
    chose one). A live mode is blamed on whoever chose it — the flag, not the file — and
    refused outright with ``no_live`` where live makes no sense (demo, replay)."""
    from dataclasses import replace

    cfg = load_execution_config(path) if path else ExecutionConfig()
    overrides = _parse_sets(sets, "--set")
    if overrides:
        cfg = apply_overrides(cfg, overrides, "--set")
    if mode is not None:
        cfg = apply_overrides(cfg, {"mode": mode}, "--mode")
    elif default_mode is not None and "mode" not in overrides:
        cfg = replace(cfg, mode=Mode(default_mode))
    if cfg.mode is Mode.LIVE:
        chosen_by = (
            f"--mode {mode}"
            if mode is not None
            else f"--set mode={overrides['mode']}"
            if "mode" in overrides
            else cfg.source
        )
        if no_live:
            raise CliError(f"{chosen_by or 'the execution config'}: {no_live}")
        cfg = replace(cfg, source=chosen_by)
    return cfg


# ------------------------------------------------------------------- demo / sim ---
def _most_held(monitor: ArbitrageMonitor | None) -> str | None:
    """The symbol with the most contracts held: the demo resolves it, so a payout shows."""
    ex = monitor.executor if monitor is not None else None
    if ex is None or not ex.state.positions:
        return None
    held: dict[str, int] = {}
    for (symbol, _, _), qty in ex.state.positions.items():
        held[symbol] = held.get(symbol, 0) + qty
    return max(sorted(held), key=lambda s: held[s])


def _console() -> Console:
    """rich's console; on a pipe or file (not a terminal) lines are not hard-wrapped at
    80 columns: whoever reads the log or greps it gets each line whole."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(soft_wrap=True)


async def _start_monitor(monitor: ArbitrageMonitor, kalshi_env: str = "") -> None:
    """Start, turning a refusal (live not confirmed, database or account locked, Kalshi
    key rejected) into the one-line CLI error it is."""
    from arbkit.monitor.arbitrage_monitor import (
        KalshiKeyRejected,
        LiveNotConfirmed,
        MonitorRefused,
    )

    try:
        await monitor.start()
    except KalshiKeyRejected as exc:
        others = ", ".join(e for e in (*KALSHI_ENVIRONMENTS, "custom") if e != kalshi_env)
        raise CliError(
            f"{exc}. This was --kalshi-env {kalshi_env or '?'}"
            f"{' (the default)' if kalshi_env == DEFAULT_KALSHI_ENV else ''}: a key is valid "
            f"only in the environment that issued it; choose another with --kalshi-env "
            f"({others}), and check KALSHI_API_KEY_ID matches the key file"
        ) from None
    except (LiveNotConfirmed, MonitorRefused) as exc:
        raise CliError(str(exc)) from None


async def _demo(args: argparse.Namespace) -> int:
    from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor, IbkrEndpoint, KalshiEndpoint
    from arbkit.sim.local import LocalVenues
    from arbkit.ui.terminal import positions_line

    console = _console()
    _positive(args.symbols, "--symbols")
    if args.record and Path(args.record).exists():
        raise CliError(f"--record {args.record}: the file exists; choose another path or delete it")
    cfg = _execution_config(
        args.execution,
        args.mode,
        args.set,
        default_mode="paper",
        no_live="the demo trades against local simulated venues: use --mode paper or monitor",
    )
    run_dir = _run_dir(args.data_dir, "demo")
    venues = LocalVenues(
        args.symbols,
        seed=args.seed,
        updates_per_s=args.rate,
        dislocation_rate_per_min=args.dislocations_per_min,
        data_dir=run_dir,
        resolve_after_s=args.resolve_after if args.resolve_after >= 0 else None,
        resolve_pick=lambda: _most_held(monitor),
    )
    info = await venues.start()
    assert venues.auth is not None
    monitor = ArbitrageMonitor(
        venues.symbol_map,
        cfg,
        kalshi=KalshiEndpoint(info.kalshi_rest_url, info.kalshi_ws_url, venues.auth),
        ibkr=IbkrEndpoint(port=info.tws_port, cache_path=run_dir / "contracts_cache.json"),
        db_path=args.db,
        record_path=args.record,
    )
    console.print(
        f"[bold]arbkit demo[/]: {args.symbols} symbols, mode {cfg.mode.value}, "
        f"local Kalshi {info.kalshi_rest_url}, local TWS 127.0.0.1:{info.tws_port}, db {args.db}, "
        f"run directory {run_dir}"
    )
    started = time.monotonic()
    try:
        await _start_monitor(monitor)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, stop.set)
        interactive = console.is_terminal and not args.no_ui
        end = started + args.seconds
        if interactive:
            from arbkit.ui.terminal_app import LiveView, run_live_view

            shown_events = 0

            def market_events(view: LiveView) -> None:
                nonlocal shown_events
                for event in venues.events[shown_events:]:
                    view.note(f"market: {event}")
                shown_events = len(venues.events)

            await run_live_view(
                monitor,
                console,
                seconds=end - time.monotonic(),
                stop=stop,
                on_tick=market_events,
                title="arbkit demo",
            )
        else:
            next_line = 0.0
            shown = 0
            while time.monotonic() < end and not stop.is_set():
                await asyncio.sleep(0.25)
                for event in venues.events[shown:]:
                    console.print(f"[bold]market[/]: {event}")
                shown = len(venues.events)
                if time.monotonic() >= next_line:
                    next_line = time.monotonic() + 5
                    s = monitor.snapshot()
                    c = s.counters
                    ups = " ".join(
                        f"{v.venue}:{'up' if v.connected else 'DOWN'}" for v in s.venues.values()
                    )
                    console.print(
                        f"t={time.monotonic() - started:5.1f}s ticks={c['ticks']:,} "
                        f"opportunities={c['opportunities']} executed={c['executed']} "
                        f"hedged={c['executions_hedged']} pnl={_usd(s.realized_pnl)} "
                        f"venues={ups}"
                    )
        snap = monitor.snapshot()
    finally:
        await monitor.stop()
        await venues.stop()
    c = snap.counters
    elapsed = time.monotonic() - started
    console.print(
        f"\n[bold]Summary[/] after {elapsed:.0f} s: {c['ticks']:,} ticks, "
        f"{c['opportunities']} opportunities ({c['executed']} executed, {c['skipped']} skipped), "
        f"executions done {c['executions_done']}, hedged {c['executions_hedged']}, "
        f"unhedged {c['executions_unhedged']}; realized PnL {_usd(snap.realized_pnl)}, "
        f"hedge cost {_usd(snap.hedge_cost)}; kill switch "
        f"{'ON: ' + snap.kill_reason if snap.kill_switch else 'off'}."
    )
    console.print(f"Positions: {positions_line(snap)}")
    for event in venues.events:
        console.print(f"Market lifecycle: {event}")
    for row in monitor.settlements:
        console.print(
            f"Settled {row.symbol} on {row.venue.value}: result {row.result.value}, "
            f"held {row.yes_qty / 100:g} YES / {row.no_qty / 100:g} NO, paid {_usd(row.payout)}"
        )
    if monitor.settlements and args.db:
        from arbkit.storage.database import Database

        async with Database(args.db) as db:
            done = [s for s in await db.settled_executions() if s.symbol in {
                r.symbol for r in monitor.settlements}]  # fmt: skip
        if done:
            console.print(
                f"Settled PnL of {len(done)} executions: "
                f"{_usd(Money(sum(s.settled_pnl for s in done)))} "
                f"(expected at execution {_usd(Money(sum(s.expected_profit for s in done)))})"
            )
    if args.db:
        console.print(f"Database: {args.db} (try `{arbkit_command()} analyze --db {args.db}`)")
    if args.record:
        from arbkit.storage.capture import symbol_map_path

        console.print(
            f"Capture: {args.record} with its symbol map {symbol_map_path(args.record)} "
            f"(try `{arbkit_command()} replay {args.record}`)"
        )
    return 0


def _run_dir(base: str, kind: str) -> Path:
    """A new directory per demo/sim run (key, symbol map, contract cache): two runs never
    overwrite each other's key (a monitor on the first would get 401) or symbol map (a
    replay with the other map would silently give other numbers)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = Path(base) / "runs" / f"{kind}-{stamp}-{os.urandom(3).hex()}"
    path.mkdir(parents=True, mode=0o700)
    return path


def arbkit_command() -> str:
    """How to run this arbkit from the current directory: ``.venv/bin/arbkit`` as the
    README says when that is this installation, else the script's absolute path, else
    ``python -m arbkit.cli``."""
    import shlex

    script = Path(sys.executable).parent / "arbkit"
    readme = Path(".venv/bin/arbkit")
    if readme.exists() and script.exists() and readme.resolve() == script.resolve():
        return str(readme)
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m arbkit.cli"


def monitor_command(info: Any) -> str:
    """The ``arbkit monitor`` command line for running local venues, ready to paste."""
    import shlex

    exe = arbkit_command()
    return (
        f"KALSHI_API_KEY_ID={shlex.quote(info.kalshi_key_id)} "
        f"KALSHI_PRIVATE_KEY_PATH={shlex.quote(str(info.kalshi_key_file))} "
        f"{exe} monitor --symbols {shlex.quote(str(info.symbols_file))} "
        f"--execution {shlex.quote(str(EXAMPLE_EXECUTION))} --kalshi-env custom "
        f"--kalshi-rest {info.kalshi_rest_url} --kalshi-ws {info.kalshi_ws_url} "
        f"--ibkr-host {info.tws_host} --ibkr-port {info.tws_port}"
    )


async def _sim(args: argparse.Namespace) -> int:
    from arbkit.sim.local import LocalVenues

    _positive(args.symbols, "--symbols")
    venues = LocalVenues(
        args.symbols,
        seed=args.seed,
        updates_per_s=args.rate,
        data_dir=_run_dir(args.data_dir, "sim"),
        kalshi_port=args.kalshi_port,
        tws_port=args.tws_port,
    )
    info = await venues.start()
    print(f"Kalshi REST : {info.kalshi_rest_url}")
    print(f"Kalshi WS   : {info.kalshi_ws_url}")
    print(f"Kalshi key  : id {info.kalshi_key_id}  file {info.kalshi_key_file}")
    print(f"TWS         : {info.tws_host}:{info.tws_port}")
    print(f"Symbol map  : {info.symbols_file}")
    print("Monitor it (paste into another terminal; Ctrl-C here stops the venues):")
    print(monitor_command(info), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        if args.seconds:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), args.seconds)
        else:
            await stop.wait()
    finally:
        await venues.stop()
    return 0


# --------------------------------------------------------------------- monitor ---
def _kalshi_urls(args: argparse.Namespace, *, need_ws: bool) -> tuple[str, str]:
    if args.kalshi_env in KALSHI_ENVIRONMENTS:
        return KALSHI_ENVIRONMENTS[args.kalshi_env]
    rest, ws = args.kalshi_rest, getattr(args, "kalshi_ws", None) or ""
    if not rest or (need_ws and not ws):
        raise CliError(
            "--kalshi-env custom needs --kalshi-rest" + (" and --kalshi-ws" if need_ws else "")
        )
    return rest, ws


def _kalshi_auth() -> KalshiAuth:
    from arbkit.gateways.kalshi_auth import KalshiAuth

    try:
        return KalshiAuth.from_env()
    except Exception as exc:
        raise CliError(
            f"Kalshi credentials: {exc}. Set KALSHI_API_KEY_ID and KALSHI_PRIVATE_KEY_PATH "
            "(or KALSHI_PRIVATE_KEY with the PEM text)."
        ) from None


def _match(args: argparse.Namespace) -> int:
    from arbkit.matching_cli import MatchError, run

    def target() -> tuple[str, object]:
        return _kalshi_urls(args, need_ws=False)[0], _kalshi_auth()

    try:
        return run(args, kalshi_target=target)
    except MatchError as exc:
        raise CliError(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        raise CliError(f"a venue is unreachable ({exc}); check the URLs and ports") from None


async def _monitor(args: argparse.Namespace) -> int:
    from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor, IbkrEndpoint, KalshiEndpoint

    symbols = load_symbol_map(args.symbols)
    cfg = _execution_config(args.execution, args.mode, args.set)
    rest, ws = _kalshi_urls(args, need_ws=True)
    auth = _kalshi_auth()
    monitor = ArbitrageMonitor(
        symbols,
        cfg,
        kalshi=KalshiEndpoint(rest, ws, auth),
        ibkr=IbkrEndpoint(args.ibkr_host, args.ibkr_port, args.ibkr_client_id, args.ibkr_account),
        db_path=args.db,
        record_path=args.record,
        confirm_live=args.confirm_live,
    )
    await _start_monitor(monitor, args.kalshi_env)
    from rich.console import Console

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        from arbkit.ui.terminal import status_text
        from arbkit.ui.terminal_app import run_live_view

        console = Console()
        await run_live_view(
            monitor, console, seconds=args.seconds or None, stop=stop, title="arbkit monitor"
        )
        console.print(status_text(monitor.snapshot(), "arbkit monitor stopped"))
    finally:
        await monitor.stop()
    return 0


# ------------------------------------------------------------------ replay/sweep ---
def _replay(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from arbkit.analysis.replay import replay

    cfg = _execution_config(
        args.execution,
        args.mode,
        args.set,
        default_mode="paper",
        no_live="a replay never sends orders: use --mode paper or monitor",
    )
    t0 = time.perf_counter()
    if args.catalogue:
        if args.capture:
            raise CliError("give a capture file or --catalogue DIR, not both")
        prepared, symbols, map_file = _prepare_catalogue(args)
        args.capture = f"catalogue {args.catalogue}"
    else:
        if not args.capture:
            raise CliError("give a capture file (or --catalogue DIR for a selection)")
        if args.symbol or args.since or args.until:
            raise CliError("--symbol/--since/--until select from a catalogue: add --catalogue DIR")
        _capture_file(args.capture)
        symbols, map_file = _capture_symbols(args.symbols, args.capture)
        t0 = time.perf_counter()
        prepared = _prepare(args, symbols)
    _map_matches(prepared, symbols, args.capture, map_file)
    t1 = time.perf_counter()

    async def run() -> Any:
        from arbkit.storage.database import Database, DatabaseWriter, config_digest

        bar = tqdm(total=len(prepared.batches), unit="msg", disable=args.quiet, desc="replay")
        last = [0]

        def progress(i: int) -> None:
            bar.update(i - last[0])
            last[0] = i

        if args.db is None:
            res = await replay(prepared, symbols, cfg, progress=progress)
        else:
            async with Database(args.db) as db:
                await db.begin_run("replay", config_digest(cfg, symbols), " ".join(sys.argv))
                writer = DatabaseWriter(db)
                writer.start()
                try:
                    res = await replay(
                        prepared,
                        symbols,
                        cfg,
                        journal=db,
                        on_decision=lambda o, d, r, e: writer.opportunity(o, cfg.mode, d, r, e),
                        on_spread=writer.spread,
                        progress=progress,
                    )
                finally:
                    await writer.stop()
        bar.update(len(prepared.batches) - last[0])
        bar.close()
        return res

    res = asyncio.run(run())
    t2 = time.perf_counter()
    if args.json:
        _print_json(
            {
                "capture": args.capture,
                "symbols": map_file,
                "events": prepared.events,
                "bad_frames": prepared.bad_frames,
                "damaged_lines": prepared.damaged_lines,
                "opportunity_episodes": res.episodes,
                "opportunities_seen": res.opportunities,
                "executed": res.executed,
                "executions_done": res.executions_done,
                "executions_hedged": res.executions_hedged,
                "executions_unhedged": res.executions_unhedged,
                "contracts_filled": res.contracts_filled,
                **_money_json("realized_pnl", res.realized_pnl),
                **_money_json("hedge_cost", res.hedge_cost),
                **_money_json("max_exposure", res.max_exposure),
                "db": args.db,
                "seconds": {"parse": round(t1 - t0, 3), "replay": round(t2 - t1, 3)},
            }
        )
        return 0
    print(
        f"{prepared.events:,} events ({prepared.bad_frames} bad frames) parsed in {t1 - t0:.2f} s, "
        f"replayed in {t2 - t1:.2f} s "
        f"({prepared.events / max(t2 - t0, 1e-9):,.0f} events/s overall)"
    )
    print(
        f"opportunity episodes {res.episodes} (seen {res.opportunities} times), "
        f"executed {res.executed} (done {res.executions_done}, "
        f"hedged {res.executions_hedged}, unhedged {res.executions_unhedged}), contracts filled "
        f"{res.contracts_filled}, realized PnL {_usd(res.realized_pnl)}, "
        f"hedge cost {_usd(res.hedge_cost)}, "
        f"max exposure {_usd(res.max_exposure)}"
    )
    if args.db:
        print(f"rows written to {args.db}")
    return 0


def _sweep_inputs(args: argparse.Namespace) -> tuple[list[str], Any]:
    """The captures of a sweep or search — files, or a catalogue selection — and one
    symbol map for all: ``--symbols``, else the maps recorded with the captures (a symbol
    mapped two ways is refused)."""
    from arbkit.analysis.catalogue import (
        CaptureInfo,
        Catalogue,
        CatalogueError,
        selection_symbol_map,
    )
    from arbkit.storage.capture import symbol_map_path

    try:
        if args.catalogue:
            if args.capture:
                raise CliError("give capture files or --catalogue DIR, not both")
            since, until = _utc_ns(args.since, "--since"), _utc_ns(args.until, "--until")
            entries = Catalogue(args.catalogue).select(args.symbol, since, until)
            if not entries:
                raise CliError(f"--catalogue {args.catalogue}: the selection holds no capture")
        else:
            if not args.capture:
                raise CliError("give capture files (or --catalogue DIR for a selection)")
            if args.symbol or args.since or args.until:
                raise CliError(
                    "--symbol/--since/--until select from a catalogue: add --catalogue DIR"
                )
            entries = []
            for c in args.capture:
                _capture_file(c)
                sidecar = symbol_map_path(c)
                entries.append(
                    CaptureInfo(c, 0, 0, str(sidecar) if sidecar.exists() else "", "arbkit")
                )
        given = load_symbol_map(args.symbols) if args.symbols else None
        symbols = selection_symbol_map(entries, given, args.symbol)
    except CatalogueError as exc:
        raise CliError(str(exc)) from None
    for e in entries:
        if args.catalogue and len(e.venues) == 1:
            print(
                f"arbkit {args.command}: warning: {e.path} holds {e.venues[0]} events only; "
                "a job on it alone finds no cross-venue opportunity (arbkit replay "
                "--catalogue merges venues by time)",
                file=sys.stderr,
            )
    paths = [e.path for e in entries]
    return paths, symbols


def _catalogue_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalogue",
        default=None,
        metavar="DIR",
        help="a catalogue selection (the captures in DIR, in time order) instead of files",
    )
    p.add_argument("--symbol", action="append", default=[], help="with --catalogue: only this")
    p.add_argument("--since", default=None, help="with --catalogue: from this UTC date/time")
    p.add_argument("--until", default=None, help="with --catalogue: up to this UTC date/time")


def _sweep(args: argparse.Namespace) -> int:
    """Every (parameter set × capture) job on local processes or Dask. Each finished job
    is written to the job store as it completes; ``--resume`` skips the finished ones."""
    import json

    from tqdm import tqdm

    from arbkit.analysis.executors import SweepContext, make_executor, run_sweep
    from arbkit.analysis.replay import SweepRow, combinations, parse_grid, write_table
    from arbkit.analysis.sweep_jobs import ResultStore, capture_ref, plan, replay_result

    _positive(args.jobs, "--jobs")
    workers = _positive(args.workers, "--workers") if args.workers is not None else args.jobs
    if args.scheduler and args.executor != "dask":
        raise CliError(f"--scheduler {args.scheduler}: needs --executor dask")
    paths, symbols = _sweep_inputs(args)
    cfg = _execution_config(args.execution, "paper", args.set)
    try:
        grid = parse_grid(args.grid)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if "mode" in grid and any(v != "paper" for v in grid["mode"]):
        raise CliError(
            f"--grid mode={','.join(grid['mode'])}: a sweep replays in paper mode only; "
            "drop mode from the grid"
        )
    combos = combinations(grid)
    for c in combos:  # a bad key/value fails before any capture is read
        apply_overrides(cfg, c, "--grid")
    if args.resume and not args.out:
        raise CliError("--resume needs --out: the sweep to continue")
    out = Path(args.out) if args.out else Path("data/sweeps") / f"sweep-{int(time.time())}.csv"
    if out.suffix in (".csv", ".parquet"):
        table, store_path = out, out.with_name(out.name + ".jobs.jsonl")
    else:  # a sweep directory
        table, store_path = out / "results.csv", out / "jobs.jsonl"
    t0 = time.perf_counter()
    refs = [capture_ref(c) for c in paths]
    ctx = SweepContext(symbols, cfg, on_error="raise" if args.strict else "skip")
    try:
        plan(refs, combos[:1], ctx.digest)  # the same capture twice is a mistake
    except ValueError as exc:
        raise CliError(str(exc)) from None
    store = ResultStore(store_path, resume=args.resume)
    n = len(refs) * len(combos)
    bar = tqdm(total=n, unit="job", desc="sweep", disable=args.quiet)

    def tick(done: int, total: int) -> None:
        bar.update(done - bar.n)  # ``done`` jobs in all (a finished task at a time)

    try:
        with make_executor(
            args.executor, workers, scheduler=args.scheduler, ship=args.ship_captures
        ) as ex:
            res = run_sweep(refs, combos, ctx, ex, store, progress=tick)
            used = ex.workers
    except ValueError as exc:
        raise CliError(str(exc)) from None
    bar.update(n - bar.n)
    bar.close()
    for path, (lines, first) in res.damage.items():
        print(
            f"arbkit sweep: warning: {path}: {lines} damaged lines skipped (first: {first}); "
            "--strict refuses a damaged capture",
            file=sys.stderr,
        )
    many = len(refs) > 1
    rows = [  # parameters in grid order (the store's rows have them sorted)
        SweepRow(j.params_dict, replay_result(r), capture=j.capture.path if many else "")
        for j, r in zip(res.jobs, res.rows, strict=True)
    ]
    write_table(rows, table)
    totals: dict[str, list[Any]] = {}
    for j, r in zip(res.jobs, res.rows, strict=True):
        key = " ".join(f"{k}={v}" for k, v in j.params)
        t = totals.setdefault(key, [j.params_dict, 0, 0, 0])
        t[1] += r["result"]["realized_pnl"]
        t[2] += r["result"]["executed"]
        t[3] += r["result"]["opportunities"]
    best = sorted(totals.values(), key=lambda t: -t[1])[:5]
    seconds = time.perf_counter() - t0
    if args.json:
        summary = {
            "jobs": len(res.jobs),
            "ran": res.run,
            "skipped": res.skipped,
            "tasks": res.tasks,
            "prepares": res.prepares,
            "executor": args.executor,
            "workers": used,
            "captures": [c.path for c in refs],
            "combinations": len(combos),
            "store": str(store_path),
            "table": str(table),
            "seconds": round(seconds, 3),
            "best": [
                {"params": p, "realized_pnl_units": pnl, "executed": ex_n, "opportunities": o}
                for p, pnl, ex_n, o in best
            ],
        }
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"{len(res.jobs)} jobs ({len(combos)} combinations × {len(refs)} captures; "
        f"{res.run} run, {res.skipped} already done) on {args.executor} × {used} "
        f"in {seconds:.1f} s → {table} (jobs: {store_path})"
    )
    for params, pnl, executed, opps in best:
        print(
            f"  PnL {_usd(pnl):>12}  opps {opps:>5}  executed {executed:>4}  "
            + " ".join(f"{k}={v}" for k, v in params.items())
        )
    return 0


def _search(args: argparse.Namespace) -> int:
    """Optuna over ``--range``s (journal storage: resumable, shareable); the best set is
    written into the trader's own execution config (``--execution``) as a new file."""
    import json

    from tqdm import tqdm

    from arbkit.analysis.executors import SweepContext, make_executor
    from arbkit.analysis.search import parse_range, search, write_best, write_trials
    from arbkit.analysis.sweep_jobs import capture_ref

    _positive(args.trials, "--trials")
    _positive(args.jobs, "--jobs")
    if args.scheduler and args.executor != "dask":
        raise CliError(f"--scheduler {args.scheduler}: needs --executor dask")
    paths, symbols = _sweep_inputs(args)
    user = _execution_config(args.execution, None, args.set)  # what best.toml keeps
    base = apply_overrides(user, {"mode": "paper"})
    try:
        ranges = [parse_range(s) for s in args.range]
    except ValueError as exc:
        raise CliError(str(exc)) from None
    refs = [capture_ref(c) for c in paths]
    ctx = SweepContext(symbols, base, on_error="raise" if args.strict else "skip")
    bar = tqdm(total=args.trials, unit="trial", desc="search", disable=args.quiet)

    def tick(done: int, total: int) -> None:
        bar.update(max(0, min(done, total) - bar.n))

    try:
        with make_executor(args.executor, args.jobs, scheduler=args.scheduler) as ex:
            got = search(
                refs, ranges, ctx, ex,
                storage_path=args.storage, study_name=args.study, sampler=args.sampler,
                trials=args.trials, walk_forward=args.walk_forward, holdout=args.holdout,
                seed=args.seed, progress=tick,
            )  # fmt: skip
    except ValueError as exc:
        raise CliError(str(exc)) from None
    bar.close()
    if got.best is None:
        raise CliError(f"study {args.study!r}: no finished trial to choose from")
    b = got.best
    note = (
        f"study {args.study} ({args.storage}), trial {b.number}: risk-adjusted in-sample "
        f"{_usd(b.in_sample_units)}"
        + (
            ""
            if b.out_of_sample_units is None
            else f", out-of-sample {_usd(b.out_of_sample_units)}"
        )
    )
    _, written = write_best(user, b, args.out, note=note)
    table = write_trials(got.trials, args.table or Path(args.out).with_suffix(".trials.csv"))
    if args.json:
        summary = {
            "study": args.study,
            "storage": args.storage,
            "sampler": args.sampler,
            "trials": len(got.trials),
            "ran": got.ran,
            "exhausted": got.exhausted,
            "in_sample": got.in_sample,
            "out_of_sample": got.out_of_sample,
            "best": b.as_dict(),
            "out": str(written),
            "table": str(table),
            "rows": [t.as_dict() for t in got.trials],
        }
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"study {args.study}: {len(got.trials)} trials ({got.ran} run now"
        + (", grid exhausted" if got.exhausted else "")
        + f") → {table}\nbest: trial {b.number} "
        + " ".join(f"{k}={v}" for k, v in b.params.items())
        + f"  {note.split(': ', 1)[1]}\nwrote {written}"
    )
    return 0


def _need_db(db: str) -> Path:
    """An arbkit database (or a Parquet export directory), or one line saying what it is."""
    import sqlite3

    p = Path(db)
    if not p.exists():
        raise CliError(f"{p}: database not found; run `arbkit demo` first or pass --db PATH")
    if p.is_dir():
        return p  # a Parquet export
    with p.open("rb") as f:
        head = f.read(16)
    if not head:
        raise CliError(f"{p}: empty file, not an arbkit database; pass --db PATH")
    if head != b"SQLite format 3\x00":
        raise CliError(f"{p}: not an SQLite file, not an arbkit database; pass --db PATH")
    con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    try:
        (version,) = con.execute("PRAGMA user_version").fetchone()
        has = con.execute(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'arb_executions'"
        ).fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise CliError(f"{p}: unreadable SQLite file ({exc})") from None
    finally:
        con.close()
    if not version or not has:
        raise CliError(
            f"{p}: an SQLite file but not an arbkit database (no arbkit tables); pass --db PATH"
        )
    return p


def _positive(value: int, flag: str) -> int:
    if value < 1:
        raise CliError(f"{flag} {value}: use 1 or more")
    return value


def _prepare(args: argparse.Namespace, symbols: Any) -> Any:
    """The capture, read up to any damage (said on stderr), or refused with --strict."""
    from arbkit.analysis.replay import prepare_file

    prepared = prepare_file(args.capture, symbols, on_error="raise" if args.strict else "skip")
    if prepared.damaged_lines:
        print(
            f"arbkit {args.command}: warning: {prepared.damaged_lines} damaged lines skipped "
            f"(first: {prepared.damage[0]}); --strict refuses a damaged capture",
            file=sys.stderr,
        )
    return prepared


def _captures(args: argparse.Namespace) -> int:
    from arbkit.captures_cli import CapturesError, run

    try:
        return run(args, _utc_ns)
    except CapturesError as exc:
        raise CliError(str(exc)) from None


def _prepare_catalogue(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """A catalogue selection, merged in time order, with the map its captures recorded
    (or ``--symbols``), as one prepared stream."""
    from arbkit.analysis.catalogue import (
        Catalogue,
        CatalogueError,
        prepare_selection,
        selection_symbol_map,
    )

    since, until = _utc_ns(args.since, "--since"), _utc_ns(args.until, "--until")
    try:
        entries = Catalogue(args.catalogue).select(args.symbol, since, until)
        given = load_symbol_map(args.symbols) if args.symbols else None
        symbols = selection_symbol_map(entries, given, args.symbol)
        prepared = prepare_selection(
            entries,
            symbols,
            since_ns=since,
            until_ns=until,
            on_error="raise" if args.strict else "skip",
        )
    except CatalogueError as exc:
        raise CliError(str(exc)) from None
    if prepared.damaged_lines:
        print(
            f"arbkit replay: warning: {prepared.damaged_lines} damaged lines skipped "
            f"(first: {prepared.damage[0]}); --strict refuses a damaged capture",
            file=sys.stderr,
        )
    print(
        f"catalogue {args.catalogue}: {len(entries)} captures in time order: "
        + ", ".join(Path(e.path).name for e in entries),
        file=sys.stderr,
    )
    return prepared, symbols, args.symbols or f"the maps recorded in {args.catalogue}"


def _capture_symbols(given: str | None, capture: str) -> tuple[Any, str]:
    """``--symbols`` when given, else the map recorded next to the capture."""
    from arbkit.storage.capture import symbol_map_path

    if given:
        return load_symbol_map(given), given
    sidecar = symbol_map_path(capture)
    if not sidecar.exists():
        raise CliError(
            f"{capture}: no symbol map was recorded with it ({sidecar.name} not found); "
            "pass the map it was recorded with: --symbols FILE"
        )
    return load_symbol_map(sidecar), str(sidecar)


def _map_matches(prepared: Any, symbols: Any, capture: str, map_file: str) -> None:
    """A map that names none of the capture's instruments would replay to all zeros:
    say so instead of printing numbers that look like a quiet market."""
    if prepared.events and not prepared.batches and not prepared.lifecycle:
        names = sorted(symbols.symbols)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise CliError(
            f"{capture}: none of its {prepared.events:,} events is for an instrument of "
            f"{map_file} ({shown}): that is not the map this capture was recorded with"
        )


def _money_json(name: str, units: int) -> dict[str, Any]:
    """Money in JSON: exact integer micro-dollars plus the dollar string, never a float."""
    from decimal import Decimal

    return {f"{name}_e6": int(units), f"{name}_usd": str(Decimal(int(units)).scaleb(-6))}


def _print_json(obj: Any) -> None:
    import json

    print(json.dumps(obj, indent=2, sort_keys=False))


def _capture_file(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{p} is a directory: give one capture file (.jsonl or .jsonl.gz)")
    if not p.exists():
        raise CliError(f"{p}: capture not found")
    return path


def _analyze(args: argparse.Namespace) -> int:
    from arbkit.analysis.report import analyze_main

    db = _need_db(args.db)
    since_ns, until_ns = _utc_ns(args.since, "--since"), _utc_ns(args.until, "--until")
    if since_ns is not None and until_ns is not None and until_ns <= since_ns:
        raise CliError(f"--until {args.until} is not after --since {args.since}")
    try:
        return analyze_main(
            db,
            print,
            run=args.run,
            since_ns=since_ns,
            until_ns=until_ns,
            list_runs=args.runs,
            as_json=args.json,
        )
    except ValueError as exc:  # no such run, not an arbkit database: one line
        raise CliError(str(exc)) from None


def _utc_ns(text: str | None, flag: str) -> int | None:
    from arbkit.analysis.queries import utc_ns

    try:
        return utc_ns(text)
    except ValueError as exc:
        raise CliError(f"{flag}: {exc}") from None


def _export(args: argparse.Namespace) -> int:
    from arbkit.analysis.export import export_main

    _need_db(args.db)
    return export_main(Path(args.db), Path(args.out) if args.out else None, print)


# ----------------------------------------------------------------------- config ---
def _config(args: argparse.Namespace) -> int:
    """``config check FILE`` (a symbol map or an execution config: ok, or one error line)
    and ``config show`` (the effective execution config, overrides applied, as TOML)."""
    from arbkit.config._toml import read_toml
    from arbkit.config.execution_loader import execution_config_toml, parse_execution_config
    from arbkit.config.loader import parse_symbol_map

    if args.action == "show":
        cfg = _execution_config(args.execution, None, args.set)
        src = args.execution or "built-in defaults"
        print(execution_config_toml(cfg, f"effective execution config: {src}"), end="")
        return 0
    if not args.file:
        raise CliError("config check needs a FILE (a symbol map or an execution config)")
    data = read_toml(args.file)
    if "symbols" in data:
        smap = parse_symbol_map(data, args.file)
        unverified = sum(1 for x in smap.symbols.values() if x.equivalence.missing_for_live())
        print(
            f"{args.file}: ok — symbol map, {len(smap)} symbols"
            + (f", {unverified} not verified for live" if unverified else ", all verified")
        )
        return 0
    cfg = parse_execution_config(data, args.file)
    print(f"{args.file}: ok — execution config, mode {cfg.mode.value}")
    return 0


# ------------------------------------------------------------------------ state ---
async def _state(args: argparse.Namespace) -> int:
    """Show the persisted trading state, or change it as the user (``--resume`` lifts a
    halt, ``--halt`` sets one). Refused while a monitor holds the database: a running
    monitor is changed from its own API (notebook button, ``monitor.reset_kill_switch``)."""
    from filelock import FileLock
    from filelock import Timeout as LockTimeout

    from arbkit.storage.database import Database
    from arbkit.storage.records import TradingStateRow

    path = _need_db(args.db)
    change = (
        ("active", args.resume) if args.resume else ("halted", args.halt) if args.halt else None
    )
    lock = FileLock(f"{path}.lock")
    if change is not None:
        try:
            lock.acquire(timeout=0)
        except LockTimeout:
            raise CliError(
                f"{path} is in use by a running monitor; change its state from the monitor "
                "(dashboard button or monitor.reset_kill_switch()), or stop it first"
            ) from None
    try:
        async with Database(path) as db:
            rows = await db.trading_state_rows(limit=10)
            current = rows[-1].to_state if rows else "active"
            if change is not None and change[0] != current:
                row = TradingStateRow(time.time_ns(), current, change[0], change[1], "user")
                await db.record_trading_state(row)
                rows.append(row)
                current = change[0]
    finally:
        if lock.is_locked:
            lock.release()
    why = rows[-1].reason if rows and current != "active" else ""
    print(f"trading state: {current}" + (f" ({why})" if why else ""))
    for r in rows[-5:]:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.ts_ns // 1_000_000_000))
        print(f"  {at}Z  {r.from_state} -> {r.to_state}  by {r.actor}: {r.reason}")
    return 0


# ---------------------------------------------------------------------- parser ---
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="arbkit",
        description=(
            "Find and trade cross-venue arbitrage between Kalshi and IBKR ForecastEx binary "
            "contracts. Start with `arbkit demo`: it runs everything against local simulated "
            "venues."
        ),
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log more (to stderr)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser(
        "demo",
        help="run the whole kit against local simulated venues (no accounts needed)",
        description="Start a local Kalshi exchange and a local TWS driven by a market model, "
        "connect the monitor through the real gateways, paper-trade, and show it live.",
    )
    d.add_argument("--seconds", type=float, default=30, help="how long to run (default 30)")
    d.add_argument(
        "--resolve-after",
        type=float,
        default=12,
        metavar="S",
        help="the first market closes after S seconds, resolves and pays out on both venues "
        "(default 12; a negative value turns it off)",
    )
    d.add_argument(
        "--symbols", type=int, default=6, help="number of simulated questions (default 6)"
    )
    d.add_argument(
        "--mode",
        choices=["paper", "monitor"],
        default=None,
        help="paper-trade (default) or only log; overrides the execution config's mode",
    )
    d.add_argument(
        "--db", default=str(DEFAULT_DB), help=f"SQLite database to write (default {DEFAULT_DB})"
    )
    d.add_argument(
        "--record",
        default=None,
        help="also record every raw venue message to this capture file (.jsonl or .jsonl.gz)",
    )
    d.add_argument("--execution", default=None, help="execution config TOML (defaults otherwise)")
    d.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. detector.min_edge_usd=0.02",
    )
    d.add_argument("--seed", type=int, default=7, help="market model seed (same seed, same market)")
    d.add_argument(
        "--rate", type=float, default=300, help="book updates per second across both venues"
    )
    d.add_argument(
        "--dislocations-per-min",
        type=float,
        default=4.0,
        help="how often, per symbol, one venue dislocates from the other (default 4)",
    )
    d.add_argument(
        "--data-dir",
        default="data",
        help="each run writes its key and symbol map to a new directory DATA_DIR/runs/demo-…",
    )
    d.add_argument(
        "--no-ui", action="store_true", help="print progress lines instead of the live view"
    )

    s = sub.add_parser("sim", help="run the local venues alone, for notebooks or `arbkit monitor`")
    s.add_argument("--symbols", type=int, default=6)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--rate", type=float, default=300)
    s.add_argument("--kalshi-port", type=int, default=0, help="0 picks a free port")
    s.add_argument("--tws-port", type=int, default=0, help="0 picks a free port")
    s.add_argument(
        "--data-dir",
        default="data",
        help="each run writes its key and symbol map to a new directory DATA_DIR/runs/sim-…",
    )
    s.add_argument(
        "--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)"
    )

    m = sub.add_parser(
        "monitor",
        help="watch (and, if configured, trade) the real venues",
        description="Connect to Kalshi and to TWS / IB Gateway. Credentials come from "
        "KALSHI_API_KEY_ID and "
        f'KALSHI_PRIVATE_KEY_PATH. Live trading needs mode = "live" in the execution config AND '
        f"--confirm-live (or {LIVE_CONFIRM_ENV}).",
    )
    m.add_argument("--symbols", required=True, help="symbol map TOML")
    m.add_argument("--execution", required=True, help="execution config TOML")
    m.add_argument("--record", default=None, help="record raw venue messages to this capture file")
    m.add_argument("--db", default=str(DEFAULT_DB))
    m.add_argument(
        "--mode",
        choices=["monitor", "paper", "live"],
        default=None,
        help="override the execution config's mode (live still needs --confirm-live)",
    )
    m.add_argument(
        "--confirm-live",
        action="store_true",
        help='confirm live trading when the config says mode = "live"',
    )
    m.add_argument("--set", action="append", metavar="KEY=VALUE")
    m.add_argument(
        "--kalshi-env",
        choices=["prod", "demo", "custom"],
        default=DEFAULT_KALSHI_ENV,
        help="Kalshi environment (default demo)",
    )
    m.add_argument("--kalshi-rest", default=None, help="REST base URL for --kalshi-env custom")
    m.add_argument("--kalshi-ws", default=None, help="WebSocket URL for --kalshi-env custom")
    m.add_argument("--ibkr-host", default="127.0.0.1")
    m.add_argument(
        "--ibkr-port",
        type=int,
        default=7497,
        help="TWS paper 7497 (live 7496); IB Gateway paper 4002 (live 4001)",
    )
    m.add_argument("--ibkr-client-id", type=int, default=1)
    m.add_argument("--ibkr-account", default=None)
    m.add_argument(
        "--seconds", type=float, default=0, help="stop after this long (default: until Ctrl-C)"
    )

    mt = sub.add_parser(
        "match",
        help="propose Kalshi ↔ ForecastEx pairs and write a verified symbol map",
        description="Pull both venues' listings into a catalogue, propose pairs (relation, "
        "orientation, strikes, cutoffs, sources), and write the pairs you confirm as a "
        "symbol map. Kalshi credentials as for monitor.",
    )
    from arbkit.matching_cli import add_arguments

    add_arguments(mt)

    cp = sub.add_parser(
        "captures", help="the capture catalogue: index and list captures, import Kalshi L2 history"
    )
    from arbkit.captures_cli import add_arguments as add_captures_arguments

    add_captures_arguments(cp)

    r = sub.add_parser("replay", help="feed a capture through the detector and paper executor")
    r.add_argument("capture", nargs="?", default=None, help="capture file (.jsonl or .jsonl.gz)")
    _catalogue_arguments(r)
    r.add_argument(
        "--symbols",
        default=None,
        help="symbol map TOML used when recording (default: the one recorded with the capture)",
    )
    r.add_argument("--json", action="store_true", help="print the result as JSON")
    r.add_argument("--execution", default=None, help="execution config TOML (defaults otherwise)")
    r.add_argument("--db", default=None, help="also write the rows to this SQLite database")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value")
    r.add_argument(
        "--mode",
        choices=["paper", "monitor"],
        default=None,
        help="paper-fill (default) or only log; overrides the execution config's mode",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--strict", action="store_true", help="refuse a damaged capture")

    w = sub.add_parser(
        "sweep", help="replay captures over a parameter grid (local processes or Dask)"
    )
    w.add_argument("capture", nargs="*", help="capture files (.jsonl or .jsonl.gz)")
    w.add_argument("--symbols", default=None, help="symbol map (default: the recorded ones)")
    _catalogue_arguments(w)
    w.add_argument("--execution", default=None)
    w.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="e.g. detector.min_edge_usd=0.005,0.01,0.02",
    )
    w.add_argument("--set", action="append", metavar="KEY=VALUE")
    w.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    w.add_argument(
        "--out",
        default=None,
        help="result table (.csv or .parquet; its job store beside it as NAME.jobs.jsonl) "
        "or a sweep directory (results.csv + jobs.jsonl); default data/sweeps/",
    )
    w.add_argument("--resume", action="store_true", help="skip the jobs --out already has")
    w.add_argument("--executor", choices=["local", "dask"], default="local")
    w.add_argument(
        "--scheduler", default=None, metavar="tcp://HOST:PORT", help="a running Dask cluster"
    )
    w.add_argument("--workers", type=int, default=None, help="Dask workers (default --jobs)")
    w.add_argument(
        "--ship-captures",
        choices=["path", "scheduler"],
        default="path",
        help="Dask workers read captures from the same path (shared disk) or get their "
        "bytes through the cluster",
    )
    w.add_argument("--json", action="store_true", help="a JSON summary on stdout")
    w.add_argument("--quiet", action="store_true")
    w.add_argument("--strict", action="store_true", help="refuse a damaged capture")

    se = sub.add_parser(
        "search", help="Optuna search over parameter ranges (resumable journal storage)"
    )
    se.add_argument("capture", nargs="*", help="capture files; walk-forward sorts them by time")
    se.add_argument("--symbols", default=None, help="symbol map (default: the recorded ones)")
    _catalogue_arguments(se)
    se.add_argument(
        "--execution", default=None, help="your execution config: best.toml keeps the rest"
    )
    se.add_argument("--set", action="append", metavar="KEY=VALUE")
    se.add_argument(
        "--range",
        action="append",
        required=True,
        metavar="KEY=LO:HI[:STEP]",
        help="e.g. detector.min_edge_usd=0:0.05:0.005",
    )
    se.add_argument("--sampler", choices=["tpe", "grid"], default="tpe")
    se.add_argument("--trials", type=int, default=20, help="finished trials the study should have")
    se.add_argument("--storage", default="data/search/journal.log", help="Optuna journal file")
    se.add_argument("--study", default="search", help="study name in the journal")
    se.add_argument(
        "--walk-forward",
        action="store_true",
        help="fit on the earlier captures, score on the last --holdout ones",
    )
    se.add_argument("--holdout", type=int, default=1, help="captures held out (walk-forward)")
    se.add_argument("--seed", type=int, default=0, help="TPE/grid sampler seed")
    se.add_argument("--out", default="data/search/best_execution.toml", help="best set (TOML)")
    se.add_argument("--table", default=None, help="one row per trial (CSV); default OUT.trials.csv")
    se.add_argument("--jobs", type=int, default=1, help="trials replayed at once (workers)")
    se.add_argument("--executor", choices=["local", "dask"], default="local")
    se.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT")
    se.add_argument("--json", action="store_true", help="a JSON summary on stdout")
    se.add_argument("--quiet", action="store_true")
    se.add_argument("--strict", action="store_true", help="refuse a damaged capture")

    a = sub.add_parser("analyze", help="summarise the database with DuckDB")
    a.add_argument("--db", default=str(DEFAULT_DB))
    a.add_argument("--run", default=None, help="only this run (see --runs)")
    a.add_argument(
        "--since", default=None, metavar="TIME", help="from this UTC date/time (2026-12-01[T09:30])"
    )
    a.add_argument("--until", default=None, metavar="TIME", help="before this UTC date/time")
    a.add_argument("--runs", action="store_true", help="list the runs in the database")
    a.add_argument(
        "--json",
        action="store_true",
        help="print JSON (dollars as exact decimal strings, counts as integers)",
    )

    cf = sub.add_parser("config", help="check a config file, or show the effective config")
    cf.add_argument("action", choices=["check", "show"])
    cf.add_argument("file", nargs="?", default=None, help="check: the TOML file")
    cf.add_argument("--execution", default=None, help="show: start from this file")
    cf.add_argument("--set", action="append", metavar="KEY=VALUE", help="show: override")

    st = sub.add_parser(
        "state", help="show the persisted trading state; --resume lifts a halt (as the user)"
    )
    st.add_argument("--db", default=str(DEFAULT_DB))
    act = st.add_mutually_exclusive_group()
    act.add_argument("--resume", metavar="REASON", help="lift halted/reducing, saying why")
    act.add_argument("--halt", metavar="REASON", help="halt trading, saying why")

    e = sub.add_parser("export", help="export the database for large-history analysis")
    e.add_argument("format", choices=["parquet"])
    e.add_argument("--db", default=str(DEFAULT_DB))
    e.add_argument("--out", default=None, help="output directory (default data/parquet)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            return asyncio.run(_demo(args))
        if args.command == "sim":
            return asyncio.run(_sim(args))
        if args.command == "monitor":
            return asyncio.run(_monitor(args))
        if args.command == "match":
            return _match(args)
        if args.command == "captures":
            return _captures(args)
        if args.command == "replay":
            return _replay(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "search":
            return _search(args)
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "export":
            return _export(args)
        if args.command == "config":
            return _config(args)
        if args.command == "state":
            return asyncio.run(_state(args))
    except (CliError, ConfigError, ConversionError, FileNotFoundError, CaptureError) as exc:
        print(f"arbkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `arbkit analyze | head`: the reader left; nothing is wrong
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - no flush error at exit
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
