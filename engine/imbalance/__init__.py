"""Losses, class weights, samplers and post-hoc corrections for long-tailed classification.

One file per concern; this module only re-exports:

* ``weights``: ``class_weights`` / ``parse_weight_table`` (inverse, inverse-sqrt, effective
  number, or a table the user typed).
* ``losses``: ``create_loss`` / ``list_losses`` / ``loss_info`` / ``drw_loss``; each ``LossInfo``
  carries its builder and what it needs (class counts, a cosine head).
* ``samplers``: ``SAMPLERS`` / ``class_sampling_probs`` / ``create_sampler``.
* ``posthoc``: ``balanced_accuracy``, ``posthoc_logit_adjust`` / ``tune_posthoc_tau`` /
  ``tau_normalize`` / ``tune_tau_normalization``.
* ``_checks``: the class-count and weight checks they share.

The user-facing explanation of every method is ``docs/longtail-methods.md``.
"""
from engine.imbalance.losses import (
    FocalLoss, LDAMLoss, LogitAdjustedCrossEntropy, LossInfo, NormedLinear, create_loss, drw_loss,
    list_losses, loss_info,
)
from engine.imbalance.posthoc import (
    DEFAULT_TAUS, balanced_accuracy, posthoc_logit_adjust, tau_normalize, tune_posthoc_tau,
    tune_tau_normalization,
)
from engine.imbalance.samplers import SAMPLERS, class_sampling_probs, create_sampler
from engine.imbalance.weights import WEIGHTING_METHODS, class_weights, parse_weight_table

__all__ = [
    "WEIGHTING_METHODS", "class_weights", "parse_weight_table",
    "LossInfo", "list_losses", "loss_info", "create_loss", "drw_loss",
    "LogitAdjustedCrossEntropy", "FocalLoss", "LDAMLoss", "NormedLinear",
    "SAMPLERS", "class_sampling_probs", "create_sampler",
    "DEFAULT_TAUS", "balanced_accuracy", "posthoc_logit_adjust", "tune_posthoc_tau", "tau_normalize",
    "tune_tau_normalization",
]
