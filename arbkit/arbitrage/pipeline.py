"""Ticks → books → detector → opportunity episodes: the one synchronous path that live,
paper and replay share.

The detector re-finds a standing opportunity on every relevant tick. Traders (and the
database) care about *episodes*: an opportunity for (symbol, combo) appears, persists a
while, and vanishes. The pipeline reports an episode's start once, lets the caller decide
again after a re-decision interval while it persists, and reports its end with the
duration — everything a duration histogram or a replay comparison needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from arbkit.arbitrage.arbitrage import ArbitrageDetector
from arbkit.arbitrage.fee_model import FeeModel
from arbkit.book.order_book import CentralOrderBook, Combo, SymbolBook
from arbkit.config.execution_loader import DetectorParams, FeeParams
from arbkit.config.loader import SymbolMap
from arbkit.model import PRICE_SCALE, NormalizedTick, Opportunity, Outcome, Price, Qty, Venue


@dataclass(slots=True)
class Episode:
    symbol: str
    combo: str
    started_ns: int
    last_seen_ns: int
    last_decision_ns: int
    best: Opportunity
    evaluations: int = 1


@dataclass(slots=True)
class EpisodeEnd:
    symbol: str
    combo: str
    started_ns: int
    ended_ns: int
    best_profit: int

    @property
    def duration_ns(self) -> int:
        return self.ended_ns - self.started_ns


@dataclass(slots=True)
class PipelineResult:
    """What one batch of ticks produced: opportunities to decide on, episodes ended."""

    decide: list[Opportunity] = field(default_factory=list)
    started: list[Opportunity] = field(default_factory=list)  # the subset of decide that is new
    ended: list[EpisodeEnd] = field(default_factory=list)
    evaluated: int = 0
    found: int = 0  # (symbol, combo) evaluations that found an opportunity


@dataclass(frozen=True, slots=True)
class SpreadSample:
    """Best asks on both venues and the gross cost to arb each combination (price units,
    None where a side is empty or invalid)."""

    ts_ns: int
    symbol: str
    kalshi_yes_ask: Price | None = None
    kalshi_yes_size: Qty | None = None
    kalshi_no_ask: Price | None = None
    kalshi_no_size: Qty | None = None
    ibkr_yes_ask: Price | None = None
    ibkr_yes_size: Qty | None = None
    ibkr_no_ask: Price | None = None
    ibkr_no_size: Qty | None = None
    cost_kalshi_yes: int | None = None  # Kalshi YES ask + its ForecastEx partner's ask
    cost_kalshi_no: int | None = None


class DetectionPipeline:
    def __init__(
        self,
        symbol_map: SymbolMap,
        fees: FeeParams,
        detector: DetectorParams,
        *,
        redecide_ms: int = 1_000,
    ) -> None:
        self.symbol_map = symbol_map
        self.book = CentralOrderBook(symbol_map)
        self.detector = ArbitrageDetector(FeeModel(fees), detector)
        self.redecide_ns = redecide_ms * 1_000_000
        self.episodes: dict[tuple[str, str], Episode] = {}
        self.venue_alive_ns: dict[Venue, int] = {}
        self.paused = False
        self.ticks = 0
        self.evaluations = 0
        self.opportunities_seen = 0
        self.last_found: list[Opportunity] = []  # every opportunity found by the last call

    # Parameters may change at run time (notebook sliders); the next evaluation uses them.
    def set_detector_params(self, params: DetectorParams) -> None:
        self.detector.params = params

    def set_fee_params(self, fees: FeeParams) -> None:
        self.detector.fee_model = FeeModel(fees)

    def mark_alive(self, venue: Venue, ts_ns: int) -> None:
        self.venue_alive_ns[venue] = ts_ns

    def on_ticks(self, ticks: Iterable[NormalizedTick], now_ns: int) -> PipelineResult:
        book = self.book
        books = book.books
        dirty: list[SymbolBook] = []
        n = 0
        for t in ticks:  # CentralOrderBook.apply inlined (hot path)
            n += 1
            b = books.get(t.symbol)
            if b is None:
                book.unknown_symbol_ticks += 1
            elif b.apply(t) and b not in dirty:
                dirty.append(b)
        self.ticks += n
        res = PipelineResult()
        self.last_found.clear()
        if self.paused:
            return res
        for b in dirty:
            self._evaluate(b, now_ns, res)
        return res

    def evaluate_books(
        self, books: Iterable[tuple[SymbolBook, tuple[Combo, ...] | None]], now_ns: int
    ) -> PipelineResult:
        """Evaluate books already updated elsewhere (a sweep shares one book between
        parameter sets), each for the given combinations (None: both); the same episode
        logic as ``on_ticks``. Leaving out a combination is only correct when its
        evaluation could neither find an opportunity nor end an episode."""
        res = PipelineResult()
        if not self.paused:
            for b, combos in books:
                self._evaluate(b, now_ns, res, combos)
        return res

    def reevaluate_all(self, now_ns: int) -> PipelineResult:
        """Periodic sweep: ends episodes whose quotes went stale without a new tick."""
        res = PipelineResult()
        if not self.paused:
            for b in self.book.books.values():
                self._evaluate(b, now_ns, res)
        return res

    def _evaluate(
        self,
        b: SymbolBook,
        now_ns: int,
        res: PipelineResult,
        combos: tuple[Combo, ...] | None = None,
    ) -> None:
        self.evaluations += 1
        res.evaluated += 1
        if combos is None:
            combos = b.combos
            found = {o.combo: o for o in self.detector.evaluate(b, now_ns, self.venue_alive_ns)}
        else:
            found = {}
            for c in combos:
                o = self.detector.evaluate_combo(b, c, now_ns, self.venue_alive_ns)
                if o is not None:
                    found[c.label] = o
        res.found += len(found)
        self.last_found.extend(found.values())
        for combo in combos:
            key = (b.symbol, combo.label)
            ep = self.episodes.get(key)
            opp = found.get(combo.label)
            if opp is None:
                if ep is not None:
                    del self.episodes[key]
                    res.ended.append(
                        EpisodeEnd(
                            b.symbol, combo.label, ep.started_ns, now_ns, ep.best.expected_profit
                        )
                    )
                continue
            if ep is None:
                self.opportunities_seen += 1
                self.episodes[key] = Episode(b.symbol, combo.label, now_ns, now_ns, now_ns, opp)
                res.decide.append(opp)
                res.started.append(opp)
                continue
            ep.last_seen_ns = now_ns
            ep.evaluations += 1
            if opp.expected_profit > ep.best.expected_profit:
                ep.best = opp
            if now_ns - ep.last_decision_ns >= self.redecide_ns:
                ep.last_decision_ns = now_ns
                res.decide.append(opp)

    def spread(self, symbol: str, now_ns: int) -> SpreadSample:
        b = self.book[symbol]

        def top(v: Venue, o: Outcome) -> tuple[Price | None, Qty | None]:
            lad = b.ladder(v, o)
            if not lad.valid or not lad.prices:
                return None, None
            p = lad.prices[0]
            return Price(p), Qty(lad.sizes[p])

        ky, kys = top(Venue.KALSHI, Outcome.YES)
        kn, kns = top(Venue.KALSHI, Outcome.NO)
        fy, fys = top(Venue.IBKR, Outcome.YES)
        fn, fns = top(Venue.IBKR, Outcome.NO)
        asks = {
            (Venue.KALSHI, Outcome.YES): ky,
            (Venue.KALSHI, Outcome.NO): kn,
            (Venue.IBKR, Outcome.YES): fy,
            (Venue.IBKR, Outcome.NO): fn,
        }
        costs: list[int | None] = []
        for combo in b.combos:
            a = asks[(Venue.KALSHI, combo.kalshi_outcome)]
            c = asks[(Venue.IBKR, combo.ibkr_outcome)]
            costs.append(a + c if a is not None and c is not None else None)
        return SpreadSample(now_ns, symbol, ky, kys, kn, kns, fy, fys, fn, fns, costs[0], costs[1])


def edge_price_units(sample_cost: int | None) -> int | None:
    """Gross edge per contract in price units ($1 − cost to arb), before fees."""
    return None if sample_cost is None else PRICE_SCALE - sample_cost
