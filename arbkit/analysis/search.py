"""Parameter search with Optuna over ranges, replaying captures through the sweep's jobs.

- Ranges are exact decimal grids: ``key=lo:hi[:step]`` (step defaults to one unit of the
  finest decimal written), suggested to Optuna as integers in units of ``step``'s
  decimals, so every value tried is an exact decimal string, as a config file would say.
- Samplers: TPE (seeded) and grid. Storage: Optuna's journal file, so a search can be
  stopped and resumed (``trials`` is the study's total of finished trials: a resumed run
  adds the remainder) and several processes can share one study.
- Objective: ``risk_adjusted_units`` below, an exact integer in money units.
- Walk-forward: the captures sorted by time; the earlier ones are in-sample (what the
  sampler optimises), the last ``holdout`` are out-of-sample (reported per trial, never
  seen by the sampler): parameters fitted on earlier days, scored on later ones.
- The best trial (highest in-sample score; ties to the earlier trial) is written as an
  execution config that keeps every setting of the trader's own config it did not tune.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import optuna

from arbkit.analysis.executors import SweepContext, SweepExecutor, run_sweep
from arbkit.analysis.sweep_jobs import CaptureRef, ResultStore, by_time
from arbkit.analysis.tuning import EXPOSURE_CHARGE_BPS
from arbkit.analysis.tuning import UNHEDGED_PENALTY_UNITS as tuning_unhedged_penalty
from arbkit.analysis.tuning import risk_adjusted_units as tuning_risk_adjusted_units
from arbkit.config.execution_loader import ExecutionConfig, apply_overrides

# The objective is the tuning notebook's, exactly (arbkit/analysis/tuning.py).
CAPITAL_CHARGE_BPS = EXPOSURE_CHARGE_BPS
UNHEDGED_PENALTY_UNITS = tuning_unhedged_penalty


def risk_adjusted_units(result: dict[str, int]) -> int:
    """``tuning.risk_adjusted_units`` of one replay result (a job store row)."""
    return tuning_risk_adjusted_units(
        int(result["realized_pnl"]),
        int(result["hedge_cost"]),
        int(result["max_exposure"]),
        int(result["executions_unhedged"]),
    )


@dataclass(frozen=True, slots=True)
class Range:
    """``lo..hi`` inclusive in steps of ``step``, all exact decimals."""

    key: str
    lo: Decimal
    hi: Decimal
    step: Decimal

    @property
    def places(self) -> int:
        return max(0, -min(int(d.as_tuple().exponent) for d in (self.lo, self.hi, self.step)))

    def ints(self) -> tuple[int, int, int]:
        s = 10**self.places
        return int(self.lo * s), int(self.hi * s), int(self.step * s)

    def value(self, i: int) -> str:
        """The config value for Optuna's integer ``i`` (in units of 10^-places)."""
        if not self.places:
            return str(i)
        return f"{Decimal(i).scaleb(-self.places).normalize():f}"  # 0.010 → 0.01, 0.00 → 0

    def grid(self) -> list[int]:
        lo, hi, step = self.ints()
        return list(range(lo, hi + 1, step))

    def grid_values(self) -> list[str]:
        return [self.value(i) for i in self.grid()]

    @property
    def spec(self) -> str:
        return f"{self.key}={self.lo}:{self.hi}:{self.step}"


def parse_range(spec: str) -> Range:
    key, eq, rest = spec.partition("=")
    parts = rest.split(":")
    if not eq or not key.strip() or len(parts) not in (2, 3):
        raise ValueError(
            f"--range {spec!r}: expected key=lo:hi[:step], e.g. detector.min_edge_usd=0:0.05:0.005"
        )
    try:
        nums = [Decimal(p.strip()) for p in parts]
    except InvalidOperation:
        raise ValueError(f"--range {spec!r}: lo, hi and step must be decimal numbers") from None
    if not all(n.is_finite() for n in nums):
        raise ValueError(f"--range {spec!r}: lo, hi and step must be finite")
    lo, hi = nums[0], nums[1]
    places = max(0, -min(int(n.as_tuple().exponent) for n in nums[:2]))
    step = nums[2] if len(nums) == 3 else Decimal(1).scaleb(-places)
    if hi < lo:
        raise ValueError(f"--range {spec!r}: hi is below lo")
    if step <= 0:
        raise ValueError(f"--range {spec!r}: step must be positive")
    if (hi - lo) % step != 0:
        raise ValueError(f"--range {spec!r}: hi - lo is not a whole number of steps")
    r = Range(key.strip(), lo, hi, step)
    if r.key == "mode":
        raise ValueError(f"--range {spec!r}: a search replays in paper mode only; drop mode")
    return r


