"""Alerts a trader must not miss, from a monitor snapshot; optionally sent to a webhook.

The rules are pure (snapshot in, alerts out) so they are unit-testable and identical
wherever they run. A *condition* (venue down, stale data, trading halted, an unhedged
leg, a large edge) is active while it holds and is raised once when it starts; an *event*
the monitor recorded (fee drift, a symbol blocked) is raised once when it appears.

The webhook is off unless a URL is given. It posts only the alert's own fields (kind,
severity, symbol, text, time, mode) — never a config, a credential or the URL itself —
from a background task, so a slow or dead endpoint never stalls a dashboard refresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from arbkit.config.execution_loader import usd_text
from arbkit.execution.journal import ExecState
from arbkit.model import Money
from arbkit.monitor.arbitrage_monitor import MonitorSnapshot

log = logging.getLogger(__name__)

CRITICAL, WARNING, INFO = "critical", "warning", "info"
KINDS = ("unhedged", "halted", "venue_down", "stale_data", "fee_drift", "large_edge", "risk")


@dataclass(frozen=True, slots=True)
class AlertRules:
    """Thresholds: ``stale_ms`` without a message from a connected venue is stale data;
    an opportunity whose net edge per contract is at least ``large_edge`` (Money) within
    the last ``large_edge_window_ms`` is a large edge (often a mismatched pair, not luck)."""

    stale_ms: int = 5_000
    large_edge: Money = Money(100_000)  # $0.10 per contract after fees
    large_edge_window_ms: int = 10_000


@dataclass(frozen=True, slots=True)
class Alert:
    key: str  # stable identity: one key is raised once while it stays active
    kind: str
    severity: str
    text: str
    ts_ns: int
    symbol: str = ""

    def payload(self, mode: str) -> dict[str, str]:
        """What a webhook receives: the alert's own fields only."""
        return {
            "source": "arbkit",
            "kind": self.kind,
            "severity": self.severity,
            "symbol": self.symbol,
            "text": self.text,
            "time": _iso(self.ts_ns),
            "mode": mode,
        }


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=UTC).isoformat(timespec="milliseconds")


def conditions(snap: MonitorSnapshot, rules: AlertRules) -> list[Alert]:
    """Every condition that holds in ``snap``, most severe first."""
    t = snap.ts_ns
    out: list[Alert] = []
    unhedged = [e for e in snap.executions if e.state is ExecState.UNHEDGED]
    for e in unhedged:
        out.append(
            Alert(
                f"unhedged:{e.execution_id}",
                "unhedged",
                CRITICAL,
                f"unhedged leg: execution {e.execution_id} ({e.symbol}, {e.combo}) left "
                f"exposure at a venue{': ' + e.error if e.error else ''}",
                t,
                e.symbol,
            )
        )
    n_unhedged = snap.counters.get("executions_unhedged", 0)
    if n_unhedged > len(unhedged):  # older than the snapshot's window of executions
        out.append(
            Alert(
                "unhedged:count",
                "unhedged",
                CRITICAL,
                f"{n_unhedged} unhedged executions this run",
                t,
            )
        )
    if snap.kill_switch or snap.trading_state == "halted":
        out.append(
            Alert(
                "halted",
                "halted",
                CRITICAL,
                f"trading halted: {snap.kill_reason or snap.state_reason or 'no reason given'}",
                t,
            )
        )
    elif snap.trading_state == "reducing":
        out.append(
            Alert(
                "reducing",
                "halted",
                WARNING,
                f"trading reducing (no new executions): {snap.state_reason or 'no reason'}",
                t,
            )
        )
    for v in snap.venues.values():
        if not v.connected:
            out.append(Alert(f"venue_down:{v.venue}", "venue_down", CRITICAL, _down(v.venue), t))
        elif v.last_message_age_ms is not None and v.last_message_age_ms > rules.stale_ms:
            out.append(
                Alert(
                    f"stale_data:{v.venue}",
                    "stale_data",
                    WARNING,
                    f"stale data: no message from {_name(v.venue)} for "
                    f"{v.last_message_age_ms / 1000:.1f} s (limit {rules.stale_ms / 1000:g} s)",
                    t,
                )
            )
    horizon = t - rules.large_edge_window_ms * 1_000_000
    seen: set[str] = set()
    for o in reversed(snap.opportunities):
        key = f"large_edge:{o.symbol}:{o.combo}"
        if o.ts_ns < horizon or key in seen or o.net_edge_per_contract < rules.large_edge:
            continue
        seen.add(key)
        out.append(
            Alert(
                key,
                "large_edge",
                WARNING,
                f"large edge: {o.symbol} {o.combo} ${usd_text(o.net_edge_per_contract)} per "
                f"contract after fees (alert at ${usd_text(rules.large_edge)}): check the pair "
                "is the same question before trusting it",
                o.ts_ns,
                o.symbol,
            )
        )
    return out


