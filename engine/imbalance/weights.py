"""Per-class weights: inverse, inverse square root, effective number, or a table the user typed."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from engine.imbalance._checks import _check_beta, _is_real, _to_list, _validate_counts

WEIGHTING_METHODS = ("none", "inverse", "inverse_sqrt", "effective_number")


def class_weights(counts: Any, method: str, beta: float = 0.9999) -> np.ndarray:
    """Per-class loss weights from training-set class counts, normalised to sum to the class count.

    Methods (n_c = images of class c):

    * ``"none"``: w_c = 1.
    * ``"inverse"``: w_c ∝ 1 / n_c.
    * ``"inverse_sqrt"``: w_c ∝ 1 / sqrt(n_c).
    * ``"effective_number"``: w_c ∝ (1 - beta) / (1 - beta^n_c) (Cui et al., CVPR 2019).
      beta = 0 gives equal weights; beta -> 1 approaches ``"inverse"``.

    Every count must be a finite number > 0: a class with zero training images cannot be weighted,
    and weights must never be inf or NaN. A zero, negative, NaN, infinite or non-numeric count
    raises ``ValueError`` naming the class index. ``beta`` outside [0, 1) raises ``ValueError``.
    """
    if method not in WEIGHTING_METHODS:
        raise ValueError(
            f"Unknown weighting method {method!r}. Valid methods: {', '.join(WEIGHTING_METHODS)}."
        )
    beta = _check_beta(beta)
    n = _validate_counts(counts)
    if method == "none":
        raw = np.ones_like(n)
    elif method == "inverse":
        raw = 1.0 / n
    elif method == "inverse_sqrt":
        raw = 1.0 / np.sqrt(n)
    elif beta == 0.0:
        raw = np.ones_like(n)  # (1 - 0) / (1 - 0^n) = 1
    else:
        # 1 - beta^n computed as -expm1(n log beta): no cancellation when beta is close to 1.
        raw = (1.0 - beta) / -np.expm1(n * math.log(beta))
    return raw / raw.sum() * len(n)


def parse_weight_table(table: Mapping[str, Any] | Sequence[Any], class_names: Sequence[str]) -> np.ndarray:
    """Turn a user-typed weight table into a float64 array ordered like ``class_names``.

    ``table`` is either a mapping ``{class name: weight}`` covering every class exactly, or a list
    with one weight per class in ``class_names`` order. Numbers and numeric strings ("2.5") are
    accepted. A weight that is missing, zero, negative, NaN/inf or not a number raises
    ``ValueError`` naming the class; so does a name that is not a class. Values are returned as
    typed (not normalised).
    """
    names = [str(name) for name in class_names]
    if isinstance(table, Mapping):
        unknown = [str(key) for key in table if str(key) not in names]
        if unknown:
            raise ValueError(
                f"Weight table names unknown classes: {', '.join(unknown)}. "
                f"Classes: {', '.join(names)}."
            )
        by_name = {str(key): value for key, value in table.items()}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise ValueError(f"Weight table has no weight for class(es): {', '.join(missing)}.")
        raw = [by_name[name] for name in names]
    else:
        raw = _to_list(table, "Weight table")
        if len(raw) < len(names):
            missing = names[len(raw):]
            raise ValueError(f"Weight table has no weight for class(es): {', '.join(missing)}.")
        if len(raw) > len(names):
            raise ValueError(f"Weight table has {len(raw)} weights for {len(names)} classes.")

    weights = []
    for name, value in zip(names, raw):
        number = value
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                number = None
        if not _is_real(number):
            raise ValueError(f"Weight for class {name!r} is not a number: {value!r}.")
        if not math.isfinite(number):
            raise ValueError(f"Weight for class {name!r} is {value!r}: weights must be finite.")
        if number <= 0:
            raise ValueError(f"Weight for class {name!r} is {value!r}: weights must be > 0.")
        weights.append(float(number))
    return np.asarray(weights, dtype=np.float64)


