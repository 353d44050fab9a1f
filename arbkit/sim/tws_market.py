"""Local TWS, market side: maker books, top-of-book ticks, quote/trade history, bars,
contract details and symbol search (see ``tws_server`` for the book model)."""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import re
from collections.abc import Sequence
from zoneinfo import ZoneInfo

from arbkit.model import QTY_SCALE, Outcome, Price, Qty
from arbkit.sim import tws_wire as w
from arbkit.sim.tws_state import (
    CENT,
    MAX_PRICE,
    MIN_PRICE,
    NO_SECDEF,
    NS,
    PAIR_PRICE,
    TICK_ASK,
    TICK_ASK_SIZE,
    TICK_BID,
    TICK_BID_SIZE,
    Market,
    Session,
    TwsCore,
)
from arbkit.sim.tws_wire import Bar, Field, TwsContract

HMDS = "Historical Market Data Service error message:"
MAX_BARS = 10_000
MAX_SYMBOL_SAMPLES = 16  # TWS answers a symbol search with at most 16 descriptions
_UNIT_S = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 30 * 86_400, "Y": 365 * 86_400}
_BAR_S = {"sec": 1, "secs": 1, "min": 60, "mins": 60, "hour": 3600, "hours": 3600}


def _parse_when(text: str, default_tz: str) -> int:
    """IB date-time text → epoch ns: ``yyyymmdd hh:mm[:ss] [zone]`` (no zone = the TWS
    login zone) or ``yyyymmdd-hh:mm[:ss]`` (UTC), as ibapi's ``reqExecutions`` and
    ``reqHistoricalData`` docstrings describe them."""
    text = text.strip()
    m = re.fullmatch(r"(\d{8})([ -])(\d{2}):(\d{2})(?::(\d{2}))?(?:\s+(\S+))?", text)
    if m is None:
        raise ValueError(f"bad date-time {text!r}")
    day, sep, hh, mm, ss, zone = m.groups()
    tz = ZoneInfo("UTC" if sep == "-" else (zone or default_tz))
    at = dt.datetime.strptime(day, "%Y%m%d").replace(
        hour=int(hh), minute=int(mm), second=int(ss or 0), tzinfo=tz
    )
    return int(at.timestamp()) * NS


