"""DataConfig -> train / val / test splits ready for training, through the one pipeline every
source shares with the Data studio:

    folder | CSV | zip (imported) | saved version
        -> listing (engine.data.sources: split folders train/val/test are recognised)
        -> scan (engine.data.scan: cached per-file facts)
        -> manifest (engine.data.manifest: rows, splits, content hash)
        -> splits (the source's own, missing val / test carved from train; else stratified)
        -> long-tailed training split (on request)
        -> pixels decoded once per version and input size (engine.data.decode)

Built-ins are arrays already: a balanced validation set is carved from the training pool, the
long-tailed training subset (CIFAR-LT construction, largest class 1,000) is drawn from the rest,
the test set stays balanced.

``plan_data`` does the cheap half (which files, which split, the facts the automatic settings
need); ``prepare_data`` adds the pixels and the normalisation. Class groups (head / medium / tail),
class weights and samplers always use the training split's counts.

No torch at import: the Data page plans and draws the long tail without it (a second saved at
start-up). ``ImageDataset``, the torch side, lives in engine.data.tensors and is still importable
from here.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from engine.config import DataConfig
from engine.data import split as ops
from engine.data.builtin import load_builtin
from engine.data.longtail import longtail_counts, longtail_indices
from engine.data.manifest import Manifest, load_manifest, manifest_from_scan, save_manifest
from engine.data.sources import SPLIT_ALIASES, SPLITS, DataError, DatasetError, Listing, list_source
from engine.data.stats import shot_group
from engine.defaults import DataProfile

if TYPE_CHECKING:
    from engine.transforms import EvalSpec

BUILTIN_N_MAX = 1_000  # largest built-in class: at ratio 100 the smallest keeps 10 (a real tail)
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}

Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass
class Split:
    """Images of one split: an in-memory uint8 array, or files under ``root``."""
    labels: np.ndarray  # int64 (N,)
    images: np.ndarray | None = None  # uint8 (N, H, W) or (N, H, W, 3)
    root: Path | None = None
    paths: list[str] = field(default_factory=list)  # relative to root
    aux_labels: np.ndarray | None = None  # int64 (N,): the second label (multi-task), else None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class SplitSet:
    """Classes and splits, and the counts every long-tail rule is computed from (what a plan and
    prepared data share)."""
    config: DataConfig
    class_names: list[str]
    splits: dict[str, Split]

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
        return [shot_group(n, c.many_threshold, c.few_threshold) for n in self.counts("train")]


@dataclass
class DataPlan(SplitSet):
    """Which images, in which split, and the facts the automatic settings depend on."""
    profile: DataProfile
    version_id: str  # content hash of the training version's manifest
    notes: list[str] = field(default_factory=list)  # what was decided for the user, in words
    manifest: Manifest | None = None  # None for the built-ins
    base: Manifest | None = None  # the source's files before splitting (decode-cache key)
    facts: dict | None = None  # rel path -> (format, mode, (height, width)) from the scan
    aux_name: str = ""  # the second label's task name (multi-task), "" when there is none
    aux_class_names: list[str] = field(default_factory=list)  # its values; index = aux label


@dataclass
class PreparedData(SplitSet):
    eval_spec: EvalSpec
    version_id: str  # content hash of the manifest
    notes: list[str] = field(default_factory=list)
    profile: DataProfile | None = None
    aux_name: str = ""  # the second label's task name (multi-task), "" when there is none
    aux_class_names: list[str] = field(default_factory=list)  # its values; index = aux label

    @property
    def in_memory(self) -> bool:
        return all(s.images is not None for s in self.splits.values())


def __getattr__(name: str):
    # ImageDataset needs torch; importing it from here (as callers long have) loads it on first use.
    if name == "ImageDataset":
        from engine.data.tensors import ImageDataset
        return ImageDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def balanced_subset(labels: np.ndarray, per_class: int, seed: int = 0, *, leave: int = 0) -> np.ndarray:
    """Up to ``per_class`` seeded random indices of each class (leaving at least ``leave``
    behind), sorted."""
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.append(rng.choice(idx, size=max(0, min(per_class, len(idx) - leave)), replace=False))
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


# --- built-ins -----------------------------------------------------------------------------------

def _plan_builtin(cfg: DataConfig) -> DataPlan:
    import hashlib

    name = cfg.source.split(":", 1)[1]
    data = load_builtin(name)
    rng = np.random.default_rng(cfg.seed)
    pool_labels = data.train_labels
    val_idx = balanced_subset(pool_labels, cfg.val_per_class, rng.integers(2**32), leave=1) \
        if cfg.val_per_class else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(len(pool_labels)), val_idx)
    C = len(data.class_names)
    available = np.bincount(pool_labels[rest], minlength=C)
    n_max = int(cfg.n_max or min(BUILTIN_N_MAX, available.min()))
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
        test_idx = balanced_subset(data.test_labels, cfg.test_per_class, 0)
    splits = {
        "train": Split(labels=pool_labels[train_idx], images=data.train_images[train_idx]),
        "val": Split(labels=pool_labels[val_idx], images=data.train_images[val_idx]),
        "test": Split(labels=data.test_labels[test_idx], images=data.test_images[test_idx]),
    }
    h = hashlib.sha256(f"builtin:{name} v2".encode())
    for s in SPLITS:
        h.update(s.encode())
        h.update(np.ascontiguousarray(splits[s].images).tobytes())
        h.update(np.ascontiguousarray(splits[s].labels).tobytes())
    train_counts = tuple(np.bincount(splits["train"].labels, minlength=C).tolist())
    profile = DataProfile(C, train_counts, 28, 28, 28, greyscale=True)
    notes = [f"built-in {name}: largest class {n_max:,}, imbalance ratio {ratio:g} ({cfg.profile} profile)"]
    return DataPlan(cfg, list(data.class_names), splits, profile, h.hexdigest(), notes)


# --- files: folders, CSV manifests, imported zips, saved versions --------------------------------

def _layout_hint(listing: Listing) -> str:
    """A sentence naming the layout found, when the folder is one level too deep."""
    if len(listing.classes) != 1 or listing.kind != "folder":
        return ""
    only = listing.root / listing.classes[0]
    subs = sorted(d.name for d in only.iterdir() if d.is_dir() and not d.name.startswith(".")) if only.is_dir() else []
    if subs:
        shown = ", ".join(subs[:6]) + (" ..." if len(subs) > 6 else "")
        return (f" It holds a single folder, {listing.classes[0]!r}, with the sub-folders {shown}: "
                f"point TailLab at {only} (one level deeper).")
    return ""


def _refuse_split_names_as_classes(listing: Listing) -> None:
    """A folder whose top level mixes split folders (train/val/test holding class sub-folders)
    with other folders, or has val/test folders but no train folder, is not read as a split
    layout by the listing: its split names would become class names. Say so instead."""
    if listing.kind != "folder" or listing.has_splits:
        return
    nested = sorted({e.label for e in listing.entries
                     if e.label.lower() in SPLIT_ALIASES and e.rel.count("/") >= 2})
    if not nested:
        return
    others = [c for c in listing.classes if c.lower() not in SPLIT_ALIASES]
    if others:
        problem = (f"mixes split folders ({', '.join(nested)}) with other folders "
                   f"({', '.join(others[:6])}{' ...' if len(others) > 6 else ''})")
        fix = "move the other folders out, or put each class inside train/ (and val/, test/)"
    else:
        problem = f"has the split folder(s) {', '.join(nested)} but no train/ folder"
        fix = "add a train/ folder with one sub-folder per class"
    raise DatasetError(f"{listing.root} {problem}, so its split names would be trained on as class "
                       f"names: {fix}. Expected FOLDER/<class>/<image> or "
                       "FOLDER/train|val|test/<class>/<image>.")


def _source_listing(source: str, roots: Sequence[str | os.PathLike] | None) -> tuple[Listing, Manifest | None]:
    if source.startswith("version:"):
        ref = source.split(":", 1)[1]
        try:
            m = load_manifest(ref)
        except DataError as e:
            raise DatasetError(str(e)) from e
        if roots is not None:  # from the dashboard: the version's folder must be an allowed one too
            from engine.data.sources import check_allowed
            check_allowed(m.root, roots)
        if not Path(m.root).is_dir():
            raise DatasetError(f"The images of dataset version {m.short_hash} were in {m.root}, which is gone.")
        return m.to_listing(), m
    path = Path(source).expanduser()
    parent = path.parent
    try:
        listing = list_source(path, roots=roots, check_root=roots is not None)
    except DataError as e:
        hint = ""
        if path.is_dir() and "holds images directly" in str(e) and parent != path:
            if parent.name.lower() in SPLIT_ALIASES and parent.parent != parent:
                # a class folder inside a split folder: the dataset is the folder above the split
                hint = (f" {path.name!r} looks like one class's folder inside the split folder "
                        f"{parent.name!r}: point TailLab at {parent.parent}, which holds the "
                        "train / val / test folders.")
            else:
                hint = (f" {path.name!r} looks like one class's folder: point TailLab at the folder "
                        f"above it, {parent}, which holds one sub-folder per class.")
        raise DatasetError(f"{e}{hint}") from e
    _refuse_split_names_as_classes(listing)
    if len(listing.classes) < 2:
        found = f"one class ({listing.classes[0]})" if listing.classes else "no class"
        raise DatasetError(f"{listing.root} has {found}; a classifier needs at least two. Expected "
                           "FOLDER/<class>/<image> or FOLDER/train|val|test/<class>/<image>."
                           + _layout_hint(listing))
    return listing, None


def _splits(m: Manifest, cfg: DataConfig) -> tuple[Manifest, list[str]]:
    """The source's own splits (missing val / test carved from train), else a stratified split."""
    notes: list[str] = []
    present = {r.split for r in m.rows}
    if present - {""}:
        if "" in present:
            raise DatasetError("Some images have a split (train/val/test) and some do not: give every "
                               "row of the CSV a split, or none.")
        if "train" not in present:
            raise DatasetError("The source has val/test images but no train split: add a train/ folder "
                               "(one sub-folder per class).")
        carve = {"val": cfg.val_fraction if "val" not in present else 0.0,
                 "test": cfg.test_fraction if "test" not in present else 0.0}
        m, warnings = ops.keep_source_splits(m, val_from_train=carve["val"], test_from_train=carve["test"],
                                             seed=cfg.seed)
        for s, share in carve.items():
            if share:
                notes.append(f"no {s} split in the source: {share:.0%} of each class's training "
                             f"images became {s} (seed {cfg.seed})")
        notes.append("the source's own train / val / test splits are used")
    else:
        m, warnings = ops.stratified_split(m, val=cfg.val_fraction, test=cfg.test_fraction,
                                           seed=cfg.seed)
        notes.append(f"no split folders: stratified split {1 - cfg.val_fraction - cfg.test_fraction:.0%} / "
                     f"{cfg.val_fraction:.0%} / {cfg.test_fraction:.0%} per class (seed {cfg.seed}), "
                     "at least one val and one test image per class that has three")
    notes += warnings
    # Every class must be learnable: a class without training images is named, with where it is.
    counts = m.class_counts
    missing = [c for c in m.classes if counts.get("train", {}).get(c, 0) == 0]
    if missing:
        where = {c: [s for s in ("val", "test") if counts.get(s, {}).get(c, 0)] for c in missing}
        listed = "; ".join(f"{c!r} (only in {' and '.join(w) or 'no split'})" for c, w in where.items())
        raise DatasetError(f"{len(missing)} class(es) have no training images: {listed}. Add training "
                           "images for them, or remove them from val/test.")
    if cfg.longtail and cfg.imbalance_ratio > 1:
        m, more = ops.longtail_subset(m, ratio=cfg.imbalance_ratio, profile=cfg.profile, n_max=cfg.n_max,
                                      seed=cfg.seed)
        notes += more
        notes.append(f"long-tailed training split built: ratio {cfg.imbalance_ratio:g}, {cfg.profile} profile")
    return m, notes


