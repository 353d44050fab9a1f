"""Every notebook runs end to end headless against the local venues (short durations),
and what it produced is checked; committed notebooks carry no outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.notebooks.nbrun import NOTEBOOKS, run_notebook


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell tagged 'parameters'"


def test_live_monitor_notebook(tmp_path: Path) -> None:
    params = {
        "RUN_SECONDS": 4,
        "N_SYMBOLS": 4,
        "SEED": 7,
        "MODE": "paper",
        "DB_PATH": str(tmp_path / "live.sqlite"),
        "REFRESH_HZ": 5,
        "USE_REAL_VENUES": False,
    }
    # after the run (monitor stopped): the summary cell's value, plus the live figure state
    _nb, out = run_notebook(
        "01_live_monitor.ipynb",
        params,
        "{'summary': summary, 'kill': dashboard.kill_state.value}",
        cwd=tmp_path,
    )
    s = out["summary"]
    assert s["cost_traces"] == 2 * 4  # both combinations per symbol
    assert s["refreshes"] >= 5
    assert s["cost_points"] > 0 and s["cost_traces_with_data"] > 0
    assert s["book_bars"] > 0
    assert s["counters"]["ticks"] > 0
    assert s["refresh_ms"]["count"] == s["refreshes"]
    assert "kill switch off" in out["kill"]
    assert (tmp_path / "live.sqlite").is_file()


def test_live_monitor_controls_reach_the_monitor(tmp_path: Path) -> None:
    """The widgets drive the running monitor (what the browser test does by hand); the
    "applied" label is refreshed from the monitor."""
    params = {
        "RUN_SECONDS": None,  # interactive: Run All leaves the monitor running
        "N_SYMBOLS": 2,
        "SEED": 3,
        "MODE": "paper",
        "DB_PATH": None,
        "REFRESH_HZ": 4,
        "USE_REAL_VENUES": False,
    }
    setup = """
running_before = monitor._started
dashboard.min_edge.value = 2.5
dashboard.max_size.value = 7
dashboard.kalshi_fee.value = 0.05
dashboard.fx_fee.value = 0.5
dashboard.mode.value = "monitor"
dashboard.pause.value = True
dashboard.pause.value = False
dashboard.kill.click()
await asyncio.sleep(0.6)
controls = {
    "running": running_before,
    "min_edge_usd": monitor.config.detector.min_edge_usd,
    "max_contracts": monitor.config.detector.max_contracts_per_trade,
    "taker": str(monitor.config.fees.kalshi_taker_coefficient),
    "fx_fee": monitor.config.fees.forecastex_fee_per_contract_usd,
    "mode": monitor.mode.value,
    "paused": monitor.paused,
    "kill": monitor.kill_switch,
    "label": dashboard.kill_state.value,
    "applied": dashboard.applied.value,
}
dashboard.reset.click()
controls["after_reset"] = dashboard.kill_state.value
controls["mode_options"] = list(dashboard.mode.options)
dashboard._on_mode({"new": "live"})  # not offered for a paper monitor; refused if forced
controls["live_refused"] = dashboard.message.value
controls["mode_after_live"] = monitor.mode.value
await session.stop()
"""
    _nb, out = run_notebook("01_live_monitor.ipynb", params, "controls", cwd=tmp_path, setup=setup)
    assert out["running"] is True
    assert out["min_edge_usd"] == 25_000
    assert out["max_contracts"] == 7
    assert out["taker"] == "0.05"
    assert out["fx_fee"] == 5_000
    assert out["mode"] == "monitor"
    assert out["paused"] is False
    assert out["kill"] is True and "KILL SWITCH ON" in out["label"]
    assert "min_edge_usd=25000" in out["applied"]
    assert "kill switch off" in out["after_reset"]
    assert out["mode_options"] == ["monitor", "paper"]
    assert "live" in out["live_refused"] and out["mode_after_live"] == "monitor"


def test_parameter_tuning_notebook(tmp_path: Path) -> None:
    params = {
        "CAPTURE_PATH": str(tmp_path / "capture.jsonl"),
        "SYMBOLS_PATH": None,
        "RECORD_SECONDS": 6,
        "DISLOCATIONS_PER_MIN": 40.0,
        "N_SYMBOLS": 4,
        "SEED": 7,
        "MIN_EDGE_USD": ["0", "0.01", "0.03"],
        "MAX_CONTRACTS": ["5", "50"],
        "KALSHI_TAKER_COEFFICIENTS": ["0.05", "0.07", "0.1"],
        "COOLDOWN_MS": ["0", "5000"],
        "JOBS": 1,
        "OUT_CONFIG": str(tmp_path / "tuned.toml"),
    }
    _nb, out = run_notebook(
        "03_parameter_tuning.ipynb",
        params,
        "{**tuning_summary, 'heat_shape': list(heat.shape), 'heat_z': len(fig_heat.data[0].z), "
        "'fee_points': len(fig_fee.data[0].x), 'risk_traces': len(fig_risk.data), "
        "'events': prepared.events, 'opps': int(heat_df['opportunities'].sum())}",
        cwd=tmp_path,
    )
    assert out["events"] > 0
    assert out["heat_rows"] == 6 and out["heat_shape"] == [3, 2] and out["heat_z"] == 3
    assert out["fee_rows"] == 3 and out["fee_points"] == 3
    assert out["risk_rows"] == 2 and out["risk_traces"] == 2
    assert out["opps"] > 0
    assert set(out["chosen"]) == {
        "detector.min_edge_usd",
        "detector.max_contracts_per_trade",
        "risk.symbol_cooldown_ms",
    }
    from arbkit.config.execution_loader import load_execution_config

    cfg = load_execution_config(tmp_path / "tuned.toml")
    assert cfg.detector.max_contracts_per_trade == int(
        out["chosen"]["detector.max_contracts_per_trade"]
    )


def test_contract_matching_notebook(tmp_path: Path) -> None:
    """Notebook 04 against the local venues: proposals in the review widget, all
    confirmed, written as a symbol map that loads (every pair verified for live)."""
    from arbkit.config.loader import load_symbol_map

    out = tmp_path / "matched.toml"
    params = {
        "SOURCE": "local",
        "CATALOGUE": str(tmp_path / "catalogue.json"),
        "THRESHOLD": 70,
        "VERIFIED_BY": "notebook-test",
        "OUT": str(out),
        "CONFIRM_ALL": True,
    }
    _nb, got = run_notebook(
        "04_contract_matching.ipynb",
        params,
        "{'proposals': len(result.proposals), 'status': review.status.value, "
        "'written': str(written)}",
        cwd=tmp_path,
    )
    assert got["proposals"] == 26
    assert "26 confirmed, 0 rejected, 0 undecided" in got["status"]
    smap = load_symbol_map(got["written"])
    assert len(smap) == 26
    assert all(not s.equivalence.missing_for_live() for s in smap.symbols.values())
