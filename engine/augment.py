"""Training-time augmentation: one validated config, per-sample and per-batch transforms, previews.

Per-sample ops run in the DataLoader on uint8 tensors (C, H, W) and end normalised at exactly
``size`` x ``size``, like ``engine.transforms.eval_transform``. Batch ops (MixUp, CutMix,
multi-scale) run on the collated batch. All randomness comes from torch's global RNG, which the
DataLoader seeds per worker, so ``torch.manual_seed`` reproduces a run.

Tail-aware augmentation: samples of classes with fewer than ``tail_threshold`` training images go
through ``tail_recipe`` *instead of* the base recipe.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from engine.errors import ConfigError, choice as _choice, in_range as _in_range, pair as _pair, whole
from engine.transforms import EvalSpec, eval_transform, pil_to_uint8_tensor

AUTO_POLICIES = ("none", "autoaugment", "randaugment", "trivialaugment", "augmix")
AUTOAUGMENT_POLICIES = ("imagenet", "cifar10", "svhn")
PADDING_MODES = ("constant", "edge", "reflect")
# Keys that act on a whole batch or switch tail-awareness; a tail recipe cannot set them.
BATCH_KEYS = ("mixup_alpha", "cutmix_alpha", "mix_prob", "multi_scale_sizes")
TAIL_KEYS = ("tail_threshold", "tail_recipe")
MIN_SIDE = 8  # px: no augmentation may produce (or crop) anything smaller
MAX_SCALE_FACTOR = 4  # multi-scale sizes must lie within [input / 4, input * 4]


# --- the config ------------------------------------------------------------------------------

@dataclass(frozen=True)
class AugmentConfig:
    """Every augmentation knob. The defaults mean "no augmentation"; ``{}`` is the baseline."""

    # geometry
    hflip_prob: float = 0.0  # probability of a left-right mirror
    vflip_prob: float = 0.0  # probability of an upside-down mirror
    rotation_degrees: float = 0.0  # angle drawn uniformly from [-d, +d], degrees, 0..180
    random_resized_crop: bool = False  # crop a random region of the source, resize to input
    rrc_scale: tuple[float, float] = (0.25, 1.0)  # share of the source area kept (0, 1]
    rrc_ratio: tuple[float, float] = (0.75, 4 / 3)  # aspect ratio (w / h) range of the crop
    crop_padding: int = 0  # px padded on every side, then a random input-size crop; 0 = off
    padding_mode: str = "constant"  # constant (black), edge or reflect
    # colour
    brightness: float = 0.0  # factor drawn from [1 - b, 1 + b]; 0 = off
    contrast: float = 0.0  # same, for contrast
    saturation: float = 0.0  # same, for saturation (no effect on 1-channel images)
    hue: float = 0.0  # shift drawn from [-h, h], h in 0..0.5 (no effect on 1-channel images)
    grayscale_prob: float = 0.0  # probability of dropping colour (no effect on 1 channel)
    blur_prob: float = 0.0  # probability of a Gaussian blur
    blur_kernel: int = 3  # odd kernel side, px
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # sigma drawn from this range, px
    # occlusion (applied last, on the normalised image: erased pixels become the dataset mean)
    erasing_prob: float = 0.0  # probability of RandomErasing
    erasing_scale: tuple[float, float] = (0.02, 0.33)  # share of the image erased, inside (0, 1)
    # learned / random policies (on uint8, before colour jitter)
    auto_policy: str = "none"  # none, autoaugment, randaugment, trivialaugment, augmix
    autoaugment_policy: str = "imagenet"  # imagenet, cifar10 or svhn
    randaugment_num_ops: int = 2  # ops applied in sequence
    randaugment_magnitude: int = 9  # 0 .. magnitude_bins - 1
    magnitude_bins: int = 31  # RandAugment and TrivialAugment magnitude resolution
    augmix_severity: int = 3  # 1..10
    augmix_width: int = 3  # augmentation chains mixed, 1..10
    augmix_depth: int = -1  # ops per chain, 1..10; -1 = random 1..3
    # batch level (engine.augment.build_batch_transform)
    mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixing weight; 0 = off
    cutmix_alpha: float = 0.0  # same for CutMix; with both on, one is chosen per batch
    mix_prob: float = 1.0  # share of batches that get MixUp/CutMix
    multi_scale_sizes: tuple[int, ...] = ()  # px; each batch is resized to one of these; () = off
    # tail-aware: classes with fewer training images than this use tail_recipe instead; 0 = off
    tail_threshold: int = 0
    tail_recipe: dict = field(default_factory=dict)  # AugmentConfig settings; {} = off

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("hflip_prob", "vflip_prob", "grayscale_prob", "blur_prob", "erasing_prob", "mix_prob"):
            put(name, _in_range(name, getattr(self, name), 0.0, 1.0))
        put("rotation_degrees", _in_range("rotation_degrees", self.rotation_degrees, 0.0, 180.0))
        if not isinstance(self.random_resized_crop, bool):
            raise ConfigError(f"random_resized_crop must be true or false, got {self.random_resized_crop!r}.")
        put("rrc_scale", _pair("rrc_scale", self.rrc_scale, 0.0, 1.0, open_low=True))
        put("rrc_ratio", _pair("rrc_ratio", self.rrc_ratio, 0.0, 10.0, open_low=True))
        put("crop_padding", whole("crop_padding", self.crop_padding, 0, 256))
        _choice("padding_mode", self.padding_mode, PADDING_MODES)
        for name in ("brightness", "contrast", "saturation"):
            put(name, _in_range(name, getattr(self, name), 0.0, 10.0))
        put("hue", _in_range("hue", self.hue, 0.0, 0.5))
        put("blur_kernel", whole("blur_kernel", self.blur_kernel, 1, 99))
        if self.blur_kernel % 2 == 0:
            raise ConfigError(f"blur_kernel must be odd (3, 5, 7, ...), got {self.blur_kernel}.")
        put("blur_sigma", _pair("blur_sigma", self.blur_sigma, 0.0, 100.0, open_low=True))
        put("erasing_scale", _pair("erasing_scale", self.erasing_scale, 0.0, 1.0, open_low=True, open_high=True))
        _choice("auto_policy", self.auto_policy, AUTO_POLICIES)
        _choice("autoaugment_policy", self.autoaugment_policy, AUTOAUGMENT_POLICIES)
        put("randaugment_num_ops", whole("randaugment_num_ops", self.randaugment_num_ops, 1, 10))
        put("magnitude_bins", whole("magnitude_bins", self.magnitude_bins, 2, 100))
        put("randaugment_magnitude", whole(
            "randaugment_magnitude", self.randaugment_magnitude, 0, self.magnitude_bins - 1))
        put("augmix_severity", whole("augmix_severity", self.augmix_severity, 1, 10))
        put("augmix_width", whole("augmix_width", self.augmix_width, 1, 10))
        if self.augmix_depth != -1:
            put("augmix_depth", whole("augmix_depth (or -1 for random)", self.augmix_depth, 1, 10))
        for name in ("mixup_alpha", "cutmix_alpha"):
            put(name, _in_range(name, getattr(self, name), 0.0, 100.0))
        sizes = self.multi_scale_sizes
        if not isinstance(sizes, (list, tuple)):
            raise ConfigError(f"multi_scale_sizes must be a list of sizes in px, got {sizes!r}.")
        put("multi_scale_sizes", tuple(whole("multi_scale_sizes entry", s, MIN_SIDE, 4096) for s in sizes))
        put("tail_threshold", whole("tail_threshold", self.tail_threshold, 0, 10**9))
        put("tail_recipe", _canonical_tail_recipe(self.tail_recipe))

    # A dict field makes the generated hash fail; hash the canonical JSON instead.
    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    @property
    def tail_aware(self) -> bool:
        return self.tail_threshold > 0 and bool(self.tail_recipe)

    @property
    def batch_mix(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.mix_prob > 0

    def tail_config(self) -> "AugmentConfig | None":
        return AugmentConfig.from_dict(self.tail_recipe) if self.tail_aware else None

    def to_dict(self) -> dict:
        """JSON/TOML-ready: tuples as lists, no None."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        d["tail_recipe"] = json.loads(json.dumps(self.tail_recipe))
        return d

    @classmethod
    def from_dict(cls, d: Mapping | None) -> "AugmentConfig":
        if d is None:
            return cls()
        if isinstance(d, AugmentConfig):
            return d
        if not isinstance(d, Mapping):
            raise ConfigError(f"augmentation settings must be a table of settings, got {type(d).__name__}.")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ConfigError(
                f"Unknown augmentation setting(s): {', '.join(map(str, unknown))}. "
                f"Valid settings: {', '.join(sorted(known))}."
            )
        return cls(**dict(d))


