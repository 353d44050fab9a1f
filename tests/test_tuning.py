"""Tuning helpers over a real capture recorded from the local venues, and the execution
config writer's exact round trip."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbkit.analysis import tuning
from arbkit.analysis.replay import ReplayResult, SweepRow, prepare_file
from arbkit.config.execution_loader import (
    EXAMPLE_EXECUTION,
    ExecutionConfig,
    apply_overrides,
    execution_config_toml,
    load_execution_config,
    write_execution_config,
)
from arbkit.config.loader import load_symbol_map
from arbkit.model import Mode, Money
from arbkit.ui.notebook import record_demo_capture, symbols_path_for


def row(params: dict[str, str], pnl: int, unhedged: int = 0) -> SweepRow:
    return SweepRow(
        params,
        ReplayResult(
            opportunities=3, executed=2, realized_pnl=Money(pnl), executions_unhedged=unhedged
        ),
    )


def test_rows_frame_pivot_best() -> None:
    rows = [
        row({"e": "0.01", "n": "10"}, 1_000_000),
        row({"e": "0.01", "n": "5"}, 3_000_000, unhedged=1),
        row({"e": "0.005", "n": "5"}, 3_000_000),
        row({"e": "0.005", "n": "10"}, -500_000),
    ]
    df = tuning.rows_frame(rows)
    assert list(df["realized_pnl_units"]) == [1_000_000, 3_000_000, 3_000_000, -500_000]
    assert list(df["realized_pnl_usd"]) == [1.0, 3.0, 3.0, -0.5]
    table = tuning.pivot(df, "e", "n")
    assert list(table.index) == ["0.005", "0.01"] and list(table.columns) == ["5", "10"]
    assert table.loc["0.005", "10"] == -0.5
    # tie on PnL: the one without an unhedged execution wins
    assert tuning.best_params(df, ["e", "n"]) == {"e": "0.005", "n": "5"}
    with pytest.raises(ValueError):
        tuning.best_params(pd.DataFrame(), ["e"])


def test_write_tuned_config_never_live(tmp_path: Path) -> None:
    base = replace(ExecutionConfig(), mode=Mode.LIVE)
    cfg, path = tuning.write_tuned_config(
        base,
        {"detector.min_edge_usd": "0.015", "risk.symbol_cooldown_ms": "500"},
        tmp_path / "t.toml",
    )
    loaded = load_execution_config(path)
    assert loaded == replace(cfg, source=str(path))
    assert loaded.mode is Mode.PAPER
    assert loaded.detector.min_edge_usd == 15_000 and loaded.risk.symbol_cooldown_ms == 500
    assert "# detector.min_edge_usd = 0.015" in path.read_text()


def test_example_config_round_trips(tmp_path: Path) -> None:
    cfg = load_execution_config(EXAMPLE_EXECUTION)
    cfg = replace(
        cfg,
        fees=replace(
            cfg.fees,
            kalshi_series_multipliers={"KXFED": Decimal("0.50"), "odd key": Decimal("1.25")},
        ),
    )
    p = write_execution_config(cfg, tmp_path / "x.toml")
    assert load_execution_config(p) == replace(cfg, source=str(p))


@settings(max_examples=60, deadline=None)
@given(
    # within the loader's sane bounds (execution_loader.BOUNDS)
    edge=st.integers(0, 10**6),
    size=st.integers(1, 10**6),
    coef=st.decimals(min_value=0, max_value="0.5", places=6, allow_nan=False),
    mode=st.sampled_from(list(Mode)),
    flag=st.booleans(),
)
def test_config_text_round_trips(
    edge: int, size: int, coef: Decimal, mode: Mode, flag: bool
) -> None:
    import tomllib

    from arbkit.config.execution_loader import parse_execution_config

    c = ExecutionConfig()
    cfg = replace(
        c,
        mode=mode,
        detector=replace(c.detector, min_edge_usd=edge, max_contracts_per_trade=size),
        fees=replace(c.fees, kalshi_taker_coefficient=coef),
        execution=replace(c.execution, recheck_leg2_quote=flag),
    )
    assert parse_execution_config(tomllib.loads(execution_config_toml(cfg)), "") == cfg


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cap") / "cap.jsonl"
    asyncio.run(
        record_demo_capture(path, seconds=4, n_symbols=3, seed=11, dislocation_rate_per_min=60)
    )
    return path


async def test_sweep_frame_over_a_recorded_capture(capture: Path) -> None:
    symbols = load_symbol_map(symbols_path_for(capture))
    prepared = prepare_file(capture, symbols)
    assert prepared.events > 0 and prepared.bad_frames == 0
    base = apply_overrides(ExecutionConfig(), {"mode": "paper"})
    grid = {"detector.min_edge_usd": ["0", "0.02"], "detector.max_contracts_per_trade": ["1", "20"]}
    df = await tuning.sweep_frame(prepared, symbols, base, grid, desc="test")
    assert len(df) == 4
    assert set(grid) <= set(df.columns)
    assert df["opportunities"].sum() > 0
    # exact integer money next to the display floats
    assert all(isinstance(v, int) for v in df["realized_pnl_units"].tolist())
    assert (df["realized_pnl_units"] / 1_000_000 == df["realized_pnl_usd"]).all()
    best = tuning.best_params(df, list(grid))
    assert set(best) == set(grid)
