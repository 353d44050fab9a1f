"""Public market-data REST operations of the local Kalshi exchange (no auth needed, as the
spec declares: these operations carry no ``security`` requirement)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from arbkit.model import Qty, price_str, qty_str
from arbkit.sim.kalshi_engine import OrderError, SimMarket
from arbkit.sim.kalshi_json import iso, iso_s, json_response, market_json, number, trade_json
from arbkit.sim.kalshi_params import Query, bad

if TYPE_CHECKING:
    from arbkit.sim.kalshi_exchange import KalshiExchange

MARKET_STATUS_FILTER = {
    "unopened": {"initialized"},
    "open": {"active"},
    "paused": {"inactive"},
    "closed": {"closed"},
    "settled": {"determined", "finalized", "amended", "disputed"},
}
# GetMarkets: "Timestamp filters will be mutually exclusive from other timestamp filters and
# certain status filters" — the status values each timestamp group may be combined with.
_TS_GROUPS: dict[str, tuple[str, str, frozenset[str | None]]] = {
    "created": ("min_created_ts", "max_created_ts", frozenset({None, "unopened", "open"})),
    "close": ("min_close_ts", "max_close_ts", frozenset({None, "closed"})),
    "settled": ("min_settled_ts", "max_settled_ts", frozenset({None, "settled"})),
    "updated": ("min_updated_ts", "max_updated_ts", frozenset({None})),
}
_NS = 1_000_000_000


class MarketsApi:
    def __init__(self, ex: KalshiExchange) -> None:
        self.ex = ex

    def routes(self, app: web.Application, prefix: str) -> None:
        r = app.router
        r.add_get(prefix + "/exchange/status", self.exchange_status)
        r.add_get(prefix + "/markets", self.get_markets)
        r.add_get(prefix + "/markets/trades", self.get_trades)
        r.add_get(prefix + "/markets/{ticker}", self.get_market)
        r.add_get(prefix + "/markets/{ticker}/orderbook", self.get_orderbook)
        r.add_get(prefix + "/series/fee_changes", self.get_series_fee_changes)
        r.add_get(prefix + "/series/{series_ticker}", self.get_series)
        r.add_get(prefix + "/events/{event_ticker}", self.get_event)
        r.add_get(prefix + "/historical/cutoff", self.get_historical_cutoff)

    def _market(self, m: SimMarket) -> dict[str, Any]:
        return market_json(m, self.ex.metadata_updated_ns(m.ticker))

    async def exchange_status(self, request: web.Request) -> web.Response:
        return json_response({"exchange_active": True, "trading_active": True})

    async def get_markets(self, request: web.Request) -> web.Response:
        q = Query(request)
        status = q.choice("status", set(MARKET_STATUS_FILTER))
        mve = q.choice("mve_filter", {"only", "exclude"})
        tickers = q.csv("tickers")
        event = q.text("event_ticker")
        if event is not None and "," in event:
            raise bad("event_ticker takes a single event ticker")
        series = q.text("series_ticker")
        groups = [g for g, (lo, hi, _) in _TS_GROUPS.items() if q.present(lo) or q.present(hi)]
        if len(groups) > 1:
            raise bad(f"timestamp filters of {' and '.join(groups)} cannot be combined")
        markets = list(self.ex.engine.markets.values())
        if groups:
            g = groups[0]
            lo_name, hi_name, statuses = _TS_GROUPS[g]
            if status not in statuses:
                raise bad(f"{g} timestamp filters cannot be combined with status={status}")
            if g == "updated" and (
                tickers or event or mve == "only" or (series and mve != "exclude")
            ):
                raise bad(
                    "min/max_updated_ts combine only with mve_filter=exclude "
                    "(and series_ticker, which requires mve_filter=exclude)"
                )
            lo, hi = q.integer(lo_name), q.integer(hi_name)
            markets = [m for m in markets if self._in_window(m, g, lo, hi)]
        if status is not None:
            wanted = MARKET_STATUS_FILTER[status]
            markets = [m for m in markets if m.status in wanted]
        if tickers:
            keep = set(tickers)
            markets = [m for m in markets if m.ticker in keep]
        if series:
            markets = [m for m in markets if m.series == series]
        if event:
            markets = [m for m in markets if m.event_ticker == event]
        if mve == "only":
            markets = []  # no multivariate (combo) markets are simulated
        page, cursor = q.page(markets, zero_is_default=True)
        rows = [self._market(m) for m in page]
        return json_response({"markets": rows, "cursor": cursor})

    def _in_window(self, m: SimMarket, group: str, lo: int | None, hi: int | None) -> bool:
        """The spec's wording: ``min_*`` "after" (exclusive), ``max_*`` "before" (exclusive);
        ``max_updated_ts`` "at or before" (inclusive). A market not settled has no
        settled time and never matches a settled window."""
        if group == "created":
            t = m.open_time_s
        elif group == "close":
            t = m.close_time_s
        elif group == "settled":
            if not m.settled_s:
                return False
            t = m.settled_s
        else:
            t = self.ex.metadata_updated_ns(m.ticker) // _NS
            return (lo is None or t > lo) and (hi is None or t <= hi)
        return (lo is None or t > lo) and (hi is None or t < hi)

    async def get_market(self, request: web.Request) -> web.Response:
        m = self.ex.engine.market(request.match_info["ticker"])
        return json_response({"market": self._market(m)})

    async def get_orderbook(self, request: web.Request) -> web.Response:
        m = self.ex.engine.market(request.match_info["ticker"])
        # Schema ``minimum: 0, maximum: 100`` (validate ``min=0,max=100``): the description's
        # "0 or negative means all levels" loses to the schema; negative → 400.
        depth = Query(request).integer("depth", 0, 100) or 0

        def side(name: str) -> list[list[str]]:
            lv = m.ladder(name)
            if depth > 0:
                lv = lv[-depth:]
            return [[price_str(p), qty_str(n)] for p, n in lv]

        return json_response(
            {"orderbook_fp": {"yes_dollars": side("yes"), "no_dollars": side("no")}}
        )

    async def get_trades(self, request: web.Request) -> web.Response:
        """Public trades, newest first: one per taker fill of a user's order (trades between
        simulated liquidity and nobody else are not recorded by the engine)."""
        q = Query(request)
        ticker = q.text("ticker")
        lo, hi = q.ts_window("min_ts", "max_ts")
        block = q.text("is_block_trade")
        if block is not None:
            q.flag("is_block_trade")
        fills = [
            f
            for f in self.ex.engine.fills
            if f.is_taker
            and (ticker is None or f.ticker == ticker)
            and (lo is None or f.ts_ns >= lo * _NS)
            and (hi is None or f.ts_ns <= hi * _NS)
        ]
        if block is not None and block.lower() == "true":
            fills = []  # no block trades are simulated
        fills.reverse()
        page, cursor = q.page(fills, zero_is_default=True)
        rows = [trade_json(f) for f in page]
        return json_response({"trades": rows, "cursor": cursor})

    def _series_known(self, series: str) -> bool:
        return series in self.ex.engine.series_fees or any(
            m.series == series for m in self.ex.engine.markets.values()
        )

    async def get_series(self, request: web.Request) -> web.Response:
        """OpenAPI ``GetSeriesResponse`` (every ``Series`` required field)."""
        t = request.match_info["series_ticker"]
        include_volume = Query(request).flag("include_volume")
        if not self._series_known(t):
            raise OrderError(404, "not_found", "series not found", t)
        fee = self.ex.engine.series_fee(t)
        volume = 0
        if include_volume:
            volume = sum(m.volume for m in self.ex.engine.markets.values() if m.series == t)
        series: dict[str, Any] = {
            "ticker": t,
            "frequency": "monthly",
            "title": f"Simulated series {t}",
            "category": "",
            "categories": [],
            "tags": [],
            "settlement_sources": [],
            "contract_url": "",
            "contract_terms_url": "",
            "fee_type": fee.fee_type,
            "fee_multiplier": number(fee.multiplier),
            "additional_prohibitions": [],
            "product_metadata": {},
            "volume_fp": qty_str(Qty(volume)),
            "exchange_index": 0,
        }
        return json_response({"series": series})

    async def get_series_fee_changes(self, request: web.Request) -> web.Response:
        """OpenAPI ``GetSeriesFeeChangesResponse``: future changes only unless
        ``show_historical=true`` (then past ones too), oldest first."""
        q = Query(request)
        series = q.text("series_ticker") or ""
        historical = q.flag("show_historical")
        engine = self.ex.engine
        engine.apply_due_fee_changes()
        now = self.ex.clock_ns()
        rows = [
            {
                "id": c.change_id,
                "series_ticker": c.series,
                "fee_type": c.fee.fee_type,
                "fee_multiplier": number(c.fee.multiplier),
                "scheduled_ts": iso_s(c.at_s),
            }
            for c in sorted(engine.fee_changes, key=lambda c: c.at_s)
            if (not series or c.series == series) and (historical or c.at_s * _NS > now)
        ]
        return json_response({"series_fee_change_arr": rows})

    async def get_event(self, request: web.Request) -> web.Response:
        """OpenAPI ``GetEventResponse``: ``EventData`` required fields, the override fields
        when an override is set (omitted otherwise: ``x-omitempty``), and the markets."""
        t = request.match_info["event_ticker"]
        nested = Query(request).flag("with_nested_markets")
        markets = [m for m in self.ex.engine.markets.values() if m.event_ticker == t]
        if not markets:
            raise OrderError(404, "not_found", "event not found", t)
        rows = [self._market(m) for m in markets]
        event: dict[str, Any] = {
            "event_ticker": t,
            "series_ticker": markets[0].series,
            "sub_title": "",
            "title": f"Simulated event {t}",
            "collateral_return_type": "",
            "mutually_exclusive": False,
            "category": "",
            "settlement_sources": [{"name": n, "url": ""} for n in markets[0].settlement_sources],
            "exchange_index": 0,
        }
        override = self.ex.engine.event_fees.get(t)
        if override is not None:
            event["fee_type_override"] = override.fee_type
            event["fee_multiplier_override"] = number(override.multiplier)
        if nested:
            event["markets"] = rows
        return json_response({"event": event, "markets": rows})

    async def get_historical_cutoff(self, request: web.Request) -> web.Response:
        cut = self.ex.historical_cutoff_ns or 0
        ts = iso_s(cut // _NS) if cut % _NS == 0 else iso(cut)
        return json_response(
            {
                "market_settled_ts": ts,
                "trades_created_ts": ts,
                "orders_updated_ts": ts,
                "market_positions_last_updated_ts": ts,
            }
        )
