"""Balanced accuracy and the post-hoc corrections of a trained model (logit adjustment,
tau-normalisation), each tuned for balanced accuracy on validation data."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from engine.imbalance._checks import _validate_counts

DEFAULT_TAUS = np.linspace(0.0, 2.0, 21)


def _numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def balanced_accuracy(preds: Any, targets: Any, num_classes: int) -> float:
    """Mean per-class recall over the classes that occur in ``targets``."""
    preds = _numpy(preds).astype(np.int64).ravel()
    targets = _numpy(targets).astype(np.int64).ravel()
    if preds.shape != targets.shape or len(targets) == 0:
        raise ValueError(f"Need as many predictions as targets (> 0), got {len(preds)} and {len(targets)}.")
    if targets.min() < 0 or targets.max() >= num_classes:
        raise ValueError(f"targets must be class indices in [0, {num_classes}).")
    total = np.bincount(targets, minlength=num_classes)
    correct = np.bincount(targets[preds == targets], minlength=num_classes)
    present = total > 0
    return float(np.mean(correct[present] / total[present]))


def posthoc_logit_adjust(logits: Any, class_counts: Any, tau: float) -> Any:
    """logits - tau * log(pi_c), pi_c = n_c / sum n (Menon et al. 2021). Keeps torch/numpy type."""
    n = _validate_counts(class_counts)
    shift = float(tau) * np.log(n / n.sum())
    if not isinstance(logits, torch.Tensor):
        logits = np.asarray(logits, dtype=np.float64)
    if logits.shape[-1] != len(n):
        raise ValueError(f"logits have {logits.shape[-1]} classes, class_counts {len(n)}.")
    if isinstance(logits, torch.Tensor):
        return logits - torch.as_tensor(shift, dtype=logits.dtype, device=logits.device)
    return logits - shift


def _best(scores: list[float], taus: np.ndarray) -> tuple[float, float]:
    best = int(np.argmax(scores))  # first maximum: the smallest correction among ties
    return float(taus[best]), float(scores[best])


def tune_posthoc_tau(val_logits: Any, val_targets: Any, class_counts: Any,
                     taus: Any = DEFAULT_TAUS) -> tuple[float, float]:
    """The tau of ``posthoc_logit_adjust`` with the best validation balanced accuracy.

    Returns (best_tau, balanced_accuracy); ties go to the smallest tau in ``taus`` order.
    """
    logits = _numpy(val_logits).astype(np.float64)
    targets = _numpy(val_targets)
    taus = np.asarray(taus, dtype=np.float64).ravel()
    if len(taus) == 0:
        raise ValueError("taus is empty.")
    scores = [
        balanced_accuracy(posthoc_logit_adjust(logits, class_counts, tau).argmax(1), targets, logits.shape[1])
        for tau in taus
    ]
    return _best(scores, taus)


def tau_normalize(weight: Any, tau: float) -> Any:
    """W_c / ||W_c||^tau for each class row of a (C, D) classifier weight (Kang et al. 2020).

    tau = 0 leaves W unchanged, tau = 1 gives unit-norm rows. Keeps torch/numpy type.
    """
    if isinstance(weight, torch.Tensor):
        norms = weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return weight / norms.pow(tau)
    weight = np.asarray(weight, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(weight, axis=1, keepdims=True), 1e-12)
    return weight / norms**tau


def tune_tau_normalization(val_features: Any, val_targets: Any, weight: Any, bias: Any = None,
                           taus: Any = DEFAULT_TAUS) -> tuple[float, float]:
    """The tau of ``tau_normalize`` with the best validation balanced accuracy.

    Logits are features @ tau_normalize(W, tau).T + bias (bias unchanged, may be None).
    Returns (best_tau, balanced_accuracy); ties go to the smallest tau in ``taus`` order.
    """
    features = _numpy(val_features).astype(np.float64)
    targets = _numpy(val_targets)
    weight = _numpy(weight).astype(np.float64)
    bias = np.zeros(weight.shape[0]) if bias is None else _numpy(bias).astype(np.float64)
    taus = np.asarray(taus, dtype=np.float64).ravel()
    if len(taus) == 0:
        raise ValueError("taus is empty.")
    if features.shape[1] != weight.shape[1]:
        raise ValueError(f"features have {features.shape[1]} dims, weight rows {weight.shape[1]}.")
    scores = [
        balanced_accuracy((features @ tau_normalize(weight, tau).T + bias).argmax(1), targets, weight.shape[0])
        for tau in taus
    ]
    return _best(scores, taus)
