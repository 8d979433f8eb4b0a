"""DataConfig -> train / val / test splits ready for a DataLoader, plus the dataset version.

Built-ins: a balanced validation set is carved from the training pool, then the long-tailed
training subset (CIFAR-LT construction) is drawn from the rest; the test set stays balanced.
Folders: a seeded stratified train / val / test split; the long-tail builder only on request.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from engine.config import DataConfig
from engine.data.builtin import load_builtin
from engine.data.folder import DatasetError, list_image_folder
from engine.data.io import ImageReadError, open_image
from engine.data.longtail import longtail_counts, longtail_indices
from engine.transforms import EvalSpec, pil_to_uint8_tensor

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Images of one split: an in-memory uint8 array, or files under ``root``."""
    labels: np.ndarray  # int64 (N,)
    images: np.ndarray | None = None  # uint8 (N, H, W) or (N, H, W, 3)
    root: Path | None = None
    paths: list[str] = field(default_factory=list)  # relative to root

    def __len__(self) -> int:
        return len(self.labels)

    def ids(self) -> list[str]:
        return list(self.paths) if self.images is None else [str(i) for i in range(len(self))]


@dataclass
class PreparedData:
    config: DataConfig
    class_names: list[str]
    splits: dict[str, Split]
    eval_spec: EvalSpec
    version_id: str  # content hash of the manifest
    source_ids: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self, split: str = "train") -> list[int]:
        return np.bincount(self.splits[split].labels, minlength=self.num_classes).tolist()

    def class_counts(self) -> dict[str, dict[str, int]]:
        return {s: dict(zip(self.class_names, self.counts(s))) for s in SPLITS}

    def groups(self) -> list[str]:
        """many / medium / few per class, from training counts and the config's thresholds."""
        c = self.config
        return ["many" if n > c.many_threshold else "few" if n < c.few_threshold else "medium"
                for n in self.counts("train")]


class ImageDataset(Dataset):
    """Yields (transform(uint8 tensor (C, H, W)[, label]), label)."""

    def __init__(self, split: Split, channels: int, transform: Callable | None,
                 pass_label: bool = False) -> None:
        self.split, self.channels, self.transform, self.pass_label = split, channels, transform, pass_label

    def __len__(self) -> int:
        return len(self.split)

    def raw(self, i: int) -> torch.Tensor:
        s = self.split
        if s.images is not None:
            img = torch.from_numpy(s.images[i])
            img = img[None] if img.ndim == 2 else img.permute(2, 0, 1)
            if img.shape[0] != self.channels:
                img = img.expand(3, -1, -1) if self.channels == 3 else img.float().mean(0, keepdim=True).round().to(torch.uint8)
            return img.contiguous()
        try:
            pil = open_image(s.root / s.paths[i])
        except ImageReadError as e:
            raise DatasetError(f"Cannot read training image: {e}") from e
        return pil_to_uint8_tensor(pil, self.channels)

    def __getitem__(self, i: int):
        label = int(self.split.labels[i])
        img = self.raw(i)
        if self.transform is not None:
            img = self.transform(img, label) if self.pass_label else self.transform(img)
        return img, label


def _balanced_pick(labels: np.ndarray, per_class: int, rng: np.random.Generator,
                   leave: int = 1) -> np.ndarray:
    """Up to ``per_class`` random indices of each class, leaving at least ``leave`` behind."""
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.append(rng.choice(idx, size=max(0, min(per_class, len(idx) - leave)), replace=False))
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


def _builtin(cfg: DataConfig) -> tuple[list[str], dict[str, Split]]:
    data = load_builtin(cfg.source.split(":", 1)[1])
    rng = np.random.default_rng(cfg.seed)
    pool_labels = data.train_labels
    val_idx = _balanced_pick(pool_labels, cfg.val_per_class, rng) if cfg.val_per_class else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(len(pool_labels)), val_idx)
    C = len(data.class_names)
    available = np.bincount(pool_labels[rest], minlength=C)
    n_max = int(cfg.n_max or available.min())
    if n_max > available.min():
        raise DatasetError(f"n_max={n_max} is more than the smallest class can give "
                           f"({available.min()} images after validation is held out).")
    ratio = cfg.imbalance_ratio if cfg.longtail is not False else 1.0
    counts = longtail_counts(n_max, C, ratio, cfg.profile)
    if min(counts) < 1:
        raise DatasetError(f"Imbalance ratio {cfg.imbalance_ratio:g} with n_max={n_max} leaves a "
                           "class with 0 images; lower the ratio or raise n_max.")
    train_idx = rest[longtail_indices(pool_labels[rest], counts, cfg.seed)]
    test_idx = np.arange(len(data.test_labels))
    if cfg.test_per_class:  # a fixed balanced subset, the same for every seed
        test_idx = _balanced_pick(data.test_labels, cfg.test_per_class, np.random.default_rng(0), leave=0)
    splits = {
        "train": Split(labels=pool_labels[train_idx], images=data.train_images[train_idx]),
        "val": Split(labels=pool_labels[val_idx], images=data.train_images[val_idx]),
        "test": Split(labels=data.test_labels[test_idx], images=data.test_images[test_idx]),
    }
    return data.class_names, splits, {"train": train_idx, "val": val_idx}


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, np.ndarray]:
    """Per class: round(n * fraction) to val and test, at least 1 each when the class has >= 3."""
    rng = np.random.default_rng(seed)
    out = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = len(idx)
        n_test = max(int(round(n * test_fraction)), 1 if n >= 3 and test_fraction > 0 else 0)
        n_val = max(int(round(n * val_fraction)), 1 if n >= 3 and val_fraction > 0 else 0)
        out["test"].append(idx[:n_test])
        out["val"].append(idx[n_test:n_test + n_val])
        out["train"].append(idx[n_test + n_val:])
    return {s: np.sort(np.concatenate(v)).astype(np.int64) for s, v in out.items()}


