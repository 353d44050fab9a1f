"""Wire shapes of the local Kalshi exchange: engine records → OpenAPI / AsyncAPI JSON
bodies. Pure functions, so REST handlers and WebSocket channels render one record alike."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web

from arbkit.model import PRICE_SCALE, Money, money_str, price_str, qty_str
from arbkit.sim.kalshi_engine import FillRecord, Position, SettlementRecord, SimMarket, UserOrder

MONEY_PER_CENT = 10_000


def number(d: Decimal) -> int | float:
    """A Decimal as a JSON number (``fee_multiplier`` is ``type: number`` on the wire)."""
    return int(d) if d == d.to_integral_value() else float(d)


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_s(s: int) -> str:
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def settlement_value(result: str) -> str:
    """A YES contract's payout in fixed-point dollars (binary markets: $1 or $0)."""
    return "1.0000" if result == "yes" else "0.0000"


def json_response(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(obj), status=status, content_type="application/json")


def error_response(
    status: int, code: str, message: str, details: str = "", *, wrap: bool = False
) -> web.Response:
    """The spec's flat ``ErrorResponse``; ``wrap`` gives the ``{"error": {...}}`` form that
    live 401/429 answers were observed to use."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return json_response({"error": body} if wrap else body, status)


def price_ranges_json(m: SimMarket) -> list[dict[str, str]]:
    return [
        {"start": price_str(a), "end": price_str(b), "step": price_str(s)}
        for a, b, s in m.price_ranges
    ]


def result_fields(m: SimMarket) -> dict[str, Any]:
    """Filled only after determination / settlement (omitted before, as Kalshi does)."""
    out: dict[str, Any] = {}
    if m.result:
        out["settlement_value_dollars"] = settlement_value(m.result)
    if m.settled_s:
        out["settlement_ts"] = iso_s(m.settled_s)
    return out


def market_json(m: SimMarket, updated_ns: int) -> dict[str, Any]:
    """OpenAPI ``Market``; ``updated_ns`` = the last non-trading metadata change."""
    by, bn = m.best("yes"), m.best("no")
    yes_ask = PRICE_SCALE - bn if bn else PRICE_SCALE
    no_ask = PRICE_SCALE - by if by else PRICE_SCALE
    yes_bid_size = m.yes[by].total if by else 0
    yes_ask_size = m.no[bn].total if bn else 0
    return {
        "ticker": m.ticker,
        "event_ticker": m.event_ticker,
        "market_type": "binary",
        "title": m.title,
        "yes_sub_title": m.title,
        "no_sub_title": m.title,
        "created_time": iso_s(m.open_time_s),
        "updated_time": iso(updated_ns),
        "open_time": iso_s(m.open_time_s),
        "close_time": iso_s(m.close_time_s),
        "expected_expiration_time": iso_s(m.expected_expiration_s),
        "latest_expiration_time": iso_s(m.close_time_s + 7 * 86_400),
        "settlement_timer_seconds": 300,
        "status": m.status,
        "notional_value_dollars": "1.0000",
        "yes_bid_dollars": price_str(by),
        "yes_ask_dollars": price_str(yes_ask),
        "no_bid_dollars": price_str(bn),
        "no_ask_dollars": price_str(no_ask),
        "yes_bid_size_fp": qty_str(yes_bid_size),
        "yes_ask_size_fp": qty_str(yes_ask_size),
        "last_price_dollars": price_str(m.last_price),
        "previous_yes_bid_dollars": price_str(by),
        "previous_yes_ask_dollars": price_str(yes_ask),
        "previous_price_dollars": price_str(m.last_price),
        "volume_fp": qty_str(m.volume),
        "volume_24h_fp": qty_str(m.volume),
        "open_interest_fp": "0.00",
        "result": m.result,
        "can_close_early": False,
        "expiration_value": "",
        "rules_primary": f"Simulated market {m.ticker}.",
        "rules_secondary": "",
        "price_level_structure": m.price_level_structure,
        "price_ranges": price_ranges_json(m),
        "settlement_bounds_type": "default",
        "exchange_index": 0,
        **m.listing,
        **result_fields(m),
    }


def settlement_json(r: SettlementRecord) -> dict[str, Any]:
    """OpenAPI ``Settlement``: revenue in whole cents, value = a YES contract's payout."""
    return {
        "ticker": r.ticker,
        "exchange_index": 0,
        "event_ticker": r.event_ticker,
        "market_result": r.result,
        "yes_count_fp": qty_str(r.yes_count),
        "yes_total_cost_dollars": money_str(r.yes_cost),
        "no_count_fp": qty_str(r.no_count),
        "no_total_cost_dollars": money_str(r.no_cost),
        "revenue": r.revenue // MONEY_PER_CENT,
        "settled_time": iso(r.ts_ns),
        "fee_cost": money_str(r.fees),
        "value": 100 if r.result == "yes" else 0,
    }


