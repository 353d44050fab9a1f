"""State shared by the local TWS's parts: value types, the session, and ``TwsCore``.

The simulator is split the way an adapter is: ``tws_server`` (sockets, handshake,
dispatch, markets), ``tws_orders`` (orders, fills, executions), ``tws_market`` (books,
ticks, history, symbol search) and ``tws_account`` (positions, account values, PnL).
Each part is a mixin over ``TwsCore``, which owns every piece of state, so ``TwsServer``
keeps one flat set of public attributes.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

from arbkit.model import MONEY_SCALE, Money, Outcome
from arbkit.sim import tws_wire as w
from arbkit.sim.tws_wire import Field, OrderView, TwsContract

log = logging.getLogger("arbkit.sim.tws_server")

PAIR_PRICE = 10_100  # $1.01 in Price units: a YES bid + a NO bid at least this execute
CENT = 100
MIN_PRICE = 200  # $0.02
MAX_PRICE = 9_900  # $0.99
EMPTY_TICK = ("-1", 0)
ZERO_USD = Money(0)
DEFAULT_CASH_USD = Money(100_000 * MONEY_SCALE)
NS = 1_000_000_000

TICK_BID_SIZE, TICK_BID, TICK_ASK, TICK_ASK_SIZE = 0, 1, 2, 3
LIVE_STATES = frozenset({"PreSubmitted", "Submitted", "PendingCancel", "Inactive"})
TRADING_CLOSED = "trading is closed for this contract"
NO_SECDEF = "No security definition has been found for the request"


def now_str() -> str:
    return time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime())


def fmt_strike(strike: object) -> str:
    d = Decimal(repr(strike)) if isinstance(strike, float) else Decimal(str(strike))
    s = format(d.normalize(), "f")
    return s if "." in s else s + ".0"


def local_symbol(symbol: str, last_trade_date: str, strike: str, right: str) -> str:
    d = dt.datetime.strptime(last_trade_date, "%Y%m%d")
    side = "YES" if right == "C" else "NO"
    return f"{symbol} {d.strftime('%b%d')}'{d.strftime('%y')} {strike} {side}"


def last_trade_ns(c: TwsContract) -> int:
    """The contract's last trade time (its own time zone) in epoch ns; no time = day end."""
    day = dt.datetime.strptime(c.last_trade_date[:8], "%Y%m%d")
    hh, mm, ss = (int(x) for x in (c.last_trade_time or "23:59:59").split(":"))
    at = day.replace(hour=hh, minute=mm, second=ss, tzinfo=ZoneInfo(c.time_zone_id or "UTC"))
    return int(at.timestamp()) * NS


def sessions_24h(days: int = 7) -> str:
    """Whole-day sessions from yesterday (whatever the contract's zone, today is covered),
    each running to the next midnight, so there is no gap between days."""
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    out = []
    for i in range(days + 1):
        d, e = (start + dt.timedelta(days=j) for j in (i, i + 1))
        out.append(f"{d:%Y%m%d}:0000-{e:%Y%m%d}:0000")
    return ";".join(out)


def session_close_ns(c: TwsContract, now_ns: int) -> int | None:
    """End of the trading session (``tradingHours``, the contract's zone) holding ``now``."""
    tz = ZoneInfo(c.time_zone_id or "UTC")
    for part in c.trading_hours.split(";"):
        if "-" not in part or "CLOSED" in part:
            continue
        a, b = part.split("-", 1)
        try:
            start = dt.datetime.strptime(a, "%Y%m%d:%H%M").replace(tzinfo=tz)
            end = dt.datetime.strptime(b, "%Y%m%d:%H%M").replace(tzinfo=tz)
        except ValueError:
            continue
        s_ns, e_ns = int(start.timestamp()) * NS, int(end.timestamp()) * NS
        if s_ns <= now_ns < e_ns:
            return e_ns
    return None


@dataclass(slots=True)
class Market:
    market_id: str
    yes: TwsContract
    no: TwsContract
    bids: dict[Outcome, dict[int, int]]  # price (Price units) → whole contracts
    resting: list[SimOrder] = field(default_factory=list)

    def contract(self, outcome: Outcome) -> TwsContract:
        return self.yes if outcome is Outcome.YES else self.no


