from arbkit.arbitrage.pipeline import DetectionPipeline
from arbkit.config.execution_loader import DetectorParams, FeeParams
from arbkit.config.loader import SymbolMap
from arbkit.model import Outcome, Venue

from .conftest import NOW_NS
from .test_order_book import lvl, snapshot


def test_episodes_start_persist_and_end(symbol_map: SymbolMap) -> None:
    pipe = DetectionPipeline(symbol_map, FeeParams(), DetectorParams(), redecide_ms=1000)
    pipe.on_ticks(
        snapshot(Venue.KALSHI, {Outcome.YES: [(5600, 1000)], Outcome.NO: [(4600, 1000)]}), NOW_NS
    )
    r = pipe.on_ticks(
        snapshot(Venue.IBKR, {Outcome.YES: [(5500, 1000)], Outcome.NO: [(4500, 1000)]}), NOW_NS
    )
    assert not r.decide  # 0.56 + 0.45 > $1
    r = pipe.on_ticks([lvl(Venue.KALSHI, Outcome.YES, 5000, 500)], NOW_NS + 1)
    assert [o.combo for o in r.decide] == ["kalshi_yes+ibkr_no"]
    r = pipe.on_ticks([lvl(Venue.KALSHI, Outcome.YES, 5000, 400)], NOW_NS + 2)
    assert not r.decide and not r.ended  # same episode, too soon to decide again
    r = pipe.on_ticks([lvl(Venue.KALSHI, Outcome.YES, 5000, 300)], NOW_NS + 2_000_000_000)
    assert len(r.decide) == 1  # still there after the re-decision interval
    r = pipe.on_ticks([lvl(Venue.KALSHI, Outcome.YES, 5000, 0)], NOW_NS + 3_000_000_000)
    assert [e.combo for e in r.ended] == ["kalshi_yes+ibkr_no"]
    assert r.ended[0].duration_ns == 3_000_000_000 - 1
    s = pipe.spread("SYM", NOW_NS)
    assert s.kalshi_yes_ask == 5600 and s.ibkr_no_ask == 4500 and s.cost_kalshi_yes == 10_100


def test_pause_skips_detection(symbol_map: SymbolMap) -> None:
    pipe = DetectionPipeline(symbol_map, FeeParams(), DetectorParams())
    pipe.paused = True
    pipe.on_ticks(snapshot(Venue.KALSHI, {Outcome.YES: [(4000, 1000)]}), NOW_NS)
    r = pipe.on_ticks(snapshot(Venue.IBKR, {Outcome.NO: [(4500, 1000)]}), NOW_NS)
    assert not r.decide and pipe.ticks == 4
    pipe.paused = False
    assert pipe.reevaluate_all(NOW_NS).decide
