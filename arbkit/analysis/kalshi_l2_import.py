"""Import third-party Kalshi L2 history (hive-partitioned Parquet) as a replayable capture.

Public Kalshi archives ship full-depth order-book snapshots taken at an interval, trades,
settlements and market metadata as Parquet files partitioned ``key=value`` by directory.
The layout read here (docs/kalshi-l2-import.md)::

    ROOT/markets/**/*.parquet               ticker [, close_time, title, …]
    ROOT/orderbook_snapshots/**/*.parquet   ts, ticker, side ('yes'|'no'), price, size
    ROOT/trades/**/*.parquet                ts, ticker, yes_price, count, taker_side
    ROOT/settlements/**/*.parquet           ticker, settled_ts, result ('yes'|'no')

Any column may instead be a partition key (``date=2026-11-02/ticker=KX…/part-0.parquet``).
``ts``/``settled_ts``/``close_time`` are TIMESTAMPs or int64 ns since the epoch;
``price``/``yes_price`` dollars (DECIMAL, text, or float on the $0.0001 grid);
``size``/``count`` contracts. A snapshot row is one level of Kalshi's own book: the bids
for YES (``side='yes'``) or for NO at that time, as the REST orderbook gives them.

Each snapshot becomes one ``orderbook_snapshot`` WebSocket message, exactly what the live
feed sends after a subscribe; nothing is interpolated between two snapshots (the book in
between is unknown, and the coverage table says so). Trades become ``trade`` messages,
settlements ``market_lifecycle_v2`` determined + settled, close times
``close_date_updated`` — so replay gates and settles exactly as it does a recording.
Prices are checked on Kalshi's $0.0001 grid; one off-grid value stops the import with
the file, column and value.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import os
import statistics
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from arbkit.analysis.catalogue import IMPORT_SUFFIX, Coverage
from arbkit.storage.capture import kalshi_line

SOURCE = "kalshi-l2-import"
TABLES = ("markets", "orderbook_snapshots", "trades", "settlements")
REQUIRED = {
    "orderbook_snapshots": ("ts", "ticker", "side", "price", "size"),
    "trades": ("ts", "ticker", "yes_price", "count", "taker_side"),
    "settlements": ("ticker", "settled_ts", "result"),
    "markets": ("ticker",),
}
SID = {"orderbook": 1, "trade": 2, "lifecycle": 3}
_PRICE_STEP = Decimal("0.0001")
_SIZE_STEP = Decimal("0.01")
GAP_FACTOR = 2.5  # a snapshot later than this many typical intervals is a hole


class L2ImportError(ValueError):
    """Input the importer cannot turn into exact events; names table, column, value."""


@dataclass(slots=True)
class ImportReport:
    out: str
    root: str
    snapshots: int = 0
    levels: int = 0
    trades: int = 0
    settlements: int = 0
    markets: int = 0
    first_ns: int = 0
    last_ns: int = 0
    tickers: list[str] = field(default_factory=list)
    interval_s: dict[str, float] = field(default_factory=dict)  # typical snapshot cadence
    coverage: list[Coverage] = field(default_factory=list)


def _glob(root: Path, table: str) -> str | None:
    d = root / table
    if not d.is_dir() or not any(d.rglob("*.parquet")):
        return None
    return str(d / "**" / "*.parquet")


def _relation(con: Any, root: Path, table: str) -> tuple[str, dict[str, str]] | None:
    """``read_parquet`` over a table's files (hive keys as columns) and its column types."""
    g = _glob(root, table)
    if g is None:
        return None
    rel = f"read_parquet('{g}', hive_partitioning = true, union_by_name = true)"
    cols = {
        r[0]: str(r[1]).upper() for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()
    }
    missing = [c for c in REQUIRED[table] if c not in cols]
    if missing:
        raise L2ImportError(
            f"{root / table}: column {missing[0]!r} missing (have {', '.join(sorted(cols))}); "
            "see docs/kalshi-l2-import.md for the layout"
        )
    return rel, cols


def _ns(col: str, typ: str) -> str:
    """SQL giving epoch ns for a TIMESTAMP (any unit) or an int64 ns column."""
    if "TIMESTAMP" in typ:
        return f"epoch_ns({col})"
    if typ in ("BIGINT", "HUGEINT", "INTEGER", "UBIGINT"):
        return f"CAST({col} AS BIGINT)"
    raise L2ImportError(
        f"column {col!r} is {typ}: expected a TIMESTAMP or int64 ns since the epoch"
    )


