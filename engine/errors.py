"""User-input errors and the validators that raise them: one home, imported by config, augment,
imbalance and the data pipeline alike (no module imports another just for its checks).

Messages follow one rule: name the setting, say what is accepted, show what was given.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence


class ConfigError(ValueError):
    """A setting has a value we do not accept. The message names the allowed values."""


def is_real(value: Any) -> bool:
    """A real number that is not a bool (True is an int in Python)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"Invalid {name} {value!r}. Valid choices: {', '.join(allowed)}.")


def number(name: str, value: Any) -> float:
    """A finite number."""
    if not is_real(value) or math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    return float(value)


def positive(name: str, value: Any, *, allow_zero: bool = False) -> None:
    if not is_real(value) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}.")


def whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    """A whole number in [low, high]; 3.0 is accepted as 3 (TOML and JSON may write it so)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be a whole number {span}, got {value!r}.")
    return value


def in_range(name: str, value: Any, low: float, high: float) -> float:
    x = number(name, value)
    if not low <= x <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value!r}.")
    return x


def pair(name: str, value: Any, low: float, high: float, *, open_low: bool = False,
         open_high: bool = False) -> tuple[float, float]:
    """(a, b) with low <= a <= b <= high (strict where open_*)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{name} must be a pair [min, max], got {value!r}.")
    a, b = (number(name, x) for x in value)
    ok = (a > low if open_low else a >= low) and (b < high if open_high else b <= high) and a <= b
    if not ok:
        rng = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise ConfigError(f"{name} must be [min, max] with min <= max, both in {rng}; got {list(value)!r}.")
    return a, b
