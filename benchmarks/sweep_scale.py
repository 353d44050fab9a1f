"""Sweep at scale (issue 17): 200 parameter sets × 5 captures of 200k events, run by local
processes and by a Dask LocalCluster (2 workers, loopback), through ``run_sweep`` (what
``arbkit sweep --executor local|dask`` runs). Also: the Dask path's per-job overhead, the
bytes shipped per job, and from those a paper estimate for a 32-worker cluster.

The five captures are five "days": one generated session (``capture_gen``), each day
shifted in time by whole days (receive times and Kalshi ``ts_ms`` alike), so every day
costs the same to replay and has its own identity (digest). Target: Dask within 15 % of
local processes.
"""

from __future__ import annotations

import gc
import pickle
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from arbkit.analysis.executors import (
    DaskExecutor,
    LocalProcessExecutor,
    SweepContext,
    SweepTask,
    TaskDone,
    make_tasks,
    run_sweep,
)
from arbkit.analysis.replay import combinations
from arbkit.analysis.sweep_jobs import CaptureRef, ResultStore, capture_ref, comparable, plan
from arbkit.config.execution_loader import ExecutionConfig, apply_overrides
from arbkit.config.loader import load_symbol_map
from benchmarks.capture_gen import generate
from benchmarks.common import BENCH_DIR, Figure

DAY_NS = 86_400 * 10**9
GRID = {
    "detector.min_edge_usd": [f"{c / 1000:.3f}" for c in range(0, 40, 2)],  # 20 values
    "detector.max_contracts_per_trade": [
        str(n) for n in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    ],
}
QUICK_GRID = {
    "detector.min_edge_usd": [f"{c / 1000:.3f}" for c in range(0, 40, 5)],  # 8 values
    "detector.max_contracts_per_trade": [str(n) for n in (1, 5, 20, 100, 1000)],
}


def shift_line(line: bytes, shift_ns: int) -> bytes:
    """One capture line moved ``shift_ns`` later (Kalshi's own ``ts_ms`` too, so venue
    lag stays what it was)."""
    ev = orjson.loads(line)
    ev["t"] += shift_ns
    raw = ev.get("raw")
    if raw is not None:
        msg = orjson.loads(raw)
        inner = msg.get("msg") if isinstance(msg, dict) else None
        if isinstance(inner, dict) and type(inner.get("ts_ms")) is int:
            inner["ts_ms"] += shift_ns // 1_000_000
            ev["raw"] = orjson.dumps(msg).decode()
    return orjson.dumps(ev) + b"\n"


def day_captures(
    dest: Path,
    lengths: list[int],
    *,
    n_symbols: int = 20,
    seed: int = 7,
) -> tuple[list[Path], Path]:
    """Captures ``day-0 … day-k`` (day d = the first ``lengths[d]`` events of one
    generated session, shifted d days later) and their shared symbol map; cached."""
    dest.mkdir(parents=True, exist_ok=True)
    sym = dest / "symbols.toml"
    paths = [dest / f"day-{d}-{n}.jsonl" for d, n in enumerate(lengths)]
    if sym.exists() and all(p.exists() for p in paths):
        return paths, sym
    base = dest / f"session-{max(lengths)}.jsonl"
    if not base.exists():
        tmp = base.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            generate(fh, max(lengths), n_symbols, seed, sym)
        tmp.rename(base)
    lines = base.read_bytes().splitlines()
    for d, (p, n) in enumerate(zip(paths, lengths, strict=True)):
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(b"".join(shift_line(x, d * DAY_NS) for x in lines[:n]))
        tmp.rename(p)
    return paths, sym


class _Recording:
    """An executor that also keeps what each task reported (its worker's time)."""

    def __init__(self, inner: DaskExecutor) -> None:
        self.inner = inner
        self.name = inner.name
        self.done: list[TaskDone] = []

    @property
    def workers(self) -> int:
        return self.inner.workers

    def run(self, tasks: Any, ctx: SweepContext, on_done: Any) -> None:
        def keep(d: TaskDone) -> None:
            self.done.append(d)
            on_done(d)

        self.inner.run(tasks, ctx, keep)

    def close(self) -> None:
        self.inner.close()


def _noop(ctx: SweepContext, task: SweepTask) -> TaskDone:
    return TaskDone([], seconds=0.0)


def _dask_overhead(ex: DaskExecutor, ctx: SweepContext, task: SweepTask, n: int) -> float:
    """Seconds per task of the Dask path itself: ``n`` tasks of a real task's arguments
    that do no work, submitted and gathered as ``run`` does."""
    import distributed

    client: Any = ex.client
    ctx_f = client.scatter(ctx, broadcast=True, hash=False)
    t0 = time.perf_counter()
    futs = [client.submit(_noop, ctx_f, task, pure=False) for _ in range(n)]
    ac: Any = distributed.as_completed
    for f in ac(futs):
        f.result()
    return (time.perf_counter() - t0) / n


