from pathlib import Path

import pytest

from arbkit.config._toml import ConfigError
from arbkit.config.execution_loader import (
    EXAMPLE_EXECUTION,
    LIVE_CONFIRM_ENV,
    LIVE_CONFIRM_VALUE,
    check_live_allowed,
    load_execution_config,
)
from arbkit.config.loader import EXAMPLE_SYMBOLS, load_symbol_map
from arbkit.model import Mode, Outcome


def test_examples_load() -> None:
    sm = load_symbol_map(EXAMPLE_SYMBOLS)
    assert len(sm) == 2
    inv = sm.symbols["NYC-HIGH-60"]
    assert inv.kalshi_yes_is is Outcome.NO
    assert inv.ibkr_equivalent(Outcome.YES) is Outcome.NO
    assert inv.ibkr_equivalent(Outcome.NO) is Outcome.YES
    assert inv.forecastex.yes_con_id == 713921696
    fed = sm.symbols["FED-DEC-CUT"]
    assert fed.forecastex.symbol == "FF" and str(fed.forecastex.strike) == "3.625"
    assert fed.equivalence.verified_by == "example"
    cfg = load_execution_config(EXAMPLE_EXECUTION)
    assert cfg.mode is Mode.MONITOR
    assert cfg.detector.min_edge_usd == 10_000
    assert cfg.risk.max_total_exposure_usd == 10_000 * 1_000_000


def test_default_mode_is_never_live(tmp_path: Path) -> None:
    p = tmp_path / "e.toml"
    p.write_text("")
    assert load_execution_config(p).mode is Mode.MONITOR


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('mode = "yolo"', "mode", "must be one of"),
        ('[detector]\nmin_edge_usd = "0.0000001"', "detector.min_edge_usd", "decimal places"),
        ('[detector]\nmin_edge_usd = "-1"', "detector.min_edge_usd", "negative"),
        ("[risk]\nmax_open_execution = 3", "risk.max_open_execution", "unknown setting"),
        ("[risk]\nmax_open_executions = 1.5", "risk.max_open_executions", "whole number"),
        ('[fees]\nkalshi_fee_rounding = "nearest"', "fees.kalshi_fee_rounding", "must be one of"),
        ("mode = ", "(syntax)", "not valid TOML"),
    ],
)
def test_bad_execution_config_names_file_field_problem(
    tmp_path: Path, text: str, field: str, words: str
) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_execution_config(p)
    msg = str(exc.value)
    assert str(p) in msg and field in msg and words in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_symbol_map(tmp_path / "nope.toml")


GOOD_SYMBOL = """
[symbols.A]
kalshi_ticker = "KX-A"
kalshi_yes_is = "yes"
resolution = 2030-01-01
[symbols.A.forecastex]
yes_con_id = 1
no_con_id = 2
"""


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        (
            ('kalshi_yes_is = "yes"', 'kalshi_yes_is = "maybe"'),
            "symbols.A.kalshi_yes_is",
            "must be",
        ),
        (("no_con_id = 2", "no_con_id = 1"), "symbols.A.forecastex.no_con_id", "different"),
        (
            ("no_con_id = 2", 'no_con_id = "x"'),
            "symbols.A.forecastex.no_con_id",
            "positive integer",
        ),
        (("resolution = 2030-01-01", ""), "symbols.A.resolution", "required"),
        (("resolution = 2030-01-01", 'resolution = "soon"'), "symbols.A.resolution", "ISO"),
        (('kalshi_ticker = "KX-A"', 'kalshi_tickr = "KX-A"'), "symbols.A.kalshi_tickr", "unknown"),
    ],
)
def test_bad_symbol_map(tmp_path: Path, patch: tuple[str, str], field: str, words: str) -> None:
    p = _write(tmp_path, GOOD_SYMBOL.replace(*patch))
    with pytest.raises(ConfigError) as exc:
        load_symbol_map(p)
    assert field in str(exc.value) and words in str(exc.value) and str(p) in str(exc.value)


def test_symbol_by_contract_fields(tmp_path: Path) -> None:
    text = GOOD_SYMBOL.replace(
        "yes_con_id = 1\nno_con_id = 2",
        'symbol = "FF"\nlast_trade_date = "20261209"\nstrike = 3.625',
    )
    spec = load_symbol_map(_write(tmp_path, text)).symbols["A"]
    assert spec.forecastex.strike is not None and str(spec.forecastex.strike) == "3.625"
    assert not spec.forecastex.by_con_id


