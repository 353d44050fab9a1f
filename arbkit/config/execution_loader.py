"""Execution config: mode, detector sizing, risk limits, fees. Units live in the names.

Money values are written as strings ("0.01") or numbers; both convert exactly or fail.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arbkit.config._toml import ConfigError, build, kind, read_toml
from arbkit.model import Mode

EXAMPLE_EXECUTION = Path(__file__).resolve().parent.parent / "examples" / "execution.toml"
LIVE_CONFIRM_ENV = "ARBKIT_CONFIRM_LIVE"
LIVE_CONFIRM_VALUE = "I_UNDERSTAND_REAL_MONEY"


@dataclass(frozen=True, slots=True)
class DetectorParams:
    min_edge_usd: int = kind("usd", 10_000)  # per contract, after both venues' fees
    max_contracts_per_trade: int = kind("int", 100)
    max_notional_usd_per_trade: int = kind("usd", 500_000_000)
    min_annualized_return_bps: int = kind("int", 0)
    max_quote_age_ms: int = kind("int", 10_000)
    # Kalshi stamps each message (ts_ms): one that reaches us later than this is stale.
    max_venue_lag_ms: int = kind("int", 3_000)
    # Legging risk: size to this share of the displayed depth (others see it too), and
    # charge this much per contract per leg for slippage before calling it profit.
    book_depth_fraction: Decimal = kind("decimal", Decimal(1))
    slippage_buffer_usd_per_leg: int = kind("usd", 0)

    @property
    def depth_fraction(self) -> tuple[int, int]:
        return self.book_depth_fraction.as_integer_ratio()


@dataclass(frozen=True, slots=True)
class FeeParams:
    kalshi_taker_coefficient: Decimal = kind("decimal", Decimal("0.07"))
    kalshi_maker_coefficient: Decimal = kind("decimal", Decimal("0.0175"))
    # "fee_rounding" (default): Kalshi's current rule (trade fee to $0.0001 per fill, a
    # rounding fee to the balance precision, whole-cent rebates per order), as the bound
    # its net fee never exceeds; "cent_per_order": the legacy schedule, one ceil to the
    # cent per order (the conservative option); "centicent_per_fill": per fill, no rebate.
    kalshi_fee_rounding: str = kind(
        "choice:cent_per_order|centicent_per_fill|fee_rounding", "fee_rounding"
    )
    # Kalshi balance precision: $0.01 for non-direct members, $0.0001 for direct members.
    kalshi_balance_precision_usd: int = kind("usd", 10_000)
    kalshi_series_multipliers: dict[str, Decimal] = kind("map:decimal", {})
    # ForecastEx: the $0.01 per pair is inside the $1.01 pair price (already in the asks)
    # and IBKR's commission on event contracts is $0; a commissionReport that charges
    # more raises the fee-drift alert. Set 0.01 to stay conservative by a cent.
    forecastex_fee_per_contract_usd: int = kind("usd", 0)
    forecastex_coupon_apy_bps: int = kind("int", 0)  # before the first dated rate
    # The coupon follows the effective Fed funds rate (ForecastEx: at least (EFFR − 50 bps)
    # / 2), so it changes over time: {"2026-09-18" = 358, ...} in bps from that UTC date.
    forecastex_coupon_rates_bps: dict[str, int] = kind("map:int", {})


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_position_contracts_per_symbol: int = kind("int", 1_000)
    max_position_contracts_per_venue: int = kind("int", 5_000)
    max_total_exposure_usd: int = kind("usd", 10_000_000_000)
    min_time_to_close_s: int = kind("int", 3_600)
    max_open_executions: int = kind("int", 1)
    symbol_cooldown_ms: int = kind("int", 1_000)
    max_daily_realized_loss_usd: int = kind("usd", 100_000_000)
    max_consecutive_failures: int = kind("int", 3)
    # After a failed execution (not DONE) the symbol waits this long before the next.
    cooldown_ms_after_failure: int = kind("int", 5_000)
    # The trading day realized loss counts over: from hh:mm (24 h clock) in this zone.
    trading_day_tz: str = kind("str", "America/New_York")
    trading_day_start_hhmm: int = kind("int", 0)
    # False-opportunity guards: an edge or a mid gap this large means a wrong pairing.
    max_plausible_edge_usd: int = kind("usd", 100_000)
    max_mid_gap_usd: int = kind("usd", 200_000)
    # Balances: re-read this often (and after every execution); older is unknown.
    balance_refresh_ms: int = kind("int", 30_000)
    max_balance_age_ms: int = kind("int", 90_000)
    # Below either floor the state moves to reducing (no new executions).
    min_balance_usd_kalshi: int = kind("usd", 0)
    min_balance_usd_ibkr: int = kind("usd", 0)


@dataclass(frozen=True, slots=True)
class ExecutionParams:
    leg1_time_in_force: str = kind("choice:immediate_or_cancel|fill_or_kill", "immediate_or_cancel")
    leg1_timeout_ms: int = kind("int", 2_000)
    leg2_timeout_ms: int = kind("int", 1_500)
    hedge_max_ms: int = kind("int", 3_000)
    hedge_price_step_usd: int = kind("usd", 10_000)
    hedge_max_steps: int = kind("int", 5)
    recheck_leg2_quote: bool = kind("bool", True)
    # A leg-1 fill smaller than this is not worth a second-leg order at break-even: the
    # cheaper of completing and unwinding (recovery) takes it back to flat instead.
    min_partial_fill_contracts: int = kind("int", 1)
    # From leg 1's first fill: flat by then, or UNHEDGED and halted (after one recovery try).
    max_unhedged_ms: int = kind("int", 5_000)
    # Kalshi as the SECOND leg (forecastex_first symbols): all or nothing.
    kalshi_second_leg_time_in_force: str = kind(
        "choice:fill_or_kill|immediate_or_cancel", "fill_or_kill"
    )
    # Order truth: venue reads lag writes, so one "not found" is never proof.
    status_poll_ms: int = kind("int", 250)
    status_lag_tolerance_ms: int = kind("int", 1_500)
    status_max_misses: int = kind("int", 3)
    order_lookup_max_ms: int = kind("int", 10_000)
    cancel_confirm_ms: int = kind("int", 5_000)
    # Recovery: leg 2 up to break-even less this edge; any unwind loses at most the cap.
    min_residual_edge_usd: int = kind("usd", 0)
    max_unwind_loss_usd_per_contract: int = kind("usd", 100_000)
    # A durable intent write slower than this re-checks the quote before leg 1 is sent.
    max_journal_delay_ms: int = kind("int", 50)


@dataclass(frozen=True, slots=True)
class PaperParams:
    latency_ms: int = kind("int", 5)


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    mode: Mode = kind(Mode, Mode.MONITOR)  # type: ignore[arg-type]
    detector: DetectorParams = field(default_factory=DetectorParams)
    fees: FeeParams = field(default_factory=FeeParams)
    risk: RiskLimits = field(default_factory=RiskLimits)
    execution: ExecutionParams = field(default_factory=ExecutionParams)
    paper: PaperParams = field(default_factory=PaperParams)
    source: str = ""


def parse_execution_config(
    data: dict[str, Any], file: str | Path = "<execution>"
) -> ExecutionConfig:
    data = dict(data)
    if "source" in data:
        raise ConfigError(file, "source", "unknown setting")
    cfg = build(ExecutionConfig, data, file)
    _check_trading_day(cfg.risk, file)
    _check_legging(cfg, file)
    _check_coupon_dates(cfg.fees, file)
    _check_bounds(cfg, file)
    return replace(cfg, source=str(file))


_USD = 1_000_000
# Sane ranges (a typo like coefficient "7" for "0.07" or 0 contracts per trade must not
# load silently): (lowest, highest, what a usual value is). Money in Money units.
BOUNDS: dict[str, tuple[int | Decimal, int | Decimal, str]] = {
    "detector.max_contracts_per_trade": (1, 1_000_000, "whole contracts, e.g. 100"),
    "detector.min_edge_usd": (0, _USD, 'dollars per contract after fees, e.g. "0.01"'),
    "detector.max_notional_usd_per_trade": (1, 10_000_000 * _USD, 'dollars, e.g. "500"'),
    "detector.max_quote_age_ms": (1, 3_600_000, "milliseconds, e.g. 10000"),
    "detector.max_venue_lag_ms": (1, 600_000, "milliseconds, e.g. 3000"),
    "fees.kalshi_taker_coefficient": (Decimal(0), Decimal("0.5"), 'Kalshi charges "0.07"'),
    "fees.kalshi_maker_coefficient": (Decimal(0), Decimal("0.5"), 'Kalshi charges "0.0175"'),
    "fees.forecastex_fee_per_contract_usd": (0, _USD // 10, '"0" or "0.01"'),
    "fees.forecastex_coupon_apy_bps": (0, 2_000, "basis points, e.g. 383 for 3.83%"),
    "risk.max_position_contracts_per_symbol": (1, 10_000_000, "whole contracts"),
    "risk.max_position_contracts_per_venue": (1, 100_000_000, "whole contracts"),
    "risk.max_open_executions": (1, 1_000, "executions at once, e.g. 1"),
    "risk.max_consecutive_failures": (1, 1_000_000, "failures before the halt, e.g. 3"),
    "risk.min_time_to_close_s": (0, 365 * 86_400, "seconds, e.g. 3600"),
    "execution.leg1_timeout_ms": (1, 600_000, "milliseconds, e.g. 2000"),
    "execution.leg2_timeout_ms": (1, 600_000, "milliseconds, e.g. 1500"),
    "paper.latency_ms": (0, 600_000, "milliseconds, e.g. 5"),
}


def check_bounds(cfg: ExecutionConfig, source: str | Path) -> None:
    """The sane-bounds check a file and ``--set`` get, for values changed at run time
    (the dashboard's inputs, ``ArbitrageMonitor.set_*``): ``ConfigError`` names the key."""
    _check_bounds(cfg, source)


def _check_bounds(cfg: ExecutionConfig, file: str | Path) -> None:
    for where, (lo, hi, usual) in BOUNDS.items():
        section, name = where.split(".")
        value = getattr(getattr(cfg, section), name)
        if not lo <= value <= hi:
            money = name.endswith("_usd")
            shown = usd_text(value) if money else str(value)
            rng = f"{usd_text(int(lo))}..{usd_text(int(hi))}" if money else f"{lo}..{hi}"
            raise ConfigError(file, where, f"{shown} is out of range {rng}: {usual}")
    for series, mult in cfg.fees.kalshi_series_multipliers.items():
        if not Decimal(0) <= mult <= Decimal(10):
            raise ConfigError(
                file,
                f"fees.kalshi_series_multipliers.{series}",
                f"{mult} is out of range 0..10: Kalshi's multipliers are 1, 0.5, ...",
            )
    for day, bps in cfg.fees.forecastex_coupon_rates_bps.items():
        if not 0 <= bps <= 2_000:
            raise ConfigError(
                file,
                f"fees.forecastex_coupon_rates_bps.{day}",
                f"{bps} is out of range 0..2000: basis points, e.g. 358 for 3.58%",
            )


def _check_coupon_dates(f: FeeParams, file: str | Path) -> None:
    import datetime as dt

    if f.kalshi_balance_precision_usd <= 0:
        raise ConfigError(
            file,
            "fees.kalshi_balance_precision_usd",
            f"{usd_text(f.kalshi_balance_precision_usd)} must be positive: "
            '"0.01" (non-direct members) or "0.0001" (direct members)',
        )

    for day in f.forecastex_coupon_rates_bps:
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            raise ConfigError(
                file,
                f"fees.forecastex_coupon_rates_bps.{day}",
                'is not a date: write the day the rate took effect, e.g. "2026-09-18" = 358',
            ) from None


def _check_legging(cfg: ExecutionConfig, file: str | Path) -> None:
    d, e = cfg.detector, cfg.execution
    if not Decimal(0) < d.book_depth_fraction <= Decimal(1):
        raise ConfigError(
            file,
            "detector.book_depth_fraction",
            f"{d.book_depth_fraction} is not a share of the book: use 0 < x <= 1 (0.5 = half)",
        )
    for where, value in (
        ("detector.slippage_buffer_usd_per_leg", d.slippage_buffer_usd_per_leg),
        ("risk.cooldown_ms_after_failure", cfg.risk.cooldown_ms_after_failure),
        ("execution.max_unhedged_ms", e.max_unhedged_ms),
    ):
        if value < 0:
            raise ConfigError(file, where, f"{value} is negative: use 0 or more")
    if e.min_partial_fill_contracts < 1:
        raise ConfigError(
            file,
            "execution.min_partial_fill_contracts",
            f"{e.min_partial_fill_contracts}: use a whole number of contracts >= 1",
        )


def _check_trading_day(r: RiskLimits, file: str | Path) -> None:
    try:
        ZoneInfo(r.trading_day_tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            file,
            "risk.trading_day_tz",
            f'{r.trading_day_tz!r} is not an IANA time zone (e.g. "America/New_York", "UTC")',
        ) from None
    hh, mm = divmod(r.trading_day_start_hhmm, 100)
    if not (0 <= hh < 24 and 0 <= mm < 60) or r.trading_day_start_hhmm < 0:
        raise ConfigError(
            file,
            "risk.trading_day_start_hhmm",
            f"{r.trading_day_start_hhmm} is not a time of day as hhmm (0 = midnight, 1700)",
        )


def load_execution_config(path: str | Path) -> ExecutionConfig:
    return parse_execution_config(read_toml(path), path)


def check_live_allowed(
    cfg: ExecutionConfig, *, confirm_flag: bool = False, env: dict[str, str] | None = None
) -> tuple[bool, str]:
    """Live needs ``mode = "live"`` in the config AND an explicit confirmation at start."""
    if cfg.mode is not Mode.LIVE:
        return True, f"mode is {cfg.mode.value}: no real orders"
    environ = os.environ if env is None else env
    if confirm_flag or environ.get(LIVE_CONFIRM_ENV) == LIVE_CONFIRM_VALUE:
        return True, "live trading confirmed"
    return False, (
        f'{cfg.source or "the execution config"} sets mode = "live", which sends real orders. '
        f"Confirm by passing --confirm-live or setting {LIVE_CONFIRM_ENV}={LIVE_CONFIRM_VALUE}; "
        'otherwise set mode = "paper" or "monitor".'
    )


def _coerce_cli_value(text: str) -> object:
    """A --set/--grid value as TOML would read it: ints, booleans, else the string."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        return text.strip()


def apply_overrides(
    cfg: ExecutionConfig, overrides: dict[str, str], source: str = "--set"
) -> ExecutionConfig:
    """Apply ``section.key=value`` overrides with the same conversions and errors as the
    TOML file (so a sweep grid means exactly what the config file would)."""
    sections: dict[str, dict[str, object]] = {}
    top: dict[str, object] = {}
    for key, text in overrides.items():
        section, _, name = key.partition(".")
        if not name:
            top[section] = _coerce_cli_value(text)
        else:
            sections.setdefault(section, {})[name] = _coerce_cli_value(text)
    new = cfg
    if top:
        built = build(ExecutionConfig, top, source)
        new = replace(new, **{k: getattr(built, k) for k in top})
    for section, values in sections.items():
        current = getattr(new, section, None)
        if current is None or section == "source":
            raise ConfigError(
                source, section, "unknown section; use detector, fees, risk, execution or paper"
            )
        built_section = build(type(current), values, source, section + ".")
        merged = replace(current, **{k: getattr(built_section, k) for k in values})
        new = replace(new, **{section: merged})
    if overrides:  # the same checks as a file gets, blamed on the override
        _check_trading_day(new.risk, source)
        _check_legging(new, source)
        _check_coupon_dates(new.fees, source)
        _check_bounds(new, source)
    return new


# ------------------------------------------------------------------- writing ---
def _toml_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(k: str) -> str:
    bare = k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k)
    return k if bare else _toml_str(k)


def _usd_text(m: int) -> str:
    """Money units as an exact dollar string ("0.015", "500")."""
    whole, frac = divmod(m, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") if frac else str(whole)


usd_text = _usd_text


def _toml_value(k: object, v: object) -> str:
    if k == "usd":
        assert isinstance(v, int)
        return _toml_str(_usd_text(v))
    if k == "decimal":
        assert isinstance(v, Decimal)
        return _toml_str(str(v))
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Mode):
        return _toml_str(v.value)
    return _toml_str(str(v))


def execution_config_toml(cfg: ExecutionConfig, header: str = "") -> str:
    """The config as TOML text that ``load_execution_config`` reads back exactly (money and
    decimals as strings so no float ever touches them)."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines.append(f"mode = {_toml_str(cfg.mode.value)}")
    for f in fields(cfg):
        if f.name in ("mode", "source"):
            continue
        section = getattr(cfg, f.name)
        lines += ["", f"[{f.name}]"]
        maps: list[tuple[str, str, dict[str, Any]]] = []
        for sf in fields(section):
            k = sf.metadata.get("kind")
            v = getattr(section, sf.name)
            if isinstance(k, str) and k.startswith("map:"):
                maps.append((sf.name, k[4:], v))
                continue
            lines.append(f"{sf.name} = {_toml_value(k, v)}")
        for name, sub_kind, mapping in maps:
            lines += ["", f"[{f.name}.{name}]"]
            lines += [
                f"{_toml_key(mk)} = {_toml_value(sub_kind, mv)}" for mk, mv in mapping.items()
            ]
    return "\n".join(lines) + "\n"


def write_execution_config(cfg: ExecutionConfig, path: str | Path, header: str = "") -> Path:
    """Write ``cfg`` as an execution config file; ``load_execution_config`` round-trips it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = execution_config_toml(cfg, header)
    if parse_execution_config(tomllib.loads(text), p) != replace(cfg, source=str(p)):
        raise ValueError("execution config does not round-trip; refusing to write it")
    p.write_text(text, encoding="utf-8")
    return p
