"""Local TWS, order side: placeOrder (new, modify, whatIf, staged), matching and fills,
cancels, DAY expiry, open/completed orders and executions.

Error codes (IBKR's error table; ib_async's ``wrapper.error`` for how a client reads them):
201 "Order rejected - reason:…" for a new order refused (ForecastEx rules, funds, account,
closed market), 103 for the reused id of a *finished* order, 321 for a refused
*modification* (ib_async treats 321 as a warning and keeps the order live, which it is),
10147/10148 for a cancel of an unknown / finished order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal, InvalidOperation

from arbkit.model import MONEY_SCALE, PRICE_SCALE, QTY_SCALE, Money, Outcome, Price
from arbkit.sim import tws_wire as w
from arbkit.sim.tws_market import _parse_when
from arbkit.sim.tws_state import (
    CENT,
    MAX_PRICE,
    MIN_PRICE,
    PAIR_PRICE,
    TRADING_CLOSED,
    Exec,
    Market,
    Session,
    SimOrder,
    TwsCore,
    now_str,
    session_close_ns,
)
from arbkit.sim.tws_wire import Field, OrderView, PlacedOrder, TwsContract

#: IBKR's insufficient-funds text for a cash account (as users quote it; unverified for
#: ForecastEx): the order's initial margin is its full cost there.
NO_FUNDS = (
    "YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION YOUR EQUITY WITH "
    "LOAN VALUE [{avail} USD] MUST EXCEED THE INITIAL MARGIN [{need} USD]"
)


class Orders(TwsCore):
    def trading_closed(self, con_id: int) -> bool:
        raise NotImplementedError

    # ------------------------------------------------------------------ placeOrder

    def _place_order(self, s: Session, f: list[str]) -> None:
        p = w.parse_place_order(s.sv, f)
        order_id = p.order_id
        self.orders_received += 1
        self.orders_by_ref[p.order_ref] += 1
        key = (s.client_id, order_id)
        nid = self._next_ids.get(s.client_id, self._first_id)
        self._next_ids[s.client_id] = max(nid, order_id + 1)
        self._expire_day_orders()
        existing = None if p.what_if else self._by_client.get(key)
        if existing is not None and existing.done:
            s.error(order_id, 103, f"Duplicate order id {order_id}")
            return
        contract = self._find_one(s, order_id, p.contract)
        if contract is None:
            return
        if existing is not None:
            self._modify(s, existing, p, contract)
            return
        reason, qty, limit = self._validate(p.action, p.qty, p.order_type, p.lmt, p.tif or "DAY")
        text = f"Order rejected - reason:{reason}"
        if not reason and p.account and p.account != self.account:
            reason = f"The account code {p.account} is not valid for this login"
            text = f"Order rejected - reason:{reason}"
        if not reason and self.trading_closed(contract.con_id):
            reason = TRADING_CLOSED
            text = f"Order rejected - reason: {reason}"
        if p.what_if:
            if reason:
                s.error(order_id, 201, text)
            else:
                self._what_if(s, p, contract, qty, limit)
            return
        fault, fault_n = self._faults.popleft() if self._faults else ("", 0)
        if not reason and fault == "reject":
            reason = "simulated reject (fault switch)"
            text = f"Order rejected - reason:{reason}"
        if not reason and p.transmit:
            reason = self._no_funds(qty * limit, None)
            text = f"Order rejected - reason:{reason}"
        market, outcome = self._market_of[contract.con_id]
        self._perm_seq += 1
        view = OrderView(
            order_id, s.client_id, self._perm_seq, contract, p.action, qty, p.order_type, p.lmt,
            p.tif or "DAY", p.account or self.account, p.order_ref, p.outside_rth,
            "PendingSubmit",
        )  # fmt: skip
        o = SimOrder(view, market, outcome, limit, s.client_id)
        self._orders[view.perm_id] = o
        self._by_client[key] = o
        if reason:
            view.status = "Cancelled"
            view.completed_status = f"Rejected: {reason}"
            view.completed_time = now_str()
            o.done = True
            s.error(order_id, 201, text)
            return
        o.cancel_remainder = view.tif == "IOC"
        if not p.transmit:
            o.staged = True
            # held in TWS, not sent to IB. TWSLink's docs call this state "Inactive", but
            # ib_async 2.1.0 counts Inactive as done and refuses to modify (= transmit) it;
            # PreSubmitted ("accepted, not yet elected") keeps it transmittable
            view.status = "PreSubmitted"
            s.send(w.open_order(s.sv, view), w.order_status(view))
            return
        self._submit(s, o, fault, fault_n)

    def _submit(self, s: Session, o: SimOrder, fault: str = "", fault_n: int = 0) -> None:
        """Send ``o`` to the exchange: Submitted, then match now or after the delay."""
        o.staged = False
        view = o.view
        view.status = "Submitted"
        if view.tif == "DAY":
            o.expire_ns = session_close_ns(view.contract, self.clock_ns())
            if o.expire_ns is not None:
                delay_ms = max(0, (o.expire_ns - self.clock_ns()) // 1_000_000)
                self._later(min(delay_ms, 86_400_000), self._expire_day_orders)
        s.send(w.open_order(s.sv, view), w.order_status(view))
        cap: int | None = None
        if fault == "never_fill":
            o.hold = True
            o.cancel_remainder = False
            o.market.resting.append(o)
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

    def _no_funds(self, cost_units: int, exclude: SimOrder | None) -> str:
        """ "" when ``cost_units`` (Price × contracts) plus what the other working orders
        may still spend fits the cash; else the reject reason."""
        reserved = sum(
            o.limit * (o.view.total_qty - o.view.filled)
            for o in self._orders.values()
            if not o.done and not o.staged and o is not exclude
        )
        need = Money((cost_units + reserved) * QTY_SCALE)
        if need <= self.cash:
            return ""
        return NO_FUNDS.format(avail=w.fmt_money(self.cash), need=w.fmt_money(need))

    def _modify(self, s: Session, o: SimOrder, p: PlacedOrder, contract: TwsContract) -> None:
        """placeOrder with a live order's id: new price and/or size (or transmit)."""
        v = o.view
        reason = ""
        if contract.con_id != v.contract.con_id or p.action != v.action:
            reason = "the contract and action of an order cannot be modified"
        elif p.order_type != v.order_type:
            reason = f"cannot change to the new order type {p.order_type}"
        r2, qty, limit = self._validate(p.action, p.qty, p.order_type, p.lmt, p.tif or v.tif)
        reason = reason or r2
        if not reason and qty <= v.filled:
            reason = f"quantity {qty} is not above the {v.filled} already filled"
        transmit = o.staged and p.transmit
        if not reason and (transmit or not o.staged):
            extra = qty - v.filled
            reason = self._no_funds(limit * extra, o)
        if reason:
            s.error(v.order_id, 321, f"Error validating request.-'bO' : cause - {reason}")
            return
        v.total_qty, o.limit, v.lmt_price = qty, limit, p.lmt
        v.tif = p.tif or v.tif
        o.cancel_remainder = v.tif == "IOC"
        v.order_ref = p.order_ref
        if o.staged and not transmit:
            s.send(w.open_order(s.sv, v), w.order_status(v))
            return
        if transmit:
            self._submit(s, o)
            return
        if v.status != "PendingCancel":
            v.status = "Submitted"
        s.send(w.open_order(s.sv, v), w.order_status(v))
        if o.hold:
            return
        self._execute(o, None)

    def _what_if(self, s: Session, p: PlacedOrder, c: TwsContract, qty: int, limit: int) -> None:
        """The OrderState preview in openOrder; nothing is stored, matched or booked."""
        vals = self.account_values()
        cost = Money(limit * qty * QTY_SCALE)
        commission = Money(self.commission_per_contract_usd * qty)
        init_before = Decimal(vals["InitMarginReq"])
        ewl_before = Decimal(vals["EquityWithLoanValue"])
        change = Decimal(w.fmt_money(cost))
        com = Decimal(w.fmt_money(commission))
        warning = self._no_funds(qty * limit, None)
        state = (
            str(init_before), str(init_before), str(ewl_before),  # before: init, maint, EWL
            str(change), str(change), str(-com),  # change
            str(init_before + change), str(init_before + change), str(ewl_before - com),
            str(com), str(com), str(com), "USD", warning,
        )  # fmt: skip
        view = OrderView(
            p.order_id, s.client_id, 0, c, p.action, qty, p.order_type, p.lmt, p.tif or "DAY",
            p.account or self.account, p.order_ref, p.outside_rth, "PreSubmitted",
            what_if=state,
        )  # fmt: skip
        s.send(w.open_order(s.sv, view))

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

    # ------------------------------------------------------------------ matching

    def _execute(self, o: SimOrder, cap: int | None) -> None:
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

    def _fill(self, o: SimOrder, take: int, price: int) -> Exec:
        v = o.view
        v.filled += take
        o.cost += price * take * QTY_SCALE
        v.avg_fill_price = w.fmt_price(o.cost // (v.filled * QTY_SCALE))
        v.last_fill_price = w.fmt_price(price)
        self._exec_seq += 1
        commission = Money(self.commission_per_contract_usd * take)
        ex = Exec(
            f"{v.perm_id:08x}.{self._exec_seq:08x}.01.01", o, now_str(), take, price,
            v.filled, v.avg_fill_price, commission, self._wall_ns(),
        )  # fmt: skip
        self.executions.append(ex)
        self._book_position(o, take, price, commission)
        self._record_trade(v.contract.con_id, price, take)
        return ex

    @staticmethod
    def _wall_ns() -> int:
        """Execution times are wall-clock (as their text is), whatever ``clock_ns`` says."""
        return time.time_ns()

    def _match(self, o: SimOrder, cap: int | None) -> list[Exec]:
        v = o.view
        need = v.total_qty - v.filled
        if cap is not None:
            need = min(need, cap)
        opp = o.market.bids[o.outcome.opposite]
        min_opp = PAIR_PRICE - o.limit
        fills: list[Exec] = []
        while need > 0 and opp:
            q = max(opp)
            if q < min_opp:
                break
            take = min(opp[q], need)
            opp[q] -= take
            if not opp[q]:
                del opp[q]
            need -= take
            fills.append(self._fill(o, take, PAIR_PRICE - q))
        if v.filled >= v.total_qty:
            v.status = "Filled"
            self._finish(o)
        return fills

    def _finish(self, o: SimOrder) -> None:
        o.done = True
        o.view.completed_time = now_str()
        o.view.completed_status = o.view.status
        with contextlib.suppress(ValueError):
            o.market.resting.remove(o)

    def _book_position(self, o: SimOrder, n: int, price: int, commission: Money) -> None:
        """Buying X against a held opposite Y nets the pair into $1 of cash (ForecastEx);
        the pair's $1 less both costs and the commission is realized PnL on Y."""
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
            self._realize(y, net * MONEY_SCALE - released - (cost + commission) * net // n)
        rest = n - net
        if rest:
            held_x, cost_x = self.positions.get(x, (0, Money(0)))
            self.positions[x] = (held_x + rest, Money(cost_x + cost * rest // n))

    def _after_fills(self, o: SimOrder, fills: list[Exec]) -> None:
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
        self._book_changed(o.market)

    def _match_resting(self, m: Market) -> None:
        for o in list(m.resting):
            if o.hold or o.done or o.staged:
                continue
            fills = self._match(o, None)
            if fills:
                self._after_fills(o, fills)

    def _expire_day_orders(self) -> None:
        """DAY orders die (Cancelled) at the close of the session they were placed in."""
        now = self.clock_ns()
        for o in list(self._orders.values()):
            if not o.done and o.expire_ns is not None and now >= o.expire_ns:
                self._cancel(o, error=False)

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
        o = SimOrder(view, m, outcome, int(limit) - int(limit) % CENT, 0)
        self._orders[view.perm_id] = o
        self._by_client[(0, -self._foreign_seq)] = o
        self.orders_by_ref[order_ref] += 1
        self._execute(o, None)
        return view.perm_id

    # ------------------------------------------------------------------ cancels

    def _cancel(self, o: SimOrder, *, error: bool, confirm_after_ms: int = 0) -> None:
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

    def _pending_cancel(self, o: SimOrder, *, silent: bool) -> None:
        """Acknowledge a cancel request without carrying it out."""
        self.cancels_ignored += 1
        o.view.status = "PendingCancel"
        owner = self._session_of(o.session_key)
        if owner is not None and not silent:
            owner.send(w.order_status(o.view))

    def _force_fill(self, o: SimOrder) -> None:
        """Fill what is left of ``o`` at its limit against an unseen counterparty."""
        o.cancel_locked = False
        if o.done:
            return
        v = o.view
        take = v.total_qty - v.filled
        if take <= 0:
            return
        ex = self._fill(o, take, o.limit)
        v.status = "Filled"
        self._finish(o)
        self._after_fills(o, [ex])

    def _cancel_order(self, s: Session, f: list[str]) -> None:
        self.cancels_received += 1
        order_id = int(f[2])
        self._expire_day_orders()
        o = self._by_client.get((s.client_id, order_id))
        if o is None:
            text = f"OrderId {order_id} that needs to be cancelled is not found."
            s.error(order_id, 10147, text)
        elif o.done:
            text = (
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {o.view.status}."
            )
            s.error(order_id, 10148, text)
        elif o.cancel_locked:
            self._pending_cancel(o, silent=False)
        elif self._cancel_faults and not o.staged:
            mode, fill_after_ms = self._cancel_faults.popleft()
            self._pending_cancel(o, silent=mode == "silent")
            if fill_after_ms is not None:
                o.hold = True
                o.cancel_locked = True
                self._later(fill_after_ms, lambda: self._force_fill(o))
        else:
            self._cancel(o, error=True, confirm_after_ms=self.cancel_delay_ms)

    def _global_cancel(self, s: Session, f: list[str]) -> None:
        for o in list(self._orders.values()):
            if not o.done:
                self._cancel(o, error=True)

    # ------------------------------------------------------------------ order queries

    def _req_open_orders(self, s: Session, f: list[str], *, all_clients: bool = False) -> None:
        self._expire_day_orders()
        msgs: list[list[Field]] = []
        for o in self._orders.values():
            if not o.done and (all_clients or o.session_key == s.client_id):
                msgs += [w.open_order(s.sv, o.view), w.order_status(o.view)]
        s.send(*msgs, [53, 1])

    def _req_all_open_orders(self, s: Session, f: list[str]) -> None:
        self._req_open_orders(s, f, all_clients=True)

    def _req_completed_orders(self, s: Session, f: list[str]) -> None:
        self._expire_day_orders()
        msgs = [w.completed_order(s.sv, o.view) for o in self._orders.values() if o.done]
        s.send(*msgs, [102])

    def _req_executions(self, s: Session, f: list[str]) -> None:
        """reqExecutions (7, version 3) honouring the ExecutionFilter ib_async sends at
        every version up to 178: clientId (0 = all), acctCode, time (executions at or
        after it; ``yyyymmdd hh:mm:ss [zone]``, no zone = ``time_zone``, or
        ``yyyymmdd-hh:mm:ss`` UTC), symbol, secType, exchange, side (BUY/SELL ≙ BOT/SLD)."""
        req_id = int(f[2])
        client_id, acct, when, symbol, sec_type, exchange, side = (f[3:10] + [""] * 7)[:7]
        since = 0
        if when.strip():
            try:
                since = _parse_when(when, self.time_zone)
            except ValueError:
                text = f"Error validating request.-'bU' : cause - bad time {when!r}"
                s.send(w.error(s.sv, req_id, 321, text), [55, 1, req_id])
                return
        want_side = {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())
        msgs: list[list[Field]] = []
        for e in self.executions:
            v = e.order.view
            c = v.contract
            if (
                (int(client_id or 0) and e.order.session_key != int(client_id))
                or (acct and v.account != acct)
                or (since and e.ts_ns < since)
                or (symbol and c.symbol != symbol)
                or (sec_type and c.sec_type != sec_type)
                or (exchange and c.exchange != exchange)
                or (want_side and want_side != "BOT")  # every fill here is a BUY
            ):
                continue
            msgs.append(
                w.exec_details(s.sv, req_id, v, e.exec_id, e.time_str, e.shares, e.price, e.cum_qty)
            )
            msgs.append(w.commission_report(e.exec_id, e.commission))
        s.send(*msgs, [55, 1, req_id])
