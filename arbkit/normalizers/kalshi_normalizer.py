"""Kalshi WebSocket order-book frames → exact bids-only books → ask-side NormalizedTicks.

Sans-IO (h11 style): raw text in, ticks + resync requests out; no clock, no socket. Replay
feeds captured frames straight into ``on_message``, so every piece of state the book depends
on (``subscribed``/``ok``/``unsubscribed``/``error`` frames, snapshots, deltas) arrives here.

Kalshi books hold bids only. A YES bid at p is a NO ask at $1 − p and vice versa, so a
change to the YES-bid ladder becomes a tick on the NO-ask ladder. Prices stay in Kalshi's
own YES/NO terms; orientation against the other venue is the detector's business.

``seq`` is per subscription (sid): a gap, duplicate or decrease invalidates every book on
that sid (``reset(valid=False)``) and asks for a fresh snapshot; deltas on an invalid book
are dropped until the snapshot arrives. Bad frames are counted, never raised.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from arbkit.model import (
    PRICE_SCALE,
    BookSide,
    ConversionError,
    Money,
    NormalizedTick,
    Outcome,
    Price,
    Qty,
    TickKind,
    Venue,
    parse_money,
    parse_price,
    parse_qty,
)

_KALSHI = Venue.KALSHI
_ASK = BookSide.ASK
_LEVEL = TickKind.LEVEL
_YES = Outcome.YES
_NO = Outcome.NO

TERMINAL_ERROR_CODES = frozenset({10, 25})
# Channels/messages we may see on a shared connection but do not build books from.
_IGNORED_TYPES = frozenset(
    {
        "ticker",
        "ticker_v2",
        "trade",
        "fill",
        "user_order",
        "market_position",
        "event_lifecycle",
        "multivariate_lookup",
        "order_group_updates",
    }
)


class BadFrame(ValueError):
    """A frame we cannot apply; ``ticker`` names the affected market when known."""

    def __init__(self, problem: str, ticker: str | None = None) -> None:
        super().__init__(problem)
        self.ticker = ticker


@dataclass(frozen=True, slots=True)
class KalshiResync:
    """Ask the gateway for fresh snapshots (``get_snapshot``) or a resubscribe.

    ``sid`` None means the subscription is unknown: resubscribe ``tickers``.
    """

    sid: int | None
    tickers: tuple[str, ...]
    reason: str
    resubscribe: bool = False


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """One ``market_lifecycle_v2`` message for a mapped market (times in epoch ns, 0 = absent)."""

    ticker: str
    event_type: str
    recv_ts_ns: int
    close_ns: int = 0
    result: str = ""
    settlement_value: Money | None = None  # per YES contract: "1.0000" → $1.00
    is_deactivated: bool | None = None
    determination_ns: int = 0
    settled_ns: int = 0
    # event_fee_update (ticker ""): the event's fee override; None = cleared
    event_ticker: str = ""
    fee_type: str | None = None
    fee_multiplier: str | None = None  # as printed (a JSON number): exact via Decimal(str)


class KalshiUpdate:
    """What one frame produced: ask-side ticks, resync requests, error texts, lifecycle
    events (``lifecycle_gap``: a lifecycle message was missed; re-read market states)."""

    __slots__ = ("errors", "lifecycle", "lifecycle_gap", "resync", "ticks")

    def __init__(self) -> None:
        self.ticks: list[NormalizedTick] = []
        self.resync: list[KalshiResync] = []
        self.errors: list[str] = []
        self.lifecycle: list[LifecycleEvent] = []
        self.lifecycle_gap = False


# ------------------------------------------------------------ fast exact parsing ---------


_CACHE_MAX = 8192
_price_cache: dict[str, int] = {}
_qty_cache: dict[str, int] = {}
#: No Kalshi level or delta is this large: a corrupt count, never a book.
MAX_LEVEL_QTY = 10_000_000 * 100


def _price(v: object, field_name: str = "price_dollars") -> int:
    """Dollar price → $0.0001 units; strings are memoised (a market has few distinct prices)."""
    if type(v) is str:
        p = _price_cache.get(v)
        if p is None:
            p = parse_price(v, field_name)
            if len(_price_cache) >= _CACHE_MAX:
                _price_cache.clear()
            _price_cache[v] = p
        return p
    return parse_price(v, field_name)


def _cents(v: object, field_name: str) -> int:
    """Legacy integer-cent price (1–99) → $0.0001 units."""
    if type(v) is not int or not 0 < v < 100:
        raise ConversionError(field_name, v, "legacy cent price must be an int in 1..99")
    return v * 100


def _qty(v: object, field_name: str, *, signed: bool = False) -> int:
    """Fixed-point count ("54.00", "-54.00") → 0.01-contract units; legacy ints accepted."""
    if type(v) is str:
        n = _qty_cache.get(v)
        if n is None:
            n = parse_qty(v, field_name, signed=True)
            if len(_qty_cache) >= _CACHE_MAX:
                _qty_cache.clear()
            _qty_cache[v] = n
    elif type(v) is int:  # legacy integer contract counts
        n = v * 100
    else:
        n = parse_qty(v, field_name, signed=True)
    if n < 0 and not signed:
        raise ConversionError(field_name, v, "must not be negative")
    if not -MAX_LEVEL_QTY <= n <= MAX_LEVEL_QTY:
        raise ConversionError(field_name, v, "is absurd (more than 10,000,000 contracts)")
    return n


# ------------------------------------------------------------------- the book --------


class _Book:
    """One market's bids in native terms: yes[p] and no[p] (NO priced in NO terms)."""

    __slots__ = ("best_no", "best_yes", "no", "sid", "valid", "yes")

    def __init__(self) -> None:
        self.yes: dict[int, int] = {}
        self.no: dict[int, int] = {}
        self.best_yes = 0  # 0 = empty side
        self.best_no = 0
        self.valid = False
        self.sid: int | None = None

    def clear(self) -> None:
        self.yes = {}
        self.no = {}
        self.best_yes = 0
        self.best_no = 0