_DEFAULTS: dict | None = None  # AugmentConfig().to_dict(), built on first use


def _canonical_tail_recipe(recipe: Any) -> dict:
    """Validate a tail recipe and keep only the settings that differ from the defaults, so equal
    recipes compare (and hash) equal however they were written."""
    if isinstance(recipe, AugmentConfig):
        recipe = recipe.to_dict()
    if not isinstance(recipe, Mapping):
        raise ConfigError(f"tail_recipe must be a table of augmentation settings, got {recipe!r}.")
    if not recipe:
        return {}
    try:
        sub = AugmentConfig.from_dict(recipe)
    except ConfigError as e:
        raise ConfigError(f"tail_recipe: {e}") from e
    defaults = _default_dict()
    d = {k: v for k, v in sub.to_dict().items() if v != defaults[k]}
    bad = sorted(k for k in d if k in BATCH_KEYS or k in TAIL_KEYS)
    if bad:
        raise ConfigError(
            f"tail_recipe cannot set {', '.join(bad)}: MixUp/CutMix and multi-scale act on whole "
            "batches, and tail recipes do not nest. Set them on the main recipe."
        )
    return d


def _default_dict() -> dict:
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = AugmentConfig().to_dict()
    return _DEFAULTS


PRESETS: dict[str, AugmentConfig] = {
    # The baseline: resize and normalise only, exactly the evaluation transform.
    "none": AugmentConfig(),
    # Small geometric jitter, no flips: safe for digits, text and other orientation-bound data.
    "light": AugmentConfig(rotation_degrees=10, random_resized_crop=True, rrc_scale=(0.8, 1.0),
                           rrc_ratio=(0.9, 1.1)),
    # The usual recipe for natural images (CIFAR/ImageNet style): mirror, crop, mild colour.
    "standard": AugmentConfig(hflip_prob=0.5, random_resized_crop=True, rrc_scale=(0.35, 1.0),
                              brightness=0.2, contrast=0.2, saturation=0.2),
    # Standard + RandAugment + random erasing, for long schedules or small/tail-heavy datasets.
    # Per-sample only: MixUp/CutMix change the targets to soft labels, so they stay opt-in.
    "strong": AugmentConfig(hflip_prob=0.5, random_resized_crop=True, rrc_scale=(0.25, 1.0),
                            auto_policy="randaugment", randaugment_num_ops=2,
                            randaugment_magnitude=9, erasing_prob=0.25),
}


