"""Alert rules (pure, snapshot in) and the webhook sender against a loopback server."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from arbkit.execution.journal import ExecState, ExecutionRecord
from arbkit.model import Mode, Money, Price, Qty
from arbkit.monitor.arbitrage_monitor import OpportunityView, VenueStatus
from arbkit.ui import alerts as A
from tests.ui.test_series import T0, snapshot


class Hook:
    """A loopback HTTP server that records every POSTed JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                hook.bodies.append(json.loads(self.rfile.read(n)))
                hook.paths.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_a: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/SECRET-TOKEN"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    try:
        yield h
    finally:
        h.close()


def _exec(state: ExecState, ex_id: str = "ex-9") -> ExecutionRecord:
    return ExecutionRecord(
        ex_id, "A", "kalshi_yes+ibkr_no", Mode.PAPER, state, T0, T0, Qty(500), Money(0)
    )


def _opp(edge: int, ts: int = T0) -> OpportunityView:
    return OpportunityView(
        ts, "A", "kalshi_yes+ibkr_no", 5, Price(4_000), Price(5_000), Money(0), Money(edge), 0,
        "executed", "", None,
    )  # fmt: skip


def test_each_condition_is_detected() -> None:
    rules = A.AlertRules(stale_ms=2_000, large_edge=Money(50_000))
    quiet = A.conditions(snapshot(opportunities=[]), rules)
    assert quiet == []
    snap = snapshot(
        executions=[_exec(ExecState.UNHEDGED)],
        kill_switch=True,
        kill_reason="unhedged ex-9",
        trading_state="halted",
        venues={
            "kalshi": VenueStatus("kalshi", True, 10, 0, 0, 0, 2_500, 2, 2),
            "ibkr": VenueStatus("ibkr", False, 10, 0, 0, 0, 12, 0, 2),
        },
        opportunities=[_opp(60_000), _opp(40_000), _opp(90_000, T0 - 60 * 10**9)],
    )
    got = {a.key: a for a in A.conditions(snap, rules)}
    assert set(got) == {
        "unhedged:ex-9",
        "halted",
        "stale_data:kalshi",
        "venue_down:ibkr",
        "large_edge:A:kalshi_yes+ibkr_no",
    }
    assert got["halted"].text == "trading halted: unhedged ex-9"
    assert got["unhedged:ex-9"].severity == A.CRITICAL
    assert "2.5 s" in got["stale_data:kalshi"].text
    assert "$0.06 per contract" in got["large_edge:A:kalshi_yes+ibkr_no"].text
    counted = A.conditions(snapshot(counters={"executions_unhedged": 2}, opportunities=[]), rules)
    assert [a.key for a in counted] == ["unhedged:count"]


def test_alert_book_raises_once_per_activation_and_monitor_events_once() -> None:
    book = A.AlertBook(A.AlertRules(large_edge=Money(10**9)))
    down = {"ibkr": VenueStatus("ibkr", False, 0, 0, 0, 0, None, 0, 2)}
    drift = [(T0, "A", "fee drift: kalshi charged 0.02 USD ...")]
    assert [a.kind for a in book.update(snapshot(venues=down, alerts=drift))] == [
        "venue_down",
        "fee_drift",
    ]
    assert book.update(snapshot(venues=down, alerts=drift)) == []  # still the same ones
    assert book.update(snapshot(alerts=drift)) == [] and book.kinds_active() == []
    again = book.update(snapshot(venues=down, alerts=drift))  # down again: raised again
    assert [a.key for a in again] == ["venue_down:ibkr"]
    assert [a.kind for a in book.raised] == ["venue_down", "fee_drift", "venue_down"]


def test_webhook_posts_alert_fields_only(hook: Hook) -> None:
    sender = A.WebhookSender(hook.url)
    alert = A.Alert("halted", "halted", A.CRITICAL, "trading halted: x", T0)

    async def go() -> None:
        sender.send([alert], "paper")
        await sender.aclose()

    asyncio.run(go())
    assert hook.bodies == [
        {
            "source": "arbkit",
            "kind": "halted",
            "severity": "critical",
            "symbol": "",
            "text": "trading halted: x",
            "time": "2027-01-15T08:00:00.000+00:00",
            "mode": "paper",
        }
    ]
    assert hook.paths == ["/hook/SECRET-TOKEN"]
    assert sender.sent == 1 and sender.failed == 0
    # the status line never shows the URL's path (where a webhook's secret usually is)
    assert "SECRET" not in sender.status_text() and "1 sent" in sender.status_text()


def test_webhook_failure_is_counted_not_raised(hook: Hook) -> None:
    url = hook.url
    hook.close()  # nothing listens there any more
    sender = A.WebhookSender(url, timeout_s=1.0)

    async def go() -> None:
        sender.send([A.Alert("k", "halted", A.CRITICAL, "t", T0)], "paper")
        await sender.aclose()

    asyncio.run(go())
    assert sender.sent == 0 and sender.failed == 1 and sender.last_error
    with pytest.raises(ValueError, match="http"):
        A.WebhookSender("file:///etc/passwd")
