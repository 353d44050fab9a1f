"""The ``arbkit`` command line: demo, sim, monitor, match, captures, analyze, export, config,
state (replay, sweep and search live in :mod:`arbkit.replay_cli`, shared helpers in
:mod:`arbkit.cli_common`)."""

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

from arbkit.cli_common import (
    CliError,
    execution_config,
    positive,
    usd,
    utc_ns,
)
from arbkit.config._toml import ConfigError
from arbkit.config.execution_loader import (
    EXAMPLE_EXECUTION,
    LIVE_CONFIRM_ENV,
)
from arbkit.config.loader import load_symbol_map
from arbkit.model import ConversionError, Money
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
    positive(args.symbols, "--symbols")
    if args.record and Path(args.record).exists():
        raise CliError(f"--record {args.record}: the file exists; choose another path or delete it")
    cfg = execution_config(
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
                        f"hedged={c['executions_hedged']} pnl={usd(s.realized_pnl)} "
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
        f"unhedged {c['executions_unhedged']}; realized PnL {usd(snap.realized_pnl)}, "
        f"hedge cost {usd(snap.hedge_cost)}; kill switch "
        f"{'ON: ' + snap.kill_reason if snap.kill_switch else 'off'}."
    )
    console.print(f"Positions: {positions_line(snap)}")
    for event in venues.events:
        console.print(f"Market lifecycle: {event}")
    for row in monitor.settlements:
        console.print(
            f"Settled {row.symbol} on {row.venue.value}: result {row.result.value}, "
            f"held {row.yes_qty / 100:g} YES / {row.no_qty / 100:g} NO, paid {usd(row.payout)}"
        )
    if monitor.settlements and args.db:
        from arbkit.storage.database import Database

        async with Database(args.db) as db:
            done = [s for s in await db.settled_executions() if s.symbol in {
                r.symbol for r in monitor.settlements}]  # fmt: skip
        if done:
            console.print(
                f"Settled PnL of {len(done)} executions: "
                f"{usd(Money(sum(s.settled_pnl for s in done)))} "
                f"(expected at execution {usd(Money(sum(s.expected_profit for s in done)))})"
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

    positive(args.symbols, "--symbols")
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
    cfg = execution_config(args.execution, args.mode, args.set)
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


def _captures(args: argparse.Namespace) -> int:
    from arbkit.captures_cli import CapturesError, run

    try:
        return run(args, utc_ns)
    except CapturesError as exc:
        raise CliError(str(exc)) from None


def _analyze(args: argparse.Namespace) -> int:
    from arbkit.analysis.report import analyze_main

    db = _need_db(args.db)
    since_ns, until_ns = utc_ns(args.since, "--since"), utc_ns(args.until, "--until")
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
        cfg = execution_config(args.execution, None, args.set)
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

    from arbkit.replay_cli import add_parsers as add_replay_parsers

    add_replay_parsers(sub)

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
        if args.command in ("replay", "sweep", "search"):
            from arbkit import replay_cli

            command = {
                "replay": replay_cli.replay_command,
                "sweep": replay_cli.sweep_command,
                "search": replay_cli.search_command,
            }[args.command]
            return command(args)
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
