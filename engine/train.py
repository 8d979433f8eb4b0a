"""Training: ``fit(cfg, callbacks)`` reads top to bottom like torchvision's reference script.

data -> model -> criterion -> optimizer -> schedule -> loop (train_one_epoch, evaluate) ->
best checkpoint on the test split. Logging to the store, cancelling and checkpointing are
callbacks, so the CLI, the worker and the benchmarks share this one loop.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from engine import imbalance, workspace
from engine.config import ConfigError, TrainConfig, to_dict
from engine.data.datasets import ImageDataset, PreparedData, balanced_subset, plan_data, prepare_data
from engine.evaluate import EvalResult, evaluate, per_class_counts
from engine.models import classifier, create_model, fit_to_state_dict
from engine.transforms import EvalSpec, eval_transform


class CancelFit(Exception):
    """Raised by a callback to stop training cleanly (the run ends as cancelled)."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class FitState:
    cfg: TrainConfig
    data: PreparedData
    model: nn.Module
    device: torch.device
    total_steps: int
    steps_per_epoch: int
    epoch: int = 0
    step: int = 0  # global optimiser steps done
    loss: float = math.nan  # last step's training loss
    started: float = field(default_factory=time.time)
    best_bal_acc: float = -1.0
    history: list[dict] = field(default_factory=list)  # per-epoch metric dicts
    auto: str = ""  # what the automatic settings resolved to, in one line ("" when none was auto)
    val_note: str = ""  # how validation runs each epoch (the whole split, or a balanced subset)


@dataclass
class FitResult:
    state: FitState
    test: dict[str, float]
    test_eval: EvalResult
    val_eval: EvalResult


