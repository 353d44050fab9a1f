"""Parameter tuning over a capture: sweep rows → DataFrames, pivots, the best set, and
writing it back as an execution config. The notebook only calls these and plots.

Exact integer Money stays in the ``*_units`` columns; the ``*_usd`` float columns are
for plots and tables only.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pandas as pd

from arbkit.analysis.replay import PreparedCapture, SweepRow, combinations, sweep
from arbkit.config._toml import ConfigError
from arbkit.config.execution_loader import (
    EXAMPLE_EXECUTION,
    ExecutionConfig,
    apply_overrides,
    execution_config_toml,
    load_execution_config,
    parse_execution_config,
    write_execution_config,
)
from arbkit.config.loader import SymbolMap
from arbkit.model import MONEY_SCALE, Mode

RESULT_COLUMNS = (
    "opportunities",
    "executed",
    "executions_done",
    "executions_hedged",
    "executions_unhedged",
    "contracts_filled",
    "realized_pnl_units",
    "expected_profit_units",
    "hedge_cost_units",
    "max_exposure_units",
)


def rows_frame(rows: Sequence[SweepRow]) -> pd.DataFrame:
    """One row per combination: the grid's keys (as given), exact results, display floats."""
    records: list[dict[str, object]] = []
    for r in rows:
        res = r.result
        rec: dict[str, object] = dict(r.params)
        rec.update(
            combination=" ".join(f"{k}={v}" for k, v in r.params.items()),
            opportunities=res.opportunities,
            executed=res.executed,
            executions_done=res.executions_done,
            executions_hedged=res.executions_hedged,
            executions_unhedged=res.executions_unhedged,
            contracts_filled=res.contracts_filled,
            realized_pnl_units=int(res.realized_pnl),
            expected_profit_units=int(res.expected_profit),
            hedge_cost_units=int(res.hedge_cost),
            max_exposure_units=int(res.max_exposure),
        )
        for k in ("realized_pnl", "expected_profit", "hedge_cost", "max_exposure"):
            rec[f"{k}_usd"] = int(rec[f"{k}_units"]) / MONEY_SCALE  # type: ignore[call-overload]
        records.append(rec)
    return pd.DataFrame.from_records(records)


def pivot(
    df: pd.DataFrame, index: str, columns: str, value: str = "realized_pnl_usd"
) -> pd.DataFrame:
    """``value`` as a table of ``index`` × ``columns``, axes in numeric order."""
    table = df.pivot_table(index=index, columns=columns, values=value, aggfunc="first")
    table = table.loc[sorted(table.index, key=_num), sorted(table.columns, key=_num)]
    return table


def _num(v: object) -> float:
    try:
        return float(str(v))
    except ValueError:
        return float("inf")


def best_params(
    df: pd.DataFrame, keys: Sequence[str], by: str = "realized_pnl_units"
) -> dict[str, str]:
    """The grid point with the highest ``by``; ties go to fewer unhedged/hedged executions,
    then to the first combination in grid order (the more conservative end if the grid
    is listed conservative-first)."""
    if df.empty:
        raise ValueError("no sweep rows to choose from")
    order = df.assign(_pos=range(len(df))).sort_values(
        [by, "executions_unhedged", "executions_hedged", "_pos"],
        ascending=[False, True, True, True],
        kind="mergesort",
    )
    top = order.iloc[0]
    return {k: str(top[k]) for k in keys}


def apply_params(
    base: ExecutionConfig, params: dict[str, str], mode: Mode | None = None
) -> ExecutionConfig:
    """``base`` with the chosen grid point applied (same conversions as the config file)."""
    cfg = apply_overrides(base, params, "tuning")
    if mode is not None:
        cfg = apply_overrides(cfg, {"mode": mode.value}, "tuning")
    return cfg


def write_tuned_config(
    base: ExecutionConfig, params: dict[str, str], path: str | Path, *, note: str = ""
) -> tuple[ExecutionConfig, Path]:
    """Apply ``params`` to ``base`` and write an execution config file that
    ``load_execution_config`` reads back exactly. Never writes mode = "live"."""
    cfg = apply_params(base, params)
    if cfg.mode is Mode.LIVE:
        cfg = apply_params(cfg, {}, Mode.PAPER)
    header = "arbkit execution config written by parameter tuning\n" + "\n".join(
        f"{k} = {v}" for k, v in params.items()
    )
    if note:
        header += "\n" + note
    return cfg, write_execution_config(cfg, path, header=header)


