"""A local TWS / IB Gateway on loopback that ib_async connects to unmodified.

It speaks the TWS socket protocol (server versions 157–178, default 178) for what arbkit
uses: the connect-time sync, ForecastEx contract details, top-of-book market data,
BUY LMT orders with fills/commissions, cancels, rejects, positions with YES/NO netting
and account values. See docs/ibkr.md for what it implements and the choices it makes.

Book model (ForecastEx pair execution, reference/ibkr.md §A3/§A4): makers bid for YES
(right C) and NO (right P); a YES bid and a NO bid execute as a pair when they add up to
at least $1.01 ($1 payout + the $0.01 exchange fee inside the price). So for contract X:

* bid  = best X bid (size at that price)
* ask  = $1.01 − best opposite bid ("Buy X now at"), size = size at that opposite bid
* a BUY X at limit L fills against opposite bids q with L + q ≥ $1.01, best first, walking
  levels, at price $1.01 − q, and consumes them (the shown size is only the top level).

Ladders set by a driver are floored to the $0.01 grid and kept within $0.02–$0.99;
maker ladders that cross (YES bid + NO bid ≥ $1.01) are paired off as the exchange would.

Fault switches: ``reject_next_order``, ``never_fill_next_order``, ``partial_fill_next_order``,
``fill_delay_ms``, ``ignore_next_cancel(fill_after_ms=None, silent=False)``,
``delay_cancel_ms(ms)``, ``place_foreign_order`` (a hand-typed TWS order), ``mute``,
``pause_ticks``, ``drop_connections``. Counters: ``orders_by_ref`` (every placeOrder by
orderRef, duplicates and retries included), ``orders_received``, ``cancels_received``,
``cancels_ignored``. Orders, executions and positions outlive a client's connection, so
a reconnect under the same clientId is served them by reqOpenOrders / reqAllOpenOrders /
reqCompletedOrders / reqExecutions / reqPositions. Cancel errors are 10147 (not found)
and 10148 (cannot be cancelled), as current TWS sends.

Close and settlement: orders after a contract's last trade time (``clock_ns``) or on a
settled market are rejected (201). ``settle(market, winner)`` cancels the market's working
orders, pays $1 per held winning contract into ``cash``, zeroes both positions, empties the
book and, as real TWS does for settled contracts, serves empty trading/liquid hours.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from arbkit.model import MONEY_SCALE, PRICE_SCALE, QTY_SCALE, Money, Outcome, Price, Qty
from arbkit.sim import tws_wire as w
from arbkit.sim.driver import BookSink
from arbkit.sim.tws_wire import Field, OrderView, TwsContract

log = logging.getLogger(__name__)

PAIR_PRICE = 10_100  # $1.01 in Price units: a YES bid + a NO bid at least this execute
CENT = 100
MIN_PRICE = 200  # $0.02
MAX_PRICE = 9_900  # $0.99
EMPTY_TICK = ("-1", 0)
ZERO_USD = Money(0)
DEFAULT_CASH_USD = Money(100_000 * MONEY_SCALE)

TICK_BID, TICK_ASK = 1, 2
LIVE_STATES = frozenset({"PreSubmitted", "Submitted", "PendingCancel"})
TRADING_CLOSED = "trading is closed for this contract"


def _now_str() -> str:
    return time.strftime("%Y%m%d %H:%M:%S UTC", time.gmtime())


def _fmt_strike(strike: object) -> str:
    d = Decimal(repr(strike)) if isinstance(strike, float) else Decimal(str(strike))
    s = format(d.normalize(), "f")
    return s if "." in s else s + ".0"


def _local_symbol(symbol: str, last_trade_date: str, strike: str, right: str) -> str:
    d = dt.datetime.strptime(last_trade_date, "%Y%m%d")
    side = "YES" if right == "C" else "NO"
    return f"{symbol} {d.strftime('%b%d')}'{d.strftime('%y')} {strike} {side}"


def last_trade_ns(c: TwsContract) -> int:
    """The contract's last trade time (its own time zone) in epoch ns; no time = day end."""
    day = dt.datetime.strptime(c.last_trade_date[:8], "%Y%m%d")
    hh, mm, ss = (int(x) for x in (c.last_trade_time or "23:59:59").split(":"))
    at = day.replace(hour=hh, minute=mm, second=ss, tzinfo=ZoneInfo(c.time_zone_id or "UTC"))
    return int(at.timestamp()) * 1_000_000_000


def _sessions_24h(days: int = 7) -> str:
    """Whole-day sessions from yesterday (whatever the contract's zone, today is covered),
    each running to the next midnight, so there is no gap between days."""
    start = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    out = []
    for i in range(days + 1):
        d, e = (start + dt.timedelta(days=j) for j in (i, i + 1))
        out.append(f"{d:%Y%m%d}:0000-{e:%Y%m%d}:0000")
    return ";".join(out)


@dataclass(slots=True)
class _Market:
    market_id: str
    yes: TwsContract
    no: TwsContract
    bids: dict[Outcome, dict[int, int]]  # price (Price units) → whole contracts
    resting: list[_Order] = field(default_factory=list)

    def contract(self, outcome: Outcome) -> TwsContract:
        return self.yes if outcome is Outcome.YES else self.no


