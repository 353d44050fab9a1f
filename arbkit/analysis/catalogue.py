"""The capture catalogue: every capture under one directory with its symbol map, venues,
time span, event counts and a coverage table, queryable with DuckDB.

A trader with weeks of captures asks "which files hold FED-DEC between the 3rd and the
10th, and where are they thin?" — the catalogue answers from an index (Parquet tables in
``DIR/.catalogue/``) instead of re-reading every file, and replay and sweep take a
selection from it and run across the captures in time order.

Coverage rows (``kind``):

* ``missing`` — a venue sent nothing for longer than ``gap_s`` (seconds) inside the span;
* ``seq_gap`` — a Kalshi sequence number skipped (a point: start = end);
* ``degraded`` — from a seq gap until the next snapshot on that subscription: the book
  was not known in between (replay invalidates it as the live monitor does);
* ``reconnect`` — a second ``subscribed`` for a channel (a point);
* ``snapshot_only`` — imported history with full-depth snapshots at an interval and no
  deltas: the book between two snapshots is unknown, and is never invented.

The scan of each file is cached by (path, size, mtime) so re-indexing is cheap.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from arbkit.config.loader import SymbolMap, SymbolSpec, load_symbol_map
from arbkit.storage.capture import IBKR, KALSHI, read_capture, symbol_map_path

DEFAULT_DIR = Path("data/captures")
INDEX_DIR = ".catalogue"
IMPORT_SUFFIX = ".import.json"  # written by the Kalshi L2 importer next to its capture
CAPTURE_SUFFIXES = (".jsonl", ".jsonl.gz")
DEFAULT_GAP_S = 10
_SCAN_VERSION = 1


class CatalogueError(ValueError):
    """A selection that cannot be replayed as asked; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Coverage:
    kind: str  # missing | seq_gap | degraded | reconnect | snapshot_only
    venue: str
    key: str  # the sid, ticker or conId concerned ('' = the whole venue)
    start_ns: int
    end_ns: int
    detail: str = ""


@dataclass(slots=True)
class CaptureInfo:
    """What one capture file holds (the index row)."""

    path: str
    size: int
    mtime_ns: int
    symbols_file: str  # '' when no map was recorded with it (imported history)
    source: str  # "arbkit" (recorded by a monitor) | "kalshi-l2-import"
    first_ns: int = 0
    last_ns: int = 0
    events: int = 0
    kalshi_events: int = 0
    ibkr_events: int = 0
    damaged_lines: int = 0
    tickers: list[str] = field(default_factory=list)
    con_ids: list[int] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)  # symbols of its map with events
    coverage: list[Coverage] = field(default_factory=list)

    @property
    def venues(self) -> list[str]:
        return [v for v, n in ((KALSHI, self.kalshi_events), (IBKR, self.ibkr_events)) if n]

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["venues"] = self.venues
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CaptureInfo:
        d = dict(d)
        d.pop("venues", None)
        d["coverage"] = [Coverage(**c) for c in d.get("coverage", [])]
        return cls(**d)


def is_capture(path: Path) -> bool:
    return path.is_file() and path.name.endswith(CAPTURE_SUFFIXES)


# ------------------------------------------------------------------ scanning ----