def test_live_needs_config_and_confirmation(tmp_path: Path) -> None:
    cfg = load_execution_config(_write(tmp_path, 'mode = "live"'))
    ok, why = check_live_allowed(cfg, env={})
    assert not ok and "--confirm-live" in why and LIVE_CONFIRM_ENV in why
    assert check_live_allowed(cfg, confirm_flag=True, env={})[0]
    assert check_live_allowed(cfg, env={LIVE_CONFIRM_ENV: LIVE_CONFIRM_VALUE})[0]
    assert not check_live_allowed(cfg, env={LIVE_CONFIRM_ENV: "yes"})[0]
    paper = load_execution_config(_write(tmp_path, 'mode = "paper"'))
    assert check_live_allowed(paper, env={})[0]


def test_overrides_use_the_same_conversions() -> None:
    from arbkit.config.execution_loader import ExecutionConfig, apply_overrides

    cfg = apply_overrides(
        ExecutionConfig(),
        {
            "detector.min_edge_usd": "0.02",
            "detector.max_contracts_per_trade": "7",
            "fees.kalshi_taker_coefficient": "0.1",
            "execution.recheck_leg2_quote": "false",
            "mode": "paper",
        },
    )
    assert cfg.detector.min_edge_usd == 20_000 and cfg.detector.max_contracts_per_trade == 7
    assert str(cfg.fees.kalshi_taker_coefficient) == "0.1"
    assert cfg.execution.recheck_leg2_quote is False and cfg.mode is Mode.PAPER
    assert cfg.risk == ExecutionConfig().risk
    with pytest.raises(ConfigError, match=r"detector\.min_edg"):
        apply_overrides(ExecutionConfig(), {"detector.min_edg": "1"})
    with pytest.raises(ConfigError, match="unknown section"):
        apply_overrides(ExecutionConfig(), {"nope.x": "1"})


def test_equivalence_relation_must_match_the_orientation() -> None:
    from arbkit.config.loader import parse_symbol_map

    base = {
        "kalshi_ticker": "KX-1",
        "resolution": "2027-01-01",
        "forecastex": {"yes_con_id": 1, "no_con_id": 2},
    }
    bad = {
        "symbols": {"S": {**base, "kalshi_yes_is": "no", "equivalence": {"relation": "identical"}}}
    }
    with pytest.raises(ConfigError, match=r"symbols\.S\.equivalence\.relation.*contradicts"):
        parse_symbol_map(bad, "m.toml")
    typo = {"symbols": {"S": {**base, "kalshi_yes_is": "yes", "equivalence": {"relation": "same"}}}}
    with pytest.raises(ConfigError, match="must be one of identical"):
        parse_symbol_map(typo, "m.toml")
    ok = {
        "symbols": {"S": {**base, "kalshi_yes_is": "no", "equivalence": {"relation": "complement"}}}
    }
    spec = parse_symbol_map(ok, "m.toml").symbols["S"]
    assert spec.equivalence.missing_for_live() == [
        "resolution_source",
        "cutoff_time",
        "verified_by",
        "verified_on",
    ]


def test_coupon_rates_are_dated() -> None:
    from arbkit.config._toml import ConfigError
    from arbkit.config.execution_loader import parse_execution_config

    cfg = parse_execution_config({"fees": {"forecastex_coupon_rates_bps": {"2026-09-18": 358}}})
    assert cfg.fees.forecastex_coupon_rates_bps == {"2026-09-18": 358}
    with pytest.raises(ConfigError, match=r"forecastex_coupon_rates_bps\.Sept"):
        parse_execution_config({"fees": {"forecastex_coupon_rates_bps": {"Sept": 358}}})


def test_out_of_range_settings_are_refused_with_the_usual_value() -> None:
    """Typos that used to load silently: coefficient "7" (for 0.07), 0 contracts."""
    import pytest

    from arbkit.config._toml import ConfigError
    from arbkit.config.execution_loader import (
        ExecutionConfig,
        apply_overrides,
        parse_execution_config,
    )

    with pytest.raises(ConfigError, match=r"kalshi_taker_coefficient: 7 is out of range.*0\.07"):
        parse_execution_config({"fees": {"kalshi_taker_coefficient": "7"}}, "x.toml")
    with pytest.raises(ConfigError, match=r"max_contracts_per_trade: 0 is out of range"):
        parse_execution_config({"detector": {"max_contracts_per_trade": 0}}, "x.toml")
    with pytest.raises(ConfigError, match=r"--set: detector.min_edge_usd: 5 is out of range"):
        apply_overrides(ExecutionConfig(), {"detector.min_edge_usd": "5"})
    # the shipped defaults and example stay inside every bound
    parse_execution_config({}, "defaults")
