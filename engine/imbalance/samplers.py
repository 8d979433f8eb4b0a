"""Samplers: instance-, class-, square-root- and progressively-balanced drawing of training images."""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from engine.imbalance._checks import _validate_counts


SAMPLERS: dict[str, str] = {
    "instance": "Instance-balanced: every image equally likely (plain shuffle).",
    "class_balanced": "Class-balanced: every class equally likely, then an image within it.",
    "sqrt": "Square-root: class drawn with probability ∝ sqrt(n_c).",
    "progressive": "Progressively balanced: moves from instance- to class-balanced over training.",
}


def _check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}. Valid samplers: {', '.join(SAMPLERS)}.")


def class_sampling_probs(counts: Any, name: str, epoch: int = 0, total_epochs: int = 1) -> np.ndarray:
    """Probability that a draw picks each CLASS: p_j = n_j^q / sum_i n_i^q.

    q = 1 for ``"instance"``, q = 0 for ``"class_balanced"``, q = 1/2 for ``"sqrt"``.
    ``"progressive"`` (Kang et al., ICLR 2020): p_j(t) = (1 - t/T) p_j^IB + (t/T) p_j^CB with
    t = ``epoch`` and T = ``total_epochs``; t = 0 is instance-balanced and t = T class-balanced
    (with 0-based epochs the last one, T - 1, is (T-1)/T of the way).
    """
    _check_sampler(name)
    n = _validate_counts(counts)
    instance = n / n.sum()
    balanced = np.full_like(n, 1.0 / len(n))
    if name == "instance":
        return instance
    if name == "class_balanced":
        return balanced
    if name == "sqrt":
        root = np.sqrt(n)
        return root / root.sum()
    if isinstance(total_epochs, bool) or not isinstance(total_epochs, numbers.Integral) or total_epochs < 1:
        raise ValueError(f"total_epochs must be an integer >= 1, got {total_epochs!r}.")
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or not 0 <= epoch <= total_epochs:
        raise ValueError(f"epoch must be an integer in [0, total_epochs={total_epochs}], got {epoch!r}.")
    t = epoch / total_epochs
    return (1.0 - t) * instance + t * balanced


def create_sampler(
    labels: Any,
    name: str,
    *,
    epoch: int = 0,
    total_epochs: int = 1,
    seed: int = 0,
    num_samples: int | None = None,
) -> WeightedRandomSampler | None:
    """A seeded sampler drawing with replacement, or None for ``"instance"`` (caller shuffles).

    Each image of class j gets weight p_j / n_j, so classes are drawn with
    ``class_sampling_probs`` and images uniformly within a class. Only classes present in
    ``labels`` take part. For ``"progressive"`` build a new sampler every epoch.
    """
    _check_sampler(name)
    labels = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1 or len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError("labels must be a non-empty 1-D sequence of integer class indices.")
    if num_samples is not None and (not isinstance(num_samples, numbers.Integral) or num_samples < 1):
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")
    if name == "instance":
        return None
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    probs = class_sampling_probs(counts, name, epoch=epoch, total_epochs=total_epochs)
    per_sample = probs[index] / counts[index]
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return WeightedRandomSampler(
        torch.as_tensor(per_sample, dtype=torch.double),
        num_samples=len(labels) if num_samples is None else int(num_samples),
        replacement=True,
        generator=generator,
    )


