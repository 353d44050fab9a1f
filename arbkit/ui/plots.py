"""Plotly figures for the named analysis queries (:mod:`arbkit.analysis.queries`).

One function per query, each taking that query's DataFrame (already aggregated in SQL,
so a figure has at most a few thousand points whatever the history's size). Titles and
axes are in a trader's words; dollars carry a $ and cents. An empty frame gives a figure
that says so instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

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


def cost_to_arb_distribution(df: pd.DataFrame) -> go.Figure:
    """How often each cost to buy both sides occurred, per symbol and combination."""
    fig = _figure(
        "cost_to_arb_distribution",
        barmode="overlay",
        xaxis={"title": "cost of both legs per contract, before fees", **CENTS_TICKS},
        yaxis={"title": "share of samples", "tickformat": ".0%"},
        legend_title="symbol · Kalshi side",
    )
    if df.empty:
        return _no_data(fig, "spread samples")
    for (symbol, combo), g in df.groupby(["symbol", "combo"], sort=True):
        fig.add_trace(
            go.Bar(
                x=g["cost_usd"],
                y=g["share"],
                name=f"{symbol} · {combo}",
                opacity=0.6,
                customdata=g[["samples", "cost_to_usd"]],
                hovertemplate="$%{x:.4f}–$%{customdata[1]:.4f}: %{y:.1%} "
                "(%{customdata[0]} samples)<extra>%{fullData.name}</extra>",
            )
        )
    fig.add_vline(x=1.0, line_dash="dash", annotation_text="$1 payout: arb below this line")
    return fig


def opportunities_by_hour(df: pd.DataFrame) -> go.Figure:
    """Opportunities per hour (stacked by symbol) above the net edge they offered."""
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("opportunities detected", "net edge per contract (after fees)"),
    )
    fig.update_layout(
        title=QUERIES["opportunities_by_hour"].title, template="plotly_white", barmode="stack"
    )
    fig.update_yaxes(title_text="count", row=1, col=1)
    fig.update_yaxes(title_text="per contract", row=2, col=1, **CENTS_TICKS)
    fig.update_xaxes(title_text="hour (UTC)", row=2, col=1)
    if df.empty:
        return _no_data(fig, "opportunities")
    for symbol, g in df.groupby("symbol", sort=True):
        fig.add_trace(
            go.Bar(x=g["hour"], y=g["opportunities"], name=f"{symbol}", legendgroup=symbol),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=g["hour"],
                y=g["max_net_edge_usd"],
                name=f"{symbol} best",
                legendgroup=symbol,
                mode="lines+markers",
                hovertemplate="best $%{y:.4f}<extra>%{fullData.name}</extra>",
            ),
            row=2,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=g["hour"],
                y=g["mean_net_edge_usd"],
                name=f"{symbol} mean",
                legendgroup=symbol,
                mode="lines",
                line={"dash": "dot"},
                hovertemplate="mean $%{y:.4f}<extra>%{fullData.name}</extra>",
            ),
            row=2,
            col=1,
        )
    return fig


def opportunity_duration(df: pd.DataFrame) -> go.Figure:
    """How long each opportunity episode lasted, per symbol."""
    fig = _figure(
        "opportunity_duration",
        barmode="overlay",
        xaxis={"title": "episode duration, seconds (first to last detection)"},
        yaxis={"title": "episodes"},
    )
    if df.empty:
        return _no_data(fig, "opportunities")
    for symbol, g in df.groupby("symbol", sort=True):
        fig.add_trace(go.Histogram(x=g["duration_s"], name=str(symbol), opacity=0.6))
    return fig


def _dollar_bars(
    fig: go.Figure, labels: Any, df: pd.DataFrame, columns: tuple[tuple[str, str], ...]
) -> go.Figure:
    """One grouped bar trace per (column, name), dollars in the hover text."""
    for col, name in columns:
        fig.add_trace(
            go.Bar(
                x=labels,
                y=df[col],
                name=name,
                hovertemplate="$%{y:,.4f}<extra>" + name + "</extra>",
            )
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
    return _dollar_bars(
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
    return _dollar_bars(
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
    "cost_to_arb_distribution": cost_to_arb_distribution,
    "opportunities_by_hour": opportunities_by_hour,
    "opportunity_duration": opportunity_duration,
    "fee_drag": fee_drag,
    "pnl_over_time": pnl_over_time,
    "hedge_costs": hedge_costs,
    "latency_by_stage": latency_by_stage,
    "executions_summary": executions_summary,
}