class MarketData(TwsCore):
    # ------------------------------------------------------------------ books

    def set_bids(self, market: str, outcome: Outcome, levels: Sequence[tuple[Price, Qty]]) -> None:
        """BookSink: replace the makers' bids for ``outcome`` (floored to the $0.01 grid)."""
        m = self.markets[market]
        if market in self.settled:
            return  # a settled market has no book any more
        self._expire_day_orders()
        ladder: dict[int, int] = {}
        for price, qty in levels:
            p = price - price % CENT
            n = qty // QTY_SCALE
            if n <= 0:
                continue
            if not MIN_PRICE <= p <= MAX_PRICE:
                self.dropped_levels += 1
                continue
            ladder[p] = ladder.get(p, 0) + n
        m.bids[outcome] = ladder
        self._uncross(m)
        if m.resting:
            self._match_resting(m)
        self._book_changed(m)

    def _uncross(self, m: Market) -> None:
        yes, no = m.bids[Outcome.YES], m.bids[Outcome.NO]
        while yes and no:
            py, pn = max(yes), max(no)
            if py + pn < PAIR_PRICE:
                break
            n = min(yes[py], no[pn])
            self.maker_pairs += n
            for book, p in ((yes, py), (no, pn)):
                book[p] -= n
                if not book[p]:
                    del book[p]

    def _book_changed(self, m: Market) -> None:
        for c in (m.yes, m.no):
            self._record_quote(c.con_id)
            self._publish(c.con_id)
        self._push_pnl()

    def _publish(self, con_id: int, *, force: bool = False) -> None:
        """Push what changed: a new price as tickPrice (size inside), a size-only change
        as tickSize 0/3, as TWS does (ib_async keeps the price and updates the size)."""
        subs = self._subs.get(con_id)
        if not subs or self.ticks_paused or self.muted:
            return
        bid, ask = self.top(con_id)
        old = self._shown.get(con_id)
        msgs: list[list[Field]] = []
        for i, now, tick, size_tick in (
            (0, bid, TICK_BID, TICK_BID_SIZE),
            (1, ask, TICK_ASK, TICK_ASK_SIZE),
        ):
            was = old[i] if old is not None else None
            if force or was is None or was[0] != now[0]:
                msgs.append(w.tick_price(0, tick, *now))
            elif was[1] != now[1]:
                msgs.append(w.tick_size(0, size_tick, now[1]))
        if not msgs:
            return
        self._shown[con_id] = (bid, ask)
        for s, req_id in list(subs):
            for msg in msgs:
                msg[2] = req_id
            s.send(*msgs)

    # ------------------------------------------------------------------ history

    def _record_quote(self, con_id: int) -> None:
        bid, _, ask, _ = self._top_units(con_id)
        h = self.quote_history.get(con_id)
        if h is None:
            h = self.quote_history[con_id] = collections.deque(maxlen=self.history_limit)
        if h and h[-1][1:] == (bid, ask):
            return
        h.append((self.clock_ns(), bid, ask))

    def _record_trade(self, con_id: int, price: int, n: int) -> None:
        h = self.trade_history.get(con_id)
        if h is None:
            h = self.trade_history[con_id] = collections.deque(maxlen=self.history_limit)
        h.append((self.clock_ns(), price, n))

    def _bars(
        self, c: TwsContract, what: str, start_ns: int, end_ns: int, bar_s: int
    ) -> list[tuple[int, Bar]]:
        """Bars over [start, end) from the recorded history. BID_ASK follows IB's
        definition (open = time-average bid, high = max ask, low = min bid, close =
        time-average ask); MIDPOINT and BID_ASK carry volume/WAP/count −1; empty bars
        are left out, as TWS does."""
        step = bar_s * NS
        first = start_ns - start_ns % step  # bars on UTC epoch multiples
        out: list[tuple[int, Bar]] = []
        if what == "TRADES":
            per: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)
            for ts, px, n in self.trade_history.get(c.con_id, ()):
                if start_ns <= ts < end_ns:
                    per[first + (ts - first) // step * step].append((px, n))
            for t0 in sorted(per):
                rows = per[t0]
                vol = sum(n for _, n in rows)
                wap = sum(px * n for px, n in rows) // vol
                pxs = [px for px, _ in rows]
                o, h, lo, cl = (w.fmt_price(p) for p in (pxs[0], max(pxs), min(pxs), pxs[-1]))
                out.append((t0, Bar("", o, h, lo, cl, str(vol), w.fmt_price(wap), len(rows))))
            return out
        quotes = list(self.quote_history.get(c.con_id, ()))
        if not quotes:
            return out
        times = [q[0] for q in quotes]
        t0 = max(first, times[0] - (times[0] - first) % step)
        while t0 < end_ns:
            t1 = min(t0 + step, end_ns)
            segs: list[tuple[int, int, int]] = []  # (duration, bid, ask) inside the bar
            for k in range(
                max(bisect.bisect_right(times, t0) - 1, 0), bisect.bisect_left(times, t1)
            ):
                _, bid, ask = quotes[k]
                nxt = times[k + 1] if k + 1 < len(times) else end_ns
                d = min(nxt, t1) - max(times[k], t0)
                if d > 0 and bid >= 0 and ask >= 0:
                    segs.append((d, bid, ask))
            if segs:
                if what == "MIDPOINT":
                    mids = [(bid + ask) // 2 for _, bid, ask in segs]
                    prices = (mids[0], max(mids), min(mids), mids[-1])
                else:
                    total = sum(d for d, _, _ in segs)
                    avg_bid = sum(d * bid for d, bid, _ in segs) // total
                    avg_ask = sum(d * ask for d, _, ask in segs) // total
                    high = max(ask for _, _, ask in segs)
                    low = min(bid for _, bid, _ in segs)
                    prices = (avg_bid, high, low, avg_ask)
                o, h, lo, cl = (w.fmt_price(p) for p in prices)
                out.append((t0, Bar("", o, h, lo, cl, "-1", "-1", -1)))
                if len(out) > MAX_BARS:
                    raise OverflowError
            t0 += step
        return out

    @staticmethod
    def _fmt_bar_time(t_ns: int, c: TwsContract, fmt: str, daily: bool) -> str:
        tz = ZoneInfo(c.time_zone_id or "UTC")
        at = dt.datetime.fromtimestamp(t_ns / NS, tz)
        if daily:
            return at.strftime("%Y%m%d")
        if fmt == "2":
            return str(t_ns // NS)
        return f"{at:%Y%m%d %H:%M:%S} {c.time_zone_id or 'UTC'}"

    def _req_historical_data(self, s: Session, f: list[str]) -> None:
        """reqHistoricalData (20): bars from the recorded top of book / trades."""
        req_id = int(f[1])
        c = self._find_one(s, req_id, f[2:14])
        if c is None:
            return
        end_s, bar_size, duration, what, fmt = f[15], f[16], f[17], f[19].upper(), f[20]
        keep = f[21] if len(f) > 21 else "0"
        if keep not in ("", "0"):
            s.error(req_id, 162, HMDS + "keepUpToDate is not supported by the local TWS")
            return
        if what not in ("TRADES", "MIDPOINT", "BID_ASK"):
            s.error(req_id, 162, HMDS + f"whatToShow {what} is not available for this contract")
            return
        try:
            n_s, unit = duration.split()
            span_s = int(n_s) * _UNIT_S[unit.upper()]
            n_b, b_unit = bar_size.split()
            bar_s = int(n_b) * (86_400 if b_unit.startswith("day") else _BAR_S[b_unit])
            end_ns = _parse_when(end_s, self.time_zone) if end_s else self.clock_ns()
        except (ValueError, KeyError):
            cause = f"bad bar size {bar_size!r} or duration {duration!r}"
            text = f"Error validating request.-'bH' : cause - {cause}"
            s.error(req_id, 321, text)
            return
        start_ns = end_ns - span_s * NS
        try:
            bars = self._bars(c, what, start_ns, end_ns, bar_s)
        except OverflowError:
            s.error(req_id, 162, HMDS + "Time length exceed max.")
            return
        if not bars:
            s.error(req_id, 162, HMDS + "HMDS query returned no data")
            return
        daily = bar_s >= 86_400
        dated = [
            Bar(self._fmt_bar_time(t, c, fmt, daily), b.open, b.high, b.low, b.close, b.volume,
                b.wap, b.count)
            for t, b in bars
        ]  # fmt: skip
        start = self._fmt_bar_time(start_ns, c, "1", False)
        end = self._fmt_bar_time(end_ns, c, "1", False)
        s.send(w.historical_data(req_id, start, end, dated))

    def _req_head_timestamp(self, s: Session, f: list[str]) -> None:
        """reqHeadTimeStamp (87) → headTimestamp (88): the earliest recorded point."""
        req_id = int(f[1])
        c = self._find_one(s, req_id, f[2:14])
        if c is None:
            return
        what, fmt = f[16].upper(), f[17]
        src = self.trade_history if what == "TRADES" else self.quote_history
        h = src.get(c.con_id)
        if not h:
            s.error(req_id, 162, HMDS + "HMDS query returned no data")
            return
        ts = h[0][0]
        if fmt == "2":
            text = str(ts // NS)
        else:
            text = dt.datetime.fromtimestamp(ts // NS, dt.UTC).strftime("%Y%m%d-%H:%M:%S")
        s.send([88, req_id, text])

    def _req_matching_symbols(self, s: Session, f: list[str]) -> None:
        """reqMatchingSymbols (81) → symbolSamples (79): ForecastEx underliers whose symbol
        starts with the pattern or whose description contains it (case-insensitive)."""
        req_id, pattern = int(f[1]), f[2].strip().upper()
        rows = []
        if pattern:
            for under_id in self._underliers.values():
                c = self.contracts[under_id]
                if c.symbol.upper().startswith(pattern) or pattern in c.long_name.upper():
                    rows.append(c)
        s.send(w.symbol_samples(s.sv, req_id, rows[:MAX_SYMBOL_SAMPLES]))

    # ------------------------------------------------------------------ market data

    def _req_mkt_data(self, s: Session, f: list[str]) -> None:
        req_id = int(f[2])
        c = self._find_one(s, req_id, f[3:15])
        if c is None:
            return
        con_id = c.con_id
        snapshot = f[-3] == "1"
        msgs: list[list[Field]] = [[58, 1, req_id, 1], [81, req_id, "0.01", "", 0]]
        if not self.ticks_paused:
            bid, ask = self.top(con_id)
            msgs += [w.tick_price(req_id, TICK_BID, *bid), w.tick_price(req_id, TICK_ASK, *ask)]
        if snapshot:
            msgs.append([57, 1, req_id])
        else:
            s.mkt[req_id] = con_id
            self._subs[con_id][(s, req_id)] = None
            if con_id not in self._shown:
                self._shown[con_id] = self.top(con_id)
        s.send(*msgs)

    def _cancel_mkt_data(self, s: Session, f: list[str]) -> None:
        req_id = int(f[2])
        con_id = s.mkt.pop(req_id, None)
        if con_id is not None:
            self._subs[con_id].pop((s, req_id), None)

    def _req_mkt_depth(self, s: Session, f: list[str]) -> None:
        text = "Deep market data is not supported for this combination of security type/exchange"
        s.error(int(f[2]), 10092, text)

    # ------------------------------------------------------------------ contracts

    def _req_contract_details(self, s: Session, f: list[str]) -> None:
        req_id = int(f[2])
        found = self._find(f[3:15])
        if not found:
            s.error(req_id, 200, NO_SECDEF)
            return
        s.send(*(w.contract_details(s.sv, req_id, c) for c in found), [52, 1, req_id])

    def _req_sec_def_opt_params(self, s: Session, f: list[str]) -> None:
        """Expirations and strikes of a product (undocumented for FORECASTX; a guess)."""
        req_id, symbol = int(f[1]), f[2]
        under = self._underliers.get(symbol, 0)
        opts = [c for c in self.contracts.values() if c.symbol == symbol and c.sec_type == "OPT"]
        if opts:
            exps = sorted({c.last_trade_date for c in opts})
            strikes = sorted({c.strike for c in opts}, key=float)
            s.send(
                [75, req_id, "FORECASTX", under, symbol, "1", len(exps), *exps, len(strikes),
                 *strikes]
            )  # fmt: skip
        s.send([76, req_id])