def events(snap: MonitorSnapshot) -> list[Alert]:
    """The monitor's recorded alerts (fee drift, blocked symbols) as one-shot alerts."""
    out = []
    for ts, symbol, why in snap.alerts:
        kind = "fee_drift" if why.startswith("fee drift") else "risk"
        out.append(Alert(f"{kind}:{ts}:{symbol}:{why}", kind, WARNING, why, ts, symbol))
    return out


def _name(venue: str) -> str:
    return {"kalshi": "Kalshi", "ibkr": "ForecastEx (IBKR)"}.get(venue, venue)


def _down(venue: str) -> str:
    return f"venue down: {_name(venue)} is disconnected (no quotes, no orders there)"


@dataclass(slots=True)
class AlertBook:
    """What is active now and what was raised, with each alert raised once per activation."""

    rules: AlertRules = field(default_factory=AlertRules)
    history: int = 50
    active: dict[str, Alert] = field(default_factory=dict)
    raised: deque[Alert] = field(default_factory=deque)
    _seen_events: set[str] = field(default_factory=set)

    def update(self, snap: MonitorSnapshot) -> list[Alert]:
        """Evaluate ``snap``; returns the alerts raised by it (new since the last call)."""
        now = conditions(snap, self.rules)
        new = [a for a in now if a.key not in self.active]
        self.active = {a.key: self.active.get(a.key, a) for a in now}
        for e in events(snap):
            if e.key not in self._seen_events:
                self._seen_events.add(e.key)
                new.append(e)
        if len(self._seen_events) > 10 * self.history:  # snapshots carry the last 50
            self._seen_events = {e.key for e in events(snap)}
        for a in new:
            self.raised.appendleft(a)
        while len(self.raised) > self.history:
            self.raised.pop()
        return new

    def kinds_active(self) -> list[str]:
        return sorted({a.kind for a in self.active.values()})


def redact_url(url: str) -> str:
    """Scheme and host only: a webhook URL often carries its secret in the path."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname or ''}{':' + str(p.port) if p.port else ''}/…"


class WebhookSender:
    """POST each raised alert as JSON to ``url`` (http or https), at most ``max_in_flight``
    at once; a failure is counted and shown, never raised into the dashboard."""

    def __init__(self, url: str, *, timeout_s: float = 3.0, max_in_flight: int = 8) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ValueError("the webhook URL must be http:// or https:// with a host")
        self.url = url
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.last_error = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: Any = None

    def send(self, alerts: Iterable[Alert], mode: str) -> None:
        """Schedule the POSTs on the running loop and return at once (outside a loop,
        or with ``max_in_flight`` POSTs still under way, an alert is counted as dropped)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        for a in alerts:
            if loop is None or len(self._tasks) >= self.max_in_flight:
                self.dropped += 1
                continue
            task = loop.create_task(self._post(a.payload(mode)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, body: dict[str, str]) -> None:
        import httpx

        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.timeout_s)
            r = await self._client.post(self.url, json=body)
            r.raise_for_status()
            self.sent += 1
        except Exception as exc:  # a dead endpoint must not break the dashboard
            self.failed += 1
            self.last_error = type(exc).__name__
            log.warning("alert webhook %s failed: %s", redact_url(self.url), type(exc).__name__)

    async def drain(self) -> None:
        """Wait for the POSTs under way (tests, and before closing)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def status_text(self) -> str:
        err = f", last error {self.last_error}" if self.last_error else ""
        return (
            f"webhook {redact_url(self.url)}: {self.sent} sent, {self.failed} failed"
            f"{f', {self.dropped} dropped' if self.dropped else ''}{err}"
        )
