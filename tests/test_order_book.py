from arbkit.book.order_book import CentralOrderBook
from arbkit.config.loader import SymbolMap
from arbkit.model import BookSide, NormalizedTick, Outcome, Price, Qty, Venue

from .conftest import NOW_NS, make_spec


def lvl(
    venue: Venue, outcome: Outcome, price: int, size: int, symbol: str = "SYM"
) -> NormalizedTick:
    return NormalizedTick(symbol, venue, outcome, BookSide.ASK, Price(price), Qty(size), 0, NOW_NS)


def snapshot(
    venue: Venue, levels: dict[Outcome, list[tuple[int, int]]], symbol: str = "SYM"
) -> list[NormalizedTick]:
    ticks = [NormalizedTick.reset(symbol, venue, valid=True, recv_ts_ns=NOW_NS)]
    for o, lv in levels.items():
        ticks += [lvl(venue, o, p, s, symbol) for p, s in lv]
    return ticks


def test_ladder_sorted_and_removal(symbol_map: SymbolMap) -> None:
    cob = CentralOrderBook(symbol_map)
    cob.apply_batch(snapshot(Venue.KALSHI, {Outcome.YES: [(5600, 100), (5400, 300), (5800, 50)]}))
    lad = cob["SYM"].ladder(Venue.KALSHI, Outcome.YES)
    assert lad.best == 5400 and lad.prices == [5400, 5600, 5800]
    cob.apply(lvl(Venue.KALSHI, Outcome.YES, 5400, 0))
    assert lad.best == 5600 and 5400 not in lad.sizes
    cob.apply(lvl(Venue.KALSHI, Outcome.YES, 5600, 250))
    assert list(lad.levels()) == [(5600, 250), (5800, 50)]
    assert lad.depth() == 300


def test_reset_invalidates_one_venue_only(symbol_map: SymbolMap) -> None:
    cob = CentralOrderBook(symbol_map)
    cob.apply_batch(snapshot(Venue.KALSHI, {Outcome.YES: [(5600, 100)]}))
    cob.apply_batch(snapshot(Venue.IBKR, {Outcome.NO: [(4000, 100)]}))
    book = cob["SYM"]
    assert book.ladder(Venue.KALSHI, Outcome.YES).valid
    cob.invalidate_venue(Venue.KALSHI, NOW_NS)
    assert not book.ladder(Venue.KALSHI, Outcome.YES).valid
    assert not book.ladder(Venue.KALSHI, Outcome.YES).prices
    assert book.ladder(Venue.IBKR, Outcome.NO).valid


def test_relevance_skips_ticks_that_cannot_pair(symbol_map: SymbolMap) -> None:
    cob = CentralOrderBook(symbol_map)
    cob.apply_batch(snapshot(Venue.KALSHI, {Outcome.YES: [(5600, 100)], Outcome.NO: [(4600, 100)]}))
    cob.apply_batch(snapshot(Venue.IBKR, {Outcome.YES: [(5500, 100)], Outcome.NO: [(4200, 100)]}))
    # Kalshi YES pairs with IBKR NO (best 0.42): a level at 0.59 can never pair under $1.
    assert cob.apply(lvl(Venue.KALSHI, Outcome.YES, 5900, 10)) is None
    assert cob.apply(lvl(Venue.KALSHI, Outcome.YES, 5700, 10)) is not None
    # Invalid partner → nothing to evaluate.
    cob.apply(
        NormalizedTick.reset("SYM", Venue.IBKR, valid=False, recv_ts_ns=NOW_NS, outcome=Outcome.NO)
    )
    assert cob.apply(lvl(Venue.KALSHI, Outcome.YES, 5000, 10)) is None


def test_orientation_pairs_inverted_symbol() -> None:
    cob = CentralOrderBook(SymbolMap({"INV": make_spec("INV", Outcome.NO)}))
    book = cob["INV"]
    # Kalshi YES == ForecastEx NO, so Kalshi YES pairs with ForecastEx YES.
    assert book.partner(Venue.KALSHI, Outcome.YES) is book.ladder(Venue.IBKR, Outcome.YES)
    assert book.partner(Venue.KALSHI, Outcome.NO) is book.ladder(Venue.IBKR, Outcome.NO)


def test_unknown_symbol_counted(symbol_map: SymbolMap) -> None:
    cob = CentralOrderBook(symbol_map)
    assert cob.apply(lvl(Venue.KALSHI, Outcome.YES, 5000, 1, symbol="NOPE")) is None
    assert cob.unknown_symbol_ticks == 1
