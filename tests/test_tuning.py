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


def test_ranges_are_exact_decimals() -> None:
    assert tuning.grid_values("0.005:0.03:0.005") == [
        "0.005", "0.010", "0.015", "0.020", "0.025", "0.030"
    ]  # fmt: skip
    assert tuning.grid_values("0:20000:5000") == ["0", "5000", "10000", "15000", "20000"]
    assert tuning.grid_values("0.1:0.25:0.1") == ["0.1", "0.2"]  # stop off the step: not added
    assert tuning.grid_values("1, 2,3") == ["1", "2", "3"]
    assert tuning.grid_values(["5", 10]) == ["5", "10"]
    for bad in ("1:2", "a:b:c", "0:1:0", "2:1:1", "0:1:0.0001"):
        with pytest.raises(ValueError):
            tuning.grid_values(bad)


def test_risk_adjusted_score_in_integer_units() -> None:
    # $1 PnL, $0.05 of hedging (charged once more), $10.000001 peak: 1 % rounded up
    assert tuning.risk_adjusted_units(1_000_000, 50_000, 10_000_001) == 1_000_000 - 50_000 - 100_001
    assert tuning.risk_adjusted_units(0, 0, 0) == 0
    assert tuning.risk_adjusted_units(5, 0, 100, exposure_charge_bps=0) == 5


def test_out_of_sample_is_the_rest_of_the_full_replay(capture: Path) -> None:
    """The in-sample replay is exactly the full replay's first 70 %; out of sample is the
    rest, so the two parts add up to the whole capture."""
    from arbkit.analysis.replay import sweep

    symbols = load_symbol_map(symbols_path_for(capture))
    prepared = prepare_file(capture, symbols)
    base, src = tuning.load_base(None)
    assert src == EXAMPLE_EXECUTION and base.mode is Mode.PAPER  # the example says monitor
    base = apply_overrides(base, {"risk.symbol_cooldown_ms": "0"})  # trades in both parts
    grid = {"detector.min_edge_usd": ["0", "0.02"], "detector.max_contracts_per_trade": ["2", "30"]}
    df, cut = asyncio.run(tuning.sweep_split(prepared, symbols, base, grid, desc="test"))
    first, last = prepared.batches[0][0], prepared.batches[-1][0]
    assert cut == first + (last - first) * 7 // 10
    part = tuning.in_sample(prepared, cut)
    assert part.batches and all(t < cut for t, _, _ in part.batches)
    assert len(part.batches) < len(prepared.batches)
    rows_in, rows_all = sweep(part, symbols, base, grid), sweep(prepared, symbols, base, grid)
    for a, b, (_, r) in zip(rows_in, rows_all, df.iterrows(), strict=True):
        n = len(a.result.executions)
        assert b.result.executions[:n] == a.result.executions  # same prefix, same trades
        assert r["is_realized_pnl_units"] == a.result.realized_pnl
        assert r["is_realized_pnl_units"] + r["oos_realized_pnl_units"] == b.result.realized_pnl
        assert r["is_executed"] + r["oos_executed"] == b.result.executed
        assert r["oos_max_exposure_units"] == b.result.max_exposure
    # (the recorded demo is timing-dependent: the last 30 % may hold no trade, so only
    # the in-sample part is required to trade; the identities above hold either way)
    assert df["is_executed"].sum() > 0
    best = tuning.choose(df, list(grid))
    top = df["is_score_units"].max()
    assert tuning.row_of(df, best)["is_score_units"] == top


def _frame(rows: list[tuple[str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"k": k, "combination": f"k={k}", "is_score_units": i, "oos_score_units": o,
             "oos_score_usd": o / 1e6, "is_executions_unhedged": 0, "is_executions_hedged": 0,
             "is_max_exposure_units": 0}
            for k, i, o in rows
        ]
    )  # fmt: skip


def test_guard_keeps_the_current_setting_unless_out_of_sample_agrees() -> None:
    df = _frame([("0.01", 100, 50), ("0.02", 300, 10), ("0.03", 200, 80)])
    assert tuning.choose(df, ["k"]) == {"k": "0.02"}
    kept, why = tuning.guard(df, {"k": "0.02"}, {"k": "0.010"})  # 0.010 = 0.01
    assert kept == {"k": "0.010"} and "below" in why
    kept, why = tuning.guard(df, {"k": "0.03"}, {"k": "0.01"})
    assert kept == {"k": "0.03"} and "$0.000080 vs $0.000050" in why
    tie = _frame([("1", 0, 5), ("2", 9, 5)])
    assert tuning.guard(tie, {"k": "2"}, {"k": "1"})[0] == {"k": "1"}


def test_with_current_puts_the_traders_value_in_the_grid() -> None:
    cfg = load_execution_config(EXAMPLE_EXECUTION)  # min edge 0.01, max 100, cooldown 1000
    grid = tuning.with_current(
        {"detector.min_edge_usd": ["0.010", "0.02"], "risk.symbol_cooldown_ms": ["0", "5000"]},
        cfg,
    )
    assert grid == {
        "detector.min_edge_usd": ["0.010", "0.02"],
        "risk.symbol_cooldown_ms": ["1000", "0", "5000"],
    }


def test_tuned_file_changes_only_the_tuned_keys(tmp_path: Path) -> None:
    src = tmp_path / "mine.toml"
    text = (
        '# my desk\nmode = "live"  # careful\n\n[detector]\nmin_edge_usd = "0.02"   # edge\n\n'
        '[risk]\nmax_total_exposure_usd = "777"  # mine\nsymbol_cooldown_ms = 9000\n'
    )
    src.write_text(text)
    params = {
        "detector.min_edge_usd": "0.015",
        "detector.max_contracts_per_trade": "25",  # not in the file: added to [detector]
        "risk.symbol_cooldown_ms": "0",
        "paper.latency_ms": "7",  # no [paper] section: appended
    }
    cfg, out = tuning.write_tuned_file(src, params, tmp_path / "tuned.toml", note="capture: c")
    body = [x for x in out.read_text().splitlines() if not x.startswith("# tuned from")]
    assert body == [
        "# capture: c",
        "# my desk",
        'mode = "paper" # careful',  # never written live; the comment stays in its column
        "",
        "[detector]",
        'min_edge_usd = "0.015"  # edge',
        "max_contracts_per_trade = 25  # set by parameter tuning",
        "",
        "[risk]",
        'max_total_exposure_usd = "777"  # mine',
        "symbol_cooldown_ms = 0",
        "",
        "[paper]",
        "latency_ms = 7  # set by parameter tuning",
    ]
    loaded = load_execution_config(out)
    assert loaded == replace(cfg, source=str(out))
    assert loaded.risk.max_total_exposure_usd == 777_000_000 and loaded.mode is Mode.PAPER
    # a layout the line editor cannot change in place is refused, not written wrong
    odd = tmp_path / "odd.toml"
    odd.write_text('detector = { min_edge_usd = "0.02" }\n')
    with pytest.raises(ValueError, match="refusing"):
        tuning.write_tuned_file(odd, {"detector.min_edge_usd": "0.03"}, tmp_path / "no.toml")
    assert not (tmp_path / "no.toml").exists()