def _text(col: str) -> str:
    """Exact text of a number: DECIMAL and text as they are; a float by its shortest repr
    (then checked on the grid, so a float that is not a clean $0.0001 value is refused)."""
    return f"CAST({col} AS VARCHAR)"


def _decimal(text: Any, step: Decimal, lo: Decimal, hi: Decimal, where: str) -> str:
    try:
        d = Decimal(str(text))
    except InvalidOperation:
        raise L2ImportError(f"{where}: {text!r} is not a number") from None
    if not d.is_finite() or d % step or not (lo <= d <= hi):
        raise L2ImportError(
            f"{where}: {text!r} is not a value on the {step} grid in [{lo}, {hi}]; "
            "fix the source or re-export it with exact decimals"
        )
    return str(d.quantize(step))


def _size(text: Any, where: str) -> str:
    return _decimal(text, _SIZE_STEP, Decimal("0"), Decimal("1e12"), where)


def _snapshots(
    con: Any, rel: str, cols: dict[str, str], root: Path
) -> Iterator[tuple[int, str, list[list[str]], list[list[str]], int]]:
    """One (ts, ticker, yes bids, no bids, levels) per snapshot, in time order."""
    where = f"{root / 'orderbook_snapshots'}"
    cur = con.execute(
        f"SELECT {_ns('ts', cols['ts'])} AS t, CAST(ticker AS VARCHAR), "
        f"lower(CAST(side AS VARCHAR)), {_text('price')}, {_text('size')} FROM {rel} "
        "ORDER BY t, ticker, side, TRY_CAST(price AS DECIMAL(18, 6))"
    )
    key: tuple[int, str] | None = None
    yes: list[list[str]] = []
    no: list[list[str]] = []
    n = 0
    while rows := cur.fetchmany(10_000):
        for t, ticker, side, price, size in rows:
            if key is not None and (t, ticker) != key:
                yield key[0], key[1], yes, no, n
                yes, no, n = [], [], 0
            key = (t, ticker)
            p = _decimal(
                price, _PRICE_STEP, Decimal("0.0001"), Decimal("0.9999"), f"{where}: price"
            )
            s = _size(size, f"{where}: size")
            if side == "yes":
                yes.append([p, s])
            elif side == "no":
                no.append([p, s])
            else:
                raise L2ImportError(
                    f"{where}: side {side!r}: expected 'yes' or 'no' (bids of that side)"
                )
            n += 1
    if key is not None:
        yield key[0], key[1], yes, no, n


def _msg(typ: str, channel: str, seq: int, msg: dict[str, Any]) -> str:
    return orjson.dumps({"type": typ, "sid": SID[channel], "seq": seq, "msg": msg}).decode()


