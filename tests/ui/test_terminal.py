"""Issue 16, the terminal view of ``arbkit demo`` / ``arbkit monitor``, through the real
entry points: a snapshot of a real monitor (local venues over loopback) drawn at 80×24,
the CLI under a real pseudo-terminal (keys p/k/q, Ctrl-C), and the log pane while a venue
is down. A small VT100 screen model below reads back what a user's terminal would show.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import io
import logging
import os
import pty
import re
import select
import struct
import sys
import termios
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from arbkit.config.execution_loader import ExecutionConfig
from arbkit.model import Mode
from arbkit.monitor.arbitrage_monitor import (
    ArbitrageMonitor,
    IbkrEndpoint,
    KalshiEndpoint,
    MonitorSnapshot,
)
from arbkit.sim.local import LocalVenues
from arbkit.ui.terminal import price_text, render, usd, utc_time
from arbkit.ui.terminal_app import run_live_view

REPO = Path(__file__).resolve().parents[2]
HEADER = re.compile(r"^arbkit demo  (paper|monitor)")
# a line as the CLI's logging.basicConfig prints it straight to the terminal
RAW_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (WARNING|ERROR|INFO)")


def _while_live(out: str) -> str:
    """The output written while the view was on (between entering and leaving the
    alternate screen): a line printed before or after the view is not over it."""
    start, end = out.find("\x1b[?1049h"), out.rfind("\x1b[?1049l")
    assert 0 <= start < end, "the view used the alternate screen"
    return out[start:end]


# ------------------------------------------------------------------ VT100 screen ---
class Screen:
    """Just enough of a terminal for what rich writes: cursor moves, erases, autowrap,
    scrolling and the alternate screen (with the cursor saved across it)."""

    _CSI = re.compile(r"\x1b\[([?0-9;]*)([@-~])")
    _OSC = re.compile(r"\x1b\][^\x07\x1b]*(\x07|\x1b\\)")

    def __init__(self, width: int = 80, height: int = 24) -> None:
        self.w, self.h = width, height
        self.main = self._blank()
        self.alt = self._blank()
        self.grid = self.main
        self.x = self.y = 0
        self.alt_on = False
        self.saved = (0, 0)
        self.pending = ""

    def _blank(self) -> list[list[str]]:
        return [[" "] * self.w for _ in range(self.h)]

    def _newline(self) -> None:
        self.y += 1
        if self.y >= self.h:
            self.grid.pop(0)
            self.grid.append([" "] * self.w)
            self.y = self.h - 1

    def feed(self, data: str) -> None:
        data, self.pending = self.pending + data, ""
        i = 0
        while i < len(data):
            ch = data[i]
            if ch == "\x1b":
                m = self._CSI.match(data, i) or self._OSC.match(data, i)
                if m is None and len(data) - i < 16:  # an escape split across reads
                    self.pending = data[i:]
                    return
                if m is not None and m.re is self._CSI:
                    self._csi(m.group(1), m.group(2))
                i = m.end() if m is not None else i + 2
                continue
            if ch == "\r":
                self.x = 0
            elif ch == "\n":
                self._newline()
            elif ch >= " ":
                if self.x >= self.w:
                    self.x = 0
                    self._newline()
                self.grid[self.y][self.x] = ch
                self.x += 1
            i += 1

    def _csi(self, params: str, op: str) -> None:
        if params.startswith("?"):
            if params[1:] == "1049" and op in "hl":
                if op == "h" and not self.alt_on:
                    self.alt, self.saved = self._blank(), (self.x, self.y)
                elif op == "l" and self.alt_on:
                    self.x, self.y = self.saved
                self.alt_on = op == "h"
                self.grid = self.alt if self.alt_on else self.main
            return
        nums = [int(p) if p else 0 for p in params.split(";")] if params else []
        n = nums[0] if nums else 0
        if op in "Hf":
            row = (nums[0] if nums and nums[0] else 1) - 1
            col = (nums[1] if len(nums) > 1 and nums[1] else 1) - 1
            self.y, self.x = min(row, self.h - 1), min(col, self.w - 1)
        elif op == "A":
            self.y = max(0, self.y - max(n, 1))
        elif op == "B":
            self.y = min(self.h - 1, self.y + max(n, 1))
        elif op == "C":
            self.x = min(self.w - 1, self.x + max(n, 1))
        elif op == "D":
            self.x = max(0, self.x - max(n, 1))
        elif op == "G":
            self.x = max(0, min(self.w - 1, max(n, 1) - 1))
        elif op == "K":
            cols = range(self.x, self.w) if n == 0 else range(self.x + 1) if n == 1 else None
            for c in cols if cols is not None else range(self.w):
                self.grid[self.y][c] = " "
        elif op == "J" and n in (2, 3):
            self.grid[:] = self._blank()

    def lines(self, alt: bool | None = None) -> list[str]:
        g = self.grid if alt is None else self.alt if alt else self.main
        return ["".join(r).rstrip() for r in g]


def _section(lines: list[str], start: str) -> list[str]:
    """The lines from the one starting with ``start`` up to the next section header."""
    idx = next((i for i, ln in enumerate(lines) if ln.startswith(start)), None)
    if idx is None:
        return []
    heads = ("Books", "Opportunit", "Execution", "Venue", "Latency", "Log", "p pause", "p resume")
    out = [lines[idx]]
    for ln in lines[idx + 1 :]:
        if ln.startswith(heads):
            break
        out.append(ln)
    return out


# ---------------------------------------------------------- a real monitor, in process ---
@contextlib.asynccontextmanager
async def _running(tmp_path: Path) -> AsyncIterator[tuple[LocalVenues, ArbitrageMonitor]]:
    venues = LocalVenues(
        6, seed=7, updates_per_s=400, dislocation_rate_per_min=40, data_dir=tmp_path / "sim"
    )
    info = await venues.start()
    assert venues.auth is not None
    monitor = ArbitrageMonitor(
        venues.symbol_map,
        replace(ExecutionConfig(), mode=Mode.PAPER),
        kalshi=KalshiEndpoint(info.kalshi_rest_url, info.kalshi_ws_url, venues.auth),
        ibkr=IbkrEndpoint(port=info.tws_port, cache_path=None),
        db_path=None,
        lock_dir=tmp_path / "locks",
    )
    try:
        await monitor.start()
        yield venues, monitor
    finally:
        await monitor.stop()
        await venues.stop()


async def _until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _draw(snap: MonitorSnapshot, width: int, height: int) -> list[str]:
    console = Console(width=width, height=height, record=True, file=io.StringIO())
    console.print(render(snap, title="arbkit demo"))
    return console.export_text().splitlines()


async def test_snapshot_fits_80x24_without_cut_cells(tmp_path: Path) -> None:
    async with _running(tmp_path) as (_, monitor):
        await _until(lambda: len(monitor.snapshot().executions) >= 2, 20, "two executions")
        await _until(
            lambda: all(v.count for v in monitor.snapshot().latency.values()), 10, "latency"
        )
        snap = monitor.snapshot()
    lines = _draw(snap, 80, 24)
    text = "\n".join(lines)
    assert len(lines) == 24 and max(map(len, lines)) <= 80, text
    assert "…" not in text and "..." not in text, text
    # executions: the newest one, with its UTC time from the execution record
    ex = _section(lines, "Execution")
    newest = snap.executions[-1]
    assert ex[0].split()[:3] == ["Execution", "UTC", "state"], text
    assert any(
        ln.startswith(newest.symbol) and utc_time(newest.created_ns) in ln for ln in ex[1:]
    ), text
    assert re.search(r"\b\d\d:\d\d:\d\d\b", ex[1]), text
    # venues and latency (in ms) are there in full
    venues = " ".join(_section(lines, "Venues"))
    assert "kalshi up" in venues and "ibkr up" in venues, text
    latency = " ".join(_section(lines, "Latency"))
    assert "ms p50/p99" in latency, text
    s = snap.latency["tick_to_decision"]
    assert f"{s.p50_us / 1000:.2f}/{s.p99_us / 1000:.2f}" in latency, text
    assert "L2→fill" in latency, text  # the last stage too: nothing cut at the edge
    # prices at the venues' precision: whole cents on both (the local markets tick 1¢)
    books = _section(lines, "Books")
    assert len(books) == 1 + len(snap.books), text
    for ln in books[1:]:
        cells = ln.split()[1:]
        assert cells and all(re.fullmatch(r"\d\.\d\d|—", c) for c in cells), ln
    # skip reasons wrap rather than being cut, and the newest opportunity stays in view
    # when older ones carry long reasons (rows are fitted to the space by measuring them)
    opps = snap.opportunities
    long = "kalshi depth at the limit is gone; ibkr depth at the limit is gone too"
    skipped = [replace(o, decision="skipped", reason=long) for o in opps[:-1]]
    wordy = _draw(replace(snap, opportunities=[*skipped, opps[-1]]), 80, 24)
    assert "…" not in "\n".join(wordy) and len(wordy) == 24
    shown = _section(wordy, "Opportunit")
    assert any(ln.startswith(opps[-1].symbol) and utc_time(opps[-1].ts_ns) in ln for ln in shown), (
        "\n".join(wordy)
    )
    # a wide terminal shows more: sizes, per-contract edge, the execution id
    wide = "\n".join(_draw(snap, 150, 45))
    assert "edge/ct" in wide and newest.execution_id in wide and "…" not in wide
    assert usd(snap.realized_pnl) in wide


def test_prices_at_the_venue_tick() -> None:
    """Cent markets print cents; a sub-penny grid prints its tick; a price that really
    has more digits keeps them."""
    assert price_text(5600) == "0.56"
    assert price_text(5650, 10) == "0.565"
    assert price_text(5600, 10) == "0.560"
    assert price_text(5655) == "0.5655"
    assert usd(1_234_560_000) == "$1,234.56" and usd(-73_333) == "-$0.0733"


# ----------------------------------------------------------------- the CLI in a pty ---
class PtyRun:
    """``python -m arbkit.cli ARGS`` on a real pseudo-terminal of 80×24."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: exec at once
            os.chdir(cwd)
            env = {
                **{k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")},
                "TERM": "xterm",
                "PYTHONPATH": str(REPO),
                "ARBKIT_LOCK_DIR": str(cwd / "locks"),
                **(env or {}),
            }
            os.execve(sys.executable, [sys.executable, "-m", "arbkit.cli", *args], env)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.screen = Screen()
        self.raw = bytearray()
        self.rc: int | None = None
        self.started = time.monotonic()

    def pump(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < end, f"timed out waiting for {what}:\n" + self.text()
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    data = b""
                if not data:
                    assert pred(), f"exited before {what}:\n" + self.text()
                    return
                self.raw += data
                self.screen.feed(data.decode(errors="replace"))

    def shows(self, *needles: str) -> Callable[[], bool]:
        return lambda: all(n in self.text() for n in needles)

    def text(self) -> str:
        return "\n".join(self.screen.lines())

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float) -> int:
        """Read to the end of output, then reap the child (its exit code)."""
        end = time.monotonic() + timeout
        with contextlib.suppress(AssertionError):
            self.pump(lambda: False, timeout, "the end of output")
        while self.rc is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.rc = os.waitstatus_to_exitcode(status)
            elif time.monotonic() > end:
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
                pytest.fail("the command did not exit:\n" + self.text())
            else:
                time.sleep(0.05)
        return self.rc

    def lflag(self) -> int:
        return int(termios.tcgetattr(self.fd)[3])

    def close(self) -> None:
        if self.rc is None:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _demo_args(tmp_path: Path) -> list[str]:
    return [
        "demo",
        "--seconds",
        "30",
        "--db",
        str(tmp_path / "demo.sqlite"),
        "--data-dir",
        str(tmp_path / "data"),
        "--dislocations-per-min",
        "30",
    ]


def test_demo_keys_pause_kill_quit_in_a_pty(tmp_path: Path) -> None:
    run = PtyRun(_demo_args(tmp_path), tmp_path)
    try:
        run.pump(run.shows("Books", "Latency", "p pause"), 30, "the live view")
        assert not run.lflag() & termios.ICANON, "keys are read one by one (cbreak)"
        run.send(b"p")
        run.pump(run.shows("PAUSED", "p resume"), 5, "PAUSED after p")
        run.send(b"k")
        run.pump(run.shows("KILL SWITCH ON"), 5, "the kill switch after k")
        # the executor's log line about the halt lands in the log pane, not over the view
        run.pump(run.shows("halted (user)"), 5, "the halt in the log pane")
        live = run.screen.lines()
        log_pane = " ".join(_section(live, "Log"))
        assert "halted (user)" in log_pane, "\n".join(live)
        assert sum(bool(HEADER.match(ln)) for ln in live) == 1, "\n".join(live)
        assert "…" not in "\n".join(live)
        run.send(b"q")
        rc = run.wait(20)
        elapsed = time.monotonic() - run.started
        out = run.raw.decode(errors="replace")
        assert rc == 0, out
        assert elapsed < 25, f"q quits before the 30 s are up ({elapsed:.1f} s)"
        assert "Summary" in run.text() and "kill switch ON" in run.text()
        assert "Traceback" not in out
        assert not RAW_LOG_LINE.search(_while_live(out)), "a log line printed over the view"
        # the live view was on the alternate screen: the terminal keeps none of its frames
        assert not any(HEADER.match(ln) for ln in run.screen.lines(alt=False))
        assert run.lflag() & termios.ICANON and run.lflag() & termios.ECHO, "tty restored"
    finally:
        run.close()


def test_ctrl_c_while_trading_exits_cleanly(tmp_path: Path) -> None:
    run = PtyRun([*_demo_args(tmp_path), "--resolve-after", "1"], tmp_path)
    try:
        # the demo's market events show in the log pane
        def in_pane() -> bool:
            return "trading closed" in " ".join(_section(run.screen.lines(), "Log"))

        run.pump(in_pane, 30, "the market closing, in the log pane")
        # wait for trades, then Ctrl-C as the user types it (the pty sends SIGINT)
        run.pump(lambda: re.search(r"exec [1-9]", run.text()) is not None, 30, "a trade")
        run.send(b"\x03")
        rc = run.wait(20)
        out = run.raw.decode(errors="replace")
        assert rc in (0, 130), out
        assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
        assert "Summary" in run.text(), run.text()
        assert run.lflag() & termios.ICANON and run.lflag() & termios.ECHO, "tty restored"
    finally:
        run.close()


def _monitor_args(venues: LocalVenues, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    """``arbkit monitor`` pointed at the local venues (as ``arbkit sim`` prints it)."""
    info = venues.info
    assert info is not None
    args = [
        "monitor",
        "--symbols",
        str(info.symbols_file),
        "--execution",
        str(REPO / "arbkit" / "examples" / "execution.toml"),
        "--kalshi-env",
        "custom",
        "--kalshi-rest",
        info.kalshi_rest_url,
        "--kalshi-ws",
        info.kalshi_ws_url,
        "--ibkr-host",
        info.tws_host,
        "--ibkr-port",
        str(info.tws_port),
        "--db",
        str(tmp_path / "monitor.sqlite"),
    ]
    env = {
        "KALSHI_API_KEY_ID": info.kalshi_key_id,
        "KALSHI_PRIVATE_KEY_PATH": str(info.kalshi_key_file),
    }
    return args, env


async def test_monitor_command_live_view_and_quit(tmp_path: Path) -> None:
    """``arbkit monitor`` against local venues: the same view, ``q`` quits, and the last
    status stays on the terminal once the view is gone."""
    async with LocalVenues(3, seed=5, updates_per_s=200, data_dir=tmp_path / "sim") as venues:
        args, env = _monitor_args(venues, tmp_path)
        run = PtyRun(args, tmp_path, env)
        try:
            shows = run.shows("arbkit monitor  monitor", "kalshi up", "ibkr up", "q quit")
            await asyncio.to_thread(run.pump, shows, 30, "the monitor's view")
            run.send(b"q")
            rc = await asyncio.to_thread(run.wait, 20)
            assert rc == 0, run.raw.decode(errors="replace")
            assert "arbkit monitor stopped" in run.text(), run.text()
            assert run.lflag() & termios.ICANON and run.lflag() & termios.ECHO, "tty restored"
        finally:
            run.close()


async def test_ctrl_c_during_a_live_execution(tmp_path: Path) -> None:
    """Ctrl-C while leg 1 of a live execution is at the (local) Kalshi exchange, its
    response held back: the monitor stops cleanly, no traceback, the terminal restored."""
    async with LocalVenues(
        3, seed=5, updates_per_s=300, dislocation_rate_per_min=60, data_dir=tmp_path / "sim"
    ) as venues:
        assert venues.exchange is not None
        args, env = _monitor_args(venues, tmp_path)
        run = PtyRun([*args, "--mode", "live", "--confirm-live"], tmp_path, env)
        try:
            await asyncio.to_thread(run.pump, run.shows("ibkr up", "q quit"), 30, "the view")
            venues.exchange.delay_next_order(3_000)
            # the exchange clears the switch when the order arrives: leg 1 is in flight
            await _until(lambda: venues.exchange.faults.delay_next_order_ms == 0, 30, "an order")
            run.send(b"\x03")
            rc = await asyncio.to_thread(run.wait, 30)
            out = run.raw.decode(errors="replace")
            assert rc in (0, 130), out
            assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
            assert "arbkit monitor stopped" in run.text(), run.text()
            assert run.lflag() & termios.ICANON and run.lflag() & termios.ECHO, "tty restored"
        finally:
            run.close()


# --------------------------------------------------------- a venue down, log pane ---
class _Terminal:
    """A real pty for an in-process console, its output read into a Screen."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.file = os.fdopen(slave, "w", encoding="utf-8")
        self.screen = Screen()
        self.raw = bytearray()
        self.lock = threading.Lock()
        self._done = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done:
            r, _, _ = select.select([self.master], [], [], 0.05)
            if r:
                data = os.read(self.master, 65536)
                with self.lock:
                    self.raw += data
                    self.screen.feed(data.decode(errors="replace"))

    def lines(self) -> list[str]:
        with self.lock:
            return self.screen.lines()

    def close(self) -> None:
        self._done = True
        self._thread.join()
        self.file.close()
        os.close(self.master)


async def test_log_pane_while_a_venue_is_down(tmp_path: Path) -> None:
    term = _Terminal()
    # as `arbkit` sets logging up: a handler printing to the terminal the view draws on
    printer = logging.StreamHandler(term.file)
    printer.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(printer)
    old_level = root.level
    root.setLevel(logging.WARNING)
    try:
        async with _running(tmp_path) as (venues, monitor):
            console = Console(file=term.file, force_terminal=True, width=80, height=24)
            stop = asyncio.Event()
            task = asyncio.create_task(
                run_live_view(monitor, console, seconds=None, stop=stop, title="arbkit demo")
            )
            await _until(lambda: any("ibkr up" in ln for ln in term.lines()), 20, "the view")
            assert venues.tws is not None
            await venues.tws.stop()  # the local TWS goes away: reconnects fail, logged
            await _until(lambda: any("DOWN" in ln for ln in term.lines()), 20, "ibkr DOWN")
            await _until(
                lambda: "reconnect failed" in " ".join(_section(term.lines(), "Log")),
                20,
                "the reconnect warning in the log pane",
            )
            live = term.lines()
            stop.set()
            assert await task == "stop"
        with term.lock:
            out = term.raw.decode(errors="replace")
        screen = "\n".join(live)
        assert sum(bool(HEADER.match(ln)) for ln in live) == 1, screen
        assert "ibkr DOWN" in " ".join(_section(live, "Venues")), screen
        assert not RAW_LOG_LINE.search(_while_live(out)), "a log line printed over the view"
        assert printer in root.handlers, "the terminal's handler is back after the view"
        logging.getLogger("arbkit.test").warning("after the view")
        printer.flush()
        await _until(lambda: "after the view" in term.raw.decode(errors="replace"), 5, "log")
    finally:
        root.removeHandler(printer)
        root.setLevel(old_level)
        term.close()
