"""Notebook 02 (spread analysis) runs headless (nbclient, the venv's python3 kernel):
against the sample database (SQLite and its Parquet export, with and without a time
window), and on a fresh checkout with no database, where it records a short demo one."""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from tests.notebooks.nbrun import NOTEBOOKS, error_outputs, run_notebook

PLOTLY = "application/vnd.plotly.v1+json"
PROBE = (
    "{'first_line': report.summary_lines(summary)[0], "
    "'frame': {k: str(v) for k, v in report.summary_frame(summary)['value'].items()}, "
    "'pnl': pnl_table.to_dict('records'), 'positions': positions_table.to_dict('records'), "
    "'bucket_s': bucket_s, 'runs': summary['runs'], 'db': str(db)}"
)


def _params(db: str | None, **kw: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "DB_PATH": db, "DEMO_DB": "data/demo_analysis.sqlite", "DEMO_SECONDS": 5,
        "N_SYMBOLS": 3, "SEED": 7, "RUN": None, "SINCE": None, "UNTIL": None,
    }  # fmt: skip
    p.update(kw)
    return p


def _points(values: Any) -> int:
    """Points in a trace's x or y as plotly serialises them: a list, or a typed array
    ``{"dtype": "f8", "bdata": <base64>}``."""
    if values is None:
        return 0
    if isinstance(values, dict):
        return len(base64.b64decode(values["bdata"])) // np.dtype(values["dtype"]).itemsize
    return len(values)


def _figures(nb: Any) -> list[dict[str, Any]]:
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    return [o.data[PLOTLY] for o in outputs if PLOTLY in o.get("data", {})]


def _stdout(nb: Any) -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )


def test_parameters_cell() -> None:
    nb = nbformat.read(NOTEBOOKS / "02_spread_analysis.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "DB_PATH = None" in tagged[0].source


@pytest.mark.parametrize("kind", ["sqlite", "parquet", "window"])
def test_spread_analysis_notebook(
    sample_db: Path, parquet_dir: Path, tmp_path: Path, kind: str
) -> None:
    source = parquet_dir if kind == "parquet" else sample_db
    window = {"SINCE": "2027-01-15T09:00"} if kind == "window" else {}
    nb, out = run_notebook(
        "02_spread_analysis.ipynb", _params(str(source), **window), PROBE, cwd=tmp_path
    )
    assert not error_outputs(nb)
    frame = out["frame"]
    if kind == "window":  # CPI (hour 1) and GDP (hour 2) only; FED was in hour 0
        assert frame["rows: opportunities"] == "3"
        # e1 (FED paper, 08:10) is before the window; e2 CPI, e3 FED live, e4 GDP in it
        assert [(r["symbol"], r["mode"]) for r in out["pnl"]] == [
            ("CPI-26JAN", "paper"), ("FED-25DEC", "live"), ("GDP-26Q1", "paper")
        ]  # fmt: skip
        assert frame["realized PnL"] == "$0.070000"  # -0.05 + 0.12 + 0
        assert "filtered: since 2027-01-15T09:00:00.000Z" in _stdout(nb)
        return
    assert frame["realized PnL"] == "$0.100000" and frame["hedge cost"] == "$0.080000"
    assert frame["rows: opportunities"] == "7" and frame["span"] == "2 h 59 min"
    assert out["first_line"].endswith(
        "2027-01-15T08:00:00.000Z → 2027-01-15T10:59:00.002Z (2 h 59 min)"
    )
    # per-symbol PnL, exact strings
    pnl = {(r["symbol"], r["mode"]): r for r in out["pnl"]}
    assert pnl[("FED-25DEC", "live")]["realized PnL"] == "$0.120000"
    assert sum(r["executions"] for r in out["pnl"]) == 4
    # one open position (FED, two legs); CPI's row holds nothing
    assert [(p["symbol"], p["legs"], p["cost"]) for p in out["positions"]] == [
        ("FED-25DEC", "ForecastEx NO 6 + Kalshi YES 6", "$5.700000")
    ]
    # three hours of history: 5-minute buckets (at most 60 bars), not one bar per hour
    assert out["bucket_s"] == 300
    figs = _figures(nb)
    assert len(figs) == 9
    for fig in figs:
        assert fig["data"], fig["layout"]["title"]
        for trace in fig["data"]:
            assert max(_points(trace.get("x")), _points(trace.get("y"))) > 0, trace.get("name")
    titles = [f["layout"]["title"]["text"] for f in figs]
    over = figs[titles.index("Opportunities over time and their net edge per contract")]
    assert over["layout"]["xaxis2"]["title"]["text"] == "time (UTC), 5 min buckets"
    assert len({x for t in over["data"] if t["type"] == "bar" for x in t["x"]}) == 3
    cost = figs[titles.index("Cost to buy both sides (before fees): how often each price occurred")]
    assert {t["type"] for t in cost["data"]} == {"bar"}
    slots = sorted({(t["offset"], t["width"]) for t in cost["data"]})  # one per symbol
    assert len(slots) == 3
    assert all(a[0] + a[1] <= b[0] + 1e-12 for a, b in itertools.pairwise(slots))
    assert slots[-1][0] + slots[-1][1] <= 0.01  # inside the 1-cent bucket
    duration = figs[titles.index("How long opportunities lasted (after fees), one row per episode")]
    assert duration["layout"]["barmode"] == "stack"
    assert len({str(t["xbins"]) for t in duration["data"]}) == 1  # shared bins
    tables = [
        o.data["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/html" in o.get("data", {})
    ]
    assert any("p50_usd" in t and "FED-25DEC" in t for t in tables)  # the percentiles frame
    assert any("realized PnL: live" in t for t in tables)  # the summary frame


def test_spread_analysis_records_a_demo_database(tmp_path: Path) -> None:
    """A fresh checkout: no database, DB_PATH None → a short paper demo is recorded and
    analysed (seconds of history: 1-second buckets)."""
    nb, out = run_notebook("02_spread_analysis.ipynb", _params(None), PROBE, cwd=tmp_path)
    assert not error_outputs(nb)
    db = tmp_path / "data" / "demo_analysis.sqlite"
    assert out["db"] == str(db) and db.is_file()
    assert "no DB_PATH given: recording 5 s of the local demo" in _stdout(nb)
    assert out["runs"] == 1 and out["bucket_s"] == 1
    assert int(out["frame"]["rows: spreads"]) > 0
    assert out["first_line"].startswith(f"arbkit database {db}: 1 run, ")
    over = next(
        f for f in _figures(nb) if f["layout"]["title"]["text"].startswith("Opportunities over")
    )
    assert over["layout"]["xaxis2"]["tickformat"] == "%H:%M:%S"
