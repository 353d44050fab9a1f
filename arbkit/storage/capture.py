"""Capture files: record live market data, replay it later (JSON Lines, optional gzip).

The contract (DESIGN.md), one event per line::

    {"t": <receive time, ns since epoch>, "venue": "kalshi", "raw": "<ws message text>"}
    {"t": ..., "venue": "ibkr", "conId": 123, "bid": 0.57, "bidSize": 10.0,
     "ask": 0.59, "askSize": 5.0}

``raw`` is the WebSocket message text exactly as received, stored as a JSON *string*, so
replay feeds the normalizer the same characters (unicode, whitespace and all). IBKR
values are what ib_async reported; an absent side (NaN/inf in ib_async) is ``null``.
A ``.gz`` path is gzip-compressed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import math
import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

import orjson

log = logging.getLogger(__name__)

KALSHI = "kalshi"
IBKR = "ibkr"
IBKR_FIELDS = ("bid", "bidSize", "ask", "askSize")
_GZIP_MAGIC = b"\x1f\x8b"


class CaptureError(ValueError):
    """A malformed capture line: names the file, the 1-based line and the field."""

    def __init__(self, path: str | Path, line: int, field: str | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.problem = problem
        where = f"{self.path}:{line}"
        super().__init__(f"{where}: field {field!r}: {problem}" if field else f"{where}: {problem}")


@dataclass(slots=True)
class CaptureEvent:
    """One captured event. Kalshi: ``raw`` set; IBKR: ``con_id`` and the four quotes."""

    t: int  # receive time, ns since the epoch
    venue: str  # "kalshi" | "ibkr"
    raw: str | None = None
    con_id: int | None = None
    bid: float | None = None
    bid_size: float | None = None
    ask: float | None = None
    ask_size: float | None = None


# ------------------------------------------------------------------ reading -------


def _number(obj: dict[str, Any], key: str) -> float | None:
    """An IBKR quote field: JSON number or null (missing key is an error)."""
    v = obj[key]  # KeyError handled by the caller
    if v is None or (isinstance(v, int | float) and not isinstance(v, bool)):
        return v
    raise TypeError(f"expected a number or null, got {type(v).__name__} {v!r}")


def _parse_line(line: bytes, path: str | Path, line_no: int) -> CaptureEvent:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise CaptureError(path, line_no, None, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise CaptureError(path, line_no, None, f"expected a JSON object, got {type(obj).__name__}")
    t = obj.get("t")
    if type(t) is not int or t < 0:
        raise CaptureError(path, line_no, "t", f"expected receive time in ns (int >= 0), got {t!r}")
    venue = obj.get("venue")
    if venue == KALSHI:
        raw = obj.get("raw")
        if type(raw) is not str:
            raise CaptureError(
                path,
                line_no,
                "raw",
                f"expected the message text as a JSON string, got {type(raw).__name__}",
            )
        return CaptureEvent(t, KALSHI, raw=raw)
    if venue == IBKR:
        con_id = obj.get("conId")
        if type(con_id) is not int:
            raise CaptureError(path, line_no, "conId", f"expected an integer, got {con_id!r}")
        values: list[float | None] = []
        for key in IBKR_FIELDS:
            try:
                values.append(_number(obj, key))
            except KeyError:
                raise CaptureError(path, line_no, key, "missing (use null for no quote)") from None
            except TypeError as exc:
                raise CaptureError(path, line_no, key, str(exc)) from None
        return CaptureEvent(t, IBKR, None, con_id, *values)
    raise CaptureError(path, line_no, "venue", f"expected 'kalshi' or 'ibkr', got {venue!r}")


def _open_read(path: Path) -> IO[bytes]:
    f = path.open("rb")
    if f.peek(2)[:2] != _GZIP_MAGIC:  # sniff, do not trust the suffix
        return f
    f.close()
    return gzip.open(path, "rb")  # type: ignore[return-value]


class CaptureReader:
    """Iterates the events of one capture file; ``on_error="skip"`` counts bad lines.

    After iteration ``lines`` is the number of non-blank lines read, ``skipped`` how many
    were malformed and ``errors`` the first few of those errors (for a report).
    """

    MAX_ERRORS_KEPT = 20

    def __init__(self, path: str | Path, on_error: Literal["raise", "skip"] = "raise") -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error={on_error!r}: expected 'raise' or 'skip'")
        self.path = Path(path)
        self.on_error = on_error
        self.lines = 0
        self.skipped = 0
        self.errors: list[CaptureError] = []

    def _error(self, err: CaptureError) -> None:
        if self.on_error == "raise":
            raise err
        self.skipped += 1
        if len(self.errors) < self.MAX_ERRORS_KEPT:
            self.errors.append(err)

    def __iter__(self) -> Iterator[CaptureEvent]:
        self.lines = self.skipped = 0
        self.errors = []
        line_no = 0
        with _open_read(self.path) as f:
            try:
                for line_no, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    self.lines += 1
                    try:
                        yield _parse_line(line, self.path, line_no)
                    except CaptureError as err:
                        self._error(err)
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                # a recorder killed mid-write leaves a gzip stream without its trailer
                self._error(
                    CaptureError(self.path, line_no + 1, None, f"truncated or corrupt gzip ({exc})")
                )


def read_capture(path: str | Path, on_error: Literal["raise", "skip"] = "raise") -> CaptureReader:
    """Stream a capture file's events (``CaptureError`` names file, line and field)."""
    return CaptureReader(path, on_error)


