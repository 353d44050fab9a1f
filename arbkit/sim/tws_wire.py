"""TWS socket protocol, server side: framing and the message layouts ib_async decodes.

Field layouts follow ib_async 2.1.0's ``decoder.py`` (reference/ibkr.md §C5–C6): several
messages are unpacked into fixed tuples, so a wrong field count silently drops the message
on the client. Everything here is plain string building; the server owns state.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from arbkit.model import MONEY_SCALE, PRICE_SCALE, Money

#: lowest server version served: ib_async's MinClientVersion. Every layout below is gated
#: with ibapi 10.46.1 ``server_versions.py`` constants (named where used), so 157..178 is
#: correct for IBKR's own decoder as well as ib_async's.
MIN_CLIENT_VERSION = 157
MAX_CLIENT_VERSION = 178
# ibapi server_versions.py constants for the fields emitted here
SV_DURATION = 158  # MIN_SERVER_VER_DURATION
SV_POST_TO_ATS = 160
SV_AUTO_CANCEL_PARENT = 162
SV_FRACTIONAL_SIZE_SUPPORT = 163
SV_SIZE_RULES = 164
SV_ADVANCED_ORDER_REJECT = 166
SV_PEGBEST_PEGMID_OFFSETS = 170
SV_BOND_ISSUERID = 176
SV_FA_PROFILE_DESUPPORT = 177
SV_PENDING_PRICE_REVISION = 178
UNSET_DOUBLE = "1.7976931348623157E308"
HEADER = struct.Struct(">I")

Field = str | int


def frame(fields: Iterable[Field]) -> bytes:
    """One length-prefixed message; every field NUL-terminated (the last one too)."""
    payload = "".join(f"{f}\0" for f in fields).encode()
    return HEADER.pack(len(payload)) + payload


def split_frames(buf: bytearray) -> list[list[str]]:
    """Pop every complete message off ``buf`` (mutated) and split it into fields."""
    out: list[list[str]] = []
    while len(buf) >= 4:
        (n,) = HEADER.unpack_from(buf, 0)
        if len(buf) < 4 + n:
            break
        payload = bytes(buf[4 : 4 + n]).decode(errors="backslashreplace")
        del buf[: 4 + n]
        fields = payload.split("\0")
        if fields and fields[-1] == "":
            fields.pop()
        out.append(fields)
    return out


def fmt_price(p: int) -> str:
    """Exact decimal text of a $0.0001-unit price ("0.57", "1.01")."""
    sign = "-" if p < 0 else ""
    p = abs(p)
    whole, frac = divmod(p, PRICE_SCALE)
    s = f"{whole}.{frac:04d}".rstrip("0")
    return sign + (s + "0" if s.endswith(".") else s)


def fmt_money(m: int) -> str:
    """Exact decimal text with at least 2 places, like TWS account values."""
    sign = "-" if m < 0 else ""
    m = abs(m)
    whole, frac = divmod(m, MONEY_SCALE)
    f = f"{frac:06d}".rstrip("0")
    return f"{sign}{whole}.{f.ljust(2, '0')}"


@dataclass(frozen=True, slots=True)
class TwsContract:
    """One instrument the local TWS lists (ForecastEx OPT contract or its IND underlier)."""

    con_id: int
    symbol: str
    sec_type: str
    last_trade_date: str
    strike: str
    right: str
    multiplier: str
    exchange: str
    currency: str
    local_symbol: str
    trading_class: str
    # contract details
    long_name: str = ""
    under_con_id: int = 0
    real_expiration_date: str = ""
    last_trade_time: str = ""
    time_zone_id: str = "US/Central"
    trading_hours: str = ""
    liquid_hours: str = ""
    category: str = ""
    min_tick: str = "0.01"
    order_types: str = "LMT"
    market_rule_ids: str = "26"

    def c11(self) -> list[Field]:
        """conId … tradingClass as openOrder/execDetails/position carry it."""
        return [
            self.con_id,
            self.symbol,
            self.sec_type,
            self.last_trade_date,
            self.strike,
            self.right,
            self.multiplier,
            self.exchange,
            self.currency,
            self.local_symbol,
            self.trading_class,
        ]


def contract_details(sv: int, req_id: int, c: TwsContract) -> list[Field]:
    last_times = c.last_trade_date
    if c.last_trade_time:
        last_times += f" {c.last_trade_time} {c.time_zone_id}"
    f: list[Field] = [10]
    if sv < SV_SIZE_RULES:
        f.append(8)
    f += [
        req_id,
        c.symbol,
        c.sec_type,
        last_times,
        c.strike,
        c.right,
        c.exchange,
        c.currency,
        c.local_symbol,
        c.trading_class,  # marketName
        c.trading_class,
        c.con_id,
        c.min_tick,
    ]
    if sv < SV_SIZE_RULES:
        f.append(1)  # mdSizeMultiplier (MIN_SERVER_VER_MD_SIZE_MULTIPLIER .. SIZE_RULES)
    f += [
        c.multiplier,
        c.order_types,
        c.exchange,  # validExchanges
        1,  # priceMagnifier
        c.under_con_id,
        # TWS escapes non-ASCII in longName; the clients decode it ("unicode-escape")
        c.long_name.encode("unicode-escape").decode("ascii"),
        "",  # primaryExchange
        c.last_trade_date[:6],  # contractMonth
        "",  # industry
        c.category,
        "",  # subcategory
        c.time_zone_id,
        c.trading_hours,
        c.liquid_hours,
        "",  # evRule
        "",  # evMultiplier
        0,  # secIdList count
        1,  # aggGroup
        c.symbol if c.sec_type != "IND" else "",  # underSymbol
        "IND" if c.sec_type != "IND" else "",  # underSecType
        c.market_rule_ids,
        c.real_expiration_date,
        "",  # stockType
    ]
    if SV_FRACTIONAL_SIZE_SUPPORT <= sv < SV_SIZE_RULES:
        f.append("1")  # sizeMinTick
    if sv >= SV_SIZE_RULES:
        f += ["1", "1", "1"]  # minSize, sizeIncrement, suggestedSizeIncrement
    return f


def error(sv: int, req_id: int, code: int, text: str) -> list[Field]:
    f: list[Field] = [4, 2, req_id, code, text]
    if sv >= SV_ADVANCED_ORDER_REJECT:
        f.append("")  # advancedOrderRejectJson: mandatory at sv >= 166
    return f


def tick_price(req_id: int, tick_type: int, price: str, size: int) -> list[Field]:
    return [1, 6, req_id, tick_type, price, size, 0]


def tick_size(req_id: int, tick_type: int, size: int) -> list[Field]:
    """tickSize (msg 2, version 6): BID_SIZE 0 / ASK_SIZE 3 when only the size moved."""
    return [2, 6, req_id, tick_type, size]


@dataclass(slots=True)
class OrderView:
    """What openOrder / orderStatus / execDetails / completedOrder echo about one order."""

    order_id: int
    client_id: int
    perm_id: int
    contract: TwsContract
    action: str
    total_qty: int
    order_type: str
    lmt_price: str
    tif: str
    account: str
    order_ref: str
    outside_rth: bool
    status: str
    filled: int = 0
    avg_fill_price: str = "0"
    last_fill_price: str = "0"
    completed_time: str = ""
    completed_status: str = ""
    #: a whatIf preview's OrderState: 9 margin fields (before/change/after of init, maint,
    #: equity with loan), commission, min, max, currency, warning text
    what_if: tuple[str, ...] | None = None


def open_order(sv: int, o: OrderView) -> list[Field]:
    f: list[Field] = [5, o.order_id, *o.contract.c11()]
    f += [o.action, o.total_qty, o.order_type, o.lmt_price, "", o.tif, "", o.account]
    f += ["O", 0, o.order_ref, o.client_id, o.perm_id, int(o.outside_rth), 0, 0, ""]
    f += ["", "", "", ""]  # sharesAllocation, faGroup, faMethod, faPercentage
    if sv < SV_FA_PROFILE_DESUPPORT:
        f.append("")  # faProfile
    f += ["", "", "0", "", "", 0, "", "", 0, "", "", "", "", ""]  # modelCode … stockRangeUpper
    f += ["", 0, 0, 0, "", 3, 0, 0, 0, 0, 0, "", 0, "", ""]  # displaySize … deltaNeutralAuxPrice
    f += [0, 0, "", "", "", "", ""]  # continuousUpdate … comboLegsDescrip
    f += [0, 0, 0]  # comboLegs, orderComboLegs, smartComboRoutingParams
    f += ["", "", ""]  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
    f += [""]  # hedgeType
    f += [0, "", "", 0, 0]  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld, dnc
    f += [""]  # algoStrategy
    state: Sequence[Field] = o.what_if if o.what_if is not None else [""] * 14
    f += [0, int(o.what_if is not None), o.status, *state, 0, 0]  # solicited, whatIf, state
    f += [0]  # conditions
    f += [o.order_type, "", "", "", "", "", "", 0, "", "", "", "", 0, 0, "", 0]
    if sv >= SV_DURATION:  # 158, not 159 as ib_async 2.1.0 reads it (a trailing extra)
        f.append("")  # duration
    if sv >= SV_POST_TO_ATS:
        f.append("")  # postToAts
    if sv >= SV_AUTO_CANCEL_PARENT:
        f.append(0)  # autoCancelParent
    if sv >= SV_PEGBEST_PEGMID_OFFSETS:
        f += ["", "", "", "", ""]
    return f


def completed_order(sv: int, o: OrderView) -> list[Field]:
    f: list[Field] = [101, *o.contract.c11()]
    f += [o.action, o.total_qty, o.order_type, o.lmt_price, "", o.tif, "", o.account]
    f += ["O", 0, o.order_ref, o.perm_id, int(o.outside_rth), 0, 0, "", "", "", ""]
    if sv < SV_FA_PROFILE_DESUPPORT:
        f.append("")  # faProfile
    f += ["", "", "0", "", "", 0, "", "", "", "", "", "", ""]  # modelCode … stockRangeUpper
    f += ["", 0, 0, "", 3, 0, "", 0, "", ""]  # displaySize … deltaNeutralAuxPrice
    f += [0, 0, "", "", ""]  # continuousUpdate … comboLegsDescrip
    f += [0, 0, 0]  # comboLegs, orderComboLegs, smartComboRoutingParams
    f += ["", "", ""]  # scale
    f += [""]  # hedgeType
    f += ["", "", 0, 0]  # clearingAccount, clearingIntent, notHeld, dnc
    f += [""]  # algoStrategy
    f += [0, o.status, 0, 0]  # solicited, status, randomizeSize, randomizePrice
    f += [0]  # conditions
    f += ["", "", "", 0, 0, "", o.filled, "", 0, "", 0, 0, ""]  # trailStopPrice … parentPermId
    f += [o.completed_time, o.completed_status]
    if sv >= SV_PEGBEST_PEGMID_OFFSETS:
        f += ["", "", "", "", ""]
    return f


def order_status(o: OrderView) -> list[Field]:
    return [
        3,
        o.order_id,
        o.status,
        o.filled,
        o.total_qty - o.filled,
        o.avg_fill_price,
        o.perm_id,
        0,
        o.last_fill_price,
        o.client_id,
        "",
        0,
    ]


def exec_details(
    sv: int,
    req_id: int,
    o: OrderView,
    exec_id: str,
    time_str: str,
    shares: int,
    price: int,
    cum_qty: int,
) -> list[Field]:
    c = o.contract
    f: list[Field] = [11, req_id, o.order_id, *c.c11(), exec_id, time_str, o.account]
    f += [c.exchange, "BOT", shares, fmt_price(price), o.perm_id, o.client_id, 0]
    f += [cum_qty, o.avg_fill_price, o.order_ref, "", "", "", 2]
    if sv >= SV_PENDING_PRICE_REVISION:
        f.append(0)  # pendingPriceRevision
    return f


def commission_report(exec_id: str, commission: Money) -> list[Field]:
    return [59, 1, exec_id, fmt_money(commission), "USD", "1.7976931348623157E308", "", ""]


def position(account: str, c: TwsContract, qty: int, avg_cost: str) -> list[Field]:
    return [61, 3, account, *c.c11(), qty, avg_cost]


def portfolio(
    account: str, c: TwsContract, qty: int, mkt_price: str, mkt_value: str, avg_cost: str
) -> list[Field]:
    c11 = c.c11()
    c11[7] = ""  # primaryExchange takes exchange's place here
    return [7, 8, *c11, qty, mkt_price, mkt_value, avg_cost, "0", "0", account]


def symbol_samples(sv: int, req_id: int, rows: Sequence[TwsContract]) -> list[Field]:
    """symbolSamples (79): underliers with the derivative types listed on them."""
    f: list[Field] = [79, req_id, len(rows)]
    for c in rows:
        f += [c.con_id, c.symbol, c.sec_type, c.exchange, c.currency, 1, "OPT"]
        if sv >= SV_BOND_ISSUERID:
            f += [c.long_name, ""]  # description, issuerId
    return f


@dataclass(frozen=True, slots=True)
class Bar:
    date: str
    open: str
    high: str
    low: str
    close: str
    volume: str
    wap: str
    count: int


def historical_data(req_id: int, start: str, end: str, bars: Sequence[Bar]) -> list[Field]:
    """historicalData (17) below MIN_SERVER_VER_HISTORICAL_DATA_END (196): start/end in
    the message, no version field from MIN_SERVER_VER_SYNT_REALTIME_BARS (124)."""
    f: list[Field] = [17, req_id, start, end, len(bars)]
    for b in bars:
        f += [b.date, b.open, b.high, b.low, b.close, b.volume, b.wap, b.count]
    return f


def pnl(req_id: int, daily: str, unrealized: str, realized: str) -> list[Field]:
    """pnl (94); unrealized from MIN_SERVER_VER_UNREALIZED_PNL (129), realized from 135."""
    return [94, req_id, daily, unrealized, realized]


def pnl_single(
    req_id: int, pos: int, daily: str, unrealized: str, realized: str, value: str
) -> list[Field]:
    return [95, req_id, pos, daily, unrealized, realized, value]


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    """The placeOrder (3) fields the local TWS acts on, as ib_async sends them."""

    order_id: int
    contract: list[str]  # conId … tradingClass (12)
    action: str
    qty: str
    order_type: str
    lmt: str
    tif: str
    account: str
    order_ref: str
    transmit: bool
    outside_rth: bool
    what_if: bool


def parse_place_order(sv: int, f: Sequence[str]) -> PlacedOrder:
    """Walk placeOrder's variable layout (ib_async ``client.placeOrder`` = ibapi's) up to
    whatIf; the optional blocks are skipped by the same conditions the client uses."""
    i = 35  # after hidden; BAG legs are not listed here (the sim has no combos)
    if f[4] == "BAG":
        raise ValueError("BAG orders are not supported")
    i += 7 + (1 if sv < SV_FA_PROFILE_DESUPPORT else 0)  # "" … faPercentage, faProfile
    i += 24  # modelCode … deltaNeutralAuxPrice
    if f[i - 2]:  # deltaNeutralOrderType
        i += 8
    i += 7  # continuousUpdate … scalePriceIncrement
    spi = f[i - 1]
    if spi and 0 < float(spi) < float(UNSET_DOUBLE):
        i += 7
    i += 4  # scaleTable … hedgeType
    if f[i - 1]:
        i += 1
    i += 4  # optOutSmartRouting … notHeld
    if f[i] not in ("", "0", "False"):
        i += 3
    i += 1  # deltaNeutralContract present flag
    algo = f[i]
    i += 1
    if algo:
        i += 1 + 2 * int(f[i] or 0)
    i += 1  # algoId
    return PlacedOrder(
        order_id=int(f[1]),
        contract=list(f[2:14]),
        action=f[16],
        qty=f[17],
        order_type=f[18],
        lmt=f[19],
        tif=f[21].upper(),
        account=f[23],
        order_ref=f[26],
        transmit=f[27] not in ("0", "False"),
        outside_rth=f[33] == "1",
        what_if=f[i] in ("1", "True"),
    )


def many(msgs: Sequence[list[Field]]) -> bytes:
    """Several messages in one write (ib_async handles a TCP packet as one update)."""
    return b"".join(frame(m) for m in msgs)
