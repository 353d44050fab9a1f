"""Issue 6 end to end: the demo on local venues, record → replay determinism, sweep."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from arbkit.analysis.replay import prepare_file, replay, sweep
from arbkit.cli import main
from arbkit.config.execution_loader import ExecutionConfig
from arbkit.config.loader import load_symbol_map
from arbkit.model import Mode
from arbkit.storage.capture import symbol_map_path

TABLES = ("opportunities", "spreads", "arb_executions", "executions", "positions")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("demo")
    db, cap = d / "demo.sqlite", d / "capture.jsonl.gz"
    rc = main(
        [
            "demo",
            "--seconds", "12",
            "--symbols", "6",
            "--no-ui",
            "--db", str(db),
            "--record", str(cap),
            "--data-dir", str(d / "data"),
            "--dislocations-per-min", "20",
            "--seed", "3",
            "--resolve-after", "3",
        ]
    )  # fmt: skip
    assert rc == 0
    [run_dir] = (d / "data" / "runs").glob("demo-*")
    return {"db": db, "capture": cap, "symbols": symbol_map_path(cap), "run_dir": run_dir}


def _rows(db: Path, table: str, *, without_run: bool = False) -> list[tuple[object, ...]]:
    con = sqlite3.connect(db)
    try:
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
        if without_run:  # two runs differ by their run id only
            cols = [c for c in cols if c != "run_id"]
        return con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1").fetchall()
    finally:
        con.close()


def test_demo_fills_all_tables(demo_run: dict[str, Path]) -> None:
    counts = {t: len(_rows(demo_run["db"], t)) for t in TABLES}
    assert all(counts.values()), counts
    con = sqlite3.connect(demo_run["db"])
    executed = con.execute(
        "SELECT count(*) FROM opportunities WHERE decision='executed'"
    ).fetchone()
    states = dict(con.execute("SELECT state, count(*) FROM arb_executions GROUP BY state"))
    con.close()
    assert executed is not None and executed[0] > 0
    assert set(states) <= {"done", "hedged"}, states  # paper: nothing left unhedged
    assert demo_run["capture"].stat().st_size > 0
    # one market closed, resolved and paid out on both venues during the demo (issue 13)
    settled = _rows(demo_run["db"], "settlements")
    assert sorted(r[4] for r in settled) == ["ibkr", "kalshi"], settled


def _replay_db(demo: dict[str, Path], out: Path) -> int:
    # no --symbols: the map recorded next to the capture is used
    return main(["replay", str(demo["capture"]), "--db", str(out), "--quiet"])


def test_capture_carries_its_symbol_map_and_each_run_its_own_directory(
    demo_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo wrote its key and map to a directory of its own (a second run cannot
    overwrite them) and the capture's sidecar holds the same map, 0600 like the capture.
    Replay needs no --symbols; a map that matches nothing in the capture is refused."""
    run_dir = demo_run["run_dir"]
    assert (run_dir / "kalshi-demo-key.pem").stat().st_mode & 0o777 == 0o600
    sidecar = demo_run["symbols"]
    assert sidecar.stat().st_mode & 0o777 == 0o600
    recorded = load_symbol_map(sidecar)
    assert recorded.symbols == load_symbol_map(run_dir / "symbols.toml").symbols
    capsys.readouterr()
    assert main(["replay", str(demo_run["capture"]), "--quiet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["symbols"] == str(sidecar) and out["events"] > 0 and out["executed"] > 0
    assert out["realized_pnl_usd"] == str(Decimal(out["realized_pnl_e6"]).scaleb(-6))
    other = Path(__file__).resolve().parent.parent / "arbkit" / "examples" / "symbols.toml"
    assert main(["replay", str(demo_run["capture"]), "--symbols", str(other), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none of its" in err[0] and "not the map this capture" in err[0]
    bare = tmp_path / "bare.jsonl.gz"
    bare.write_bytes(demo_run["capture"].read_bytes())  # a copy without its sidecar
    assert main(["replay", str(bare), "--quiet"]) == 2
    assert "no symbol map was recorded with it" in capsys.readouterr().err


def test_replay_is_deterministic(demo_run: dict[str, Path], tmp_path: Path) -> None:
    a, b = tmp_path / "a.sqlite", tmp_path / "b.sqlite"
    assert _replay_db(demo_run, a) == 0
    assert _replay_db(demo_run, b) == 0
    for table in ("opportunities", "spreads", "arb_executions", "executions", "positions"):
        assert _rows(a, table, without_run=True) == _rows(b, table, without_run=True), table
    assert _rows(a, "opportunities"), "the replay found the demo's opportunities"
    assert _rows(a, "arb_executions")


def test_replay_agrees_with_live_detection(demo_run: dict[str, Path]) -> None:
    symbols = load_symbol_map(demo_run["symbols"])
    prepared = prepare_file(demo_run["capture"], symbols)
    res = asyncio.run(
        replay(prepared, symbols, ExecutionConfig(mode=Mode.PAPER), collect_observations=True)
    )
    con = sqlite3.connect(demo_run["db"])
    live = con.execute(
        "SELECT symbol, combo, size_e2 / 100, expected_profit_e6, kalshi_limit_price_e4, "
        "ibkr_limit_price_e4 FROM opportunities"
    ).fetchall()
    con.close()
    assert live
    missing = [row for row in live if tuple(row) not in res.observed]
    assert not missing, f"live detections the replay did not reproduce: {missing[:5]}"


def test_sweep_one_row_per_combination_and_monotone(demo_run: dict[str, Path]) -> None:
    symbols = load_symbol_map(demo_run["symbols"])
    prepared = prepare_file(demo_run["capture"], symbols)
    grid = {
        "detector.min_edge_usd": ["0", "0.01", "0.03", "0.06"],
        "detector.max_contracts_per_trade": ["5", "50"],
    }
    rows = sweep(prepared, symbols, ExecutionConfig(mode=Mode.PAPER), grid, jobs=2)
    assert len(rows) == 8
    assert {tuple(r.params.values()) for r in rows} == {
        (e, m)
        for e in grid["detector.min_edge_usd"]
        for m in grid["detector.max_contracts_per_trade"]
    }
    for m in grid["detector.max_contracts_per_trade"]:
        by_edge = [
            r.result.opportunities
            for e in grid["detector.min_edge_usd"]
            for r in rows
            if r.params == {"detector.min_edge_usd": e, "detector.max_contracts_per_trade": m}
        ]
        assert by_edge == sorted(by_edge, reverse=True), by_edge
    assert rows[0].result.opportunities > 0


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["replay", str(tmp_path / "nope.jsonl"), "--symbols", str(tmp_path / "s.toml")]) == 2
    )
    err = capsys.readouterr().err
    assert "nope.jsonl: capture not found" in err  # the capture first: it may carry its map
    (tmp_path / "c.jsonl").write_text("")
    assert main(["replay", str(tmp_path / "c.jsonl"), "--symbols", str(tmp_path / "s.toml")]) == 2
    err = capsys.readouterr().err
    assert "s.toml" in err and "not found" in err
    bad = tmp_path / "e.toml"
    bad.write_text("[detector]\nmin_edge_usd = 'lots'\n")
    sym = Path(__file__).resolve().parent.parent / "arbkit" / "examples" / "symbols.toml"
    assert (
        main(
            [
                "sweep",
                str(tmp_path / "c.jsonl"),
                "--symbols",
                str(sym),
                "--execution",
                str(bad),
                "--grid",
                "a=1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "e.toml" in err and "detector.min_edge_usd" in err
    assert main(["analyze", "--db", str(tmp_path / "missing.sqlite")]) == 2
    assert "arbkit demo" in capsys.readouterr().err


def test_every_row_carries_its_run_and_analyze_filters_by_run(
    demo_run: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Schema v6 (issue 13): one `runs` row per demo / replay (replays marked `replay`),
    every row written carries its run id, and `arbkit analyze --run` filters by it."""
    [(run_id, mode, ended)] = [(r[0], r[3], r[2]) for r in _rows(demo_run["db"], "runs")]
    assert mode == "paper" and ended is not None
    con = sqlite3.connect(demo_run["db"])
    try:
        for table in (*TABLES, "settlements"):
            ids = {r[0] for r in con.execute(f"SELECT DISTINCT run_id FROM {table}")}
            assert ids == {run_id}, (table, ids)
    finally:
        con.close()
    out = tmp_path / "replayed.sqlite"
    assert _replay_db(demo_run, out) == 0
    assert [r[3] for r in _rows(out, "runs")] == ["replay"]
    # the replay runs through the recorded close and settlement too (issue 13)
    con = sqlite3.connect(out)
    try:
        paid = con.execute("SELECT venue, source FROM settlements ORDER BY venue").fetchall()
        live = (
            sqlite3.connect(demo_run["db"])
            .execute("SELECT symbol, result FROM settlements WHERE venue = 'kalshi'")
            .fetchall()
        )
        assert (
            con.execute("SELECT symbol, result FROM settlements WHERE venue = 'kalshi'").fetchall()
            == live
        )
        after = con.execute(  # nothing traded on the market once it closed
            "SELECT count(*) FROM arb_executions a JOIN settlements s USING (symbol) "
            "WHERE s.venue = 'kalshi' AND a.created_ns >= s.settled_ns"
        ).fetchone()
        assert after == (0,)
    finally:
        con.close()
    assert paid == [("ibkr", "replay"), ("kalshi", "replay")]
    capsys.readouterr()
    assert main(["analyze", "--db", str(demo_run["db"]), "--runs"]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["analyze", "--db", str(demo_run["db"]), "--run", run_id]) == 0
    assert f"filtered: run {run_id}" in capsys.readouterr().out
    assert main(["analyze", "--db", str(demo_run["db"]), "--run", "r-nope"]) == 2
    assert "no run 'r-nope'" in capsys.readouterr().err  # a mistake: one line on stderr
    assert main(["analyze", "--db", str(demo_run["db"]), "--since", "2999-01-01"]) == 0
    assert "filtered: since 2999-01-01" in capsys.readouterr().out
