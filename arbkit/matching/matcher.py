"""Candidate Kalshi ↔ ForecastEx pairs with a score and a typed relation.

Deterministic, structured fields first: the YES sets (``outcomes.py``) give the relation
and the orientation, the observation times and the resolution sources must agree, and
only then does text similarity (rapidfuzz, on the questions with numbers, dates and
comparisons taken out) rank candidates. A pair is *proposed* — for a human to confirm —
only when it is identical or complement with nothing that disagrees; everything else is
reported with the reason, never silently dropped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from rapidfuzz import fuzz

from arbkit.matching.listings import ForecastExListing, KalshiListing
from arbkit.matching.outcomes import (
    OutcomeSet,
    at_strikes,
    compare,
    kalshi_yes_set,
    text_yes_set,
)

DEFAULT_THRESHOLD = 70  # topic score (0–100) a proposal needs
DEFAULT_CUTOFF_TOLERANCE_S = 2 * 3600  # observation times this close are "the same cutoff"
CANDIDATE_FLOOR = 50  # below this topic score a pair is not even reported

# Words that name the same thing differently on the two venues (applied before scoring).
_SYNONYMS: tuple[tuple[str, str], ...] = (
    (r"\bfederal funds\b", "fed funds"),
    (r"\bfed(?:eral)? funds target rate\b", "fed funds rate"),
    (r"\bfomc\b", "fed"),
    (r"\bconsumer price index\b", "cpi"),
    (r"\byear[- ]over[- ]year\b|\byoy\b|\bannual(?:ly)?\b|\b12[- ]month\b", "yoy"),
    (r"\bunemployment rate\b|\bu-?3\b", "unemployment"),
    (r"\bu-?6\b", "underemployment"),
    (r"\bbitcoin\b|\bbtc\b", "bitcoin"),
    (r"\bs&p ?500\b|\bspx\b|\binx\b", "spx"),
    (r"\bnew york city\b|\bnyc\b|\bcentral park\b", "nyc"),
    (r"\bgasoline\b", "gas"),
    (r"\bnonfarm payrolls\b|\bnon-farm payrolls\b|\bpayrolls\b|\bjobs report\b", "payrolls"),
    (r"\bgross domestic product\b|\bgdp\b", "gdp"),
    (r"\b2[- ]year\b|\b2y\b", "twoyear"),
    (r"\b5[- ]year\b|\b5y\b", "fiveyear"),
    (r"\b10[- ]year\b|\b10y\b", "tenyear"),
    (r"\b30[- ]year\b|\b30y\b", "thirtyyear"),
    (r"\bmonth[- ]over[- ]month\b|\bm/m\b", "mom"),
)
_SOURCE_SYNONYMS: tuple[tuple[str, str], ...] = (
    (r"\bbls\b|\bbureau of labor statistics\b", "bls"),
    (r"\bbea\b|\bbureau of economic analysis\b", "bea"),
    (r"\bnws\b|\bnational weather service\b|\bnoaa\b", "nws"),
    (r"\bfederal reserve\b|\bfed\b|\bfomc\b|\bfrb\b", "federal reserve"),
    (r"\bcf benchmarks\b|\bbrti\b", "cf benchmarks"),
    (r"\baaa\b", "aaa"),
    (r"\beia\b|\benergy information administration\b", "eia"),
    (r"\bs&p dow jones indices\b|\bs&p\b", "s&p"),
    (r"\btreasury\b|\bu\.s\. department of the treasury\b", "treasury"),
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that change what is measured ("core CPI" is not CPI, the low is not the high):
# on one side only, they make the questions different whatever the text score says.
MODIFIERS = _words(
    "core headline low high minimum maximum min max average median mom monthly quarterly "
    "weekly daily annualized real nominal upper seasonally unadjusted intraday open "
    "effective target private diesel premium regular underemployment twoyear fiveyear "
    "tenyear thirtyyear"
)
_STOP = _words(
    "will the be a an of on in at by for to is be or and than as its after following "
    "end close closing value reported level market question contract resolve resolves "
    "yes no this what if then us index rate price change"
)
_MONTHS = _words(
    "january february march april may june july august september october november "
    "december jan feb mar apr jun jul aug sep sept oct nov dec"
)
_COMPARISON_WORDS = _words(
    "above below over under greater less more higher lower least most exceed exceeds between equal"
)


_SOURCE_CLAUSE = re.compile(
    r"(?:resolves |outcomes are determined )?(?:according to|as (?:reported|published|"
    r"determined) by|published by|determined by|source:)[^.;?]*",
    re.I,
)


def normalize_topic(text: str) -> str:
    """The question with numbers, dates and comparison words removed: what is measured."""
    # a source clause or a parenthesis names who reports or the unit, not what is measured
    t = re.sub(r"\([^)]*\)", " ", _SOURCE_CLAUSE.sub(" ", text.lower()))
    for pat, rep in _SYNONYMS:
        t = re.sub(pat, rep, t)
    t = re.sub(r"[$%°]|\d[\d,.:]*(?:st|nd|rd|th|am|pm|'?\d*)?", " ", t)
    words = [
        w
        for w in re.findall(r"[a-z0-9&]+", t)
        if w not in _STOP and w not in _MONTHS and w not in _COMPARISON_WORDS and len(w) > 1
    ]
    return " ".join(words)


def normalize_source(text: str) -> str:
    t = text.lower()
    for pat, rep in _SOURCE_SYNONYMS:
        t = re.sub(pat, rep, t)
    return " ".join(re.findall(r"[a-z0-9&]+", t))


def source_of(text: str) -> str:
    """The resolution source a ForecastEx description names ("according to …",
    "as reported by …", "published by …", "source: …"); '' when it names none."""
    m = re.search(
        r"(?:according to|as (?:reported|published|determined) by|published by|"
        r"source:)\s+(?:the\s+)?([^.;,()]+)",
        text,
        re.I,
    )
    return m.group(1).strip() if m else ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One Kalshi market against one ForecastEx pair, compared."""

    kalshi: KalshiListing
    forecastex: ForecastExListing
    topic_score: int  # 0–100, rapidfuzz token_set_ratio of the normalised questions
    # Of Kalshi YES to ForecastEx YES as whole questions: the strike relation when both
    # ask about the same measure, source and time, else "overlap" (different questions);
    # "unknown" when a side's YES set is unreadable.
    relation: str
    strike_relation: str  # of the YES sets alone
    kalshi_yes_is: str  # "yes"/"no" for identical/complement, else ""
    kalshi_set: str  # Kalshi YES, in words
    forecastex_set: str  # ForecastEx YES, in words
    at_strike: tuple[tuple[Decimal, bool, bool], ...]  # (value, Kalshi YES, ForecastEx YES)
    cutoff_delta_s: int  # ForecastEx observation − Kalshi observation
    kalshi_source: str
    forecastex_source: str
    problems: tuple[str, ...] = ()  # what stops it being proposed (empty: proposed)
    warnings: tuple[str, ...] = ()  # what the human should look at

    @property
    def proposed(self) -> bool:
        return not self.problems and self.relation in ("identical", "complement")

    @property
    def score(self) -> int:
        """Rank: the topic score, with a hard zero for anything not proposable."""
        return self.topic_score if self.proposed else 0


