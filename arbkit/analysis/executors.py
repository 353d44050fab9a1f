"""Who runs a sweep's jobs: local forked processes, or Dask distributed.

A *task* is a chunk of jobs over one capture: one ``replay_many`` pass replays every
parameter set of the chunk (the ticks are applied to the books once). Results do not
depend on the executor, the chunking or the worker (the replay is deterministic and
``replay_many`` equals one ``replay`` per parameter set), which the tests check.

- ``LocalProcessExecutor``: the parent prepares a capture (parse + normalize, once) and
  forks workers that share it copy-on-write; nothing is shipped but parameter sets.
- ``DaskExecutor``: a ``distributed.LocalCluster`` of worker processes on loopback, or a
  ``Client`` of a running scheduler. Workers read a capture from a path they share with
  the client, or get its bytes from the cluster (``ship="scheduler"``: scattered once to
  every worker); each worker keeps the captures it prepared (prepare once, replay many)
  and checks the bytes it read against the capture's digest before using them. Tasks
  prefer a home worker (``affinity``), so a worker prepares only the captures of its
  share instead of every capture.

``run_sweep`` plans the jobs, skips those a store already holds, runs the rest and writes
each result to the store as its task completes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import multiprocessing as mp
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol

from arbkit.analysis.replay import PreparedCapture, prepare_file, replay_many
from arbkit.analysis.sweep_jobs import (
    CaptureRef,
    ResultStore,
    SweepJob,
    bytes_digest,
    context_digest,
    file_digest,
    plan,
    result_row,
)
from arbkit.config.execution_loader import ExecutionConfig, apply_overrides
from arbkit.config.loader import SymbolMap

MAX_CHUNK = 50  # jobs per task at most: a result reaches the store at least this often


@dataclass(frozen=True, slots=True)
class SweepContext:
    """What every task needs besides its capture and parameter sets (shipped once)."""

    symbols: SymbolMap
    base: ExecutionConfig
    on_error: Literal["raise", "skip"] = "skip"
    cache_captures: int = 2  # prepared captures a worker keeps

    @property
    def digest(self) -> str:
        return context_digest(self.base, self.symbols, self.on_error)


@dataclass(frozen=True, slots=True)
class SweepTask:
    capture: CaptureRef
    jobs: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]  # (job id, params)


@dataclass(slots=True)
class TaskDone:
    rows: list[dict[str, Any]]
    worker: str = ""
    prepared: bool = False  # this task prepared its capture (a cache miss)
    loaded_from: str = ""  # on a miss: "path" (read from disk) or "cluster" (bytes shipped)
    damaged_lines: int = 0
    damage: str = ""
    seconds: float = 0.0


OnDone = Callable[[TaskDone], None]


class SweepExecutor(Protocol):
    name: str

    @property
    def workers(self) -> int: ...

    def run(self, tasks: Sequence[SweepTask], ctx: SweepContext, on_done: OnDone) -> None: ...

    def close(self) -> None: ...


def make_tasks(
    jobs: Sequence[SweepJob], workers: int, max_chunk: int = MAX_CHUNK
) -> list[SweepTask]:
    """Per capture (in the jobs' order), at least one chunk per worker and at most
    ``max_chunk`` jobs per chunk; round-robin, so neighbouring (similar, similarly costly)
    parameter sets spread over the chunks."""
    by_capture: dict[str, list[SweepJob]] = {}
    for j in jobs:
        by_capture.setdefault(j.capture.digest, []).append(j)
    tasks: list[SweepTask] = []
    for group in by_capture.values():
        n = max(1, min(len(group), max(workers, math.ceil(len(group) / max_chunk))))
        for i in range(n):
            part = group[i::n]
            tasks.append(SweepTask(part[0].capture, tuple((j.job_id, j.params) for j in part)))
    return tasks


def replay_task(
    prepared: PreparedCapture, ctx: SweepContext, task: SweepTask
) -> list[dict[str, Any]]:
    """One replay_many pass over a prepared capture: a result row per job of the task."""
    cfgs = [apply_overrides(ctx.base, dict(params), "--grid") for _, params in task.jobs]
    results = asyncio.run(replay_many(prepared, ctx.symbols, cfgs))
    return [
        result_row(SweepJob(params, task.capture, jid), r)
        for (jid, params), r in zip(task.jobs, results, strict=True)
    ]


def _prepare_checked(
    ref: CaptureRef, ctx: SweepContext, path: str | None = None
) -> PreparedCapture:
    """Prepare a capture after checking that the file is the one the jobs name."""
    where = path or ref.path
    got = file_digest(where)
    if got != ref.digest:
        raise ValueError(
            f"{ref.path}: the file changed since the sweep was planned (or differs on this "
            "worker); refusing to replay other bytes under its job ids"
        )
    return prepare_file(where, ctx.symbols, on_error=ctx.on_error)


class _PreparedCache:
    """Prepared captures by digest, least recently used dropped first."""

    def __init__(self) -> None:
        self.items: OrderedDict[tuple[str, str], PreparedCapture] = OrderedDict()
        self.lock = threading.Lock()
        self.prepares = 0

    def get(
        self, key: tuple[str, str], size: int, make: Callable[[], PreparedCapture]
    ) -> tuple[PreparedCapture, bool]:
        with self.lock:
            got = self.items.get(key)
            if got is not None:
                self.items.move_to_end(key)
                return got, False
            prepared = make()
            self.prepares += 1
            self.items[key] = prepared
            while len(self.items) > max(1, size):
                self.items.popitem(last=False)
            return prepared, True


def _done(
    rows: list[dict[str, Any]], prepared: PreparedCapture, fresh: bool, t0: float
) -> TaskDone:
    return TaskDone(
        rows,
        worker=f"pid-{os.getpid()}",
        prepared=fresh,
        damaged_lines=prepared.damaged_lines if fresh else 0,
        damage=prepared.damage[0] if fresh and prepared.damage else "",
        seconds=time.perf_counter() - t0,
    )


# ------------------------------------------------------------ local processes ---

_LOCAL: tuple[PreparedCapture, SweepContext] | None = None


def _local_task(task: SweepTask) -> list[dict[str, Any]]:
    assert _LOCAL is not None
    prepared, ctx = _LOCAL
    return replay_task(prepared, ctx, task)


class LocalProcessExecutor:
    """Today's path: prepare in this process, fork ``jobs`` workers that share it."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError(f"jobs={jobs}: use 1 or more")
        self.jobs = jobs
        self.cache = _PreparedCache()

    @property
    def workers(self) -> int:
        return self.jobs

    def run(self, tasks: Sequence[SweepTask], ctx: SweepContext, on_done: OnDone) -> None:
        global _LOCAL
        groups: dict[str, list[SweepTask]] = {}
        for t in tasks:
            groups.setdefault(t.capture.digest, []).append(t)
        for group in groups.values():
            ref = group[0].capture
            t0 = time.perf_counter()
            prepared, fresh = self.cache.get(
                (ref.digest, ctx.digest), ctx.cache_captures, partial(_prepare_checked, ref, ctx)
            )
            n = min(self.jobs, len(group))
            if n == 1:
                for i, t in enumerate(group):
                    on_done(_done(replay_task(prepared, ctx, t), prepared, fresh and i == 0, t0))
                    t0 = time.perf_counter()
                continue
            _LOCAL = (prepared, ctx)
            gc.freeze()  # children share the prepared capture without gc touching its pages
            pool = mp.get_context("fork").Pool(n)
            try:
                for i, rows in enumerate(pool.imap_unordered(_local_task, group)):
                    on_done(_done(rows, prepared, fresh and i == 0, t0))
                    t0 = time.perf_counter()
            finally:
                pool.terminate()
                pool.join()
                gc.unfreeze()
                _LOCAL = None

    def close(self) -> None:
        self.cache.items.clear()

    def __enter__(self) -> LocalProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------- dask ---

_WORKER_CACHE = _PreparedCache()  # per worker process: lives as long as the worker
_WORKER_TASKS = [0]  # tasks this worker process ran


@dataclass(frozen=True, slots=True)
class CaptureBlob:
    """A capture's bytes, for workers that do not share the client's disk."""

    ref: CaptureRef
    data: bytes = field(repr=False)


def affinity(tasks: Sequence[SweepTask], slots: Sequence[str]) -> list[str]:
    """A home worker per task: the capture-major task list cut into ``len(slots)``
    contiguous runs of equal replay cost (capture size × jobs). A worker then prepares
    only the few captures of its run, not every capture; the placement is a preference
    (``allow_other_workers``), so an idle worker still takes work from a busy one."""
    if not slots:
        return ["" for _ in tasks]
    cost = [max(1, t.capture.size) * len(t.jobs) for t in tasks]
    total = sum(cost)
    out: list[str] = []
    acc = 0
    for c in cost:
        k = min(len(slots) - 1, (2 * acc + c) * len(slots) // (2 * total))  # by its midpoint
        out.append(slots[k])
        acc += c
    return out


def _dask_task(source: CaptureRef | CaptureBlob, ctx: SweepContext, task: SweepTask) -> TaskDone:
    t0 = time.perf_counter()
    ref = task.capture

    def make() -> PreparedCapture:
        if isinstance(source, CaptureRef):
            return _prepare_checked(ref, ctx)
        if bytes_digest(source.data) != ref.digest:
            raise ValueError(f"{ref.path}: the bytes received differ from the capture's digest")
        suffix = "".join(Path(ref.path).suffixes[-2:]) or ".jsonl"
        with tempfile.TemporaryDirectory(prefix="arbkit-capture-") as d:
            p = Path(d) / f"capture{suffix}"
            p.write_bytes(source.data)
            prepared = prepare_file(p, ctx.symbols, on_error=ctx.on_error)
        prepared.source = ref.path
        return prepared

    def make_frozen() -> PreparedCapture:
        # As the forked local workers do (gc.freeze before fork): the millions of prepared
        # objects leave the collector's generations, so replays' collections skip them.
        prepared = make()
        gc.collect()
        gc.freeze()
        return prepared

    prepared, fresh = _WORKER_CACHE.get((ref.digest, ctx.digest), ctx.cache_captures, make_frozen)
    done = _done(replay_task(prepared, ctx, task), prepared, fresh, t0)
    _WORKER_TASKS[0] += 1
    if fresh:
        done.loaded_from = "path" if isinstance(source, CaptureRef) else "cluster"
    try:
        from distributed import get_worker

        done.worker = str(get_worker().address)
    except (ImportError, ValueError):
        pass
    return done


def _worker_counts() -> tuple[int, int]:
    return _WORKER_CACHE.prepares, _WORKER_TASKS[0]


class DaskExecutor:
    """Dask distributed: a loopback LocalCluster of ``n_workers`` processes by default,
    or the cluster behind ``scheduler`` (``tcp://HOST:PORT``)."""

    name = "dask"

    def __init__(
        self,
        n_workers: int = 2,
        *,
        scheduler: str | None = None,
        ship: Literal["path", "scheduler"] = "path",
        dashboard: bool = False,
    ) -> None:
        import distributed

        dd: Any = distributed  # untyped library: kept behind Any
        quiet = not logging.getLogger().isEnabledFor(logging.INFO)
        if quiet:
            # distributed logs every connection at INFO through its own handler, and a
            # closed comm at shutdown as a traceback: noise unless asked for (--verbose)
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
        if n_workers < 1:
            raise ValueError(f"n_workers={n_workers}: use 1 or more")
        self.ship = ship
        self.cluster: Any = None
        if scheduler is None:
            self.cluster = dd.LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,  # one replay per process: the GIL is not shared
                processes=True,
                host="127.0.0.1",
                # the dashboard (the notebook links it) or only the scheduler's HTTP
                # endpoint (health/metrics): on loopback, any free port, never :8787
                dashboard_address="127.0.0.1:0" if dashboard else None,
                worker_dashboard_address=None,
                scheduler_kwargs={"dashboard": dashboard, "dashboard_address": "127.0.0.1:0"},
                # a failed task's error reaches the caller: the workers need not log it
                silence_logs=logging.CRITICAL if quiet else logging.INFO,
            )
            self.client: Any = dd.Client(self.cluster)
        else:
            self.client = dd.Client(scheduler, timeout=30)
        self.address: str = str(self.client.scheduler.address)
        # where to watch the workers (Dask's dashboard; needs bokeh), '' when not served
        self.dashboard_link: str = str(self.client.dashboard_link) if dashboard else ""

    def _slots(self) -> list[str]:
        """One entry per worker thread (a worker with 2 threads takes two shares)."""
        info = self.client.scheduler_info(n_workers=-1)
        return [
            addr
            for addr, w in sorted(info.get("workers", {}).items())
            for _ in range(max(1, int(w.get("nthreads", 1))))
        ]

    @property
    def workers(self) -> int:
        return max(1, len(self._slots()))

    def prepares_per_worker(self) -> dict[str, int]:
        """How many captures each worker prepared so far (its cache misses)."""
        got: dict[str, tuple[int, int]] = self.client.run(_worker_counts)
        return {w: c[0] for w, c in got.items()}

    def tasks_per_worker(self) -> dict[str, int]:
        """How many sweep tasks each worker ran so far (whoever submitted them)."""
        got: dict[str, tuple[int, int]] = self.client.run(_worker_counts)
        return {w: c[1] for w, c in got.items()}

    def run(self, tasks: Sequence[SweepTask], ctx: SweepContext, on_done: OnDone) -> None:
        import distributed

        as_completed: Any = distributed.as_completed
        if not tasks:
            return
        client = self.client
        home = affinity(tasks, self._slots())
        ctx_f = client.scatter(ctx, broadcast=True, hash=False)
        sources: dict[str, Any] = {}
        for t in tasks:
            ref = t.capture
            if ref.digest in sources:
                continue
            if self.ship == "scheduler":  # to the workers that will prepare it
                blob = CaptureBlob(ref, Path(ref.path).read_bytes())
                where = sorted({h for h, u in zip(home, tasks, strict=True) if u.capture == ref})
                sources[ref.digest] = client.scatter(
                    blob, workers=[w for w in where if w] or None, broadcast=True, hash=False
                )
            else:
                sources[ref.digest] = ref
        futures = [
            client.submit(
                _dask_task, sources[t.capture.digest], ctx_f, t,
                pure=False, workers=[h] if h else None, allow_other_workers=True,
            )
            for t, h in zip(tasks, home, strict=True)
        ]  # fmt: skip
        try:
            for fut in as_completed(futures):
                on_done(fut.result())
                fut.release()
        finally:
            client.cancel(futures)
            for f in (ctx_f, *(s for s in sources.values() if not isinstance(s, CaptureRef))):
                f.release()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(
    kind: Literal["local", "dask"],
    workers: int,
    *,
    scheduler: str | None = None,
    ship: Literal["path", "scheduler"] = "path",
) -> LocalProcessExecutor | DaskExecutor:
    if kind == "local":
        if scheduler is not None:
            raise ValueError("--scheduler needs --executor dask")
        return LocalProcessExecutor(workers)
    return DaskExecutor(workers, scheduler=scheduler, ship=ship)


# --------------------------------------------------------------------- sweep ---


@dataclass(slots=True)
class SweepOutcome:
    jobs: list[SweepJob]
    rows: list[dict[str, Any]]  # in job order
    run: int  # jobs this call ran
    skipped: int  # jobs the store already had
    tasks: int
    prepares: int  # capture preparations (cache misses) seen by this call
    loaded: dict[str, int] = field(default_factory=dict)  # misses by source: path/cluster
    damage: dict[str, tuple[int, str]] = field(default_factory=dict)
    seconds: float = 0.0


def run_sweep(
    captures: Sequence[CaptureRef],
    combos: Sequence[dict[str, str]],
    ctx: SweepContext,
    executor: SweepExecutor,
    store: ResultStore,
    *,
    progress: Callable[[int, int], None] | None = None,
    max_chunk: int = MAX_CHUNK,
) -> SweepOutcome:
    """Every (capture × parameter set) job not already in ``store``, on ``executor``;
    each finished task's rows are in the store before the next result is taken."""
    t0 = time.perf_counter()
    for c in combos:  # a bad key/value fails before any work starts
        apply_overrides(ctx.base, c, "--grid")
    jobs = plan(captures, combos, ctx.digest)
    todo = [j for j in jobs if j.job_id not in store]
    tasks = make_tasks(todo, executor.workers, max_chunk)
    out = SweepOutcome(jobs, [], len(todo), len(jobs) - len(todo), len(tasks), 0)
    done = [len(jobs) - len(todo)]
    if progress:
        progress(done[0], len(jobs))
    by_path = {c.digest: c.path for c in captures}

    def finished(d: TaskDone) -> None:
        store.add(d.rows)
        out.prepares += int(d.prepared)
        if d.loaded_from:
            out.loaded[d.loaded_from] = out.loaded.get(d.loaded_from, 0) + 1
        if d.damaged_lines and d.rows:
            out.damage[by_path[d.rows[0]["capture_digest"]]] = (d.damaged_lines, d.damage)
        done[0] += len(d.rows)
        if progress:
            progress(done[0], len(jobs))

    executor.run(tasks, ctx, finished)
    out.rows = store.get(jobs)
    out.seconds = time.perf_counter() - t0
    return out