# --- per-sample transform ----------------------------------------------------------------------

def _check_spec(size: int, channels: int, mean: Sequence[float], std: Sequence[float]) -> None:
    whole("size", size, 1, 4096)
    _choice("channels", str(channels), ("1", "3"))
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(f"mean and std need {channels} value(s) each, got {list(mean)} and {list(std)}.")


def _auto_policy(cfg: AugmentConfig) -> Callable | None:
    # 1-channel uint8 images work natively with all four policies in torchvision 0.29 (colour
    # ops are no-ops on grey, as on an RGB copy of it), so no repeat-to-3 round trip is needed.
    bilinear = v2.InterpolationMode.BILINEAR
    if cfg.auto_policy == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy(cfg.autoaugment_policy), interpolation=bilinear)
    if cfg.auto_policy == "randaugment":
        return v2.RandAugment(num_ops=cfg.randaugment_num_ops, magnitude=cfg.randaugment_magnitude,
                              num_magnitude_bins=cfg.magnitude_bins, interpolation=bilinear)
    if cfg.auto_policy == "trivialaugment":
        return v2.TrivialAugmentWide(num_magnitude_bins=cfg.magnitude_bins, interpolation=bilinear)
    if cfg.auto_policy == "augmix":
        return v2.AugMix(severity=cfg.augmix_severity, mixture_width=cfg.augmix_width,
                         chain_depth=cfg.augmix_depth, interpolation=bilinear)
    return None


