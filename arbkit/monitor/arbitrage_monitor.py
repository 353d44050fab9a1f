"""ArbitrageMonitor: wires gateways → normalizers → book → detector → executor → database.

It runs inside whatever event loop is already running (a Jupyter kernel's, or
``asyncio.run`` from the CLI) and never blocks it: venue callbacks do the synchronous
detection work and return; executions, database writes, captures and UI snapshots run as
their own tasks. Everything a notebook needs is a method here: start/stop, pause, change
detector/fee/risk parameters and mode at run time, the kill switch, state snapshots.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from arbkit.arbitrage.fee_model import FeeModel
from arbkit.arbitrage.pipeline import DetectionPipeline, EpisodeEnd, SpreadSample
from arbkit.config.execution_loader import ExecutionConfig, check_live_allowed
from arbkit.config.loader import SymbolMap
from arbkit.execution.executor import Decision, Executor, Reservation
from arbkit.execution.journal import ExecutionRecord, Journal, MemoryJournal
from arbkit.execution.paper import PaperVenue
from arbkit.execution.venue import VenueOrderClient
from arbkit.gateways.ibkr_client import IbkrGateway
from arbkit.gateways.ibkr_orders import IbkrOrderClient
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.gateways.kalshi_orders import KalshiOrderClient
from arbkit.gateways.kalshi_rest import KalshiRestClient
from arbkit.gateways.kalshi_websocket import KalshiWebSocket
from arbkit.model import Mode, Money, NormalizedTick, Opportunity, Outcome, Price, Qty, Venue
from arbkit.monitor.metrics import LatencySummary, StageLatency
from arbkit.storage.capture import CaptureWriter
from arbkit.storage.database import Database, DatabaseWriter

log = logging.getLogger(__name__)


class LiveNotConfirmed(RuntimeError):
    """Live trading was configured but not explicitly confirmed at start."""


@dataclass(frozen=True, slots=True)
class KalshiEndpoint:
    rest_url: str
    ws_url: str
    auth: KalshiAuth
    use_yes_price: bool = False


@dataclass(frozen=True, slots=True)
class IbkrEndpoint:
    host: str = "127.0.0.1"
    port: int = 7497  # TWS paper; IB Gateway paper is 4002
    client_id: int = 1
    account: str | None = None
    cache_path: Path | None = Path("data/contracts_cache.json")


@dataclass(frozen=True, slots=True)
class VenueStatus:
    venue: str
    connected: bool
    ticks: int
    bad_frames: int
    resyncs: int
    reconnects: int
    last_message_age_ms: int | None
    books_valid: int
    books_total: int


@dataclass(frozen=True, slots=True)
class OpportunityView:
    ts_ns: int
    symbol: str
    combo: str
    contracts: int
    kalshi_price: Price
    ibkr_price: Price
    expected_profit: Money
    net_edge_per_contract: Money
    annualized_return_bps: int
    decision: str
    reason: str
    execution_id: str | None


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    ts_ns: int
    mode: Mode
    paused: bool
    kill_switch: bool
    kill_reason: str
    venues: dict[str, VenueStatus]
    books: dict[str, SpreadSample]
    opportunities: list[OpportunityView]
    executions: list[ExecutionRecord]
    counters: dict[str, int]
    realized_pnl: Money
    hedge_cost: Money
    positions: dict[tuple[str, Venue, Outcome], Qty]
    latency: dict[str, LatencySummary]
    active_episodes: int


@dataclass(slots=True)
class Counters:
    ticks: int = 0
    batches: int = 0
    opportunities: int = 0
    executed: int = 0
    skipped: int = 0
    executions_done: int = 0
    executions_hedged: int = 0
    executions_unhedged: int = 0
    episodes_ended: int = 0
    callback_errors: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class ArbitrageMonitor:
    def __init__(
        self,
        symbol_map: SymbolMap,
        config: ExecutionConfig,
        *,
        kalshi: KalshiEndpoint,
        ibkr: IbkrEndpoint,
        db_path: str | Path | None = "data/arbkit.sqlite",
        record_path: str | Path | None = None,
        confirm_live: bool = False,
        spread_interval_ms: int = 1_000,
        redecide_ms: int = 1_000,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.symbol_map = symbol_map
        self.config = config
        self.kalshi_endpoint = kalshi
        self.ibkr_endpoint = ibkr
        self.db_path = Path(db_path) if db_path is not None else None
        self.record_path = Path(record_path) if record_path is not None else None
        self.confirm_live = confirm_live
        self.spread_interval_ms = spread_interval_ms
        self.clock = clock
        self.pipeline = DetectionPipeline(
            symbol_map, config.fees, config.detector, redecide_ms=redecide_ms
        )
        self.latency = StageLatency()
        self.counters = Counters()
        self.recent_opportunities: deque[OpportunityView] = deque(maxlen=200)
        self.recent_executions: deque[ExecutionRecord] = deque(maxlen=200)
        self.episode_durations_ms: deque[float] = deque(maxlen=10_000)
        self.episode_starts: deque[Opportunity] = deque(maxlen=10_000)
        self.db: Database | None = None
        self.writer: DatabaseWriter | None = None
        self.capture: CaptureWriter | None = None
        self.kalshi_ws: KalshiWebSocket | None = None
        self.kalshi_rest: KalshiRestClient | None = None
        self.ibkr_gw: IbkrGateway | None = None
        self.executor: Executor | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._exec_tasks: set[asyncio.Task[Any]] = set()
        self._subscribers: list[asyncio.Task[Any]] = []
        self._started = False

    # ----------------------------------------------------------------- lifecycle ---
    @property
    def mode(self) -> Mode:
        return self.executor.mode if self.executor is not None else self.config.mode

    async def start(self) -> None:
        ok, why = check_live_allowed(self.config, confirm_flag=self.confirm_live)
        if not ok:
            raise LiveNotConfirmed(why)
        journal: Journal
        if self.db_path is not None:
            self.db = await Database(self.db_path).open()
            self.writer = DatabaseWriter(self.db)
            self.writer.start()
            journal = self.db
        else:
            journal = MemoryJournal()
        if self.record_path is not None:
            self.capture = CaptureWriter(self.record_path)
            self.capture.start()
        ke = self.kalshi_endpoint
        ticker_to_symbol = {s.kalshi_ticker: n for n, s in self.symbol_map.symbols.items()}
        self.kalshi_ws = KalshiWebSocket(
            ke.ws_url,
            ke.auth,
            ticker_to_symbol,
            self._on_kalshi_ticks,
            use_yes_price=ke.use_yes_price,
            on_raw=self._record_kalshi if self.capture is not None else None,
        )
        ie = self.ibkr_endpoint
        self.ibkr_gw = IbkrGateway(
            ie.host,
            ie.port,
            ie.client_id,
            self.symbol_map,
            self._on_ibkr_ticks,
            account=ie.account,
            on_raw=self._record_ibkr if self.capture is not None else None,
            cache_path=ie.cache_path,
        )
        kalshi_client, ibkr_client = self._venue_clients(self.config.mode)
        self.executor = Executor(
            self.config,
            self.symbol_map,
            kalshi_client,
            ibkr_client,
            journal,
            quote=self._paper_quote(kalshi_client, ibkr_client),
            clock=self.clock,
            on_update=self._on_execution_update,
        )
        if self.config.mode is Mode.LIVE:
            report = await self.executor.reconcile()
            log.warning("reconciliation at start: %s", report)
        await self.kalshi_ws.start()
        try:
            await self.ibkr_gw.start()
        except (TimeoutError, OSError, ConnectionError) as exc:
            log.error("IBKR not reachable at start (%s); retrying in the background", exc)
            self._tasks.append(asyncio.create_task(self._retry_ibkr(), name="ibkr-start"))
        if self.config.mode is not Mode.MONITOR:
            await self.executor.refresh_balances()
        self._tasks += [
            asyncio.create_task(self._spread_loop(), name="arbkit-spreads"),
            asyncio.create_task(self._sweep_loop(), name="arbkit-sweep"),
        ]
        self._started = True

    def _record_kalshi(self, raw: str, recv_ts_ns: int) -> None:
        if self.capture is not None:
            self.capture.record_kalshi(raw, recv_ts_ns)

    def _record_ibkr(self, event: dict[str, Any], recv_ts_ns: int) -> None:
        if self.capture is not None:
            self.capture.record_ibkr(event, recv_ts_ns)

    async def _retry_ibkr(self) -> None:
        delay = 0.5
        while self.ibkr_gw is not None:
            await asyncio.sleep(delay)
            try:
                await self.ibkr_gw.start()
                return
            except (TimeoutError, OSError, ConnectionError):
                delay = min(delay * 2, 30.0)

    def _venue_clients(self, mode: Mode) -> tuple[VenueOrderClient, VenueOrderClient]:
        if mode is Mode.LIVE:
            ke = self.kalshi_endpoint
            self.kalshi_rest = KalshiRestClient(ke.rest_url, ke.auth)
            symbol_to_ticker = {n: s.kalshi_ticker for n, s in self.symbol_map.symbols.items()}
            assert self.ibkr_gw is not None
            return KalshiOrderClient(self.kalshi_rest, symbol_to_ticker), IbkrOrderClient(
                self.ibkr_gw
            )
        fees = FeeModel(self.config.fees)
        series = {n: s.kalshi_series for n, s in self.symbol_map.symbols.items()}
        latency = self.config.paper.latency_ms
        kalshi = PaperVenue(
            Venue.KALSHI,
            self._view(Venue.KALSHI),
            lambda sym, fills: fees.kalshi_fee(fills, series[sym]),
            clock=self.clock,
            latency_ms=latency,
            sleep=asyncio.sleep,
        )
        ibkr = PaperVenue(
            Venue.IBKR,
            self._view(Venue.IBKR),
            lambda sym, fills: fees.forecastex_fee(Qty(sum(q for _, q in fills))),
            clock=self.clock,
            latency_ms=latency,
            sleep=asyncio.sleep,
            whole_contracts=True,
        )
        return kalshi, ibkr

    def _view(self, venue: Venue) -> Callable[[str, Outcome], list[tuple[Price, Qty]]]:
        book = self.pipeline.book

        def view(symbol: str, outcome: Outcome) -> list[tuple[Price, Qty]]:
            lad = book[symbol].ladder(venue, outcome)
            return list(lad.levels()) if lad.valid else []

        return view

    def _paper_quote(
        self, kalshi: VenueOrderClient, ibkr: VenueOrderClient
    ) -> Callable[[str, Venue, Outcome], list[tuple[Price, Qty]]]:
        """Live: the book as the venues publish it. Paper: net of our own paper fills."""
        if isinstance(kalshi, PaperVenue) and isinstance(ibkr, PaperVenue):
            paper = {Venue.KALSHI: kalshi, Venue.IBKR: ibkr}
            return lambda s, v, o: paper[v].effective_levels(s, o)
        return lambda s, v, o: self._view(v)(s, o)

    async def stop(self) -> None:
        for t in self._subscribers + self._tasks:
            t.cancel()
        for t in self._subscribers + self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self._subscribers.clear()
        if self._exec_tasks:  # let running executions finish (they journal as they go)
            await asyncio.wait(self._exec_tasks, timeout=10)
        if self.kalshi_ws is not None:
            await self.kalshi_ws.stop()
        gw, self.ibkr_gw = self.ibkr_gw, None
        if gw is not None:
            await gw.stop()
        if self.kalshi_rest is not None:
            await self.kalshi_rest.aclose()
        if self.executor is not None and self.db is not None:
            await self._write_positions()
        if self.capture is not None:
            await self.capture.close()
        if self.writer is not None:
            await self.writer.stop()
        if self.db is not None:
            await self.db.close()
        self._started = False

    async def __aenter__(self) -> ArbitrageMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ hot path ---
    def _on_kalshi_ticks(self, ticks: list[NormalizedTick]) -> None:
        self._on_ticks(Venue.KALSHI, ticks)

    def _on_ibkr_ticks(self, ticks: list[NormalizedTick]) -> None:
        self._on_ticks(Venue.IBKR, ticks)

    def _on_ticks(self, venue: Venue, ticks: list[NormalizedTick]) -> None:
        """Called synchronously by a gateway per venue message. Must never raise."""
        try:
            now = self.clock()
            self.pipeline.mark_alive(venue, now)
            self.counters.ticks += len(ticks)
            self.counters.batches += 1
            res = self.pipeline.on_ticks(ticks, now)
            done = self.clock()
            if ticks:
                self.latency.add("receive_to_tick", now - ticks[0].recv_ts_ns)
            if res.evaluated:
                self.latency.add("tick_to_decision", done - now)
            self.episode_starts.extend(res.started)
            for opp in res.decide:
                self._decide(opp)
            for end in res.ended:
                self._episode_end(end)
        except Exception:  # a bug here must not kill the gateway's receive loop
            self.counters.callback_errors += 1
            log.exception("monitor callback failed")

    def _decide(self, opp: Opportunity) -> None:
        assert self.executor is not None
        self.counters.opportunities += 1
        got = self.executor.begin(opp)
        if isinstance(got, Decision):
            decision = "logged" if self.executor.mode is Mode.MONITOR else "skipped"
            reason, execution_id = got.reason, None
            self.counters.skipped += decision == "skipped"
        else:
            decision, reason, execution_id = "executed", "", got.execution_id
            self.counters.executed += 1
        oid = None
        if self.writer is not None:
            oid = self.writer.opportunity(opp, self.executor.mode, decision, reason, execution_id)
        self.recent_opportunities.append(
            OpportunityView(
                opp.detected_ts_ns,
                opp.symbol,
                opp.combo,
                opp.contracts,
                opp.kalshi.limit_price,
                opp.ibkr.limit_price,
                opp.expected_profit,
                opp.net_edge_per_contract,
                opp.annualized_return_bps,
                decision,
                reason,
                execution_id,
            )
        )
        if isinstance(got, Reservation):
            got.opportunity_id = oid
            task = asyncio.get_running_loop().create_task(self._execute(got))
            self._exec_tasks.add(task)
            task.add_done_callback(self._exec_tasks.discard)

    def _episode_end(self, end: EpisodeEnd) -> None:
        self.counters.episodes_ended += 1
        self.episode_durations_ms.append(end.duration_ns / 1e6)

    async def _execute(self, res: Reservation) -> None:
        assert self.executor is not None
        ex = await self.executor.run(res)
        s = ex.stages_ns
        lat = self.latency
        if "leg1_submit" in s:
            lat.add("decision_to_submit", s["leg1_submit"] - s["decided"])
        if s.get("leg1_ack"):
            lat.add("submit_to_ack", s["leg1_ack"] - s["leg1_submit"])
        if "leg2_submit" in s and "leg1_fill" in s:
            lat.add("leg1_fill_to_leg2_submit", s["leg2_submit"] - s["leg1_fill"])
        if "leg2_fill" in s:
            lat.add("leg2_submit_to_fill", s["leg2_fill"] - s["leg2_submit"])
        state = ex.state.value
        if state == "done":
            self.counters.executions_done += 1
        elif state == "hedged":
            self.counters.executions_hedged += 1
        elif state == "unhedged":
            self.counters.executions_unhedged += 1
        self.recent_executions.append(ex)
        if self.db is not None:
            await self._write_positions()

    def _on_execution_update(self, ex: ExecutionRecord) -> None:
        return None

    async def _write_positions(self) -> None:
        assert self.executor is not None and self.db is not None
        now = self.clock()
        for (symbol, venue, outcome), qty in list(self.executor.state.positions.items()):
            await self.db.set_position(symbol, venue, outcome, qty, Money(0), now)

    # ------------------------------------------------------------ periodic tasks ---
    async def _spread_loop(self) -> None:
        while True:
            await asyncio.sleep(self.spread_interval_ms / 1000)
            now = self.clock()
            if self.writer is not None:
                for sym in self.symbol_map.symbols:
                    self.writer.spread(self.pipeline.spread(sym, now))

    async def _sweep_loop(self) -> None:
        """End episodes whose quotes went stale or invalid without a tick on that symbol."""
        while True:
            await asyncio.sleep(0.25)
            now = self.clock()
            for venue, alive in (
                (Venue.KALSHI, self._kalshi_alive()),
                (Venue.IBKR, self._ibkr_alive()),
            ):
                if alive:
                    self.pipeline.mark_alive(venue, now)
            res = self.pipeline.reevaluate_all(now)
            self.episode_starts.extend(res.started)
            for opp in res.decide:
                self._decide(opp)
            for end in res.ended:
                self._episode_end(end)

    def _kalshi_alive(self) -> bool:
        return self.kalshi_ws is not None and self.kalshi_ws.health.connected

    def _ibkr_alive(self) -> bool:
        return self.ibkr_gw is not None and self.ibkr_gw.connected

    # ------------------------------------------------------------- control API ---
    def pause(self) -> None:
        self.pipeline.paused = True

    def resume(self) -> None:
        self.pipeline.paused = False

    @property
    def paused(self) -> bool:
        return self.pipeline.paused

    def set_detector_params(self, **changes: Any) -> None:
        """e.g. ``set_detector_params(min_edge_usd=20_000, max_contracts_per_trade=50)``
        (Money in $0.000001 units). Takes effect on the next evaluation."""
        self.config = replace(self.config, detector=replace(self.config.detector, **changes))
        self.pipeline.set_detector_params(self.config.detector)
        self._push_config()

    def set_fee_params(self, **changes: Any) -> None:
        self.config = replace(self.config, fees=replace(self.config.fees, **changes))
        self.pipeline.set_fee_params(self.config.fees)
        self._push_config()

    def set_risk_limits(self, **changes: Any) -> None:
        self.config = replace(self.config, risk=replace(self.config.risk, **changes))
        self._push_config()

    def _push_config(self) -> None:
        if self.executor is not None:
            self.executor.config = dataclasses.replace(self.config, mode=self.executor.mode)
            self.executor.fees = FeeModel(self.config.fees)

    def set_mode(self, mode: Mode, *, confirm_live: bool = False) -> None:
        """Switch between monitor and paper at run time. Live is only reachable from a
        monitor started in live mode with the explicit confirmation."""
        assert self.executor is not None
        if mode is Mode.LIVE:
            ok, why = check_live_allowed(
                replace(self.config, mode=Mode.LIVE), confirm_flag=confirm_live
            )
            if not ok:
                raise LiveNotConfirmed(why)
            if self.config.mode is not Mode.LIVE:
                raise LiveNotConfirmed(
                    'live trading needs the monitor started from a config with mode = "live"'
                )
        elif self.executor.mode is Mode.LIVE or (
            self.config.mode is Mode.LIVE and mode is Mode.PAPER
        ):
            raise ValueError("a live monitor can only drop to monitor mode; restart for paper")
        self.executor.mode = mode

    def kill(self, reason: str = "kill switch pressed") -> None:
        assert self.executor is not None
        self.executor.kill(reason)

    def reset_kill_switch(self) -> None:
        assert self.executor is not None
        self.executor.reset_kill_switch()

    @property
    def kill_switch(self) -> bool:
        return self.executor is not None and self.executor.state.kill_switch

    # ------------------------------------------------------------------ snapshots ---
    def snapshot(self) -> MonitorSnapshot:
        now = self.clock()
        venues: dict[str, VenueStatus] = {}
        for venue, health, valid, total, connected in self._venue_health():
            age = (now - health.last_message_ns) // 1_000_000 if health.last_message_ns else None
            venues[venue.value] = VenueStatus(
                venue.value,
                connected,
                health.ticks,
                health.bad_frames,
                health.resyncs,
                health.reconnects,
                age,
                valid,
                total,
            )
        ex = self.executor
        hedge = sum(e.hedge_cost for e in self.recent_executions)
        pnl = sum(e.realized_pnl for e in (ex.completed if ex is not None else []))
        c = self.counters
        counters = {
            "ticks": c.ticks,
            "opportunities": c.opportunities,
            "executed": c.executed,
            "skipped": c.skipped,
            "executions_done": c.executions_done,
            "executions_hedged": c.executions_hedged,
            "executions_unhedged": c.executions_unhedged,
            "episodes_ended": c.episodes_ended,
            "callback_errors": c.callback_errors,
            "db_dropped": self.writer.dropped if self.writer is not None else 0,
            "capture_dropped": self.capture.stats.dropped if self.capture is not None else 0,
        }
        return MonitorSnapshot(
            ts_ns=now,
            mode=self.mode,
            paused=self.paused,
            kill_switch=self.kill_switch,
            kill_reason=ex.state.kill_reason if ex is not None else "",
            venues=venues,
            books={s: self.pipeline.spread(s, now) for s in self.symbol_map.symbols},
            opportunities=list(self.recent_opportunities)[-50:],
            executions=list(self.recent_executions)[-50:],
            counters=counters,
            realized_pnl=Money(pnl),
            hedge_cost=Money(hedge),
            positions=dict(ex.state.positions) if ex is not None else {},
            latency=self.latency.summary(),
            active_episodes=len(self.pipeline.episodes),
        )

    def _venue_health(self) -> list[tuple[Venue, Any, int, int, bool]]:
        out: list[tuple[Venue, Any, int, int, bool]] = []
        book = self.pipeline.book
        for venue, gw in ((Venue.KALSHI, self.kalshi_ws), (Venue.IBKR, self.ibkr_gw)):
            if gw is None:
                continue
            valid = sum(
                1 for b in book.books.values() if all(b.ladder(venue, o).valid for o in Outcome)
            )
            connected = gw.health.connected
            out.append((venue, gw.health, valid, len(book.books), connected))
        return out

    def subscribe(
        self, callback: Callable[[MonitorSnapshot], Awaitable[None] | None], rate_hz: float = 5.0
    ) -> asyncio.Task[None]:
        """Call ``callback(snapshot)`` at ``rate_hz`` until cancelled (or the monitor stops).
        The hot path never waits for it: snapshots are taken on the timer."""
        period = 1.0 / rate_hz

        async def loop() -> None:
            while True:
                await asyncio.sleep(period)
                try:
                    r = callback(self.snapshot())
                    if asyncio.iscoroutine(r):
                        await r
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("snapshot subscriber failed")

        task = asyncio.get_running_loop().create_task(loop(), name="arbkit-subscriber")
        self._subscribers.append(task)
        return task