@dataclass(slots=True)
class MatchResult:
    proposals: list[Candidate] = field(default_factory=list)  # best per Kalshi market
    others: list[Candidate] = field(default_factory=list)  # related, not proposable
    unmatched: list[KalshiListing] = field(default_factory=list)


def _sources_agree(a: str, b: str) -> bool | None:
    """True/False when both sides name a source; None when either is silent."""
    if not a.strip() or not b.strip():
        return None
    na, nb = normalize_source(a), normalize_source(b)
    return fuzz.token_set_ratio(na, nb) >= 80 or na in nb or nb in na


def compare_pair(
    k: KalshiListing,
    f: ForecastExListing,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    cutoff_tolerance_s: int = DEFAULT_CUTOFF_TOLERANCE_S,
    topic_score: int | None = None,
) -> Candidate:
    score = (
        topic_score
        if topic_score is not None
        else int(fuzz.token_set_ratio(normalize_topic(k.text), normalize_topic(f.text)))
    )
    problems: list[str] = []
    warnings: list[str] = []
    ks = kalshi_yes_set(k.strike_type, k.floor_strike, k.cap_strike)
    if ks is None:
        ks = text_yes_set(" ".join((k.title, k.yes_sub_title, k.rules_primary)))
        if ks is not None:
            warnings.append(f"Kalshi strike_type {k.strike_type!r}: YES set read from the text")
    fs: OutcomeSet | None = text_yes_set(f.description, f.strike)
    relation = "unknown"
    if ks is None:
        problems.append("Kalshi YES set unreadable (no strike fields, no comparison in text)")
    if fs is None:
        problems.append(f"ForecastEx description states no comparison with strike {f.strike}")
    if ks is not None and fs is not None:
        relation = compare(ks, fs)
        if relation not in ("identical", "complement"):
            problems.append(f"{relation}: Kalshi YES {ks.text()} vs ForecastEx YES {fs.text()}")
    n_set_problems = len(problems)
    delta_s = (
        (f.observed_ns - k.observed_ns) // 1_000_000_000 if f.observed_ns and k.observed_ns else 0
    )
    if not f.observed_ns or not k.observed_ns:
        problems.append("an observation time is unknown")
    elif abs(delta_s) > cutoff_tolerance_s:
        problems.append(
            f"different cutoff: ForecastEx observes {_hours(delta_s)} "
            f"{'after' if delta_s > 0 else 'before'} Kalshi"
        )
    elif delta_s:
        warnings.append(f"cutoffs {_hours(delta_s)} apart (within tolerance)")
    f_source = f.resolution_source or source_of(f.description)
    k_source = "; ".join(k.settlement_sources)
    agree = _sources_agree(k_source, f_source)
    if agree is False:
        problems.append(
            f"different resolution source: Kalshi {k_source!r}, ForecastEx {f_source!r}"
        )
    elif agree is None:
        warnings.append("a resolution source is not stated: check the rules by hand")
    kw, fw = set(normalize_topic(k.text).split()), set(normalize_topic(f.text).split())
    odd = sorted((kw ^ fw) & MODIFIERS)
    if odd:
        problems.append(
            "different measure: "
            + ", ".join(f"{w!r} only on {'Kalshi' if w in kw else 'ForecastEx'}" for w in odd)
        )
    strike_relation = relation
    if relation != "unknown" and len(problems) > n_set_problems:
        relation = "overlap"  # same strikes, different question
    if score < threshold:
        problems.append(f"topic score {score} < {threshold}")
    yes_is = {"identical": "yes", "complement": "no"}.get(relation, "")
    return Candidate(
        k,
        f,
        score,
        relation,
        strike_relation,
        yes_is,
        ks.text() if ks is not None else "?",
        fs.text() if fs is not None else "?",
        tuple(at_strikes(ks, fs)) if ks is not None and fs is not None else (),
        int(delta_s),
        k_source,
        f_source,
        tuple(problems),
        tuple(warnings),
    )