def _sample_pipeline(cfg: AugmentConfig, size: int, channels: int, mean, std) -> v2.Compose:
    """uint8 (channels, H, W) -> normalised float (channels, size, size)."""
    ops: list[Callable] = []
    if cfg.random_resized_crop:
        ops.append(v2.RandomResizedCrop(size, scale=cfg.rrc_scale, ratio=cfg.rrc_ratio, antialias=True))
    else:
        # Same resize as the eval transform; done here so flips and crops act on the input grid.
        ops.append(v2.Resize((size, size), antialias=True))
    if cfg.crop_padding:
        ops.append(v2.RandomCrop(size, padding=cfg.crop_padding, padding_mode=cfg.padding_mode, fill=0))
    if cfg.hflip_prob:
        ops.append(v2.RandomHorizontalFlip(cfg.hflip_prob))
    if cfg.vflip_prob:
        ops.append(v2.RandomVerticalFlip(cfg.vflip_prob))
    if cfg.rotation_degrees:
        ops.append(v2.RandomRotation(cfg.rotation_degrees, interpolation=v2.InterpolationMode.BILINEAR, fill=0))
    policy = _auto_policy(cfg)
    if policy is not None:
        ops.append(policy)
    if cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue:
        ops.append(v2.ColorJitter(brightness=cfg.brightness or None, contrast=cfg.contrast or None,
                                  saturation=cfg.saturation or None, hue=cfg.hue or None))
    if cfg.grayscale_prob and channels == 3:
        ops.append(v2.RandomGrayscale(cfg.grayscale_prob))
    if cfg.blur_prob:
        ops.append(v2.RandomApply([v2.GaussianBlur(cfg.blur_kernel, sigma=cfg.blur_sigma)], p=cfg.blur_prob))
    # The eval transform does the float conversion (its resize is a no-op here), so that with
    # no augmentation the training view is the eval view bit for bit.
    ops.append(eval_transform(EvalSpec(size, channels, tuple(mean), tuple(std))))
    if cfg.erasing_prob:
        ops.append(v2.RandomErasing(p=cfg.erasing_prob, scale=cfg.erasing_scale, value=0.0))
    return v2.Compose(ops)


def _as_uint8_chw(img: Any, channels: int) -> torch.Tensor:
    """uint8 tensor (C, H, W) / (H, W), numpy (H, W[, C]) or PIL image -> uint8 (channels, H, W)."""
    if hasattr(img, "mode") and hasattr(img, "size") and not isinstance(img, (torch.Tensor, np.ndarray)):
        return pil_to_uint8_tensor(img, channels)
    if isinstance(img, np.ndarray):
        img = torch.from_numpy(np.ascontiguousarray(img))
        img = img.unsqueeze(0) if img.ndim == 2 else img.permute(2, 0, 1)
    if not isinstance(img, torch.Tensor) or img.dtype != torch.uint8:
        raise TypeError(f"augmentation expects uint8 image tensors (C, H, W), got {getattr(img, 'dtype', type(img))}.")
    if img.ndim == 2:
        img = img.unsqueeze(0)
    c = img.shape[0]
    if img.ndim != 3 or c not in (1, 3):
        raise ValueError(f"expected an image of shape (1 or 3, H, W), got {tuple(img.shape)}.")
    if c == channels:
        return img
    return img.expand(3, -1, -1).contiguous() if channels == 3 else F.rgb_to_grayscale(img, 1)


def _tail_labels(threshold: int, class_counts: Sequence[int] | Mapping[int, int] | None) -> frozenset[int]:
    if class_counts is None:
        raise ConfigError("tail-aware augmentation (tail_threshold > 0) needs the training class counts.")
    items = class_counts.items() if isinstance(class_counts, Mapping) else enumerate(class_counts)
    return frozenset(int(label) for label, n in items if int(n) < threshold)


def tail_classes(cfg: AugmentConfig, class_counts: Sequence[int] | Mapping[int, int]) -> list[int]:
    """The labels that get the tail recipe (empty when tail-aware augmentation is off)."""
    return sorted(_tail_labels(cfg.tail_threshold, class_counts)) if cfg.tail_aware else []


class TrainTransform:
    """``t(img_uint8_chw, label)`` -> normalised float (channels, size, size). A class, not a
    closure, so DataLoader workers can pickle it."""

    def __init__(self, base: v2.Compose, tail: v2.Compose | None, tail_labels: frozenset[int], channels: int):
        self.base, self.tail, self.tail_labels, self.channels = base, tail, tail_labels, channels

    def __call__(self, img: Any, label: int | torch.Tensor | None = None) -> torch.Tensor:
        img = _as_uint8_chw(img, self.channels)
        if self.tail is not None and label is not None and int(label) in self.tail_labels:
            return self.tail(img)
        return self.base(img)


