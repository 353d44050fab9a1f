"""Issue 5 / issue 8 crash safety: an execution runs in a subprocess that is SIGKILLed
at every step boundary — and during the reconciliation that follows such a crash; a
restarted executor (same journal, fresh clients) reconciles.

Asserted for every kill point: every client order id a venue saw is in the journal; no
id created a second order (Kalshi ``orders_created`` ≤ 1, TWS ``orders_by_ref`` ≤ 1);
no execution is left non-terminal; the journal's fills equal the venues' fills and the
reconciled positions equal the venues' positions; exposure left → kill switch on.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest

from arbkit.execution.journal import ExecState
from arbkit.execution.risk import residual_exposure
from arbkit.gateways.kalshi_auth import KalshiAuth
from arbkit.model import Outcome, Venue

from .rig import FX_NO, FX_YES, SYMBOL, TICKER, Rig, Venues

DRIVER = Path(__file__).with_name("crash_driver.py")
_client_ids = itertools.count(101)

# (kill point, leg-2 fault, exposure expected after the crash)
HAPPY = [
    ("intent", False),  # intent + leg-1 order row committed in one write, never sent
    ("venue:l1", True),  # leg 1 filled at Kalshi, the journal does not know yet
    ("order:l1:result", True),
    ("state:leg2_sent", True),
    ("order:l2:submitted", True),  # leg 2 journaled, never sent
    ("venue:l2", False),  # leg 2 filled at the TWS, not journaled
    ("order:l2:result", False),
    ("state:done", False),
    ("never", False),
]
HEDGE = [  # leg 2 and the completion on ForecastEx (h0) are refused: unwind on Kalshi (h1)
    ("order:l2:result", True),
    ("state:hedging", True),
    ("order:h0:submitted", True),
    ("venue:h0", True),  # the refused completion: leg 1 still open
    ("order:h0:result", True),
    ("order:h1:submitted", True),
    ("venue:h1", False),  # the unwind filled at Kalshi, not journaled
    ("order:h1:result", False),
    ("state:hedged", False),
]
CASES = [(k, False, x) for k, x in HAPPY] + [(k, True, x) for k, x in HEDGE]


def _params() -> list[object]:
    return [
        pytest.param(k, h, x, id=("hedge-" if h else "") + k.replace(":", "-")) for k, h, x in CASES
    ]


async def run_driver(
    venues: Venues, db: Path, kill_at: str, client_id: int, phase: str = "execute"
) -> int:
    env = {
        **os.environ,
        "ARBKIT_KILL_AT": kill_at,
        "ARBKIT_CRASH_PHASE": phase,
        "ARBKIT_CRASH_REST": venues.exchange.rest_url,
        "ARBKIT_CRASH_WS": venues.exchange.ws_url,
        "ARBKIT_CRASH_KEY_ID": venues.key_id,
        "ARBKIT_CRASH_KEY_PATH": str(venues.key_path),
        "ARBKIT_CRASH_TWS_PORT": str(venues.tws.port),
        "ARBKIT_CRASH_DB": str(db),
        "ARBKIT_CRASH_CLIENT_ID": str(client_id),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DRIVER),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    except TimeoutError:
        proc.kill()
        raise
    assert proc.returncode is not None
    if kill_at == "never":
        assert proc.returncode == 0, err.decode()
        assert json.loads(out)["state"] == "done"
    else:
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, err.decode()[-2000:])
    return proc.returncode


@pytest.mark.parametrize(("kill_at", "hedge", "exposed"), _params())
async def test_sigkill_at_step_then_reconcile(
    venues: Venues, auth: KalshiAuth, tmp_path: Path, kill_at: str, hedge: bool, exposed: bool
) -> None:
    db = tmp_path / "journal.sqlite"
    client_id = await crash_execution(venues, db, kill_at, hedge)
    await reconcile_and_check(venues, auth, db, client_id, kill_at, hedge, exposed)


async def crash_execution(venues: Venues, db: Path, kill_at: str, hedge: bool) -> int:
    """One execution in a subprocess, SIGKILLed at ``kill_at``; returns its IBKR client id."""
    client_id = next(_client_ids)
    if hedge:
        # leg 2 and the completion attempt are refused: the unwind on Kalshi follows
        venues.tws.reject_next_order()
        venues.tws.reject_next_order()
    await run_driver(venues, db, kill_at, client_id)
    await _until(lambda: venues.tws.client_count == 0)  # the dead session is gone
    return client_id


# (kill point of the execution, leg-2 fault, exposure, kill point of the reconciliation
# that follows it): the reconciler dies after its first audit row, after correcting an
# order row, or after settling the execution; the next start must converge all the same.
RECONCILE_CASES = [
    ("venue:l1", False, True, "rec:audit"),
    ("venue:l1", False, True, "rec:order:l1:result"),
    ("venue:l1", False, True, "rec:state:unhedged"),
    ("venue:l2", False, False, "rec:audit"),
    ("venue:l2", False, False, "rec:order:l2:result"),
    ("venue:l2", False, False, "rec:state:done"),
    ("venue:h1", True, False, "rec:order:h1:result"),
    ("venue:h1", True, False, "rec:state:hedged"),
]


@pytest.mark.parametrize(
    ("kill_at", "hedge", "exposed", "rec_kill_at"),
    [
        pytest.param(*c, id=f"{'hedge-' if c[1] else ''}{c[0]}-then-{c[3]}".replace(":", "-"))
        for c in RECONCILE_CASES
    ],
)
async def test_sigkill_during_reconciliation_then_reconcile(
    venues: Venues,
    auth: KalshiAuth,
    tmp_path: Path,
    kill_at: str,
    hedge: bool,
    exposed: bool,
    rec_kill_at: str,
) -> None:
    """kill -9 during reconciliation itself: a half-written correction is never a
    third outcome — the next start settles the same execution to the same truth."""
    db = tmp_path / "journal.sqlite"
    client_id = await crash_execution(venues, db, kill_at, hedge)
    await run_driver(venues, db, rec_kill_at, client_id, phase="reconcile")
    await _until(lambda: venues.tws.client_count == 0)
    await reconcile_and_check(venues, auth, db, client_id, kill_at, hedge, exposed)
    # the correction the killed pass began is on record
    fields = rows(db, "SELECT field, new FROM audit WHERE client_order_id != ''")
    assert ("state", "filled") in fields, fields


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(db)) as c:
        return list(c.execute(sql))


async def reconcile_and_check(
    venues: Venues,
    auth: KalshiAuth,
    db: Path,
    client_id: int,
    kill_at: str,
    hedge: bool,
    exposed: bool,
) -> None:
    """A restarted executor (same journal, fresh clients) reconciles; venue truth holds."""
    rig = Rig(venues.exchange.rest_url, venues.exchange.ws_url, auth, venues.tws.port, db,
              client_id=client_id)  # fmt: skip
    await rig.start()
    try:
        assert rig.executor is not None
        report = await rig.executor.reconcile()
        journal = await rig.db.recent_executions(50)
        assert len(journal) == 1 and not await rig.db.open_executions()
        [ex] = journal
        assert ex.state.terminal
        assert all(o.state.terminal for o in ex.orders), ex.orders
        ids = {o.client_order_id for o in ex.orders}
        # nothing lost: every id a venue saw is journaled
        assert set(venues.exchange.order_posts) <= ids, (venues.exchange.order_posts, ids)
        assert set(venues.tws.orders_by_ref) <= ids, (venues.tws.orders_by_ref, ids)
        # nothing doubled
        assert all(c <= 1 for c in venues.exchange.orders_created.values())
        assert all(c <= 1 for c in venues.tws.orders_by_ref.values())
        # journal fills == venue fills, per client order id
        for o in ex.orders:
            if o.venue is Venue.KALSHI:
                filled = sum(
                    x.fill
                    for x in venues.exchange.engine.orders.values()
                    if x.client_order_id == o.client_order_id
                )
            else:
                filled = sum(
                    e.shares * 100
                    for e in venues.tws.executions
                    if e.order.view.order_ref == o.client_order_id
                )
            assert o.filled_qty == filled, (o, filled)
        # reconciled positions == the venues' positions
        k = venues.kalshi_positions()
        f = venues.fx_positions()
        truth = {(SYMBOL, Venue.KALSHI, out): q for (t, out), q in k.items() if t == TICKER and q}
        net_fx = (f.get(FX_YES, 0) - f.get(FX_NO, 0)) * 100
        if net_fx:
            side = Outcome.YES if net_fx > 0 else Outcome.NO
            truth[(SYMBOL, Venue.IBKR, side)] = abs(net_fx)
        got = {key: q for key, q in rig.executor.state.positions.items() if q}
        assert got == truth
        residual = residual_exposure(rig.sm.symbols[SYMBOL], rig.executor.state.positions)
        assert bool(residual) is exposed, (kill_at, residual, truth)
        assert report.halted is exposed and rig.executor.state.kill_switch is exposed
        if exposed:
            assert report.residual_contracts == {SYMBOL: residual // 100}
        nothing_sent = kill_at == "intent"
        want = (
            ExecState.UNHEDGED
            if exposed
            else ExecState.FAILED
            if nothing_sent
            else ExecState.HEDGED
            if hedge
            else ExecState.DONE
        )
        assert ex.state is want, (kill_at, ex.state)
        if kill_at == "never":
            assert ex.state is ExecState.DONE and report.executions_checked == 0
        print(f"\nCRASH {kill_at} hedge={hedge}: state={ex.state.value} "
              f"residual={residual // 100} kill_switch={report.halted}")  # fmt: skip
    finally:
        await rig.stop()


async def _until(pred: object, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not pred():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)
