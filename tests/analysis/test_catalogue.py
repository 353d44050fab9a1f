"""The capture catalogue and the Kalshi L2 importer, through the CLI (issue 17).

A third-party Kalshi history in hive-partitioned Parquet (written here by DuckDB's own
PARTITION_BY, as archives are) is imported; a ForecastEx recording of the same minutes
sits next to it with its symbol map; the catalogue indexes both (DuckDB-queryable) and
``arbkit replay --catalogue`` runs them together in time order and trades the cross.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from arbkit.analysis.catalogue import Catalogue
from arbkit.analysis.duck import connect
from arbkit.storage.capture import ibkr_line, symbol_map_path

T0 = 1_796_000_000 * 1_000_000_000  # 2026-11-30
S = 1_000_000_000
A, B = "KXTEST-26DEC-A", "KXTEST-26DEC-B"
A_YES, A_NO, B_YES, B_NO = 900001, 900002, 900003, 900004

MAP = f"""
[symbols.TEST-A]
kalshi_ticker = "{A}"
kalshi_yes_is = "yes"
resolution = 2026-12-20

[symbols.TEST-A.forecastex]
yes_con_id = {A_YES}
no_con_id = {A_NO}

[symbols.TEST-B]
kalshi_ticker = "{B}"
kalshi_yes_is = "yes"
resolution = 2026-12-20

