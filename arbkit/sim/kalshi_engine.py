"""The local Kalshi exchange's books, matching engine and accounts (synchronous, no IO).

Books are bids-only per market, in native terms: ``yes[p]`` and ``no[p]`` (NO priced in NO
terms). A V2 order ``bid`` at YES price p buys YES and takes NO bids q with q ≥ 1 − p; an
``ask`` at p buys NO at 1 − p and takes YES bids ≥ p. Price-time priority: the best price
first, FIFO within a level. Simulated makers (the driver's ``set_bids`` ladders) and users'
resting GTC orders share the queues. Every change of a level's total is reported through
``on_level`` so the server can publish ``orderbook_delta`` frames.

Market lifecycle: ``active`` ⇄ ``inactive`` (paused) → ``closed`` (the clock passed
``close_time``; checked lazily whenever the market is used) → ``determined`` (result known,
resting orders cancelled) → ``finalized`` (settled: winning contracts paid $1 each).

Fees: a market whose series (or event) has no explicit fee schedule is charged by arbkit's
:class:`FeeModel` (the config's taker coefficient and per-series multipliers; makers pay
only on ``maker_fee_series``). A series given one (``set_series_fee``, or a scheduled
``FeeChange`` whose time has passed — applied lazily whenever a fee is needed, like close
by time) is charged as Kalshi's ``fee_type`` says, and an event-level override takes
precedence over its series. See :meth:`MatchingEngine.taker_fee` for the table.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from arbkit.arbitrage.fee_model import FeeModel, KalshiFeeSchedule
from arbkit.model import PRICE_SCALE, Money, Outcome, Price, Qty

OnLevel = Callable[[str, str, int, int, int], None]  # ticker, "yes"|"no", price, delta, new
OnOrder = Callable[["UserOrder"], None]


class OrderError(Exception):
    """A rejected request: HTTP status + Kalshi-style error code."""

    def __init__(self, status: int, code: str, message: str, details: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


@dataclass(slots=True)
class UserOrder:
    order_id: str
    user: str
    client_order_id: str
    ticker: str
    book_side: str  # "bid" (buy YES) | "ask" (buy NO)
    yes_price: int
    initial: int
    tif: str
    stp: str
    created_ns: int
    fill: int = 0
    remaining: int = 0
    status: str = "resting"  # resting | canceled | executed
    taker_cost: int = 0  # Money, in the bought outcome's prices
    maker_cost: int = 0
    taker_fees: int = 0
    maker_fees: int = 0
    updated_ns: int = 0
    taker_fills: list[tuple[Price, Qty]] = field(default_factory=list)
    subaccount: int = 0
    last_update_reason: str = ""

    @property
    def outcome_side(self) -> str:
        return "yes" if self.book_side == "bid" else "no"

    @property
    def own_price(self) -> int:
        """Limit in the bought outcome's own terms."""
        return self.yes_price if self.book_side == "bid" else PRICE_SCALE - self.yes_price


@dataclass(slots=True)
class FillRecord:
    fill_id: str
    trade_id: str
    order_id: str
    user: str
    ticker: str
    outcome_side: str
    book_side: str
    count: int
    yes_price: int
    is_taker: bool
    fee: int
    ts_ns: int
    client_order_id: str
    post_position: int = 0  # the user's signed position (+YES/−NO) in the market after it
    subaccount: int = 0


@dataclass(slots=True)
class Position:
    yes: int = 0
    no: int = 0
    total_traded: int = 0  # Money
    exposure: int = 0  # Money: cost of the open contracts
    realized_pnl: int = 0
    fees_paid: int = 0
    updated_ns: int = 0

    @property
    def net(self) -> int:
        return self.yes - self.no


@dataclass(slots=True)
class Account:
    balance: int = 0  # Money
    positions: dict[str, Position] = field(default_factory=dict)


@dataclass(slots=True)
class _Entry:
    qty: int
    order: UserOrder | None  # None = simulated maker liquidity


@dataclass(slots=True)
class _Level:
    entries: list[_Entry] = field(default_factory=list)
    total: int = 0