def import_kalshi_l2(root: str | Path, out: str | Path, *, overwrite: bool = False) -> ImportReport:
    """Write ``out`` (a .jsonl.gz capture) and ``out.import.json`` (what it covers)."""
    from arbkit.analysis.duck import connect

    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise L2ImportError(f"{root}: not a directory of Parquet tables ({', '.join(TABLES)})")
    if out.exists() and not overwrite:
        raise L2ImportError(f"{out}: exists; choose another path or delete it")
    if not out.name.endswith(".jsonl.gz"):
        raise L2ImportError(f"{out}: the capture is written gzip-compressed: name it *.jsonl.gz")
    con = connect()
    rels = {t: _relation(con, root, t) for t in TABLES}
    book = rels["orderbook_snapshots"]
    if book is None:
        raise L2ImportError(f"{root / 'orderbook_snapshots'}: no Parquet files; nothing to replay")
    rep = ImportReport(str(out), str(root))
    # (t, order, type, channel, msg) for the non-book channels; seqs are given in time order
    pending: list[tuple[int, int, str, str, dict[str, Any]]] = []

    def lifecycle(t: int, msg: dict[str, Any]) -> None:
        pending.append((t, 2, "market_lifecycle_v2", "lifecycle", msg))

    row = con.execute(f"SELECT min({_ns('ts', book[1]['ts'])}) FROM {book[0]}").fetchone()
    first_t = int(row[0]) if row and row[0] is not None else 0
    if rels["markets"] is not None:
        rel, cols = rels["markets"]
        close = _ns("close_time", cols["close_time"]) if "close_time" in cols else "NULL"
        for ticker, close_ns in con.execute(
            f"SELECT CAST(ticker AS VARCHAR), {close} FROM {rel} ORDER BY 1"
        ).fetchall():
            rep.markets += 1
            if close_ns:
                lifecycle(
                    first_t,
                    {
                        "market_ticker": ticker,
                        "event_type": "close_date_updated",
                        "close_ts": int(close_ns) // 1_000_000_000,
                    },
                )
    if rels["trades"] is not None:
        rel, cols = rels["trades"]
        where = f"{root / 'trades'}"
        for t, ticker, price, count, taker in con.execute(
            f"SELECT {_ns('ts', cols['ts'])} AS t, CAST(ticker AS VARCHAR), {_text('yes_price')}, "
            f"{_text('count')}, lower(CAST(taker_side AS VARCHAR)) FROM {rel} ORDER BY t, ticker"
        ).fetchall():
            p = Decimal(
                _decimal(
                    price, _PRICE_STEP, Decimal("0.0001"), Decimal("0.9999"), f"{where}: yes_price"
                )
            )
            rep.trades += 1
            pending.append((t, 1, "trade", "trade", {
                "market_ticker": ticker,
                "yes_price_dollars": str(p),
                "no_price_dollars": str(Decimal(1) - p),
                "count_fp": _size(count, f"{where}: count"),
                "taker_side": taker,
                "ts": t // 1_000_000_000,
            }))  # fmt: skip
    if rels["settlements"] is not None:
        rel, cols = rels["settlements"]
        for ticker, t, result in con.execute(
            f"SELECT CAST(ticker AS VARCHAR), {_ns('settled_ts', cols['settled_ts'])} AS t, "
            f"lower(CAST(result AS VARCHAR)) FROM {rel} ORDER BY t, 1"
        ).fetchall():
            rep.settlements += 1
            sec = t // 1_000_000_000
            lifecycle(
                t,
                {
                    "market_ticker": ticker,
                    "event_type": "determined",
                    "result": result,
                    "determination_ts": sec,
                },
            )
            lifecycle(
                t,
                {
                    "market_ticker": ticker,
                    "event_type": "settled",
                    "result": result,
                    "settled_ts": sec,
                },
            )
    pending.sort(key=lambda e: (e[0], e[1]))
    seqs = {"trade": 0, "lifecycle": 0}
    events: list[tuple[int, str]] = []
    for t, _, typ, channel, msg in pending:
        seqs[channel] += 1
        events.append((t, _msg(typ, channel, seqs[channel], msg)))
    snap_times: dict[str, list[int]] = {}
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb") as f:
            for channel, name in (
                ("orderbook", "orderbook_delta"),
                ("trade", "trade"),
                ("lifecycle", "market_lifecycle_v2"),
            ):
                f.write(
                    kalshi_line(
                        orjson.dumps(
                            {
                                "type": "subscribed",
                                "id": SID[channel],
                                "msg": {"channel": name, "sid": SID[channel]},
                            }
                        ).decode(),
                        first_t,
                    )
                )
            i = 0
            snaps = _snapshots(con, book[0], book[1], root)
            for seq, (t, ticker, yes, no, levels) in enumerate(snaps, 1):
                while i < len(events) and events[i][0] <= t:
                    f.write(kalshi_line(events[i][1], events[i][0]))
                    i += 1
                f.write(kalshi_line(_msg("orderbook_snapshot", "orderbook", seq, {
                    "market_ticker": ticker, "yes_dollars_fp": yes, "no_dollars_fp": no,
                }), t))  # fmt: skip
                rep.snapshots += 1
                rep.levels += levels
                snap_times.setdefault(ticker, []).append(t)
            for t, raw_msg in events[i:]:
                f.write(kalshi_line(raw_msg, t))
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        con.close()
    all_t = [t for ts in snap_times.values() for t in ts] + [e[0] for e in events]
    rep.first_ns, rep.last_ns = min(all_t), max(all_t)
    rep.tickers = sorted(snap_times)
    for ticker, ts in snap_times.items():
        steps = [b - a for a, b in itertools.pairwise(ts) if b > a]
        typical = int(statistics.median(steps)) if steps else 0
        rep.interval_s[ticker] = typical / 1e9
        rep.coverage.append(Coverage(
            "snapshot_only", "kalshi", ticker, ts[0], ts[-1],
            f"full-depth snapshots about every {typical / 1e9:g} s; no deltas: the book "
            "between two snapshots is unknown",
        ))  # fmt: skip
        for a, b in itertools.pairwise(ts):
            if typical and b - a > GAP_FACTOR * typical:
                rep.coverage.append(Coverage(
                    "missing", "kalshi", ticker, a, b,
                    f"no snapshot for {(b - a) / 1e9:g} s (typical {typical / 1e9:g} s)",
                ))  # fmt: skip
    meta = {"source": SOURCE, **asdict(rep)}
    side = Path(f"{out}{IMPORT_SUFFIX}")
    fd = os.open(side, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh, indent=1)
    return rep
