"""``arbkit analyze``: the database's headline numbers as text or JSON.

Every dollar amount is printed at one precision, $0.000001 (the unit money is stored
in), so nothing is rounded away and columns line up; JSON carries the same amounts as
exact decimal strings (never floats) and counts as integers. The summary also feeds
notebook 02 as a DataFrame (:func:`summary_frame`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from arbkit.analysis.queries import Analysis

_VENUE = {"kalshi": "Kalshi", "ibkr": "ForecastEx"}


def money(v: Decimal | int | None) -> str:
    """Dollars at six decimals, thousands separated: ``$1,234.500000``, ``-$0.010000``."""
    if v is None:
        return "-"
    d = Decimal(v).quantize(Decimal("0.000001"))
    text = f"{abs(d):,.6f}"
    return f"-${text}" if d < 0 else f"${text}"


def exact(v: Decimal | int | None) -> str | None:
    """A dollar amount for JSON: an exact decimal string with six decimals."""
    if v is None:
        return None
    return f"{Decimal(v).quantize(Decimal('0.000001')):f}"


def iso(ns: int | None) -> str:
    if ns is None:
        return "-"
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    t = t.replace(microsecond=(ns % 1_000_000_000) // 1_000)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def duration(ns: int) -> str:
    """``45.2 s``, ``12 min 5 s``, ``3 h 20 min``, ``2 d 4 h``: a span a trader reads."""
    s = ns / 1e9
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m} min {sec} s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min"
    d, h = divmod(h, 24)
    return f"{d} d {h} h"


def position_groups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Position rows (one per venue and outcome) grouped per symbol and mode: an arb is
    one position with two legs, not two positions."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        g = groups.setdefault(
            (r["symbol"], r["mode"]),
            {"symbol": r["symbol"], "mode": r["mode"], "legs": [], "cost_usd": Decimal(0)},
        )
        g["legs"].append(r)
        g["cost_usd"] += r["cost_usd"]
    return list(groups.values())


def contracts(d: Decimal) -> str:
    """``2``, ``0.5``: contracts without trailing zeros (Kalshi counts come in 0.01s)."""
    return str(int(d)) if d == d.to_integral_value() else f"{d.normalize():f}"


def _legs_text(legs: list[dict[str, Any]]) -> str:
    return " + ".join(
        f"{_VENUE.get(x['venue'], x['venue'])} {x['outcome'].upper()} {contracts(x['contracts'])}"
        for x in legs
    )


def summary_lines(s: dict[str, Any], window: str = "") -> list[str]:
    """The summary as plain lines; the first names the database, the run count and span."""
    first, last = s["first_ns"], s["last_ns"]
    span = (
        f"{iso(first)} → {iso(last)} ({duration(last - first)})"
        if first is not None and last is not None
        else "no rows"
    )
    runs = s["runs"]
    lines = [
        f"arbkit database {s['source']}: {runs} run{'s' if runs != 1 else ''}, {span}",
    ]
    if window:
        lines.append(f"filtered: {window}")
    lines += ["", "rows"]
    lines += [f"  {t:<16} {n:>12,}" for t, n in s["rows"].items()]
    lines += ["", f"realized PnL      {money(s['realized_pnl_usd'])}"]
    for mode, v in s["realized_pnl_usd_by_mode"].items():
        lines.append(f"  {mode:<15} {money(v)}")
    lines.append(f"hedge cost        {money(s['hedge_cost_usd'])}")
    lines += ["", "PnL by symbol"]
    lines.append(
        f"  {'symbol':<16} {'mode':<7} {'executions':>10} {'hedged':>6} "
        f"{'realized PnL':>14} {'expected':>14} {'hedge cost':>12}"
    )
    for r in s["pnl_by_symbol"]:
        lines.append(
            f"  {r['symbol']:<16} {r['mode']:<7} {r['executions']:>10,} {r['hedged']:>6,} "
            f"{money(r['realized_pnl_usd']):>14} {money(r['expected_profit_usd']):>14} "
            f"{money(r['hedge_cost_usd']):>12}"
        )
    if not s["pnl_by_symbol"]:
        lines.append("  (no executions)")
    groups = position_groups(s["positions"])
    legs = len(s["positions"])
    lines += [
        "",
        f"open positions    {len(groups)} ({legs} leg{'s' if legs != 1 else ''})"
        + (f"; {len(s['stale_positions'])} stale rows not counted" if s["stale_positions"] else ""),
    ]
    for g in groups:
        lines.append(
            f"  {g['symbol']:<16} {g['mode'] or '?':<7} {_legs_text(g['legs'])}, "
            f"cost {money(g['cost_usd'])}"
        )
    for x in s["stale_positions"]:
        lines.append(
            f"  stale: {x['symbol']} {_VENUE.get(x['venue'], x['venue'])} "
            f"{x['outcome'].upper()} {contracts(x['contracts'])} ({x['why']})"
        )
    lines += ["", "opportunities by decision"]
    lines += [f"  {k:<16} {n:>12,}" for k, n in s["opportunities_by_decision"].items()]
    lines += ["", "executions by state"]
    lines += [f"  {k:<16} {n:>12,}" for k, n in s["executions_by_state"].items()]
    lines += [
        "",
        f"  {'symbol':<16} {'opportunities':>13} {'best edge/ct':>13} "
        f"{'best profit':>13} {'lowest cost':>13}",
    ]
    for sym, b in s["by_symbol"].items():
        lines.append(
            f"  {sym:<16} {b.get('opportunities', 0):>13,} "
            f"{money(b.get('best_net_edge_per_contract_usd')):>13} "
            f"{money(b.get('best_expected_profit_usd')):>13} "
            f"{money(b.get('lowest_cost_to_arb_usd')):>13}"
        )
    return lines


def _jsonable(v: Any, key: str = "") -> Any:
    if isinstance(v, dict):
        return {k: _jsonable(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x, key) for x in v]
    if isinstance(v, Decimal):
        return exact(v) if key.endswith("_usd") or key.endswith("_usd_by_mode") else f"{v:f}"
    return v


def summary_json(s: dict[str, Any], window: dict[str, Any]) -> dict[str, Any]:
    """The summary as JSON-ready values: dollars as exact strings, counts as ints."""
    out: dict[str, Any] = _jsonable(
        {k: v for k, v in s.items() if k not in ("positions", "stale_positions")}
    )
    out["realized_pnl_usd_by_mode"] = {
        k: exact(v) for k, v in s["realized_pnl_usd_by_mode"].items()
    }
    out["hedge_cost_usd_by_mode"] = {k: exact(v) for k, v in s["hedge_cost_usd_by_mode"].items()}
    out["first"] = iso(s["first_ns"]) if s["first_ns"] is not None else None
    out["last"] = iso(s["last_ns"]) if s["last_ns"] is not None else None
    out["filter"] = window
    out["open_positions"] = [
        {
            "symbol": g["symbol"],
            "mode": g["mode"],
            "cost_usd": exact(g["cost_usd"]),
            "legs": [
                {
                    "venue": x["venue"],
                    "outcome": x["outcome"],
                    "contracts": f"{x['contracts']:f}",
                    "cost_usd": exact(x["cost_usd"]),
                    "updated": iso(x["updated_ns"]),
                    "run_id": x["run_id"],
                }
                for x in g["legs"]
            ],
        }
        for g in position_groups(s["positions"])
    ]
    out["stale_positions"] = [
        {
            "symbol": x["symbol"],
            "venue": x["venue"],
            "outcome": x["outcome"],
            "contracts": f"{x['contracts']:f}",
            "cost_usd": exact(x["cost_usd"]),
            "run_id": x["run_id"],
            "why": x["why"],
        }
        for x in s["stale_positions"]
    ]
    return out


def summary_frame(s: dict[str, Any]) -> pd.DataFrame:
    """The headline numbers as a two-column DataFrame (metric, value) for a notebook:
    dollars as exact ``$`` strings, counts as integers."""
    first, last = s["first_ns"], s["last_ns"]
    rows: list[tuple[str, object]] = [
        ("runs", s["runs"]),
        ("first", iso(first)),
        ("last", iso(last)),
        ("span", duration(last - first) if first is not None and last is not None else "-"),
    ]
    rows += [(f"rows: {t}", n) for t, n in s["rows"].items()]
    rows.append(("realized PnL", money(s["realized_pnl_usd"])))
    rows += [(f"realized PnL: {m}", money(v)) for m, v in s["realized_pnl_usd_by_mode"].items()]
    rows.append(("hedge cost", money(s["hedge_cost_usd"])))
    rows.append(("open positions", len(position_groups(s["positions"]))))
    rows.append(("stale position rows (not counted)", len(s["stale_positions"])))
    rows += [(f"opportunities: {k}", n) for k, n in s["opportunities_by_decision"].items()]
    rows += [(f"executions: {k}", n) for k, n in s["executions_by_state"].items()]
    return pd.DataFrame(rows, columns=["metric", "value"]).set_index("metric")


def pnl_frame(s: dict[str, Any]) -> pd.DataFrame:
    """Per-symbol PnL as a table: counts as integers, dollars as exact ``$`` strings."""
    cols = ["symbol", "mode", "executions", "done", "hedged", "unhedged", "open"]
    rows = [
        {
            **{c: r[c] for c in cols},
            "realized PnL": money(r["realized_pnl_usd"]),
            "expected at execution": money(r["expected_profit_usd"]),
            "hedge cost": money(r["hedge_cost_usd"]),
        }
        for r in s["pnl_by_symbol"]
    ]
    return pd.DataFrame(
        rows, columns=[*cols, "realized PnL", "expected at execution", "hedge cost"]
    )


def positions_frame(s: dict[str, Any]) -> pd.DataFrame:
    """Open positions, one row per symbol held (its legs in one cell), exact dollars."""
    rows = [
        {
            "symbol": g["symbol"],
            "mode": g["mode"],
            "legs": _legs_text(g["legs"]),
            "cost": money(g["cost_usd"]),
            "updated": iso(max(x["updated_ns"] for x in g["legs"])),
            "run": g["legs"][0]["run_id"],
        }
        for g in position_groups(s["positions"])
    ]
    return pd.DataFrame(rows, columns=["symbol", "mode", "legs", "cost", "updated", "run"])


def window_text(run: str | None, since_ns: int | None, until_ns: int | None) -> str:
    parts = [
        f"run {run}" if run else "",
        f"since {iso(since_ns)}" if since_ns is not None else "",
        f"until {iso(until_ns)}" if until_ns is not None else "",
    ]
    return ", ".join(p for p in parts if p)


def analyze_main(
    db: Path,
    console_print: Callable[..., Any] = print,
    *,
    run: str | None = None,
    since_ns: int | None = None,
    until_ns: int | None = None,
    list_runs: bool = False,
    as_json: bool = False,
) -> int:
    """``arbkit analyze [--db PATH] [--run ID] [--since T] [--until T] [--runs] [--json]``.

    Raises ``ValueError`` (one line: no such run, not an arbkit database) for the CLI to
    print as an error with exit 2.
    """
    with Analysis(db, run=run, since_ns=since_ns, until_ns=until_ns) as analysis:
        if list_runs:
            runs = analysis.runs()
            if as_json:
                console_print(
                    json.dumps(
                        [
                            {**r, "started_at": str(r["started_at"]), "ended_at": _opt(r)}
                            for r in runs
                        ],
                        indent=2,
                    )
                )
                return 0
            for r in runs:
                ended = r["ended_at"] or "running or crashed"
                console_print(
                    f"{r['run_id']}  {r['mode']:<7} {r['started_at']} → {ended}  "
                    f"config {r['config_digest']}  {r['command']}"
                )
            if not runs:
                console_print(f"{db}: no runs recorded")
            return 0
        summary = analysis.summary()
    if as_json:
        window = {
            "run": run,
            "since": iso(since_ns) if since_ns is not None else None,
            "until": iso(until_ns) if until_ns is not None else None,
        }
        console_print(json.dumps(summary_json(summary, window), indent=2))
        return 0
    for line in summary_lines(summary, window_text(run, since_ns, until_ns)):
        console_print(line)
    return 0


def _opt(r: dict[str, Any]) -> str | None:
    return None if r["ended_at"] is None else str(r["ended_at"])