def _profile(m: Manifest, facts: dict) -> DataProfile:
    train = [facts[r.path] for r in m.rows if r.split == "train"]
    sides = np.array([max(h, w) for _, _, (h, w) in train] or [0])
    modes = {mode for _, mode, _ in train}
    grey = {md in GREY_MODES for md in modes}
    classes = m.classes
    index = {c: i for i, c in enumerate(classes)}
    counts = np.bincount([index[r.label] for r in m.rows if r.split == "train"], minlength=len(classes))
    return DataProfile(len(classes), tuple(counts.tolist()), int(np.median(sides)), int(sides.min()),
                       int(sides.max()), greyscale=grey == {True}, mixed_colour=grey == {True, False})


def _aux_notes(task: str, values: list[str], train_aux: np.ndarray) -> list[str]:
    """A second label (multi-task) the training split can teach, in words; DatasetError when the
    training split holds fewer than two of its values."""
    counts = np.bincount(train_aux, minlength=len(values))
    taught = [v for v, n in zip(values, counts) if n]
    if len(taught) < 2:
        raise DatasetError(f"The training split holds only {len(taught)} value of the second label "
                           f"{task!r} ({', '.join(map(repr, taught)) or 'none'}): a second head needs at "
                           "least two to learn anything. Check that column of the CSV.")
    shown = ", ".join(f"{v} ({n:,})" for v, n in zip(values[:8], counts[:8])) + (" ..." if len(values) > 8 else "")
    notes = [f"second label {task!r}: {len(values)} values, trained by a second head "
             f"(training images per value: {shown})"]
    unseen = [v for v, n in zip(values, counts) if not n]
    if unseen:
        notes.append(f"value(s) of {task!r} without training images (the second head cannot learn "
                     f"them): {', '.join(unseen[:5])}")
    return notes