[symbols.TEST-B.forecastex]
yes_con_id = {B_YES}
no_con_id = {B_NO}
"""


def arbkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arbkit.cli", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )  # fmt: skip


def write_l2(root: Path) -> dict[str, int]:
    """Snapshots every 5 s for 60 s (B has a 30 s hole), a few trades, one settlement.
    A's NO bids at 0.55 make its YES ask 0.45 — against a ForecastEx NO ask of 0.50 that
    is a cross worth trading; B never crosses."""
    root.mkdir()
    con = connect()
    snaps: list[tuple[Any, ...]] = []
    n = {"snapshots": 0}
    for k in range(13):
        t = T0 + k * 5 * S
        for ticker in (A, B):
            if ticker == B and 4 <= k <= 9:
                continue  # the hole: no snapshot of B for 35 s
            n["snapshots"] += 1
            no_bid = "0.5500" if ticker == A else "0.4000"
            for side, price, size in (
                ("yes", "0.3000", "40.00"),
                ("yes", "0.3100", "25.00"),
                ("no", no_bid, "30.00"),
                ("no", "0.2000", "12.50"),
            ):
                snaps.append((t, ticker, side, price, size, "2026-11-30"))
    con.execute(
        "CREATE TABLE s (ts BIGINT, ticker VARCHAR, side VARCHAR, price DECIMAL(8, 4), "
        "size DECIMAL(12, 2), date VARCHAR)"
    )
    con.executemany("INSERT INTO s VALUES (?, ?, ?, ?, ?, ?)", snaps)
    con.execute(
        f"COPY (SELECT make_timestamp(ts // 1000) AS ts, * EXCLUDE (ts) FROM s) "
        f"TO '{root / 'orderbook_snapshots'}' (FORMAT PARQUET, PARTITION_BY (date, ticker))"
    )
    con.execute(
        "CREATE TABLE tr AS SELECT * FROM (VALUES "
        f"({T0 + 7 * S}, '{A}', 0.45, 3.0, 'yes', '2026-11-30'), "
        f"({T0 + 21 * S}, '{B}', 0.61, 1.0, 'no', '2026-11-30')) "
        "AS v(ts, ticker, yes_price, count, taker_side, date)"
    )  # yes_price as a float column: clean $0.0001 values are accepted
    con.execute(f"COPY tr TO '{root / 'trades'}' (FORMAT PARQUET, PARTITION_BY (date))")
    (root / "markets").mkdir()
    con.execute(
        f"COPY (SELECT * FROM (VALUES ('{A}', make_timestamp({(T0 + 86_400 * S) // 1000})), "
        f"('{B}', make_timestamp({(T0 + 86_400 * S) // 1000}))) AS v(ticker, close_time)) "
        f"TO '{root / 'markets' / 'markets.parquet'}' (FORMAT PARQUET)"
    )
    (root / "settlements").mkdir()
    con.execute(
        f"COPY (SELECT '{B}' AS ticker, {T0 + 62 * S}::BIGINT AS settled_ts, 'no' AS result) "
        f"TO '{root / 'settlements' / 's.parquet'}' (FORMAT PARQUET)"
    )
    con.close()
    return n


def write_ibkr(path: Path) -> None:
    """ForecastEx quotes for both questions over the same minute, with its map."""
    with gzip.open(path, "wb") as f:
        for k in range(60):
            t = T0 + k * S + S // 2
            for yes, no in ((A_YES, A_NO), (B_YES, B_NO)):
                f.write(ibkr_line({"conId": yes, "bid": 0.45, "bidSize": 10, "ask": 0.52,
                                   "askSize": 10}, t))  # fmt: skip
                f.write(ibkr_line({"conId": no, "bid": 0.46, "bidSize": 10, "ask": 0.50,
                                   "askSize": 10}, t + 1))  # fmt: skip
    symbol_map_path(path).write_text(MAP)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("cat")
    n = write_l2(d / "l2")
    caps = d / "captures"
    caps.mkdir()
    p = arbkit("captures", "import-kalshi-l2", str(d / "l2"), "--out",
               str(caps / "kalshi-l2.jsonl.gz"), "--json", cwd=d)  # fmt: skip
    assert p.returncode == 0, p.stderr
    write_ibkr(caps / "fx.jsonl.gz")
    (d / "map.toml").write_text(MAP)
    return {"dir": d, "caps": caps, "import": json.loads(p.stdout), **n}


def test_import_writes_snapshots_as_snapshots(catalogue: dict[str, Any]) -> None:
    """Every snapshot is one orderbook_snapshot message — no orderbook_delta is invented
    — with the levels exactly as given; trades and the settlement come along."""
    rep = catalogue["import"]
    assert rep["snapshots"] == catalogue["snapshots"] == 13 + 7
    assert rep["trades"] == 2 and rep["settlements"] == 1 and rep["markets"] == 2
    assert rep["missing_intervals"] == 1  # B's hole
    cap = catalogue["caps"] / "kalshi-l2.jsonl.gz"
    assert cap.stat().st_mode & 0o777 == 0o600
    types: dict[str, int] = {}
    first_a: dict[str, Any] | None = None
    with gzip.open(cap) as f:
        for line in f:
            msg = orjson.loads(orjson.loads(line)["raw"])
            types[msg["type"]] = types.get(msg["type"], 0) + 1
            if msg["type"] == "orderbook_snapshot" and first_a is None:
                first_a = msg["msg"] if msg["msg"]["market_ticker"] == A else None
    assert "orderbook_delta" not in types
    assert types["orderbook_snapshot"] == rep["snapshots"]
    assert types["trade"] == 2 and types["market_lifecycle_v2"] == 2 + 2  # closes + det/settle
    assert first_a is not None
    assert first_a["yes_dollars_fp"] == [["0.3000", "40.00"], ["0.3100", "25.00"]]
    assert first_a["no_dollars_fp"] == [["0.2000", "12.50"], ["0.5500", "30.00"]]


def test_catalogue_lists_and_is_queryable_with_duckdb(catalogue: dict[str, Any]) -> None:
    caps: Path = catalogue["caps"]
    p = arbkit("captures", str(caps), "--coverage", cwd=catalogue["dir"])
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith(f"2 of 2 captures in {caps}"), first
    assert "snapshot_only" in p.stdout and "missing" in p.stdout
    cat = Catalogue(caps)
    con = cat.duck()
    rows = con.execute(
        "SELECT regexp_extract(path, '[^/]+$'), venues, events, symbols_file <> '' "
        "FROM captures ORDER BY 1"
    ).fetchall()
    assert rows == [
        ("fx.jsonl.gz", ["ibkr"], 240, True),
        ("kalshi-l2.jsonl.gz", ["kalshi"], 3 + 20 + 2 + 4, False),
    ]
    cov = dict(con.execute("SELECT kind, count(*) FROM coverage GROUP BY kind").fetchall())
    assert cov == {"snapshot_only": 2, "missing": 1}
    [(key, seconds)] = con.execute(
        "SELECT key, seconds FROM coverage WHERE kind = 'missing'"
    ).fetchall()
    assert key == B and seconds == 35.0
    # a selection by symbol and time: the recorded map knows TEST-A; the import has none
    assert [Path(e.path).name for e in cat.select(["TEST-A"])] == [
        "kalshi-l2.jsonl.gz",  # first event at T0
        "fx.jsonl.gz",  # at T0 + 0.5 s
    ]
    assert cat.select(since_ns=T0 + 3600 * S) == []  # the captures end after a minute


def test_replay_a_catalogue_selection_in_time_order(catalogue: dict[str, Any]) -> None:
    """The imported Kalshi history and the ForecastEx recording replay together: A's
    cross (Kalshi YES 0.45 + ForecastEx NO 0.50) is traded; without --symbols the
    imported capture (no recorded map) is refused with what to do."""
    d, caps = catalogue["dir"], str(catalogue["caps"])
    p = arbkit("replay", "--catalogue", caps, "--symbols", "map.toml", "--json", "--quiet", cwd=d)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["executed"] >= 1 and out["realized_pnl_e6"] > 0, out
    assert "2 captures in time order" in p.stderr
    only_b = arbkit("replay", "--catalogue", caps, "--symbols", "map.toml", "--symbol", "TEST-B",
                    "--json", "--quiet", cwd=d)  # fmt: skip
    assert only_b.returncode == 0, only_b.stderr
    assert json.loads(only_b.stdout)["executed"] == 0  # B never crosses
    late = arbkit("replay", "--catalogue", caps, "--symbols", "map.toml", "--since",
                  "2026-12-01", "--quiet", cwd=d)  # fmt: skip
    assert late.returncode == 2 and "holds no capture" in late.stderr, late.stderr
    bare = arbkit("replay", "--catalogue", caps, "--quiet", cwd=d)
    assert bare.returncode == 2
    [line] = bare.stderr.strip().splitlines()
    assert "no symbol map was recorded with it (imported history)" in line, line


def test_import_refuses_off_grid_prices(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    (root / "orderbook_snapshots").mkdir(parents=True)
    con = connect()
    con.execute(
        f"COPY (SELECT {T0}::BIGINT AS ts, '{A}' AS ticker, 'yes' AS side, 0.12345 AS price, "
        f"1.0 AS size) TO '{root / 'orderbook_snapshots' / 'p.parquet'}' (FORMAT PARQUET)"
    )
    con.close()
    p = arbkit("captures", "import-kalshi-l2", str(root), "--out", "x.jsonl.gz", cwd=tmp_path)
    assert p.returncode == 2
    [line] = p.stderr.strip().splitlines()
    assert "price: '0.12345' is not a value on the 0.0001 grid" in line, line
    assert not (tmp_path / "x.jsonl.gz").exists()


def test_sweep_and_search_take_a_catalogue_selection(tmp_path: Path) -> None:
    """Recorded captures carry their maps: a sweep over the catalogue needs no
    --symbols, runs one job per (parameter set × capture), and so does a search."""
    from benchmarks.capture_gen import generate

    caps = tmp_path / "captures"
    caps.mkdir()
    for name, n in (("day1.jsonl", 2_000), ("day2.jsonl", 2_500)):  # one map, two files
        with (caps / name).open("wb") as fh:
            generate(fh, n, 3, 3, symbol_map_path(caps / name))
    grid = ["--grid", "detector.min_edge_usd=0.01,0.02", "--jobs", "1", "--json", "--quiet"]
    p = arbkit("sweep", "--catalogue", str(caps), "--out", str(tmp_path / "sw"), *grid,
               cwd=tmp_path)  # fmt: skip
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["jobs"] == 4 and out["ran"] == 4
    assert [Path(c).name for c in out["captures"]] == ["day1.jsonl", "day2.jsonl"]
    one = arbkit("sweep", str(caps / "day1.jsonl"), "--out", str(tmp_path / "one"), *grid,
                 cwd=tmp_path)  # fmt: skip
    assert one.returncode == 0 and json.loads(one.stdout)["jobs"] == 2, one.stderr
    s = arbkit("search", "--catalogue", str(caps), "--range",
               "detector.min_edge_usd=0.01:0.02:0.01", "--sampler", "grid", "--trials", "2",
               "--storage", str(tmp_path / "j.log"), "--study", "t", "--out",
               str(tmp_path / "best.toml"), "--jobs", "1", "--quiet", cwd=tmp_path)  # fmt: skip
    assert s.returncode == 0, s.stderr
    assert (tmp_path / "best.toml").exists()
