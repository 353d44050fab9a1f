"""A local TWS / IB Gateway on loopback that ib_async connects to unmodified.

It speaks the TWS socket protocol (server versions 157–178, default 178) for what a
ForecastEx trader uses: the connect-time sync, contract details and symbol search,
top-of-book market data and its recorded history (bars, head timestamp), BUY LMT orders
(new, modified, staged with transmit=False, whatIf previews) with fills/commissions,
cancels, rejects, DAY expiry at the session close, positions with YES/NO netting, account
values/summary and PnL. See docs/ibkr.md for what it implements and the choices it makes.
This module is the shell (sockets, handshake, dispatch, markets); the parts live in
``tws_orders``, ``tws_market`` and ``tws_account`` over the state in ``tws_state``.

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
settled market are rejected (201); DAY orders are cancelled at their session's close.
``settle(market, winner)`` cancels the market's working orders, pays $1 per held winning
contract into ``cash``, zeroes both positions, empties the book and, as real TWS does
for settled contracts, serves empty trading/liquid hours.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable

from arbkit.model import MONEY_SCALE, Money, Outcome, Price, Qty
from arbkit.sim import tws_wire as w
from arbkit.sim.driver import BookSink
from arbkit.sim.tws_account import Account
from arbkit.sim.tws_market import MarketData
from arbkit.sim.tws_orders import Orders
from arbkit.sim.tws_state import (
    DEFAULT_CASH_USD,
    LIVE_STATES,
    TRADING_CLOSED,
    ZERO_USD,
    Market,
    Session,
    fmt_strike,
    last_trade_ns,
    local_symbol,
    now_str,
    sessions_24h,
)
from arbkit.sim.tws_wire import TwsContract

__all__ = ["LIVE_STATES", "TRADING_CLOSED", "TwsServer", "last_trade_ns", "main"]

log = logging.getLogger(__name__)

#: where the request id sits in requests ib_async/ibapi send (for error replies to
#: requests the local TWS does not serve, or fails on); absent = reqId −1
REQ_ID_AT: dict[int, int] = {
    1: 2, 3: 1, 4: 2, 7: 2, 9: 2, 10: 2, 18: 2, 20: 1, 21: 2, 22: 1, 50: 2, 52: 2, 54: 2,
    55: 2, 62: 2, 67: 2, 68: 2, 69: 2, 74: 2, 76: 2, 78: 1, 79: 1, 81: 1, 83: 1, 84: 1,
    86: 1, 87: 1, 88: 1, 91: 1, 92: 1, 94: 1, 96: 1, 97: 1, 100: 1, 102: 1, 104: 1,
}  # fmt: skip
#: ibapi errors.py UPDATE_TWS: what IBKR's own client reports for a request the server's
#: version cannot serve; the closest TWS-side meaning for "not supported here"
UNSUPPORTED = (503, "The TWS is out of date and must be upgraded.")
#: IBKR's error table: "Server error when reading an API client request."
READ_ERROR = 320


class TwsServer(Orders, MarketData, Account):
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
        history_limit: int = 10_000,
        time_zone: str = "UTC",
    ) -> None:
        super().__init__(
            host, port, server_version=server_version, account=account,
            commission_per_contract_usd=commission_per_contract_usd,
            starting_cash_usd=starting_cash_usd, next_valid_id=next_valid_id,
            clock_ns=clock_ns, history_limit=history_limit, time_zone=time_zone,
        )  # fmt: skip
        nothing: Callable[[Session, list[str]], None] = lambda s, f: None  # noqa: E731
        self._handlers: dict[int, Callable[[Session, list[str]], None]] = {
            71: self._start_api,
            61: self._req_positions,
            64: self._cancel_positions,
            5: self._req_open_orders,
            16: self._req_all_open_orders,
            15: nothing,  # reqAutoOpenOrders
            12: nothing,  # reqNewsBulletins: a subscription; there is no news
            13: nothing,  # cancelNewsBulletins
            14: nothing,  # setServerLogLevel
            17: lambda s, f: s.send([15, 1, self.account]),  # reqManagedAccts
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
            59: nothing,  # reqMarketDataType: live only
            10: self._req_mkt_depth,
            11: nothing,  # cancelMktDepth
            3: self._place_order,
            4: self._cancel_order,
            58: self._global_cancel,
            8: self._req_ids,
            49: lambda s, f: s.send([49, 1, int(time.time())]),
            78: self._req_sec_def_opt_params,
            91: lambda s, f: s.send([93, int(f[1]), 1, 0, "0.01"]),  # one $0.01 tick everywhere
            81: self._req_matching_symbols,
            20: self._req_historical_data,
            25: nothing,  # cancelHistoricalData: every answer is complete at once
            87: self._req_head_timestamp,
            90: nothing,  # cancelHeadTimeStamp
            92: self._req_pnl,
            93: self._cancel_pnl,
            94: self._req_pnl_single,
            95: self._cancel_pnl,
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

    def served_message_ids(self) -> list[int]:
        """Client message ids this TWS answers (everything else gets error 503)."""
        return sorted(self._handlers)

    @property
    def client_count(self) -> int:
        return sum(1 for s in self._sessions if s.started)

    # ------------------------------------------------------------------ markets

    @property
    def underlier_symbols(self) -> list[str]:
        """The ForecastEx products (IND underliers) listed."""
        return sorted(self._underliers)

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
        underlier_name: str = "",
    ) -> None:
        """Register one ForecastEx question: its YES (C) and NO (P) contracts.
        ``long_name`` is the contracts' (the local TWS puts the question there);
        ``underlier_name`` the IND underlier's (default: ``long_name``)."""
        if under_con_id is None:
            under_con_id = self._underliers.get(symbol)
        if under_con_id is None:
            under_con_id = self._next_under_id
            self._next_under_id += 1
        if symbol not in self._underliers:
            self._underliers[symbol] = under_con_id
            self.contracts[under_con_id] = TwsContract(
                under_con_id, symbol, "IND", "", "0.0", "", "", "FORECASTX", "USD", symbol, "",
                long_name=underlier_name or long_name or symbol, category="ForecastEx",
                min_tick="0.01",
                order_types="", market_rule_ids="",
            )  # fmt: skip
        k = fmt_strike(strike)
        hours = trading_hours if trading_hours is not None else sessions_24h()
        made: dict[Outcome, TwsContract] = {}
        for outcome, con_id, right in (
            (Outcome.YES, yes_con_id, "C"),
            (Outcome.NO, no_con_id, "P"),
        ):
            if con_id in self.contracts:
                raise ValueError(f"conId {con_id} already listed")
            made[outcome] = c = TwsContract(
                con_id, symbol, "OPT", last_trade_date, k, right, "1", "FORECASTX", "USD",
                local_symbol(symbol, last_trade_date, k, right), symbol,
                long_name=long_name or symbol, under_con_id=under_con_id,
                real_expiration_date=real_expiration_date or last_trade_date,
                last_trade_time=last_trade_time, time_zone_id=time_zone_id,
                trading_hours=hours, liquid_hours=hours, category="ForecastEx",
            )  # fmt: skip
            self.contracts[con_id] = c
        m = Market(
            market_id, made[Outcome.YES], made[Outcome.NO], {Outcome.YES: {}, Outcome.NO: {}}
        )
        self.markets[market_id] = m
        self._market_of[yes_con_id] = (m, Outcome.YES)
        self._market_of[no_con_id] = (m, Outcome.NO)

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
            held, cost = self.positions.pop(con_id, (0, Money(0)))
            payout = held * MONEY_SCALE if outcome is winner else 0
            self.cash = Money(self.cash + payout)
            if held:
                self._realize(con_id, payout - cost)
        m.yes, m.no = (
            dataclasses.replace(c, trading_hours="", liquid_hours="") for c in (m.yes, m.no)
        )
        self.contracts[m.yes.con_id], self.contracts[m.no.con_id] = m.yes, m.no
        m.bids = {Outcome.YES: {}, Outcome.NO: {}}
        self._push_portfolio(m)
        self._book_changed(m)

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

    # ------------------------------------------------------------------ connections

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = Session(self, reader, writer)
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
            if lo > self.server_version or hi < w.MIN_CLIENT_VERSION:
                # no common version: TWS closes the socket without a reply (ibapi's
                # connect() then sees the disconnect while waiting for the version)
                log.warning("tws: refusing client versions %s..%s", lo, hi)
                return
            s.sv = min(hi, self.server_version)
            writer.write(w.frame([s.sv, now_str()]))
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

    @staticmethod
    def _req_id_of(msg_id: int, fields: list[str]) -> int:
        at = REQ_ID_AT.get(msg_id)
        if at is None or at >= len(fields):
            return -1
        try:
            return int(fields[at])
        except ValueError:
            return -1

    def _dispatch(self, s: Session, fields: list[str]) -> None:
        """Every request gets its answer or an error: unknown ids get 503, a handler that
        fails gets 320 to the request's id (and a log line with the traceback)."""
        if self.muted:
            return
        try:
            msg_id = int(fields[0])
        except (ValueError, IndexError):
            log.warning("tws: bad message %r", fields[:3])
            s.error(-1, 508, "Bad message")  # ibapi errors.py BAD_MESSAGE
            return
        if not s.started and msg_id != 71:
            # ibapi and ib_async both send startApi first, right after the handshake, so
            # only a broken client gets here; there is no session (client id) to answer
            # for yet, and TWS's own reply is undocumented: logged and dropped
            log.warning("tws: message %s before startApi dropped", msg_id)
            return
        handler = self._handlers.get(msg_id)
        req_id = self._req_id_of(msg_id, fields)
        if handler is None:
            log.info("tws: unsupported message id %s (reqId %s)", msg_id, req_id)
            s.error(req_id, *UNSUPPORTED)
            return
        try:
            if msg_id != 71:
                self._expire_day_orders()
            handler(s, fields)
        except Exception as exc:  # every failure must reach the client
            self.handler_errors += 1
            log.warning("tws: cannot handle %s: %r", fields[:4], exc, exc_info=True)
            text = f"Server error when reading an API client request. ({type(exc).__name__})"
            s.error(req_id, READ_ERROR, text)

    def _start_api(self, s: Session, f: list[str]) -> None:
        client_id = int(f[2])
        if any(
            o.started and not o.closed and o.client_id == client_id
            for o in self._sessions
            if o is not s
        ):
            s.error(-1, 326, f"Unable to connect as the client id {client_id} is already in use.")
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

    def _req_ids(self, s: Session, f: list[str]) -> None:
        s.send([9, 1, self._next_ids.get(s.client_id, self._first_id)])


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
