"""Input checks shared by the imbalance package: class counts and per-class weights.

Rule for class counts, shared by every function that takes them: each count must be a finite
number > 0. A class with zero training images cannot be weighted (1/0, log 0) and weights must never
be inf or NaN, so such counts raise ``ValueError`` naming the offending class index instead.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch


from engine.errors import is_real as _is_real  # noqa: E402,F401 — one home for the number check


def _to_list(values: Any, what: str) -> list:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().tolist()
    elif isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{what} must be a sequence of numbers (one per class), got {values!r}.")
    return list(values)


def _validate_counts(counts: Any) -> np.ndarray:
    """Return counts as float64, or raise ValueError naming the first bad class index."""
    values = _to_list(counts, "Class counts")
    if not values:
        raise ValueError("Class counts are empty: need one count per class.")
    for index, value in enumerate(values):
        if isinstance(value, list):
            raise ValueError(f"Class counts must be a flat list, class {index} has {value!r}.")
        if not _is_real(value):
            raise ValueError(f"Class count of class {index} is not a number: {value!r}.")
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"Class count of class {index} is {value}: counts must be finite.")
        if value <= 0:
            raise ValueError(
                f"Class {index} has count {value}: every class needs at least one training image "
                "(a class with zero images cannot be weighted; remove it or add images)."
            )
    return np.asarray(values, dtype=np.float64)


def _check_beta(beta: Any) -> float:
    if not _is_real(beta) or math.isnan(beta) or not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta!r} (0.9999 is the usual choice).")
    return float(beta)


def _validate_weights(weights: Any, num_classes: int | None) -> torch.Tensor | None:
    if weights is None:
        return None
    values = _to_list(weights, "weights")
    for index, value in enumerate(values):
        if not _is_real(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"weights[{index}] = {value!r}: class weights must be finite and > 0.")
    if not values:
        raise ValueError("weights are empty: need one weight per class.")
    if num_classes is not None and len(values) != num_classes:
        raise ValueError(f"Got {len(values)} class weights for {num_classes} classes.")
    return torch.tensor(values, dtype=torch.float32)