def _plan_files(cfg: DataConfig, roots, progress: Progress | None) -> DataPlan:
    from engine.data.scan import scan_listing

    listing, version = _source_listing(cfg.source, roots)
    scan = scan_listing(listing, progress=(lambda d, t: progress("scan", d, t)) if progress else None)
    facts = {f.rel: (f.format, f.mode, (f.height, f.width)) for f in scan.images if f.ok}
    notes: list[str] = list(listing.warnings)  # empty class folders, loose files, ...
    if version is None:
        base = manifest_from_scan(scan, listing=listing)  # readable images only
        bad = len(scan.images) - len(base.rows)
        if bad:
            notes.append(f"{bad} unreadable file(s) left out (see the Data page's problems)")
    else:
        base = version
        unreadable = [r.path for r in base.rows if r.path not in facts]
        if unreadable:
            raise DatasetError(f"{len(unreadable)} image(s) of dataset version {base.short_hash} cannot be "
                               f"read any more: {', '.join(unreadable[:5])}.")
    if len(base.classes) < 2:
        raise DatasetError(f"{listing.root} has {len(base.classes)} class with readable images; a "
                           "classifier needs at least two.")
    m, more = _splits(base, cfg)
    notes += more
    profile = _profile(m, facts)
    index = {c: i for i, c in enumerate(m.classes)}
    root = Path(m.root)
    aux_classes = m.aux_classes
    aux_index, aux_of = {c: i for i, c in enumerate(aux_classes)}, dict(m.aux)
    splits = {}
    for s in SPLITS:
        rows = [r for r in m.rows if r.split == s]
        splits[s] = Split(labels=np.array([index[r.label] for r in rows], dtype=np.int64), root=root,
                          paths=[r.path for r in rows],
                          aux_labels=np.array([aux_index[aux_of[r.path]] for r in rows], dtype=np.int64)
                          if m.aux_name else None)
    if len(splits["train"]) == 0:
        raise DatasetError("The training split is empty.")
    if m.aux_name:
        notes += _aux_notes(m.aux_name, aux_classes, splits["train"].aux_labels)
    return DataPlan(cfg, m.classes, splits, profile, m.hash, notes, manifest=m, base=base, facts=facts,
                    aux_name=m.aux_name, aux_class_names=aux_classes)


