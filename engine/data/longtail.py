"""Long-tailed subsets of a balanced dataset (the CIFAR-LT construction of Cao et al. 2019)."""
from __future__ import annotations

import math

import numpy as np


def longtail_counts(n_max: int, num_classes: int, ratio: float, profile: str = "exp") -> list[int]:
    """Images per class, class 0 the largest.

    exp:  n_i = floor(n_max * ratio^(-i / (C - 1)))   (CIFAR-10/100-LT)
    step: the first half of the classes get n_max, the rest floor(n_max / ratio)   (Buda et al.)
    """
    if num_classes < 1 or n_max < 1:
        raise ValueError("Need at least one class and n_max >= 1.")
    if not ratio >= 1:
        raise ValueError(f"The imbalance ratio must be >= 1, got {ratio}.")
    if profile == "exp":
        if num_classes == 1:
            return [n_max]
        return [int(math.floor(n_max * ratio ** (-i / (num_classes - 1)) + 1e-9))
                for i in range(num_classes)]
    if profile == "step":
        half = num_classes // 2
        return [n_max] * (num_classes - half) + [int(n_max // ratio)] * half
    raise ValueError(f"Invalid profile {profile!r}. Valid choices: exp, step.")


def longtail_indices(labels: np.ndarray, counts: list[int], seed: int) -> np.ndarray:
    """A seeded random subset of each class c with counts[c] members (sorted indices)."""
    rng = np.random.default_rng(seed)
    picked = []
    for c, n in enumerate(counts):
        idx = np.flatnonzero(labels == c)
        if n > len(idx):
            raise ValueError(f"Class {c} has {len(idx)} images, fewer than the {n} requested.")
        picked.append(rng.choice(idx, size=n, replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
