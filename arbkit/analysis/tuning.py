"""Parameter tuning over a capture: sweep rows → DataFrames, pivots, the best set, and
writing it back as an execution config. The notebook only calls these and plots.

Exact integer Money stays in the ``*_units`` columns; the ``*_usd`` float columns are
for plots and tables only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from arbkit.analysis.replay import PreparedCapture, SweepRow, sweep
from arbkit.config.execution_loader import (
    ExecutionConfig,
    apply_overrides,
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
