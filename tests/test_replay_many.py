"""replay_many (the sweep's one-pass replay of many parameter sets) must give exactly what
one ``replay`` per parameter set gives, on a capture with opportunities and executions."""

from __future__ import annotations

from pathlib import Path

import pytest

from arbkit.analysis.replay import (
    PreparedCapture,
    combinations,
    prepare_file,
    replay,
    replay_many,
    sweep,
)
from arbkit.config.execution_loader import ExecutionConfig, apply_overrides
from arbkit.config.loader import SymbolMap
from benchmarks.capture_gen import generate

GRID = {
    "detector.min_edge_usd": ["0", "0.01", "0.04"],
    "detector.max_contracts_per_trade": ["1", "50"],
    "risk.max_consecutive_failures": ["3", "1000"],
}


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> tuple[PreparedCapture, SymbolMap]:
    d: Path = tmp_path_factory.mktemp("cap")
    cap, sym = d / "cap.jsonl", d / "symbols.toml"
    with cap.open("wb") as fh:
        generate(fh, 30_000, 8, 3, sym)
    from arbkit.config.loader import load_symbol_map

    symbols = load_symbol_map(sym)
    return prepare_file(cap, symbols), symbols


def _base() -> ExecutionConfig:
    return apply_overrides(ExecutionConfig(), {"mode": "paper"})


async def test_replay_many_equals_one_replay_per_config(
    captured: tuple[PreparedCapture, SymbolMap],
) -> None:
    prepared, symbols = captured
    cfgs = [apply_overrides(_base(), c) for c in combinations(GRID)]
    one_by_one = [await replay(prepared, symbols, c) for c in cfgs]
    assert sum(r.executed for r in one_by_one) > 0  # the capture exercises the executor
    assert await replay_many(prepared, symbols, cfgs) == one_by_one


async def test_replay_many_with_different_fees(
    captured: tuple[PreparedCapture, SymbolMap],
) -> None:
    prepared, symbols = captured
    cfgs = [
        apply_overrides(_base(), {"fees.kalshi_taker_coefficient": v}) for v in ("0.02", "0.07")
    ]
    one_by_one = [await replay(prepared, symbols, c) for c in cfgs]
    assert await replay_many(prepared, symbols, cfgs) == one_by_one


def test_sweep_two_jobs_matches_replay(captured: tuple[PreparedCapture, SymbolMap]) -> None:
    import asyncio

    prepared, symbols = captured
    rows = sweep(prepared, symbols, _base(), GRID, jobs=2)
    assert [r.params for r in rows] == combinations(GRID)
    expected = [
        asyncio.run(replay(prepared, symbols, apply_overrides(_base(), c)))
        for c in combinations(GRID)
    ]
    assert [r.result for r in rows] == expected


def test_sweep_tables_keep_money_exact_and_touch_no_other_file(tmp_path: Path) -> None:
    """Parquet money columns are DECIMAL (not DOUBLE), CSV dollars are exact strings, and
    writing results.parquet leaves a results.csv beside it alone."""
    from decimal import Decimal

    from arbkit.analysis.duck import connect
    from arbkit.analysis.replay import ReplayResult, SweepRow, write_table
    from arbkit.model import Money

    rows = [
        SweepRow(
            {"detector.min_edge_usd": "0.01"},
            ReplayResult(
                executed=3, realized_pnl=Money(2**53 + 1), hedge_cost=Money(1)
            ),  # past float
        )
    ]
    csv_path = tmp_path / "results.csv"
    csv_path.write_text("the trader's own file\n")
    out = write_table(rows, tmp_path / "results.parquet")
    assert csv_path.read_text() == "the trader's own file\n"
    con = connect()
    types = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM '{out}'").fetchall()}
    assert types["realized_pnl_usd"] == "DECIMAL(18,6)" and types["executed"] == "BIGINT"
    [(pnl, hedge)] = con.execute(f"SELECT realized_pnl_usd, hedge_cost_usd FROM '{out}'").fetchall()
    assert pnl == Decimal("9007199254.740993") and hedge == Decimal("0.000001")
    text = write_table(rows, tmp_path / "r2.csv").read_text()
    assert "9007199254.740993" in text and "0.000001" in text


def test_sweep_progress_bar_counts_combinations_and_finishes(tmp_path: Path) -> None:
    import subprocess
    import sys

    cap, sym = tmp_path / "cap.jsonl", tmp_path / "symbols.toml"
    with cap.open("wb") as fh:
        generate(fh, 3_000, 4, 3, sym)
    p = subprocess.run(
        [sys.executable, "-m", "arbkit.cli", "sweep", str(cap), "--symbols", str(sym),
         "--grid", "detector.min_edge_usd=0,0.01,0.02,0.04,0.08", "--jobs", "2",
         "--out", str(tmp_path / "r.csv")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    last = p.stderr.replace("\r", "\n").strip().splitlines()[-1]
    assert "100%" in last and "5/5" in last, p.stderr
