"""The live terminal view's runner: rich ``Live`` on the alternate screen, a log pane,
and single keys (``p`` pause/resume, ``k`` kill switch, ``q`` quit).

While the view runs, log records go to the pane instead of the terminal (a line written
under a live view breaks its redraw: the header used to pile up), Python warnings are
routed through logging, and stdin is in cbreak mode (restored on the way out, also on
Ctrl-C or an error) when it is a TTY. Ctrl-C keeps working: cbreak leaves signals on,
and the caller's SIGINT handler sets ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live

from arbkit.ui.terminal import LogPane, TerminalView, render

if TYPE_CHECKING:
    from arbkit.monitor.arbitrage_monitor import ArbitrageMonitor

log = logging.getLogger(__name__)

REFRESH_S = 0.25


def _to_terminal(handler: logging.Handler) -> bool:
    """A handler that writes to the terminal the view draws on."""
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    stream = getattr(handler, "stream", None)
    if stream in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__):
        return True
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def logs_to_pane(pane: LogPane) -> Iterator[LogPane]:
    """Send log records (and warnings) to ``pane`` instead of the terminal; put every
    handler back afterwards."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    removed: list[tuple[logging.Logger, logging.Handler]] = []
    for lg in loggers:
        for h in list(lg.handlers):
            if _to_terminal(h):
                lg.removeHandler(h)
                removed.append((lg, h))
    root = logging.getLogger()
    # the pane shows what the terminal would have: the level of the handler it replaces
    # (no handler at all: logging's last resort prints warnings and worse)
    levels = [h.level for lg, h in removed if lg is root]
    pane.setLevel(min(levels) if levels else logging.WARNING)
    root.addHandler(pane)
    for lg, _ in removed:  # a non-propagating logger that printed keeps showing, in the pane
        if lg is not root and not lg.propagate:
            lg.addHandler(pane)
    logging.captureWarnings(True)
    try:
        yield pane
    finally:
        logging.captureWarnings(False)
        for lg in loggers:
            if pane in lg.handlers:
                lg.removeHandler(pane)
        for lg, h in removed:
            lg.addHandler(h)


@contextlib.contextmanager
def cbreak_keys(on_key: Callable[[str], None]) -> Iterator[bool]:
    """Read single keys from stdin via the running loop while inside; yields whether keys
    are available (stdin is a TTY). The terminal mode is restored on exit."""
    try:
        fd = sys.stdin.fileno()
        is_tty = os.isatty(fd)
    except (AttributeError, ValueError, OSError):
        is_tty = False
    if not is_tty:
        yield False
        return
    import termios
    import tty

    loop = asyncio.get_running_loop()
    saved = termios.tcgetattr(fd)

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        for ch in data.decode(errors="ignore"):
            on_key(ch)

    try:
        tty.setcbreak(fd, termios.TCSANOW)
        loop.add_reader(fd, readable)
        yield True
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class LiveView:
    """State of one run of the view: the log pane and why it ended."""

    def __init__(self, monitor: ArbitrageMonitor, title: str) -> None:
        self.monitor = monitor
        self.title = title
        self.pane = LogPane()
        self.quit = asyncio.Event()
        self.changed = asyncio.Event()
        self.keys = False
        self.grids = {
            s.symbol: s.kalshi_price_level_structure for s in monitor.symbol_map.symbols.values()
        }

    def note(self, text: str, level: int = logging.INFO) -> None:
        """A line in the log pane (e.g. a market event) without going through logging."""
        self.pane.add(text, level)

    def on_key(self, ch: str) -> None:
        key = ch.lower()
        m = self.monitor
        try:
            if key == "p":
                if m.paused:
                    m.resume()
                    self.note("trading resumed (p)")
                else:
                    m.pause()
                    self.note("trading paused (p)")
            elif key == "k":
                if not m.kill_switch:
                    m.kill("kill switch pressed in the terminal (k)")
                    self.note("kill switch engaged (k)", logging.WARNING)
            elif key == "q":
                self.note("quitting (q)")
                self.quit.set()
            else:
                return
        except Exception as exc:  # the view outlives a refused command; say why
            log.warning("key %r: %s", ch, exc)
        self.changed.set()

    def frame(self) -> TerminalView:
        return render(
            self.monitor.snapshot(),
            title=self.title,
            log=self.pane,
            keys=self.keys,
            grids=self.grids,
        )


async def run_live_view(
    monitor: ArbitrageMonitor,
    console: Console,
    *,
    seconds: float | None,
    stop: asyncio.Event,
    on_tick: Callable[[LiveView], None] | None = None,
    title: str = "arbkit",
) -> str:
    """Draw the monitor until ``seconds`` pass (None: no limit), ``stop`` is set (Ctrl-C)
    or the user presses ``q``. Returns why it ended: ``"time"``, ``"stop"`` or ``"quit"``.
    The monitor keeps running; the caller stops it."""
    view = LiveView(monitor, title)
    deadline = None if seconds is None else time.monotonic() + max(seconds, 0.0)
    reason = "time"
    with (
        logs_to_pane(view.pane),
        cbreak_keys(view.on_key) as keys,
        Live(
            console=console,
            screen=True,
            auto_refresh=False,
            redirect_stdout=True,
            redirect_stderr=True,
        ) as live,
    ):
        view.keys = keys
        period = REFRESH_S
        while True:
            view.changed.clear()
            if on_tick is not None:
                try:
                    on_tick(view)
                except Exception:
                    log.exception("live view tick failed")
            # the snapshot is taken here, on the loop; rich lays it out and draws it in a
            # worker thread, so a big screen never holds up the ticks for a whole frame
            t0 = time.perf_counter()
            await asyncio.to_thread(live.update, view.frame(), refresh=True)
            # and it draws less often when a frame is expensive (≤ about 1/4 of a core)
            period = max(REFRESH_S, 4 * (time.perf_counter() - t0))
            if stop.is_set():
                reason = "stop"
                break
            if view.quit.is_set():
                reason = "quit"
                break
            left = period if deadline is None else min(period, deadline - time.monotonic())
            if left <= 0:
                break
            if view.changed.is_set():  # a key during the frame: draw its effect now
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_first(view.changed, stop), left)
    return reason


async def _first(*events: asyncio.Event) -> None:
    """Wake as soon as any of ``events`` is set (a key press redraws at once)."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