@dataclass(slots=True)
class TrialRow:
    number: int
    params: dict[str, str]
    in_sample_units: int
    out_of_sample_units: int | None
    in_sample_pnl_units: int
    out_of_sample_pnl_units: int | None
    executed_in_sample: int
    per_capture_units: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"trial": self.number, **self.params}
        d.update(
            in_sample_score_units=self.in_sample_units,
            out_of_sample_score_units=self.out_of_sample_units,
            in_sample_pnl_units=self.in_sample_pnl_units,
            out_of_sample_pnl_units=self.out_of_sample_pnl_units,
            executed_in_sample=self.executed_in_sample,
        )
        return d


@dataclass(slots=True)
class SearchOutcome:
    study: str
    trials: list[TrialRow]  # every finished trial, by number
    ran: int  # trials this call ran
    best: TrialRow | None
    in_sample: list[str]
    out_of_sample: list[str]
    exhausted: bool = False  # a grid with no point left


def _study_key(
    ranges: Sequence[Range], ins: Sequence[CaptureRef], oos: Sequence[CaptureRef], ctx: str
) -> str:
    return json.dumps(
        {
            "ranges": [r.spec for r in ranges],
            "in_sample": [c.digest for c in ins],
            "out_of_sample": [c.digest for c in oos],
            "context": ctx,
            "objective": f"tuning/{CAPITAL_CHARGE_BPS}/{UNHEDGED_PENALTY_UNITS}/h1",
        },
        sort_keys=True,
    )


