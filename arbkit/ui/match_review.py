"""The contract-matching review widget (notebook 04): each proposal with both rule texts
side by side, the differences highlighted, the facts that decide it (relation,
orientation, who pays exactly at the strike, cutoffs, sources) and confirm / reject
buttons; the confirmed pairs are written as a symbol map by the same writer the CLI uses.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from arbkit.config.loader import symbol_map_toml
from arbkit.matching.matcher import Candidate
from arbkit.matching.review import (
    Decision,
    at_strike_lines,
    confirmed_symbol_map,
    review_toml,
    symbol_name,
    word_diff,
)

_DEL = "background:#fdd;text-decoration:line-through"
_INS = "background:#dfd"


def diff_html(a: str, b: str) -> tuple[str, str]:
    """``a`` with what only it says struck through in red, ``b`` with what only it says
    in green (word level)."""
    left, right = [], []
    for op, words in word_diff(a, b):
        w = html.escape(words)
        if op == "=":
            left.append(w)
            right.append(w)
        elif op == "-":
            left.append(f'<span class="arbkit-only" style="{_DEL}">{w}</span>')
        else:
            right.append(f'<span class="arbkit-only" style="{_INS}">{w}</span>')
    return " ".join(left), " ".join(right)


def candidate_html(c: Candidate) -> str:
    k, f = c.kalshi, c.forecastex
    left, right = diff_html(
        " ".join(p for p in (k.rules_primary or k.title, k.rules_secondary) if p), f.description
    )
    facts = [
        ("relation", f"{c.relation} (kalshi_yes_is = {c.kalshi_yes_is!r})"),
        ("Kalshi YES", c.kalshi_set),
        ("ForecastEx YES", c.forecastex_set),
        *(("at the strike", line) for line in at_strike_lines(c)),
        ("cutoff", f"{c.cutoff_delta_s / 3600:+.1f} h (ForecastEx − Kalshi)"),
        ("sources", f"Kalshi {c.kalshi_source or '?'} · ForecastEx {c.forecastex_source or '?'}"),
        ("score", str(c.topic_score)),
        *(("warning", w) for w in c.warnings),
        *(("problem", p) for p in c.problems),
    ]
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(a)}</th>"
        f"<td>{html.escape(b)}</td></tr>"
        for a, b in facts
    )
    return (
        "<div class='arbkit-pair'>"
        f"<table style='width:100%;table-layout:fixed'><tr>"
        f"<th>Kalshi {html.escape(k.ticker)}</th>"
        f"<th>ForecastEx {html.escape(f.symbol)} {f.strike} (YES {f.yes_con_id})</th></tr>"
        f"<tr><td style='vertical-align:top'>{left}</td>"
        f"<td style='vertical-align:top'>{right}</td></tr></table>"
        f"<table>{rows}</table></div>"
    )


class MatchReview:
    """One row per proposal: its panel and a confirm / reject choice."""

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        import tomllib

        self.candidates = list(candidates)
        self._pairs: list[dict[str, Any]] = tomllib.loads(review_toml(self.candidates)).get(
            "pair", []
        )
        self.choices: list[widgets.ToggleButtons] = []
        rows = []
        for c in self.candidates:
            choice = widgets.ToggleButtons(
                options=["undecided", "confirm", "reject"],
                value="undecided",
                description=symbol_name(c.kalshi.ticker),
                style={"description_width": "initial"},
            )
            self.choices.append(choice)
            rows.append(widgets.VBox([choice, widgets.HTML(candidate_html(c))]))
        self.status = widgets.HTML()
        self.widget = widgets.VBox([*rows, self.status])
        for ch in self.choices:
            ch.observe(lambda _change: self._count(), names="value")
        self._count()

    def _count(self) -> None:
        n = {v: sum(ch.value == v for ch in self.choices) for v in ("confirm", "reject")}
        self.status.value = (
            f"<b>{n['confirm']} confirmed, {n['reject']} rejected, "
            f"{len(self.choices) - n['confirm'] - n['reject']} undecided</b>"
        )

    def decisions(self) -> list[Decision]:
        return [
            Decision(p, "" if ch.value == "undecided" else ch.value)
            for p, ch in zip(self._pairs, self.choices, strict=True)
        ]

    def write(self, out: str | Path, verified_by: str) -> Path:
        """The confirmed pairs as a symbol map (the CLI's writer)."""
        smap = confirmed_symbol_map(
            self.decisions(),
            verified_by=verified_by,
            verified_on=dt.datetime.now(dt.UTC).date().isoformat(),
        )
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(
            symbol_map_toml(smap, ("Written by the arbkit matching notebook.",)), encoding="utf-8"
        )
        return p
