"""Live notebook dashboard: plotly FigureWidgets + ipywidgets over a running monitor.

It lives in the kernel's event loop: the monitor calls ``_on_snapshot`` on its own timer
(``monitor.subscribe``) a few times a second, and each refresh is one batched update per
figure. The hot path never calls into the UI. Controls call the monitor's setters
directly, so a change takes effect at once; what the dashboard shows as "applied" is read
back from the monitor, never from the widget, so it proves the monitor got it.

Every control has a stable ``description`` and a DOM class (``arbkit-…``) for the
browser test.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from decimal import ROUND_HALF_EVEN, Decimal
from html import escape
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from arbkit.model import MONEY_SCALE, Mode, Money
from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor, LiveNotConfirmed, MonitorSnapshot
from arbkit.ui import series as S

log = logging.getLogger(__name__)

CENTS_TO_MONEY = MONEY_SCALE // 100  # Money units per cent


def cents_to_money(cents: float) -> Money:
    """A slider's cents (display float) to Money, rounded to $0.000001."""
    d = Decimal(repr(float(cents))) * CENTS_TO_MONEY
    return Money(int(d.to_integral_value(ROUND_HALF_EVEN)))


def money_to_cents(m: int) -> float:
    return m / CENTS_TO_MONEY


def coefficient(value: float) -> Decimal:
    """A fee coefficient typed as a float in a widget, as the exact decimal it shows."""
    return Decimal(repr(float(value))).quantize(Decimal("0.000001")).normalize()


def applied_text(monitor: ArbitrageMonitor) -> str:
    """What the running monitor is using now (read back from it, not from the widgets)."""
    d, f = monitor.config.detector, monitor.config.fees
    return (
        f"applied: min edge {money_to_cents(d.min_edge_usd):g}¢ "
        f"(min_edge_usd={d.min_edge_usd}) · max size {d.max_contracts_per_trade} · "
        f"Kalshi taker {f.kalshi_taker_coefficient} · "
        f"ForecastEx fee {money_to_cents(f.forecastex_fee_per_contract_usd):g}¢/contract · "
        f"mode {monitor.mode.value}{' · PAUSED' if monitor.paused else ''}"
    )


