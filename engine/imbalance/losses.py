"""Long-tail losses and their registry: ``create_loss`` / ``list_losses`` / ``loss_info`` / ``drw_loss``.

Each ``LossInfo`` carries what a page needs to build its widgets, its builder and what it needs
from the trainer (class counts, a cosine head). The user-facing explanation of every method
(formula, paper, when to use it) is ``docs/longtail-methods.md``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.imbalance._checks import _check_beta, _is_real, _validate_counts, _validate_weights
from engine.imbalance.weights import WEIGHTING_METHODS, class_weights


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
    """A registered loss: what a page needs to offer it (widgets are built from ``params``, name ->
    default), how to build it, and what it needs from the trainer, so the training loop asks the
    registry instead of testing loss names.

    ``build(counts, params, weights)`` gets validated class counts (or None), the resolved params
    and the per-class weights tensor (or None). Every loss also accepts ``weights=`` in
    ``create_loss``, which is not listed in ``params`` because it is set by the trainer (deferred
    re-weighting) or a weight table, not a widget.
    """

    name: str
    label: str
    description: str
    paper: str
    needs_class_counts: bool
    params: dict
    supports_soft_targets: bool
    build: Callable[[np.ndarray | None, dict, torch.Tensor | None], nn.Module] = field(repr=False, compare=False,
                                                                                    default=None)
    cosine_head: bool = False  # the model's last layer must be a NormedLinear (LDAM)
    smoothing: bool = False  # takes label_smoothing= (the cross-entropy family)


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


def _smoothing(name: str, p: dict) -> float:
    return _number_param(name, "label_smoothing", p.get("label_smoothing", 0.0), low=0.0, high=1.0)


def _ce(counts, p, weights):
    return LogitAdjustedCrossEntropy(name="ce", weights=weights, label_smoothing=_smoothing("ce", p))


def _weighted_ce(counts, p, weights):
    computed = class_weights(counts, p["method"], p["beta"])  # validates method and beta
    if weights is None:  # explicit weights (DRW, a weight table) replace the computed ones
        weights = torch.tensor(computed, dtype=torch.float32)
    return LogitAdjustedCrossEntropy(name="weighted_ce", weights=weights,
                                     label_smoothing=_smoothing("weighted_ce", p))


def _focal(counts, p, weights):
    return FocalLoss(name="focal", gamma=_number_param("focal", "gamma", p["gamma"], low=0.0), weights=weights)


def _cb_focal(counts, p, weights):
    gamma = _number_param("cb_focal", "gamma", p["gamma"], low=0.0)
    beta = _check_beta(p["beta"])
    if weights is None:
        weights = torch.tensor(class_weights(counts, "effective_number", beta), dtype=torch.float32)
    return FocalLoss(name="cb_focal", gamma=gamma, weights=weights)


def _ldam(counts, p, weights):
    max_margin = _number_param("ldam", "max_margin", p["max_margin"], low=0.0, low_inclusive=False)
    scale = _number_param("ldam", "scale", p["scale"], low=0.0, low_inclusive=False)
    return LDAMLoss(counts, name="ldam", max_margin=max_margin, scale=scale, weights=weights)


def _balanced_softmax(counts, p, weights):
    return LogitAdjustedCrossEntropy(name="balanced_softmax", adjustment=_log_counts(counts), weights=weights,
                                     label_smoothing=_smoothing("balanced_softmax", p))


def _logit_adjusted(counts, p, weights):
    tau = _number_param("logit_adjusted", "tau", p["tau"])
    log_prior = torch.tensor(tau * np.log(counts / counts.sum()), dtype=torch.float32)
    return LogitAdjustedCrossEntropy(name="logit_adjusted", adjustment=log_prior, weights=weights,
                                     label_smoothing=_smoothing("logit_adjusted", p))


_LOSS_INFOS: tuple[LossInfo, ...] = (
    LossInfo(
        name="ce",
        label="Cross-entropy",
        description="Plain softmax cross-entropy; the baseline every method is compared with.",
        paper="",
        needs_class_counts=False,
        params={"label_smoothing": 0.0},
        supports_soft_targets=True,
        build=_ce,
        smoothing=True,
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
        build=_weighted_ce,
        smoothing=True,
    ),
    LossInfo(
        name="focal",
        label="Focal loss",
        description="Down-weights easy examples: (1 - p_t)^gamma * CE. gamma = 0 is plain CE.",
        paper="Lin et al., Focal Loss for Dense Object Detection, ICCV 2017",
        needs_class_counts=False,
        params={"gamma": 1.0, "weights": None},
        supports_soft_targets=False,
        build=_focal,
    ),
    LossInfo(
        name="cb_focal",
        label="Class-balanced focal loss",
        description="Focal loss with effective-number class weights (1 - beta) / (1 - beta^n_c).",
        paper="Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019",
        needs_class_counts=True,
        params={"beta": 0.9999, "gamma": 1.0},
        supports_soft_targets=False,
        build=_cb_focal,
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
        build=_ldam,
        cosine_head=True,
    ),
    LossInfo(
        name="balanced_softmax",
        label="Balanced softmax",
        description="Cross-entropy of logits + log n_c: trains for a balanced test distribution.",
        paper="Ren et al., Balanced Meta-Softmax for Long-Tailed Visual Recognition, NeurIPS 2020",
        needs_class_counts=True,
        params={},
        supports_soft_targets=True,
        build=_balanced_softmax,
        smoothing=True,
    ),
    LossInfo(
        name="logit_adjusted",
        label="Logit-adjusted cross-entropy",
        description="Cross-entropy of logits + tau * log pi_c; tau = 1 equals balanced softmax.",
        paper="Menon et al., Long-Tail Learning via Logit Adjustment, ICLR 2021",
        needs_class_counts=True,
        params={"tau": 1.0},
        supports_soft_targets=True,
        build=_logit_adjusted,
        smoothing=True,
    ),
)
_LOSS_BY_NAME = {info.name: info for info in _LOSS_INFOS}


def list_losses() -> list[LossInfo]:
    """Every registered loss, in the order a page should offer them."""
    return [dataclasses.replace(info, params=dict(info.params)) for info in _LOSS_INFOS]


def loss_info(name: str) -> LossInfo:
    info = _LOSS_BY_NAME.get(name)
    if info is None:
        raise ValueError(f"Unknown loss {name!r}. Valid losses: {', '.join(_LOSS_BY_NAME)}.")
    return info


def create_loss(name: str, class_counts: Any = None, **params: Any) -> nn.Module:
    """Build a registered loss; ``forward(logits, target)`` returns the batch-mean loss.

    ``params`` override the defaults in ``LossInfo.params``; every loss also takes ``weights=``
    (per-class array/tensor, or None), which replaces any weights the loss computes itself.
    Targets are class indices (N,) or, for losses with ``supports_soft_targets``, probabilities
    (N, C). Buffers (weights, log-priors, margins) move with ``.to(device)``.
    """
    info = loss_info(name)
    valid = list(dict.fromkeys([*info.params, "weights", *(["label_smoothing"] if info.smoothing else [])]))
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
    return info.build(counts, resolved, weights)


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