def order_json(o: UserOrder) -> dict[str, Any]:
    return {
        "order_id": o.order_id,
        "user_id": o.user,
        "client_order_id": o.client_order_id,
        "ticker": o.ticker,
        "side": o.outcome_side,
        "action": "buy",
        "outcome_side": o.outcome_side,
        "book_side": o.book_side,
        "type": "limit",
        "status": o.status,
        "yes_price_dollars": price_str(o.yes_price),
        "no_price_dollars": price_str(PRICE_SCALE - o.yes_price),
        "fill_count_fp": qty_str(o.fill),
        "remaining_count_fp": qty_str(o.remaining),
        "initial_count_fp": qty_str(o.initial),
        "taker_fill_cost_dollars": money_str(o.taker_cost),
        "maker_fill_cost_dollars": money_str(o.maker_cost),
        "taker_fees_dollars": money_str(o.taker_fees),
        "maker_fees_dollars": money_str(o.maker_fees),
        "expiration_time": None,
        "created_time": iso(o.created_ns),
        "last_update_time": iso(o.updated_ns),
        "self_trade_prevention_type": o.stp,
        "order_group_id": None,
        "cancel_order_on_pause": False,
        "subaccount_number": o.subaccount,
        "exchange_index": 0,
    }


def user_order_json(o: UserOrder) -> dict[str, Any]:
    """``user_order`` message body (AsyncAPI userOrderPayload)."""
    msg: dict[str, Any] = {
        "order_id": o.order_id,
        "user_id": o.user,
        "ticker": o.ticker,
        "exchange_index": 0,
        "status": o.status,
        "side": o.outcome_side,
        "is_yes": o.outcome_side == "yes",
        "outcome_side": o.outcome_side,
        "book_side": o.book_side,
        "yes_price_dollars": price_str(o.yes_price),
        "fill_count_fp": qty_str(o.fill),
        "remaining_count_fp": qty_str(o.remaining),
        "initial_count_fp": qty_str(o.initial),
        "taker_fill_cost_dollars": money_str(o.taker_cost),
        "maker_fill_cost_dollars": money_str(o.maker_cost),
        "taker_fees_dollars": money_str(o.taker_fees),
        "maker_fees_dollars": money_str(o.maker_fees),
        "client_order_id": o.client_order_id,
        "self_trade_prevention_type": o.stp,
        "created_time": iso(o.created_ns),
        "created_ts_ms": o.created_ns // 1_000_000,
        "last_update_time": iso(o.updated_ns),
        "last_updated_ts_ms": o.updated_ns // 1_000_000,
        "subaccount_number": o.subaccount,
    }
    if o.last_update_reason:
        msg["last_update_reason"] = o.last_update_reason
    return msg


def fill_frame_json(f: FillRecord) -> dict[str, Any]:
    """``fill`` message body (AsyncAPI fillPayload)."""
    msg: dict[str, Any] = {
        "trade_id": f.trade_id,
        "order_id": f.order_id,
        "market_ticker": f.ticker,
        "exchange_index": 0,
        "is_taker": f.is_taker,
        "side": f.outcome_side,
        "yes_price_dollars": price_str(f.yes_price),
        "count_fp": qty_str(f.count),
        "fee_cost": money_str(f.fee),
        "action": "buy",
        "ts": f.ts_ns // 1_000_000_000,
        "ts_ms": f.ts_ns // 1_000_000,
        "post_position_fp": qty_str(f.post_position),
        "purchased_side": f.outcome_side,
        "outcome_side": f.outcome_side,
        "book_side": f.book_side,
    }
    if f.client_order_id:
        msg["client_order_id"] = f.client_order_id
    if f.subaccount:
        msg["subaccount"] = f.subaccount
    return msg


def fill_json(f: FillRecord) -> dict[str, Any]:
    """OpenAPI ``Fill``."""
    return {
        "fill_id": f.fill_id,
        "exchange_index": 0,
        "trade_id": f.trade_id,
        "order_id": f.order_id,
        "ticker": f.ticker,
        "market_ticker": f.ticker,
        "side": f.outcome_side,
        "action": "buy",
        "outcome_side": f.outcome_side,
        "book_side": f.book_side,
        "count_fp": qty_str(f.count),
        "yes_price_dollars": price_str(f.yes_price),
        "no_price_dollars": price_str(PRICE_SCALE - f.yes_price),
        "is_taker": f.is_taker,
        "created_time": iso(f.ts_ns),
        "fee_cost": money_str(f.fee),
        "subaccount_number": f.subaccount,
        "ts": f.ts_ns // 1_000_000_000,
    }


def trade_json(f: FillRecord) -> dict[str, Any]:
    """OpenAPI ``Trade`` from the taker's fill (every trade has exactly one taker)."""
    return {
        "trade_id": f.trade_id,
        "ticker": f.ticker,
        "count_fp": qty_str(f.count),
        "yes_price_dollars": price_str(f.yes_price),
        "no_price_dollars": price_str(PRICE_SCALE - f.yes_price),
        "taker_side": f.outcome_side,
        "taker_outcome_side": f.outcome_side,
        "taker_book_side": f.book_side,
        "created_time": iso(f.ts_ns),
        "is_block_trade": False,
    }


def position_json(ticker: str, p: Position) -> dict[str, Any]:
    return {
        "ticker": ticker,
        "exchange_index": 0,
        "total_traded_dollars": money_str(p.total_traded),
        "position_fp": qty_str(p.net),
        "market_exposure_dollars": money_str(p.exposure),
        "realized_pnl_dollars": money_str(p.realized_pnl),
        "fees_paid_dollars": money_str(p.fees_paid),
        "last_updated_ts": iso(p.updated_ns),
    }


def money_json(m: int) -> str:
    return money_str(Money(m))
