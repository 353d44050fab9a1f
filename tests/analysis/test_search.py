"""``arbkit search``: Optuna TPE and grid samplers over exact decimal ranges, a journal
file that a later run resumes, walk-forward in/out-of-sample figures per trial, and the
best set written into the trader's own execution config."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from arbkit.analysis.replay import prepare_file, replay
from arbkit.analysis.search import parse_range, risk_adjusted_units
from arbkit.analysis.sweep_jobs import RESULT_FIELDS
from arbkit.cli import main
from arbkit.config.execution_loader import apply_overrides, load_execution_config
from arbkit.config.loader import load_symbol_map
from benchmarks.sweep_scale import day_captures

DAYS = [8_000, 14_000, 20_000]  # events per capture; generated once per test session

EDGE, SIZE = "detector.min_edge_usd", "detector.max_contracts_per_trade"
RANGES = ["--range", "detector.min_edge_usd=0:0.04:0.005",
          "--range", "detector.max_contracts_per_trade=1:200"]  # fmt: skip


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    base = tmp_path_factory.getbasetemp() / "sweep-days"
    return day_captures(base, DAYS, n_symbols=8, seed=3)


def search(
    days: tuple[list[Path], Path], tmp: Path, *extra: str, caps: list[Path] | None = None,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, Any]:  # fmt: skip
    paths, sym = days
    rc = main(["search", *map(str, caps or paths[:2]), "--symbols", str(sym),
               "--storage", str(tmp / "journal.log"), "--out", str(tmp / "best.toml"),
               "--quiet", "--json", *extra])  # fmt: skip
    out = capsys.readouterr()
    assert rc == 0, out.err
    got: dict[str, Any] = json.loads(out.out)
    return got


def test_tpe_search_resumes_from_its_journal(
    days: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = search(days, tmp_path, *RANGES, "--study", "s", "--trials", "3", capsys=capsys)
    assert (first["trials"], first["ran"]) == (3, 3)
    again = search(days, tmp_path, *RANGES, "--study", "s", "--trials", "5", capsys=capsys)
    assert (again["trials"], again["ran"]) == (5, 2)  # the trial count continues
    rows = again["rows"]
    assert [r["trial"] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[:3] == first["rows"]  # the first run's trials, read back from the journal
    keys = ("detector.min_edge_usd", "detector.max_contracts_per_trade")
    # a resumed sampler does not replay the first run's random draws
    assert [tuple(r[k] for k in keys) for r in rows[3:]] != [
        tuple(r[k] for k in keys) for r in rows[:2]
    ]
    import optuna

    study = optuna.load_study(
        study_name="s",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log"))
        ),
    )
    assert len(study.trials) == 5
    # every value tried is an exact point of its range, as a config file would say it
    for r in rows:
        edge = r["detector.min_edge_usd"]
        assert edge in parse_range("k=0:0.04:0.005").grid_values()
        assert 1 <= int(r["detector.max_contracts_per_trade"]) <= 200
    # another study definition under the same name is refused, not mixed in
    rc = main(["search", *map(str, days[0][:2]), "--symbols", str(days[1]), "--range",
               "detector.min_edge_usd=0:0.01:0.005", "--study", "s", "--storage",
               str(tmp_path / "journal.log"), "--out", str(tmp_path / "b.toml"),
               "--quiet"])  # fmt: skip
    assert rc == 2 and "made with other ranges" in capsys.readouterr().err


def test_grid_sampler_visits_every_point_once_and_stops(
    days: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    got = search(days, tmp_path, "--range", "detector.min_edge_usd=0:0.02:0.01", "--range",
                 "detector.max_contracts_per_trade=1:50:49", "--sampler", "grid",
                 "--trials", "50", "--study", "g", "--jobs", "2", capsys=capsys)  # fmt: skip
    assert got["exhausted"] and got["trials"] == 6
    points = {(r[EDGE], r[SIZE]) for r in got["rows"]}
    assert points == {(e, n) for e in ("0", "0.01", "0.02") for n in ("1", "50")}


def test_walk_forward_scores_later_days_out_of_sample_exactly(
    days: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths, sym = days
    shuffled = [paths[2], paths[0], paths[1]]  # given out of order: sorted by time
    got = search(days, tmp_path, *RANGES, "--study", "w", "--trials", "3", "--walk-forward",
                 caps=shuffled, capsys=capsys)  # fmt: skip
    assert got["in_sample"] == [str(paths[0]), str(paths[1])]
    assert got["out_of_sample"] == [str(paths[2])]
    symbols = load_symbol_map(sym)
    base = apply_overrides(load_execution_config_default(), {"mode": "paper"})
    for r in got["rows"]:
        params = {k: r[k] for k in ("detector.min_edge_usd", "detector.max_contracts_per_trade")}
        cfg = apply_overrides(base, params)
        scores = [_score(p, symbols, cfg) for p in paths]
        assert r["in_sample_score_units"] == scores[0] + scores[1]
        assert r["out_of_sample_score_units"] == scores[2]
    best = max(got["rows"], key=lambda r: (r["in_sample_score_units"], -r["trial"]))
    assert got["best"] == best  # chosen on in-sample only
    csv = (tmp_path / "best.trials.csv").read_text().splitlines()
    assert len(csv) == 4 and "out_of_sample_score_units" in csv[0]


def test_best_toml_keeps_the_traders_other_settings(
    days: tuple[list[Path], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    user = tmp_path / "user.toml"
    user.write_text('mode = "monitor"\n[risk]\nmax_daily_realized_loss_usd = "123.45"\n'
                    'symbol_cooldown_ms = 777\n[detector]\nmax_quote_age_ms = 4321\n')  # fmt: skip
    got = search(days, tmp_path, *RANGES, "--study", "b", "--trials", "2", "--execution",
                 str(user), capsys=capsys)  # fmt: skip
    written = load_execution_config(tmp_path / "best.toml")
    mine = load_execution_config(user)
    best = {k: got["best"][k] for k in (EDGE, SIZE)}
    assert written == replace(apply_overrides(mine, best), source=str(tmp_path / "best.toml"))
    assert str(written.risk.max_daily_realized_loss_usd) != str(
        load_execution_config_default().risk.max_daily_realized_loss_usd
    )
    assert written.risk.symbol_cooldown_ms == 777 and written.detector.max_quote_age_ms == 4321
    assert written.mode.value == "monitor"  # replays were paper; the trader's mode is kept


def test_risk_adjusted_objective_is_exact_and_charges_round_up() -> None:
    r = dict.fromkeys(RESULT_FIELDS, 0)
    r.update(realized_pnl=10_000_000, max_exposure=1, executions_unhedged=0)
    assert risk_adjusted_units(r) == 10_000_000 - 1  # 1 % of 1 unit, rounded up
    r.update(max_exposure=200_000_000, executions_unhedged=2, hedge_cost=30_000)
    assert risk_adjusted_units(r) == 10_000_000 - 30_000 - 2_000_000 - 2_000_000
    with pytest.raises(ValueError, match="whole number of steps"):
        parse_range("detector.min_edge_usd=0:0.05:0.02")
    with pytest.raises(ValueError, match="paper mode only"):
        parse_range("mode=0:1")


def load_execution_config_default() -> Any:
    from arbkit.config.execution_loader import ExecutionConfig

    return ExecutionConfig()


def _score(path: Path, symbols: Any, cfg: Any) -> int:
    res = asyncio.run(replay(prepare_file(path, symbols), symbols, cfg))
    return risk_adjusted_units({k: int(getattr(res, k)) for k in RESULT_FIELDS})
