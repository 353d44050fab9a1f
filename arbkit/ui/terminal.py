"""Live terminal view for ``arbkit demo`` / ``arbkit monitor`` (rich).

``render(snapshot)`` returns a renderable that sizes itself to the console it is drawn
on: at 80×24 it picks compact columns and fits every section by measuring it, so no
cell is cut to "…"; a wider or taller terminal shows more columns and rows. Text that
cannot be shortened (a skip reason, a log message) wraps instead of being cut.

Prices show at the venue's precision: ForecastEx in cents, Kalshi at the market's tick
(cents, or sub-penny where its price grid has them), and more digits only where the
price really has them. Money is formatted from the integers, never through floats.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.layout import Layout
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from arbkit.arbitrage.pipeline import SpreadSample
from arbkit.execution.journal import ExecutionRecord
from arbkit.execution.ticks import KALSHI_STRUCTURES
from arbkit.model import PRICE_SCALE, money_str, price_str
from arbkit.monitor.arbitrage_monitor import MonitorSnapshot, OpportunityView
from arbkit.monitor.metrics import LatencySummary

# ------------------------------------------------------------------ formatting ---
_STEP_DECIMALS = {100: 2, 10: 3, 1: 4}


def _needed_decimals(p: int) -> int:
    return 2 if p % 100 == 0 else 3 if p % 10 == 0 else 4


def kalshi_step(structure: str, price: int) -> int:
    """The tick of a Kalshi price grid at ``price`` ($0.0001 units)."""
    ranges = KALSHI_STRUCTURES.get(structure, KALSHI_STRUCTURES["linear_cent"])
    for start, end, step in ranges:
        if start <= price < end:
            return step
    return ranges[-1][2]


def price_text(p: int | None, step: int = 100) -> str:
    """A price with the decimals of its venue's tick ``step``, more only if it has them."""
    if p is None:
        return "—"
    d = max(_STEP_DECIMALS.get(step, 4), _needed_decimals(p))
    s = price_str(p)
    return s[: len(s) - (4 - d)]


def usd(m: int) -> str:
    """Dollars with thousands separators: cents when exact, else 4 decimals (truncated)."""
    s = money_str(m, 2 if m % 10_000 == 0 else 4)
    sign, s = ("-", s[1:]) if s.startswith("-") else ("", s)
    whole, frac = s.split(".")
    return f"{sign}${int(whole):,}.{frac}"


def ms(us: float) -> str:
    """Latency in milliseconds with two significant decimals where it matters."""
    v = us / 1000
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def utc_time(ns: int) -> str:
    """UTC HH:MM:SS of a nanosecond timestamp (— when unset)."""
    if ns <= 0:
        return "—"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%H:%M:%S")


def qty_text(q: int) -> str:
    return f"{q / 100:g}"


_COMBO_SHORT = {
    "kalshi_yes+ibkr_no": "KY+FN",
    "kalshi_yes+ibkr_yes": "KY+FY",
    "kalshi_no+ibkr_yes": "KN+FY",
    "kalshi_no+ibkr_no": "KN+FN",
}

_LAT_SHORT = {
    "receive_to_tick": "rx→tick",
    "tick_to_decision": "tick→dec",
    "decision_to_submit": "dec→sub",
    "submit_to_ack": "sub→ack",
    "leg1_fill_to_leg2_submit": "L1 fill→L2",
    "leg2_submit_to_fill": "L2→fill",
}


# -------------------------------------------------------------------- log pane ---
@dataclass(frozen=True, slots=True)
class LogLine:
    ts: float  # seconds since the epoch (logging's record.created)
    level: int
    text: str