def build_train_transform(cfg: AugmentConfig, *, size: int, channels: int, mean: Sequence[float],
                          std: Sequence[float], class_counts: Sequence[int] | Mapping[int, int] | None = None
                          ) -> TrainTransform:
    """The per-sample training transform. ``class_counts`` (per label, training split) is needed
    only when ``cfg.tail_aware``."""
    _check_spec(size, channels, mean, std)
    base = _sample_pipeline(cfg, size, channels, mean, std)
    tail_cfg = cfg.tail_config()
    if tail_cfg is None:
        return TrainTransform(base, None, frozenset(), channels)
    tail = _sample_pipeline(tail_cfg, size, channels, mean, std)
    return TrainTransform(base, tail, _tail_labels(cfg.tail_threshold, class_counts), channels)


# --- batch transform ---------------------------------------------------------------------------

def _mix_ops(cfg: AugmentConfig, num_classes: int) -> list[tuple[str, Callable]]:
    ops = []
    if cfg.mixup_alpha > 0:
        ops.append(("mixup", v2.MixUp(alpha=cfg.mixup_alpha, num_classes=num_classes)))
    if cfg.cutmix_alpha > 0:
        ops.append(("cutmix", v2.CutMix(alpha=cfg.cutmix_alpha, num_classes=num_classes)))
    return ops


class BatchTransform:
    """``(images (N, C, H, W) float, targets (N,) int64) -> (images, targets)``.

    With MixUp/CutMix on, targets are ALWAYS float (N, num_classes) probabilities, also for the
    batches left unmixed (by ``mix_prob``, or a last batch of one image: one-hot), so the loss
    sees one format.
    """

    def __init__(self, mix: Callable | None, mix_prob: float, num_classes: int, sizes: tuple[int, ...]):
        self.mix, self.mix_prob, self.num_classes, self.sizes = mix, mix_prob, num_classes, sizes

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mix is not None:
            # A last batch of one image (drop_last=False) has no partner: it goes through one-hot.
            if images.shape[0] >= 2 and (self.mix_prob >= 1 or float(torch.rand(())) < self.mix_prob):
                images, targets = self.mix(images, targets)
            else:
                targets = torch.nn.functional.one_hot(targets.long(), self.num_classes).to(images.dtype)
        if self.sizes:
            s = self.sizes[int(torch.randint(len(self.sizes), ()))]
            if tuple(images.shape[-2:]) != (s, s):
                images = F.resize(images, [s, s], antialias=True)
        return images, targets


def build_batch_transform(cfg: AugmentConfig, *, num_classes: int, size: int) -> BatchTransform | None:
    """None when no batch-level op is on. ``size`` is the per-sample output side (for checks)."""
    whole("num_classes", num_classes, 1, 10**6)
    whole("size", size, 1, 4096)
    ops = _mix_ops(cfg, num_classes) if cfg.batch_mix else []
    if not ops and not cfg.multi_scale_sizes:
        return None
    mix = None
    if ops:
        mix = ops[0][1] if len(ops) == 1 else v2.RandomChoice([op for _, op in ops])
    return BatchTransform(mix, cfg.mix_prob, num_classes, cfg.multi_scale_sizes)


# --- checks against the run -------------------------------------------------------------------

def validate_for_training(cfg: AugmentConfig, *, batch_size: int, input_size: int,
                          image_size: int | tuple[int, int], channels: int | None = None) -> list[str]:
    """Raise ConfigError (listing every problem) for settings that cannot work with this run;
    return warnings for settings that work but are risky. ``input_size`` is the model input side,
    ``image_size`` the source image side or (H, W)."""
    errors: list[str] = []
    warnings: list[str] = []
    h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)

    if cfg.batch_mix and batch_size < 2:
        errors.append(f"MixUp/CutMix mix each image with another one in its batch: they need "
                      f"batch_size >= 2, got {batch_size}.")
    lo, hi = max(MIN_SIDE, math.ceil(input_size / MAX_SCALE_FACTOR)), MAX_SCALE_FACTOR * input_size
    bad = [s for s in cfg.multi_scale_sizes if not lo <= s <= hi]
    if bad:
        errors.append(f"multi_scale_sizes {bad} out of range: with a {input_size} px model input each "
                      f"size must be between {lo} and {hi} px.")
    if cfg.multi_scale_sizes:
        warnings.append("Multi-scale training needs a model that accepts any input size (global "
                        f"pooling); evaluation stays at {input_size} px.")
    _check_own(cfg, input_size, h, w, channels, errors, warnings, prefix="")
    tail = cfg.tail_config()
    if tail is not None:
        _check_own(tail, input_size, h, w, channels, errors, warnings, prefix="tail_recipe: ")
    elif cfg.tail_threshold > 0:
        warnings.append(f"tail_threshold is {cfg.tail_threshold} but tail_recipe is empty: "
                        "tail-aware augmentation is off.")
    elif cfg.tail_recipe:
        warnings.append("tail_recipe is set but tail_threshold is 0: the tail recipe is not used.")
    if errors:
        raise ConfigError("\n".join(errors))
    return warnings


