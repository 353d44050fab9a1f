"""Run by test_kalshi_official_sdk.py under Python 3.13 in .venv-conformance-313/, with
Kalshi's official SDK (``kalshi-python-sync``) installed: one call per operation the local
exchange serves, each deserialised by the SDK into its typed pydantic model. Prints one JSON
object {call name: "ok" | "<exception class>: <message>"} on stdout. Imports nothing from
arbkit (it is not installed in that venv).

usage: python kalshi_sdk_script.py BASE_URL KEY_ID PRIVATE_KEY_PATH TICKER
"""

from __future__ import annotations

import json
import sys
import traceback
import uuid
from collections.abc import Callable
from typing import Any


def main(base_url: str, key_id: str, key_path: str, ticker: str) -> dict[str, str]:
    import kalshi_python_sync as k

    config = k.Configuration(host=base_url)
    config.api_key_id = key_id
    with open(key_path) as f:
        config.private_key_pem = f.read()
    client = k.KalshiClient(config)
    exchange, market, events = k.ExchangeApi(client), k.MarketApi(client), k.EventsApi(client)
    orders, portfolio = k.OrdersApi(client), k.PortfolioApi(client)
    historical = k.HistoricalApi(client)
    series, event = ticker.split("-", 1)[0], ticker.rsplit("-", 1)[0]
    results: dict[str, str] = {}

    def call(name: str, fn: Callable[[], Any], model: type) -> Any:
        try:
            out = fn()
            if not isinstance(out, model):
                raise TypeError(f"got {type(out).__name__}, want {model.__name__}")
            out.to_dict()  # every nested model serialises back
            results[name] = "ok"
            return out
        except Exception as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            results[name] = last[:1500]
            return None

    call("get_exchange_status", exchange.get_exchange_status, k.ExchangeStatus)
    call("get_series_fee_changes", exchange.get_series_fee_changes, k.GetSeriesFeeChangesResponse)
    call("get_markets", lambda: market.get_markets(limit=10), k.GetMarketsResponse)
    call("get_market", lambda: market.get_market(ticker), k.GetMarketResponse)
    call(
        "get_market_orderbook",
        lambda: market.get_market_orderbook(ticker),
        k.GetMarketOrderbookResponse,
    )
    call("get_trades", lambda: market.get_trades(ticker=ticker), k.GetTradesResponse)
    call("get_series", lambda: market.get_series(series), k.GetSeriesResponse)
    call("get_event", lambda: events.get_event(event), k.GetEventResponse)
    call("get_historical_cutoff", historical.get_historical_cutoff, k.GetHistoricalCutoffResponse)

    def create(price: str, count: str, side: str = "bid") -> Any:
        return orders.create_order_v2(
            ticker=ticker,
            client_order_id=str(uuid.uuid4()),
            side=k.BookSide(side),
            count=count,
            price=price,
            time_in_force="good_till_canceled",
            self_trade_prevention_type=k.SelfTradePreventionType("taker_at_cross"),
        )

    resting = call(
        "create_order_v2 (resting)", lambda: create("0.05", "2"), k.CreateOrderV2Response
    )
    if resting is not None:
        call("get_order", lambda: orders.get_order(resting.order_id), k.GetOrderResponse)
        call("get_orders", lambda: orders.get_orders(ticker=ticker), k.GetOrdersResponse)
        call(
            "cancel_order_v2",
            lambda: orders.cancel_order_v2(resting.order_id, market_ticker=ticker),
            k.CancelOrderV2Response,
        )
    # a taker order that fills against the YES bids (ask at or below the best bid)
    call("create_order_v2 (filling)", lambda: create("0.30", "3", "ask"), k.CreateOrderV2Response)
    call("get_balance", portfolio.get_balance, k.GetBalanceResponse)
    call("get_positions", portfolio.get_positions, k.GetPositionsResponse)
    call("get_fills", lambda: portfolio.get_fills(ticker=ticker), k.GetFillsResponse)
    call("get_settlements", portfolio.get_settlements, k.GetSettlementsResponse)
    call("get_historical_orders", historical.get_historical_orders, k.GetOrdersResponse)
    call("get_fills_historical", historical.get_fills_historical, k.GetFillsResponse)
    return results


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
