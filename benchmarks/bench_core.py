"""Book update + detection per tick (issue 2). Run by hand: python benchmarks/bench_core.py

Mix: most ticks land away from the top (the book answers "irrelevant" and the detector is
skipped), some at the top (full decision, usually no opportunity), some that create an
opportunity (full depth walk and sizing).
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time

from arbkit.arbitrage.arbitrage import ArbitrageDetector
from arbkit.arbitrage.fee_model import FeeModel
from arbkit.book.order_book import CentralOrderBook
from arbkit.config.execution_loader import DetectorParams, FeeParams
from arbkit.config.loader import ForecastExSpec, SymbolMap, SymbolSpec
from arbkit.model import BookSide, NormalizedTick, Outcome, Price, Qty, Venue

NOW = 1_800_000_000 * 10**9
N_SYMBOLS = 20


def build() -> tuple[CentralOrderBook, ArbitrageDetector, SymbolMap]:
    specs = {
        f"S{i}": SymbolSpec(
            f"S{i}",
            f"KXS{i}-T1",
            ForecastExSpec(yes_con_id=2 * i + 1, no_con_id=2 * i + 2),
            Outcome.YES if i % 3 else Outcome.NO,
            NOW + 30 * 86400 * 10**9,
            "KXS",
        )
        for i in range(N_SYMBOLS)
    }
    sm = SymbolMap(specs)
    cob = CentralOrderBook(sm)
    for s in specs:
        t = [NormalizedTick.reset(s, Venue.KALSHI, valid=True, recv_ts_ns=NOW)]
        # Kalshi YES asks 0.52.., NO asks 0.50.. ; ForecastEx top of book 0.50/0.52
        for o, base in ((Outcome.YES, 5200), (Outcome.NO, 5000)):
            for k in range(30):
                t.append(tick(s, Venue.KALSHI, o, base + 100 * k, 1000 + 37 * k))
        cob.apply_batch(t)
        f = [NormalizedTick.reset(s, Venue.IBKR, valid=True, recv_ts_ns=NOW)]
        f += [
            tick(s, Venue.IBKR, Outcome.YES, 5200, 5000),
            tick(s, Venue.IBKR, Outcome.NO, 5000, 5000),
        ]
        cob.apply_batch(f)
    return cob, ArbitrageDetector(FeeModel(FeeParams()), DetectorParams()), sm


def tick(s: str, v: Venue, o: Outcome, p: int, q: int) -> NormalizedTick:
    return NormalizedTick(s, v, o, BookSide.ASK, Price(p), Qty(q), NOW, NOW)


def stream(n: int, rng: random.Random) -> list[tuple[str, NormalizedTick]]:
    out = []
    for _ in range(n):
        s = f"S{rng.randrange(N_SYMBOLS)}"
        o = rng.choice((Outcome.YES, Outcome.NO))
        base = 5200 if o is Outcome.YES else 5000
        r = rng.random()
        if r < 0.90:  # away from the top: deep levels change size
            out.append(
                (
                    "deep",
                    tick(
                        s,
                        Venue.KALSHI,
                        o,
                        base + 100 * rng.randrange(5, 30),
                        rng.randrange(100, 5000),
                    ),
                )
            )
        elif r < 0.98:  # at the top, no opportunity
            out.append(("top", tick(s, Venue.KALSHI, o, base, rng.randrange(100, 5000))))
        else:  # a dislocated level that creates an opportunity; removed again right after
            p = base - 700
            out.append(("opp", tick(s, Venue.KALSHI, o, p, rng.randrange(500, 5000))))
            out.append(("top", tick(s, Venue.KALSHI, o, p, 0)))
    return out


def run(n: int = 300_000) -> dict[str, dict[str, float]]:
    cob, det, _ = build()
    rng = random.Random(7)
    ticks = stream(n, rng)
    lat: dict[str, list[int]] = {"deep": [], "top": [], "opp": []}
    opps = 0
    clock = time.perf_counter_ns
    gc.disable()
    t_start = clock()
    for kind, t in ticks:
        t0 = clock()
        book = cob.apply(t)
        if book is not None:
            opps += len(det.evaluate(book, NOW))
        lat[kind].append(clock() - t0)
    total = clock() - t_start
    gc.enable()
    res: dict[str, dict[str, float]] = {}
    for k, v in lat.items():
        v.sort()
        res[k] = {
            "count": len(v),
            "p50_us": v[len(v) // 2] / 1000,
            "p99_us": v[int(len(v) * 0.99)] / 1000,
            "mean_us": statistics.fmean(v) / 1000,
        }
    allv = sorted(x for v in lat.values() for x in v)
    res["all"] = {
        "count": len(allv),
        "p50_us": allv[len(allv) // 2] / 1000,
        "p99_us": allv[int(len(allv) * 0.99)] / 1000,
        "ticks_per_s": len(allv) / (total / 1e9),
        "opportunities": opps,
    }
    return res


if __name__ == "__main__":
    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 300_000)
    print(f"python {sys.version.split()[0]}")
    for k, v in result.items():
        print(
            f"{k:5s} "
            + "  ".join(
                f"{a}={b:,.2f}" if isinstance(b, float) else f"{a}={b:,}" for a, b in v.items()
            )
        )
    print(json.dumps(result))
