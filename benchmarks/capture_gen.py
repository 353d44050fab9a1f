"""A realistic synthetic capture, cached under data/bench/.

The seeded MarketModel drives the real local Kalshi matching engine and TWS book (not
started: no sockets), exactly as ``arbkit sim`` does, but on synthetic time and as fast as
the CPU allows. Every level change the engine publishes becomes the ``orderbook_delta``
frame the local exchange would send (one sid, continuous seq, snapshots first); every
change of a ForecastEx contract's top of book becomes the IBKR quote event ib_async would
report. Both venues, 20 symbols, dislocations (opportunities) included.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from arbkit.config.loader import SymbolMap, load_symbol_map
from arbkit.model import Venue, price_str, qty_str
from arbkit.sim.kalshi_exchange import KalshiExchange
from arbkit.sim.market_model import MarketModel, generate_universe
from arbkit.sim.tws_server import TwsServer
from arbkit.storage.capture import ibkr_line, kalshi_line, symbol_map_path
from benchmarks.common import BENCH_DIR

START_NS = 1_780_000_000 * 10**9
STEP_NS = 10_000_000  # the driver's 10 ms tick
SID = 1


def capture_path(n_events: int, n_symbols: int = 20) -> tuple[Path, Path]:
    cap = BENCH_DIR / f"capture-{n_symbols}s-{n_events // 1000}k.jsonl"
    return cap, symbol_map_path(cap)  # the sidecar replay reads without --symbols


def ensure_capture(
    n_events: int, n_symbols: int = 20, *, seed: int = 7
) -> tuple[Path, SymbolMap, float]:
    """(capture path, symbol map, seconds spent generating — 0 when cached)."""
    path, sym_path = capture_path(n_events, n_symbols)
    if path.exists() and sym_path.exists():
        return path, load_symbol_map(sym_path), 0.0
    t0 = time.perf_counter()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        generate(fh, n_events, n_symbols, seed, sym_path)
    tmp.rename(path)
    return path, load_symbol_map(sym_path), time.perf_counter() - t0


def generate(fh: Any, n_events: int, n_symbols: int, seed: int, sym_path: Path) -> None:
    universe = generate_universe(n_symbols, seed, now_ns=START_NS)
    universe.write_symbol_map(sym_path)
    model = MarketModel(
        universe,
        seed=seed,
        updates_per_s=4_000.0,
        dislocation_rate_per_min=6.0,
        start_ns=START_NS,
    )
    now = [START_NS]
    ex = KalshiExchange(clock_ns=lambda: now[0])
    tws = TwsServer()
    for m in universe.markets:
        ex.add_market(
            m.kalshi_ticker,
            series=m.kalshi_series,
            event_ticker=m.kalshi_event_ticker,
            close_time=m.close_ts_ns // 1_000_000_000,
            open_time=m.open_ts_ns // 1_000_000_000,
            title=m.kalshi_title,
        )
        tws.add_market(
            m.fx_pair_id,
            symbol=m.fx_symbol,
            last_trade_date=m.last_trade_date,
            strike=m.strike,
            yes_con_id=m.yes_con_id,
            no_con_id=m.no_con_id,
            under_con_id=m.under_con_id,
            real_expiration_date=m.real_expiration_date,
            long_name=m.fx_long_name,
        )
    engine = ex.engine
    lines: list[bytes] = []
    seq = [0]
    t_ev = [START_NS]

    def stamp() -> int:
        t_ev[0] = max(t_ev[0] + 1_000, now[0])  # distinct, increasing receive times
        return t_ev[0]

    def kalshi(obj: dict[str, Any]) -> None:
        lines.append(kalshi_line(orjson.dumps(obj).decode(), stamp()))

    def on_level(ticker: str, side: str, price: int, delta: int, new: int) -> None:
        seq[0] += 1
        kalshi(
            {
                "type": "orderbook_delta",
                "sid": SID,
                "seq": seq[0],
                "msg": {
                    "market_ticker": ticker,
                    "market_id": engine.markets[ticker].market_id,
                    "price_dollars": price_str(price),
                    "delta_fp": qty_str(delta),
                    "side": side,
                    "ts_ms": now[0] // 1_000_000,
                },
            }
        )

    shown: dict[int, tuple[Any, Any]] = {}
    fx_cons = {m.fx_pair_id: (m.yes_con_id, m.no_con_id) for m in universe.markets}

    def fx_publish(pair: str) -> None:
        for con_id in fx_cons[pair]:
            bid, ask = tws.top(con_id)
            if shown.get(con_id) == (bid, ask):
                continue
            shown[con_id] = (bid, ask)
            ev: dict[str, Any] = {"conId": con_id}
            for (p, q), kp, kq in ((bid, "bid", "bidSize"), (ask, "ask", "askSize")):
                ev[kp], ev[kq] = (None, None) if p == "-1" else (float(p), float(q))
            lines.append(ibkr_line(ev, stamp()))

    def dispatch(updates: list[Any]) -> None:
        for u in updates:
            if u.venue is Venue.KALSHI:
                engine.set_bids(u.market, u.outcome, u.levels)
            else:
                tws.set_bids(u.market, u.outcome, u.levels)
                fx_publish(u.market)

    # Initial books, then the subscription the monitor would make: subscribed + snapshots.
    engine.on_level = lambda *_: None
    dispatch(model.initial_books())
    kalshi({"id": 1, "type": "subscribed", "msg": {"channel": "orderbook_delta", "sid": SID}})
    for m in universe.markets:
        mk = engine.markets[m.kalshi_ticker]
        msg: dict[str, Any] = {"market_ticker": m.kalshi_ticker, "market_id": mk.market_id}
        yes, no = mk.ladder("yes"), mk.ladder("no")
        if yes:
            msg["yes_dollars_fp"] = [[price_str(p), qty_str(q)] for p, q in yes]
        if no:
            msg["no_dollars_fp"] = [[price_str(p), qty_str(q)] for p, q in no]
        seq[0] += 1
        kalshi({"type": "orderbook_snapshot", "sid": SID, "seq": seq[0], "msg": msg})
    engine.on_level = on_level
    written = 0
    model.step(now[0])
    while written + len(lines) < n_events:
        now[0] += STEP_NS
        dispatch(model.step(now[0]))
        if len(lines) > 50_000:
            fh.write(b"".join(lines))
            written += len(lines)
            lines.clear()
    keep = n_events - written
    fh.write(b"".join(lines[:keep]))
