"""Losses, class weights, samplers and post-hoc corrections for long-tailed classification.

Everything the trainer and the dashboard need to fight class imbalance lives here:

* ``class_weights`` / ``parse_weight_table``: per-class weights (inverse, inverse-sqrt, effective
  number, or a table the user typed).
* ``create_loss`` / ``list_losses`` / ``drw_loss``: a registry of losses; each ``LossInfo`` carries
  what a page needs to build its widgets.
* ``SAMPLERS`` / ``class_sampling_probs`` / ``create_sampler``: instance-, class-, square-root- and
  progressively-balanced sampling.
* ``posthoc_logit_adjust`` / ``tune_posthoc_tau`` / ``tau_normalize`` / ``tune_tau_normalization``:
  corrections applied to a trained model, tuned for balanced accuracy on validation data.

The user-facing explanation of every method (formula, paper, when to use it) is
``docs/longtail-methods.md``.

Rule for class counts, shared by every function that takes them: each count must be a finite
number > 0. A class with zero training images cannot be weighted (1/0, log 0) and weights must never
be inf or NaN, so such counts raise ``ValueError`` naming the offending class index instead.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import WeightedRandomSampler

__all__ = [
    "WEIGHTING_METHODS",
    "class_weights",
    "parse_weight_table",
    "LossInfo",
    "list_losses",
    "create_loss",
    "drw_loss",
    "LogitAdjustedCrossEntropy",
    "FocalLoss",
    "LDAMLoss",
    "NormedLinear",
    "SAMPLERS",
    "class_sampling_probs",
    "create_sampler",
    "balanced_accuracy",
    "posthoc_logit_adjust",
    "tune_posthoc_tau",
    "tau_normalize",
    "tune_tau_normalization",
]

WEIGHTING_METHODS = ("none", "inverse", "inverse_sqrt", "effective_number")
DEFAULT_TAUS = np.linspace(0.0, 2.0, 21)


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------

def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


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


# --------------------------------------------------------------------------------------------------
# Class weights
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------------

def _split_target(loss_name: str, logits: torch.Tensor, target: torch.Tensor, soft_ok: bool):
    """Return (hard_target, soft_target), exactly one of them not None."""
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (N, C), got {tuple(logits.shape)}.")
    if target.dim() == 2 and target.is_floating_point():
        if not soft_ok:
            soft_losses = ", ".join(info.name for info in list_losses() if info.supports_soft_targets)
            raise ValueError(
                f"Loss {loss_name!r} needs class-index targets and does not support soft targets "
                f"(MixUp/CutMix). Losses that do: {soft_losses}."
            )
        if target.shape != logits.shape:
            raise ValueError(
                f"Soft targets must have the logits' shape {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}."
            )
        return None, target.to(logits.dtype)
    if target.dim() != 1 or target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(
            "target must be class indices of shape (N,) and integer dtype, or probabilities of "
            f"shape (N, C); got dtype {target.dtype} and shape {tuple(target.shape)}."
        )
    if target.shape[0] != logits.shape[0]:
        raise ValueError(f"Got {target.shape[0]} targets for {logits.shape[0]} logits rows.")
    return target.long(), None


def _check_classes(name: str, buffer: torch.Tensor | None, logits: torch.Tensor) -> None:
    if buffer is not None and buffer.shape[0] != logits.shape[1]:
        raise ValueError(
            f"Loss built for {buffer.shape[0]} classes got logits with {logits.shape[1]} classes."
        )


class LogitAdjustedCrossEntropy(nn.Module):
    """Cross-entropy of ``logits + adjustment`` with optional class weights and label smoothing.

    One module serves ``ce`` (no adjustment), ``weighted_ce`` (weights), ``balanced_softmax``
    (adjustment = log n_c) and ``logit_adjusted`` (adjustment = tau * log pi_c).

    With class weights the mean is weighted like ``F.cross_entropy(weight=...)``:
    sum_i w_{y_i} l_i / sum_i w_{y_i}. Soft targets q (MixUp/CutMix) use the same rule with
    w_{y_i} replaced by sum_c w_c q_ic, so one-hot soft targets give exactly the hard-target loss.
    """

    supports_soft_targets = True

    def __init__(
        self,
        *,
        name: str = "ce",
        adjustment: torch.Tensor | None = None,
        weights: torch.Tensor | None = None,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.name = name
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("adjustment", adjustment)
        self.register_buffer("weights", weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hard, soft = _split_target(self.name, logits, target, soft_ok=True)
        _check_classes(self.name, self.adjustment, logits)
        _check_classes(self.name, self.weights, logits)
        z = logits if self.adjustment is None else logits + self.adjustment.to(logits.dtype)
        weights = None if self.weights is None else self.weights.to(logits.dtype)
        if hard is not None:
            return F.cross_entropy(z, hard, weight=weights, label_smoothing=self.label_smoothing)

        num_classes = logits.shape[1]
        smoothed = soft * (1.0 - self.label_smoothing) + self.label_smoothing / num_classes
        per_class = -F.log_softmax(z, dim=1) * smoothed
        if weights is None:
            return per_class.sum() / logits.shape[0]
        return (per_class * weights).sum() / (soft * weights).sum()


class FocalLoss(nn.Module):
    """Focal loss as in the LDAM-DRW official code (Cao et al. 2019).

    l_i = w_{y_i} CE_i (per-sample cross-entropy, times the class weight if any); p = exp(-l_i);
    loss = mean_i (1 - p)^gamma * l_i. With weights, p is computed from the weighted CE, exactly
    like the official ``focal_loss(F.cross_entropy(..., weight=w, reduction='none'), gamma)``.
    """

    supports_soft_targets = False

    def __init__(self, *, name: str = "focal", gamma: float = 1.0, weights: torch.Tensor | None = None):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}.")
        self.name = name
        self.gamma = float(gamma)
        self.register_buffer("weights", weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hard, _ = _split_target(self.name, logits, target, soft_ok=False)
        _check_classes(self.name, self.weights, logits)
        weights = None if self.weights is None else self.weights.to(logits.dtype)
        ce = F.cross_entropy(logits, hard, weight=weights, reduction="none")
        p = torch.exp(-ce)
        return ((1.0 - p) ** self.gamma * ce).mean()


class LDAMLoss(nn.Module):
    """Label-distribution-aware margin loss (Cao et al., NeurIPS 2019), as in the official code.

    m_c ∝ n_c^(-1/4), scaled so that max_c m_c = max_margin. The target logit is reduced by its
    class margin, all logits are multiplied by ``scale``, then (weighted) cross-entropy.
    Logits are expected to be cosines in [-1, 1]: use ``NormedLinear`` as the classifier head.
    """

    supports_soft_targets = False

    def __init__(
        self,
        class_counts: Any,
        *,
        name: str = "ldam",
        max_margin: float = 0.5,
        scale: float = 30.0,
        weights: torch.Tensor | None = None,
    ):
        super().__init__()
        if not max_margin > 0:
            raise ValueError(f"max_margin must be > 0, got {max_margin}.")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}.")
        n = _validate_counts(class_counts)
        margins = 1.0 / np.sqrt(np.sqrt(n))
        margins = margins * (max_margin / margins.max())
        self.name = name
        self.scale = float(scale)
        self.register_buffer("margins", torch.tensor(margins, dtype=torch.float32))
        self.register_buffer("weights", weights)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        hard, _ = _split_target(self.name, logits, target, soft_ok=False)
        _check_classes(self.name, self.margins, logits)
        _check_classes(self.name, self.weights, logits)
        one_hot = F.one_hot(hard, logits.shape[1]).to(logits.dtype)
        adjusted = logits - one_hot * self.margins.to(logits.dtype)[hard].unsqueeze(1)
        weights = None if self.weights is None else self.weights.to(logits.dtype)
        return F.cross_entropy(self.scale * adjusted, hard, weight=weights)


class NormedLinear(nn.Module):
    """Cosine classifier head for LDAM: out = normalize(x) @ normalize(W, dim=0).

    As in the LDAM-DRW official code, ``weight`` has shape (in_features, out_features), i.e. the
    transpose of ``nn.Linear.weight``; outputs are cosines in [-1, 1] (LDAM multiplies them by its
    ``scale``). Use it in place of the last ``nn.Linear`` when training with ``"ldam"``.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        # Official init: uniform, then each column rescaled to unit norm.
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