def run(quick: bool = False) -> list[Figure]:
    n_events, days = (40_000, 5) if quick else (200_000, 5)
    grid = QUICK_GRID if quick else GRID
    paths, sym = day_captures(BENCH_DIR / "sweep_scale", [n_events] * days)
    symbols = load_symbol_map(sym)
    ctx = SweepContext(symbols, apply_overrides(ExecutionConfig(), {"mode": "paper"}))
    refs: list[CaptureRef] = [capture_ref(p) for p in paths]
    combos = combinations(grid)
    n_jobs = len(combos) * len(refs)

    t0 = time.perf_counter()
    with LocalProcessExecutor(2) as lx:
        local = run_sweep(refs, combos, ctx, lx, ResultStore(None))
    t_local = time.perf_counter() - t0
    gc.collect()  # the parent's prepared captures gone: its collector must not compete

    t0 = time.perf_counter()
    with DaskExecutor(2) as ex:
        t_up = time.perf_counter() - t0
        t1 = time.perf_counter()
        rec = _Recording(ex)
        dask = run_sweep(refs, combos, ctx, rec, ResultStore(None))
        t_dask = time.perf_counter() - t1
        tasks = make_tasks(plan(refs, combos, ctx.digest), 2)
        overhead = _dask_overhead(ex, ctx, tasks[0], 400)
    same = comparable(local.rows) == comparable(dask.rows)
    jobs_per_task = n_jobs / len(tasks)
    bytes_task = len(pickle.dumps(tasks[0])) + statistics.mean(
        len(pickle.dumps(d)) for d in rec.done
    )
    bytes_ctx = len(pickle.dumps(ctx))
    cap_bytes = statistics.mean(r.size for r in refs)
    worker_s = sum(d.seconds for d in rec.done)
    rate = n_jobs / worker_s  # jobs per second per (busy) worker
    ratio = t_dask / t_local
    est32 = 32 * rate
    per_job_overhead = overhead / jobs_per_task
    note32 = (
        f"32 workers ≈ {est32:,.0f} jobs/s if the scheduler keeps up: {est32 / jobs_per_task:,.0f} "
        f"tasks/s at {overhead * 1e3:.2f} ms scheduler+comm per task; "
        f"{est32 * bytes_task / jobs_per_task / 1e3:,.0f} kB/s of task traffic; with capture "
        f"affinity a capture is read (or shipped) by the 1-2 workers whose share it is in: "
        f"~(captures + 31) × {cap_bytes / 1e6:,.1f} MB for a sweep, not captures × 32"
    )
    return [
        Figure(
            "sweep_scale",
            f"local processes ×2: {len(combos)} sets × {len(refs)} captures × {n_events // 1000}k",
            "s",
            value=t_local,
            note=f"{n_jobs / t_local:,.1f} jobs/s; {local.tasks} tasks, {local.prepares} prepares",
            extra={"jobs": n_jobs, "tasks": local.tasks},
        ),
        Figure(
            "sweep_scale",
            "Dask LocalCluster ×2, same sweep",
            "s",
            value=t_dask,
            target="≤ 1.15 × local",
            met=ratio <= 1.15 and same,
            note=(
                f"{ratio:.3f} × local; results identical: {same}; cluster start {t_up:.1f} s "
                f"(not counted); {dask.prepares} prepares "
                f"({len(refs)} captures; local {local.prepares})"
            ),
            extra={"ratio": ratio, "cluster_start_s": t_up, "identical": same},
        ),
        Figure(
            "sweep_scale",
            "Dask per-task overhead (no-op task, real arguments)",
            "ms",
            value=overhead * 1e3,
            note=f"{per_job_overhead * 1e3:.3f} ms per job at {jobs_per_task:.0f} jobs/task",
            extra={"per_job_ms": per_job_overhead * 1e3},
        ),
        Figure(
            "sweep_scale",
            "bytes shipped per job (task args + result)",
            "B",
            value=bytes_task / jobs_per_task,
            note=(
                f"{bytes_task:,.0f} B per task; context {bytes_ctx:,} B once per worker; "
                f"capture {cap_bytes / 1e6:,.1f} MB once per worker"
            ),
        ),
        Figure(
            "sweep_scale",
            "jobs per second per worker (replay time only)",
            "jobs/s",
            value=rate,
            note=note32,
            extra={"estimate_32_workers_jobs_per_s": est32},
        ),
    ]