def _ladder(levels: object, side: str, legacy_cents: bool, ticker: str) -> dict[int, int]:
    if not isinstance(levels, list):
        raise BadFrame(f"{side} levels are not a list", ticker)
    out: dict[int, int] = {}
    for lvl in levels:
        if not isinstance(lvl, list) or len(lvl) != 2:
            raise BadFrame(f"{side} level {lvl!r} is not a [price, count] pair", ticker)
        p = _cents(lvl[0], side) if legacy_cents else _price(lvl[0], side)
        q = _qty(lvl[1], side)
        if p in out:
            raise BadFrame(f"{side} has price {lvl[0]!r} twice", ticker)
        if q:
            out[p] = q
    return out


class KalshiNormalizer:
    """Pure Kalshi order-book state machine; see the module docstring."""

    def __init__(self, ticker_to_symbol: Mapping[str, str], *, use_yes_price: bool) -> None:
        self.ticker_to_symbol: dict[str, str] = dict(ticker_to_symbol)
        self.use_yes_price = use_yes_price
        self._books: dict[str, _Book] = {}
        self._sid_seq: dict[int, int] = {}  # last seq seen per orderbook sid
        self._lifecycle_seq: dict[int, int] = {}  # last seq per market_lifecycle_v2 sid
        self._sid_tickers: dict[int, set[str]] = {}
        self._sid_channel: dict[int, str] = {}
        self._awaiting: set[str] = set()  # tickers with an outstanding resync request
        self.messages = 0
        self.bad_frames = 0
        self.gaps = 0
        self.resyncs = 0
        self.ignored = 0

    # ------------------------------------------------------------- public API ------

    def add_ticker(self, ticker: str, symbol: str) -> None:
        self.ticker_to_symbol[ticker] = symbol

    def remove_ticker(self, ticker: str) -> None:
        self.ticker_to_symbol.pop(ticker, None)
        self._books.pop(ticker, None)
        self._awaiting.discard(ticker)
        for tickers in self._sid_tickers.values():
            tickers.discard(ticker)

    def book(self, ticker: str) -> tuple[list[tuple[Price, Qty]], list[tuple[Price, Qty]]]:
        """(yes bids, no bids), best first, NO in NO-leg prices; empty when unknown."""
        b = self._books.get(ticker)
        if b is None:
            return [], []
        yes = [(Price(p), Qty(q)) for p, q in sorted(b.yes.items(), reverse=True)]
        no = [(Price(p), Qty(q)) for p, q in sorted(b.no.items(), reverse=True)]
        return yes, no

    def is_valid(self, ticker: str) -> bool:
        b = self._books.get(ticker)
        return b is not None and b.valid

    @property
    def books_valid(self) -> dict[str, bool]:
        return {t: self.is_valid(t) for t in self.ticker_to_symbol}

    @property
    def orderbook_sid(self) -> int | None:
        """The latest sid the server confirmed for the ``orderbook_delta`` channel."""
        sids = [s for s, ch in self._sid_channel.items() if ch == "orderbook_delta"]
        return max(sids) if sids else None

    def sid_of(self, ticker: str) -> int | None:
        b = self._books.get(ticker)
        return None if b is None else b.sid

    def invalidate_all(self, recv_ts_ns: int) -> list[NormalizedTick]:
        """The connection is gone: every book is unusable and sids/seqs restart."""
        self._sid_seq.clear()
        self._sid_tickers.clear()
        self._sid_channel.clear()
        self._awaiting.clear()
        ticks = []
        for ticker, symbol in self.ticker_to_symbol.items():
            b = self._books.get(ticker)
            if b is not None:
                b.valid = False
                b.sid = None
                b.clear()
            ticks.append(NormalizedTick.reset(symbol, _KALSHI, valid=False, recv_ts_ns=recv_ts_ns))
        return ticks

    def invalidate(self, tickers: Iterable[str], recv_ts_ns: int) -> list[NormalizedTick]:
        """Mark some books unusable (e.g. the market was removed)."""
        out: list[NormalizedTick] = []
        for t in tickers:
            self._invalidate_ticker(t, recv_ts_ns, out)
        return out

    def on_message(self, raw: str | bytes, recv_ts_ns: int) -> KalshiUpdate:
        self.messages += 1
        upd = KalshiUpdate()
        try:
            obj = orjson.loads(raw)
        except (orjson.JSONDecodeError, TypeError) as exc:
            self._bad(upd, f"malformed JSON: {exc}")
            return upd
        try:
            # Deltas are nearly all the traffic: skip the dispatch chain for them.
            if type(obj) is dict and obj.get("type") == "orderbook_delta":
                self._on_delta(obj, recv_ts_ns, upd)
            else:
                self._dispatch(obj, recv_ts_ns, upd)
        except BadFrame as exc:
            self._bad_frame(upd, exc, obj, recv_ts_ns)
        except (ConversionError, ValueError, TypeError, KeyError, AttributeError) as exc:
            self._bad_frame(upd, BadFrame(str(exc)), obj, recv_ts_ns)
        except Exception as exc:  # last resort: input must never take the feed down
            self._bad_frame(
                upd, BadFrame(f"unexpected {type(exc).__name__}: {exc}"), obj, recv_ts_ns
            )
        return upd

    # ------------------------------------------------------------ dispatching -----

    def _dispatch(self, obj: Any, recv_ts_ns: int, upd: KalshiUpdate) -> None:
        if type(obj) is not dict:
            raise BadFrame("frame is not a JSON object")
        typ = obj.get("type")
        if typ == "orderbook_delta":
            self._on_delta(obj, recv_ts_ns, upd)
        elif typ == "orderbook_snapshot":
            self._on_snapshot(obj, recv_ts_ns, upd)
        elif typ == "ok":
            self._on_ok(obj, recv_ts_ns, upd)
        elif typ == "market_lifecycle_v2":
            self._on_lifecycle(obj, recv_ts_ns, upd)
        elif typ == "event_fee_update":
            self._on_fee_update(obj, recv_ts_ns, upd)
        elif typ == "subscribed":
            msg = obj.get("msg")
            if type(msg) is not dict or type(msg.get("sid")) is not int:
                raise BadFrame("subscribed without msg.sid")
            sid = msg["sid"]
            self._sid_channel[sid] = str(msg.get("channel", ""))
            if msg.get("channel") == "orderbook_delta":
                # A repeated subscribe merges into the same sid; its seq carries on.
                self._sid_tickers.setdefault(sid, set())
        elif typ == "unsubscribed":
            sid = obj.get("sid")
            if type(sid) is int and sid in self._sid_tickers:
                for t in list(self._sid_tickers.pop(sid)):
                    self._invalidate_ticker(t, recv_ts_ns, upd.ticks)
                self._sid_seq.pop(sid, None)
                self._sid_channel.pop(sid, None)
        elif typ == "error":
            self._on_error(obj, recv_ts_ns, upd)
        elif typ in _IGNORED_TYPES:
            self.ignored += 1
        else:
            raise BadFrame(f"unknown message type {typ!r}")

    def _on_lifecycle(self, obj: dict[str, Any], recv_ts_ns: int, upd: KalshiUpdate) -> None:
        """Market state changes. Sequenced on their own sid: a gap asks for a re-read of
        the market states (books are unaffected)."""
        self._lifecycle_seq_check(obj, upd)
        msg = obj.get("msg")
        if type(msg) is not dict:
            raise BadFrame("market_lifecycle_v2 without msg")
        ticker, event_type = msg.get("market_ticker"), msg.get("event_type")
        if type(ticker) is not str or type(event_type) is not str:
            upd.lifecycle_gap = True  # a state change we cannot read: re-read them all
            raise BadFrame("market_lifecycle_v2 without market_ticker/event_type")
        if ticker not in self.ticker_to_symbol:
            self.ignored += 1
            return

        def ns(key: str) -> int:
            v = msg.get(key)
            return v * 1_000_000_000 if type(v) is int and v > 0 else 0

        value = msg.get("settlement_value")
        deact = msg.get("is_deactivated")
        upd.lifecycle.append(
            LifecycleEvent(
                ticker,
                event_type,
                recv_ts_ns,
                close_ns=ns("close_ts"),
                result=str(msg.get("result") or ""),
                settlement_value=(
                    parse_money(value, "settlement_value", signed=False)
                    if value is not None
                    else None
                ),
                is_deactivated=deact if type(deact) is bool else None,
                determination_ns=ns("determination_ts"),
                settled_ns=ns("settled_ts"),
            )
        )

    def _lifecycle_seq_check(self, obj: dict[str, Any], upd: KalshiUpdate) -> None:
        """Lifecycle and fee-update frames share their subscription's seq."""
        sid, seq = obj.get("sid"), obj.get("seq")
        if type(sid) is int and type(seq) is int:
            last = self._lifecycle_seq.get(sid)
            self._lifecycle_seq[sid] = seq
            if last is not None and seq != last + 1:
                self.gaps += 1
                upd.lifecycle_gap = True

    def _on_fee_update(self, obj: dict[str, Any], recv_ts_ns: int, upd: KalshiUpdate) -> None:
        """An event-level fee override set or cleared: the monitor decides what it means
        for the mapped markets of that event."""
        self._lifecycle_seq_check(obj, upd)
        msg = obj.get("msg")
        if type(msg) is not dict or type(msg.get("event_ticker")) is not str:
            upd.lifecycle_gap = True  # a fee change we cannot read: re-read the fees
            raise BadFrame("event_fee_update without msg.event_ticker")
        ftype, mult = msg.get("fee_type_override"), msg.get("fee_multiplier_override")
        upd.lifecycle.append(
            LifecycleEvent(
                "",
                "event_fee_update",
                recv_ts_ns,
                event_ticker=msg["event_ticker"],
                fee_type=ftype if type(ftype) is str and ftype else None,
                fee_multiplier=None if mult is None else str(mult),
            )
        )

    def _envelope(
        self, obj: dict[str, Any], recv_ts_ns: int, upd: KalshiUpdate
    ) -> tuple[int, int, dict[str, Any], str]:
        sid = obj.get("sid")
        seq = obj.get("seq")
        msg = obj.get("msg")
        if type(sid) is not int or type(seq) is not int or sid < 1 or seq < 1:
            raise BadFrame("missing or invalid sid/seq")
        ticker = msg.get("market_ticker") if type(msg) is dict else None
        if type(ticker) is not str or not ticker:
            # A frame on this sid we cannot attribute: every book on the sid is suspect.
            if self._check_seq(sid, seq, recv_ts_ns, upd):
                tickers = tuple(self._sid_tickers.get(sid, ()))
                for t in tickers:
                    self._invalidate_ticker(t, recv_ts_ns, upd.ticks)
                self._request(upd, sid, tickers, "unattributable bad frame")
            raise BadFrame(f"sid {sid}: missing msg.market_ticker")
        assert type(msg) is dict
        return sid, seq, msg, ticker

    def _check_seq(self, sid: int, seq: int, recv_ts_ns: int, upd: KalshiUpdate) -> bool:
        """True when seq follows on; otherwise invalidate the whole sid and ask for a resync."""
        last = self._sid_seq.get(sid)
        self._sid_seq[sid] = seq
        if last is None or seq == last + 1:
            return True
        self.gaps += 1
        tickers = self._sid_tickers.get(sid, set())
        for t in tickers:
            self._invalidate_ticker(t, recv_ts_ns, upd.ticks)
        kind = "duplicate" if seq == last else ("decrease" if seq < last else "gap")
        upd.errors.append(f"sid {sid}: seq {kind} ({last} → {seq})")
        self._request(upd, sid, tickers, f"seq {kind}")
        return False

    # -------------------------------------------------------------- messages ------

    def _on_snapshot(self, obj: dict[str, Any], recv_ts_ns: int, upd: KalshiUpdate) -> None:
        sid, seq, msg, ticker = self._envelope(obj, recv_ts_ns, upd)
        # A snapshot is self-contained: even right after a gap's invalidation it applies.
        self._check_seq(sid, seq, recv_ts_ns, upd)
        if "yes_dollars_fp" in msg or "no_dollars_fp" in msg:
            yes = _ladder(msg.get("yes_dollars_fp", []), "yes_dollars_fp", False, ticker)
            no = _ladder(msg.get("no_dollars_fp", []), "no_dollars_fp", False, ticker)
        elif "yes_dollars" in msg or "no_dollars" in msg:
            yes = _ladder(msg.get("yes_dollars", []), "yes_dollars", False, ticker)
            no = _ladder(msg.get("no_dollars", []), "no_dollars", False, ticker)
        else:
            yes = _ladder(msg.get("yes", []), "yes", True, ticker)
            no = _ladder(msg.get("no", []), "no", True, ticker)
        if self.use_yes_price:
            no = {PRICE_SCALE - p: q for p, q in no.items()}
        best_yes = max(yes) if yes else 0
        best_no = max(no) if no else 0
        if best_yes and best_no and best_yes + best_no >= PRICE_SCALE:
            raise BadFrame(f"crossed snapshot (yes {best_yes} + no {best_no} ≥ $1)", ticker)
        b = self._books.get(ticker)
        if b is None:
            b = self._books[ticker] = _Book()
        self._attach(b, ticker, sid)
        b.yes, b.no, b.best_yes, b.best_no = yes, no, best_yes, best_no
        b.valid = True
        self._awaiting.discard(ticker)
        symbol = self.ticker_to_symbol.get(ticker)
        if symbol is None:
            self.ignored += 1
            return
        ticks = upd.ticks
        ticks.append(NormalizedTick.reset(symbol, _KALSHI, valid=True, recv_ts_ns=recv_ts_ns))
        # NO bids → YES asks; YES bids → NO asks. Best ask first.
        for p in sorted(no, reverse=True):
            ticks.append(
                NormalizedTick(
                    symbol, _KALSHI, _YES, _ASK, Price(PRICE_SCALE - p), Qty(no[p]), 0, recv_ts_ns
                )
            )
        for p in sorted(yes, reverse=True):
            ticks.append(
                NormalizedTick(
                    symbol, _KALSHI, _NO, _ASK, Price(PRICE_SCALE - p), Qty(yes[p]), 0, recv_ts_ns
                )
            )

    def _on_delta(self, obj: dict[str, Any], recv_ts_ns: int, upd: KalshiUpdate) -> None:
        # Inlined _envelope + _check_seq for a well-formed, in-order frame; anything else
        # takes the general path (same checks, same outcome).
        sid: Any = obj.get("sid")
        seq: Any = obj.get("seq")
        msg: Any = obj.get("msg")
        ticker: Any = msg.get("market_ticker") if type(msg) is dict else None
        last = self._sid_seq.get(sid) if type(sid) is int else None
        if (
            last is not None
            and type(seq) is int
            and seq == last + 1
            and type(ticker) is str
            and ticker
            and last >= 0
            and sid >= 1
        ):
            self._sid_seq[sid] = seq
            in_order = True
        else:
            sid, seq, msg, ticker = self._envelope(obj, recv_ts_ns, upd)
            in_order = self._check_seq(sid, seq, recv_ts_ns, upd)
        b = self._books.get(ticker)
        if b is None or not b.valid:
            # No usable book: drop until the snapshot; make sure one is on its way.
            if in_order and ticker in self.ticker_to_symbol and ticker not in self._awaiting:
                self._request(upd, sid, (ticker,), "delta without a valid book")
            return
        if b.sid != sid:
            self._attach(b, ticker, sid)
        pv = msg.get("price_dollars")
        p = _price_cache.get(pv) if type(pv) is str else None  # inlined fast path
        if p is None:
            p = _price(pv) if pv is not None else _cents(msg.get("price"), "price")
        dv = msg.get("delta_fp")
        d = _qty_cache.get(dv) if type(dv) is str else None
        if d is None:
            d = (
                _qty(dv, "delta_fp", signed=True)
                if dv is not None
                else _qty(msg.get("delta"), "delta", signed=True)
            )
        side = msg.get("side")
        if side == "yes":
            levels = b.yes
        elif side == "no":
            if self.use_yes_price:
                p = PRICE_SCALE - p
            levels = b.no
        else:
            raise BadFrame(f"delta side {side!r} is neither yes nor no", ticker)
        new = levels.get(p, 0) + d
        if new < 0:
            raise BadFrame(f"{side} level {p} would go negative ({new})", ticker)
        if new > MAX_LEVEL_QTY:
            raise BadFrame(f"{side} level {p} would be absurd ({new // 100:,} contracts)", ticker)
        if new:
            levels[p] = new
            if side == "yes":
                if p > b.best_yes:
                    b.best_yes = p
            elif p > b.best_no:
                b.best_no = p
            if b.best_yes and b.best_no and b.best_yes + b.best_no >= PRICE_SCALE:
                raise BadFrame(f"delta crosses (yes {b.best_yes} + no {b.best_no})", ticker)
        else:
            levels.pop(p, None)
            if side == "yes":
                if p == b.best_yes:
                    b.best_yes = max(levels) if levels else 0
            elif p == b.best_no:
                b.best_no = max(levels) if levels else 0
        symbol = self.ticker_to_symbol.get(ticker)
        if symbol is None:
            return
        ts_ms = msg.get("ts_ms")
        venue_ns = ts_ms * 1_000_000 if type(ts_ms) is int else 0
        upd.ticks.append(
            NormalizedTick(
                symbol,
                _KALSHI,
                _NO if side == "yes" else _YES,
                _ASK,
                Price(PRICE_SCALE - p),
                Qty(new),
                venue_ns,
                recv_ts_ns,
            )
        )

    def _on_ok(self, obj: dict[str, Any], recv_ts_ns: int, upd: KalshiUpdate) -> None:
        sid = obj.get("sid")
        seq = obj.get("seq")
        if type(sid) is not int:
            return  # list_subscriptions reply or an un-sequenced ack
        if type(seq) is int and (sid in self._sid_tickers or sid in self._sid_seq):
            self._check_seq(sid, seq, recv_ts_ns, upd)
        msg = obj.get("msg")
        if type(msg) is dict and type(msg.get("market_tickers")) is list:
            if self._sid_channel.get(sid, "orderbook_delta") != "orderbook_delta":
                return
            now = {t for t in msg["market_tickers"] if type(t) is str}
            before = self._sid_tickers.setdefault(sid, set())
            for t in before - now:  # delete_markets: those books get no more updates
                self._invalidate_ticker(t, recv_ts_ns, upd.ticks)
                b = self._books.get(t)
                if b is not None and b.sid == sid:
                    b.sid = None
            before.intersection_update(now)

    def _on_error(self, obj: dict[str, Any], recv_ts_ns: int, upd: KalshiUpdate) -> None:
        msg = obj.get("msg")
        code = msg.get("code") if type(msg) is dict else None
        text = msg.get("msg") if type(msg) is dict else None
        sid = obj.get("sid")
        upd.errors.append(f"error code {code}: {text} (id={obj.get('id')}, sid={sid})")
        if type(sid) is int and type(obj.get("seq")) is int and sid in self._sid_tickers:
            self._check_seq(sid, obj["seq"], recv_ts_ns, upd)
        if code in TERMINAL_ERROR_CODES:
            if type(sid) is int and sid in self._sid_tickers:
                tickers: Iterable[str] = tuple(self._sid_tickers[sid])
            else:
                tickers = tuple(self.ticker_to_symbol)
                sid = None
            for t in tickers:
                self._invalidate_ticker(t, recv_ts_ns, upd.ticks)
            self.resyncs += 1
            upd.resync.append(
                KalshiResync(
                    sid if type(sid) is int else None,
                    tuple(sorted(tickers)),
                    f"terminal error {code}",
                    resubscribe=True,
                )
            )

    # -------------------------------------------------------------- helpers -------

    def _attach(self, b: _Book, ticker: str, sid: int) -> None:
        if b.sid is not None and b.sid != sid:
            self._sid_tickers.get(b.sid, set()).discard(ticker)
        b.sid = sid
        self._sid_tickers.setdefault(sid, set()).add(ticker)

    def _invalidate_ticker(self, ticker: str, recv_ts_ns: int, out: list[NormalizedTick]) -> None:
        b = self._books.get(ticker)
        if b is not None:
            b.valid = False
            b.clear()
        symbol = self.ticker_to_symbol.get(ticker)
        if symbol is not None:
            out.append(NormalizedTick.reset(symbol, _KALSHI, valid=False, recv_ts_ns=recv_ts_ns))

    def _request(
        self, upd: KalshiUpdate, sid: int | None, tickers: Iterable[str], why: str
    ) -> None:
        wanted = tuple(sorted(t for t in tickers if t in self.ticker_to_symbol))
        if not wanted:
            return
        self._awaiting.update(wanted)
        self.resyncs += 1
        upd.resync.append(KalshiResync(sid, wanted, why))

    def _bad(self, upd: KalshiUpdate, problem: str) -> None:
        self.bad_frames += 1
        upd.errors.append(f"bad frame: {problem}")

    def _bad_frame(self, upd: KalshiUpdate, exc: BadFrame, obj: Any, recv_ts_ns: int) -> None:
        ticker = exc.ticker
        if ticker is None and type(obj) is dict and type(obj.get("msg")) is dict:
            t = obj["msg"].get("market_ticker")
            ticker = t if type(t) is str else None
        self._bad(upd, f"{exc} (market {ticker})" if ticker else str(exc))
        if ticker is None:
            return
        self._invalidate_ticker(ticker, recv_ts_ns, upd.ticks)
        if ticker in self._awaiting:
            return  # a snapshot is already on its way
        b = self._books.get(ticker)
        sid = b.sid if b is not None else None
        if sid is None and type(obj) is dict and type(obj.get("sid")) is int:
            sid = obj["sid"]
        self._request(upd, sid, (ticker,), f"bad frame: {exc}")