def plan_data(cfg: DataConfig, *, roots: Sequence[str | os.PathLike] | None = None,
              progress: Progress | None = None) -> DataPlan:
    """Which images go to which split, and the data's facts. ``roots``: the allowed data folders
    for a path that came from the dashboard (None: any readable path, as for the CLI)."""
    if cfg.source.startswith("builtin:"):
        return _plan_builtin(cfg)
    return _plan_files(cfg, roots, progress)


# --- pixels ------------------------------------------------------------------------------------

def _to_input(images: np.ndarray, size: int, channels: int) -> np.ndarray:
    """In-memory uint8 images -> (N, size, size[, 3]) in ``channels`` (built-ins)."""
    from engine.data.decode import _resize

    if images.shape[1:3] != (size, size):
        images = np.stack([_resize(a, size) for a in images]) if len(images) else \
            np.zeros((0, size, size, *images.shape[3:]), np.uint8)
    if channels == 3 and images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=3)
    elif channels == 1 and images.ndim == 4:
        images = np.rint(images.astype(np.float32).mean(axis=3)).astype(np.uint8)
    return np.ascontiguousarray(images)


def _mean_std(images: np.ndarray, limit: int = 10_000) -> tuple[tuple, tuple]:
    idx = np.random.default_rng(0).choice(len(images), size=min(len(images), limit), replace=False)
    x = images[np.sort(idx)].astype(np.float32) / 255.0
    x = x.reshape(len(idx), -1, 1 if images.ndim == 3 else images.shape[3])
    mean = x.mean(axis=(0, 1))
    std = np.maximum(x.std(axis=(0, 1)), 1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _mean_std_files(split: Split, channels: int, size: int, limit: int = 2000) -> tuple[tuple, tuple]:
    from engine.data.decode import decode_many

    idx = np.random.default_rng(0).choice(len(split), size=min(len(split), limit), replace=False)
    arr = decode_many([str(split.root / split.paths[i]) for i in np.sort(idx)], size=size, channels=channels)
    return _mean_std(arr)


def prepare_data(cfg: DataConfig, *, plan: DataPlan | None = None,
                 roots: Sequence[str | os.PathLike] | None = None,
                 progress: Progress | None = None) -> PreparedData:
    """The splits with their pixels: decoded once into memory (cached per dataset version and
    input size) when they fit, else read from their files each epoch; ``notes`` say which."""
    from engine.defaults import choose_input, choose_model
    from engine.transforms import EvalSpec

    plan = plan or plan_data(cfg, roots=roots, progress=progress)
    size, channels = cfg.image_size, cfg.channels
    if size is None or channels is None:  # auto: what engine.defaults.resolve would pick
        auto_size, auto_channels, _ = choose_input(plan.profile, choose_model(plan.profile)[0])
        size, channels = size or auto_size, channels or auto_channels
    cfg = dataclasses.replace(cfg, image_size=size, channels=channels)
    notes = list(plan.notes)
    splits = plan.splits
    if plan.base is None:  # built-in arrays
        splits = {s: dataclasses.replace(sp, images=_to_input(sp.images, size, channels))
                  for s, sp in splits.items()}
    else:
        from engine.data.decode import decoded_arrays

        save_manifest(plan.manifest)  # the run's dataset version, reusable from the Data page
        base_rows = plan.base.rows
        root = Path(plan.base.root)
        arrays, note = decoded_arrays(
            plan.base.hash, [str(root / r.path) for r in base_rows], size=size, channels=channels,
            facts=[plan.facts[r.path] for r in base_rows],
            progress=(lambda d, t: progress("decode", d, t)) if progress else None)
        notes.append(note)
        if arrays is not None:
            pos = {r.path: i for i, r in enumerate(base_rows)}
            splits = {s: dataclasses.replace(sp, images=arrays[[pos[p] for p in sp.paths]])
                      for s, sp in splits.items()}
    train = splits["train"]
    mean, std = _mean_std(train.images) if train.images is not None else _mean_std_files(train, channels, size)
    return PreparedData(config=cfg, class_names=plan.class_names, splits=splits,
                        eval_spec=EvalSpec(size=size, channels=channels, mean=mean, std=std),
                        version_id=plan.version_id, notes=notes, profile=plan.profile,
                        aux_name=plan.aux_name, aux_class_names=list(plan.aux_class_names))