def _check_own(cfg: AugmentConfig, input_size: int, h: int, w: int, channels: int | None,
               errors: list[str], warnings: list[str], *, prefix: str) -> None:
    if cfg.random_resized_crop:
        # Smallest crop side torchvision can draw: area * scale_min, at the most extreme ratio.
        squeeze = min(cfg.rrc_ratio[0], 1 / cfg.rrc_ratio[1], 1.0)
        side = math.sqrt(cfg.rrc_scale[0] * h * w * squeeze)
        if side < MIN_SIDE:
            need = MIN_SIDE**2 / (h * w * squeeze)
            errors.append(f"{prefix}random_resized_crop can cut a {side:.1f} px wide crop out of a "
                          f"{w}x{h} image (minimum {MIN_SIDE} px): raise rrc_scale min to at least "
                          f"{math.ceil(need * 100) / 100:g}.")
    if cfg.crop_padding >= input_size:
        errors.append(f"{prefix}crop_padding {cfg.crop_padding} px must be smaller than the "
                      f"{input_size} px model input.")
    elif cfg.crop_padding > input_size / 4:
        warnings.append(f"{prefix}crop_padding {cfg.crop_padding} px is over a quarter of the "
                        f"{input_size} px input: crops can be mostly padding.")
    if cfg.blur_prob and cfg.blur_kernel > input_size:
        errors.append(f"{prefix}blur_kernel {cfg.blur_kernel} px is larger than the "
                      f"{input_size} px model input.")
    if cfg.rotation_degrees > 90:
        extra = " With vertical flips on as well," if cfg.vflip_prob else ""
        warnings.append(f"{prefix}rotation up to {cfg.rotation_degrees:g} degrees turns images upside "
                        f"down.{extra} Orientation-bound classes (6 vs 9, text, scenes) become ambiguous.")
    if channels == 1 and (cfg.saturation or cfg.hue or cfg.grayscale_prob):
        warnings.append(f"{prefix}saturation, hue and random grayscale have no effect on 1-channel images.")


# --- previews ------------------------------------------------------------------------------------

class PreviewRow(NamedTuple):
    original: np.ndarray  # uint8 (size, size, C): the source image, resized for display
    eval_view: np.ndarray  # uint8 (size, size, C): what evaluation feeds the model, de-normalised
    augmented: list[np.ndarray]  # n uint8 (size, size, C) training views, de-normalised


class MixPreview(NamedTuple):
    image: np.ndarray  # uint8 (size, size, C)
    soft_label: np.ndarray  # float32 (num_classes,), sums to 1
    op: str  # "mixup" or "cutmix"