@dataclass(slots=True)
class SimMarket:
    ticker: str
    series: str
    event_ticker: str
    status: str
    open_time_s: int
    close_time_s: int
    price_ranges: list[tuple[int, int, int]]  # (start, end, step) in Price units
    price_level_structure: str
    title: str
    market_id: str
    yes: dict[int, _Level] = field(default_factory=dict)
    no: dict[int, _Level] = field(default_factory=dict)
    maker_yes: dict[int, _Entry] = field(default_factory=dict)
    maker_no: dict[int, _Entry] = field(default_factory=dict)
    last_price: int = 0
    volume: int = 0
    expected_expiration_s: int = 0
    result: str = ""  # "" until determined, then "yes" | "no"
    determined_s: int = 0
    settled_s: int = 0
    # How the market is listed beyond its title (rules, strike fields: Market wire names),
    # and its event's settlement sources: what contract matching reads.
    listing: dict[str, object] = field(default_factory=dict)
    settlement_sources: tuple[str, ...] = ()

    def side(self, name: str) -> dict[int, _Level]:
        return self.yes if name == "yes" else self.no

    def ladder(self, name: str) -> list[tuple[int, int]]:
        """Ascending (price, total) like Kalshi's REST/WS arrays (best bid last)."""
        book = self.side(name)
        return [(p, book[p].total) for p in sorted(book) if book[p].total > 0]

    def best(self, name: str) -> int:
        book = self.side(name)
        return max((p for p, lv in book.items() if lv.total > 0), default=0)

    def on_grid(self, price: int) -> bool:
        for start, end, step in self.price_ranges:
            if start <= price <= end and (price - start) % step == 0:
                return True
        return False


@dataclass(slots=True)
class SettlementRecord:
    """One account's payout when a market settled (``GET /portfolio/settlements``)."""

    user: str
    ticker: str
    event_ticker: str
    result: str
    yes_count: int  # Qty held at settlement
    yes_cost: int  # Money: cost basis of those contracts
    no_count: int
    no_cost: int
    revenue: int  # Money paid out ($1 per winning contract)
    fees: int  # Money: every fee the account paid in this market
    ts_ns: int


@dataclass(frozen=True, slots=True)
class FeeSetting:
    """A Kalshi fee schedule: ``fee_type`` (any string: the wire goes beyond the spec's
    ``FeeType`` enum) and ``fee_multiplier`` (exact)."""

    fee_type: str
    multiplier: Decimal


@dataclass(slots=True)
class FeeChange:
    """A scheduled series fee change (``GET /series/fee_changes``)."""

    change_id: str
    series: str
    fee: FeeSetting
    at_s: int  # Unix seconds: takes effect once the clock reaches it
    applied: bool = False


def to_multiplier(value: Decimal | str | int | float) -> Decimal:
    """An exact, finite, non-negative multiplier (a float goes through its repr)."""
    if isinstance(value, bool):
        raise TypeError("fee multiplier must be a number, not a bool")
    try:
        d = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"fee multiplier {value!r} is not a number") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"fee multiplier {value!r} must be finite and >= 0")
    return d


TAKER_COEFFICIENT = Decimal("0.07")
# Maker coefficient per quadratic fee type (reference/kalshi.md §6, OpenAPI ``Series``):
# "quadratic" makers pay nothing; maker fees are 0.07 × 0.25; the combo variant uses a 0.5
# maker multiplier instead of 0.25.
MAKER_COEFFICIENTS = {
    "quadratic": Decimal(0),
    "quadratic_with_maker_fees": Decimal("0.0175"),
    "quadratic_with_combo_maker_fees": Decimal("0.035"),
}
# ``flat`` ("Specific Trading Fees Table", not published in the spec) and fee types outside
# the enum: the SIMULATOR's stand-in is a flat $0.02 per contract for the taker (rounded up
# to the cent per order), nothing for makers. arbkit refuses to trade fee types it does not
# model, so this only matters for tests.
FLAT_FEE_PER_QTY_UNIT = 200  # Money per 0.01 contract = $0.02 per contract
_CENT = 10_000  # Money units

LINEAR_CENT = [(100, 9900, 100)]
_MONEY_PER_QTY_UNIT = 10_000  # $1 × 0.01 contract in $0.000001 units
_NS = 1_000_000_000
OPEN_STATUSES = frozenset({"initialized", "active", "inactive"})  # not closed yet
RESULTS = frozenset({"yes", "no"})


