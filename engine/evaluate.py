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
    aux_logits: np.ndarray | None = None  # (N, K): the second head's (multi-task), else None
    aux_targets: np.ndarray | None = None  # (N,) the second label

    def metrics(self, num_classes: int, groups: list[str], prefix: str = "") -> dict[str, float]:
        """The summary figures; with a second head also aux_acc and aux_bal_acc."""
        out = summarize(self.logits.argmax(1), self.targets, num_classes, groups, loss=self.loss)
        if self.aux_logits is not None:
            from engine.multitask import aux_summary
            out.update(aux_summary(self.aux_logits, self.aux_targets))
        return {f"{prefix}{k}": v for k, v in out.items()}


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
             criterion: nn.Module | None = None, aux=None) -> EvalResult:
    """Run ``model`` over ``loader``; loss is plain cross-entropy unless ``criterion`` is given.
    ``aux`` (an engine.multitask.AuxHead on ``model``, with a loader yielding the second label as
    a third element): the second head's logits and targets are kept too."""
    model.eval()
    crit = criterion or nn.CrossEntropyLoss()
    total, n, all_logits, all_targets, aux_logits, aux_targets = 0.0, 0, [], [], [], []
    for batch in loader:
        images, targets = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        logits = model(images)
        total += float(crit(logits, targets)) * len(targets)
        n += len(targets)
        all_logits.append(logits.float().cpu())
        all_targets.append(targets.cpu())
        if aux is not None:
            aux_logits.append(aux.logits.float().cpu())
            aux_targets.append(batch[2].cpu())
    if n == 0:
        k = aux.fc.out_features if aux is not None else 0
        return EvalResult(math.nan, np.zeros((0, 0), np.float32), np.zeros(0, np.int64),
                          *((np.zeros((0, k), np.float32), np.zeros(0, np.int64)) if aux is not None else ()))
    if aux is not None:
        return EvalResult(total / n, torch.cat(all_logits).numpy(), torch.cat(all_targets).numpy(),
                          torch.cat(aux_logits).numpy(), torch.cat(aux_targets).numpy())
    return EvalResult(total / n, torch.cat(all_logits).numpy(), torch.cat(all_targets).numpy())


# --- a run's evaluation report: per-class precision / recall / F1 with intervals, confusion ------

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (E. B. Wilson, "Probable inference, the law
    of succession, and statistical inference", JASA 22, 1927):
    centre = (p + z²/2n) / (1 + z²/n), half width = z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²).
    Unlike p ± z·sqrt(p(1-p)/n) it never collapses to a point at 0% or 100%: 3 of 3 gives
    [0.4385, 1.0]. ``n == 0`` gives (nan, nan)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class ClassReport:
    """Per-class figures on one split (lists indexed by class) and the confusion matrix
    (rows = true class, columns = predicted class)."""
    class_names: list[str]
    groups: list[str]  # many / medium / few, from training counts and the thresholds
    train_counts: list[int]
    precision: list[float]
    precision_ci: list[tuple[float, float]]
    recall: list[float]
    recall_ci: list[tuple[float, float]]
    f1: list[float]
    support: list[int]  # test images of the class
    predicted: list[int]  # test images predicted as the class
    confusion: np.ndarray  # (C, C) int64 counts

    def rows(self) -> list[dict]:
        """One dict per class (pandas-free), NaN where a figure is undefined (no support or no
        prediction)."""
        return [{"class": self.class_names[i], "group": self.groups[i], "train": self.train_counts[i],
                 "support": self.support[i], "predicted": self.predicted[i],
                 "precision": self.precision[i], "precision_lo": self.precision_ci[i][0],
                 "precision_hi": self.precision_ci[i][1], "recall": self.recall[i],
                 "recall_lo": self.recall_ci[i][0], "recall_hi": self.recall_ci[i][1], "f1": self.f1[i]}
                for i in range(len(self.class_names))]

    def normalized_confusion(self) -> np.ndarray:
        """Rows divided by their sums (each row with support sums to 1; a row without is 0)."""
        m = self.confusion.astype(np.float64)
        s = m.sum(1, keepdims=True)
        return np.divide(m, s, out=np.zeros_like(m), where=s > 0)


def class_report(logits: np.ndarray, targets: np.ndarray, class_names: list[str],
                 train_counts: list[int], many: int = 100, few: int = 20) -> ClassReport:
    """Precision, recall, F1 and support per class (scikit-learn), each precision and recall with a
    95% Wilson interval, and the confusion matrix. ``logits`` (N, C) or predictions (N,)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    from engine.data.stats import shot_group

    C = len(class_names)
    targets = np.asarray(targets, dtype=np.int64)
    preds = np.asarray(logits).argmax(1) if np.ndim(logits) == 2 else np.asarray(logits, dtype=np.int64)
    labels = list(range(C))
    p, r, f, s = precision_recall_fscore_support(targets, preds, labels=labels, zero_division=np.nan)
    cm = confusion_matrix(targets, preds, labels=labels)
    tp = np.diag(cm)
    predicted = cm.sum(0)
    support = np.asarray(s)
    return ClassReport(
        class_names=[str(c) for c in class_names],
        groups=[shot_group(int(n), many, few) for n in train_counts],
        train_counts=[int(n) for n in train_counts],
        precision=[float(x) for x in p], precision_ci=[wilson_interval(int(tp[i]), int(predicted[i])) for i in labels],
        recall=[float(x) for x in r], recall_ci=[wilson_interval(int(tp[i]), int(support[i])) for i in labels],
        f1=[float(x) for x in f], support=[int(x) for x in support], predicted=[int(x) for x in predicted],
        confusion=cm.astype(np.int64))


def reliability(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> dict[str, list]:
    """Reliability diagram data with ``bins`` equal-width confidence bins, the same bins as
    engine.compress.measure.ece: per bin its centre, count, accuracy and mean confidence (NaN for
    an empty bin)."""
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    edges = np.linspace(0.0, 1.0, bins + 1)
    out = {"centre": list((edges[:-1] + edges[1:]) / 2), "count": [0] * bins,
           "accuracy": [math.nan] * bins, "confidence": [math.nan] * bins}
    if len(targets) == 0:
        return out
    conf = probs.max(1)
    correct = (probs.argmax(1) == targets).astype(np.float64)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    for b in range(bins):
        sel = idx == b
        if sel.any():
            out["count"][b] = int(sel.sum())
            out["accuracy"][b] = float(correct[sel].mean())
            out["confidence"][b] = float(conf[sel].mean())
    return out