class LogPane(logging.Handler):
    """Keeps the last ``capacity`` log records for the view to draw: log lines printed
    straight to the terminal under a live view break its redraw."""

    def __init__(self, capacity: int = 200, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.lines: deque[LogLine] = deque(maxlen=capacity)
        self.total = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                msg += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            self.add(f"{record.levelname} {record.name}: {msg}", record.levelno, record.created)
        except Exception:  # a log call must never take the view down
            self.handleError(record)

    def add(self, text: str, level: int = logging.INFO, ts: float | None = None) -> None:
        """A note of our own (a market event) next to the log records."""
        self.lines.append(LogLine(time.time() if ts is None else ts, level, text))
        self.total += 1


# --------------------------------------------------------------------- sections ---
def _table(*columns: str, right: Iterable[str] = ()) -> Table:
    """A borderless table whose first header names the section (saves a title row)."""
    t = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold reverse")
    r = set(right)
    for c in columns:
        t.add_column(c, justify="right" if c in r else "left", no_wrap=True)
    return t


def status_text(s: MonitorSnapshot, title: str = "arbkit") -> Text:
    """The view's two header lines: mode, trading state, counters, PnL (also printed
    once the view has closed, as the last word on the terminal)."""
    c = s.counters
    if s.kill_switch:
        state: tuple[str, str] = (f"KILL SWITCH ON: {s.kill_reason}", "bold white on red")
    elif s.trading_state == "reducing":
        state = (f"REDUCING: {s.state_reason}", "bold red")
    elif s.trading_state != "active":
        state = (f"{s.trading_state.upper()}: {s.state_reason}", "bold red")
    else:
        state = ("trading active", "green")
    parts: list[str | tuple[str, str]] = [
        (title, "bold"),
        "  ",
        (s.mode.value, "cyan"),
        "  ",
    ]
    if s.paused:
        parts += [("PAUSED", "bold black on yellow"), "  "]
    parts += [state, f"  exposure {usd(s.exposure)}  {utc_time(s.ts_ns)} UTC\n"]
    parts += [
        f"opps {c['opportunities']:,} exec {c['executed']:,} hedged "
        f"{c['executions_hedged']} unhedged {c['executions_unhedged']} · ",
        ("PnL ", "bold"),
        usd(s.realized_pnl),
        f" · hedge cost {usd(s.hedge_cost)}",
    ]
    return Text.assemble(*parts)


def _books(s: MonitorSnapshot, rows: int, width: int, grids: Mapping[str, str]) -> Table:
    """Best asks per symbol; when fewer rows fit than symbols, the cheapest arbs first."""
    wide = width >= 110
    items = list(s.books.items())
    shown = items
    if len(items) > rows:

        def best(b: SpreadSample) -> int:
            costs = [c for c in (b.cost_kalshi_yes, b.cost_kalshi_no) if c is not None]
            return min(costs, default=2 * PRICE_SCALE)

        keep = {sym for sym, b in sorted(items, key=lambda kv: best(kv[1]))[:rows]}
        shown = [(sym, b) for sym, b in items if sym in keep]
    name = "Books" if len(shown) == len(items) else f"Books {len(shown)}/{len(items)}"
    cols = ["K yes", "K no", "FX yes", "FX no", "KY+FX", "KN+FX"]
    if wide:
        cols = ["K yes", "sz", "K no", "sz ", "FX yes", "sz  ", "FX no", "sz   ", "KY+FX", "KN+FX"]
    t = _table(name, *cols, right=cols)
    for sym, b in shown:
        g = grids.get(sym, "linear_cent")

        def kp(p: int | None, g: str = g) -> str:
            return price_text(p, kalshi_step(g, p) if p is not None else 100)

        def cost(v: int | None, k: int | None, g: str = g) -> Text:
            if v is None:
                return Text("—")
            step = kalshi_step(g, k) if k is not None else 100
            return Text(price_text(v, step), style="bold green" if v < PRICE_SCALE else "")

        def sz(q: int | None) -> str:
            return "" if q is None else qty_text(q)

        ky = cost(b.cost_kalshi_yes, b.kalshi_yes_ask)
        kn = cost(b.cost_kalshi_no, b.kalshi_no_ask)
        if wide:
            t.add_row(
                sym,
                kp(b.kalshi_yes_ask),
                sz(b.kalshi_yes_size),
                kp(b.kalshi_no_ask),
                sz(b.kalshi_no_size),
                price_text(b.ibkr_yes_ask),
                sz(b.ibkr_yes_size),
                price_text(b.ibkr_no_ask),
                sz(b.ibkr_no_size),
                ky,
                kn,
            )
        else:
            t.add_row(
                sym,
                kp(b.kalshi_yes_ask),
                kp(b.kalshi_no_ask),
                price_text(b.ibkr_yes_ask),
                price_text(b.ibkr_no_ask),
                ky,
                kn,
            )
    return t


def _opps(opps: Sequence[OpportunityView], width: int, grids: Mapping[str, str]) -> Table:
    wide = width >= 110
    cols = ["Opportunity", "UTC", "combo", "n", "K px", "FX px", "profit"]
    if wide:
        cols += ["edge/ct", "ann %"]
    t = _table(*cols, right=("n", "K px", "FX px", "profit", "edge/ct", "ann %"))
    t.add_column("decision", overflow="fold", no_wrap=False, ratio=1)
    if not opps:
        t.add_row("none yet", *[""] * (len(cols) - 1), "")
    for o in opps:
        g = grids.get(o.symbol, "linear_cent")
        decision = (
            o.decision
            if wide
            else {"executed": "exec", "skipped": "skip"}.get(o.decision, o.decision)
        )
        row = [
            o.symbol,
            utc_time(o.ts_ns),
            o.combo if wide else _COMBO_SHORT.get(o.combo, o.combo),
            str(o.contracts),
            price_text(o.kalshi_price, kalshi_step(g, o.kalshi_price)),
            price_text(o.ibkr_price),
            usd(o.expected_profit),
        ]
        if wide:
            row += [usd(o.net_edge_per_contract), f"{o.annualized_return_bps / 100:,.0f}"]
        style = "green" if o.decision == "executed" else ""
        t.add_row(*row, Text(decision + (f": {o.reason}" if o.reason else ""), style=style))
    return t


_STATE_STYLE = {"done": "green", "hedged": "yellow", "unhedged": "bold red", "failed": "red"}


def _execs(execs: Sequence[ExecutionRecord], width: int) -> Table:
    wide = width >= 110
    cols = ["Execution", "UTC", "state", "qty", "pnl", "hedge", "ms"]
    if wide:
        cols += ["id"]
    t = _table(*cols, right=("qty", "pnl", "hedge", "ms"))
    t.add_column("note", overflow="fold", no_wrap=False, ratio=1)
    if not execs:
        t.add_row("none yet", *[""] * len(cols))
    for e in execs:
        took = (e.updated_ns - e.created_ns) / 1000 if e.updated_ns >= e.created_ns else 0.0
        row: list[str | Text] = [
            e.symbol,
            utc_time(e.created_ns),
            Text(e.state.value, style=_STATE_STYLE.get(e.state.value, "")),
            qty_text(e.planned_qty),
            usd(e.realized_pnl),
            usd(e.hedge_cost),
            ms(took),
        ]
        if wide:
            row.append(e.execution_id)
        t.add_row(*row, e.error)
    return t


def _venues_line(s: MonitorSnapshot) -> Text:
    """Narrow screens: one line for both venues; counters that are zero are left out."""
    out = Text.assemble(("Venues", "bold reverse"))
    for v in s.venues.values():
        out.append(f" {v.venue} ")
        out.append("up" if v.connected else "DOWN", style="green" if v.connected else "bold red")
        out.append(f" {v.ticks:,} ticks")
        for n, what in ((v.bad_frames, "bad"), (v.resyncs, "resync"), (v.reconnects, "reconn")):
            if n:
                out.append(f" {n} {what}", style="yellow")
        if v.last_message_age_ms is not None:
            out.append(f" {v.last_message_age_ms:,}ms")
        out.append(f" books {v.books_valid}/{v.books_total} ·")
    if not s.venues:
        out.append(" not connected", style="bold red")
    else:
        out.right_crop(2)
    return out


def _venues(s: MonitorSnapshot, width: int) -> Table | Text:
    if width < 110:
        return _venues_line(s)
    cols = ["Venue", "up", "ticks", "bad", "resync", "reconn", "last ms", "books"]
    t = _table(*cols, right=cols[2:])
    for v in s.venues.values():
        t.add_row(
            v.venue,
            Text("yes", style="green") if v.connected else Text("DOWN", style="bold red"),
            f"{v.ticks:,}",
            str(v.bad_frames),
            str(v.resyncs),
            str(v.reconnects),
            "—" if v.last_message_age_ms is None else f"{v.last_message_age_ms:,}",
            f"{v.books_valid}/{v.books_total}",
        )
    if not s.venues:
        t.add_row("not connected", *[""] * (len(cols) - 1))
    return t


def latency_text(lat: Mapping[str, LatencySummary]) -> Text:
    """One line (wrapping on narrow screens) of per-stage p50/p99 in milliseconds."""
    out = Text.assemble(("Latency", "bold reverse"), " ms p50/p99")
    shown = [(k, v) for k, v in lat.items() if v.count]
    if not shown:
        out.append("  no samples yet", style="dim")
    for k, v in shown:
        out.append(f"  {_LAT_SHORT.get(k, k)} {ms(v.p50_us)}/{ms(v.p99_us)}")
    return out


def _log_pane(
    lines: Sequence[LogLine], total: int, console: Console, width: int, rows: int
) -> Group:
    """The newest log lines that fit in ``rows`` (a long message wraps, oldest drop)."""
    title = Text.assemble(
        ("Log", "bold reverse"), (f" {total} lines" if total else " (quiet)", "dim")
    )
    body: list[Text] = []
    used = 1
    if lines:
        for line in reversed(lines):
            style = (
                "red"
                if line.level >= logging.ERROR
                else "yellow"
                if line.level >= logging.WARNING
                else ""
            )
            stamp = dt.datetime.fromtimestamp(line.ts, dt.UTC).strftime("%H:%M:%S")
            t = Text.assemble((stamp + " ", "dim"), (line.text, style))
            h = len(t.wrap(console, width))
            if used + h > rows:
                break
            body.append(t)
            used += h
    return Group(title, *reversed(body))


def _keys(keys: bool, paused: bool) -> Text:
    if not keys:
        return Text("Ctrl-C stops", style="dim")
    return Text.assemble(
        ("p", "bold reverse"),
        (" resume  " if paused else " pause  "),
        ("k", "bold reverse"),
        " kill switch  ",
        ("q", "bold reverse"),
        " quit  ",
        ("Ctrl-C also stops", "dim"),
    )


# ------------------------------------------------------------------------- view ---
Lines = list[list[Segment]]


class _Lines:
    """Lines rendered once while measuring, drawn as they are (no second render)."""

    def __init__(self, lines: Lines) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines:
            yield from line
            yield Segment.line()


class TerminalView:
    """The whole screen for one snapshot, laid out when rich draws it (so it follows
    the console's size, also after a resize). Everything it draws is captured when it
    is made, so it may be drawn off the event loop's thread."""

    def __init__(
        self,
        snapshot: MonitorSnapshot,
        *,
        title: str = "arbkit",
        log: LogPane | None = None,
        keys: bool = False,
        grids: Mapping[str, str] | None = None,
    ) -> None:
        self.s = snapshot
        self.title = title
        self.log_lines = list(log.lines) if log is not None else []
        self.log_total = log.total if log is not None else 0
        self.keys = keys
        self.grids = grids or {}

    @staticmethod
    def _lines(console: Console, r: RenderableType, width: int) -> Lines:
        return console.render_lines(r, console.options.update(width=width, height=None))

    def _fit(
        self,
        console: Console,
        width: int,
        rows: int,
        build: Callable[[Sequence[Any], int], RenderableType],
        items: Sequence[Any],
    ) -> Lines:
        """The most recent ``items`` whose table (wrapped rows included) fits ``rows``."""
        n = min(len(items), max(rows - 1, 0))
        while n > 0:
            lines = self._lines(console, build(items[len(items) - n :], width), width)
            if len(lines) <= rows:
                return lines
            n -= 1
        return self._lines(console, build([], width), width)[:rows]

    def layout(self, console: Console, width: int, height: int) -> Layout:
        s = self.s
        head = self._lines(console, status_text(s, self.title), width)
        foot = self._lines(console, _keys(self.keys, s.paused), width)
        venues = self._lines(console, Group(_venues(s, width), latency_text(s.latency)), width)
        avail = height - len(head) - len(foot) - len(venues)
        # the rest: books first (what the trader watches), then opportunities, executions
        # and the log share what is left; the sizes depend on the screen, not the data
        min_each = 2
        h_books = max(min_each, min(1 + len(s.books), avail - 3 * min_each))
        rest = max(avail - h_books, 0)
        h_opps = max(min_each, rest * 3 // 10)
        h_execs = max(min_each, rest * 3 // 10)
        h_log = max(rest - h_opps - h_execs, 0)
        books = self._lines(console, _books(s, max(h_books - 1, 0), width, self.grids), width)
        opps = self._fit(
            console, width, h_opps, lambda it, w: _opps(it, w, self.grids), s.opportunities
        )
        execs = self._fit(console, width, h_execs, _execs, s.executions)
        sections = [(head, len(head)), (books, h_books), (opps, h_opps), (execs, h_execs)]
        sections.append((venues, len(venues)))
        if h_log > 0:
            log = _log_pane(self.log_lines, self.log_total, console, width, h_log)
            sections.append((self._lines(console, log, width), h_log))
        sections.append((foot, len(foot)))
        root = Layout()
        root.split_column(*(Layout(_Lines(lines), size=size) for lines, size in sections))
        return root

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        height = options.height or console.height
        yield self.layout(console, width, height)


def render(
    s: MonitorSnapshot,
    *,
    title: str = "arbkit",
    log: LogPane | None = None,
    keys: bool = False,
    grids: Mapping[str, str] | None = None,
) -> TerminalView:
    """The live view of ``s`` for whatever console draws it (80×24 and up)."""
    return TerminalView(s, title=title, log=log, keys=keys, grids=grids)


def positions_line(s: MonitorSnapshot) -> str:
    parts = [
        f"{sym} {venue.value} {outcome.value} {qty / 100:g}"
        for (sym, venue, outcome), qty in sorted(s.positions.items(), key=lambda kv: str(kv[0]))
        if qty
    ]
    return ", ".join(parts) or "flat"