def _to_display(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Normalised float (C, H, W) -> uint8 (H, W, C)."""
    m = torch.tensor(list(mean), dtype=x.dtype).view(-1, 1, 1)
    s = torch.tensor(list(std), dtype=x.dtype).view(-1, 1, 1)
    x = (x * s + m).mul(255).round().clamp(0, 255).to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


def preview(cfg: AugmentConfig, images: Sequence[Any], labels: Sequence[int], *, n: int, seed: int,
            size: int, channels: int, mean: Sequence[float], std: Sequence[float],
            class_counts: Sequence[int] | Mapping[int, int] | None = None) -> list[PreviewRow]:
    """For each image: (original, eval view, n augmented views), all uint8 (size, size, channels).
    Same seed -> byte-identical; torch's global RNG is left as it was."""
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels.")
    whole("n", n, 0, 1000)
    train = build_train_transform(cfg, size=size, channels=channels, mean=mean, std=std,
                                  class_counts=class_counts)
    evaluate = eval_transform(EvalSpec(size, channels, tuple(mean), tuple(std)))
    rows = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for img, label in zip(images, labels):
            img = _as_uint8_chw(img, channels)
            original = F.resize(img, [size, size], antialias=True).permute(1, 2, 0).contiguous().numpy()
            views = [_to_display(train(img, label), mean, std) for _ in range(n)]
            rows.append(PreviewRow(original, _to_display(evaluate(img), mean, std), views))
    return rows


def preview_batch_mix(cfg: AugmentConfig, images: Sequence[Any], labels: Sequence[int], *,
                      num_classes: int, seed: int, size: int, channels: int, mean: Sequence[float],
                      std: Sequence[float]) -> list[MixPreview]:
    """MixUp/CutMix applied to the eval views of ``images`` (one op drawn per image, mix_prob
    ignored so there is something to see). Empty when both alphas are 0."""
    ops = _mix_ops(cfg, num_classes)
    if not ops:
        return []
    if len(images) < 2:
        raise ConfigError("A MixUp/CutMix preview needs at least 2 images.")
    evaluate = eval_transform(EvalSpec(size, channels, tuple(mean), tuple(std)))
    batch = torch.stack([evaluate(_as_uint8_chw(img, channels)) for img in images])
    targets = torch.as_tensor([int(y) for y in labels], dtype=torch.long)
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in range(len(images)):
            name, op = ops[int(torch.randint(len(ops), ()))]
            # Pair image i with the next one: MixUp/CutMix mix each image with its batch neighbour.
            order = torch.tensor([i, (i + 1) % len(images)])
            mixed, soft = op(batch[order], targets[order])
            out.append(MixPreview(_to_display(mixed[0], mean, std), soft[0].float().numpy(), name))
    return out


# --- text ----------------------------------------------------------------------------------------

def _pair_text(p: tuple[float, float]) -> str:
    return f"({p[0]:.3g}, {p[1]:.3g})"


def describe(cfg: AugmentConfig) -> list[str]:
    """Human-readable lines for a run's details, in the order the ops are applied."""
    out = []
    if cfg.random_resized_crop:
        out.append(f"RandomResizedCrop scale={_pair_text(cfg.rrc_scale)} ratio={_pair_text(cfg.rrc_ratio)}")
    if cfg.crop_padding:
        out.append(f"Pad {cfg.crop_padding} px ({cfg.padding_mode}) + random crop")
    if cfg.hflip_prob:
        out.append(f"Horizontal flip p={cfg.hflip_prob:g}")
    if cfg.vflip_prob:
        out.append(f"Vertical flip p={cfg.vflip_prob:g}")
    if cfg.rotation_degrees:
        out.append(f"Rotation ±{cfg.rotation_degrees:g}°")
    if cfg.auto_policy == "autoaugment":
        out.append(f"AutoAugment policy={cfg.autoaugment_policy}")
    elif cfg.auto_policy == "randaugment":
        out.append(f"RandAugment n={cfg.randaugment_num_ops} m={cfg.randaugment_magnitude}")
    elif cfg.auto_policy == "trivialaugment":
        out.append(f"TrivialAugment (wide) bins={cfg.magnitude_bins}")
    elif cfg.auto_policy == "augmix":
        depth = "random" if cfg.augmix_depth == -1 else cfg.augmix_depth
        out.append(f"AugMix severity={cfg.augmix_severity} width={cfg.augmix_width} depth={depth}")
    jitter = [f"{k}={getattr(cfg, k):g}" for k in ("brightness", "contrast", "saturation", "hue") if getattr(cfg, k)]
    if jitter:
        out.append("ColorJitter " + " ".join(jitter))
    if cfg.grayscale_prob:
        out.append(f"Random grayscale p={cfg.grayscale_prob:g}")
    if cfg.blur_prob:
        out.append(f"Gaussian blur p={cfg.blur_prob:g} kernel={cfg.blur_kernel} sigma={_pair_text(cfg.blur_sigma)}")
    if cfg.erasing_prob:
        out.append(f"RandomErasing p={cfg.erasing_prob:g} scale={_pair_text(cfg.erasing_scale)}")
    if cfg.batch_mix:
        if cfg.mixup_alpha:
            out.append(f"MixUp alpha={cfg.mixup_alpha:g}")
        if cfg.cutmix_alpha:
            out.append(f"CutMix alpha={cfg.cutmix_alpha:g}")
        if cfg.mixup_alpha and cfg.cutmix_alpha:
            out.append("MixUp or CutMix drawn per batch")
        if cfg.mix_prob < 1:
            out.append(f"Batch mixing p={cfg.mix_prob:g}")
    if cfg.multi_scale_sizes:
        out.append("Multi-scale sizes " + ", ".join(map(str, cfg.multi_scale_sizes)) + " px (one per batch)")
    out = out or ["No augmentation"]
    tail = cfg.tail_config()
    if tail is not None:
        out.append(f"Tail classes (< {cfg.tail_threshold} images) instead: " + "; ".join(describe(tail)))
    return out


# --- label-changing settings for the dataset at hand ------------------------------------------------

_GLYPH_PREFIXES = ("digit", "letter", "char", "character", "class", "number", "num")
# pairs of characters that one flip or a half turn maps onto each other (or onto a lookalike)
_HFLIP_PAIRS = (("b", "d"), ("p", "q"), ("2", "5"), ("s", "z"))
_VFLIP_PAIRS = (("6", "9"), ("m", "w"), ("b", "p"), ("d", "q"), ("n", "u"))
LABEL_ROTATION_DEGREES = 15  # above this, rotated digits and letters start to read as others
LABEL_CROP_SCALE = 0.5  # crops keeping less than this share of the area can cut the telling stroke


def _glyph(name: str) -> str | None:
    """'3', 'digit_3', 'Letter-A' -> the one character; anything else -> None."""
    s = str(name).strip().lower()
    for p in _GLYPH_PREFIXES:
        if s.startswith(p) and len(s) > len(p):
            s = s[len(p):].lstrip(" _-.:")
            break
    return s if len(s) == 1 and s.isalnum() else None


def text_like(class_names: Sequence[str]) -> bool:
    """Whether every class is one digit or letter (MNIST, EMNIST, SVHN, OCR): images whose
    meaning depends on orientation and on every stroke."""
    return len(class_names) >= 2 and all(_glyph(n) is not None for n in class_names)


def label_warnings(cfg: AugmentConfig, class_names: Sequence[str]) -> list[str]:
    """Settings that can turn an image of one class into (a lookalike of) another for these
    classes: flips and large rotations of digits, letters or left / right / up / down classes, and
    aggressive crops of characters. Plain sentences; empty when nothing applies."""
    out = _label_warnings(cfg, class_names, "")
    tail = cfg.tail_config()
    if tail is not None:
        out += _label_warnings(tail, class_names, "Tail recipe: ")
    return out


def _label_warnings(cfg: AugmentConfig, class_names: Sequence[str], prefix: str) -> list[str]:
    names = [str(n) for n in class_names]
    lower = [n.lower() for n in names]
    out: list[str] = []
    if text_like(names):
        glyphs = {_glyph(n) for n in names}
        shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
        kind = "digits and letters" if any(g.isalpha() for g in glyphs) else "digits"
        kind = "letters" if all(g.isalpha() for g in glyphs) else kind
        if cfg.hflip_prob:
            pairs = [f"{a} ↔ {b}" for a, b in _HFLIP_PAIRS if a in glyphs and b in glyphs]
            out.append(f"{prefix}Horizontal flip (p={cfg.hflip_prob:g}) mirrors {kind} (classes {shown}): a "
                       "mirrored 3 or 7 is no character" + (f", mirrored {', '.join(pairs)} look alike" if pairs
                                                            else "") + ", yet the flipped image keeps its label.")
        if cfg.vflip_prob:
            pairs = [f"{a} ↔ {b}" for a, b in _VFLIP_PAIRS if a in glyphs and b in glyphs]
            out.append(f"{prefix}Vertical flip (p={cfg.vflip_prob:g}) turns {kind} upside down (classes {shown})"
                       + (f": {', '.join(pairs)} swap" if pairs else "") + ", yet the flipped image keeps its label.")
        if cfg.rotation_degrees > LABEL_ROTATION_DEGREES:
            out.append(f"{prefix}Rotation up to ±{cfg.rotation_degrees:g}° on {kind}: beyond about "
                       f"{LABEL_ROTATION_DEGREES}° a 1 reads as a 7" + (", a 6 as a 9" if {"6", "9"} <= glyphs
                                                                      else "") + ".")
        if cfg.random_resized_crop and cfg.rrc_scale[0] < LABEL_CROP_SCALE:
            out.append(f"{prefix}Random resized crop down to {cfg.rrc_scale[0] * 100:.0f}% of the image can cut away "
                       f"the stroke that tells 1 from 7 or 3 from 8 on {kind}. Keep at least "
                       f"{LABEL_CROP_SCALE * 100:.0f}% (`light` keeps 80%).")
        return out
    for flip, p, (a, b) in (("Horizontal", cfg.hflip_prob, ("left", "right")),
                            ("Vertical", cfg.vflip_prob, ("up", "down"))):
        if p and any(a in n for n in lower) and any(b in n for n in lower):
            out.append(f"{prefix}{flip} flip (p={p:g}) turns '{a}' images into '{b}' ones, and both are "
                       "classes here: flipped images get the wrong label.")
    return out