@dataclass(slots=True)
class SimOrder:
    view: OrderView
    market: Market
    outcome: Outcome
    limit: int  # Price units
    session_key: int  # client id
    hold: bool = False  # fault: never fills
    cost: int = 0  # Money units
    done: bool = False
    cancel_remainder: bool = False  # IOC: cancel what is left after matching
    cancel_locked: bool = False  # fault: cancels are answered PendingCancel until a forced fill
    staged: bool = False  # transmit=False: held in TWS, never sent to the exchange
    expire_ns: int | None = None  # DAY: the session close it dies at


@dataclass(slots=True)
class Exec:
    exec_id: str
    order: SimOrder
    time_str: str
    shares: int
    price: int
    cum_qty: int
    avg_price: str
    commission: Money
    ts_ns: int = 0


class Session:
    def __init__(self, server: TwsCore, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.sv = 0
        self.client_id = -1
        self.started = False
        self.closed = False
        self.positions_sub = False
        self.account_sub = False
        self.multi_reqs: set[int] = set()
        self.summary_reqs: dict[int, list[str]] = {}
        self.mkt: dict[int, int] = {}  # reqId → conId
        self.pnl_reqs: dict[int, int | None] = {}  # reqId → conId (None: whole account)
        self.pnl_shown: dict[int, tuple[Field, ...]] = {}

    def send(self, *msgs: list[Field]) -> None:
        if not self.closed:
            self.writer.write(w.many(msgs))

    def error(self, req_id: int, code: int, text: str) -> None:
        self.send(w.error(self.sv, req_id, code, text))

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()


class TwsCore:
    """Every piece of the local TWS's state, plus the helpers all parts use."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        server_version: int = w.MAX_CLIENT_VERSION,
        account: str = "DU1234567",
        commission_per_contract_usd: Money = ZERO_USD,
        starting_cash_usd: Money = DEFAULT_CASH_USD,
        next_valid_id: int = 1,
        clock_ns: Callable[[], int] = time.time_ns,
        history_limit: int = 10_000,
        time_zone: str = "UTC",
    ) -> None:
        if not w.MIN_CLIENT_VERSION <= server_version <= w.MAX_CLIENT_VERSION:
            raise ValueError(f"server_version must be 157..178, got {server_version}")
        self.host = host
        self._port = port
        self.server_version = server_version
        self.account = account
        self.commission_per_contract_usd = commission_per_contract_usd
        self.cash: Money = starting_cash_usd
        self.clock_ns = clock_ns
        #: TWS's login time zone: execution-filter times without a zone are read in it
        self.time_zone = time_zone
        self.settled: dict[str, Outcome] = {}  # market id → winning outcome
        self._first_id = next_valid_id
        self._server: asyncio.Server | None = None
        self._sessions: set[Session] = set()
        self.contracts: dict[int, TwsContract] = {}
        self.markets: dict[str, Market] = {}
        self._market_of: dict[int, tuple[Market, Outcome]] = {}
        self._underliers: dict[str, int] = {}
        self._next_under_id = 800_000_001
        self._shown: dict[int, tuple[tuple[str, int], tuple[str, int]]] = {}
        self._subs: dict[int, dict[tuple[Session, int], None]] = collections.defaultdict(dict)
        self._orders: dict[int, SimOrder] = {}  # permId → order
        self._by_client: dict[tuple[int, int], SimOrder] = {}
        self._next_ids: dict[int, int] = {}
        self._perm_seq = 500_000_000
        self._exec_seq = 0
        self.executions: list[Exec] = []
        self.positions: dict[int, tuple[int, Money]] = {}  # conId → (contracts, cost)
        self.realized: dict[int, Money] = collections.defaultdict(lambda: Money(0))
        self._day_base: tuple[int, Money] | None = None  # (UTC day, account PnL at its start)
        self._pnl_base: dict[int, Money] = {}  # conId → its PnL at the start of the day
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # bounded history per conId: quotes (ts, bid, ask; -1 = none) and trades (ts, px, n)
        self.history_limit = history_limit
        self.quote_history: dict[int, collections.deque[tuple[int, int, int]]] = {}
        self.trade_history: dict[int, collections.deque[tuple[int, int, int]]] = {}
        # counters tests read
        self.orders_by_ref: collections.Counter[str] = collections.Counter()
        self.orders_received = 0
        self.maker_pairs = 0
        self.dropped_levels = 0
        self.connections = 0
        self.handler_errors = 0
        # fault switches
        self.ticks_paused = False
        self.muted = False
        self.fill_delay_ms = 0
        self.cancel_delay_ms = 0
        self._faults: collections.deque[tuple[str, int]] = collections.deque()
        self._cancel_faults: collections.deque[tuple[str, int | None]] = collections.deque()
        self.cancels_received = 0
        self.cancels_ignored = 0
        self._foreign_seq = 0

    # ------------------------------------------------------------------ shared helpers

    def _session_of(self, client_id: int) -> Session | None:
        for s in self._sessions:
            if s.started and s.client_id == client_id and not s.closed:
                return s
        return None

    def _live_sessions(self) -> list[Session]:
        return [s for s in self._sessions if s.started and not s.closed]

    def _send_to(self, client_id: int, msgs: list[list[Field]]) -> None:
        owner = self._session_of(client_id)
        if owner is not None:
            owner.send(*msgs)

    def _later(self, ms: int, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def run() -> None:
            if handle is not None:
                self._timers.discard(handle)
            fn()

        handle = loop.call_later(ms / 1000, run)
        self._timers.add(handle)

    def top(self, con_id: int) -> tuple[tuple[str, int], tuple[str, int]]:
        """(bid, ask) shown for a contract: ((price text, size), (price text, size))."""
        bid_p, bid_n, ask_p, ask_n = self._top_units(con_id)
        bid = (w.fmt_price(bid_p), bid_n) if bid_p >= 0 else EMPTY_TICK
        ask = (w.fmt_price(ask_p), ask_n) if ask_p >= 0 else EMPTY_TICK
        return bid, ask

    def _top_units(self, con_id: int) -> tuple[int, int, int, int]:
        """(bid, bid size, ask, ask size) in Price units; −1 for a missing side."""
        m, outcome = self._market_of[con_id]
        own = m.bids[outcome]
        opp = m.bids[outcome.opposite]
        bid_p, bid_n, ask_p, ask_n = -1, 0, -1, 0
        if own:
            bid_p = max(own)
            bid_n = own[bid_p]
        if opp:
            q = max(opp)
            ask_p, ask_n = PAIR_PRICE - q, opp[q]
        return bid_p, bid_n, ask_p, ask_n

    def _find(self, cf: list[str]) -> list[TwsContract]:
        """Contracts matching a 12-field contract (conId … tradingClass); empty = any."""
        con_id = int(cf[0] or 0)
        if con_id:
            c = self.contracts.get(con_id)
            return [c] if c is not None else []
        symbol, sec_type, ltd, strike, right = cf[1], cf[2], cf[3], cf[4], cf[5]
        exchange, currency, local_sym, trading_class = cf[7], cf[9], cf[10], cf[11]
        right = {"CALL": "C", "PUT": "P"}.get(right.upper(), right.upper())
        k = float(strike) if strike else 0.0
        out = []
        for c in self.contracts.values():
            if (
                (symbol and c.symbol != symbol)
                or (sec_type and c.sec_type != sec_type)
                or (ltd and not c.last_trade_date.startswith(ltd))
                or (k and abs(float(c.strike) - k) > 1e-9)
                or (right and c.right != right)
                or (exchange and exchange != "SMART" and c.exchange != exchange)
                or (currency and c.currency != currency)
                or (local_sym and c.local_symbol != local_sym)
                or (trading_class and c.trading_class != trading_class)
            ):
                continue
            out.append(c)
        return out

    def _find_one(self, s: Session, req_id: int, cf: list[str]) -> TwsContract | None:
        """The one tradable contract ``cf`` names, else error 200 to ``req_id``."""
        found = self._find(cf)
        if len(found) != 1 or found[0].con_id not in self._market_of:
            s.error(req_id, 200, NO_SECDEF)
            return None
        return found[0]

    # ------------------------------------------------------------------ hooks (other parts)

    def _book_changed(self, m: Market) -> None:
        raise NotImplementedError

    def _publish(self, con_id: int, *, force: bool = False) -> None:
        raise NotImplementedError

    def _record_trade(self, con_id: int, price: int, n: int) -> None:
        raise NotImplementedError

    def _push_portfolio(self, m: Market) -> None:
        raise NotImplementedError

    def _push_pnl(self) -> None:
        raise NotImplementedError

    def _cancel(self, o: SimOrder, *, error: bool, confirm_after_ms: int = 0) -> None:
        raise NotImplementedError

    def _execute(self, o: SimOrder, cap: int | None) -> None:
        raise NotImplementedError

    def _expire_day_orders(self) -> None:
        raise NotImplementedError

    def account_values(self) -> dict[str, str]:
        raise NotImplementedError

    def _realize(self, con_id: int, amount: int) -> None:
        raise NotImplementedError

    def _match_resting(self, m: Market) -> None:
        raise NotImplementedError
