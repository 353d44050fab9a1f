"""Which REST operations the local Kalshi exchange implements, which of them are public, and
which documented query parameters each one reads, plus strict parsing of those parameters.

The table mirrors Kalshi's OpenAPI document (tests compare the two): an operation without a
``security`` entry there is public here; every documented query parameter of an implemented
operation is either listed as handled (and applied) or refused with 400 by its handler. A
parameter the spec does not document is ignored, as an HTTP server usually does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from arbkit.sim.kalshi_engine import OrderError

REST_PREFIX = "/trade-api/v2"
WS_PATH = "/trade-api/ws/v2"
_INT64 = 1 << 63
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Op:
    public: bool
    params: frozenset[str] = frozenset()


def _op(public: bool, *params: str) -> Op:
    return Op(public, frozenset(params))


_PAGE = ("limit", "cursor")
_MARKET_FILTERS = (
    "event_ticker",
    "series_ticker",
    "min_created_ts",
    "max_created_ts",
    "min_updated_ts",
    "max_updated_ts",
    "min_close_ts",
    "max_close_ts",
    "min_settled_ts",
    "max_settled_ts",
    "status",
    "tickers",
    "mve_filter",
)

# (method, path below REST_PREFIX) → Op. Paths use the spec's templates.
OPERATIONS: dict[tuple[str, str], Op] = {
    ("GET", "/exchange/status"): _op(True),
    ("GET", "/markets"): _op(True, *_PAGE, *_MARKET_FILTERS),
    ("GET", "/markets/{ticker}"): _op(True),
    ("GET", "/markets/{ticker}/orderbook"): _op(True, "depth"),
    ("GET", "/markets/trades"): _op(True, *_PAGE, "ticker", "min_ts", "max_ts", "is_block_trade"),
    ("GET", "/series/fee_changes"): _op(True, "series_ticker", "show_historical"),
    ("GET", "/series/{series_ticker}"): _op(True, "include_volume"),
    ("GET", "/events/{event_ticker}"): _op(True, "with_nested_markets"),
    ("GET", "/historical/cutoff"): _op(True),
    ("POST", "/portfolio/events/orders"): _op(False),
    ("DELETE", "/portfolio/events/orders/{order_id}"): _op(
        False, "subaccount", "exchange_index", "market_ticker"
    ),
    ("GET", "/portfolio/orders"): _op(
        False,
        *_PAGE,
        "ticker",
        "event_ticker",
        "min_ts",
        "max_ts",
        "status",
        "subaccount",
        "exchange_index",
    ),
    ("GET", "/portfolio/orders/{order_id}"): _op(False),
    ("GET", "/portfolio/fills"): _op(
        False, *_PAGE, "ticker", "order_id", "min_ts", "max_ts", "subaccount", "exchange_index"
    ),
    ("GET", "/portfolio/positions"): _op(
        False, *_PAGE, "count_filter", "ticker", "event_ticker", "subaccount", "exchange_index"
    ),
    ("GET", "/portfolio/balance"): _op(False, "subaccount", "exchange_index"),
    ("GET", "/portfolio/settlements"): _op(
        False, *_PAGE, "ticker", "event_ticker", "min_ts", "max_ts", "subaccount"
    ),
    ("GET", "/historical/orders"): _op(False, *_PAGE, "ticker", "min_ts", "max_ts", "subaccount"),
    ("GET", "/historical/fills"): _op(False, *_PAGE, "ticker", "min_ts", "max_ts", "subaccount"),
}


def operation(request: web.Request) -> tuple[str, Op] | None:
    """The request's ``(path template, Op)``, or None for a path/method not implemented."""
    route = request.match_info.route.resource
    canonical = route.canonical if route is not None else ""
    if not canonical.startswith(REST_PREFIX):
        return None
    path = canonical[len(REST_PREFIX) :]
    op = OPERATIONS.get((request.method, path))
    return None if op is None else (path, op)


def bad(message: str, details: str = "") -> OrderError:
    return OrderError(400, "invalid_parameters", message, details)


