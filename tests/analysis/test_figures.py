"""Notebook 02/03 figures over the sample database: data in every figure, an empty
window says so, heatmap cells carry their value, no second y axis on one panel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from arbkit.analysis import figures
from arbkit.analysis.queries import Analysis


def _frames(db: Path) -> dict[str, pd.DataFrame]:
    with Analysis(db) as a:
        return {
            "cost": a.frame("cost_to_arb_distribution", bucket_cents=1),
            "over": a.frame("opportunities_over_time", bucket_s=300),
            "duration": a.frame("opportunity_duration", gap_ms=3000),
            "pnl": a.frame("pnl_by_symbol"),
        }


def _figs(f: dict[str, pd.DataFrame]) -> list[go.Figure]:
    return [
        figures.cost_to_arb_distribution(f["cost"]),
        figures.opportunities_over_time(f["over"], 300),
        figures.opportunity_duration(f["duration"]),
        figures.pnl_by_symbol(f["pnl"]),
    ]


def test_figures_have_data_and_empty_ones_say_so(sample_db: Path) -> None:
    f = _frames(sample_db)
    for fig in _figs(f):
        assert fig.data and all(len(t.x) > 0 for t in fig.data), fig.layout.title.text
        fig.to_json()
    for fig in _figs({k: v.iloc[0:0] for k, v in f.items()}):
        assert not fig.data and "no " in fig.layout.annotations[-1].text
    over = figures.opportunities_over_time(f["over"], 300)
    assert over.layout.xaxis2.title.text == "time (UTC), 5 min buckets"
    assert over.layout.xaxis2.tickformat == "%H:%M"


def test_heatmap_values_and_stacked_axes() -> None:
    table = pd.DataFrame([[1.5, -0.25], [0.0, float("nan")]], index=["0.01", "0.02"],
                         columns=["5", "10"])  # fmt: skip
    fig = figures.heatmap(table, title="t", x_title="size", y_title="edge")
    assert [list(r) for r in fig.data[0].text] == [["$1.50", "-$0.25"], ["$0.00", ""]]
    assert fig.data[0].texttemplate == "%{text}"
    df = pd.DataFrame({"k": ["1", "2"], "pnl": [1.0, 2.0], "n": [3, 4]})
    fig = figures.sensitivity(df, "k", title="t", x_title="k", money=[("pnl", "PnL")],
                              counts=[("n", "executions")])  # fmt: skip
    layout = fig.layout.to_plotly_json()
    assert [k for k in layout if k.startswith("yaxis")] == ["yaxis", "yaxis2"]
    assert not any("overlaying" in v for k, v in layout.items() if k.startswith("yaxis"))
    assert (fig.layout.yaxis.title.text, fig.layout.yaxis2.title.text) == ("dollars", "count")
