"""Evaluation: accuracy, balanced accuracy, per-class and many / medium / few-shot accuracy."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

GROUPS = ("many", "medium", "few")


@dataclass
class EvalResult:
    loss: float
    logits: np.ndarray  # (N, C) float32
    targets: np.ndarray  # (N,)

    def metrics(self, num_classes: int, groups: list[str], prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in
                summarize(self.logits.argmax(1), self.targets, num_classes, groups,
                          loss=self.loss).items()}


def per_class_counts(preds: np.ndarray, targets: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(support, correct) per class."""
    support = np.bincount(targets, minlength=num_classes)
    correct = np.bincount(targets[preds == targets], minlength=num_classes)
    return support, correct


def summarize(preds: np.ndarray, targets: np.ndarray, num_classes: int, groups: list[str],
              loss: float | None = None) -> dict[str, float]:
    """acc = correct / N; bal_acc = mean over classes present of per-class recall;
    many/medium/few_acc = mean per-class recall over that group's classes (NaN if none)."""
    support, correct = per_class_counts(preds, targets, num_classes)
    present = support > 0
    recall = np.where(present, correct / np.maximum(support, 1), np.nan)
    out = {"acc": float(correct.sum() / max(support.sum(), 1)),
           "bal_acc": float(np.nanmean(recall)) if present.any() else math.nan}
    for g in GROUPS:
        sel = np.array([x == g for x in groups]) & present
        out[f"{g}_acc"] = float(recall[sel].mean()) if sel.any() else math.nan
    if loss is not None:
        out["loss"] = float(loss)
    return out


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device,
             criterion: nn.Module | None = None) -> EvalResult:
    """Run ``model`` over ``loader``; loss is plain cross-entropy unless ``criterion`` is given."""
    model.eval()
    crit = criterion or nn.CrossEntropyLoss()
    total, n, all_logits, all_targets = 0.0, 0, [], []
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        logits = model(images)
        total += float(crit(logits, targets)) * len(targets)
        n += len(targets)
        all_logits.append(logits.float().cpu())
        all_targets.append(targets.cpu())
    if n == 0:
        return EvalResult(math.nan, np.zeros((0, 0), np.float32), np.zeros(0, np.int64))
    return EvalResult(total / n, torch.cat(all_logits).numpy(), torch.cat(all_targets).numpy())