@dataclass(frozen=True)
class LossInfo:
    """What a page needs to offer a loss: widgets are built from ``params`` (name -> default).

    Every loss also accepts ``weights=`` (per-class, or None), which is not listed in ``params``
    because it is set by the trainer (deferred re-weighting) or a weight table, not a widget.
    """

    name: str
    label: str
    description: str
    paper: str
    needs_class_counts: bool
    params: dict
    supports_soft_targets: bool


_LOSS_INFOS: tuple[LossInfo, ...] = (
    LossInfo(
        name="ce",
        label="Cross-entropy",
        description="Plain softmax cross-entropy; the baseline every method is compared with.",
        paper="",
        needs_class_counts=False,
        params={"label_smoothing": 0.0},
        supports_soft_targets=True,
    ),
    LossInfo(
        name="weighted_ce",
        label="Class-weighted cross-entropy",
        description=(
            "Cross-entropy with per-class weights from the class counts. method: one of "
            + ", ".join(WEIGHTING_METHODS)
            + "; beta is used by effective_number."
        ),
        paper="Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019",
        needs_class_counts=True,
        params={"method": "effective_number", "beta": 0.9999},
        supports_soft_targets=True,
    ),
    LossInfo(
        name="focal",
        label="Focal loss",
        description="Down-weights easy examples: (1 - p_t)^gamma * CE. gamma = 0 is plain CE.",
        paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
        needs_class_counts=False,
        params={"gamma": 1.0, "weights": None},
        supports_soft_targets=False,
    ),
    LossInfo(
        name="cb_focal",
        label="Class-balanced focal loss",
        description="Focal loss with effective-number class weights (1 - beta) / (1 - beta^n_c).",
        paper="Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019",
        needs_class_counts=True,
        params={"beta": 0.9999, "gamma": 1.0},
        supports_soft_targets=False,
    ),
    LossInfo(
        name="ldam",
        label="LDAM (label-distribution-aware margin)",
        description=(
            "Larger margins for rarer classes (m_c ∝ n_c^-1/4). Use with a NormedLinear "
            "(cosine) classifier head; best combined with deferred re-weighting (DRW)."
        ),
        paper="Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss, NeurIPS 2019",
        needs_class_counts=True,
        params={"max_margin": 0.5, "scale": 30.0, "weights": None},
        supports_soft_targets=False,
    ),
    LossInfo(
        name="balanced_softmax",
        label="Balanced softmax",
        description="Cross-entropy of logits + log n_c: trains for a balanced test distribution.",
        paper="Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition, NeurIPS 2020",
        needs_class_counts=True,
        params={},
        supports_soft_targets=True,
    ),
    LossInfo(
        name="logit_adjusted",
        label="Logit-adjusted cross-entropy",
        description="Cross-entropy of logits + tau * log pi_c; tau = 1 equals balanced softmax.",
        paper="Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021",
        needs_class_counts=True,
        params={"tau": 1.0},
        supports_soft_targets=True,
    ),
)
_LOSS_BY_NAME = {info.name: info for info in _LOSS_INFOS}


