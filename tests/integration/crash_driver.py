"""Crash-test driver: run ONE execution against venues the parent test started, and
SIGKILL this process right after the step named by ``ARBKIT_KILL_AT``.

Steps are journal writes (``intent``, ``state:<state>``, ``order:<l1|l2|h>:<submitted|
result>``) or venue answers not yet journaled (``venue:<l1|l2|h>``: the order exists at
the venue, the journal does not know its outcome). ``never`` runs to completion.
With ``ARBKIT_CRASH_PHASE=reconcile`` the driver does not trade: it reconciles the journal
a killed run left behind and dies at a reconciliation write (``rec:audit`` — the first
audit row, ``rec:order:<l1|l2|h>:result``, ``rec:state:<state>``).
Run as ``python crash_driver.py`` with the ARBKIT_CRASH_* variables set (see ``main``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from arbkit.execution.journal import ExecutionRecord, LegOrderRecord
from arbkit.execution.venue import OrderRequest, OrderResult, OrderState
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.storage.database import Database
from tests.integration.rig import Rig

KILL_AT = os.environ.get("ARBKIT_KILL_AT", "never")
PHASE = os.environ.get("ARBKIT_CRASH_PHASE", "execute")
PREFIX = "rec:" if PHASE == "reconcile" else ""


def leg_code(client_order_id: str) -> str:
    return client_order_id.rsplit("-", 2)[1]  # "<execution id>-<l1|l2|h>-<attempt>"


def leg_attempt(client_order_id: str) -> str:
    """``h1`` for the second recovery order: kill points can name one attempt."""
    _, code, attempt = client_order_id.rsplit("-", 2)
    return f"{code}{attempt}"


def step(name: str) -> None:
    name = PREFIX + name
    if name == KILL_AT:
        sys.stderr.write(f"crash_driver: SIGKILL at {name}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)


class KillingJournal:
    """The real Database; the process dies right after the named write committed."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record_intent(self, ex: ExecutionRecord, leg1: LegOrderRecord) -> None:
        await self.db.record_intent(ex, leg1)
        step("intent")

    async def record_order(self, order: LegOrderRecord) -> None:
        await self.db.record_order(order)
        phase = "submitted" if order.state is OrderState.PENDING else "result"
        step(f"order:{leg_code(order.client_order_id)}:{phase}")
        step(f"order:{leg_attempt(order.client_order_id)}:{phase}")

    async def record_state(self, ex: ExecutionRecord) -> None:
        await self.db.record_state(ex)
        step(f"state:{ex.state.value}")

    async def record_step(self, ex: ExecutionRecord, order: LegOrderRecord) -> None:
        # state + the next order row in one commit: both step names die at the same point
        await self.db.record_step(ex, order)
        step(f"state:{ex.state.value}")
        step(f"order:{leg_code(order.client_order_id)}:submitted")

    async def record_audit(self, row: Any) -> None:
        await self.db.record_audit(row)
        step("audit")

    async def open_executions(self) -> list[ExecutionRecord]:
        return await self.db.open_executions()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


class KillingClient:
    """The real order client; the process dies once the venue answered a placement."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.venue = inner.venue

    async def place_limit(self, req: OrderRequest, timeout_s: float) -> OrderResult:
        res: OrderResult = await self.inner.place_limit(req, timeout_s)
        step(f"venue:{leg_code(req.client_order_id)}")
        step(f"venue:{leg_attempt(req.client_order_id)}")
        return res

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def run() -> dict[str, Any]:
    e = os.environ
    auth = KalshiAuth.from_key_file(e["ARBKIT_CRASH_KEY_ID"], e["ARBKIT_CRASH_KEY_PATH"])
    rig = Rig(
        e["ARBKIT_CRASH_REST"],
        e["ARBKIT_CRASH_WS"],
        auth,
        int(e["ARBKIT_CRASH_TWS_PORT"]),
        Path(e["ARBKIT_CRASH_DB"]),
        client_id=int(e["ARBKIT_CRASH_CLIENT_ID"]),
        journal_wrap=KillingJournal,
        kalshi_wrap=KillingClient,
        ibkr_wrap=KillingClient,
    )
    await rig.start()
    try:
        assert rig.executor is not None
        if PHASE == "reconcile":
            report = await rig.executor.reconcile()
            return {"state": "reconciled", "halted": report.halted}
        opp = await rig.next_opportunity()
        ex = await rig.executor.execute(opp)
        assert ex is not None
        return {"execution_id": ex.execution_id, "state": ex.state.value}
    finally:
        await rig.stop()


def main() -> None:
    print(json.dumps(asyncio.run(run())), flush=True)


if __name__ == "__main__":
    main()