class Query:
    """Typed, validated access to one request's documented query parameters. Reading a name
    the operation table does not list is a programming error (the table is what the tests
    compare with the spec)."""

    def __init__(self, request: web.Request) -> None:
        found = operation(request)
        self._allowed = found[1].params if found else frozenset()
        self._q = request.query

    def present(self, name: str) -> bool:
        return self.text(name) is not None

    def text(self, name: str) -> str | None:
        """The value, None when absent or empty (the spec's "leave empty" = not given)."""
        assert name in self._allowed, f"{name} is not a documented parameter here"
        values = self._q.getall(name, [])
        if len(values) > 1:
            raise bad(f"{name} was given {len(values)} times; give it once")
        return values[0] if values and values[0] != "" else None

    def integer(self, name: str, lo: int | None = None, hi: int | None = None) -> int | None:
        v = self.text(name)
        if v is None:
            return None
        body = v[1:] if v[:1] in "+-" else v
        if not body.isdigit() or not body.isascii():
            raise bad(f"{name} must be an integer, not {v!r}")
        n = int(v)
        if not -_INT64 <= n < _INT64:
            raise bad(f"{name} is out of the int64 range")
        if lo is not None and n < lo:
            raise bad(f"{name} must be >= {lo}, not {n}")
        if hi is not None and n > hi:
            raise bad(f"{name} must be <= {hi}, not {n}")
        return n

    def flag(self, name: str) -> bool:
        v = self.text(name)
        if v is None:
            return False
        if v.lower() not in ("true", "false"):
            raise bad(f"{name} must be true or false, not {v!r}")
        return v.lower() == "true"

    def choice(self, name: str, values: frozenset[str] | set[str]) -> str | None:
        v = self.text(name)
        if v is not None and v not in values:
            raise bad(f"{name} must be one of {', '.join(sorted(values))}, not {v!r}")
        return v

    def csv(self, name: str, max_items: int | None = None) -> list[str] | None:
        v = self.text(name)
        if v is None:
            return None
        items = [s for s in (p.strip() for p in v.split(",")) if s]
        if max_items is not None and len(items) > max_items:
            raise bad(f"{name} takes at most {max_items} values, not {len(items)}")
        return items

    def ts_window(self, lo_name: str, hi_name: str) -> tuple[int | None, int | None]:
        """A ``min_*`` / ``max_*`` pair of Unix seconds; both ends inclusive."""
        lo, hi = self.integer(lo_name), self.integer(hi_name)
        if lo is not None and hi is not None and lo > hi:
            raise bad(f"{lo_name} ({lo}) is after {hi_name} ({hi})")
        return lo, hi

    def page(
        self, items: list[T], *, default: int = 100, zero_is_default: bool = False
    ) -> tuple[list[T], str]:
        """One page and the next cursor ("" at the end). The cursor is an opaque offset."""
        limit = self.integer("limit", 0 if zero_is_default else 1, 1000)
        if limit is None or limit == 0:
            limit = default  # MarketLimitQuery: ``omitempty,gte=0`` — 0 is "not given"
        raw = self.text("cursor")
        if raw is not None and not (raw.isascii() and raw.isdigit()):
            raise bad(f"cursor {raw!r} is not a cursor this venue returned")
        start = int(raw) if raw is not None else 0
        nxt = start + limit
        return items[start:nxt], (str(nxt) if nxt < len(items) else "")

    def subaccount(self, *, pooled: bool = False) -> int | None:
        """``subaccount`` (0 primary, 1..63). ``pooled``: the venue keeps one account for the
        data this operation serves, so only the primary (0 or omitted) can be answered."""
        n = self.integer("subaccount", 0, 63)
        if pooled and n not in (None, 0):
            raise bad(
                "subaccount other than 0 is not simulated here",
                "the local exchange keeps one pooled balance/position set per key",
            )
        return n

    def exchange_index(self) -> int | None:
        """``ExchangeIndexFilterQuery``: a shard filter (>= 0)."""
        return self.integer("exchange_index", 0)