def list_losses() -> list[LossInfo]:
    """Every registered loss, in the order a page should offer them."""
    return [dataclasses.replace(info, params=dict(info.params)) for info in _LOSS_INFOS]


def _number_param(loss: str, key: str, value: Any, *, low: float | None = None,
                  low_inclusive: bool = True, high: float | None = None) -> float:
    if not _is_real(value) or not math.isfinite(value):
        raise ValueError(f"{loss}: {key} must be a finite number, got {value!r}.")
    if low is not None and (value < low if low_inclusive else value <= low):
        raise ValueError(f"{loss}: {key} must be {'>=' if low_inclusive else '>'} {low}, got {value!r}.")
    if high is not None and value >= high:
        raise ValueError(f"{loss}: {key} must be < {high}, got {value!r}.")
    return float(value)


def _log_counts(counts: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.log(counts), dtype=torch.float32)


def _build(name: str, counts: np.ndarray | None, p: dict, weights: torch.Tensor | None) -> nn.Module:
    if name == "ce":
        smoothing = _number_param(name, "label_smoothing", p["label_smoothing"], low=0.0, high=1.0)
        return LogitAdjustedCrossEntropy(name=name, weights=weights, label_smoothing=smoothing)
    if name == "weighted_ce":
        computed = class_weights(counts, p["method"], p["beta"])  # validates method and beta
        if weights is None:  # explicit weights (DRW, a weight table) replace the computed ones
            weights = torch.tensor(computed, dtype=torch.float32)
        return LogitAdjustedCrossEntropy(name=name, weights=weights)
    if name == "focal":
        gamma = _number_param(name, "gamma", p["gamma"], low=0.0)
        return FocalLoss(name=name, gamma=gamma, weights=weights)
    if name == "cb_focal":
        gamma = _number_param(name, "gamma", p["gamma"], low=0.0)
        beta = _check_beta(p["beta"])
        if weights is None:
            weights = torch.tensor(class_weights(counts, "effective_number", beta), dtype=torch.float32)
        return FocalLoss(name=name, gamma=gamma, weights=weights)
    if name == "ldam":
        max_margin = _number_param(name, "max_margin", p["max_margin"], low=0.0, low_inclusive=False)
        scale = _number_param(name, "scale", p["scale"], low=0.0, low_inclusive=False)
        return LDAMLoss(counts, name=name, max_margin=max_margin, scale=scale, weights=weights)
    if name == "balanced_softmax":
        return LogitAdjustedCrossEntropy(name=name, adjustment=_log_counts(counts), weights=weights)
    if name == "logit_adjusted":
        tau = _number_param(name, "tau", p["tau"])
        log_prior = torch.tensor(tau * np.log(counts / counts.sum()), dtype=torch.float32)
        return LogitAdjustedCrossEntropy(name=name, adjustment=log_prior, weights=weights)
    raise AssertionError(f"loss {name!r} is registered but has no builder")


