"""From proposals to a verified symbol map, through a human.

A proposal is never trusted on its own: the trader reads both rule texts (differences
highlighted) and confirms or rejects it — in the notebook widget, at a CLI prompt, or by
editing the review file this module writes (``decision = "confirm"``). Confirmed pairs
become symbol-map entries with the equivalence block filled in (relation, sources,
cutoffs, who verified and when); live trading accepts only identical/complement ones.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from arbkit.config.loader import Equivalence, ForecastExSpec, SymbolMap, SymbolSpec
from arbkit.matching.matcher import Candidate
from arbkit.model import Outcome

DECISIONS = ("", "confirm", "reject")
_SOURCE_KEYS = (("Kalshi", "kalshi_source"), ("ForecastEx", "forecastex_source"))


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _iso(ns: int) -> str:
    if not ns:
        return ""
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).isoformat()


def symbol_name(kalshi_ticker: str) -> str:
    """A symbol-map key from the Kalshi ticker (letters, digits, underscores)."""
    return re.sub(r"[^A-Za-z0-9]+", "_", kalshi_ticker).strip("_")


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """``(op, words)`` runs turning ``a`` into ``b``: op is ``=``, ``-`` (only in a) or
    ``+`` (only in b). What the widget highlights and the review file shows."""
    wa, wb = a.split(), b.split()
    out: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, wa, wb, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("=", " ".join(wa[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", " ".join(wa[i1:i2])))
        if j2 > j1:
            out.append(("+", " ".join(wb[j1:j2])))
    return out


def diff_text(a: str, b: str) -> str:
    """The word diff in plain text: ``[-only Kalshi-]`` and ``{+only ForecastEx+}``."""
    parts = []
    for op, words in word_diff(a, b):
        parts.append(words if op == "=" else f"[-{words}-]" if op == "-" else f"{{+{words}+}}")
    return " ".join(parts)


def at_strike_lines(c: Candidate) -> list[str]:
    return [
        f"exactly {x}: Kalshi YES {'pays' if k else 'loses'}, "
        f"ForecastEx YES {'pays' if f else 'loses'}"
        for x, k, f in c.at_strike
    ]


def review_toml(candidates: Sequence[Candidate], *, generated_on: str = "") -> str:
    """The review file: one ``[[pair]]`` per candidate, ``decision = ""`` to fill in."""
    out = [
        '# arbkit match review file. For each pair set decision = "confirm" or "reject",',
        "# then: arbkit match --apply THIS_FILE --out symbols.toml --verified-by NAME",
        "# Confirm only when both rule texts ask the same question with the same source",
        "# and cutoff. Live trading accepts only relation identical or complement.",
    ]
    if generated_on:
        out.append(f"# generated {generated_on}")
    for c in candidates:
        k, f = c.kalshi, c.forecastex
        out += [
            "",
            "[[pair]]",
            'decision = ""',
            f"symbol = {_q(symbol_name(k.ticker))}",
            f"kalshi_ticker = {_q(k.ticker)}",
            f"kalshi_series = {_q(k.series_ticker)}",
            f"forecastex_symbol = {_q(f.symbol)}",
            f"yes_con_id = {f.yes_con_id}",
            f"no_con_id = {f.no_con_id}",
            f"strike = {_q(str(f.strike))}",
            f"relation = {_q(c.relation)}",
            f"kalshi_yes_is = {_q(c.kalshi_yes_is)}",
            f"score = {c.topic_score}",
            f"kalshi_yes = {_q(c.kalshi_set)}",
            f"forecastex_yes = {_q(c.forecastex_set)}",
            f"at_strike = {json.dumps(at_strike_lines(c), ensure_ascii=False)}",
            f"kalshi_observed = {_q(_iso(k.observed_ns))}",
            f"forecastex_observed = {_q(_iso(f.observed_ns))}",
            f"resolution = {_q(_iso(max(k.observed_ns, f.observed_ns)))}",
            f"kalshi_source = {_q(c.kalshi_source)}",
            f"forecastex_source = {_q(c.forecastex_source)}",
            f"price_level_structure = {_q(k.price_level_structure)}",
            f"problems = {json.dumps(list(c.problems), ensure_ascii=False)}",
            f"warnings = {json.dumps(list(c.warnings), ensure_ascii=False)}",
            f"kalshi_rules = {_q(' '.join(p for p in (k.rules_primary, k.rules_secondary) if p))}",
            f"forecastex_rules = {_q(f.description)}",
            f"diff = {_q(diff_text(k.rules_primary or k.title, f.description))}",
        ]
    return "\n".join(out) + "\n"


class ReviewError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Decision:
    pair: dict[str, Any]
    decision: str  # confirm / reject / "" (undecided)


def read_review(data: dict[str, Any], source: str = "<review>") -> list[Decision]:
    pairs = data.get("pair", [])
    if not isinstance(pairs, list):
        raise ReviewError(f"{source}: [[pair]] entries expected")
    out = []
    for i, p in enumerate(pairs):
        d = str(p.get("decision", "")).strip().lower()
        if d not in DECISIONS:
            raise ReviewError(
                f"{source}: pair {i + 1} ({p.get('kalshi_ticker', '?')}): decision {d!r}; "
                'use "confirm", "reject" or leave it ""'
            )
        out.append(Decision(p, d))
    return out


def confirmed_symbol_map(
    decisions: Iterable[Decision], *, verified_by: str, verified_on: str, source: str = ""
) -> SymbolMap:
    """The confirmed pairs as a symbol map. A confirmed pair that is not identical or
    complement is written with its relation (live refuses it) and never re-oriented."""
    if not verified_by.strip():
        raise ReviewError("--verified-by NAME is required: the symbol map records who checked")
    symbols: dict[str, SymbolSpec] = {}
    for d in decisions:
        if d.decision != "confirm":
            continue
        p = d.pair
        relation = str(p.get("relation", ""))
        yes_is = str(p.get("kalshi_yes_is", "")) or "yes"
        resolution = str(p.get("resolution", ""))
        try:
            res_ns = int(dt.datetime.fromisoformat(resolution).timestamp()) * 1_000_000_000
        except ValueError:
            raise ReviewError(
                f"pair {p.get('kalshi_ticker')}: resolution {resolution!r} is not a date"
            ) from None
        name = str(p.get("symbol") or symbol_name(str(p["kalshi_ticker"])))
        symbols[name] = SymbolSpec(
            symbol=name,
            kalshi_ticker=str(p["kalshi_ticker"]),
            forecastex=ForecastExSpec(
                yes_con_id=int(p["yes_con_id"]), no_con_id=int(p["no_con_id"])
            ),
            kalshi_yes_is=Outcome(yes_is),
            resolution_ts_ns=res_ns,
            kalshi_series=str(p.get("kalshi_series", "")),
            equivalence=Equivalence(
                relation=relation,
                resolution_source="; ".join(
                    f"{venue}: {p[key]}"
                    for venue, key in (
                        ("Kalshi", "kalshi_source"),
                        ("ForecastEx", "forecastex_source"),
                    )
                    if str(p.get(key, "")).strip()
                ),
                cutoff_time=(
                    f"Kalshi {p.get('kalshi_observed', '')}; "
                    f"ForecastEx {p.get('forecastex_observed', '')}"
                ),
                verified_by=verified_by.strip(),
                verified_on=verified_on,
                notes="; ".join(str(w) for w in p.get("warnings", [])),
            ),
            kalshi_price_level_structure=str(p.get("price_level_structure") or "linear_cent"),
        )
    return SymbolMap(symbols, source)