async def sweep_async(
    prepared: PreparedCapture,
    symbol_map: SymbolMap,
    base: ExecutionConfig,
    grid: dict[str, list[str]],
    *,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> list[SweepRow]:
    """``sweep`` off the event loop (a notebook kernel's loop is running, and each replay
    uses ``asyncio.run``), so the kernel stays responsive while it runs."""
    return await asyncio.to_thread(
        sweep, prepared, symbol_map, base, grid, jobs=jobs, progress=progress
    )


async def sweep_frame(
    prepared: PreparedCapture,
    symbol_map: SymbolMap,
    base: ExecutionConfig,
    grid: dict[str, list[str]],
    *,
    jobs: int = 1,
    desc: str = "sweep",
) -> pd.DataFrame:
    """Sweep with a ``tqdm.auto`` progress bar (a widget in a notebook); the bar is
    updated on the event loop's thread, never from the worker."""
    from tqdm.auto import tqdm

    total = 1
    for values in grid.values():
        total *= len(values)
    loop = asyncio.get_running_loop()
    bar = tqdm(total=total, desc=desc, unit="combo")

    def progress(_done: int, _total: int) -> None:
        loop.call_soon_threadsafe(bar.update, 1)

    try:
        rows = await sweep_async(prepared, symbol_map, base, grid, jobs=jobs, progress=progress)
        await asyncio.sleep(0)  # let the last queued bar updates run
    finally:
        bar.close()
    return rows_frame(rows)


# ------------------------------------------------------------ ranges and grids ---
def grid_values(spec: str | Sequence[str | int | float]) -> list[str]:
    """A parameter's values: a list as given, ``"a,b,c"``, or a range ``"start:stop:step"``
    (inclusive of ``stop`` when it falls on the step), computed in exact decimals so
    ``"0.005:0.03:0.005"`` gives ``0.005 … 0.030`` with no float drift."""
    if not isinstance(spec, str):
        return [str(v) for v in spec]
    if ":" not in spec:
        return [v.strip() for v in spec.split(",") if v.strip()]
    parts = [p.strip() for p in spec.split(":")]
    if len(parts) != 3:
        raise ValueError(f"range {spec!r}: use start:stop:step, e.g. 0.005:0.03:0.005")
    try:
        start, stop, step = (Decimal(p) for p in parts)
    except InvalidOperation:
        raise ValueError(f"range {spec!r}: start, stop and step must be numbers") from None
    if step <= 0 or stop < start:
        raise ValueError(f"range {spec!r}: needs step > 0 and stop >= start")
    n = int((stop - start) / step)
    if n > 1_000:
        raise ValueError(f"range {spec!r}: {n + 1} values; use a larger step")
    return [str(start + i * step) for i in range(n + 1)]


def grid_of(specs: dict[str, str | Sequence[str | int | float]]) -> dict[str, list[str]]:
    """``{key: list or range}`` → the grid ``sweep`` takes."""
    grid = {k: grid_values(v) for k, v in specs.items()}
    empty = [k for k, v in grid.items() if not v]
    if empty:
        raise ValueError(f"no values for {', '.join(empty)}")
    return grid


# --------------------------------------------------------- risk-adjusted score ---
# The objective a setting is ranked by, exactly in integer micro-dollars:
#
#     score = realized PnL − HEDGE_WEIGHT × hedge cost − ⌈max exposure × EXPOSURE_CHARGE_BPS / 10⁴⌉
#
# * realized PnL: what the replay's paper executions locked in (already net of hedges).
# * hedge cost: a hedge is a second leg that missed, the leg risk a short capture
#   under-samples; it is inside PnL already and is subtracted once more (weight 1), so a
#   setting that needs hedges to make its PnL ranks below one that does not.
# * max exposure: the peak capital the setting tied up in open positions. λ =
#   EXPOSURE_CHARGE_BPS / 10⁴ = 1 % of that peak: the same PnL made with twice the capital
#   at risk scores lower (the charge is rounded up, against the setting).
# * unhedged executions: each one left naked halts live trading; $1.00 apiece, so a
#   setting that leaves legs unhedged in replay never wins on PnL alone.
# The one objective of the tuning notebook, `arbkit sweep` rankings and `arbkit search`.
EXPOSURE_CHARGE_BPS = 100
HEDGE_WEIGHT = 1
UNHEDGED_PENALTY_UNITS = 1_000_000


def risk_adjusted_units(
    realized_pnl: int,
    hedge_cost: int,
    max_exposure: int,
    executions_unhedged: int = 0,
    *,
    exposure_charge_bps: int = EXPOSURE_CHARGE_BPS,
    hedge_weight: int = HEDGE_WEIGHT,
    unhedged_penalty_units: int = UNHEDGED_PENALTY_UNITS,
) -> int:
    """The score above, in $0.000001 (integers in, integer out)."""
    charge = -(-max_exposure * exposure_charge_bps // 10_000)  # ceil for max_exposure >= 0
    return (
        realized_pnl
        - hedge_weight * hedge_cost
        - charge
        - executions_unhedged * unhedged_penalty_units
    )


def with_score(df: pd.DataFrame, prefix: str = "", **kw: int) -> pd.DataFrame:
    """``df`` with ``<prefix>score_units`` (exact) and ``<prefix>score_usd`` (display)."""
    out = df.copy()
    unhedged = out.get(f"{prefix}executions_unhedged", pd.Series([0] * len(out), index=out.index))
    out[f"{prefix}score_units"] = [
        risk_adjusted_units(int(p), int(h), int(e), int(u), **kw)
        for p, h, e, u in zip(
            out[f"{prefix}realized_pnl_units"],
            out[f"{prefix}hedge_cost_units"],
            out[f"{prefix}max_exposure_units"],
            unhedged,
            strict=True,
        )
    ]
    out[f"{prefix}score_usd"] = out[f"{prefix}score_units"] / MONEY_SCALE
    return out


# ----------------------------------------------------------- out of sample ---
IN_SAMPLE_FRACTION = (7, 10)  # the first 70 % of the capture's time span


def split_ns(prepared: PreparedCapture, fraction: tuple[int, int] = IN_SAMPLE_FRACTION) -> int:
    """The receive time that cuts the capture's span at ``fraction`` (integer ns)."""
    if not prepared.batches:
        raise ValueError(f"{prepared.source or 'capture'}: no tick batches to split")
    first, last = prepared.batches[0][0], prepared.batches[-1][0]
    num, den = fraction
    return first + (last - first) * num // den


def in_sample(prepared: PreparedCapture, cut_ns: int) -> PreparedCapture:
    """The part of the capture received before ``cut_ns`` (batches and lifecycle)."""
    return replace(
        prepared,
        batches=[b for b in prepared.batches if b[0] < cut_ns],
        lifecycle=[e for e in prepared.lifecycle if e.recv_ts_ns < cut_ns],
    )


ADDITIVE = (
    "opportunities",
    "executed",
    "executions_done",
    "executions_hedged",
    "executions_unhedged",
    "contracts_filled",
    "realized_pnl_units",
    "expected_profit_units",
    "hedge_cost_units",
)


def split_frame(
    in_rows: Sequence[SweepRow],
    full_rows: Sequence[SweepRow],
    **kw: int,
) -> pd.DataFrame:
    """One row per combination with ``is_*`` (tuned on) and ``oos_*`` (reported on)
    results and both scores.

    A replay is deterministic and causal, so the full capture's replay does exactly what
    the in-sample replay did up to the cut: the out-of-sample counts and money are the
    full run minus the in-sample run (exact). The replay reports one peak exposure per
    run, so ``oos_max_exposure`` is the peak over the whole capture — positions carried
    over the cut are still held out of sample — an upper bound for that window, which
    makes the out-of-sample score, if anything, conservative.
    """
    a, b = rows_frame(in_rows), rows_frame(full_rows)
    if list(a["combination"]) != list(b["combination"]):
        raise ValueError("in-sample and full sweeps cover different grids")
    keys = [c for c in a.columns if "." in c]
    out = a[[*keys, "combination"]].copy()
    for col in (*ADDITIVE, "max_exposure_units"):
        out[f"is_{col}"] = a[col]
        if col in ADDITIVE:
            out[f"oos_{col}"] = b[col] - a[col]
        else:
            out[f"oos_{col}"] = b[col]
    # the whole-capture peak is the held-out window's own when it was reached there
    out["oos_max_exposure_exact"] = b["max_exposure_units"] > a["max_exposure_units"]
    for prefix in ("is_", "oos_"):
        out = with_score(out, prefix, **kw)
        for k in ("realized_pnl", "hedge_cost", "max_exposure"):
            out[f"{prefix}{k}_usd"] = out[f"{prefix}{k}_units"] / MONEY_SCALE
    return out


async def sweep_split(
    prepared: PreparedCapture,
    symbol_map: SymbolMap,
    base: ExecutionConfig,
    grid: dict[str, list[str]],
    *,
    jobs: int = 1,
    fraction: tuple[int, int] = IN_SAMPLE_FRACTION,
    exposure_charge_bps: int = EXPOSURE_CHARGE_BPS,
    desc: str = "sweep",
) -> tuple[pd.DataFrame, int]:
    """Sweep ``grid`` on the first ``fraction`` of the capture and on all of it; returns
    (``split_frame``, the cut time in ns)."""
    cut = split_ns(prepared, fraction)
    part = in_sample(prepared, cut)
    rows_in = await _sweep_rows(part, symbol_map, base, grid, jobs, f"{desc} (in-sample)")
    rows_full = await _sweep_rows(prepared, symbol_map, base, grid, jobs, f"{desc} (all)")
    return split_frame(rows_in, rows_full, exposure_charge_bps=exposure_charge_bps), cut


async def _sweep_rows(
    prepared: PreparedCapture,
    symbol_map: SymbolMap,
    base: ExecutionConfig,
    grid: dict[str, list[str]],
    jobs: int,
    desc: str,
) -> list[SweepRow]:
    from tqdm.auto import tqdm

    total = len(combinations(grid))
    loop = asyncio.get_running_loop()
    bar = tqdm(total=total, desc=desc, unit="combo")

    def progress(_done: int, _total: int) -> None:
        loop.call_soon_threadsafe(bar.update, 1)

    try:
        rows = await sweep_async(prepared, symbol_map, base, grid, jobs=jobs, progress=progress)
        await asyncio.sleep(0)
    finally:
        bar.close()
    return rows


def choose(df: pd.DataFrame, keys: Sequence[str], by: str = "is_score_units") -> dict[str, str]:
    """The combination with the best in-sample score (ties: fewer unhedged, then fewer
    hedged executions, then the lower peak exposure in sample, then grid order)."""
    if df.empty:
        raise ValueError("no sweep rows to choose from")
    order = df.assign(_pos=range(len(df))).sort_values(
        [by, "is_executions_unhedged", "is_executions_hedged", "is_max_exposure_units", "_pos"],
        ascending=[False, True, True, True, True],
        kind="mergesort",
    )
    top = order.iloc[0]
    return {k: str(top[k]) for k in keys}


# -------------------------------------------- the trader's own execution config ---
def load_base(path: str | Path | None) -> tuple[ExecutionConfig, Path]:
    """The trader's execution config (the example file when ``path`` is None) and the
    config the replays use: the same with ``mode = "paper"`` (a monitor-mode file would
    replay without executing anything)."""
    src = Path(path) if path is not None else EXAMPLE_EXECUTION
    cfg = load_execution_config(src)
    return apply_overrides(cfg, {"mode": Mode.PAPER.value}, "tuning"), src


def _rendered(cfg: ExecutionConfig) -> dict[str, str]:
    """``section.key`` → its TOML value text, as ``execution_config_toml`` writes it."""
    out: dict[str, str] = {}
    section = ""
    for line in execution_config_toml(cfg).splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("["):
            section = s.strip("[]")
            continue
        key, _, value = s.partition(" = ")
        out[f"{section}.{key}" if section else key] = value
    return out


_LINE = re.compile(r"^(\s*)([A-Za-z0-9_\-]+)(\s*=\s*)(.*?)(\s+#.*)?$")


def _set_value(text: str, dotted: str, value: str) -> str:
    """``text`` with ``dotted`` (``section.key`` or a top-level key) set to ``value``:
    the key's line is rewritten in place (its comment kept) or added to its section
    (the section appended if the file has none)."""
    section, _, key = dotted.rpartition(".")
    lines = text.splitlines()
    current = ""
    header_at: int | None = 0 if not section else None
    end_of_section: int | None = None
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("[") and not s.startswith("[["):
            name = s.split("]")[0].strip("[ ")
            if current == section and header_at is not None and end_of_section is None:
                end_of_section = i
            current = name
            if name == section:
                header_at = i
            continue
        if current != section:
            continue
        m = _LINE.match(line)
        if m and m.group(2) == key:
            head = f"{m.group(1)}{key}{m.group(3)}{value}"
            comment = m.group(5) or ""
            if comment:  # keep the comment in its column when there is room
                column = len(line) - len(comment) + (len(comment) - len(comment.lstrip()))
                comment = " " * max(1, column - len(head)) + comment.lstrip()
            lines[i] = head + comment
            return "\n".join(lines) + "\n"
    new_line = f"{key} = {value}  # set by parameter tuning"
    if header_at is None:
        lines += ["", f"[{section}]", new_line]
    else:
        at = end_of_section if end_of_section is not None else len(lines)
        if not section:  # top level: before the first table
            at = next((i for i, x in enumerate(lines) if x.strip().startswith("[")), len(lines))
        while at > header_at + 1 and not lines[at - 1].strip():
            at -= 1
        lines.insert(at, new_line)
    return "\n".join(lines) + "\n"


def write_tuned_file(
    source: str | Path,
    params: dict[str, str],
    out: str | Path,
    *,
    note: str = "",
) -> tuple[ExecutionConfig, Path]:
    """The trader's file ``source`` with only the tuned keys changed, written to ``out``.

    Every other line — risk limits, fees, comments — is kept as the trader wrote it. The
    file is written only if it reads back to exactly ``source``'s config with ``params``
    applied; ``mode = "live"`` is written as ``"paper"`` (new settings get paper-traded
    first; the trader switches to live by hand).
    """
    src = Path(source)
    user = load_execution_config(src)
    tuned = apply_overrides(user, params, "tuning")
    changes = dict(params)
    if tuned.mode is Mode.LIVE:
        tuned = apply_overrides(tuned, {"mode": Mode.PAPER.value}, "tuning")
        changes["mode"] = Mode.PAPER.value
    rendered = _rendered(tuned)
    text = src.read_text(encoding="utf-8")
    for key in changes:
        text = _set_value(text, key, rendered[key])
    header = [
        f"# tuned from {src.name} by arbkit parameter tuning: "
        + ", ".join(f"{k} = {v}" for k, v in params.items())
    ]
    if note:
        header += [f"# {line}" for line in note.splitlines()]
    text = "\n".join(header) + "\n" + text
    p = Path(out)
    refuse = ValueError(
        f"{src}: could not change only {', '.join(changes)} in this file's layout "
        "(a dotted key or inline table?); refusing to write a file that would differ"
    )
    try:
        same = parse_execution_config(tomllib.loads(text), p) == replace(tuned, source=str(p))
    except (tomllib.TOMLDecodeError, ConfigError):
        raise refuse from None
    if not same:
        raise refuse
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return tuned, p


def current_values(cfg: ExecutionConfig, keys: Sequence[str]) -> dict[str, str]:
    """The config's own values of ``keys`` as grid strings (``"0.01"``, ``"100"``)."""
    rendered = _rendered(cfg)
    return {k: rendered[k].strip('"') for k in keys}


def _same(a: str, b: str) -> bool:
    try:
        return Decimal(a) == Decimal(b)
    except InvalidOperation:
        return a == b


def with_current(grid: dict[str, list[str]], cfg: ExecutionConfig) -> dict[str, list[str]]:
    """``grid`` with the config's own value of every key in it (added at the front when
    missing): the trader's current setting is always one of the combinations replayed,
    so a new one is compared against it, not only against other candidates."""
    now = current_values(cfg, list(grid))
    out: dict[str, list[str]] = {}
    for k, values in grid.items():
        out[k] = values if any(_same(v, now[k]) for v in values) else [now[k], *values]
    return out


def row_of(df: pd.DataFrame, params: dict[str, str]) -> pd.Series:
    """The sweep row of ``params`` (values compared as numbers: ``0.01`` = ``0.010``)."""
    hit = df[[all(_same(str(r[k]), v) for k, v in params.items()) for _, r in df.iterrows()]]
    if hit.empty:
        raise KeyError(f"no sweep row for {params}")
    return hit.iloc[0]


def guard(
    df: pd.DataFrame, chosen: dict[str, str], current: dict[str, str]
) -> tuple[dict[str, str], str]:
    """Keep ``chosen`` (best in sample) only if the held-out part agrees that it beats
    the trader's current setting; otherwise keep the current values. A setting that won
    on the tuned part but loses out of sample won on noise, and more size or less edge
    is more risk: it is not worth changing the file for. A tie out of sample keeps the
    current values too."""
    c, now = row_of(df, chosen), row_of(df, current)
    if all(_same(chosen[k], current[k]) for k in chosen):
        return current, "the best in-sample setting is your current one"
    new_oos, cur_oos = int(c["oos_score_units"]), int(now["oos_score_units"])
    if new_oos > cur_oos:
        return chosen, (
            f"out of sample it scores {_usd(new_oos)} vs {_usd(cur_oos)} for your current setting"
        )
    return current, (
        f"kept your current setting: the in-sample best scores {_usd(new_oos)} out of sample, "
        f"{'the same as' if new_oos == cur_oos else 'below'} your current {_usd(cur_oos)} "
        "(an in-sample gain the held-out part does not confirm)"
    )


def _usd(units: int) -> str:
    """Exact dollars from micro-dollar units, six decimals (as ``arbkit analyze``)."""
    d = Decimal(units).scaleb(-6)
    return f"-${abs(d):,.6f}" if d < 0 else f"${d:,.6f}"
