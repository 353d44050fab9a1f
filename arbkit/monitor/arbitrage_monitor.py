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
import datetime as dt
import functools
import hashlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from filelock import FileLock
from filelock import Timeout as LockTimeout

from arbkit.arbitrage.fee_model import FeeModel, SeriesFee, UnknownFeeType
from arbkit.arbitrage.pipeline import DetectionPipeline, EpisodeEnd, SpreadSample
from arbkit.config.execution_loader import (
    ExecutionConfig,
    check_bounds,
    check_live_allowed,
    usd_text,
)
from arbkit.config.loader import SymbolMap, symbol_map_toml
from arbkit.execution.consumption import OwnFills
from arbkit.execution.executor import Decision, Executor, Reservation
from arbkit.execution.journal import AuditRecord, ExecutionRecord, Journal, MemoryJournal
from arbkit.execution.machine import execution_bound_ms
from arbkit.execution.paper import PaperVenue
from arbkit.execution.reconcile import ReconcileConfig, Reconciler, ReconcileReport
from arbkit.execution.risk import (
    BREACHES,
    TradingState,
    coupon_values,
    mark_to_market,
    trading_day_start_ns,
)
from arbkit.execution.venue import VenueOrderClient
from arbkit.gateways.ibkr_client import IbkrGateway
from arbkit.gateways.ibkr_orders import IbkrOrderClient
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.gateways.kalshi_orders import KalshiOrderClient
from arbkit.gateways.kalshi_rest import KalshiApiError, KalshiRestClient
from arbkit.gateways.kalshi_websocket import KalshiWebSocket
from arbkit.model import (
    MONEY_SCALE,
    QTY_SCALE,
    Mode,
    Money,
    NormalizedTick,
    Opportunity,
    Outcome,
    Price,
    Qty,
    Venue,
)
from arbkit.monitor.metrics import LatencySummary, StageLatency
from arbkit.normalizers.kalshi_normalizer import LifecycleEvent
from arbkit.normalizers.market_status import (
    KALSHI_LIFECYCLE,
    KALSHI_STATUS,
    MarketClock,
    MarketStatus,
    ibkr_last_trade_ns,
    ibkr_sessions,
)
from arbkit.storage.capture import CaptureWriter
from arbkit.storage.database import Database, DatabaseWriter, config_digest
from arbkit.storage.records import (
    CouponAccrual,
    SettlementRow,
    TradingStateRow,
    paper_settlement,
)

log = logging.getLogger(__name__)


class LiveNotConfirmed(RuntimeError):
    """Live trading was configured but not explicitly confirmed at start."""


class MonitorRefused(RuntimeError):
    """The monitor will not start as configured; the message says what to do instead."""


class MonitorLocked(MonitorRefused):
    """Another monitor already writes this database or trades this account."""


class KalshiKeyRejected(MonitorRefused):
    """Kalshi answered 401/403 to the API key at start: retrying cannot fix it (the key
    is for another environment, revoked, or the key file does not match the id)."""


class LiveNeedsJournal(MonitorRefused):
    """Live mode without a durable journal (``db_path=None``)."""


LOCK_DIR_ENV = "ARBKIT_LOCK_DIR"
DEFAULT_LOCK_DIR = Path("~/.cache/arbkit/locks")


def lock_dir(explicit: Path | None = None) -> Path:
    """Where per-account locks live: ``explicit``, else ``$ARBKIT_LOCK_DIR``, else
    ``~/.cache/arbkit/locks``."""
    if explicit is not None:
        return explicit
    env = os.environ.get(LOCK_DIR_ENV)
    return Path(env) if env else DEFAULT_LOCK_DIR.expanduser()


def account_lock_path(directory: Path, venue: Venue, account: str) -> Path:
    """One lock file per venue account, named from a hash (the id itself is not written)."""
    digest = hashlib.sha256(f"arbkit|{venue.value}|{account}".encode()).hexdigest()[:32]
    return directory / f"account-{venue.value}-{digest}.lock"


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
    trading_state: str = "active"
    state_reason: str = ""
    blocked_symbols: dict[str, str] = field(default_factory=dict)
    exposure: Money = Money(0)
    balances: dict[str, Money | None] = field(default_factory=dict)
    # Capital tied up until settlement: cost basis of the positions held, per venue.
    committed: dict[str, Money] = field(default_factory=dict)
    # What those positions would fetch now ($1 − the opposite outcome's best ask)
    mark_to_market: dict[str, Money] = field(default_factory=dict)
    kalshi_balance_breakdown: dict[int, Money] = field(default_factory=dict)  # per shard
    # ForecastEx coupon accrued on the positions (this mode, every run), and the rate now
    coupon_accrued: Money = Money(0)
    coupon_bps: int = 0
    # The monitor's event alerts (fee drift, symbol blocked): (ts_ns, symbol, why), newest last
    alerts: list[tuple[int, str, str]] = field(default_factory=list)
    # Latency histogram per stage over each ring's window: counts per bucket of
    # ``latency_edges_ms`` (len(edges) + 1 buckets: below the first edge … above the last)
    latency_edges_ms: tuple[float, ...] = ()
    latency_hist: dict[str, list[int]] = field(default_factory=dict)


_OUTCOME_OF = {"yes": Outcome.YES, "no": Outcome.NO}  # Kalshi result → outcome


DAY_NS = 86_400 * 1_000_000_000
_EPOCH_DATE = dt.date(1970, 1, 1)


def _day_index(d: dt.date) -> int:
    return (d - _EPOCH_DATE).days


def _ns(t: datetime | None) -> int:
    return int(t.timestamp()) * 1_000_000_000 if t is not None else 0


