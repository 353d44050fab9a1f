"""Shared TOML → dataclass machinery so every config error names file, field and fix."""

from __future__ import annotations

import dataclasses
import enum
import tomllib
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from arbkit.model import ConversionError, parse_money, parse_price

T = TypeVar("T")


class ConfigError(ValueError):
    """One message a user can act on: file, field, value, what is wrong."""

    def __init__(self, file: str | Path, field: str, problem: str) -> None:
        self.file = str(file)
        self.field = field
        self.problem = problem
        super().__init__(f"{file}: {field}: {problem}")


def read_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(p, "(file)", "file not found; check the path you passed")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, "(syntax)", f"not valid TOML: {exc}") from exc


def _usd(v: object, name: str) -> int:
    return parse_money(v, name, signed=False)


def _price(v: object, name: str) -> int:
    return parse_price(v, name)


def _decimal(v: object, name: str) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ConversionError(name, v, "expected a decimal number (write it as a string)")
    try:
        d = Decimal(repr(v) if isinstance(v, float) else str(v))
    except InvalidOperation as exc:
        raise ConversionError(name, v, "not a decimal number") from exc
    if not d.is_finite() or d < 0:
        raise ConversionError(name, v, "must be a finite, non-negative number")
    return d


def _int(v: object, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConversionError(name, v, "expected a whole number")
    if v < 0:
        raise ConversionError(name, v, "must not be negative")
    return v


def _bool(v: object, name: str) -> bool:
    if not isinstance(v, bool):
        raise ConversionError(name, v, "expected true or false")
    return v


def _str(v: object, name: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConversionError(name, v, "expected a non-empty string")
    return v


CONVERTERS: dict[str, Callable[[object, str], Any]] = {
    "usd": _usd,
    "price": _price,
    "decimal": _decimal,
    "int": _int,
    "bool": _bool,
    "str": _str,
}


def kind(k: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """Declare a config field's converter: ``min_edge_usd: int = kind("usd", 10_000)``."""
    if isinstance(default, dict | list):
        return dataclasses.field(
            default_factory=lambda: type(default)(default), metadata={"kind": k}, **kw
        )
    return dataclasses.field(default=default, metadata={"kind": k}, **kw)


def build(cls: type[T], table: Mapping[str, Any], file: str | Path, prefix: str = "") -> T:
    """Build dataclass ``cls`` from a TOML table; unknown keys are errors (typos in risk
    limits must not silently fall back to defaults)."""
    if not isinstance(table, Mapping):
        raise ConfigError(file, prefix or "(root)", f"expected a table, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(
            file,
            f"{prefix}{unknown[0]}",
            f"unknown setting; known settings here: {', '.join(sorted(fields))}",
        )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in table:
            continue
        path = f"{prefix}{name}"
        raw = table[name]
        k = f.metadata.get("kind")
        try:
            default = f.default_factory() if callable(f.default_factory) else None
            if k is None and dataclasses.is_dataclass(default):
                kwargs[name] = build(type(default), raw, file, path + ".")
            elif isinstance(k, type) and issubclass(k, enum.Enum):
                try:
                    kwargs[name] = k(raw)
                except ValueError:
                    choices = ", ".join(repr(m.value) for m in k)
                    raise ConversionError(path, raw, f"must be one of {choices}") from None
            elif isinstance(k, str) and k.startswith("map:"):
                conv = CONVERTERS[k[4:]]
                if not isinstance(raw, Mapping):
                    raise ConversionError(path, raw, "expected a table of name = value")
                kwargs[name] = {str(key): conv(val, f"{path}.{key}") for key, val in raw.items()}
            elif isinstance(k, str) and k.startswith("choice:"):
                options = k[7:].split("|")
                if raw not in options:
                    raise ConversionError(path, raw, f"must be one of {', '.join(options)}")
                kwargs[name] = raw
            elif isinstance(k, str):
                kwargs[name] = CONVERTERS[k](raw, path)
            else:
                kwargs[name] = raw
        except ConversionError as exc:
            raise ConfigError(file, exc.field_name, f"{exc.value!r} {exc.problem}") from exc
    return cls(**kwargs)
