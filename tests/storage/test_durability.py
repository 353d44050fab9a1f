"""The journal survives SIGKILL: a row whose awaited write returned is on disk."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from arbkit.model import Mode, Venue
from arbkit.storage.database import Database
from arbkit.storage.records import ExecState

# Child: journal an intent, its sent order and a state change; announce each step only
# after the awaited call returned; then (optionally) keep the writer busy and wait to die.
CHILD = r"""
import asyncio, sys, time
from arbkit.model import Mode, Outcome, Price, Qty, Venue
from arbkit.storage.database import Database, DatabaseWriter
from arbkit.storage.records import ExecState, LegIntent, SpreadSample

async def main(path):
    db = await Database(path).open()
    writer = DatabaseWriter(db, flush_interval_ms=1, batch_size=100)
    writer.start()
    for n in range(1000):
        writer.spread(SpreadSample(ts_ns=n, symbol="S"))
    leg = LegIntent("kill-e1-leg1-0", Venue.KALSHI, Outcome.YES, Price(4100), Qty(300))
    await db.journal_intent("kill-e1", "FED", Mode.LIVE, None, [leg], now_ns=111)
    print("intent", flush=True)
    await db.journal_state("kill-e1", ExecState.LEG1_SENT, 222, submit_ns=200)
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
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "intent"
        assert proc.stdout.readline().strip() == "state"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    async def check() -> None:
        async with Database(path) as db:
            [ex] = await db.non_terminal_executions()
            assert (ex.execution_id, ex.state, ex.mode) == (
                "kill-e1",
                ExecState.LEG1_SENT,
                Mode.LIVE,
            )
            assert (ex.created_ns, ex.submit_ns, ex.updated_ns) == (111, 200, 222)
            [o] = ex.orders
            assert (o.client_order_id, o.status, o.venue) == (
                "kill-e1-leg1-0",
                "planned",
                Venue.KALSHI,
            )

    asyncio.run(check())
