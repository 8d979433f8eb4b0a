"""Knowledge distillation of a finished run (the teacher) into any registry model (the student).

``launch_distil(store, run_id, student=...)`` starts an ordinary training job (kind "distil", a
child of the teacher's run) through ``engine.train.fit``: the parent's resolved config with
``model`` = the student and ``distil_from`` = the parent. ``fit`` loads the teacher from its best
checkpoint (``weights_only=True``; frozen, eval mode), computes its logits on every training batch
as the student sees it (after augmentation and MixUp / CutMix), and wraps the run's own loss in
``DistillationLoss``:

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
           + (1 - alpha) * the run's own (long-tail) loss on the labels

``alpha`` (``kd_alpha``) is the weight of the teacher's term: 1 learns from the teacher only, 0
from the labels only (plain training). The T^2 factor (Hinton et al. 2015) keeps the soft term's
gradients on the same scale as the hard term's whatever the temperature. The KL is the batch mean
of each sample's KL divergence (``reduction="batchmean"``). LDAM's cosine heads output cosines in
[-1, 1]: their logits are multiplied by the loss scale (30 by default) first, as LDAM does.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from engine.config import ConfigError, TrainConfig, train_config_from_dict

if TYPE_CHECKING:
    from engine.store import Run


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * mean over the batch of KL(softmax(teacher / T) || softmax(student / T))."""
    T = float(temperature)
    return F.kl_div(F.log_softmax(student_logits / T, dim=1), F.log_softmax(teacher_logits.detach() / T, dim=1),
                    reduction="batchmean", log_target=True) * (T * T)


class DistillationLoss(nn.Module):
    """``forward(logits, targets, teacher_logits)``: alpha * kd_loss + (1 - alpha) * base(logits,
    targets). Without teacher logits it is the base loss."""

    def __init__(self, base: nn.Module, *, temperature: float = 4.0, alpha: float = 0.5) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}.")
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be between 0 and 1, got {alpha}.")
        self.base, self.temperature, self.alpha = base, float(temperature), float(alpha)
        self.logit_scale = float(getattr(base, "scale", 1.0))  # LDAM: cosines times its scale
        self.supports_soft_targets = getattr(base, "supports_soft_targets", False)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor,
                teacher_logits: torch.Tensor | None = None) -> torch.Tensor:
        hard = self.base(logits, targets)
        if teacher_logits is None:
            return hard
        soft = kd_loss(logits * self.logit_scale, teacher_logits, self.temperature)
        return self.alpha * soft + (1 - self.alpha) * hard


class Teacher(nn.Module):
    """A frozen model in eval mode whose forward gives (scaled) logits without autograd."""

    def __init__(self, model: nn.Module, logit_scale: float = 1.0) -> None:
        super().__init__()
        self.model, self.logit_scale = model.eval(), float(logit_scale)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "Teacher":
        return super().train(False)  # always eval: BatchNorm statistics and dropout fixed

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) * self.logit_scale


def load_teacher(run_id: str, data, device: torch.device | str = "cpu") -> Teacher:
    """The run's best checkpoint (pruned or not) as a frozen Teacher on ``device``. Refused when
    it was trained on other classes or another input (size, channels, normalisation)."""
    from engine import workspace
    from engine.models import model_from_checkpoint

    path = workspace.best_checkpoint(run_id)
    if not path.is_file():
        raise ConfigError(f"distil_from: run {run_id!r} has no checkpoint ({path} is missing). "
                          "Give the id of a finished run (see: taillab runs list).")
    ck = torch.load(path, map_location=device, weights_only=True)
    if list(ck["class_names"]) != list(data.class_names):
        raise ConfigError(f"distil_from: run {run_id} was trained over classes {ck['class_names']}; "
                          f"this run's are {data.class_names}. Distil on the same dataset.")
    spec = data.eval_spec.to_dict()
    if ck["eval_spec"] != spec:
        raise ConfigError(f"distil_from: run {run_id} expects input {ck['eval_spec']}; this run "
                          f"feeds {spec}. Use the teacher's input size and channels.")
    scale = 1.0
    if ck.get("normed_head"):
        scale = float(ck["config"].get("loss_params", {}).get("scale", 30.0))
    return Teacher(model_from_checkpoint(ck, device), scale).to(device)


def method_label(cfg: TrainConfig, *, teacher: str | None = None) -> str:
    epochs = f"{cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}"
    return (f"distillation of {teacher or 'the parent'} into {cfg.model}, T={cfg.kd_temperature:g}, "
            f"alpha={cfg.kd_alpha:g}, {epochs}")


def distil_config(parent, *, student: str, temperature: float = 4.0, alpha: float = 0.5,
                  epochs: int | None = None) -> TrainConfig:
    """The parent's resolved settings (data, loss, sampler, augmentation, schedule) for a fresh
    ``student`` taught by the parent. The learning rate and weight decay are re-resolved (auto)
    when the student starts from other weights than the parent did (pretrained or not)."""
    from engine.config import AUTO
    from engine.models import MODELS

    base = train_config_from_dict(parent.config)
    if student not in MODELS:
        raise ConfigError(f"Invalid student model {student!r}. Valid choices: {', '.join(MODELS)}.")
    pretrained = base.pretrained and MODELS[student].pretrained_on_disk
    changes = dict(name=f"{parent.name}-distil-{student}", model=student, distil_from=parent.id,
                   init_from=None, train_scope="all", prune={}, kd_temperature=temperature,
                   kd_alpha=alpha, pretrained=pretrained, threads=None, num_workers=None,
                   epochs=base.epochs if epochs is None else epochs)
    if pretrained != base.pretrained:
        changes.update(lr=None, weight_decay=None, optimizer=AUTO)
    return dataclasses.replace(base, **changes)


def launch_distil(store, run_id: str, *, student: str, temperature: float = 4.0, alpha: float = 0.5,
                  epochs: int | None = None, dashboard: bool = False) -> Run:
    """Start distilling a finished run into ``student`` as a worker process (kind "distil", a
    child of ``run_id``). Bad settings raise ConfigError before anything is stored."""
    from engine import jobs, workspace
    from engine.store import RunStatus

    parent = store.get_run(run_id)
    cfg = distil_config(parent, student=student, temperature=temperature, alpha=alpha, epochs=epochs)
    if parent.status != RunStatus.FINISHED or not workspace.best_checkpoint(run_id).is_file():
        raise ValueError(f"Run {run_id} is {parent.status} without a best checkpoint; distillation "
                         "needs a finished training run as the teacher.")
    return jobs.launch(cfg, store, kind="distil", parent_run_id=run_id, dashboard=dashboard)
