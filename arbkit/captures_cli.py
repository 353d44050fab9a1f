"""``arbkit captures``: the capture catalogue from the command line.

* ``arbkit captures [DIR] [--symbol S] [--since D] [--until D] [--coverage] [--json]``
  indexes ``DIR`` (default ``data/captures``; unchanged files come from the cache) and
  lists the captures, oldest first, with what each covers;
* ``arbkit captures import-kalshi-l2 ROOT --out DIR/NAME.jsonl.gz`` turns a
  hive-partitioned Parquet history into a replayable capture with its coverage.

The index is Parquet under ``DIR/.catalogue/`` (``captures``, ``capture_symbols``,
``coverage``): ``duckdb -c "SELECT * FROM 'data/captures/.catalogue/coverage.parquet'"``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from arbkit.analysis.catalogue import DEFAULT_DIR, CaptureInfo, Catalogue, CatalogueError


class CapturesError(Exception):
    """A user mistake: one line, exit 2."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "dir_or_action",
        nargs="?",
        default=None,
        metavar="DIR | import-kalshi-l2",
        help=f"catalogue directory (default {DEFAULT_DIR}) or import-kalshi-l2",
    )
    p.add_argument("root", nargs="?", default=None, help="import-kalshi-l2: the Parquet root")
    p.add_argument("--out", default=None, help="import-kalshi-l2: the capture to write")
    p.add_argument("--symbol", action="append", default=[], help="only captures holding it")
    p.add_argument("--since", default=None, help="UTC date or time (2026-12-01)")
    p.add_argument("--until", default=None, help="UTC date or time")
    p.add_argument("--coverage", action="store_true", help="list the coverage findings too")
    p.add_argument("--gap-s", type=int, default=10, help="a venue silent this long = missing")
    p.add_argument("--json", action="store_true", help="print JSON")


def _utc(ns: int) -> str:
    if not ns:
        return "—"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _row(e: CaptureInfo) -> str:
    span = (e.last_ns - e.first_ns) / 1e9
    kinds: dict[str, int] = {}
    for c in e.coverage:
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    cov = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "complete"
    return (
        f"{e.path}  {_utc(e.first_ns)} → {_utc(e.last_ns)} ({span:,.0f} s)  "
        f"{'+'.join(e.venues) or 'no events'}  events {e.events:,} "
        f"(kalshi {e.kalshi_events:,}, ibkr {e.ibkr_events:,})  "
        f"symbols {', '.join(e.symbols) or ('tickers ' + ', '.join(e.tickers[:3]))}  "
        f"map {e.symbols_file or 'none'}  coverage: {cov}"
    )


def run(args: argparse.Namespace, utc_ns: Callable[[str | None, str], int | None]) -> int:
    if args.dir_or_action == "import-kalshi-l2":
        return _import(args)
    root = args.dir_or_action or str(DEFAULT_DIR)
    try:
        cat = Catalogue(root, gap_s=args.gap_s)
        cat.index()
        picked = cat.select(
            args.symbol, utc_ns(args.since, "--since"), utc_ns(args.until, "--until")
        )
    except CatalogueError as exc:
        raise CapturesError(str(exc)) from None
    if args.json:
        print(json.dumps([e.to_json() for e in picked], indent=2))
        return 0
    print(f"{len(picked)} of {len(cat.entries)} captures in {root} (index {cat.index_dir})")
    for e in picked:
        print(_row(e))
        if args.coverage:
            for c in e.coverage:
                print(
                    f"    {c.kind:<13} {c.venue:<6} {c.key or '-':<24} {_utc(c.start_ns)} → "
                    f"{_utc(c.end_ns)} ({(c.end_ns - c.start_ns) / 1e9:,.1f} s) {c.detail}"
                )
    return 0


def _import(args: argparse.Namespace) -> int:
    from arbkit.analysis.kalshi_l2_import import L2ImportError, import_kalshi_l2

    if not args.root or not args.out:
        raise CapturesError(
            "import-kalshi-l2 needs the Parquet root and --out: "
            "arbkit captures import-kalshi-l2 ROOT --out data/captures/NAME.jsonl.gz"
        )
    try:
        rep = import_kalshi_l2(args.root, args.out)
    except (L2ImportError, OSError) as exc:
        raise CapturesError(str(exc)) from None
    except Exception as exc:  # duckdb errors on unreadable Parquet: one line, not a trace
        if type(exc).__module__.startswith("duckdb") or type(exc).__module__.startswith("_duckdb"):
            raise CapturesError(f"{args.root}: {exc}".splitlines()[0]) from None
        raise
    out: dict[str, Any] = {
        "capture": rep.out,
        "snapshots": rep.snapshots,
        "levels": rep.levels,
        "trades": rep.trades,
        "settlements": rep.settlements,
        "markets": rep.markets,
        "tickers": rep.tickers,
        "first_utc": _utc(rep.first_ns),
        "last_utc": _utc(rep.last_ns),
        "missing_intervals": sum(c.kind == "missing" for c in rep.coverage),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{rep.out}: {rep.snapshots:,} snapshots ({rep.levels:,} levels) of "
        f"{len(rep.tickers)} markets, {rep.trades:,} trades, {rep.settlements} settlements, "
        f"{_utc(rep.first_ns)} → {_utc(rep.last_ns)}; {out['missing_intervals']} missing "
        "intervals. Snapshots replay as snapshots (no invented deltas). It has no symbol "
        "map: replay it with --symbols pairing its Kalshi markets with ForecastEx."
    )
    return 0
