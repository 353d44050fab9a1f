"""Contract matching (issue 15) on the labelled set: 10 products × 8 pairs modelled on
Kalshi's and ForecastEx's listing conventions — per product 1 identical, 1 complement and
6 decoys (neighbouring strike, "X or above" vs "above X", "below X" vs "above X", another
cutoff, another resolution source, another measure). At the default threshold no decoy may
be proposed as identical/complement, and recall must be at least 95%."""

from __future__ import annotations

from collections import Counter

from arbkit.matching.matcher import DEFAULT_THRESHOLD, compare_pair, match
from arbkit.sim.listings import labelled_pairs, venue_listings


def test_labelled_set_precision_recall_at_the_default_threshold() -> None:
    pairs = labelled_pairs()
    assert len(pairs) >= 60
    kinds = Counter(p.kind for p in pairs)
    assert set(kinds) == {
        "identical", "complement", "neighbour", "inclusive", "inverted", "cutoff", "source",
        "measure",
    }  # fmt: skip
    tp = fp = fn = 0
    wrong: list[str] = []
    for p in pairs:
        c = compare_pair(p.kalshi, p.forecastex, threshold=DEFAULT_THRESHOLD)
        right = c.proposed and p.tradable and c.relation == p.relation
        if c.proposed and not right:
            fp += 1
            wrong.append(f"decoy proposed: {p.kind} {p.kalshi.ticker} {c.relation}")
        elif p.tradable and not right:
            fn += 1
            wrong.append(f"missed: {p.kind} {p.kalshi.ticker} {c.problems}")
        tp += right
        # the typed relation is the truth for every pair, decoys included
        assert c.relation == p.relation, (p.kind, p.kalshi.ticker, c.relation, c.problems)
        if p.tradable:
            assert c.kalshi_yes_is == ("yes" if p.relation == "identical" else "no")
    assert fp == 0, wrong
    recall = tp / (tp + fn)
    assert recall >= 0.95, wrong


def test_the_strike_edge_is_reported_where_the_questions_part() -> None:
    """ "60°F or above" against "above 60°F": the at-strike table says who pays at 60."""
    [p] = [p for p in labelled_pairs() if p.kind == "inclusive" and "HIGHNY" in p.kalshi.ticker]
    c = compare_pair(p.kalshi, p.forecastex)
    assert c.relation == "superset" and not c.proposed
    assert c.at_strike == ((p.forecastex.strike, True, False),)
    [q] = [q for q in labelled_pairs() if q.kind == "inverted" and "HIGHNY" in q.kalshi.ticker]
    c = compare_pair(q.kalshi, q.forecastex)
    assert c.relation == "disjoint"  # below 60 and above 60 both lose at exactly 60
    assert c.at_strike == ((q.forecastex.strike, False, False),)


def test_the_whole_listing_proposes_exactly_the_true_pairs() -> None:
    """Every listing of both venues mixed: one proposal per true pair, nothing else."""
    kalshi, fx = venue_listings()
    result = match(kalshi, fx)
    truth = {
        (p.kalshi.ticker, p.forecastex.yes_con_id, p.relation)
        for p in labelled_pairs()
        if p.tradable
    }
    got = {(c.kalshi.ticker, c.forecastex.yes_con_id, c.relation) for c in result.proposals}
    assert got == truth
    # deterministic: the same input gives the same proposals in the same order
    again = match(list(reversed(kalshi)), list(reversed(fx)))
    assert [c.kalshi.ticker for c in again.proposals] == [c.kalshi.ticker for c in result.proposals]