def _hours(s: int) -> str:
    return f"{abs(s) / 3600:.1f} h"


def _day(ns: int) -> dt.date:
    return dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC).date()


def match(
    kalshi: Sequence[KalshiListing],
    forecastex: Sequence[ForecastExListing],
    *,
    threshold: int = DEFAULT_THRESHOLD,
    cutoff_tolerance_s: int = DEFAULT_CUTOFF_TOLERANCE_S,
    window_days: int = 7,
) -> MatchResult:
    """Every Kalshi market against the ForecastEx pairs observed within ``window_days``
    of it: the best proposable candidate per market (ties broken by ticker/conId, so the
    result is deterministic), the related rest with their reasons."""
    by_day: dict[dt.date, list[ForecastExListing]] = {}
    for f in forecastex:
        if f.observed_ns:
            by_day.setdefault(_day(f.observed_ns), []).append(f)
    topics = {id(f): normalize_topic(f.text) for f in forecastex}
    out = MatchResult()
    for k in sorted(kalshi, key=lambda x: x.ticker):
        if not k.observed_ns:
            out.unmatched.append(k)
            continue
        day = _day(k.observed_ns)
        near: Iterable[ForecastExListing] = (
            f
            for d in range(-window_days, window_days + 1)
            for f in by_day.get(day + dt.timedelta(days=d), ())
        )
        kt = normalize_topic(k.text)
        cands = []
        for f in near:
            score = int(fuzz.token_set_ratio(kt, topics[id(f)]))
            if score < CANDIDATE_FLOOR:
                continue
            cands.append(
                compare_pair(
                    k,
                    f,
                    threshold=threshold,
                    cutoff_tolerance_s=cutoff_tolerance_s,
                    topic_score=score,
                )
            )
        cands.sort(key=lambda c: (-c.score, -c.topic_score, c.forecastex.yes_con_id))
        best = [c for c in cands if c.proposed][:1]
        if best:
            out.proposals.append(best[0])
        else:
            out.unmatched.append(k)
        out.others += [c for c in cands if c not in best]
    return out
