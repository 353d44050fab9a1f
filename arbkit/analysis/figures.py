"""Figures for notebooks 02 (spread analysis) and 03 (parameter tuning).

These replace the ones that misled on a short or crowded history: bars per symbol that
overlapped (now one panel per Kalshi side, or stacked), an hourly time axis that put a
demo's minute of trading into one bar (now buckets sized to the history), dual y axes
without labels (now stacked panels, each axis titled), and heatmaps without numbers (now
the dollar value in every cell). Dollars are floats here, for drawing only; the exact
numbers stay in the frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from arbkit.analysis.queries import QUERIES

USD = {"tickprefix": "$", "tickformat": ",.2f"}
USD3 = {"tickprefix": "$", "tickformat": ",.3f"}
_COMBO_TITLE = {
    "kalshi_yes": "Kalshi YES + ForecastEx equivalent of NO",
    "kalshi_no": "Kalshi NO + ForecastEx equivalent of YES",
}


def _empty(fig: go.Figure, what: str) -> go.Figure:
    fig.add_annotation(
        text=f"no {what} in this window", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5
    )
    return fig


def bucket_label(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3_600:
        return f"{seconds // 60} min"
    if seconds < 86_400:
        return f"{seconds // 3_600} h"
    return f"{seconds // 86_400} d"


def _time_format(seconds: int) -> str:
    return "%H:%M:%S" if seconds < 60 else "%H:%M" if seconds < 86_400 else "%Y-%m-%d"


def _colors(symbols: Sequence[str]) -> dict[str, str]:
    """One colour per symbol, the same in every panel of a figure."""
    palette: list[str] = plotly.colors.qualitative.Plotly
    return {s: palette[i % len(palette)] for i, s in enumerate(sorted(symbols))}


def cost_to_arb_distribution(df: pd.DataFrame) -> go.Figure:
    """Share of samples at each cost: one panel per Kalshi side, the symbols' bars side
    by side in each 1-cent bucket (each in its own slot, never drawn over each other)."""
    combos = [c for c in ("kalshi_yes", "kalshi_no") if df.empty or c in set(df["combo"])]
    fig = make_subplots(
        rows=len(combos) or 1,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=[_COMBO_TITLE[c] for c in combos] or [""],
    )
    fig.update_layout(
        title=QUERIES["cost_to_arb_distribution"].title,
        template="plotly_white",
        barmode="overlay",  # positions are explicit (offset/width below): side by side
        height=260 + 200 * max(1, len(combos)),
        legend_title="symbol",
    )
    if df.empty:
        return _empty(fig, "spread samples")
    symbols = sorted(str(x) for x in df["symbol"].unique())
    color = _colors(symbols)
    # each symbol has its own slot inside the bucket [cost, cost + bucket): placed
    # explicitly, so no two bars can cover each other whatever the spacing of the data
    bucket = float((df["cost_to_usd"] - df["cost_usd"]).min())
    slot = bucket * 0.85 / len(symbols)
    for row, combo in enumerate(combos, start=1):
        g_combo = df[df["combo"] == combo]
        for symbol, g in g_combo.groupby("symbol", sort=True):
            fig.add_trace(
                go.Bar(
                    x=g["cost_usd"],
                    offset=bucket * 0.075 + symbols.index(str(symbol)) * slot,
                    width=slot,
                    y=g["share"],
                    name=str(symbol),
                    legendgroup=str(symbol),
                    showlegend=row == 1,
                    marker_color=color[str(symbol)],
                    customdata=g[["samples", "cost_usd", "cost_to_usd"]],
                    hovertemplate="$%{customdata[1]:.4f}–$%{customdata[2]:.4f}: %{y:.1%} "
                    "(%{customdata[0]} samples)<extra>%{fullData.name}</extra>",
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(title_text="share of samples", tickformat=".0%", row=row, col=1)
        fig.add_vline(x=1.0, line_dash="dash", row=row, col=1)
    lo = min(float(df["cost_usd"].min()), 1.0) - bucket
    hi = max(float(df["cost_to_usd"].max()), 1.0) + bucket
    fig.update_xaxes(range=[lo, hi])  # the data and the $1 line, nothing else
    fig.update_xaxes(
        title_text="cost of both legs per contract, before fees ($1 = payout)",
        row=len(combos),
        col=1,
        **USD3,
    )
    return fig


def opportunities_over_time(df: pd.DataFrame, bucket_s: int) -> go.Figure:
    """Opportunities per time bucket (stacked by symbol) above the best net edge; the
    bucket is sized to the history, so 30 seconds and 3 months both read."""
    label = bucket_label(bucket_s)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        subplot_titles=(f"opportunities per {label}", "best net edge per contract (after fees)"),
    )
    fig.update_layout(
        title=QUERIES["opportunities_over_time"].title,
        template="plotly_white",
        barmode="stack",
        height=560,
    )
    fig.update_yaxes(title_text="opportunities", row=1, col=1)
    fig.update_yaxes(title_text="per contract", row=2, col=1, **USD3)
    fig.update_xaxes(
        title_text=f"time (UTC), {label} buckets", tickformat=_time_format(bucket_s), row=2, col=1
    )
    if df.empty:
        return _empty(fig, "opportunities")
    color = _colors([str(x) for x in df["symbol"].unique()])
    span_s = (df["bucket"].max() - df["bucket"].min()).total_seconds()
    if bucket_s < 60:  # one label per whole step of buckets, never two alike
        step = max(1, int(span_s / bucket_s / 10) + 1)
        fig.update_xaxes(dtick=bucket_s * step * 1000, row=2, col=1)
    for symbol, g in df.groupby("symbol", sort=True):
        fig.add_trace(
            go.Bar(
                x=g["bucket"],
                y=g["opportunities"],
                name=str(symbol),
                legendgroup=str(symbol),
                marker_color=color[str(symbol)],
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=g["bucket"],
                y=g["max_net_edge_usd"],
                name=f"{symbol} best edge",
                legendgroup=str(symbol),
                showlegend=False,
                mode="markers",
                marker_color=color[str(symbol)],
                hovertemplate="best $%{y:.4f}<extra>" + str(symbol) + "</extra>",
            ),
            row=2,
            col=1,
        )
    return fig


def opportunity_duration(df: pd.DataFrame) -> go.Figure:
    """Episode durations: one histogram, bins shared by all symbols, bars stacked."""
    fig = go.Figure()
    fig.update_layout(
        title=QUERIES["opportunity_duration"].title,
        template="plotly_white",
        barmode="stack",
        xaxis={"title": "episode duration, seconds (first to last detection)"},
        yaxis={"title": "episodes"},
        legend_title="symbol",
    )
    if df.empty:
        return _empty(fig, "opportunities")
    top = float(df["duration_s"].max())
    size = max(top / 20, 0.25)
    bins = {"start": 0, "end": top + size, "size": size}
    for symbol, g in df.groupby("symbol", sort=True):
        fig.add_trace(go.Histogram(x=g["duration_s"], name=str(symbol), xbins=bins))
    return fig


def dollar_bars(
    fig: go.Figure, labels: Any, df: pd.DataFrame, columns: tuple[tuple[str, str], ...]
) -> go.Figure:
    """One grouped bar trace per (column, name), dollars in the hover text."""
    for col, name in columns:
        fig.add_trace(
            go.Bar(
                x=labels,
                y=df[col],
                name=name,
                hovertemplate="$%{y:,.6f}<extra>" + name + "</extra>",
            )
        )
    return fig


def pnl_by_symbol(df: pd.DataFrame) -> go.Figure:
    """Realized PnL, expected profit and hedge cost per symbol (and mode), side by side."""
    fig = go.Figure()
    fig.update_layout(
        title=QUERIES["pnl_by_symbol"].title,
        template="plotly_white",
        barmode="group",
        xaxis={"title": "symbol · mode"},
        yaxis={"title": "summed over executions", **USD},
    )
    if df.empty:
        return _empty(fig, "executions")
    labels = df["symbol"] + " · " + df["mode"]
    return dollar_bars(
        fig,
        labels,
        df,
        (
            ("realized_pnl_usd", "realized PnL"),
            ("expected_profit_usd", "expected at execution"),
            ("hedge_cost_usd", "hedge cost"),
        ),
    )


# ----------------------------------------------------------------- tuning (03) ---
def _cell(v: float, prefix: str) -> str:
    if v != v:  # NaN: a combination the grid did not have
        return ""
    return f"-{prefix}{-v:,.2f}" if v < 0 else f"{prefix}{v:,.2f}"


def heatmap(
    table: pd.DataFrame,
    *,
    title: str,
    x_title: str,
    y_title: str,
    value: str = "$",
    colorbar_title: str = "score ($)",
) -> go.Figure:
    """A pivot table as a heatmap with the value written in every cell (``value`` is the
    prefix: dollars by default)."""
    z = table.to_numpy(dtype=float)
    text = [[_cell(v, value) for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(c) for c in table.columns],
            y=[str(i) for i in table.index],
            text=text,
            texttemplate="%{text}",
            colorscale="RdYlGn",
            zmid=0,
            colorbar={"title": colorbar_title},
            hovertemplate=f"{x_title} %{{x}}<br>{y_title} %{{y}}<br>%{{text}}<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis={"title": x_title, "type": "category"},
        yaxis={"title": y_title, "type": "category"},
        height=440,
    )
    return fig


def sensitivity(
    df: pd.DataFrame,
    x: str,
    *,
    title: str,
    x_title: str,
    money: Sequence[tuple[str, str]],
    counts: Sequence[tuple[str, str]],
) -> go.Figure:
    """Dollars on top, counts below, one shared x axis: two titled y axes, never a
    second axis on the same panel."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1)
    xs = [str(v) for v in df[x]]
    for col, name in money:
        fig.add_trace(
            go.Scatter(x=xs, y=df[col], name=name, mode="lines+markers",
                       hovertemplate="$%{y:,.4f}<extra>" + name + "</extra>"),
            row=1, col=1,
        )  # fmt: skip
    for col, name in counts:
        fig.add_trace(go.Bar(x=xs, y=df[col], name=name), row=2, col=1)
    fig.update_yaxes(title_text="dollars", row=1, col=1, **USD)
    fig.update_yaxes(title_text="count", row=2, col=1)
    fig.update_xaxes(title_text=x_title, type="category", row=2, col=1)
    fig.update_layout(title=title, template="plotly_white", barmode="group", height=520)
    return fig


def in_vs_out(df: pd.DataFrame, chosen: dict[str, str]) -> go.Figure:
    """In-sample score against out-of-sample score per combination; the chosen one
    marked. Points far below the diagonal did well on the part they were tuned on only."""
    keys = list(chosen)
    is_chosen = (df[keys].astype(str) == pd.Series(chosen)).all(axis=1)
    fig = go.Figure()
    for flag, name, size in ((False, "combination", 8), (True, "chosen", 16)):
        g = df[is_chosen == flag]
        fig.add_trace(
            go.Scatter(
                x=g["is_score_usd"],
                y=g["oos_score_usd"],
                mode="markers",
                name=name,
                marker={"size": size, "symbol": "star" if flag else "circle"},
                text=g["combination"],
                hovertemplate="%{text}<br>in-sample $%{x:,.4f}<br>out-of-sample $%{y:,.4f}"
                "<extra></extra>",
            )
        )
    fig.update_layout(
        title="Risk-adjusted score: tuned part (first 70 %) vs held-out part (last 30 %)",
        template="plotly_white",
        xaxis={"title": "in-sample score", **USD},
        yaxis={"title": "out-of-sample score", **USD},
        height=440,
    )
    return fig
