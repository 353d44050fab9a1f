"""Benchmark runner (issue 8): ``make bench`` or ``python benchmarks/run.py [names] [--quick]``.

Runs each selected benchmark, prints a table (figure, median, p99, target, met?) and writes
``data/bench/latest.json`` with the machine, the commit, a timestamp and every figure.
Captures and big databases are cached under ``data/bench/`` between runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import BENCH_DIR, Figure, git_commit, machine

# name → module under benchmarks/ exposing ``run(quick: bool) -> list[Figure]``
BENCHES: dict[str, str] = {
    "hot_path": "benchmarks.hot_path",
    "replay": "benchmarks.replay_bench",
    "sweep": "benchmarks.sweep_bench",
    "sweep_scale": "benchmarks.sweep_scale",
    "order_path": "benchmarks.order_path",
    "duckdb": "benchmarks.duckdb_bench",
    "live_monitor": "benchmarks.live_monitor",
}


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:,.1f}"
    return f"{v:,.2f}"


def print_table(figs: list[Figure], header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=header, title_justify="left")
    for col, just in (
        ("bench", "left"),
        ("figure", "left"),
        ("median", "right"),
        ("p99", "right"),
        ("value", "right"),
        ("unit", "left"),
        ("target", "left"),
        ("met?", "center"),
        ("note", "left"),
    ):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for f in figs:
        met = "—" if f.met is None else ("[green]yes[/]" if f.met else "[red]NO[/]")
        t.add_row(
            f.bench,
            f.name,
            _fmt(f.median),
            _fmt(f.p99),
            _fmt(f.value),
            f.unit,
            f.target,
            met,
            f.note,
        )
    Console(width=200).print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default all): {', '.join(BENCHES)}"
    )
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    ap.add_argument("--out", default=str(BENCH_DIR / "latest.json"))
    args = ap.parse_args(argv)
    names: list[str] = []
    for spec in args.names:
        names += [n.strip() for n in spec.split(",") if n.strip()]
    names = names or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHES)}")
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    info = machine()
    commit = git_commit()
    header = (
        f"arbkit benchmarks — commit {commit}, {info['cores']} cores, "
        f"{info['implementation']} {info['python']}, {info['platform']}"
    )
    print(header, flush=True)
    figs: list[Figure] = []
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    for name in names:
        print(f"… {name}", flush=True)
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(BENCHES[name])
            run: Callable[[bool], list[Figure]] = mod.run
            got = run(args.quick)
            for f in got:
                print(
                    f"   {f.name}: median={_fmt(f.median)} p99={_fmt(f.p99)} "
                    f"value={_fmt(f.value)} {f.unit}",
                    flush=True,
                )
            figs += got
        except Exception as exc:  # one broken bench must not hide the others' figures
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
            figs.append(Figure(name, "FAILED", "", note=errors[name][:120], met=False))
        durations[name] = round(time.perf_counter() - t0, 2)
    print_table(figs, header)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "machine": info,
        "quick": args.quick,
        "benches": names,
        "durations_s": durations,
        "errors": errors,
        "figures": [f.as_dict() for f in figs],
    }
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"wrote {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
