"""Sweep jobs and their results store: what makes a sweep resumable and executor-neutral.

A *job* is one replay of one parameter set over one capture. Its id hashes the parameter
set, the capture's identity (the SHA-256 of its bytes, not its path: a capture copied to a
shared disk is the same capture) and the sweep's context (base execution config and symbol
map, so a resume with other settings never reuses a result made under different ones).

The store is one JSON Lines file with a row per finished job, appended, flushed and
fsynced as each result arrives. On resume the finished job ids are read back and skipped;
a half-written last line (a sweep killed mid-write) is cut off and that job runs again.
Rows hold exact integers only (money in micro-dollar units), so the results of two runs,
or of two executors, compare exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from arbkit.analysis.replay import ReplayResult
from arbkit.config.execution_loader import ExecutionConfig, execution_config_toml
from arbkit.config.loader import SymbolMap
from arbkit.model import Money
from arbkit.storage.capture import CaptureReader

# ReplayResult's scalar figures: what a job's row keeps (the per-decision lists are
# summarised by ``detail_digest`` so that "identical results" covers them too).
RESULT_FIELDS = (
    "events",
    "batches",
    "opportunities",
    "episodes",
    "decisions_taken",
    "executed",
    "executions_done",
    "executions_hedged",
    "executions_unhedged",
    "contracts_filled",
    "realized_pnl",
    "expected_profit",
    "hedge_cost",
    "max_exposure",
    "episodes_ended",
)
_MONEY_FIELDS = {"realized_pnl", "expected_profit", "hedge_cost", "max_exposure"}
STORE_VERSION = 1


@dataclass(frozen=True, slots=True)
class CaptureRef:
    """A capture file as a sweep knows it: where it is and what it is."""

    path: str
    digest: str  # SHA-256 of the file's bytes
    size: int
    first_ts_ns: int  # the first event's receive time: walk-forward order

    @property
    def name(self) -> str:
        return Path(self.path).name


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def capture_ref(path: str | Path) -> CaptureRef:
    """Identity and first receive time of a capture (reads the file once to hash it)."""
    p = Path(path)
    first = 0
    reader = CaptureReader(p, "skip")
    for ev in reader:
        first = ev.t
        break
    return CaptureRef(str(p), file_digest(p), p.stat().st_size, first)


def by_time(captures: Iterable[CaptureRef]) -> list[CaptureRef]:
    """Captures in time order (first receive time, then name: a stable order for ties)."""
    return sorted(captures, key=lambda c: (c.first_ts_ns, c.name, c.digest))


def context_digest(
    base: ExecutionConfig, symbols: SymbolMap, on_error: Literal["raise", "skip"] = "skip"
) -> str:
    """What, besides the parameter set and the capture, decides a job's result."""
    text = "\n".join(
        (
            execution_config_toml(base),
            repr(dataclasses.replace(symbols, source="")),
            on_error,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SweepJob:
    params: tuple[tuple[str, str], ...]  # in grid order
    capture: CaptureRef
    job_id: str

    @property
    def params_dict(self) -> dict[str, str]:
        return dict(self.params)


def job_id(params: dict[str, str], capture_digest: str, context: str) -> str:
    doc = {
        "v": STORE_VERSION,
        "context": context,
        "capture": capture_digest,
        "params": sorted(params.items()),
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def plan(
    captures: Sequence[CaptureRef], combos: Sequence[dict[str, str]], context: str
) -> list[SweepJob]:
    """Every (capture × parameter set) job, capture-major (so a worker prepares each
    capture once and then replays it for many parameter sets)."""
    seen: dict[str, str] = {}
    for c in captures:
        if c.digest in seen:
            raise ValueError(f"{c.path} and {seen[c.digest]} are the same capture (same bytes)")
        seen[c.digest] = c.path
    return [
        SweepJob(tuple(p.items()), c, job_id(p, c.digest, context))
        for c in captures
        for p in combos
    ]


def detail_digest(r: ReplayResult) -> str:
    """The replay's decision/execution/settlement lists, hashed: equal digests mean the
    same decisions in the same order, not just the same totals."""
    text = repr((r.decisions, r.executions, r.starts, r.settlements))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def result_row(job: SweepJob, r: ReplayResult) -> dict[str, Any]:
    """A finished job as the store keeps it (integers only)."""
    return {
        "job": job.job_id,
        "capture": job.capture.path,
        "capture_digest": job.capture.digest,
        "params": job.params_dict,
        "result": {k: int(getattr(r, k)) for k in RESULT_FIELDS},
        "settlements": len(r.settlements),
        "detail": detail_digest(r),
    }


def replay_result(row: dict[str, Any]) -> ReplayResult:
    """The scalar figures of a stored row back as a ReplayResult (lists left empty)."""
    res = row["result"]
    kw: dict[str, Any] = {
        k: Money(int(res[k])) if k in _MONEY_FIELDS else int(res[k]) for k in RESULT_FIELDS
    }
    return ReplayResult(**kw)


class ResultStore:
    """One row per finished job, in a JSON Lines file (or in memory when ``path`` is None).

    Without ``resume`` an existing file is started afresh (what re-running a sweep into
    the same place always did); with it the finished rows are kept and skipped.
    """

    def __init__(self, path: str | Path | None, *, resume: bool = False) -> None:
        self.path = Path(path) if path is not None else None
        self.rows: dict[str, dict[str, Any]] = {}
        self.damaged = 0  # unreadable lines found on resume (their jobs run again)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume and self.path.exists():
            self._load()
        else:
            self.path.write_bytes(b"")

    def _load(self) -> None:
        assert self.path is not None
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a half-written last line: cut it so appends start clean
            self.damaged += 1
            with self.path.open("r+b") as fh:
                fh.truncate(end)
        for line in data[:end].splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                self.rows[str(row["job"])] = row
            except (ValueError, KeyError, TypeError):
                self.damaged += 1

    def __contains__(self, job: str) -> bool:
        return job in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Record finished jobs durably before anything else learns they are done."""
        rows = list(rows)
        if self.path is not None and rows:
            text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for r in rows:
            self.rows[str(r["job"])] = r

    def get(self, jobs: Sequence[SweepJob]) -> list[dict[str, Any]]:
        return [self.rows[j.job_id] for j in jobs]


def comparable(rows: Iterable[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows reduced to what must be identical between two runs of the same sweep."""
    return [
        (r["job"], r["capture_digest"], sorted(r["params"].items()),
         sorted(r["result"].items()), r["settlements"], r["detail"])
        for r in rows
    ]  # fmt: skip
