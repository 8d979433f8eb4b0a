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
from engine.models import classifier, create_model, fit_to_state_dict, load_weights_file
from engine.multitask import AuxHead, AuxReport, MultiTaskLoss, aux_loss_weight, aux_report
from engine.schedules import EarlyStopping, Plateau, lr_at  # noqa: F401 — lr_at re-exported
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
    optimizer: torch.optim.Optimizer | None = None
    plateau: Plateau | None = None
    early: EarlyStopping | None = None
    scaler: "torch.amp.GradScaler | None" = None
    notes: list[str] = field(default_factory=list)  # what else the run should say (weights loaded, early stop)
    stopped_early: int | None = None  # the epoch (1-based) after which early stopping ended training
    start_epoch: int = 0  # > 0 when resumed from a checkpoint
    last_val: EvalResult | None = None  # this epoch's validation outputs (per-class bars while training)
    images_seen: int = 0  # training images processed by this process (images per second)
    aux: AuxHead | None = None  # multi-task: the second head (engine.multitask), else None


@dataclass
class FitResult:
    state: FitState
    test: dict[str, float]
    test_eval: EvalResult
    val_eval: EvalResult
    aux: AuxReport | None = None  # multi-task: the second head per value on the test split


class Callback:
    def on_fit_start(self, state: FitState) -> None: ...
    def on_step_end(self, state: FitState) -> None: ...
    def on_epoch_end(self, state: FitState, metrics: dict[str, float]) -> None: ...
    def on_fit_end(self, state: FitState, result: FitResult) -> None: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _mps() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str) -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. A named device that is missing is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA GPU is available; use 'auto' or 'cpu'.")
    if name == "mps" and not _mps():
        raise ConfigError("device 'mps' was asked for but Apple's Metal backend is not available; use 'auto' or 'cpu'.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if _mps() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for mixed precision, or None for plain fp32. Only CUDA gets mixed
    precision; "auto" picks bf16 where the GPU supports it (no loss scaling needed), else fp16."""
    if device.type != "cuda" or precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def set_deterministic(on: bool) -> None:
    """Deterministic kernels (cuDNN, scatter / index ops): the same numbers on every run, slower."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on, warn_only=True)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on and torch.cuda.is_available()


def backbone_and_head(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    head = {id(p) for p in classifier(model).parameters()}
    params = list(model.parameters())
    return [p for p in params if id(p) not in head], [p for p in params if id(p) in head]


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Parameter groups: (backbone, head) x (decay, no decay). No weight decay on norms and
    biases (the usual practice; decaying BN scales hurts). Each group carries ``lr_mult`` (the
    backbone's is cfg.backbone_lr_mult) that the schedule multiplies the peak rate by. Frozen
    parameters (train_scope="classifier") are left out: momentum and weight decay would
    otherwise still move them."""
    backbone, head = backbone_and_head(model)
    groups = []
    for params, mult in ((backbone, cfg.backbone_lr_mult), (head, 1.0)):
        trainable = [p for p in params if p.requires_grad]
        for decay, wd in ((True, cfg.weight_decay), (False, 0.0)):
            ps = [p for p in trainable if (p.ndim > 1) == decay]
            if ps:
                groups.append({"params": ps, "weight_decay": wd, "lr_mult": mult, "lr": cfg.lr * mult})
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":  # Adam's weight decay is an L2 term in the gradient
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    raise ConfigError(f"Invalid optimizer {cfg.optimizer}. Only sgd, adam and adamw are supported.")


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
                 order: Callable[[], torch.Tensor] | None = None, drop_last: bool = False,
                 aux: torch.Tensor | None = None) -> None:
        self.images, self.labels, self.batch_size, self.order, self.drop_last = images, labels, batch_size, order, drop_last
        self.aux = aux  # multi-task: second labels, yielded as a third element
        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0)

    @classmethod
    def from_split(cls, split, spec: EvalSpec, *, with_aux: bool = False, **kw) -> "ArrayBatches":
        x = torch.from_numpy(split.images)
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        aux = torch.from_numpy(split.aux_labels) if with_aux and split.aux_labels is not None else None
        return cls(x.contiguous(), torch.from_numpy(split.labels), spec, aux=aux, **kw)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        idx = self.order() if self.order is not None else torch.arange(len(self.labels))
        n = len(idx)  # a data-parallel rank's order is its share only
        for i in range(n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)):
            b = idx[i * self.batch_size:(i + 1) * self.batch_size]
            if self.aux is not None:
                yield (self.images[b].float() - self.mean) * self.inv_std, self.labels[b], self.aux[b]
            else:
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
                    teacher: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    grad_clip: float | None = None, amp_dtype: torch.dtype | None = None,
                    scaler: "torch.amp.GradScaler | None" = None,
                    channels_last: bool = False) -> dict[str, float]:
    """One pass over ``loader``. Returns {"loss", "acc"} (acc on the un-mixed hard labels).
    ``teacher`` (distillation): its logits on the same, possibly augmented, batch are passed to
    ``criterion`` as a third argument. ``grad_clip``: the gradients' global L2 norm is clipped to
    it. ``amp_dtype``: forward under autocast (CUDA), with ``scaler`` for fp16. A batch with a
    third element (multi-task: the second label) passes it to ``criterion`` as ``aux_targets``."""
    model.train()
    for m in model.modules():  # a frozen BatchNorm (cRT's backbone) keeps its running statistics
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None and not m.weight.requires_grad:
            m.eval()
    total_loss, correct, seen = 0.0, 0, 0
    for batch in loader:
        images, targets = batch[0], batch[1]
        aux = batch[2].to(device, non_blocking=True) if len(batch) > 2 else None
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        hard = targets
        if batch_transform is not None:
            images, targets = batch_transform(images, targets)
        if set_lr is not None:
            set_lr()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
            args = (logits.float(), targets) if teacher is None else \
                (logits.float(), targets, teacher(images).float())
            loss = criterion(*args) if aux is None else criterion(*args, aux_targets=aux)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
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


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
            "numpy_pos": int(np.random.get_state()[2]), "python": repr(random.getstate())}


def _set_rng_state(rng: dict) -> None:
    import ast
    torch.set_rng_state(rng["torch"])
    np.random.set_state(("MT19937", rng["numpy"].numpy().astype(np.uint32), int(rng["numpy_pos"])))
    random.setstate(ast.literal_eval(rng["python"]))


def save_checkpoint(path: Path, state: FitState, *, metrics: dict, resumable: bool = False) -> None:
    """Atomic: write a temp file in the same folder, then rename over the target, so a failure
    mid-write (a full disk) leaves the previous checkpoint intact. ``resumable`` adds what
    resuming needs: the optimizer, the schedule and early-stopping state and the random state
    (only plain tensors, numbers and strings: it loads with weights_only=True)."""
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
    if state.aux is not None:  # kept apart, so model_state loads into the plain model
        payload.update(aux_head_state=state.aux.state_dict(), aux_name=d.aux_name,
                       aux_class_names=list(d.aux_class_names))
    if resumable:
        payload["resume"] = {
            "optimizer": state.optimizer.state_dict() if state.optimizer is not None else None,
            "plateau": state.plateau.state_dict() if state.plateau is not None else None,
            "early": state.early.state_dict() if state.early is not None else None,
            "scaler": state.scaler.state_dict() if state.scaler is not None else None,
            "rng": _rng_state(), "history": state.history,
        }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Checkpointer(Callback):
    """Keeps ``last.pt`` and ``best.pt`` (best validation balanced accuracy) in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.best = -math.inf

    def resume(self) -> None:
        """Continue a resumed run: the best so far is the score of the existing best.pt."""
        best = self.folder / "best.pt"
        if best.is_file():
            metrics = torch.load(best, map_location="cpu", weights_only=True).get("metrics", {})
            score = metrics.get("val/bal_acc", math.nan)
            self.best = -metrics.get("train/loss", math.inf) if math.isnan(score) else score

    def on_epoch_end(self, state: FitState, metrics: dict[str, float]) -> None:
        save_checkpoint(self.folder / "last.pt", state, metrics=metrics, resumable=True)
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


@dataclass(frozen=True)
class Dist:
    """This process's place in data-parallel training (torchrun sets RANK / WORLD_SIZE /
    LOCAL_RANK); world 1 is plain training."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed(device_name: str) -> Dist:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as tdist
    d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not tdist.is_initialized():
        cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(d.local_rank)
        tdist.init_process_group("nccl" if cuda else "gloo")
    return d


def _shard(order: torch.Tensor, d: Dist) -> torch.Tensor:
    """This rank's share of an epoch's order: every world-th index, all shares the same length."""
    return order[d.rank::d.world][: len(order) // d.world]


class ResumeError(RuntimeError):
    """A run cannot be resumed from its checkpoint (missing, corrupted, or from other settings)."""


def load_resume_checkpoint(path: Path) -> dict:
    """The resumable checkpoint ``last.pt``, or ResumeError with a message a user can act on."""
    if not path.is_file():
        raise ResumeError(f"Nothing to resume from: {path} does not exist (the run stopped before "
                          "its first epoch ended). Start it again instead.")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 — truncated zip, bad pickle, anything: one clear message
        raise ResumeError(f"The checkpoint {path} is damaged and cannot be read ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'no detail'}). Start the run again.") from None
    if not isinstance(ck, dict) or "resume" not in ck or "model_state" not in ck:
        raise ResumeError(f"The checkpoint {path} holds no resume state (written by an older TailLab). "
                          "Start the run again.")
    return ck


def fit(cfg: TrainConfig, callbacks: Sequence[Callback] = (), *,
        data: PreparedData | None = None, checkpoint_dir: Path | None = None,
        resume: bool = False) -> FitResult:
    """Train ``cfg``. ``resume``: continue from ``checkpoint_dir/last.pt`` (model, optimizer,
    schedule, early-stopping and random state) at the epoch after it."""
    seed_everything(cfg.seed)
    set_deterministic(cfg.deterministic)
    dist = distributed(cfg.device)
    device = resolve_device(cfg.device)
    if dist.world > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    ck = load_resume_checkpoint(Path(checkpoint_dir) / "last.pt") if resume and checkpoint_dir else None
    if not dist.main:  # rank 0 reports and writes checkpoints; the others only train
        callbacks = []
    if dist.world > 1:
        import torch.distributed as tdist
        if not dist.main:
            tdist.barrier()  # rank 0 prepares (and caches) the data first

    # data (and the settings the data decides)
    cfg, data, auto = resolve_for_data(cfg, data)
    if dist.world > 1 and dist.main:
        tdist.barrier()
    # OpenMP threads spin-wait: on a small machine that also serves the dashboard, one thread
    # per spare core is much faster than one per core (3x measured on 2 shared cores).
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 2) - 1))
    counts = data.counts("train")
    empty = [name for name, n in zip(data.class_names, counts) if n == 0]
    if empty:
        raise ConfigError(f"Class(es) {', '.join(repr(c) for c in empty)} have no training images (they "
                          "occur only in validation or test), so nothing can learn them: add training "
                          "images, or drop the class on the Data page (taillab data split ... --drop-class).")
    if cfg.batch_size > sum(counts):
        import dataclasses
        notes_pre = [f"batch size {cfg.batch_size} is larger than the training split ({sum(counts):,} images): "
                     f"each step uses all {sum(counts):,}"]
        cfg = dataclasses.replace(cfg, batch_size=sum(counts))
    else:
        notes_pre = []
    groups = data.groups()
    spec = data.eval_spec
    train_t, eval_t, batch_t = build_transforms(cfg, spec, counts)
    multitask = bool(data.aux_name) and data.splits["train"].aux_labels is not None
    if multitask:
        aux_weight = aux_loss_weight(cfg)
        if dist.world > 1:
            raise ConfigError("Multi-task training (a second label column) runs in one process only, not "
                              "under torchrun: start it without torchrun, or drop the extra CSV column.")
        if batch_t is not None:
            raise ConfigError("MixUp / CutMix mix the images but not the second label of a multi-task "
                              "dataset: turn them off in the augmentation recipe, or drop the extra CSV column.")
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
                                root=val_split.root, paths=[val_split.paths[i] for i in pick] if val_split.paths else [],
                                aux_labels=None if val_split.aux_labels is None else val_split.aux_labels[pick])
        val_note = (f"validation each epoch on a fixed balanced subset ({len(pick):,} of "
                    f"{len(val_split):,} images, at most {VAL_PER_CLASS} per class); the whole split at the end")
    else:
        val_epoch_split = val_split

    def eval_loader(split):
        if split.images is not None:
            return ArrayBatches.from_split(split, spec, batch_size=eval_bs, with_aux=multitask)
        return make_loader(ImageDataset(split, spec.channels, eval_t, with_aux=multitask), batch_size=eval_bs,
                           shuffle=False, num_workers=workers)

    val_loader, val_epoch_loader = eval_loader(val_split), eval_loader(val_epoch_split)
    test_loader = eval_loader(data.splits["test"])
    fast = data.splits["train"].images is not None and not cfg.augment
    train_arrays = ArrayBatches.from_split(data.splits["train"], spec, batch_size=cfg.batch_size,
                                           drop_last=drop_last, with_aux=multitask) if fast else None
    train_ds = ImageDataset(data.splits["train"], spec.channels, train_t, pass_label=True, with_aux=multitask)

    # model
    model = create_model(cfg.model, num_classes=data.num_classes, in_channels=spec.channels,
                         input_size=spec.size, pretrained=cfg.pretrained,
                         normed_head=imbalance.loss_info(cfg.loss).cosine_head).to(device)
    notes: list[str] = list(notes_pre)
    if cfg.weights_file and ck is None:
        notes.append("weights: " + load_weights_file(model, cfg.weights_file).summary())
    if cfg.init_from:
        init_from_run(model, cfg, data, device)
    compress_callbacks: list[Callback] = []
    if cfg.prune:  # on init_from's weights, before the optimizer holds the parameters
        from engine.compress.prune import apply_pruning
        compress_callbacks = apply_pruning(model, cfg.prune, spec, device)
    if ck is not None:
        fit_to_state_dict(model, ck["model_state"])
        model.load_state_dict(ck["model_state"])
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(cfg.precision, device)
    aux = None
    if multitask:  # a second head on the classifier's input features; the model stays as it is
        aux = AuxHead(model, len(data.aux_class_names)).to(device)
        if ck is not None and "aux_head_state" in ck:
            aux.load_state_dict(ck["aux_head_state"])
        notes.append(f"multi-task: a second head learns {data.aux_name!r} ({len(data.aux_class_names)} "
                     f"values), loss = main + {aux_weight:g} x its cross-entropy")

    # criterion (deferred re-weighting swaps it at cfg.drw_epoch); distillation wraps it
    teacher, wrap = None, (lambda c: c)
    if cfg.distil_from:
        from engine.compress.distil import DistillationLoss, load_teacher
        teacher = load_teacher(cfg.distil_from, data, device)
        wrap = lambda c: DistillationLoss(c, temperature=cfg.kd_temperature, alpha=cfg.kd_alpha)  # noqa: E731
    if aux is not None:
        inner = wrap
        wrap = lambda c: MultiTaskLoss(inner(c), aux, aux_weight)  # noqa: E731
    loss_params = dict(cfg.loss_params)
    if cfg.label_smoothing and imbalance.loss_info(cfg.loss).smoothing:
        loss_params.setdefault("label_smoothing", cfg.label_smoothing)

    def make_criterion(epoch: int) -> nn.Module:
        if cfg.drw_epoch is not None and epoch >= cfg.drw_epoch:
            return wrap(imbalance.drw_loss(cfg.loss, counts, loss_params).to(device))
        return wrap(imbalance.create_loss(cfg.loss, class_counts=counts, **loss_params).to(device))

    # optimizer + per-step schedule
    optimizer = build_optimizer(cfg, model)
    if aux is not None:  # the second head learns at the head's rate; no decay on its bias
        for p, wd in ((aux.fc.weight, cfg.weight_decay), (aux.fc.bias, 0.0)):
            optimizer.add_param_group({"params": [p], "weight_decay": wd, "lr_mult": 1.0, "lr": cfg.lr})
    n_train = len(train_labels)
    n_local = n_train // dist.world  # images per rank and epoch
    steps_per_epoch = n_local // cfg.batch_size if drop_last else math.ceil(n_local / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    state = FitState(cfg, data, model, device, total_steps=total, steps_per_epoch=steps_per_epoch,
                     auto=auto, val_note=val_note, notes=notes, optimizer=optimizer, aux=aux,
                     plateau=Plateau(cfg.plateau_patience, cfg.plateau_factor) if cfg.scheduler == "plateau" else None,
                     early=EarlyStopping(cfg.early_stop_patience) if cfg.early_stop_patience else None,
                     scaler=torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None)
    checkpointer = Checkpointer(checkpoint_dir) if checkpoint_dir and dist.main else None
    if ck is not None:
        r = ck["resume"]
        optimizer.load_state_dict(r["optimizer"])
        if state.plateau is not None and r.get("plateau"):
            state.plateau = Plateau.from_state(r["plateau"])
        if state.early is not None and r.get("early"):
            state.early = EarlyStopping.from_state(r["early"])
        if state.scaler is not None and r.get("scaler"):
            state.scaler.load_state_dict(r["scaler"])
        state.history = list(r.get("history") or [])
        state.step, state.start_epoch = int(ck["step"]), int(ck["epoch"]) + 1
        _set_rng_state(r["rng"])
        if checkpointer is not None:
            checkpointer.resume()
        notes.append(f"resumed after epoch {state.start_epoch} of {cfg.epochs} (step {state.step:,})")
    callbacks = compress_callbacks + list(callbacks) + ([checkpointer] if checkpointer else [])
    backbone = backbone_and_head(model)[0]
    train_model = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        notes.append(f"data-parallel on {dist.world} processes ({'nccl' if device.type == 'cuda' else 'gloo'}); "
                     f"each trains on {n_local:,} images per epoch")

    def set_lr() -> None:
        lr = lr_at(state.step, total=total, warmup=warmup, peak=cfg.lr, schedule=cfg.scheduler,
                   steps_per_epoch=steps_per_epoch, step_size=cfg.step_size, milestones=cfg.milestones,
                   gamma=cfg.gamma, plateau_scale=state.plateau.scale if state.plateau else 1.0)
        for g in optimizer.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)

    def on_step(loss: float) -> None:
        state.step += 1
        state.loss = loss
        state.images_seen += cfg.batch_size
        if dist.world == 1:
            _emit(callbacks, "on_step_end", state)
            return
        flag = torch.zeros(1)
        try:  # a cancel on rank 0 must stop every rank at the same step, not strand them in allreduce
            _emit(callbacks, "on_step_end", state)
        except CancelFit:
            flag += 1
        tdist.all_reduce(flag)
        if flag.item():
            raise CancelFit()

    _emit(callbacks, "on_fit_start", state)
    for epoch in range(state.start_epoch, cfg.epochs):
        state.epoch = epoch
        criterion = make_criterion(epoch)
        frozen = epoch < cfg.freeze_backbone_epochs and cfg.train_scope == "all"
        for p in backbone:  # fine-tuning: only the new head learns in the first epochs
            p.requires_grad_(not frozen and (cfg.train_scope == "all"))
        sampler = imbalance.create_sampler(train_labels, cfg.sampler, epoch=epoch,
                                           total_epochs=cfg.epochs, seed=cfg.seed + epoch)
        g = torch.Generator().manual_seed(cfg.seed + epoch)
        if dist.world > 1:  # one order for all ranks (same seeds), each rank its share
            order = torch.as_tensor(list(sampler)) if sampler is not None else torch.randperm(n_train, generator=g)
            shard = _shard(order, dist)
            if train_arrays is not None:
                train_arrays.order = lambda: shard
                loader = train_arrays
            else:
                loader = make_loader(train_ds, batch_size=cfg.batch_size, shuffle=False, sampler=shard.tolist(),
                                     num_workers=workers, drop_last=drop_last)
        elif train_arrays is not None:
            train_arrays.order = (lambda: torch.as_tensor(list(sampler))) if sampler is not None else \
                (lambda: torch.randperm(n_train, generator=g))
            loader = train_arrays
        else:
            loader = make_loader(train_ds, batch_size=cfg.batch_size, shuffle=True, sampler=sampler,
                                 seed=cfg.seed + epoch, num_workers=workers, drop_last=drop_last)
        try:
            tr = train_one_epoch(train_model, criterion, optimizer, loader, device, set_lr=set_lr,
                                 batch_transform=batch_t, on_step=on_step, teacher=teacher,
                                 grad_clip=cfg.grad_clip, amp_dtype=amp_dtype, scaler=state.scaler,
                                 channels_last=channels_last)
        except NonFiniteLoss as e:
            raise NonFiniteLoss(f"Step {state.step + 1:,} (epoch {epoch + 1}): {e}") from None
        if dist.world > 1:  # BatchNorm statistics: rank 0's everywhere, so every rank evaluates the same model
            for b in model.buffers():
                tdist.broadcast(b, 0)
        val = evaluate(model, val_epoch_loader, device, aux=aux)
        state.last_val = val
        metrics = {"train/loss": tr["loss"], "train/acc": tr["acc"],
                   **val.metrics(data.num_classes, groups, prefix="val/"),
                   "lr": optimizer.param_groups[-1]["lr"]}
        watched = metrics.get(cfg.early_stop_metric)
        watched = -watched if cfg.early_stop_metric == "val/loss" and watched is not None else watched
        if state.plateau is not None:
            state.plateau.update(metrics.get("val/bal_acc"), epoch)
        stop = state.early is not None and state.early.update(watched, epoch)
        if dist.world > 1:  # rank 0 decides
            flag = torch.tensor([float(stop)])
            tdist.broadcast(flag, 0)
            stop = bool(flag.item())
        state.history.append(metrics)
        _emit(callbacks, "on_epoch_end", state, metrics)
        if stop:
            state.stopped_early = epoch + 1
            notes.append(f"stopped early after epoch {epoch + 1}: {cfg.early_stop_metric} had not improved "
                         f"for {cfg.early_stop_patience} epochs (best at epoch {state.early.best_epoch + 1})")
            break

    # final: the best checkpoint (by validation balanced accuracy) on the test split
    best = Path(checkpoint_dir) / "best.pt" if checkpoint_dir else None
    if dist.world > 1:
        tdist.barrier()  # rank 0 has written best.pt
    if best is not None and best.exists():
        best_ck = torch.load(best, map_location=device, weights_only=True)
        model.load_state_dict(best_ck["model_state"])
        if aux is not None and "aux_head_state" in best_ck:
            aux.load_state_dict(best_ck["aux_head_state"])
    test_eval = evaluate(model, test_loader, device, aux=aux)
    val_eval = evaluate(model, val_loader, device, aux=aux)
    test = test_eval.metrics(data.num_classes, groups)
    report = aux_report(data.aux_name, data.aux_class_names, test_eval.aux_logits, test_eval.aux_targets) \
        if aux is not None else None
    result = FitResult(state, test, test_eval, val_eval, aux=report)
    _emit(callbacks, "on_fit_end", state, result)
    if dist.world > 1:
        tdist.barrier()
    return result


def class_breakdown(result: EvalResult, num_classes: int) -> tuple[list[int], list[int]]:
    if len(result.targets) == 0:
        return [0] * num_classes, [0] * num_classes
    support, correct = per_class_counts(result.logits.argmax(1), result.targets, num_classes)
    return support.tolist(), correct.tolist()