def create_loss(name: str, class_counts: Any = None, **params: Any) -> nn.Module:
    """Build a registered loss; ``forward(logits, target)`` returns the batch-mean loss.

    ``params`` override the defaults in ``LossInfo.params``; every loss also takes ``weights=``
    (per-class array/tensor, or None), which replaces any weights the loss computes itself.
    Targets are class indices (N,) or, for losses with ``supports_soft_targets``, probabilities
    (N, C). Buffers (weights, log-priors, margins) move with ``.to(device)``.
    """
    info = _LOSS_BY_NAME.get(name)
    if info is None:
        raise ValueError(f"Unknown loss {name!r}. Valid losses: {', '.join(_LOSS_BY_NAME)}.")
    valid = [*info.params, "weights"]
    unknown = [key for key in params if key not in valid]
    if unknown:
        raise ValueError(
            f"Unknown parameter(s) {', '.join(unknown)} for loss {name!r}. "
            f"Valid parameters: {', '.join(valid)}."
        )
    if info.needs_class_counts and class_counts is None:
        raise ValueError(f"Loss {name!r} needs the training-set class counts (class_counts=...).")
    counts = None if class_counts is None else _validate_counts(class_counts)
    weights = _validate_weights(params.get("weights"), None if counts is None else len(counts))
    resolved = {k: v for k, v in {**info.params, **params}.items() if k != "weights"}
    return _build(name, counts, resolved, weights)


def drw_loss(name: str, class_counts: Any, params: Mapping[str, Any] | None = None,
             beta: float = 0.9999) -> nn.Module:
    """The same loss with effective-number class weights switched on (deferred re-weighting).

    Cao et al. 2019 train with unweighted loss first, then switch to this one for the last stage.
    """
    params = dict(params or {})
    if "weights" in params:
        raise ValueError("drw_loss sets the class weights itself; do not pass weights in params.")
    if class_counts is None:
        raise ValueError("Deferred re-weighting needs the training-set class counts.")
    weights = class_weights(class_counts, "effective_number", beta)
    return create_loss(name, class_counts, weights=weights, **params)


# --------------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Metrics and post-hoc corrections
# --------------------------------------------------------------------------------------------------

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
