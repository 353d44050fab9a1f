"""Each analysis figure carries the frame's data; an empty frame says so instead of failing."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest

from arbkit.analysis.queries import QUERIES, Analysis
from arbkit.ui import plots


def _points(trace: go.BaseTraceType) -> int:
    return max(
        len(trace.x) if trace.x is not None else 0, len(trace.y) if trace.y is not None else 0
    )


def test_every_plotted_query_has_a_figure() -> None:
    assert set(plots.FIGURES) <= set(QUERIES)
    # a table, the hourly counts (drawn in buckets sized to the history instead), and
    # the two notebook 02 draws with arbkit.analysis.figures directly
    assert set(QUERIES) - set(plots.FIGURES) == {
        "cost_to_arb_percentiles",
        "opportunities_by_hour",
        "opportunities_over_time",
        "pnl_by_symbol",
    }


@pytest.mark.parametrize("name", list(plots.FIGURES))
def test_figure_has_traces_with_data(sample_db: Path, name: str) -> None:
    with Analysis(sample_db) as a:
        df = a.frame(name)
    fig = plots.FIGURES[name](df)
    assert isinstance(fig, go.Figure)
    assert fig.data and all(_points(t) > 0 for t in fig.data)
    assert fig.layout.title.text == QUERIES[name].title
    fig.to_json()  # serialisable (what the notebook front end receives)


@pytest.mark.parametrize("name", list(plots.FIGURES))
def test_empty_frame_gives_an_annotated_figure(sample_db: Path, name: str) -> None:
    with Analysis(sample_db) as a:
        df = a.frame(name).iloc[0:0]
    fig = plots.FIGURES[name](df)
    assert not fig.data
    assert "no " in fig.layout.annotations[-1].text


def test_dollar_axes(sample_db: Path) -> None:
    with Analysis(sample_db) as a:
        fig = plots.pnl_over_time(a.frame("pnl_over_time"))
    assert fig.layout.yaxis.tickprefix == "$"
    paper = next(t for t in fig.data if t.name == "paper PnL")
    assert list(paper.y) == pytest.approx([0.03, -0.02, -0.02])
