"""Plotly figures for the named analysis queries (:mod:`arbkit.analysis.queries`).

One function per query, each taking that query's DataFrame (already aggregated in SQL,
so a figure has at most a few thousand points whatever the history's size). Titles and
axes are in a trader's words; dollars carry a $ and cents. An empty frame gives a figure
that says so instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go

from arbkit.analysis import figures
from arbkit.analysis.queries import QUERIES

USD_TICKS = {"tickprefix": "$", "tickformat": ",.2f"}
CENTS_TICKS = {"tickprefix": "$", "tickformat": ",.3f"}
_MODE_COLOR = {"paper": "#1f77b4", "live": "#d62728", "monitor": "#7f7f7f"}


def _figure(name: str, **layout: object) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=QUERIES[name].title, template="plotly_white", **layout)
    return fig


def _no_data(fig: go.Figure, what: str) -> go.Figure:
    fig.add_annotation(
        text=f"no {what} in this database yet",
        showarrow=False,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
    )
    return fig


def fee_drag(df: pd.DataFrame) -> go.Figure:
    """Gross edge, what fees took, and the net edge left, per symbol and combination."""
    fig = _figure(
        "fee_drag",
        barmode="group",
        xaxis={"title": "symbol · combination"},
        yaxis={"title": "summed over detections", **USD_TICKS},
    )
    if df.empty:
        return _no_data(fig, "opportunities")
    labels = df["symbol"] + " · " + df["combo"]
    return figures.dollar_bars(
        fig,
        labels,
        df,
        (("gross_edge_usd", "gross edge"), ("fees_usd", "fees"), ("net_edge_usd", "net edge")),
    )


def pnl_over_time(df: pd.DataFrame) -> go.Figure:
    """Cumulative realized PnL per mode (paper and live apart), with hedge costs."""
    fig = _figure(
        "pnl_over_time",
        xaxis={"title": "time (UTC)"},
        yaxis={"title": "cumulative", **USD_TICKS},
    )
    if df.empty:
        return _no_data(fig, "finished executions")
    for mode, g in df.groupby("mode", sort=True):
        color = _MODE_COLOR.get(str(mode))
        fig.add_trace(
            go.Scatter(
                x=g["at"],
                y=g["cumulative_pnl_usd"],
                name=f"{mode} PnL",
                mode="lines+markers",
                line={"shape": "hv", "color": color},
                customdata=g[["execution_id", "realized_pnl_usd"]],
                hovertemplate="$%{y:,.4f} after %{customdata[0]} "
                "($%{customdata[1]:,.4f})<extra>%{fullData.name}</extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=g["at"],
                y=g["cumulative_hedge_cost_usd"],
                name=f"{mode} hedge cost",
                mode="lines",
                line={"shape": "hv", "dash": "dot", "color": color},
                hovertemplate="$%{y:,.4f}<extra>%{fullData.name}</extra>",
            )
        )
    return fig


def hedge_costs(df: pd.DataFrame) -> go.Figure:
    """What each hedge cost against the profit the execution expected."""
    fig = _figure(
        "hedge_costs",
        barmode="group",
        xaxis={"title": "execution"},
        yaxis={"title": "per execution", **USD_TICKS},
    )
    if df.empty:
        return _no_data(fig, "hedged executions")
    labels = df["execution_id"] + " · " + df["symbol"]
    return figures.dollar_bars(
        fig,
        labels,
        df,
        (
            ("hedge_cost_usd", "hedge cost"),
            ("expected_profit_usd", "expected profit"),
            ("realized_pnl_usd", "realized PnL"),
        ),
    )


def latency_by_stage(df: pd.DataFrame) -> go.Figure:
    """Median latency per execution stage, whiskers to the 99th percentile."""
    fig = _figure(
        "latency_by_stage",
        barmode="group",
        xaxis={"title": "stage"},
        yaxis={"title": "milliseconds (median, whisker to p99)"},
    )
    if df.empty:
        return _no_data(fig, "executions")
    for mode, g in df.groupby("mode", sort=True):
        fig.add_trace(
            go.Bar(
                x=g["stage"].str.removesuffix("_ms").str.replace("_", " "),
                y=g["p50_ms"],
                name=str(mode),
                marker_color=_MODE_COLOR.get(str(mode)),
                error_y={"type": "data", "array": g["p99_ms"] - g["p50_ms"], "arrayminus": [0]},
                customdata=g[["p90_ms", "p99_ms", "executions"]],
                hovertemplate="p50 %{y:.2f} ms · p90 %{customdata[0]:.2f} · "
                "p99 %{customdata[1]:.2f} (%{customdata[2]} executions)<extra></extra>",
            )
        )
    return fig


def executions_summary(df: pd.DataFrame) -> go.Figure:
    """Executions per outcome (done, hedged, failed, …), per mode."""
    fig = _figure(
        "executions_summary",
        barmode="stack",
        xaxis={"title": "mode"},
        yaxis={"title": "executions"},
    )
    if df.empty:
        return _no_data(fig, "executions")
    for state, g in df.groupby("state", sort=True):
        fig.add_trace(
            go.Bar(
                x=g["mode"],
                y=g["executions"],
                name=str(state),
                customdata=g[["realized_pnl_usd"]],
                hovertemplate="%{y} executions, PnL $%{customdata[0]:,.4f}"
                "<extra>%{fullData.name}</extra>",
            )
        )
    return fig


FIGURES: dict[str, Callable[[pd.DataFrame], go.Figure]] = {
    # notebook 02's versions (symbols side by side, not overlapping)
    "cost_to_arb_distribution": figures.cost_to_arb_distribution,
    "opportunity_duration": figures.opportunity_duration,
    "fee_drag": fee_drag,
    "pnl_over_time": pnl_over_time,
    "hedge_costs": hedge_costs,
    "latency_by_stage": latency_by_stage,
    "executions_summary": executions_summary,
}
