"""``arbkit sweep`` over several captures is made of jobs (parameter set × capture) whose
results are written as they finish: a resumed sweep runs only the jobs not yet written
and ends with exactly what a fresh run gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from arbkit.analysis.sweep_jobs import ResultStore, capture_ref, comparable, plan
from arbkit.cli import main
from benchmarks.sweep_scale import day_captures

DAYS = [8_000, 14_000, 20_000]  # events per capture; generated once per test session

GRID_FULL = ["--grid", "detector.min_edge_usd=0,0.02", "--grid",
             "detector.max_contracts_per_trade=1,50"]  # fmt: skip
GRID_PART = ["--grid", "detector.min_edge_usd=0", "--grid", "detector.max_contracts_per_trade=1,50"]


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    base = tmp_path_factory.getbasetemp() / "sweep-days"
    return day_captures(base, DAYS, n_symbols=8, seed=3)


def sweep(
    days: tuple[list[Path], Path], out: Path, grid: list[str], *extra: str,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, object]:  # fmt: skip
    caps, sym = days
    rc = main(["sweep", *map(str, caps[:2]), "--symbols", str(sym), *grid, "--jobs", "2",
               "--out", str(out), "--quiet", "--json", *extra])  # fmt: skip
    assert rc == 0
    got: dict[str, object] = json.loads(capsys.readouterr().out)
    return got


def stored(store: Path) -> list[tuple[object, ...]]:
    rows = [json.loads(x) for x in store.read_text().splitlines()]
    return sorted(comparable(rows))


def test_resume_runs_only_unfinished_jobs_and_ends_as_a_fresh_run(
    days: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    part = sweep(days, tmp_path / "s", GRID_PART, capsys=capsys)
    assert (part["jobs"], part["ran"], part["skipped"]) == (4, 4, 0)
    resumed = sweep(days, tmp_path / "s", GRID_FULL, "--resume", capsys=capsys)
    assert (resumed["jobs"], resumed["ran"], resumed["skipped"]) == (8, 4, 4)
    fresh = sweep(days, tmp_path / "f", GRID_FULL, capsys=capsys)
    assert fresh["ran"] == 8
    assert stored(tmp_path / "s" / "jobs.jsonl") == stored(tmp_path / "f" / "jobs.jsonl")
    table = (tmp_path / "s" / "results.csv").read_text()
    assert table == (tmp_path / "f" / "results.csv").read_text()
    assert table.splitlines()[0].startswith("detector.min_edge_usd,")  # grid order kept
    assert table.count("\n") == 9 and "day-1-14000.jsonl" in table  # a row per job
    rows = [json.loads(x) for x in (tmp_path / "f" / "jobs.jsonl").read_text().splitlines()]
    assert sum(r["result"]["executed"] for r in rows) > 0  # the captures trade
    # again, all done: nothing runs
    again = sweep(days, tmp_path / "s", GRID_FULL, "--resume", capsys=capsys)
    assert (again["ran"], again["skipped"]) == (0, 8)


def test_a_sweep_killed_mid_write_reruns_only_the_cut_job(
    days: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kill while a row is being written leaves half a line: that job (and only it,
    plus any never written) runs again; the store ends whole and as a fresh run's."""
    out = tmp_path / "r.csv"
    sweep(days, out, GRID_FULL, capsys=capsys)
    store = tmp_path / "r.csv.jobs.jsonl"
    full = stored(store)
    lines = store.read_bytes().splitlines(keepends=True)
    store.write_bytes(b"".join(lines[:5]) + lines[5][:40])  # rows 0-4 whole, row 5 cut
    resumed = sweep(days, out, GRID_FULL, "--resume", capsys=capsys)
    assert (resumed["ran"], resumed["skipped"]) == (3, 5)
    assert stored(store) == full


def test_resume_with_other_settings_reuses_nothing(
    days: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep(days, tmp_path / "s", GRID_PART, capsys=capsys)
    other = sweep(days, tmp_path / "s", GRID_PART, "--resume", "--set",
                  "risk.symbol_cooldown_ms=5000", capsys=capsys)  # fmt: skip
    assert (other["ran"], other["skipped"]) == (4, 0)
    # and without --resume a sweep starts afresh, as re-running one always did
    fresh = sweep(days, tmp_path / "s", GRID_PART, capsys=capsys)
    assert (fresh["ran"], fresh["skipped"]) == (4, 0)


def test_job_identity_is_the_capture_bytes_not_its_path(
    days: tuple[list[Path], Path], tmp_path: Path
) -> None:
    caps, _ = days
    copy = tmp_path / "elsewhere" / caps[0].name
    copy.parent.mkdir()
    shutil.copy(caps[0], copy)
    combos = [{"detector.min_edge_usd": "0"}]
    a = plan([capture_ref(caps[0])], combos, "ctx")
    b = plan([capture_ref(copy)], combos, "ctx")
    assert a[0].job_id == b[0].job_id
    copy.write_bytes(copy.read_bytes()[:-200])
    assert plan([capture_ref(copy)], combos, "ctx")[0].job_id != a[0].job_id
    twin = tmp_path / "twin.jsonl"
    shutil.copy(caps[0], twin)
    with pytest.raises(ValueError, match="same capture"):
        plan([capture_ref(caps[0]), capture_ref(twin)], combos, "ctx")
    store = ResultStore(tmp_path / "x" / "jobs.jsonl")
    store.add([{"job": "j1", "result": {}}])
    assert "j1" in ResultStore(tmp_path / "x" / "jobs.jsonl", resume=True)


@pytest.mark.parametrize(
    ("extra", "first_line"),
    [
        (["--scheduler", "tcp://127.0.0.1:1"], "--scheduler tcp://127.0.0.1:1: needs --executor"),
        (["--resume"], "--resume needs --out"),
        (["--workers", "0", "--executor", "dask"], "--workers 0: use 1 or more"),
    ],
)  # fmt: skip
def test_sweep_flag_mistakes_are_one_line(
    days: tuple[list[Path], Path], extra: list[str], first_line: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    caps, sym = days
    rc = main(["sweep", str(caps[0]), "--symbols", str(sym), *GRID_PART, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"arbkit sweep: error: {first_line}"), (
        err
    )
