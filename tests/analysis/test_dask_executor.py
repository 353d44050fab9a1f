"""The same sweep run by local forked processes and by a real multi-process Dask
``LocalCluster`` on 127.0.0.1 gives identical result rows (exact integers and the hash of
every decision); Dask workers prepare each capture once and replay it many times."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arbkit.analysis.executors import DaskExecutor, LocalProcessExecutor, SweepContext, run_sweep
from arbkit.analysis.replay import combinations
from arbkit.analysis.sweep_jobs import ResultStore, capture_ref, comparable
from arbkit.cli import main
from arbkit.config.execution_loader import ExecutionConfig, apply_overrides
from arbkit.config.loader import load_symbol_map
from benchmarks.sweep_scale import day_captures

DAYS = [8_000, 14_000, 20_000]  # events per capture; generated once per test session

GRID = {
    "detector.min_edge_usd": ["0", "0.03"],
    "detector.max_contracts_per_trade": ["1", "50"],
    "fees.kalshi_taker_coefficient": ["0.07", "0.035"],
}


@pytest.fixture(scope="module")
def sweep_input(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    caps, sym = day_captures(
        tmp_path_factory.getbasetemp() / "sweep-days", DAYS, n_symbols=8, seed=3
    )
    caps = caps[:2]
    symbols = load_symbol_map(sym)
    ctx = SweepContext(symbols, apply_overrides(ExecutionConfig(), {"mode": "paper"}))
    refs = [capture_ref(c) for c in caps]
    return {"caps": caps, "sym": sym, "ctx": ctx, "refs": refs, "combos": combinations(GRID)}


@pytest.fixture(scope="module")
def local_rows(sweep_input: dict[str, Any]) -> list[dict[str, Any]]:
    """The reference: local forked processes (run before any cluster thread exists)."""
    with LocalProcessExecutor(2) as ex:
        out = run_sweep(sweep_input["refs"], sweep_input["combos"], sweep_input["ctx"], ex,
                        ResultStore(None))  # fmt: skip
    assert out.run == 16 and sum(r["result"]["executed"] for r in out.rows) > 0
    return out.rows


@pytest.fixture(scope="module")
def cluster(local_rows: list[dict[str, Any]]) -> Iterator[DaskExecutor]:
    with DaskExecutor(2) as ex:
        yield ex


def test_a_real_two_process_local_cluster_on_loopback(cluster: DaskExecutor) -> None:
    import os

    workers = cluster.client.scheduler_info()["workers"]
    assert len(workers) == 2 and all(a.startswith("tcp://127.0.0.1:") for a in workers)
    pids = cluster.client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()


def test_dask_rows_are_identical_to_local_processes(
    cluster: DaskExecutor, sweep_input: dict[str, Any], local_rows: list[dict[str, Any]]
) -> None:
    before = sum(cluster.prepares_per_worker().values())
    # small tasks (2 jobs each): many tasks per capture, so the worker cache shows
    out = run_sweep(sweep_input["refs"], sweep_input["combos"], sweep_input["ctx"], cluster,
                    ResultStore(None), max_chunk=2)  # fmt: skip
    assert out.run == 16 and out.tasks == 8
    assert comparable(out.rows) == comparable(local_rows)
    # prepare once per worker and capture, replay many: 8 tasks, at most 2 × 2 prepares
    prepares = sum(cluster.prepares_per_worker().values()) - before
    assert 1 <= prepares <= 4 and out.prepares == prepares == out.loaded["path"]


def test_capture_bytes_through_the_cluster_give_the_same_rows(
    cluster: DaskExecutor, sweep_input: dict[str, Any], local_rows: list[dict[str, Any]]
) -> None:
    """Workers without the client's disk: the capture's bytes are scattered to them."""
    ctx = sweep_input["ctx"]
    # another context (on_error differs, results do not): no capture is cached for it
    ctx2 = SweepContext(ctx.symbols, ctx.base, on_error="raise")
    before = sum(cluster.prepares_per_worker().values())
    cluster.ship = "scheduler"
    try:
        out = run_sweep(sweep_input["refs"], sweep_input["combos"], ctx2, cluster,
                        ResultStore(None))  # fmt: skip
    finally:
        cluster.ship = "path"
    assert out.prepares >= 1 and sum(cluster.prepares_per_worker().values()) > before
    assert out.loaded == {"cluster": out.prepares}  # no worker read the path
    strip = [(r[1:]) for r in comparable(local_rows)]  # job ids differ: other context
    assert [(r[1:]) for r in comparable(out.rows)] == strip


def test_cli_sweep_on_a_running_scheduler_equals_the_local_cli(
    cluster: DaskExecutor, sweep_input: dict[str, Any], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    args = ["sweep", *map(str, sweep_input["caps"]), "--symbols", str(sweep_input["sym"]),
            "--quiet", "--json"]  # fmt: skip
    for k, v in GRID.items():
        args += ["--grid", f"{k}={','.join(v)}"]
    before = sum(cluster.tasks_per_worker().values())
    assert main([*args, "--out", str(tmp_path / "d"), "--executor", "dask",
                 "--scheduler", cluster.address]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    # the fixture's cluster ran them (not a cluster of the CLI's own)
    assert sum(cluster.tasks_per_worker().values()) - before == summary["tasks"] > 0
    assert summary["executor"] == "dask" and summary["workers"] == 2 and summary["ran"] == 16
    rows = [json.loads(x) for x in (tmp_path / "d" / "jobs.jsonl").read_text().splitlines()]
    assert sorted(comparable(rows)) == sorted(comparable(_by_cli_local(args, tmp_path, capsys)))
    assert (tmp_path / "d" / "results.csv").read_text() == (
        tmp_path / "l" / "results.csv"
    ).read_text()


def _by_cli_local(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> list[dict[str, Any]]:
    assert main([*args, "--out", str(tmp_path / "l"), "--jobs", "1"]) == 0
    capsys.readouterr()
    return [json.loads(x) for x in (tmp_path / "l" / "jobs.jsonl").read_text().splitlines()]
