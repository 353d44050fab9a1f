"""Frame fuzzer for the gateways' parsing: mutated and random venue frames through
``KalshiWebSocket._on_frame`` (normalizer + resync logic) and ``IbkrGateway._on_pending``
(ticker → normalizer), with the ticks driving a real ``DetectionPipeline``.

Counted: exceptions escaping (must be 0), pipeline decisions made while a ladder or the
Kalshi feed's own book was invalid (must be 0), decisions at all ("trades": the books
are arranged so that only a corrupted book could show an arb, so this must be 0 too),
and — whenever the normalizer calls the book valid — that it is uncrossed with positive
sizes. A fast run is in ``make test``; ``python -m tests.reliability.fuzz 1000000`` (or
``make fuzz``) runs a million frames.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from ib_async import Contract, Ticker

from arbkit.arbitrage.pipeline import DetectionPipeline
from arbkit.config.execution_loader import DetectorParams, FeeParams
from arbkit.gateways.ibkr_client import IbkrGateway
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.gateways.kalshi_websocket import KalshiWebSocket
from arbkit.model import NormalizedTick, Outcome, Venue
from arbkit.normalizers.ibkr_normalizer import IbkrNormalizer
from tests.integration.rig import FX_NO, FX_YES, SYMBOL, TICKER, symbol_map

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "kalshi" / "samples"
WEIRD: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**70, -(2**70), 1.5, -0.0, 1e308, "", "0", "1",
    "0.6000", "0.5", "-0.10", "1.0001", "0.00001", "NaN", "inf", "1e309", "abc", "0x10",
    "10.00", "-5.00", "99999999999999999999.00", "٣", [], {}, [[]], [["0.5"]],
    [["0.50", "1.00", "x"]], {"a": 1}, "x" * 5000,
]  # fmt: skip
TYPES = ["orderbook_delta", "orderbook_snapshot", "ok", "subscribed", "unsubscribed",
         "error", "ticker", "trade", "fill", "", "ORDERBOOK_DELTA"]  # fmt: skip


#: ForecastEx NO ask of the positive control: with Kalshi YES asked at 0.54–0.60 the
#: Kalshi-YES + ForecastEx-NO pair costs at most 0.80 — an arbitrage after any fee.
CONTROL_ASK = 2_000
#: A valid book never shows more than this at one level (contracts × 100).
MAX_SANE_QTY = 10_000_000 * 100


@dataclass
class FuzzStats:
    frames: int = 0
    kalshi_frames: int = 0
    ibkr_quotes: int = 0
    escaped: list[str] = field(default_factory=list)
    decisions: int = 0
    bad_decisions: int = 0
    controls: int = 0  # valid arbitrage quotes mixed in (the positive control)
    controls_found: int = 0  # decisions made while a control quote was the book
    unexpected_decisions: int = 0  # decisions with no control quote in the book
    invariant_violations: list[str] = field(default_factory=list)
    bad_frames: int = 0
    gaps: int = 0
    ibkr_errors: int = 0
    valid_frames_applied: int = 0
    frames_on_valid_book: int = 0  # frames that met a valid book (the dangerous case)
    seconds: float = 0.0

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


class _NoAuth(KalshiAuth):
    def __init__(self) -> None:  # the socket is never opened: nothing to sign
        pass


class Fuzzer:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.stats = FuzzStats()
        sm = symbol_map()
        # Arranged so no sane book shows an arb: ForecastEx asks 0.75/0.75.
        self.pipeline = DetectionPipeline(sm, FeeParams(), DetectorParams(max_quote_age_ms=10**9))
        self.ws = KalshiWebSocket("ws://127.0.0.1:9/x", _NoAuth(), {TICKER: SYMBOL}, self._on)
        self.gw = IbkrGateway("127.0.0.1", 9, 1, sm, self._on, cache_path=None)
        self.gw.normalizer = IbkrNormalizer(
            {FX_YES: (SYMBOL, Outcome.YES), FX_NO: (SYMBOL, Outcome.NO)}
        )
        self.contracts = {c: Contract(conId=c) for c in (FX_YES, FX_NO, 999)}
        self.corpus = [
            p.read_text() for p in sorted(SAMPLES.glob("ws_*.json")) if p.stat().st_size < 20_000
        ]
        self.seq = 0
        self.sid = 1

    # ------------------------------------------------------------------ sink
    def _on(self, ticks: list[NormalizedTick]) -> None:
        now = time.time_ns()
        self.pipeline.mark_alive(Venue.KALSHI, now)
        self.pipeline.mark_alive(Venue.IBKR, now)
        res = self.pipeline.on_ticks(ticks, now)
        for opp in res.decide:
            self.stats.decisions += 1
            b = self.pipeline.book[opp.symbol]
            ok = (
                b.ladder(Venue.KALSHI, opp.kalshi.outcome).valid
                and b.ladder(Venue.IBKR, opp.ibkr.outcome).valid
            )
            if not ok or not self.ws.normalizer.is_valid(TICKER):
                self.stats.bad_decisions += 1
            fx_no = b.ladder(Venue.IBKR, Outcome.NO)
            if fx_no.valid and fx_no.prices and fx_no.prices[0] == CONTROL_ASK:
                self.stats.controls_found += 1
            else:
                self.stats.unexpected_decisions += 1

    # ------------------------------------------------------------------ frames
    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def subscribed(self) -> str:
        self.seq = 0
        self.sid += 1
        return orjson.dumps(
            {"type": "subscribed", "id": 1, "msg": {"channel": "orderbook_delta", "sid": self.sid}}
        ).decode()

    def snapshot(self) -> str:
        r = self.rng
        yes = [[f"0.{46 - k:02d}00", f"{r.randint(1, 500)}.00"] for k in range(r.randint(1, 4))]
        no = [[f"0.{40 + k:02d}00", f"{r.randint(1, 500)}.00"] for k in range(r.randint(1, 4))]
        msg = {"market_ticker": TICKER, "market_id": "m", "yes_dollars_fp": yes[::-1],
               "no_dollars_fp": no}  # fmt: skip
        return orjson.dumps(
            {"type": "orderbook_snapshot", "sid": self.sid, "seq": self._next(), "msg": msg}
        ).decode()

    def delta(self) -> str:
        r = self.rng
        side = r.choice(("yes", "no"))
        price = f"0.{r.randint(30, 46) if side == 'yes' else r.randint(30, 53):02d}00"
        d = r.choice((1, 1, 1, -1)) * r.randint(1, 50)
        msg = {"market_ticker": TICKER, "market_id": "m", "price_dollars": price,
               "delta_fp": f"{d}.00", "side": side, "ts_ms": 1_700_000_000_000}  # fmt: skip
        return orjson.dumps(
            {"type": "orderbook_delta", "sid": self.sid, "seq": self._next(), "msg": msg}
        ).decode()

    def _weird(self) -> Any:
        r = self.rng
        if r.random() < 0.2:
            return r.choice((r.randint(-(2**40), 2**40), r.random() * 10 - 5))
        if r.random() < 0.1:
            return r.choice(TYPES)
        return r.choice(WEIRD)

    def _mutate_obj(self, obj: Any, depth: int = 0) -> Any:
        r = self.rng
        if isinstance(obj, dict) and obj and depth < 4:
            k = r.choice(list(obj))
            op = r.random()
            if op < 0.15:
                del obj[k]
            elif op < 0.25:
                obj[r.choice(("type", "sid", "seq", "msg", "zz", "market_ticker"))] = self._weird()
            elif op < 0.7 and isinstance(obj[k], (dict, list)):
                obj[k] = self._mutate_obj(obj[k], depth + 1)
            else:
                obj[k] = self._weird()
            return obj
        if isinstance(obj, list) and obj and depth < 4:
            i = r.randrange(len(obj))
            op = r.random()
            if op < 0.2:
                del obj[i]
            elif op < 0.3:
                obj.insert(i, obj[i])
            elif isinstance(obj[i], (dict, list)):
                obj[i] = self._mutate_obj(obj[i], depth + 1)
            else:
                obj[i] = self._weird()
            return obj
        return self._weird()

    def mutated(self, base: str) -> str | bytes:
        r = self.rng
        op = r.random()
        if op < 0.55:
            try:
                obj = orjson.loads(base)
            except orjson.JSONDecodeError:
                return base
            for _ in range(r.randint(1, 3)):
                obj = self._mutate_obj(obj)
            try:
                return orjson.dumps(obj).decode()
            except TypeError:
                return json.dumps(obj)
        b = bytearray(base.encode())
        if op < 0.7 and b:
            for _ in range(r.randint(1, 4)):
                b[r.randrange(len(b))] = r.randrange(256)
        elif op < 0.8:
            b = b[: r.randrange(len(b) + 1)]
        elif op < 0.9:
            i = r.randrange(len(b) + 1)
            b[i:i] = r.randbytes(r.randint(1, 16))
        else:
            return r.randbytes(r.randint(0, 200))
        return bytes(b)

    # ------------------------------------------------------------------ driving
    async def kalshi(self, raw: str | bytes, valid: bool) -> None:
        s = self.stats
        s.frames += 1
        s.kalshi_frames += 1
        s.valid_frames_applied += valid
        s.frames_on_valid_book += self.ws.normalizer.is_valid(TICKER)
        try:
            await self.ws._on_frame(raw)
        except Exception as exc:
            s.escaped.append(f"kalshi {type(exc).__name__}: {exc} <- {raw[:200]!r}")
            return
        n = self.ws.normalizer
        if n.is_valid(TICKER):
            yes, no = n.book(TICKER)
            if any(q <= 0 for _, q in yes + no) or (yes and no and yes[0][0] + no[0][0] >= 10_000):
                s.invariant_violations.append(f"valid but crossed/empty level: {yes[:2]} {no[:2]}")
            if any(q > MAX_SANE_QTY for _, q in yes + no):
                s.invariant_violations.append(f"valid with an absurd size: {yes[:2]} {no[:2]}")

    def ibkr(self) -> None:
        r = self.rng
        s = self.stats
        s.frames += 1
        s.ibkr_quotes += 1
        if r.random() < 0.03:  # positive control: a real arbitrage the detector must find
            s.controls += 1
            yes = Ticker(contract=self.contracts[FX_YES])
            yes.bid, yes.bidSize, yes.ask, yes.askSize = 0.10, 10.0, 0.85, 10.0
            no = Ticker(contract=self.contracts[FX_NO])
            no.bid, no.bidSize, no.ask, no.askSize = 0.10, 10.0, CONTROL_ASK / 10_000, 10.0
            self.gw._on_pending({yes})
            self.gw._on_pending({no})
            return
        t = Ticker(contract=self.contracts[r.choice((FX_YES, FX_NO, FX_YES, FX_NO, 999))])
        if r.random() < 0.6:  # a sane quote: asks 0.75, far from any arb
            t.bid, t.bidSize, t.ask, t.askSize = 0.25, float(r.randint(1, 50)), 0.75, 10.0
        else:
            pool = [float("nan"), float("inf"), -1.0, 0.0, 0.005, 0.5, 0.755, 1.5, 1e300,
                    -5.0, 3.0, 2.5, 10.0, None, 0.75, 7]  # fmt: skip
            t.bid, t.bidSize, t.ask, t.askSize = (r.choice(pool) for _ in range(4))
        try:
            self.gw._on_pending({t})
        except Exception as exc:
            s.escaped.append(f"ibkr {type(exc).__name__}: {exc} <- {t.bid, t.bidSize, t.ask}")

    async def run(self, n_frames: int) -> FuzzStats:
        r = self.rng
        t0 = time.perf_counter()
        await self.kalshi(self.subscribed(), True)
        await self.kalshi(self.snapshot(), True)
        while self.stats.frames < n_frames:
            x = r.random()
            if x < 0.12:
                self.ibkr()
            elif x < 0.45:
                await self.kalshi(self.delta(), True)
            elif x < 0.5:
                await self.kalshi(self.snapshot(), True)
            elif x < 0.51:
                await self.kalshi(self.subscribed(), True)
                await self.kalshi(self.snapshot(), True)
            elif x < 0.75:
                base = r.choice((self.delta, self.snapshot))()
                await self.kalshi(self.mutated(base), False)
            else:
                await self.kalshi(self.mutated(r.choice(self.corpus)), False)
        s = self.stats
        s.seconds = time.perf_counter() - t0
        s.bad_frames = self.ws.normalizer.bad_frames
        s.gaps = self.ws.normalizer.gaps
        s.ibkr_errors = self.gw.normalizer.errors
        return s


async def fuzz(n_frames: int, seed: int = 0) -> FuzzStats:
    prev = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # a million warnings would measure the logger
    try:
        return await Fuzzer(seed).run(n_frames)
    finally:
        logging.disable(prev)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    s = asyncio.run(fuzz(n, seed))
    print(
        f"fuzz: {s.frames} frames ({s.kalshi_frames} Kalshi, {s.ibkr_quotes} IBKR) in "
        f"{s.seconds:.1f} s = {s.frames_per_s:,.0f} frames/s; escaped {len(s.escaped)}; "
        f"decisions {s.decisions} (on invalid books {s.bad_decisions}); invariant violations "
        f"{len(s.invariant_violations)}; bad frames {s.bad_frames}, gaps {s.gaps}, "
        f"IBKR bad quotes {s.ibkr_errors}; Kalshi frames meeting a valid book "
        f"{s.frames_on_valid_book}; positive controls {s.controls} (found "
        f"{s.controls_found}, unexpected decisions {s.unexpected_decisions})"
    )
    for e in (s.escaped + s.invariant_violations)[:10]:
        print("  ", e)
    failed = s.escaped or s.bad_decisions or s.unexpected_decisions or s.invariant_violations
    sys.exit(1 if failed or not s.controls_found else 0)


if __name__ == "__main__":
    main()