class _Grid(optuna.samplers.GridSampler):
    """The grid sampler, minus its ``study.stop()`` when the grid runs out (allowed only
    inside ``study.optimize``; this loop asks and tells, and checks exhaustion itself)."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def open_study(
    storage_path: str | Path,
    name: str,
    sampler: Literal["tpe", "grid"],
    ranges: Sequence[Range],
    seed: int,
) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Path(storage_path).parent.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(storage_path)))
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", load_if_exists=True
    )
    # The sampler's random state is not in the journal: a resumed run seeded as the first
    # one would draw the first run's points again, so the seed moves on with the trials.
    run_seed = seed + len(study.trials)
    if sampler == "grid":
        study.sampler = _Grid({r.key: r.grid() for r in ranges}, seed=run_seed)
    else:
        study.sampler = optuna.samplers.TPESampler(seed=run_seed, constant_liar=True)
    return study


def _row(trial: Any) -> TrialRow:
    a = trial.user_attrs
    return TrialRow(
        trial.number,
        dict(a["params"]),
        int(a["in_sample_units"]),
        None if a["out_of_sample_units"] is None else int(a["out_of_sample_units"]),
        int(a["in_sample_pnl_units"]),
        None if a["out_of_sample_pnl_units"] is None else int(a["out_of_sample_pnl_units"]),
        int(a["executed_in_sample"]),
        {k: int(v) for k, v in a["per_capture_units"].items()},
    )


def search(
    captures: Sequence[CaptureRef],
    ranges: Sequence[Range],
    ctx: SweepContext,
    executor: SweepExecutor,
    *,
    storage_path: str | Path,
    study_name: str,
    sampler: Literal["tpe", "grid"] = "tpe",
    trials: int = 20,
    walk_forward: bool = False,
    holdout: int = 1,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SearchOutcome:
    """Run trials until the study has ``trials`` finished ones (or a grid runs out)."""
    from optuna.trial import TrialState

    if not ranges:
        raise ValueError("a search needs at least one --range")
    for r in ranges:  # both ends must be valid config values before any work starts
        for i in (r.ints()[0], r.ints()[1]):
            apply_overrides(ctx.base, {r.key: r.value(i)}, "--range")
    ordered = by_time(captures)
    if ctx.cache_captures < len(ordered):  # every trial replays every capture: keep them all
        ctx = dataclasses.replace(ctx, cache_captures=len(ordered))
    if walk_forward:
        if holdout < 1 or len(ordered) <= holdout:
            raise ValueError(
                f"walk-forward needs more captures than the {holdout} held out (got {len(ordered)})"
            )
        ins, oos = ordered[:-holdout], ordered[-holdout:]
    else:
        ins, oos = ordered, []
    study = open_study(storage_path, study_name, sampler, ranges, seed)
    key = _study_key(ranges, ins, oos, ctx.digest)
    known = study.user_attrs.get("arbkit")
    if known is None:
        study.set_user_attr("arbkit", key)
    elif known != key:
        raise ValueError(
            f"study {study_name!r} in {storage_path} was made with other ranges, captures or "
            "settings: use another --study name"
        )
    grid_size = math.prod(len(r.grid()) for r in ranges)
    oos_digests = {c.digest for c in oos}
    ran = 0
    exhausted = False

    def finished() -> list[Any]:
        got: list[Any] = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return got

    while True:
        done = finished()
        if progress:
            progress(len(done), trials)
        if len(done) >= trials:
            break
        if sampler == "grid" and (
            len({tuple(sorted(t.params.items())) for t in done}) >= grid_size
            or study.sampler.is_exhausted(study)
        ):
            exhausted = True
            break
        batch = min(executor.workers, trials - len(done))
        asked: list[tuple[Any, dict[str, str]]] = []
        for _ in range(batch):
            tr = study.ask()
            params = {}
            for r in ranges:
                lo, hi, step = r.ints()
                params[r.key] = r.value(tr.suggest_int(r.key, lo, hi, step=step))
            asked.append((tr, params))
        # distinct parameter sets once (two trials may draw the same point)
        combos: list[dict[str, str]] = []
        for _, p in asked:
            if p not in combos:
                combos.append(p)
        try:
            out = run_sweep(ordered, combos, ctx, executor, ResultStore(None))
        except BaseException:
            for tr, _ in asked:
                study.tell(tr, state=TrialState.FAIL)
            raise
        by_params: dict[str, list[dict[str, Any]]] = {}
        for row in out.rows:
            by_params.setdefault(json.dumps(row["params"], sort_keys=True), []).append(row)
        for tr, p in asked:
            rows = by_params[json.dumps(p, sort_keys=True)]
            per = {r["capture"]: risk_adjusted_units(r["result"]) for r in rows}
            in_rows = [r for r in rows if r["capture_digest"] not in oos_digests]
            out_rows = [r for r in rows if r["capture_digest"] in oos_digests]
            ins_units = sum(risk_adjusted_units(r["result"]) for r in in_rows)
            tr.set_user_attr("params", p)
            tr.set_user_attr("in_sample_units", ins_units)
            tr.set_user_attr(
                "in_sample_pnl_units", sum(r["result"]["realized_pnl"] for r in in_rows)
            )
            tr.set_user_attr("executed_in_sample", sum(r["result"]["executed"] for r in in_rows))
            if walk_forward:
                tr.set_user_attr(
                    "out_of_sample_units", sum(risk_adjusted_units(r["result"]) for r in out_rows)
                )
                tr.set_user_attr(
                    "out_of_sample_pnl_units", sum(r["result"]["realized_pnl"] for r in out_rows)
                )
            else:
                tr.set_user_attr("out_of_sample_units", None)
                tr.set_user_attr("out_of_sample_pnl_units", None)
            tr.set_user_attr("per_capture_units", per)
            study.tell(tr, float(ins_units))  # Optuna wants a float; the exact one is above
            ran += 1
    table = sorted((_row(t) for t in finished()), key=lambda r: r.number)
    best = max(table, key=lambda r: (r.in_sample_units, -r.number)) if table else None
    return SearchOutcome(
        study_name, table, ran, best, [c.path for c in ins], [c.path for c in oos], exhausted
    )


def write_best(
    user: ExecutionConfig, best: TrialRow, path: str | Path, *, note: str = ""
) -> tuple[ExecutionConfig, Path]:
    """The trader's own config with the best trial's parameters applied (never live)."""
    from arbkit.analysis.tuning import write_tuned_config

    return write_tuned_config(user, best.params, path, note=note)


def write_trials(rows: Sequence[TrialRow], path: str | Path) -> Path:
    """One CSV row per trial: parameters, in- and out-of-sample figures (exact units)."""
    import csv

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    dicts = [r.as_dict() for r in rows]
    keys: list[str] = []
    for d in dicts:
        keys += [k for k in d if k not in keys]
    with p.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys or ["trial"])
        w.writeheader()
        w.writerows(dicts)
    return p