def load_capture(
    path: str | Path, on_error: Literal["raise", "skip"] = "raise"
) -> list[CaptureEvent]:
    """Parse a whole capture once, for replays that run over the same events many times."""
    return list(CaptureReader(path, on_error))


# ------------------------------------------------------------------ writing -------


def _quote(v: Any) -> Any:
    """ib_async float → JSON: NaN/inf (no quote) become null; Decimal sizes keep value."""
    if v is None:
        return None
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Decimal):
        if not v.is_finite():
            return None
        return int(v) if v == v.to_integral_value() else float(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise TypeError(f"expected a number, got {type(v).__name__} {v!r}")


def _check_t(recv_ts_ns: int) -> None:
    if type(recv_ts_ns) is not int or recv_ts_ns < 0:
        raise TypeError(f"receive time must be int ns >= 0, got {recv_ts_ns!r}")


SYMBOLS_SUFFIX = ".symbols.toml"


def symbol_map_path(capture: str | Path) -> Path:
    """The sidecar next to a capture holding the symbol map it was recorded with
    (``c.jsonl.gz`` → ``c.jsonl.gz.symbols.toml``). A sidecar, not a header line: the
    capture stays one event per line, as DESIGN.md's contract says."""
    return Path(f"{capture}{SYMBOLS_SUFFIX}")


def write_symbol_map(capture: str | Path, text: str, *, append: bool = False) -> Path:
    """Write the sidecar (0600, like the capture). Appending to a capture recorded with
    another map is refused: one capture, one map."""
    path = symbol_map_path(capture)
    if append and path.exists():
        if path.read_text(encoding="utf-8") != text:
            raise ValueError(
                f"{path}: the capture was recorded with another symbol map; record to a "
                "new file instead of appending"
            )
        return path
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def kalshi_line(raw: str, recv_ts_ns: int) -> bytes:
    """One capture line (with newline) for a Kalshi WebSocket message."""
    _check_t(recv_ts_ns)
    return orjson.dumps({"t": recv_ts_ns, "venue": KALSHI, "raw": raw}) + b"\n"


def ibkr_line(event: Mapping[str, Any], recv_ts_ns: int) -> bytes:
    """One capture line (with newline) for an IBKR quote update."""
    _check_t(recv_ts_ns)
    con_id = event["conId"]
    if type(con_id) is not int:
        raise TypeError(f"conId must be an int, got {con_id!r}")
    out: dict[str, Any] = {"t": recv_ts_ns, "venue": IBKR, "conId": con_id}
    for key in IBKR_FIELDS:
        out[key] = _quote(event.get(key))
    return orjson.dumps(out) + b"\n"


@dataclass(slots=True)
class CaptureStats:
    recorded: int = 0  # accepted into the queue
    written: int = 0  # lines written to the file
    dropped: int = 0  # queue full or writer closed (logged)
    errors: int = 0  # events that could not be serialised (logged)
    bytes_written: int = 0  # before compression


class CaptureWriter:
    """Records events without blocking the caller: a bounded queue + one writer thread.

    ``record_*`` only append to a deque (thread-safe, no await, no IO); the thread
    serialises and writes batches every ``flush_interval_ms`` and flushes the file so a
    crash loses at most the last interval. ``if_exists``: ``"error"`` (default: never
    clobber a capture), ``"append"`` or ``"overwrite"``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_queue: int = 1_000_000,
        flush_interval_ms: int = 200,
        if_exists: Literal["error", "append", "overwrite"] = "error",
        symbol_map_text: str | None = None,
    ) -> None:
        modes = {"error": "xb", "append": "ab", "overwrite": "wb"}
        if if_exists not in modes:
            raise ValueError(f"if_exists={if_exists!r}: expected one of {sorted(modes)}")
        self.path = Path(path)
        self.symbol_map_text = symbol_map_text
        self._mode = modes[if_exists]
        self._max_queue = max_queue
        self._interval_s = flush_interval_ms / 1000
        self._q: deque[tuple[int, Any, int]] = deque()
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._file: IO[bytes] | None = None
        self._raw: IO[bytes] | None = None
        self._last_warn = -math.inf
        self.stats = CaptureStats()
        self.error: BaseException | None = None  # what stopped the writer thread, if anything

    @property
    def gzip(self) -> bool:
        return self.path.suffix == ".gz"

    def start(self) -> None:
        """Open the file (raises now if it exists and ``if_exists="error"``) and start."""
        if self._thread is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Captures hold account activity (own fills, orders): owner-only, like the key.
        flags = {
            "xb": os.O_CREAT | os.O_EXCL | os.O_WRONLY,
            "ab": os.O_CREAT | os.O_APPEND | os.O_WRONLY,
            "wb": os.O_CREAT | os.O_TRUNC | os.O_WRONLY,
        }[self._mode]
        fd = os.open(self.path, flags, 0o600)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # an appended file written 0644 before tightens too
        if self.symbol_map_text is not None:
            try:
                write_symbol_map(self.path, self.symbol_map_text, append=self._mode == "ab")
            except BaseException:
                os.close(fd)
                raise
        raw = os.fdopen(fd, self._mode.replace("x", "w"))
        self._file = gzip.GzipFile(fileobj=raw, mode="wb") if self.gzip else raw  # type: ignore[assignment]
        self._raw = raw
        self._thread = threading.Thread(target=self._run, name="arbkit-capture", daemon=True)
        self._thread.start()

    # -- hot path

    def record_kalshi(self, raw: str, recv_ts_ns: int) -> bool:
        """Queue one Kalshi WebSocket message (text exactly as received)."""
        return self._put(0, raw, recv_ts_ns)

    def record_ibkr(self, event: Mapping[str, Any], recv_ts_ns: int) -> bool:
        """Queue one IBKR quote update: keys conId, bid, bidSize, ask, askSize."""
        snapshot = (
            event.get("conId"),
            event.get("bid"),
            event.get("bidSize"),
            event.get("ask"),
            event.get("askSize"),
        )
        return self._put(1, snapshot, recv_ts_ns)

    def _put(self, kind: int, payload: Any, recv_ts_ns: int) -> bool:
        if self._closing or len(self._q) >= self._max_queue:
            self.stats.dropped += 1
            now = time.monotonic()
            if now - self._last_warn >= 1.0:
                self._last_warn = now
                log.warning(
                    "capture %s: event dropped (%s; %d dropped so far)",
                    self.path,
                    "writer closed" if self._closing else "queue full",
                    self.stats.dropped,
                )
            return False
        self._q.append((kind, payload, recv_ts_ns))
        self.stats.recorded += 1
        return True

    # -- shutdown

    async def close(self) -> None:
        """Stop accepting events, write everything queued, close the file."""
        await asyncio.to_thread(self.close_sync)

    def close_sync(self) -> None:
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        elif self._file is None and self._q:
            log.warning(
                "capture %s: closed before start; %d events not written", self.path, len(self._q)
            )
            self.stats.dropped += len(self._q)
            self._q.clear()

    async def __aenter__(self) -> CaptureWriter:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writer thread

    def _serialise(self, kind: int, payload: Any, t: int) -> bytes | None:
        try:
            if kind == 0:
                if type(payload) is not str:
                    raise TypeError(f"raw must be str, got {type(payload).__name__}")
                return kalshi_line(payload, t)
            con_id, bid, bid_size, ask, ask_size = payload
            event = {
                "conId": con_id,
                "bid": bid,
                "bidSize": bid_size,
                "ask": ask,
                "askSize": ask_size,
            }
            return ibkr_line(event, t)
        except (TypeError, KeyError, orjson.JSONEncodeError) as exc:
            self.stats.errors += 1
            log.error("capture %s: event not recorded (%s)", self.path, exc)
            return None

    def _write_batch(self, f: IO[bytes]) -> None:
        q = self._q
        chunks: list[bytes] = []
        while q:
            line = self._serialise(*q.popleft())
            if line is not None:
                chunks.append(line)
        if chunks:
            data = b"".join(chunks)
            f.write(data)
            f.flush()
            self.stats.written += len(chunks)
            self.stats.bytes_written += len(data)

    def _run(self) -> None:
        f = self._file
        assert f is not None
        try:
            while not self._closing:
                self._wake.wait(self._interval_s)
                self._wake.clear()
                self._write_batch(f)
            self._write_batch(f)
        except BaseException as exc:  # disk full etc.: reported, queue drops from now on
            self.error = exc
            self._closing = True
            log.exception("capture %s: writer failed; recording stopped", self.path)
        finally:
            try:
                f.close()
                if self._raw is not None and f is not self._raw:
                    self._raw.close()
            finally:
                self._file = None


__all__ = [
    "CaptureError",
    "CaptureEvent",
    "CaptureReader",
    "CaptureStats",
    "CaptureWriter",
    "ibkr_line",
    "kalshi_line",
    "load_capture",
    "read_capture",
]
