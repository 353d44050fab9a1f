"""Snapshot → plot series and table rows, without widgets, so it is unit-testable.

Floats appear here only as display values (dollars for an axis, contracts for a bar);
nothing computed here flows back into a money path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

import numpy as np

from arbkit.arbitrage.pipeline import SpreadSample
from arbkit.model import MONEY_SCALE, PRICE_SCALE, QTY_SCALE, Outcome, Price, Qty, Venue
from arbkit.monitor.arbitrage_monitor import MonitorSnapshot

COMBOS = ("kalshi_yes", "kalshi_no")
COMBO_LABELS = {
    "kalshi_yes": "Kalshi YES + ForecastEx partner",
    "kalshi_no": "Kalshi NO + ForecastEx partner",
}
BOOK_SIDES: tuple[tuple[Venue, Outcome], ...] = (
    (Venue.KALSHI, Outcome.YES),
    (Venue.KALSHI, Outcome.NO),
    (Venue.IBKR, Outcome.YES),
    (Venue.IBKR, Outcome.NO),
)


def dollars(price: int | None) -> float | None:
    """A Price ($0.0001 units) as dollars for display."""
    return None if price is None else price / PRICE_SCALE


def contracts(qty: int | None) -> float | None:
    return None if qty is None else qty / QTY_SCALE


def usd_text(money: int) -> str:
    sign = "-" if money < 0 else ""
    return f"{sign}${abs(money) / MONEY_SCALE:,.2f}"


def price_text(price: int | None) -> str:
    return "—" if price is None else f"{price / PRICE_SCALE:.4f}".rstrip("0").rstrip(".")


def ts_datetime(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)


@dataclass(slots=True)
class CostHistory:
    """Bounded per-symbol history of the gross cost to arb both combinations.

    Kept by time (``history_s``) and by count (``max_points``), whichever is tighter, so
    a long-running dashboard has constant memory and constant figure-update size.
    """

    history_s: float = 300.0
    max_points: int = 2_000
    _data: dict[str, deque[tuple[int, int | None, int | None]]] = field(default_factory=dict)

    def add(self, books: dict[str, SpreadSample], ts_ns: int) -> None:
        horizon = ts_ns - int(self.history_s * 1e9)
        for sym, s in books.items():
            d = self._data.get(sym)
            if d is None:
                d = self._data[sym] = deque(maxlen=self.max_points)
            d.append((ts_ns, s.cost_kalshi_yes, s.cost_kalshi_no))
            while d and d[0][0] < horizon:
                d.popleft()

    def symbols(self) -> list[str]:
        return list(self._data)

    def __len__(self) -> int:
        return sum(len(d) for d in self._data.values())

    def series(
        self, symbol: str, combo: str, *, max_points: int | None = None
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(times as datetime64[ms] UTC, cost in dollars with NaN where a side was empty)
        for one symbol × combo, as numpy arrays (plotly takes them without a per-element
        pass). ``max_points`` decimates by stride, always keeping the newest point."""
        idx = 1 + COMBOS.index(combo)
        rows: Sequence[tuple[int, int | None, int | None]] = list(self._data.get(symbol, ()))
        if max_points is not None and len(rows) > max_points > 0:
            step = -(-len(rows) // max_points)
            rows = rows[::-1][::step][::-1]
        ts = np.fromiter((r[0] // 1_000_000 for r in rows), dtype=np.int64, count=len(rows))
        nan = float("nan")
        cost = np.fromiter(
            (nan if r[idx] is None else r[idx] for r in rows), dtype=np.float64, count=len(rows)
        )
        return ts.astype("datetime64[ms]"), cost / PRICE_SCALE


def depth_bars(
    ladders: Mapping[tuple[Venue, Outcome], Iterable[tuple[Price, Qty]]],
    max_levels: int = 10,
    *,
    cumulative: bool = False,
) -> dict[str, tuple[list[float], list[float]]]:
    """(ask prices in dollars, contracts) per "Venue OUTCOME" for the depth chart; with
    ``cumulative`` the contracts available at or below each price (a depth curve)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for venue, outcome in BOOK_SIDES:
        xs: list[float] = []
        ys: list[float] = []
        total = 0
        for i, (p, q) in enumerate(ladders.get((venue, outcome), ())):
            if i >= max_levels:
                break
            total = total + q if cumulative else q
            xs.append(p / PRICE_SCALE)
            ys.append(total / QTY_SCALE)
        out[side_label(venue, outcome)] = (xs, ys)
    return out


def side_label(venue: Venue, outcome: Outcome) -> str:
    name = "Kalshi" if venue is Venue.KALSHI else "ForecastEx"
    return f"{name} {outcome.value.upper()}"


def best_ask_rows(sample: SpreadSample | None) -> list[dict[str, str]]:
    """Best ask and its size on each venue × outcome, plus both costs to arb."""
    if sample is None:
        return []
    s = sample
    pairs = (
        ("Kalshi YES", s.kalshi_yes_ask, s.kalshi_yes_size),
        ("Kalshi NO", s.kalshi_no_ask, s.kalshi_no_size),
        ("ForecastEx YES", s.ibkr_yes_ask, s.ibkr_yes_size),
        ("ForecastEx NO", s.ibkr_no_ask, s.ibkr_no_size),
    )
    rows = [{"side": name, "best ask": price_text(p), "size": _qty_text(q)} for name, p, q in pairs]
    for combo, cost in (("kalshi_yes", s.cost_kalshi_yes), ("kalshi_no", s.cost_kalshi_no)):
        rows.append({"side": "cost: " + COMBO_LABELS[combo], "best ask": price_text(cost)})
    return rows


def _qty_text(q: int | None) -> str:
    return "—" if q is None else f"{q / QTY_SCALE:g}"


def opportunity_rows(snap: MonitorSnapshot, limit: int = 12) -> list[dict[str, str]]:
    rows = []
    for o in reversed(snap.opportunities[-limit:]):
        rows.append(
            {
                "time": ts_datetime(o.ts_ns).strftime("%H:%M:%S.%f")[:-3],
                "symbol": o.symbol,
                "combo": o.combo,
                "contracts": str(o.contracts),
                "Kalshi px": price_text(o.kalshi_price),
                "FX px": price_text(o.ibkr_price),
                "profit": usd_text(o.expected_profit),
                "edge/ct": usd_text(o.net_edge_per_contract),
                "decision": o.decision + (f" ({o.reason})" if o.reason else ""),
            }
        )
    return rows


def execution_rows(snap: MonitorSnapshot, limit: int = 8) -> list[dict[str, str]]:
    rows = []
    for e in reversed(snap.executions[-limit:]):
        rows.append(
            {
                "id": e.execution_id,
                "symbol": e.symbol,
                "combo": e.combo,
                "state": e.state.value,
                "qty": _qty_text(e.planned_qty),
                "expected": usd_text(e.expected_profit),
                "pnl": usd_text(e.realized_pnl),
                "hedge cost": usd_text(e.hedge_cost),
            }
        )
    return rows


def venue_rows(snap: MonitorSnapshot) -> list[dict[str, str]]:
    return [
        {
            "venue": v.venue,
            "connected": "yes" if v.connected else "NO",
            "ticks": f"{v.ticks:,}",
            "bad frames": str(v.bad_frames),
            "resyncs": str(v.resyncs),
            "reconnects": str(v.reconnects),
            "last msg ms": "—" if v.last_message_age_ms is None else str(v.last_message_age_ms),
            "books valid": f"{v.books_valid}/{v.books_total}",
        }
        for v in snap.venues.values()
    ]


def latency_rows(snap: MonitorSnapshot) -> list[dict[str, str]]:
    return [
        {
            "stage": k,
            "count": f"{v.count:,}",
            "p50 µs": f"{v.p50_us:,.0f}",
            "p99 µs": f"{v.p99_us:,.0f}",
            "max µs": f"{v.max_us:,.0f}",
        }
        for k, v in snap.latency.items()
        if v.count
    ]


def kill_state_text(snap: MonitorSnapshot) -> str:
    """The trading state and why it is set (halted = the kill switch), plus any symbol
    blocked as a false opportunity."""
    if snap.kill_switch:
        text = f"KILL SWITCH ON: {snap.kill_reason or 'no reason given'}"
    elif snap.trading_state == "reducing":
        text = f"REDUCING (no new executions): {snap.state_reason or 'no reason given'}"
    else:
        text = "kill switch off"
    if snap.blocked_symbols:
        text += " · blocked: " + "; ".join(f"{s}: {w}" for s, w in snap.blocked_symbols.items())
    return text


def status_text(snap: MonitorSnapshot) -> str:
    c = snap.counters
    return (
        f"mode {snap.mode.value}{' · PAUSED' if snap.paused else ''} · ticks {c['ticks']:,} · "
        f"opportunities {c['opportunities']} · executed {c['executed']} "
        f"(done {c['executions_done']}, hedged {c['executions_hedged']}, "
        f"unhedged {c['executions_unhedged']}) · PnL {usd_text(snap.realized_pnl)} · "
        f"hedge cost {usd_text(snap.hedge_cost)} · active episodes {snap.active_episodes}"
    )


def html_table(rows: Sequence[dict[str, str]], *, empty: str = "none yet", cls: str = "") -> str:
    """A small HTML table (escaped) for an ipywidgets.HTML."""
    if not rows:
        return f'<div class="{escape(cls)}"><i>{escape(empty)}</i></div>'
    keys = list(rows[0])
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows
    )
    return (
        f'<table class="{escape(cls)}" style="font-size:12px;border-collapse:collapse">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )
