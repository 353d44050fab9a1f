"""Snapshot → plot series and table rows, without widgets, so it is unit-testable.

Floats appear here only as display values (dollars for an axis, contracts for a bar);
nothing computed here flows back into a money path.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

import numpy as np

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.arbitrage.pipeline import SpreadSample
from arbkit.config.execution_loader import usd_text as _exact_usd
from arbkit.config.loader import SymbolSpec
from arbkit.execution.journal import ExecState
from arbkit.model import MONEY_SCALE, PRICE_SCALE, QTY_SCALE, Money, Outcome, Price, Qty, Venue
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


def usd_exact(money: int) -> str:
    """Money as exact dollars ("$0.025", "-$1.5", "$20"): for settings, where $0.01 and
    $0.015 must not both show as "$0.01"."""
    return ("-$" if money < 0 else "$") + _exact_usd(abs(money))


def price_text(price: int | None) -> str:
    return "—" if price is None else f"{price / PRICE_SCALE:.4f}".rstrip("0").rstrip(".")


def ts_datetime(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)


@dataclass(slots=True)
class CostHistory:
    """Bounded per-symbol history of the cost to arb both combinations: the gross cost of
    both best asks and the fees per contract at those asks (Kalshi's fee, ForecastEx's
    fee and both slippage buffers), so the chart can show the cost after fees against
    the detector's threshold.

    Kept by time (``history_s``) and by count (``max_points``), whichever is tighter, so
    a long-running dashboard has constant memory and constant figure-update size.
    """

    history_s: float = 300.0
    max_points: int = 2_000
    _data: dict[str, deque[tuple[int, int | None, int | None, int, int]]] = field(
        default_factory=dict
    )

    def add(
        self,
        books: dict[str, SpreadSample],
        ts_ns: int,
        fees: Mapping[str, tuple[Money, Money]] | None = None,
    ) -> None:
        """``fees``: per symbol, the fees per contract (Money) for (kalshi_yes, kalshi_no)."""
        horizon = ts_ns - int(self.history_s * 1e9)
        for sym, s in books.items():
            d = self._data.get(sym)
            if d is None:
                d = self._data[sym] = deque(maxlen=self.max_points)
            fy, fn = fees.get(sym, (0, 0)) if fees is not None else (0, 0)
            d.append((ts_ns, s.cost_kalshi_yes, s.cost_kalshi_no, fy, fn))
            while d and d[0][0] < horizon:
                d.popleft()

    def symbols(self) -> list[str]:
        return list(self._data)

    def __len__(self) -> int:
        return sum(len(d) for d in self._data.values())

    def latest_after_fees(self, symbol: str) -> int | None:
        """The cheaper combination's cost after fees now, in Money per contract (None when
        neither combination has both sides)."""
        d = self._data.get(symbol)
        if not d:
            return None
        _t, cy, cn, fy, fn = d[-1]
        costs = [c * _MONEY_PER_PRICE + f for c, f in ((cy, fy), (cn, fn)) if c is not None]
        return min(costs) if costs else None

    def closest_to_edge(self, n: int) -> list[str]:
        """The ``n`` symbols whose cheaper combination is nearest the $1 payout after
        fees (lowest cost first; symbols with no two-sided quote last, by name)."""
        big = 1 << 62
        ranked = sorted(self._data, key=lambda s: (self.latest_after_fees(s) or big, s))
        return ranked[: max(0, n)]

    def series(
        self,
        symbol: str,
        combo: str,
        *,
        max_points: int | None = None,
        after_fees: bool = False,
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(times as datetime64[ms] UTC, cost in dollars with NaN where a side was empty)
        for one symbol × combo, as numpy arrays (plotly takes them without a per-element
        pass); ``after_fees`` adds the fees per contract. ``max_points`` decimates by
        stride, always keeping the newest point."""
        idx = 1 + COMBOS.index(combo)
        rows: Sequence[tuple[int, int | None, int | None, int, int]] = list(
            self._data.get(symbol, ())
        )
        if max_points is not None and len(rows) > max_points > 0:
            step = -(-len(rows) // max_points)
            rows = rows[::-1][::step][::-1]
        ts = np.fromiter((r[0] // 1_000_000 for r in rows), dtype=np.int64, count=len(rows))
        nan = float("nan")
        cost = np.fromiter(
            (nan if r[idx] is None else r[idx] for r in rows), dtype=np.float64, count=len(rows)
        )
        out = cost / PRICE_SCALE
        if after_fees:
            fee = np.fromiter((r[idx + 2] for r in rows), dtype=np.float64, count=len(rows))
            out = out + fee / MONEY_SCALE
        return ts.astype("datetime64[ms]"), out


_MONEY_PER_PRICE = MONEY_SCALE // PRICE_SCALE


def fees_per_contract(
    sample: SpreadSample, spec: SymbolSpec, fees: FeeModel, buffers: Money
) -> tuple[Money, Money]:
    """Fees per contract of each combination at its best asks, as the detector's
    top-of-book test counts them: Kalshi's exact taker fee (unrounded), ForecastEx's
    per-contract fee and ``buffers`` (both legs' slippage buffers). The detector acts
    only where ``cost + these <= $1 - min edge``."""
    sched = fees.kalshi_schedule(spec.kalshi_series, ticker=spec.kalshi_ticker)
    fx = fees.forecastex_fee_per_contract
    out = []
    for kalshi_ask in (sample.kalshi_yes_ask, sample.kalshi_no_ask):
        k = sched.exact_fee_lower_bound(kalshi_ask, Qty(QTY_SCALE)) if kalshi_ask else 0
        out.append(Money(k + fx + buffers))
    return out[0], out[1]


def threshold_usd(min_edge: int) -> float:
    """Where the cost after fees must be at or below for the detector to act ($)."""
    return (MONEY_SCALE - min_edge) / MONEY_SCALE


@dataclass(slots=True)
class PnlHistory:
    """Realized PnL over the run (exact Money), a point whenever it changes, and the
    drawdown from the running peak."""

    max_points: int = 5_000
    _pts: deque[tuple[int, int]] = field(default_factory=deque)
    peak: int = 0
    max_drawdown: int = 0

    def add(self, ts_ns: int, pnl: Money) -> None:
        if self._pts and self._pts[-1][1] == pnl:
            return
        if not self._pts and pnl != 0:
            self._pts.append((ts_ns, 0))
        self._pts.append((ts_ns, pnl))
        while len(self._pts) > self.max_points:
            self._pts.popleft()
        self.peak = max(self.peak, pnl)
        self.max_drawdown = max(self.max_drawdown, self.peak - pnl)

    def __len__(self) -> int:
        return len(self._pts)

    def points(self, now_ns: int | None = None) -> list[tuple[int, int, int]]:
        """(ts_ns, cumulative PnL, drawdown) in Money, extended flat to ``now_ns``."""
        out = []
        peak = 0
        pts = list(self._pts) or [(now_ns or 0, 0)]
        if now_ns is not None and pts[-1][0] < now_ns:
            pts.append((now_ns, pts[-1][1]))
        for t, p in pts:
            peak = max(peak, p)
            out.append((t, p, peak - p))
        return out


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


def _clock(ts_ns: int) -> str:
    return "—" if not ts_ns else ts_datetime(ts_ns).strftime("%H:%M:%S.%f")[:-3]


def execution_rows(snap: MonitorSnapshot, limit: int = 12) -> list[dict[str, str]]:
    """Recent executions, newest first, with when each started and how long it took."""
    rows = []
    for e in reversed(snap.executions[-limit:]):
        took = (e.updated_ns - e.created_ns) / 1e6 if e.updated_ns >= e.created_ns else None
        rows.append(
            {
                "started (UTC)": _clock(e.created_ns),
                "took ms": "—" if took is None else f"{took:,.1f}",
                "id": e.execution_id,
                "symbol": e.symbol,
                "combo": e.combo,
                "state": e.state.value.upper() if e.state is ExecState.UNHEDGED else e.state.value,
                "qty": _qty_text(e.planned_qty),
                "expected": usd_text(e.expected_profit),
                "pnl": usd_text(e.realized_pnl),
                "hedge cost": usd_text(e.hedge_cost),
            }
        )
    return rows


def account_rows(snap: MonitorSnapshot) -> list[dict[str, str]]:
    """Per venue: cash balance, capital locked in positions until settlement (cost basis),
    what those positions would fetch now, and the contracts held."""
    rows = []
    for venue, name in ((Venue.KALSHI, "Kalshi"), (Venue.IBKR, "ForecastEx")):
        held = sum(q for (_s, v, _o), q in snap.positions.items() if v is venue and q > 0)
        bal = snap.balances.get(venue.value)
        rows.append(
            {
                "venue": name,
                "balance": "—" if bal is None else usd_text(bal),
                "capital locked": usd_text(snap.committed.get(venue.value, 0)),
                "mark to market": usd_text(snap.mark_to_market.get(venue.value, 0)),
                "contracts held": _qty_text(held),
            }
        )
    return rows


def position_rows(snap: MonitorSnapshot) -> list[dict[str, str]]:
    return [
        {
            "symbol": sym,
            "venue": "Kalshi" if v is Venue.KALSHI else "ForecastEx",
            "outcome": o.value.upper(),
            "contracts": _qty_text(q),
        }
        for (sym, v, o), q in sorted(
            snap.positions.items(), key=lambda kv: (kv[0][0], kv[0][1].value, kv[0][2].value)
        )
        if q
    ]


def ladder_rows(
    yes_asks: Iterable[tuple[Price, Qty]], no_asks: Iterable[tuple[Price, Qty]], levels: int = 5
) -> list[dict[str, str]]:
    """A bid/ask ladder in YES terms for one venue: YES asks above, YES bids below (a
    YES bid at p is a NO ask at $1 − p, which is how Kalshi's bids-only book reads), best
    prices next to the spread row."""
    asks = list(itertools.islice(yes_asks, levels))
    bids = [(Price(PRICE_SCALE - p), q) for p, q in itertools.islice(no_asks, levels)]
    rows = [
        {"bid size": "", "YES price": price_text(p), "ask size": _qty_text(q)}
        for p, q in reversed(asks)
    ]
    spread = price_text(asks[0][0] - bids[0][0]) if asks and bids else "—"
    rows.append({"bid size": "", "YES price": f"spread {spread}", "ask size": ""})
    rows += [
        {"bid size": _qty_text(q), "YES price": price_text(p), "ask size": ""} for p, q in bids
    ]
    return rows


def latency_hist_labels(edges_ms: Sequence[float]) -> list[str]:
    """Bucket labels for ``MonitorSnapshot.latency_hist`` (len(edges) + 1 buckets)."""
    if not edges_ms:
        return []
    e = [f"{x:g}" for x in edges_ms]
    return [f"<{e[0]}"] + [f"{a}–{b}" for a, b in itertools.pairwise(e)] + [f"≥{e[-1]}"]


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
            "p50 ms": f"{v.p50_us / 1000:,.3f}",
            "p99 ms": f"{v.p99_us / 1000:,.3f}",
            "max ms": f"{v.max_us / 1000:,.3f}",
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