class _Scan:
    """One pass over a capture's events, building its index row."""

    def __init__(self, info: CaptureInfo, symbol_map: SymbolMap | None, gap_s: int) -> None:
        self.info = info
        self.gap_ns = gap_s * 1_000_000_000
        self.by_ticker = (
            {s.kalshi_ticker: n for n, s in symbol_map.symbols.items()} if symbol_map else {}
        )
        self.by_con_id: dict[int, str] = {}
        for n, s in symbol_map.symbols.items() if symbol_map else ():
            for c in (s.forecastex.yes_con_id, s.forecastex.no_con_id):
                if c is not None:
                    self.by_con_id[c] = n
        self.last_t: dict[str, int] = {}
        self.seq: dict[int, int] = {}
        self.degraded_since: dict[int, int] = {}
        self.subscribed: set[str] = set()
        self.tickers: set[str] = set()
        self.con_ids: set[int] = set()
        self.symbols: set[str] = set()

    def venue_event(self, venue: str, t: int) -> None:
        info = self.info
        info.events += 1
        if venue == KALSHI:
            info.kalshi_events += 1
        else:
            info.ibkr_events += 1
        info.first_ns = t if not info.first_ns else min(info.first_ns, t)
        info.last_ns = max(info.last_ns, t)
        last = self.last_t.get(venue)
        if last is not None and t - last > self.gap_ns:
            info.coverage.append(
                Coverage(
                    "missing",
                    venue,
                    "",
                    last,
                    t,
                    f"no {venue} message for {(t - last) / 1e9:.1f} s",
                )
            )
        self.last_t[venue] = t

    def kalshi(self, raw: str, t: int) -> None:
        self.venue_event(KALSHI, t)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return  # a bad frame: replay counts it; the catalogue only indexes
        if type(obj) is not dict:
            return
        typ, msg = obj.get("type"), obj.get("msg")
        msg = msg if type(msg) is dict else {}
        sid, seq = obj.get("sid"), obj.get("seq")
        if typ == "subscribed":
            channel = str(msg.get("channel", ""))
            if channel in self.subscribed:
                self.info.coverage.append(Coverage("reconnect", KALSHI, channel, t, t))
            self.subscribed.add(channel)
            return
        ticker = msg.get("market_ticker")
        if type(ticker) is str and typ in ("orderbook_snapshot", "orderbook_delta"):
            self.tickers.add(ticker)
            if ticker in self.by_ticker:
                self.symbols.add(self.by_ticker[ticker])
        if (
            type(sid) is int
            and type(seq) is int
            and typ in ("orderbook_snapshot", "orderbook_delta")
        ):
            last = self.seq.get(sid)
            if last is not None and seq != last + 1:
                self.info.coverage.append(
                    Coverage("seq_gap", KALSHI, str(sid), t, t, f"seq {last} → {seq}")
                )
                self.degraded_since.setdefault(sid, t)
            self.seq[sid] = seq
            if typ == "orderbook_snapshot" and sid in self.degraded_since:
                since = self.degraded_since.pop(sid)
                self.info.coverage.append(
                    Coverage("degraded", KALSHI, str(sid), since, t, "books unknown until resync")
                )

    def ibkr(self, con_id: int, t: int) -> None:
        self.venue_event(IBKR, t)
        self.con_ids.add(con_id)
        if con_id in self.by_con_id:
            self.symbols.add(self.by_con_id[con_id])

    def finish(self, damaged: int) -> CaptureInfo:
        info = self.info
        for sid, since in self.degraded_since.items():
            info.coverage.append(
                Coverage(
                    "degraded", KALSHI, str(sid), since, info.last_ns, "no resync before the end"
                )
            )
        info.damaged_lines = damaged
        info.tickers = sorted(self.tickers)
        info.con_ids = sorted(self.con_ids)
        info.symbols = sorted(self.symbols)
        info.coverage.sort(key=lambda c: (c.start_ns, c.kind, c.venue, c.key))
        return info


def scan_capture(path: str | Path, *, gap_s: int = DEFAULT_GAP_S) -> CaptureInfo:
    """Read one capture (up to any damage) and build its index row."""
    p = Path(path)
    st = p.stat()
    sidecar = symbol_map_path(p)
    symbol_map = load_symbol_map(sidecar) if sidecar.exists() else None
    imported = Path(f"{p}{IMPORT_SUFFIX}")
    meta: dict[str, Any] = json.loads(imported.read_text()) if imported.exists() else {}
    info = CaptureInfo(
        str(p),
        st.st_size,
        st.st_mtime_ns,
        str(sidecar) if symbol_map is not None else "",
        str(meta.get("source", "arbkit")),
    )
    scan = _Scan(info, symbol_map, gap_s)
    reader = read_capture(p, on_error="skip")
    for ev in reader:
        if ev.venue == KALSHI and ev.raw is not None:
            scan.kalshi(ev.raw, ev.t)
        elif ev.con_id is not None:
            scan.ibkr(ev.con_id, ev.t)
    info = scan.finish(reader.skipped)
    # the importer knows what the file cannot show: snapshot cadence, per-ticker holes
    info.coverage += [Coverage(**c) for c in meta.get("coverage", [])]
    info.coverage.sort(key=lambda c: (c.start_ns, c.kind, c.venue, c.key))
    return info


# ------------------------------------------------------------------ the catalogue ---


