"""The journal survives SIGKILL: a row whose awaited write returned is on disk."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from arbkit.execution.journal import ExecState
from arbkit.execution.venue import OrderState
from arbkit.model import Mode, Venue
from arbkit.storage.database import Database

# Child: journal an intent, its sent order and a state change; announce each step only
# after the awaited call returned; then (optionally) keep the writer busy and wait to die.
CHILD = r"""
import asyncio, sys, time
from arbkit.execution.journal import ExecState, ExecutionRecord, Leg, LegOrderRecord
from arbkit.model import Mode, Money, Outcome, Price, Qty, Venue
from arbkit.storage.database import Database, DatabaseWriter
from arbkit.storage.records import SpreadSample

async def main(path):
    db = await Database(path).open()
    writer = DatabaseWriter(db, flush_interval_ms=1, batch_size=100)
    writer.start()
    for n in range(1000):
        writer.spread(SpreadSample(ts_ns=n, symbol="S"))
    ex = ExecutionRecord("kill-e1", "FED", "kalshi_yes+ibkr_no", Mode.LIVE, ExecState.INTENT,
                         111, 111, Qty(300), Money(30_000), stages_ns={"decided": 111})
    leg = LegOrderRecord("kill-e1", Leg.LEG1, 0, Mode.LIVE, Venue.KALSHI, "FED", Outcome.YES,
                         Price(4100), Qty(300), "kill-e1-l1-0", decided_ns=111)
    await db.record_intent(ex, leg)
    print("intent", flush=True)
    ex.state, ex.updated_ns = ExecState.LEG1_SENT, 222
    ex.stages_ns["leg1_submit"] = 200
    await db.record_state(ex)
    print("state", flush=True)
    time.sleep(120)  # block the loop: nothing more is written, ever

asyncio.run(main(sys.argv[1]))
"""


def test_intent_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "kill.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(60, proc.kill)  # a hung child fails the test, never hangs it
    watchdog.start()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "intent"
        assert proc.stdout.readline().strip() == "state"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    async def check() -> None:
        async with Database(path) as db:
            [ex] = await db.open_executions()
            assert (ex.execution_id, ex.state, ex.mode) == (
                "kill-e1",
                ExecState.LEG1_SENT,
                Mode.LIVE,
            )
            assert (ex.created_ns, ex.updated_ns) == (111, 222)
            assert ex.stages_ns == {"decided": 111, "leg1_submit": 200}
            [o] = ex.orders
            assert (o.client_order_id, o.state, o.venue) == (
                "kill-e1-l1-0",
                OrderState.PENDING,
                Venue.KALSHI,
            )

    asyncio.run(check())
