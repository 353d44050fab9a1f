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
import math
import time
from collections import deque
from dataclasses import replace
from decimal import ROUND_HALF_EVEN, Decimal
from html import escape
from typing import Any

import ipywidgets as W
import numpy as np
import plotly.graph_objects as go

from arbkit.config._toml import ConfigError
from arbkit.config.execution_loader import BOUNDS, ExecutionConfig, check_bounds
from arbkit.model import MONEY_SCALE, Mode, Money, Outcome, Venue, parse_money
from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor, LiveNotConfirmed, MonitorSnapshot
from arbkit.monitor.metrics import STAGES
from arbkit.ui import alerts as A
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
    """What the running monitor is using now (read back from it, not from the widgets),
    dollars as dollars."""
    d, f = monitor.config.detector, monitor.config.fees
    return (
        f"applied: min edge {S.usd_exact(d.min_edge_usd)}/contract after fees · "
        f"max size {d.max_contracts_per_trade:,} contracts · "
        f"Kalshi taker coefficient {f.kalshi_taker_coefficient} · "
        f"ForecastEx fee {S.usd_exact(f.forecastex_fee_per_contract_usd)}/contract · "
        f"mode {monitor.mode.value}{' · PAUSED' if monitor.paused else ''}"
    )


def check_in_bounds(cfg: ExecutionConfig, section: str, changes: dict[str, Any]) -> str | None:
    """Why ``changes`` to ``cfg.<section>`` are out of the config's bounds (the same
    BOUNDS a config file is checked against), or None when they are fine. A typo such as
    a coefficient of 5 is refused, never clamped into something plausible."""
    for v in changes.values():
        if isinstance(v, Decimal) and not v.is_finite():
            return "not a finite number"
    candidate = replace(cfg, **{section: replace(getattr(cfg, section), **changes)})
    try:
        check_bounds(candidate, "dashboard")
    except ConfigError as exc:
        return exc.problem
    return None


_RED, _ORANGE, _GREEN = "#c00", "#c60", "#080"
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_STAGE_NAMES = {s: s.replace("_", " ") for s in STAGES}
_FIG_MARGIN = {"l": 55, "r": 10, "t": 40, "b": 35}


def _threshold_shape(y: float) -> dict[str, Any]:
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "y0": y,
        "y1": y,
        "line": {"dash": "dash", "color": "red", "width": 1.5},
    }


def _threshold_note(y: float) -> dict[str, Any]:
    return {
        "xref": "paper",
        "x": 0.0,
        "xanchor": "left",
        "y": y,
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 10, "color": "red"},
        "bgcolor": "rgba(255,255,255,0.8)",
        "text": f"threshold after fees ${y:.4f}: below = the detector acts",
    }