class Callback:
    def on_fit_start(self, state: FitState) -> None: ...
    def on_step_end(self, state: FitState) -> None: ...
    def on_epoch_end(self, state: FitState, metrics: dict[str, float]) -> None: ...
    def on_fit_end(self, state: FitState, result: FitResult) -> None: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(step: int, *, total: int, warmup: int, peak: float, schedule: str) -> float:
    """1) linear warmup from peak/warmup to peak over ``warmup`` steps; 2) then constant, or
    cosine decay from peak to 0 at step ``total``."""
    if warmup and step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "constant":
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    # No weight decay on norms and biases (the usual practice; decaying BN scales hurts).
    # Frozen parameters (train_scope="classifier") are left out: momentum and weight decay
    # would otherwise still move them.
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim > 1]
    no_decay = [p for p in trainable if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise RuntimeError(f"Invalid optimizer {cfg.optimizer}. Only sgd and adamw are supported.")


def build_transforms(cfg: TrainConfig, spec: EvalSpec, train_counts: list[int]):
    """(train transform taking (img, label), eval transform, batch transform or None)."""
    ev = eval_transform(spec)
    if not cfg.augment:
        return (lambda img, label: ev(img)), ev, None
    from engine import augment
    acfg = augment.AugmentConfig.from_dict(cfg.augment)
    augment.validate_for_training(acfg, batch_size=cfg.batch_size, input_size=spec.size,
                                  image_size=spec.size)
    train_t = augment.build_train_transform(acfg, size=spec.size, channels=spec.channels,
                                            mean=spec.mean, std=spec.std, class_counts=train_counts)
    batch_t = augment.build_batch_transform(acfg, num_classes=len(train_counts), size=spec.size)
    return train_t, ev, batch_t


class ArrayBatches:
    """Batches straight from in-memory uint8 images (N, C, H, W) at the model's input size:
    index, convert, normalise, with no per-image Python work. What a DataLoader does for
    decoded arrays without per-image augmentation, several times faster on small images."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, spec: EvalSpec, *, batch_size: int,
                 order: Callable[[], torch.Tensor] | None = None, drop_last: bool = False) -> None:
        self.images, self.labels, self.batch_size, self.order, self.drop_last = images, labels, batch_size, order, drop_last
        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)

    @classmethod
    def from_split(cls, split, spec: EvalSpec, **kw) -> "ArrayBatches":
        x = torch.from_numpy(split.images)
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        return cls(x.contiguous(), torch.from_numpy(split.labels), spec, **kw)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        idx = self.order() if self.order is not None else torch.arange(len(self.labels))
        for i in range(len(self)):
            b = idx[i * self.batch_size:(i + 1) * self.batch_size]
            yield (self.images[b].float() - self.mean) * self.inv_std, self.labels[b]


def make_loader(dataset, *, batch_size: int, shuffle: bool, sampler=None, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle and sampler is None,
                      sampler=sampler, generator=g, num_workers=num_workers,
                      drop_last=drop_last, persistent_workers=num_workers > 0)


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    loader: DataLoader, device: torch.device, *,
                    set_lr: Callable[[], None] | None = None,
                    batch_transform: Callable | None = None,
                    on_step: Callable[[float], None] | None = None,
                    teacher: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
    """One pass over ``loader``. Returns {"loss", "acc"} (acc on the un-mixed hard labels).
    ``teacher`` (distillation): its logits on the same, possibly augmented, batch are passed to
    ``criterion`` as a third argument."""
    model.train()
    for m in model.modules():  # a frozen BatchNorm (cRT's backbone) keeps its running statistics
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
            m.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for images, targets in loader:
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        hard = targets
        if batch_transform is not None:
            images, targets = batch_transform(images, targets)
        if set_lr is not None:
            set_lr()
        logits = model(images)
        loss = criterion(logits, targets) if teacher is None else criterion(logits, targets, teacher(images))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            raise NonFiniteLoss(
                f"The training loss became {value} (not a finite number). The learning rate "
                f"({optimizer.param_groups[0]['lr']:.3g}) is probably too high for this model and "
                "loss: lower it (e.g. by 10x) or add warmup.")
        n = len(hard)
        total_loss += value * n
        correct += int((logits.argmax(1) == hard).sum())
        seen += n
        if on_step is not None:
            on_step(value)
    return {"loss": total_loss / max(seen, 1), "acc": correct / max(seen, 1)}


def save_checkpoint(path: Path, state: FitState, *, metrics: dict) -> None:
    """Atomic: write a temp file in the same folder, then rename over the target."""
    d = state.data
    payload = {
        "model_state": state.model.state_dict(),
        "config": to_dict(state.cfg),
        "model": state.cfg.model,
        "normed_head": imbalance.loss_info(state.cfg.loss).cosine_head,
        "num_classes": d.num_classes,
        "class_names": d.class_names,
        "train_counts": d.counts("train"),
        "eval_spec": d.eval_spec.to_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "metrics": metrics,
        "dataset_version": d.version_id,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


class Checkpointer(Callback):
    """Keeps ``last.pt`` and ``best.pt`` (best validation balanced accuracy) in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.best = -math.inf

    def on_epoch_end(self, state: FitState, metrics: dict[str, float]) -> None:
        save_checkpoint(self.folder / "last.pt", state, metrics=metrics)
        score = metrics.get("val/bal_acc", math.nan)
        if math.isnan(score):
            score = -metrics.get("train/loss", math.inf)
        if score > self.best or not (self.folder / "best.pt").exists():
            self.best = score
            save_checkpoint(self.folder / "best.pt", state, metrics=metrics)


def init_from_run(model: nn.Module, cfg: TrainConfig, data: PreparedData,
                  device: torch.device) -> None:
    """Load ``cfg.init_from``'s best checkpoint into ``model``. With train_scope "classifier":
    load all but the last layer (that keeps its fresh initialisation) and freeze what was loaded."""
    path = workspace.best_checkpoint(cfg.init_from)
    if not path.is_file():
        raise ConfigError(f"init_from: run {cfg.init_from!r} has no checkpoint ({path} is missing). "
                          "Give the id of a finished run (see: taillab runs list).")
    ck = torch.load(path, map_location=device, weights_only=True)
    if ck["model"] != cfg.model or list(ck["class_names"]) != list(data.class_names):
        raise ConfigError(
            f"init_from: run {cfg.init_from} is a {ck['model']} over classes {ck['class_names']}; "
            f"this run is a {cfg.model} over {data.class_names}. Use the same model and dataset.")
    state = ck["model_state"]
    fit_to_state_dict(model, state)  # a pruned parent: its channel counts
    if cfg.train_scope == "all":
        try:
            model.load_state_dict(state)
        except RuntimeError as e:  # e.g. LDAM's cosine head vs. a linear one
            raise ConfigError(f"init_from: the checkpoint of run {cfg.init_from} does not fit this "
                              f"model (was it trained with another loss head?): {e}") from e
        return
    head = classifier(model)
    prefix = next(n for n, m in model.named_modules() if m is head) + "."
    backbone = {k: v for k, v in state.items() if not k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    if unexpected or any(not k.startswith(prefix) for k in missing):
        raise ConfigError(f"init_from: the backbone of run {cfg.init_from} does not fit this model "
                          f"(missing {missing}, unexpected {unexpected}).")
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)


def _emit(callbacks: Sequence[Callback], event: str, *args) -> None:
    for cb in callbacks:
        getattr(cb, event)(*args)


VAL_PER_CLASS = 200  # per-epoch validation: at most this many images per class ...
VAL_SUBSET_OVER = 2  # ... when the split holds more than this many times as many


def resolve_for_data(cfg: TrainConfig, data: PreparedData | None, *, dashboard: bool = False
                     ) -> tuple[TrainConfig, PreparedData, str]:
    """Settings left at auto resolved from the data (engine.defaults), and the data prepared at
    the resolved input size. Returns (config, data, the one-line summary or "")."""
    from engine.defaults import resolve

    if data is None:
        plan = plan_data(cfg.data)
        res = resolve(cfg, plan.profile, dashboard=dashboard) if cfg.auto_fields else None
        cfg = res.config if res else cfg
        data = prepare_data(cfg.data, plan=plan)
    else:
        res = resolve(cfg, data.profile, dashboard=dashboard) if cfg.auto_fields and data.profile else None
        cfg = res.config if res else cfg
    if cfg.auto_fields:  # data given without a profile: fill in what it was prepared with
        import dataclasses
        cfg = dataclasses.replace(cfg, data=data.config)
    return cfg, data, res.summary if res else ""


def fit(cfg: TrainConfig, callbacks: Sequence[Callback] = (), *,
        data: PreparedData | None = None, checkpoint_dir: Path | None = None) -> FitResult:
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)

    # data (and the settings the data decides)
    cfg, data, auto = resolve_for_data(cfg, data)
    # OpenMP threads spin-wait: on a small machine that also serves the dashboard, one thread
    # per spare core is much faster than one per core (3x measured on 2 shared cores).
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 2) - 1))
    counts = data.counts("train")
    groups = data.groups()
    spec = data.eval_spec
    train_t, eval_t, batch_t = build_transforms(cfg, spec, counts)
    train_labels = data.splits["train"].labels
    eval_bs = max(cfg.batch_size, 256)
    workers = cfg.num_workers or 0
    drop_last = batch_t is not None and len(train_labels) > cfg.batch_size  # MixUp needs pairs
    val_split = data.splits["val"]
    C = data.num_classes
    val_note = f"validation each epoch on all {len(val_split):,} images"
    if len(val_split) > VAL_SUBSET_OVER * VAL_PER_CLASS * C:
        # A large validation split would dominate short epochs: a fixed, class-balanced subset
        # each epoch (model selection), the whole split at the end.
        from engine.data.datasets import Split
        pick = balanced_subset(val_split.labels, VAL_PER_CLASS, 0)
        val_epoch_split = Split(labels=val_split.labels[pick],
                                images=None if val_split.images is None else val_split.images[pick],
                                root=val_split.root, paths=[val_split.paths[i] for i in pick] if val_split.paths else [])
        val_note = (f"validation each epoch on a fixed balanced subset ({len(pick):,} of "
                    f"{len(val_split):,} images, at most {VAL_PER_CLASS} per class); the whole split at the end")
    else:
        val_epoch_split = val_split

    def eval_loader(split):
        if split.images is not None:
            return ArrayBatches.from_split(split, spec, batch_size=eval_bs)
        return make_loader(ImageDataset(split, spec.channels, eval_t), batch_size=eval_bs, shuffle=False,
                           num_workers=workers)

    val_loader, val_epoch_loader = eval_loader(val_split), eval_loader(val_epoch_split)
    test_loader = eval_loader(data.splits["test"])
    fast = data.splits["train"].images is not None and not cfg.augment
    train_arrays = ArrayBatches.from_split(data.splits["train"], spec, batch_size=cfg.batch_size,
                                           drop_last=drop_last) if fast else None
    train_ds = ImageDataset(data.splits["train"], spec.channels, train_t, pass_label=True)

    # model
    model = create_model(cfg.model, num_classes=data.num_classes, in_channels=spec.channels,
                         input_size=spec.size, pretrained=cfg.pretrained,
                         normed_head=imbalance.loss_info(cfg.loss).cosine_head).to(device)
    if cfg.init_from:
        init_from_run(model, cfg, data, device)
    compress_callbacks: list[Callback] = []
    if cfg.prune:  # on init_from's weights, before the optimizer holds the parameters
        from engine.compress.prune import apply_pruning
        compress_callbacks = apply_pruning(model, cfg.prune, spec, device)

    # criterion (deferred re-weighting swaps it at cfg.drw_epoch); distillation wraps it
    teacher, wrap = None, (lambda c: c)
    if cfg.distil_from:
        from engine.compress.distil import DistillationLoss, load_teacher
        teacher = load_teacher(cfg.distil_from, data, device)
        wrap = lambda c: DistillationLoss(c, temperature=cfg.kd_temperature, alpha=cfg.kd_alpha)  # noqa: E731
    criterion = wrap(imbalance.create_loss(cfg.loss, class_counts=counts, **cfg.loss_params).to(device))

    # optimizer + per-step schedule
    optimizer = build_optimizer(cfg, model)
    n_train = len(train_labels)
    steps_per_epoch = n_train // cfg.batch_size if drop_last else math.ceil(n_train / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    state = FitState(cfg, data, model, device, total_steps=total, steps_per_epoch=steps_per_epoch,
                     auto=auto, val_note=val_note)
    callbacks = compress_callbacks + list(callbacks) + ([Checkpointer(checkpoint_dir)] if checkpoint_dir else [])

    def set_lr() -> None:
        lr = lr_at(state.step, total=total, warmup=warmup, peak=cfg.lr, schedule=cfg.scheduler)
        for g in optimizer.param_groups:
            g["lr"] = lr

    def on_step(loss: float) -> None:
        state.step += 1
        state.loss = loss
        _emit(callbacks, "on_step_end", state)

    _emit(callbacks, "on_fit_start", state)
    for epoch in range(cfg.epochs):
        state.epoch = epoch
        if cfg.drw_epoch is not None and epoch == cfg.drw_epoch:
            criterion = wrap(imbalance.drw_loss(cfg.loss, counts, dict(cfg.loss_params)).to(device))
        sampler = imbalance.create_sampler(train_labels, cfg.sampler, epoch=epoch,
                                           total_epochs=cfg.epochs, seed=cfg.seed + epoch)
        if train_arrays is not None:
            g = torch.Generator().manual_seed(cfg.seed + epoch)
            train_arrays.order = (lambda: torch.as_tensor(list(sampler))) if sampler is not None else \
                (lambda: torch.randperm(n_train, generator=g))
            loader = train_arrays
        else:
            loader = make_loader(train_ds, batch_size=cfg.batch_size, shuffle=True, sampler=sampler,
                                 seed=cfg.seed + epoch, num_workers=workers, drop_last=drop_last)
        tr = train_one_epoch(model, criterion, optimizer, loader, device, set_lr=set_lr,
                             batch_transform=batch_t, on_step=on_step, teacher=teacher)
        val = evaluate(model, val_epoch_loader, device)
        metrics = {"train/loss": tr["loss"], "train/acc": tr["acc"],
                   **val.metrics(data.num_classes, groups, prefix="val/"),
                   "lr": optimizer.param_groups[0]["lr"]}
        state.history.append(metrics)
        _emit(callbacks, "on_epoch_end", state, metrics)

    # final: the best checkpoint (by validation balanced accuracy) on the test split
    best = Path(checkpoint_dir) / "best.pt" if checkpoint_dir else None
    if best is not None and best.exists():
        model.load_state_dict(torch.load(best, map_location=device, weights_only=True)["model_state"])
    test_eval = evaluate(model, test_loader, device)
    val_eval = evaluate(model, val_loader, device)
    test = test_eval.metrics(data.num_classes, groups)
    result = FitResult(state, test, test_eval, val_eval)
    _emit(callbacks, "on_fit_end", state, result)
    return result


def class_breakdown(result: EvalResult, num_classes: int) -> tuple[list[int], list[int]]:
    if len(result.targets) == 0:
        return [0] * num_classes, [0] * num_classes
    support, correct = per_class_counts(result.logits.argmax(1), result.targets, num_classes)
    return support.tolist(), correct.tolist()
