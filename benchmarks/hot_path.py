"""Hot path: raw Kalshi ``orderbook_delta`` frames (bytes) → KalshiNormalizer →
DetectionPipeline (CentralOrderBook + ArbitrageDetector + episodes), per message.

Mix (of price-changing messages): ~90% deep (a level well away from the top changes size,
the book answers "irrelevant"), ~8% at the top (full decision, no opportunity: the top pair
costs $0.99, less than the fees), ~2% opportunity-creating (a NO bid at $0.54 makes Kalshi
YES ask $0.46 against ForecastEx NO $0.49; the next frame removes it again, ending the episode).
"""

from __future__ import annotations

import gc
import random
import time
from typing import Any

import orjson

from arbkit.arbitrage.pipeline import DetectionPipeline
from arbkit.config.execution_loader import DetectorParams, FeeParams
from arbkit.config.loader import ForecastExSpec, SymbolMap, SymbolSpec
from arbkit.model import (
    BookSide,
    NormalizedTick,
    Outcome,
    Price,
    Qty,
    Venue,
    price_str,
    qty_str,
)
from arbkit.normalizers.kalshi_normalizer import KalshiNormalizer
from benchmarks.common import Figure, lat_us

NOW = 1_800_000_000 * 10**9
N_SYMBOLS = 20
LEVELS = 30
YES_TOP, NO_TOP, OPP_NO = 4500, 5000, 5400  # Kalshi bid prices, $0.0001 units
FX_YES_ASK, FX_NO_ASK = 5500, 4900
SID = 1


def symbol_map() -> SymbolMap:
    specs = {
        f"S{i}": SymbolSpec(
            f"S{i}",
            f"KXS{i}-T1",
            ForecastExSpec(yes_con_id=2 * i + 1, no_con_id=2 * i + 2),
            Outcome.YES,
            NOW + 30 * 86400 * 10**9,
            "KXS",
        )
        for i in range(N_SYMBOLS)
    }
    return SymbolMap(specs)


