"""Multi-task learning: a second head on the backbone's features learns a second label.

A CSV manifest whose header names one more column than path, label and split
(``path,label,split,parity``) gives every image a second label (engine.data.sources). ``fit``
then attaches an ``AuxHead``: a linear layer fed, through a forward pre-hook, with the same
features the model's own classifier (``engine.models.classifier``) receives, so every registry
model gets one without being rebuilt. The model itself is untouched: its logits are the main
task's, everything else (evaluation, post-hoc tools, prediction, export) sees only them, and its
``state_dict`` is the single-task one. The head's weights go into the checkpoint separately
(``aux_head_state``).

Loss: ``MultiTaskLoss`` = the run's loss on the main label + ``weight`` x cross-entropy of the
second head (weight ``cfg.aux_loss_weight``, default 0.5). Metrics: ``aux_acc`` and
``aux_bal_acc`` next to the main ones (``val/aux_acc`` each epoch, ``test/aux_acc`` at the end).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.errors import ConfigError
from engine.models import classifier

AUX_LOSS_WEIGHT = 0.5  # default weight of the second head's cross-entropy in the summed loss


def aux_loss_weight(cfg) -> float:
    """The second head's loss weight: ``cfg.aux_loss_weight`` where the config has that field,
    else the default 0.5. A finite number >= 0; 0 leaves the second head untrained (it is
    still evaluated, at chance)."""
    w = getattr(cfg, "aux_loss_weight", None)
    w = AUX_LOSS_WEIGHT if w is None else w
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
        raise ConfigError(f"aux_loss_weight must be a number >= 0, got {w!r}.")
    return float(w)


class AuxHead(nn.Module):
    """A linear head on the input of ``model``'s classifier. After each forward of the model,
    ``logits`` holds this head's output for that batch."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        head = classifier(model)
        in_features = getattr(head, "in_features", None)
        if not isinstance(in_features, int):
            raise ConfigError(f"Multi-task: cannot tell the feature size of {type(model).__name__}'s "
                              "classifier, so no second head can be attached.")
        self.fc = nn.Linear(in_features, num_classes)
        self.logits: torch.Tensor | None = None
        self._handle = head.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple) -> None:
        self.logits = self.fc(args[0].flatten(1))

    def detach_hook(self) -> None:
        """Stop feeding this head (the model runs as a single-task model again)."""
        self._handle.remove()


class MultiTaskLoss(nn.Module):
    """``base(logits, targets, *rest) + weight * CE(second head's logits, aux_targets)``."""

    def __init__(self, base: nn.Module, head: AuxHead, weight: float) -> None:
        super().__init__()
        self.base, self.head, self.weight = base, head, weight

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, *rest,
                aux_targets: torch.Tensor | None = None) -> torch.Tensor:
        loss = self.base(logits, targets, *rest)
        if aux_targets is None or self.head.logits is None:
            return loss
        return loss + self.weight * F.cross_entropy(self.head.logits.float(), aux_targets)


def aux_summary(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """aux_acc = correct / N; aux_bal_acc = mean recall over the second label's values present."""
    if len(targets) == 0:
        return {"aux_acc": math.nan, "aux_bal_acc": math.nan}
    preds = logits.argmax(1)
    k = logits.shape[1]
    support = np.bincount(targets, minlength=k)
    correct = np.bincount(targets[preds == targets], minlength=k)
    present = support > 0
    return {"aux_acc": float(correct.sum() / support.sum()),
            "aux_bal_acc": float((correct[present] / support[present]).mean())}


@dataclass(frozen=True)
class AuxReport:
    """The second head on one split, per value of the second label."""
    task: str  # the column's name
    class_names: list[str]
    support: list[int]  # images with this value
    correct: list[int]  # of them, predicted as it
    acc: float
    bal_acc: float

    @property
    def recall(self) -> list[float]:
        return [c / s if s else math.nan for c, s in zip(self.correct, self.support)]

    def rows(self) -> list[dict]:
        return [{"value": n, "support": s, "correct": c, "recall": r}
                for n, s, c, r in zip(self.class_names, self.support, self.correct, self.recall)]


def aux_report(task: str, class_names: list[str], logits: np.ndarray, targets: np.ndarray) -> AuxReport:
    k = len(class_names)
    preds = logits.argmax(1) if len(targets) else np.zeros(0, np.int64)
    support = np.bincount(targets, minlength=k)
    correct = np.bincount(targets[preds == targets], minlength=k)
    s = aux_summary(logits, targets) if len(targets) else {"aux_acc": math.nan, "aux_bal_acc": math.nan}
    return AuxReport(task, list(class_names), support.tolist(), correct.tolist(), s["aux_acc"], s["aux_bal_acc"])


# --- the store: what the worker records for the dashboard -----------------------------------------

AUX_SPLIT = "test_aux"  # class-results split holding the second head's per-value test results
AUX_TAG = "aux_task"  # run tag: the second label's task name


def log_aux_results(store, run_id: str, state, result) -> None:
    """Record a finished multi-task fit's second head in the store: its task name (tag
    ``aux_task``) and its per-value test results (class results of split ``test_aux``; training
    counts are the second label's). The metrics ``test/aux_acc`` / ``test/aux_bal_acc`` come
    with the other test metrics. Nothing for a single-task fit."""
    rep = result.aux
    if rep is None:
        return
    d = state.data
    train_counts = np.bincount(d.splits["train"].aux_labels, minlength=len(rep.class_names)).tolist()
    store.set_tags(run_id, {AUX_TAG: rep.task})
    store.log_class_results(run_id, AUX_SPLIT, class_names=rep.class_names, train_counts=train_counts,
                            support=rep.support, correct=rep.correct,
                            many_threshold=d.config.many_threshold, few_threshold=d.config.few_threshold)
