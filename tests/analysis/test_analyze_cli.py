"""``arbkit analyze`` through ``arbkit.cli.main`` on a database that two real short demo
runs wrote (local venues over loopback, paper trading)."""

from __future__ import annotations

import json
import re
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbkit.cli import main

MONEY = re.compile(r"-?\$[\d,]+\.\d{6}(?!\d)")  # every dollar amount: six decimals


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("analyze")
    db = d / "demo.sqlite"
    for seed, seconds, resolve in (("3", "6", "2"), ("5", "4", "-1")):
        rc = main(
            [
                "demo", "--seconds", seconds, "--symbols", "4", "--no-ui", "--db", str(db),
                "--data-dir", str(d / "data"), "--dislocations-per-min", "30",
                "--seed", seed, "--resolve-after", resolve,
            ]
        )  # fmt: skip
        assert rc == 0
    return db


def _analyze(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(["analyze", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _json(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> dict[str, Any]:
    rc, out, err = _analyze(capsys, "--db", str(db), "--json", *args)
    assert rc == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def _db(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_text_summary(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _analyze(capsys, "--db", str(demo_db))
    assert rc == 0, err
    lines = out.splitlines()
    # first line: the database, how many runs, and the time span they cover
    assert re.fullmatch(
        rf"arbkit database {re.escape(str(demo_db))}: 2 runs, "
        r"\d{4}-\d\d-\d\dT[\d:.]+Z → \d{4}-\d\d-\d\dT[\d:.]+Z \(\d+\.\d s\)",
        lines[0],
    ), lines[0]
    # every dollar amount at the same precision (six decimals)
    dollars = re.findall(r"-?\$[\d,.]+", out)
    assert dollars and all(MONEY.fullmatch(d) for d in dollars), dollars
    # per-symbol PnL: one line per (symbol, mode) that executed, the exact sums
    i = lines.index("PnL by symbol")
    by_symbol = _db(
        demo_db,
        "SELECT symbol, count(*), sum(realized_pnl_e6) FROM arb_executions "
        "GROUP BY symbol ORDER BY symbol",
    )
    assert by_symbol
    for (symbol, n, pnl), line in zip(by_symbol, lines[i + 2 :], strict=False):
        cells = line.split()
        assert cells[:3] == [symbol, "paper", str(n)], line
        sign = "-" if pnl < 0 else ""
        assert cells[4] == f"{sign}${abs(Decimal(pnl)).scaleb(-6):,.6f}", line
    # open positions: one line per symbol held (two legs), not per row
    held = _db(demo_db, "SELECT symbol, count(*) FROM positions WHERE qty_e2 <> 0 GROUP BY 1")
    pos = next(x for x in lines if x.startswith("open positions"))
    legs = sum(n for _, n in held)
    assert pos == f"open positions    {len(held)} ({legs} legs)", pos
    j = lines.index(pos)
    listed = [x.split()[0] for x in lines[j + 1 : j + 1 + len(held)]]
    assert listed == sorted(s for s, _ in held)
    assert all("Kalshi" in x and "ForecastEx" in x for x in lines[j + 1 : j + 1 + len(held)])


def test_json_is_exact(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys, demo_db)
    total = _db(demo_db, "SELECT coalesce(sum(realized_pnl_e6), 0) FROM arb_executions")[0][0]
    assert data["realized_pnl_usd"] == f"{Decimal(total).scaleb(-6):.6f}"
    assert data["runs"] == 2 and isinstance(data["first_ns"], int)
    assert isinstance(data["rows"]["opportunities"], int)

    def money_fields(v: Any, key: str = "") -> list[Any]:
        if isinstance(v, dict):
            return [x for k, w in v.items() for x in money_fields(w, k)]
        if isinstance(v, list):
            return [x for w in v for x in money_fields(w, key)]
        return [v] if key.endswith("_usd") else []

    amounts = money_fields(data)
    assert len(amounts) > 10
    # exact decimal strings (six places) or null, never a float
    assert all(
        a is None or (isinstance(a, str) and re.fullmatch(r"-?\d+\.\d{6}", a)) for a in amounts
    ), amounts
    assert sum(Decimal(r["realized_pnl_usd"]) for r in data["pnl_by_symbol"]) == Decimal(
        data["realized_pnl_usd"]
    )
    held = _db(demo_db, "SELECT symbol, venue, outcome, qty_e2, cost_e6 FROM positions "
               "WHERE qty_e2 <> 0 ORDER BY 1, 2, 3")  # fmt: skip
    got = [
        (p["symbol"], leg["venue"], leg["outcome"], leg["contracts"], leg["cost_usd"])
        for p in data["open_positions"]
        for leg in p["legs"]
    ]
    assert got == [
        (s, v, o, f"{Decimal(q).scaleb(-2):f}", f"{Decimal(c).scaleb(-6):.6f}")
        for s, v, o, q, c in held
    ]


def test_run_and_date_filters(demo_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = _db(demo_db, "SELECT run_id, started_ns, ended_ns FROM runs ORDER BY started_ns")
    assert len(runs) == 2
    everything = _json(capsys, demo_db)
    first = _json(capsys, demo_db, "--run", runs[0][0])
    assert first["runs"] == 1 and first["filter"]["run"] == runs[0][0]
    n_first = _db(demo_db, f"SELECT count(*) FROM opportunities WHERE run_id = '{runs[0][0]}'")
    assert first["rows"]["opportunities"] == n_first[0][0]
    assert 0 < first["rows"]["opportunities"] < everything["rows"]["opportunities"]
    assert first["rows"]["spreads"] < everything["rows"]["spreads"]

    # a window from the second run's start: the second run's rows only
    second_start = runs[1][1]
    iso = _iso_minute_floor_plus(second_start)
    since = _json(capsys, demo_db, "--since", iso)
    expect = _db(
        demo_db,
        f"SELECT count(*) FROM opportunities WHERE detected_ns >= {_ns(iso)}",
    )[0][0]
    assert since["rows"]["opportunities"] == expect
    until = _json(capsys, demo_db, "--until", iso)
    assert (
        since["rows"]["opportunities"] + until["rows"]["opportunities"]
        == everything["rows"]["opportunities"]
    )
    rc, out, _ = _analyze(capsys, "--db", str(demo_db), "--since", iso)
    assert rc == 0 and out.splitlines()[1].startswith("filtered: since ")


def _ns(iso: str) -> int:
    from arbkit.analysis.queries import utc_ns

    v = utc_ns(iso)
    assert v is not None
    return v


def _iso_minute_floor_plus(ns: int) -> str:
    """A --since value with sub-second precision at ``ns`` (ISO, UTC)."""
    import datetime as dt

    t = dt.datetime.fromtimestamp(ns // 10**9, dt.UTC).replace(microsecond=ns % 10**9 // 1000)
    return t.replace(tzinfo=None).isoformat()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--run", "nope"), "no run 'nope'"),
        (("--since", "yesterday"), "--since: 'yesterday' is not a date/time"),
        (("--since", "2026-12-05", "--until", "2026-12-04"), "is not after --since"),
    ],
)
def test_mistakes_one_line_exit_2(
    demo_db: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    rc, out, err = _analyze(capsys, "--db", str(demo_db), *args)
    assert rc == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err, err