class Catalogue:
    """The captures under ``root`` (recursively), indexed into ``root/.catalogue``."""

    TABLES = ("captures", "capture_symbols", "coverage")

    def __init__(self, root: str | Path = DEFAULT_DIR, *, gap_s: int = DEFAULT_GAP_S) -> None:
        self.root = Path(root)
        self.gap_s = gap_s
        if not self.root.is_dir():
            raise CatalogueError(
                f"{self.root}: no such directory; record captures there "
                f"(arbkit demo --record {self.root}/NAME.jsonl.gz) or import some"
            )
        self.index_dir = self.root / INDEX_DIR
        self.entries: list[CaptureInfo] = []

    def files(self) -> list[Path]:
        return sorted(p for p in self.root.rglob("*") if is_capture(p) and INDEX_DIR not in p.parts)

    def index(self) -> list[CaptureInfo]:
        """Scan new or changed files (the rest from the cache) and write the tables."""
        self.index_dir.mkdir(exist_ok=True)
        cache_path = self.index_dir / "scan-cache.json"
        cache: dict[str, Any] = {}
        if cache_path.exists():
            try:
                cache = json.loads(cache_path.read_text())
            except ValueError:
                cache = {}
        if cache.get("version") != _SCAN_VERSION or cache.get("gap_s") != self.gap_s:
            cache = {}
        rows: dict[str, Any] = cache.get("rows", {})
        entries = []
        for p in self.files():
            st = p.stat()
            key = str(p)
            extra = [symbol_map_path(p), Path(f"{p}{IMPORT_SUFFIX}")]
            stamp = [st.st_size, st.st_mtime_ns] + [
                e.stat().st_mtime_ns if e.exists() else 0 for e in extra
            ]
            hit = rows.get(key)
            if hit is not None and hit.get("stamp") == stamp:
                entries.append(CaptureInfo.from_json(hit["info"]))
                continue
            info = scan_capture(p, gap_s=self.gap_s)
            rows[key] = {"stamp": stamp, "info": info.to_json()}
            entries.append(info)
        live = {str(e.path) for e in entries}
        rows = {k: v for k, v in rows.items() if k in live}
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": _SCAN_VERSION, "gap_s": self.gap_s, "rows": rows}))
        os.replace(tmp, cache_path)
        entries.sort(key=lambda e: (e.first_ns, e.path))
        self.entries = entries
        self._write_tables()
        return entries

    def _write_tables(self) -> None:
        import duckdb

        from arbkit.analysis.duck import connect

        con = connect()
        try:
            con.execute(
                "CREATE TABLE captures (path VARCHAR, source VARCHAR, symbols_file VARCHAR, "
                "venues VARCHAR[], first_ns BIGINT, last_ns BIGINT, first_utc TIMESTAMP, "
                "last_utc TIMESTAMP, events BIGINT, kalshi_events BIGINT, ibkr_events BIGINT, "
                "damaged_lines BIGINT, size_bytes BIGINT, symbols VARCHAR[], tickers VARCHAR[], "
                "con_ids BIGINT[])"
            )
            con.execute(
                "CREATE TABLE capture_symbols (path VARCHAR, symbol VARCHAR, first_ns BIGINT, "
                "last_ns BIGINT)"
            )
            con.execute(
                "CREATE TABLE coverage (path VARCHAR, kind VARCHAR, venue VARCHAR, key VARCHAR, "
                "start_ns BIGINT, end_ns BIGINT, seconds DOUBLE, detail VARCHAR)"
            )
            for e in self.entries:
                con.execute(
                    "INSERT INTO captures VALUES (?, ?, ?, ?, ?, ?, make_timestamp(? // 1000), "
                    "make_timestamp(? // 1000), ?, ?, ?, ?, ?, ?, ?, ?)",
                    [e.path, e.source, e.symbols_file, e.venues, e.first_ns, e.last_ns,
                     e.first_ns, e.last_ns, e.events, e.kalshi_events, e.ibkr_events,
                     e.damaged_lines, e.size, e.symbols, e.tickers, e.con_ids],
                )  # fmt: skip
                for s in e.symbols:
                    con.execute(
                        "INSERT INTO capture_symbols VALUES (?, ?, ?, ?)",
                        [e.path, s, e.first_ns, e.last_ns],
                    )
                for c in e.coverage:
                    con.execute(
                        "INSERT INTO coverage VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [e.path, c.kind, c.venue, c.key, c.start_ns, c.end_ns,
                         (c.end_ns - c.start_ns) / 1e9, c.detail],
                    )  # fmt: skip
            for t in self.TABLES:
                out = self.index_dir / f"{t}.parquet"
                tmp = out.with_suffix(".tmp")
                con.execute(f"COPY {t} TO '{tmp}' (FORMAT PARQUET)")
                os.replace(tmp, out)
        except duckdb.Error as exc:
            raise CatalogueError(f"{self.index_dir}: could not write the index ({exc})") from None
        finally:
            con.close()

    def duck(self) -> Any:
        """A DuckDB connection with the catalogue's tables as views (index first)."""
        from arbkit.analysis.duck import connect

        if not self.entries:
            self.index()
        con = connect()
        for t in self.TABLES:
            con.execute(
                f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{self.index_dir / t}.parquet')"
            )
        return con

    def select(
        self,
        symbols: Sequence[str] = (),
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[CaptureInfo]:
        """Captures overlapping [since, until] that hold any of ``symbols`` (all when
        empty), in time order. Imported captures without a map match by Kalshi ticker
        only when a map is given at replay; here they match when no symbol is asked."""
        if not self.entries:
            self.index()
        out = []
        for e in self.entries:
            if not e.events:
                continue
            if since_ns is not None and e.last_ns < since_ns:
                continue
            if until_ns is not None and e.first_ns > until_ns:
                continue
            if symbols and not (set(symbols) & set(e.symbols)) and e.symbols_file:
                continue
            out.append(e)
        return out


# ------------------------------------------------------------------ replaying a selection ---


def selection_symbol_map(
    entries: Sequence[CaptureInfo], given: SymbolMap | None = None, symbols: Sequence[str] = ()
) -> SymbolMap:
    """One map for a selection: ``given``, else the union of the recorded maps (a symbol
    defined two ways is refused: the numbers would depend on which file came first);
    restricted to ``symbols`` when asked."""
    if given is not None:
        merged: dict[str, SymbolSpec] = dict(given.symbols)
        source = given.source
    else:
        merged = {}
        origin: dict[str, str] = {}
        for e in entries:
            if not e.symbols_file:
                raise CatalogueError(
                    f"{e.path}: no symbol map was recorded with it (imported history); "
                    "pass --symbols with the map pairing its Kalshi markets"
                )
            for name, spec in load_symbol_map(e.symbols_file).symbols.items():
                if name in merged and merged[name] != spec:
                    raise CatalogueError(
                        f"symbol {name} is mapped differently in {origin[name]} and "
                        f"{e.symbols_file}; select captures of one map or pass --symbols"
                    )
                merged.setdefault(name, spec)
                origin.setdefault(name, e.symbols_file)
        source = "catalogue"
    if symbols:
        unknown = sorted(set(symbols) - set(merged))
        if unknown:
            raise CatalogueError(
                f"symbol {unknown[0]} is in none of the selected captures' maps "
                f"(known: {', '.join(sorted(merged)) or 'none'})"
            )
        merged = {n: s for n, s in merged.items() if n in symbols}
    return SymbolMap(merged, source=source)


def _overlaps(entries: Sequence[CaptureInfo]) -> None:
    """Two captures of the same venue and instrument at the same time: which book is
    true? Refused rather than guessed."""
    seen: list[tuple[str, int, int, set[str]]] = []
    for e in entries:
        keys = {f"k:{t}" for t in e.tickers} | {f"i:{c}" for c in e.con_ids}
        for path, a, b, other in seen:
            common = keys & other
            if common and e.first_ns < b and a < e.last_ns:
                what = sorted(common)[0][2:]
                raise CatalogueError(
                    f"{path} and {e.path} overlap in time for the same instrument ({what}); "
                    "select one of them (--since/--until or --symbol)"
                )
        seen.append((e.path, e.first_ns, e.last_ns, keys))


def prepare_selection(
    entries: Sequence[CaptureInfo],
    symbol_map: SymbolMap,
    *,
    since_ns: int | None = None,
    until_ns: int | None = None,
    on_error: str = "skip",
) -> Any:
    """Prepare each capture (its own normalizer session) and merge them into one stream
    in receive-time order, trimmed to [since, until]: a Kalshi history and a ForecastEx
    recording of the same days replay together."""
    from arbkit.analysis.replay import PreparedCapture, prepare_file

    if not entries:
        raise CatalogueError("the selection holds no capture; widen --since/--until or --symbol")
    _overlaps(entries)
    parts = [prepare_file(e.path, symbol_map, on_error=on_error) for e in entries]  # type: ignore[arg-type]

    def inside(t: int) -> bool:
        return (since_ns is None or t >= since_ns) and (until_ns is None or t <= until_ns)

    batches = [
        b for b in heapq.merge(*(p.batches for p in parts), key=lambda b: b[0]) if inside(b[0])
    ]
    lifecycle = [
        ev
        for ev in heapq.merge(*(p.lifecycle for p in parts), key=lambda ev: ev.recv_ts_ns)
        if inside(ev.recv_ts_ns)
    ]
    out = PreparedCapture(batches, lifecycle)
    out.events = sum(p.events for p in parts)
    out.bad_frames = sum(p.bad_frames for p in parts)
    out.damaged_lines = sum(p.damaged_lines for p in parts)
    out.damage = [d for p in parts for d in p.damage][:20]
    out.source = " + ".join(e.path for e in entries)
    return out


def coverage_table(entries: Iterable[CaptureInfo]) -> list[dict[str, Any]]:
    """Rows for a report: one per coverage finding."""
    return [
        {"path": e.path, **asdict(c), "seconds": (c.end_ns - c.start_ns) / 1e9}
        for e in entries
        for c in e.coverage
    ]
