"""What each venue's YES pays on, as a set of values of the measured quantity.

A binary contract's YES is a set of outcomes of one number (a rate, a price, a
temperature): ``> 4.25``, ``≤ 60``, ``[62, 63]``. Written as a finite union of intervals,
two questions about the same number compare exactly: equal (identical), equal to the
other's complement (complement), contained (subset/superset), overlapping or disjoint —
and what happens *exactly at* each strike is read off the same sets.

Kalshi states the set in structured fields (``strike_type``, ``floor_strike``,
``cap_strike``); ForecastEx states a strike and says the comparison in words (its contract
descriptions ask "above"). Both are parsed here, without IO.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


@dataclass(frozen=True, slots=True)
class Interval:
    """``lo .. hi`` with closed/open ends; None is unbounded."""

    lo: Decimal | None
    lo_closed: bool
    hi: Decimal | None
    hi_closed: bool

    def contains(self, x: Decimal) -> bool:
        if self.lo is not None and (x < self.lo or (x == self.lo and not self.lo_closed)):
            return False
        return not (self.hi is not None and (x > self.hi or (x == self.hi and not self.hi_closed)))

    def text(self) -> str:
        if self.lo is None and self.hi is None:
            return "any value"
        if self.hi is None:
            return f"{'≥' if self.lo_closed else '>'} {self.lo}"
        if self.lo is None:
            return f"{'≤' if self.hi_closed else '<'} {self.hi}"
        return (
            f"{'[' if self.lo_closed else '('}{self.lo}, {self.hi}{']' if self.hi_closed else ')'}"
        )


@dataclass(frozen=True, slots=True)
class OutcomeSet:
    """A finite union of intervals: the values on which YES pays."""

    intervals: tuple[Interval, ...]

    def contains(self, x: Decimal) -> bool:
        return any(i.contains(x) for i in self.intervals)

    def points(self) -> list[Decimal]:
        return sorted({p for i in self.intervals for p in (i.lo, i.hi) if p is not None})

    def text(self) -> str:
        return " or ".join(i.text() for i in self.intervals) or "no value"


def above(x: Decimal, inclusive: bool = False) -> OutcomeSet:
    return OutcomeSet((Interval(x, inclusive, None, False),))


def below(x: Decimal, inclusive: bool = False) -> OutcomeSet:
    return OutcomeSet((Interval(None, False, x, inclusive),))


def between(lo: Decimal, hi: Decimal) -> OutcomeSet:
    return OutcomeSet((Interval(lo, True, hi, True),))


def _samples(points: list[Decimal]) -> list[Decimal]:
    """One value in each piece the points cut the line into, and the points themselves:
    two unions of intervals with these endpoints agree everywhere iff they agree here."""
    if not points:
        return [Decimal(0)]
    out = [points[0] - 1, *points, points[-1] + 1]
    out += [(a + b) / 2 for a, b in itertools.pairwise(points)]
    return out


def _memberships(a: OutcomeSet, b: OutcomeSet) -> list[tuple[bool, bool]]:
    return [(a.contains(x), b.contains(x)) for x in _samples(sorted({*a.points(), *b.points()}))]


def compare(a: OutcomeSet, b: OutcomeSet) -> str:
    """The relation of ``a`` to ``b``: identical, complement, subset, superset, overlap,
    disjoint (as in the symbol map's ``equivalence.relation``)."""
    m = _memberships(a, b)
    if all(x == y for x, y in m):
        return "identical"
    if all(x != y for x, y in m):
        return "complement"
    if not any(x and y for x, y in m):
        return "disjoint"
    if all(y for x, y in m if x):
        return "subset"
    if all(x for x, y in m if y):
        return "superset"
    return "overlap"


def at_strikes(a: OutcomeSet, b: OutcomeSet) -> list[tuple[Decimal, bool, bool]]:
    """At each strike of either side: does ``a``'s YES pay, does ``b``'s YES pay. This
    is where "strictly above 60" and "60 or above" part."""
    return [(x, a.contains(x), b.contains(x)) for x in sorted({*a.points(), *b.points()})]


# ---------------------------------------------------------------- Kalshi ---------------

#: Kalshi ``strike_type`` → how floor/cap make the YES set (spec: floor_strike is the
#: "minimum expiration value that leads to a YES settlement", cap_strike the maximum).
KALSHI_STRIKE_TYPES = {
    "greater": "floor_open",
    "greater_or_equal": "floor_closed",
    "less": "cap_open",
    "less_or_equal": "cap_closed",
    "between": "both",
}


def kalshi_yes_set(
    strike_type: str, floor_strike: Decimal | None, cap_strike: Decimal | None
) -> OutcomeSet | None:
    """The YES set from Kalshi's strike fields; None when they do not state one
    (``functional``, ``custom``, ``structured`` or missing strikes): then only the text
    can say, and a human must."""
    kind = KALSHI_STRIKE_TYPES.get(strike_type)
    if kind == "floor_open" and floor_strike is not None:
        return above(floor_strike)
    if kind == "floor_closed" and floor_strike is not None:
        return above(floor_strike, inclusive=True)
    if kind == "cap_open" and cap_strike is not None:
        return below(cap_strike)
    if kind == "cap_closed" and cap_strike is not None:
        return below(cap_strike, inclusive=True)
    if kind == "both" and floor_strike is not None and cap_strike is not None:
        return between(floor_strike, cap_strike)
    return None


# ---------------------------------------------------------------- text -----------------

_NUMBER = r"\$?(-?\d[\d,]*(?:\.\d+)?)\s*(?:%|percent|°\s*F|degrees|bps)?"
# Longest phrases first: "at or above" before "above". (phrase, builder)
_COMPARATORS: tuple[tuple[str, str], ...] = (
    (
        r"(?:at or above|at least|greater than or equal to|no less than|or (?:more|higher|above))",
        "ge",
    ),
    (r"(?:at or below|at most|less than or equal to|no more than|or (?:less|lower|below))", "le"),
    (r"(?:above|greater than|more than|higher than|over|exceed(?:s|ing)?)", "gt"),
    (r"(?:below|less than|lower than|under)", "lt"),
)
_BETWEEN = re.compile(
    rf"between\s+{_NUMBER}\s+and\s+{_NUMBER}|{_NUMBER}\s*(?:-|–|to)\s*{_NUMBER}", re.I
)


def _num(s: str) -> Decimal | None:
    try:
        return Decimal(s.replace(",", ""))
    except InvalidOperation:
        return None


def text_yes_set(text: str, strike: Decimal | None = None) -> OutcomeSet | None:
    """The YES set a question states in words ("above 4.125%", "60°F or higher",
    "between 62 and 63"); with ``strike`` given, the comparison must be about that
    number. None when the text states no comparison arbkit can read."""
    for phrase, kind in _COMPARATORS:
        for m in re.finditer(rf"{phrase}\s+{_NUMBER}", text, re.I):
            x = _num(m.group(1))
            if x is not None and (strike is None or x == strike):
                return _build(kind, x)
        # "60 or higher": the number comes first
        for m in re.finditer(rf"{_NUMBER}\s+{phrase}", text, re.I):
            x = _num(m.group(1))
            if x is not None and (strike is None or x == strike) and kind in ("ge", "le"):
                return _build(kind, x)
    bm = _BETWEEN.search(text)
    if bm is not None:
        nums = [g for g in bm.groups() if g is not None]
        lo, hi = _num(nums[0]), _num(nums[1])
        if lo is not None and hi is not None and lo < hi:
            return between(lo, hi)
    return None


def _build(kind: str, x: Decimal) -> OutcomeSet:
    return {
        "gt": above(x),
        "ge": above(x, inclusive=True),
        "lt": below(x),
        "le": below(x, inclusive=True),
    }[kind]