class MatchingEngine:
    def __init__(
        self,
        fee_model: FeeModel,
        *,
        netting: bool = True,
        on_level: OnLevel | None = None,
        clock_ns: Callable[[], int],
        maker_fee_series: Iterable[str] = (),
    ) -> None:
        self.fees = fee_model
        self.netting = netting
        self.on_level: OnLevel = on_level or (lambda *_: None)
        self.clock_ns = clock_ns
        self.maker_fee_series = set(maker_fee_series)
        self.series_fees: dict[str, FeeSetting] = {}  # explicit schedules, by series
        self.event_fees: dict[str, FeeSetting] = {}  # event-level overrides
        self.fee_changes: list[FeeChange] = []
        self._schedules: dict[tuple[Decimal, Decimal], KalshiFeeSchedule] = {}
        self.markets: dict[str, SimMarket] = {}
        self.accounts: dict[str, Account] = {}
        self.orders: dict[str, UserOrder] = {}
        self.by_client_id: dict[tuple[str, str], UserOrder] = {}
        self.fills: list[FillRecord] = []
        self.settlements: list[SettlementRecord] = []
        self._trade_ids = itertools.count(1)
        # The user order whose request is being processed: book changes it causes are
        # reported with its client_order_id to its owner (``orderbook_delta``).
        self.cause: UserOrder | None = None
        # Orders changed since the server last drained this (for user_orders frames).
        self.dirty: dict[str, UserOrder] = {}

    # ------------------------------------------------------------ markets/books -----

    def add_market(self, m: SimMarket) -> None:
        self.markets[m.ticker] = m

    def market(self, ticker: str) -> SimMarket:
        m = self.markets.get(ticker)
        if m is None:
            raise OrderError(404, "market_not_found", "market not found", ticker)
        return m

    # -------------------------------------------------------------------- fees -------

    def set_series_fee(self, series: str, fee: FeeSetting) -> None:
        self.apply_due_fee_changes()  # a change already due counts before this one
        self.series_fees[series] = fee

    def schedule_fee_change(self, series: str, fee: FeeSetting, at_s: int) -> FeeChange:
        c = FeeChange(str(uuid.uuid4()), series, fee, int(at_s))
        self.fee_changes.append(c)
        return c

    def set_event_fee(self, event_ticker: str, fee: FeeSetting | None) -> None:
        if fee is None:
            self.event_fees.pop(event_ticker, None)
        else:
            self.event_fees[event_ticker] = fee

    def apply_due_fee_changes(self) -> None:
        """Scheduled changes whose time has come replace their series' schedule, oldest
        first (no timer: evaluated whenever a fee or a series is read)."""
        now = self.clock_ns()
        due = [c for c in self.fee_changes if not c.applied and c.at_s * _NS <= now]
        for c in sorted(due, key=lambda c: c.at_s):
            self.series_fees[c.series] = c.fee
            c.applied = True

    def series_fee(self, series: str) -> FeeSetting:
        """What ``GET /series/{t}`` serves: the explicit schedule, else what the FeeModel
        charges (``quadratic``, or ``quadratic_with_maker_fees`` on a maker-fee series,
        with the config's multiplier, default 1)."""
        self.apply_due_fee_changes()
        fee = self.series_fees.get(series)
        if fee is not None:
            return fee
        kind = "quadratic_with_maker_fees" if series in self.maker_fee_series else "quadratic"
        return FeeSetting(kind, self.fees.params.kalshi_series_multipliers.get(series, Decimal(1)))

    def fee_setting(self, m: SimMarket) -> FeeSetting | None:
        """The explicit schedule that charges ``m`` (event override first, then series);
        None: the default FeeModel charges it."""
        self.apply_due_fee_changes()
        return self.event_fees.get(m.event_ticker) or self.series_fees.get(m.series)

    def _schedule(self, coefficient: Decimal, multiplier: Decimal) -> KalshiFeeSchedule:
        key = (coefficient, multiplier)
        sched = self._schedules.get(key)
        if sched is None:
            sched = self._schedules[key] = KalshiFeeSchedule.make(
                coefficient, multiplier, "cent_per_order"
            )
        return sched

    def taker_fee(self, m: SimMarket, fills: Iterable[tuple[Price, Qty]]) -> Money:
        """One order's taker fee. ``quadratic*``: ceil to the cent of 0.07 × M × C × P(1−P)
        (exact); ``flat`` / unknown types: $0.02 per contract (the simulator's stand-in);
        no explicit schedule: the FeeModel."""
        fee = self.fee_setting(m)
        if fee is None:
            return self.fees.kalshi_fee(fills, m.series)
        if fee.fee_type in MAKER_COEFFICIENTS:
            return self._schedule(TAKER_COEFFICIENT, fee.multiplier).fee(fills)
        qty = sum(q for _, q in fills)
        return Money(-(-qty * FLAT_FEE_PER_QTY_UNIT // _CENT) * _CENT)

    def maker_fee(self, m: SimMarket, price: Price, qty: Qty) -> Money:
        """One maker fill's fee (ceil to the cent): by ``MAKER_COEFFICIENTS`` × M for an
        explicit quadratic schedule, 0 for flat / unknown types; without one, the FeeModel's
        maker rate on ``maker_fee_series`` only."""
        fee = self.fee_setting(m)
        if fee is None:
            if m.series not in self.maker_fee_series:
                return Money(0)
            return self.fees.kalshi_fee([(price, qty)], m.series, maker=True)
        coef = MAKER_COEFFICIENTS.get(fee.fee_type, Decimal(0))
        if not coef:
            return Money(0)
        return self._schedule(coef, fee.multiplier).fee([(price, qty)])

    # ------------------------------------------------------------------ books -------

    def _change(self, m: SimMarket, side: str, price: int, delta: int) -> None:
        if delta:
            lv = m.side(side)[price]
            lv.total += delta
            new = lv.total
            if new == 0 and not lv.entries:
                del m.side(side)[price]
            self.on_level(m.ticker, side, price, delta, new)

    def _push(self, m: SimMarket, side: str, price: int, entry: _Entry) -> None:
        lv = m.side(side).get(price)
        if lv is None:
            lv = m.side(side)[price] = _Level()
        lv.entries.append(entry)
        self._change(m, side, price, entry.qty)

    def _remove_entry(self, m: SimMarket, side: str, price: int, entry: _Entry) -> None:
        lv = m.side(side)[price]
        lv.entries.remove(entry)
        q = entry.qty
        entry.qty = 0
        self._change(m, side, price, -q)
        if not lv.entries and price in m.side(side) and lv.total == 0:
            del m.side(side)[price]

    def set_bids(self, ticker: str, outcome: Outcome, levels: Iterable[tuple[Price, Qty]]) -> None:
        """Replace the simulated makers' ladder for one outcome; publish what changed."""
        m = self.market(ticker)
        self.close_if_due(m)
        side = outcome.value
        makers = m.maker_yes if side == "yes" else m.maker_no
        new: dict[int, int] = {}
        for lp, lq in levels:
            if not 0 < lp < PRICE_SCALE or lq < 0:
                raise ValueError(f"bad level ({lp}, {lq}) for {ticker} {side}")
            if lq:
                new[int(lp)] = int(lq)
        for old_p in list(makers):
            if old_p not in new:
                self._remove_entry(m, side, old_p, makers.pop(old_p))
        for p, q in new.items():
            e = makers.get(p)
            if e is None:
                e = makers[p] = _Entry(q, None)
                self._push(m, side, p, e)
            elif e.qty != q:
                d = q - e.qty
                e.qty = q
                self._change(m, side, p, d)
        self._uncross(m)

    def _uncross(self, m: SimMarket) -> None:
        """Crossed bids trade: user orders fill as makers at their own price; maker vs maker
        liquidity simply cancels out (it is the driver's own quote)."""
        while True:
            by, bn = m.best("yes"), m.best("no")
            if not by or not bn or by + bn < PRICE_SCALE:
                return
            ey = m.yes[by].entries[0]
            en = m.no[bn].entries[0]
            if m.status != "active" and (ey.order is not None or en.order is not None):
                return  # no trading while paused: the user order waits for activation
            q = min(ey.qty, en.qty)
            for side, price, e in (("yes", by, ey), ("no", bn, en)):
                if e.order is not None:
                    self._maker_fill(m, e.order, price, q, taker_id="")
                e.qty -= q
                self._change(m, side, price, -q)
                if e.qty == 0:
                    m.side(side)[price].entries.remove(e)
                    makers = m.maker_yes if side == "yes" else m.maker_no
                    if e.order is None and makers.get(price) is e:
                        del makers[price]
                    if not m.side(side)[price].entries:
                        del m.side(side)[price]

    # -------------------------------------------------------------- accounts -------

    def account(self, user: str) -> Account:
        acct = self.accounts.get(user)
        if acct is None:
            acct = self.accounts[user] = Account()
        return acct

    def _book_fill(
        self, user: str, m: SimMarket, outcome: str, price: int, qty: int, fee: int
    ) -> None:
        """Pay price×qty + fee for ``qty`` of ``outcome``; net YES against NO if enabled."""
        acct = self.account(user)
        pos = acct.positions.setdefault(m.ticker, Position())
        cost = price * qty
        acct.balance -= cost + fee
        pos.total_traded += cost
        pos.fees_paid += fee
        pos.updated_ns = self.clock_ns()
        if outcome == "yes":
            pos.yes += qty
        else:
            pos.no += qty
        pos.exposure += cost
        if self.netting:
            pairs = min(pos.yes, pos.no)
            if pairs:
                held = pos.yes + pos.no
                # Each YES+NO pair pays $1 now; release the pairs' share of the cost basis.
                released = pos.exposure * 2 * pairs // held
                payout = pairs * _MONEY_PER_QTY_UNIT
                acct.balance += payout
                pos.realized_pnl += payout - released
                pos.exposure -= released
                pos.yes -= pairs
                pos.no -= pairs

    def _maker_fill(
        self, m: SimMarket, o: UserOrder, native_price: int, q: int, taker_id: str
    ) -> None:
        """A resting user order traded ``q`` at its own (native) price."""
        maker_fee = self.maker_fee(m, Price(native_price), Qty(q))
        o.fill += q
        o.remaining -= q
        o.maker_cost += native_price * q
        o.maker_fees += maker_fee
        o.updated_ns = self.clock_ns()
        if o.remaining == 0:
            o.status = "executed"
        o.last_update_reason = "Trade"
        self.dirty[o.order_id] = o
        self._book_fill(o.user, m, o.outcome_side, native_price, q, maker_fee)
        yes_price = native_price if o.outcome_side == "yes" else PRICE_SCALE - native_price
        self._record_fill(o, m, q, yes_price, False, maker_fee, taker_id)

    def _record_fill(
        self, o: UserOrder, m: SimMarket, q: int, yes_price: int, taker: bool, fee: int, tid: str
    ) -> FillRecord:
        rec = FillRecord(
            fill_id=str(uuid.uuid4()),
            trade_id=tid or str(uuid.uuid4()),
            order_id=o.order_id,
            user=o.user,
            ticker=m.ticker,
            outcome_side=o.outcome_side,
            book_side=o.book_side,
            count=q,
            yes_price=yes_price,
            is_taker=taker,
            fee=fee,
            ts_ns=self.clock_ns(),
            client_order_id=o.client_order_id,
            post_position=self.account(o.user).positions[m.ticker].net,
            subaccount=o.subaccount,
        )
        self.fills.append(rec)
        m.last_price = yes_price
        m.volume += q
        return rec

    # -------------------------------------------------------------- orders ---------

    def fillable(self, m: SimMarket, book_side: str, yes_price: int) -> int:
        opp = "no" if book_side == "bid" else "yes"
        limit = PRICE_SCALE - yes_price if book_side == "bid" else yes_price
        return sum(lv.total for p, lv in m.side(opp).items() if p >= limit)

    def place(
        self,
        user: str,
        *,
        ticker: str,
        book_side: str,
        yes_price: int,
        count: int,
        tif: str,
        client_order_id: str,
        stp: str = "taker_at_cross",
        post_only: bool = False,
        subaccount: int = 0,
    ) -> UserOrder:
        m = self.market(ticker)
        self.close_if_due(m)
        if m.status != "active":
            raise OrderError(400, "market_closed", "market is not open for trading", ticker)
        if book_side not in ("bid", "ask"):
            raise OrderError(400, "invalid_parameters", "side must be bid or ask")
        if tif not in ("fill_or_kill", "good_till_canceled", "immediate_or_cancel"):
            raise OrderError(400, "invalid_parameters", "invalid time_in_force")
        if count <= 0:
            raise OrderError(400, "invalid_parameters", "count must be positive")
        if not 0 < yes_price < PRICE_SCALE or not m.on_grid(yes_price):
            raise OrderError(400, "invalid_price", "price is not a valid tick for this market")
        if client_order_id and (user, client_order_id) in self.by_client_id:
            raise OrderError(
                409, "order_already_exists", "Order with this client_order_id already exists"
            )
        own = yes_price if book_side == "bid" else PRICE_SCALE - yes_price
        worst_fee = self.taker_fee(m, [(Price(own), Qty(count))])
        if self.account(user).balance < own * count + worst_fee:
            raise OrderError(400, "insufficient_balance", "insufficient balance")
        now = self.clock_ns()
        o = UserOrder(
            order_id=str(uuid.uuid4()),
            user=user,
            client_order_id=client_order_id,
            ticker=ticker,
            book_side=book_side,
            yes_price=yes_price,
            initial=count,
            tif=tif,
            stp=stp,
            created_ns=now,
            remaining=count,
            updated_ns=now,
            subaccount=subaccount,
        )
        self.dirty[o.order_id] = o
        self.cause = o
        try:
            return self._place(m, o, own, post_only)
        finally:
            self.cause = None

    def _place(self, m: SimMarket, o: UserOrder, own: int, post_only: bool) -> UserOrder:
        user, client_order_id = o.user, o.client_order_id
        book_side, yes_price, count, tif = o.book_side, o.yes_price, o.initial, o.tif
        self.orders[o.order_id] = o
        if client_order_id:
            self.by_client_id[(user, client_order_id)] = o
        if tif == "fill_or_kill" and self.fillable(m, book_side, yes_price) < count:
            o.remaining = 0
            o.status = "canceled"
            return o
        if post_only and self.fillable(m, book_side, yes_price) > 0:
            o.remaining = 0
            o.status = "canceled"
            return o
        taker_records = self._take(m, o)
        if o.taker_fills:
            o.taker_fees = self.taker_fee(m, o.taker_fills)
            self.account(user).balance -= o.taker_fees
            pos = self.account(user).positions[m.ticker]
            pos.fees_paid += o.taker_fees
            # Spread the order's fee over its fill records (exact; remainder on the first).
            fills = taker_records
            total_q = sum(f.count for f in fills)
            acc = 0
            for f in fills:
                f.fee = o.taker_fees * f.count // total_q
                acc += f.fee
            fills[0].fee += o.taker_fees - acc
        if o.remaining:
            if tif == "good_till_canceled" and o.status == "resting":
                side = "yes" if book_side == "bid" else "no"
                self._push(m, side, own, _Entry(o.remaining, o))
            else:  # IOC remainder (or a self-trade stop) is cancelled; fills are kept
                o.remaining = 0
                o.status = "canceled"
        else:
            o.status = "executed"
        return o

    def _take(self, m: SimMarket, o: UserOrder) -> list[FillRecord]:
        records: list[FillRecord] = []
        opp = "no" if o.book_side == "bid" else "yes"
        limit = PRICE_SCALE - o.yes_price if o.book_side == "bid" else o.yes_price
        book = m.side(opp)
        while o.remaining:
            tid = str(uuid.uuid4())  # one trade per match: maker and taker share its id
            prices = [p for p, lv in book.items() if lv.total > 0 and p >= limit]
            if not prices:
                return records
            p = max(prices)
            lv = book[p]
            e = lv.entries[0]
            if e.order is not None and e.order.user == o.user:
                if o.stp == "maker":
                    self._cancel_resting(m, e.order)
                    continue
                o.status = "canceled"  # taker_at_cross: stop, keep what filled
                return records
            q = min(e.qty, o.remaining)
            taker_price = PRICE_SCALE - p  # what the taker pays for its own outcome
            if e.order is not None:
                self._maker_fill(m, e.order, p, q, tid)
            e.qty -= q
            self._change(m, opp, p, -q)
            if e.qty == 0:
                lv.entries.remove(e)
                makers = m.maker_yes if opp == "yes" else m.maker_no
                if e.order is None and makers.get(p) is e:
                    del makers[p]
                if not lv.entries:
                    del book[p]
            o.fill += q
            o.remaining -= q
            o.last_update_reason = "Trade"
            o.taker_cost += taker_price * q
            o.taker_fills.append((Price(taker_price), Qty(q)))
            o.updated_ns = self.clock_ns()
            self._book_fill(o.user, m, o.outcome_side, taker_price, q, 0)
            yes_price = taker_price if o.outcome_side == "yes" else p
            records.append(self._record_fill(o, m, q, yes_price, True, 0, tid))
        return records

    def _cancel_resting(self, m: SimMarket, o: UserOrder) -> int:
        side = o.outcome_side
        lv = m.side(side).get(o.own_price)
        reduced = 0
        if lv is not None:
            for e in list(lv.entries):
                if e.order is o:
                    reduced = e.qty
                    self._remove_entry(m, side, o.own_price, e)
        o.remaining = 0
        o.status = "canceled"
        o.updated_ns = self.clock_ns()
        self.dirty[o.order_id] = o
        return reduced

    def cancel(self, user: str, order_id: str) -> tuple[UserOrder, int]:
        o = self.orders.get(order_id)
        if o is None or o.user != user:
            raise OrderError(404, "not_found", "order not found", order_id)
        if o.status != "resting":
            raise OrderError(400, "order_not_resting", "order is not resting", o.status)
        self.cause = o
        try:
            reduced = self._cancel_resting(self.markets[o.ticker], o)
        finally:
            self.cause = None
        o.last_update_reason = "Decrease"
        return o, reduced

    # -------------------------------------------------------------- lifecycle ------

    def close_if_due(self, m: SimMarket) -> bool:
        """Close ``m`` once the clock has reached its close time. Evaluated whenever the
        market is used, so no timer is needed; Kalshi cancels resting orders at close."""
        if m.status not in OPEN_STATUSES or self.clock_ns() < m.close_time_s * _NS:
            return False
        m.status = "closed"
        self._cancel_market_orders(m, "CloseCancel")
        return True

    def _cancel_market_orders(self, m: SimMarket, reason: str) -> None:
        for o in list(self.orders.values()):
            if o.ticker == m.ticker and o.status == "resting":
                self._cancel_resting(m, o)
                o.last_update_reason = reason

    def pause(self, ticker: str, paused: bool) -> bool:
        """Pause (``inactive``) or resume (``active``) an open market; False if unchanged."""
        m = self.market(ticker)
        self.close_if_due(m)
        if m.status not in OPEN_STATUSES:
            raise ValueError(f"{ticker} is {m.status}: only an open market can be paused")
        new = "inactive" if paused else "active"
        if m.status == new:
            return False
        m.status = new
        if not paused:
            self._uncross(m)  # crosses that waited for the pause to end trade now
        return True

    def set_close_time(self, ticker: str, close_s: int) -> None:
        m = self.market(ticker)
        self.close_if_due(m)  # the old close time counts until it is replaced
        m.close_time_s = int(close_s)
        self.close_if_due(m)

    def determine(self, ticker: str, result: str) -> SimMarket:
        """The result is known: trading stops and resting orders are cancelled."""
        if result not in RESULTS:
            raise ValueError(f"result must be 'yes' or 'no', not {result!r}")
        m = self.market(ticker)
        self.close_if_due(m)
        if m.status in ("determined", "finalized"):
            raise ValueError(f"{ticker} is already {m.status}")
        m.status = "determined"
        m.result = result
        m.determined_s = self.clock_ns() // _NS
        self._cancel_market_orders(m, "CloseCancel")
        return m

    def settle(self, ticker: str) -> list[SettlementRecord]:
        """Pay every holder $1 per winning contract and close their positions."""
        m = self.market(ticker)
        if m.status != "determined":
            raise ValueError(f"{ticker} is {m.status}: settle needs a determined market")
        now = self.clock_ns()
        m.status = "finalized"
        m.settled_s = now // _NS
        records = []
        for user, acct in self.accounts.items():
            pos = acct.positions.pop(ticker, None)
            if pos is None or not (pos.yes or pos.no):
                continue
            won = pos.yes if m.result == "yes" else pos.no
            revenue = won * _MONEY_PER_QTY_UNIT
            acct.balance += revenue
            held = pos.yes + pos.no  # both sides only when netting is off
            yes_cost = pos.exposure * pos.yes // held
            rec = SettlementRecord(
                user=user,
                ticker=ticker,
                event_ticker=m.event_ticker,
                result=m.result,
                yes_count=pos.yes,
                yes_cost=yes_cost,
                no_count=pos.no,
                no_cost=pos.exposure - yes_cost,
                revenue=revenue,
                fees=pos.fees_paid,
                ts_ns=now,
            )
            records.append(rec)
        self.settlements.extend(records)
        return records