@dataclass(slots=True)
class _Order:
    view: OrderView
    market: _Market
    outcome: Outcome
    limit: int  # Price units
    session_key: int  # client id
    hold: bool = False  # fault: never fills
    cost: int = 0  # Money units
    done: bool = False
    cancel_remainder: bool = False  # IOC: cancel what is left after matching
    cancel_locked: bool = False  # fault: cancels are answered PendingCancel until a forced fill


@dataclass(slots=True)
class _Exec:
    exec_id: str
    order: _Order
    time_str: str
    shares: int
    price: int
    cum_qty: int
    avg_price: str
    commission: Money


class _Session:
    def __init__(
        self, server: TwsServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
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

    def send(self, *msgs: list[Field]) -> None:
        if not self.closed:
            self.writer.write(w.many(msgs))

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()


class TwsServer:
    """Loopback TWS. Implements ``arbkit.sim.driver.BookSink`` (``set_bids``)."""

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
        self.settled: dict[str, Outcome] = {}  # market id → winning outcome
        self._first_id = next_valid_id
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self.contracts: dict[int, TwsContract] = {}
        self.markets: dict[str, _Market] = {}
        self._market_of: dict[int, tuple[_Market, Outcome]] = {}
        self._underliers: dict[str, int] = {}
        self._next_under_id = 800_000_001
        self._shown: dict[int, tuple[tuple[str, int], tuple[str, int]]] = {}
        self._subs: dict[int, dict[tuple[_Session, int], None]] = collections.defaultdict(dict)
        self._orders: dict[int, _Order] = {}  # permId → order
        self._by_client: dict[tuple[int, int], _Order] = {}
        self._next_ids: dict[int, int] = {}
        self._perm_seq = 500_000_000
        self._exec_seq = 0
        self.executions: list[_Exec] = []
        self.positions: dict[int, tuple[int, Money]] = {}  # conId → (contracts, cost)
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        # counters tests read
        self.orders_by_ref: collections.Counter[str] = collections.Counter()
        self.orders_received = 0
        self.maker_pairs = 0
        self.dropped_levels = 0
        self.connections = 0
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
        self._handlers: dict[int, Callable[[_Session, list[str]], None]] = {
            71: self._start_api,
            61: self._req_positions,
            64: self._cancel_positions,
            5: self._req_open_orders,
            16: self._req_all_open_orders,
            15: lambda s, f: None,  # reqAutoOpenOrders
            99: self._req_completed_orders,
            6: self._req_account_updates,
            76: self._req_account_updates_multi,
            77: lambda s, f: s.multi_reqs.discard(int(f[2])),
            62: self._req_account_summary,
            63: self._cancel_account_summary,
            7: self._req_executions,
            9: self._req_contract_details,
            1: self._req_mkt_data,
            2: self._cancel_mkt_data,
            59: lambda s, f: None,  # reqMarketDataType: live only
            10: self._req_mkt_depth,
            11: lambda s, f: None,
            3: self._place_order,
            4: self._cancel_order,
            58: self._global_cancel,
            8: self._req_ids,
            49: lambda s, f: s.send([49, 1, int(time.time())]),
            78: self._req_sec_def_opt_params,
            91: lambda s, f: s.send([93, int(f[1]), 1, 0, "0.01"]),  # one $0.01 tick everywhere
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        self.drop_connections()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> TwsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ fault switches

    def drop_connections(self) -> None:
        """Abort every client socket (as a TWS restart or network cut would)."""
        for s in list(self._sessions):
            s.abort()

    def pause_ticks(self, paused: bool = True) -> None:
        """Stop (or resume) market data pushes; resuming re-sends every subscription."""
        self.ticks_paused = paused
        if not paused:
            self._shown.clear()
            for con_id in list(self._subs):
                self._publish(con_id, force=True)

    def send_status(self, code: int, text: str, req_id: int = -1) -> None:
        """A TWS status "error" to every connected client (1100/1102, 2103/2104, 10197)."""
        for s in list(self._sessions):
            if s.started:
                s.send(w.error(s.sv, req_id, code, text))

    def set_farm(self, ok: bool, farm: str = "usfarm") -> None:
        """The market data farm breaks (2103, quotes stop) or comes back (2104, resent)."""
        if ok:
            self.send_status(2104, f"Market data farm connection is OK:{farm}")
            self.pause_ticks(False)
        else:
            self.pause_ticks(True)
            self.send_status(2103, f"Market data farm connection is broken:{farm}")

    def mute(self, muted: bool = True) -> None:
        """A hung TWS: sockets stay open, requests go unanswered (ticks stop too)."""
        self.muted = muted

    def reject_next_order(self) -> None:
        self._faults.append(("reject", 0))

    def never_fill_next_order(self) -> None:
        self._faults.append(("never_fill", 0))

    def partial_fill_next_order(self, contracts: int) -> None:
        self._faults.append(("partial", contracts))

    def ignore_next_cancel(self, fill_after_ms: int | None = None, *, silent: bool = False) -> None:
        """The next cancel of a live order is NOT carried out.

        It is acknowledged as ``PendingCancel`` (``silent=True``: not answered at all). With
        ``fill_after_ms`` the order then fills completely at its limit that many ms later
        (execDetails, orderStatus Filled, commissionReport; the position stays at the venue),
        and until then every further cancel of it is also answered ``PendingCancel`` only.
        Without it the order keeps working (the book may still fill it) and a later cancel
        is carried out normally."""
        self._cancel_faults.append(("silent" if silent else "pending", fill_after_ms))

    def delay_cancel_ms(self, ms: int) -> None:
        """From now on every cancel is carried out at once (the order can no longer fill)
        but confirmed late: ``PendingCancel`` now, ``Cancelled`` + error 202 after ``ms``
        milliseconds. ``0`` switches the delay off."""
        self.cancel_delay_ms = max(0, ms)

    def place_foreign_order(
        self,
        market: str,
        outcome: Outcome,
        limit: Price,
        contracts: int,
        *,
        order_ref: str = "",
        tif: str = "GTC",
    ) -> int:
        """A working BUY order that no API client placed (typed into TWS by hand: clientId
        0, orderId 0). It rests like any other order; returns its permId."""
        m = self.markets[market]
        if market in self.settled:
            raise ValueError(f"{market} is settled")
        contract = m.contract(outcome)
        self._perm_seq += 1
        self._foreign_seq += 1
        view = OrderView(
            0, 0, self._perm_seq, contract, "BUY", contracts, "LMT", w.fmt_price(limit), tif,
            self.account, order_ref, True, "Submitted",
        )  # fmt: skip
        o = _Order(view, m, outcome, int(limit) - int(limit) % CENT, 0)
        self._orders[view.perm_id] = o
        self._by_client[(0, -self._foreign_seq)] = o
        self.orders_by_ref[order_ref] += 1
        self._execute(o, None)
        return view.perm_id

    @property
    def client_count(self) -> int:
        return sum(1 for s in self._sessions if s.started)

    # ------------------------------------------------------------------ markets

    def add_market(
        self,
        market_id: str,
        *,
        symbol: str,
        last_trade_date: str,
        strike: object,
        yes_con_id: int,
        no_con_id: int,
        under_con_id: int | None = None,
        real_expiration_date: str | None = None,
        last_trade_time: str = "10:00:00",
        time_zone_id: str = "US/Central",
        trading_hours: str | None = None,
        long_name: str = "",
    ) -> None:
        """Register one ForecastEx question: its YES (C) and NO (P) contracts."""
        if under_con_id is None:
            under_con_id = self._underliers.get(symbol)
        if under_con_id is None:
            under_con_id = self._next_under_id
            self._next_under_id += 1
        if symbol not in self._underliers:
            self._underliers[symbol] = under_con_id
            self.contracts[under_con_id] = TwsContract(
                under_con_id, symbol, "IND", "", "0.0", "", "", "FORECASTX", "USD", symbol, "",
                long_name=long_name or symbol, category="ForecastEx", min_tick="0.01",
                order_types="", market_rule_ids="",
            )  # fmt: skip
        k = _fmt_strike(strike)
        hours = trading_hours if trading_hours is not None else _sessions_24h()
        made: dict[Outcome, TwsContract] = {}
        for outcome, con_id, right in (
            (Outcome.YES, yes_con_id, "C"),
            (Outcome.NO, no_con_id, "P"),
        ):
            if con_id in self.contracts:
                raise ValueError(f"conId {con_id} already listed")
            made[outcome] = c = TwsContract(
                con_id, symbol, "OPT", last_trade_date, k, right, "1", "FORECASTX", "USD",
                _local_symbol(symbol, last_trade_date, k, right), symbol,
                long_name=long_name or symbol, under_con_id=under_con_id,
                real_expiration_date=real_expiration_date or last_trade_date,
                last_trade_time=last_trade_time, time_zone_id=time_zone_id,
                trading_hours=hours, liquid_hours=hours, category="ForecastEx",
            )  # fmt: skip
            self.contracts[con_id] = c
        m = _Market(
            market_id, made[Outcome.YES], made[Outcome.NO], {Outcome.YES: {}, Outcome.NO: {}}
        )
        self.markets[market_id] = m
        self._market_of[yes_con_id] = (m, Outcome.YES)
        self._market_of[no_con_id] = (m, Outcome.NO)

    def set_bids(self, market: str, outcome: Outcome, levels: Sequence[tuple[Price, Qty]]) -> None:
        """BookSink: replace the makers' bids for ``outcome`` (floored to the $0.01 grid)."""
        m = self.markets[market]
        if market in self.settled:
            return  # a settled market has no book any more
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
        self._publish(m.yes.con_id)
        self._publish(m.no.con_id)

    def settle(self, market_id: str, winner: Outcome) -> None:
        """The question resolved: pay $1 per held ``winner`` contract, end the market."""
        m = self.markets[market_id]
        if market_id in self.settled:
            raise ValueError(f"{market_id} is already settled")
        self.settled[market_id] = winner
        for o in [o for o in self._orders.values() if o.market is m and not o.done]:
            self._cancel(o, error=True)
        for outcome in (Outcome.YES, Outcome.NO):
            con_id = m.contract(outcome).con_id
            held, _ = self.positions.pop(con_id, (0, Money(0)))
            if outcome is winner:
                self.cash = Money(self.cash + held * MONEY_SCALE)
        m.yes, m.no = (
            dataclasses.replace(c, trading_hours="", liquid_hours="") for c in (m.yes, m.no)
        )
        self.contracts[m.yes.con_id], self.contracts[m.no.con_id] = m.yes, m.no
        m.bids = {Outcome.YES: {}, Outcome.NO: {}}
        self._push_portfolio(m)
        self._publish(m.yes.con_id)
        self._publish(m.no.con_id)

    def close_trading(self, market_id: str) -> None:
        """Trading on the pair stops now: its last trade time becomes the present."""
        m = self.markets[market_id]
        at = dt.datetime.fromtimestamp(self.clock_ns() // 1_000_000_000, dt.UTC)
        for outcome in (Outcome.YES, Outcome.NO):
            c = dataclasses.replace(
                m.contract(outcome),
                last_trade_date=at.strftime("%Y%m%d"),
                last_trade_time=at.strftime("%H:%M:%S"),
                time_zone_id="UTC",
            )
            self.contracts[c.con_id] = c
            if outcome is Outcome.YES:
                m.yes = c
            else:
                m.no = c

    def trading_closed(self, con_id: int) -> bool:
        """After the last trade time, or once the market settled, orders are refused."""
        m, outcome = self._market_of[con_id]
        if m.market_id in self.settled:
            return True
        return self.clock_ns() >= last_trade_ns(m.contract(outcome))

    def top(self, con_id: int) -> tuple[tuple[str, int], tuple[str, int]]:
        """(bid, ask) shown for a contract: ((price text, size), (price text, size))."""
        m, outcome = self._market_of[con_id]
        own = m.bids[outcome]
        opp = m.bids[outcome.opposite]
        bid = EMPTY_TICK
        ask = EMPTY_TICK
        if own:
            p = max(own)
            bid = (w.fmt_price(p), own[p])
        if opp:
            q = max(opp)
            ask = (w.fmt_price(PAIR_PRICE - q), opp[q])
        return bid, ask

    def _uncross(self, m: _Market) -> None:
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

    def _publish(self, con_id: int, *, force: bool = False) -> None:
        subs = self._subs.get(con_id)
        if not subs or self.ticks_paused or self.muted:
            return
        bid, ask = self.top(con_id)
        old = self._shown.get(con_id)
        msgs: list[list[Field]] = []
        if force or old is None or old[0] != bid:
            msgs.append([1, 6, 0, TICK_BID, bid[0], bid[1], 0])
        if force or old is None or old[1] != ask:
            msgs.append([1, 6, 0, TICK_ASK, ask[0], ask[1], 0])
        if not msgs:
            return
        self._shown[con_id] = (bid, ask)
        for s, req_id in list(subs):
            for msg in msgs:
                msg[2] = req_id
            s.send(*msgs)

    # ------------------------------------------------------------------ connections

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = _Session(self, reader, writer)
        self._sessions.add(s)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            if await reader.readexactly(4) != b"API\0":
                return
            (n,) = w.HEADER.unpack(await reader.readexactly(4))
            hello = (await reader.readexactly(n)).decode()
            lo_s, _, hi_s = hello[1:].split(" ", 1)[0].partition("..")
            lo, hi = int(lo_s), int(hi_s or lo_s)
            if lo > self.server_version:
                return
            s.sv = min(hi, self.server_version)
            writer.write(w.frame([s.sv, _now_str()]))
            self.connections += 1
            buf = bytearray()
            while not s.closed:
                data = await reader.read(65536)
                if not data:
                    break
                buf += data
                for fields in w.split_frames(buf):
                    self._dispatch(s, fields)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as exc:
            log.debug("tws session ended: %r", exc)
        finally:
            s.closed = True
            self._sessions.discard(s)
            if task is not None:
                self._tasks.discard(task)
            for req_id, con_id in s.mkt.items():
                self._subs[con_id].pop((s, req_id), None)
            with contextlib.suppress(Exception):
                writer.close()

    def _dispatch(self, s: _Session, fields: list[str]) -> None:
        if self.muted:
            return
        try:
            msg_id = int(fields[0])
        except (ValueError, IndexError):
            log.warning("tws: bad message %r", fields[:3])
            return
        if not s.started and msg_id != 71:
            log.warning("tws: message %s before startApi", msg_id)
            return
        handler = self._handlers.get(msg_id)
        if handler is None:
            log.info("tws: unhandled message id %s", msg_id)
            return
        try:
            handler(s, fields)
        except (ValueError, IndexError, KeyError) as exc:
            log.warning("tws: cannot handle %s: %r", fields[:4], exc)

    def _start_api(self, s: _Session, f: list[str]) -> None:
        client_id = int(f[2])
        if any(
            o.started and not o.closed and o.client_id == client_id
            for o in self._sessions
            if o is not s
        ):
            s.send(
                w.error(
                    s.sv,
                    -1,
                    326,
                    f"Unable to connect as the client id {client_id} is already in use.",
                )
            )
            s.abort()
            return
        s.client_id = client_id
        s.started = True
        nid = self._next_ids.setdefault(client_id, self._first_id)
        s.send(
            [15, 1, self.account],
            [9, 1, nid],
            w.error(s.sv, -1, 2104, "Market data farm connection is OK:usfarm"),
            w.error(s.sv, -1, 2106, "HMDS data farm connection is OK:ushmds"),
            w.error(s.sv, -1, 2158, "Sec-def data farm connection is OK:secdefnj"),
        )

    def _req_ids(self, s: _Session, f: list[str]) -> None:
        s.send([9, 1, self._next_ids.get(s.client_id, self._first_id)])

    # ------------------------------------------------------------------ contracts

    def _find(self, cf: list[str]) -> list[TwsContract]:
        """Contracts matching a 12-field contract (conId … tradingClass); empty = any."""
        con_id = int(cf[0] or 0)
        if con_id:
            c = self.contracts.get(con_id)
            return [c] if c is not None else []
        symbol, sec_type, ltd, strike, right = cf[1], cf[2], cf[3], cf[4], cf[5]
        exchange, currency, local_symbol, trading_class = cf[7], cf[9], cf[10], cf[11]
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
                or (local_symbol and c.local_symbol != local_symbol)
                or (trading_class and c.trading_class != trading_class)
            ):
                continue
            out.append(c)
        return out

    def _req_contract_details(self, s: _Session, f: list[str]) -> None:
        req_id = int(f[2])
        found = self._find(f[3:15])
        if not found:
            s.send(
                w.error(s.sv, req_id, 200, "No security definition has been found for the request")
            )
            return
        s.send(*(w.contract_details(s.sv, req_id, c) for c in found), [52, 1, req_id])

    def _req_sec_def_opt_params(self, s: _Session, f: list[str]) -> None:
        """Expirations and strikes of a product (undocumented for FORECASTX; a guess)."""
        req_id, symbol = int(f[1]), f[2]
        under = self._underliers.get(symbol, 0)
        opts = [c for c in self.contracts.values() if c.symbol == symbol and c.sec_type == "OPT"]
        if opts:
            exps = sorted({c.last_trade_date for c in opts})
            strikes = sorted({c.strike for c in opts}, key=float)
            s.send(
                [
                    75,
                    req_id,
                    "FORECASTX",
                    under,
                    symbol,
                    "1",
                    len(exps),
                    *exps,
                    len(strikes),
                    *strikes,
                ]
            )
        s.send([76, req_id])

    # ------------------------------------------------------------------ market data

    def _req_mkt_data(self, s: _Session, f: list[str]) -> None:
        req_id = int(f[2])
        found = self._find(f[3:15])
        if len(found) != 1 or found[0].con_id not in self._market_of:
            s.send(
                w.error(s.sv, req_id, 200, "No security definition has been found for the request")
            )
            return
        con_id = found[0].con_id
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

    def _cancel_mkt_data(self, s: _Session, f: list[str]) -> None:
        req_id = int(f[2])
        con_id = s.mkt.pop(req_id, None)
        if con_id is not None:
            self._subs[con_id].pop((s, req_id), None)

    def _req_mkt_depth(self, s: _Session, f: list[str]) -> None:
        text = "Deep market data is not supported for this combination of security type/exchange"
        s.send(w.error(s.sv, int(f[2]), 10092, text))

    # ------------------------------------------------------------------ orders

    def _place_order(self, s: _Session, f: list[str]) -> None:
        order_id = int(f[1])
        self.orders_received += 1
        order_ref = f[26]
        self.orders_by_ref[order_ref] += 1
        key = (s.client_id, order_id)
        nid = self._next_ids.get(s.client_id, self._first_id)
        self._next_ids[s.client_id] = max(nid, order_id + 1)
        if key in self._by_client:
            s.send(w.error(s.sv, order_id, 103, f"Duplicate order id {order_id}"))
            return
        found = self._find(f[2:14])
        if len(found) != 1 or found[0].con_id not in self._market_of:
            s.send(
                w.error(
                    s.sv, order_id, 200, "No security definition has been found for the request"
                )
            )
            return
        contract = found[0]
        market, outcome = self._market_of[contract.con_id]
        action, qty_s, order_type, lmt_s = f[16], f[17], f[18], f[19]
        tif = f[21].upper() or "DAY"  # TWS's default time in force
        self._perm_seq += 1
        view = OrderView(
            order_id, s.client_id, self._perm_seq, contract, action, 0, order_type, lmt_s, tif,
            f[23] or self.account, order_ref, f[33] == "1", "PendingSubmit",
        )  # fmt: skip
        reason, qty, limit = self._validate(action, qty_s, order_type, lmt_s, tif)
        text = f"Order rejected - reason:{reason}"
        if not reason and self.trading_closed(contract.con_id):
            reason = TRADING_CLOSED
            text = f"Order rejected - reason: {reason}"
        fault, fault_n = self._faults.popleft() if self._faults else ("", 0)
        if not reason and fault == "reject":
            reason = "simulated reject (fault switch)"
            text = f"Order rejected - reason:{reason}"
        view.total_qty = qty
        o = _Order(view, market, outcome, limit, s.client_id)
        self._orders[view.perm_id] = o
        self._by_client[key] = o
        if reason:
            view.status = "Cancelled"
            view.completed_status = f"Rejected: {reason}"
            view.completed_time = _now_str()
            o.done = True
            s.send(w.error(s.sv, order_id, 201, text))
            return
        view.status = "Submitted"
        s.send(w.open_order(s.sv, view), w.order_status(view))
        o.cancel_remainder = tif == "IOC"
        cap: int | None = None
        if fault == "never_fill":
            o.hold = True
            o.cancel_remainder = False
            market.resting.append(o)
            return
        if fault == "partial":
            cap = fault_n
        if self.fill_delay_ms > 0:
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle | None = None

            def later() -> None:
                if handle is not None:
                    self._timers.discard(handle)
                if not o.done:
                    self._execute(o, cap)

            handle = loop.call_later(self.fill_delay_ms / 1000, later)
            self._timers.add(handle)
            return
        self._execute(o, cap)

    @staticmethod
    def _validate(
        action: str, qty_s: str, order_type: str, lmt_s: str, tif: str
    ) -> tuple[str, int, int]:
        """ForecastEx rules (reference/ibkr.md §A4); returns (reason or "", contracts, limit)."""
        try:
            qty_d = Decimal(qty_s)
            lmt_d = Decimal(lmt_s) if lmt_s else Decimal(-1)
        except InvalidOperation:
            return "unreadable quantity or price", 0, 0
        qty = int(qty_d) if qty_d == qty_d.to_integral_value() else 0
        limit_units = lmt_d * PRICE_SCALE
        limit = int(limit_units) if limit_units == limit_units.to_integral_value() else -1
        if action != "BUY":
            return "ForecastEx contracts can only be bought", qty, limit
        if order_type != "LMT":
            return "Event contracts only support limit orders", qty, limit
        if tif not in ("DAY", "GTC", "IOC"):
            return f"time in force {tif!r} is not supported (DAY, GTC, IOC)", qty, limit
        if qty <= 0:
            return f"quantity {qty_s} must be a positive whole number of contracts", qty, limit
        if limit < 0 or limit % CENT:
            return (
                f"price {lmt_s} does not conform to the $0.01 minimum price variation",
                qty,
                limit,
            )
        if not MIN_PRICE <= limit <= MAX_PRICE:
            return f"price {lmt_s} is outside 0.02-0.99", qty, limit
        return "", qty, limit

    def _execute(self, o: _Order, cap: int | None) -> None:
        """Match ``o`` against the opposite bids now; IOC cancels what is left."""
        fills = self._match(o, cap)
        if cap is not None and not o.done:
            o.hold = True  # the partial-fill fault fills once and never again
        if fills:
            self._after_fills(o, fills)
        if not o.done and o.cancel_remainder:
            self._cancel(o, error=False)
        elif not o.done and o not in o.market.resting:
            o.market.resting.append(o)

    def _match(self, o: _Order, cap: int | None) -> list[_Exec]:
        v = o.view
        need = v.total_qty - v.filled
        if cap is not None:
            need = min(need, cap)
        opp = o.market.bids[o.outcome.opposite]
        min_opp = PAIR_PRICE - o.limit
        fills: list[_Exec] = []
        while need > 0 and opp:
            q = max(opp)
            if q < min_opp:
                break
            take = min(opp[q], need)
            opp[q] -= take
            if not opp[q]:
                del opp[q]
            need -= take
            price = PAIR_PRICE - q
            v.filled += take
            o.cost += price * take * QTY_SCALE
            v.avg_fill_price = w.fmt_price(o.cost // (v.filled * QTY_SCALE))
            v.last_fill_price = w.fmt_price(price)
            self._exec_seq += 1
            commission = Money(self.commission_per_contract_usd * take)
            ex = _Exec(
                f"{v.perm_id:08x}.{self._exec_seq:08x}.01.01", o, _now_str(), take, price,
                v.filled, v.avg_fill_price, commission,
            )  # fmt: skip
            self.executions.append(ex)
            fills.append(ex)
            self._book_position(o, take, price, commission)
        if v.filled >= v.total_qty:
            v.status = "Filled"
            self._finish(o)
        return fills

    def _finish(self, o: _Order) -> None:
        o.done = True
        o.view.completed_time = _now_str()
        o.view.completed_status = o.view.status
        with contextlib.suppress(ValueError):
            o.market.resting.remove(o)

    def _book_position(self, o: _Order, n: int, price: int, commission: Money) -> None:
        """Buying X against a held opposite Y nets the pair into $1 of cash (ForecastEx)."""
        m = o.market
        x = m.contract(o.outcome).con_id
        y = m.contract(o.outcome.opposite).con_id
        cost = Money(price * n * QTY_SCALE)
        self.cash = Money(self.cash - cost - commission)
        held_y, cost_y = self.positions.get(y, (0, Money(0)))
        net = min(held_y, n)
        if net:
            released = Money(cost_y * net // held_y)
            self.positions[y] = (held_y - net, Money(cost_y - released))
            self.cash = Money(self.cash + net * MONEY_SCALE)
        rest = n - net
        if rest:
            held_x, cost_x = self.positions.get(x, (0, Money(0)))
            self.positions[x] = (held_x + rest, Money(cost_x + cost * rest // n))

    def _after_fills(self, o: _Order, fills: list[_Exec]) -> None:
        owner = self._session_of(o.session_key)
        v = o.view
        if owner is not None:
            msgs = [
                w.exec_details(owner.sv, -1, v, e.exec_id, e.time_str, e.shares, e.price, e.cum_qty)
                for e in fills
            ]
            msgs += [w.open_order(owner.sv, v), w.order_status(v)]
            msgs += [w.commission_report(e.exec_id, e.commission) for e in fills]
            owner.send(*msgs)
        self._push_portfolio(o.market)
        self._publish(o.market.yes.con_id)
        self._publish(o.market.no.con_id)

    def _match_resting(self, m: _Market) -> None:
        for o in list(m.resting):
            if o.hold or o.done:
                continue
            fills = self._match(o, None)
            if fills:
                self._after_fills(o, fills)

    def _session_of(self, client_id: int) -> _Session | None:
        for s in self._sessions:
            if s.started and s.client_id == client_id and not s.closed:
                return s
        return None

    def _cancel(self, o: _Order, *, error: bool, confirm_after_ms: int = 0) -> None:
        o.view.status = "Cancelled"
        self._finish(o)
        owner = self._session_of(o.session_key)
        if owner is None:
            return
        msgs = [w.order_status(o.view)]
        if error:
            msgs.append(w.error(owner.sv, o.view.order_id, 202, "Order Canceled - reason:"))
        if confirm_after_ms <= 0:
            owner.send(*msgs)
            return
        # carried out now, confirmed late: PendingCancel first, the confirmation later
        pending = w.order_status(o.view)
        pending[2] = "PendingCancel"
        owner.send(pending)
        self._later(confirm_after_ms, lambda: self._send_to(o.session_key, msgs))

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

    def _pending_cancel(self, o: _Order, *, silent: bool) -> None:
        """Acknowledge a cancel request without carrying it out."""
        self.cancels_ignored += 1
        o.view.status = "PendingCancel"
        owner = self._session_of(o.session_key)
        if owner is not None and not silent:
            owner.send(w.order_status(o.view))

    def _force_fill(self, o: _Order) -> None:
        """Fill what is left of ``o`` at its limit against an unseen counterparty."""
        o.cancel_locked = False
        if o.done:
            return
        v = o.view
        take = v.total_qty - v.filled
        if take <= 0:
            return
        price = o.limit
        v.filled += take
        o.cost += price * take * QTY_SCALE
        v.avg_fill_price = w.fmt_price(o.cost // (v.filled * QTY_SCALE))
        v.last_fill_price = w.fmt_price(price)
        self._exec_seq += 1
        commission = Money(self.commission_per_contract_usd * take)
        ex = _Exec(
            f"{v.perm_id:08x}.{self._exec_seq:08x}.01.01", o, _now_str(), take, price,
            v.filled, v.avg_fill_price, commission,
        )  # fmt: skip
        self.executions.append(ex)
        self._book_position(o, take, price, commission)
        v.status = "Filled"
        self._finish(o)
        self._after_fills(o, [ex])

    def _cancel_order(self, s: _Session, f: list[str]) -> None:
        self.cancels_received += 1
        order_id = int(f[2])
        o = self._by_client.get((s.client_id, order_id))
        if o is None:
            text = f"OrderId {order_id} that needs to be cancelled is not found."
            s.send(w.error(s.sv, order_id, 10147, text))
        elif o.done:
            text = (
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {o.view.status}."
            )
            s.send(w.error(s.sv, order_id, 10148, text))
        elif o.cancel_locked:
            self._pending_cancel(o, silent=False)
        elif self._cancel_faults:
            mode, fill_after_ms = self._cancel_faults.popleft()
            self._pending_cancel(o, silent=mode == "silent")
            if fill_after_ms is not None:
                o.hold = True
                o.cancel_locked = True
                self._later(fill_after_ms, lambda: self._force_fill(o))
        else:
            self._cancel(o, error=True, confirm_after_ms=self.cancel_delay_ms)

    def _global_cancel(self, s: _Session, f: list[str]) -> None:
        for o in list(self._orders.values()):
            if not o.done:
                self._cancel(o, error=True)

    def _req_open_orders(self, s: _Session, f: list[str], *, all_clients: bool = False) -> None:
        msgs: list[list[Field]] = []
        for o in self._orders.values():
            if not o.done and (all_clients or o.session_key == s.client_id):
                msgs += [w.open_order(s.sv, o.view), w.order_status(o.view)]
        s.send(*msgs, [53, 1])

    def _req_all_open_orders(self, s: _Session, f: list[str]) -> None:
        self._req_open_orders(s, f, all_clients=True)

    def _req_completed_orders(self, s: _Session, f: list[str]) -> None:
        msgs = [w.completed_order(s.sv, o.view) for o in self._orders.values() if o.done]
        s.send(*msgs, [102])

    def _req_executions(self, s: _Session, f: list[str]) -> None:
        req_id, client_id = int(f[2]), int(f[3] or 0)
        msgs: list[list[Field]] = []
        for e in self.executions:
            if client_id and e.order.session_key != client_id:
                continue
            v = e.order.view
            msgs.append(
                w.exec_details(s.sv, req_id, v, e.exec_id, e.time_str, e.shares, e.price, e.cum_qty)
            )
            msgs.append(w.commission_report(e.exec_id, e.commission))
        s.send(*msgs, [55, 1, req_id])

    # ------------------------------------------------------------------ account

    def account_values(self) -> dict[str, str]:
        """Cash-account figures; positions are valued at cost (the sim marks no prices)."""
        at_cost = sum(c for _, c in self.positions.values())
        nlv = self.cash + at_cost
        cash = w.fmt_money(self.cash)
        return {
            "NetLiquidation": w.fmt_money(nlv),
            "TotalCashValue": cash,
            "AvailableFunds": cash,
            "BuyingPower": cash,
            "EquityWithLoanValue": w.fmt_money(nlv),
            "GrossPositionValue": w.fmt_money(at_cost),
        }

    def _position_rows(
        self, con_ids: Sequence[int] | None = None
    ) -> list[tuple[TwsContract, int, str, str]]:
        rows = []
        for con_id in con_ids if con_ids is not None else list(self.positions):
            n, cost = self.positions.get(con_id, (0, Money(0)))
            c = self.contracts[con_id]
            avg = w.fmt_money(cost // n) if n else "0"
            rows.append((c, n, avg, w.fmt_money(cost)))
        return rows

    def _req_positions(self, s: _Session, f: list[str]) -> None:
        s.positions_sub = True
        rows = [w.position(self.account, c, n, avg) for c, n, avg, _ in self._position_rows() if n]
        s.send(*rows, [62, 1])

    def _cancel_positions(self, s: _Session, f: list[str]) -> None:
        s.positions_sub = False

    def _account_msgs(self, con_ids: Sequence[int] | None, *, only_held: bool) -> list[list[Field]]:
        msgs: list[list[Field]] = [
            [6, 2, k, v, "USD", self.account] for k, v in self.account_values().items()
        ]
        for c, n, avg, value in self._position_rows(con_ids):
            if n or not only_held:
                msgs.append(w.portfolio(self.account, c, n, avg, value, avg))
        msgs.append([8, 1, time.strftime("%H:%M", time.gmtime())])
        return msgs

    def _req_account_updates(self, s: _Session, f: list[str]) -> None:
        s.account_sub = f[2] == "1"
        if s.account_sub:
            s.send(*self._account_msgs(None, only_held=True), [54, 1, self.account])

    def _req_account_updates_multi(self, s: _Session, f: list[str]) -> None:
        req_id = int(f[2])
        s.multi_reqs.add(req_id)
        rows: list[list[Field]] = [
            [73, 1, req_id, self.account, "", k, v, "USD"] for k, v in self.account_values().items()
        ]
        s.send(*rows, [74, 1, req_id])

    def _req_account_summary(self, s: _Session, f: list[str]) -> None:
        req_id = int(f[2])
        tags = [t for t in f[4].split(",") if t]
        vals = self.account_values()
        rows: list[list[Field]] = [
            [63, 1, req_id, self.account, t, vals[t], "USD"]
            for t in (tags or list(vals))
            if t in vals
        ]
        s.send(*rows, [64, 1, req_id])

    def _cancel_account_summary(self, s: _Session, f: list[str]) -> None:
        s.summary_reqs.pop(int(f[2]), None)

    def _push_portfolio(self, m: _Market) -> None:
        con_ids = [m.yes.con_id, m.no.con_id]
        rows = self._position_rows(con_ids)
        for s in list(self._sessions):
            if not s.started or s.closed:
                continue
            msgs: list[list[Field]] = []
            if s.positions_sub:
                msgs += [w.position(self.account, c, n, avg) for c, n, avg, _ in rows]
            if s.account_sub:
                msgs += self._account_msgs(con_ids, only_held=False)
            for req_id in s.multi_reqs:
                msgs += [
                    [73, 1, req_id, self.account, "", k, v, "USD"]
                    for k, v in self.account_values().items()
                ]
            if msgs:
                s.send(*msgs)


def _conforms(server: TwsServer) -> BookSink:
    """mypy checks here that the TWS takes the shared market-driver interface."""
    return server


def _demo(server: TwsServer) -> None:
    # half a year ahead, so the demo contract is still tradable whenever it is started
    last_trade = (dt.datetime.now(dt.UTC) + dt.timedelta(days=180)).strftime("%Y%m%d")
    server.add_market(
        "FF-DEMO", symbol="FF", last_trade_date=last_trade, strike="3.625",
        yes_con_id=713921696, no_con_id=713921701,
    )  # fmt: skip
    server.set_bids("FF-DEMO", Outcome.YES, [(Price(4500), Qty(1000)), (Price(4400), Qty(2500))])
    server.set_bids("FF-DEMO", Outcome.NO, [(Price(5300), Qty(800)), (Price(5200), Qty(3000))])


async def _serve(port: int, server_version: int) -> None:
    server = TwsServer(port=port, server_version=server_version)
    _demo(server)
    await server.start()
    print(f"local TWS (server version {server_version}) on 127.0.0.1:{server.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Local TWS speaking the TWS socket protocol")
    ap.add_argument("--port", type=int, default=7497)
    ap.add_argument("--server-version", type=int, default=w.MAX_CLIENT_VERSION)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.server_version))


if __name__ == "__main__":
    main()