class Dashboard:
    def __init__(
        self,
        monitor: ArbitrageMonitor,
        *,
        refresh_hz: float = 4.0,
        history_s: float = 300.0,
        max_points_per_trace: int = 400,
        depth_levels: int = 10,
    ) -> None:
        self.monitor = monitor
        self.refresh_hz = refresh_hz
        self.max_points = max_points_per_trace
        self.depth_levels = depth_levels
        self.history = S.CostHistory(history_s=history_s, max_points=int(history_s * refresh_hz))
        self.symbols = list(monitor.symbol_map.symbols)
        self.refreshes = 0
        self.refresh_ms: deque[float] = deque(maxlen=1_000)
        self.last_snapshot: MonitorSnapshot | None = None
        self._task: asyncio.Task[None] | None = None
        self._build()
        self._task = monitor.subscribe(self._on_snapshot, rate_hz=refresh_hz)

    # --------------------------------------------------------------------- build ---
    def _build(self) -> None:
        m = self.monitor
        det, fees = m.config.detector, m.config.fees
        style = {"description_width": "initial"}
        self.symbol = W.Dropdown(
            options=self.symbols,
            value=self.symbols[0] if self.symbols else None,
            description="Symbol",
        )
        self.min_edge = W.FloatSlider(
            value=money_to_cents(det.min_edge_usd),
            min=0.0,
            max=10.0,
            step=0.1,
            description="Min edge (¢/contract)",
            continuous_update=False,
            readout_format=".1f",
            style=style,
        )
        self.max_size = W.IntSlider(
            value=min(det.max_contracts_per_trade, 1_000),
            min=1,
            max=1_000,
            step=1,
            description="Max size (contracts)",
            continuous_update=False,
            style=style,
        )
        self.kalshi_fee = W.BoundedFloatText(
            value=float(fees.kalshi_taker_coefficient),
            min=0.0,
            max=1.0,
            step=0.005,
            description="Kalshi taker coefficient",
            style=style,
        )
        self.fx_fee = W.BoundedFloatText(
            value=money_to_cents(fees.forecastex_fee_per_contract_usd),
            min=0.0,
            max=100.0,
            step=0.1,
            description="ForecastEx fee (¢/contract)",
            style=style,
        )
        modes = ["monitor", "paper"] + (["live"] if m.config.mode is Mode.LIVE else [])
        self.mode = W.ToggleButtons(options=modes, value=m.mode.value, description="Mode")
        self.pause = W.ToggleButton(value=m.paused, description="Pause", icon="pause")
        self.kill = W.Button(description="KILL SWITCH", button_style="danger", icon="stop")
        self.reset = W.Button(description="Reset kill switch", button_style="warning")
        self.kill_state = W.HTML(description="")
        self.applied = W.HTML()
        self.message = W.HTML()
        self.status = W.HTML()
        self.book_table = W.HTML()
        self.opps_table = W.HTML()
        self.execs_table = W.HTML()
        self.venues_table = W.HTML()
        self.latency_table = W.HTML()
        for w, cls in (
            (self.symbol, "arbkit-symbol"),
            (self.min_edge, "arbkit-min-edge"),
            (self.max_size, "arbkit-max-size"),
            (self.kalshi_fee, "arbkit-kalshi-fee"),
            (self.fx_fee, "arbkit-fx-fee"),
            (self.mode, "arbkit-mode"),
            (self.pause, "arbkit-pause"),
            (self.kill, "arbkit-kill"),
            (self.reset, "arbkit-reset"),
            (self.kill_state, "arbkit-kill-state"),
            (self.applied, "arbkit-applied"),
            (self.message, "arbkit-message"),
            (self.status, "arbkit-status"),
            (self.opps_table, "arbkit-opportunities"),
            (self.execs_table, "arbkit-executions"),
            (self.venues_table, "arbkit-venues"),
        ):
            w.add_class(cls)
        self.min_edge.observe(self._on_min_edge, names="value")
        self.max_size.observe(self._on_max_size, names="value")
        self.kalshi_fee.observe(self._on_kalshi_fee, names="value")
        self.fx_fee.observe(self._on_fx_fee, names="value")
        self.mode.observe(self._on_mode, names="value")
        self.pause.observe(self._on_pause, names="value")
        self.symbol.observe(lambda _c: self.refresh_now(), names="value")
        self.kill.on_click(self._on_kill)
        self.reset.on_click(self._on_reset)

        self.cost_fig = go.FigureWidget(
            layout=go.Layout(
                title={"text": "Cost to arb, gross USD per pair (below 1 = edge)"},
                height=360,
                width=1050,
                margin={"l": 50, "r": 10, "t": 40, "b": 40},
                yaxis={"title": "$"},
                legend={"font": {"size": 10}},
                shapes=[
                    {
                        "type": "line",
                        "xref": "paper",
                        "x0": 0,
                        "x1": 1,
                        "y0": 1.0,
                        "y1": 1.0,
                        "line": {"dash": "dash", "color": "red", "width": 1},
                    }
                ],
            )
        )
        for sym in self.symbols:
            for combo in S.COMBOS:
                self.cost_fig.add_scatter(
                    x=[],
                    y=[],
                    mode="lines",
                    name=f"{sym} {'K-YES' if combo == 'kalshi_yes' else 'K-NO'}",
                    legendgroup=sym,
                    line={"dash": "solid" if combo == "kalshi_yes" else "dot"},
                    connectgaps=False,
                )
        self.cost_fig.add_class("arbkit-cost-fig")
        self.book_fig = go.FigureWidget(
            layout=go.Layout(
                title={"text": "Cumulative ask depth, selected symbol"},
                height=300,
                width=650,
                margin={"l": 50, "r": 10, "t": 40, "b": 40},
                xaxis={"title": "ask ($)"},
                yaxis={"title": "contracts at or below"},
            )
        )
        for venue, outcome in S.BOOK_SIDES:
            self.book_fig.add_scatter(
                x=[],
                y=[],
                name=S.side_label(venue, outcome),
                mode="lines+markers",
                line={"shape": "hv", "dash": "solid" if venue.value == "kalshi" else "dot"},
            )
        self.book_fig.add_class("arbkit-book-fig")

        controls = W.VBox(
            [
                W.HBox([self.symbol, self.mode, self.pause]),
                W.HBox([self.min_edge, self.max_size]),
                W.HBox([self.kalshi_fee, self.fx_fee]),
                W.HBox([self.kill, self.reset, self.kill_state]),
                self.applied,
                self.message,
            ]
        )
        tabs = W.Tab(
            children=[
                W.VBox([self.opps_table]),
                W.VBox([self.execs_table]),
                W.VBox([self.venues_table, self.latency_table]),
            ]
        )
        for i, title in enumerate(("Opportunities", "Executions", "Venues & latency")):
            tabs.set_title(i, title)
        self.widget = W.VBox(
            [
                self.status,
                controls,
                self.cost_fig,
                W.HBox([self.book_fig, self.book_table]),
                tabs,
            ]
        )
        self.widget.add_class("arbkit-dashboard")
        self._update_text(None)

    # ------------------------------------------------------------------ controls ---
    def _guard(self, what: str, fn: Any, *args: Any, **kw: Any) -> bool:
        try:
            fn(*args, **kw)
        except (LiveNotConfirmed, ValueError, AssertionError) as exc:
            self.message.value = f'<span style="color:#b00">{what}: {escape(str(exc))}</span>'
            return False
        self.message.value = f"{escape(what)} applied"
        self.applied.value = escape(applied_text(self.monitor))
        return True

    def _on_min_edge(self, change: dict[str, Any]) -> None:
        self._guard(
            "min edge",
            self.monitor.set_detector_params,
            min_edge_usd=cents_to_money(change["new"]),
        )

    def _on_max_size(self, change: dict[str, Any]) -> None:
        self._guard(
            "max size",
            self.monitor.set_detector_params,
            max_contracts_per_trade=int(change["new"]),
        )

    def _on_kalshi_fee(self, change: dict[str, Any]) -> None:
        self._guard(
            "Kalshi fee",
            self.monitor.set_fee_params,
            kalshi_taker_coefficient=coefficient(change["new"]),
        )

    def _on_fx_fee(self, change: dict[str, Any]) -> None:
        self._guard(
            "ForecastEx fee",
            self.monitor.set_fee_params,
            forecastex_fee_per_contract_usd=cents_to_money(change["new"]),
        )

    def _on_mode(self, change: dict[str, Any]) -> None:
        # live again only for a monitor started live with the explicit confirmation (the
        # monitor re-checks both); anything else is refused and the toggle snaps back
        mode = Mode(change["new"])
        confirm = mode is Mode.LIVE and self.monitor.confirm_live
        if not self._guard("mode", self.monitor.set_mode, mode, confirm_live=confirm):
            self.mode.unobserve(self._on_mode, names="value")
            try:
                self.mode.value = self.monitor.mode.value
            finally:
                self.mode.observe(self._on_mode, names="value")

    def _on_pause(self, change: dict[str, Any]) -> None:
        fn = self.monitor.pause if change["new"] else self.monitor.resume
        self._guard("pause" if change["new"] else "resume", fn)
        self.pause.description = "Resume" if change["new"] else "Pause"

    def _on_kill(self, _button: Any) -> None:
        self._guard("kill switch", self.monitor.kill, "kill switch pressed in the dashboard")
        self.refresh_now()

    def _on_reset(self, _button: Any) -> None:
        self._guard("kill switch reset", self.monitor.reset_kill_switch)
        self.refresh_now()

    # ------------------------------------------------------------------- refresh ---
    def refresh_now(self) -> None:
        """Refresh from a fresh snapshot (after a control press, outside the timer)."""
        if self.monitor.executor is not None:
            self._on_snapshot(self.monitor.snapshot(), record=False)

    def _on_snapshot(self, snap: MonitorSnapshot, *, record: bool = True) -> None:
        t0 = time.perf_counter()
        self.last_snapshot = snap
        if record:
            self.history.add(snap.books, snap.ts_ns)
        selected = self.symbol.value
        with self.cost_fig.batch_update():
            i = 0
            for sym in self.symbols:
                width = 2.5 if sym == selected else 1.0
                for combo in S.COMBOS:
                    xs, ys = self.history.series(sym, combo, max_points=self.max_points)
                    tr = self.cost_fig.data[i]
                    tr.x, tr.y = xs, ys
                    tr.line.width = width
                    tr.opacity = 1.0 if sym == selected else 0.35
                    i += 1
        if selected is not None:
            book = self.monitor.pipeline.book[selected]
            ladders = {
                (v, o): (book.ladder(v, o).levels() if book.ladder(v, o).valid else ())
                for v, o in S.BOOK_SIDES
            }
            bars = S.depth_bars(ladders, self.depth_levels, cumulative=True)
            with self.book_fig.batch_update():
                for tr in self.book_fig.data:
                    xs_b, ys_b = bars.get(tr.name, ([], []))
                    tr.x, tr.y = xs_b, ys_b
            self._set(self.book_table, S.html_table(S.best_ask_rows(snap.books.get(selected))))
        self._update_text(snap)
        self.refreshes += 1
        self.refresh_ms.append((time.perf_counter() - t0) * 1e3)

    def _update_text(self, snap: MonitorSnapshot | None) -> None:
        self._set(self.applied, escape(applied_text(self.monitor)))
        if snap is None:
            self._set(self.kill_state, self._kill_html(False, "kill switch off"))
            return
        self._set(self.kill_state, self._kill_html(snap.kill_switch, S.kill_state_text(snap)))
        self._set(self.status, f"<b>arbkit</b> · {escape(S.status_text(snap))}")
        self._set(self.opps_table, S.html_table(S.opportunity_rows(snap), cls="arbkit-opps"))
        self._set(self.execs_table, S.html_table(S.execution_rows(snap), cls="arbkit-execs"))
        self._set(self.venues_table, S.html_table(S.venue_rows(snap)))
        self._set(self.latency_table, S.html_table(S.latency_rows(snap), empty="no latency yet"))
        if self.mode.value != snap.mode.value:
            self.mode.unobserve(self._on_mode, names="value")
            try:
                self.mode.value = snap.mode.value
            finally:
                self.mode.observe(self._on_mode, names="value")

    @staticmethod
    def _kill_html(on: bool, text: str) -> str:
        color = "#c00" if on else "#080"
        cls = "arbkit-kill-on" if on else "arbkit-kill-off"
        return f'<b class="{cls}" style="color:{color}">{escape(text)}</b>'

    @staticmethod
    def _set(w: W.HTML, value: str) -> None:
        if w.value != value:  # unchanged text sends no comm message
            w.value = value

    # ---------------------------------------------------------------------- misc ---
    def refresh_cost_ms(self) -> dict[str, float]:
        """Measured refresh cost per snapshot (ms): mean, p50, max."""
        xs = sorted(self.refresh_ms)
        if not xs:
            return {"count": 0, "mean": 0.0, "p50": 0.0, "max": 0.0}
        return {
            "count": len(xs),
            "mean": sum(xs) / len(xs),
            "p50": xs[len(xs) // 2],
            "max": xs[-1],
        }

    def summary(self) -> dict[str, Any]:
        """What the dashboard has drawn and what the monitor counted: for tests and a
        final notebook cell."""
        snap = self.last_snapshot
        filled = [
            int(np.count_nonzero(~np.isnan(np.asarray(tr.y, dtype=float))))
            for tr in self.cost_fig.data
            if tr.y is not None
        ]
        return {
            "refreshes": self.refreshes,
            "cost_traces": len(self.cost_fig.data),
            "cost_points": sum(filled),
            "cost_traces_with_data": sum(1 for n in filled if n),
            "book_bars": sum(len(tr.x) for tr in self.book_fig.data if tr.x is not None),
            "history_points": len(self.history),
            "counters": dict(snap.counters) if snap is not None else {},
            "kill_switch": self.monitor.kill_switch,
            "min_edge_usd": self.monitor.config.detector.min_edge_usd,
            "max_contracts_per_trade": self.monitor.config.detector.max_contracts_per_trade,
            "refresh_ms": self.refresh_cost_ms(),
        }

    def stop(self) -> None:
        """Stop refreshing (the monitor keeps running)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