@dataclass
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
        reconcile_interval_s: float = 30.0,
        venue_connect_timeout_s: float = 10.0,
        reconcile_config: ReconcileConfig | None = None,
        lock_dir: Path | None = None,
        stop_grace_s: float = 2.0,
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
        self._kalshi_in_time = True  # last Kalshi message within max_venue_lag_ms
        self.run_id = ""  # this run's id in the database (runs table)
        self.own_fills = {Venue.KALSHI: OwnFills(), Venue.IBKR: OwnFills()}
        self.market_clocks: dict[str, MarketClock] = {}  # symbol → both venues' market state
        self._settled: dict[Venue, set[str]] = {}  # symbols whose payout is recorded, per venue
        self.series_fees: dict[str, SeriesFee] = {}  # what Kalshi says each series charges
        self._fee_problems: dict[str, str] = {}  # series → why it cannot be priced
        self.market_fees: dict[str, SeriesFee] = {}  # ticker → its event's fee override
        self.coupon_accruals: list[CouponAccrual] = []  # this run's
        self.coupon_accrued: Money = Money(0)  # this mode, every run (from the journal)
        self._coupon_day: int | None = None  # the last UTC day (days since epoch) accrued
        self._fee_changes: list[tuple[int, str, SeriesFee]] = []  # scheduled, oldest first
        self.settlements: list[SettlementRow] = []  # this run's payouts, both venues
        self.recent_opportunities: deque[OpportunityView] = deque(maxlen=200)
        self.recent_executions: deque[ExecutionRecord] = deque(maxlen=200)
        self.episode_durations_ms: deque[float] = deque(maxlen=10_000)
        self.episode_starts: deque[Opportunity] = deque(maxlen=10_000)
        self.db: Database | None = None
        self.writer: DatabaseWriter | None = None
        self.capture: CaptureWriter | None = None
        self.kalshi_ws: KalshiWebSocket | None = None
        self.kalshi_rest: KalshiRestClient | None = None
        self.kalshi_orders: KalshiOrderClient | None = None  # live only (user stream)
        self.ibkr_gw: IbkrGateway | None = None
        self.executor: Executor | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._exec_tasks: set[asyncio.Task[Any]] = set()
        self._subscribers: list[asyncio.Task[Any]] = []
        self._started = False
        self.reconcile_interval_s = reconcile_interval_s
        self.venue_connect_timeout_s = venue_connect_timeout_s
        self.reconcile_config = reconcile_config
        self.lock_dir = lock_dir
        self.stop_grace_s = stop_grace_s
        self.reconciler: Reconciler | None = None
        self.reconcile_reports: deque[ReconcileReport] = deque(maxlen=100)
        self._reconcile_lock = asyncio.Lock()
        self._start_reconciled = False
        self._inflight: dict[str, str] = {}  # execution id → symbol, while it runs
        self._locks: list[FileLock] = []
        self._ibkr_locked = False
        self.state_changes: list[TradingStateRow] = []  # this run's, also in the journal
        self._state_write: asyncio.Task[None] | None = None
        self.alerts: deque[tuple[int, str, str]] = deque(maxlen=200)  # (ts, symbol, why)
        self.unverified: dict[str, list[str]] = {}  # symbol → what its equivalence lacks

    # ----------------------------------------------------------------- lifecycle ---
    @property
    def mode(self) -> Mode:
        return self.executor.mode if self.executor is not None else self.config.mode

    async def start(self) -> None:
        """Live: lock the database and the accounts, connect BOTH venues (bounded wait),
        sync them, reconcile, and only then allow trading. A venue that is unreachable
        keeps trading refused until it is connected, synced and reconciled."""
        ok, why = check_live_allowed(self.config, confirm_flag=self.confirm_live)
        if not ok:
            raise LiveNotConfirmed(why)
        live = self.config.mode is Mode.LIVE
        if live and self.db_path is None:
            raise LiveNeedsJournal(
                "live trading needs a durable journal: db_path=None keeps it in memory, so a "
                "crash would lose what was sent. Pass a database path (arbkit monitor --db)."
            )
        try:
            await self._start(live)
        except BaseException:
            await self._teardown()
            raise

    async def _check_kalshi_key(self) -> None:
        """One signed read before anything subscribes: a rejected key is fatal at start,
        not an endless reconnect loop. A venue that is down is not (the feeds retry)."""
        assert self.kalshi_rest is not None
        try:
            await asyncio.wait_for(self.kalshi_rest.get_balance(), self.venue_connect_timeout_s)
        except KalshiApiError as exc:
            if exc.status in (401, 403):
                ke = self.kalshi_endpoint
                raise KalshiKeyRejected(
                    f"Kalshi rejected API key {ke.auth.key_id} at {ke.rest_url} "
                    f"(HTTP {exc.status} {exc.code or exc.message})".rstrip()
                ) from None
            log.warning("kalshi: key check at start failed (%s); the feeds will retry", exc)
        except TimeoutError:
            log.warning("kalshi: no answer at start; the feeds will retry")

    def _lock(self, path: Path, what: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except LockTimeout:
            raise MonitorLocked(
                f"{what} is in use by another arbkit monitor (lock {path}). Stop that monitor "
                "first; two monitors on one database or account would both trade."
            ) from None
        self._locks.append(lock)

    def _lock_ibkr_account(self) -> None:
        gw = self.ibkr_gw
        if self._ibkr_locked or gw is None:
            return
        account = gw.account or f"{gw.host}:{gw.port}"
        self._lock(
            account_lock_path(lock_dir(self.lock_dir), Venue.IBKR, account),
            "the IBKR account",
        )
        self._ibkr_locked = True

    async def _start(self, live: bool) -> None:
        if self.db_path is not None:
            self._lock(Path(f"{self.db_path}.lock"), f"database {self.db_path}")
        if live:
            self._lock(
                account_lock_path(
                    lock_dir(self.lock_dir), Venue.KALSHI, self.kalshi_endpoint.auth.key_id
                ),
                "the Kalshi account (API key)",
            )
            if self.ibkr_endpoint.account:
                self._lock_ibkr_account_id(self.ibkr_endpoint.account)
        journal: Journal
        if self.db_path is not None:
            self.db = await Database(self.db_path).open()
            self.run_id = await self.db.begin_run(
                self.config.mode.value,
                config_digest(self.config, self.symbol_map),
                " ".join(sys.argv),
            )
            self.writer = DatabaseWriter(self.db)
            self.writer.start()
            journal = self.db
        else:
            journal = MemoryJournal()
        if self.record_path is not None:
            self.capture = CaptureWriter(
                self.record_path,
                symbol_map_text=symbol_map_toml(
                    self.symbol_map,
                    [f"The symbol map this capture ({Path(self.record_path).name}) was "
                     "recorded with: arbkit replay reads it when --symbols is not given."],
                ),
            )  # fmt: skip
            self.capture.start()
        ke = self.kalshi_endpoint
        # Market states and close times are read in every mode (orders only in live).
        self.kalshi_rest = KalshiRestClient(ke.rest_url, ke.auth)
        ticker_to_symbol = {s.kalshi_ticker: n for n, s in self.symbol_map.symbols.items()}
        self.kalshi_ws = KalshiWebSocket(
            ke.ws_url,
            ke.auth,
            ticker_to_symbol,
            self._on_kalshi_ticks,
            use_yes_price=ke.use_yes_price,
            on_raw=self._record_kalshi if self.capture is not None else None,
            on_lifecycle=self._on_lifecycle,
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
            # A quiet contract is re-requested well inside the quote-age bound, so a
            # healthy quiet book stays fresh and a frozen one is caught.
            stale_after_ms=max(50, min(5_000, self.config.detector.max_quote_age_ms // 2)),
        )
        kalshi_client, ibkr_client = self._venue_clients(self.config.mode)
        self.executor = Executor(
            self.config,
            self.symbol_map,
            kalshi_client,
            ibkr_client,
            journal,
            quote=self._paper_quote(kalshi_client, ibkr_client),
            own_fills=None if self._paper(kalshi_client, ibkr_client) else self.own_fills,
            raw_quote=lambda s, v, o: self._view(v)(s, o),
            clock=self.clock,
            on_update=self._on_execution_update,
            on_state_change=self._on_state_change,
            on_alert=self._on_alert,
        )
        if self.db is not None:
            await self._restore_risk()
        self.unverified = {
            name: missing
            for name, spec in self.symbol_map.symbols.items()
            if (missing := spec.equivalence.missing_for_live())
        }
        if self.unverified:
            log.warning(
                "%d symbols are not verified (%s): %s",
                len(self.unverified),
                "live refuses them" if live else f"{self.config.mode.value} mode runs them",
                "; ".join(f"{s} lacks {', '.join(m)}" for s, m in self.unverified.items()),
            )
        if live:
            # No trading until both venues are connected, synced and reconciled.
            self.executor.venue_up = {Venue.KALSHI: False, Venue.IBKR: False}
            cfg = self.reconcile_config or ReconcileConfig.from_params(self.config.execution)
            self.reconciler = Reconciler(
                {Venue.KALSHI: kalshi_client, Venue.IBKR: ibkr_client},
                journal,
                self.symbol_map.symbols,
                self.executor.state.positions,
                halt=functools.partial(self.executor.kill, actor="reconciliation"),
                clock=self.clock,
                config=dataclasses.replace(cfg, id_prefix=f"{self.executor.id_prefix}-"),
                busy=lambda: set(self._inflight.values()),
                activity=self.executor.state.last_execution_ns,
            )
        await self._check_kalshi_key()
        await self.kalshi_ws.start()
        try:
            await asyncio.wait_for(self.ibkr_gw.start(), self.venue_connect_timeout_s)
        except (TimeoutError, OSError, ConnectionError) as exc:
            log.error("IBKR not reachable at start (%s); retrying in the background", exc)
            self._tasks.append(asyncio.create_task(self._retry_ibkr(), name="ibkr-start"))
        self.executor.market_clocks = self.market_clocks
        await self._read_kalshi_markets()
        await self._read_series_fees()
        self._read_ibkr_schedules()
        if live:
            with contextlib.suppress(TimeoutError):
                await self.kalshi_ws.wait_connected(self.venue_connect_timeout_s)
            if self.kalshi_orders is not None:
                try:  # the stream reconnects by itself; "up" waits for it
                    await self.kalshi_orders.start_stream(self.venue_connect_timeout_s)
                except TimeoutError:
                    log.error("Kalshi user stream not subscribed at start; trading waits")
            if self._ibkr_alive():
                self._lock_ibkr_account()
            if self._kalshi_alive() and self._ibkr_alive():
                await self._resync("start")
            else:
                log.error(
                    "live: %s unreachable at start; trading is refused until both venues "
                    "are connected, synced and reconciled",
                    ", ".join(
                        v
                        for v, up in (
                            ("kalshi", self._kalshi_alive()),
                            ("ibkr", self._ibkr_alive()),
                        )
                        if not up
                    ),
                )
            self._tasks += [
                asyncio.create_task(self._venue_watch(), name="arbkit-venue-watch"),
                asyncio.create_task(self._reconcile_loop(), name="arbkit-reconcile"),
            ]
        if self.config.mode is not Mode.MONITOR:
            await self.executor.refresh_balances()
            self._tasks.append(asyncio.create_task(self._balance_loop(), name="arbkit-balances"))
        self._tasks += [
            asyncio.create_task(self._spread_loop(), name="arbkit-spreads"),
            asyncio.create_task(self._sweep_loop(), name="arbkit-sweep"),
        ]
        self._started = True

    async def _restore_risk(self) -> None:
        """Rebuild the limits from the journal, never from zero: the trading state (a halt
        survives until the user lifts it), today's realised loss, the failure streak, and
        the positions with their cost basis (live: corrected to venue truth by the
        reconciliation at start)."""
        assert self.executor is not None and self.db is not None
        st = self.executor.state
        rows = await self.db.trading_state_rows(limit=1)
        if rows:
            st.trading_state = TradingState(rows[-1].to_state)
            st.state_reason = rows[-1].reason
            if st.trading_state is not TradingState.ACTIVE:
                log.error(
                    "trading state at start: %s since the last run (%s); only the user lifts "
                    "a halt (monitor.reset_kill_switch() or arbkit state --resume)",
                    st.trading_state.value,
                    st.state_reason,
                )
        now = self.clock()
        st.trading_day_start_ns = trading_day_start_ns(now, self.config.risk)
        hist = await self.db.risk_history(self.mode, st.trading_day_start_ns)
        st.realized_pnl_today = Money(-hist.loss_today)
        st.consecutive_failures = hist.consecutive_failures
        held_since: list[int] = []
        for p in await self.db.positions():
            if p.qty:
                st.positions[(p.symbol, p.venue, p.outcome)] = p.qty
                st.cost_basis[(p.symbol, p.venue, p.outcome)] = p.cost
                if p.venue is Venue.IBKR:
                    held_since.append(p.updated_ns)
        # The coupon resumes after the last day accrued; a first run accrues from the day
        # the oldest held ForecastEx position was last changed (nothing trades while down).
        accrued = await self.db.coupon_accruals(self.mode)
        self.coupon_accrued = Money(sum(a.accrued for a in accrued))
        last = await self.db.last_coupon_day(self.mode)
        if last is not None:
            self._coupon_day = _day_index(dt.date.fromisoformat(last))
        elif held_since:
            self._coupon_day = min(held_since) // DAY_NS - 1
        for check in BREACHES:
            ok, reason = check(st, self.config.risk)
            if not ok:
                self.executor.kill(reason)

    def _on_state_change(
        self, ts_ns: int, old: TradingState, new: TradingState, reason: str, actor: str
    ) -> None:
        """Every state change is a journal row (written in order, awaited at stop)."""
        self.state_changes.append(TradingStateRow(ts_ns, old.value, new.value, reason, actor))
        if self.db is None:
            return
        row = self.state_changes[-1]
        prev = self._state_write

        async def write() -> None:
            if prev is not None:
                with contextlib.suppress(Exception):
                    await prev
            assert self.db is not None
            await self.db.record_trading_state(row)

        self._state_write = asyncio.get_running_loop().create_task(write())

    def _on_alert(self, symbol: str, reason: str) -> None:
        self.alerts.append((self.clock(), symbol, reason))
        self.counters.extra["symbols_blocked"] = self.counters.extra.get("symbols_blocked", 0) + 1
        self._audit(AuditRecord(self.clock(), "", "", "symbol_blocked", "", symbol, reason, "risk"))

    def _check_fee_drift(self, ex: ExecutionRecord) -> None:
        """A venue charged more than the fee model said for the same fills: the model (or
        the venue's schedule) changed, and every edge computed since is too optimistic.
        Alert (ERROR log, audit row ``fee_drift``, counter); the ``v_fee_drift`` view
        lists every difference, either way."""
        for o in ex.orders:
            if o.filled_qty and o.fees > o.fees_estimated:
                x = self.counters.extra
                x["fee_drift"] = x.get("fee_drift", 0) + 1
                why = (
                    f"{o.venue.value} charged {usd_text(o.fees)} USD for "
                    f"{o.filled_qty / QTY_SCALE:g} contracts of {o.symbol}; the fee model says "
                    f"{usd_text(o.fees_estimated)} USD"
                )
                log.error("ALERT fee drift: %s (%s)", why, o.client_order_id)
                self.alerts.append((self.clock(), o.symbol, f"fee drift: {why}"))
                self._audit(
                    AuditRecord(
                        self.clock(),
                        o.execution_id,
                        o.client_order_id,
                        "fee_drift",
                        str(o.fees_estimated),
                        str(o.fees),
                        why,
                        o.venue.value,
                    )
                )

    def _audit(self, row: AuditRecord) -> None:
        if self.db is not None:
            self._spawn(self.db.record_audit(row), "arbkit-audit")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A background write/read the teardown waits for (``_exec_tasks``)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._exec_tasks.add(task)
        task.add_done_callback(self._exec_tasks.discard)

    async def _balance_loop(self) -> None:
        assert self.executor is not None
        while True:
            await asyncio.sleep(self.config.risk.balance_refresh_ms / 1000)
            try:
                await self.executor.refresh_balances()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("balance refresh failed")

    def _lock_ibkr_account_id(self, account: str) -> None:
        self._lock(
            account_lock_path(lock_dir(self.lock_dir), Venue.IBKR, account), "the IBKR account"
        )
        self._ibkr_locked = True

    # ----------------------------------------------------------- reconciliation ---
    def _health_marks(self) -> tuple[int, int, int]:
        k = self.kalshi_ws.health.reconnects if self.kalshi_ws is not None else 0
        i = self.ibkr_gw.health.reconnects if self.ibkr_gw is not None else 0
        stream = self.kalshi_orders.stream if self.kalshi_orders is not None else None
        return k, i, stream.reconnects if stream is not None else 0

    async def _resync(self, why: str) -> bool:
        """Sync both venues' clients (``client.sync()`` where a client has one), reconcile,
        and mark the venues up only if nothing dropped meanwhile. Returns True if up."""
        assert self.executor is not None and self.reconciler is not None
        ex = self.executor
        marks = self._health_marks()
        async with self._reconcile_lock:
            for client in (ex.kalshi, ex.ibkr):
                sync = getattr(client, "sync", None)
                if sync is not None:
                    await sync()
            if not self._start_reconciled:
                recorded = (
                    {(p.symbol, p.venue, p.outcome): p.qty for p in await self.db.positions()}
                    if self.db is not None
                    else None
                )
                report = await self.reconciler.at_start(recorded)
                self._start_reconciled = True
                log.warning("reconciliation at %s: %s", why, _summary(report))
                self.reconcile_reports.append(report)
            else:
                # Two passes spaced by the read-lag tolerance: a mismatch that persists halts.
                for i in range(self.reconciler.config.confirm_passes):
                    if i:
                        await asyncio.sleep(self.reconciler.config.miss_window_s)
                    report = await self.reconciler.periodic(set(self._inflight))
                    self.reconcile_reports.append(report)
                log.warning("reconciliation after %s: %s", why, _summary(report))
            if self.db is not None:
                await self._write_positions()
        if marks != self._health_marks() or not (self._kalshi_alive() and self._ibkr_alive()):
            return False  # dropped while we looked: look again once it is back
        if self.mode is not Mode.MONITOR:
            await ex.refresh_balances()  # before trading resumes: a balance is not stale
        ex.venue_up = {Venue.KALSHI: True, Venue.IBKR: True}
        return True

    async def _venue_watch(self) -> None:
        """Keep ``executor.venue_up`` current: down on a disconnect, up only after a
        reconnect AND a re-sync + reconciliation."""
        assert self.executor is not None
        ex = self.executor
        marks = self._health_marks()
        need = not all(ex.venue_up.values())
        while True:
            await asyncio.sleep(0.05)
            alive = {Venue.KALSHI: self._kalshi_alive(), Venue.IBKR: self._ibkr_alive()}
            now_marks = self._health_marks()
            if now_marks != marks:
                need = True
            for v, up in alive.items():
                if not up:
                    if ex.venue_up[v]:
                        log.warning("%s unreachable: trading refused until resynced", v.value)
                    ex.venue_up[v] = False
                    need = True
            if need and all(alive.values()) and not ex.stopping:
                for v in ex.venue_up:
                    ex.venue_up[v] = False
                try:
                    self._lock_ibkr_account()
                except MonitorLocked as exc:
                    ex.kill(str(exc))
                    log.error("%s", exc)
                try:
                    up = await self._resync("reconnect" if self._start_reconciled else "start")
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("resync failed; trading stays refused, trying again")
                    await asyncio.sleep(1.0)
                    continue
                marks = self._health_marks() if up else marks
                need = not up

    async def _reconcile_loop(self) -> None:
        assert self.executor is not None and self.reconciler is not None
        while True:
            await asyncio.sleep(self.reconcile_interval_s)
            ex = self.executor
            if ex.stopping or not all(ex.venue_up.values()):
                continue
            try:
                async with self._reconcile_lock:
                    await self._check_ibkr_settlements()  # a payout is not a mismatch
                    report = await self.reconciler.periodic(set(self._inflight))
                self.reconcile_reports.append(report)
                if not report.ok:
                    log.error("reconciliation: %s", _summary(report))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("periodic reconciliation failed")

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
                self._read_ibkr_schedules()
                return
            except (TimeoutError, OSError, ConnectionError):
                delay = min(delay * 2, 30.0)

    # ---------------------------------------------------------- market states ---
    async def _read_kalshi_markets(self) -> None:
        """State and real close time of every mapped Kalshi market (REST). A market we
        could not read stays UNKNOWN, which refuses new executions on it."""
        rest = self.kalshi_rest
        if rest is None:
            return
        for name, spec in self.symbol_map.symbols.items():
            clock = self.market_clocks.setdefault(name, MarketClock())
            try:
                m = await rest.get_market(spec.kalshi_ticker)
            except Exception as exc:  # unreachable, 404, bad JSON: unknown, not open
                log.error("kalshi market %s unreadable (%s): not traded", spec.kalshi_ticker, exc)
                continue
            status = KALSHI_STATUS.get(m.status, MarketStatus.UNKNOWN)
            self._set_kalshi_status(name, status, f"REST status {m.status!r}")
            if m.result:
                clock.kalshi_result = m.result
            if status is MarketStatus.SETTLED and self._started:
                self._spawn(self._settle(name), "arbkit-settle")
            clock.kalshi_close_ns = _ns(m.close_time)
            clock.kalshi_expected_expiration_ns = _ns(m.expected_expiration_time)
            clock.kalshi_event = m.event_ticker

    async def _read_series_fees(self) -> None:
        """Each mapped series' fee type and multiplier from Kalshi (``GET /series/{t}``)
        and its scheduled changes: the venue's word beats the config's multipliers. A
        series whose fee cannot be read, or whose type the model does not compute, is
        not traded (``MarketClock.fee_problem``)."""
        rest = self.kalshi_rest
        if rest is None:
            return
        for series in sorted({s.kalshi_series for s in self.symbol_map.symbols.values()}):
            try:
                got = await rest.get_series_fee(series)
                changes = await rest.get_series_fee_changes(series)
            except Exception as exc:
                self._fee_problems[series] = f"Kalshi series {series} fee unreadable ({exc})"
                log.error("%s: not traded", self._fee_problems[series])
                continue
            self.series_fees[series] = SeriesFee(got.fee_type, got.fee_multiplier)
            for c in changes:
                if c.scheduled_ns:
                    self._fee_changes.append(
                        (c.scheduled_ns, series, SeriesFee(c.fee_type, c.fee_multiplier))
                    )
            configured = self.config.fees.kalshi_series_multipliers.get(series)
            if configured is not None and configured != got.fee_multiplier:
                log.warning(
                    "Kalshi series %s: fee_multiplier %s at the venue, %s in the config; "
                    "the venue's is used", series, got.fee_multiplier, configured,
                )  # fmt: skip
        self._fee_changes.sort(key=lambda c: (c[0], c[1]))
        await self._read_event_fees()
        self._apply_series_fees()

    async def _read_event_fees(self) -> None:
        """Each mapped market's event fee override in force now (``GET /events/{t}``);
        after that, ``event_fee_update`` frames keep it current. An event whose override
        cannot be read is not traded."""
        rest = self.kalshi_rest
        if rest is None:
            return
        events: dict[str, list[str]] = {}
        for name, spec in self.symbol_map.symbols.items():
            clock = self.market_clocks.get(name)
            if clock is not None and clock.kalshi_event:
                events.setdefault(clock.kalshi_event, []).append(spec.kalshi_ticker)
        for event, tickers in sorted(events.items()):
            fee: SeriesFee | None
            try:
                got = await rest.get_event_fee_override(event)
                fee = None if got is None else SeriesFee(got.fee_type, got.fee_multiplier)
            except Exception as exc:  # unknown override: not traded ("unreadable" type)
                fee = SeriesFee("unreadable", Decimal(0))
                log.error("Kalshi event %s fee override unreadable (%s)", event, exc)
            for t in tickers:
                if fee is None:
                    self.market_fees.pop(t, None)
                else:
                    self.market_fees[t] = fee

    def _on_event_fee(self, ev: LifecycleEvent) -> None:
        """An event-level fee override (``event_fee_update``): it applies to the event's
        markets only, so it goes on each mapped market of the event by ticker (other
        markets of the series keep the series' fee). A cleared override (no fee type)
        returns them to the series' fee; a type the model cannot compute stops them."""
        names = [n for n, c in self.market_clocks.items() if c.kalshi_event == ev.event_ticker]
        if not names:
            return
        fee: SeriesFee | None = None
        if ev.fee_type is not None:
            try:
                fee = SeriesFee(ev.fee_type, Decimal(ev.fee_multiplier or "1"))
            except ArithmeticError:
                fee = SeriesFee("unreadable", Decimal(0))
        for name in names:
            ticker = self.symbol_map.symbols[name].kalshi_ticker
            if fee is None:
                self.market_fees.pop(ticker, None)
            else:
                self.market_fees[ticker] = fee
        log.warning(
            "Kalshi event %s: fee override %s for %s",
            ev.event_ticker,
            "cleared" if fee is None else f"{fee.fee_type} x{fee.multiplier}",
            ", ".join(sorted(names)),
        )
        self._apply_series_fees()

    def _apply_fee_changes(self, now_ns: int) -> None:
        """Scheduled fee changes whose time has come (checked by the sweep loop)."""
        due = [c for c in self._fee_changes if c[0] <= now_ns]
        if not due:
            return
        self._fee_changes = [c for c in self._fee_changes if c[0] > now_ns]
        for _, series, fee in due:
            log.warning(
                "Kalshi series %s: scheduled fee change now in force: %s x%s",
                series, fee.fee_type, fee.multiplier,
            )  # fmt: skip
            self.series_fees[series] = fee
        self._apply_series_fees()

    def _apply_series_fees(self) -> None:
        """Put the venue's series fees and event overrides into every fee model (detector
        and executor); mark the markets whose fee the model cannot price."""
        models = [self.pipeline.detector.fee_model]
        if self.executor is not None:
            models.append(self.executor.fees)
        problems = dict(self._fee_problems)
        for series, fee in self.series_fees.items():
            try:
                for m in models:
                    m.set_series_fee(series, fee)
            except UnknownFeeType as exc:
                problems[series] = str(exc)
        market_problems: dict[str, str] = {}
        for m in models:
            for ticker in set(m.market_fees) - set(self.market_fees):
                m.set_market_fee(ticker, None)
        for ticker, fee in self.market_fees.items():
            try:
                for m in models:
                    m.set_market_fee(ticker, fee)
            except UnknownFeeType as exc:
                market_problems[ticker] = f"event fee override: {exc}"
                for m in models:
                    m.set_market_fee(ticker, None)
        for name, spec in self.symbol_map.symbols.items():
            clock = self.market_clocks.setdefault(name, MarketClock())
            # an override replaces the series' fee for its market, problem included
            if spec.kalshi_ticker in self.market_fees:
                problem = market_problems.get(spec.kalshi_ticker, "")
            else:
                problem = problems.get(spec.kalshi_series, "")
            was, clock.fee_problem = clock.fee_problem, problem
            if clock.fee_problem and clock.fee_problem != was:
                log.error("%s: %s", name, clock.fee_problem)

    def _read_ibkr_schedules(self) -> None:
        """Last trade time and trading hours of each symbol's ForecastEx pair."""
        gw = self.ibkr_gw
        if gw is None:
            return
        for name in self.symbol_map.symbols:
            clock = self.market_clocks.setdefault(name, MarketClock())
            closes: list[int] = []
            sessions: list[tuple[int, int]] | None = None
            listed = True
            try:
                for outcome in (Outcome.YES, Outcome.NO):
                    con_id = gw.contracts.get((name, outcome))
                    sch = gw.schedule.get(con_id) if con_id is not None else None
                    if sch is None:
                        raise LookupError("contract not resolved")
                    if sch.last_trade_date:
                        closes.append(
                            ibkr_last_trade_ns(
                                sch.last_trade_date, sch.last_trade_time, sch.time_zone_id
                            )
                        )
                    if sch.trading_hours is not None:
                        listed = listed and bool(sch.trading_hours)
                        sessions = ibkr_sessions(sch.trading_hours, sch.time_zone_id)
            except (LookupError, ValueError) as exc:
                if not isinstance(exc, LookupError):
                    log.error("ibkr schedule for %s unreadable (%s): not traded", name, exc)
                continue
            clock.ibkr_close_ns = min(closes) if closes else 0
            clock.ibkr_sessions = sessions or []
            clock.ibkr_hours_listed = listed
            clock.ibkr_known = True

    def _set_kalshi_status(self, symbol: str, status: MarketStatus, why: str) -> None:
        clock = self.market_clocks.setdefault(symbol, MarketClock())
        if clock.kalshi_status is status:
            return
        was, clock.kalshi_status = clock.kalshi_status, status
        level = logging.INFO if status is MarketStatus.OPEN else logging.WARNING
        log.log(level, "kalshi market for %s: %s → %s (%s)", symbol, was.value, status.value, why)
        if was is not MarketStatus.UNKNOWN:
            self._audit(
                AuditRecord(
                    self.clock(), "", "", "market_state", was.value, status.value, why, "kalshi"
                )
            )

    def _on_lifecycle(self, events: list[LifecycleEvent], gap: bool) -> None:
        """Kalshi market_lifecycle_v2: pauses, close-date changes, determination and
        settlement apply at once; a missed message re-reads every market's state."""
        by_ticker = {s.kalshi_ticker: n for n, s in self.symbol_map.symbols.items()}
        for ev in events:
            if ev.event_type == "event_fee_update":
                self._on_event_fee(ev)
                continue
            symbol = by_ticker.get(ev.ticker)
            if symbol is None:
                continue
            clock = self.market_clocks.setdefault(symbol, MarketClock())
            if ev.close_ns:
                clock.kalshi_close_ns = ev.close_ns
            if ev.result:
                clock.kalshi_result = ev.result
            to = KALSHI_LIFECYCLE.get(ev.event_type)
            if to is not None:
                self._set_kalshi_status(symbol, to, f"lifecycle {ev.event_type}")
            if to is MarketStatus.SETTLED:
                self._spawn(self._settle(symbol), "arbkit-settle")
        if gap and self._started:
            self._spawn(self._read_kalshi_markets(), "arbkit-market-reread")

    # ------------------------------------------------------------- settlement ---
    async def _settle(self, symbol: str) -> None:
        """Kalshi paid the market out: record what it paid (its own settlement record in
        live; the paper positions in paper, ForecastEx with it, as the map says), release
        the positions, and look for ForecastEx's payout."""
        ex, db = self.executor, self.db
        if ex is None or symbol in self._settled.get(Venue.KALSHI, set()):
            return
        self._settled.setdefault(Venue.KALSHI, set()).add(symbol)  # one settler at a time
        clock = self.market_clocks.get(symbol, MarketClock())
        spec = self.symbol_map.symbols[symbol]
        try:
            if self.config.mode is Mode.LIVE:
                row = await self._kalshi_settlement(symbol, spec.kalshi_ticker)
            else:
                row = self._paper_settlement(symbol, Venue.KALSHI, clock.kalshi_result)
        except Exception as exc:
            row = None
            log.error("settlement of %s unreadable (%s); retried at the next re-read", symbol, exc)
        if row is None:
            self._settled[Venue.KALSHI].discard(symbol)
            return
        ex.settle_positions(symbol, Venue.KALSHI)
        await self._record_settlement(row)
        log.warning(
            "SETTLED %s on kalshi: result %s, paid %s USD",
            symbol,
            row.result.value,
            usd_text(row.payout),
        )
        if self.config.mode is Mode.LIVE:
            await self._check_ibkr_settlements()
        else:
            fx = self._paper_settlement(symbol, Venue.IBKR, clock.kalshi_result)
            if fx is not None:
                self._settled.setdefault(Venue.IBKR, set()).add(symbol)
                ex.settle_positions(symbol, Venue.IBKR)
                await self._record_settlement(fx)
        if db is not None:
            await self._write_positions()

    async def _record_settlement(self, row: SettlementRow) -> None:
        self.settlements.append(row)
        if self.db is not None:
            await self.db.record_settlement(row)

    async def _kalshi_settlement(self, symbol: str, ticker: str) -> SettlementRow | None:
        """The venue's own record (``/portfolio/settlements``); reads lag writes, so a
        missing record is re-read for a few seconds (then the next re-read tries again)."""
        assert self.kalshi_rest is not None
        for _ in range(20):
            rows = await self.kalshi_rest.get_settlements(ticker=ticker)
            if rows:
                r = rows[-1]
                result = _OUTCOME_OF.get(r.market_result)
                if result is None:
                    raise ValueError(f"market_result {r.market_result!r} is not yes/no")
                return SettlementRow(
                    self.clock(),
                    r.settled_ns,
                    "live",
                    Venue.KALSHI,
                    symbol,
                    ticker,
                    result,
                    r.yes_count,
                    r.no_count,
                    r.revenue,
                    Money(r.yes_total_cost + r.no_total_cost),
                    r.fee_cost,
                    "kalshi",
                )
            await asyncio.sleep(0.25)
        return None

    def _paper_settlement(
        self, symbol: str, venue: Venue, kalshi_result: str
    ) -> SettlementRow | None:
        assert self.executor is not None
        st = self.executor.state
        row = paper_settlement(
            self.symbol_map.symbols[symbol], venue, kalshi_result, st.positions,
            st.cost_basis, now_ns=self.clock(), mode=self.config.mode.value,
        )  # fmt: skip
        if row is None:
            log.error("paper settlement of %s: Kalshi result %r unknown", symbol, kalshi_result)
        return row

    async def _check_ibkr_settlements(self) -> None:
        """Live: a ForecastEx position that left after its market resolved is a payout.
        The winner is the Kalshi result through the map; the cash TWS credited is
        compared with it, and a difference raises an alert (a wrong pairing, or other
        activity on the account)."""
        ex, db = self.executor, self.db
        if ex is None or not isinstance(ex.ibkr, IbkrOrderClient):
            return
        now = self.clock()
        candidates = [
            symbol
            for symbol, clock in self.market_clocks.items()
            if symbol not in self._settled.get(Venue.IBKR, set())
            and any(ex.state.positions.get((symbol, Venue.IBKR, o)) for o in Outcome)
            and (clock.kalshi_result or clock.status(Venue.IBKR, now) is MarketStatus.CLOSED)
        ]
        if not candidates:
            return
        venue_pos = await ex.ibkr.positions()
        before = ex.balances.get(Venue.IBKR)
        paid_any = False
        for symbol in candidates:
            if any(venue_pos.get((symbol, o)) for o in Outcome):
                continue  # still held: not paid yet
            k = _OUTCOME_OF.get(self.market_clocks[symbol].kalshi_result)
            if k is None:
                continue  # left before Kalshi said who won: the next pass looks again
            spec = self.symbol_map.symbols[symbol]
            held = ex.settle_positions(symbol, Venue.IBKR)
            self._settled.setdefault(Venue.IBKR, set()).add(symbol)
            result = spec.ibkr_equivalent(k)
            qty = {o: held.get(o, (Qty(0), Money(0)))[0] for o in Outcome}
            payout = Money(qty[result] * (MONEY_SCALE // QTY_SCALE))
            if not paid_any:
                await ex.refresh_balances()
                paid_any = True
            after = ex.balances.get(Venue.IBKR)
            delta = None if before is None or after is None else Money(after - before)
            if delta is not None and delta != payout:
                self._on_alert(
                    symbol,
                    f"ForecastEx cash moved {usd_text(delta)} USD at settlement, expected "
                    f"{usd_text(payout)} USD from the Kalshi result: check the pairing",
                )
            row = SettlementRow(
                self.clock(),
                self.clock(),
                "live",
                Venue.IBKR,
                symbol,
                "/".join(str(c) for c in self._con_ids(symbol)),
                result,
                qty[Outcome.YES],
                qty[Outcome.NO],
                payout,
                Money(sum(c for _, c in held.values())),
                Money(0),
                "ibkr",
                "position left at resolution; winner from the Kalshi result via the map; "
                f"cash moved {'?' if delta is None else usd_text(delta)} USD",
            )
            await self._record_settlement(row)
            log.warning(
                "SETTLED %s on ibkr: result %s, paid %s USD", symbol, result.value, usd_text(payout)
            )
        if paid_any and db is not None:
            await self._write_positions()

    def _con_ids(self, symbol: str) -> list[int]:
        gw = self.ibkr_gw
        if gw is None:
            return []
        return [c for o in Outcome if (c := gw.contracts.get((symbol, o))) is not None]

    def _venue_clients(self, mode: Mode) -> tuple[VenueOrderClient, VenueOrderClient]:
        if mode is Mode.LIVE:
            ke = self.kalshi_endpoint
            assert self.kalshi_rest is not None
            symbol_to_ticker = {n: s.kalshi_ticker for n, s in self.symbol_map.symbols.items()}
            assert self.ibkr_gw is not None
            # fills and order updates come from the user stream (fill / user_orders)
            self.kalshi_orders = KalshiOrderClient(
                self.kalshi_rest, symbol_to_ticker, ws_url=ke.ws_url
            )
            return self.kalshi_orders, IbkrOrderClient(self.ibkr_gw)
        fees = FeeModel(self.config.fees)
        specs = self.symbol_map.symbols
        latency = self.config.paper.latency_ms
        kalshi = PaperVenue(
            Venue.KALSHI,
            self._view(Venue.KALSHI),
            lambda sym, fills: fees.kalshi_fee(
                fills, specs[sym].kalshi_series, ticker=specs[sym].kalshi_ticker
            ),
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
        """The book as the venue will show it once our fills land: paper venues net their
        own fills; live, the published book net of ``own_fills`` (execution/consumption.py)."""
        if isinstance(kalshi, PaperVenue) and isinstance(ibkr, PaperVenue):
            paper = {Venue.KALSHI: kalshi, Venue.IBKR: ibkr}
            return lambda s, v, o: paper[v].effective_levels(s, o)
        own = self.own_fills
        return lambda s, v, o: own[v].net(s, o, self._view(v)(s, o), self.clock())

    @staticmethod
    def _paper(kalshi: VenueOrderClient, ibkr: VenueOrderClient) -> bool:
        return isinstance(kalshi, PaperVenue) and isinstance(ibkr, PaperVenue)

    async def stop(self) -> None:
        """Stop means stop: no execution starts once this begins; running ones get a bound
        derived from the config's timeouts; no order of ours is left working (cancelled
        and confirmed); then the gateways stop; the journal is flushed and closed last."""
        if self.executor is not None:
            self.executor.stopping = True  # first: gateway callbacks keep deciding
        await self._teardown()

    async def _teardown(self) -> None:
        ex = self.executor
        for t in self._subscribers + self._tasks:
            t.cancel()
        for t in self._subscribers + self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        self._subscribers.clear()
        if self._exec_tasks:
            bound = execution_bound_ms(self.config.execution) / 1000 + self.stop_grace_s
            _, pending = await asyncio.wait(set(self._exec_tasks), timeout=bound)
            if pending and ex is not None:
                ex.kill(
                    f"stop: {len(pending)} executions still running after {bound:.1f} s; "
                    "their journal rows are left for reconciliation at the next start"
                )
                for t in pending:
                    t.cancel()
                await asyncio.wait(pending, timeout=5.0)
        if ex is not None and self.reconciler is not None:
            with contextlib.suppress(Exception):
                await self._cancel_working()
        if self.kalshi_ws is not None:
            await self.kalshi_ws.stop()
        gw, self.ibkr_gw = self.ibkr_gw, None
        if gw is not None:
            await gw.stop()
        if self.kalshi_orders is not None:
            await self.kalshi_orders.stop_stream()
            self.kalshi_orders = None
        if self.kalshi_rest is not None:
            await self.kalshi_rest.aclose()
        if ex is not None and self.db is not None and self.db.is_open:
            await self._write_positions()
        if self._state_write is not None:
            with contextlib.suppress(Exception):
                await self._state_write
        if self._exec_tasks:
            await asyncio.wait(set(self._exec_tasks), timeout=5.0)
        if self.capture is not None:
            await self.capture.close()
        if self.writer is not None:
            await self.writer.stop()
        if self.db is not None:
            await self.db.close()  # last: nothing above writes to it any more
        for lock in reversed(self._locks):
            with contextlib.suppress(Exception):
                lock.release()
        self._locks.clear()
        self._ibkr_locked = False
        self._started = False

    async def _cancel_working(self) -> None:
        """No order of ours is left working: cancel and confirm each one (halt if not)."""
        assert self.executor is not None and self.reconciler is not None
        ex, rc = self.executor, self.reconciler
        prefix = rc.config.id_prefix
        targets: list[tuple[Venue, VenueOrderClient, str]] = []
        for venue, client in rc.clients.items():
            fn = getattr(client, "open_orders", None)
            if fn is None:
                continue
            try:
                working = await asyncio.wait_for(fn(), rc.config.read_timeout_s)
            except (TimeoutError, OSError, Exception) as exc:
                ex.kill(f"stop: cannot list {venue.value} working orders: {exc}")
                continue
            targets += [
                (venue, client, o.client_order_id)
                for o in working
                if o.client_order_id.startswith(prefix) and not o.state.terminal
            ]
        for rec in ex.completed:
            for o in rec.orders:
                if not o.state.terminal and o.state.value != "unknown":
                    targets.append((o.venue, rc.clients[o.venue], o.client_order_id))
        for venue, client, coid in dict.fromkeys(targets):
            done = await rc._cancel_confirmed(client, coid)
            if done is None:
                ex.kill(f"stop: {venue.value} order {coid} still working, cancel not confirmed")
                log.error("stop: %s order %s still working after cancel", venue.value, coid)

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
            if venue is Venue.KALSHI:
                self._kalshi_in_time = self._lag_ok(ticks)
            if venue is not Venue.KALSHI or self._kalshi_in_time:
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
            self._inflight[got.execution_id] = opp.symbol
            task = asyncio.get_running_loop().create_task(self._execute(got))
            self._exec_tasks.add(task)
            task.add_done_callback(self._exec_tasks.discard)

    def _episode_end(self, end: EpisodeEnd) -> None:
        self.counters.episodes_ended += 1
        self.episode_durations_ms.append(end.duration_ns / 1e6)

    async def _execute(self, res: Reservation) -> None:
        assert self.executor is not None
        try:
            ex = await self.executor.run(res)
        finally:
            self._inflight.pop(res.execution_id, None)
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
        self._check_fee_drift(ex)
        if self.db is not None:
            await self._write_positions()
        if self.mode is not Mode.MONITOR:  # spent capital must not look available again
            await self.executor.refresh_balances()

    def _on_execution_update(self, ex: ExecutionRecord) -> None:
        return None

    async def _write_positions(self) -> None:
        """The executor's positions into the journal's ``positions`` table (rows the
        executor no longer holds are written as 0, not left stale)."""
        assert self.executor is not None and self.db is not None
        now = self.clock()
        st = self.executor.state
        held = dict(st.positions)
        for row in await self.db.positions():
            held.setdefault((row.symbol, row.venue, row.outcome), Qty(0))
        for key, qty in held.items():
            cost = Money(st.cost_basis.get(key, 0) if qty > 0 else 0)
            await self.db.set_position(*key, qty, cost, now)

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
            self._apply_fee_changes(now)
            self._accrue_coupons(now)
            # Only Kalshi's in-sequence, in-time stream vouches for quiet books; a
            # ForecastEx quote vouches for itself (book/freshness.py).
            if self._kalshi_alive() and self._kalshi_in_time:
                self.pipeline.mark_alive(Venue.KALSHI, now)
            res = self.pipeline.reevaluate_all(now)
            self.episode_starts.extend(res.started)
            for opp in res.decide:
                self._decide(opp)
            for end in res.ended:
                self._episode_end(end)

    def _accrue_coupons(self, now_ns: int) -> None:
        """At each UTC day's end, the ForecastEx coupon of that day on every ForecastEx
        position held (valued by ``coupon_values``): journaled, one row per position and
        day. Days missed while arbkit was down are accrued on the positions held now."""
        ex = self.executor
        if ex is None:
            return
        today = now_ns // DAY_NS
        if self._coupon_day is None:
            self._coupon_day = today - 1  # a new book accrues from today on
        if self._coupon_day >= today - 1:
            return
        values = coupon_values(ex.state, ex.quote)
        rows: list[CouponAccrual] = []
        for day in range(self._coupon_day + 1, today):
            date = (_EPOCH_DATE + dt.timedelta(days=day)).isoformat()
            for (symbol, _, outcome), value in sorted(values.items()):
                accrued, bps = ex.fees.coupon_day(value, day * DAY_NS)
                qty = ex.state.positions[(symbol, Venue.IBKR, outcome)]
                rows.append(
                    CouponAccrual(
                        date, self.mode.value, symbol, outcome, qty, value, bps, accrued, now_ns
                    )
                )
        self._coupon_day = today - 1
        if not rows:
            return
        self.coupon_accruals += rows
        self.coupon_accrued = Money(self.coupon_accrued + sum(r.accrued for r in rows))
        log.info(
            "ForecastEx coupon: %s accrued on %d positions through %s",
            sum(r.accrued for r in rows), len(values), rows[-1].day,
        )  # fmt: skip
        if self.db is not None:
            db = self.db
            self._spawn(db.record_coupon_accruals(rows), "arbkit-coupon")

    def _lag_ok(self, ticks: list[NormalizedTick]) -> bool:
        """Kalshi stamped these within ``max_venue_lag_ms`` of their arrival (freshness.py)."""
        bound = self.config.detector.max_venue_lag_ms * 1_000_000
        for t in ticks:
            if t.venue_ts_ns > 0 and t.recv_ts_ns - t.venue_ts_ns > bound:
                x = self.counters.extra
                x["kalshi_lagged_messages"] = x.get("kalshi_lagged_messages", 0) + 1
                return False
        return True

    def _kalshi_alive(self) -> bool:
        """Market data AND (live) the user stream: without it a fill could go unseen."""
        orders = self.kalshi_orders
        return (
            self.kalshi_ws is not None
            and self.kalshi_ws.health.connected
            and (orders is None or orders.stream_connected)
        )

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
        (Money in $0.000001 units). Takes effect on the next evaluation. A value outside
        the sane bounds raises ``ConfigError`` and changes nothing."""
        self.config = self._bounded(
            replace(self.config, detector=replace(self.config.detector, **changes)),
            "set_detector_params",
        )
        self.pipeline.set_detector_params(self.config.detector)
        self._push_config()

    @staticmethod
    def _bounded(cfg: ExecutionConfig, source: str) -> ExecutionConfig:
        check_bounds(cfg, source)  # a typo (fee 5 for 0.05) is refused, never applied
        return cfg

    def set_fee_params(self, **changes: Any) -> None:
        self.config = self._bounded(
            replace(self.config, fees=replace(self.config.fees, **changes)), "set_fee_params"
        )
        self.pipeline.set_fee_params(self.config.fees)
        self._push_config()
        self._apply_series_fees()

    def set_risk_limits(self, **changes: Any) -> None:
        self.config = self._bounded(
            replace(self.config, risk=replace(self.config.risk, **changes)), "set_risk_limits"
        )
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
        """The user's kill switch: ``halted``, a journal row by ``user``."""
        assert self.executor is not None
        self.executor.kill(reason, actor="user")

    def reset_kill_switch(self, reason: str = "lifted by the user") -> None:
        """The user lifts ``halted`` (or ``reducing``): a journal row, by ``user``."""
        assert self.executor is not None
        self.executor.reset_kill_switch(reason)

    resume_trading = reset_kill_switch

    def unblock_symbol(self, symbol: str) -> None:
        assert self.executor is not None
        self.executor.unblock_symbol(symbol)

    @property
    def kill_switch(self) -> bool:
        return self.executor is not None and self.executor.state.kill_switch

    @property
    def trading_state(self) -> TradingState:
        ex = self.executor
        return ex.state.trading_state if ex is not None else TradingState.ACTIVE

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
        done = ex.completed if ex is not None else []
        # both headline sums over every execution of the run, not the recent window
        hedge = sum(e.hedge_cost for e in done)
        pnl = sum(e.realized_pnl for e in done)
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
        import numpy as np  # the histograms only: one vectorised pass per ring

        edges_ms: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
        edges_ms += (20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
        edges_ns = np.asarray([round(e * 1e6) for e in edges_ms], dtype=np.int64)
        hist = {
            stage: np.bincount(
                np.searchsorted(edges_ns, np.frombuffer(ring._buf, dtype=np.int64), "right"),
                minlength=len(edges_ms) + 1,
            ).tolist()
            for stage, ring in self.latency.rings.items()
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
            trading_state=self.trading_state.value,
            state_reason=ex.state.state_reason if ex is not None else "",
            blocked_symbols=dict(ex.state.blocked_symbols) if ex is not None else {},
            exposure=ex.state.exposure if ex is not None else Money(0),
            balances=(
                {v.value: None if b is None else Money(b) for v, b in ex.balances.items()}
                if ex is not None
                else {}
            ),
            committed=(
                {v.value: ex.state.exposure_by(v) for v in (Venue.KALSHI, Venue.IBKR)}
                if ex is not None
                else {}
            ),
            mark_to_market=(
                {v.value: m for v, m in mark_to_market(ex.state.positions, ex.quote).items()}
                if ex is not None
                else {}
            ),
            kalshi_balance_breakdown=(
                dict(self.kalshi_orders.balance_breakdown) if self.kalshi_orders else {}
            ),
            coupon_accrued=self.coupon_accrued,
            coupon_bps=ex.fees.coupon_bps_at(now) if ex is not None else 0,
            alerts=list(self.alerts)[-50:],
            latency_edges_ms=edges_ms,
            latency_hist=hist,
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


def _summary(r: ReconcileReport) -> str:
    parts = [f"{r.kind}: {'ok' if r.ok else 'HALTED: ' + r.halt_reason}"]
    if r.executions_checked:
        parts.append(f"{r.executions_checked} executions settled")
    if r.corrections:
        parts.append(f"{len(r.corrections)} corrections")
    if r.suspected:
        parts.append("suspected: " + "; ".join(map(str, r.suspected)))
    parts += r.notes
    return ", ".join(parts)