def _folder(cfg: DataConfig) -> tuple[list[str], dict[str, Split]]:
    root = Path(cfg.source).expanduser().resolve()
    paths, labels, classes = list_image_folder(root)
    if len(classes) < 2:
        raise DatasetError(f"{root} has one class ({classes[0]}); a classifier needs at least two.")
    labels = np.asarray(labels, dtype=np.int64)
    parts = stratified_split(labels, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    if cfg.imbalance_ratio > 1 and cfg.longtail:  # None (default) = keep the folder as it is
        tr = parts["train"]
        counts = np.bincount(labels[tr], minlength=len(classes))
        lt = longtail_counts(int(cfg.n_max or counts.min()), len(classes), cfg.imbalance_ratio,
                             cfg.profile)
        parts["train"] = tr[longtail_indices(labels[tr], lt, cfg.seed)]
    splits = {s: Split(labels=labels[ix], root=root, paths=[paths[i] for i in ix])
              for s, ix in parts.items()}
    return classes, splits, {}


def _version(cfg: DataConfig) -> tuple[list[str], dict[str, Split], str | None]:
    """A saved dataset version (manifest). Unsplit versions get a seeded stratified split."""
    from engine.data.manifest import load_manifest
    from engine.data.sources import DataError

    try:
        m = load_manifest(cfg.source.split(":", 1)[1])
    except DataError as e:
        raise DatasetError(str(e)) from e
    classes = m.classes
    if len(classes) < 2:
        raise DatasetError(f"Dataset version {m.short_hash} has {len(classes)} class; a classifier needs two.")
    root = Path(m.root)
    if not root.is_dir():
        raise DatasetError(f"The images of dataset version {m.short_hash} were in {root}, which is gone.")
    index = {c: i for i, c in enumerate(classes)}
    paths = [r.path for r in m.rows]
    labels = np.asarray([index[r.label] for r in m.rows], dtype=np.int64)
    if m.is_split:
        parts = {s: np.asarray([i for i, r in enumerate(m.rows) if r.split == s], dtype=np.int64)
                 for s in SPLITS}
    else:
        parts = stratified_split(labels, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    longtail = bool(cfg.longtail and cfg.imbalance_ratio > 1)
    if longtail:
        tr = parts["train"]
        counts = np.bincount(labels[tr], minlength=len(classes))
        lt = longtail_counts(int(cfg.n_max or counts.min()), len(classes), cfg.imbalance_ratio, cfg.profile)
        parts["train"] = tr[longtail_indices(labels[tr], lt, cfg.seed)]
    splits = {s: Split(labels=labels[ix], root=root, paths=[paths[i] for i in ix]) for s, ix in parts.items()}
    # a split version used as it is keeps its own hash as the run's dataset version
    return classes, splits, (m.hash if m.is_split and not longtail else None)


def _mean_std(split: Split, channels: int, size: int, limit: int = 2000) -> tuple[tuple, tuple]:
    ds = ImageDataset(split, channels, None)
    n = len(ds)
    idx = np.random.default_rng(0).choice(n, size=min(n, limit), replace=False) if n else []
    if split.images is not None:
        x = torch.stack([ds.raw(int(i)) for i in idx]).float() / 255.0
    else:
        from torchvision.transforms.v2 import functional as F
        x = torch.stack([F.resize(ds.raw(int(i)), [size, size], antialias=True) for i in idx]).float() / 255.0
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def manifest_hash(source: str, class_names: list[str], splits: dict[str, Split]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"source": source, "classes": class_names}).encode())
    for s in SPLITS:
        sp = splits[s]
        h.update(s.encode())
        if sp.images is not None:
            h.update(np.ascontiguousarray(sp.images).tobytes())
        else:
            for p in sp.paths:
                f = sp.root / p
                h.update(p.encode())
                h.update(str(f.stat().st_size).encode())
        h.update(np.ascontiguousarray(sp.labels).tobytes())
    return h.hexdigest()


def prepare_data(cfg: DataConfig) -> PreparedData:
    version = None
    if cfg.source.startswith("builtin:"):
        classes, splits, _ = _builtin(cfg)
        default_size, default_channels = 28, 1
    elif cfg.source.startswith("version:"):
        classes, splits, version = _version(cfg)
        default_size, default_channels = 64, 3
    else:
        classes, splits, _ = _folder(cfg)
        default_size, default_channels = 64, 3
    for s in ("train",):
        if len(splits[s]) == 0:
            raise DatasetError("The training split is empty.")
    size = cfg.image_size or default_size
    channels = cfg.channels or default_channels
    mean, std = _mean_std(splits["train"], channels, size)
    return PreparedData(config=cfg, class_names=classes, splits=splits,
                        eval_spec=EvalSpec(size=size, channels=channels, mean=mean, std=std),
                        version_id=version or manifest_hash(cfg.source, classes, splits))