class Dashboard:
    """The live dashboard over one monitor (see the module docstring)."""

    def __init__(
        self,
        monitor: ArbitrageMonitor,
        *,
        refresh_hz: float = 4.0,
        history_s: float = 300.0,
        max_points_per_trace: int = 400,
        depth_levels: int = 10,
        ladder_levels: int = 5,
        top_n: int = 4,
        max_top_n: int = 8,
        stale_ms: int = 5_000,
        large_edge_usd: str = "0.10",
        webhook_url: str | None = None,
    ) -> None:
        self.monitor = monitor
        self.refresh_hz = refresh_hz
        self.max_points = max_points_per_trace
        self.depth_levels = depth_levels
        self.ladder_levels = ladder_levels
        self.history = S.CostHistory(history_s=history_s, max_points=int(history_s * refresh_hz))
        self.pnl = S.PnlHistory()
        self.symbols = list(monitor.symbol_map.symbols)
        self.max_top_n = max(1, min(max_top_n, len(self.symbols) or 1))
        self.alerts = A.AlertBook(
            A.AlertRules(stale_ms=stale_ms, large_edge=parse_money(large_edge_usd, "large edge"))
        )
        self.webhook = A.WebhookSender(webhook_url) if webhook_url else None
        self.refreshes = 0
        self.refresh_ms: deque[float] = deque(maxlen=1_000)
        self.last_snapshot: MonitorSnapshot | None = None
        self.top_symbols: list[str] = []
        self._last_bars: dict[str, Any] = {}
        self._pnl_drawn = -1
        self._task: asyncio.Task[None] | None = None
        self._build(max(1, min(top_n, self.max_top_n)))
        self._task = monitor.subscribe(self._on_snapshot, rate_hz=refresh_hz)

    # --------------------------------------------------------------------- build ---
    def _build(self, top_n: int) -> None:
        m = self.monitor
        det, fees = m.config.detector, m.config.fees
        style = {"description_width": "initial"}
        self.symbol = W.Dropdown(
            options=self.symbols,
            value=self.symbols[0] if self.symbols else None,
            description="Symbol",
        )
        self.top_n = W.BoundedIntText(
            value=top_n,
            min=1,
            max=self.max_top_n,
            description="Chart: N closest to an edge",
            style=style,
            layout=W.Layout(width="250px"),
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
        # Plain number boxes, not Bounded*: a bounded box clamps a typo (5 → 1.0) and
        # applies it; these accept anything and the bounds check refuses it visibly.
        self.kalshi_fee = W.FloatText(
            value=float(fees.kalshi_taker_coefficient),
            step=0.005,
            description="Kalshi taker coefficient",
            style=style,
            layout=W.Layout(width="260px"),
        )
        self.fx_fee = W.FloatText(
            value=money_to_cents(fees.forecastex_fee_per_contract_usd),
            step=0.1,
            description="ForecastEx fee (¢/contract)",
            style=style,
            layout=W.Layout(width="260px"),
        )
        self.kalshi_fee_msg = W.HTML()
        self.fx_fee_msg = W.HTML()
        modes = ["monitor", "paper"] + (["live"] if m.config.mode is Mode.LIVE else [])
        self.mode = W.ToggleButtons(options=modes, value=m.mode.value, description="Mode")
        self.pause = W.ToggleButton(value=m.paused, description="Pause", icon="pause")
        self.kill = W.Button(description="KILL SWITCH", button_style="danger", icon="stop")
        self.reset = W.Button(description="Reset kill switch", button_style="warning")
        self.kill_state = W.HTML(description="")
        self.applied = W.HTML()
        self.message = W.HTML()
        self.status = W.HTML()
        self.alerts_box = W.HTML()
        self.alert_log = W.HTML()
        self.book_table = W.HTML()
        self.ladder_kalshi = W.HTML()
        self.ladder_fx = W.HTML()
        self.opps_table = W.HTML()
        self.execs_table = W.HTML()
        self.venues_table = W.HTML()
        self.latency_table = W.HTML()
        self.account_table = W.HTML()
        self.positions_table = W.HTML()
        self.pnl_text = W.HTML()
        for w, cls in (
            (self.symbol, "arbkit-symbol"),
            (self.top_n, "arbkit-top-n"),
            (self.min_edge, "arbkit-min-edge"),
            (self.max_size, "arbkit-max-size"),
            (self.kalshi_fee, "arbkit-kalshi-fee"),
            (self.fx_fee, "arbkit-fx-fee"),
            (self.kalshi_fee_msg, "arbkit-kalshi-fee-msg"),
            (self.fx_fee_msg, "arbkit-fx-fee-msg"),
            (self.mode, "arbkit-mode"),
            (self.pause, "arbkit-pause"),
            (self.kill, "arbkit-kill"),
            (self.reset, "arbkit-reset"),
            (self.kill_state, "arbkit-kill-state"),
            (self.applied, "arbkit-applied"),
            (self.message, "arbkit-message"),
            (self.status, "arbkit-status"),
            (self.alerts_box, "arbkit-alerts"),
            (self.alert_log, "arbkit-alert-log"),
            (self.ladder_kalshi, "arbkit-ladder-kalshi"),
            (self.ladder_fx, "arbkit-ladder-fx"),
            (self.opps_table, "arbkit-opportunities"),
            (self.execs_table, "arbkit-executions"),
            (self.venues_table, "arbkit-venues"),
            (self.latency_table, "arbkit-latency"),
            (self.account_table, "arbkit-account"),
            (self.positions_table, "arbkit-positions"),
            (self.pnl_text, "arbkit-pnl-text"),
        ):
            w.add_class(cls)
        self.min_edge.observe(self._on_min_edge, names="value")
        self.max_size.observe(self._on_max_size, names="value")
        self.kalshi_fee.observe(self._on_kalshi_fee, names="value")
        self.fx_fee.observe(self._on_fx_fee, names="value")
        self.mode.observe(self._on_mode, names="value")
        self.pause.observe(self._on_pause, names="value")
        self.symbol.observe(lambda _c: self.refresh_now(), names="value")
        self.top_n.observe(lambda _c: self.refresh_now(), names="value")
        self.kill.on_click(self._on_kill)
        self.reset.on_click(self._on_reset)

        # figures: no fixed width (autosize to the output area: nothing clipped at 1280 px)
        thr = S.threshold_usd(det.min_edge_usd)
        self.cost_fig = go.FigureWidget(
            layout=go.Layout(
                title={"text": "Closest to an edge: cost to arb after fees, cheaper combination"},
                autosize=True,
                height=330,
                margin=_FIG_MARGIN,
                yaxis={"title": "$ per contract", "tickformat": ".3f"},
                legend={"font": {"size": 10}, "orientation": "h", "y": -0.15},
                shapes=[_threshold_shape(thr)],
                annotations=[_threshold_note(thr)],
            )
        )
        for i in range(self.max_top_n + 1):  # one slot per ranked symbol + the selection
            self.cost_fig.add_scatter(
                x=[],
                y=[],
                mode="lines",
                name=f"slot {i}",
                visible=False,
                line={"color": _PALETTE[i % len(_PALETTE)]},
                connectgaps=False,
            )
        self.cost_fig.add_class("arbkit-cost-fig")
        self.selected_fig = go.FigureWidget(
            layout=go.Layout(
                title={"text": "Selected symbol"},
                autosize=True,
                height=300,
                margin=_FIG_MARGIN,
                yaxis={"title": "$ per contract", "tickformat": ".3f"},
                legend={"font": {"size": 10}, "orientation": "h", "y": -0.18},
                shapes=[_threshold_shape(thr)],
            )
        )
        for combo in S.COMBOS:
            label = "Kalshi YES + FX" if combo == "kalshi_yes" else "Kalshi NO + FX"
            self.selected_fig.add_scatter(
                x=[], y=[], mode="lines", name=f"{label}, after fees", connectgaps=False
            )
            self.selected_fig.add_scatter(
                x=[],
                y=[],
                mode="lines",
                name=f"{label}, gross",
                line={"dash": "dot", "width": 1},
                opacity=0.6,
                connectgaps=False,
            )
        self.selected_fig.add_class("arbkit-selected-fig")
        self.book_fig = go.FigureWidget(
            layout=go.Layout(
                title={"text": "Cumulative ask depth, selected symbol"},
                autosize=True,
                height=280,
                margin=_FIG_MARGIN,
                xaxis={"title": "ask ($)"},
                yaxis={"title": "contracts at or below"},
                legend={"font": {"size": 10}, "orientation": "h", "y": -0.25},
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
        # two stacked panels on one shared time axis (drawdown below the PnL)
        self.pnl_fig = go.FigureWidget(
            layout=go.Layout(
                title={"text": "Realized PnL and drawdown from its peak"},
                autosize=True,
                height=300,
                margin=_FIG_MARGIN,
                legend={"font": {"size": 10}, "orientation": "h", "y": -0.15},
                xaxis={"anchor": "y2"},
                yaxis={"domain": [0.4, 1.0], "tickprefix": "$", "tickformat": ",.2f"},
                yaxis2={"domain": [0.0, 0.32], "tickprefix": "$", "tickformat": ",.2f"},
            )
        )
        self.pnl_fig.add_scatter(x=[], y=[], name="realized PnL", line={"shape": "hv"})
        self.pnl_fig.add_scatter(
            x=[],
            y=[],
            name="drawdown",
            yaxis="y2",
            line={"shape": "hv", "color": _RED},
            fill="tozeroy",
        )
        self.pnl_fig.add_class("arbkit-pnl-fig")
        self.latency_fig = go.FigureWidget(
            layout=go.Layout(
                title={"text": "Latency per stage, milliseconds (recent window)"},
                autosize=True,
                height=300,
                margin=_FIG_MARGIN | {"b": 60},
                barmode="group",
                yaxis={"title": "samples", "type": "log"},
                legend={"font": {"size": 10}, "orientation": "h", "y": -0.35},
            )
        )
        for stage in STAGES:
            self.latency_fig.add_bar(x=[], y=[], name=_STAGE_NAMES[stage])
        self.latency_fig.add_class("arbkit-latency-fig")

        wrap = W.Layout(flex_flow="row wrap", align_items="center")
        controls = W.VBox(
            [
                W.HBox([self.symbol, self.top_n, self.mode, self.pause], layout=wrap),
                W.HBox([self.min_edge, self.max_size], layout=wrap),
                W.HBox(
                    [
                        W.VBox([self.kalshi_fee, self.kalshi_fee_msg]),
                        W.VBox([self.fx_fee, self.fx_fee_msg]),
                    ],
                    layout=W.Layout(flex_flow="row wrap", align_items="flex-start"),
                ),
                W.HBox([self.kill, self.reset, self.kill_state], layout=wrap),
                self.applied,
                self.message,
            ]
        )
        tabs = W.Tab(
            children=[
                W.VBox([self.opps_table]),
                W.VBox([self.execs_table]),
                W.VBox([self.venues_table, self.latency_table]),
                W.VBox([self.alert_log]),
            ]
        )
        for i, title in enumerate(("Opportunities", "Executions", "Venues & latency", "Alerts")):
            tabs.set_title(i, title)
        self.tabs = tabs
        ladders = W.HBox(
            [
                W.VBox([W.HTML("<b>Kalshi</b> (YES terms)"), self.ladder_kalshi]),
                W.VBox([W.HTML("<b>ForecastEx</b> (YES terms)"), self.ladder_fx]),
                W.VBox([W.HTML("<b>Best asks</b>"), self.book_table]),
            ],
            layout=W.Layout(flex_flow="row wrap", justify_content="space-around"),
        )
        full = W.Layout(width="100%")
        self.widget = W.VBox(
            [
                self.status,
                self.alerts_box,
                controls,
                self.cost_fig,
                self.selected_fig,
                ladders,
                self.book_fig,
                self.pnl_fig,
                self.pnl_text,
                W.HBox(
                    [self.account_table, self.positions_table],
                    layout=W.Layout(flex_flow="row wrap", justify_content="space-around"),
                ),
                self.latency_fig,
                tabs,
            ],
            layout=full,
        )
        self.widget.add_class("arbkit-dashboard")
        self._update_text(None)

    # ------------------------------------------------------------------ controls ---
    def _guard(self, what: str, fn: Any, *args: Any, **kw: Any) -> bool:
        try:
            fn(*args, **kw)
        except (LiveNotConfirmed, ValueError, AssertionError) as exc:
            self.message.value = f'<span style="color:{_RED}">{what}: {escape(str(exc))}</span>'
            return False
        self.message.value = f"{escape(what)} applied"
        self._set(self.applied, escape(applied_text(self.monitor)))
        self._set_threshold()
        return True

    def _checked(
        self, what: str, section: str, changes: dict[str, Any], note: W.HTML | None = None
    ) -> bool:
        """Apply ``changes`` only if they pass the config's bounds; otherwise say why next
        to the input and leave the monitor as it was."""
        why = check_in_bounds(self.monitor.config, section, changes)
        if why is not None:
            ((key, value),) = changes.items()
            name = f"{section}.{key}"
            lo, hi, _usual = BOUNDS.get(name, (None, None, ""))
            text = f"refused, not applied: {why}"
            if key.endswith("_usd") and lo is not None and hi is not None:  # in $, not units
                text += (
                    f" (you entered {S.usd_exact(value)}; allowed "
                    f"{S.usd_exact(int(lo))} to {S.usd_exact(int(hi))})"
                )
            html = f'<span style="color:{_RED}"><b>{escape(what)}</b> {escape(text)}</span>'
            if note is not None:
                note.value = html
            self.message.value = html
            log.info("dashboard refused %s=%r (bounds %s..%s)", name, changes, lo, hi)
            return False
        if note is not None:
            note.value = ""
        setter = (
            self.monitor.set_fee_params if section == "fees" else self.monitor.set_detector_params
        )
        return self._guard(what, setter, **changes)

    def _on_min_edge(self, change: dict[str, Any]) -> None:
        self._checked("min edge", "detector", {"min_edge_usd": cents_to_money(change["new"])})

    def _on_max_size(self, change: dict[str, Any]) -> None:
        self._checked("max size", "detector", {"max_contracts_per_trade": int(change["new"])})

    def _on_kalshi_fee(self, change: dict[str, Any]) -> None:
        v = float(change["new"])
        value = coefficient(v) if math.isfinite(v) else Decimal("NaN")
        self._checked(
            "Kalshi taker coefficient",
            "fees",
            {"kalshi_taker_coefficient": value},
            self.kalshi_fee_msg,
        )

    def _on_fx_fee(self, change: dict[str, Any]) -> None:
        v = float(change["new"])
        if not math.isfinite(v):
            self.fx_fee_msg.value = f'<span style="color:{_RED}">refused: not a number</span>'
            return
        self._checked(
            "ForecastEx fee",
            "fees",
            {"forecastex_fee_per_contract_usd": cents_to_money(v)},
            self.fx_fee_msg,
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

    def _set_threshold(self) -> None:
        thr = S.threshold_usd(self.monitor.config.detector.min_edge_usd)
        for fig in (self.cost_fig, self.selected_fig):
            if fig.layout.shapes and fig.layout.shapes[0].y0 != thr:
                fig.layout.shapes[0].update(y0=thr, y1=thr)
        if self.cost_fig.layout.annotations:
            self.cost_fig.layout.annotations[0].update(_threshold_note(thr))

    # ------------------------------------------------------------------- refresh ---
    def refresh_now(self) -> None:
        """Refresh from a fresh snapshot (after a control press, outside the timer)."""
        if self.monitor.executor is not None:
            self._on_snapshot(self.monitor.snapshot(), record=False)

    def _fees(self, snap: MonitorSnapshot) -> dict[str, tuple[Money, Money]]:
        ex = self.monitor.executor
        if ex is None:
            return {}
        buffers = Money(2 * self.monitor.config.detector.slippage_buffer_usd_per_leg)
        specs = self.monitor.symbol_map.symbols
        return {
            sym: S.fees_per_contract(sample, specs[sym], ex.fees, buffers)
            for sym, sample in snap.books.items()
            if sym in specs
        }

    def _on_snapshot(self, snap: MonitorSnapshot, *, record: bool = True) -> None:
        t0 = time.perf_counter()
        self.last_snapshot = snap
        if record:
            self.history.add(snap.books, snap.ts_ns, self._fees(snap))
            self.pnl.add(snap.ts_ns, snap.realized_pnl)
        raised = self.alerts.update(snap)
        if raised and self.webhook is not None:
            self.webhook.send(raised, snap.mode.value)
        selected = self.symbol.value
        # the browser redraws every figure it is sent: the overview at the refresh rate,
        # the rest at most twice a second and only when their data changed
        self._draw_costs(selected)
        if selected is not None and (not record or self._every(0.5)):
            self._draw_selected(selected, snap)
        if not record or self._every(0.5):
            self._draw_pnl(snap)
        if not record or self._every(2.0):
            self._draw_latency(snap)
        self._update_text(snap)
        self.refreshes += 1
        self.refresh_ms.append((time.perf_counter() - t0) * 1e3)

    def _every(self, seconds: float) -> bool:
        return self.refreshes % max(1, round(self.refresh_hz * seconds)) == 0

    def _draw_costs(self, selected: str | None) -> None:
        n = max(1, min(int(self.top_n.value or 1), self.max_top_n))
        top = self.history.closest_to_edge(n)
        self.top_symbols = top
        shown = top + ([selected] if selected is not None and selected not in top else [])
        with self.cost_fig.batch_update():
            for i, tr in enumerate(self.cost_fig.data):
                if i >= len(shown):
                    if tr.visible is not False:
                        tr.visible = False
                        tr.x, tr.y = [], []
                    continue
                sym = shown[i]
                xs, yy = self.history.series(
                    sym, "kalshi_yes", max_points=self.max_points, after_fees=True
                )
                _xs, yn = self.history.series(
                    sym, "kalshi_no", max_points=self.max_points, after_fees=True
                )
                with np.errstate(invalid="ignore"):
                    ys = np.fmin(yy, yn)  # the cheaper combination at each moment
                is_sel = sym == selected
                rank = f"#{i + 1} " if i < len(top) else "selected: "
                tr.update(
                    x=xs,
                    y=ys,
                    visible=True,
                    name=f"{rank}{sym}",
                    line={"width": 3.0 if is_sel else 1.5, "dash": "solid" if is_sel else None},
                    opacity=1.0 if is_sel or selected is None else 0.7,
                )

    def _draw_selected(self, selected: str, snap: MonitorSnapshot) -> None:
        with self.selected_fig.batch_update():
            self.selected_fig.layout.title.text = (
                f"Selected: {selected}, both combinations: after fees (solid), gross (dotted)"
            )
            i = 0
            for combo in S.COMBOS:
                for after in (True, False):
                    xs, ys = self.history.series(
                        selected, combo, max_points=self.max_points, after_fees=after
                    )
                    tr = self.selected_fig.data[i]
                    tr.x, tr.y = xs, ys
                    i += 1
        book = self.monitor.pipeline.book[selected]
        levels = {
            (v, o): (list(book.ladder(v, o).levels()) if book.ladder(v, o).valid else [])
            for v, o in S.BOOK_SIDES
        }
        bars = S.depth_bars(levels, self.depth_levels, cumulative=True)
        if bars != self._last_bars:
            self._last_bars = bars
            with self.book_fig.batch_update():
                for tr in self.book_fig.data:
                    xs_b, ys_b = bars.get(tr.name, ([], []))
                    tr.x, tr.y = xs_b, ys_b
        self._set(self.book_table, S.html_table(S.best_ask_rows(snap.books.get(selected))))
        for venue, w in ((Venue.KALSHI, self.ladder_kalshi), (Venue.IBKR, self.ladder_fx)):
            rows = S.ladder_rows(
                levels[(venue, Outcome.YES)], levels[(venue, Outcome.NO)], self.ladder_levels
            )
            self._set(w, S.html_table(rows, cls="arbkit-ladder"))

    def _draw_pnl(self, snap: MonitorSnapshot) -> None:
        pts = self.pnl.points(snap.ts_ns)
        n = len(self.pnl)
        if n == self._pnl_drawn and n > 1 and not self._every(5.0):
            return  # unchanged: the flat tail to now is extended every 5 s only
        self._pnl_drawn = n
        xs = np.asarray([t // 1_000_000 for t, _p, _d in pts], dtype=np.int64).astype(
            "datetime64[ms]"
        )
        with self.pnl_fig.batch_update():
            self.pnl_fig.data[0].x = xs
            self.pnl_fig.data[0].y = [p / MONEY_SCALE for _t, p, _d in pts]
            self.pnl_fig.data[1].x = xs
            self.pnl_fig.data[1].y = [-d / MONEY_SCALE for _t, _p, d in pts]
        self._set(
            self.pnl_text,
            f"realized PnL {escape(S.usd_text(snap.realized_pnl))} · peak "
            f"{escape(S.usd_text(self.pnl.peak))} · drawdown now "
            f"{escape(S.usd_text(pts[-1][2]))} · max drawdown "
            f"{escape(S.usd_text(self.pnl.max_drawdown))} · hedge cost "
            f"{escape(S.usd_text(snap.hedge_cost))}",
        )

    def _draw_latency(self, snap: MonitorSnapshot) -> None:
        labels = S.latency_hist_labels(snap.latency_edges_ms)
        with self.latency_fig.batch_update():
            for stage, tr in zip(STAGES, self.latency_fig.data, strict=True):
                counts = snap.latency_hist.get(stage, [])
                tr.x, tr.y = (labels, counts) if any(counts) else ([], [])

    def _update_text(self, snap: MonitorSnapshot | None) -> None:
        self._set(self.applied, escape(applied_text(self.monitor)))
        if snap is None:
            self._set(self.kill_state, self._kill_html(False, "kill switch off"))
            self._set(self.alerts_box, self._alerts_html())
            return
        self._set(self.kill_state, self._kill_html(snap.kill_switch, S.kill_state_text(snap)))
        self._set(self.status, f"<b>arbkit</b> · {escape(S.status_text(snap))}")
        self._set(self.alerts_box, self._alerts_html())
        self._set(self.alert_log, self._alert_log_html())
        self._set(self.opps_table, S.html_table(S.opportunity_rows(snap), cls="arbkit-opps"))
        self._set(self.execs_table, S.html_table(S.execution_rows(snap), cls="arbkit-execs"))
        self._set(self.venues_table, S.html_table(S.venue_rows(snap)))
        self._set(self.latency_table, S.html_table(S.latency_rows(snap), empty="no latency yet"))
        self._set(
            self.account_table,
            "<b>Balances and capital per venue</b>"
            + S.html_table(S.account_rows(snap), cls="arbkit-account-rows"),
        )
        self._set(
            self.positions_table,
            "<b>Positions</b>"
            + S.html_table(S.position_rows(snap), empty="no positions", cls="arbkit-pos-rows"),
        )
        if self.mode.value != snap.mode.value:
            self.mode.unobserve(self._on_mode, names="value")
            try:
                self.mode.value = snap.mode.value
            finally:
                self.mode.observe(self._on_mode, names="value")

    def _alerts_html(self) -> str:
        active = sorted(
            self.alerts.active.values(), key=lambda a: (a.severity != A.CRITICAL, a.key)
        )
        hook = f" · {escape(self.webhook.status_text())}" if self.webhook is not None else ""
        if not active:
            return (
                f'<div class="arbkit-alerts-none" style="color:{_GREEN}">no active alerts'
                f"{hook}</div>"
            )
        items = "".join(
            f'<li class="arbkit-alert arbkit-alert-{escape(a.kind)}" style="color:'
            f'{_RED if a.severity == A.CRITICAL else _ORANGE}"><b>{escape(a.severity)}</b> '
            f"{escape(a.text)}</li>"
            for a in active
        )
        return (
            f"<div><b>{len(active)} active alert{'s' if len(active) != 1 else ''}</b>{hook}"
            f'<ul style="margin:2px 0">{items}</ul></div>'
        )

    def _alert_log_html(self) -> str:
        rows = [
            {
                "time (UTC)": S.ts_datetime(a.ts_ns).strftime("%H:%M:%S.%f")[:-3],
                "severity": a.severity,
                "kind": a.kind,
                "alert": a.text,
            }
            for a in self.alerts.raised
        ]
        return S.html_table(rows, empty="no alerts raised yet", cls="arbkit-alert-rows")

    @staticmethod
    def _kill_html(on: bool, text: str) -> str:
        color = _RED if on else _GREEN
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

        def points(fig: go.FigureWidget) -> list[int]:
            return [
                int(np.count_nonzero(~np.isnan(np.asarray(tr.y, dtype=float))))
                if tr.y is not None and tr.visible is not False
                else 0
                for tr in fig.data
            ]

        filled = points(self.cost_fig)
        pnl_pts = self.pnl.points(snap.ts_ns if snap is not None else None)
        return {
            "refreshes": self.refreshes,
            "cost_traces": len(self.cost_fig.data),
            "cost_traces_visible": sum(1 for tr in self.cost_fig.data if tr.visible is True),
            "cost_names": [tr.name for tr in self.cost_fig.data if tr.visible is True],
            "cost_points": sum(filled),
            "cost_traces_with_data": sum(1 for n in filled if n),
            "top_symbols": list(self.top_symbols),
            "selected_points": points(self.selected_fig),
            "threshold_usd": self.cost_fig.layout.shapes[0].y0,
            "book_bars": sum(len(tr.x) for tr in self.book_fig.data if tr.x is not None),
            "ladder_html": self.ladder_kalshi.value + self.ladder_fx.value,
            "history_points": len(self.history),
            "pnl_points": len(pnl_pts),
            "pnl_usd": [p / MONEY_SCALE for _t, p, _d in pnl_pts],
            "drawdown_usd": [d / MONEY_SCALE for _t, _p, d in pnl_pts],
            "max_drawdown": self.pnl.max_drawdown,
            "account_rows": S.account_rows(snap) if snap is not None else [],
            "position_rows": S.position_rows(snap) if snap is not None else [],
            "latency_samples": sum(sum(tr.y) for tr in self.latency_fig.data if tr.y),
            "alerts_active": self.alerts.kinds_active(),
            "alerts_raised": [a.kind for a in self.alerts.raised],
            "webhook": self.webhook.status_text() if self.webhook is not None else "off",
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

    async def aclose(self) -> None:
        """Stop refreshing and let the webhook's POSTs under way finish."""
        self.stop()
        if self.webhook is not None:
            await self.webhook.aclose()
