"""``arbkit replay``, ``arbkit sweep`` and ``arbkit search``: captures (files or a
catalogue selection) through the detector and the paper executor, once, over a grid, or
under an Optuna search, on local processes or Dask."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from arbkit.cli_common import (
    CliError,
    capture_file,
    execution_config,
    money_json,
    positive,
    print_json,
    usd,
    utc_ns,
)
from arbkit.config.execution_loader import (
    apply_overrides,
)
from arbkit.config.loader import load_symbol_map


def replay_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from arbkit.analysis.replay import replay

    cfg = execution_config(
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
        prepared, symbols, map_file = prepare_catalogue(args)
        args.capture = f"catalogue {args.catalogue}"
    else:
        if not args.capture:
            raise CliError("give a capture file (or --catalogue DIR for a selection)")
        if args.symbol or args.since or args.until:
            raise CliError("--symbol/--since/--until select from a catalogue: add --catalogue DIR")
        capture_file(args.capture)
        symbols, map_file = capture_symbols(args.symbols, args.capture)
        t0 = time.perf_counter()
        prepared = prepare_capture(args, symbols)
    map_matches(prepared, symbols, args.capture, map_file)
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
        print_json(
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
                **money_json("realized_pnl", res.realized_pnl),
                **money_json("hedge_cost", res.hedge_cost),
                **money_json("max_exposure", res.max_exposure),
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
        f"{res.contracts_filled}, realized PnL {usd(res.realized_pnl)}, "
        f"hedge cost {usd(res.hedge_cost)}, "
        f"max exposure {usd(res.max_exposure)}"
    )
    if args.db:
        print(f"rows written to {args.db}")
    return 0


def sweep_inputs(args: argparse.Namespace) -> tuple[list[str], Any]:
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
            since, until = utc_ns(args.since, "--since"), utc_ns(args.until, "--until")
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
                capture_file(c)
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


def catalogue_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--catalogue",
        default=None,
        metavar="DIR",
        help="a catalogue selection (the captures in DIR, in time order) instead of files",
    )
    p.add_argument("--symbol", action="append", default=[], help="with --catalogue: only this")
    p.add_argument("--since", default=None, help="with --catalogue: from this UTC date/time")
    p.add_argument("--until", default=None, help="with --catalogue: up to this UTC date/time")


def sweep_command(args: argparse.Namespace) -> int:
    """Every (parameter set × capture) job on local processes or Dask. Each finished job
    is written to the job store as it completes; ``--resume`` skips the finished ones."""
    import json

    from tqdm import tqdm

    from arbkit.analysis.executors import SweepContext, make_executor, run_sweep
    from arbkit.analysis.replay import SweepRow, combinations, parse_grid, write_table
    from arbkit.analysis.sweep_jobs import ResultStore, capture_ref, plan, replay_result

    positive(args.jobs, "--jobs")
    workers = positive(args.workers, "--workers") if args.workers is not None else args.jobs
    if args.scheduler and args.executor != "dask":
        raise CliError(f"--scheduler {args.scheduler}: needs --executor dask")
    paths, symbols = sweep_inputs(args)
    cfg = execution_config(args.execution, "paper", args.set)
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
            f"  PnL {usd(pnl):>12}  opps {opps:>5}  executed {executed:>4}  "
            + " ".join(f"{k}={v}" for k, v in params.items())
        )
    return 0


def search_command(args: argparse.Namespace) -> int:
    """Optuna over ``--range``s (journal storage: resumable, shareable); the best set is
    written into the trader's own execution config (``--execution``) as a new file."""
    import json

    from tqdm import tqdm

    from arbkit.analysis.executors import SweepContext, make_executor
    from arbkit.analysis.search import parse_range, search, write_best, write_trials
    from arbkit.analysis.sweep_jobs import capture_ref

    positive(args.trials, "--trials")
    positive(args.jobs, "--jobs")
    if args.scheduler and args.executor != "dask":
        raise CliError(f"--scheduler {args.scheduler}: needs --executor dask")
    paths, symbols = sweep_inputs(args)
    user = execution_config(args.execution, None, args.set)  # what best.toml keeps
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
        f"{usd(b.in_sample_units)}"
        + ("" if b.out_of_sample_units is None else f", out-of-sample {usd(b.out_of_sample_units)}")
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


def prepare_capture(args: argparse.Namespace, symbols: Any) -> Any:
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


def prepare_catalogue(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """A catalogue selection, merged in time order, with the map its captures recorded
    (or ``--symbols``), as one prepared stream."""
    from arbkit.analysis.catalogue import (
        Catalogue,
        CatalogueError,
        prepare_selection,
        selection_symbol_map,
    )

    since, until = utc_ns(args.since, "--since"), utc_ns(args.until, "--until")
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


def capture_symbols(given: str | None, capture: str) -> tuple[Any, str]:
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


def map_matches(prepared: Any, symbols: Any, capture: str, map_file: str) -> None:
    """A map that names none of the capture's instruments would replay to all zeros:
    say so instead of printing numbers that look like a quiet market."""
    if prepared.events and not prepared.batches and not prepared.lifecycle:
        names = sorted(symbols.symbols)
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise CliError(
            f"{capture}: none of its {prepared.events:,} events is for an instrument of "
            f"{map_file} ({shown}): that is not the map this capture was recorded with"
        )


def add_parsers(sub: Any) -> None:
    """The replay, sweep and search subcommands (``sub``: the CLI's subparsers)."""
    r = sub.add_parser("replay", help="feed a capture through the detector and paper executor")
    r.add_argument("capture", nargs="?", default=None, help="capture file (.jsonl or .jsonl.gz)")
    catalogue_arguments(r)
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
    catalogue_arguments(w)
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
    catalogue_arguments(se)
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
