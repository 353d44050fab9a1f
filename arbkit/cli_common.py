"""What every ``arbkit`` command shares: the user-error type, the execution config as
the flags make it, and small argument and output helpers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from arbkit.config.execution_loader import (
    ExecutionConfig,
    apply_overrides,
    load_execution_config,
)
from arbkit.model import Mode


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def usd(m: int) -> str:
    return f"${m / 1e6:,.2f}"


def parse_sets(pairs: Sequence[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CliError(
                f"{flag} {pair!r}: expected section.key=value, e.g. detector.min_edge_usd=0.02"
            )
        out[key.strip()] = value.strip()
    return out


def execution_config(
    path: str | None,
    mode: str | None,
    sets: Sequence[str] | None,
    *,
    default_mode: str | None = None,
    no_live: str = "",
) -> ExecutionConfig:
    """The file, then ``--set``, then ``--mode`` (else ``default_mode`` unless ``--set``
    chose one). A live mode is blamed on whoever chose it — the flag, not the file — and
    refused outright with ``no_live`` where live makes no sense (demo, replay)."""
    from dataclasses import replace

    cfg = load_execution_config(path) if path else ExecutionConfig()
    overrides = parse_sets(sets, "--set")
    if overrides:
        cfg = apply_overrides(cfg, overrides, "--set")
    if mode is not None:
        cfg = apply_overrides(cfg, {"mode": mode}, "--mode")
    elif default_mode is not None and "mode" not in overrides:
        cfg = replace(cfg, mode=Mode(default_mode))
    if cfg.mode is Mode.LIVE:
        chosen_by = (
            f"--mode {mode}"
            if mode is not None
            else f"--set mode={overrides['mode']}"
            if "mode" in overrides
            else cfg.source
        )
        if no_live:
            raise CliError(f"{chosen_by or 'the execution config'}: {no_live}")
        cfg = replace(cfg, source=chosen_by)
    return cfg


def positive(value: int, flag: str) -> int:
    if value < 1:
        raise CliError(f"{flag} {value}: use 1 or more")
    return value


def utc_ns(text: str | None, flag: str) -> int | None:
    from arbkit.analysis.queries import utc_ns

    try:
        return utc_ns(text)
    except ValueError as exc:
        raise CliError(f"{flag}: {exc}") from None


def capture_file(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        raise CliError(f"{p} is a directory: give one capture file (.jsonl or .jsonl.gz)")
    if not p.exists():
        raise CliError(f"{p}: capture not found")
    return path


def money_json(name: str, units: int) -> dict[str, Any]:
    """Money in JSON: exact integer micro-dollars plus the dollar string, never a float."""
    from decimal import Decimal

    return {f"{name}_e6": int(units), f"{name}_usd": str(Decimal(int(units)).scaleb(-6))}


def print_json(obj: Any) -> None:
    import json

    print(json.dumps(obj, indent=2, sort_keys=False))
