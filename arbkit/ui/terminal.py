"""Live terminal view for ``arbkit demo`` / ``arbkit monitor`` (rich)."""

from __future__ import annotations

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from arbkit.model import PRICE_SCALE
from arbkit.monitor.arbitrage_monitor import MonitorSnapshot


def _p(v: int | None) -> str:
    return "—" if v is None else f"{v / PRICE_SCALE:.4f}".rstrip("0").rstrip(".")


def _usd(m: int) -> str:
    return f"${m / 1e6:,.2f}"


def render(s: MonitorSnapshot) -> Group:
    head = Text.assemble(
        ("arbkit ", "bold"),
        (f"mode={s.mode.value} ", "cyan"),
        ("PAUSED " if s.paused else "", "yellow"),
        (
            f"KILL SWITCH: {s.kill_reason} "
            if s.kill_switch
            else f"REDUCING: {s.state_reason} "
            if s.trading_state == "reducing"
            else "kill switch off ",
            "bold red" if s.trading_state != "active" else "green",
        ),
        f"| opportunities {s.counters['opportunities']} executed {s.counters['executed']} "
        f"hedged {s.counters['executions_hedged']} unhedged {s.counters['executions_unhedged']} "
        f"| PnL {_usd(s.realized_pnl)} hedge cost {_usd(s.hedge_cost)}",
    )
    books = Table(title="Best asks (venue's own YES/NO) and cost to arb", expand=True)
    for col in (
        "symbol",
        "K yes",
        "K no",
        "FX yes",
        "FX no",
        "K yes + FX partner",
        "K no + FX partner",
    ):
        books.add_column(col, justify="right" if col != "symbol" else "left")
    for sym, b in s.books.items():

        def cost(v: int | None) -> Text:
            if v is None:
                return Text("—")
            return Text(_p(v), style="bold green" if v < PRICE_SCALE else "")

        books.add_row(
            sym,
            _p(b.kalshi_yes_ask),
            _p(b.kalshi_no_ask),
            _p(b.ibkr_yes_ask),
            _p(b.ibkr_no_ask),
            cost(b.cost_kalshi_yes),
            cost(b.cost_kalshi_no),
        )
    opps = Table(title="Recent opportunities", expand=True)
    for col in ("symbol", "combo", "n", "K px", "FX px", "profit", "edge/ct", "ann %", "decision"):
        opps.add_column(col)
    for o in s.opportunities[-8:]:
        opps.add_row(
            o.symbol,
            o.combo,
            str(o.contracts),
            _p(o.kalshi_price),
            _p(o.ibkr_price),
            _usd(o.expected_profit),
            _usd(o.net_edge_per_contract),
            f"{o.annualized_return_bps / 100:,.0f}",
            o.decision + (f" ({o.reason})" if o.reason else ""),
        )
    execs = Table(title="Recent executions", expand=True)
    for col in ("id", "symbol", "state", "qty", "pnl", "hedge cost"):
        execs.add_column(col)
    for e in s.executions[-6:]:
        execs.add_row(
            e.execution_id,
            e.symbol,
            e.state.value,
            f"{e.planned_qty / 100:g}",
            _usd(e.realized_pnl),
            _usd(e.hedge_cost),
        )
    health = Table(title="Venues", expand=True)
    for col in (
        "venue",
        "connected",
        "ticks",
        "bad frames",
        "resyncs",
        "reconnects",
        "last msg ms",
        "books valid",
    ):
        health.add_column(col)
    for v in s.venues.values():
        health.add_row(
            v.venue,
            "yes" if v.connected else "NO",
            f"{v.ticks:,}",
            str(v.bad_frames),
            str(v.resyncs),
            str(v.reconnects),
            "—" if v.last_message_age_ms is None else str(v.last_message_age_ms),
            f"{v.books_valid}/{v.books_total}",
        )
    lat = s.latency
    lat_line = "  ".join(
        f"{k}: p50 {v.p50_us:,.0f}µs p99 {v.p99_us:,.0f}µs" for k, v in lat.items() if v.count
    )
    return Group(Panel(head), books, opps, execs, health, Text(lat_line, style="dim"))


def positions_line(s: MonitorSnapshot) -> str:
    parts = [
        f"{sym} {venue.value} {outcome.value} {qty / 100:g}"
        for (sym, venue, outcome), qty in sorted(s.positions.items(), key=lambda kv: str(kv[0]))
        if qty
    ]
    return ", ".join(parts) or "flat"
