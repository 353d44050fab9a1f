"""Local TWS, account side: positions, account values and summary, PnL.

A ForecastEx account is a cash account holding fully paid contracts, so (IBKR's cash
account rules): EquityWithLoan = NetLiquidation = cash + positions at their marks; the
margin requirement of a long contract is its value, hence AvailableFunds =
ExcessLiquidity = BuyingPower = cash. Marks are the midpoint of the shown bid/ask, else
the bid, else the average cost (no last price exists on a pair-matched book).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from arbkit.model import QTY_SCALE, Money
from arbkit.sim import tws_wire as w
from arbkit.sim.tws_state import NS, Market, Session, TwsCore
from arbkit.sim.tws_wire import Field, TwsContract

#: reqAccountSummary tags served (IB's AccountSummaryTags names)
SUMMARY_TAGS = (
    "AccountType", "NetLiquidation", "TotalCashValue", "SettledCash", "AccruedCash",
    "BuyingPower", "EquityWithLoanValue", "GrossPositionValue", "InitMarginReq",
    "MaintMarginReq", "AvailableFunds", "ExcessLiquidity", "Cushion", "FullInitMarginReq",
    "FullMaintMarginReq", "FullAvailableFunds", "FullExcessLiquidity",
    "LookAheadInitMarginReq", "LookAheadMaintMarginReq", "LookAheadAvailableFunds",
    "LookAheadExcessLiquidity", "Leverage",
)  # fmt: skip
#: the cash balance tags a ``$LEDGER`` flag relays, per currency
LEDGER_TAGS = (
    "Currency", "CashBalance", "TotalCashBalance", "AccruedCash", "StockMarketValue",
    "OptionMarketValue", "FutureOptionValue", "FuturesPNL", "NetLiquidationByCurrency",
    "UnrealizedPnL", "RealizedPnL", "ExchangeRate", "NetDividend",
)  # fmt: skip
BASE_CURRENCY = "USD"


class Account(TwsCore):
    # ------------------------------------------------------------------ valuation

    def mark(self, con_id: int) -> int | None:
        """A contract's mark in Price units (None: no book and nothing held)."""
        if con_id in self._market_of:
            bid, _, ask, _ = self._top_units(con_id)
            if bid >= 0 and ask >= 0:
                return (bid + ask) // 2
            if bid >= 0:
                return bid
        n, cost = self.positions.get(con_id, (0, Money(0)))
        return cost // (n * QTY_SCALE) if n else None

    def _value(self, con_id: int) -> Money:
        n, _ = self.positions.get(con_id, (0, Money(0)))
        px = self.mark(con_id)
        return Money(n * px * QTY_SCALE) if n and px is not None else Money(0)

    def _unrealized(self, con_id: int) -> Money:
        n, cost = self.positions.get(con_id, (0, Money(0)))
        return Money(self._value(con_id) - cost) if n else Money(0)

    def account_values(self) -> dict[str, str]:
        """The account's figures, exact decimal text in USD (see the module docstring)."""
        gross = Money(sum(self._value(c) for c in self.positions))
        nlv = Money(self.cash + gross)
        cash = w.fmt_money(self.cash)
        margin = w.fmt_money(gross)
        cushion = f"{self.cash / nlv:.6f}" if nlv > 0 else "0"
        return {
            "NetLiquidation": w.fmt_money(nlv),
            "TotalCashValue": cash,
            "SettledCash": cash,
            "AccruedCash": "0.00",
            "AvailableFunds": cash,
            "BuyingPower": cash,
            "ExcessLiquidity": cash,
            "EquityWithLoanValue": w.fmt_money(nlv),
            "GrossPositionValue": w.fmt_money(gross),
            "InitMarginReq": margin,
            "MaintMarginReq": margin,
            "FullInitMarginReq": margin,
            "FullMaintMarginReq": margin,
            "FullAvailableFunds": cash,
            "FullExcessLiquidity": cash,
            "LookAheadInitMarginReq": margin,
            "LookAheadMaintMarginReq": margin,
            "LookAheadAvailableFunds": cash,
            "LookAheadExcessLiquidity": cash,
            "Cushion": cushion,
            "Leverage": "0.00",
        }

    def ledger(self) -> dict[str, str]:
        """The cash balance tags for the base currency (the only one held)."""
        gross = Money(sum(self._value(c) for c in self.positions))
        realized = Money(sum(self.realized.values()))
        unrealized = Money(sum(self._unrealized(c) for c in self.positions))
        cash = w.fmt_money(self.cash)
        return {
            "Currency": BASE_CURRENCY,
            "CashBalance": cash,
            "TotalCashBalance": cash,
            "AccruedCash": "0.00",
            "StockMarketValue": "0.00",
            "OptionMarketValue": w.fmt_money(gross),  # ForecastEx contracts are OPT
            "FutureOptionValue": "0.00",
            "FuturesPNL": "0.00",
            "NetLiquidationByCurrency": w.fmt_money(Money(self.cash + gross)),
            "UnrealizedPnL": w.fmt_money(unrealized),
            "RealizedPnL": w.fmt_money(realized),
            "ExchangeRate": "1.00",
            "NetDividend": "0.00",
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

    # ------------------------------------------------------------------ requests

    def _req_positions(self, s: Session, f: list[str]) -> None:
        s.positions_sub = True
        rows = [w.position(self.account, c, n, avg) for c, n, avg, _ in self._position_rows() if n]
        s.send(*rows, [62, 1])

    def _cancel_positions(self, s: Session, f: list[str]) -> None:
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

    def _req_account_updates(self, s: Session, f: list[str]) -> None:
        s.account_sub = f[2] == "1"
        if s.account_sub:
            s.send(*self._account_msgs(None, only_held=True), [54, 1, self.account])

    def _req_account_updates_multi(self, s: Session, f: list[str]) -> None:
        req_id = int(f[2])
        s.multi_reqs.add(req_id)
        rows: list[list[Field]] = [
            [73, 1, req_id, self.account, "", k, v, "USD"] for k, v in self.account_values().items()
        ]
        s.send(*rows, [74, 1, req_id])

    def _req_account_summary(self, s: Session, f: list[str]) -> None:
        """``63`` rows then ``64``. Tags are IB's names; ``$LEDGER`` relays the cash
        balance tags in the base currency, ``$LEDGER:USD`` in USD (the same here, labelled
        USD), ``$LEDGER:ALL`` in every currency plus the ``BASE`` summary; a currency the
        account does not hold gives no rows."""
        req_id = int(f[2])
        tags = [t.strip() for t in f[4].split(",") if t.strip()]
        s.summary_reqs[req_id] = tags
        vals = self.account_values()
        rows: list[list[Field]] = []
        for t in tags or list(SUMMARY_TAGS):
            if t == "AccountType":
                rows.append([63, 1, req_id, self.account, t, "INDIVIDUAL", ""])
            elif t in vals:
                rows.append([63, 1, req_id, self.account, t, vals[t], BASE_CURRENCY])
            elif t.upper().startswith("$LEDGER"):
                ccy = t.partition(":")[2].upper()
                labels = (
                    ["BASE", BASE_CURRENCY] if ccy == "ALL" else [BASE_CURRENCY]
                    if ccy in ("", BASE_CURRENCY) else []
                )  # fmt: skip
                led = self.ledger()
                for label in labels:
                    rows += [[63, 1, req_id, self.account, k, v, label] for k, v in led.items()]
        s.send(*rows, [64, 1, req_id])

    def _cancel_account_summary(self, s: Session, f: list[str]) -> None:
        s.summary_reqs.pop(int(f[2]), None)

    def _push_portfolio(self, m: Market) -> None:
        con_ids = [m.yes.con_id, m.no.con_id]
        rows = self._position_rows(con_ids)
        for s in self._live_sessions():
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
        self._push_pnl()

    # ------------------------------------------------------------------ PnL

    def _day_bases(self) -> dict[int, Money]:
        """Each contract's unrealized+realized PnL at the start of today (UTC, server
        clock): daily PnL is the change since then."""
        day = self.clock_ns() // (86_400 * NS)
        if self._day_base is None or self._day_base[0] != day:
            self._pnl_base = {c: self._total(c) for c in set(self.positions) | set(self.realized)}
            self._day_base = (day, Money(sum(self._pnl_base.values())))
        return self._pnl_base

    def _total(self, con_id: int) -> Money:
        return Money(self._unrealized(con_id) + self.realized.get(con_id, Money(0)))

    def _pnl_msg(self, req_id: int, con_id: int | None) -> list[Field]:
        bases = self._day_bases()
        if con_id is None:
            cons = set(self.positions) | set(self.realized) | set(bases)
            unreal = Money(sum(self._unrealized(c) for c in cons))
            real = Money(sum(self.realized.get(c, Money(0)) for c in cons))
            daily = Money(unreal + real - sum(bases.values()))
            return w.pnl(req_id, w.fmt_money(daily), w.fmt_money(unreal), w.fmt_money(real))
        n, _ = self.positions.get(con_id, (0, Money(0)))
        unreal = self._unrealized(con_id)
        real = self.realized.get(con_id, Money(0))
        daily = Money(unreal + real - bases.get(con_id, Money(0)))
        return w.pnl_single(
            req_id, n, w.fmt_money(daily), w.fmt_money(unreal), w.fmt_money(real),
            w.fmt_money(self._value(con_id)),
        )  # fmt: skip

    def _req_pnl(self, s: Session, f: list[str], *, single: bool = False) -> None:
        """reqPnL (92) / reqPnLSingle (94): answered at once, then pushed on every change
        (real TWS pushes about once a second)."""
        req_id, account = int(f[1]), f[2]
        con_id = int(f[4] or 0) if single else None
        if account != self.account:
            s.error(
                req_id, 321, f"Error validating request.-'bz' : cause - Invalid account {account}"
            )
            return
        if single and con_id not in self.contracts:
            s.error(req_id, 200, "No security definition has been found for the request")
            return
        s.pnl_reqs[req_id] = con_id
        msg = self._pnl_msg(req_id, con_id)
        s.pnl_shown[req_id] = tuple(msg)
        s.send(msg)

    def _req_pnl_single(self, s: Session, f: list[str]) -> None:
        self._req_pnl(s, f, single=True)

    def _cancel_pnl(self, s: Session, f: list[str]) -> None:
        req_id = int(f[1])
        s.pnl_reqs.pop(req_id, None)
        s.pnl_shown.pop(req_id, None)

    def _push_pnl(self) -> None:
        for s in self._live_sessions():
            for req_id, con_id in list(s.pnl_reqs.items()):
                msg = self._pnl_msg(req_id, con_id)
                if s.pnl_shown.get(req_id) != tuple(msg):
                    s.pnl_shown[req_id] = tuple(msg)
                    s.send(msg)

    def _realize(self, con_id: int, amount: int) -> None:
        self.realized[con_id] = Money(self.realized.get(con_id, Money(0)) + amount)