def _frame(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


class FrameGen:
    """Kalshi frames with a valid seq, tracking the book so deltas never go negative."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.seq = 0
        self.books: dict[str, dict[str, dict[int, int]]] = {}
        for i in range(N_SYMBOLS):
            yes = {YES_TOP - 100 * k: rng.randrange(1, 500) * 100 for k in range(LEVELS)}
            no = {NO_TOP - 100 * k: rng.randrange(1, 500) * 100 for k in range(LEVELS)}
            self.books[f"KXS{i}-T1"] = {"yes": yes, "no": no}

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def setup(self) -> list[bytes]:
        out = [
            _frame(
                {"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": SID}}
            )
        ]
        for t, b in self.books.items():
            msg = {
                "market_ticker": t,
                "market_id": t.lower(),
                "yes_dollars_fp": [[price_str(p), qty_str(q)] for p, q in sorted(b["yes"].items())],
                "no_dollars_fp": [[price_str(p), qty_str(q)] for p, q in sorted(b["no"].items())],
            }
            out.append(
                _frame({"type": "orderbook_snapshot", "sid": SID, "seq": self._next(), "msg": msg})
            )
        return out

    def delta(self, ticker: str, side: str, price: int, new: int, ts_ms: int) -> bytes:
        levels = self.books[ticker][side]
        d = new - levels.get(price, 0)
        if new:
            levels[price] = new
        else:
            levels.pop(price, None)
        return _frame(
            {
                "type": "orderbook_delta",
                "sid": SID,
                "seq": self._next(),
                "msg": {
                    "market_ticker": ticker,
                    "market_id": ticker.lower(),
                    "price_dollars": price_str(price),
                    "delta_fp": qty_str(d),
                    "side": side,
                    "ts_ms": ts_ms,
                },
            }
        )

    def stream(self, n: int) -> list[tuple[str, bytes]]:
        rng = self.rng
        out: list[tuple[str, bytes]] = []
        ts_ms = NOW // 1_000_000
        while len(out) < n:
            ticker = f"KXS{rng.randrange(N_SYMBOLS)}-T1"
            r = rng.random()
            if r < 0.90:
                side = "yes" if rng.random() < 0.5 else "no"
                top = YES_TOP if side == "yes" else NO_TOP
                p = top - 100 * rng.randrange(1, LEVELS)
                old = self.books[ticker][side].get(p, 0)
                new = old
                while new == old:
                    new = rng.randrange(1, 500) * 100
                out.append(
                    ("deep", self.delta(ticker, "no" if side == "no" else "yes", p, new, ts_ms))
                )
            elif r < 0.98:
                old = self.books[ticker]["no"][NO_TOP]
                new = old
                while new == old:
                    new = rng.randrange(1, 500) * 100
                out.append(("top", self.delta(ticker, "no", NO_TOP, new, ts_ms)))
            else:
                out.append(
                    ("opp", self.delta(ticker, "no", OPP_NO, rng.randrange(5, 50) * 100, ts_ms))
                )
                out.append(("top", self.delta(ticker, "no", OPP_NO, 0, ts_ms)))
        return out


def build() -> tuple[KalshiNormalizer, DetectionPipeline, FrameGen]:
    sm = symbol_map()
    kn = KalshiNormalizer({s.kalshi_ticker: n for n, s in sm.symbols.items()}, use_yes_price=False)
    pipe = DetectionPipeline(sm, FeeParams(), DetectorParams())
    gen = FrameGen(random.Random(7))
    for f in gen.setup():
        pipe.on_ticks(kn.on_message(f, NOW).ticks, NOW)
    for name, _spec in sm.symbols.items():
        ticks = [NormalizedTick.reset(name, Venue.IBKR, valid=True, recv_ts_ns=NOW)]
        for o, p in ((Outcome.YES, FX_YES_ASK), (Outcome.NO, FX_NO_ASK)):
            ticks.append(
                NormalizedTick(name, Venue.IBKR, o, BookSide.ASK, Price(p), Qty(5000), NOW, NOW)
            )
        pipe.on_ticks(ticks, NOW)
    return kn, pipe, gen


def _loop(
    kn: KalshiNormalizer, pipe: DetectionPipeline, frames: list[tuple[str, bytes]]
) -> tuple[dict[str, list[int]], int, int, int]:
    lat: dict[str, list[int]] = {"deep": [], "top": [], "opp": []}
    decisions = 0
    clock = time.perf_counter_ns
    on_message = kn.on_message
    on_ticks = pipe.on_ticks
    evaluated = 0
    t_start = clock()
    for kind, raw in frames:
        t0 = clock()
        res = on_ticks(on_message(raw, NOW).ticks, NOW)
        t1 = clock()
        lat[kind].append(t1 - t0)
        decisions += len(res.decide)
        evaluated += res.evaluated
    return lat, decisions, evaluated, clock() - t_start


def _throughput(kn: KalshiNormalizer, pipe: DetectionPipeline, raws: list[bytes]) -> float:
    on_message = kn.on_message
    on_ticks = pipe.on_ticks
    t0 = time.perf_counter_ns()
    for raw in raws:
        on_ticks(on_message(raw, NOW).ticks, NOW)
    return len(raws) / ((time.perf_counter_ns() - t0) / 1e9)


def run(quick: bool = False) -> list[Figure]:
    n = 60_000 if quick else 300_000
    kn, pipe, gen = build()
    warm = gen.stream(20_000)
    frames = gen.stream(n)
    gc_frames = gen.stream(n // 2)
    more = [raw for _, raw in gen.stream(n)]
    _loop(kn, pipe, warm)
    gc.collect()
    gc.disable()
    try:
        lat, decisions, evaluated, _ = _loop(kn, pipe, frames)
    finally:
        gc.enable()
    lat_gc, _, _, _ = _loop(kn, pipe, gc_frames)  # the same with gc on
    third = len(more) // 3  # gc on, no per-message timer; median of three runs
    rate = sorted(_throughput(kn, pipe, more[i * third : (i + 1) * third]) for i in range(3))[1]
    assert kn.bad_frames == 0 and kn.gaps == 0, (kn.bad_frames, kn.gaps)
    allv = [x for v in lat.values() for x in v]
    p50, p99 = lat_us(allv)
    counts = {k: len(v) for k, v in lat.items()}
    figs = [
        Figure(
            "hot_path",
            "frame→decision latency (all)",
            "µs",
            median=p50,
            p99=p99,
            target="p50 ≤ 5, p99 ≤ 25",
            met=p50 <= 5 and p99 <= 25,
            note=f"{len(allv):,} msgs, gc off in the timed loop; mix {counts}",
            extra={"decisions": decisions, "evaluations": evaluated},
        )
    ]
    g50, g99 = lat_us([x for v in lat_gc.values() for x in v])
    figs.append(
        Figure(
            "hot_path", "  all frames, gc on", "µs", median=g50, p99=g99, note=f"{n // 2:,} msgs"
        )
    )
    for k in ("deep", "top", "opp"):
        a, b = lat_us(lat[k])
        figs.append(
            Figure("hot_path", f"  {k} frames", "µs", median=a, p99=b, note=f"{counts[k]:,} msgs")
        )
    figs.append(
        Figure(
            "hot_path",
            "messages/s on one core",
            "msg/s",
            value=rate,
            target="≥ 200,000",
            met=rate >= 200_000,
            note=f"{len(more):,} msgs, gc on",
        )
    )
    return figs
